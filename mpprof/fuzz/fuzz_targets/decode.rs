//! Any bytes, in any chunking, through the decoder and the aggregator: no
//! panic, no unbounded allocation, and the same events whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mpprof::record::aggregate::{Aggregator, RunInfo};
use mpprof::wire::{decode_all, Decoder};

fuzz_target!(|data: &[u8]| {
    let (whole, _) = decode_all(data);
    let split = data.first().map_or(1, |b| (*b as usize % 17) + 1);
    let mut d = Decoder::new();
    let mut agg = Aggregator::new();
    let mut n = 0;
    for chunk in data.chunks(split) {
        d.feed(chunk, &mut |e| {
            n += 1;
            agg.event(e)
        });
    }
    let stats = *d.finish(&mut |e| {
        n += 1;
        agg.event(e)
    });
    assert_eq!(n, whole.len());
    let p = agg.finish(&stats, &RunInfo::default());
    assert!(p.validate().is_ok());
});
