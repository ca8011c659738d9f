//! A board running the instrumented MicroPython, reached through its REPL
//! link (a serial port) and, when a debug probe is attached, its memory.
//!
//! The script goes in through the raw REPL. The profile stream comes back
//! either through an RTT up-buffer read from target memory (a probe, or
//! qemu's gdbstub) or in envelopes on the REPL link itself (boards without a
//! probe, see [`crate::uart`]). The emulated board and real boards share this
//! code; only the link and the memory access differ.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::raw_repl::{RawRepl, ReplError, ReplOutput};
use crate::rtt::{self, MemoryAccess, UpChannel};
use crate::uart::DemuxLink;
use crate::ExitInfo;

/// The serial link to a board's REPL.
pub type Link = Box<dyn serialport::SerialPort>;

/// A serial link read in batches. Emulated and USB-CDC UARTs deliver a
/// stream a few bytes at a time (qemu writes each byte the guest sends); a
/// read per few bytes costs more than the bytes, so a short read waits a
/// moment and takes what has arrived since, without blocking on an idle link.
pub struct BatchedLink(pub Link);

/// How long a short read waits for more bytes.
const BATCH_WAIT: Duration = Duration::from_millis(1);

impl std::io::Read for BatchedLink {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut n = self.0.read(out)?;
        if n > 0 && n < out.len() / 8 {
            std::thread::sleep(BATCH_WAIT);
            let more = self.0.bytes_to_read().unwrap_or(0) as usize;
            let want = more.min(out.len() - n);
            if want > 0 {
                n += self.0.read(&mut out[n..n + want])?;
            }
        }
        Ok(n)
    }
}

impl Write for BatchedLink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A source of RTT bytes, polled from its own thread while a script runs.
pub trait RttSource: Send {
    /// Append what the target has written since the last call.
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<usize, String>;
}

/// The RTT up-channel of a target reached through some [`MemoryAccess`].
pub struct RttReader<M> {
    pub mem: M,
    pub channel: UpChannel,
}

impl<M: MemoryAccess + Send> RttSource for RttReader<M> {
    fn drain(&mut self, out: &mut Vec<u8>) -> Result<usize, String> {
        rtt::drain(&mut self.mem, &self.channel, out).map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error(transparent)]
    Repl(#[from] ReplError),
    #[error("RTT: {0}")]
    Rtt(String),
    #[error("cannot pass the profile stream on: {0}")]
    Stream(std::io::Error),
    #[error("cannot open a second handle on the serial link (to interrupt the script): {0}")]
    Link(serialport::Error),
    #[error("cannot copy the script's modules to the board: {0}")]
    Files(String),
}

/// What [`Board::put_files`] made on the board: the files it wrote and the
/// directories it created (outermost first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MadeOnBoard {
    pub files: Vec<String>,
    pub dirs: Vec<String>,
}

fn different(path: &str) -> BoardError {
    BoardError::Files(format!(
        "the board already has {path} with other contents: mpprof does not overwrite it; remove it (mpremote rm :{path}) or update it (mpremote cp), then run again"
    ))
}

/// What a run on the board gave.
#[derive(Debug, Clone)]
pub struct BoardRun {
    pub output: ReplOutput,
    pub exit: ExitInfo,
    /// The script was interrupted (timeout or stop request).
    pub interrupted: bool,
}

/// A board with its raw REPL entered.
pub struct Board {
    repl: RawRepl<DemuxLink<BatchedLink>>,
    frames_tx: Sender<Vec<u8>>,
    frames_rx: Receiver<Vec<u8>>,
    rtt: Option<Box<dyn RttSource>>,
}

/// How long a board gets to stop after Ctrl-C.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How often the RTT buffer is read while a script runs: 5 ms, or
/// `MPPROF_RTT_POLL_MS` (a slow reader lets the target's buffer overrun,
/// which is how the fault tests make it happen).
fn rtt_poll() -> Duration {
    let ms = std::env::var("MPPROF_RTT_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(5);
    Duration::from_millis(ms)
}

impl Board {
    /// Enter the raw REPL on `link`. With `rtt`, the stream is read from the
    /// target's RTT buffer; without, frames are expected on the link.
    pub fn open(
        link: Link,
        rtt: Option<Box<dyn RttSource>>,
        timeout: Duration,
    ) -> Result<Board, BoardError> {
        let (frames_tx, frames_rx) = mpsc::channel();
        let mut repl = RawRepl::new(DemuxLink::new(BatchedLink(link), frames_tx.clone()));
        repl.enter(timeout)?;
        Ok(Board {
            repl,
            frames_tx,
            frames_rx,
            rtt,
        })
    }

    /// Open the serial device at `path` (a board without a probe, or the
    /// REPL side of one with a probe).
    pub fn open_device(
        path: &str,
        baud: u32,
        rtt: Option<Box<dyn RttSource>>,
        timeout: Duration,
    ) -> Result<Board, DeviceError> {
        let link = serialport::new(path, baud)
            .timeout(Duration::from_millis(50))
            .open()
            .map_err(|e| DeviceError::Open {
                path: path.to_string(),
                why: e.to_string(),
            })?;
        Board::open(link, rtt, timeout).map_err(|why| DeviceError::Board {
            path: path.to_string(),
            why,
        })
    }

    /// Copy `files` into the board's `/rom` (a ROMFS image in its RAM, see
    /// [`crate::romfs`]), mounted at the soft reset that starts the next
    /// run. Done through the raw REPL in the session before that run, so
    /// none of it is in the run's profile. Only the emulated board's
    /// firmware has room for the image at its address.
    pub fn put_romfs(&mut self, files: &[crate::romfs::RomFile]) -> Result<(), BoardError> {
        let image = crate::romfs::image(files);
        if image.len() > crate::romfs::ROMFS_MAX {
            return Err(BoardError::Files(format!(
                "{} bytes of modules, more than the board's {} bytes of room: give fewer or smaller modules",
                image.len(),
                crate::romfs::ROMFS_MAX
            )));
        }
        for program in crate::romfs::writer_programs(&image) {
            self.run_program(&program)?;
        }
        Ok(())
    }

    /// Run a small program of ours through the raw REPL (between runs, so
    /// outside any run's profile): its output, or what it raised.
    fn run_program(&mut self, program: &str) -> Result<String, BoardError> {
        let mut said = Vec::new();
        let out = self
            .repl
            .run(program.as_bytes(), Duration::from_secs(20), &mut |d| {
                said.extend_from_slice(d)
            })?;
        if !out.stderr.is_empty() {
            return Err(BoardError::Files(format!(
                "the board said: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            )));
        }
        Ok(String::from_utf8_lossy(&said).into_owned())
    }

    /// Where this board can keep the script's modules for a run
    /// ([`crate::board_fs::PROBE`]).
    pub fn files_home(&mut self) -> Result<crate::board_fs::FilesHome, BoardError> {
        let answer = self.run_program(crate::board_fs::PROBE)?;
        crate::board_fs::parse_probe(&answer).map_err(BoardError::Files)
    }

    /// Copy `files` into the board's filesystem (`cwd` and `lib`, see
    /// [`crate::board_fs`]). A file already there with the same bytes is
    /// left as it is (and kept after the run); one with other bytes is
    /// refused, so nothing of the user's is overwritten. Returns what was
    /// made, for [`Board::remove_files`] after the run.
    pub fn put_files(
        &mut self,
        files: &[crate::romfs::RomFile],
        cwd: &str,
        lib: &str,
    ) -> Result<MadeOnBoard, BoardError> {
        let mut made = MadeOnBoard::default();
        let result = self.put_files_into(files, cwd, lib, &mut made);
        if result.is_err() {
            // Leave the board as it was.
            let _ = self.remove_files(&made);
            return result.map(|()| MadeOnBoard::default());
        }
        Ok(made)
    }

    fn put_files_into(
        &mut self,
        files: &[crate::romfs::RomFile],
        cwd: &str,
        lib: &str,
        made: &mut MadeOnBoard,
    ) -> Result<(), BoardError> {
        use crate::board_fs as fs;
        for file in files {
            let placed = fs::place(file, cwd, lib);
            for dir in fs::parent_dirs(&placed.path, cwd) {
                if made.dirs.contains(&dir) {
                    continue;
                }
                let what = self.run_program(&fs::stat_program(&dir))?;
                match what.split_whitespace().next() {
                    Some("dir") => {}
                    Some("absent") => {
                        self.run_program(&fs::mkdir_program(&dir))?;
                        made.dirs.push(dir);
                    }
                    _ => {
                        return Err(BoardError::Files(format!(
                            "{dir} on the board is not a directory: remove it (mpremote rm {dir}) or run from a directory without that module"
                        )))
                    }
                }
            }
            let what = self.run_program(&fs::stat_program(&placed.path))?;
            let mut words = what.split_whitespace();
            match (words.next(), words.next()) {
                (Some("absent"), _) => {
                    for program in fs::write_programs(&placed.path, &file.data) {
                        self.run_program(&program)?;
                    }
                    made.files.push(placed.path);
                }
                (Some("file"), Some(size)) if size == file.data.len().to_string() => {
                    if !self.same_bytes(&placed.path, &file.data)? {
                        return Err(different(&placed.path));
                    }
                }
                _ => return Err(different(&placed.path)),
            }
        }
        Ok(())
    }

    /// Whether the board's file at `path` holds `data`.
    fn same_bytes(&mut self, path: &str, data: &[u8]) -> Result<bool, BoardError> {
        const CHUNK: usize = 1024;
        let mut offset = 0;
        while offset < data.len() {
            let len = CHUNK.min(data.len() - offset);
            let hex = self.run_program(&crate::board_fs::read_program(path, offset, len))?;
            let want: String = data[offset..offset + len]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if hex.trim() != want {
                return Ok(false);
            }
            offset += len;
        }
        Ok(true)
    }

    /// Remove what [`Board::put_files`] made.
    pub fn remove_files(&mut self, made: &MadeOnBoard) -> Result<(), BoardError> {
        if made.files.is_empty() && made.dirs.is_empty() {
            return Ok(());
        }
        let dirs: Vec<String> = made.dirs.iter().rev().cloned().collect();
        let said = self.run_program(&crate::board_fs::remove_program(&made.files, &dirs))?;
        if said.trim().is_empty() {
            Ok(())
        } else {
            Err(BoardError::Files(said.trim().to_string()))
        }
    }

    /// Run `source` on a freshly soft-reset board. The stream of this run
    /// (from the reset's HELLO frame to the END its closing reset makes) goes
    /// to `stream` as it arrives; the script's output to `on_output`. Setting
    /// `stop` interrupts the script with Ctrl-C.
    ///
    /// Three helpers run beside the REPL while the script runs: the RTT
    /// poller (when the stream comes through RTT), the forwarder (passes this
    /// session's bytes on) and the interrupter (Ctrl-C on request, then gives
    /// up on a board that does not react). On an error (the link closed, the
    /// board stopped answering) everything received so far has already gone
    /// to `stream`.
    pub fn run_script(
        &mut self,
        source: &[u8],
        stream: &mut (dyn Write + Send),
        on_output: &mut dyn FnMut(&[u8]),
        stop: Arc<AtomicBool>,
    ) -> Result<BoardRun, BoardError> {
        // The stream so far belongs to earlier sessions: soft-reset, then keep
        // only what follows the new session's first frame.
        self.repl.soft_reset(Duration::from_secs(20))?;
        let mut pending = Vec::new();
        if let Some(r) = self.rtt.as_mut() {
            r.drain(&mut pending).map_err(BoardError::Rtt)?;
        }
        pending.extend(self.frames_rx.try_iter().flatten());
        let start = last_session_start(&pending).unwrap_or(pending.len());
        stream
            .write_all(&pending[start..])
            .map_err(BoardError::Stream)?;

        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        self.repl.link_mut().set_frames(tx.clone());
        let interrupt_link = self.link_clone().map_err(BoardError::Link)?;
        let give_up = Arc::new(AtomicBool::new(false));
        self.repl.set_give_up(Some((give_up.clone(), STOP_GRACE)));
        let flags = RunFlags::default();
        let repl = &mut self.repl;
        let rtt = &mut self.rtt;
        let frames_tx = &self.frames_tx;
        let (result, reset, interrupted, poll, forward) = std::thread::scope(|s| {
            let flags = &flags;
            let poller = rtt.as_mut().map(|r| {
                let tx = tx.clone();
                s.spawn(move || poll_rtt(r.as_mut(), tx, flags))
            });
            drop(tx);
            let forwarder = s.spawn(move || forward_session(rx, stream));
            let interrupter = {
                let give_up = give_up.clone();
                s.spawn(move || interrupt_on_request(interrupt_link, &stop, &give_up, flags))
            };
            let result = repl.run(source, Duration::from_secs(24 * 3600), on_output);
            // Empty the target's buffer before the reset that ends the
            // session, so its last counts and END record fit, however slowly
            // the buffer was read during the run.
            if poller.is_some() {
                flags.empty_now.store(true, Ordering::SeqCst);
                let asked = Instant::now();
                while !flags.emptied.load(Ordering::SeqCst)
                    && asked.elapsed() < Duration::from_secs(5)
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            // End the session on the board, so it writes its END record
            // (after an error too: the link may still be there), unless it
            // is known not to listen.
            let reset = if give_up.load(Ordering::SeqCst) {
                Ok(())
            } else {
                repl.soft_reset(Duration::from_secs(20))
            };
            repl.set_give_up(None);
            flags.done.store(true, Ordering::SeqCst);
            let interrupted = interrupter.join().unwrap_or(false);
            let poll = poller
                .map(|p| {
                    p.join()
                        .unwrap_or_else(|_| Err("the RTT poller panicked".into()))
                })
                .unwrap_or(Ok(()));
            // The demultiplexer's sender is the last one: swap it out so the
            // forwarder sees the end.
            repl.link_mut().set_frames(frames_tx.clone());
            let forward = forwarder
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the stream forwarder panicked")));
            (result, reset, interrupted, poll, forward)
        });
        forward.map_err(BoardError::Stream)?;
        let output = result?;
        poll.map_err(BoardError::Rtt)?;
        reset?;
        let failed = !output.stderr.is_empty() || interrupted;
        Ok(BoardRun {
            output,
            exit: ExitInfo {
                code: Some(if failed { 1 } else { 0 }),
                signal: None,
            },
            interrupted,
        })
    }

    /// Read the stream through RTT from now on (`None`: from the link).
    pub fn set_rtt(&mut self, rtt: Option<Box<dyn RttSource>>) {
        self.rtt = rtt;
    }

    /// A second handle on the REPL link.
    pub fn link_clone(&self) -> Result<Link, serialport::Error> {
        self.repl.link_ref().inner().0.try_clone()
    }
}

/// What the helpers of [`Board::run_script`] tell each other.
#[derive(Default)]
struct RunFlags {
    /// The script has ended and the session is closed: helpers stop.
    done: AtomicBool,
    /// Read the RTT buffer back to back until it is empty...
    empty_now: AtomicBool,
    /// ... and it is.
    emptied: AtomicBool,
}

/// Read the RTT buffer every poll period into `tx` until the run is done.
fn poll_rtt(r: &mut dyn RttSource, tx: Sender<Vec<u8>>, flags: &RunFlags) -> Result<(), String> {
    let poll = rtt_poll();
    loop {
        let finished = flags.done.load(Ordering::SeqCst);
        let wanted = flags.empty_now.load(Ordering::SeqCst);
        let mut buf = Vec::new();
        r.drain(&mut buf)?;
        if wanted && buf.is_empty() {
            flags.emptied.store(true, Ordering::SeqCst);
        }
        if !buf.is_empty() && tx.send(buf).is_err() {
            return Ok(());
        }
        if finished {
            return Ok(());
        }
        // Asked to empty the buffer: read it back to back.
        let poll = if wanted { Duration::ZERO } else { poll };
        let slept = Instant::now();
        while slept.elapsed() < poll && flags.empty_now.load(Ordering::SeqCst) == wanted {
            std::thread::sleep(Duration::from_millis(2).min(poll));
        }
    }
}

/// Send Ctrl-C on the link once `stop` is set; a board that has not
/// stopped [`STOP_GRACE`] later cannot see it while the script runs (busy
/// in C, or unhooked frames): stop waiting for it. Whether Ctrl-C was sent.
fn interrupt_on_request(
    mut link: Link,
    stop: &AtomicBool,
    give_up: &AtomicBool,
    flags: &RunFlags,
) -> bool {
    let mut sent: Option<Instant> = None;
    while !flags.done.load(Ordering::SeqCst) {
        match sent {
            None if stop.load(Ordering::SeqCst) => {
                let _ = link.write_all(b"\x03");
                sent = Some(Instant::now());
            }
            Some(t) if t.elapsed() > STOP_GRACE => give_up.store(true, Ordering::SeqCst),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sent.is_some()
}

/// Pass a session's bytes on until the next session starts (the soft reset
/// that ended this run began it). The session's own first frame was passed
/// on before: any session start seen here is the next one.
fn forward_session(rx: Receiver<Vec<u8>>, stream: &mut (dyn Write + Send)) -> std::io::Result<()> {
    // A session start can straddle two chunks: look across the boundary.
    let mut carry: Vec<u8> = Vec::new();
    let mut ended = false;
    for chunk in rx {
        if ended {
            continue;
        }
        carry.extend_from_slice(&chunk);
        match session_start(&carry, 0) {
            Some(cut) => {
                stream.write_all(&carry[..cut])?;
                ended = true;
            }
            None => {
                // Hold back what may be the start of a session start.
                let hold = carry.len().saturating_sub(SESSION_START_LEN - 1);
                stream.write_all(&carry[..hold])?;
                carry.drain(..hold);
            }
        }
    }
    if !ended {
        stream.write_all(&carry)?;
    }
    stream.flush()
}

pub use mpprof_wire::{last_session_start, session_start, SESSION_START_LEN};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot open the serial device {path}: {why}; see `mpprof devices` for the ports here, and check you may use it (the dialout group)")]
    Open { path: String, why: String },
    #[error("the board on {path}: {why}")]
    Board { path: String, why: BoardError },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(seq: u16) -> Vec<u8> {
        let s = seq.to_le_bytes();
        vec![0xa7, 0x5c, 1, s[0], s[1], 3, 0, 1, 9, 9]
    }

    #[test]
    fn finds_the_last_session_start() {
        let mut s = vec![0u8; 3];
        s.extend_from_slice(&hello(0));
        s.extend_from_slice(&[0xa7, 0x5c, 1, 1, 0, 2, 0, 6, 1]);
        s.extend_from_slice(&hello(0));
        assert_eq!(last_session_start(&s), Some(22));
        assert_eq!(last_session_start(&s[..20]), Some(3));
        assert_eq!(last_session_start(&[1, 2, 3]), None);
        assert_eq!(session_start(&s, 0), Some(3));
        assert_eq!(session_start(&s, 4), Some(22));
    }

    #[test]
    fn forwarding_stops_at_the_next_session_wherever_chunks_split() {
        // What follows a session's first frame.
        let session = vec![0xa7, 0x5c, 1, 1, 0, 4, 0, 6, 1, 5, 5, 5, 5, 0xa7];
        let mut all = session.clone();
        all.extend_from_slice(&hello(0));
        all.extend_from_slice(b"next session");
        for cut in 0..all.len() {
            let (tx, rx) = mpsc::channel();
            tx.send(all[..cut].to_vec()).unwrap();
            tx.send(all[cut..].to_vec()).unwrap();
            drop(tx);
            let mut out = Vec::new();
            forward_session(rx, &mut out).unwrap();
            assert_eq!(out, session, "split at {cut}");
        }
    }
}
