//! The live view: a terminal UI over a run's profile while it is recorded.
//! It is an [`Observer`] of the one recording path (`mpprof run --live` on
//! any target) or of a followed stream (`mpprof live STREAM`); the screen
//! itself is drawn by [`view`] from snapshots of the profile.

pub mod view;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mpprof_profile::Profile;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::ExecutableCommand;
use ratatui::Terminal;

use crate::capture::{Control, Observer, Watched};
use view::{Action, LiveState};

/// Refuse the live view where it cannot work, before anything starts.
pub fn check_terminal() -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("the live view needs a terminal (stdin and stdout are not one): drop --live to get the summary when the script ends, or use `mpprof decode` for a stream");
    }
    Ok(())
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = std::io::stdout().execute(LeaveAlternateScreen);
    let _ = std::io::stdout().execute(ratatui::crossterm::cursor::Show);
}

/// The terminal UI as an observer of a run.
pub struct LiveView {
    term: Option<Terminal<CrosstermBackend<std::io::Stdout>>>,
    state: LiveState,
    profile: Profile,
    /// Where `q` writes the profile; flame snapshots go beside it.
    output: PathBuf,
    last_events: (Instant, u64),
    /// Set-up messages before the screen is taken.
    quiet: bool,
    /// Notices shown while the screen was ours.
    notices: Vec<String>,
}

impl LiveView {
    /// `target` and `script` for the status line, `output` the profile's
    /// path. The screen is taken at the first look, after the set-up
    /// (building, booting) has printed its progress.
    pub fn new(target: &str, script: &str, output: &Path, quiet: bool) -> Result<Self> {
        check_terminal()?;
        Ok(Self {
            term: None,
            state: LiveState::new(target, script, &output.display().to_string()),
            profile: Profile::empty(),
            output: output.to_path_buf(),
            last_events: (Instant::now(), 0),
            quiet,
            notices: Vec::new(),
        })
    }

    /// A line in the output pane.
    pub fn say(&mut self, text: &str) {
        self.state.push_output(text);
    }

    fn take_screen(&mut self) -> Result<()> {
        if self.term.is_some() {
            return Ok(());
        }
        enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let prev_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev_hook(info);
        }));
        std::io::stdout().execute(EnterAlternateScreen)?;
        self.term = Some(Terminal::new(CrosstermBackend::new(std::io::stdout()))?);
        Ok(())
    }

    fn refresh(&mut self, run: &Watched) {
        let Ok(ingest) = run.ingest.lock() else {
            return;
        };
        self.profile = ingest.snapshot(run.run);
        let now = Instant::now();
        let dt = now.duration_since(self.last_events.0).as_secs_f64();
        if dt >= 0.5 {
            self.state.events_per_sec = (ingest.events() - self.last_events.1) as f64 / dt;
            self.last_events = (now, ingest.events());
        }
        self.state.events = ingest.events();
        self.state.stream_ended = ingest.ended();
    }

    fn draw(&mut self) -> Result<()> {
        if let Some(term) = self.term.as_mut() {
            let (st, p) = (&self.state, &self.profile);
            term.draw(|f| view::draw(f, st, p))?;
        }
        Ok(())
    }

    /// One key, if one comes within a frame: what it asks.
    fn key(&mut self) -> Result<Action> {
        if !event::poll(view::FRAME)? {
            return Ok(Action::None);
        }
        let TermEvent::Key(k) = event::read()? else {
            return Ok(Action::None);
        };
        if k.kind != KeyEventKind::Press {
            return Ok(Action::None);
        }
        let c = match k.code {
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => 'q',
            KeyCode::Char(c) => c,
            KeyCode::Tab => '\t',
            KeyCode::Enter => '\n',
            KeyCode::Esc => '\u{1b}',
            KeyCode::Up => 'k',
            KeyCode::Down => 'j',
            _ => return Ok(Action::None),
        };
        let action = view::handle_key(&mut self.state, &self.profile, c);
        if self.state.paused {
            self.draw()?;
        }
        Ok(action)
    }
}

impl Observer for LiveView {
    fn progress(&mut self, message: &str) {
        if self.term.is_some() {
            self.state.message = Some(message.to_string());
        } else if !self.quiet || message.starts_with("warning") {
            eprintln!("mpprof: {message}");
        }
    }

    fn notice(&mut self, message: &str) {
        if self.term.is_some() {
            self.state.message = Some(message.to_string());
            // Said again once the screen is given back.
            self.notices.push(message.to_string());
        } else {
            eprintln!("mpprof: {message}");
        }
    }

    fn captures_output(&self) -> bool {
        true
    }

    fn watch(&mut self, run: &Watched) -> Result<Control> {
        self.take_screen()?;
        if let Some(rx) = run.output {
            while let Ok(bytes) = rx.try_recv() {
                self.state.push_output(&String::from_utf8_lossy(&bytes));
            }
        }
        if let (Some(e), None) = (run.exit, &self.state.script_status) {
            self.state.script_status = Some(match (e.code, e.signal) {
                (Some(0), _) => "finished".to_string(),
                (Some(c), _) => format!("exited with status {c}"),
                (None, Some(s)) => format!("ended by signal {s}"),
                _ => "ended".into(),
            });
        }
        if !self.state.paused {
            self.refresh(run);
            self.state.note_allocs(self.profile.gc.alloc_count);
            self.draw()?;
        }
        Ok(match self.key()? {
            Action::Quit => Control::Stop,
            Action::FlameSnapshot => {
                let path = self.output.with_extension("snapshot.svg");
                self.state.message = Some(
                    match crate::output::write_flamegraph(
                        &self.profile,
                        &path,
                        reports::flamegraph::Weight::Cycles,
                        false,
                        // With line time, the stacks end in their lines.
                        self.profile.meta.line_time.is_some(),
                    ) {
                        Ok(()) => format!("flame graph written to {}", path.display()),
                        Err(e) => format!("no flame graph: {e}"),
                    },
                );
                Control::Continue
            }
            Action::None => Control::Continue,
        })
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        if self.term.take().is_some() {
            restore_terminal();
            let _ = std::panic::take_hook();
            for n in &self.notices {
                eprintln!("mpprof: {n}");
            }
        }
    }
}
