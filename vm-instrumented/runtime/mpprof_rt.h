// mpprof runtime: state shared by the hooks, the hooked VM copy, the wire
// encoder, the `mpprof` Python module and the port layer.

#ifndef MPPROF_RT_H
#define MPPROF_RT_H

#include "py/obj.h"
#include "py/bc.h"
#include "mpprof_hooks.h"

// Sizes. Everything lives in static memory: the runtime never allocates on the
// GC heap (it runs inside the allocator's hooks) nor with malloc (boards).
#ifndef MPPROF_MAX_DEPTH
#define MPPROF_MAX_DEPTH (4096)         // shadow frames; deeper frames run unprofiled
#endif
#ifndef MPPROF_MAX_CODES
#define MPPROF_MAX_CODES (4096)         // code objects (power of two)
#endif
#ifndef MPPROF_CALL_SITES
#define MPPROF_CALL_SITES (256)         // call-site cache entries (power of two)
#endif
#ifndef MPPROF_MAX_NODES
#define MPPROF_MAX_NODES (65536)        // calling-context tree nodes
#endif
#ifndef MPPROF_MAX_TYPES
#define MPPROF_MAX_TYPES (256)          // object types (power of two)
#endif
#ifndef MPPROF_COUNTER_WORDS
#define MPPROF_COUNTER_WORDS (1u << 20) // u32 opcode counters, shared by all code objects
#endif
#ifndef MPPROF_FRAME_PAYLOAD
#define MPPROF_FRAME_PAYLOAD (4096)     // wire frame payload bytes
#endif
#ifndef MPPROF_FLUSH_TICKS
#define MPPROF_FLUSH_TICKS (0)          // 0: mpprof_port_flush_ms() (20 ms)
#endif

// Allocation-site cache slots, in two-way sets: a site goes in its set's
// first way (slots below MPPROF_SITE_SLOTS / 2) unless another holds it.
// A slot below 128 repeats in one byte, one above in two; with 256 slots
// only the second ways are wide, so a program with fewer sites than sets
// has one-byte repeats nearly everywhere, and one with more (some 200 in
// upstream's bm_chaos) no longer describes them again and again (a SITE
// record costs some 700 instructions on the host). A power of two, 4 to
// 256.
#ifndef MPPROF_SITE_SLOTS
#define MPPROF_SITE_SLOTS (256)
#endif

// A code object (bytecode function) seen by the profiler.
typedef struct _mpprof_code_t {
    const uint8_t *bytecode;    // key: the function's data (prelude first)
    const mp_module_context_t *context; // for its qstr table
    uint32_t *counts;           // one counter per byte of bytecode, or NULL
    uintptr_t counts_bias;      // counts less bytecode * 4 (mpprof_frame_t)
    uint32_t n_counts;
    uint32_t id;                // wire code_id (1-based)
    uint16_t sent_epoch;        // described on the wire in this epoch
    uint8_t dirty;              // counts changed since the last flush
    uint8_t dead;               // its bytecode was freed: never matched again
    uint8_t kind;               // MPPROF_CODE_*: what runs in its frames
    uint8_t match;              // kind while alive, 0xFF once dead: what a
                                // call's lookup compares (one byte)
    struct _mpprof_code_t *next_dirty;
} mpprof_code_t;

// What a code object's frames run: bytecode through the hooked VM, or, with
// no bytecode to count, native or viper machine code, or the compiler.
enum {
    MPPROF_CODE_BYTECODE = 0,
    MPPROF_CODE_NATIVE = 1,
    MPPROF_CODE_VIPER = 2,
    MPPROF_CODE_COMPILE = 3,
};

// A node of the calling-context tree: a function called along one call path.
typedef struct _mpprof_node_t {
    uint32_t parent;            // index, 0 = root
    uint32_t first_child;
    uint32_t next_sibling;
    uint32_t next_dirty;
    mpprof_code_t *code;
    uint64_t ticks;             // inclusive, since the last flush
    uint32_t calls;
    uint32_t opcodes;
    uint16_t sent_epoch;
    uint8_t dirty;
} mpprof_node_t;

// One bytecode frame running through the hooked VM copy.
typedef struct _mpprof_frame_t {
    uintptr_t counts_bias;      // read by the hooked VM at each dispatch
    union {
        const uint8_t *base;    // a bytecode frame's code (code_state set)
        uintptr_t site_offset;  // a native or compile frame's allocations'
                                // offset in its caller (code_state NULL)
    };
    uint32_t node;
    mp_code_state_t *code_state; // NULL: a native or compile frame
    uint64_t enter_ticks;
    uint32_t enter_ops;         // the global opcode count at entry
    uint32_t child_ops;         // opcodes run by the frames it called
    #if MPPROF_LINE_TIME
    // Line time (mpprof_line.c): where this frame's line ticks go.
    uintptr_t line_bias;        // as counts_bias, into the line-time arrays
    uintptr_t line_slot;        // exact: the running opcode's inclusive slot
    uint64_t line_last;         // exact: the stamp at its dispatch
    uint64_t line_child;        // exact: callees' ticks since then
    uint32_t line_index;        // its code's first counter index
    uint32_t line_n;            // and how many counters it has
    #endif
} mpprof_frame_t;

extern mpprof_frame_t *mpprof_top_frame MPPROF_HIDDEN;

// The hooked copy of the VM (mpprof_vm.c).
mp_vm_return_kind_t mpprof_vm_execute_hooked(mp_code_state_t *code_state, volatile mp_obj_t inject_exc);

// The profiler's measured costs (calibrate()): per opcode, call,
// allocation, typed allocation and native call, an allocation record (its
// type looked up or told), what a SITE record adds to one, what a call
// adds when its node is not its caller's most recent callee, and per viper
// call.
#define MPPROF_COSTS (10)

// Port layer: each port (unix, qemu, boards) provides these.
bool mpprof_port_open(void);                          // true: a host is listening, start profiling
bool mpprof_port_write(const uint8_t *buf, size_t len); // false: the frame was dropped
void mpprof_port_close(void);
uint64_t mpprof_port_ticks(void);
uint64_t mpprof_port_clock_hz(void);
const char *mpprof_port_clock_name(void);
const char *mpprof_port_target_name(void);
bool mpprof_port_is_main_thread(void);
// What the hooks ask most, inline where the port can: the clock and the
// thread check. Ticks are the port's own; the wire carries them at
// mpprof_port_clock_hz(), a port whose counter runs at another rate
// (the unix port: the CPU's counter, nanoseconds on the wire) scaling each
// time as it is written.
#if MPPROF_PORT_UNIX
#include "mpprof_port_unix.h"
uint64_t mpprof_port_tick_hz(void);
uint64_t mpprof_port_wire_time(uint64_t ticks);
// What calibration measured (ticks per opcode, call, allocation, typed
// allocation, native call, 16.16), kept between runs: load returns how many earlier runs the
// costs come from (their median), 0 when the runtime must calibrate now;
// store keeps a fresh calibration's figures.
unsigned mpprof_port_costs_load(uint32_t costs[MPPROF_COSTS]);
void mpprof_port_costs_store(const uint32_t costs[MPPROF_COSTS]);
// Milliseconds between flushes (MPPROF_FLUSH_MS, else 20).
uint32_t mpprof_port_flush_ms(void);
#else
static inline uint64_t mpprof_ticks(void) {
    return mpprof_port_ticks();
}
static inline bool mpprof_main_thread(void) {
    return mpprof_port_is_main_thread();
}
#define mpprof_port_tick_hz() mpprof_port_clock_hz()
#define mpprof_port_wire_time(ticks) (ticks)
// Boards calibrate at every start: their figures take few instructions to
// measure (a deterministic clock needs one run) and nowhere to keep them.
#define mpprof_port_costs_load(costs) (0u)
#define mpprof_port_costs_store(costs) ((void)(costs))
#define mpprof_port_flush_ms() (20u)
#endif
// Called as a top-level frame starts: a port whose tick counter is coarser
// than its instructions restarts it here, so tick counts do not depend on
// how long the board idled before the script came.
void mpprof_port_align_ticks(void);
// Around the profiler's own work inside a running script (hooks): a port
// may hold clocks the script sees while it runs (so they count the script's
// time only) and restart a coarse tick counter after it, so the work's
// varying length does not shift where later ticks fall.
void mpprof_port_hide_begin(void);
void mpprof_port_hide_end(void);

// Wire encoder (mpprof_wire.c).
// The record helpers used on every allocation are inline; the frame buffer
// they write is the encoder's.
#define MPPROF_WIRE_HEADER (7)
extern uint8_t mpprof_wire_frame[];
extern size_t mpprof_wire_len;             // payload bytes in the open frame
extern uint32_t mpprof_wire_records;       // records in the open frame
void mpprof_wire_reset(void);
void mpprof_wire_flush(void);              // seal and send the current frame
void mpprof_wire_uint(uint64_t v);
void mpprof_wire_str(const char *s, size_t len, size_t max_len);
void mpprof_wire_bytes(const uint8_t *b, size_t len);

// Make room for a record of at most max_len bytes.
static inline void mpprof_wire_begin(size_t max_len) {
    if (mpprof_wire_len + max_len > MPPROF_FRAME_PAYLOAD) {
        mpprof_wire_flush();
    }
}

static inline void mpprof_wire_u8(uint8_t b) {
    mpprof_wire_frame[MPPROF_WIRE_HEADER + mpprof_wire_len++] = b;
}

static inline void mpprof_wire_end_record(void) {
    mpprof_wire_records++;
}
extern uint64_t mpprof_wire_dropped_records;
extern uint64_t mpprof_wire_dropped_frames;
extern uint16_t mpprof_wire_epoch;         // bumped when a frame is dropped

// Runtime entry points used by the `mpprof` module.
bool mpprof_active(void);
void mpprof_start(void);
void mpprof_stop(void);
void mpprof_mark(uint8_t tag, const char *label, size_t len);

#if MPPROF_LINE_TIME
// Line time (mpprof_line.c, built with MPPROF_LINE_TIME=1): per bytecode
// offset, ticks charged to the opcode running (exact, on boards and the
// emulated board) or profiling-timer samples of the running offset
// (MPPROF_LINE_SAMPLED, the unix port). The runtime (mpprof_rt.c) calls
// these from its frame hooks, table reset and flush.
uint64_t mpprof_now(void);                         // mpprof_rt.c: a stamp now
extern mpprof_frame_t *const mpprof_frames;        // mpprof_rt.c: the shadow stack
uint32_t mpprof_depth(void);                       // and its depth
void mpprof_line_enter(mpprof_frame_t *f, size_t index, size_t n);
void mpprof_line_leave(mpprof_frame_t *f, mpprof_frame_t *parent, uint64_t t);
void mpprof_line_reset(size_t used);
bool mpprof_line_dirty(size_t index, size_t n);
void mpprof_line_flush(uint32_t code_id, size_t index, size_t n);
void mpprof_line_flush_totals(void);
void mpprof_line_hello(void);                      // the LINE_CLOCK record
void mpprof_line_start(void);                      // recording (re)starts
void mpprof_line_stop(void);                       // recording stops
#define MPPROF_LINE(x) x
#else
#define MPPROF_LINE(x)
#endif

// Wire record tags (vm-instrumented/WIRE.md).
enum {
    MPPROF_TAG_HELLO = 0x01,
    MPPROF_TAG_CODE = 0x02,
    MPPROF_TAG_TYPE = 0x03,
    MPPROF_TAG_NODE = 0x04,
    MPPROF_TAG_SITE = 0x05,
    MPPROF_TAG_COUNTS = 0x06,
    MPPROF_TAG_NODE_STATS = 0x07,
    MPPROF_TAG_GC = 0x08,
    MPPROF_TAG_MARK = 0x09,
    MPPROF_TAG_REGION_BEGIN = 0x0A,
    MPPROF_TAG_REGION_END = 0x0B,
    MPPROF_TAG_ALLOC_FAIL = 0x0C,
    MPPROF_TAG_DROPPED = 0x0D,
    MPPROF_TAG_END = 0x0E,
    MPPROF_TAG_HEAP = 0x0F,
    MPPROF_TAG_START = 0x10,
    MPPROF_TAG_STOP = 0x11,
    MPPROF_TAG_ALLOC_REPEAT_WIDE = 0x12,
    MPPROF_TAG_COST = 0x40,
    MPPROF_TAG_CODE_MORE = 0x41,
    MPPROF_TAG_LINE_CLOCK = 0x42,
    MPPROF_TAG_LINE_TIME = 0x43,
    MPPROF_TAG_LINE_SAMPLES = 0x44,
    MPPROF_TAG_FROZEN_IMPORT = 0x45,
    MPPROF_TAG_FRAME_CODE = 0x50,
    MPPROF_TAG_ALLOC_REPEAT = 0x80,
};

#endif // MPPROF_RT_H
