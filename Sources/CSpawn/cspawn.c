// See include/CSpawn.h.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
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

// The forwarding state. Handlers read it from any thread at any moment, so every field is atomic.
// `forward_pid` is 0 before the child is known and -1 once its forwarding is ending; a signal that
// comes while there is no child to take it is kept as a bit of `forward_kept`.
static atomic_int forward_active;
static _Atomic pid_t forward_pid;
static _Atomic unsigned long long forward_kept;
static int forward_signals[64];
static int forward_count;
static struct sigaction forward_previous[64];

// Sends every kept signal to `pid`. Each bit is taken once (`atomic_exchange`), so a signal the
// handler keeps while `cspawn_forward_to` runs reaches the child exactly once, from one side or
// the other.
static void forward_kept_to(pid_t pid) {
    unsigned long long kept = atomic_exchange(&forward_kept, 0);
    for (int signal = 1; signal < 64; signal++) {
        if (kept & (1ULL << signal)) kill(pid, signal);
    }
}

static void forward_handler(int signal) {
    int saved = errno;
    pid_t pid = atomic_load(&forward_pid);
    if (pid > 0) {
        kill(pid, signal);
    } else {
        atomic_fetch_or(&forward_kept, 1ULL << signal);
        // The child may have been named between the load and the keeping.
        pid = atomic_load(&forward_pid);
        if (pid > 0) forward_kept_to(pid);
    }
    errno = saved;
}

int cspawn_forward_begin(const int *signals, int count) {
    if (count < 0 || count > 64) return EINVAL;
    for (int index = 0; index < count; index++) {
        if (signals[index] <= 0 || signals[index] >= 64) return EINVAL;
    }
    int expected = 0;
    if (!atomic_compare_exchange_strong(&forward_active, &expected, 1)) return EBUSY;
    atomic_store(&forward_pid, 0);
    atomic_store(&forward_kept, 0);
    struct sigaction action = {0};
    action.sa_handler = forward_handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    for (int index = 0; index < count; index++) {
        if (sigaction(signals[index], &action, &forward_previous[index]) != 0) {
            int code = errno;
            for (int undo = 0; undo < index; undo++) sigaction(forward_signals[undo], &forward_previous[undo], 0);
            atomic_store(&forward_active, 0);
            return code;
        }
        forward_signals[index] = signals[index];
        forward_count = index + 1;
    }
    return 0;
}

void cspawn_forward_to(pid_t pid) {
    atomic_store(&forward_pid, pid);
    forward_kept_to(pid);
}

void cspawn_forward_end(void) {
    atomic_store(&forward_pid, -1);
    for (int index = 0; index < forward_count; index++) {
        sigaction(forward_signals[index], &forward_previous[index], 0);
    }
    forward_count = 0;
    unsigned long long kept = atomic_exchange(&forward_kept, 0);
    atomic_store(&forward_active, 0);
    for (int signal = 1; signal < 64; signal++) {
        if (kept & (1ULL << signal)) cspawn_raise_unblocked(signal);
    }
}

void cspawn_raise_unblocked(int signal) {
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal);
    pthread_sigmask(SIG_UNBLOCK, &only, 0);
    raise(signal);
}

int cspawn_children_are_reaped_by_kernel(void) {
    struct sigaction current;
    if (sigaction(SIGCHLD, 0, &current) != 0) return 0;
    return current.sa_handler == SIG_IGN || (current.sa_flags & SA_NOCLDWAIT) != 0;
}

int cspawn_end_with_parent(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -1;
    // The parent may have ended before the call: then this process was handed to another already.
    return getppid() == parent ? 0 : -1;
}
