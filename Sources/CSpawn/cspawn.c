// See include/CSpawn.h.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <unistd.h>

#include "CSpawn.h"

int cspawn_add_close_from(posix_spawn_file_actions_t *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowest);
}

int cspawn_add_change_directory(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int cspawn_pipe_closing_on_exec(int ends[2]) {
    return pipe2(ends, O_CLOEXEC);
}

int cspawn_name_this_thread(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}
