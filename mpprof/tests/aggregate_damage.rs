//! What a damaged stream can produce: records lost before the ones that
//! name them, events before HELLO, parents described late or in a cycle,
//! recursion. The profile stays consistent and says what it could not place.

use mpprof::record::aggregate::{Aggregator, RunInfo};
use mpprof::wire::{AllocKind, AllocSite, CodeInfo, DecodeStats, Event, TypeInfo};
use mpprof_profile::{Profile, Region};

fn code(code_id: u32, name: &str, line_info: &[u8]) -> Event {
    Event::Code(CodeInfo {
        kind: Default::default(),
        code_id,
        name: name.into(),
        file: "/nonexistent/mpprof-test/app.py".into(),
        bc_start: 4,
        line_info: line_info.to_vec(),
        bytecode: vec![0x11; 16],
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

fn stats(node_id: u32, calls: u64, ticks: u64) -> Event {
    Event::NodeStats {
        node_id,
        calls,
        ticks,
        opcodes: 1,
    }
}

fn profile(events: Vec<Event>) -> Profile {
    let mut agg = Aggregator::new();
    for e in events {
        agg.event(e);
    }
    let p = agg.finish(&DecodeStats::default(), &RunInfo::default());
    p.validate()
        .expect("a damaged stream still gives a consistent profile");
    p
}

#[test]
fn unknown_ids_are_counted_and_kept_under_unknown() {
    let p = profile(vec![
        // Before any HELLO: taken as they come.
        code(1, "main", &[0x60]),
        node(1, 0, 1),
        Event::Type(TypeInfo {
            type_id: 2,
            flags: 0,
            name: "float".into(),
        }),
        // A node whose code and parent were never described (2 ids).
        node(5, 77, 42),
        // Stats for a node never described (1).
        stats(8, 2, 70),
        // Opcodes of a code never described (1).
        Event::Counts {
            code_id: 9,
            counts: vec![(4, 10), (6, 5)],
        },
        // Allocations at a node never described (3) and of a type never
        // described (1).
        alloc(7, 6, 2, 16),
        alloc(7, 6, 2, 16),
        alloc(7, 6, 2, 16),
        alloc(1, 4, 55, 24),
        // A failure at a node never described (1).
        Event::AllocFail {
            node_id: 7,
            offset: 6,
            bytes: 4000,
        },
        Event::AllocFail {
            node_id: 7,
            offset: 6,
            bytes: 9000,
        },
        stats(1, 1, 500),
        stats(5, 3, 30),
    ]);
    // 2 + 1 + 1 + 3 + 1 + 2 failures.
    assert_eq!(p.meta.dropped.unknown_ids, 10);
    assert!(p.meta.partial);
    assert_eq!(p.meta.target, "");

    let unknown = p.find_functions("<unknown>");
    assert_eq!(unknown.len(), 1);
    let u = &p.functions[unknown[0]];
    // Nodes 5 and 8, and the node only allocations named (7).
    assert_eq!((u.calls, u.incl_ticks, u.opcodes), (5, 100, 15));
    assert_eq!((u.alloc_count, u.alloc_bytes), (3, 48));
    let roots: Vec<usize> = p
        .call_tree
        .iter()
        .filter(|n| n.parent.is_none())
        .map(|n| n.function)
        .collect();
    // main, then node 5, 8 (stream order), then 7.
    let main = p.find_functions("main")[0];
    assert_eq!(roots, [main, unknown[0], unknown[0], unknown[0]]);

    // The known node's allocation of an unknown type is still placed.
    let main_site = p
        .alloc_sites
        .iter()
        .find(|s| s.function == main)
        .expect("main's site");
    assert_eq!((main_site.line, main_site.type_name.as_deref()), (4, None));
    assert_eq!(p.gc.failures.len(), 1);
    let f = &p.gc.failures[0];
    assert_eq!(
        (f.function, f.line, f.bytes, f.count),
        (unknown[0], 0, 9000, 2)
    );
}

#[test]
fn parents_described_late_or_in_a_cycle_keep_a_tree() {
    let p = profile(vec![
        code(1, "a", &[]),
        // Node 4's parent 5 is described after it.
        node(4, 5, 1),
        node(5, 0, 1),
        // 2 and 3 name each other.
        node(2, 3, 1),
        node(3, 2, 1),
        // A node naming itself.
        node(6, 6, 1),
        stats(4, 1, 10),
        stats(5, 1, 40),
    ]);
    let parents: Vec<Option<usize>> = p.call_tree.iter().map(|n| n.parent).collect();
    // 5 is added before 4 and is its parent; the cycle is cut at the node
    // met again; 6 is a root.
    assert_eq!(parents, [None, Some(0), None, Some(2), None]);
    assert_eq!(p.call_tree[0].incl_ticks, 40);
    assert_eq!(p.call_tree[0].excl_ticks, 30);
}

#[test]
fn recursion_counts_inclusive_time_once() {
    let p = profile(vec![
        code(1, "fib", &[0x20]),
        node(1, 0, 1),
        node(2, 1, 1),
        node(3, 2, 1),
        stats(3, 4, 20),
        stats(2, 2, 60),
        stats(1, 1, 100),
    ]);
    let excl: Vec<u64> = p.call_tree.iter().map(|n| n.excl_ticks).collect();
    assert_eq!(excl, [40, 40, 20]);
    let f = &p.functions[p.find_functions("fib")[0]];
    assert_eq!((f.calls, f.incl_ticks, f.excl_ticks), (7, 100, 100));
}

#[test]
fn unmatched_and_lost_region_records() {
    let p = profile(vec![
        Event::RegionEnd {
            at: 5,
            label: "never opened".into(),
        },
        Event::RegionBegin {
            at: 10,
            label: "outer".into(),
        },
        Event::RegionBegin {
            at: 20,
            label: "inner".into(),
        },
        // Closing "outer" first leaves "inner" open.
        Event::RegionEnd {
            at: 30,
            label: "outer".into(),
        },
        alloc(0, 0, 0, 8),
    ]);
    assert_eq!(
        p.regions,
        [
            Region {
                label: "outer".into(),
                start: 10,
                end: Some(30),
                entries: 1,
                inside_ticks: 20,
                ..Region::default()
            },
            Region {
                label: "inner".into(),
                start: 20,
                end: None,
                entries: 1,
                inside_ticks: 0,
                alloc_count: 1,
                alloc_bytes: 8,
                opcodes: 0,
            },
        ]
    );
    assert_eq!(p.meta.duration_ticks, 30);
}

#[test]
fn huge_values_saturate_instead_of_overflowing() {
    let p = profile(vec![
        code(1, "f", &[]),
        node(1, 0, 1),
        alloc(1, 4, 0, u64::MAX),
        alloc(1, 4, 0, u64::MAX),
        stats(1, u64::MAX, u64::MAX),
        stats(1, 1, 1),
        Event::Counts {
            code_id: 1,
            counts: vec![(4, u64::MAX), (5, u64::MAX)],
        },
    ]);
    assert_eq!(p.gc.alloc_bytes, u64::MAX);
    assert_eq!(p.call_tree[0].incl_ticks, u64::MAX);
    assert_eq!(p.total_opcodes(), u64::MAX);
}
