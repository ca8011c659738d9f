// mpprof: the `mpprof` Python module, for scripts to control and annotate a
// profile: start(), stop(), active(), mark(label), and `with region(label):`.
// Nothing here allocates on the heap, so using it does not disturb what is
// measured.

#include <string.h>

#include "py/runtime.h"
#include "mpprof_rt.h"

#define REGION_DEPTH (16)
#define LABEL_MAX (64)

static char region_labels[REGION_DEPTH][LABEL_MAX];
static size_t region_label_len[REGION_DEPTH];
static size_t region_depth;
static char next_label[LABEL_MAX];
static size_t next_label_len;

static const char *label_of(mp_obj_t label, size_t *len) {
    const char *s = mp_obj_str_get_data(label, len);
    if (*len > LABEL_MAX) {
        *len = LABEL_MAX;
    }
    return s;
}

static mp_obj_t mpprof_mod_start(void) {
    mpprof_start();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(mpprof_mod_start_obj, mpprof_mod_start);

static mp_obj_t mpprof_mod_stop(void) {
    mpprof_stop();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(mpprof_mod_stop_obj, mpprof_mod_stop);

static mp_obj_t mpprof_mod_active(void) {
    return mp_obj_new_bool(mpprof_active());
}
static MP_DEFINE_CONST_FUN_OBJ_0(mpprof_mod_active_obj, mpprof_mod_active);

static mp_obj_t mpprof_mod_mark(mp_obj_t label) {
    size_t len;
    const char *s = label_of(label, &len);
    mpprof_mark(MPPROF_TAG_MARK, s, len);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(mpprof_mod_mark_obj, mpprof_mod_mark);

// The region context manager is one constant object: region(label) records
// the label, __enter__ opens the region and __exit__ closes the innermost.
static mp_obj_t region_enter(mp_obj_t self) {
    if (region_depth < REGION_DEPTH) {
        memcpy(region_labels[region_depth], next_label, next_label_len);
        region_label_len[region_depth] = next_label_len;
    }
    region_depth++;
    mpprof_mark(MPPROF_TAG_REGION_BEGIN, next_label, next_label_len);
    return self;
}
static MP_DEFINE_CONST_FUN_OBJ_1(region_enter_obj, region_enter);

static mp_obj_t region_exit(size_t n_args, const mp_obj_t *args) {
    (void)n_args;
    (void)args;
    if (region_depth > 0) {
        region_depth--;
        if (region_depth < REGION_DEPTH) {
            mpprof_mark(MPPROF_TAG_REGION_END, region_labels[region_depth], region_label_len[region_depth]);
        }
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(region_exit_obj, 1, 4, region_exit);

static const mp_rom_map_elem_t region_locals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___enter__), MP_ROM_PTR(&region_enter_obj) },
    { MP_ROM_QSTR(MP_QSTR___exit__), MP_ROM_PTR(&region_exit_obj) },
};
static MP_DEFINE_CONST_DICT(region_locals, region_locals_table);

static MP_DEFINE_CONST_OBJ_TYPE(
    mpprof_region_type,
    MP_QSTR_region,
    MP_TYPE_FLAG_NONE,
    locals_dict, &region_locals
    );

static const mp_obj_base_t mpprof_region_obj = { &mpprof_region_type };

static mp_obj_t mpprof_mod_region(mp_obj_t label) {
    size_t len;
    const char *s = label_of(label, &len);
    memcpy(next_label, s, len);
    next_label_len = len;
    return MP_OBJ_FROM_PTR(&mpprof_region_obj);
}
static MP_DEFINE_CONST_FUN_OBJ_1(mpprof_mod_region_obj, mpprof_mod_region);

static const mp_rom_map_elem_t mpprof_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_mpprof) },
    { MP_ROM_QSTR(MP_QSTR_start), MP_ROM_PTR(&mpprof_mod_start_obj) },
    { MP_ROM_QSTR(MP_QSTR_stop), MP_ROM_PTR(&mpprof_mod_stop_obj) },
    { MP_ROM_QSTR(MP_QSTR_active), MP_ROM_PTR(&mpprof_mod_active_obj) },
    { MP_ROM_QSTR(MP_QSTR_mark), MP_ROM_PTR(&mpprof_mod_mark_obj) },
    { MP_ROM_QSTR(MP_QSTR_region), MP_ROM_PTR(&mpprof_mod_region_obj) },
};
static MP_DEFINE_CONST_DICT(mpprof_module_globals, mpprof_module_globals_table);

const mp_obj_module_t mpprof_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&mpprof_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_mpprof, mpprof_user_cmodule);
