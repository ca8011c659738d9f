// mpprof port layer for the unix port (the host target): the stream goes to a
// file descriptor handed in by mpprof through MPPROF_FD, so the script's own
// stdout, stderr and exit status pass through untouched; ticks are
// CLOCK_MONOTONIC nanoseconds.

#include "py/mpconfig.h"

#if defined(__unix__) || defined(__APPLE__)

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpprof_rt.h"

static int stream_fd = -1;
static pthread_t main_thread;

// When the VM itself crashes (SIGSEGV, ...), send the records of the open
// frame before dying of the same signal, so the host's profile has what
// happened up to the crash. On its own stack, so a stack overflow can still
// be reported.
static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
static uint8_t crash_stack[64 * 1024];

static void on_crash(int sig) {
    if (stream_fd >= 0 && mpprof_port_is_main_thread()) {
        // write(2) and clock_gettime(2) only: async-signal-safe.
        mpprof_wire_flush();
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_crashes(void) {
    stack_t ss = { .ss_sp = crash_stack, .ss_size = sizeof(crash_stack), .ss_flags = 0 };
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++) {
        struct sigaction old;
        // Leave a handler someone else installed alone.
        if (sigaction(crash_signals[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
            sigaction(crash_signals[i], &sa, NULL);
        }
    }
}

// MPPROF_FD names an inherited descriptor (how mpprof runs the VM);
// MPPROF_PATH names a file to create (for runs under other harnesses, which
// may close inherited descriptors).
bool mpprof_port_open(void) {
    const char *s = getenv("MPPROF_FD");
    const char *path = getenv("MPPROF_PATH");
    if (s != NULL && *s != '\0') {
        char *end;
        long fd = strtol(s, &end, 10);
        if (*end != '\0' || fd < 0 || fcntl((int)fd, F_GETFD) == -1) {
            return false;
        }
        stream_fd = (int)fd;
    } else if (path != NULL && *path != '\0') {
        stream_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (stream_fd < 0) {
            return false;
        }
    } else {
        return false;
    }
    main_thread = pthread_self();
    // MPPROF_NONBLOCK=1: a full pipe drops frames instead of stalling the
    // script, as a board's ring buffer does (and lets tests check that drops
    // are counted exactly).
    const char *nb = getenv("MPPROF_NONBLOCK");
    if (nb != NULL && nb[0] == '1') {
        int fl = fcntl(stream_fd, F_GETFL);
        if (fl != -1) {
            fcntl(stream_fd, F_SETFL, fl | O_NONBLOCK);
        }
    }
    // If mpprof goes away, a write must fail, not kill the script.
    signal(SIGPIPE, SIG_IGN);
    catch_crashes();
    return true;
}

bool mpprof_port_write(const uint8_t *buf, size_t len) {
    bool started = false;
    while (len > 0) {
        ssize_t n = write(stream_fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!started) {
                    // Nothing of this frame went out: drop it whole.
                    return false;
                }
                // Part of the frame went out: finish it, or the stream
                // would be corrupt.
                struct timespec ts = { 0, 100000 };
                nanosleep(&ts, NULL);
                continue;
            }
            return false;
        }
        started = true;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

void mpprof_port_close(void) {
    if (stream_fd >= 0) {
        close(stream_fd);
        stream_fd = -1;
    }
}

uint64_t mpprof_port_ticks(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mpprof_port_clock_hz(void) {
    return 1000000000u;
}

const char *mpprof_port_clock_name(void) {
    return "ns";
}

const char *mpprof_port_target_name(void) {
    return "host";
}

void mpprof_port_hide_begin(void) {
    // Nothing to hold: a tick here is as fine as an instruction or finer.
}

void mpprof_port_hide_end(void) {
}

void mpprof_port_align_ticks(void) {
    // Nanoseconds need no alignment.
}

bool mpprof_port_is_main_thread(void) {
    return pthread_equal(pthread_self(), main_thread);
}

#endif
