// mpprof port layer for the unix port (the host target): the stream goes to a
// file descriptor handed in by mpprof through MPPROF_FD, so the script's own
// stdout, stderr and exit status pass through untouched; the wire's ticks
// are nanoseconds.

#include "py/mpconfig.h"

#if defined(__unix__) || defined(__APPLE__)

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpprof_rt.h"

static int stream_fd = -1;
// The thread that opened the stream (mpprof_port_unix.h: by its stack).
static pthread_t main_thread;
uintptr_t mpprof_unix_stack_low, mpprof_unix_stack_span;

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

// Ticks (mpprof_port_unix.h): the CPU's counter or CLOCK_MONOTONIC
// nanoseconds. A clock_gettime() is some 100 instructions even through the
// vDSO, a counter read one; the wire gets nanoseconds either way, each
// written time scaled by a factor measured against CLOCK_MONOTONIC when the
// stream opens.
static uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool mpprof_unix_counter_on;

uint64_t mpprof_unix_monotonic_ticks(void) {
    return monotonic_ns();
}

#if defined(__x86_64__) || defined(__i386__)
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
static bool cpu_counter_trusted(void) {
    return true; // the architecture's generic timer runs at a fixed rate
}
#endif

#if MPPROF_UNIX_HAVE_COUNTER
// Counts to nanoseconds: the whole nanoseconds per count and the rest in
// 32.32 fixed point (a TSC at 1 GHz or more has no whole part).
static struct {
    uint64_t hz;        // counts per second
    uint32_t ns_whole;
    uint32_t ns_frac;   // times 2^32
} counter_rate;

// A clock reading and the counter at that moment: the middle of the two
// counter readings around it, from the closest of a few tries (the first
// clock_gettime() of a process can take microseconds: its vDSO page is not
// yet mapped).
static void counter_and_clock(uint64_t *counter, uint64_t *ns) {
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 5; i++) {
        uint64_t a = mpprof_unix_counter(), n = monotonic_ns(), b = mpprof_unix_counter();
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
    counter_rate.ns_whole = (uint32_t)(ns / counts);
    counter_rate.ns_frac = (uint32_t)(((ns % counts) << 32) / counts);
    counter_rate.hz = (uint64_t)((double)counts * 1e9 / (double)ns + 0.5);
    return counter_rate.hz != 0;
}
#endif

uint64_t mpprof_port_ticks(void) {
    return mpprof_ticks();
}

uint64_t mpprof_port_tick_hz(void) {
    #if MPPROF_UNIX_HAVE_COUNTER
    if (mpprof_unix_counter_on) {
        return counter_rate.hz;
    }
    #endif
    return 1000000000u;
}

// Ticks to the wire's nanoseconds: t * (whole + frac / 2^32), in parts
// that fit 64 bits for any t.
uint64_t mpprof_port_wire_time(uint64_t t) {
    #if MPPROF_UNIX_HAVE_COUNTER
    if (mpprof_unix_counter_on) {
        uint64_t hi = t >> 32, lo = t & 0xffffffffu;
        return t * counter_rate.ns_whole + hi * counter_rate.ns_frac + ((lo * counter_rate.ns_frac) >> 32);
    }
    #endif
    return t;
}

// Calibration's figures kept between runs in MPPROF_COSTS_FILE (mpprof
// names a file beside this binary): each run that calibrates appends a
// line; once COSTS_RUNS lines agree with this run's counter rate, runs take
// their median and do not calibrate. The rate tells another CPU's lines
// (and MPPROF_CLOCK=monotonic's) apart; the median, a run that calibrated
// while the machine was busy.
#define COSTS_RUNS (3)
#define COSTS_TAG "mpprof-costs-6"

static const char *costs_path(void) {
    const char *path = getenv("MPPROF_COSTS_FILE");
    return path != NULL && *path != '\0' ? path : NULL;
}

static bool same_rate(uint64_t a, uint64_t b) {
    uint64_t d = a > b ? a - b : b - a;
    return d <= b / 200; // 0.5%: the rate is measured at each start
}

static uint32_t median3(uint32_t a, uint32_t b, uint32_t c) {
    if (a > b) {
        uint32_t t = a;
        a = b;
        b = t;
    }
    return c <= a ? a : c >= b ? b : c;
}

// The line's numbers (rate, then the costs), in decimal after
// the tag. By hand: the port's printf family is MicroPython's own, without
// 64-bit conversions.
static bool costs_parse(const char *line, uint64_t v[1 + MPPROF_COSTS]) {
    size_t tag_len = strlen(COSTS_TAG);
    if (strncmp(line, COSTS_TAG, tag_len) != 0) {
        return false;
    }
    const char *p = line + tag_len;
    for (int k = 0; k < 1 + MPPROF_COSTS; k++) {
        if (*p++ != ' ' || *p < '0' || *p > '9') {
            return false;
        }
        uint64_t x = 0;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (x > (UINT64_MAX - 9) / 10) {
                return false;
            }
            x = x * 10 + (uint64_t)(*p - '0');
        }
        v[k] = x;
    }
    return *p == '\n';
}

static char *costs_put(char *p, uint64_t x) {
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + x % 10);
        x /= 10;
    } while (x != 0);
    *p++ = ' ';
    while (n > 0) {
        *p++ = digits[--n];
    }
    return p;
}

unsigned mpprof_port_costs_load(uint32_t costs[MPPROF_COSTS]) {
    const char *path = costs_path();
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    if (f == NULL) {
        return 0;
    }
    uint32_t runs[COSTS_RUNS][MPPROF_COSTS];
    unsigned n = 0;
    char line[160];
    uint64_t hz = mpprof_port_tick_hz();
    while (n < COSTS_RUNS && fgets(line, sizeof(line), f) != NULL) {
        uint64_t v[1 + MPPROF_COSTS];
        if (!costs_parse(line, v) || !same_rate(v[0], hz)) {
            continue;
        }
        bool fits = true;
        for (int k = 0; k < MPPROF_COSTS; k++) {
            fits = fits && v[k + 1] <= UINT32_MAX;
            runs[n][k] = (uint32_t)v[k + 1];
        }
        n += fits;
    }
    fclose(f);
    if (n < COSTS_RUNS) {
        return 0;
    }
    for (int k = 0; k < MPPROF_COSTS; k++) {
        costs[k] = median3(runs[0][k], runs[1][k], runs[2][k]);
    }
    return n;
}

void mpprof_port_costs_store(const uint32_t costs[MPPROF_COSTS]) {
    const char *path = costs_path();
    if (path == NULL) {
        return;
    }
    char line[160];
    size_t tag_len = strlen(COSTS_TAG);
    memcpy(line, COSTS_TAG, tag_len);
    char *p = costs_put(line + tag_len, mpprof_port_tick_hz());
    for (int k = 0; k < MPPROF_COSTS; k++) {
        p = costs_put(p, costs[k]);
    }
    *p++ = '\n';
    // One write(2) per line with O_APPEND: runs started together each add
    // a whole line.
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return;
    }
    ssize_t written = write(fd, line, (size_t)(p - line));
    (void)written; // a file that cannot take it only means calibrating again
    close(fd);
}

// Flushes come every 20 ms of wall time. Under an instruction-counting
// harness (callgrind runs the VM some 50 times slower) that is 50 times
// more flushes per instruction than natively: the benchmark sets
// MPPROF_FLUSH_MS to keep them as often per instruction as a native run.
uint32_t mpprof_port_flush_ms(void) {
    const char *s = getenv("MPPROF_FLUSH_MS");
    if (s == NULL || *s == '\0') {
        return 20;
    }
    char *end;
    long ms = strtol(s, &end, 10);
    return *end == '\0' && ms > 0 && ms <= 60000 ? (uint32_t)ms : 20;
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
    mpprof_unix_stack_low = 0;
    mpprof_unix_stack_span = 0;
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
        uintptr_t top = frame > UINTPTR_MAX - margin ? UINTPTR_MAX : frame + margin;
        mpprof_unix_stack_low = frame > below ? frame - below : 0;
        mpprof_unix_stack_span = top - mpprof_unix_stack_low;
    }
    #if MPPROF_UNIX_HAVE_COUNTER
    mpprof_unix_counter_on = counter_clock_start();
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

bool mpprof_unix_is_main_thread_slow(void) {
    return pthread_equal(pthread_self(), main_thread);
}

bool mpprof_port_is_main_thread(void) {
    return mpprof_main_thread();
}

#endif
