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

// The symbol name hosts look for in the ELF.
mpprof_rtt_cb_t _SEGGER_RTT __attribute__((used, aligned(4)));
static uint8_t rtt_up[MPPROF_RTT_UP_SIZE];
static uint8_t rtt_down[MPPROF_RTT_DOWN_SIZE];

void mpprof_rtt_init(void) {
    mpprof_rtt_cb_t *cb = &_SEGGER_RTT;
    if (cb->id[0] == 'S') {
        // Already set up (a soft reset): keep what the host has not read yet.
        return;
    }
    cb->max_up = 1;
    cb->max_down = 1;
    cb->up[0].name = "mpprof";
    cb->up[0].buffer = rtt_up;
    cb->up[0].size = sizeof(rtt_up);
    cb->up[0].wr_off = 0;
    cb->up[0].rd_off = 0;
    cb->up[0].flags = 0; // no-block-skip: a full buffer drops the frame
    cb->down[0].name = "mpprof";
    cb->down[0].buffer = rtt_down;
    cb->down[0].size = sizeof(rtt_down);
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
    mpprof_rtt_buffer_t *up = &_SEGGER_RTT.up[0];
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
