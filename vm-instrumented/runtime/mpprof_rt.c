// mpprof runtime: the hooks' bodies.
//
// Frame enter/leave keep a shadow stack and a calling-context tree with call
// counts and inclusive ticks; the hooked VM copy counts opcodes per bytecode
// offset into a counter array per code object; the GC hooks turn allocations
// into site events. Counts are aggregated here and flushed as deltas, so the
// stream stays small. Nothing here allocates on the GC heap.

#include <string.h>

#include "py/runtime.h"
#include "py/gc.h"
#include "py/objtype.h"
#include "py/objlist.h"
#include "py/objarray.h"
#include "py/objexcept.h"
#include "py/objstr.h"
#include "py/objfun.h"
#include "py/smallint.h"
#include "py/builtin.h"
#include "py/bc0.h"
#include "mpprof_rt.h"

uint8_t mpprof_vm_hooked;
mpprof_frame_t *mpprof_top_frame;
// Opcodes until the next look at the clock (flushes, Ctrl-C polling); the
// global opcode count is rt.ops_end - countdown (32 bits:
// only differences are used, and a node's opcodes are 32 bits too).
#define OP_TICK_PERIOD (4096)
uint32_t mpprof_op_countdown = OP_TICK_PERIOD;

#if MICROPY_PY_BUILTINS_FLOAT
// A float object, mirrored from py/objfloat.c (where the struct is private) to
// know its size.
typedef struct {
    mp_obj_base_t base;
    mp_float_t value;
} mpprof_float_obj_t;
#endif

typedef struct {
    const mp_obj_type_t *type;
    uint32_t id;
    uint16_t sent_epoch;
} mpprof_type_t;

// An allocation-site cache slot, mirrored by the host's decoder (which
// knows the type by its id; the slot keeps the type itself, so a repeat
// needs no type lookup).
typedef struct {
    uint32_t key;       // site_key(): which way of its set to look at
    uint32_t node;
    uint32_t offset;
    const mp_obj_type_t *type;
    uint32_t bytes;
    uint8_t kind;
    uint16_t epoch;
} mpprof_slot_t;

// The newest allocation, typed when the next event comes (its constructor has
// set the type by then).
typedef struct {
    void *ptr;
    size_t n_bytes;
    uint32_t node;
    uint32_t offset;
    uint8_t kind;       // 0 new, 1 growth, 2 a heap frame (fun_bc_call)
    bool exact;         // mp_obj_malloc set the type
    uint32_t record_q16; // the cost of its record: its type looked up or told
    bool valid;
} mpprof_pending_t;

// Static types whose objects are made with m_new_obj (not mp_obj_malloc),
// with the exact size such an object is requested with. An allocation whose
// first word is one of these and whose size matches is that object; anything
// else without an exact type is a raw buffer. Comparing pointers never reads
// through a raw buffer's contents.
typedef struct {
    const mp_obj_type_t *type;
    size_t size;
} mpprof_known_type_t;

// Each has a slot of its own, addressed by a multiplier chosen at start so
// that no two share one. Looking a first word up then costs the same
// instructions whether it is one of them or not, and wherever it hashes:
// an allocation's record is a fixed, measured cost (calibration's float
// hits; a raw buffer misses), which a probe sequence, its length depending
// on the word, would not be.
// A power of two; the host has room for more (MPPROF_KNOWN_SLOTS), where a
// multiplier that spreads the types is found in a few tries at start.
#ifndef MPPROF_KNOWN_SLOTS
#define MPPROF_KNOWN_SLOTS (128)
#endif
#define KNOWN_SLOTS (MPPROF_KNOWN_SLOTS)
_Static_assert(KNOWN_SLOTS >= 64 && KNOWN_SLOTS <= 4096 && (KNOWN_SLOTS & (KNOWN_SLOTS - 1)) == 0,
    "MPPROF_KNOWN_SLOTS: a power of two from 64 to 4096");
#define KNOWN_TYPES_MAX (48) // of the few dozen types below, at most

static struct {
    bool open;              // a host listens
    bool recording;         // between start() and stop()
    bool in_hook;           // guards against our own reads re-entering
    uint8_t gates;          // GATE_*: what recording, calibrating and
                            // in_hook let the hooks do (update_gates())
    uint64_t flush_ticks;
    uint64_t last_flush;
    // The profiler's own time, taken out of every time it reports (see
    // stamp()): the clock at the start, the ticks its slow paths spent
    // between two clock reads, and the measured cost of its fast paths
    // (calibrate()), all in one 16.16 sum.
    uint64_t offset_q16;
    uint64_t hidden;        // the bracketed part alone (calibration reads it)
    uint32_t hiding;        // brackets open: only the outermost counts
    uint32_t ops_end;       // the count when the current countdown runs out
    uint64_t ops_cost_q16;  // the measured cost of the opcodes counted
                            // before the current countdown, 16.16
    uint32_t calls;         // frames handed to the hooked VM
    uint32_t native_calls;  // native and viper frames opened
    uint32_t allocs_seen;   // allocation hooks that recorded
    uint32_t op_cost_q16;   // ticks per counted opcode, 16.16 fixed point
    uint32_t call_cost_q16; // ticks per call, the hooks' fast paths included
    uint32_t alloc_cost_q16; // the same for an allocation (its type read
                            // from its first word, if it has one)
    uint32_t typed_alloc_cost_q16; // for an object mp_obj_malloc typed,
                            // whose path is another
    uint32_t native_cost_q16; // the same for a native call
    uint32_t viper_cost_q16; // and for a viper call (its machine code's
                            // address is found another way: another cost)
    // An allocation's record is written when the next event comes (its type
    // is known only then), often in another line or frame: its part of the
    // allocation's cost is taken out there, the rest by the allocation hook.
    uint32_t guessed_record_q16; // a record whose type is looked up
    uint32_t direct_record_q16;  // one whose type is told (or a growth)
    uint32_t site_miss_q16;      // what a SITE record adds to a repeat's cost, unhidden
    uint32_t node_miss_q16;      // what a call adds when its node is not the recent one, unhidden
    uint32_t alloc_note_q16;     // alloc_cost_q16 less guessed_record_q16
    uint32_t typed_record_q16;   // a typed allocation's record: its own
                                 // cost and what the typed path costs
                                 // beside the allocation hook's note
    uint32_t cost_runs;     // the costs are the median of this many earlier
                            // runs' calibrations (0: measured at this start)
    bool calibrating;       // frames run hooked, nothing is recorded
    bool calibrating_allocs; // allocation hooks do their work too (calibrate())
    size_t used_bytes;
    size_t peak_used;
    uint64_t alloc_bytes;
    uint64_t alloc_count;
    uint64_t collections;
    uint64_t gc_ticks;
    uint64_t gc_start;
    size_t used_before_gc;
    uint32_t unprofiled_frames;
    uint8_t end_reason;
    mpprof_pending_t pending;
    uint32_t n_codes;
    uint32_t n_types;
    uint32_t n_nodes;
    size_t counters_used;
    uint32_t dirty_nodes;   // head of the dirty-node list, 0 = empty
    mpprof_code_t *dirty_codes;
    size_t heap_total;
    bool used_stale;        // a collection went unrecorded: recount the heap
    uint32_t frozen_node;   // the import site last told FROZEN_IMPORT (node 0: none)
    uint32_t frozen_offset;
} rt;

// Each hook's first test is one byte, made of the flags it depends on
// whenever one of them changes: three loads and branches were a few
// instructions of every call and allocation.
enum {
    GATE_FRAMES = 1,  // bytecode and native frames (recording or calibrating)
    GATE_COMPILE = 2, // compile frames (recording only)
    GATE_ALLOCS = 4,  // allocation records (recording, or calibrating them)
};

// Whether the tables are as static memory starts them, all zero: nothing
// has run hooked since they were cleared (reset_tables() then need not
// clear them again: some 40,000 instructions of every start on the host).
static bool tables_clean = true;

static inline void update_gates(void) {
    uint8_t g = 0;
    if (!rt.in_hook) {
        g |= (rt.recording || rt.calibrating) ? GATE_FRAMES : 0;
        g |= rt.recording ? GATE_COMPILE : 0;
        g |= (rt.recording || rt.calibrating_allocs) ? GATE_ALLOCS : 0;
    }
    rt.gates = g;
    if (g != 0) {
        // Hooks may now fill the tables.
        tables_clean = false;
    }
}

// The shadow stack. Its top is mpprof_top_frame (NULL: empty), the one
// thing the fast paths read and write; the depth is derived from it.
static mpprof_frame_t frames[MPPROF_MAX_DEPTH];

static inline uint32_t depth_now(void) {
    return mpprof_top_frame != NULL ? (uint32_t)(mpprof_top_frame - frames) + 1 : 0;
}
static mpprof_code_t codes[MPPROF_MAX_CODES];
static mpprof_node_t nodes[MPPROF_MAX_NODES];
static mpprof_type_t types[MPPROF_MAX_TYPES];
static uint32_t counters[MPPROF_COUNTER_WORDS];
static mpprof_slot_t slots[MPPROF_SITE_SLOTS];
#define SITE_SETS (MPPROF_SITE_SLOTS / 2)
_Static_assert(MPPROF_SITE_SLOTS >= 4 && MPPROF_SITE_SLOTS <= 256
    && (MPPROF_SITE_SLOTS & (MPPROF_SITE_SLOTS - 1)) == 0, "MPPROF_SITE_SLOTS: a power of two from 4 to 256");
// The slots are two-way sets (a site may go in either slot of its set; the
// host is told which): a loop whose sites collide in one slot would
// otherwise describe each anew every time. Set s is slots s and
// s + SITE_SETS. The way each set used last.
static uint8_t slot_recent[SITE_SETS];
static mpprof_known_type_t known_types[KNOWN_SLOTS];
static uint32_t known_mul;

// The global count of opcodes the hooked VM has dispatched.
static inline uint32_t ops_now(void) {
    return rt.ops_end - mpprof_op_countdown;
}

// What the opcodes counted so far cost, in 16.16: the countdowns run out
// (mpprof_op_tick()) and the current one's so far.
static inline uint64_t ops_cost_now(void) {
    return rt.ops_cost_q16 + (uint64_t)(OP_TICK_PERIOD - mpprof_op_countdown) * rt.op_cost_q16;
}

// A raw clock reading as the time the code would have reached without the
// profiler: every figure is a difference of these, so none includes the
// profiler's own cost, and none depends on when flushes fall. The cost is
// what the hooks' slow paths took, read around them, and for their fast
// paths (the counting at each opcode, the frame hooks, the allocation
// hooks) the measured cost of one, times how many there were: calls and
// allocations add theirs as they happen, opcodes' from their count.
static inline uint64_t stamp(uint64_t raw) {
    return raw - ((rt.offset_q16 + ops_cost_now()) >> 16);
}

#if MPPROF_LINE_TIME
// Line time's stamps (mpprof_line.c) are full stamps, and a frame's time is
// its lines' (its callees' included): its stamps are full stamps too.
static inline uint64_t frame_stamp(uint64_t raw) {
    return stamp(raw);
}

static inline uint64_t frame_ticks(uint64_t elapsed, uint32_t ops) {
    (void)ops;
    return elapsed;
}
#else
// A frame's own two stamps leave the opcodes' cost in (no 64-bit sum at
// every call and return): the cost of the `ops` opcodes it and its callees
// ran comes out of its time when it ends, from their count (rounded: no
// bias of half a tick per frame).
static inline uint64_t frame_stamp(uint64_t raw) {
    return raw - (rt.offset_q16 >> 16);
}

static inline uint64_t frame_ticks(uint64_t elapsed, uint32_t ops) {
    // A native frame that called no bytecode ran none: no multiply.
    return ops == 0 ? elapsed : elapsed - (((uint64_t)ops * rt.op_cost_q16 + 0x8000) >> 16);
}
#endif

static inline uint64_t frame_now(void) {
    return frame_stamp(mpprof_ticks());
}

static inline uint64_t now(void) {
    return stamp(mpprof_ticks());
}

static inline void add_hidden(uint64_t ticks) {
    rt.hidden += ticks;
    rt.offset_q16 += ticks << 16;
}

// A hook's slow path begins (writing records, describing code, sending a
// frame: work whose length varies): the raw clock now. Brackets may nest
// (a flush inside a mark); only the outermost is counted.
// A port whose ticks are as fine as instructions holds nothing while the
// profiler works (MPPROF_PORT_HIDES 0): no call at all then.
#ifndef MPPROF_PORT_HIDES
#define MPPROF_PORT_HIDES (0)
#endif

static inline uint64_t hide_begin(void) {
    #if MPPROF_PORT_HIDES
    if (rt.hiding == 0) {
        mpprof_port_hide_begin();
    }
    #endif
    rt.hiding++;
    return mpprof_ticks();
}

// Hide the time since the raw reading `h0`; returns the current time. A
// slow path can vary in length (a frame sent or not, a ring buffer
// wrapping): the port puts the next tick boundaries at the same
// instructions whatever it did, so times on a deterministic target repeat
// to the tick.
static inline uint64_t hide_until(uint64_t h0) {
    if (--rt.hiding != 0) {
        return mpprof_ticks();
    }
    #if MPPROF_PORT_HIDES
    mpprof_port_hide_end();
    #endif
    uint64_t r = mpprof_ticks();
    add_hidden(r - h0);
    return r;
}

static inline uint64_t hide_since(uint64_t h0) {
    return stamp(hide_until(h0));
}

static inline void hide_end(uint64_t h0) {
    if (--rt.hiding != 0) {
        return;
    }
    #if MPPROF_PORT_HIDES
    mpprof_port_hide_end();
    #endif
    add_hidden(mpprof_ticks() - h0);
}

#if MPPROF_LINE_TIME
// What line time (mpprof_line.c) needs from here.
mpprof_frame_t *const mpprof_frames = frames;

uint32_t mpprof_depth(void) {
    return depth_now();
}

uint64_t mpprof_now(void) {
    return now();
}
#endif

static inline size_t blocks_bytes(size_t n_bytes) {
    return (n_bytes + MICROPY_BYTES_PER_GC_BLOCK - 1) & ~(size_t)(MICROPY_BYTES_PER_GC_BLOCK - 1);
}

static void note_used(void) {
    if (rt.used_bytes > rt.peak_used) {
        rt.peak_used = rt.used_bytes;
    }
}

/******************************************************************************/
// Definitions sent on first use (and again after the transport dropped frames).

static void send_code(mpprof_code_t *code);
static void send_node(uint32_t idx);

static void ensure_code(mpprof_code_t *code) {
    if (code->sent_epoch != mpprof_wire_epoch) {
        send_code(code);
    }
}

static void ensure_node(uint32_t idx) {
    if (idx != 0 && nodes[idx].sent_epoch != mpprof_wire_epoch) {
        send_node(idx);
    }
}

static size_t uint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

// CODE_MORE records: bytes [from, total) of a CODE record's line table
// (part 0) or bytecode (part 1), in pieces that each fit a frame.
static void send_code_more(uint32_t code_id, unsigned part, const byte *data, size_t from, size_t total) {
    const size_t head = 1 + 10 + 10 + 1 + 10 + 10 + 10;
    const size_t chunk_max = MPPROF_FRAME_PAYLOAD > head + 16 ? MPPROF_FRAME_PAYLOAD - head : 16;
    while (from < total) {
        size_t n = total - from < chunk_max ? total - from : chunk_max;
        size_t body = uint_size(code_id) + 1 + uint_size(from) + uint_size(total) + uint_size(n) + n;
        mpprof_wire_begin(1 + uint_size(body) + body);
        mpprof_wire_u8(MPPROF_TAG_CODE_MORE);
        mpprof_wire_uint(body);
        mpprof_wire_uint(code_id);
        mpprof_wire_u8(part);
        mpprof_wire_uint(from);
        mpprof_wire_uint(total);
        mpprof_wire_bytes(data + from, n);
        mpprof_wire_end_record();
        from += n;
    }
}

static void send_extra_code(mpprof_code_t *code);

// Where a bytecode function's prelude puts things: its names (the block's,
// then its arguments'), the line table after them, and the first opcode.
typedef struct {
    const byte *names;
    const byte *line_info_top;
    const byte *bytecode_start;
    size_t n_names;
} mpprof_prelude_t;

static mpprof_prelude_t code_prelude(const mpprof_code_t *code) {
    const byte *ip = code->bytecode;
    MP_BC_PRELUDE_SIG_DECODE(ip);
    MP_BC_PRELUDE_SIZE_DECODE(ip);
    (void)n_state;
    (void)n_exc_stack;
    (void)scope_flags;
    (void)n_def_pos_args;
    mpprof_prelude_t pr = {
        .names = ip,
        .line_info_top = ip + n_info,
        .bytecode_start = ip + n_info + n_cell,
        .n_names = 1 + n_pos_args + n_kwonly_args,
    };
    return pr;
}

// The name in a bytecode function's prelude (`<module>`: a module's top
// level).
static qstr code_block_name(const mpprof_code_t *code) {
    qstr name = mp_decode_uint_value(code_prelude(code).names);
    #if MICROPY_EMIT_BYTECODE_USES_QSTR_TABLE
    name = code->context->constants.qstr_table[name];
    #endif
    return name;
}

static void send_code(mpprof_code_t *code) {
    if (code->kind != MPPROF_CODE_BYTECODE) {
        send_extra_code(code);
        return;
    }
    mpprof_prelude_t pr = code_prelude(code);
    const byte *line_info_top = pr.line_info_top;
    const byte *bytecode_start = pr.bytecode_start;
    qstr block_name = code_block_name(code);
    const byte *ip = pr.names;
    for (size_t i = 0; i < pr.n_names; ++i) {
        ip = mp_decode_uint_skip(ip);
    }
    const mp_module_context_t *context = code->context;
    #if MICROPY_EMIT_BYTECODE_USES_QSTR_TABLE
    qstr source_file = context->constants.qstr_table[0];
    #else
    qstr source_file = context->constants.source_file;
    #endif
    size_t bc_start = bytecode_start - code->bytecode;
    size_t line_info_len = line_info_top > ip ? (size_t)(line_info_top - ip) : 0;
    size_t code_len = code->n_counts > bc_start ? code->n_counts - bc_start : 0;
    // A record never spans two frames: the CODE record carries the names and
    // as much of the line table, then of the bytecode, as fits; CODE_MORE
    // records carry the rest, right after it (WIRE.md), so a description of
    // any length reaches the host whole.
    const size_t name_max = 128, file_max = 256;
    size_t fixed = 1 + 10 + (10 + name_max) + (10 + file_max) + 10 + 10 + 10;
    size_t room = MPPROF_FRAME_PAYLOAD > fixed ? MPPROF_FRAME_PAYLOAD - fixed : 0;
    size_t line_first = line_info_len < room ? line_info_len : room;
    room -= line_first;
    size_t code_first = code_len < room ? code_len : room;
    size_t name_len, file_len;
    const char *name = (const char *)qstr_data(block_name, &name_len);
    const char *file = (const char *)qstr_data(source_file, &file_len);
    // A frame dropped while the description is sent leaves the epoch
    // changed: the code then counts as not sent, and is described again.
    uint16_t epoch = mpprof_wire_epoch;
    mpprof_wire_begin(fixed + line_first + code_first);
    mpprof_wire_u8(MPPROF_TAG_CODE);
    mpprof_wire_uint(code->id);
    mpprof_wire_str(name, name_len, name_max);
    mpprof_wire_str(file, file_len, file_max);
    mpprof_wire_uint(bc_start);
    mpprof_wire_bytes(ip, line_first);
    mpprof_wire_bytes(bytecode_start, code_first);
    mpprof_wire_end_record();
    send_code_more(code->id, 0, ip, line_first, line_info_len);
    send_code_more(code->id, 1, bytecode_start, code_first, code_len);
    code->sent_epoch = epoch;
}

static void send_node(uint32_t idx) {
    mpprof_node_t *n = &nodes[idx];
    uint16_t epoch;
    do {
        epoch = mpprof_wire_epoch;
        ensure_node(n->parent);
        ensure_code(n->code);
        mpprof_wire_begin(1 + 3 * 10);
    } while (epoch != mpprof_wire_epoch);
    mpprof_wire_u8(MPPROF_TAG_NODE);
    mpprof_wire_uint(idx);
    mpprof_wire_uint(n->parent);
    mpprof_wire_uint(n->code->id);
    mpprof_wire_end_record();
    n->sent_epoch = mpprof_wire_epoch;
}

static void send_type(mpprof_type_t *t) {
    const mp_obj_type_t *type = t->type;
    uint32_t flags = 0;
    if (mp_obj_is_instance_type(type)) {
        flags |= 1;
    }
    if (mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(type), MP_OBJ_FROM_PTR(&mp_type_BaseException))) {
        flags |= 2;
    }
    size_t name_len;
    const char *name = (const char *)qstr_data(type->name, &name_len);
    mpprof_wire_begin(1 + 2 * 10 + 10 + 64);
    mpprof_wire_u8(MPPROF_TAG_TYPE);
    mpprof_wire_uint(t->id);
    mpprof_wire_uint(flags);
    mpprof_wire_str(name, name_len, 64);
    mpprof_wire_end_record();
    t->sent_epoch = mpprof_wire_epoch;
}

/******************************************************************************/
// Tables.

static mpprof_code_t *code_lookup(const mp_obj_fun_bc_t *fun) {
    const uint8_t *bytecode = fun->bytecode;
    uint32_t h = ((uintptr_t)bytecode >> 4) * 2654435761u;
    for (uint32_t i = 0; i < MPPROF_MAX_CODES; i++) {
        mpprof_code_t *c = &codes[(h + i) & (MPPROF_MAX_CODES - 1)];
        if (c->bytecode == bytecode && !c->dead) {
            return c;
        }
        if (c->bytecode == NULL) {
            if (rt.n_codes >= MPPROF_MAX_CODES * 3 / 4) {
                return NULL;
            }
            // A function's first call: a slow path.
            uint64_t h0 = hide_begin();
            // Bytecode compiled at run time lives on the GC heap, and its
            // block size bounds the offsets the counters must cover.
            size_t len = gc_nbytes(bytecode);
            c->bytecode = bytecode;
            c->context = fun->context;
            c->id = ++rt.n_codes;
            c->sent_epoch = 0;
            c->dead = 0;
            c->match = MPPROF_CODE_BYTECODE;
            c->dirty = 0;
            c->counts = NULL;
            c->n_counts = 0;
            if (len != 0 && rt.counters_used + len <= MPPROF_COUNTER_WORDS) {
                c->counts = &counters[rt.counters_used];
                c->n_counts = len;
                c->counts_bias = (uintptr_t)c->counts - (uintptr_t)c->bytecode * sizeof(uint32_t);
                rt.counters_used += len;
            }
            hide_end(h0);
            return c;
        }
    }
    return NULL;
}

static uint32_t node_child(uint32_t parent, mpprof_code_t *code) {
    mpprof_node_t *p = &nodes[parent];
    uint32_t prev = 0;
    for (uint32_t c = p->first_child; c != 0; prev = c, c = nodes[c].next_sibling) {
        if (nodes[c].code == code) {
            if (prev != 0) {
                // Move to front: a loop calls the same few functions.
                nodes[prev].next_sibling = nodes[c].next_sibling;
                nodes[c].next_sibling = p->first_child;
                p->first_child = c;
            }
            return c;
        }
    }
    if (rt.n_nodes >= MPPROF_MAX_NODES) {
        return 0;
    }
    // A new calling context: a slow path.
    uint64_t h0 = hide_begin();
    uint32_t idx = rt.n_nodes++;
    mpprof_node_t *n = &nodes[idx];
    memset(n, 0, sizeof(*n));
    n->parent = parent;
    n->code = code;
    n->next_sibling = p->first_child;
    p->first_child = idx;
    hide_end(h0);
    return idx;
}

// The parent's most recent callee (node_child() moves it to the front) when
// it runs this code of this kind: a loop calling one function finds it
// here, with no hash lookup. 0: look further.
static inline uint32_t node_recent(uint32_t parent, const void *key, uint8_t kind) {
    uint32_t c = nodes[parent].first_child;
    if (c != 0) {
        const mpprof_code_t *code = nodes[c].code;
        if (code->bytecode == key && code->match == kind) {
            return c;
        }
    }
    return 0;
}

// Where a call was made from: a bytecode frame's current opcode, or a native
// or compile frame's site in its caller (the root: 0).
static inline uint32_t call_site_of(const mpprof_frame_t *caller) {
    if (caller == NULL) {
        return 0;
    }
    return caller->code_state != NULL ? (uint32_t)(caller->code_state->ip - caller->base) : (uint32_t)caller->site_offset;
}

// The callee node last found from each call site, by the caller's node and
// the site: a loop that calls several functions in turn finds each at its
// own site, where the parent's list of callees, most recent first, would
// be scanned to its end at every call (pystone: 7 calls in 10). Looked at
// only when the parent's most recent callee is not this one, inside the
// hidden bracket of that slow path. A hit is checked against the node
// itself (its parent and code), so a slot two sites share is never wrong.
static uint16_t call_sites[MPPROF_CALL_SITES];
_Static_assert((MPPROF_CALL_SITES & (MPPROF_CALL_SITES - 1)) == 0 && MPPROF_MAX_NODES <= 65536,
    "MPPROF_CALL_SITES: a power of two; node indices fit 16 bits");

static inline uint32_t call_site_slot(uint32_t parent, uint32_t site) {
    return (parent * 0x9e3779b1u ^ site * 0x85ebca77u) * 0xc2b2ae3du >> (32 - __builtin_ctz(MPPROF_CALL_SITES));
}

// The node the slot holds, if it is `key`'s (of `kind`) called from
// `parent`, else 0. A node second among the parent's callees goes to the
// front (a loop calling one function after another was called once finds
// it first again); one further down stays (a loop calling several in turn
// would move each to the front only to miss it next time).
static inline uint32_t call_site_node(uint32_t slot, uint32_t parent, const void *key, uint8_t kind) {
    uint32_t c = call_sites[slot];
    if (c == 0 || nodes[c].parent != parent || nodes[c].code->bytecode != key || nodes[c].code->match != kind) {
        return 0;
    }
    mpprof_node_t *p = &nodes[parent];
    uint32_t first = p->first_child;
    if (first != c && nodes[first].next_sibling == c) {
        nodes[first].next_sibling = nodes[c].next_sibling;
        nodes[c].next_sibling = first;
        p->first_child = c;
    }
    return c;
}

static mpprof_type_t *type_lookup(const mp_obj_type_t *type) {
    uint32_t h = ((uintptr_t)type >> 2) * 2654435761u;
    for (uint32_t i = 0; i < MPPROF_MAX_TYPES; i++) {
        mpprof_type_t *t = &types[(h + i) & (MPPROF_MAX_TYPES - 1)];
        if (t->type == type) {
            return t;
        }
        if (t->type == NULL) {
            if (rt.n_types >= MPPROF_MAX_TYPES * 3 / 4) {
                return NULL;
            }
            t->type = type;
            t->id = ++rt.n_types;
            t->sent_epoch = 0;
            return t;
        }
    }
    return NULL;
}

// A multiplicative hash of the pointer folded to 32 bits (on a 64-bit build
// the high half is mixed in), the top bits kept (as many as index a slot).
static inline uint32_t known_slot(const mp_obj_type_t *type, uint32_t mul) {
    uintptr_t p = (uintptr_t)type >> 2;
    #if UINTPTR_MAX > 0xffffffffu
    p ^= p >> 32;
    #endif
    return (uint32_t)((uint32_t)p * mul) >> (32 - __builtin_ctz(KNOWN_SLOTS));
}

typedef struct {
    mpprof_known_type_t list[KNOWN_TYPES_MAX];
    size_t n;
} known_list_t;

static void add_known(known_list_t *k, const mp_obj_type_t *type, size_t size) {
    for (size_t i = 0; i < k->n; i++) {
        if (k->list[i].type == type) {
            return;
        }
    }
    if (k->n < KNOWN_TYPES_MAX) {
        k->list[k->n].type = type;
        k->list[k->n].size = size;
        k->n++;
    }
}

// Place the list with the first multiplier (odd, from a Weyl sequence)
// that gives each type a slot of its own: for some 35 types in 128 slots
// about one multiplier in 120 does, so a few thousand hashes at start (in
// 1024, the host's, one in 2).
// Should none of those tried do, the one with the fewest types sharing a
// slot is kept, and a type that finds its slot taken is left out (its
// objects are then raw blocks).
static void place_known(const known_list_t *k) {
    uint32_t mul = 2654435761u, best_mul = mul;
    size_t best_shared = SIZE_MAX;
    for (int attempt = 0; attempt < 4096 && best_shared != 0; attempt++, mul += 0x9e3779b8u) {
        uint32_t taken[KNOWN_SLOTS / 32] = {0};
        size_t shared = 0;
        for (size_t i = 0; i < k->n && shared < best_shared; i++) {
            uint32_t h = known_slot(k->list[i].type, mul);
            shared += (taken[h >> 5] >> (h & 31)) & 1;
            taken[h >> 5] |= 1u << (h & 31);
        }
        if (shared < best_shared) {
            best_shared = shared;
            best_mul = mul;
        }
    }
    known_mul = best_mul;
    memset(known_types, 0, sizeof(known_types));
    for (size_t i = 0; i < k->n; i++) {
        mpprof_known_type_t *e = &known_types[known_slot(k->list[i].type, best_mul)];
        if (e->type == NULL) {
            *e = k->list[i];
        }
    }
}

static void init_known_types(void) {
    // On the C stack at start-up only (a few hundred bytes).
    known_list_t k;
    k.n = 0;
    #if MICROPY_PY_BUILTINS_FLOAT
    add_known(&k, &mp_type_float, sizeof(mpprof_float_obj_t));
    #endif
    add_known(&k, &mp_type_list, sizeof(mp_obj_list_t));
    add_known(&k, &mp_type_dict, sizeof(mp_obj_dict_t));
    #if MICROPY_PY_COLLECTIONS_ORDEREDDICT
    add_known(&k, &mp_type_ordereddict, sizeof(mp_obj_dict_t));
    #endif
    #if MICROPY_PY_BUILTINS_BYTEARRAY
    add_known(&k, &mp_type_bytearray, sizeof(mp_obj_array_t));
    #endif
    #if MICROPY_PY_ARRAY
    add_known(&k, &mp_type_array, sizeof(mp_obj_array_t));
    #endif
    #if MICROPY_PY_BUILTINS_MEMORYVIEW
    add_known(&k, &mp_type_memoryview, sizeof(mp_obj_array_t));
    #endif
    add_known(&k, &mp_type_str, sizeof(mp_obj_str_t));
    // Built-in exceptions are made with m_new_obj too: find them among the
    // builtins (a dict of known-good objects), so no address is guessed.
    const mp_map_t *map = &mp_module_builtins_globals.map;
    for (size_t i = 0; i < map->alloc; i++) {
        if (!mp_map_slot_is_filled(map, i)) {
            continue;
        }
        mp_obj_t v = map->table[i].value;
        if (mp_obj_is_type(v, &mp_type_type)
            && mp_obj_is_subclass_fast(v, MP_OBJ_FROM_PTR(&mp_type_BaseException))) {
            add_known(&k, MP_OBJ_TO_PTR(v), sizeof(mp_obj_exception_t));
        }
    }
    place_known(&k);
}

static const mp_obj_type_t *pending_type(const mpprof_pending_t *p) {
    if (p->kind != 0) {
        return NULL;
    }
    const mp_obj_type_t *first_word = ((const mp_obj_base_t *)p->ptr)->type;
    if (p->exact) {
        return first_word;
    }
    // The first word is compared as a pointer only, never followed: a raw
    // buffer's first word may be anything. The answer is made of a mask,
    // not branches: the same cost for a known type as for a raw buffer (an
    // empty slot's size is 0, never an allocation's).
    const mpprof_known_type_t *e = &known_types[known_slot(first_word, known_mul)];
    uintptr_t word = (uintptr_t)first_word;
    uintptr_t known = -(uintptr_t)(((uintptr_t)e->type == word) & (e->size == p->n_bytes));
    return (const mp_obj_type_t *)(word & known);
}

/******************************************************************************/
// Events.

// A site's fields mixed (odd multipliers) so nearby nodes and offsets
// spread: its top bits choose its set, the whole tells the two ways apart
// before the fields are compared.
static inline uint32_t site_key(const mpprof_pending_t *p, const mp_obj_type_t *type, uint32_t bytes) {
    uint32_t mixed = p->node * 0x9e3779b1u ^ p->offset * 0x85ebca77u
        ^ (uint32_t)((uintptr_t)type >> 3) * 0xc2b2ae3du ^ bytes * 0x27d4eb2fu ^ p->kind;
    return mixed * 0x9e3779b1u;
}

// The key's set: its top bits.
static inline uint32_t key_set(uint32_t key) {
    return key >> (32 - __builtin_ctz(SITE_SETS));
}

// One more allocation at slot h: one byte below 128, else two (a tag and
// h - 128, a one-byte varint: h < 256).
static inline void put_repeat(uint32_t h) {
    if (MPPROF_SITE_SLOTS <= 128 || h < 128) {
        mpprof_wire_u8(MPPROF_TAG_ALLOC_REPEAT | h);
    } else {
        mpprof_wire_u8(MPPROF_TAG_ALLOC_REPEAT_WIDE);
        mpprof_wire_u8(h - 128);
    }
}

// Room kept for a SITE record: a frame ends where one might not fit, repeat
// or not, so frames (and the host's pipe writes) stay the same size
// whatever the records are (a 4 KiB payload, sealed, fits a pipe's page).
#define SITE_RECORD_MAX (1 + 6 * 10)

// 1 if the slot holds the site in this epoch, else 0: every field compared,
// with no branch between them, so a hit costs the same whatever field a
// miss would differ in.
static inline uint32_t slot_holds(const mpprof_slot_t *s, const mpprof_pending_t *p, const mp_obj_type_t *type, uint32_t bytes) {
    uintptr_t d = (uintptr_t)(s->node ^ p->node) | (uintptr_t)(s->offset ^ p->offset)
        | ((uintptr_t)s->type ^ (uintptr_t)type) | (uintptr_t)(s->bytes ^ bytes)
        | (uintptr_t)(s->kind ^ p->kind) | (uintptr_t)(s->epoch ^ mpprof_wire_epoch);
    return d == 0;
}

// The slot of the set that holds the site in this epoch, else a number of
// MPPROF_SITE_SLOTS or more. The first way's key says which way to compare
// (its own if it matches, else the other), and the answer is made without a
// branch: a site's record costs the same in either way (its cost is
// measured once, in one of them). Two sites of one key share the first
// way (write_site()).
static inline uint32_t slot_find(uint32_t set, uint32_t key, const mpprof_pending_t *p, const mp_obj_type_t *type, uint32_t bytes) {
    uint32_t h = set + (slots[set].key != key) * SITE_SETS;
    return h + (slot_holds(&slots[h], p, type, bytes) ^ 1) * MPPROF_SITE_SLOTS;
}

// A new site for its set (or the first record after a dropped frame):
// described in full, with its node and type first if the stream has not
// had them, in the set's slot used less recently. A slow path: its time is
// hidden, and out of line, so the fast path around it keeps its registers.
static MP_NOINLINE void write_site(const mpprof_pending_t *p, const mp_obj_type_t *type, uint32_t bytes, uint32_t key) {
    uint32_t set = key_set(key);
    uint64_t h0 = hide_begin();
    mpprof_type_t *t = type ? type_lookup(type) : NULL;
    uint32_t type_id = t ? t->id : 0;
    // An unknown type (its table full) is sent as no type.
    const mp_obj_type_t *sent_type = t != NULL ? type : NULL;
    uint16_t epoch;
    do {
        epoch = mpprof_wire_epoch;
        if (p->node != 0 && nodes[p->node].sent_epoch != epoch) {
            send_node(p->node);
        }
        if (t != NULL && t->sent_epoch != epoch) {
            send_type(t);
        }
        mpprof_wire_begin(SITE_RECORD_MAX);
    } while (epoch != mpprof_wire_epoch);
    uint32_t h = slot_find(set, key, p, sent_type, bytes);
    if (h < MPPROF_SITE_SLOTS) {
        // Only the frame was full.
        put_repeat(h);
    } else {
        // The first way if its key is this one's (slot_find() looks
        // there), else a slot of an older epoch (undefined for the host
        // now), else the one used less recently.
        h = slots[set].key == key || slots[set].epoch != epoch ? set
            : slots[set + SITE_SETS].epoch != epoch ? set + SITE_SETS
            : set + (1 - slot_recent[set]) * SITE_SETS;
        mpprof_slot_t *s = &slots[h];
        s->key = key;
        s->node = p->node;
        s->offset = p->offset;
        s->type = sent_type;
        s->bytes = bytes;
        s->kind = p->kind;
        s->epoch = epoch;
        mpprof_wire_u8(MPPROF_TAG_SITE);
        mpprof_wire_uint(h);
        mpprof_wire_uint(p->node);
        mpprof_wire_uint(p->offset);
        mpprof_wire_uint(type_id);
        mpprof_wire_uint(bytes);
        mpprof_wire_uint(p->kind);
    }
    slot_recent[set] = h >= SITE_SETS;
    hide_end(h0);
}

// Not inlined anywhere, so its cost is the same from every hook and as
// calibration measures it (calib_record()); the check for a pending
// allocation is inlined (flush_pending()), part of each hook's own cost.
static MP_NOINLINE void write_pending(void) {
    mpprof_pending_t *p = &rt.pending;
    p->valid = false;
    if (rt.hiding == 0) {
        rt.offset_q16 += p->record_q16;
    }
    const mp_obj_type_t *type = pending_type(p);
    uint32_t bytes = p->n_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)p->n_bytes;
    uint32_t key = site_key(p, type, bytes);
    // The fast path, the same few instructions every time (their cost is
    // measured: calib_record()): a site its set holds, defined in this
    // epoch (so its node and type went out in it too), one byte, in a frame
    // with room.
    uint32_t h = slot_find(key_set(key), key, p, type, bytes);
    if (h < MPPROF_SITE_SLOTS && mpprof_wire_len + SITE_RECORD_MAX <= MPPROF_FRAME_PAYLOAD) {
        put_repeat(h);
        slot_recent[h & (SITE_SETS - 1)] = h >= SITE_SETS;
    } else {
        // write_site() hides its body, but not the call into it nor its
        // bracket's own edges (some 14 ticks on the emulated board: +10%
        // on a line whose sites evict each other, before this was taken
        // out): measured as a whole, calib_record(.., true).
        if (rt.hiding == 0) {
            rt.offset_q16 += rt.site_miss_q16;
        }
        write_site(p, type, bytes, key);
    }
    mpprof_wire_end_record();
    rt.alloc_count++;
    rt.alloc_bytes += bytes;
}

static inline void flush_pending(void) {
    if (rt.pending.valid) {
        write_pending();
    }
}

// Where the running bytecode is: the innermost profiled frame and the offset
// of its current opcode (the VM stores ip at every dispatch).
static void current_site(uint32_t *node, uint32_t *offset) {
    mpprof_frame_t *f = mpprof_top_frame;
    if (f == NULL) {
        *node = 0;
        *offset = 0;
        return;
    }
    *node = f->node;
    *offset = f->code_state != NULL ? (uint32_t)(f->code_state->ip - f->base) : (uint32_t)f->site_offset;
}

static void flush_counts(void) {
    for (mpprof_code_t *c = rt.dirty_codes; c != NULL;) {
        mpprof_code_t *next = c->next_dirty;
        c->dirty = 0;
        c->next_dirty = NULL;
        // Send the non-zero counters in chunks that fit a frame.
        const size_t per_record = (MPPROF_FRAME_PAYLOAD - 32) / 15;
        size_t off = 0;
        while (off < c->n_counts) {
            size_t n = 0, end = off;
            for (; end < c->n_counts && n < per_record; end++) {
                n += c->counts[end] != 0;
            }
            if (n == 0) {
                break;
            }
            uint16_t epoch;
            do {
                epoch = mpprof_wire_epoch;
                ensure_code(c);
                mpprof_wire_begin(1 + 2 * 10 + n * 15);
            } while (epoch != mpprof_wire_epoch);
            mpprof_wire_u8(MPPROF_TAG_COUNTS);
            mpprof_wire_uint(c->id);
            mpprof_wire_uint(n);
            size_t prev = 0;
            for (size_t i = off; i < end; i++) {
                if (c->counts[i] != 0) {
                    mpprof_wire_uint(i - prev);
                    mpprof_wire_uint(c->counts[i]);
                    c->counts[i] = 0;
                    prev = i;
                }
            }
            mpprof_wire_end_record();
            off = end;
        }
        #if MPPROF_LINE_TIME
        if (c->counts != NULL && mpprof_line_dirty(c->counts - counters, c->n_counts)) {
            ensure_code(c);
            mpprof_line_flush(c->id, c->counts - counters, c->n_counts);
        }
        #endif
        c = next;
    }
    rt.dirty_codes = NULL;
    // Frames still running go on counting into their code's counters: keep
    // those codes on the dirty list, or a loop that never returns would be
    // counted only up to the first flush.
    for (uint32_t d = 0, depth = depth_now(); d < depth; d++) {
        mpprof_code_t *c = nodes[frames[d].node].code;
        if (c != NULL && !c->dirty) {
            c->dirty = 1;
            c->next_dirty = rt.dirty_codes;
            rt.dirty_codes = c;
        }
    }
    for (uint32_t i = rt.dirty_nodes; i != 0;) {
        mpprof_node_t *n = &nodes[i];
        uint32_t next = n->next_dirty;
        uint16_t epoch;
        do {
            epoch = mpprof_wire_epoch;
            ensure_node(i);
            mpprof_wire_begin(1 + 4 * 10);
        } while (epoch != mpprof_wire_epoch);
        mpprof_wire_u8(MPPROF_TAG_NODE_STATS);
        mpprof_wire_uint(i);
        mpprof_wire_uint(n->calls);
        mpprof_wire_uint(mpprof_port_wire_time(n->ticks));
        mpprof_wire_uint(n->opcodes);
        mpprof_wire_end_record();
        n->calls = 0;
        n->ticks = 0;
        n->opcodes = 0;
        n->dirty = 0;
        n->next_dirty = 0;
        i = next;
    }
    rt.dirty_nodes = 0;
}

static void write_stamped(uint8_t tag, uint64_t at, const char *label, size_t len) {
    mpprof_wire_begin(1 + 10 + 10 + 64);
    mpprof_wire_u8(tag);
    mpprof_wire_uint(mpprof_port_wire_time(at));
    if (label != NULL) {
        mpprof_wire_str(label, len, 64);
    }
    mpprof_wire_end_record();
}

static void flush_all(uint64_t t) {
    flush_pending();
    flush_counts();
    MPPROF_LINE(mpprof_line_flush_totals());
    mpprof_wire_begin(1 + 2 * 10);
    mpprof_wire_u8(MPPROF_TAG_HEAP);
    mpprof_wire_uint(mpprof_port_wire_time(t));
    mpprof_wire_uint(rt.used_bytes);
    mpprof_wire_end_record();
    rt.last_flush = t;
}

/******************************************************************************/
// VM hooks.

static uint8_t outcome_of(mp_vm_return_kind_t kind, mp_code_state_t *code_state) {
    if (kind != MP_VM_RETURN_EXCEPTION) {
        return 0;
    }
    const mp_obj_type_t *type = mp_obj_get_type(code_state->state[0]);
    if (type == &mp_type_KeyboardInterrupt) {
        return 2;
    }
    if (type == &mp_type_SystemExit) {
        return 3;
    }
    if (type == &mp_type_MemoryError) {
        return 5;
    }
    return 1;
}

// The innermost shadow frame ends at time t, `ops` opcodes run in it and
// its callees: its node gets the call, its inclusive time and its own
// opcodes (those its callees ran are theirs). A native frame runs none of
// its own (`own_ops` false, a constant where it is inlined): nothing to add.
static inline void close_top_frame(uint64_t t, uint32_t ops, bool own_ops) {
    mpprof_frame_t *f = mpprof_top_frame;
    mpprof_node_t *n = &nodes[f->node];
    n->ticks += frame_ticks(t - f->enter_ticks, ops);
    n->calls++;
    if (own_ops) {
        n->opcodes += ops - f->child_ops;
    }
    if (!n->dirty) {
        n->dirty = 1;
        n->next_dirty = rt.dirty_nodes;
        rt.dirty_nodes = f->node;
    }
    #if MPPROF_LINE_TIME
    // A native or compile frame's time is its caller's line's callee time
    // (a bytecode frame's is added by mpprof_line_leave()).
    if ((!own_ops || f->code_state == NULL) && f != frames) {
        f[-1].line_child += t - f->enter_ticks;
    }
    #endif
    if (f != frames) {
        f[-1].child_ops += ops;
        mpprof_top_frame = f - 1;
    } else {
        mpprof_top_frame = NULL;
    }
}

static inline void close_frame_ops(uint64_t t, uint32_t ops) {
    close_top_frame(t, ops, true);
}

// The opcodes the innermost frame and its callees ran: a bytecode frame's
// are the global count's advance since it began; a native or compile frame
// runs none of its own, so its are its callees' (no look at the count).
static inline uint32_t frame_ops(const mpprof_frame_t *f) {
    return f->code_state != NULL ? ops_now() - f->enter_ops : f->child_ops;
}

static inline void close_frame(uint64_t t) {
    close_frame_ops(t, frame_ops(mpprof_top_frame));
}

// A frozen module's top level run by a profiled import: told once per import
// site (FROZEN_IMPORT, WIRE.md), so the host knows that what this site
// allocated is the module's own objects, nothing compiled. The site is an
// IMPORT_NAME, or any other opcode whose (unprofiled, frozen) callee
// imported a module: asyncio's `__getattr__` imports `asyncio.event` at
// the first `asyncio.Event`.
static void note_frozen_import(const mpprof_code_t *code) {
    mpprof_frame_t *f = mpprof_top_frame;
    if (!rt.recording || f == NULL || f->code_state == NULL) {
        return;
    }
    uint32_t offset = f->code_state->ip - f->base;
    if ((rt.frozen_node == f->node && rt.frozen_offset == offset)
        || gc_nbytes(code->bytecode) != 0) {
        // Told already (the module's own imports and calls run under the
        // same site), or on the heap (tables full, not frozen).
        return;
    }
    if (*f->code_state->ip != MP_BC_IMPORT_NAME && code_block_name(code) != MP_QSTR__lt_module_gt_) {
        // A frozen function called, not a module's top level run.
        return;
    }
    uint64_t h0 = hide_begin();
    rt.frozen_node = f->node;
    rt.frozen_offset = offset;
    const mp_module_context_t *context = code->context;
    #if MICROPY_EMIT_BYTECODE_USES_QSTR_TABLE
    qstr source_file = context->constants.qstr_table[0];
    #else
    qstr source_file = context->constants.source_file;
    #endif
    size_t file_len;
    const char *file = (const char *)qstr_data(source_file, &file_len);
    const size_t file_max = 128;
    size_t file_sent = file_len < file_max ? file_len : file_max;
    size_t body = uint_size(f->node) + uint_size(offset) + uint_size(file_sent) + file_sent;
    uint16_t epoch;
    do {
        epoch = mpprof_wire_epoch;
        ensure_node(f->node);
        mpprof_wire_begin(1 + uint_size(body) + body);
    } while (epoch != mpprof_wire_epoch);
    mpprof_wire_u8(MPPROF_TAG_FROZEN_IMPORT);
    mpprof_wire_uint(body);
    mpprof_wire_uint(f->node);
    mpprof_wire_uint(offset);
    mpprof_wire_str(file, file_len, file_max);
    mpprof_wire_end_record();
    hide_end(h0);
}

// Frames the hooked VM cannot profile run on the plain VM: everything the
// hook did since `h0` is hidden (less what slow paths inside it hid already),
// as no measured cost covers it.
static void run_plain(uint64_t h0, uint64_t hidden0) {
    rt.unprofiled_frames++;
    uint64_t spent = mpprof_ticks() - h0, inner = rt.hidden - hidden0;
    add_hidden(spent > inner ? spent - inner : 0);
}

// The node of a call whose callee is not the parent's most recent: the
// code's hash lookup and the scan of the parent's callees take as long as
// the tables make them (a loop calling several functions in turn meets this
// at every call: pystone read +5% before it was hidden). Hidden, and the
// bracket's own edges taken out as measured (calibrate()). Out of line, so
// the fast path keeps its registers. 0: run the frame plain.
static MP_NOINLINE uint32_t enter_new_callee(uint32_t parent, mp_code_state_t *code_state) {
    uint64_t h0 = hide_begin();
    // The caller is still the innermost frame.
    uint32_t slot = call_site_slot(parent, call_site_of(mpprof_top_frame));
    uint32_t hit = call_site_node(slot, parent, code_state->fun_bc->bytecode, MPPROF_CODE_BYTECODE);
    if (hit != 0) {
        hide_end(h0);
        rt.offset_q16 += rt.node_miss_q16;
        return hit;
    }
    mpprof_code_t *code = code_lookup(code_state->fun_bc);
    if (code == NULL || code->counts == NULL) {
        // Bytecode outside the GC heap (frozen) or tables full: run
        // plain, the whole hook hidden.
        if (code != NULL) {
            note_frozen_import(code);
        }
        hide_end(h0);
        rt.unprofiled_frames++;
        return 0;
    }
    uint32_t node = node_child(parent, code);
    call_sites[slot] = (uint16_t)node;
    hide_end(h0);
    if (node == 0) {
        rt.unprofiled_frames++;
        return 0;
    }
    rt.offset_q16 += rt.node_miss_q16;
    return node;
}

// Extra frames left open above the bytecode frame `f` (none should
// be: each closes itself, or its unwind callback does) end with it.
static MP_NOINLINE void close_frames_above(const mpprof_frame_t *f, uint64_t t) {
    while (mpprof_top_frame != f) {
        close_frame(t);
    }
}

int mpprof_vm_execute(mp_code_state_t *code_state, void *inject_exc) {
    if (!(rt.gates & GATE_FRAMES) || !mpprof_main_thread()) {
        return mp_execute_bytecode(code_state, (mp_obj_t)inject_exc);
    }
    // From here to the frame's first opcode, and from its last to the
    // return, the hook runs the same instructions at every call (its slow
    // paths, a function's first call, a new calling context, a record
    // written, a flush, are hidden where they happen): that cost is
    // measured at start-up and taken out per call (calibrate()), so the
    // fast path reads the clock only for the frame's own two stamps.
    // A frame run plain hides the hook's time from its first clock read
    // (the few instructions before it, the same each time, are its
    // caller's); read only there, not on the fast path.
    mpprof_frame_t *caller = mpprof_top_frame;
    if (caller >= &frames[MPPROF_MAX_DEPTH - 1]) {
        run_plain(mpprof_ticks(), rt.hidden);
        return mp_execute_bytecode(code_state, (mp_obj_t)inject_exc);
    }
    flush_pending();
    uint32_t parent = caller != NULL ? caller->node : 0;
    uint32_t node = node_recent(parent, code_state->fun_bc->bytecode, MPPROF_CODE_BYTECODE);
    if (node == 0) {
        node = enter_new_callee(parent, code_state);
        if (node == 0) {
            return mp_execute_bytecode(code_state, (mp_obj_t)inject_exc);
        }
    }
    mpprof_code_t *code = nodes[node].code;
    if (!code->dirty) {
        code->dirty = 1;
        code->next_dirty = rt.dirty_codes;
        rt.dirty_codes = code;
    }
    if (caller == NULL && !rt.calibrating) {
        // Count flush intervals from the script's start too: where flushes
        // fall must not depend on how long the board idled before.
        mpprof_port_align_ticks();
        rt.last_flush = now();
    }
    mpprof_frame_t *f = caller != NULL ? caller + 1 : frames;
    f->counts_bias = code->counts_bias;
    f->base = code->bytecode;
    f->node = node;
    f->code_state = code_state;
    f->child_ops = 0;
    mpprof_top_frame = f;
    f->enter_ops = ops_now();
    MPPROF_LINE(mpprof_line_enter(f, code->counts - counters, code->n_counts));
    f->enter_ticks = frame_now();
    MPPROF_LINE(f->line_last = f->enter_ticks);

    mp_vm_return_kind_t kind = mpprof_vm_execute_hooked(code_state, inject_exc);

    uint64_t t = frame_now();
    if (mpprof_top_frame != f) {
        close_frames_above(f, t);
    }
    MPPROF_LINE(mpprof_line_leave(f, f != frames ? f - 1 : NULL, t));
    close_frame_ops(t, ops_now() - f->enter_ops);
    if (f == frames) {
        rt.end_reason = outcome_of(kind, code_state);
    }
    // No look at the flush clock here: the opcode tick looks every
    // OP_TICK_PERIOD opcodes, and a frame runs some of its own.
    rt.calls++;
    rt.offset_q16 += rt.call_cost_q16;
    return kind;
}

void mpprof_op_tick(void) {
    uint64_t h0 = hide_begin();
    // The opcodes of the countdown just run out are costed before it
    // starts again (see ops_cost_now()).
    rt.ops_cost_q16 += (uint64_t)OP_TICK_PERIOD * rt.op_cost_q16;
    rt.ops_end += OP_TICK_PERIOD;
    mpprof_op_countdown = OP_TICK_PERIOD;
    #ifdef MPPROF_PORT_POLL
    // A port that cannot otherwise notice Ctrl-C while a script runs (and
    // only then: at start-up, the byte waiting may be the host's Ctrl-A).
    if (rt.recording) {
        MPPROF_PORT_POLL();
    }
    #endif
    if (rt.recording && !rt.in_hook) {
        uint64_t t = stamp(h0);
        if (t - rt.last_flush >= rt.flush_ticks) {
            flush_all(t);
            mpprof_wire_flush();
        }
    }
    hide_end(h0);
}

/******************************************************************************/
// Frames for what runs outside the bytecode VM: compiling source, native and
// viper code. They have no bytecode to count; each is a code object of its
// own kind, described by a FRAME_CODE record (WIRE.md).

#ifndef MPPROF_MAX_EXTRA_CODES
#define MPPROF_MAX_EXTRA_CODES (64)
#endif

typedef struct {
    mpprof_code_t code;     // first: a code's address is its entry's
    qstr name;              // the function's name (0: unknown), or for a
                            // compile frame the source's
    qstr file;
} mpprof_extra_code_t;

static mpprof_extra_code_t extra_codes[MPPROF_MAX_EXTRA_CODES];
static uint32_t n_extra_codes;

_Static_assert(offsetof(mpprof_extra_frame_t, prev) == offsetof(nlr_jump_callback_node_t, prev), "an extra frame is an NLR jump callback node");
_Static_assert(offsetof(mpprof_extra_frame_t, fun) == offsetof(nlr_jump_callback_node_t, fun), "an extra frame is an NLR jump callback node");

static void send_extra_code(mpprof_code_t *code) {
    const mpprof_extra_code_t *x = (const mpprof_extra_code_t *)code;
    size_t name_len = 0, file_len = 0;
    const char *name = x->name != 0 ? (const char *)qstr_data(x->name, &name_len) : "";
    const char *file = x->file != 0 ? (const char *)qstr_data(x->file, &file_len) : "";
    name_len = name_len > 128 ? 128 : name_len;
    file_len = file_len > 256 ? 256 : file_len;
    size_t body = uint_size(code->id) + 1 + uint_size(name_len) + name_len + uint_size(file_len) + file_len;
    mpprof_wire_begin(1 + uint_size(body) + body);
    mpprof_wire_u8(MPPROF_TAG_FRAME_CODE);
    mpprof_wire_uint(body);
    mpprof_wire_uint(code->id);
    mpprof_wire_u8(code->kind);
    mpprof_wire_str(name, name_len, name_len);
    mpprof_wire_str(file, file_len, file_len);
    mpprof_wire_end_record();
    code->sent_epoch = mpprof_wire_epoch;
}

static qstr context_file(const mp_module_context_t *context) {
    #if MICROPY_EMIT_BYTECODE_USES_QSTR_TABLE
    return context->constants.qstr_table[0];
    #else
    return context->constants.source_file;
    #endif
}

#if MICROPY_EMIT_NATIVE
// A viper function has no prelude, so no name of its own: the name its
// module, or a class in it, binds it to.
static qstr name_in(const mp_map_t *map, const void *fun, int classes) {
    for (size_t i = 0; i < map->alloc; i++) {
        if (!mp_map_slot_is_filled(map, i)) {
            continue;
        }
        mp_obj_t v = map->table[i].value;
        if (MP_OBJ_TO_PTR(v) == fun && mp_obj_is_qstr(map->table[i].key)) {
            return MP_OBJ_QSTR_VALUE(map->table[i].key);
        }
        if (classes > 0 && mp_obj_is_type(v, &mp_type_type)) {
            const mp_obj_type_t *t = MP_OBJ_TO_PTR(v);
            if (MP_OBJ_TYPE_HAS_SLOT(t, locals_dict)) {
                qstr q = name_in(&MP_OBJ_TYPE_GET_SLOT(t, locals_dict)->map, fun, 0);
                if (q != 0) {
                    return q;
                }
            }
        }
    }
    return 0;
}
#endif

// A function's name: v1.28 renamed upstream's mp_obj_fun_get_name(obj) to
// mp_obj_fun_bc_get_name(fun), the same code.
#if MICROPY_VERSION >= MICROPY_MAKE_VERSION(1, 28, 0)
#define MPPROF_FUN_NAME(fun) mp_obj_fun_bc_get_name(fun)
#else
#define MPPROF_FUN_NAME(fun) mp_obj_fun_get_name(MP_OBJ_FROM_PTR(fun))
#endif

// The code object for an extra frame, made on first use; NULL when the
// table is full.
static mpprof_code_t *extra_code(uint8_t kind, const void *key, const mp_obj_fun_bc_t *fun, qstr source) {
    // A loop calls the same native function again and again.
    static mpprof_code_t *last;
    if (last != NULL && last->bytecode == key && last->kind == kind && n_extra_codes != 0) {
        return last;
    }
    for (uint32_t i = 0; i < n_extra_codes; i++) {
        if (extra_codes[i].code.bytecode == key && extra_codes[i].code.kind == kind) {
            last = &extra_codes[i].code;
            return last;
        }
    }
    if (n_extra_codes >= MPPROF_MAX_EXTRA_CODES) {
        return NULL;
    }
    // The first call: a slow path (a viper function's name is looked up).
    uint64_t h0 = hide_begin();
    mpprof_extra_code_t *x = &extra_codes[n_extra_codes++];
    memset(x, 0, sizeof(*x));
    last = &x->code;
    x->code.bytecode = key;
    x->code.kind = kind;
    x->code.match = kind;
    x->code.id = ++rt.n_codes;
    if (kind == MPPROF_CODE_COMPILE) {
        x->name = source;
        x->file = source;
    }
    #if MICROPY_EMIT_NATIVE
    else {
        x->file = context_file(fun->context);
        x->name = kind == MPPROF_CODE_NATIVE ? MPPROF_FUN_NAME(fun)
            : name_in(&fun->context->module.globals->map, fun, 1);
    }
    #else
    (void)fun;
    (void)context_file;
    #endif
    hide_end(h0);
    return &x->code;
}

static void extra_unwound(void *ctx);

// Open an extra frame at `node`: all but its enter stamp, which the caller
// takes last.
static inline void extra_push(mpprof_extra_frame_t *x, uint32_t node, uint32_t site_offset) {
    mpprof_frame_t *f = mpprof_top_frame != NULL ? mpprof_top_frame + 1 : frames;
    // No counts_bias: only the hooked VM reads it, from the bytecode frame
    // it runs (pushed above this one).
    f->site_offset = site_offset;
    f->node = node;
    f->code_state = NULL;
    f->child_ops = 0;
    mpprof_top_frame = f;
    x->frame = f;
    // nlr_push_jump_callback(), on the main thread's state directly (extra
    // frames open on the main thread only): on a port with threads, the
    // thread-state lookup cost more than the rest of the hook.
    nlr_jump_callback_node_t *callback = (nlr_jump_callback_node_t *)x;
    callback->prev = MP_STATE_MAIN_THREAD(nlr_jump_callback_top);
    callback->fun = extra_unwound;
    MP_STATE_MAIN_THREAD(nlr_jump_callback_top) = callback;
}

// Close the extra frame `x` opened (x->frame set), and any frame still
// open above it.
static inline void extra_close(const mpprof_extra_frame_t *x, uint64_t t) {
    if (mpprof_top_frame == NULL || mpprof_top_frame < (mpprof_frame_t *)x->frame) {
        return; // closed already, with a frame it was called from
    }
    while (mpprof_top_frame > (mpprof_frame_t *)x->frame) {
        close_frame(t);
    }
    close_frame_ops(t, mpprof_top_frame->child_ops);
}

static void extra_unwound(void *ctx) {
    // An exception is unwinding through the hooked function: the callback
    // is already off MicroPython's list. A slow path, hidden (a native
    // frame's measured cost is for its return).
    mpprof_extra_frame_t *x = ctx;
    uint64_t h = hide_begin();
    extra_close(x, frame_stamp(h));
    x->frame = NULL;
    hide_end(h);
}

// Native frames are opened while calibrating too: their cost is measured.
static bool extra_wanted(bool native) {
    return (rt.gates & (native ? GATE_FRAMES : GATE_COMPILE)) && mpprof_top_frame < &frames[MPPROF_MAX_DEPTH - 1]
           && mpprof_main_thread();
}

// Compiling (an import of a .py file, exec, eval) is rare and long: its
// hooks are bracketed whole.
void mpprof_compile_begin(mpprof_extra_frame_t *x, size_t source_name) {
    x->frame = NULL;
    x->native = false;
    // The main script's own compile (nothing profiled runs yet) stays out,
    // as before any frame.
    if (!extra_wanted(false) || mpprof_top_frame == NULL) {
        return;
    }
    uint64_t h0 = hide_begin();
    flush_pending();
    uint32_t node, offset;
    current_site(&node, &offset);
    // Allocations while compiling are at the importing line: the frame's
    // site is where its caller is.
    mpprof_code_t *code = extra_code(MPPROF_CODE_COMPILE, (const void *)(uintptr_t)source_name, NULL, source_name);
    uint32_t child = code != NULL ? node_child(node, code) : 0;
    if (child != 0) {
        extra_push(x, child, offset);
        mpprof_top_frame->enter_ticks = frame_stamp(hide_until(h0));
    } else {
        hide_end(h0);
    }
}

// The node of a native or viper call whose callee is not the parent's most
// recent: hidden, as for a bytecode call (enter_new_callee()), and out of
// line. 0: no frame.
static MP_NOINLINE uint32_t native_new_callee(uint32_t parent, const mp_obj_fun_bc_t *fun, uint8_t kind) {
    uint64_t h0 = hide_begin();
    uint32_t slot = call_site_slot(parent, call_site_of(mpprof_top_frame));
    uint32_t node = call_site_node(slot, parent, fun->bytecode, kind);
    if (node == 0) {
        mpprof_code_t *code = extra_code(kind, fun->bytecode, fun, 0);
        node = code != NULL ? node_child(parent, code) : 0;
        call_sites[slot] = (uint16_t)node;
    }
    hide_end(h0);
    if (node != 0) {
        rt.offset_q16 += rt.node_miss_q16;
    }
    return node;
}

// A native or viper call can be as short as a few instructions, and a loop
// makes many: as for a bytecode call, the hooks' fast path is a measured
// cost per call, and only the frame's own stamps read the clock.
// False: no frame (x untouched).
static inline bool native_begin(mpprof_extra_frame_t *x, const void *fun_in, bool viper) {
    if (!extra_wanted(true)) {
        return false;
    }
    flush_pending();
    const mp_obj_fun_bc_t *fun = fun_in;
    uint8_t kind = viper ? MPPROF_CODE_VIPER : MPPROF_CODE_NATIVE;
    uint32_t parent = mpprof_top_frame != NULL ? mpprof_top_frame->node : 0;
    uint32_t node = node_recent(parent, fun->bytecode, kind);
    if (node == 0) {
        node = native_new_callee(parent, fun, kind);
        if (node == 0) {
            return false;
        }
    }
    extra_push(x, node, 0);
    mpprof_top_frame->enter_ticks = frame_now();
    return true;
}

// Out of line: the fast path below keeps its registers.
static MP_NOINLINE void extra_close_all(const mpprof_extra_frame_t *x, uint64_t t) {
    extra_close(x, t);
}

static inline void native_end(mpprof_extra_frame_t *x, bool viper) {
    // nlr_pop_jump_callback(false), as extra_push() pushed it.
    MP_STATE_MAIN_THREAD(nlr_jump_callback_top) = ((nlr_jump_callback_node_t *)x)->prev;
    uint64_t t = frame_now();
    if (mpprof_top_frame == x->frame) {
        // The usual case: nothing left open above it.
        close_top_frame(t, mpprof_top_frame->child_ops, false);
    } else {
        extra_close_all(x, t);
    }
    rt.native_calls++;
    rt.offset_q16 += viper ? rt.viper_cost_q16 : rt.native_cost_q16;
}

// A call of a native or viper function (MICROPY_NATIVE_HOOK_CALL, the
// first thing fun_native_call and fun_viper_call do while profiling): the
// rest of upstream's function (the C stack check, the machine code's
// address), both hooks and the call, in one function that takes upstream's
// arguments as they are. Upstream's function jumps here first thing (a
// sibling call; its path while profiling is off keeps upstream's code),
// and the arguments are not passed again on the way. Each kind finds its
// machine code its own way: each has its measured cost.
static inline mp_obj_t native_call(bool viper, mp_obj_t self_in, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_cstack_check();
    mp_obj_fun_bc_t *self = MP_OBJ_TO_PTR(self_in);
    mp_call_fun_t fun = viper ? MICROPY_MAKE_POINTER_CALLABLE((void *)self->bytecode)
        : mp_obj_fun_native_get_function_start(self);
    mpprof_extra_frame_t x;
    if (!native_begin(&x, self, viper)) {
        return fun(self_in, n_args, n_kw, args);
    }
    mp_obj_t ret = fun(self_in, n_args, n_kw, args);
    native_end(&x, viper);
    return ret;
}

mp_obj_t mpprof_native_call(mp_obj_t self_in, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    return native_call(false, self_in, n_args, n_kw, args);
}

mp_obj_t mpprof_viper_call(mp_obj_t self_in, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    return native_call(true, self_in, n_args, n_kw, args);
}

// A native generator's resume (MICROPY_NATIVE_HOOK_ENTER/EXIT).
void mpprof_native_begin(mpprof_extra_frame_t *x, const void *fun_in, bool viper) {
    // What mpprof_extra_end() closes (a call's frame is closed where it
    // was opened, native_call()).
    x->native = true;
    x->frame = NULL;
    native_begin(x, fun_in, viper);
}

void mpprof_extra_end(mpprof_extra_frame_t *x) {
    if (x->frame == NULL) {
        return;
    }
    if (x->native) {
        // A native generator (viper has none).
        native_end(x, false);
        return;
    }
    // nlr_pop_jump_callback(false), as above.
    MP_STATE_MAIN_THREAD(nlr_jump_callback_top) = ((nlr_jump_callback_node_t *)x)->prev;
    uint64_t h1 = hide_begin();
    flush_pending();
    extra_close(x, frame_stamp(h1));
    hide_end(h1);
}

/******************************************************************************/
// GC hooks.

void mpprof_gc_alloc(void *ptr, size_t n_bytes) {
    if (!rt.open) {
        return;
    }
    rt.used_bytes += blocks_bytes(n_bytes);
    note_used();
    if (!(rt.gates & GATE_ALLOCS) || !mpprof_main_thread()) {
        return;
    }
    // No clock read: the fast path (the previous allocation's repeat
    // record, this one noted) is a measured cost per allocation; a record
    // that has more to say hides its own time (write_site()).
    flush_pending();
    mpprof_pending_t *p = &rt.pending;
    p->ptr = ptr;
    p->n_bytes = n_bytes;
    p->kind = 0;
    p->exact = false;
    p->record_q16 = rt.guessed_record_q16;
    p->valid = true;
    current_site(&p->node, &p->offset);
    rt.allocs_seen++;
    rt.offset_q16 += rt.alloc_note_q16;
}

// An object mp_obj_malloc made: its type is exact. Its path through the
// hooks (this call, no type guessed from the first word) has a measured
// cost of its own: the allocation hook took out a plain allocation's
// note, and the record, when it is written, takes out the rest
// (typed_record_q16; no 64-bit sum here, at every typed allocation).
void mpprof_obj_typed(void *base) {
    if (rt.pending.valid && rt.pending.ptr == base) {
        rt.pending.exact = true;
        rt.pending.record_q16 = rt.typed_record_q16;
    }
}

// A bytecode frame fun_bc_call put on the heap (more state than the C
// stack's budget): its record says so (kind 2), so the host need not guess
// the block from the call it was made at. Its path through the hooks is
// the typed allocation's twin (a call here, no type guessed from the first
// word), and so is its measured cost.
void mpprof_obj_frame(void *code_state) {
    if (rt.pending.valid && rt.pending.ptr == code_state) {
        rt.pending.kind = 2;
        rt.pending.record_q16 = rt.typed_record_q16;
    }
}

void mpprof_gc_alloc_fail(size_t n_bytes) {
    if (!rt.recording || !mpprof_main_thread()) {
        return;
    }
    uint64_t h0 = hide_begin();
    flush_pending();
    uint32_t node, offset;
    current_site(&node, &offset);
    uint16_t epoch;
    do {
        epoch = mpprof_wire_epoch;
        ensure_node(node);
        mpprof_wire_begin(1 + 3 * 10);
    } while (epoch != mpprof_wire_epoch);
    mpprof_wire_u8(MPPROF_TAG_ALLOC_FAIL);
    mpprof_wire_uint(node);
    mpprof_wire_uint(offset);
    mpprof_wire_uint(n_bytes);
    mpprof_wire_end_record();
    hide_end(h0);
}

void mpprof_gc_free(void *ptr, size_t n_blocks) {
    if (!rt.open) {
        return;
    }
    if (rt.pending.valid && rt.pending.ptr == ptr && mpprof_main_thread()) {
        uint64_t h0 = hide_begin();
        flush_pending();
        hide_end(h0);
    }
    size_t bytes = n_blocks * MICROPY_BYTES_PER_GC_BLOCK;
    rt.used_bytes = rt.used_bytes > bytes ? rt.used_bytes - bytes : 0;
}

void mpprof_gc_realloc(void *old_ptr, void *new_ptr, size_t old_blocks, size_t n_bytes) {
    if (!rt.open) {
        return;
    }
    size_t old_bytes = old_blocks * MICROPY_BYTES_PER_GC_BLOCK;
    size_t new_bytes = blocks_bytes(n_bytes);
    bool main_thread = mpprof_main_thread();
    if (new_ptr != old_ptr) {
        // Moved: the alloc and free hooks have seen the new block and the old
        // one; the new block is this buffer growing, not a new object.
        // Its size is the growth, not the new block's size, so the figure
        // does not depend on whether the heap had room to grow in place.
        if (rt.pending.valid && rt.pending.ptr == new_ptr && main_thread) {
            rt.pending.kind = 1;
            rt.pending.record_q16 = rt.direct_record_q16;
            rt.pending.n_bytes = new_bytes > old_bytes ? new_bytes - old_bytes : 0;
        }
        return;
    }
    if (new_bytes >= old_bytes) {
        rt.used_bytes += new_bytes - old_bytes;
    } else {
        rt.used_bytes = rt.used_bytes > old_bytes - new_bytes ? rt.used_bytes - (old_bytes - new_bytes) : 0;
    }
    note_used();
    if (new_bytes <= old_bytes || !rt.recording || rt.in_hook || !main_thread) {
        return;
    }
    // As an allocation: a measured cost, no clock read.
    flush_pending();
    mpprof_pending_t *p = &rt.pending;
    p->ptr = new_ptr;
    p->n_bytes = new_bytes - old_bytes;
    p->kind = 1;
    p->exact = false;
    p->record_q16 = rt.direct_record_q16;
    p->valid = true;
    current_site(&p->node, &p->offset);
    rt.allocs_seen++;
    rt.offset_q16 += rt.alloc_note_q16;
}

// A collection's figure is its own time: from the first instruction of
// upstream's collection to its last. What the profiler does around it (the
// heap census, the record) is hidden, and so nothing of it lands in the
// caller's time either. While not recording, the hooks do nothing costly,
// so a collection timed from Python after mpprof.stop() is upstream's own.
void mpprof_gc_collect_start(void) {
    if (!rt.recording) {
        rt.used_stale = true;
        return;
    }
    uint64_t h0 = hide_begin();
    if (mpprof_main_thread()) {
        flush_pending();
    }
    rt.used_before_gc = rt.used_bytes;
    rt.gc_start = hide_since(h0);
}

// The heap's state after a collection (used bytes, largest free block):
// the sweep frees blocks without telling anyone.
static void heap_census(gc_info_t *info) {
    rt.in_hook = true;
    update_gates();
    gc_info(info);
    rt.in_hook = false;
    update_gates();
    rt.used_bytes = info->used;
    rt.used_stale = false;
}

// Code objects whose bytecode was just freed must never match a new
// function that reuses the memory.
static void forget_dead_codes(void) {
    for (uint32_t i = 0; i < MPPROF_MAX_CODES; i++) {
        if (codes[i].bytecode != NULL && !codes[i].dead && gc_nbytes(codes[i].bytecode) == 0) {
            codes[i].dead = 1;
            codes[i].match = 0xff;
        }
    }
}

void mpprof_gc_collect_end(void) {
    if (!rt.recording) {
        rt.used_stale = true;
        return;
    }
    uint64_t h0 = hide_begin();
    uint64_t duration = stamp(h0) - rt.gc_start;
    gc_info_t info;
    heap_census(&info);
    forget_dead_codes();
    // Outside every profiled frame (the collection MicroPython makes after
    // a raw-REPL execution, at exit): not the script's, not counted.
    if (mpprof_top_frame != NULL && mpprof_main_thread()) {
        rt.collections++;
        rt.gc_ticks += duration;
        size_t freed = rt.used_before_gc > info.used ? rt.used_before_gc - info.used : 0;
        mpprof_wire_begin(1 + 6 * 10);
        mpprof_wire_u8(MPPROF_TAG_GC);
        mpprof_wire_uint(mpprof_port_wire_time(rt.gc_start));
        mpprof_wire_uint(mpprof_port_wire_time(duration));
        mpprof_wire_uint(freed / MICROPY_BYTES_PER_GC_BLOCK);
        mpprof_wire_uint(info.used);
        mpprof_wire_uint(info.free);
        mpprof_wire_uint(info.max_free * MICROPY_BYTES_PER_GC_BLOCK);
        mpprof_wire_end_record();
    }
    hide_end(h0);
}

/******************************************************************************/
// Calibration: what the hooks' fast paths cost.
//
// The counting at each opcode, a frame's entry and exit, an allocation's
// record and a native call read no clock of their own. Their cost is
// measured once at start-up, on this target, by running the same small
// functions on the plain VM and on the hooked one (nothing is recorded
// meanwhile), and taken out of every time: per opcode, call, allocation
// and native call (see stamp()).

#if MICROPY_ENABLE_COMPILER
#include "py/lexer.h"
#include "py/parse.h"
#include "py/compile.h"
#include "py/nlr.h"

// Every name here is an existing qstr, so compiling interns nothing new.
static const char calib_src[] =
    "def off(end):\n"
    " for key in range(end):\n"
    "  pass\n"
    "def on():\n"
    " pass\n"
    "def add(end):\n"
    " for key in range(end):\n"
    "  on()\n"
    "def other():\n"
    " pass\n"
    "def turn(end):\n"
    " for key in range(end):\n"
    "  on()\n"
    "  other()\n"
    "def set(end):\n"
    " for key in range(end):\n"
    "  (key, end)\n"
    "def copy(end):\n"
    " for key in range(end):\n"
    #if MICROPY_PY_BUILTINS_FLOAT
    "  key + 0.5\n"
    #else
    "  [key]\n"
    #endif
    #if MICROPY_EMIT_NATIVE
    "@micropython.native\n"
    "def get():\n"
    " pass\n"
    "def pop(end):\n"
    " for key in range(end):\n"
    "  get()\n"
    "@micropython.viper\n"
    "def send():\n"
    " pass\n"
    "def push(end):\n"
    " for key in range(end):\n"
    "  send()\n"
    #endif
;

// Referenced here so the build's qstr table has them whatever the port.
static const qstr calib_names[] = {
    MP_QSTR_off, MP_QSTR_on, MP_QSTR_add, MP_QSTR_set, MP_QSTR_copy, MP_QSTR_end, MP_QSTR_key, MP_QSTR_range,
    MP_QSTR_other, MP_QSTR_turn,
    #if MICROPY_EMIT_NATIVE
    MP_QSTR_micropython, MP_QSTR_native, MP_QSTR_get, MP_QSTR_pop, MP_QSTR_viper, MP_QSTR_send, MP_QSTR_push,
    #endif
};

typedef struct {
    uint64_t ticks;  // raw ticks less the hooks' own bracketed time
    uint64_t ops;
    uint64_t calls;
    uint64_t allocs;
    uint64_t natives;
} calib_run_t;

static calib_run_t calib_run(mp_obj_t fun, mp_int_t n, bool hooked) {
    calib_run_t r;
    mpprof_vm_hooked = hooked;
    rt.calibrating = hooked;
    rt.calibrating_allocs = hooked;
    update_gates();
    uint64_t hidden0 = rt.hidden;
    // On a freshly collected heap every time: what the allocator does for
    // an allocation depends on where it finds room, and a hooked run that
    // came after a plain one would otherwise search further.
    gc_collect();
    uint32_t ops0 = ops_now(), calls0 = rt.calls, allocs0 = rt.allocs_seen, natives0 = rt.native_calls;
    // At the same phase of a coarse tick every time, so the figures do not
    // depend on how long the board idled before (see mpprof_port_align_ticks).
    mpprof_port_align_ticks();
    uint64_t t0 = mpprof_ticks();
    mp_call_function_1(fun, MP_OBJ_NEW_SMALL_INT(n));
    uint64_t t1 = mpprof_ticks();
    r.ticks = (t1 - t0) - (rt.hidden - hidden0);
    r.ops = (uint32_t)(ops_now() - ops0);
    r.calls = (uint32_t)(rt.calls - calls0);
    r.allocs = (uint32_t)(rt.allocs_seen - allocs0);
    r.natives = (uint32_t)(rt.native_calls - natives0);
    mpprof_vm_hooked = 0;
    rt.calibrating = false;
    rt.calibrating_allocs = false;
    update_gates();
    // What the allocation hooks wrote is not the stream's.
    rt.pending.valid = false;
    memset(slots, 0, sizeof(slots));
    memset(slot_recent, 0, sizeof(slot_recent));
    mpprof_wire_reset();
    return r;
}

// Ticks a hooked run took beyond the plain one, less what the costs
// measured so far explain.
static uint64_t calib_unexplained(calib_run_t hooked, calib_run_t plain) {
    uint64_t explained = plain.ticks
        + ((hooked.ops * rt.op_cost_q16 + hooked.calls * rt.call_cost_q16) >> 16);
    return hooked.ticks > explained ? hooked.ticks - explained : 0;
}

// The least of a few runs: a host's clock sees other processes too (a
// deterministic target needs one, MPPROF_CALIB_RUNS = 1).
#ifndef MPPROF_CALIB_RUNS
#define MPPROF_CALIB_RUNS (3)
#endif

static calib_run_t calib_best(mp_obj_t fun, mp_int_t n, bool hooked) {
    calib_run_t best = calib_run(fun, n, hooked);
    for (int i = 1; i < MPPROF_CALIB_RUNS; i++) {
        calib_run_t r = calib_run(fun, n, hooked);
        if (r.ticks < best.ticks) {
            best = r;
        }
    }
    return best;
}

// Extra ticks per unit of `d_units`, in 16.16 fixed point, from two sizes
// of the same run (the difference cancels everything that does not grow).
// Long division in 32 bits: a 64-bit one pulls in a libgcc routine some
// boards' linker scripts cannot place.
static uint32_t calib_slope(uint64_t hooked_extra_small, uint64_t hooked_extra_large, uint64_t d_units) {
    if (hooked_extra_large <= hooked_extra_small || d_units == 0 || d_units > 0x7fffffff
        || hooked_extra_large - hooked_extra_small > 0xffffffff) {
        return 0;
    }
    uint32_t diff = (uint32_t)(hooked_extra_large - hooked_extra_small), d = (uint32_t)d_units;
    uint32_t q = diff / d, r = diff % d;
    if (q >= 0x10000) {
        return 0;
    }
    for (int i = 0; i < 16; i++) {
        r <<= 1;
        q <<= 1;
        if (r >= d) {
            r -= d;
            q |= 1;
        }
    }
    return q;
}

// The allocation hook's cost while not recording (a call, a heap-usage
// update, a return): in the plain runs above too, so their difference
// misses it, but a build without hooks has none of it. Timed here as calls
// through a pointer the compiler cannot see through, less the same loop
// without the call.
typedef void (*calib_alloc_hook_t)(void *ptr, size_t n_bytes);
static calib_alloc_hook_t volatile calib_alloc_hook = mpprof_gc_alloc;

static uint64_t calib_hook_loop(uint32_t n, bool call) {
    mpprof_port_align_ticks();
    uint64_t t0 = mpprof_ticks();
    for (volatile uint32_t i = 0; i < n; i++) {
        if (call) {
            calib_alloc_hook(NULL, 16);
        }
    }
    return mpprof_ticks() - t0;
}

// What one pass of a loop's body costs: `loop` timed with it and without,
// the least of five runs of each, per pass.
typedef uint64_t (*calib_loop_t)(uint32_t n, bool with);

static uint32_t calib_per_pass(calib_loop_t loop) {
    const uint32_t n = 2000;
    uint64_t with = UINT64_MAX, without = UINT64_MAX;
    for (int i = 0; i < 5; i++) {
        uint64_t w = loop(n, true), wo = loop(n, false);
        with = w < with ? w : with;
        without = wo < without ? wo : without;
    }
    return calib_slope(without, with, n);
}

static uint32_t calib_idle_alloc_hook(void) {
    size_t used = rt.used_bytes, peak = rt.peak_used;
    uint32_t cost = calib_per_pass(calib_hook_loop);
    rt.used_bytes = used;
    rt.peak_used = peak;
    return cost;
}

// The test whether a frame goes to the hooked VM while profiling is off
// (MICROPY_VM_EXECUTE_BYTECODE, at every call and generator resume: the
// flag loaded, tested, a branch): in
// the plain runs too, so their difference misses it, but a build without
// hooks has none of it (without this, calls on the emulated board read
// some 1.8 ticks each too long against the plain firmware: +0.74% on a
// loop of empty calls). Timed as calls of a function made of that test
// alone, less calls of an empty one, both through opaque pointers.
static volatile uint32_t calib_sink;

static MP_NOINLINE void calib_entry_test(void) {
    if (mpprof_vm_hooked) {
        calib_sink++; // never: profiling is off while this is timed
    }
}

static MP_NOINLINE void calib_entry_none(void) {
    __asm__ volatile ("");
}

typedef void (*calib_entry_t)(void);
static calib_entry_t volatile calib_entry_fns[2] = {calib_entry_none, calib_entry_test};

static uint64_t calib_entry_loop(uint32_t n, bool test) {
    calib_entry_t fn = calib_entry_fns[test];
    mpprof_port_align_ticks();
    uint64_t t0 = mpprof_ticks();
    for (volatile uint32_t i = 0; i < n; i++) {
        fn();
    }
    return mpprof_ticks() - t0;
}

static uint32_t calib_idle_entry_hook(void) {
    return calib_per_pass(calib_entry_loop);
}

// An allocation record's own cost (write_pending(), past flush_pending()'s
// check for a pending allocation): timed as a loop flushing one pending raw
// block, its site in a slot after the first, less the same loop with
// nothing pending. Both kinds of record: a type looked up (a raw block and
// a known type cost the same there) and a type told. With `miss`, each
// record finds its set's slots stale, so it is a SITE record (both loops
// make them stale: the difference is the record's alone).
static inline void calib_pending(mpprof_pending_t *p, void *block, bool exact, bool valid) {
    p->ptr = block;
    p->n_bytes = 2 * sizeof(mp_obj_t);
    p->node = 0;
    p->offset = 0;
    p->kind = 0;
    p->exact = exact;
    p->record_q16 = 0;
    p->valid = valid;
}

static uint64_t calib_record_loop(void *block, uint32_t n, bool pending, bool exact, bool miss) {
    // What a loop wrote is not the stream's (and a frame holds a loop's).
    mpprof_wire_reset();
    mpprof_port_align_ticks();
    mpprof_pending_t *p = &rt.pending;
    calib_pending(p, block, exact, false);
    uint32_t set = key_set(site_key(p, pending_type(p), 2 * sizeof(mp_obj_t)));
    volatile uint16_t stale = miss ? (uint16_t)(mpprof_wire_epoch + 1) : mpprof_wire_epoch;
    uint64_t hidden0 = rt.hidden;
    uint64_t t0 = mpprof_ticks();
    for (volatile uint32_t i = 0; i < n; i++) {
        slots[set].epoch = stale;
        slots[set + SITE_SETS].epoch = stale;
        calib_pending(p, block, exact, pending);
        flush_pending();
    }
    return mpprof_ticks() - t0 - (rt.hidden - hidden0);
}

static uint32_t calib_record(bool exact, bool miss) {
    void *block = m_new(mp_obj_t, 2);
    // A repeat is a byte, a SITE record some 8: the smallest frame holds a
    // loop's (none is sent).
    const uint32_t n = miss ? 100 : 400;
    uint64_t with = UINT64_MAX, without = UINT64_MAX;
    for (int i = 0; i < (miss ? 5 : 3); i++) {
        uint64_t w = calib_record_loop(block, n, true, exact, miss), wo = calib_record_loop(block, n, false, exact, miss);
        with = w < with ? w : with;
        without = wo < without ? wo : without;
    }
    memset(slots, 0, sizeof(slots));
    memset(slot_recent, 0, sizeof(slot_recent));
    mpprof_wire_reset();
    return calib_slope(without, with, n);
}

static bool calibrate(void) {
    (void)calib_names;
    nlr_buf_t nlr;
    mp_obj_dict_t *globals_prev = mp_globals_get();
    mp_obj_dict_t *locals_prev = mp_locals_get();
    if (nlr_push(&nlr) != 0) {
        // No calibration (no compiler room?): times keep the counting cost.
        mp_globals_set(globals_prev);
        mp_locals_set(locals_prev);
        mpprof_vm_hooked = 0;
        rt.calibrating = false;
        update_gates();
        return false;
    }
    mp_obj_dict_t *globals = MP_OBJ_TO_PTR(mp_obj_new_dict(4));
    mp_globals_set(globals);
    mp_locals_set(globals);
    mp_lexer_t *lex = mp_lexer_new_from_str_len(MP_QSTR__lt_string_gt_, calib_src, sizeof(calib_src) - 1, 0);
    qstr source_name = lex->source_name;
    mp_parse_tree_t tree = mp_parse(lex, MP_PARSE_FILE_INPUT);
    mp_call_function_0(mp_compile(&tree, source_name, false));
    mp_obj_t off = mp_obj_dict_get(MP_OBJ_FROM_PTR(globals), MP_OBJ_NEW_QSTR(MP_QSTR_off));
    mp_obj_t add = mp_obj_dict_get(MP_OBJ_FROM_PTR(globals), MP_OBJ_NEW_QSTR(MP_QSTR_add));
    mp_obj_t set = mp_obj_dict_get(MP_OBJ_FROM_PTR(globals), MP_OBJ_NEW_QSTR(MP_QSTR_set));
    mp_obj_t copy = mp_obj_dict_get(MP_OBJ_FROM_PTR(globals), MP_OBJ_NEW_QSTR(MP_QSTR_copy));
    mp_obj_t turn = mp_obj_dict_get(MP_OBJ_FROM_PTR(globals), MP_OBJ_NEW_QSTR(MP_QSTR_turn));
    // Each cost from two sizes of one run, hooked and plain: the difference
    // of differences leaves what grows with the size. Per opcode first (a
    // loop with no calls), then per call (the loop calling an empty
    // function), then what a call adds when its callee is not the one the
    // caller called last (the loop calling two in turn: the lookup is
    // hidden, its bracket's edges are not), then per allocation (the loop making a float, a type told
    // by its first word and size; without floats, a one-item list: the list
    // and its items),
    // per typed allocation (the loop building a tuple, which mp_obj_malloc
    // types), then per native call (the loop calling an empty native
    // function) and per viper call (an empty viper function), each less
    // what the opcode and call costs explain.
    // Small runs: calibration is part of every start-up, and what it
    // measures grows linearly.
    const mp_int_t small = 100, large = 700;
    #if MICROPY_EMIT_NATIVE
    mp_obj_t pop = mp_obj_dict_get(MP_OBJ_FROM_PTR(globals), MP_OBJ_NEW_QSTR(MP_QSTR_pop));
    mp_obj_t push = mp_obj_dict_get(MP_OBJ_FROM_PTR(globals), MP_OBJ_NEW_QSTR(MP_QSTR_push));
    mp_obj_t funs[7] = {off, add, turn, copy, set, pop, push};
    const int n_funs = 7;
    #else
    mp_obj_t funs[5] = {off, add, turn, copy, set};
    const int n_funs = 5;
    #endif
    // What each run measures, in that order (each uses those before it).
    enum { BY_OPS, BY_CALLS, BY_NODE_MISSES, BY_ALLOCS, BY_TYPED_ALLOCS, BY_NATIVES, BY_VIPERS };
    for (int k = 0; k < n_funs; k++) {
        // Allocation runs stay small: what they record must fit one frame.
        bool allocating = k == BY_ALLOCS || k == BY_TYPED_ALLOCS;
        mp_int_t s_n = allocating ? 50 : small, l_n = allocating ? 350 : large;
        calib_run_t ps = calib_best(funs[k], s_n, false), pl = calib_best(funs[k], l_n, false);
        calib_run_t hs = calib_best(funs[k], s_n, true), hl = calib_best(funs[k], l_n, true);
        uint64_t extra_s = calib_unexplained(hs, ps), extra_l = calib_unexplained(hl, pl);
        uint32_t *const cost[] = {&rt.op_cost_q16, &rt.call_cost_q16, &rt.node_miss_q16,
                                  &rt.alloc_cost_q16, &rt.typed_alloc_cost_q16, &rt.native_cost_q16, &rt.viper_cost_q16};
        const uint64_t units[] = {hl.ops - hs.ops, hl.calls - hs.calls, hl.calls - hs.calls,
                                  hl.allocs - hs.allocs, hl.allocs - hs.allocs, hl.natives - hs.natives, hl.natives - hs.natives};
        *cost[k] = calib_slope(extra_s, extra_l, units[k]);
    }
    // The idle hook (in the plain runs too) is part of every allocation.
    uint32_t idle = calib_idle_alloc_hook();
    rt.alloc_cost_q16 += idle;
    rt.typed_alloc_cost_q16 += idle;
    // The same for the VM's entry hook, part of every call, and for the
    // native call's (MICROPY_NATIVE_HOOK_CALL), the same test.
    uint32_t entry = calib_idle_entry_hook();
    rt.call_cost_q16 += entry;
    rt.native_cost_q16 += entry;
    rt.viper_cost_q16 += entry;
    rt.guessed_record_q16 = calib_record(false, false);
    rt.direct_record_q16 = calib_record(true, false);
    uint32_t miss = calib_record(true, true);
    rt.site_miss_q16 = miss > rt.direct_record_q16 ? miss - rt.direct_record_q16 : 0;
    nlr_pop();
    mp_globals_set(globals_prev);
    mp_locals_set(locals_prev);
    // Free what calibration made, so the heap is as the script would find
    // it without the profiler (left as garbage, it moves where the script's
    // objects land and what its collections cost).
    gc_collect();
    return true;
}
#else
static bool calibrate(void) {
    return false;
}
#endif

// The costs from earlier runs where the port keeps them (the unix port:
// calibrating is some 12 M instructions, more than many scripts run), else
// measured now and kept.
static void find_costs(void) {
    // The cost file's order (mpprof_port_costs_load()).
    uint32_t *const fields[MPPROF_COSTS] = {
        &rt.op_cost_q16, &rt.call_cost_q16, &rt.alloc_cost_q16, &rt.typed_alloc_cost_q16,
        &rt.native_cost_q16, &rt.guessed_record_q16, &rt.direct_record_q16, &rt.site_miss_q16,
        &rt.node_miss_q16, &rt.viper_cost_q16,
    };
    uint32_t costs[MPPROF_COSTS];
    rt.cost_runs = mpprof_port_costs_load(costs);
    if (rt.cost_runs != 0) {
        for (int k = 0; k < MPPROF_COSTS; k++) {
            *fields[k] = costs[k];
        }
    } else if (calibrate()) {
        for (int k = 0; k < MPPROF_COSTS; k++) {
            costs[k] = *fields[k];
        }
        mpprof_port_costs_store(costs);
    }
    // What the allocation hooks take out themselves (their record's part
    // is taken out where it is written); never below nothing.
    rt.alloc_note_q16 = rt.alloc_cost_q16 > rt.guessed_record_q16 ? rt.alloc_cost_q16 - rt.guessed_record_q16 : 0;
    // A typed allocation: the hook's note as for any allocation, the rest
    // with its record (the record's own cost and the typed path's
    // difference, never below nothing).
    int64_t typed_rest = (int64_t)rt.typed_alloc_cost_q16 - (int64_t)rt.alloc_note_q16;
    rt.typed_record_q16 = typed_rest > 0 ? (uint32_t)typed_rest : 0;
}

/******************************************************************************/
// Life cycle.

static void write_hello(void) {
    // The heap's size from its bounds: gc_info() would scan the whole heap.
    // What mp_init allocated before us is counted from the first collection.
    size_t total = 0;
    for (mp_state_mem_area_t *a = &MP_STATE_MEM(area); a != NULL;) {
        total += a->gc_pool_end - a->gc_pool_start;
        #if MICROPY_GC_SPLIT_HEAP
        a = a->next;
        #else
        a = NULL;
        #endif
    }
    gc_info_t info;
    info.total = total;
    rt.used_bytes = 0;
    rt.peak_used = 0;
    rt.heap_total = info.total;
    const char *clock = mpprof_port_clock_name();
    const char *target = mpprof_port_target_name();
    const char *version = MICROPY_VERSION_STRING;
    const char *platform = MICROPY_PY_SYS_PLATFORM;
    mpprof_wire_begin(1 + 6 * 10 + 4 * 74);
    mpprof_wire_u8(MPPROF_TAG_HELLO);
    mpprof_wire_uint(1);
    mpprof_wire_uint(sizeof(void *));
    mpprof_wire_uint(MICROPY_BYTES_PER_GC_BLOCK);
    unsigned small_int_bits = 1;
    for (mp_uint_t m = (mp_uint_t)MP_SMALL_INT_MAX; m != 0; m >>= 1) {
        small_int_bits++;
    }
    mpprof_wire_uint(small_int_bits);
    mpprof_wire_uint(info.total);
    mpprof_wire_uint(mpprof_port_clock_hz());
    mpprof_wire_str(clock, strlen(clock), 64);
    mpprof_wire_str(version, strlen(version), 64);
    mpprof_wire_str(platform, strlen(platform), 64);
    mpprof_wire_str(target, strlen(target), 64);
    mpprof_wire_end_record();
}

static void reset_tables(void) {
    if (!tables_clean) {
        memset(codes, 0, sizeof(codes));
        memset(types, 0, sizeof(types));
        memset(slots, 0, sizeof(slots));
        memset(slot_recent, 0, sizeof(slot_recent));
        memset(call_sites, 0, sizeof(call_sites));
        tables_clean = true;
    }
    n_extra_codes = 0;
    rt.n_codes = 0;
    rt.n_types = 0;
    rt.n_nodes = 1;
    memset(counters, 0, rt.counters_used * sizeof(counters[0]));
    MPPROF_LINE(mpprof_line_reset(rt.counters_used));
    rt.counters_used = 0;
    rt.dirty_codes = NULL;
    rt.dirty_nodes = 0;
    rt.unprofiled_frames = 0;
    memset(&nodes[0], 0, sizeof(nodes[0]));
    mpprof_top_frame = NULL;
}

// What calibration measured, for the host to show.
static void write_cost(void) {
    uint8_t data[7 * 10];
    size_t n = 0;
    uint32_t v[7] = {rt.op_cost_q16, rt.call_cost_q16, rt.alloc_cost_q16, rt.typed_alloc_cost_q16,
                     rt.native_cost_q16, rt.cost_runs, rt.viper_cost_q16};
    for (int i = 0; i < 7; i++) {
        // In the wire's ticks, as every other time (but the count of runs).
        uint64_t x = i != 5 ? mpprof_port_wire_time(v[i]) : v[i];
        do {
            data[n++] = (x & 0x7f) | (x > 0x7f ? 0x80 : 0);
            x >>= 7;
        } while (x != 0);
    }
    mpprof_wire_begin(1 + 10 + sizeof(data));
    mpprof_wire_u8(MPPROF_TAG_COST);
    mpprof_wire_bytes(data, n);
    mpprof_wire_end_record();
}

void mpprof_init(void) {
    memset(&rt, 0, sizeof(rt));
    reset_tables();
    mpprof_op_countdown = OP_TICK_PERIOD;
    mpprof_vm_hooked = 0;
    if (!mpprof_port_open()) {
        return;
    }
    rt.open = true;
    mpprof_wire_reset();
    // 32-bit division: a 64-bit one pulls in a libgcc routine some boards'
    // linker scripts cannot place (a host's counter can pass 2^32 Hz).
    uint64_t hz = mpprof_port_tick_hz();
    uint32_t shift = hz > UINT32_MAX ? 8 : 0;
    rt.flush_ticks = MPPROF_FLUSH_TICKS ? MPPROF_FLUSH_TICKS
        : ((uint64_t)((uint32_t)(hz >> shift) / 1000u) * mpprof_port_flush_ms()) << shift;
    init_known_types();
    find_costs();
    // What calibration put in the tables and counters is not the script's;
    // time starts now.
    reset_tables();
    rt.hidden = 0;
    rt.calls = 0;
    rt.native_calls = 0;
    rt.allocs_seen = 0;
    rt.alloc_count = 0;
    rt.alloc_bytes = 0;
    rt.ops_end = OP_TICK_PERIOD;
    rt.ops_cost_q16 = 0;
    mpprof_op_countdown = OP_TICK_PERIOD;
    // Time starts now: stamps count from here.
    rt.offset_q16 = mpprof_ticks() << 16;
    write_hello();
    write_cost();
    MPPROF_LINE(mpprof_line_hello());
    mpprof_wire_flush();
    rt.recording = true;
    update_gates();
    mpprof_vm_hooked = 1;
    MPPROF_LINE(mpprof_line_start());
}

void mpprof_deinit(void) {
    if (!rt.open) {
        return;
    }
    MPPROF_LINE(mpprof_line_stop());
    uint64_t t = now();
    bool was_recording = rt.recording;
    flush_all(t);
    mpprof_vm_hooked = 0;
    rt.recording = false;
    update_gates();
    mpprof_wire_begin(1 + 9 * 10);
    mpprof_wire_u8(MPPROF_TAG_END);
    mpprof_wire_uint(mpprof_port_wire_time(t));
    mpprof_wire_uint(rt.heap_total);
    mpprof_wire_uint(rt.peak_used);
    mpprof_wire_uint(rt.alloc_bytes);
    mpprof_wire_uint(rt.alloc_count);
    mpprof_wire_uint(rt.collections);
    mpprof_wire_uint(mpprof_port_wire_time(rt.gc_ticks));
    mpprof_wire_uint(mpprof_wire_dropped_records);
    mpprof_wire_uint(was_recording || rt.end_reason != 0 ? rt.end_reason : 4);
    mpprof_wire_end_record();
    mpprof_wire_flush();
    mpprof_port_close();
    rt.open = false;
}

bool mpprof_active(void) {
    return rt.recording;
}

void mpprof_start(void) {
    if (!rt.open || rt.recording) {
        return;
    }
    uint64_t h0 = hide_begin();
    if (rt.used_stale) {
        gc_info_t info;
        heap_census(&info);
        note_used();
        forget_dead_codes();
    }
    uint64_t t = stamp(h0);
    write_stamped(MPPROF_TAG_START, t, NULL, 0);
    hide_end(h0);
    rt.recording = true;
    update_gates();
    mpprof_vm_hooked = 1;
    MPPROF_LINE(mpprof_line_start());
}

void mpprof_stop(void) {
    if (!rt.recording) {
        return;
    }
    MPPROF_LINE(mpprof_line_stop());
    uint64_t h0 = hide_begin();
    uint64_t t = stamp(h0);
    flush_all(t);
    write_stamped(MPPROF_TAG_STOP, t, NULL, 0);
    mpprof_wire_flush();
    hide_end(h0);
    rt.recording = false;
    update_gates();
    mpprof_vm_hooked = 0;
}

void mpprof_mark(uint8_t tag, const char *label, size_t len) {
    if (!rt.recording) {
        return;
    }
    // Flush first, so that everything counted so far lands before the mark.
    uint64_t h0 = hide_begin();
    uint64_t t = stamp(h0);
    flush_all(t);
    write_stamped(tag, t, label, len);
    hide_end(h0);
}
