//! A long run's GC timeline and heap samples stay bounded, while counts and
//! totals stay exact: memory must not grow with the length of a run.

use mpprof::aggregate::{Aggregator, RunInfo};
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
