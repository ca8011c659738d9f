// mpprof: the board transports. RTT by default (read by a debug probe, or by
// the host through qemu's gdbstub); with MPPROF_TRANSPORT_UART, envelopes on
// the REPL link (mpprof_uart.h).

#ifndef MPPROF_TRANSPORT_H
#define MPPROF_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if MPPROF_TRANSPORT_UART
#include "mpprof_uart.h"
static inline void mpprof_transport_init(void) {
}
static inline bool mpprof_transport_write(const uint8_t *buf, size_t len) {
    return mpprof_uart_write(buf, len);
}
#else
#include "mpprof_rtt.h"
static inline void mpprof_transport_init(void) {
    mpprof_rtt_init();
}
static inline bool mpprof_transport_write(const uint8_t *buf, size_t len) {
    return mpprof_rtt_write(buf, len);
}
#endif

#endif // MPPROF_TRANSPORT_H
