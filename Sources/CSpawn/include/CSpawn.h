// The glibc calls that Swift's Glibc module leaves out (they are declared only under _GNU_SOURCE),
// for the Swift `Spawn` target: two `posix_spawn` file actions, `pipe2` and naming the calling thread.
// The project's own code.
#ifndef CSPAWN_H
#define CSPAWN_H

#include <spawn.h>

/// Closes every file descriptor from `lowest` up in the child (`posix_spawn_file_actions_addclosefrom_np`,
/// glibc 2.34): descriptors this process opened without `O_CLOEXEC` never leak into the child.
int cspawn_add_close_from(posix_spawn_file_actions_t *actions, int lowest);

/// Makes the child start in `path` (`posix_spawn_file_actions_addchdir_np`, glibc 2.29).
int cspawn_add_change_directory(posix_spawn_file_actions_t *actions, const char *path);

/// Makes a pipe whose two ends (`ends[0]` to read, `ends[1]` to write) close on exec (`pipe2`).
int cspawn_pipe_closing_on_exec(int ends[2]);

/// Names the calling thread (`pthread_setname_np`; at most 15 bytes, longer names are refused).
int cspawn_name_this_thread(const char *name);

#endif
