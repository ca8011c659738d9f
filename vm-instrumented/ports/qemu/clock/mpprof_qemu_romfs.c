// mpprof: the script's own modules on the emulated board, on every supported
// version (MPPROF_QEMU_ROMFS, set by the vm-instrumented crate). The qemu
// port has VfsRom but no segment to mount (its MICROPY_VFS_ROM_IOCTL is 0,
// in v1.27 and v1.28 as before), so this gives it one: the host writes a
// ROMFS image of them (upstream's format, extmod/vfs_rom.c) into the MPS2's
// 16 MiB RAM at MPPROF_QEMU_ROMFS_ADDR, above the RTT block, before the soft
// reset that starts the run; MicroPython mounts it at /rom at every start-up
// (mp_init) and puts /rom and /rom/lib on sys.path. Without an image there is
// nothing to mount: the constant GeneratorExit is raised, which the mount
// catches, so nothing is allocated (a new OSError would be, while profiling).

#include "py/runtime.h"
#include "py/mperrno.h"

#if MPPROF_QEMU_ROMFS

#include "py/objarray.h"
#include "extmod/vfs.h"

#define MPPROF_QEMU_ROMFS_ADDR (0x21800000)
#define MPPROF_QEMU_ROMFS_SIZE (8 * 1024 * 1024)

mp_obj_t mp_vfs_rom_ioctl(size_t n_args, const mp_obj_t *args) {
    const uint8_t *rom = (const uint8_t *)MPPROF_QEMU_ROMFS_ADDR;
    // "RM1", the start of a ROMFS record.
    bool present = rom[0] == 0xd2 && rom[1] == 0xcd && rom[2] == 0x31;
    switch (mp_obj_get_int(args[0])) {
        case MP_VFS_ROM_IOCTL_GET_NUMBER_OF_SEGMENTS:
            return MP_OBJ_NEW_SMALL_INT(1);
        case MP_VFS_ROM_IOCTL_GET_SEGMENT:
            if (n_args < 2 || mp_obj_get_int(args[1]) != 0) {
                return MP_OBJ_NEW_SMALL_INT(-MP_EINVAL);
            }
            if (!present) {
                nlr_raise(MP_OBJ_FROM_PTR(&mp_const_GeneratorExit_obj));
            }
            return mp_obj_new_memoryview('B', MPPROF_QEMU_ROMFS_SIZE, (void *)rom);
        default:
            return MP_OBJ_NEW_SMALL_INT(-MP_EINVAL);
    }
}

#endif // MPPROF_QEMU_ROMFS
