// mpprof: the board port layers' cycle counters are 32 bits or narrower
// (DWT CYCCNT, SysTick, CCOUNT); this extends one to 64 bits.
//
// The wrap constraint: a counter alone cannot tell how many turns passed
// between two reads, so it is right only while reads come less than one turn
// apart. The runtime reads the ticks at every call, return and flush, which
// holds while Python code runs; but one long call into C (time.sleep(), a
// blocking read, a slow print) can outlast a turn. So the port's microsecond
// clock (32 bits: one turn is 71 minutes) is read alongside: when it says
// more than half a turn went by, the reading is completed with the whole
// turns the counter could not see.

#ifndef MPPROF_COUNTER_H
#define MPPROF_COUNTER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct _mpprof_counter_t {
    uint32_t cycles_per_ms;
    uint32_t turn;              // cycles in one turn of the counter (0: 2^32)
    uint32_t turn_us;           // one turn, in microseconds
    uint32_t last_us;
    uint64_t total;
} mpprof_counter_t;

static inline uint32_t mpprof_counter_us(const mpprof_counter_t *c, uint32_t cycles) {
    // In two parts, so that nothing overflows 32 bits up to 4 GHz.
    uint32_t per_ms = c->cycles_per_ms;
    return cycles / per_ms * 1000 + cycles % per_ms * 1000 / per_ms;
}

// Start counting: `turn` cycles per turn (0 for a full 32-bit counter).
// False when the clock rate is unknown.
static inline bool mpprof_counter_start(mpprof_counter_t *c, uint32_t cpu_hz, uint32_t turn, uint32_t us) {
    c->cycles_per_ms = cpu_hz / 1000;
    if (c->cycles_per_ms == 0) {
        return false;
    }
    c->turn = turn;
    c->turn_us = mpprof_counter_us(c, turn == 0 ? 0xffffffff : turn - 1) + 1;
    c->last_us = us;
    c->total = 0;
    return true;
}

// Add `elapsed` cycles seen by the counter since the last call, `us` being
// the microsecond clock now (pass a constant on a port without one: no turn
// is then ever added back). Returns the 64-bit total.
static inline uint64_t mpprof_counter_add(mpprof_counter_t *c, uint32_t elapsed, uint32_t us) {
    uint32_t gap_us = us - c->last_us;
    c->last_us = us;
    uint64_t unseen = 0;
    if (gap_us >= c->turn_us / 2) {
        uint32_t elapsed_us = mpprof_counter_us(c, elapsed);
        if (elapsed_us < gap_us + c->turn_us / 2) {
            unseen = (gap_us + c->turn_us / 2 - elapsed_us) / c->turn_us;
        }
    }
    c->total += unseen * (c->turn == 0 ? ((uint64_t)1 << 32) : c->turn) + elapsed;
    return c->total;
}

#endif // MPPROF_COUNTER_H
