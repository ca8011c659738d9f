// mpprof port layer for the qemu port on MPS2-AN385 (Cortex-M3): the stream
// leaves through RTT, read by the host through qemu's gdbstub as a probe
// would read a board, or, built with MPPROF_TRANSPORT_UART, in envelopes on
// the REPL's UART (mpprof_uart.h); ticks come from the CMSDK timer0, a 32-bit down-counter
// at 25 MHz (qemu does not implement the DWT cycle counter). Under
// `-icount shift=N` the timer advances with guest instructions, so tick
// counts are deterministic: they are guest-instruction counts, not real
// Cortex-M3 cycles.

#include "py/mpconfig.h"
#include "mpprof_rt.h"
#include "mpprof_transport.h"

#define TIMER0_CTRL (*(volatile uint32_t *)0x40000000)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004)
#define TIMER0_RELOAD (*(volatile uint32_t *)0x40000008)
#define SYST_CSR (*(volatile uint32_t *)0xe000e010)
#define SYST_CVR (*(volatile uint32_t *)0xe000e018)
#define SCB_ICSR (*(volatile uint32_t *)0xe000ed04)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SCB_ICSR_PENDSTCLR (1u << 25)

static uint32_t last_value;
static uint64_t ticks_high;

bool mpprof_port_open(void) {
    mpprof_transport_init();
    TIMER0_RELOAD = 0xffffffff;
    TIMER0_VALUE = 0xffffffff;
    TIMER0_CTRL = 1; // enable, no interrupt
    last_value = TIMER0_VALUE;
    ticks_high = 0;
    return true;
}

bool mpprof_port_write(const uint8_t *buf, size_t len) {
    return mpprof_transport_write(buf, len);
}

void mpprof_port_close(void) {
}

uint64_t mpprof_port_ticks(void) {
    // Extend the down-counter to 64 bits; it wraps every 171 s, and ticks are
    // read far more often than that.
    uint32_t v = TIMER0_VALUE;
    ticks_high += (uint32_t)(last_value - v);
    last_value = v;
    return ticks_high;
}

// SysTick held while the profiler works (see mpprof_port_hide_begin).
static bool systick_held;

static void restart_timer0(void) {
    mpprof_port_ticks();
    TIMER0_VALUE = 0xffffffff;
    last_value = 0xffffffff;
}

void mpprof_port_align_ticks(void) {
    // Restart the counter, so its 40 ns ticks fall at the same instructions
    // of the script on every run, whatever the idle time before it.
    restart_timer0();
    // From v1.27 the qemu port runs SysTick with its interrupt (its 1 kHz
    // ticks_ms): restart that too, so its interrupts also fall at the same
    // instructions on every run (the port's clock loses under 1 ms each time).
    if (systick_held
        || (SYST_CSR & (SYST_CSR_ENABLE | SYST_CSR_TICKINT)) == (SYST_CSR_ENABLE | SYST_CSR_TICKINT)) {
        SCB_ICSR = SCB_ICSR_PENDSTCLR;
        SYST_CVR = 0;
    }
}

void mpprof_port_hide_begin(void) {
    // SysTick (v1.27+: ticks_ms) counts only the script's own instructions,
    // so its interrupts fall at the same places in the script however long
    // the profiler's work took, and ticks_ms does not see that work.
    if ((SYST_CSR & (SYST_CSR_ENABLE | SYST_CSR_TICKINT)) == (SYST_CSR_ENABLE | SYST_CSR_TICKINT)) {
        SYST_CSR &= ~SYST_CSR_ENABLE;
        systick_held = true;
    }
}

void mpprof_port_hide_end(void) {
    restart_timer0();
    if (systick_held) {
        systick_held = false;
        SYST_CSR |= SYST_CSR_ENABLE;
    }
}

uint64_t mpprof_port_clock_hz(void) {
    return 25000000u;
}

const char *mpprof_port_clock_name(void) {
    return "timer0";
}

const char *mpprof_port_target_name(void) {
    return "qemu";
}

bool mpprof_port_is_main_thread(void) {
    return true;
}

#if defined(MPPROF_PORT_POLL) && MICROPY_KBD_EXCEPTION
#include "py/runtime.h"
#include "shared/runtime/interrupt_char.h"

#define UART0_DATA (*(volatile uint32_t *)0x40004000)
#define UART0_STATE (*(volatile uint32_t *)0x40004004)
#define UART_STATE_RXFULL (1 << 1)

void mpprof_port_qemu_poll(void) {
    // Nothing else is read from the UART while a script runs (the raw REPL
    // sends the next script only after this one ends), so a byte here is the
    // host's Ctrl-C; anything else is dropped, as a busy board would.
    if ((UART0_STATE & UART_STATE_RXFULL) && (int)(UART0_DATA & 0xff) == mp_interrupt_char) {
        mp_sched_keyboard_interrupt();
    }
}
#else
void mpprof_port_qemu_poll(void) {
}
#endif
