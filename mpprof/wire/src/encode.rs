//! A Rust encoder of the wire format, for tests, fault injection and tools.
//! The target's real encoder is C (`vm-instrumented/runtime/mpprof_wire.c`).

use super::{
    crc32, tag, AllocKind, AllocSite, CodeInfo, CodePart, EndRecord, GcRecord, Hello, LineClock,
    LineSlot, TypeInfo, SYNC, VERSION,
};

/// Builds records into frames with sequence numbers and CRCs.
#[derive(Debug, Default)]
pub struct FrameWriter {
    payload: Vec<u8>,
    seq: u16,
    out: Vec<u8>,
    /// Largest payload per frame (the target's buffer size).
    pub max_payload: usize,
}

pub fn put_uint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_uint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// Wrap `payload` into one frame with sequence number `seq`.
pub fn frame(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 11);
    f.extend_from_slice(&SYNC);
    f.push(VERSION);
    f.extend_from_slice(&seq.to_le_bytes());
    f.extend_from_slice(&(payload.len() as u16).to_le_bytes());
    f.extend_from_slice(payload);
    let crc = crc32(&f[2..]);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

impl FrameWriter {
    pub fn new() -> Self {
        Self {
            max_payload: 4096,
            ..Self::default()
        }
    }

    fn record(&mut self, rec: &[u8]) {
        if !self.payload.is_empty() && self.payload.len() + rec.len() > self.max_payload {
            self.flush();
        }
        self.payload.extend_from_slice(rec);
    }

    /// Close the current frame.
    pub fn flush(&mut self) {
        if self.payload.is_empty() {
            return;
        }
        let f = frame(self.seq, &self.payload);
        self.out.extend_from_slice(&f);
        self.seq = self.seq.wrapping_add(1);
        self.payload.clear();
    }

    /// All frames so far (closing the current one).
    pub fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.out
    }

    pub fn set_seq(&mut self, seq: u16) {
        self.seq = seq;
    }

    pub fn hello(&mut self, h: &Hello) {
        let mut r = vec![tag::HELLO];
        for v in [
            h.wire_version,
            h.word_bytes,
            h.gc_block_bytes,
            h.small_int_bits,
            h.heap_bytes,
            h.clock_hz,
        ] {
            put_uint(&mut r, v);
        }
        for s in [&h.clock, &h.mp_version, &h.platform, &h.target] {
            put_bytes(&mut r, s.as_bytes());
        }
        self.record(&r);
    }

    pub fn code(&mut self, c: &CodeInfo) {
        let mut r = vec![tag::CODE];
        put_uint(&mut r, c.code_id as u64);
        put_bytes(&mut r, c.name.as_bytes());
        put_bytes(&mut r, c.file.as_bytes());
        put_uint(&mut r, c.bc_start as u64);
        put_bytes(&mut r, &c.line_info);
        put_bytes(&mut r, &c.bytecode);
        self.record(&r);
    }

    /// A CODE_MORE record: bytes `offset..` of the line table or bytecode
    /// of `code_id`, whose whole length is `total`.
    pub fn code_more(
        &mut self,
        code_id: u32,
        part: CodePart,
        offset: u32,
        total: u32,
        data: &[u8],
    ) {
        let mut body = Vec::new();
        put_uint(&mut body, code_id as u64);
        body.push(matches!(part, CodePart::Bytecode) as u8);
        put_uint(&mut body, offset as u64);
        put_uint(&mut body, total as u64);
        put_bytes(&mut body, data);
        let mut r = vec![tag::CODE_MORE];
        put_bytes(&mut r, &body);
        self.record(&r);
    }

    /// A LINE_CLOCK record: how line times are taken.
    pub fn line_clock(&mut self, clock: LineClock) {
        let (mode, period) = match clock {
            LineClock::Exact => (1, 0),
            LineClock::Sampled { period_ns } => (2, period_ns),
            LineClock::Unknown(m) => (m, 0),
        };
        let mut body = Vec::new();
        put_uint(&mut body, mode);
        put_uint(&mut body, period);
        let mut r = vec![tag::LINE_CLOCK];
        put_bytes(&mut r, &body);
        self.record(&r);
    }

    /// A FRAME_CODE record: a code object with no bytecode (`c.kind` is not
    /// `Bytecode`); its line table and bytecode are not sent.
    pub fn frame_code(&mut self, c: &CodeInfo) {
        let mut body = Vec::new();
        put_uint(&mut body, c.code_id as u64);
        body.push(c.kind.to_wire());
        put_bytes(&mut body, c.name.as_bytes());
        put_bytes(&mut body, c.file.as_bytes());
        let mut r = vec![tag::FRAME_CODE];
        put_bytes(&mut r, &body);
        self.record(&r);
    }

    /// A LINE_TIME record: per-offset line time of `code_id` (offsets
    /// ascending).
    pub fn line_time(&mut self, code_id: u32, slots: &[LineSlot]) {
        let mut body = Vec::new();
        put_uint(&mut body, code_id as u64);
        put_uint(&mut body, slots.len() as u64);
        let mut prev = 0u32;
        for s in slots {
            put_uint(&mut body, s.offset.saturating_sub(prev) as u64);
            put_uint(&mut body, crate::zigzag(s.incl));
            put_uint(&mut body, crate::zigzag(s.excl));
            prev = s.offset;
        }
        let mut r = vec![tag::LINE_TIME];
        put_bytes(&mut r, &body);
        self.record(&r);
    }

    /// A LINE_SAMPLES record.
    pub fn line_samples(&mut self, taken: u64, outside: u64) {
        let mut body = Vec::new();
        put_uint(&mut body, taken);
        put_uint(&mut body, outside);
        let mut r = vec![tag::LINE_SAMPLES];
        put_bytes(&mut r, &body);
        self.record(&r);
    }

    /// A FROZEN_IMPORT record: the IMPORT_NAME at `node_id`/`offset` ran
    /// the frozen module `file`.
    pub fn frozen_import(&mut self, node_id: u32, offset: u32, file: &str) {
        let mut body = Vec::new();
        put_uint(&mut body, node_id as u64);
        put_uint(&mut body, offset as u64);
        put_bytes(&mut body, file.as_bytes());
        let mut r = vec![tag::FROZEN_IMPORT];
        put_bytes(&mut r, &body);
        self.record(&r);
    }

    pub fn type_info(&mut self, t: &TypeInfo) {
        let mut r = vec![tag::TYPE];
        put_uint(&mut r, t.type_id as u64);
        put_uint(&mut r, t.flags as u64);
        put_bytes(&mut r, t.name.as_bytes());
        self.record(&r);
    }

    pub fn node(&mut self, node_id: u32, parent_id: u32, code_id: u32) {
        let mut r = vec![tag::NODE];
        for v in [node_id, parent_id, code_id] {
            put_uint(&mut r, v as u64);
        }
        self.record(&r);
    }

    /// Define site-cache `slot` and count one allocation there.
    pub fn site(&mut self, slot: u16, s: &AllocSite) {
        let mut r = vec![tag::SITE];
        put_uint(&mut r, slot as u64);
        for v in [s.node_id as u64, s.offset as u64, s.type_id as u64, s.bytes] {
            put_uint(&mut r, v);
        }
        put_uint(
            &mut r,
            match s.kind {
                AllocKind::New => 0,
                AllocKind::Growth => 1,
                AllocKind::HeapFrame => 2,
            },
        );
        self.record(&r);
    }

    /// One more allocation at `slot`: one byte below 128, else the wide
    /// record (the slot less 128).
    pub fn repeat(&mut self, slot: u16) {
        if slot < 128 {
            self.record(&[tag::ALLOC_REPEAT | slot as u8]);
        } else {
            let mut r = vec![tag::ALLOC_REPEAT_WIDE];
            put_uint(&mut r, slot as u64 - 128);
            self.record(&r);
        }
    }

    pub fn counts(&mut self, code_id: u32, counts: &[(u32, u64)]) {
        let mut r = vec![tag::COUNTS];
        put_uint(&mut r, code_id as u64);
        put_uint(&mut r, counts.len() as u64);
        let mut prev = 0u32;
        for &(off, n) in counts {
            put_uint(&mut r, off.saturating_sub(prev) as u64);
            put_uint(&mut r, n);
            prev = off;
        }
        self.record(&r);
    }

    pub fn node_stats(&mut self, node_id: u32, calls: u64, ticks: u64, opcodes: u64) {
        let mut r = vec![tag::NODE_STATS];
        put_uint(&mut r, node_id as u64);
        for v in [calls, ticks, opcodes] {
            put_uint(&mut r, v);
        }
        self.record(&r);
    }

    pub fn gc(&mut self, g: &GcRecord) {
        let mut r = vec![tag::GC];
        for v in [
            g.start,
            g.duration,
            g.blocks_freed,
            g.used_bytes,
            g.free_bytes,
            g.largest_free_bytes,
        ] {
            put_uint(&mut r, v);
        }
        self.record(&r);
    }

    /// MARK, REGION_BEGIN or REGION_END.
    pub fn stamped(&mut self, t: u8, at: u64, label: &str) {
        let mut r = vec![t];
        put_uint(&mut r, at);
        put_bytes(&mut r, label.as_bytes());
        self.record(&r);
    }

    pub fn alloc_fail(&mut self, node_id: u32, offset: u32, bytes: u64) {
        let mut r = vec![tag::ALLOC_FAIL];
        for v in [node_id as u64, offset as u64, bytes] {
            put_uint(&mut r, v);
        }
        self.record(&r);
    }

    pub fn dropped(&mut self, records: u64, frames: u64) {
        let mut r = vec![tag::DROPPED];
        put_uint(&mut r, records);
        put_uint(&mut r, frames);
        self.record(&r);
    }

    pub fn heap(&mut self, at: u64, used: u64) {
        let mut r = vec![tag::HEAP];
        put_uint(&mut r, at);
        put_uint(&mut r, used);
        self.record(&r);
    }

    pub fn end(&mut self, e: &EndRecord) {
        let mut r = vec![tag::END];
        for v in [
            e.at,
            e.heap_bytes,
            e.peak_used_bytes,
            e.alloc_bytes,
            e.alloc_count,
            e.collections,
            e.gc_ticks,
            e.dropped_records,
            e.reason.to_wire(),
        ] {
            put_uint(&mut r, v);
        }
        self.record(&r);
    }

    /// Raw record bytes (for malformed-input tests).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.record(bytes);
    }
}
