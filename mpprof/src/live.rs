//! `mpprof run --live`: the script runs on the host target while the terminal
//! UI shows snapshots of its profile; `q` stops it and writes the profile.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use board_agent::{HostProcess, RunRequest, Session};
use mpprof_profile::ExitReason;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::ExecutableCommand;
use ratatui::Terminal;

use crate::aggregate::{Aggregator, RunInfo};
use crate::run::{RunConfig, Target};
use crate::tui::{self, Action, LiveState};
use crate::wire::{DecodeStats, Decoder};

struct Shared {
    agg: Aggregator,
    stats: DecodeStats,
    events: u64,
    ended: bool,
    /// The view has closed: a following reader stops waiting.
    quit: bool,
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = std::io::stdout().execute(LeaveAlternateScreen);
    let _ = std::io::stdout().execute(ratatui::crossterm::cursor::Show);
}

impl Shared {
    fn new() -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            agg: Aggregator::new(),
            stats: DecodeStats::default(),
            events: 0,
            ended: false,
            quit: false,
        }))
    }
}

/// Refuse `--live` where it cannot work, before anything starts.
pub fn check_live() -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("--live needs a terminal (stdin and stdout are not one): drop --live to get the summary when the script ends");
    }
    Ok(())
}

pub fn run_live(cfg: &RunConfig, output: &Path) -> Result<(Aggregator, DecodeStats, RunInfo)> {
    check_live()?;
    if cfg.target != Target::Host || cfg.on_device() {
        return run_live_board(cfg, output);
    }
    let build =
        vm_instrumented::build_host(&vm_instrumented::BuildOptions::default(), &mut |m: &str| {
            eprintln!("mpprof: {m}")
        })
        .context("cannot build the instrumented MicroPython")?;
    let mut session = HostProcess::new(build.micropython)
        .start(&RunRequest {
            script: cfg.script.clone(),
            args: cfg.args.clone(),
            heap_bytes: cfg.heap,
            capture_output: true,
        })
        .context("cannot start the script")?;
    let shared = Shared::new();
    let ingest = spawn_ingest(
        shared.clone(),
        session.take_stream().context("no profile stream")?,
        false,
    );
    let (out_tx, out_rx) = mpsc::channel::<String>();
    if let Some(mut out) = session.take_output() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0
                    || out_tx
                        .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
    }

    let (exit, host_reason, shared) =
        watch_until_done(cfg, output, "host", shared, ingest, &out_rx, &mut session)?;
    Ok((
        shared.agg,
        shared.stats,
        RunInfo {
            script: cfg.script.display().to_string(),
            args: cfg.args.clone(),
            status: exit.and_then(|e| e.code),
            host_reason,
            signal: exit.and_then(|e| e.signal),
            message: None,
            embed_sources: true,
        },
    ))
}

/// A script running on a board from a thread of its own, seen as a
/// [`Session`] by the view.
struct BoardThread {
    handle: Option<std::thread::JoinHandle<Result<board_agent::board::BoardRun, String>>>,
    stop: Arc<AtomicBool>,
    exit: Option<board_agent::ExitInfo>,
    message: Option<String>,
}

impl BoardThread {
    fn finish(&mut self) -> board_agent::ExitInfo {
        if let Some(h) = self.handle.take() {
            let (exit, message) = match h.join() {
                Ok(Ok(run)) => (run.exit, None),
                Ok(Err(e)) => (
                    board_agent::ExitInfo {
                        code: None,
                        signal: None,
                    },
                    Some(e),
                ),
                Err(_) => (
                    board_agent::ExitInfo {
                        code: None,
                        signal: None,
                    },
                    Some("the board runner panicked".into()),
                ),
            };
            self.exit = Some(exit);
            self.message = message;
        }
        self.exit.unwrap_or(board_agent::ExitInfo {
            code: None,
            signal: None,
        })
    }
}

impl Session for BoardThread {
    fn take_stream(&mut self) -> Option<Box<dyn Read + Send>> {
        None
    }
    fn take_output(&mut self) -> Option<Box<dyn Read + Send>> {
        None
    }
    fn interrupt(&mut self) -> Result<(), board_agent::AgentError> {
        // Ctrl-C on the REPL link; a board that cannot see it is given up
        // on after a grace period (board_agent::board).
        self.stop.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn kill(&mut self) -> Result<(), board_agent::AgentError> {
        self.stop.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn try_wait(&mut self) -> Result<Option<board_agent::ExitInfo>, board_agent::AgentError> {
        if self.handle.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(None);
        }
        Ok(Some(self.finish()))
    }
    fn wait(&mut self) -> Result<board_agent::ExitInfo, board_agent::AgentError> {
        Ok(self.finish())
    }
}

/// `--live` on the emulated board or a real one: the board runs the script
/// from its own thread while the view shows what its stream has said so far.
fn run_live_board(cfg: &RunConfig, output: &Path) -> Result<(Aggregator, DecodeStats, RunInfo)> {
    // Boot (and build) before the screen is taken, so progress shows.
    let (mut open, source) = crate::run::open_board(cfg)?;
    let shared = Shared::new();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let ingest = spawn_ingest(
        shared.clone(),
        Box::new(crate::run::ChannelReader::new(rx)),
        false,
    );
    let (out_tx, out_rx) = mpsc::channel::<String>();
    let stop = Arc::new(AtomicBool::new(false));
    let timeout = cfg.timeout.unwrap_or(Duration::from_secs(24 * 3600));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut writer = crate::run::ChannelWriter(tx);
            let r = open.board().run_script(
                &source,
                timeout,
                &mut writer,
                &mut |d| {
                    let _ = out_tx.send(String::from_utf8_lossy(d).into_owned());
                },
                stop,
            );
            open.close();
            r.map_err(|e| e.to_string())
        })
    };
    let mut session = BoardThread {
        handle: Some(handle),
        stop,
        exit: None,
        message: None,
    };
    let target = if cfg.on_device() { "board" } else { "qemu" };
    let (exit, host_reason, shared) =
        watch_until_done(cfg, output, target, shared, ingest, &out_rx, &mut session)?;
    let exit = exit.unwrap_or_else(|| session.finish());
    if let Some(m) = &session.message {
        eprintln!("mpprof: the board run failed: {m}; the profile so far is kept");
    }
    Ok((
        shared.agg,
        shared.stats,
        RunInfo {
            script: cfg.script.display().to_string(),
            args: Vec::new(),
            status: exit.code,
            host_reason,
            signal: None,
            message: session.message.clone(),
            embed_sources: true,
        },
    ))
}

/// The view until `q` (or the end), then the stream read to its end: how the
/// script ended, why the host ended it, and what was aggregated.
fn watch_until_done(
    cfg: &RunConfig,
    output: &Path,
    target: &str,
    shared: Arc<Mutex<Shared>>,
    ingest: std::thread::JoinHandle<()>,
    out_rx: &mpsc::Receiver<String>,
    session: &mut dyn Session,
) -> Result<(Option<board_agent::ExitInfo>, Option<ExitReason>, Shared)> {
    let script = cfg.script.display().to_string();
    let st = LiveState::new(target, &script, &output.display().to_string());
    let (exit, host_reason) = view_loop(&shared, out_rx, Some(session), st, &script, output)?;
    let _ = ingest.join();
    let shared = Arc::try_unwrap(shared)
        .map_err(|_| anyhow::anyhow!("the stream reader is still running"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("the stream reader failed"))?;
    Ok((exit, host_reason, shared))
}

/// Read a stream into the shared aggregator until it ends. Ingestion never
/// waits for the display, which only takes the lock to copy a snapshot.
/// `follow`: at the end of a file, wait for more (a file still being written).
fn spawn_ingest(
    shared: Arc<Mutex<Shared>>,
    mut stream: Box<dyn Read + Send>,
    follow: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut dec = Decoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) if follow => {
                    if shared.lock().map_or(true, |s| s.agg.ended() || s.quit) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Ok(mut s) = shared.lock() else { break };
            let s = &mut *s;
            let mut events = 0;
            dec.feed(&buf[..n], &mut |e| {
                events += 1;
                s.agg.event(e)
            });
            s.events += events;
            s.stats = *dec.stats();
        }
        if let Ok(mut s) = shared.lock() {
            let s = &mut *s;
            s.stats = *dec.finish(&mut |e| s.agg.event(e));
            s.ended = true;
        }
    })
}

/// The terminal UI until `q`: returns how the script ended, if there is a
/// script to watch, and why the host ended it.
fn view_loop(
    shared: &Arc<Mutex<Shared>>,
    out_rx: &mpsc::Receiver<String>,
    mut session: Option<&mut dyn Session>,
    mut st: LiveState,
    script: &str,
    output: &Path,
) -> Result<(Option<board_agent::ExitInfo>, Option<ExitReason>)> {
    enable_raw_mode().context("cannot put the terminal in raw mode")?;
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        prev_hook(info);
    }));
    let result = (|| -> Result<(Option<board_agent::ExitInfo>, Option<ExitReason>)> {
        std::io::stdout().execute(EnterAlternateScreen)?;
        let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        let mut exit = None;
        let mut last_events = (Instant::now(), 0u64);
        let mut profile = mpprof_profile::Profile::empty();
        let run = RunInfo {
            script: script.to_string(),
            embed_sources: true,
            ..RunInfo::default()
        };
        loop {
            while let Ok(text) = out_rx.try_recv() {
                st.push_output(&text);
            }
            if let (None, Some(session)) = (&exit, session.as_mut()) {
                if let Some(e) = session.try_wait()? {
                    st.script_status = Some(match (e.code, e.signal) {
                        (Some(0), _) => "finished".to_string(),
                        (Some(c), _) => format!("exited with status {c}"),
                        (None, Some(s)) => format!("ended by signal {s}"),
                        _ => "ended".into(),
                    });
                    exit = Some(e);
                }
            }
            if !st.paused {
                if let Ok(s) = shared.lock() {
                    profile = s.agg.snapshot(&s.stats, &run);
                    let now = Instant::now();
                    let dt = now.duration_since(last_events.0).as_secs_f64();
                    if dt >= 0.5 {
                        st.events_per_sec = (s.events - last_events.1) as f64 / dt;
                        last_events = (now, s.events);
                    }
                    st.events = s.events;
                    st.stream_ended = s.ended;
                }
                st.note_allocs(profile.gc.alloc_count);
                term.draw(|f| tui::draw(f, &st, &profile))?;
            }
            if event::poll(tui::FRAME)? {
                if let TermEvent::Key(k) = event::read()? {
                    if k.kind != KeyEventKind::Press {
                        continue;
                    }
                    let c = match k.code {
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => 'q',
                        KeyCode::Char(c) => c,
                        KeyCode::Tab => '\t',
                        KeyCode::Enter => '\n',
                        KeyCode::Esc => '\u{1b}',
                        KeyCode::Up => 'k',
                        KeyCode::Down => 'j',
                        _ => continue,
                    };
                    match tui::handle_key(&mut st, &profile, c) {
                        Action::Quit => break,
                        Action::FlameSnapshot => {
                            let path = output.with_extension("snapshot.svg");
                            st.message = Some(
                                match crate::views::write_flamegraph(
                                    &profile, &path, "cycles", false,
                                ) {
                                    Ok(()) => format!("flame graph written to {}", path.display()),
                                    Err(e) => format!("no flame graph: {e}"),
                                },
                            );
                        }
                        Action::None => {}
                    }
                    if st.paused {
                        term.draw(|f| tui::draw(f, &st, &profile))?;
                    }
                }
            }
        }
        let mut reason = None;
        if let (None, Some(session)) = (&exit, session.as_mut()) {
            reason = Some(ExitReason::KeyboardInterrupt);
            exit = Some(session.stop_within(Duration::from_secs(3))?);
        }
        Ok((exit, reason))
    })();
    restore_terminal();
    let _ = std::panic::take_hook();
    if let Ok(mut s) = shared.lock() {
        s.quit = true;
    }
    result
}

/// `mpprof live STREAM`: attach the live view to a target that is already
/// running, through the stream it writes (a FIFO or a file the VM writes with
/// `MPPROF_PATH=...`).
#[derive(Debug, clap::Args)]
pub struct AttachConfig {
    /// The stream to follow.
    pub stream: std::path::PathBuf,
    /// Where to write the profile when the view closes.
    #[arg(short, long, default_value = "live.mpprof.json")]
    pub output: std::path::PathBuf,
    /// The script's path, for source lines and names.
    #[arg(long, default_value = "")]
    pub script: String,
}

pub fn attach(cfg: AttachConfig) -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("mpprof live needs a terminal: use `mpprof decode STREAM -o PROFILE` to turn a stream into a profile without one");
    }
    // Opening a FIFO waits for its writer: say what we wait for.
    eprintln!("mpprof: waiting for the stream {}", cfg.stream.display());
    let file = std::fs::File::open(&cfg.stream).with_context(|| {
        format!(
            "cannot open the stream {}: start the VM with MPPROF_PATH={0}",
            cfg.stream.display()
        )
    })?;
    let shared = Shared::new();
    let ingest = spawn_ingest(shared.clone(), Box::new(file), true);
    let (_tx, rx) = mpsc::channel::<String>();
    let mut st = LiveState::new("attached", &cfg.script, &cfg.output.display().to_string());
    st.push_output("(attached to a running target: its output is on its own terminal)\n");
    view_loop(&shared, &rx, None, st, &cfg.script, &cfg.output)?;
    let _ = ingest.join();
    let s = shared
        .lock()
        .map_err(|_| anyhow::anyhow!("the stream reader failed"))?;
    let profile = s.agg.snapshot(
        &s.stats,
        &RunInfo {
            script: cfg.script.clone(),
            embed_sources: true,
            ..RunInfo::default()
        },
    );
    crate::run::write_profile(&profile, &cfg.output)?;
    eprintln!("mpprof: profile written to {}", cfg.output.display());
    Ok(())
}
