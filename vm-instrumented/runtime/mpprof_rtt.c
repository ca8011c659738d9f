// mpprof: RTT control block and up-buffer writer (see mpprof_rtt.h).

#include <string.h>

#include "py/mpconfig.h"
#include "mpprof_rtt.h"

#ifndef MPPROF_RTT_UP_SIZE
#define MPPROF_RTT_UP_SIZE (16 * 1024)
#endif
#define MPPROF_RTT_DOWN_SIZE (16)

typedef struct {
    const char *name;
    uint8_t *buffer;
    uint32_t size;
    volatile uint32_t wr_off;   // written by the target
    volatile uint32_t rd_off;   // written by the host
    uint32_t flags;
} mpprof_rtt_buffer_t;

typedef struct {
    char id[16];
    int32_t max_up;
    int32_t max_down;
    mpprof_rtt_buffer_t up[1];
    mpprof_rtt_buffer_t down[1];
} mpprof_rtt_cb_t;

#if MPPROF_RTT_SHARED_SECTION
// In a section of its own that the build places (`--section-start`) outside
// the image: on the emulated board, RAM the host maps from a file and reads
// without stopping the guest. Uninitialised (nobits; '@' starts a comment
// for the Arm assembler, hiding the "progbits" GCC would append).
#define RTT_PLACE __attribute__((section(".mpprof_rtt,\"aw\",%nobits @"), used, aligned(4)))
#else
#define RTT_PLACE __attribute__((used, aligned(4)))
#endif

// The symbol name hosts look for in the ELF.
mpprof_rtt_cb_t _SEGGER_RTT RTT_PLACE;
static uint8_t rtt_up[MPPROF_RTT_UP_SIZE] RTT_PLACE;
static uint8_t rtt_down[MPPROF_RTT_DOWN_SIZE] RTT_PLACE;
#define RTT_CB (&_SEGGER_RTT)
#define RTT_UP (rtt_up)
#define RTT_DOWN (rtt_down)

// In .bss: false at power-on, kept across soft resets (which re-run
// mpprof_init) so the host's unread bytes survive them.
static bool rtt_ready;

void mpprof_rtt_init(void) {
    mpprof_rtt_cb_t *cb = RTT_CB;
    if (rtt_ready) {
        // Already set up (a soft reset): keep what the host has not read yet.
        return;
    }
    rtt_ready = true;
    // The id last (below): a host polling RAM must not take a block that is
    // still being written for a good one.
    memset(cb->id, 0, sizeof(cb->id));
    cb->max_up = 1;
    cb->max_down = 1;
    cb->up[0].name = "mpprof";
    cb->up[0].buffer = RTT_UP;
    cb->up[0].size = MPPROF_RTT_UP_SIZE;
    cb->up[0].wr_off = 0;
    cb->up[0].rd_off = 0;
    cb->up[0].flags = 0; // no-block-skip: a full buffer drops the frame
    cb->down[0].name = "mpprof";
    cb->down[0].buffer = RTT_DOWN;
    cb->down[0].size = MPPROF_RTT_DOWN_SIZE;
    cb->down[0].wr_off = 0;
    cb->down[0].rd_off = 0;
    cb->down[0].flags = 0;
    // Write the id last, and built at run time, so a host scanning RAM never
    // finds a half-initialised block or a copy of the id in the image.
    static const char id_rev[] = "TTR REGGES";
    char id[16] = {0};
    for (size_t i = 0; i < sizeof(id_rev) - 1; i++) {
        id[i] = id_rev[sizeof(id_rev) - 2 - i];
    }
    __asm volatile ("" ::: "memory");
    memcpy(cb->id, id, sizeof(id));
}

bool mpprof_rtt_write(const uint8_t *buf, size_t len) {
    mpprof_rtt_buffer_t *up = &RTT_CB->up[0];
    uint32_t size = up->size;
    uint32_t wr = up->wr_off;
    uint32_t rd = up->rd_off;
    uint32_t free = rd > wr ? rd - wr - 1 : size - (wr - rd) - 1;
    if (len > free) {
        return false;
    }
    size_t first = size - wr;
    if (first > len) {
        first = len;
    }
    memcpy(&up->buffer[wr], buf, first);
    memcpy(&up->buffer[0], buf + first, len - first);
    __asm volatile ("" ::: "memory");
    wr += len;
    if (wr >= size) {
        wr -= size;
    }
    up->wr_off = wr;
    return true;
}
