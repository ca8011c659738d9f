// mpprof: configuration of the qemu port (MPS2_AN385, Cortex-M3) with the
// profiling hooks. Passed to the build as MP_CONFIGFILE.

#include <mpconfigport.h>

// Before v1.27: the port's clock, time, asyncio and the ROMFS of the
// script's modules (as in the plain firmware).
#include "mpprof_qemu_clock.h"

// Board-sized tables: the MPS2 has 4 MiB of RAM, the GC heap 140 KiB.
#define MPPROF_MAX_DEPTH (128)
#define MPPROF_MAX_CODES (256)
#define MPPROF_MAX_NODES (4096)
#define MPPROF_MAX_TYPES (64)
#define MPPROF_MAX_EXTRA_CODES (32)
#define MPPROF_COUNTER_WORDS (1u << 16)
#define MPPROF_FRAME_PAYLOAD (1024)
// As on a real board (boards/mpprof_board_config.h): one-byte repeats only.
#define MPPROF_SITE_SLOTS (128)
// Guest time is deterministic: one calibration run of each size is exact.
#define MPPROF_CALIB_RUNS (1)
#define MPPROF_RTT_UP_SIZE (64 * 1024)
// The RTT block in the MPS2's 16 MiB RAM at 0x21000000, which MicroPython
// does not use (its image and heap are in SSRAM at 0x0): qemu can back that
// RAM with a file the host reads while the guest runs, no gdbstub stop
// needed. The gdbstub reader finds the block there too.
// (micropython.mk places the section there.)
#define MPPROF_RTT_SHARED_SECTION (1)

// The qemu port reads its UART only while it waits for input, so a Ctrl-C
// sent while a script runs would go unseen: the runtime looks for it on its
// periodic loop tick (mpprof_port_qemu.c), while profiling.
// (The build defines MPPROF_PORT_QEMU with the qemu port layer, not with the
// real boards' layer it can also run.)
#if MPPROF_PORT_QEMU
void mpprof_port_qemu_poll(void);
// Its timer is coarser than instructions: the port restarts it after the
// profiler's own work and holds SysTick during it (mpprof_port_qemu.c).
#define MPPROF_PORT_HIDES (1)
#define MPPROF_PORT_POLL() mpprof_port_qemu_poll()
#endif

#include "mpprof_hooks.h"
