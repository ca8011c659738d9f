//! The host target: the instrumented unix-port MicroPython as a local process.
//!
//! The profile stream travels through a pipe whose write end the process gets
//! as file descriptor 3 (named by `MPPROF_FD`), so the script's stdin, stdout,
//! stderr and exit status stay its own. Its stderr passes through us on its
//! way to ours, byte for byte, so the end of it (a traceback) is known.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{AgentError, ErrorTail, ExitInfo, RunRequest, Session};

/// The descriptor number the VM writes its stream to.
const STREAM_FD: i32 = 3;

/// Where an instrumented binary's runtime keeps what it measures of its own
/// cost at start-up (`MPPROF_COSTS_FILE`): beside the binary, so a rebuild
/// starts afresh; after three runs it stops calibrating (docs/time.md).
pub fn costs_file(micropython: &Path) -> PathBuf {
    let mut costs = micropython.as_os_str().to_os_string();
    costs.push(".costs");
    PathBuf::from(costs)
}

/// Runs scripts on a local instrumented `micropython` binary.
#[derive(Debug, Clone)]
pub struct HostProcess {
    pub micropython: PathBuf,
}

impl HostProcess {
    pub fn new(micropython: PathBuf) -> Self {
        Self { micropython }
    }

    /// Start `req.script` and return its session.
    pub fn start(&self, req: &RunRequest) -> Result<HostSession, AgentError> {
        let (reader, writer) = std::io::pipe().map_err(AgentError::Pipe)?;
        let writer: OwnedFd = writer.into();
        let writer_fd = writer.as_raw_fd();

        // The captured output's pipe, made before the process starts.
        let merged = if req.capture_output {
            Some(std::io::pipe().map_err(AgentError::Pipe)?)
        } else {
            None
        };
        let mut cmd = Command::new(&self.micropython);
        if let Some(heap) = req.heap_bytes {
            cmd.arg("-X").arg(format!("heapsize={heap}"));
        }
        cmd.arg(&req.script).args(&req.args);
        cmd.env("MPPROF_FD", STREAM_FD.to_string());
        if std::env::var_os("MPPROF_COSTS_FILE").is_none() {
            // The user's own setting wins; empty: never kept.
            cmd.env("MPPROF_COSTS_FILE", costs_file(&self.micropython));
        }
        if !req.module_path.is_empty() {
            // MICROPYPATH replaces the port's default list, whose first
            // entry is the frozen modules (asyncio): kept first.
            let mut path = std::ffi::OsString::from(".frozen");
            for dir in &req.module_path {
                path.push(":");
                path.push(dir);
            }
            cmd.env("MICROPYPATH", path);
        }
        cmd.stdin(Stdio::inherit());
        // stderr always comes through us, to keep its end (the traceback)
        // while it goes on to ours.
        cmd.stderr(Stdio::piped());
        if req.capture_output {
            cmd.stdout(Stdio::piped());
        }
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if writer_fd == STREAM_FD {
                    // dup2 onto itself keeps close-on-exec set: clear it.
                    let flags = libc::fcntl(STREAM_FD, libc::F_GETFD);
                    if flags < 0
                        || libc::fcntl(STREAM_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(writer_fd, STREAM_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| AgentError::Spawn {
            program: self.micropython.clone(),
            source,
        })?;
        // Our copy of the write end must close, or the stream never ends.
        drop(writer);
        let tail = ErrorTail::default();
        let err = child.stderr.take();
        let (output, err_sink): (_, Box<dyn Write + Send>) = if let Some((reader, writer)) = merged
        {
            let out = child.stdout.take();
            (
                Some(merge_output(reader, writer.try_clone().ok(), out)),
                Box::new(writer),
            )
        } else {
            (None, Box::new(std::io::stderr()))
        };
        let err_copier = err.map(|e| {
            let tail = tail.clone();
            std::thread::spawn(move || copy_keeping_tail(e, err_sink, &tail))
        });
        Ok(HostSession {
            child,
            stream: Some(Box::new(reader)),
            output,
            exit: None,
            tail,
            err_copier,
        })
    }
}

/// Copy the script's stderr on, keeping its end.
fn copy_keeping_tail(mut from: impl Read, mut to: Box<dyn Write + Send>, tail: &ErrorTail) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        tail.push(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        let _ = to.flush();
    }
}

/// One reader of the captured output: `reader` gets what `writer` (the
/// stderr copier's end) and `out`'s copier write (order within each kept).
fn merge_output(
    reader: std::io::PipeReader,
    writer: Option<std::io::PipeWriter>,
    out: Option<std::process::ChildStdout>,
) -> Box<dyn Read + Send> {
    if let (Some(mut out), Some(mut w)) = (out, writer) {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut w);
        });
    }
    Box::new(reader)
}

/// A script running as a local process.
pub struct HostSession {
    child: Child,
    stream: Option<Box<dyn Read + Send>>,
    output: Option<Box<dyn Read + Send>>,
    exit: Option<ExitInfo>,
    tail: ErrorTail,
    err_copier: Option<std::thread::JoinHandle<()>>,
}

impl HostSession {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// After the exit: let the stderr copier finish (bounded, since a
    /// process the script started may hold stderr open).
    fn settle_stderr(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while self.err_copier.as_ref().is_some_and(|h| !h.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if self.err_copier.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(h) = self.err_copier.take() {
                let _ = h.join();
            }
        }
    }

    fn signal(&mut self, sig: i32) -> Result<(), AgentError> {
        if self.exit.is_some() {
            return Ok(());
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, sig) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            // Already gone: nothing to signal.
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(AgentError::Io {
                    what: "cannot signal the MicroPython process",
                    source: e,
                });
            }
        }
        Ok(())
    }
}

fn exit_info(status: std::process::ExitStatus) -> ExitInfo {
    ExitInfo {
        code: status.code(),
        signal: status.signal(),
    }
}

impl Session for HostSession {
    fn take_stream(&mut self) -> Option<Box<dyn Read + Send>> {
        self.stream.take()
    }

    fn take_output(&mut self) -> Option<Box<dyn Read + Send>> {
        self.output.take()
    }

    fn error_text(&self) -> Option<String> {
        self.tail.text()
    }

    fn interrupt(&mut self) -> Result<(), AgentError> {
        self.signal(libc::SIGINT)
    }

    fn kill(&mut self) -> Result<(), AgentError> {
        self.signal(libc::SIGKILL)
    }

    fn try_wait(&mut self) -> Result<Option<ExitInfo>, AgentError> {
        if let Some(e) = self.exit {
            return Ok(Some(e));
        }
        let status = self.child.try_wait().map_err(|source| AgentError::Io {
            what: "cannot wait for the MicroPython process",
            source,
        })?;
        self.exit = status.map(exit_info);
        if self.exit.is_some() {
            self.settle_stderr();
        }
        Ok(self.exit)
    }

    fn wait(&mut self) -> Result<ExitInfo, AgentError> {
        if let Some(e) = self.exit {
            return Ok(e);
        }
        let status = self.child.wait().map_err(|source| AgentError::Io {
            what: "cannot wait for the MicroPython process",
            source,
        })?;
        let e = exit_info(status);
        self.exit = Some(e);
        self.settle_stderr();
        Ok(e)
    }
}
