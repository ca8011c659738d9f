// mpprof wire encoder: records into CRC-checked frames (vm-instrumented/WIRE.md).

#include <string.h>
#include "mpprof_rt.h"

#define HEADER_LEN (7)
#define CRC_LEN (4)

uint8_t mpprof_wire_frame[HEADER_LEN + MPPROF_FRAME_PAYLOAD + CRC_LEN];
size_t mpprof_wire_len;
uint32_t mpprof_wire_records;
#define frame mpprof_wire_frame
#define payload_len mpprof_wire_len
#define frame_records mpprof_wire_records
static uint16_t frame_seq;

uint64_t mpprof_wire_dropped_records;
uint64_t mpprof_wire_dropped_frames;
uint16_t mpprof_wire_epoch = 1;
static uint64_t unreported_records;
static uint64_t unreported_frames;
static uint64_t carried_records;  // losses reported by the DROPPED record in this frame
static uint64_t carried_frames;

// CRC-32/ISO-HDLC with a 16-entry table: small enough for any board, and the
// host checks every frame with it.
static const uint32_t crc_nibble[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t crc = 0xffffffff;
    while (n--) {
        crc ^= *p++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
        crc = (crc >> 4) ^ crc_nibble[crc & 15];
    }
    return crc ^ 0xffffffff;
}

void mpprof_wire_reset(void) {
    payload_len = 0;
    frame_records = 0;
    frame_seq = 0;
    carried_records = 0;
    carried_frames = 0;
    mpprof_wire_dropped_records = 0;
    mpprof_wire_dropped_frames = 0;
    unreported_records = 0;
    unreported_frames = 0;
}

static void put_uint(uint64_t v) {
    uint8_t *p = &frame[HEADER_LEN + payload_len];
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    payload_len = p - &frame[HEADER_LEN];
}

void mpprof_wire_flush(void) {
    if (payload_len == 0) {
        return;
    }
    // Sealing and sending a frame happens inside a hook whose clock reads
    // bracket it: its cost (CRC, copying into a ring whose wrap point
    // depends on history) is hidden with the hook's, so ticks stay repeatable.
    frame[0] = 0xa7;
    frame[1] = 0x5c;
    frame[2] = 1;
    frame[3] = frame_seq & 0xff;
    frame[4] = frame_seq >> 8;
    frame[5] = payload_len & 0xff;
    frame[6] = payload_len >> 8;
    uint32_t crc = crc32(&frame[2], HEADER_LEN - 2 + payload_len);
    uint8_t *t = &frame[HEADER_LEN + payload_len];
    t[0] = crc;
    t[1] = crc >> 8;
    t[2] = crc >> 16;
    t[3] = crc >> 24;
    frame_seq++;
    if (mpprof_port_write(frame, HEADER_LEN + payload_len + CRC_LEN)) {
        // The losses this frame reported have reached the host.
        unreported_records -= carried_records;
        unreported_frames -= carried_frames;
    } else {
        // The transport had no room: count exactly what was lost, and make
        // every definition be sent again, since the host may have missed it.
        mpprof_wire_dropped_records += frame_records;
        mpprof_wire_dropped_frames++;
        unreported_records += frame_records;
        unreported_frames++;
        mpprof_wire_epoch++;
        if (mpprof_wire_epoch == 0) {
            mpprof_wire_epoch = 1;
        }
    }
    payload_len = 0;
    frame_records = 0;
    carried_records = 0;
    carried_frames = 0;
    if (unreported_frames != 0) {
        // Open the next frame with the losses not yet reported. The DROPPED
        // record itself is not counted as a record, so counts stay exact.
        frame[HEADER_LEN] = MPPROF_TAG_DROPPED;
        payload_len = 1;
        put_uint(unreported_records);
        put_uint(unreported_frames);
        carried_records = unreported_records;
        carried_frames = unreported_frames;
    }
}

void mpprof_wire_uint(uint64_t v) {
    put_uint(v);
}

void mpprof_wire_str(const char *s, size_t len, size_t max_len) {
    if (len > max_len) {
        len = max_len;
    }
    put_uint(len);
    memcpy(&frame[HEADER_LEN + payload_len], s, len);
    payload_len += len;
}

void mpprof_wire_bytes(const uint8_t *b, size_t len) {
    put_uint(len);
    memcpy(&frame[HEADER_LEN + payload_len], b, len);
    payload_len += len;
}
