//! Faults with exact expectations: a target that cannot send drops whole
//! frames and says exactly how many records it dropped; a damaged or cut
//! stream loses only what was damaged, and says so.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use mpprof::record::aggregate::{Aggregator, RunInfo};
use mpprof::wire::encode::frame;
use mpprof::wire::{decode_all, tag, Decoder, Event};

fn micropython() -> std::path::PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .arg("build")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().into()
}

#[test]
fn a_target_that_cannot_send_counts_every_dropped_record() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("flood.py");
    // Many allocations quickly (the pipe fills while nobody reads), then a
    // pause so the reader catches up before the END record.
    std::fs::write(
        &script,
        "import time\ndef flood(n):\n    x = 0.0\n    for i in range(n):\n        x = x + 0.5\n    return x\nflood(300000)\ntime.sleep_ms(1500)\nflood(10)\n",
    )
    .unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    let writer: OwnedFd = writer.into();
    let wfd = writer.as_raw_fd();
    let mut cmd = Command::new(micropython());
    cmd.arg(&script)
        .env("MPPROF_FD", "3")
        .env("MPPROF_NONBLOCK", "1")
        .stdout(Stdio::null());
    // SAFETY: dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(wfd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(writer);
    // Let the pipe fill up: the target must drop, not stall.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let mut bytes = Vec::new();
    let mut reader = reader;
    reader.read_to_end(&mut bytes).unwrap();
    assert!(child.wait().unwrap().success());

    let (events, stats) = decode_all(&bytes);
    let (mut dropped_records, mut dropped_frames) = (0u64, 0u64);
    let mut end = None;
    for e in &events {
        match e {
            Event::Dropped { records, frames } => {
                dropped_records += records;
                dropped_frames += frames;
            }
            Event::End(x) => end = Some(*x),
            _ => {}
        }
    }
    let end = end.expect("the END record arrived after the pause");
    assert!(
        dropped_frames > 0,
        "the full pipe made the target drop frames"
    );
    // Two independent counts agree exactly: the target's DROPPED reports and
    // its final total; and the frames it says it dropped are exactly the gaps
    // in the sequence numbers the host saw.
    assert_eq!(dropped_records, end.dropped_records);
    assert_eq!(dropped_frames, stats.lost_frames);
    assert_eq!(
        stats.crc_errors + stats.bad_frames,
        0,
        "no frame was cut in half"
    );
    // The profile reports the loss.
    let mut agg = Aggregator::new();
    for e in events {
        agg.event(e);
    }
    let p = agg.finish(&stats, &RunInfo::default());
    assert_eq!(p.meta.dropped.records, end.dropped_records);
    assert!(p.meta.dropped.total() > 0);
}

#[test]
fn duplicated_reordered_and_wrapped_frames() {
    let f = |seq: u16, at: u8| frame(seq, &[tag::START, at]);
    // 0xfffe, 0xffff, 0 (wrap), a duplicate of 0, then 2 before 1 (reordered).
    let bytes = [
        f(0xfffe, 1),
        f(0xffff, 2),
        f(0, 3),
        f(0, 3),
        f(2, 5),
        f(1, 4),
    ]
    .concat();
    let (events, stats) = decode_all(&bytes);
    let ats: Vec<u64> = events
        .iter()
        .map(|e| match e {
            Event::Start { at } => *at,
            _ => 0,
        })
        .collect();
    // Every distinct frame is decoded once, in arrival order.
    assert_eq!(ats, vec![1, 2, 3, 5, 4]);
    assert_eq!(stats.duplicate_frames, 1);
    // 0 -> 2 skips one frame; 2 -> 1 is a step back, not 65,534 losses.
    assert_eq!(stats.lost_frames, 1);
}

#[test]
fn bytes_split_anywhere_decode_the_same() {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/streams/markers.host.bin"),
    )
    .unwrap();
    let (all, _) = decode_all(&bytes);
    for chunk in [1usize, 2, 3, 7, 64, 1000] {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for c in bytes.chunks(chunk) {
            d.feed(c, &mut |e| got.push(e));
        }
        d.finish(&mut |e| got.push(e));
        assert_eq!(got, all, "chunks of {chunk}");
    }
}
