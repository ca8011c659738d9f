//! `mpprof run`: its options, turned once into a [`Recording`] and the
//! outputs to write.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use mpprof_profile::ExitReason;

use super::options::{TargetArgs, WeightArg};
use super::Outcome;
use crate::capture::{self, Observer, Quiet, Recording};
use crate::quantities::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The MicroPython script to profile.
    pub script: PathBuf,
    /// Arguments for the script (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
    /// Where to write the profile (default: SCRIPT-STEM.mpprof.json in the
    /// current directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Stop the script after this long (e.g. 30s); the profile so far is kept.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Print no summary.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Rows in each summary table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Also save the raw wire stream (for replay with `mpprof decode`).
    #[arg(long)]
    pub save_stream: Option<PathBuf>,
    /// Also write a flame graph SVG.
    #[arg(long)]
    pub flamegraph: Option<PathBuf>,
    #[command(flatten)]
    pub weight: WeightArg,
    /// Show the live view (a terminal UI) while the script runs.
    #[arg(long)]
    pub live: bool,
}

/// What `mpprof run` writes and shows besides recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutputs {
    pub profile: PathBuf,
    pub flamegraph: Option<(PathBuf, reports::flamegraph::Weight)>,
    pub summary: SummaryMode,
    pub top: usize,
    pub live: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryMode {
    Text,
    Json,
    None,
}

impl RunArgs {
    /// The library's recording, and what to do with its profile.
    pub fn into_parts(self) -> Result<(Recording, RunOutputs, Option<&'static str>)> {
        let (target, warning) = self.target.into_target()?;
        let profile = self
            .output
            .unwrap_or_else(|| crate::output::default_profile_path(&self.script));
        let summary = match (self.json, self.quiet) {
            (true, _) => SummaryMode::Json,
            (false, true) => SummaryMode::None,
            (false, false) => SummaryMode::Text,
        };
        Ok((
            Recording {
                target,
                script: self.script,
                args: self.args,
                timeout: self.timeout,
                save_stream: self.save_stream,
            },
            RunOutputs {
                profile,
                flamegraph: self.flamegraph.map(|f| (f, self.weight.weight)),
                summary,
                top: self.top,
                live: self.live,
            },
            warning,
        ))
    }
}

pub fn run(args: RunArgs) -> Result<Outcome> {
    let (rec, out, warning) = args.into_parts()?;
    if let Some(w) = warning {
        eprintln!("mpprof: {w}");
    }
    capture::signals::install();
    let started = Instant::now();
    let quiet = out.summary != SummaryMode::Text;
    let mut observer: Box<dyn Observer> = if out.live {
        Box::new(crate::live::LiveView::new(
            rec.target.kind(),
            &rec.script.display().to_string(),
            &out.profile,
            quiet,
        )?)
    } else {
        Box::new(Quiet { verbose: !quiet })
    };
    let profile = capture::record(&rec, observer.as_mut());
    drop(observer);
    let profile = profile?;
    crate::output::write_profile(&profile, &out.profile)?;
    if let Some((svg, weight)) = &out.flamegraph {
        // The profile is already safe on disk; a flame graph problem is
        // reported, not fatal.
        match crate::output::write_flamegraph(&profile, svg, *weight, false) {
            Ok(()) if !quiet => eprintln!("mpprof: flame graph written to {}", svg.display()),
            Ok(()) => {}
            Err(e) => eprintln!("mpprof: no flame graph: {e:#}"),
        }
    }
    let failed = !matches!(
        profile.meta.exit.reason,
        ExitReason::Finished | ExitReason::Stopped
    ) || profile.meta.exit.status.is_some_and(|s| s != 0);
    match out.summary {
        SummaryMode::Json => {
            let summary = reports::summary::summary_json(&profile, out.top);
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        SummaryMode::Text => {
            let opts = reports::summary::SummaryOptions {
                top: out.top,
                color: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            };
            eprint!("{}", reports::summary::render(&profile, &opts));
            let partial = if profile.meta.partial {
                " (partial)"
            } else {
                ""
            };
            eprintln!(
                "mpprof: profile{partial} written to {} ({:.1} s)",
                out.profile.display(),
                started.elapsed().as_secs_f64()
            );
        }
        SummaryMode::None => {}
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}
