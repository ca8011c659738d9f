// mpprof port layer for the unix port (the host target): the stream goes to a
// file descriptor handed in by mpprof through MPPROF_FD, so the script's own
// stdout, stderr and exit status pass through untouched; ticks are
// CLOCK_MONOTONIC nanoseconds.

#include "py/mpconfig.h"

#if defined(__unix__) || defined(__APPLE__)

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpprof_rt.h"

static int stream_fd = -1;
// The thread that opened the stream, told apart by its stack: every hook
// asks, and comparing the stack pointer with the main stack's bounds is a
// few instructions, where pthread_self() and pthread_equal() were calls (a
// thread-local flag would be cheaper still, but valgrind, which the
// benchmark runs under, faults on the 32-bit build's TLS accesses). Other
// threads' stacks are mapped outside the main stack's reserved range.
static pthread_t main_thread;
static uintptr_t main_stack_top, main_stack_low;

// When the VM itself crashes (SIGSEGV, ...), send the records of the open
// frame before dying of the same signal, so the host's profile has what
// happened up to the crash. On its own stack, so a stack overflow can still
// be reported.
static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
static uint8_t crash_stack[64 * 1024];

static void on_crash(int sig) {
    // On the signal stack: the main thread is told by its id here.
    if (stream_fd >= 0 && pthread_equal(pthread_self(), main_thread)) {
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

// Ticks are nanoseconds. They are read at every call, return and
// allocation the profiler records, so the read must be cheap: a
// clock_gettime() is some 100 instructions even through the vDSO, which made
// the clock the largest part of the profiler's cost. Where the CPU has a
// counter at a constant rate that the kernel itself trusts as its clock
// (x86's invariant TSC when it is the clocksource; the generic timer on
// AArch64), ticks are that counter scaled to nanoseconds by a factor
// measured against CLOCK_MONOTONIC when the stream opens: one instruction to
// read, a few to scale. MPPROF_CLOCK=monotonic forces clock_gettime().
static uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define MPPROF_HAVE_CPU_COUNTER (1)
static inline uint64_t cpu_counter(void) {
    return __rdtsc();
}
static bool cpu_counter_trusted(void) {
    // The kernel keeps the TSC as its clocksource only when it found it
    // invariant and in step across cores.
    char buf[16] = {0};
    int fd = open("/sys/devices/system/clocksource/clocksource0/current_clocksource", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    return n >= 3 && memcmp(buf, "tsc", 3) == 0 && (buf[3] == '\n' || buf[3] == '\0');
}
#elif defined(__aarch64__)
#define MPPROF_HAVE_CPU_COUNTER (1)
static inline uint64_t cpu_counter(void) {
    uint64_t v;
    __asm__ volatile ("isb\n\tmrs %0, cntvct_el0" : "=r" (v));
    return v;
}
static bool cpu_counter_trusted(void) {
    return true; // the architecture's generic timer runs at a fixed rate
}
#else
#define MPPROF_HAVE_CPU_COUNTER (0)
#endif

#if MPPROF_HAVE_CPU_COUNTER
// Counts since `base_counter` scale to nanoseconds since `base_ns` with two
// 32-bit multiplies, by the whole nanoseconds per count and by the rest in
// 32.32 fixed point (a TSC at 1 GHz or more has no whole part), for fewer
// counts than `rebase_at`; past that (rarely: after about a second without
// a read) the base moves up.
static struct {
    bool on;
    uint64_t base_counter;
    uint64_t base_ns;
    uint64_t rebase_at;
    uint32_t ns_whole;  // whole nanoseconds per count
    uint32_t ns_frac;   // and the fraction, times 2^32
} counter_clock;

static inline uint64_t counts_to_ns(uint32_t counts) {
    return (uint64_t)counts * counter_clock.ns_whole
           + (((uint64_t)counts * counter_clock.ns_frac) >> 32);
}

// A clock reading and the counter at that moment: the middle of the two
// counter readings around it, from the closest of a few tries (the first
// clock_gettime() of a process can take microseconds: its vDSO page is not
// yet mapped).
static void counter_and_clock(uint64_t *counter, uint64_t *ns) {
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 5; i++) {
        uint64_t a = cpu_counter(), n = monotonic_ns(), b = cpu_counter();
        if (b - a < best) {
            best = b - a;
            *counter = a + (b - a) / 2;
            *ns = n;
        }
    }
}

// The counter's rate against CLOCK_MONOTONIC over a short sleep.
static bool counter_clock_start(void) {
    const char *force = getenv("MPPROF_CLOCK");
    if ((force != NULL && strcmp(force, "monotonic") == 0) || !cpu_counter_trusted()) {
        return false;
    }
    uint64_t c0, n0, c1, n1;
    counter_and_clock(&c0, &n0);
    struct timespec ts = { 0, 2000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    counter_and_clock(&c1, &n1);
    if (c1 <= c0 || n1 <= n0) {
        return false;
    }
    uint64_t counts = c1 - c0, ns = n1 - n0;
    if (ns / counts > 0xffff) {
        return false;
    }
    counter_clock.ns_whole = (uint32_t)(ns / counts);
    counter_clock.ns_frac = (uint32_t)(((ns % counts) << 32) / counts);
    // Below 2^31 counts and 2^31 ns, the fast path's products fit.
    counter_clock.rebase_at = ((uint64_t)1 << 31) / (counter_clock.ns_whole + 1);
    counter_clock.base_counter = cpu_counter();
    counter_clock.base_ns = monotonic_ns();
    counter_clock.on = true;
    return true;
}

static uint64_t __attribute__((noinline)) counter_clock_rebase(uint64_t counts) {
    while (counts >= counter_clock.rebase_at) {
        uint32_t step = (uint32_t)(counter_clock.rebase_at / 2);
        counter_clock.base_counter += step;
        counter_clock.base_ns += counts_to_ns(step);
        counts -= step;
    }
    return counter_clock.base_ns + counts_to_ns((uint32_t)counts);
}

static inline uint64_t counter_clock_ns(void) {
    uint64_t d = cpu_counter() - counter_clock.base_counter;
    if (__builtin_expect(d >= counter_clock.rebase_at, 0)) {
        return counter_clock_rebase(d);
    }
    return counter_clock.base_ns + counts_to_ns((uint32_t)d);
}
#endif

uint64_t mpprof_port_ticks(void) {
    #if MPPROF_HAVE_CPU_COUNTER
    if (counter_clock.on) {
        return counter_clock_ns();
    }
    #endif
    return monotonic_ns();
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
    main_stack_top = 0;
    struct rlimit stack_limit;
    if (getrlimit(RLIMIT_STACK, &stack_limit) == 0 && stack_limit.rlim_cur != RLIM_INFINITY
        && stack_limit.rlim_cur <= ((rlim_t)1 << 30)) {
        // A bit above the current frame: main() and the C runtime's start.
        // Saturated: a 32-bit process's stack can start within 64 KiB of the
        // top of its address space (ASLR), and a wrapped bound would make
        // every hook think it runs on another thread.
        uintptr_t frame = (uintptr_t)__builtin_frame_address(0);
        const uintptr_t margin = 64 * 1024;
        uintptr_t below = margin + (uintptr_t)stack_limit.rlim_cur;
        main_stack_top = frame > UINTPTR_MAX - margin ? UINTPTR_MAX : frame + margin;
        main_stack_low = frame > below ? frame - below : 0;
    }
    #if MPPROF_HAVE_CPU_COUNTER
    counter_clock_start();
    #endif
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
    if (main_stack_top != 0) {
        uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
        return sp >= main_stack_low && sp <= main_stack_top;
    }
    return pthread_equal(pthread_self(), main_thread);
}

#endif
