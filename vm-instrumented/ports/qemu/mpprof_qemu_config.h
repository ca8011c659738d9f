// mpprof: configuration of the qemu port (MPS2_AN385, Cortex-M3) with the
// profiling hooks. Passed to the build as MP_CONFIGFILE.

#include <mpconfigport.h>

// Board-sized tables: the MPS2 has 4 MiB of RAM, the GC heap 140 KiB.
#define MPPROF_MAX_DEPTH (128)
#define MPPROF_MAX_CODES (256)
#define MPPROF_MAX_NODES (4096)
#define MPPROF_MAX_TYPES (64)
#define MPPROF_COUNTER_WORDS (1u << 16)
#define MPPROF_FRAME_PAYLOAD (1024)
#define MPPROF_RTT_UP_SIZE (64 * 1024)

#include "mpprof_hooks.h"
