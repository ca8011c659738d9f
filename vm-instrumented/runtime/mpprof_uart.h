// mpprof: framed-UART transport, for boards without a debug probe.
//
// Wire frames travel on the board's REPL link (UART or USB-CDC), interleaved
// with the REPL's own text. Each frame is sent in an envelope the host can
// split from text without guessing: 0xFE, the frame with every 0xFD, 0xFE and
// 0xFF byte escaped as 0xFD followed by the byte XOR 0x20, then 0xFF. Bytes
// 0xF5..0xFF never occur in UTF-8, so nothing a script prints looks like an
// envelope, and a frame never contains the raw REPL's control bytes' meaning
// for the host: the host removes envelopes before it parses the REPL.

#ifndef MPPROF_UART_H
#define MPPROF_UART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MPPROF_UART_START (0xFE)
#define MPPROF_UART_END (0xFF)
#define MPPROF_UART_ESCAPE (0xFD)

// Send one wire frame on the REPL link. Blocks like print() does; returns
// false only when the port's output accepted fewer bytes than given.
bool mpprof_uart_write(const uint8_t *buf, size_t len);

#endif // MPPROF_UART_H
