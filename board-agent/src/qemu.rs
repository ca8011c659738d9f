//! The emulated board: the instrumented MicroPython qemu port on
//! `qemu-system-arm -machine mps2-an385` (Cortex-M3).
//!
//! The script goes in through the raw REPL on the board's UART, which qemu
//! exposes as a pseudo-terminal opened with `serialport`; the profile stream
//! comes back through the RTT control block in target RAM, read through
//! qemu's gdbstub exactly as a debug probe would read a real board. Under
//! `-icount` the guest's clock counts instructions, so tick counts (and cycle
//! budgets) are deterministic.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::gdbstub::GdbClient;
use crate::raw_repl::{RawRepl, ReplOutput};
use crate::rtt::{self, UpChannel};
use crate::{AgentError, ExitInfo};

/// How to start the emulated board.
#[derive(Debug, Clone)]
pub struct QemuBoard {
    /// The qemu port firmware built with the mpprof runtime.
    pub firmware: PathBuf,
    /// `qemu-system-arm` (found on PATH by default).
    pub qemu: PathBuf,
    /// `-icount shift=N`: each guest instruction takes 2^N ns of guest time.
    pub icount_shift: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot start {qemu}: {source}; install Debian's qemu-system-arm")]
    Spawn {
        qemu: PathBuf,
        source: std::io::Error,
    },
    #[error("qemu did not report its serial pseudo-terminal (stderr: {0})")]
    NoPty(String),
    #[error("cannot open the board's serial port {path}: {source}")]
    Serial {
        path: String,
        source: serialport::Error,
    },
    #[error("cannot read the firmware {path}: {why}")]
    Firmware { path: PathBuf, why: String },
    #[error(transparent)]
    Gdb(#[from] crate::gdbstub::GdbError),
    #[error(transparent)]
    Repl(#[from] crate::raw_repl::ReplError),
    #[error("RTT: {0}")]
    Rtt(String),
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// The address of `_SEGGER_RTT` in the firmware's symbol table.
pub fn rtt_symbol(elf: &Path) -> Result<u32, QemuError> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(elf).map_err(|e| QemuError::Firmware {
        path: elf.to_path_buf(),
        why: e.to_string(),
    })?;
    let file = object::File::parse(&*data).map_err(|e| QemuError::Firmware {
        path: elf.to_path_buf(),
        why: e.to_string(),
    })?;
    file.symbols()
        .find(|s| s.name() == Ok("_SEGGER_RTT"))
        .map(|s| s.address() as u32)
        .ok_or_else(|| QemuError::Firmware {
            path: elf.to_path_buf(),
            why: "no _SEGGER_RTT symbol: not an mpprof firmware".into(),
        })
}

/// Whether `qemu-system-arm` is on PATH.
pub fn have_qemu() -> bool {
    std::process::Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running emulated board.
pub struct QemuSession {
    child: Child,
    repl: RawRepl<Box<dyn serialport::SerialPort>>,
    gdb_addr: String,
    rtt_addr: u32,
}

impl QemuBoard {
    /// Boot the board and wait for MicroPython's raw REPL.
    pub fn boot(&self) -> Result<QemuSession, QemuError> {
        let rtt_addr = rtt_symbol(&self.firmware)?;
        let port = free_port().map_err(|e| {
            QemuError::Agent(AgentError::Io {
                what: "cannot find a free TCP port for the gdbstub",
                source: e,
            })
        })?;
        let gdb_addr = format!("127.0.0.1:{port}");
        let mut child = Command::new(&self.qemu)
            .args(["-machine", "mps2-an385", "-nographic", "-monitor", "null"])
            .arg("-semihosting")
            .args(["-icount", &format!("shift={},sleep=off", self.icount_shift)])
            .args(["-serial", "pty"])
            .args(["-gdb", &format!("tcp:{gdb_addr}")])
            .arg("-kernel")
            .arg(&self.firmware)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| QemuError::Spawn {
                qemu: self.qemu.clone(),
                source,
            })?;
        let pty = read_pty_name(&mut child)?;
        let serial = serialport::new(&pty, 115_200)
            .timeout(Duration::from_millis(50))
            .open()
            .map_err(|source| QemuError::Serial {
                path: pty.clone(),
                source,
            })?;
        let mut repl = RawRepl::new(serial);
        repl.enter(Duration::from_secs(20))?;
        Ok(QemuSession {
            child,
            repl,
            gdb_addr,
            rtt_addr,
        })
    }
}

/// qemu says "char device redirected to /dev/pts/N (label serial0)" on
/// stdout or stderr as it starts.
fn read_pty_name(child: &mut Child) -> Result<String, QemuError> {
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some(i) = text.find("/dev/pts/") {
                    let name: String = text[i..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    if text[i + name.len()..].starts_with(' ') {
                        let _ = tx.send(name);
                        seen.clear();
                    }
                }
            }
        });
    }
    drop(tx);
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|_| QemuError::NoPty(String::new()))
}

/// Where the stream's bytes go, and what the session saw.
pub struct QemuRun {
    pub output: ReplOutput,
    pub exit: ExitInfo,
}

impl QemuSession {
    /// Run `source` on a freshly soft-reset board, streaming the profile to
    /// `stream` (everything from the reset's new HELLO frame on) and the
    /// script's output to `on_output`. `stop` interrupts the script.
    pub fn run_script(
        &mut self,
        source: &[u8],
        timeout: Duration,
        stream: &mut (dyn Write + Send),
        on_output: &mut dyn FnMut(&[u8]),
        stop: Arc<AtomicBool>,
    ) -> Result<QemuRun, QemuError> {
        let mut gdb = GdbClient::connect(&self.gdb_addr, Duration::from_secs(5))?;
        let ch =
            rtt::up_channel(&mut gdb, self.rtt_addr).map_err(|e| QemuError::Rtt(e.to_string()))?;
        // The boot session's stream is not this script's: soft-reset, then keep
        // only what follows the new session's first frame.
        gdb.resume()?;
        self.repl.soft_reset(Duration::from_secs(20))?;
        let mut pending = Vec::new();
        rtt::drain(&mut gdb, &ch, &mut pending).map_err(|e| QemuError::Rtt(e.to_string()))?;
        let start = last_session_start(&pending).unwrap_or(pending.len());
        stream.write_all(&pending[start..]).map_err(io_err)?;

        // Poll RTT while the script runs, from a second thread.
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let poller = {
            let done = done.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut gdb = gdb;
                let ch: UpChannel = ch;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let mut buf = Vec::new();
                    rtt::drain(&mut gdb, &ch, &mut buf).map_err(|e| e.to_string())?;
                    if !buf.is_empty() && tx.send(buf).is_err() {
                        return Ok(());
                    }
                    if finished {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let started = Instant::now();
        let interrupter = {
            let stop = stop.clone();
            let done = done.clone();
            let mut port = self
                .repl
                .link_clone()
                .map_err(|e| QemuError::Rtt(e.to_string()))?;
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    if stop.load(Ordering::SeqCst) || started.elapsed() > timeout {
                        let _ = port.write_all(b"\x03");
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            })
        };
        let result = self
            .repl
            .run(source, Duration::from_secs(24 * 3600), on_output);
        // End the session on the board so it writes its END record.
        let reset = self.repl.soft_reset(Duration::from_secs(20));
        done.store(true, Ordering::SeqCst);
        let interrupted = interrupter.join().unwrap_or(false);
        let poll = poller
            .join()
            .unwrap_or_else(|_| Err("RTT poller panicked".into()));
        // The reset that ended this session began the next one: stop at its
        // first frame.
        for chunk in rx.try_iter() {
            match session_start(&chunk, 0) {
                Some(cut) => {
                    stream.write_all(&chunk[..cut]).map_err(io_err)?;
                    break;
                }
                None => stream.write_all(&chunk).map_err(io_err)?,
            }
        }
        poll.map_err(QemuError::Rtt)?;
        let output = result?;
        reset?;
        let failed = !output.stderr.is_empty() || interrupted;
        Ok(QemuRun {
            output,
            exit: ExitInfo {
                code: Some(if failed { 1 } else { 0 }),
                signal: None,
            },
        })
    }

    /// Stop the emulator.
    pub fn shutdown(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn io_err(e: std::io::Error) -> QemuError {
    QemuError::Agent(AgentError::Io {
        what: "cannot pass the profile stream on",
        source: e,
    })
}

/// Whether a frame that starts a session (sequence 0, first record HELLO)
/// begins at `i`.
fn starts_session(bytes: &[u8], i: usize) -> bool {
    // sync A7 5C, version 1, seq 0 (LE), length (2 bytes), then tag HELLO.
    bytes.len() > i + 7
        && bytes[i..].starts_with(&[0xa7, 0x5c, 0x01, 0x00, 0x00])
        && bytes[i + 7] == 0x01
}

/// The offset of the last session start, so bytes of an earlier session are
/// left out.
pub fn last_session_start(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).rev().find(|&i| starts_session(bytes, i))
}

/// The first session start at or after `from`.
pub fn session_start(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&i| starts_session(bytes, i))
}

impl RawRepl<Box<dyn serialport::SerialPort>> {
    /// A second handle on the same port, to send an interrupt from another thread.
    pub fn link_clone(&self) -> Result<Box<dyn serialport::SerialPort>, serialport::Error> {
        self.link_ref().try_clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_session_start() {
        let mut s = vec![0u8; 3];
        s.extend_from_slice(&[0xa7, 0x5c, 1, 0, 0, 5, 0, 1, 9, 9]);
        s.extend_from_slice(&[0xa7, 0x5c, 1, 1, 0, 2, 0, 6, 1]);
        s.extend_from_slice(&[0xa7, 0x5c, 1, 0, 0, 5, 0, 1, 7, 7]);
        assert_eq!(last_session_start(&s), Some(22));
        assert_eq!(last_session_start(&s[..20]), Some(3));
        assert_eq!(last_session_start(&[1, 2, 3]), None);
        assert_eq!(session_start(&s, 0), Some(3));
        assert_eq!(session_start(&s, 4), Some(22));
    }
}
