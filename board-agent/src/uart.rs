//! The framed-UART transport, host side: a board without a debug probe sends
//! its wire frames on the REPL link, each in an envelope (see
//! `vm-instrumented/runtime/mpprof_uart.h`): 0xFE, the frame with 0xFD, 0xFE
//! and 0xFF escaped as 0xFD then the byte XOR 0x20, then 0xFF. None of those
//! bytes occurs in UTF-8 text, so text and frames separate exactly; the frames'
//! own CRC and sequence numbers then tell the decoder what a noisy link lost.

use std::io::{Read, Write};
use std::sync::mpsc::Sender;

pub const START: u8 = 0xFE;
pub const END: u8 = 0xFF;
pub const ESCAPE: u8 = 0xFD;

/// The longest envelope a valid frame makes (every byte escaped), plus slack.
/// An envelope that runs longer was not a frame (a stray 0xFE in binary
/// output, or a lost END byte): it is given up and counted.
pub const MAX_ENVELOPE: usize = 2 * (7 + 16384 + 4) + 16;

/// Wrap one wire frame in an envelope, as the board does.
pub fn envelope(frame: &[u8], out: &mut Vec<u8>) {
    out.push(START);
    for &b in frame {
        if b >= ESCAPE {
            out.push(ESCAPE);
            out.push(b ^ 0x20);
        } else {
            out.push(b);
        }
    }
    out.push(END);
}

/// What the demultiplexer saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Complete envelopes.
    pub envelopes: u64,
    /// Envelopes cut short by a new START, or given up as over-long; their
    /// bytes still go to the decoder, which counts the damage.
    pub broken_envelopes: u64,
    pub text_bytes: u64,
}

/// Splits a byte stream from the board into REPL text and frame bytes.
/// Streaming: bytes may arrive split anywhere.
#[derive(Debug, Default)]
pub struct Demux {
    in_frame: bool,
    escaped: bool,
    envelope_len: usize,
    stats: DemuxStats,
}

impl Demux {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// Sort `bytes`: text is appended to `text`, unescaped frame bytes to
    /// `frames` (a byte stream for the wire decoder, which finds the frames'
    /// sync words and checks their CRC).
    pub fn push(&mut self, bytes: &[u8], text: &mut Vec<u8>, frames: &mut Vec<u8>) {
        for &b in bytes {
            if !self.in_frame {
                if b == START {
                    self.open();
                } else {
                    text.push(b);
                    self.stats.text_bytes += 1;
                }
                continue;
            }
            match b {
                START => {
                    // The previous envelope lost its END.
                    self.stats.broken_envelopes += 1;
                    self.open();
                }
                END => {
                    self.in_frame = false;
                    if self.escaped {
                        self.stats.broken_envelopes += 1;
                    } else {
                        self.stats.envelopes += 1;
                    }
                }
                ESCAPE => self.escaped = true,
                _ => {
                    let v = if std::mem::take(&mut self.escaped) {
                        b ^ 0x20
                    } else {
                        b
                    };
                    frames.push(v);
                    self.envelope_len += 1;
                    if self.envelope_len > MAX_ENVELOPE {
                        self.stats.broken_envelopes += 1;
                        self.in_frame = false;
                    }
                }
            }
        }
    }

    fn open(&mut self) {
        self.in_frame = true;
        self.escaped = false;
        self.envelope_len = 0;
    }
}

/// A serial link seen through the demultiplexer: reads return only the
/// REPL's text (what the raw REPL client parses); frame bytes go to `frames`
/// as they arrive. Writes pass straight through.
pub struct DemuxLink<L> {
    link: L,
    demux: Demux,
    text: Vec<u8>,
    text_pos: usize,
    frames: Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl<L: Read + Write> DemuxLink<L> {
    pub fn new(link: L, frames: Sender<Vec<u8>>) -> Self {
        Self {
            link,
            demux: Demux::new(),
            text: Vec::new(),
            text_pos: 0,
            frames,
            buf: vec![0u8; 4096],
        }
    }

    pub fn inner(&self) -> &L {
        &self.link
    }

    pub fn into_inner(self) -> L {
        self.link
    }

    /// Send the frame bytes somewhere else from now on.
    pub fn set_frames(&mut self, frames: Sender<Vec<u8>>) {
        self.frames = frames;
    }
}

impl<L: Read + Write> Read for DemuxLink<L> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        // Read until there is text to give, so a run of frames does not look
        // like an idle link to the caller; the link's own timeout still ends
        // the wait.
        while self.text_pos == self.text.len() {
            self.text.clear();
            self.text_pos = 0;
            let n = self.link.read(&mut self.buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut frames = Vec::new();
            self.demux.push(&self.buf[..n], &mut self.text, &mut frames);
            if !frames.is_empty() {
                // The receiver gone means nobody wants the profile any more;
                // the REPL still needs its text.
                let _ = self.frames.send(frames);
            }
        }
        let n = out.len().min(self.text.len() - self.text_pos);
        out[..n].copy_from_slice(&self.text[self.text_pos..self.text_pos + n]);
        self.text_pos += n;
        Ok(n)
    }
}

impl<L: Read + Write> Write for DemuxLink<L> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.link.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.link.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(bytes: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<u8>, DemuxStats) {
        let mut d = Demux::new();
        let (mut text, mut frames) = (Vec::new(), Vec::new());
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let c = c.clamp(at, bytes.len());
            d.push(&bytes[at..c], &mut text, &mut frames);
            at = c;
        }
        (text, frames, d.stats())
    }

    #[test]
    fn text_and_frames_separate_wherever_the_bytes_are_split() {
        let frame: Vec<u8> = (0..=255u8).chain([0xfd, 0xfe, 0xff, 0x04]).collect();
        let mut link = b"OKhello \xc2\xa7\r\n".to_vec();
        envelope(&frame, &mut link);
        link.extend_from_slice("wörld\x04\x04>".as_bytes());
        envelope(&frame[..10], &mut link);
        for cut in 0..link.len() {
            let (text, frames, stats) = split(&link, &[cut, cut + 3]);
            assert_eq!(text, "OKhello §\r\nwörld\x04\x04>".as_bytes());
            let mut want = frame.clone();
            want.extend_from_slice(&frame[..10]);
            assert_eq!(frames, want);
            assert_eq!(stats.envelopes, 2);
            assert_eq!(stats.broken_envelopes, 0);
        }
    }

    #[test]
    fn a_lost_end_byte_is_counted_and_the_next_envelope_still_opens() {
        let mut link = Vec::new();
        envelope(b"abc", &mut link);
        link.pop(); // END lost
        envelope(b"def", &mut link);
        link.extend_from_slice(b"text");
        let (text, frames, stats) = split(&link, &[]);
        assert_eq!(text, b"text");
        assert_eq!(frames, b"abcdef");
        assert_eq!(stats.envelopes, 1);
        assert_eq!(stats.broken_envelopes, 1);
    }

    #[test]
    fn an_endless_envelope_gives_way_to_text() {
        let mut link = vec![START];
        link.extend(std::iter::repeat_n(b'x', MAX_ENVELOPE + 5));
        let (text, frames, stats) = split(&link, &[]);
        assert_eq!(frames.len(), MAX_ENVELOPE + 1);
        assert_eq!(text.len(), 4);
        assert_eq!(stats.broken_envelopes, 1);
    }

    #[test]
    fn the_link_gives_text_and_forwards_frames() {
        struct Canned(std::collections::VecDeque<Vec<u8>>);
        impl Read for Canned {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                match self.0.pop_front() {
                    Some(c) => {
                        out[..c.len()].copy_from_slice(&c);
                        Ok(c.len())
                    }
                    None => Ok(0),
                }
            }
        }
        impl Write for Canned {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut env = Vec::new();
        envelope(b"frame-one", &mut env);
        let chunks = vec![env.clone(), env.clone(), b"ab".to_vec()];
        let (tx, rx) = std::sync::mpsc::channel();
        let mut link = DemuxLink::new(Canned(chunks.into()), tx);
        let mut out = [0u8; 1];
        // Two all-frame reads are passed over: the first read gives text.
        assert_eq!(link.read(&mut out).unwrap(), 1);
        assert_eq!(&out, b"a");
        assert_eq!(link.read(&mut out).unwrap(), 1);
        assert_eq!(&out, b"b");
        assert_eq!(link.read(&mut out).unwrap(), 0);
        let got: Vec<u8> = rx.try_iter().flatten().collect();
        assert_eq!(got, b"frame-oneframe-one");
    }
}
