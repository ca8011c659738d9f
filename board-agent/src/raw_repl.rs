//! MicroPython's raw REPL, over any byte link (a qemu pseudo-terminal, a
//! board's USB-CDC or UART): Ctrl-A enters it, the source is sent and run
//! with Ctrl-D, and the board answers `OK`, the script's output, 0x04, its
//! error output, 0x04, and the `>` prompt.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("serial link: {0}")]
    Io(#[from] std::io::Error),
    #[error("the board did not answer {expected:?} within {waited:?} (last output: {tail:?}): is MicroPython running on it, and not busy?")]
    Timeout {
        expected: String,
        waited: Duration,
        tail: String,
    },
    #[error("the board refused the script: {0}")]
    Refused(String),
    #[error("the board did not stop within {0:?} of Ctrl-C (the qemu port, and a script busy in C code, cannot see Ctrl-C while it runs)")]
    DidNotStop(Duration),
}

/// What a script run through the raw REPL left (its output went to
/// `on_output` as it came, and is not kept).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplOutput {
    /// The traceback of an uncaught exception, if any.
    pub stderr: Vec<u8>,
}

/// A raw-REPL driver over a link with a read timeout.
pub struct RawRepl<L: Read + Write> {
    link: L,
    pending: Vec<u8>,
    /// Set from another thread to give up waiting (the board ignored
    /// Ctrl-C); the value is how long it was given.
    give_up: Option<(Arc<AtomicBool>, Duration)>,
}

impl<L: Read + Write> RawRepl<L> {
    pub fn new(link: L) -> Self {
        Self {
            link,
            pending: Vec::new(),
            give_up: None,
        }
    }

    pub fn into_inner(self) -> L {
        self.link
    }

    /// Waits end with [`ReplError::DidNotStop`] once `flag` is set.
    pub fn set_give_up(&mut self, give_up: Option<(Arc<AtomicBool>, Duration)>) {
        self.give_up = give_up;
    }

    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    pub fn link_ref(&self) -> &L {
        &self.link
    }

    /// Read until `pattern` has been seen; returns what came before it.
    /// `on_data` sees the bytes as they arrive (to show output live).
    /// With `keep` false, bytes already given to `on_data` are dropped and
    /// not returned.
    fn read_until(
        &mut self,
        pattern: &[u8],
        timeout: Duration,
        keep: bool,
        on_data: &mut dyn FnMut(&[u8]),
    ) -> Result<Vec<u8>, ReplError> {
        let start = Instant::now();
        let mut shown = 0;
        loop {
            // Positions before `shown` were searched already (and shown): a
            // long run's output is searched once, not again on every read.
            if let Some(pos) = find(&self.pending[shown..], pattern).map(|p| p + shown) {
                if pos > shown {
                    on_data(&self.pending[shown..pos]);
                }
                let before = self.pending[..pos].to_vec();
                self.pending.drain(..pos + pattern.len());
                return Ok(before);
            }
            // Show what cannot be part of the pattern yet.
            let safe = self.pending.len().saturating_sub(pattern.len());
            if safe > shown {
                on_data(&self.pending[shown..safe]);
                shown = safe;
                if !keep {
                    // Shown and not wanted back: a script printing for
                    // hours must not grow our memory.
                    self.pending.drain(..shown);
                    shown = 0;
                }
            }
            if let Some((flag, grace)) = &self.give_up {
                if flag.load(Ordering::SeqCst) {
                    return Err(ReplError::DidNotStop(*grace));
                }
            }
            if start.elapsed() > timeout {
                let tail =
                    String::from_utf8_lossy(&self.pending[self.pending.len().saturating_sub(80)..])
                        .into_owned();
                return Err(ReplError::Timeout {
                    expected: String::from_utf8_lossy(pattern).into_owned(),
                    waited: timeout,
                    tail,
                });
            }
            let mut buf = [0u8; 512];
            match self.link.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Interrupt whatever runs and enter the raw REPL.
    pub fn enter(&mut self, timeout: Duration) -> Result<(), ReplError> {
        self.link.write_all(b"\r\x03\x03")?;
        std::thread::sleep(Duration::from_millis(50));
        self.link.write_all(b"\x01")?;
        self.read_until(b"raw REPL; CTRL-B to exit\r\n>", timeout, true, &mut |_| {})?;
        Ok(())
    }

    /// Soft-reset the board from the raw REPL prompt (fresh heap and state);
    /// the board comes back to the raw REPL.
    pub fn soft_reset(&mut self, timeout: Duration) -> Result<(), ReplError> {
        self.link.write_all(b"\x04")?;
        self.read_until(b"soft reboot\r\n", timeout, true, &mut |_| {})?;
        self.read_until(b"raw REPL; CTRL-B to exit\r\n>", timeout, true, &mut |_| {})?;
        Ok(())
    }

    /// Run `source`; the script's output is passed to `on_output` as it comes.
    pub fn run(
        &mut self,
        source: &[u8],
        timeout: Duration,
        on_output: &mut dyn FnMut(&[u8]),
    ) -> Result<ReplOutput, ReplError> {
        // Send in chunks: small boards have small UART buffers.
        for chunk in source.chunks(256) {
            self.link.write_all(chunk)?;
            self.link.flush()?;
        }
        self.link.write_all(b"\x04")?;
        let ok = self.read_until(b"OK", Duration::from_secs(10), true, &mut |_| {})?;
        if !ok.is_empty() {
            return Err(ReplError::Refused(
                String::from_utf8_lossy(&ok).into_owned(),
            ));
        }
        // The script's output goes to `on_output` only.
        self.read_until(b"\x04", timeout, false, on_output)?;
        let stderr = self.read_until(b"\x04", Duration::from_secs(10), true, &mut |_| {})?;
        self.read_until(b">", Duration::from_secs(10), true, &mut |_| {})?;
        Ok(ReplOutput { stderr })
    }

    /// Interrupt a running script (KeyboardInterrupt on the board).
    pub fn interrupt(&mut self) -> Result<(), ReplError> {
        self.link.write_all(b"\x03")?;
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A link that plays back a board's replies and records what was sent.
    struct Scripted {
        replies: VecDeque<u8>,
        sent: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.replies.len()).min(7);
            for b in buf.iter_mut().take(n) {
                *b = self.replies.pop_front().unwrap_or(0);
            }
            Ok(n)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn runs_a_script_and_splits_output_from_traceback() {
        let board = b"MicroPython\r\n>>> raw REPL; CTRL-B to exit\r\n>OKhello\r\n\x04Traceback: boom\r\n\x04>";
        let mut repl = RawRepl::new(Scripted {
            replies: board.iter().copied().collect(),
            sent: Vec::new(),
        });
        repl.enter(Duration::from_secs(1)).unwrap();
        let mut live = Vec::new();
        let out = repl
            .run(b"print('hello')", Duration::from_secs(1), &mut |d| {
                live.extend_from_slice(d)
            })
            .unwrap();
        assert_eq!(out.stderr, b"Traceback: boom\r\n");
        assert_eq!(live, b"hello\r\n");
        let sent = repl.into_inner().sent;
        assert!(sent.starts_with(b"\r\x03\x03\x01"));
        assert!(sent.ends_with(b"print('hello')\x04"));
    }

    #[test]
    fn silent_board_times_out_with_a_clear_error() {
        let mut repl = RawRepl::new(Scripted {
            replies: VecDeque::new(),
            sent: Vec::new(),
        });
        let err = repl.enter(Duration::from_millis(50)).unwrap_err();
        assert!(err.to_string().contains("raw REPL"));
    }
}
