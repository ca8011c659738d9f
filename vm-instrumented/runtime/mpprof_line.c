// mpprof runtime: time per source line (built with MPPROF_LINE_TIME=1).
//
// Time is kept per bytecode offset, like the opcode counts, in arrays laid
// out as the opcode counters are (a code object's slots start at the same
// index as its counters); the host maps offsets to lines with the line table
// it already has. Two ways, chosen by the port:
//
// - Exact (boards, the emulated board): every dispatch of the hooked VM
//   closes the interval of the opcode running and charges it to that
//   opcode's slot, inclusive (with the frames it called) and exclusive
//   (less their inclusive time). Intervals are differences of the runtime's
//   stamps (mpprof_now()), so the profiler's own cost is out of them as it
//   is out of every time: the hooks' bracketed work is hidden, and the cost
//   of this step, the same few instructions at every dispatch, is part of
//   the per-opcode cost calibration measures at start-up. A frame's first
//   interval starts at its entry stamp and its last ends at its exit stamp,
//   so a frame's slots add up to its inclusive time exactly, and their
//   exclusive parts to its exclusive time.
// - Sampled (MPPROF_LINE_SAMPLED, the unix port): a profiling timer
//   (timer_create on CLOCK_MONOTONIC, every MPPROF_LINE_SAMPLE_NS of wall
//   time, SIGPROF) reads the shadow stack: the top frame's offset gets a
//   self sample, every frame's offset an inclusive one (once per sample,
//   however deep a recursion repeats it). The handler only reads the
//   frames and adds to static arrays: no allocation, no GC, no locks.
//
// Nothing here runs in a build without MPPROF_LINE_TIME.

#include <string.h>

#include "py/mpconfig.h"
#include "mpprof_rt.h"

#if MPPROF_LINE_TIME

static size_t line_uint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint64_t zigzag(int64_t v) {
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

// Send the non-zero slots of one code object as LINE_TIME records (WIRE.md),
// in pieces that fit a frame, clearing them as they are read: `take` reads
// and clears one slot's inclusive (0) or exclusive (1) value. Each piece is
// taken first and then written, so a sample landing meanwhile (sampled
// mode) goes to the next flush, never between a record's size and its body.
typedef int64_t (*line_take_t)(size_t k, int which);

// (on the C stack of whatever hook flushes: kept small)
#define LINE_PIECE ((MPPROF_FRAME_PAYLOAD - 32) / 23 < 32 ? (MPPROF_FRAME_PAYLOAD - 32) / 23 : 32)

static void line_send(uint32_t code_id, size_t index, size_t n, line_take_t take) {
    struct {
        uint32_t off;
        int64_t incl, excl;
    } piece[LINE_PIECE];
    size_t i = 0;
    while (i < n) {
        size_t count = 0, body = 0, prev = 0;
        for (; i < n && count < LINE_PIECE; i++) {
            int64_t a = take(index + i, 0), b = take(index + i, 1);
            if (a != 0 || b != 0) {
                piece[count].off = i;
                piece[count].incl = a;
                piece[count].excl = b;
                body += line_uint_size(i - prev) + line_uint_size(zigzag(a)) + line_uint_size(zigzag(b));
                prev = i;
                count++;
            }
        }
        if (count == 0) {
            break;
        }
        body += line_uint_size(code_id) + line_uint_size(count);
        mpprof_wire_begin(1 + line_uint_size(body) + body);
        mpprof_wire_u8(MPPROF_TAG_LINE_TIME);
        mpprof_wire_uint(body);
        mpprof_wire_uint(code_id);
        mpprof_wire_uint(count);
        prev = 0;
        for (size_t j = 0; j < count; j++) {
            mpprof_wire_uint(piece[j].off - prev);
            mpprof_wire_uint(zigzag(piece[j].incl));
            mpprof_wire_uint(zigzag(piece[j].excl));
            prev = piece[j].off;
        }
        mpprof_wire_end_record();
    }
}

static void line_clock(unsigned mode, uint64_t period_ns) {
    size_t body = line_uint_size(mode) + line_uint_size(period_ns);
    mpprof_wire_begin(1 + 10 + body);
    mpprof_wire_u8(MPPROF_TAG_LINE_CLOCK);
    mpprof_wire_uint(body);
    mpprof_wire_uint(mode);
    mpprof_wire_uint(period_ns);
    mpprof_wire_end_record();
}

#if !MPPROF_LINE_SAMPLED
/******************************************************************************/
// Exact: ticks per opcode slot.

// [0]: inclusive ticks, [1]: exclusive; signed, because an interval of a
// stamp difference can come out a tick below zero where the clock is
// coarser than an opcode (the sum over a frame stays exact).
static int64_t line_ticks[2][MPPROF_COUNTER_WORDS];

#define LINE_EXCL (MPPROF_COUNTER_WORDS)

// Called at every dispatch of the hooked VM (MICROPY_VM_HOOK_OPCODE): the
// same instructions every time, whatever the opcode, so their cost is one
// constant calibration measures. ip is the opcode about to run.
void mpprof_line_step(const void *ip) {
    mpprof_frame_t *f = mpprof_top_frame;
    uint64_t s = mpprof_now();
    int64_t *slot = (int64_t *)f->line_slot;
    int64_t d = (int64_t)(s - f->line_last);
    slot[0] += d;
    slot[LINE_EXCL] += d - (int64_t)f->line_child;
    f->line_child = 0;
    f->line_last = s;
    f->line_slot = f->line_bias + (uintptr_t)ip * sizeof(int64_t);
}

void mpprof_line_enter(mpprof_frame_t *f, size_t index, size_t n) {
    f->line_index = index;
    f->line_n = n;
    f->line_bias = (uintptr_t)&line_ticks[0][index] - (uintptr_t)f->base * sizeof(int64_t);
    // The frame's first interval (the VM entering it, a call or a resume,
    // up to its first dispatch) goes to the prelude's slot, offset 0, which
    // the host puts on the `def` line: entering is not any statement's.
    (void)n;
    f->line_slot = (uintptr_t)&line_ticks[0][index];
    f->line_child = 0;
    // line_last is the entry stamp, set by the caller once it is taken.
}

void mpprof_line_leave(mpprof_frame_t *f, mpprof_frame_t *parent, uint64_t t) {
    int64_t *slot = (int64_t *)f->line_slot;
    int64_t d = (int64_t)(t - f->line_last);
    slot[0] += d;
    slot[LINE_EXCL] += d - (int64_t)f->line_child;
    if (parent != NULL) {
        parent->line_child += t - f->enter_ticks;
    }
}

void mpprof_line_reset(size_t used) {
    memset(line_ticks[0], 0, used * sizeof(int64_t));
    memset(line_ticks[1], 0, used * sizeof(int64_t));
}

bool mpprof_line_dirty(size_t index, size_t n) {
    for (size_t i = index; i < index + n; i++) {
        if (line_ticks[0][i] != 0 || line_ticks[1][i] != 0) {
            return true;
        }
    }
    return false;
}

static int64_t exact_take(size_t k, int which) {
    int64_t v = line_ticks[which][k];
    line_ticks[which][k] = 0;
    return v;
}

void mpprof_line_flush(uint32_t code_id, size_t index, size_t n) {
    line_send(code_id, index, n, exact_take);
}

void mpprof_line_flush_totals(void) {
}

void mpprof_line_hello(void) {
    line_clock(1, 0);
}

void mpprof_line_start(void) {
}

void mpprof_line_stop(void) {
}

#else
/******************************************************************************/
// Sampled: a profiling timer reads the shadow stack.

#include <errno.h>
#include <signal.h>
#include <time.h>

#ifndef MPPROF_LINE_SAMPLE_NS
#define MPPROF_LINE_SAMPLE_NS (1000000) // 1 kHz of wall time
#endif

// [0]: inclusive samples, [1]: self samples, [2]: the last sample that
// counted the slot inclusively (a recursion's repeated line counts once).
static uint32_t line_samples[3][MPPROF_COUNTER_WORDS];
static volatile sig_atomic_t sampling;
static uint32_t sample_no;
static uint32_t samples_taken;   // since the last LINE_SAMPLES record
static uint32_t samples_outside; // of them, outside every profiled frame
static timer_t sample_timer;
static bool timer_made;

static void on_sample(int sig, siginfo_t *info, void *context) {
    (void)sig;
    (void)info;
    (void)context;
    if (!sampling || !mpprof_port_is_main_thread()) {
        return;
    }
    uint32_t no = ++sample_no;
    samples_taken++;
    uint32_t depth = mpprof_depth();
    if (depth == 0 || depth > MPPROF_MAX_DEPTH) {
        samples_outside++;
        return;
    }
    // The frames are read as they are, possibly mid-update (a frame being
    // pushed): every offset is checked against its code's slots, so a
    // stale one is dropped, never written through.
    bool self = true;
    for (uint32_t i = depth; i-- > 0;) {
        const mpprof_frame_t *f = &mpprof_frames[i];
        const mp_code_state_t *cs = f->code_state;
        if (cs == NULL) {
            continue;
        }
        uintptr_t off = (uintptr_t)cs->ip - (uintptr_t)f->base;
        size_t k = (size_t)f->line_index + off;
        if (off >= f->line_n || k >= MPPROF_COUNTER_WORDS) {
            if (self) {
                samples_outside++;
                self = false;
            }
            continue;
        }
        if (self) {
            line_samples[1][k]++;
            self = false;
        }
        if (line_samples[2][k] != no) {
            line_samples[2][k] = no;
            line_samples[0][k]++;
        }
    }
}

void mpprof_line_enter(mpprof_frame_t *f, size_t index, size_t n) {
    f->line_index = index;
    f->line_n = n;
}

void mpprof_line_leave(mpprof_frame_t *f, mpprof_frame_t *parent, uint64_t t) {
    (void)f;
    (void)parent;
    (void)t;
}

void mpprof_line_reset(size_t used) {
    for (int a = 0; a < 3; a++) {
        memset(line_samples[a], 0, used * sizeof(uint32_t));
    }
}

bool mpprof_line_dirty(size_t index, size_t n) {
    for (size_t i = index; i < index + n; i++) {
        if (line_samples[0][i] != 0) {
            return true;
        }
    }
    return false;
}

static int64_t sampled_take(size_t k, int which) {
    // The handler may add a sample meanwhile: exchange, so none is lost.
    return __atomic_exchange_n(&line_samples[which][k], 0, __ATOMIC_RELAXED);
}

void mpprof_line_flush(uint32_t code_id, size_t index, size_t n) {
    line_send(code_id, index, n, sampled_take);
}

void mpprof_line_flush_totals(void) {
    uint32_t taken = __atomic_exchange_n(&samples_taken, 0, __ATOMIC_RELAXED);
    uint32_t outside = __atomic_exchange_n(&samples_outside, 0, __ATOMIC_RELAXED);
    if (taken == 0 && outside == 0) {
        return;
    }
    size_t body = line_uint_size(taken) + line_uint_size(outside);
    mpprof_wire_begin(1 + 10 + body);
    mpprof_wire_u8(MPPROF_TAG_LINE_SAMPLES);
    mpprof_wire_uint(body);
    mpprof_wire_uint(taken);
    mpprof_wire_uint(outside);
    mpprof_wire_end_record();
}

void mpprof_line_hello(void) {
    line_clock(2, MPPROF_LINE_SAMPLE_NS);
}

static void arm(long ns) {
    struct itimerspec its;
    its.it_interval.tv_sec = ns / 1000000000L;
    its.it_interval.tv_nsec = ns % 1000000000L;
    its.it_value = its.it_interval;
    timer_settime(sample_timer, 0, &its, NULL);
}

void mpprof_line_start(void) {
    if (!timer_made) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_sample;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGPROF, &sa, NULL) != 0) {
            return;
        }
        struct sigevent sev;
        memset(&sev, 0, sizeof(sev));
        sev.sigev_notify = SIGEV_SIGNAL;
        sev.sigev_signo = SIGPROF;
        if (timer_create(CLOCK_MONOTONIC, &sev, &sample_timer) != 0) {
            return;
        }
        timer_made = true;
    }
    sampling = 1;
    arm(MPPROF_LINE_SAMPLE_NS);
}

void mpprof_line_stop(void) {
    sampling = 0;
    if (timer_made) {
        arm(0);
    }
}

#endif // MPPROF_LINE_SAMPLED

#endif // MPPROF_LINE_TIME
