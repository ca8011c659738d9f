//! The one ingest loop: stream bytes in any chunking → the wire decoder →
//! the aggregator. Every command that turns a stream into a profile (`run`
//! on any target, the live view, `check`, `decode`, the benchmark) goes
//! through [`Ingest`]; [`read_to_end`] is the loop over a reader.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use mpprof_profile::Profile;

use crate::record::aggregate::{Aggregator, RunInfo};
use crate::wire::{DecodeStats, Decoder};

/// A stream being decoded and aggregated.
pub struct Ingest {
    decoder: Decoder,
    aggregator: Aggregator,
    /// Events decoded so far.
    events: u64,
    /// The raw stream is copied here as it comes (`--save-stream`).
    save: Option<Box<dyn Write + Send>>,
    ended: bool,
}

impl Default for Ingest {
    fn default() -> Self {
        Self::new()
    }
}

impl Ingest {
    pub fn new() -> Self {
        Self::with_aggregator(Aggregator::new())
    }

    pub fn with_aggregator(aggregator: Aggregator) -> Self {
        Self {
            decoder: Decoder::new(),
            aggregator,
            events: 0,
            save: None,
            ended: false,
        }
    }

    /// Also copy the raw bytes to `save`.
    pub fn saving_to(mut self, save: Option<Box<dyn Write + Send>>) -> Self {
        self.save = save;
        self
    }

    /// The next bytes of the stream, cut anywhere.
    pub fn feed(&mut self, bytes: &[u8]) {
        if let Some(s) = self.save.as_mut() {
            // The profile matters more than its copy: a full disk only
            // loses the copy.
            if s.write_all(bytes).is_err() {
                self.save = None;
            }
        }
        let (agg, events) = (&mut self.aggregator, &mut self.events);
        self.decoder.feed(bytes, &mut |e| {
            *events += 1;
            agg.event(e)
        });
    }

    /// The stream has ended: decode what is left.
    pub fn finish(&mut self) {
        if self.ended {
            return;
        }
        let (agg, events) = (&mut self.aggregator, &mut self.events);
        self.decoder.finish(&mut |e| {
            *events += 1;
            agg.event(e)
        });
        if let Some(s) = self.save.as_mut() {
            let _ = s.flush();
        }
        self.ended = true;
    }

    /// The stream has ended (its end was read, or its END record came).
    pub fn ended(&self) -> bool {
        self.ended || self.aggregator.ended()
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn stats(&self) -> &DecodeStats {
        self.decoder.stats()
    }

    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    /// The profile so far; ingestion can go on (the live view).
    pub fn snapshot(&self, run: &RunInfo) -> Profile {
        self.aggregator.snapshot(self.decoder.stats(), run)
    }

    /// The profile of the whole stream.
    pub fn into_profile(mut self, run: &RunInfo) -> Profile {
        self.finish();
        let stats = *self.decoder.stats();
        self.aggregator.finish(&stats, run)
    }
}

/// Read `stream` to its end into `ingest`, a chunk at a time; the lock is
/// held only while a chunk is fed, so a viewer can take snapshots between
/// chunks and ingestion never waits for the display. `follow`: at the end of
/// the file, wait for more (a file still being written) until the stream's
/// END record comes; stop reading once the flag is set.
pub fn read_to_end(stream: &mut dyn Read, ingest: &Mutex<Ingest>, follow: Option<&AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => match follow {
                Some(stop)
                    if !stop.load(Ordering::SeqCst) && ingest.lock().is_ok_and(|i| !i.ended()) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                }
                _ => break,
            },
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        match ingest.lock() {
            Ok(mut i) => i.feed(&buf[..n]),
            Err(_) => return,
        }
        if follow.is_some_and(|stop| stop.load(Ordering::SeqCst)) {
            return;
        }
    }
    if let Ok(mut i) = ingest.lock() {
        i.finish();
    }
}

/// Decode and aggregate a whole recorded stream.
pub fn profile_from_stream(bytes: &[u8], run: &RunInfo) -> Profile {
    let mut ingest = Ingest::new();
    ingest.feed(bytes);
    ingest.into_profile(run)
}
