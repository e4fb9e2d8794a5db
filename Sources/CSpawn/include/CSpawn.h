// The glibc calls that Swift's Glibc module leaves out (they are declared only under _GNU_SOURCE),
// for the Swift `Spawn` target: two `posix_spawn` file actions, `pipe2`, naming the calling thread, and
// the signal handlers that pass a signal on to a child (a handler must be C: it may call only
// async-signal-safe functions).
// The project's own code.
#ifndef CSPAWN_H
#define CSPAWN_H

#include <spawn.h>
#include <sys/types.h>

/// Closes every file descriptor from `lowest` up in the child (`posix_spawn_file_actions_addclosefrom_np`,
/// glibc 2.34): descriptors this process opened without `O_CLOEXEC` never leak into the child.
int cspawn_add_close_from(posix_spawn_file_actions_t *actions, int lowest);

/// Makes the child start in `path` (`posix_spawn_file_actions_addchdir_np`, glibc 2.29).
int cspawn_add_change_directory(posix_spawn_file_actions_t *actions, const char *path);

/// Makes a pipe whose two ends (`ends[0]` to read, `ends[1]` to write) close on exec (`pipe2`).
int cspawn_pipe_closing_on_exec(int ends[2]);

/// Names the calling thread (`pthread_setname_np`; at most 15 bytes, longer names are refused).
int cspawn_name_this_thread(const char *name);

/// Starts passing `signals` on: each one this process receives from now on goes to the child named
/// with `cspawn_forward_to` (kept until then if it is not started yet). Returns 0, or `EBUSY` while
/// another child's forwarding is still on (there is one set of handlers a process), or an `errno`
/// value from `sigaction`.
int cspawn_forward_begin(const int *signals, int count);

/// Names the child the signals go to, and sends it any that came before.
void cspawn_forward_to(pid_t pid);

/// Stops passing signals on and puts back the handlers there were before. A signal that came when
/// there was no child to take it (it never started, or it had ended) is then raised in this
/// process, as if nothing had been installed.
void cspawn_forward_end(void);

/// Raises `signal` in the calling thread with it unblocked there first (threads of libdispatch's
/// pool block most signals, and a signal a thread blocks stays pending while the process exits).
void cspawn_raise_unblocked(int signal);

/// Whether this process lets the kernel reap its children (SIGCHLD set to `SIG_IGN`, or
/// `SA_NOCLDWAIT`): their exit status is then lost to `waitpid`.
int cspawn_children_are_reaped_by_kernel(void);

/// Makes the kernel send this process SIGKILL when the thread that started it ends
/// (`PR_SET_PDEATHSIG`); -1 when `parent` is no longer its parent (it ended already) or the call
/// failed.
int cspawn_end_with_parent(pid_t parent);

#endif
