// mpprof: the clock the qemu port lacks before v1.27 (no `time`, no
// ticks_ms), so that `time` and asyncio work on the emulated board. As the
// port does itself from v1.27: SysTick on the 25 MHz processor clock with its
// interrupt at 1 kHz counting milliseconds, microseconds read from its
// current value. Built only for those versions (MPPROF_QEMU_HAL, set by the
// vm-instrumented crate); the mpprof port layer already holds and restarts
// a SysTick running with its interrupt (mpprof_port_qemu.c), so the clock
// counts only the script's own instructions and runs repeat exactly.
//
// The port's SysTick_Handler (mcu/arm/errorhandler.c) is a strong symbol
// that halts: the link wraps the vector table's reference to it
// (-Wl,--wrap=SysTick_Handler, micropython.mk), so ours below is called.

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/mperrno.h"

#if MPPROF_QEMU_HAL

#define SYST_CSR (*(volatile uint32_t *)0xe000e010)
#define SYST_RVR (*(volatile uint32_t *)0xe000e014)
#define SYST_CVR (*(volatile uint32_t *)0xe000e018)
#define SCB_ICSR (*(volatile uint32_t *)0xe000ed04)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2)
#define SCB_ICSR_PENDSTSET (1u << 26)

// The MPS2-AN385's processor clock.
#define CPU_HZ (25000000u)
#define TICKS_PER_MS (CPU_HZ / 1000u)

static volatile uint32_t ticks_ms_count;
static bool systick_started;

void __wrap_SysTick_Handler(void) {
    ticks_ms_count += 1;
}

static void systick_start(void) {
    // Started at the first reading: the port has no start-up hook of ours.
    if (!systick_started) {
        systick_started = true;
        SYST_RVR = TICKS_PER_MS - 1;
        SYST_CVR = 0;
        SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
    }
}

// Milliseconds and the cycles into the current one, read consistently: a
// reload whose interrupt is still pending counts as its millisecond.
static uint32_t read_clock(uint32_t *cycles_in_ms) {
    systick_start();
    for (;;) {
        uint32_t ms = ticks_ms_count;
        uint32_t cvr = SYST_CVR;
        bool pending = (SCB_ICSR & SCB_ICSR_PENDSTSET) != 0;
        if (ms != ticks_ms_count) {
            continue;
        }
        if (pending && cvr > TICKS_PER_MS / 2) {
            ms += 1;
        }
        *cycles_in_ms = TICKS_PER_MS - 1 - cvr;
        return ms;
    }
}

mp_uint_t mp_hal_ticks_ms(void) {
    uint32_t cycles;
    return read_clock(&cycles);
}

mp_uint_t mp_hal_ticks_us(void) {
    uint32_t cycles;
    uint32_t ms = read_clock(&cycles);
    return ms * 1000u + cycles / (CPU_HZ / 1000000u);
}

mp_uint_t mp_hal_ticks_cpu(void) {
    uint32_t cycles;
    uint32_t ms = read_clock(&cycles);
    return ms * TICKS_PER_MS + cycles;
}

#if defined(MPPROF_PORT_POLL)
#define POLL_CTRL_C() MPPROF_PORT_POLL()
#else
#define POLL_CTRL_C()
#endif

void mp_hal_delay_ms(mp_uint_t ms) {
    // Scheduled callbacks and a Ctrl-C run while waiting, as on the ports
    // with a clock (the qemu port reads its UART only at the REPL).
    mp_uint_t start = mp_hal_ticks_ms();
    while (mp_hal_ticks_ms() - start < ms) {
        POLL_CTRL_C();
        mp_event_handle_nowait();
    }
}

void mp_hal_delay_us(mp_uint_t us) {
    mp_uint_t start = mp_hal_ticks_us();
    while (mp_hal_ticks_us() - start < us) {
    }
}

#endif // MPPROF_QEMU_HAL
