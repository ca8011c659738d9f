// mpprof: framed-UART transport (see mpprof_uart.h).

#include "py/mpconfig.h"
#include "py/mphal.h"
#include "mpprof_uart.h"

// Escaped bytes are gathered in a small stack buffer and written in runs, so
// the port's output routine is called a few times per frame, not per byte.
#define CHUNK (64)

static bool send(const uint8_t *b, size_t n) {
    return mp_hal_stdout_tx_strn((const char *)b, n) == n;
}

bool mpprof_uart_write(const uint8_t *buf, size_t len) {
    uint8_t chunk[CHUNK];
    size_t n = 0;
    bool ok = true;
    chunk[n++] = MPPROF_UART_START;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = buf[i];
        if (n + 2 > CHUNK) {
            ok &= send(chunk, n);
            n = 0;
        }
        if (b >= MPPROF_UART_ESCAPE) {
            chunk[n++] = MPPROF_UART_ESCAPE;
            b ^= 0x20;
        }
        chunk[n++] = b;
    }
    if (n + 1 > CHUNK) {
        ok &= send(chunk, n);
        n = 0;
    }
    chunk[n++] = MPPROF_UART_END;
    ok &= send(chunk, n);
    return ok;
}
