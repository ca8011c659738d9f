//! A script running on a board, seen as a [`Session`] like a host process:
//! the board runs it from a thread of its own, its stream and (when asked)
//! its output come back through channels, and interrupting it is a Ctrl-C on
//! its REPL link (a board that cannot see it is given up on after a grace
//! period, see [`crate::board`]).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::board::{Board, BoardError, BoardRun};
use crate::qemu::QemuSession;
use crate::{AgentError, ExitInfo, Session};

/// A board ready to run a script: the emulated one (stopped when the run
/// ends) or a real one.
pub enum ReadyBoard {
    Qemu(QemuSession),
    Device(Board),
}

impl ReadyBoard {
    pub fn board(&mut self) -> &mut Board {
        match self {
            ReadyBoard::Qemu(q) => q.board(),
            ReadyBoard::Device(b) => b,
        }
    }

    pub fn close(self) {
        if let ReadyBoard::Qemu(q) = self {
            q.shutdown();
        }
    }
}

/// Bytes handed from one thread to another as a `Write`...
pub struct ChannelWriter(pub Sender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        // A reader gone away means nobody wants the bytes any more.
        let _ = self.0.send(b.to_vec());
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// ... and read back as a `Read` (0 once every writer is dropped).
pub struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    pub fn new(rx: Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            buf: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => (self.buf, self.at) = (b, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A script running on a board.
pub struct BoardSession {
    handle: Option<JoinHandle<Result<BoardRun, BoardError>>>,
    stop: Arc<AtomicBool>,
    stream: Option<Box<dyn Read + Send>>,
    output: Option<Box<dyn Read + Send>>,
    exit: Option<ExitInfo>,
    error: Option<String>,
    error_text: Option<String>,
}

impl BoardSession {
    /// Start `source` on `board`. With `capture_output` the script's output
    /// (and the traceback the REPL sends apart) is read through
    /// [`Session::take_output`]; without, it goes to our stdout and stderr.
    /// The board is closed (an emulator stopped) when the run ends.
    pub fn start(board: ReadyBoard, source: Vec<u8>, capture_output: bool) -> BoardSession {
        Self::start_with_files(board, source, capture_output, BoardFiles::default())
    }

    /// [`BoardSession::start`], with `files` copied to the board first
    /// (its `/rom`, [`Board::put_romfs`]) and the board's file names in
    /// tracebacks turned into the host's.
    pub fn start_with_files(
        mut board: ReadyBoard,
        source: Vec<u8>,
        capture_output: bool,
        files: BoardFiles,
    ) -> BoardSession {
        let (stream_tx, stream_rx) = mpsc::channel::<Vec<u8>>();
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut stream = ChannelWriter(stream_tx);
                let mut out = OutputSink::new(capture_output, out_tx);
                // Limits are the caller's: it interrupts through `stop` (a
                // timeout, Ctrl-C, the live view's q).
                let copied = match &files.filesystem {
                    _ if files.files.is_empty() => Ok(None),
                    None => board.board().put_romfs(&files.files).map(|()| None),
                    Some((cwd, lib)) => board.board().put_files(&files.files, cwd, lib).map(Some),
                };
                let mut run = copied.and_then(|made| {
                    let run = board.board().run_script(
                        &source,
                        &mut stream,
                        &mut |d| out.stdout(d),
                        stop,
                    );
                    // What was copied into the board's filesystem goes
                    // again, whatever the run did.
                    let removed = made.map_or(Ok(()), |m| board.board().remove_files(&m));
                    run.and_then(|r| removed.map(|()| r))
                });
                board.close();
                out.end_stdout();
                if let Ok(r) = &mut run {
                    r.output.stderr = files.rename_in_traceback(&r.output.stderr);
                    out.stderr(&r.output.stderr);
                }
                out.end_stderr();
                run
            })
        };
        BoardSession {
            handle: Some(handle),
            stop,
            stream: Some(Box::new(ChannelReader::new(stream_rx))),
            output: capture_output.then(|| Box::new(ChannelReader::new(out_rx)) as Box<_>),
            exit: None,
            error: None,
            error_text: None,
        }
    }

    fn finish(&mut self) -> ExitInfo {
        if let Some(h) = self.handle.take() {
            let none = ExitInfo {
                code: None,
                signal: None,
            };
            let (exit, error) = match h.join() {
                Ok(Ok(run)) => {
                    if !run.output.stderr.is_empty() {
                        let text = Uncooked::default().convert(&run.output.stderr);
                        self.error_text = Some(String::from_utf8_lossy(&text).into_owned());
                    }
                    (run.exit, None)
                }
                Ok(Err(e)) => (none, Some(e.to_string())),
                Err(_) => (none, Some("the board runner panicked".into())),
            };
            self.exit = Some(exit);
            self.error = error;
        }
        self.exit.unwrap_or(ExitInfo {
            code: None,
            signal: None,
        })
    }
}

/// What goes to the board with the script, and the names the board gives
/// the files: the script is compiled from the raw REPL as `<stdin>`, a
/// module copied to `/rom` is `/rom/NAME`; tracebacks name them as the host
/// target would (the paths the user gave).
#[derive(Debug, Clone, Default)]
pub struct BoardFiles {
    pub files: Vec<crate::romfs::RomFile>,
    /// (the board's name, the host's) for each file, the script's
    /// `<stdin>` among them.
    pub names: Vec<(String, String)>,
    /// On a board with a filesystem: its current directory and `lib`
    /// directory, where the files are copied for the run and removed after
    /// it ([`crate::board_fs`]); `None` for the RAM ROMFS at `/rom`.
    pub filesystem: Option<(String, String)>,
}

impl BoardFiles {
    /// `File "BOARD"` in a traceback as `File "HOST"`.
    pub fn rename_in_traceback(&self, text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        for (board, host) in &self.names {
            let from = format!("File \"{board}\"");
            let to = format!("File \"{host}\"");
            out = replace_all(&out, from.as_bytes(), to.as_bytes());
        }
        out
    }
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// A board's text as the script wrote it: MicroPython's REPL streams send
/// each "\n" as "\r\n" (`mp_hal_stdout_tx_strn_cooked`), so every "\r\n"
/// becomes "\n" again ("\r\r\n" from a script's own "\r\n" gives it
/// back). A "\r" at the end of a piece waits for the next one.
#[derive(Debug, Default)]
pub struct Uncooked {
    held_cr: bool,
}

impl Uncooked {
    pub fn convert(&mut self, d: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(d.len() + 1);
        for &b in d {
            if self.held_cr {
                self.held_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.held_cr = true;
            } else {
                out.push(b);
            }
        }
        out
    }

    /// What is held back when the text ends.
    pub fn finish(&mut self) -> Vec<u8> {
        if std::mem::take(&mut self.held_cr) {
            vec![b'\r']
        } else {
            Vec::new()
        }
    }
}

/// Where a board's output goes: our own stdout/stderr, or the channel the
/// caller reads; either way as the script wrote it ([`Uncooked`]).
struct OutputSink {
    captured: Option<Sender<Vec<u8>>>,
    out: Uncooked,
    err: Uncooked,
}

impl OutputSink {
    fn new(capture: bool, tx: Sender<Vec<u8>>) -> Self {
        Self {
            captured: capture.then_some(tx),
            out: Uncooked::default(),
            err: Uncooked::default(),
        }
    }

    fn stdout(&mut self, d: &[u8]) {
        let d = self.out.convert(d);
        self.send_stdout(&d);
    }

    fn end_stdout(&mut self) {
        let d = self.out.finish();
        self.send_stdout(&d);
    }

    fn send_stdout(&mut self, d: &[u8]) {
        self.send(d, &mut std::io::stdout());
    }

    /// To the caller when captured, else to our own `terminal` stream.
    fn send(&self, d: &[u8], terminal: &mut dyn Write) {
        if d.is_empty() {
            return;
        }
        match &self.captured {
            Some(tx) => {
                let _ = tx.send(d.to_vec());
            }
            None => {
                let _ = terminal.write_all(d);
                let _ = terminal.flush();
            }
        }
    }

    fn stderr(&mut self, d: &[u8]) {
        let d = self.err.convert(d);
        self.send_stderr(&d);
    }

    fn end_stderr(&mut self) {
        let d = self.err.finish();
        self.send_stderr(&d);
    }

    fn send_stderr(&mut self, d: &[u8]) {
        self.send(d, &mut std::io::stderr());
    }
}

impl Session for BoardSession {
    fn take_stream(&mut self) -> Option<Box<dyn Read + Send>> {
        self.stream.take()
    }
    fn take_output(&mut self) -> Option<Box<dyn Read + Send>> {
        self.output.take()
    }
    fn interrupt(&mut self) -> Result<(), AgentError> {
        self.stop.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn kill(&mut self) -> Result<(), AgentError> {
        // Nothing harder to do from here: the runner gives up on a board
        // that does not stop within its grace period.
        self.stop.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn try_wait(&mut self) -> Result<Option<ExitInfo>, AgentError> {
        if self.handle.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(None);
        }
        Ok(Some(self.finish()))
    }
    fn wait(&mut self) -> Result<ExitInfo, AgentError> {
        Ok(self.finish())
    }
    fn failure(&self) -> Option<String> {
        self.error.clone()
    }
    fn error_text(&self) -> Option<String> {
        self.error_text.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::{BoardFiles, Uncooked};

    #[test]
    fn tracebacks_name_the_hosts_files() {
        let files = BoardFiles {
            files: Vec::new(),
            names: vec![
                ("<stdin>".into(), "app/main.py".into()),
                ("/rom/units.py".into(), "app/units.py".into()),
            ],
            filesystem: None,
        };
        let tb = b"Traceback (most recent call last):\r\n  File \"<stdin>\", line 3, in <module>\r\n  File \"/rom/units.py\", line 9, in f\r\nValueError: <stdin>\r\n";
        assert_eq!(
            String::from_utf8_lossy(&files.rename_in_traceback(tb)),
            "Traceback (most recent call last):\r\n  File \"app/main.py\", line 3, in <module>\r\n  File \"app/units.py\", line 9, in f\r\nValueError: <stdin>\r\n"
        );
    }

    #[test]
    fn the_repls_crlf_becomes_lf_and_the_scripts_own_cr_stays() {
        let mut u = Uncooked::default();
        let mut out = Vec::new();
        // Split anywhere, even between a CR and its LF.
        for piece in [&b"a\r"[..], b"\nb\r\r", b"\nc\rd\r\n\xc3\xa9\r"] {
            out.extend(u.convert(piece));
        }
        out.extend(u.finish());
        assert_eq!(out, b"a\nb\r\nc\rd\n\xc3\xa9\r");
    }
}
