//! The host target: the instrumented unix-port MicroPython as a local process.
//!
//! The profile stream travels through a pipe whose write end the process gets
//! as file descriptor 3 (named by `MPPROF_FD`), so the script's stdin, stdout,
//! stderr and exit status stay its own.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::{AgentError, ExitInfo, RunRequest, Session};

/// The descriptor number the VM writes its stream to.
const STREAM_FD: i32 = 3;

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

        let mut cmd = Command::new(&self.micropython);
        if let Some(heap) = req.heap_bytes {
            cmd.arg("-X").arg(format!("heapsize={heap}"));
        }
        cmd.arg(&req.script).args(&req.args);
        cmd.env("MPPROF_FD", STREAM_FD.to_string());
        cmd.stdin(Stdio::inherit());
        if req.capture_output {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
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
        let output = if req.capture_output {
            let out = child.stdout.take();
            let err = child.stderr.take();
            Some(merge_output(out, err))
        } else {
            None
        };
        Ok(HostSession {
            child,
            stream: Some(Box::new(reader)),
            output,
            exit: None,
        })
    }
}

/// Merge stdout and stderr into one reader (order within each is kept).
fn merge_output(
    out: Option<std::process::ChildStdout>,
    err: Option<std::process::ChildStderr>,
) -> Box<dyn Read + Send> {
    let (reader, mut writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(_) => return Box::new(std::io::empty()),
    };
    let mut writer2 = writer.try_clone().ok();
    if let Some(mut out) = out {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut writer);
        });
    }
    if let (Some(mut err), Some(mut w)) = (err, writer2.take()) {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut err, &mut w);
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
}

impl HostSession {
    pub fn pid(&self) -> u32 {
        self.child.id()
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
        Ok(e)
    }
}
