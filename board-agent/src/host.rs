//! The host target: the instrumented unix-port MicroPython as a local process.
//!
//! The profile stream travels through a pipe whose write end the process gets
//! as file descriptor 3 (named by `MPPROF_FD`), so the script's stdin, stdout,
//! stderr and exit status stay its own. Its stdout and stderr pass through
//! us on their way to ours, byte for byte, so the end of each is known: an
//! uncaught exception's traceback is on stderr up to v1.26, on stdout from
//! v1.27 (the unix port runs a script through upstream's shared pyexec).

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
        // Both come through us, to keep their ends (the traceback) while
        // they go on to ours (or to the captured output).
        cmd.stderr(Stdio::piped());
        cmd.stdout(Stdio::piped());
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
        let out_tail = ErrorTail::default();
        let err = child.stderr.take();
        let out = child.stdout.take();
        // Into the captured output's one pipe (each stream's order kept),
        // else on to ours.
        let (output, err_sink, out_sink): (
            _,
            Box<dyn Write + Send>,
            Option<Box<dyn Write + Send>>,
        ) = if let Some((reader, writer)) = merged {
            let out_sink = writer
                .try_clone()
                .ok()
                .map(|w| Box::new(w) as Box<dyn Write + Send>);
            (
                Some(Box::new(reader) as Box<dyn Read + Send>),
                Box::new(writer),
                out_sink,
            )
        } else {
            (
                None,
                Box::new(std::io::stderr()),
                Some(Box::new(std::io::stdout())),
            )
        };
        let copiers = [
            err.map(|e| {
                let tail = tail.clone();
                std::thread::spawn(move || copy_keeping_tail(e, err_sink, &tail))
            }),
            out.zip(out_sink).map(|(o, sink)| {
                let tail = out_tail.clone();
                std::thread::spawn(move || copy_keeping_tail(o, sink, &tail))
            }),
        ];
        Ok(HostSession {
            child,
            stream: Some(Box::new(reader)),
            output,
            exit: None,
            tail,
            out_tail,
            copiers,
        })
    }
}

/// How MicroPython's traceback of an uncaught exception begins.
const TRACEBACK: &str = "Traceback (most recent call last):";

fn has_traceback(text: &str) -> bool {
    text.contains(TRACEBACK)
}

/// Copy the script's stderr or stdout on, keeping its end.
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

/// A script running as a local process.
pub struct HostSession {
    child: Child,
    stream: Option<Box<dyn Read + Send>>,
    output: Option<Box<dyn Read + Send>>,
    exit: Option<ExitInfo>,
    /// The ends of its stderr and its stdout.
    tail: ErrorTail,
    out_tail: ErrorTail,
    /// The stderr and stdout copiers.
    copiers: [Option<std::thread::JoinHandle<()>>; 2],
}

impl HostSession {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// After the exit: let the copiers finish (bounded, since a process
    /// the script started may hold stdout or stderr open).
    fn settle_output(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let running = |c: &[Option<std::thread::JoinHandle<()>>; 2]| {
            c.iter().flatten().any(|h| !h.is_finished())
        };
        while running(&self.copiers) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        for c in &mut self.copiers {
            if c.as_ref().is_some_and(|h| h.is_finished()) {
                if let Some(h) = c.take() {
                    let _ = h.join();
                }
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
        // Where this version printed the traceback (an exception raised
        // with no frame, as while compiling, has only its last line); else
        // stderr's end, else stdout's.
        let err = self.tail.text();
        if err.as_deref().is_some_and(has_traceback) {
            return err;
        }
        let out = self.out_tail.text();
        if let Some(i) = out.as_deref().and_then(|o| o.rfind(TRACEBACK)) {
            return out.map(|o| o[i..].to_string());
        }
        err.or(out)
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
            self.settle_output();
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
        self.settle_output();
        Ok(e)
    }
}
