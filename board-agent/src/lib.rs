//! The host side of an mpprof target: start a script on the instrumented
//! MicroPython and bring its profile stream back as bytes.
//!
//! Every target yields the same thing, a [`Session`]: a byte stream in the
//! wire format (decoded by `mpprof::wire`), the script's output, and a way to
//! interrupt, kill and wait. Transports differ only here.

pub mod board;
pub mod board_fs;
pub mod board_session;
pub mod gdbstub;
pub mod host;
pub mod ports;
#[cfg(feature = "probe")]
pub mod probe;
pub mod qemu;
pub mod raw_repl;
pub mod romfs;
pub mod rtt;
pub mod shared_ram;
pub mod uart;

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

pub use board_session::{BoardFiles, BoardSession, ChannelReader, ChannelWriter, ReadyBoard};
pub use host::{costs_file, HostProcess};
pub use ports::{resolve_port, PortError, SerialDevice, UsbInfo};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The script to run.
    pub script: PathBuf,
    /// Arguments passed to the script (`sys.argv[1:]`).
    pub args: Vec<String>,
    /// More module directories, on `sys.path` after the script's own (and
    /// the frozen modules), as `MICROPYPATH` gives them.
    pub module_path: Vec<PathBuf>,
    /// GC heap size in bytes; the target's default when `None`.
    pub heap_bytes: Option<u64>,
    /// Capture the script's stdout/stderr (for the live view) instead of
    /// passing them straight through to ours.
    pub capture_output: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit status, when the target exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it (host processes).
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A running script on some target.
pub trait Session: Send {
    /// The profile stream. Reading returns 0 at the end of the stream.
    fn take_stream(&mut self) -> Option<Box<dyn Read + Send>>;
    /// The script's output when it was captured (`RunRequest::capture_output`).
    fn take_output(&mut self) -> Option<Box<dyn Read + Send>>;
    /// Ask the script to stop (KeyboardInterrupt), so it can end its profile cleanly.
    fn interrupt(&mut self) -> Result<(), AgentError>;
    /// End it now.
    fn kill(&mut self) -> Result<(), AgentError>;
    /// Whether it has ended, without blocking.
    fn try_wait(&mut self) -> Result<Option<ExitInfo>, AgentError>;
    /// Wait until it ends.
    fn wait(&mut self) -> Result<ExitInfo, AgentError>;
    /// Why the target failed, beyond its exit status (a board's link
    /// closed, a board that did not stop), once it has ended.
    fn failure(&self) -> Option<String> {
        None
    }
    /// The end of what the script wrote on stderr (its traceback), once it
    /// has ended: how a failure to compile the script is told apart.
    fn error_text(&self) -> Option<String> {
        None
    }
    /// Interrupt, then kill if it has not ended within `grace`.
    fn stop_within(&mut self, grace: Duration) -> Result<ExitInfo, AgentError> {
        self.interrupt()?;
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Some(exit) = self.try_wait()? {
                return Ok(exit);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill()?;
        self.wait()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the profile stream pipe: {0}")]
    Pipe(std::io::Error),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// The serial ports of this machine (USB-CDC boards, UART adapters).
pub fn serial_devices() -> Result<Vec<SerialDevice>, AgentError> {
    let ports = serialport::available_ports().map_err(|e| AgentError::Io {
        what: "cannot list serial ports",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(ports
        .into_iter()
        .map(|p| SerialDevice {
            path: p.port_name,
            usb: match p.port_type {
                serialport::SerialPortType::UsbPort(u) => Some(UsbInfo {
                    vid: u.vid,
                    pid: u.pid,
                    serial_number: u.serial_number,
                    manufacturer: u.manufacturer,
                    product: u.product,
                }),
                _ => None,
            },
        })
        .collect())
}

/// The last bytes written to a stream, kept while they pass through.
#[derive(Debug, Clone, Default)]
pub struct ErrorTail(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl ErrorTail {
    /// How much is kept: more than any traceback's last lines.
    const KEEP: usize = 4096;

    pub fn push(&self, d: &[u8]) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.extend_from_slice(d);
        let over = t.len().saturating_sub(Self::KEEP);
        t.drain(..over);
    }

    pub fn text(&self) -> Option<String> {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (!t.is_empty()).then(|| String::from_utf8_lossy(&t).into_owned())
    }
}
