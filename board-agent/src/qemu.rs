//! The emulated board: the instrumented MicroPython qemu port on
//! `qemu-system-arm -machine mps2-an385` (Cortex-M3).
//!
//! The script goes in through the raw REPL on the board's UART, which qemu
//! exposes as a pseudo-terminal opened with `serialport`; the profile stream
//! comes back through the RTT control block in target RAM, read through
//! qemu's gdbstub exactly as a debug probe would read a real board. Under
//! `-icount` the guest's clock counts instructions, so tick counts (and cycle
//! budgets) are deterministic.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::board::{Board, BoardError, RttReader};
use crate::gdbstub::GdbClient;
use crate::rtt;
use crate::shared_ram::SharedRamFile;
use crate::AgentError;

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
    #[error("the firmware {path}: {why}")]
    Firmware { path: PathBuf, why: String },
    #[error(transparent)]
    Gdb(#[from] crate::gdbstub::GdbError),
    #[error(transparent)]
    Board(#[from] BoardError),
    #[error("RTT: {0}")]
    Rtt(String),
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// The address of `_SEGGER_RTT` in the firmware's symbol table.
pub fn rtt_symbol(elf: &Path) -> Result<u32, QemuError> {
    rtt::elf_symbol(elf, "_SEGGER_RTT").map_err(|why| QemuError::Firmware {
        path: elf.to_path_buf(),
        why,
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

/// A running emulator, before anything has opened its serial port.
pub struct QemuProcess {
    child: Child,
    /// The file backing the board's RAM, when the host reads it directly.
    shared_ram: Option<SharedRamFile>,
    /// The board's UART as a pseudo-terminal.
    pub pty: String,
    gdb_addr: String,
}

impl QemuProcess {
    /// Stop the emulator (as a board losing power would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running emulated board with its raw REPL entered.
pub struct QemuSession {
    process: QemuProcess,
    board: Board,
}

impl QemuBoard {
    /// Start the emulator; its UART is a pseudo-terminal nobody has opened yet.
    pub fn spawn(&self) -> Result<QemuProcess, QemuError> {
        self.spawn_with(None)
    }

    /// As [`QemuBoard::spawn`]; with `shared_ram`, the board's RAM at
    /// 0x21000000 is that file.
    fn spawn_with(&self, shared_ram: Option<SharedRamFile>) -> Result<QemuProcess, QemuError> {
        if !self.firmware.is_file() {
            return Err(QemuError::Firmware {
                path: self.firmware.clone(),
                why: "no such file".into(),
            });
        }
        let port = free_port().map_err(|e| {
            QemuError::Agent(AgentError::Io {
                what: "cannot find a free TCP port for the gdbstub",
                source: e,
            })
        })?;
        let gdb_addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&self.qemu);
        match &shared_ram {
            Some(f) => {
                cmd.args(["-machine", "mps2-an385,memory-backend=mpprof-ram"]);
                cmd.arg("-object").arg(format!(
                    "memory-backend-file,id=mpprof-ram,size=16M,mem-path={},share=on",
                    f.path.display()
                ));
            }
            None => {
                cmd.args(["-machine", "mps2-an385"]);
            }
        }
        let mut child = cmd
            .args(["-nographic", "-monitor", "null"])
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
        match read_pty_name(&mut child) {
            Ok(pty) => Ok(QemuProcess {
                child,
                shared_ram,
                pty,
                gdb_addr,
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Boot the board and wait for MicroPython's raw REPL. The stream comes
    /// through RTT (read over the gdbstub) or, for a firmware built with the
    /// UART transport, on the serial link.
    pub fn boot(&self, transport: QemuTransport) -> Result<QemuSession, QemuError> {
        let rtt_addr = match transport {
            QemuTransport::Rtt | QemuTransport::SharedRam => Some(rtt_symbol(&self.firmware)?),
            QemuTransport::Uart => None,
        };
        let shared_ram = match transport {
            QemuTransport::SharedRam => {
                Some(SharedRamFile::create(&std::env::temp_dir()).map_err(|e| {
                    QemuError::Agent(AgentError::Io {
                        what: "cannot create the file backing the board's RAM",
                        source: e,
                    })
                })?)
            }
            _ => None,
        };
        let process = self.spawn_with(shared_ram)?;
        let serial = serialport::new(&process.pty, 115_200)
            .timeout(Duration::from_millis(50))
            .open()
            .map_err(|source| QemuError::Serial {
                path: process.pty.clone(),
                source,
            })?;
        let mut board = Board::open(serial, None, Duration::from_secs(20))?;
        // The REPL is up, so the firmware has set its control block up.
        if let (Some(addr), Some(file)) = (rtt_addr, &process.shared_ram) {
            let mut ram = file.open().map_err(|e| {
                QemuError::Agent(AgentError::Io {
                    what: "cannot open the file backing the board's RAM",
                    source: e,
                })
            })?;
            let channel =
                rtt::up_channel(&mut ram, addr).map_err(|e| QemuError::Rtt(e.to_string()))?;
            board.set_rtt(Some(Box::new(RttReader { mem: ram, channel })));
        } else if let Some(addr) = rtt_addr {
            let mut gdb = GdbClient::connect(&process.gdb_addr, Duration::from_secs(5))?;
            let channel =
                rtt::up_channel(&mut gdb, addr).map_err(|e| QemuError::Rtt(e.to_string()))?;
            gdb.resume()?;
            board.set_rtt(Some(Box::new(RttReader { mem: gdb, channel })));
        }
        Ok(QemuSession { process, board })
    }
}

/// How the emulated board's firmware sends its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuTransport {
    /// An RTT buffer read through the gdbstub, as a probe reads a board.
    Rtt,
    /// Envelopes on the UART, as a board without a probe sends them.
    Uart,
    /// The same RTT buffer, read from the board's RAM shared with the host
    /// through a file: the guest never stops for the host (emulator only).
    SharedRam,
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

impl QemuSession {
    /// The board, to run scripts on.
    pub fn board(&mut self) -> &mut Board {
        &mut self.board
    }

    /// Stop the emulator.
    pub fn shutdown(mut self) {
        self.process.kill();
    }
}

impl QemuBoard {
    /// Boot, run `source` once through the raw REPL and stop: the script's
    /// standard output, and the traceback if it raised. For firmware that
    /// streams nothing (a plain build, as a reference to compare against).
    pub fn run_once(&self, source: &[u8]) -> Result<(Vec<u8>, Vec<u8>), QemuError> {
        let mut session = self.boot(QemuTransport::Uart)?;
        let mut stdout = Vec::new();
        let run = session.board().run_script(
            source,
            &mut std::io::sink(),
            &mut |d| stdout.extend_from_slice(d),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        );
        session.shutdown();
        Ok((stdout, run?.output.stderr))
    }
}
