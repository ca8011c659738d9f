// mpprof: what the instrumented and the plain qemu firmware add to the port
// alike (the flags come from ports/qemu/clock/micropython.mk). Before v1.27
// the port has no clock, so no `time`, `select` or `_asyncio`:
// ports/qemu/clock/mpprof_qemu_hal.c gives it one (SysTick at 1 kHz, as
// v1.27 does) and these turn them on. From v1.27 the port has its own clock
// and `time`/`select`, but still leaves `_asyncio` off. On every version
// asyncio (frozen from extmod/asyncio) is on where there is a clock, and the
// ROMFS the host copies the script's modules into is mounted at /rom.
#if MPPROF_QEMU_HAL
#undef MICROPY_PY_TIME
#define MICROPY_PY_TIME (1)
#undef MICROPY_PY_SELECT
#define MICROPY_PY_SELECT (1)
#endif
#if MPPROF_QEMU_HAL || MPPROF_QEMU_ASYNCIO
#undef MICROPY_PY_ASYNCIO
#define MICROPY_PY_ASYNCIO (1)
#endif
#if MPPROF_QEMU_ROMFS
#undef MICROPY_VFS_ROM_IOCTL
#define MICROPY_VFS_ROM_IOCTL (1)
#endif
