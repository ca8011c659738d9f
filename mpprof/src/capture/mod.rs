//! One recording path for every command and target: a [`Recording`] (what
//! to run and where) is opened into a [`board_agent::Session`] (a host
//! process or a board, [`target`]), the one ingest loop
//! ([`crate::record::ingest`]) turns its stream into a Profile, and an
//! [`Observer`] (the summary printer, the live view, the budget checker)
//! watches the same run. Timeouts, Ctrl-C, `--save-stream` and the run's
//! info are handled here once, for all of them.

pub mod board_files;
pub mod signals;
pub mod target;

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use board_agent::ExitInfo;
use mpprof_profile::{ExitReason, Profile};

use crate::record::aggregate::RunInfo;
use crate::record::ingest::{read_to_end, Ingest};

pub use target::{ProbeTarget, Target};

/// What to run, where, and how long.
#[derive(Debug, Clone)]
pub struct Recording {
    pub target: Target,
    pub script: PathBuf,
    /// `sys.argv[1:]` (host target only).
    pub args: Vec<String>,
    /// More module directories (`--path`), after the script's own.
    pub module_path: Vec<PathBuf>,
    /// Stop the script after this long; the profile so far is kept.
    pub timeout: Option<Duration>,
    /// Also keep the raw wire stream here.
    pub save_stream: Option<PathBuf>,
    /// Without MICROPY_DIR, which Debian source package to build (else the
    /// `MPPROF_MICROPYTHON` environment's choice, else 1.25).
    pub micropython: Option<vm_instrumented::DebianRelease>,
    /// Time per line: the line-time build (sampled on the host, exact on
    /// the emulated board), docs/time.md.
    pub line_time: bool,
}

impl Recording {
    /// `script` on `target`, with no limit and no saved stream.
    pub fn new(target: Target, script: impl Into<PathBuf>) -> Self {
        Self {
            target,
            script: script.into(),
            args: Vec::new(),
            module_path: Vec::new(),
            timeout: None,
            save_stream: None,
            micropython: None,
            line_time: false,
        }
    }
}

/// What an observer decides at each look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// End the run (as Ctrl-C would), or, once it has ended, stop watching.
    Stop,
}

/// A run as an observer sees it.
pub struct Watched<'a> {
    /// The stream's aggregate so far (lock it briefly: ingestion waits).
    pub ingest: &'a Mutex<Ingest>,
    /// The script's output, when the observer captures it.
    pub output: Option<&'a Receiver<Vec<u8>>>,
    /// How the script ended, once it has.
    pub exit: Option<&'a ExitInfo>,
    /// What the profile will say about the run (for snapshots).
    pub run: &'a RunInfo,
}

/// Watches a run: the summary printer, the live view, the budget checker.
pub trait Observer {
    /// Set-up news (building, booting); warnings start with "warning".
    fn progress(&mut self, message: &str) {
        eprintln!("mpprof: {message}");
    }
    /// What the user must see however quiet the run: a timeout, a board
    /// that failed, a stream that never came.
    fn notice(&mut self, message: &str) {
        eprintln!("mpprof: {message}");
    }
    /// Whether the script's output comes to [`Watched::output`] instead of
    /// going straight to the terminal.
    fn captures_output(&self) -> bool {
        false
    }
    /// Called about every 10 ms while the script runs, and after it has
    /// ended until it returns [`Control::Stop`]. It may block for that long
    /// (the live view waits for keys here).
    fn watch(&mut self, run: &Watched) -> Result<Control> {
        std::thread::sleep(TICK);
        Ok(if run.exit.is_some() {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

/// An observer that only lets the run happen (`check`, tools); progress is
/// shown only for warnings unless `verbose`.
pub struct Quiet {
    pub verbose: bool,
}

impl Observer for Quiet {
    fn progress(&mut self, message: &str) {
        if self.verbose || message.starts_with("warning") {
            eprintln!("mpprof: {message}");
        }
    }
}

const TICK: Duration = Duration::from_millis(10);
/// How long a script gets to end after it was asked to.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Run `rec` and return its profile. Whatever happens to the script (it
/// fails, times out, is interrupted, the VM crashes, a board's link goes),
/// the profile of what the stream said is returned.
pub fn record(rec: &Recording, obs: &mut dyn Observer) -> Result<Profile> {
    let mut opened = target::open(rec, obs)?;
    let session = opened.session.as_mut();
    let save = match &rec.save_stream {
        Some(p) => Some(Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        ) as Box<dyn std::io::Write + Send>),
        None => None,
    };
    let ingest = Arc::new(Mutex::new(Ingest::new().saving_to(save)));
    let reader = spawn_reader(
        session
            .take_stream()
            .context("the target gave no profile stream")?,
        ingest.clone(),
        None,
    );
    let output = session.take_output().map(spawn_output_reader);
    let mut info = RunInfo {
        script: rec.script.display().to_string(),
        args: rec.args.clone(),
        embed_sources: true,
        board_names: opened.board_names.clone(),
        copied_to_board: opened.copied.clone(),
        ..RunInfo::default()
    };
    let started = Instant::now();
    let mut reason = None;
    let mut observer_done = false;
    let exit = loop {
        if let Some(e) = session.try_wait()? {
            break e;
        }
        if rec.timeout.is_some_and(|t| started.elapsed() >= t) {
            obs.notice(&format!(
                "timeout after {:?}: stopping the script",
                rec.timeout.unwrap_or_default()
            ));
            reason = Some(ExitReason::Timeout);
            break session.stop_within(STOP_GRACE)?;
        }
        let watched = Watched {
            ingest: &ingest,
            output: output.as_ref(),
            exit: None,
            run: &info,
        };
        if signals::interrupted() {
            reason = Some(ExitReason::KeyboardInterrupt);
            break session.stop_within(STOP_GRACE)?;
        }
        if obs.watch(&watched)? == Control::Stop {
            observer_done = true;
            reason = Some(ExitReason::KeyboardInterrupt);
            break session.stop_within(STOP_GRACE)?;
        }
    };
    if exit.signal == Some(libc::SIGKILL) && reason.is_none() {
        reason = Some(ExitReason::Killed);
    }
    info.status = exit.code;
    info.signal = exit.signal;
    info.host_reason = reason;
    info.error_text = session.error_text();
    info.message = session
        .failure()
        .or_else(|| exit.signal.map(|s| format!("ended by signal {s}")));
    // The observer may go on after the script (the live view stays until q).
    while !observer_done {
        let watched = Watched {
            ingest: &ingest,
            output: output.as_ref(),
            exit: Some(&exit),
            run: &info,
        };
        observer_done = obs.watch(&watched)? == Control::Stop;
    }
    let _ = reader.join();
    if let Some(failure) = session.failure() {
        obs.notice(&format!(
            "the {} run failed: {failure}; the profile so far is kept",
            opened.kind
        ));
    }
    let ingest = Arc::try_unwrap(ingest)
        .map_err(|_| anyhow::anyhow!("the stream reader is still running"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("the stream reader failed"))?;
    if ingest.stats().frames == 0 && opened.kind != "host" && session.failure().is_none() {
        obs.notice("warning: no profile frames came from the board: is its firmware built with mpprof (docs/boards.md)? Without --probe it must use the UART transport (MPPROF_TRANSPORT=uart); with it, RTT");
    }
    drop(opened);
    Ok(ingest.into_profile(&info))
}

/// Follow a stream that a target started elsewhere writes (`mpprof live
/// STREAM`: a FIFO or a growing file) until the observer stops; the profile
/// of what came.
pub fn follow(
    stream: Box<dyn Read + Send>,
    script: &str,
    obs: &mut dyn Observer,
) -> Result<Profile> {
    let ingest = Arc::new(Mutex::new(Ingest::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_reader(stream, ingest.clone(), Some(stop.clone()));
    let info = RunInfo::for_stream(script);
    loop {
        let watched = Watched {
            ingest: &ingest,
            output: None,
            exit: None,
            run: &info,
        };
        if obs.watch(&watched)? == Control::Stop {
            break;
        }
    }
    // The reader may be blocked on a writer that has gone quiet: take what
    // has come, and leave it to end with the process.
    stop.store(true, Ordering::SeqCst);
    drop(reader);
    let ingest = ingest
        .lock()
        .map_err(|_| anyhow::anyhow!("the stream reader failed"))?;
    Ok(ingest.snapshot(&info))
}

fn spawn_reader(
    mut stream: Box<dyn Read + Send>,
    ingest: Arc<Mutex<Ingest>>,
    follow: Option<Arc<AtomicBool>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || read_to_end(stream.as_mut(), &ingest, follow.as_deref()))
}

fn spawn_output_reader(mut out: Box<dyn Read + Send>) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}
