//! Events → Profile. Streaming: memory grows with distinct code objects,
//! call-tree nodes and allocation sites, never with the number of events.

use std::collections::HashMap;

use mpprof_profile::{
    AllocFailure, AllocKind as ProfileAllocKind, AllocSite as ProfileSite, CallNode, Cause,
    CauseCount, Clock, Collection, Dropped, Exit, ExitReason, FunctionId, HeapSample, Line, Marker,
    OpcodeCount, Profile, ProfileBuilder, Region,
};

use crate::analyse::{classify, AllocFacts};
use crate::lineinfo::LineTable;
use crate::opcodes;
use crate::symbolize::Sources;
use crate::wire::{AllocKind, CodeInfo, DecodeStats, EndReason, EndRecord, Event, Hello, TypeInfo};

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
    pub message: Option<String>,
    /// Put each profiled file's source into the profile.
    pub embed_sources: bool,
}

#[derive(Debug, Default, Clone)]
struct NodeAcc {
    parent: u32,
    code_id: u32,
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
}

#[derive(Debug, Default, Clone, Copy)]
struct SiteAcc {
    count: u64,
    bytes: u64,
}

#[derive(Debug)]
struct OpenRegion {
    index: usize,
}

/// Accumulates events into a Profile.
#[derive(Debug, Default)]
pub struct Aggregator {
    hello: Option<Hello>,
    codes: HashMap<u32, CodeInfo>,
    types: HashMap<u32, TypeInfo>,
    nodes: HashMap<u32, NodeAcc>,
    node_order: Vec<u32>,
    counts: FastMap<(u32, u32), u64>,
    sites: FastMap<SiteKey, SiteAcc>,
    last_typed: Option<(u32, u32, u32)>,
    collections: Vec<Collection>,
    collection_count: u64,
    gc_ticks: u64,
    heap_samples: Vec<HeapSample>,
    markers: Vec<Marker>,
    /// Running totals, for the markers.
    total_allocs: u64,
    total_alloc_bytes: u64,
    total_opcodes: u64,
    regions: Vec<Region>,
    open_regions: Vec<OpenRegion>,
    failures: Vec<(u32, u32, u64)>,
    end: Option<EndRecord>,
    dropped_records: u64,
    dropped_frames: u64,
    last_at: u64,
    /// Events after END (a second session in the same stream) are ignored.
    ended: bool,
}

impl Aggregator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the END record has been seen.
    pub fn ended(&self) -> bool {
        self.ended
    }

    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

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
            } => {
                if !self.nodes.contains_key(&node_id) {
                    self.node_order.push(node_id);
                }
                let n = self.nodes.entry(node_id).or_default();
                n.parent = parent_id;
                n.code_id = code_id;
            }
            Event::Alloc(site) => {
                let raw = site.type_id == 0;
                let companion = match self.last_typed {
                    Some((node, offset, t))
                        if raw && node == site.node_id && offset == site.offset =>
                    {
                        t
                    }
                    _ => 0,
                };
                if !raw {
                    self.last_typed = Some((site.node_id, site.offset, site.type_id));
                }
                let key = SiteKey {
                    node: site.node_id,
                    offset: site.offset,
                    type_id: site.type_id,
                    growth: site.kind == AllocKind::Growth,
                    companion,
                };
                let acc = self.sites.entry(key).or_default();
                acc.count += 1;
                acc.bytes += site.bytes;
                self.total_allocs += 1;
                self.total_alloc_bytes += site.bytes;
                for r in &self.open_regions {
                    if let Some(region) = self.regions.get_mut(r.index) {
                        region.alloc_count += 1;
                        region.alloc_bytes += site.bytes;
                    }
                }
            }
            Event::Counts { code_id, counts } => {
                let mut total = 0u64;
                for (offset, n) in counts {
                    *self.counts.entry((code_id, offset)).or_default() += n;
                    total += n;
                }
                self.total_opcodes += total;
                for r in &self.open_regions {
                    if let Some(region) = self.regions.get_mut(r.index) {
                        region.opcodes += total;
                    }
                }
            }
            Event::NodeStats {
                node_id,
                calls,
                ticks,
                opcodes,
            } => {
                let n = self.nodes.entry(node_id).or_default();
                n.calls += calls;
                n.ticks += ticks;
                n.opcodes += opcodes;
            }
            Event::Gc(g) => {
                self.last_at = self.last_at.max(g.start + g.duration);
                self.collection_count += 1;
                self.gc_ticks += g.duration;
                if self.collections.len() >= 2 * TIMELINE_MAX {
                    self.collections = merge_pairs(&self.collections, |a, b| Collection {
                        at: a.at,
                        duration: a.duration + b.duration,
                        blocks_freed: a.blocks_freed + b.blocks_freed,
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
                });
            }
            Event::Mark { at, label } => {
                self.last_at = self.last_at.max(at);
                self.markers.push(Marker {
                    at,
                    label,
                    allocs_before: self.total_allocs,
                    alloc_bytes_before: self.total_alloc_bytes,
                    opcodes_before: self.total_opcodes,
                });
            }
            Event::RegionBegin { at, label } => {
                self.last_at = self.last_at.max(at);
                self.regions.push(Region {
                    label,
                    start: at,
                    end: None,
                    ..Region::default()
                });
                self.open_regions.push(OpenRegion {
                    index: self.regions.len() - 1,
                });
            }
            Event::RegionEnd { at, label } => {
                self.last_at = self.last_at.max(at);
                // Close the innermost open region of that name.
                if let Some(pos) = self
                    .open_regions
                    .iter()
                    .rposition(|r| self.regions.get(r.index).is_some_and(|g| g.label == label))
                {
                    let r = self.open_regions.remove(pos);
                    if let Some(g) = self.regions.get_mut(r.index) {
                        g.end = Some(at);
                    }
                }
            }
            Event::AllocFail {
                node_id,
                offset,
                bytes,
            } => self.failures.push((node_id, offset, bytes)),
            Event::Dropped { records, frames } => {
                self.dropped_records += records;
                self.dropped_frames += frames;
            }
            Event::End(e) => {
                self.last_at = self.last_at.max(e.at);
                self.end = Some(e);
                self.ended = true;
            }
            Event::Heap { at, used_bytes } => {
                self.last_at = self.last_at.max(at);
                if self.heap_samples.len() >= 2 * TIMELINE_MAX {
                    // Keep the higher of two neighbours: peaks stay visible.
                    self.heap_samples = merge_pairs(&self.heap_samples, |a, b| HeapSample {
                        at: a.at,
                        used: a.used.max(b.used),
                    });
                }
                self.heap_samples.push(HeapSample {
                    at,
                    used: used_bytes,
                });
            }
            Event::Start { at } | Event::Stop { at } => self.last_at = self.last_at.max(at),
            Event::Extension { .. } => {}
        }
    }

    /// Build the Profile.
    pub fn finish(self, stats: &DecodeStats, run: &RunInfo) -> Profile {
        self.snapshot(stats, run)
    }

    /// The Profile so far, leaving the aggregator to go on (the live view).
    pub fn snapshot(&self, stats: &DecodeStats, run: &RunInfo) -> Profile {
        let mut b = ProfileBuilder::new();
        let mut sources = Sources::new();
        let hello = self.hello.clone().unwrap_or_default();

        // Functions, one per code object place.
        let runtime_file = b.add_file("", None);
        let runtime_fn = b.add_function(runtime_file, 0, "<runtime>", "<runtime>");
        let mut code_fn: HashMap<u32, FunctionId> = HashMap::new();
        let mut tables: HashMap<u32, LineTable> = HashMap::new();
        let mut code_file: HashMap<u32, usize> = HashMap::new();
        let mut code_ids: Vec<&u32> = self.codes.keys().collect();
        code_ids.sort();
        for &id in code_ids {
            let c = &self.codes[&id];
            let table = LineTable::new(&c.line_info);
            let first = table.first_line();
            // Code sent through a board's raw REPL is compiled as `<stdin>`:
            // it is the script.
            let file_name = if c.file == "<stdin>" && !run.script.is_empty() {
                run.script.as_str()
            } else {
                c.file.as_str()
            };
            let source = if run.embed_sources {
                sources.lines(file_name).cloned()
            } else {
                None
            };
            let file = b.add_file(file_name, source);
            let (qualname, def_line) = sources.qualname(file_name, first, &c.name);
            let f = b.add_function(file, def_line, &c.name, &qualname);
            code_fn.insert(id, f);
            code_file.insert(id, file);
            tables.insert(id, table);
        }
        let unknown_fn = |b: &mut ProfileBuilder| {
            let f = b.add_file("", None);
            b.add_function(f, 0, "<unknown>", "<unknown>")
        };

        // Lines: opcodes per (file, line), and the opcode mix.
        let mut lines: HashMap<(usize, u32), Line> = HashMap::new();
        let mut mix: HashMap<String, u64> = HashMap::new();
        let place = |code_id: u32, offset: u32| -> Option<(usize, u32, Option<u8>)> {
            let c = self.codes.get(&code_id)?;
            let rel = offset.checked_sub(c.bc_start)?;
            let table = tables.get(&code_id)?;
            // Opcodes before the table's first entry (a class body's
            // preamble) belong to the code's first line.
            let line = table.line(rel).max(table.first_line());
            let op = c.bytecode.get(rel as usize).copied();
            Some((*code_file.get(&code_id)?, line, op))
        };
        for (&(code_id, offset), &n) in &self.counts {
            let Some((file, line, op)) = place(code_id, offset) else {
                continue;
            };
            let function = code_fn.get(&code_id).copied().unwrap_or(runtime_fn);
            let l = lines.entry((file, line)).or_insert_with(|| Line {
                file,
                line,
                function,
                ..Line::default()
            });
            l.opcodes += n;
            if let Some(f) = b.function_mut(function) {
                f.opcodes += n;
            }
            if let Some(op) = op {
                *mix.entry(opcodes::name(op)).or_default() += n;
            }
        }

        // The call tree, parents first (the target sends a parent's NODE first).
        let mut node_map: HashMap<u32, usize> = HashMap::new();
        let mut unknown = None;
        for &nid in &self.node_order {
            let n = &self.nodes[&nid];
            let function = match code_fn.get(&n.code_id) {
                Some(&f) => f,
                None => *unknown.get_or_insert_with(|| unknown_fn(&mut b)),
            };
            let parent = node_map.get(&n.parent).copied();
            let id = b.add_node(CallNode {
                parent,
                function,
                calls: n.calls,
                incl_ticks: n.ticks,
                opcodes: n.opcodes,
                ..CallNode::default()
            });
            node_map.insert(nid, id);
        }

        // Allocation sites, with their causes.
        let type_cause = |type_id: u32| -> Option<Cause> {
            let t = self.types.get(&type_id)?;
            Some(classify(&AllocFacts {
                type_name: Some(&t.name),
                type_flags: t.flags,
                ..AllocFacts::default()
            }))
        };
        let mut keys: Vec<&SiteKey> = self.sites.keys().collect();
        keys.sort_by_key(|k| (k.node, k.offset, k.type_id, k.growth, k.companion));
        let mut line_causes: HashMap<(usize, u32), HashMap<Cause, (u64, u64)>> = HashMap::new();
        for k in keys {
            let acc = self.sites[k];
            let node = node_map.get(&k.node).copied();
            let code_id = self.nodes.get(&k.node).map(|n| n.code_id);
            let function = match (k.node, code_id.and_then(|c| code_fn.get(&c))) {
                (0, _) => runtime_fn,
                (_, Some(&f)) => f,
                _ => *unknown.get_or_insert_with(|| unknown_fn(&mut b)),
            };
            let (file, line, op) =
                code_id
                    .and_then(|c| place(c, k.offset))
                    .unwrap_or((runtime_file, 0, None));
            let t = self.types.get(&k.type_id);
            let companion = if k.companion != 0 {
                type_cause(k.companion)
            } else {
                None
            };
            let cause = classify(&AllocFacts {
                type_name: t.map(|t| t.name.as_str()),
                type_flags: t.map_or(0, |t| t.flags),
                growth: k.growth,
                opcode: op,
                companion_of: companion.as_ref(),
            });
            if let Some(f) = b.function_mut(function) {
                f.alloc_count += acc.count;
                f.alloc_bytes += acc.bytes;
            }
            if let Some(n) = node.and_then(|n| b.node_mut(n)) {
                n.alloc_count += acc.count;
                n.alloc_bytes += acc.bytes;
            }
            if k.node != 0 {
                let l = lines.entry((file, line)).or_insert_with(|| Line {
                    file,
                    line,
                    function,
                    ..Line::default()
                });
                l.alloc_count += acc.count;
                l.alloc_bytes += acc.bytes;
                let c = line_causes
                    .entry((file, line))
                    .or_default()
                    .entry(cause.clone())
                    .or_default();
                c.0 += acc.count;
                c.1 += acc.bytes;
            }
            b.add_alloc_site(ProfileSite {
                function,
                file,
                line,
                offset: k.offset,
                opcode: op,
                opcode_name: op.map(opcodes::name),
                node,
                type_name: t.map(|t| t.name.clone()),
                kind: if k.growth {
                    ProfileAllocKind::Growth
                } else {
                    ProfileAllocKind::New
                },
                cause,
                count: acc.count,
                bytes: acc.bytes,
            });
        }
        for ((file, line), causes) in line_causes {
            if let Some(l) = lines.get_mut(&(file, line)) {
                let mut v: Vec<CauseCount> = causes
                    .into_iter()
                    .map(|(cause, (count, bytes))| CauseCount {
                        cause,
                        count,
                        bytes,
                    })
                    .collect();
                v.sort_by(|a, b| b.count.cmp(&a.count).then(a.cause.cmp(&b.cause)));
                l.causes = v;
            }
        }
        for (_, l) in lines {
            b.add_line(l);
        }
        let mut mix: Vec<OpcodeCount> = mix
            .into_iter()
            .map(|(opcode, count)| OpcodeCount { opcode, count })
            .collect();
        mix.sort_by(|a, b| b.count.cmp(&a.count).then(a.opcode.cmp(&b.opcode)));
        b.set_opcode_mix(mix);

        for m in &self.markers {
            b.add_marker(m.clone());
        }
        for r in &self.regions {
            b.add_region(r.clone());
        }

        // Heap and GC.
        let failures: Vec<AllocFailure> = self
            .failures
            .iter()
            .map(|&(node, offset, bytes)| {
                let code_id = self.nodes.get(&node).map(|n| n.code_id);
                let function = code_id
                    .and_then(|c| code_fn.get(&c).copied())
                    .unwrap_or(runtime_fn);
                let line = code_id.and_then(|c| place(c, offset)).map_or(0, |p| p.1);
                AllocFailure {
                    function,
                    line,
                    bytes,
                }
            })
            .collect();
        {
            let gc = b.gc_mut();
            gc.total_ticks = self.gc_ticks;
            gc.collection_count = self.collection_count;
            gc.collections = self.collections.clone();
            gc.heap_samples = self.heap_samples.clone();
            gc.failures = failures;
            let (alloc_count, alloc_bytes) = self
                .sites
                .values()
                .fold((0, 0), |(c, s), a| (c + a.count, s + a.bytes));
            gc.alloc_count = alloc_count;
            gc.alloc_bytes = alloc_bytes;
            gc.peak_used_bytes = self.end.map_or_else(
                || gc.heap_samples.iter().map(|h| h.used).max().unwrap_or(0),
                |e| e.peak_used_bytes,
            );
        }

        // Cut short by the host (timeout, Ctrl-C, kill): what was collected is
        // there, but the run did not finish.
        let partial = self.end.is_none()
            || matches!(
                run.host_reason,
                Some(ExitReason::Timeout | ExitReason::KeyboardInterrupt | ExitReason::Killed)
            );
        let reason = match (run.host_reason, self.end.map(|e| e.reason)) {
            (Some(r), _) => r,
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
        let unit = match hello.clock.as_str() {
            "ns" => "ns",
            "dwt" | "ccount" => "cycles",
            _ => "ticks",
        };
        let meta = b.meta_mut();
        meta.mpprof_version = env!("CARGO_PKG_VERSION").to_string();
        meta.target = hello.target.clone();
        meta.micropython_version = hello.mp_version.clone();
        meta.platform = hello.platform.clone();
        meta.word_bits = (hello.word_bytes * 8) as u32;
        meta.gc_block_bytes = hello.gc_block_bytes as u32;
        meta.small_int_bits = hello.small_int_bits as u32;
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
            message: run.message.clone(),
        };
        meta.partial = partial;
        meta.dropped = Dropped {
            records: self
                .dropped_records
                .max(self.end.map_or(0, |e| e.dropped_records)),
            frames: self.dropped_frames + stats.lost_frames,
            crc_errors: stats.crc_errors,
            bad_frames: stats.bad_frames,
        };
        b.build()
    }
}

/// Decode and aggregate a whole recorded stream.
pub fn profile_from_stream(bytes: &[u8], run: &RunInfo) -> Profile {
    let mut d = crate::wire::Decoder::new();
    let mut agg = Aggregator::new();
    d.feed(bytes, &mut |e| agg.event(e));
    let stats = *d.finish(&mut |e| agg.event(e));
    agg.finish(&stats, run)
}
