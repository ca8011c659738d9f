// mpprof: an RTT control block (SEGGER's published layout) carrying the wire
// frames in its up-buffer 0. A debug probe, or qemu's gdbstub, finds the block
// by its id (or the `_SEGGER_RTT` symbol) and drains the buffer while the
// target runs. Shared by the qemu port and real Cortex-M boards.

#ifndef MPPROF_RTT_H
#define MPPROF_RTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void mpprof_rtt_init(void);
// Copy a whole frame into the up-buffer; false (nothing written) when the
// buffer has no room for all of it: a frame is never split.
bool mpprof_rtt_write(const uint8_t *buf, size_t len);

#endif // MPPROF_RTT_H
