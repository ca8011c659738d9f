// mpprof: before v1.27 the qemu port has no clock, so no `time`, `select` or
// `_asyncio`: ports/qemu/clock/mpprof_qemu_hal.c gives it one (SysTick at
// 1 kHz, as v1.27 does) and these turn them on, so asyncio (frozen from
// extmod/asyncio) runs on the board; and the ROMFS the host copies the
// script's modules into is mounted at /rom. Included by the instrumented
// and the plain firmware's configuration alike.
#if MPPROF_QEMU_HAL
#undef MICROPY_PY_TIME
#define MICROPY_PY_TIME (1)
#undef MICROPY_PY_SELECT
#define MICROPY_PY_SELECT (1)
#undef MICROPY_PY_ASYNCIO
#define MICROPY_PY_ASYNCIO (1)
#undef MICROPY_VFS_ROM_IOCTL
#define MICROPY_VFS_ROM_IOCTL (1)
#endif
