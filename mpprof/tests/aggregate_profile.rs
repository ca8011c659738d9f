//! Events → Profile, exactly: a hand-built event sequence shaped like a real
//! run (records in the order the runtime writes them) and every figure of
//! the resulting profile.

use mpprof::analysis::classify::AllocFacts;
use mpprof::record::aggregate::{Aggregator, RunInfo};
use mpprof::wire::{
    AllocKind, AllocSite, CodeInfo, DecodeStats, EndReason, EndRecord, Event, GcRecord, TypeInfo,
};
use mpprof_profile::{
    AllocKind as SiteKind, CallNode, Cause, Collection, ExitReason, HeapSample, Marker, Profile,
    Region,
};

mod common;

/// The script the events describe. Line numbers in the events below refer
/// to it.
const SCRIPT: &str = "class Led:
    def toggle(self, n):
        x = n * 1.5
        return [x]

led = Led()
for i in range(2):
    led.toggle(i)
";

/// `BINARY_OP multiply` (0xd7 + MP_BINARY_OP_MULTIPLY) and `BUILD_LIST`.
const OP_MULTIPLY: u8 = 0xf4;
const OP_BUILD_LIST: u8 = 0x2b;
const OP_CALL_FUNCTION: u8 = 0x34;
const OP_CALL_METHOD: u8 = 0x36;
const OP_LOAD_NAME: u8 = 0x11;

struct Script {
    dir: std::path::PathBuf,
    path: String,
}

impl Script {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mpprof-agg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("led.py");
        std::fs::write(&path, SCRIPT).expect("write script");
        let path = path.to_str().expect("utf-8 path").to_string();
        Self { dir, path }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn code(
    code_id: u32,
    name: &str,
    file: &str,
    bc_start: u32,
    line_info: &[u8],
    bytecode: &[u8],
) -> Event {
    Event::Code(CodeInfo {
        kind: Default::default(),
        code_id,
        name: name.into(),
        file: file.into(),
        bc_start,
        line_info: line_info.to_vec(),
        bytecode: bytecode.to_vec(),
    })
}

fn ty(type_id: u32, flags: u32, name: &str) -> Event {
    Event::Type(TypeInfo {
        type_id,
        flags,
        name: name.into(),
    })
}

fn node(node_id: u32, parent_id: u32, code_id: u32) -> Event {
    Event::Node {
        node_id,
        parent_id,
        code_id,
    }
}

fn alloc(node_id: u32, offset: u32, type_id: u32, bytes: u64) -> Event {
    Event::Alloc(AllocSite {
        node_id,
        offset,
        type_id,
        bytes,
        kind: AllocKind::New,
    })
}

fn counts(code_id: u32, c: &[(u32, u64)]) -> Event {
    Event::Counts {
        code_id,
        counts: c.to_vec(),
    }
}

fn stats(node_id: u32, calls: u64, ticks: u64, opcodes: u64) -> Event {
    Event::NodeStats {
        node_id,
        calls,
        ticks,
        opcodes,
    }
}

fn hello() -> Event {
    Event::Hello(common::host_hello())
}

fn end() -> Event {
    Event::End(EndRecord {
        at: 1000,
        heap_bytes: 65536,
        peak_used_bytes: 4096,
        alloc_bytes: 228,
        alloc_count: 9,
        collections: 1,
        gc_ticks: 40,
        dropped_records: 0,
        reason: EndReason::Finished,
    })
}

/// The run of SCRIPT, as the runtime streams it (without END).
fn run_events(path: &str) -> Vec<Event> {
    // <module>: line 1 from offset 0, line 6 from 6, 7 from 14, 8 from 18.
    let mut module_bc = vec![OP_LOAD_NAME; 24];
    module_bc[6] = OP_CALL_FUNCTION;
    module_bc[18] = OP_CALL_METHOD;
    // Led's class body: 8 bytes of preamble, then line 2.
    let class_bc = vec![OP_LOAD_NAME; 12];
    // toggle: line 3 from offset 0, line 4 from 6.
    let mut toggle_bc = vec![OP_LOAD_NAME; 10];
    toggle_bc[4] = OP_MULTIPLY;
    toggle_bc[8] = OP_BUILD_LIST;
    let mut ev = vec![
        hello(),
        code(
            1,
            "<module>",
            path,
            10,
            &[0x86, 0x05, 0x28, 0x24],
            &module_bc,
        ),
        node(1, 0, 1),
        Event::Mark {
            at: 5,
            label: "start".into(),
        },
        code(2, "Led", path, 5, &[0x88, 0x01], &class_bc),
        node(2, 1, 2),
        // The class body's namespace, allocated in its preamble.
        alloc(2, 5, 0, 32),
        ty(3, 1, "Led"),
        alloc(1, 16, 3, 16),
        counts(1, &[(10, 1), (16, 1)]),
        Event::RegionBegin {
            at: 100,
            label: "loop".into(),
        },
        code(3, "toggle", path, 7, &[0x40, 0x26], &toggle_bc),
        node(3, 1, 3),
        ty(1, 0, "float"),
        ty(2, 0, "list"),
    ];
    for _ in 0..2 {
        // `n * 1.5`, then `[x]`: the list object, then its items.
        ev.extend([alloc(3, 11, 1, 16), alloc(3, 15, 2, 16), alloc(3, 15, 0, 8)]);
    }
    ev.extend([
        counts(3, &[(7, 2), (11, 2), (15, 2), (16, 2)]),
        counts(1, &[(24, 2), (28, 2)]),
        stats(3, 2, 300, 8),
        Event::RegionEnd {
            at: 500,
            label: "loop".into(),
        },
        // Made by C code outside any bytecode.
        alloc(0, 0, 0, 100),
        stats(2, 1, 50, 3),
        stats(1, 1, 1000, 10),
        counts(2, &[(5, 1), (13, 2)]),
        Event::Gc(GcRecord {
            start: 600,
            duration: 40,
            blocks_freed: 3,
            used_bytes: 2048,
            free_bytes: 63488,
            largest_free_bytes: 60000,
        }),
        Event::Heap {
            at: 700,
            used_bytes: 2048,
        },
        Event::Mark {
            at: 900,
            label: "done".into(),
        },
    ]);
    ev
}

/// Classification that spells out the facts it was given, so the tests see
/// exactly what the aggregator knew about each site.
fn facts(f: &AllocFacts) -> Cause {
    Cause::Other(format!(
        "{}|{}|{}|{:?}|{}",
        f.type_name.unwrap_or("-"),
        f.type_flags,
        f.growth,
        f.opcode,
        f.companion_of.map_or("-".to_string(), Cause::label)
    ))
}

fn aggregate(agg: &mut Aggregator, events: Vec<Event>) {
    for e in events {
        agg.event(e);
    }
}

fn other(s: &str) -> Cause {
    Cause::Other(s.into())
}

#[test]
fn a_run_becomes_an_exact_profile() {
    let script = Script::new("exact");
    let mut agg = Aggregator::with_classifier(facts);
    let mut ev = run_events(&script.path);
    ev.push(end());
    aggregate(&mut agg, ev);
    let run = RunInfo {
        script: script.path.clone(),
        args: vec!["-v".into()],
        status: Some(0),
        ..RunInfo::default()
    };
    let p = agg.finish(&DecodeStats::default(), &run);
    p.validate().expect("consistent");

    // Meta.
    let m = &p.meta;
    assert_eq!(
        (
            m.target.as_str(),
            m.micropython_version.as_str(),
            m.platform.as_str()
        ),
        ("host", "1.25.0", "linux")
    );
    assert_eq!(
        (
            m.word_bits,
            m.gc_block_bytes,
            m.small_int_bits,
            m.heap_bytes
        ),
        (32, 16, 31, 65536)
    );
    assert_eq!(
        (m.clock.name.as_str(), m.clock.hz, m.clock.unit.as_str()),
        ("ns", 1_000_000_000, "ns")
    );
    assert_eq!(
        (m.script.as_str(), m.args.clone()),
        (script.path.as_str(), vec!["-v".to_string()])
    );
    assert_eq!(m.duration_ticks, 1000);
    assert_eq!(
        (m.exit.reason, m.exit.status),
        (ExitReason::Finished, Some(0))
    );
    assert!(!m.partial);
    assert_eq!(m.dropped.total() + m.dropped.unknown_ids, 0);

    // Files and functions: the runtime pseudo-function, then one per code
    // object in id order, named from the source.
    let paths: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["", script.path.as_str()]);
    let f: Vec<(&str, &str, usize, u32)> = p
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.qualname.as_str(), f.file, f.line))
        .collect();
    assert_eq!(
        f,
        [
            ("<runtime>", "<runtime>", 0, 0),
            ("<module>", "<module>", 1, 1),
            ("Led", "Led", 1, 1),
            ("toggle", "Led.toggle", 1, 2),
        ]
    );
    let figures: Vec<[u64; 6]> = p
        .functions
        .iter()
        .map(|f| {
            [
                f.calls,
                f.incl_ticks,
                f.excl_ticks,
                f.opcodes,
                f.alloc_count,
                f.alloc_bytes,
            ]
        })
        .collect();
    assert_eq!(
        figures,
        [
            [0, 0, 0, 0, 1, 100],
            [1, 1000, 650, 6, 1, 16],
            [1, 50, 50, 3, 1, 32],
            [2, 300, 300, 8, 6, 80],
        ]
    );

    // Call tree, parents first.
    assert_eq!(
        p.call_tree,
        [
            CallNode {
                id: 0,
                parent: None,
                function: 1,
                calls: 1,
                incl_ticks: 1000,
                excl_ticks: 650,
                opcodes: 10,
                alloc_count: 1,
                alloc_bytes: 16,
            },
            CallNode {
                id: 1,
                parent: Some(0),
                function: 2,
                calls: 1,
                incl_ticks: 50,
                excl_ticks: 50,
                opcodes: 3,
                alloc_count: 1,
                alloc_bytes: 32,
            },
            CallNode {
                id: 2,
                parent: Some(0),
                function: 3,
                calls: 2,
                incl_ticks: 300,
                excl_ticks: 300,
                opcodes: 8,
                alloc_count: 6,
                alloc_bytes: 80,
            },
        ]
    );
    assert_eq!(p.stacks().last(), Some(&(vec![1, 3], 2)));

    // Lines: opcodes from the line table, allocations from the sites; the
    // class body's preamble belongs to its first line.
    let lines: Vec<(u32, usize, u64, u64, u64)> = p
        .lines
        .iter()
        .map(|l| (l.line, l.function, l.opcodes, l.alloc_count, l.alloc_bytes))
        .collect();
    assert_eq!(
        lines,
        [
            (1, 1, 1, 0, 0),
            (2, 2, 3, 1, 32),
            (3, 3, 4, 2, 32),
            (4, 3, 4, 4, 48),
            (6, 1, 1, 1, 16),
            (7, 1, 2, 0, 0),
            (8, 1, 2, 0, 0),
        ]
    );
    assert!(p
        .lines
        .iter()
        .all(|l| l.file == 1 && l.excl_ticks.is_none()));

    // Sites, with the facts their causes were computed from.
    let sites: Vec<_> = p
        .alloc_sites
        .iter()
        .map(|s| {
            (
                s.function,
                s.line,
                s.offset,
                s.node,
                s.opcode,
                s.type_name.as_deref(),
                s.kind,
                s.count,
                s.bytes,
            )
        })
        .collect();
    assert_eq!(
        sites,
        [
            (0, 0, 0, None, None, None, SiteKind::New, 1, 100),
            (
                1,
                6,
                16,
                Some(0),
                Some(OP_CALL_FUNCTION),
                Some("Led"),
                SiteKind::New,
                1,
                16
            ),
            (
                2,
                2,
                5,
                Some(1),
                Some(OP_LOAD_NAME),
                None,
                SiteKind::New,
                1,
                32
            ),
            (
                3,
                3,
                11,
                Some(2),
                Some(OP_MULTIPLY),
                Some("float"),
                SiteKind::New,
                2,
                32
            ),
            (
                3,
                4,
                15,
                Some(2),
                Some(OP_BUILD_LIST),
                None,
                SiteKind::New,
                2,
                16
            ),
            (
                3,
                4,
                15,
                Some(2),
                Some(OP_BUILD_LIST),
                Some("list"),
                SiteKind::New,
                2,
                32
            ),
        ]
    );
    let causes: Vec<Cause> = p.alloc_sites.iter().map(|s| s.cause.clone()).collect();
    assert_eq!(
        causes,
        [
            other("-|0|false|None|-"),
            other("Led|1|false|Some(52)|-"),
            other("-|0|false|Some(17)|-"),
            other("float|0|false|Some(244)|-"),
            // The raw buffer after the list at the same place is its storage.
            other("-|0|false|Some(43)|other (list|0|false|None|-)"),
            other("list|0|false|Some(43)|-"),
        ]
    );
    let names: Vec<Option<&str>> = p
        .alloc_sites
        .iter()
        .map(|s| s.opcode_name.as_deref())
        .collect();
    assert_eq!(names[3], Some("BINARY_OP multiply"));
    assert_eq!(names[5], Some("BUILD_LIST"));

    // Regions and marks, placed by stream order.
    assert_eq!(
        p.regions,
        [Region {
            label: "loop".into(),
            start: 100,
            end: Some(500),
            entries: 1,
            inside_ticks: 400,
            alloc_count: 6,
            alloc_bytes: 80,
            opcodes: 12,
        }]
    );
    assert_eq!(
        p.markers,
        [
            Marker {
                at: 5,
                label: "start".into(),
                allocs_before: 0,
                alloc_bytes_before: 0,
                opcodes_before: 0,
            },
            Marker {
                at: 900,
                label: "done".into(),
                allocs_before: 9,
                alloc_bytes_before: 228,
                opcodes_before: 17,
            },
        ]
    );

    // Heap.
    assert_eq!(
        p.gc.collections,
        [Collection {
            at: 600,
            duration: 40,
            blocks_freed: 3,
            used_after: 2048,
            free_after: 63488,
            largest_free_after: 60000,
            // Every allocation of the stream came before the collection:
            // 2 + 2 x 3 + 1 of 32 + 16 + 2 x 40 + 100 bytes.
            allocs_before: 9,
            alloc_bytes_before: 228,
        }]
    );
    assert_eq!(
        (p.gc.count(), p.gc.total_ticks, p.gc.peak_used_bytes),
        (1, 40, 4096)
    );
    assert_eq!((p.gc.alloc_count, p.gc.alloc_bytes), (9, 228));
    assert_eq!(
        p.gc.heap_samples,
        [HeapSample {
            at: 700,
            used: 2048,
            allocs_before: 9,
            alloc_bytes_before: 228,
        }]
    );
    assert!(p.gc.failures.is_empty());

    // Opcode mix: every counted opcode, by name.
    assert_eq!(p.opcode_mix.iter().map(|o| o.count).sum::<u64>(), 17);
    let mix = |name: &str| {
        p.opcode_mix
            .iter()
            .find(|o| o.opcode == name)
            .map(|o| o.count)
    };
    assert_eq!(mix("BINARY_OP multiply"), Some(2));
    assert_eq!(mix("BUILD_LIST"), Some(2));
}

#[test]
fn causes_from_the_real_classifier() {
    let script = Script::new("causes");
    let mut agg = Aggregator::new();
    aggregate(&mut agg, run_events(&script.path));
    let p = agg.finish(&DecodeStats::default(), &RunInfo::default());
    let causes: Vec<Cause> = p.alloc_sites.iter().map(|s| s.cause.clone()).collect();
    assert_eq!(
        causes,
        [
            other("raw buffer"),
            Cause::Instance,
            other("raw buffer"),
            Cause::Float,
            Cause::List,
            Cause::List,
        ]
    );
    let line4 = p.line(1, 4).expect("line 4");
    assert_eq!(line4.causes.len(), 1);
    assert_eq!(
        (
            &line4.causes[0].cause,
            line4.causes[0].count,
            line4.causes[0].bytes
        ),
        (&Cause::List, 4, 48)
    );
    let run: Vec<(Cause, u64, u64)> = p
        .causes
        .iter()
        .map(|c| (c.cause.clone(), c.count, c.bytes))
        .collect();
    assert_eq!(
        run,
        [
            (Cause::List, 4, 48),
            (Cause::Float, 2, 32),
            (other("raw buffer"), 2, 132),
            (Cause::Instance, 1, 16),
        ]
    );
}

#[test]
fn a_stream_without_end_is_partial() {
    let script = Script::new("partial");
    let mut agg = Aggregator::new();
    aggregate(&mut agg, run_events(&script.path));
    assert!(!agg.ended());
    let p = agg.snapshot(&DecodeStats::default(), &RunInfo::default());
    assert!(p.meta.partial);
    assert_eq!(p.meta.exit.reason, ExitReason::Unknown);
    // The latest time seen: the last mark.
    assert_eq!(p.meta.duration_ticks, 900);
    // No END: the peak is the highest heap sample.
    assert_eq!(p.gc.peak_used_bytes, 2048);
    assert_eq!(p.gc.alloc_count, 9);

    let timed_out = agg.finish(
        &DecodeStats::default(),
        &RunInfo {
            host_reason: Some(ExitReason::Timeout),
            message: Some("stopped after 30 s".into()),
            ..RunInfo::default()
        },
    );
    assert!(timed_out.meta.partial);
    assert_eq!(timed_out.meta.exit.reason, ExitReason::Timeout);
    assert_eq!(
        timed_out.meta.exit.message.as_deref(),
        Some("stopped after 30 s")
    );
}

#[test]
fn snapshots_are_deterministic_and_follow_the_stream() {
    let script = Script::new("snap");
    let mut agg = Aggregator::new();
    let events = run_events(&script.path);
    let (first, rest) = events.split_at(10);
    aggregate(&mut agg, first.to_vec());
    let early = agg.snapshot(&DecodeStats::default(), &RunInfo::default());
    assert_eq!(
        early,
        agg.snapshot(&DecodeStats::default(), &RunInfo::default())
    );
    assert_eq!(early.gc.alloc_count, 2);
    aggregate(&mut agg, rest.to_vec());
    aggregate(&mut agg, vec![end()]);
    let late = agg.snapshot(&DecodeStats::default(), &RunInfo::default());
    assert_eq!(late.gc.alloc_count, 9);
    assert_eq!(
        late,
        agg.finish(&DecodeStats::default(), &RunInfo::default())
    );
}

#[test]
fn events_after_end_are_ignored_and_losses_are_reported() {
    let script = Script::new("after");
    let mut agg = Aggregator::new();
    let mut ev = run_events(&script.path);
    ev.insert(
        3,
        Event::Dropped {
            records: 5,
            frames: 1,
        },
    );
    ev.push(end());
    ev.push(alloc(3, 11, 1, 16));
    aggregate(&mut agg, ev);
    let stats = DecodeStats {
        crc_errors: 2,
        bad_frames: 3,
        lost_frames: 4,
        ..DecodeStats::default()
    };
    let p = agg.finish(&stats, &RunInfo::default());
    assert_eq!(p.gc.alloc_count, 9);
    let d = p.meta.dropped;
    assert_eq!(
        (
            d.records,
            d.frames,
            d.crc_errors,
            d.bad_frames,
            d.unknown_ids
        ),
        (5, 5, 2, 3, 0)
    );
}

#[test]
fn json_round_trip_of_an_aggregated_profile() {
    let script = Script::new("json");
    let mut agg = Aggregator::new();
    let mut ev = run_events(&script.path);
    ev.push(end());
    aggregate(&mut agg, ev);
    let p = agg.finish(
        &DecodeStats::default(),
        &RunInfo {
            script: script.path.clone(),
            embed_sources: true,
            ..RunInfo::default()
        },
    );
    let embedded = p.files[1].source.as_ref().expect("source embedded");
    assert_eq!(embedded.len(), 8);
    assert_eq!(p.source_line(1, 4), Some("        return [x]"));
    let mut bytes = Vec::new();
    p.to_json_writer(&mut bytes).expect("write");
    let back = Profile::from_json_reader(bytes.as_slice()).expect("read back");
    assert_eq!(back, p);
}

#[test]
fn compile_failures_are_told_from_the_traceback() {
    use mpprof::record::aggregate::compile_failure;
    let syntax = "out\nTraceback (most recent call last):\n  File \"a.py\", line 2\nSyntaxError: invalid syntax\n";
    assert_eq!(
        compile_failure(syntax).map(|f| f.0),
        Some(ExitReason::SyntaxError)
    );
    let memory = "MemoryError: memory allocation failed, allocating 136 bytes\n";
    assert_eq!(
        compile_failure(memory).map(|f| f.0),
        Some(ExitReason::MemoryError)
    );
    // Raised while running (a function's frame, or an imported module that
    // does not compile under the main script's frame): not the main script's
    // compile failure.
    for running in [
        "Traceback (most recent call last):\n  File \"a.py\", line 3, in <module>\nSyntaxError: invalid syntax\n",
        "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n  File \"b.py\", line 2\nSyntaxError: invalid syntax\n",
        "Traceback (most recent call last):\n  File \"a.py\", line 9, in f\nMemoryError: memory allocation failed\n",
        "Traceback (most recent call last):\n  File \"a.py\", line 9, in f\nValueError: x\n",
        "",
    ] {
        assert_eq!(compile_failure(running), None, "{running}");
    }
}
