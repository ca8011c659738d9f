//! The wire decoder: bytes from any transport → frames → events.
//!
//! Implements `vm-instrumented/WIRE.md` (version 1). Streaming: feed any
//! chunking of the byte stream and get the same events. It never panics on any
//! input, never allocates from an unchecked length, resynchronises at the next
//! good frame after damage, and counts every loss it can see.

pub mod encode;

/// The frame sync bytes.
pub const SYNC: [u8; 2] = [0xa7, 0x5c];
/// Wire format version.
pub const VERSION: u8 = 1;
/// Largest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 16384;
const HEADER: usize = 7;

/// Bytes that identify a frame starting a session: its header and the
/// first record's tag.
pub const SESSION_START_LEN: usize = HEADER + 1;

/// Whether a frame that starts a session (sequence 0, first record HELLO)
/// begins at `i`: each boot or soft reset of a board starts one.
fn starts_session(bytes: &[u8], i: usize) -> bool {
    bytes.len() >= i + SESSION_START_LEN
        && bytes[i..].starts_with(&[SYNC[0], SYNC[1], VERSION, 0, 0])
        && bytes[i + HEADER] == tag::HELLO
}

/// The offset of the last session start, so bytes of an earlier session are
/// left out.
pub fn last_session_start(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).rev().find(|&i| starts_session(bytes, i))
}

/// The first session start at or after `from`.
pub fn session_start(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&i| starts_session(bytes, i))
}
const TRAILER: usize = 4;

/// Site-cache slots a stream may use (WIRE.md: SITE, ALLOC_REPEAT_WIDE).
pub const MAX_SITE_SLOTS: usize = 256;

pub mod tag {
    pub const HELLO: u8 = 0x01;
    pub const CODE: u8 = 0x02;
    pub const TYPE: u8 = 0x03;
    pub const NODE: u8 = 0x04;
    pub const SITE: u8 = 0x05;
    pub const COUNTS: u8 = 0x06;
    pub const NODE_STATS: u8 = 0x07;
    pub const GC: u8 = 0x08;
    pub const MARK: u8 = 0x09;
    pub const REGION_BEGIN: u8 = 0x0a;
    pub const REGION_END: u8 = 0x0b;
    pub const ALLOC_FAIL: u8 = 0x0c;
    pub const DROPPED: u8 = 0x0d;
    pub const END: u8 = 0x0e;
    pub const HEAP: u8 = 0x0f;
    pub const START: u8 = 0x10;
    pub const STOP: u8 = 0x11;
    /// One more allocation at a site-cache slot of 128 or more.
    pub const ALLOC_REPEAT_WIDE: u8 = 0x12;
    /// Extension: what the profiler costs per opcode, call and allocation.
    pub const COST: u8 = 0x40;
    /// Extension: the rest of a CODE record's line table or bytecode.
    pub const CODE_MORE: u8 = 0x41;
    /// Extension: how line times are taken (exact stamps or samples).
    pub const LINE_CLOCK: u8 = 0x42;
    /// Extension: time per bytecode offset of one code object.
    pub const LINE_TIME: u8 = 0x43;
    /// Extension: profiling-timer samples taken (sampled line time).
    pub const LINE_SAMPLES: u8 = 0x44;
    /// Extension: a code object with no bytecode (native or viper machine
    /// code, or compiling a source), whose frames are timed like any other.
    pub const FRAME_CODE: u8 = 0x50;
    /// Extension: a profiled import ran a frozen module.
    pub const FROZEN_IMPORT: u8 = 0x45;
    pub const ALLOC_REPEAT: u8 = 0x80;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllocKind {
    New,
    Growth,
    /// A bytecode frame the call at the site put on the heap.
    HeapFrame,
}

/// Where and what one allocation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllocSite {
    pub node_id: u32,
    pub offset: u32,
    pub type_id: u32,
    pub bytes: u64,
    pub kind: AllocKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    pub wire_version: u64,
    pub word_bytes: u64,
    pub gc_block_bytes: u64,
    pub small_int_bits: u64,
    pub heap_bytes: u64,
    pub clock_hz: u64,
    pub clock: String,
    pub mp_version: String,
    pub platform: String,
    pub target: String,
}

/// What a code object's frames run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CodeKind {
    /// Bytecode, run by the hooked VM: opcodes counted per offset.
    #[default]
    Bytecode,
    /// `@micropython.native` machine code.
    Native,
    /// `@micropython.viper` machine code.
    Viper,
    /// Compiling a source (an import of a .py file, exec, eval); `name` and
    /// `file` are the source's name.
    Compile,
}

impl CodeKind {
    fn from_wire(b: u8) -> Option<CodeKind> {
        Some(match b {
            0 => CodeKind::Bytecode,
            1 => CodeKind::Native,
            2 => CodeKind::Viper,
            3 => CodeKind::Compile,
            _ => return None,
        })
    }

    pub fn to_wire(self) -> u8 {
        match self {
            CodeKind::Bytecode => 0,
            CodeKind::Native => 1,
            CodeKind::Viper => 2,
            CodeKind::Compile => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodeInfo {
    pub kind: CodeKind,
    pub code_id: u32,
    pub name: String,
    pub file: String,
    pub bc_start: u32,
    pub line_info: Vec<u8>,
    pub bytecode: Vec<u8>,
}

/// Which field of a CODE record a CODE_MORE record continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodePart {
    LineInfo,
    Bytecode,
}

/// Ticks the profiler costs where no clock read brackets it, as measured
/// on the target at start-up, in 16.16 fixed point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProfilerCost {
    pub opcode_q16: u64,
    pub call_q16: u64,
    pub alloc_q16: u64,
    /// Per allocation mp_obj_malloc typed (absent from older runtimes: 0).
    pub typed_alloc_q16: u64,
    /// Per native or viper call (absent from older runtimes: 0).
    pub native_q16: u64,
    /// 0: measured at this start; n: the median of n earlier runs'
    /// measurements, kept by the port (absent from older runtimes: 0).
    pub from_runs: u64,
    /// Per viper call (absent from older runtimes, whose native figure is
    /// for both kinds: 0).
    pub viper_q16: u64,
}

/// How the target measures time per line (LINE_CLOCK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineClock {
    /// Ticks between opcode dispatches, stamped, the profiler's cost out.
    Exact,
    /// Samples of the running offset every `period_ns` nanoseconds.
    Sampled { period_ns: u64 },
    /// A mode this decoder does not know.
    Unknown(u64),
}

/// Time at one bytecode offset: ticks (exact) or samples (sampled),
/// with the frames it called (`incl`) and without (`excl`). Exact values
/// are deltas and can be a tick below zero where the clock is coarser than
/// an opcode; a frame's offsets add up exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSlot {
    pub offset: u32,
    pub incl: i64,
    pub excl: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeInfo {
    pub type_id: u32,
    pub flags: u32,
    pub name: String,
}

impl TypeInfo {
    /// A class defined in Python.
    pub const FLAG_PYTHON_CLASS: u32 = 1;
    /// A subclass of BaseException.
    pub const FLAG_EXCEPTION: u32 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcRecord {
    pub start: u64,
    pub duration: u64,
    pub blocks_freed: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub largest_free_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Finished,
    Exception,
    KeyboardInterrupt,
    SystemExit,
    Stopped,
    MemoryError,
    Unknown(u64),
}

impl EndReason {
    fn from_wire(v: u64) -> Self {
        match v {
            0 => Self::Finished,
            1 => Self::Exception,
            2 => Self::KeyboardInterrupt,
            3 => Self::SystemExit,
            4 => Self::Stopped,
            5 => Self::MemoryError,
            other => Self::Unknown(other),
        }
    }

    pub fn to_wire(self) -> u64 {
        match self {
            Self::Finished => 0,
            Self::Exception => 1,
            Self::KeyboardInterrupt => 2,
            Self::SystemExit => 3,
            Self::Stopped => 4,
            Self::MemoryError => 5,
            Self::Unknown(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRecord {
    pub at: u64,
    pub heap_bytes: u64,
    pub peak_used_bytes: u64,
    pub alloc_bytes: u64,
    pub alloc_count: u64,
    pub collections: u64,
    pub gc_ticks: u64,
    pub dropped_records: u64,
    pub reason: EndReason,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Hello(Hello),
    Code(CodeInfo),
    Type(TypeInfo),
    Node {
        node_id: u32,
        parent_id: u32,
        code_id: u32,
    },
    /// One allocation (from a SITE or an ALLOC_REPEAT record).
    Alloc(AllocSite),
    /// Opcodes executed per offset (absolute offsets, delta counts).
    Counts {
        code_id: u32,
        counts: Vec<(u32, u64)>,
    },
    NodeStats {
        node_id: u32,
        calls: u64,
        ticks: u64,
        opcodes: u64,
    },
    Gc(GcRecord),
    Mark {
        at: u64,
        label: String,
    },
    RegionBegin {
        at: u64,
        label: String,
    },
    RegionEnd {
        at: u64,
        label: String,
    },
    AllocFail {
        node_id: u32,
        offset: u32,
        bytes: u64,
    },
    Dropped {
        records: u64,
        frames: u64,
    },
    End(EndRecord),
    Heap {
        at: u64,
        used_bytes: u64,
    },
    Start {
        at: u64,
    },
    Stop {
        at: u64,
    },
    /// The profiler's own cost per unit, taken out of every time already.
    Cost(ProfilerCost),
    /// Bytes `offset..offset + data.len()` of a CODE record's line table or
    /// bytecode, whose whole length is `total` (CODE_MORE).
    CodeMore {
        code_id: u32,
        part: CodePart,
        offset: u32,
        total: u32,
        data: Vec<u8>,
    },
    /// How line times are taken (sent once, after COST).
    LineClock(LineClock),
    /// Line time per offset of one code object since its last LINE_TIME.
    LineTime {
        code_id: u32,
        slots: Vec<LineSlot>,
    },
    /// Profiling-timer samples since the last LINE_SAMPLES: all of them,
    /// and those that found no profiled frame running.
    LineSamples {
        taken: u64,
        outside: u64,
    },
    /// The IMPORT_NAME at `node_id`/`offset` ran the frozen module whose
    /// source file was `file` (FROZEN_IMPORT): what it allocated is the
    /// module's top level running, nothing compiled.
    FrozenImport {
        node_id: u32,
        offset: u32,
        file: String,
    },
    Extension {
        tag: u8,
        data: Vec<u8>,
    },
}

/// What the decoder saw, including every kind of damage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub bytes: u64,
    pub frames: u64,
    pub records: u64,
    /// Bytes outside any good frame (text on a shared UART, garbage).
    pub skipped_bytes: u64,
    pub crc_errors: u64,
    /// Frames whose header was impossible or whose payload did not decode.
    pub bad_frames: u64,
    /// Frames missing from the sequence numbers (modulo 65536).
    pub lost_frames: u64,
    pub duplicate_frames: u64,
    /// Bytes of an incomplete frame at the end of the stream.
    pub truncated_tail_bytes: u64,
    /// ALLOC_REPEAT records naming a slot never defined (after a loss).
    pub repeat_without_site: u64,
    /// Allocation events decoded, and the payload bytes their records took
    /// (SITE and ALLOC_REPEAT): the wire's cost per allocation.
    pub alloc_events: u64,
    pub alloc_record_bytes: u64,
}

/// CRC-32/ISO-HDLC, table-driven.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc ^ 0xffff_ffff
}

/// A streaming decoder.
pub struct Decoder {
    pending: Vec<u8>,
    /// The site cache, as large as any target's.
    slots: [Option<AllocSite>; MAX_SITE_SLOTS],
    last_seq: Option<u16>,
    last_crc: Option<u32>,
    stats: DecodeStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// A malformed record: the rest of its frame is not decoded.
#[derive(Debug)]
struct Malformed;

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn u8(&mut self) -> Result<u8, Malformed> {
        let b = *self.data.get(self.pos).ok_or(Malformed)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn uint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let part = (b & 0x7f) as u64;
            if i == 9 && part > 1 {
                return Err(Malformed);
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed)
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        u32::try_from(self.uint()?).map_err(|_| Malformed)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.uint()?;
        let rest = self.data.len() - self.pos;
        if n > rest as u64 {
            return Err(Malformed);
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn string(&mut self) -> Result<String, Malformed> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            pending: Vec::new(),
            slots: [None; MAX_SITE_SLOTS],
            last_seq: None,
            last_crc: None,
            stats: DecodeStats::default(),
        }
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Decode what `bytes` completes; events go to `sink`.
    pub fn feed(&mut self, bytes: &[u8], sink: &mut impl FnMut(Event)) {
        self.feed_with_text(bytes, sink, &mut |_| {});
    }

    /// As `feed`; bytes outside frames (REPL text on a shared UART) also go
    /// to `on_skipped`.
    pub fn feed_with_text(
        &mut self,
        bytes: &[u8],
        sink: &mut impl FnMut(Event),
        on_skipped: &mut impl FnMut(&[u8]),
    ) {
        self.stats.bytes += bytes.len() as u64;
        if self.pending.is_empty() {
            let used = self.scan(bytes, sink, on_skipped);
            self.pending.extend_from_slice(&bytes[used..]);
        } else {
            self.pending.extend_from_slice(bytes);
            let pending = std::mem::take(&mut self.pending);
            let used = self.scan(&pending, sink, on_skipped);
            self.pending = pending;
            self.pending.drain(..used);
        }
    }

    /// The stream has ended. What is left starts with a frame that never
    /// completed: either the stream was cut, or damage made a length claim
    /// more bytes than followed, hiding good frames behind it. Look past it,
    /// decode what is there, and count the rest as a truncated tail.
    pub fn finish(&mut self, sink: &mut impl FnMut(Event)) -> &DecodeStats {
        let mut tail = std::mem::take(&mut self.pending);
        while !tail.is_empty() {
            let frames_before = self.stats.frames + self.stats.crc_errors;
            let used = 1 + self.scan(&tail[1..], sink, &mut |_| {});
            if self.stats.frames + self.stats.crc_errors == frames_before {
                self.stats.truncated_tail_bytes += tail.len() as u64;
                break;
            }
            // The first candidate was not a frame.
            self.stats.bad_frames += 1;
            self.stats.skipped_bytes += 1;
            tail.drain(..used);
        }
        &self.stats
    }

    /// Decode whole frames from `buf`; returns how many bytes were consumed
    /// (the rest may be the start of a frame).
    fn scan(
        &mut self,
        buf: &[u8],
        sink: &mut impl FnMut(Event),
        on_skipped: &mut impl FnMut(&[u8]),
    ) -> usize {
        let mut pos = 0;
        loop {
            // Find the next sync.
            let rest = &buf[pos..];
            let found = memchr_sync(rest);
            let start = match found {
                Some(i) => pos + i,
                None => {
                    // Keep a trailing 0xA7: it may be half a sync.
                    let keep = usize::from(rest.last() == Some(&SYNC[0]));
                    let skip_to = buf.len() - keep;
                    self.skip(&buf[pos..skip_to], on_skipped);
                    return skip_to;
                }
            };
            self.skip(&buf[pos..start], on_skipped);
            if buf.len() - start < HEADER {
                return start;
            }
            let h = &buf[start..start + HEADER];
            let len = u16::from_le_bytes([h[5], h[6]]) as usize;
            if h[2] != VERSION || len == 0 || len > MAX_PAYLOAD {
                self.stats.bad_frames += 1;
                self.skip(&buf[start..start + 1], on_skipped);
                pos = start + 1;
                continue;
            }
            let total = HEADER + len + TRAILER;
            if buf.len() - start < total {
                return start;
            }
            let frame = &buf[start..start + total];
            let crc = u32::from_le_bytes([
                frame[total - 4],
                frame[total - 3],
                frame[total - 2],
                frame[total - 1],
            ]);
            if crc32(&frame[2..HEADER + len]) != crc {
                self.stats.crc_errors += 1;
                self.skip(&buf[start..start + 1], on_skipped);
                pos = start + 1;
                continue;
            }
            let seq = u16::from_le_bytes([h[3], h[4]]);
            pos = start + total;
            if self.last_seq == Some(seq) && self.last_crc == Some(crc) {
                self.stats.duplicate_frames += 1;
                continue;
            }
            if let Some(last) = self.last_seq {
                let gap = seq.wrapping_sub(last).wrapping_sub(1);
                // A gap of more than half the sequence space is a reordering or
                // a restarted target, not 30,000 lost frames.
                if gap != 0 && gap < 0x8000 {
                    self.stats.lost_frames += gap as u64;
                }
            }
            self.last_seq = Some(seq);
            self.last_crc = Some(crc);
            self.stats.frames += 1;
            self.decode_payload(&frame[HEADER..HEADER + len], sink);
        }
    }

    fn skip(&mut self, bytes: &[u8], on_skipped: &mut impl FnMut(&[u8])) {
        if !bytes.is_empty() {
            self.stats.skipped_bytes += bytes.len() as u64;
            on_skipped(bytes);
        }
    }

    fn decode_payload(&mut self, payload: &[u8], sink: &mut impl FnMut(Event)) {
        let mut c = Cursor {
            data: payload,
            pos: 0,
        };
        while c.pos < payload.len() {
            let start = c.pos;
            let t = payload[start];
            match self.decode_record(&mut c, sink) {
                Ok(()) => {
                    self.stats.records += 1;
                    if t == tag::SITE || t == tag::ALLOC_REPEAT_WIDE || t >= tag::ALLOC_REPEAT {
                        self.stats.alloc_events += 1;
                        self.stats.alloc_record_bytes += (c.pos - start) as u64;
                    }
                }
                Err(Malformed) => {
                    self.stats.bad_frames += 1;
                    return;
                }
            }
        }
    }

    #[inline]
    fn decode_record(
        &mut self,
        c: &mut Cursor,
        sink: &mut impl FnMut(Event),
    ) -> Result<(), Malformed> {
        let t = c.u8()?;
        if t >= tag::ALLOC_REPEAT {
            self.repeat((t & 0x7f) as usize, sink);
            return Ok(());
        }
        if t == tag::ALLOC_REPEAT_WIDE {
            let slot = c.uint()?.saturating_add(128);
            if slot >= MAX_SITE_SLOTS as u64 {
                return Err(Malformed);
            }
            self.repeat(slot as usize, sink);
            return Ok(());
        }
        let ev = match t {
            tag::SITE => self.site(c)?,
            tag::COUNTS => counts(c)?,
            tag::DROPPED => {
                // The target redefines every slot after a loss; forget ours.
                self.slots = [None; MAX_SITE_SLOTS];
                Event::Dropped {
                    records: c.uint()?,
                    frames: c.uint()?,
                }
            }
            _ => plain_record(t, c)?,
        };
        sink(ev);
        Ok(())
    }

    fn repeat(&mut self, slot: usize, sink: &mut impl FnMut(Event)) {
        match self.slots[slot] {
            Some(site) => sink(Event::Alloc(site)),
            None => self.stats.repeat_without_site += 1,
        }
    }

    /// A SITE record defines a repeat slot as it reports an allocation.
    fn site(&mut self, c: &mut Cursor) -> Result<Event, Malformed> {
        let slot = c.uint()?;
        let site = AllocSite {
            node_id: c.u32()?,
            offset: c.u32()?,
            type_id: c.u32()?,
            bytes: c.uint()?,
            kind: match c.uint()? {
                0 => AllocKind::New,
                1 => AllocKind::Growth,
                2 => AllocKind::HeapFrame,
                _ => return Err(Malformed),
            },
        };
        let slot = self.slots.get_mut(slot as usize).ok_or(Malformed)?;
        *slot = Some(site);
        Ok(Event::Alloc(site))
    }
}

/// Opcode counts of one code object: delta-coded offsets with counts.
fn counts(c: &mut Cursor) -> Result<Event, Malformed> {
    let code_id = c.u32()?;
    let n = c.uint()?;
    // Each pair takes at least two bytes: bound n before allocating.
    if n > ((c.data.len() - c.pos) / 2) as u64 {
        return Err(Malformed);
    }
    let mut counts = Vec::with_capacity(n as usize);
    let mut offset = 0u64;
    for _ in 0..n {
        offset += c.uint()?;
        let off = u32::try_from(offset).map_err(|_| Malformed)?;
        counts.push((off, c.uint()?));
    }
    Ok(Event::Counts { code_id, counts })
}

/// The records that are their fields and nothing more.
fn plain_record(t: u8, c: &mut Cursor) -> Result<Event, Malformed> {
    Ok(match t {
        tag::HELLO => Event::Hello(Hello {
            wire_version: c.uint()?,
            word_bytes: c.uint()?,
            gc_block_bytes: c.uint()?,
            small_int_bits: c.uint()?,
            heap_bytes: c.uint()?,
            clock_hz: c.uint()?,
            clock: c.string()?,
            mp_version: c.string()?,
            platform: c.string()?,
            target: c.string()?,
        }),
        tag::CODE => Event::Code(CodeInfo {
            kind: CodeKind::Bytecode,
            code_id: c.u32()?,
            name: c.string()?,
            file: c.string()?,
            bc_start: c.u32()?,
            line_info: c.bytes()?.to_vec(),
            bytecode: c.bytes()?.to_vec(),
        }),
        tag::TYPE => Event::Type(TypeInfo {
            type_id: c.u32()?,
            flags: c.u32()?,
            name: c.string()?,
        }),
        tag::NODE => Event::Node {
            node_id: c.u32()?,
            parent_id: c.u32()?,
            code_id: c.u32()?,
        },
        tag::NODE_STATS => Event::NodeStats {
            node_id: c.u32()?,
            calls: c.uint()?,
            ticks: c.uint()?,
            opcodes: c.uint()?,
        },
        tag::GC => Event::Gc(GcRecord {
            start: c.uint()?,
            duration: c.uint()?,
            blocks_freed: c.uint()?,
            used_bytes: c.uint()?,
            free_bytes: c.uint()?,
            largest_free_bytes: c.uint()?,
        }),
        tag::MARK => Event::Mark {
            at: c.uint()?,
            label: c.string()?,
        },
        tag::REGION_BEGIN => Event::RegionBegin {
            at: c.uint()?,
            label: c.string()?,
        },
        tag::REGION_END => Event::RegionEnd {
            at: c.uint()?,
            label: c.string()?,
        },
        tag::ALLOC_FAIL => Event::AllocFail {
            node_id: c.u32()?,
            offset: c.u32()?,
            bytes: c.uint()?,
        },
        tag::END => Event::End(EndRecord {
            at: c.uint()?,
            heap_bytes: c.uint()?,
            peak_used_bytes: c.uint()?,
            alloc_bytes: c.uint()?,
            alloc_count: c.uint()?,
            collections: c.uint()?,
            gc_ticks: c.uint()?,
            dropped_records: c.uint()?,
            reason: EndReason::from_wire(c.uint()?),
        }),
        tag::HEAP => Event::Heap {
            at: c.uint()?,
            used_bytes: c.uint()?,
        },
        tag::START => Event::Start { at: c.uint()? },
        tag::STOP => Event::Stop { at: c.uint()? },
        tag::COST => {
            let data = c.bytes()?;
            let mut d = Cursor { data, pos: 0 };
            Event::Cost(ProfilerCost {
                opcode_q16: d.uint()?,
                call_q16: d.uint()?,
                alloc_q16: d.uint()?,
                typed_alloc_q16: if d.pos < d.data.len() { d.uint()? } else { 0 },
                native_q16: if d.pos < d.data.len() { d.uint()? } else { 0 },
                from_runs: if d.pos < d.data.len() { d.uint()? } else { 0 },
                viper_q16: if d.pos < d.data.len() { d.uint()? } else { 0 },
            })
        }
        tag::CODE_MORE => {
            let data = c.bytes()?;
            let mut d = Cursor { data, pos: 0 };
            let code_id = d.u32()?;
            let part = match d.u8()? {
                0 => CodePart::LineInfo,
                1 => CodePart::Bytecode,
                _ => return Err(Malformed),
            };
            let offset = d.u32()?;
            let total = d.u32()?;
            let bytes = d.bytes()?;
            if offset as u64 + bytes.len() as u64 > total as u64 {
                return Err(Malformed);
            }
            Event::CodeMore {
                code_id,
                part,
                offset,
                total,
                data: bytes.to_vec(),
            }
        }
        tag::LINE_CLOCK => {
            let data = c.bytes()?;
            let mut d = Cursor { data, pos: 0 };
            let mode = d.uint()?;
            let period_ns = d.uint()?;
            Event::LineClock(match mode {
                1 => LineClock::Exact,
                2 => LineClock::Sampled { period_ns },
                other => LineClock::Unknown(other),
            })
        }
        tag::LINE_TIME => {
            let data = c.bytes()?;
            let mut d = Cursor { data, pos: 0 };
            let code_id = d.u32()?;
            let n = d.uint()?;
            // Each slot takes at least three bytes: bound n first.
            if n > (data.len() / 3) as u64 {
                return Err(Malformed);
            }
            let mut slots = Vec::with_capacity(n as usize);
            let mut offset = 0u64;
            for _ in 0..n {
                offset += d.uint()?;
                slots.push(LineSlot {
                    offset: u32::try_from(offset).map_err(|_| Malformed)?,
                    incl: unzigzag(d.uint()?),
                    excl: unzigzag(d.uint()?),
                });
            }
            Event::LineTime { code_id, slots }
        }
        tag::LINE_SAMPLES => {
            let data = c.bytes()?;
            let mut d = Cursor { data, pos: 0 };
            Event::LineSamples {
                taken: d.uint()?,
                outside: d.uint()?,
            }
        }
        tag::FRAME_CODE => {
            let data = c.bytes()?;
            let mut d = Cursor { data, pos: 0 };
            let code_id = d.u32()?;
            let kind = CodeKind::from_wire(d.u8()?).ok_or(Malformed)?;
            Event::Code(CodeInfo {
                kind,
                code_id,
                name: d.string()?,
                file: d.string()?,
                ..CodeInfo::default()
            })
        }
        tag::FROZEN_IMPORT => {
            let data = c.bytes()?;
            let mut d = Cursor { data, pos: 0 };
            Event::FrozenImport {
                node_id: d.u32()?,
                offset: d.u32()?,
                file: d.string()?,
            }
        }
        _ if (0x42..=0x7f).contains(&t) => Event::Extension {
            tag: t,
            data: c.bytes()?.to_vec(),
        },
        _ => return Err(Malformed),
    })
}

/// A zigzag-coded signed value (0, -1, 1, -2, ... as 0, 1, 2, 3, ...).
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The zigzag code of a signed value.
pub fn zigzag(v: i64) -> u64 {
    ((v as u64) << 1) ^ ((v >> 63) as u64)
}

fn memchr_sync(hay: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < hay.len() {
        match hay[i..hay.len() - 1].iter().position(|&b| b == SYNC[0]) {
            Some(p) => {
                let at = i + p;
                if hay[at + 1] == SYNC[1] {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

/// Decode a whole stream at once.
pub fn decode_all(bytes: &[u8]) -> (Vec<Event>, DecodeStats) {
    let mut d = Decoder::new();
    let mut events = Vec::new();
    d.feed(bytes, &mut |e| events.push(e));
    let stats = *d.finish(&mut |e| events.push(e));
    (events, stats)
}
