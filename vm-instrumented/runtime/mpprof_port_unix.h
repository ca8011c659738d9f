// mpprof port layer for the unix port: what every hook asks, inline.
//
// The runtime reads the clock some four times per call and twice per
// allocation it records, and asks each time whether it runs on the main
// thread; as calls into mpprof_port_unix.c these were a third of the
// profiler's cost on call-heavy code. Here they are a few instructions.

#ifndef MPPROF_PORT_UNIX_H
#define MPPROF_PORT_UNIX_H

#include <stdbool.h>
#include <stdint.h>

// Always inline, also in MicroPython's files built for size (-Os), where
// the hooks inline them too (mpprof_fast.h).
#ifndef MP_ALWAYSINLINE
#define MP_ALWAYSINLINE __attribute__((always_inline))
#endif

// Ticks are the CPU's constant-rate counter itself where the kernel trusts
// it as its clock (x86's invariant TSC as the clocksource; AArch64's
// generic timer), else CLOCK_MONOTONIC nanoseconds (MPPROF_CLOCK=monotonic
// forces those). The runtime works in these ticks; the wire carries
// nanoseconds, scaled once per record written (mpprof_port_wire_time), not
// per reading.
extern bool mpprof_unix_counter_on MPPROF_HIDDEN;
uint64_t mpprof_unix_monotonic_ticks(void);

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define MPPROF_UNIX_HAVE_COUNTER (1)
static MP_ALWAYSINLINE inline uint64_t mpprof_unix_counter(void) {
    return __rdtsc();
}
#elif defined(__aarch64__)
#define MPPROF_UNIX_HAVE_COUNTER (1)
static MP_ALWAYSINLINE inline uint64_t mpprof_unix_counter(void) {
    uint64_t v;
    __asm__ volatile ("isb\n\tmrs %0, cntvct_el0" : "=r" (v));
    return v;
}
#else
#define MPPROF_UNIX_HAVE_COUNTER (0)
#endif

static MP_ALWAYSINLINE inline uint64_t mpprof_ticks(void) {
    #if MPPROF_UNIX_HAVE_COUNTER
    if (__builtin_expect(mpprof_unix_counter_on, 1)) {
        return mpprof_unix_counter();
    }
    #endif
    return mpprof_unix_monotonic_ticks();
}

// The thread that opened the stream, told apart by its stack: comparing the
// stack pointer with the main stack's bounds (a thread-local flag would be
// cheaper still, but valgrind, which the benchmark runs under, faults on
// the 32-bit build's TLS accesses). Other threads' stacks are mapped
// outside the main stack's reserved range: the main stack is `span` bytes
// from `low` (span 0: not known, ask pthreads).
extern uintptr_t mpprof_unix_stack_low MPPROF_HIDDEN, mpprof_unix_stack_span MPPROF_HIDDEN;
bool mpprof_unix_is_main_thread_slow(void);

// The stack pointer, read directly: __builtin_frame_address(0) would make
// every hook keep a frame pointer, a register the 32-bit build cannot spare.
static MP_ALWAYSINLINE inline uintptr_t mpprof_unix_sp(void) {
    uintptr_t sp;
    #if defined(__i386__)
    __asm__ ("movl %%esp, %0" : "=r" (sp));
    #elif defined(__x86_64__)
    __asm__ ("movq %%rsp, %0" : "=r" (sp));
    #elif defined(__aarch64__)
    __asm__ ("mov %0, sp" : "=r" (sp));
    #else
    volatile char here;
    sp = (uintptr_t)&here;
    #endif
    return sp;
}

// One unsigned compare on the fast path: every call and allocation asks.
// A known stack has a span above 0; an unknown one has low and span 0,
// which no stack pointer is within.
static MP_ALWAYSINLINE inline bool mpprof_main_thread(void) {
    uintptr_t span = mpprof_unix_stack_span;
    if (__builtin_expect(mpprof_unix_sp() - mpprof_unix_stack_low <= span, 1)) {
        return true;
    }
    return span == 0 && mpprof_unix_is_main_thread_slow();
}

#endif // MPPROF_PORT_UNIX_H
