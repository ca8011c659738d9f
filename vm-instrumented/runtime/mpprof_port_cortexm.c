// mpprof port layer for real Cortex-M boards: rp2 (RP2040 = Cortex-M0+,
// RP2350 = Cortex-M33), stm32 (PYBV11 = Cortex-M4) and any other M0+, M3,
// M4, M7 or M33 port.
//
// Ticks are CPU cycles. The source is chosen at compile time:
// - MPPROF_CLOCK_DWT: the DWT cycle counter (CYCCNT), the default on ARMv7-M
//   and ARMv8-M Mainline (M3, M4, M7, M33);
// - MPPROF_CLOCK_SYSTICK: the SysTick timer clocked from the CPU, the default
//   on ARMv6-M and ARMv8-M Baseline (M0, M0+, M23), which have no CYCCNT.
// Unlike the qemu port's guest-instruction counts, these are real cycles:
// flash wait states, cache misses and interrupt handlers all show up, and
// two runs of the same script differ a little.
//
// The clock rate is MPPROF_CLOCK_HZ when defined, else the port's own figure
// (clock_get_hz(clk_sys) on rp2, SystemCoreClock on stm32); any other port
// must define MPPROF_CLOCK_HZ, or the build stops.
//
// The stream goes through RTT (read by a debug probe) or, with
// MPPROF_TRANSPORT_UART=1, in envelopes on the REPL link (mpprof_uart.h).

#include "py/mpconfig.h"
#include "py/mphal.h"
#include "mpprof_rt.h"
#include "mpprof_counter.h"
#include "mpprof_transport.h"

#if !defined(__arm__)
#error "mpprof_port_cortexm.c is for Arm Cortex-M cores"
#endif

// Pick the cycle source.
#if !defined(MPPROF_CLOCK_DWT) && !defined(MPPROF_CLOCK_SYSTICK)
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__)
#define MPPROF_CLOCK_DWT (1)
#elif defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#define MPPROF_CLOCK_SYSTICK (1)
#else
#error "mpprof: unknown Cortex-M architecture: define MPPROF_CLOCK_DWT or MPPROF_CLOCK_SYSTICK"
#endif
#endif
#ifndef MPPROF_CLOCK_DWT
#define MPPROF_CLOCK_DWT (0)
#endif
#ifndef MPPROF_CLOCK_SYSTICK
#define MPPROF_CLOCK_SYSTICK (0)
#endif
#if MPPROF_CLOCK_DWT == MPPROF_CLOCK_SYSTICK
#error "mpprof: define exactly one of MPPROF_CLOCK_DWT and MPPROF_CLOCK_SYSTICK"
#endif

#ifndef MPPROF_TARGET_NAME
#define MPPROF_TARGET_NAME "cortex-m"
#endif

#if !defined(MPPROF_CLOCK_HZ)
#if PICO_RP2040 || PICO_RP2350
#include "hardware/clocks.h"
#elif defined(STM32_HAL_H)
// Kept up to date by the stm32 port's clock set-up (CMSIS).
extern uint32_t SystemCoreClock;
#else
#error "mpprof: define MPPROF_CLOCK_HZ, the CPU clock in Hz, for this port"
#endif
#endif

#define REG32(addr) (*(volatile uint32_t *)(addr))

// Debug and trace (ARMv7-M / ARMv8-M Mainline).
#define DEMCR REG32(0xe000edfc)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL REG32(0xe0001000)
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_CTRL_NOCYCCNT (1u << 25)
#define DWT_CYCCNT REG32(0xe0001004)
#define DWT_LAR REG32(0xe0001fb0)

// SysTick, present on every Cortex-M.
#define SYST_CSR REG32(0xe000e010)
#define SYST_RVR REG32(0xe000e014)
#define SYST_CVR REG32(0xe000e018)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_CLKSOURCE (1u << 2)    // 1: the processor clock

// RP2040 and RP2350: SIO's CPUID register reads as the number of the core
// that reads it (what pico-sdk's get_core_num() reads).
#define SIO_CPUID REG32(0xd0000000)

static uint32_t cpu_hz;
static uint32_t last_count;
static mpprof_counter_t counter;
#if PICO_RP2040 || PICO_RP2350
static uint32_t main_core;
#endif

// The port's microsecond clock recovers counter turns a long call into C
// hid (mpprof_counter.h). MPPROF_US_CLOCK=0 leaves it out, for a port
// without mp_hal_ticks_us (the qemu port, where this file is run on an
// emulated Cortex-M3).
#ifndef MPPROF_US_CLOCK
#define MPPROF_US_CLOCK (1)
#endif
#if MPPROF_US_CLOCK
#define US_NOW() mp_hal_ticks_us()
#else
#define US_NOW() (0u)
#endif

#if MPPROF_CLOCK_DWT

// Start the counter; `turn` is set to its period in cycles (0: 2^32).
static bool counter_start(uint32_t *turn) {
    DEMCR |= DEMCR_TRCENA;
    // Cortex-M7 parts keep the DWT behind a software lock; elsewhere this
    // register ignores writes.
    DWT_LAR = 0xc5acce55;
    if (DWT_CTRL & DWT_CTRL_NOCYCCNT) {
        return false;
    }
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
    *turn = 0;
    return true;
}

static inline uint32_t counter_read(void) {
    return DWT_CYCCNT;
}

#else

static bool counter_start(uint32_t *turn) {
    if (SYST_CSR & SYST_CSR_ENABLE) {
        // The port runs SysTick already (stm32: its 1 kHz tick, with the
        // interrupt): leave it as it is and go by its reload value.
        #if !defined(MPPROF_CLOCK_HZ)
        if (!(SYST_CSR & SYST_CSR_CLKSOURCE)) {
            // Clocked from the external reference: its rate is not the CPU
            // clock, and counting it as cycles would be wrong.
            return false;
        }
        #endif
    } else {
        // Free-running from the CPU clock, the widest reload, and TICKINT
        // left clear (no interrupt): nothing else on the board notices.
        SYST_RVR = 0x00ffffff;
        SYST_CVR = 0;
        SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_ENABLE;
    }
    *turn = (SYST_RVR & 0x00ffffff) + 1;
    return *turn > 1;
}

static inline uint32_t counter_read(void) {
    return SYST_CVR;
}

#endif

bool mpprof_port_open(void) {
    #if defined(MPPROF_CLOCK_HZ)
    cpu_hz = MPPROF_CLOCK_HZ;
    #elif PICO_RP2040 || PICO_RP2350
    cpu_hz = clock_get_hz(clk_sys);
    #else
    cpu_hz = SystemCoreClock;
    #endif
    #if PICO_RP2040 || PICO_RP2350
    main_core = SIO_CPUID;
    #endif
    uint32_t turn;
    if (!counter_start(&turn) || !mpprof_counter_start(&counter, cpu_hz, turn, US_NOW())) {
        // No cycle counter we can trust: better no profile than a wrong one.
        return false;
    }
    // A counter that does not move (a locked or absent CYCCNT, a stopped
    // SysTick) would give a profile of zeros.
    uint32_t first = counter_read();
    for (volatile int i = 0; i < 8; i++) {
    }
    if (counter_read() == first) {
        return false;
    }
    mpprof_transport_init();
    last_count = counter_read();
    return true;
}

bool mpprof_port_write(const uint8_t *buf, size_t len) {
    return mpprof_transport_write(buf, len);
}

void mpprof_port_close(void) {
}

uint64_t mpprof_port_ticks(void) {
    if (!mpprof_port_is_main_thread()) {
        // Only the main thread moves the running total (and another core
        // would read its own counter: SysTick and DWT are per core). Other
        // threads get the last value; it times a collection they run.
        return counter.total;
    }
    uint32_t count = counter_read();
    #if MPPROF_CLOCK_DWT
    // CYCCNT counts up and wraps at 2^32.
    uint32_t elapsed = count - last_count;
    #else
    // SysTick counts down from the reload value to 0, then reloads.
    uint32_t elapsed = last_count >= count ? last_count - count : last_count + counter.turn - count;
    #endif
    last_count = count;
    return mpprof_counter_add(&counter, elapsed, US_NOW());
}

void mpprof_port_hide_begin(void) {
    // Nothing to hold: a tick here is as fine as an instruction or finer.
}

void mpprof_port_hide_end(void) {
}

void mpprof_port_align_ticks(void) {
    // Nothing to do. The qemu port restarts its timer because its ticks are
    // coarser than instructions and its runs are deterministic, so aligning
    // makes runs repeat exactly. Here a tick is one CPU cycle, finer than any
    // instruction, and real runs vary anyway (caches, wait states,
    // interrupts); restarting SysTick would also disturb a port that uses it.
}

uint64_t mpprof_port_clock_hz(void) {
    return cpu_hz;
}

const char *mpprof_port_clock_name(void) {
    #if MPPROF_CLOCK_DWT
    return "dwt";
    #else
    return "systick";
    #endif
}

const char *mpprof_port_target_name(void) {
    return MPPROF_TARGET_NAME;
}

bool mpprof_port_is_main_thread(void) {
    #if PICO_RP2040 || PICO_RP2350
    // Two cores: Python's main thread runs on core 0, a `_thread` thread on
    // core 1. The core that opened the stream is the main thread's.
    return SIO_CPUID == main_core;
    #elif MICROPY_PY_THREAD
    // One core shared by threads (stm32 with _thread): the main thread's
    // state is the one in mp_state_ctx.
    return mp_thread_get_state() == &mp_state_ctx.thread;
    #else
    return true;
    #endif
}
