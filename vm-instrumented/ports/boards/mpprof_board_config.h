// mpprof: configuration wrapper for real boards (rp2, stm32, esp32 and other
// ports), passed to the build as MP_CONFIGFILE: the port's own configuration
// first, then table sizes that fit a microcontroller, then the hooks.
//
// Every table is static RAM taken from what the port would otherwise give to
// its GC heap (the heap is what is left after .data and .bss on rp2 and
// stm32; on esp32 the heap comes from ESP-IDF's, which .bss shrinks too).
// Each size can be overridden with -D, or by editing a copy of this file.
// Byte counts are for a 32-bit core. MAX_CODES and MAX_TYPES must be powers
// of two (open-addressed tables, filled to 3/4 at most).

#include <mpconfigport.h>

// Shadow frames, 32 bytes each: 2 KiB. Deeper frames run unprofiled: their
// time counts in their caller's.
#ifndef MPPROF_MAX_DEPTH
#define MPPROF_MAX_DEPTH (64)
#endif

// Code objects, 36 bytes each: 4.5 KiB; up to 96 functions profiled.
#ifndef MPPROF_MAX_CODES
#define MPPROF_MAX_CODES (128)
#endif

// Calling-context tree nodes, 48 bytes each: 12 KiB.
#ifndef MPPROF_MAX_NODES
#define MPPROF_MAX_NODES (256)
#endif

// Call-site cache entries, 2 bytes each: 128 bytes. A call whose callee is
// not its caller's most recent finds its node here by where it was made,
// before a search of the caller's callees.
#ifndef MPPROF_CALL_SITES
#define MPPROF_CALL_SITES (64)
#endif

// Object types, 12 bytes each: 768 bytes; up to 48 types told apart.
#ifndef MPPROF_MAX_TYPES
#define MPPROF_MAX_TYPES (64)
#endif

// Native and viper functions and compiled sources with frames of their
// own, 36 bytes each: 576 bytes.
#ifndef MPPROF_MAX_EXTRA_CODES
#define MPPROF_MAX_EXTRA_CODES (16)
#endif

// Opcode counters, one 32-bit word per byte of profiled bytecode: 8 KiB,
// enough for 8 KiB of bytecode (a script of several hundred lines).
#ifndef MPPROF_COUNTER_WORDS
#define MPPROF_COUNTER_WORDS (2048)
#endif

// Allocation-site cache slots, 24 bytes each: 3 KiB. A program with more
// sites live at once than this describes some again (a longer record, more
// time hidden, never a wrong figure); 256 (the host's) takes 6 KiB.
#ifndef MPPROF_SITE_SLOTS
#define MPPROF_SITE_SLOTS (128)
#endif

// One wire frame being filled: 1024 + 11 bytes. Not smaller: a CODE record
// (names and line table) takes up to 957 bytes of one frame.
#ifndef MPPROF_FRAME_PAYLOAD
#define MPPROF_FRAME_PAYLOAD (1024)
#endif

// The RTT up-buffer (RTT transport only): 8 KiB, room for a few flushes
// while the probe is slow to drain it; a full buffer drops whole frames,
// which the stream reports.
#ifndef MPPROF_RTT_UP_SIZE
#define MPPROF_RTT_UP_SIZE (8 * 1024)
#endif

// Fixed costs, whatever the sizes above: the allocation cache's
// which-way-last (a byte per two slots), the built-in types recognised by their size
// (128 entries of 8 bytes, 1 KiB), the runtime's state (about 150 bytes), the
// `mpprof` module's region labels (about 1.1 KiB), the wire encoder's
// counters (66 bytes) and the port layer's (28 bytes).
//
// Static RAM of the whole runtime with these sizes, on a 32-bit Cortex-M
// (.data + .bss of the mpprof objects, measured with arm-none-eabi-size by
// vm-instrumented's board_ports test, which checks these figures):
//   UART transport: 35468 bytes (34.6 KiB)
//   RTT transport: 43749 bytes (42.7 KiB: adds the up-buffer, the control
//   block and a 16-byte down-buffer)
// On PYBV11, whose GC heap is what is left of its 128 KiB main RAM (about
// 100 KiB without mpprof), that is a third to two fifths of the heap; the
// RP2040 (264 KiB of RAM) has room for larger tables.

#include "mpprof_hooks.h"
