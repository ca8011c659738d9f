//! The wire decoder against streams built by the Rust encoder, with damage.

use mpprof::wire::encode::{frame, FrameWriter};
use mpprof::wire::*;
use proptest::prelude::*;

mod common;

fn sample_stream() -> (Vec<u8>, usize) {
    let mut w = FrameWriter::new();
    w.max_payload = 64;
    w.hello(&common::host_hello());
    w.code(&CodeInfo {
        kind: Default::default(),
        code_id: 1,
        name: "<module>".into(),
        file: "t.py".into(),
        bc_start: 6,
        line_info: vec![0x21, 0x41],
        bytecode: vec![0x11, 0x22, 0x33],
    });
    w.type_info(&TypeInfo {
        type_id: 1,
        flags: 0,
        name: "float".into(),
    });
    w.node(1, 0, 1);
    let site = AllocSite {
        node_id: 1,
        offset: 9,
        type_id: 1,
        bytes: 12,
        kind: AllocKind::New,
    };
    w.site(5, &site);
    for _ in 0..40 {
        w.repeat(5);
    }
    w.counts(1, &[(6, 100), (8, 50), (300, 1)]);
    w.node_stats(1, 3, 1234, 150);
    w.gc(&GcRecord {
        start: 10,
        duration: 5,
        blocks_freed: 7,
        used_bytes: 100,
        free_bytes: 900,
        largest_free_bytes: 800,
    });
    w.stamped(tag::MARK, 20, "m");
    w.stamped(tag::REGION_BEGIN, 21, "r");
    w.stamped(tag::REGION_END, 22, "r");
    w.alloc_fail(1, 9, 4096);
    w.heap(23, 1600);
    w.end(&EndRecord {
        at: 30,
        heap_bytes: 65536,
        peak_used_bytes: 2000,
        alloc_bytes: 492,
        alloc_count: 41,
        collections: 1,
        gc_ticks: 5,
        dropped_records: 0,
        reason: EndReason::Finished,
    });
    let expected_events = 1 + 1 + 1 + 1 + 41 + 1 + 1 + 1 + 3 + 1 + 1 + 1;
    (w.finish(), expected_events)
}

#[test]
fn every_record_kind_round_trips() {
    let (bytes, n) = sample_stream();
    let (events, stats) = decode_all(&bytes);
    assert_eq!(events.len(), n);
    assert_eq!(stats.crc_errors + stats.bad_frames + stats.lost_frames, 0);
    assert_eq!(stats.skipped_bytes, 0);
    let allocs = events
        .iter()
        .filter(|e| matches!(e, Event::Alloc(_)))
        .count();
    assert_eq!(allocs, 41);
    assert!(events.contains(&Event::Counts {
        code_id: 1,
        counts: vec![(6, 100), (8, 50), (300, 1)]
    }));
    assert!(
        matches!(events.last(), Some(Event::End(e)) if e.reason == EndReason::Finished && e.alloc_count == 41)
    );
    assert!(stats.frames > 1, "the small max_payload splits the stream");
}

#[test]
fn byte_by_byte_feeding_gives_the_same_events() {
    let (bytes, _) = sample_stream();
    let (all, _) = decode_all(&bytes);
    let mut d = Decoder::new();
    let mut events = Vec::new();
    for b in &bytes {
        d.feed(std::slice::from_ref(b), &mut |e| events.push(e));
    }
    assert_eq!(events, all);
    assert_eq!(d.finish(&mut |e| events.push(e)).truncated_tail_bytes, 0);
}

#[test]
fn crc_check_value() {
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}

#[test]
fn a_flipped_bit_costs_exactly_its_frame() {
    let a = frame(0, &[tag::HEAP, 1, 2]);
    let b = frame(1, &[tag::HEAP, 3, 4]);
    let c = frame(2, &[tag::HEAP, 5, 6]);
    let mut bytes = [a, b.clone(), c].concat();
    let a_len = bytes.len() - 2 * b.len();
    bytes[a_len + 8] ^= 0x10; // inside frame b's payload
    let (events, stats) = decode_all(&bytes);
    assert_eq!(stats.crc_errors, 1);
    assert_eq!(events.len(), 2);
    assert_eq!(
        stats.lost_frames, 1,
        "the sequence gap shows the lost frame"
    );
}

#[test]
fn text_between_frames_is_passed_on_and_counted() {
    let a = frame(0, &[tag::START, 7]);
    let mut bytes = b"hello\r\n".to_vec();
    bytes.extend_from_slice(&a);
    bytes.extend_from_slice(b">>> ");
    let mut d = Decoder::new();
    let mut text = Vec::new();
    let mut events = Vec::new();
    d.feed_with_text(&bytes, &mut |e| events.push(e), &mut |t| {
        text.extend_from_slice(t)
    });
    assert_eq!(events, vec![Event::Start { at: 7 }]);
    assert_eq!(text, b"hello\r\n>>> ");
    assert_eq!(d.stats().skipped_bytes, 11);
}

#[test]
fn sequence_wrap_is_not_a_loss_and_duplicates_are_dropped() {
    let a = frame(0xffff, &[tag::START, 1]);
    let b = frame(0, &[tag::START, 2]);
    let bytes = [a.clone(), a, b].concat();
    let (events, stats) = decode_all(&bytes);
    assert_eq!(events, vec![Event::Start { at: 1 }, Event::Start { at: 2 }]);
    assert_eq!(stats.lost_frames, 0);
    assert_eq!(stats.duplicate_frames, 1);
}

#[test]
fn truncated_tail_and_bad_lengths() {
    let a = frame(0, &[tag::START, 1]);
    let b = frame(1, &[tag::START, 2]);
    let mut bytes = [a, b.clone()].concat();
    bytes.truncate(bytes.len() - 3);
    let (events, stats) = decode_all(&bytes);
    assert_eq!(events.len(), 1);
    assert_eq!(stats.truncated_tail_bytes, b.len() as u64 - 3);

    // A record whose string length runs past the frame: a bad frame, no allocation.
    let mut w = FrameWriter::new();
    w.raw(&[tag::MARK, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    let (events, stats) = decode_all(&w.finish());
    assert!(events.is_empty());
    assert_eq!(stats.bad_frames, 1);

    // A repeat of a slot never defined is counted, not invented.
    let (events, stats) = decode_all(&frame(0, &[tag::ALLOC_REPEAT | 3]));
    assert!(events.is_empty());
    assert_eq!(stats.repeat_without_site, 1);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let (_, stats) = decode_all(&bytes);
        prop_assert_eq!(stats.bytes, bytes.len() as u64);
    }

    #[test]
    fn intact_frames_survive_garbage_and_corruption(
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
        flip in 0usize..1000,
    ) {
        let (clean, _) = sample_stream();
        let (expected, _) = decode_all(&clean);
        // Garbage before the stream: every event still decodes.
        let mut bytes = garbage.clone();
        bytes.extend_from_slice(&clean);
        let (events, _) = decode_all(&bytes);
        prop_assert_eq!(&events[events.len() - expected.len()..], &expected[..]);
        // One flipped bit: at most the frame that holds it is lost, and it is counted.
        let mut damaged = clean.clone();
        let i = flip % damaged.len();
        damaged[i] ^= 1;
        let (events, stats) = decode_all(&damaged);
        prop_assert!(events.len() < expected.len() || events == expected);
        if events.len() < expected.len() {
            // A damaged sync byte hides the frame (its bytes are skipped); any
            // other damage fails its CRC. Either way the loss is counted.
            prop_assert!(
                stats.crc_errors + stats.bad_frames + stats.skipped_bytes + stats.truncated_tail_bytes >= 1
            );
        }
    }
}

proptest! {
    /// Frames with valid CRCs but arbitrary records (a buggy or hostile
    /// target): the aggregator never panics and its profile is consistent.
    #[test]
    fn arbitrary_records_make_a_valid_profile(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..200), 0..40),
    ) {
        let mut bytes = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            bytes.extend_from_slice(&frame(i as u16, p));
        }
        let p = mpprof::record::aggregate::profile_from_stream(&bytes, &mpprof::record::aggregate::RunInfo::default());
        prop_assert!(p.validate().is_ok());
    }
}

/// A stream describing one function whose line table and bytecode are
/// `split` bytes long in the CODE record, the rest in CODE_MORE pieces of
/// `piece` bytes, with counts on every opcode.
fn long_code_stream(split: usize, piece: usize) -> Vec<u8> {
    let line_info: Vec<u8> = std::iter::once(0x21).chain([0x22; 599]).collect();
    let bytecode: Vec<u8> = (0..1200u32).map(|i| [0x51, 0x63][i as usize % 2]).collect();
    let mut w = FrameWriter::new();
    w.max_payload = 256;
    w.code(&CodeInfo {
        kind: Default::default(),
        code_id: 1,
        name: "big".into(),
        file: "t.py".into(),
        bc_start: 4,
        line_info: line_info[..split.min(line_info.len())].to_vec(),
        bytecode: bytecode[..split.min(bytecode.len())].to_vec(),
    });
    for (part, data) in [
        (CodePart::LineInfo, &line_info),
        (CodePart::Bytecode, &bytecode),
    ] {
        let mut at = split.min(data.len());
        while piece > 0 && at < data.len() {
            let end = (at + piece).min(data.len());
            w.code_more(1, part, at as u32, data.len() as u32, &data[at..end]);
            at = end;
        }
    }
    let counts: Vec<(u32, u64)> = (0..1200u32).map(|i| (4 + i, 2)).collect();
    for chunk in counts.chunks(40) {
        w.counts(1, chunk);
    }
    w.finish()
}

#[test]
fn code_more_records_complete_a_long_description() {
    let (events, stats) = decode_all(&long_code_stream(100, 200));
    assert_eq!(stats.bad_frames, 0);
    let pieces: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::CodeMore {
                part,
                offset,
                total,
                data,
                ..
            } => Some((*part, *offset, *total, data.len())),
            _ => None,
        })
        .collect();
    assert_eq!(pieces[0], (CodePart::LineInfo, 100, 600, 200));
    assert_eq!(pieces.len(), 3 + 6);
    // The profile of the split stream is that of the whole description,
    // and every opcode is named.
    let run = mpprof::record::aggregate::RunInfo::for_stream("t.py");
    let whole = mpprof::record::ingest::profile_from_stream(&long_code_stream(5000, 1), &run);
    let split = mpprof::record::ingest::profile_from_stream(&long_code_stream(100, 200), &run);
    assert_eq!(split.lines, whole.lines);
    assert_eq!(split.opcode_mix, whole.opcode_mix);
    assert!(split
        .opcode_mix
        .iter()
        .all(|o| o.opcode != mpprof_profile::UNKNOWN_OPCODE));
    split.validate().unwrap();
    // Without its pieces (a decoder that skipped them, or lost frames) the
    // description is truncated: the opcodes past it are counted, unnamed.
    let cut = mpprof::record::ingest::profile_from_stream(&long_code_stream(100, 0), &run);
    cut.validate().unwrap();
    let unknown = cut
        .opcode_mix
        .iter()
        .find(|o| o.opcode == mpprof_profile::UNKNOWN_OPCODE)
        .map(|o| o.count);
    assert_eq!(unknown, Some(2 * 1100));
}

/// Line-time records (LINE_CLOCK, LINE_TIME with signed values, LINE_SAMPLES)
/// decode as sent and give lines their times; a stream without them leaves
/// every line's time unknown.
#[test]
fn line_time_records_round_trip_into_line_times() {
    let stream = |line_time: bool| {
        let mut w = FrameWriter::new();
        w.hello(&common::host_hello());
        w.code(&CodeInfo {
            kind: Default::default(),
            code_id: 1,
            name: "<module>".into(),
            file: "t.py".into(),
            bc_start: 6,
            line_info: vec![0x21, 0x41],
            bytecode: vec![0x11, 0x22, 0x33],
        });
        w.node(1, 0, 1);
        w.counts(1, &[(6, 2), (7, 1)]);
        if line_time {
            w.line_clock(LineClock::Sampled {
                period_ns: 1_000_000,
            });
            w.line_time(
                1,
                &[
                    LineSlot {
                        offset: 6,
                        incl: 5,
                        excl: 3,
                    },
                    LineSlot {
                        offset: 7,
                        incl: -1,
                        excl: -1,
                    },
                    LineSlot {
                        offset: 7,
                        incl: 3,
                        excl: 3,
                    },
                ],
            );
            w.line_samples(9, 1);
        }
        w.node_stats(1, 1, 8_000_000, 3);
        w.end(&EndRecord {
            at: 8_000_000,
            heap_bytes: 65536,
            peak_used_bytes: 0,
            alloc_bytes: 0,
            alloc_count: 0,
            collections: 0,
            gc_ticks: 0,
            dropped_records: 0,
            reason: EndReason::Finished,
        });
        w.finish()
    };
    let (events, stats) = decode_all(&stream(true));
    assert_eq!(stats.bad_frames, 0);
    assert!(events.contains(&Event::LineClock(LineClock::Sampled {
        period_ns: 1_000_000
    })));
    assert!(events.iter().any(|e| matches!(e,
        Event::LineTime { code_id: 1, slots } if slots.len() == 3 && slots[1].incl == -1 && slots[2].offset == 7)));
    assert!(events.contains(&Event::LineSamples {
        taken: 9,
        outside: 1
    }));
    assert_eq!(unzigzag(zigzag(-123_456_789)), -123_456_789);

    let run = mpprof::record::aggregate::RunInfo::default();
    let p = mpprof::record::ingest::profile_from_stream(&stream(true), &run);
    let lt = p.meta.line_time.expect("line time is on");
    assert!(lt.is_sampled() && lt.samples == 9 && lt.samples_outside == 1);
    // Samples stand for the duration over the samples taken.
    let per_sample = 8_000_000 / 9;
    let timed: Vec<_> = p
        .lines
        .iter()
        .filter(|l| l.excl_samples.is_some())
        .collect();
    let samples: u64 = timed.iter().map(|l| l.excl_samples.unwrap()).sum();
    assert_eq!(samples, 3 + 2);
    let ticks: u64 = timed.iter().map(|l| l.excl_ticks.unwrap()).sum();
    assert_eq!(ticks, 5 * per_sample);

    let p = mpprof::record::ingest::profile_from_stream(&stream(false), &run);
    assert!(p.meta.line_time.is_none());
    assert!(p
        .lines
        .iter()
        .all(|l| l.excl_ticks.is_none() && l.incl_ticks.is_none()));
}

#[test]
fn a_frozen_import_record_decodes_to_its_site_and_file() {
    let mut w = FrameWriter::new();
    w.frozen_import(3, 12, "asyncio/__init__.py");
    let (events, stats) = decode_all(&w.finish());
    assert_eq!(stats.bad_frames, 0);
    assert!(events.contains(&Event::FrozenImport {
        node_id: 3,
        offset: 12,
        file: "asyncio/__init__.py".into(),
    }));
}

#[test]
fn wide_repeats_count_at_slots_past_the_one_byte_range() {
    let mut w = FrameWriter::new();
    w.hello(&common::host_hello());
    let site = |offset| AllocSite {
        node_id: 0,
        offset,
        type_id: 0,
        bytes: 16,
        kind: AllocKind::New,
    };
    // 127: the last one-byte repeat; 128 the first wide one, 255 the last.
    for (slot, offset) in [(127u16, 1u32), (128, 2), (255, 3)] {
        w.site(slot, &site(offset));
        for _ in 0..3 {
            w.repeat(slot);
        }
    }
    let bytes = w.finish();
    let (events, stats) = decode_all(&bytes);
    assert_eq!(
        stats.crc_errors + stats.bad_frames + stats.repeat_without_site,
        0
    );
    for offset in 1..=3 {
        let n = events
            .iter()
            .filter(|e| matches!(e, Event::Alloc(a) if a.offset == offset))
            .count();
        assert_eq!(n, 4, "site at offset {offset}: its SITE and three repeats");
    }
    assert_eq!(stats.alloc_events, 12);
    // A wide repeat is two bytes: its tag and the slot less 128.
    assert!(bytes.windows(2).any(|x| x == [tag::ALLOC_REPEAT_WIDE, 127]));
}

#[test]
fn a_repeat_past_the_site_cache_is_a_bad_frame() {
    let mut w = FrameWriter::new();
    w.hello(&common::host_hello());
    w.repeat(256);
    let (_, stats) = decode_all(&w.finish());
    assert_eq!(stats.bad_frames, 1);
}
