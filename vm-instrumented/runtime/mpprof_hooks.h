// mpprof: definitions of MicroPython's profiling hook macros.
//
// Included from a port's (or variant's) mpconfig header when MicroPython is
// built with the mpprof runtime. Only plain C types appear here, because this
// header is seen before MicroPython's own object headers.

#ifndef MPPROF_HOOKS_H
#define MPPROF_HOOKS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define MICROPY_MPPROF (1)

struct _mp_code_state_t;

// The runtime's globals that MicroPython's own files read (a call's test,
// the hooked VM's count) are the executable's own, never a shared
// library's: on a position-independent build (the unix port's default) each
// read is then one instruction, not a load of its address first.
#if defined(__GNUC__) && !defined(_WIN32)
#define MPPROF_HIDDEN __attribute__((visibility("hidden")))
#else
#define MPPROF_HIDDEN
#endif

// Non-zero while frames run through the hooked copy of the VM.
extern uint8_t mpprof_vm_hooked MPPROF_HIDDEN;

// Runs a bytecode frame while profiling is on: through the hooked copy of
// the VM, or upstream's when the frame cannot be profiled. Returns its
// mp_vm_return_kind_t (an int here: this header comes before MicroPython's
// object headers).
int mpprof_vm_execute(struct _mp_code_state_t *code_state, void *inject_exc);
void mpprof_gc_alloc(void *ptr, size_t n_bytes);
void mpprof_gc_alloc_fail(size_t n_bytes);
void mpprof_gc_free(void *ptr, size_t n_blocks);
void mpprof_gc_realloc(void *old_ptr, void *new_ptr, size_t old_blocks, size_t n_bytes);
void mpprof_gc_collect_start(void);
void mpprof_gc_collect_end(void);
void mpprof_obj_typed(void *base);
void mpprof_obj_frame(void *code_state);
void mpprof_init(void);
void mpprof_deinit(void);

#if defined(MPPROF_VM_HOOKED_COPY)
// The hooked copy of mp_execute_bytecode (mpprof_vm.c): take this frame's
// counter array once, then count each dispatched opcode by its offset.
#define MICROPY_VM_HOOK_ENTER(code_state, inject_exc) \
    const uintptr_t mpprof_counts_bias = mpprof_top_frame->counts_bias;
// counts_bias = (uintptr_t)counts - (uintptr_t)bytecode * 4, so the counter
// of the opcode at ip is at counts_bias + ip * 4: one add, no subtraction.
// The same few instructions run at every opcode (the countdown is the
// global opcode count, see mpprof_ops_now), so their cost is one constant
// the runtime measures at start-up and takes out of every time.
extern uint32_t mpprof_op_countdown MPPROF_HIDDEN;
void mpprof_op_tick(void);
#if MPPROF_LINE_TIME && !MPPROF_LINE_SAMPLED
// Exact line time (mpprof_line.c): every dispatch closes the running
// opcode's interval and charges it to that opcode's line slot.
void mpprof_line_step(const void *ip);
#define MPPROF_HOOK_LINE_STEP(ip) mpprof_line_step(ip)
#else
#define MPPROF_HOOK_LINE_STEP(ip)
#endif
#define MICROPY_VM_HOOK_OPCODE(ip) \
    do { \
        ++*(uint32_t *)(mpprof_counts_bias + (uintptr_t)(ip) * sizeof(uint32_t)); \
        if (--mpprof_op_countdown == 0) { \
            mpprof_op_tick(); \
        } \
        MPPROF_HOOK_LINE_STEP(ip); \
    } while (0)
// An opcode run without a dispatch (v1.26+: the LOAD/STORE_SUBSCR the
// BUILD_SLICE fast path consumes) is counted as if it had been dispatched.
#define MICROPY_VM_HOOK_OPCODE_NO_DISPATCH(ip) MICROPY_VM_HOOK_OPCODE(ip)
#else
// The plain copy has no entry hook: its callers (a function's call, a
// generator's resume) choose, before its prologue runs, whether a frame goes
// to the hooked copy instead. While profiling is off that choice is the
// only cost of a call: a load and a branch.
#define MICROPY_VM_HOOK_ENTER(code_state, inject_exc)
#define MICROPY_VM_EXECUTE_BYTECODE(code_state, inject_exc) \
    (mpprof_vm_hooked \
        ? (mp_vm_return_kind_t)mpprof_vm_execute((code_state), (void *)(inject_exc)) \
        : mp_execute_bytecode((code_state), (inject_exc)))
#endif

#define MICROPY_GC_HOOK_ALLOC(ptr, n_bytes) mpprof_gc_alloc((ptr), (n_bytes))
#define MICROPY_GC_HOOK_ALLOC_FAIL(n_bytes) mpprof_gc_alloc_fail(n_bytes)
#define MICROPY_GC_HOOK_FREE(ptr, n_blocks) mpprof_gc_free((ptr), (n_blocks))
#define MICROPY_GC_HOOK_REALLOC(old_ptr, new_ptr, old_blocks, n_bytes) \
    mpprof_gc_realloc((old_ptr), (new_ptr), (old_blocks), (n_bytes))
#define MICROPY_GC_HOOK_COLLECT_START() mpprof_gc_collect_start()
#define MICROPY_GC_HOOK_COLLECT_END() mpprof_gc_collect_end()
#define MICROPY_OBJ_HOOK_MALLOC_TYPED(base) mpprof_obj_typed(base)
#define MICROPY_OBJ_HOOK_MALLOC_FRAME(code_state) mpprof_obj_frame(code_state)

// Frames for what runs outside the bytecode VM: compiling source (an
// import of a .py file, exec, eval) and a call into native or viper code.
// Each is a frame of its own in the calling-context tree, so its time and
// allocations are not its caller's. The node lives on the C stack of the
// hooked function; if an exception unwinds through it, an NLR jump
// callback closes the frame (MicroPython's own mechanism for exactly this).
typedef struct _mpprof_extra_frame_t {
    struct _mpprof_extra_frame_t *prev; // as nlr_jump_callback_node_t
    void (*fun)(void *ctx);
    void *frame;                        // its shadow frame, NULL: none
    bool native;                        // native or viper (else compiling)
} mpprof_extra_frame_t;
void mpprof_compile_begin(mpprof_extra_frame_t *x, size_t source_name);
void mpprof_native_begin(mpprof_extra_frame_t *x, const void *fun, bool viper);
void mpprof_extra_end(mpprof_extra_frame_t *x);
// While profiling is off (mpprof_vm_hooked 0: neither recording nor
// calibrating) a hook is a load and a branch, no call: a loop can call a
// viper function hundreds of thousands of times.
#define MICROPY_COMPILE_HOOK_BEGIN(source_name) \
    mpprof_extra_frame_t mpprof_extra_; \
    mpprof_extra_.frame = NULL; \
    if (mpprof_vm_hooked) { \
        mpprof_compile_begin(&mpprof_extra_, (source_name)); \
    }
#define MICROPY_COMPILE_HOOK_END() \
    if (mpprof_extra_.frame != NULL) { \
        mpprof_extra_end(&mpprof_extra_); \
    }
#define MICROPY_NATIVE_HOOK_ENTER(fun, viper) \
    mpprof_extra_frame_t mpprof_extra_; \
    mpprof_extra_.frame = NULL; \
    if (mpprof_vm_hooked) { \
        mpprof_native_begin(&mpprof_extra_, (fun), (viper)); \
    }
#define MICROPY_NATIVE_HOOK_EXIT() \
    if (mpprof_extra_.frame != NULL) { \
        mpprof_extra_end(&mpprof_extra_); \
    }
// A call of a native or viper function (py/objfun.c, first thing in
// fun_native_call and fun_viper_call): while profiling, the runtime does the
// rest of the call itself, hooks included, in one function of each kind
// with upstream's own arguments (a jump, not a call with them passed
// again: the executable's own function, as the jump needs on a
// position-independent build). Declared where it is used: mp_obj_t is
// MicroPython's, not known here.
#define MICROPY_NATIVE_HOOK_CALL(viper, self_in, n_args, n_kw, args) \
    if (mpprof_vm_hooked) { \
        mp_obj_t mpprof_native_call(mp_obj_t, size_t, size_t, const mp_obj_t *) MPPROF_HIDDEN; \
        mp_obj_t mpprof_viper_call(mp_obj_t, size_t, size_t, const mp_obj_t *) MPPROF_HIDDEN; \
        return ((viper) ? mpprof_viper_call : mpprof_native_call)((self_in), (n_args), (n_kw), (args)); \
    }

#define MICROPY_PORT_INIT_FUNC mpprof_init()
#define MICROPY_PORT_DEINIT_FUNC mpprof_deinit()

#endif // MPPROF_HOOKS_H
