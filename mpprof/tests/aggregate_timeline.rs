//! A long run's GC timeline and heap samples stay bounded, while counts and
//! totals stay exact: memory must not grow with the length of a run.

use mpprof::record::aggregate::{Aggregator, RunInfo};
use mpprof::wire::{DecodeStats, Event, GcRecord};

#[test]
fn timelines_are_bounded_and_totals_exact() {
    let mut agg = Aggregator::new();
    let n = 100_000u64;
    for i in 0..n {
        agg.event(Event::Gc(GcRecord {
            start: i * 100,
            duration: 7,
            blocks_freed: 3,
            used_bytes: 1000 + i,
            free_bytes: 5000,
            largest_free_bytes: 4000,
        }));
        agg.event(Event::Heap {
            at: i * 100 + 50,
            used_bytes: if i == 777 { 99_999 } else { 2000 },
        });
    }
    let p = agg.finish(&DecodeStats::default(), &RunInfo::default());
    assert_eq!(p.gc.count(), n);
    assert_eq!(p.gc.total_ticks, 7 * n);
    assert!(p.gc.collections.len() <= 8192, "{}", p.gc.collections.len());
    assert!(p.gc.heap_samples.len() <= 8192);
    // Merged entries keep the totals and the latest heap figures.
    assert_eq!(
        p.gc.collections.iter().map(|c| c.blocks_freed).sum::<u64>(),
        3 * n
    );
    assert_eq!(p.gc.collections.last().unwrap().used_after, 1000 + n - 1);
    assert_eq!(p.gc.collections[0].at, 0);
    // A peak survives the merging of heap samples.
    assert_eq!(p.gc.heap_samples.iter().map(|h| h.used).max(), Some(99_999));
}

#[test]
fn regions_and_marks_in_a_loop_stay_bounded_and_exact() {
    use mpprof::wire::{AllocKind, AllocSite};
    let mut agg = Aggregator::new();
    let n = 20_000u64;
    for i in 0..n {
        let at = i * 10;
        agg.event(Event::Mark {
            at,
            label: "tick".into(),
        });
        agg.event(Event::RegionBegin {
            at,
            label: "frame".into(),
        });
        agg.event(Event::Alloc(AllocSite {
            node_id: 0,
            offset: 0,
            type_id: 0,
            bytes: 4,
            kind: AllocKind::New,
        }));
        agg.event(Event::Counts {
            code_id: 1,
            counts: vec![(0, 3)],
        });
        agg.event(Event::RegionEnd {
            at: at + 7,
            label: "frame".into(),
        });
    }
    // A label first seen after the limit is still kept.
    agg.event(Event::Mark {
        at: n * 10,
        label: "late".into(),
    });
    let p = agg.finish(&DecodeStats::default(), &RunInfo::default());
    p.validate().unwrap();
    assert!(p.regions.len() <= 4096, "{}", p.regions.len());
    assert!(p.markers.len() <= 4097, "{}", p.markers.len());
    assert_eq!(p.markers.last().map(|m| m.label.as_str()), Some("late"));
    assert_eq!(p.markers.last().map(|m| m.allocs_before), Some(n));
    // Every entry is accounted for, once.
    assert_eq!(p.regions.iter().map(|r| r.entries).sum::<u64>(), n);
    assert_eq!(p.regions.iter().map(|r| r.alloc_count).sum::<u64>(), n);
    assert_eq!(p.regions.iter().map(|r| r.alloc_bytes).sum::<u64>(), 4 * n);
    assert_eq!(p.regions.iter().map(|r| r.opcodes).sum::<u64>(), 3 * n);
    assert_eq!(p.regions.iter().map(|r| r.inside_ticks).sum::<u64>(), 7 * n);
    // The folded record spans its first entry to its last.
    let last = p.regions.last().unwrap();
    assert_eq!(last.end, Some((n - 1) * 10 + 7));
    assert_eq!(last.entries, n - 4095);
}

#[test]
fn regions_whose_ends_are_lost_stay_bounded() {
    let mut agg = Aggregator::new();
    for i in 0..20_000u64 {
        agg.event(Event::RegionBegin {
            at: i,
            label: "lost end".into(),
        });
    }
    let p = agg.finish(&DecodeStats::default(), &RunInfo::default());
    assert!(p.regions.len() <= 4096, "{}", p.regions.len());
    assert_eq!(p.regions.iter().map(|r| r.entries).sum::<u64>(), 20_000);
    assert!(p.regions.iter().all(|r| r.end.is_none()));
}
