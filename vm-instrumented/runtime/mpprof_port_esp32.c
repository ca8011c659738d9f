// mpprof port layer for the esp32 port under ESP-IDF 5.x (as MicroPython
// v1.25.0 builds it): ESP32, ESP32-S2 and ESP32-S3 (Xtensa LX6/LX7), and
// ESP32-C3 (RISC-V).
//
// Ticks are CPU cycles from esp_cpu_get_cycle_count(): the CCOUNT special
// register on Xtensa, the machine performance counter on RISC-V (set up by
// ESP-IDF at start-up to count cycles; MicroPython's time.ticks_cpu() reads
// the same register). Both are 32 bits and per core; the MicroPython task is
// pinned to one core (MP_TASK_COREID), so its reads all come from the same
// counter. The clock is named "ccount" on both architectures: the host reads
// it as CPU cycles either way. Changing the CPU clock while profiling
// (machine.freq()) changes what a tick is worth: the rate is read once, when
// the stream opens.
//
// The stream leaves in envelopes on the REPL link (mpprof_uart.h): RTT would
// need a JTAG probe and ESP-IDF's app-trace, which the port does not use.

#include "py/mpconfig.h"
#include "py/mphal.h"
#include "mpprof_rt.h"
#include "mpprof_counter.h"
#include "mpprof_uart.h"

#include "esp_cpu.h"
#include "esp_private/esp_clk.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

#if !MPPROF_TRANSPORT_UART
#error "mpprof on ESP32 sends its stream on the REPL link: build with MPPROF_TRANSPORT=uart"
#endif

#ifndef MPPROF_TARGET_NAME
#define MPPROF_TARGET_NAME CONFIG_IDF_TARGET // "esp32", "esp32c3", ... (sdkconfig.h)
#endif

static TaskHandle_t main_task;
static uint32_t cpu_hz;
static uint32_t last_count;
static mpprof_counter_t counter; // the 32-bit counter's wrap: mpprof_counter.h

bool mpprof_port_open(void) {
    // mp_init() runs in the MicroPython task: the main thread.
    main_task = xTaskGetCurrentTaskHandle();
    #if defined(MPPROF_CLOCK_HZ)
    cpu_hz = MPPROF_CLOCK_HZ;
    #else
    cpu_hz = (uint32_t)esp_clk_cpu_freq();
    #endif
    if (!mpprof_counter_start(&counter, cpu_hz, 0, mp_hal_ticks_us())) {
        return false;
    }
    last_count = esp_cpu_get_cycle_count();
    return true;
}

bool mpprof_port_write(const uint8_t *buf, size_t len) {
    return mpprof_uart_write(buf, len);
}

void mpprof_port_close(void) {
}

uint64_t mpprof_port_ticks(void) {
    if (!mpprof_port_is_main_thread()) {
        // Only the main task moves the running total (a `_thread` task may
        // run on the other core, whose counter is not ours). Other tasks get
        // the last value; it times a collection they run.
        return counter.total;
    }
    uint32_t count = esp_cpu_get_cycle_count();
    uint32_t elapsed = count - last_count;
    last_count = count;
    return mpprof_counter_add(&counter, elapsed, mp_hal_ticks_us());
}

void mpprof_port_hide_begin(void) {
    // Nothing to hold: a tick here is as fine as an instruction or finer.
}

void mpprof_port_hide_end(void) {
}

void mpprof_port_align_ticks(void) {
    // Nothing to do: a tick is one CPU cycle, finer than any instruction, and
    // real runs vary anyway (flash cache, Wi-Fi interrupts), so restarting the
    // counter would not make runs repeat (it is what the qemu port needs).
}

uint64_t mpprof_port_clock_hz(void) {
    return cpu_hz;
}

const char *mpprof_port_clock_name(void) {
    return "ccount";
}

const char *mpprof_port_target_name(void) {
    return MPPROF_TARGET_NAME;
}

bool mpprof_port_is_main_thread(void) {
    // `_thread` threads are FreeRTOS tasks of their own.
    return xTaskGetCurrentTaskHandle() == main_task;
}
