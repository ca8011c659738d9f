//! Events → Profile. Streaming: memory grows with distinct code objects,
//! call-tree nodes, allocation sites and labels, never with the number of
//! events (timelines, marks and region entries are bounded too).
//!
//! Robust to whatever a damaged stream produces: events before HELLO, ids
//! no record described (counted in `meta.dropped.unknown_ids`; their figures
//! go to an `<unknown>` function), nodes naming missing or later parents
//! (attached to the root), unmatched region ends, a missing END
//! (`meta.partial`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use mpprof_profile::{
    AllocKind as ProfileAllocKind, AllocSite as ProfileSite, CallNode, Cause, Clock, Collection,
    Dropped, Exit, ExitReason, FileId, FunctionId, FunctionKind, HeapSample, Marker, NodeId,
    Profile, ProfileBuilder, Region, UNKNOWN_FUNCTION, UNKNOWN_OPCODE,
};

use crate::analysis::advice::{advise, event_loop_site, SiteContext};
use crate::analysis::classify::{self, AllocFacts};
use crate::analysis::opcodes;
use crate::record::lineinfo::LineTable;
use crate::record::symbolize::Sources;
use crate::wire::{
    AllocKind, CodeInfo, CodeKind, CodePart, DecodeStats, EndReason, EndRecord, Event, GcRecord,
    Hello, TypeInfo,
};

/// A fast hasher for the small integer keys of the hot path (allocation
/// sites, counters): the default SipHash costs more than the rest of an
/// event's handling. Keys come from the target, but a collision attack only
/// slows a profile down.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// Timelines (collections, heap samples) hold at most twice this many entries.
const TIMELINE_MAX: usize = 4096;
/// Region records kept; past this, a new entry is folded into the latest
/// record of its label.
const REGION_MAX: usize = 4096;
/// Marks kept; past this, only the first mark of a new label is kept.
const MARKER_MAX: usize = 4096;
/// Regions open at once. Deeper than any real nesting: more means their
/// ends were lost, and the outermost are forgotten.
const OPEN_REGIONS_MAX: usize = 256;

/// Halve a timeline by merging neighbours.
fn merge_pairs<T: Copy>(v: &[T], merge: impl Fn(&T, &T) -> T) -> Vec<T> {
    v.chunks(2)
        .map(|c| {
            if c.len() == 2 {
                merge(&c[0], &c[1])
            } else {
                c[0]
            }
        })
        .collect()
}

/// What the host knows about the run, beyond the stream.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub script: String,
    pub args: Vec<String>,
    /// The process exit status, if any.
    pub status: Option<i32>,
    /// Set when the host ended the run (timeout, Ctrl-C, kill).
    pub host_reason: Option<ExitReason>,
    /// The signal that ended the process, if one did (host processes): a
    /// crash signal makes the run `Crashed`.
    pub signal: Option<i32>,
    pub message: Option<String>,
    /// The end of the script's stderr (its traceback), when the target
    /// gave it: a main script that did not compile is named from it.
    pub error_text: Option<String>,
    /// Put each profiled file's source into the profile.
    pub embed_sources: bool,
    /// On a board: (the board's file name, the host's) of the modules
    /// copied with the script (`/rom/units.py`), for the profile to name
    /// and read the host's files.
    pub board_names: Vec<(String, String)>,
    /// The modules copied to the board with the script, by their paths in
    /// the script's directory.
    pub copied_to_board: Vec<String>,
}

impl RunInfo {
    /// A stream known only by the script it came from (`decode`, `live`).
    pub fn for_stream(script: &str) -> Self {
        Self {
            script: script.to_string(),
            embed_sources: true,
            ..Self::default()
        }
    }
}

/// A failure to compile the main script, from the end of its stderr: the
/// exception line (the last line) is a SyntaxError, IndentationError or
/// MemoryError, and the traceback above it names no running function (a
/// compile error's only frame is `File "x.py", line N`, with no `, in f`;
/// a MemoryError while parsing has none). The reason and a message.
pub fn compile_failure(stderr: &str) -> Option<(ExitReason, String)> {
    let start = stderr.rfind("Traceback (most recent call last):");
    let tb = &stderr[start.unwrap_or(0)..];
    let last = tb.lines().rev().find(|l| !l.trim().is_empty())?.trim_end();
    let frames: Vec<&str> = tb
        .lines()
        .filter(|l| l.trim_start().starts_with("File \""))
        .collect();
    if frames.iter().any(|f| f.contains(", in ")) || frames.len() > 1 {
        return None;
    }
    let name = last.split(':').next().unwrap_or("");
    let reason = match name {
        "SyntaxError" | "IndentationError" if frames.len() == 1 => ExitReason::SyntaxError,
        "MemoryError" => ExitReason::MemoryError,
        _ => return None,
    };
    Some((reason, format!("while compiling the script: {last}")))
}

/// The `<unknown>` function, added to the profile the first time a record
/// names a code object or node that was never described.
type Unknown<'a> = &'a mut dyn FnMut(&mut ProfileBuilder) -> FunctionId;

/// Signals a process dies of by itself when it is broken (not ones sent to
/// stop it).
pub fn is_crash_signal(signal: i32) -> bool {
    [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGABRT,
        libc::SIGSYS,
    ]
    .contains(&signal)
}

/// `SIGSEGV` for 11, ...; `signal N` for one without a name here.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSYS => "SIGSYS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// Assigns an allocation its cause from what is known about it.
pub type Classifier = fn(&AllocFacts) -> Cause;

#[derive(Debug, Default, Clone)]
struct NodeAcc {
    parent: u32,
    /// `None` for a node known only from the ids other records named.
    code_id: Option<u32>,
    calls: u64,
    ticks: u64,
    opcodes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SiteKey {
    node: u32,
    offset: u32,
    type_id: u32,
    growth: bool,
    /// For a raw buffer: the type of the object allocated just before it at
    /// the same place, whose storage it is (0: none).
    companion: u32,
    /// The target told it is a bytecode frame put on the heap.
    heap_frame: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct SiteAcc {
    count: u64,
    bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct OpenRegion {
    index: usize,
    start: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct FailureAcc {
    count: u64,
    largest: u64,
}

/// Accumulates events into a Profile.
#[derive(Debug)]
pub struct Aggregator {
    classify: Classifier,
    hello: Option<Hello>,
    cost: Option<crate::wire::ProfilerCost>,
    /// Line time: how it is taken, per (code, offset) inclusive and
    /// exclusive values (ticks or samples), and the samples taken.
    line_clock: Option<crate::wire::LineClock>,
    line_time: FastMap<(u32, u32), (i64, i64)>,
    line_samples: (u64, u64),
    /// Import sites (node, offset) that ran a frozen module: its source file.
    frozen_imports: HashMap<(u32, u32), String>,
    codes: HashMap<u32, CodeInfo>,
    types: HashMap<u32, TypeInfo>,
    nodes: HashMap<u32, NodeAcc>,
    /// Node ids in the order they were first met.
    node_order: Vec<u32>,
    counts: FastMap<(u32, u32), u64>,
    sites: FastMap<SiteKey, SiteAcc>,
    /// (node, offset, type) of the latest allocation with an object type.
    last_typed: Option<(u32, u32, u32)>,
    /// The latest allocation when it was a raw buffer that nothing
    /// explained yet, with its size: a typed object made right after it at
    /// the same place makes it that object's storage (str and bytes build
    /// their text first and wrap it after, a big int its digits).
    last_raw: Option<(SiteKey, u64)>,
    collections: Vec<Collection>,
    collection_count: u64,
    gc_ticks: u64,
    heap_samples: Vec<HeapSample>,
    markers: Vec<Marker>,
    marker_labels: HashSet<String>,
    /// Running totals, for the markers.
    total_allocs: u64,
    total_alloc_bytes: u64,
    total_opcodes: u64,
    regions: Vec<Region>,
    open_regions: Vec<OpenRegion>,
    /// The latest region record of each label, that entries past
    /// [`REGION_MAX`] fold into.
    last_region_of: HashMap<String, usize>,
    failures: FastMap<(u32, u32), FailureAcc>,
    end: Option<EndRecord>,
    dropped_records: u64,
    dropped_frames: u64,
    /// Events (other than allocations, counted when the profile is built)
    /// that named an id no record described.
    unknown_refs: u64,
    last_at: u64,
    /// Events after END (a second session in the same stream) are ignored.
    ended: bool,
    /// Source files, read once for qualified names and embedding, however
    /// many snapshots the live view takes.
    sources: RefCell<Sources>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Self::new()
    }
}

fn add(acc: &mut u64, n: u64) {
    *acc = acc.saturating_add(n);
}

impl Aggregator {
    /// An aggregator classifying allocations with [`crate::analysis::classify::classify`].
    pub fn new() -> Self {
        Self::with_classifier(crate::analysis::classify::classify)
    }

    /// An aggregator classifying allocations with `classify`.
    pub fn with_classifier(classify: Classifier) -> Self {
        Self {
            classify,
            hello: None,
            cost: None,
            line_clock: None,
            line_time: FastMap::default(),
            line_samples: (0, 0),
            frozen_imports: HashMap::new(),
            codes: HashMap::new(),
            types: HashMap::new(),
            nodes: HashMap::new(),
            node_order: Vec::new(),
            counts: FastMap::default(),
            sites: FastMap::default(),
            last_typed: None,
            last_raw: None,
            collections: Vec::new(),
            collection_count: 0,
            gc_ticks: 0,
            heap_samples: Vec::new(),
            markers: Vec::new(),
            marker_labels: HashSet::new(),
            total_allocs: 0,
            total_alloc_bytes: 0,
            total_opcodes: 0,
            regions: Vec::new(),
            open_regions: Vec::new(),
            last_region_of: HashMap::new(),
            failures: FastMap::default(),
            end: None,
            dropped_records: 0,
            dropped_frames: 0,
            unknown_refs: 0,
            last_at: 0,
            ended: false,
            sources: RefCell::new(Sources::new()),
        }
    }

    /// Whether the END record has been seen.
    pub fn ended(&self) -> bool {
        self.ended
    }

    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

    fn node_is_described(&self, node_id: u32) -> bool {
        node_id == 0
            || self
                .nodes
                .get(&node_id)
                .is_some_and(|n| n.code_id.is_some())
    }

    /// The accumulator of a node, created (undescribed) if no record named
    /// it before.
    fn node_entry(&mut self, node_id: u32) -> &mut NodeAcc {
        if !self.nodes.contains_key(&node_id) {
            self.node_order.push(node_id);
        }
        self.nodes.entry(node_id).or_default()
    }

    /// One decoded record; each kind has its own method below.
    pub fn event(&mut self, ev: Event) {
        if self.ended {
            return;
        }
        match ev {
            Event::Hello(h) => self.hello = Some(h),
            Event::Code(c) => {
                self.codes.insert(c.code_id, c);
            }
            Event::Type(t) => {
                self.types.insert(t.type_id, t);
            }
            Event::Node {
                node_id,
                parent_id,
                code_id,
            } => self.node(node_id, parent_id, code_id),
            Event::Alloc(site) => self.alloc(site),
            Event::Counts { code_id, counts } => self.counts(code_id, counts),
            Event::NodeStats {
                node_id,
                calls,
                ticks,
                opcodes,
            } => self.node_stats(node_id, calls, ticks, opcodes),
            Event::Gc(g) => self.collection(&g),
            Event::Mark { at, label } => self.mark(at, label),
            Event::RegionBegin { at, label } => {
                self.last_at = self.last_at.max(at);
                self.region_begin(at, label);
            }
            Event::RegionEnd { at, label } => self.region_end(at, &label),
            Event::AllocFail {
                node_id,
                offset,
                bytes,
            } => self.alloc_fail(node_id, offset, bytes),
            Event::Dropped { records, frames } => {
                add(&mut self.dropped_records, records);
                add(&mut self.dropped_frames, frames);
            }
            Event::End(e) => {
                self.last_at = self.last_at.max(e.at);
                self.end = Some(e);
                self.ended = true;
            }
            Event::Heap { at, used_bytes } => self.heap_sample(at, used_bytes),
            Event::Start { at } | Event::Stop { at } => self.last_at = self.last_at.max(at),
            Event::Cost(c) => self.cost = Some(c),
            Event::CodeMore {
                code_id,
                part,
                offset,
                total,
                data,
            } => self.code_more(code_id, part, offset, total, &data),
            Event::LineClock(c) => self.line_clock = Some(c),
            Event::LineTime { code_id, slots } => self.line_time_slots(code_id, &slots),
            Event::LineSamples { taken, outside } => {
                add(&mut self.line_samples.0, taken);
                add(&mut self.line_samples.1, outside);
            }
            Event::FrozenImport {
                node_id,
                offset,
                file,
            } => {
                self.frozen_imports.insert((node_id, offset), file);
            }
            Event::Extension { .. } => {}
        }
    }

    fn line_time_slots(&mut self, code_id: u32, slots: &[crate::wire::LineSlot]) {
        if !self.codes.contains_key(&code_id) {
            self.unknown_refs += 1;
        }
        for s in slots {
            let e = self.line_time.entry((code_id, s.offset)).or_default();
            e.0 = e.0.saturating_add(s.incl);
            e.1 = e.1.saturating_add(s.excl);
        }
    }

    /// The rest of a CODE record's line table or bytecode. A piece that
    /// does not continue what is known (its CODE record or an earlier piece
    /// was lost) is ignored: the code stays truncated, as the target will
    /// describe it again after a loss.
    fn code_more(&mut self, code_id: u32, part: CodePart, offset: u32, total: u32, data: &[u8]) {
        let Some(c) = self.codes.get_mut(&code_id) else {
            self.unknown_refs += 1;
            return;
        };
        let field = match part {
            CodePart::LineInfo => &mut c.line_info,
            CodePart::Bytecode => &mut c.bytecode,
        };
        if field.len() == offset as usize && field.len() + data.len() <= total as usize {
            field.extend_from_slice(data);
        }
    }

    fn node(&mut self, node_id: u32, parent_id: u32, code_id: u32) {
        // Node 0 is the root, never described: a record saying otherwise
        // is damage.
        if node_id == 0 {
            return;
        }
        if !self.codes.contains_key(&code_id) {
            self.unknown_refs += 1;
        }
        if !self.node_is_described(parent_id) {
            self.unknown_refs += 1;
        }
        let n = self.node_entry(node_id);
        n.parent = parent_id;
        n.code_id = Some(code_id);
    }

    fn counts(&mut self, code_id: u32, counts: Vec<(u32, u64)>) {
        if !self.codes.contains_key(&code_id) {
            self.unknown_refs += 1;
        }
        let mut total = 0u64;
        for (offset, n) in counts {
            add(self.counts.entry((code_id, offset)).or_default(), n);
            add(&mut total, n);
        }
        add(&mut self.total_opcodes, total);
        for r in &self.open_regions {
            if let Some(region) = self.regions.get_mut(r.index) {
                add(&mut region.opcodes, total);
            }
        }
    }

    fn node_stats(&mut self, node_id: u32, calls: u64, ticks: u64, opcodes: u64) {
        if node_id == 0 {
            return;
        }
        if !self.node_is_described(node_id) {
            self.unknown_refs += 1;
        }
        let n = self.node_entry(node_id);
        add(&mut n.calls, calls);
        add(&mut n.ticks, ticks);
        add(&mut n.opcodes, opcodes);
    }

    fn collection(&mut self, g: &GcRecord) {
        self.last_at = self.last_at.max(g.start.saturating_add(g.duration));
        self.collection_count += 1;
        add(&mut self.gc_ticks, g.duration);
        if self.collections.len() >= 2 * TIMELINE_MAX {
            self.collections = merge_pairs(&self.collections, |a, b| Collection {
                at: a.at,
                duration: a.duration.saturating_add(b.duration),
                blocks_freed: a.blocks_freed.saturating_add(b.blocks_freed),
                // Totals up to the merged entry's start.
                allocs_before: a.allocs_before,
                alloc_bytes_before: a.alloc_bytes_before,
                ..*b
            });
        }
        self.collections.push(Collection {
            at: g.start,
            duration: g.duration,
            blocks_freed: g.blocks_freed,
            used_after: g.used_bytes,
            free_after: g.free_bytes,
            largest_free_after: g.largest_free_bytes,
            allocs_before: self.total_allocs,
            alloc_bytes_before: self.total_alloc_bytes,
        });
    }

    fn mark(&mut self, at: u64, label: String) {
        self.last_at = self.last_at.max(at);
        let new_label = !self.marker_labels.contains(&label);
        if self.markers.len() < MARKER_MAX || new_label {
            if new_label {
                self.marker_labels.insert(label.clone());
            }
            self.markers.push(Marker {
                at,
                label,
                allocs_before: self.total_allocs,
                alloc_bytes_before: self.total_alloc_bytes,
                opcodes_before: self.total_opcodes,
            });
        }
    }

    /// Close the innermost open region of that name; an end without a
    /// beginning (lost) closes nothing.
    fn region_end(&mut self, at: u64, label: &str) {
        self.last_at = self.last_at.max(at);
        if let Some(pos) = self
            .open_regions
            .iter()
            .rposition(|r| self.regions.get(r.index).is_some_and(|g| g.label == label))
        {
            let open = self.open_regions.remove(pos);
            if let Some(g) = self.regions.get_mut(open.index) {
                g.end = Some(at);
                add(&mut g.inside_ticks, at.saturating_sub(open.start));
            }
        }
    }

    fn alloc_fail(&mut self, node_id: u32, offset: u32, bytes: u64) {
        if !self.node_is_described(node_id) {
            self.unknown_refs += 1;
        }
        let f = self.failures.entry((node_id, offset)).or_default();
        add(&mut f.count, 1);
        f.largest = f.largest.max(bytes);
    }

    fn heap_sample(&mut self, at: u64, used_bytes: u64) {
        self.last_at = self.last_at.max(at);
        if self.heap_samples.len() >= 2 * TIMELINE_MAX {
            // Keep the higher of two neighbours: peaks stay visible.
            self.heap_samples = merge_pairs(&self.heap_samples, |a, b| HeapSample {
                used: a.used.max(b.used),
                ..*a
            });
        }
        self.heap_samples.push(HeapSample {
            at,
            used: used_bytes,
            allocs_before: self.total_allocs,
            alloc_bytes_before: self.total_alloc_bytes,
        });
    }

    fn alloc(&mut self, site: crate::wire::AllocSite) {
        let raw = site.type_id == 0;
        // A raw buffer right after a typed object at the same place is that
        // object's storage (a list's items, a str's data).
        let companion = match self.last_typed {
            Some((node, offset, t)) if raw && node == site.node_id && offset == site.offset => t,
            _ => 0,
        };
        let growth = site.kind == AllocKind::Growth;
        let heap_frame = site.kind == AllocKind::HeapFrame;
        // A heap frame is told as one: never another object's storage.
        let companion = if heap_frame { 0 } else { companion };
        if !raw {
            self.last_typed = Some((site.node_id, site.offset, site.type_id));
            if let Some((before, bytes)) = self.last_raw.take() {
                if before.node == site.node_id && before.offset == site.offset && !growth {
                    self.move_to_companion(before, bytes, site.type_id);
                }
            }
        }
        let key = SiteKey {
            node: site.node_id,
            offset: site.offset,
            type_id: site.type_id,
            growth,
            companion,
            heap_frame,
        };
        self.last_raw =
            (raw && !growth && !heap_frame && companion == 0).then_some((key, site.bytes));
        let acc = self.sites.entry(key).or_default();
        add(&mut acc.count, 1);
        add(&mut acc.bytes, site.bytes);
        add(&mut self.total_allocs, 1);
        add(&mut self.total_alloc_bytes, site.bytes);
        for r in &self.open_regions {
            if let Some(region) = self.regions.get_mut(r.index) {
                add(&mut region.alloc_count, 1);
                add(&mut region.alloc_bytes, site.bytes);
            }
        }
    }

    /// One allocation counted at the raw-buffer site `key` was the storage
    /// of the object of type `type_id` allocated right after it: count it
    /// as that object's.
    fn move_to_companion(&mut self, key: SiteKey, bytes: u64, type_id: u32) {
        let Some(acc) = self.sites.get_mut(&key) else {
            return;
        };
        acc.count = acc.count.saturating_sub(1);
        acc.bytes = acc.bytes.saturating_sub(bytes);
        if acc.count == 0 {
            self.sites.remove(&key);
        }
        let to = self.sites.entry(SiteKey {
            companion: type_id,
            ..key
        });
        let acc = to.or_default();
        add(&mut acc.count, 1);
        add(&mut acc.bytes, bytes);
    }

    fn region_begin(&mut self, at: u64, label: String) {
        // Past the limit, an entry folds into the latest record of its
        // label, open or not: a record's figures are the sum of what
        // happened inside each of its entries (nested entries of one label
        // count what they share once per entry, as separate records would).
        let fold_into = if self.regions.len() >= REGION_MAX {
            self.last_region_of.get(&label).copied()
        } else {
            None
        };
        let index = match fold_into.and_then(|i| self.regions.get_mut(i).map(|r| (i, r))) {
            Some((i, r)) => {
                add(&mut r.entries, 1);
                // Its latest entry is open.
                r.end = None;
                i
            }
            None => {
                self.regions.push(Region {
                    label: label.clone(),
                    start: at,
                    end: None,
                    entries: 1,
                    ..Region::default()
                });
                let i = self.regions.len() - 1;
                self.last_region_of.insert(label, i);
                i
            }
        };
        if self.open_regions.len() >= OPEN_REGIONS_MAX {
            self.open_regions.remove(0);
        }
        self.open_regions.push(OpenRegion { index, start: at });
    }

    /// Build the Profile.
    pub fn finish(self, stats: &DecodeStats, run: &RunInfo) -> Profile {
        self.snapshot(stats, run)
    }

    /// The Profile so far, leaving the aggregator to go on (the live view).
    pub fn snapshot(&self, stats: &DecodeStats, run: &RunInfo) -> Profile {
        let mut b = ProfileBuilder::new();
        let codes = self.functions(&mut b, run);
        let mut unknown_fn = None;
        let mut unknown = |b: &mut ProfileBuilder| {
            *unknown_fn.get_or_insert_with(|| {
                let file = b.add_file("", None);
                b.add_function(file, 0, UNKNOWN_FUNCTION, UNKNOWN_FUNCTION)
            })
        };
        self.add_line_opcodes(&mut b, &codes, &mut unknown);
        self.add_line_time(&mut b, &codes);
        let node_map = self.add_call_tree(&mut b, &codes, &mut unknown);
        let unknown_ids = self.add_sites(&mut b, &codes, &mut unknown, &node_map);
        self.add_failures(&mut b, &codes, &mut unknown);
        for m in &self.markers {
            b.add_marker(m.clone());
        }
        for r in &self.regions {
            b.add_region(r.clone());
        }
        self.add_gc(&mut b);
        self.fill_meta(&mut b, stats, run, unknown_ids);
        let mut p = b.build();
        // END's totals are the target's own count of every allocation it
        // reported: what the profile lacks of them was lost on the way.
        if let Some(e) = self.end {
            p.meta.dropped.lost_allocs = e.alloc_count.saturating_sub(p.gc.alloc_count);
            p.meta.dropped.lost_alloc_bytes = e.alloc_bytes.saturating_sub(p.gc.alloc_bytes);
        }
        p
    }

    /// Opcodes per line, and the opcode mix.
    fn add_line_opcodes(&self, b: &mut ProfileBuilder, codes: &CodeFunctions, unknown: Unknown) {
        let mut count_keys: Vec<&(u32, u32)> = self.counts.keys().collect();
        count_keys.sort_unstable();
        for key in count_keys {
            let n = self.counts[key];
            let (code_id, offset) = *key;
            match codes.place(self, code_id, offset) {
                Some((function, file, line, op)) => {
                    b.add_opcodes(function, Some((file, line)), n);
                    match op {
                        Some(op) => b.add_opcode_mix(&opcodes::name(op), n),
                        None => b.add_opcode_mix(UNKNOWN_OPCODE, n),
                    }
                }
                None => {
                    let f = unknown(b);
                    b.add_opcodes(f, None, n);
                    b.add_opcode_mix(UNKNOWN_OPCODE, n);
                }
            }
        }
    }

    /// Time per line, from the per-offset values: exact ticks, or samples
    /// (as ticks: samples × the period, in the clock's ticks). Offsets of
    /// code never described have no line: left out.
    fn add_line_time(&self, b: &mut ProfileBuilder, codes: &CodeFunctions) {
        let Some(clock) = self.line_clock else {
            return;
        };
        let hz = self.hello.as_ref().map_or(0, |h| h.clock_hz);
        // A sample stands for the profiled time over the samples taken: a
        // timer signal that came late or merged with the next (the process
        // was not running) would otherwise lose its time. Without a
        // duration yet (a live snapshot), the nominal period.
        let duration = self.end.map_or(self.last_at, |e| e.at);
        let per_sample = match clock {
            crate::wire::LineClock::Sampled { period_ns } => {
                Some(if self.line_samples.0 > 0 && duration > 0 {
                    (duration / self.line_samples.0) as i64
                } else {
                    (period_ns as u128 * hz as u128 / 1_000_000_000) as i64
                })
            }
            _ => None,
        };
        let mut keys: Vec<&(u32, u32)> = self.line_time.keys().collect();
        keys.sort_unstable();
        for key in keys {
            let (incl, excl) = self.line_time[key];
            let Some((_, file, mut line, _)) = codes.place(self, key.0, key.1) else {
                continue;
            };
            // The prelude's slot holds the time of entering the frame (a
            // call or a resume, up to its first opcode): the `def` line's.
            let entry = self.codes.get(&key.0).is_some_and(|c| key.1 < c.bc_start);
            if let Some(p) = codes
                .places
                .get(&key.0)
                .filter(|p| entry && p.def_line != 0)
            {
                line = p.def_line;
            }
            match per_sample {
                Some(t) => b.add_line_time(
                    (file, line),
                    incl.saturating_mul(t),
                    excl.saturating_mul(t),
                    Some((incl.max(0) as u64, excl.max(0) as u64)),
                ),
                None => b.add_line_time((file, line), incl, excl, None),
            }
        }
    }

    /// The call tree: described nodes (parents first), then nodes only
    /// allocation records or failures named.
    fn add_call_tree(
        &self,
        b: &mut ProfileBuilder,
        codes: &CodeFunctions,
        unknown: Unknown,
    ) -> HashMap<u32, NodeId> {
        let mut node_map: HashMap<u32, NodeId> = HashMap::new();
        for &nid in &self.node_order {
            self.add_node_with_ancestors(nid, codes, b, &mut node_map, unknown);
        }
        let mut unnamed: Vec<u32> = self
            .sites
            .keys()
            .map(|k| k.node)
            .chain(self.failures.keys().map(|k| k.0))
            .filter(|&n| n != 0 && !self.nodes.contains_key(&n))
            .collect();
        unnamed.sort_unstable();
        unnamed.dedup();
        for nid in unnamed {
            let function = unknown(b);
            let id = b.add_node(CallNode {
                function,
                ..CallNode::default()
            });
            node_map.insert(nid, id);
        }
        node_map
    }

    /// Where a node's event happened: function, file, line and opcode.
    fn node_code(&self, node: u32) -> Option<u32> {
        self.nodes.get(&node).and_then(|n| n.code_id)
    }

    /// The node whose code an allocation site's offset is in: the node
    /// itself, or for a compile frame the frame that imported.
    fn line_node(&self, node: u32) -> u32 {
        let compiling = self
            .node_code(node)
            .and_then(|c| self.codes.get(&c))
            .is_some_and(|c| c.kind == CodeKind::Compile);
        match self.nodes.get(&node) {
            Some(n) if compiling => n.parent,
            _ => node,
        }
    }

    fn locate(
        &self,
        b: &mut ProfileBuilder,
        codes: &CodeFunctions,
        unknown: Unknown,
        node: u32,
        offset: u32,
    ) -> (FunctionId, FileId, u32, Option<u8>) {
        if node == 0 {
            return (codes.runtime_fn, codes.runtime_file, 0, None);
        }
        let code_id = self.nodes.get(&node).and_then(|n| n.code_id);
        match code_id.and_then(|c| codes.place(self, c, offset)) {
            Some(place) => place,
            None => (unknown(b), codes.runtime_file, 0, None),
        }
    }

    /// Allocation sites with their causes; the allocations whose ids were
    /// unknown (plus other unknown references).
    fn add_sites(
        &self,
        b: &mut ProfileBuilder,
        codes: &CodeFunctions,
        unknown: Unknown,
        node_map: &HashMap<u32, NodeId>,
    ) -> u64 {
        let type_cause = |type_id: u32| -> Option<Cause> {
            let t = self.types.get(&type_id)?;
            Some((self.classify)(&AllocFacts {
                type_name: Some(&t.name),
                type_flags: t.flags,
                ..AllocFacts::default()
            }))
        };
        let mut unknown_ids = self.unknown_refs;
        // The nodes an exception made below them passed through: each
        // ancestor of a node where an exception object was made. A block
        // regrown at a call in one is that exception's traceback taking the
        // calling line (mp_obj_exception_add_traceback reallocates it).
        let mut exception_above: HashSet<u32> = HashSet::new();
        for k in self.sites.keys() {
            let raised = self
                .types
                .get(&k.type_id)
                .is_some_and(|t| t.flags & classify::FLAG_EXCEPTION != 0);
            if !raised {
                continue;
            }
            let mut at = k.node;
            // Bounded: a malformed stream's parents could loop.
            for _ in 0..self.nodes.len() {
                let Some(parent) = self.nodes.get(&at).map(|n| n.parent) else {
                    break;
                };
                if parent == 0 || !exception_above.insert(parent) {
                    break;
                }
                at = parent;
            }
        }
        // Names of the program's bytecode functions (class bodies too).
        let code_names: HashSet<&str> = self
            .codes
            .values()
            .map(|c| c.name.as_str())
            .filter(|n| !n.starts_with('<'))
            .collect();
        // Code objects compiled from the same place (a module imported again
        // and compiled anew) run the same bytecode: a line's executions are
        // theirs added up.
        let mut same_code: HashMap<(&str, &str, u32), Vec<u32>> = HashMap::new();
        for (&id, c) in &self.codes {
            let first = codes.places.get(&id).map_or(0, |p| p.table.first_line());
            same_code
                .entry((c.file.as_str(), c.name.as_str(), first))
                .or_default()
                .push(id);
        }
        let executions_at = |code_id: u32, offset: u32| -> u64 {
            let Some(c) = self.codes.get(&code_id) else {
                return 0;
            };
            let first = codes
                .places
                .get(&code_id)
                .map_or(0, |p| p.table.first_line());
            // An allocation in the prelude (before the first opcode: cells,
            // argument setup) happens once per call: the first opcode's count.
            let offset = offset.max(c.bc_start);
            same_code
                .get(&(c.file.as_str(), c.name.as_str(), first))
                .map_or(0, |ids| {
                    ids.iter()
                        .filter_map(|id| self.counts.get(&(*id, offset)))
                        .fold(0u64, |a, &n| a.saturating_add(n))
                })
        };
        let mut sources = self.sources.borrow_mut();
        let mut keys: Vec<&SiteKey> = self.sites.keys().collect();
        keys.sort_unstable_by_key(|k| {
            (
                k.node,
                k.offset,
                k.type_id,
                k.growth,
                k.companion,
                k.heap_frame,
            )
        });
        for k in keys {
            let acc = self.sites[k];
            // What a compile frame allocates is at the importing line: its
            // site's offset is its caller's.
            let line_node = self.line_node(k.node);
            let (mut function, file, line, op) =
                self.locate(b, codes, unknown, line_node, k.offset);
            if line_node != k.node {
                if let Some(p) = self.node_code(k.node).and_then(|c| codes.places.get(&c)) {
                    function = p.function;
                }
            }
            let t = self.types.get(&k.type_id);
            if !self.node_is_described(k.node) || (k.type_id != 0 && t.is_none()) {
                add(&mut unknown_ids, acc.count);
            }
            let companion = if k.companion != 0 {
                type_cause(k.companion)
            } else {
                None
            };
            let code_id = self.node_code(line_node);
            let place = code_id.and_then(|c| codes.places.get(&c));
            let source_line = match place {
                Some(p) if line > 0 => sources
                    .lines(&p.file_name)
                    .and_then(|l| l.get(line as usize - 1))
                    .cloned(),
                _ => None,
            };
            let src = source_line
                .as_deref()
                .map(classify::code_part)
                .unwrap_or("");
            let calls_bytecode = src.starts_with("class ")
                || classify::called_names(src)
                    .iter()
                    .any(|n| code_names.contains(n.rsplit('.').next().unwrap_or(n)));
            let frozen_site = self.frozen_imports.get(&(k.node, k.offset));
            let cause = (self.classify)(&AllocFacts {
                type_name: t.map(|t| t.name.as_str()),
                type_flags: t.map_or(0, |t| t.flags),
                growth: k.growth,
                opcode: op,
                companion_of: companion.as_ref(),
                calls_bytecode,
                frozen_import: frozen_site.is_some(),
                heap_frame: k.heap_frame,
            });
            let executions = code_id.map_or(0, |c| executions_at(c, k.offset));
            let event_loop = event_loop_site(&cause, op, src, executions);
            let frozen_module = (cause == Cause::Import)
                .then_some(frozen_site)
                .flatten()
                .map(String::as_str);
            let module_file = if cause == Cause::Import && frozen_module.is_none() {
                self.imported_file(src)
            } else {
                None
            };
            let advice = advise(&SiteContext {
                cause: &cause,
                opcode: op,
                type_name: t.map(|t| t.name.as_str()),
                growth: k.growth,
                source_line: source_line.as_deref(),
                companion_type: (k.companion != 0)
                    .then(|| self.types.get(&k.companion).map(|t| t.name.as_str()))
                    .flatten(),
                next_opcode: code_id.and_then(|c| self.next_opcode(c, k.offset)),
                calls_bytecode,
                event_loop,
                exception_below: exception_above.contains(&k.node),
                executions,
                count: acc.count,
                code_name: place.map_or("", |p| p.name.as_str()),
                module_file: module_file.as_deref(),
                frozen_module,
            });
            b.add_alloc(ProfileSite {
                function,
                file,
                line,
                offset: k.offset,
                opcode: op,
                opcode_name: op.map(opcodes::name),
                node: node_map.get(&k.node).copied(),
                type_name: t.map(|t| t.name.clone()),
                kind: if k.growth {
                    ProfileAllocKind::Growth
                } else {
                    ProfileAllocKind::New
                },
                cause,
                count: acc.count,
                bytes: acc.bytes,
                what: advice.what,
                fix: advice.fix,
                executions,
                event_loop,
            });
        }
        unknown_ids
    }

    /// The opcode after the one at `offset` (an offset from the start of
    /// the code's data, as sites give it).
    fn next_opcode(&self, code_id: u32, offset: u32) -> Option<u8> {
        let c = self.codes.get(&code_id)?;
        let rel = usize::try_from(offset.checked_sub(c.bc_start)?).ok()?;
        let next = opcodes::decode(&c.bytecode, rel).ok()?.end();
        c.bytecode.get(next).copied()
    }

    /// The short file name of the module an import line imports, when that
    /// module's code is among the profile's code objects.
    fn imported_file(&self, src: &str) -> Option<String> {
        let module = classify::imported_module(src)?;
        let stem = module.rsplit('.').next().unwrap_or(module);
        let wanted = format!("{stem}.py");
        self.codes
            .values()
            .filter(|c| c.name == "<module>")
            .map(|c| c.file.rsplit('/').next().unwrap_or(&c.file))
            .find(|f| *f == wanted)
            .map(str::to_string)
    }

    fn add_failures(&self, b: &mut ProfileBuilder, codes: &CodeFunctions, unknown: Unknown) {
        let mut failure_keys: Vec<&(u32, u32)> = self.failures.keys().collect();
        failure_keys.sort_unstable();
        for key in failure_keys {
            let f = self.failures[key];
            let (function, _, line, _) = self.locate(b, codes, unknown, key.0, key.1);
            b.add_alloc_failure(function, line, f.largest, f.count);
        }
    }

    fn add_gc(&self, b: &mut ProfileBuilder) {
        let gc = b.gc_mut();
        gc.total_ticks = self.gc_ticks;
        gc.collection_count = self.collection_count;
        gc.collections = self.collections.clone();
        gc.heap_samples = self.heap_samples.clone();
        gc.peak_used_bytes = self.end.map_or_else(
            || self.heap_samples.iter().map(|h| h.used).max().unwrap_or(0),
            |e| e.peak_used_bytes,
        );
    }

    /// Add a node after its ancestors, so parents come first even when a
    /// damaged stream described them late. A parent that is missing, or
    /// met again on the way up (a cycle), makes the node a root.
    fn add_node_with_ancestors(
        &self,
        nid: u32,
        codes: &CodeFunctions,
        b: &mut ProfileBuilder,
        node_map: &mut HashMap<u32, NodeId>,
        unknown_function: Unknown,
    ) {
        let mut chain = vec![nid];
        let mut on_chain: HashSet<u32> = HashSet::from([nid]);
        let mut at = nid;
        while let Some(parent) = self.nodes.get(&at).map(|n| n.parent) {
            if parent == 0
                || node_map.contains_key(&parent)
                || !self.nodes.contains_key(&parent)
                || !on_chain.insert(parent)
            {
                break;
            }
            chain.push(parent);
            at = parent;
        }
        for &id in chain.iter().rev() {
            if node_map.contains_key(&id) {
                continue;
            }
            let Some(n) = self.nodes.get(&id) else {
                continue;
            };
            let function = match n.code_id.and_then(|c| codes.function_of(c)) {
                Some(f) => f,
                None => unknown_function(b),
            };
            let node = b.add_node(CallNode {
                parent: node_map.get(&n.parent).copied(),
                function,
                calls: n.calls,
                incl_ticks: n.ticks,
                opcodes: n.opcodes,
                ..CallNode::default()
            });
            node_map.insert(id, node);
        }
    }

    /// One function per code object place, with its qualified name.
    fn functions(&self, b: &mut ProfileBuilder, run: &RunInfo) -> CodeFunctions {
        let mut sources = self.sources.borrow_mut();
        let runtime_file = b.add_file("", None);
        let runtime_fn = b.add_function(runtime_file, 0, "<runtime>", "<runtime>");
        let mut out = CodeFunctions {
            runtime_file,
            runtime_fn,
            places: HashMap::new(),
        };
        let mut code_ids: Vec<u32> = self.codes.keys().copied().collect();
        code_ids.sort_unstable();
        for id in code_ids {
            let Some(c) = self.codes.get(&id) else {
                continue;
            };
            let table = LineTable::new(&c.line_info);
            // Code sent through a board's raw REPL is compiled as `<stdin>`:
            // it is the script.
            let file_name = if c.file == "<stdin>" && !run.script.is_empty() {
                run.script.as_str()
            } else {
                run.board_names
                    .iter()
                    .find(|(board, _)| *board == c.file)
                    .map_or(c.file.as_str(), |(_, host)| host.as_str())
            };
            let source = if run.embed_sources {
                sources.lines(file_name).cloned()
            } else {
                None
            };
            let file = b.add_file(file_name, source);
            let (name, first_line) = match c.kind {
                CodeKind::Bytecode => (c.name.clone(), table.first_line()),
                CodeKind::Compile => (format!("<compile {}>", short_file_name(&c.file)), 0),
                // Machine code has no line table: its `def` line is found
                // by name (a viper function has no name of its own when no
                // module global or class binds it).
                CodeKind::Native | CodeKind::Viper if c.name.is_empty() => ("<viper>".into(), 0),
                CodeKind::Native | CodeKind::Viper => {
                    let line = sources
                        .lines(file_name)
                        .and_then(|lines| def_line(lines, &c.name))
                        .unwrap_or(0);
                    (c.name.clone(), line)
                }
            };
            let (qualname, def_line) = if first_line == 0 {
                (name.clone(), 0)
            } else {
                sources.qualname(file_name, first_line, &name)
            };
            let f = b.add_function(file, def_line, &name, &qualname);
            b.set_function_kind(
                f,
                match c.kind {
                    CodeKind::Bytecode => FunctionKind::Bytecode,
                    CodeKind::Native => FunctionKind::Native,
                    CodeKind::Viper => FunctionKind::Viper,
                    CodeKind::Compile => FunctionKind::Compile,
                },
            );
            let floor = if c.name == "<module>" {
                1
            } else {
                table.first_line()
            };
            out.places.insert(
                id,
                CodePlace {
                    function: f,
                    file,
                    file_name: file_name.to_string(),
                    name,
                    table,
                    floor,
                    def_line,
                },
            );
        }
        out
    }

    fn fill_meta(
        &self,
        b: &mut ProfileBuilder,
        stats: &DecodeStats,
        run: &RunInfo,
        unknown_ids: u64,
    ) {
        let hello = self.hello.clone().unwrap_or_default();
        // Cut short by the host (timeout, Ctrl-C, kill): what was collected
        // is there, but the run did not finish.
        let signal = run.signal.map(signal_name);
        // The VM died of its own signal, not one the host sent.
        let crashed = run.host_reason.is_none() && run.signal.is_some_and(is_crash_signal);
        let partial = self.end.is_none()
            || crashed
            || matches!(
                run.host_reason,
                Some(ExitReason::Timeout | ExitReason::KeyboardInterrupt | ExitReason::Killed)
            );
        let reason = match (run.host_reason, self.end.map(|e| e.reason)) {
            (Some(r), _) => r,
            (None, _) if crashed => ExitReason::Crashed,
            (None, Some(r)) => match r {
                EndReason::Finished => ExitReason::Finished,
                EndReason::Exception => ExitReason::Exception,
                EndReason::KeyboardInterrupt => ExitReason::KeyboardInterrupt,
                EndReason::SystemExit => ExitReason::SystemExit,
                EndReason::Stopped => ExitReason::Stopped,
                EndReason::MemoryError => ExitReason::MemoryError,
                EndReason::Unknown(_) => ExitReason::Unknown,
            },
            (None, None) => ExitReason::Unknown,
        };
        // The main script failed before any of it ran: the VM's top level
        // never started, so END says nothing; the traceback names why.
        let compile_failure = match reason {
            ExitReason::Finished | ExitReason::Exception | ExitReason::Unknown
                if run.status.is_some_and(|s| s != 0) =>
            {
                run.error_text.as_deref().and_then(compile_failure)
            }
            _ => None,
        };
        let reason = compile_failure.as_ref().map_or(reason, |f| f.0);
        let unit = match hello.clock.as_str() {
            "ns" => "ns",
            // SysTick counts the processor clock on the boards that use it.
            "dwt" | "ccount" | "systick" => "cycles",
            _ => "ticks",
        };
        let meta = b.meta_mut();
        let ticks = |q16: u64| q16 as f64 / 65536.0;
        meta.copied_to_board = run.copied_to_board.clone();
        meta.profiler_cost = self.cost.map(|c| mpprof_profile::ProfilerCost {
            opcode_ticks: ticks(c.opcode_q16),
            call_ticks: ticks(c.call_q16),
            alloc_ticks: ticks(c.alloc_q16),
            typed_alloc_ticks: ticks(c.typed_alloc_q16),
            native_call_ticks: ticks(c.native_q16),
            viper_call_ticks: ticks(if c.viper_q16 != 0 {
                c.viper_q16
            } else {
                c.native_q16
            }),
            from_runs: u32::try_from(c.from_runs).unwrap_or(u32::MAX),
        });
        meta.line_time = self.line_clock.map(|c| match c {
            crate::wire::LineClock::Sampled { period_ns } => mpprof_profile::LineTime {
                mode: mpprof_profile::LineTimeMode::Sampled,
                sample_period_ns: Some(period_ns),
                samples: self.line_samples.0,
                samples_outside: self.line_samples.1,
            },
            crate::wire::LineClock::Exact => mpprof_profile::LineTime {
                mode: mpprof_profile::LineTimeMode::Exact,
                ..Default::default()
            },
            crate::wire::LineClock::Unknown(_) => mpprof_profile::LineTime {
                mode: mpprof_profile::LineTimeMode::Unknown,
                ..Default::default()
            },
        });
        meta.mpprof_version = env!("CARGO_PKG_VERSION").to_string();
        meta.target = hello.target.clone();
        meta.micropython_version = hello.mp_version.clone();
        meta.platform = hello.platform.clone();
        meta.word_bits = u32::try_from(hello.word_bytes.saturating_mul(8)).unwrap_or(u32::MAX);
        meta.gc_block_bytes = u32::try_from(hello.gc_block_bytes).unwrap_or(u32::MAX);
        meta.small_int_bits = u32::try_from(hello.small_int_bits).unwrap_or(u32::MAX);
        meta.heap_bytes = self.end.map_or(hello.heap_bytes, |e| e.heap_bytes);
        meta.clock = Clock {
            name: hello.clock.clone(),
            hz: hello.clock_hz,
            unit: unit.to_string(),
        };
        meta.script = run.script.clone();
        meta.args = run.args.clone();
        meta.duration_ticks = self.end.map_or(self.last_at, |e| e.at);
        meta.exit = Exit {
            reason,
            status: run.status,
            message: run.message.clone().or_else(|| compile_failure.map(|f| f.1)),
            signal,
            events: crashed.then_some(stats.records),
        };
        meta.partial = partial;
        meta.dropped = Dropped {
            // END's count covers the whole run; DROPPED records may have
            // been lost themselves.
            records: self
                .dropped_records
                .max(self.end.map_or(0, |e| e.dropped_records)),
            frames: self.dropped_frames.saturating_add(stats.lost_frames),
            crc_errors: stats.crc_errors,
            bad_frames: stats.bad_frames,
            unknown_ids,
            ..Dropped::default()
        };
    }
}

/// Where a described code object's opcodes are.
struct CodePlace {
    function: FunctionId,
    file: FileId,
    /// The source file's path, as read for the profile.
    file_name: String,
    /// The code object's name: `<module>`, a function's, a class body's.
    name: String,
    table: LineTable,
    /// The lowest line its opcodes are on. A class body's preamble runs
    /// before its first statement sets a line, so the table puts it on
    /// line 1: it belongs to the body's first line. Module code genuinely
    /// starts on line 1 (its first statement sets no line there).
    floor: u32,
    /// The `def` line: where line time charges entering the function.
    def_line: u32,
}

/// The functions of the described code objects.
struct CodeFunctions {
    runtime_file: FileId,
    runtime_fn: FunctionId,
    places: HashMap<u32, CodePlace>,
}

impl CodeFunctions {
    fn function_of(&self, code_id: u32) -> Option<FunctionId> {
        self.places.get(&code_id).map(|c| c.function)
    }

    /// The function, file, line and opcode of an offset in a described code
    /// object. Offsets before the first opcode (the prelude) belong to the
    /// code's first line.
    fn place(
        &self,
        agg: &Aggregator,
        code_id: u32,
        offset: u32,
    ) -> Option<(FunctionId, FileId, u32, Option<u8>)> {
        let c = agg.codes.get(&code_id)?;
        let p = self.places.get(&code_id)?;
        Some(match offset.checked_sub(c.bc_start) {
            Some(rel) => {
                let line = p.table.line(rel).max(p.floor);
                let op = usize::try_from(rel)
                    .ok()
                    .and_then(|r| c.bytecode.get(r).copied());
                (p.function, p.file, line, op)
            }
            None => (p.function, p.file, p.floor, None),
        })
    }
}

pub use crate::record::ingest::profile_from_stream;

/// `x.py` of `lib/x.py`.
fn short_file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// The line (1-based) of `def name(` in a source, for code with no line
/// table.
fn def_line(lines: &[String], name: &str) -> Option<u32> {
    let head = format!("def {name}(");
    lines
        .iter()
        .position(|l| l.trim_start().starts_with(&head))
        .map(|i| i as u32 + 1)
}
