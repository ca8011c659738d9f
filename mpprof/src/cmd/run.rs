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
    /// A directory of more modules to import from, as MICROPYPATH adds one
    /// (repeatable): on the host it follows the script's directory on
    /// sys.path; the emulated board gets what the script imports from it
    /// copied to its /rom/lib.
    #[arg(long = "path", value_name = "DIR")]
    pub path: Vec<PathBuf>,
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
    /// Time per source line: exact on the emulated board (the cycles
    /// between opcode dispatches, the profiler's cost taken out), sampled
    /// on the host (a 1 kHz profiling timer). Uses a build of its own.
    #[arg(long)]
    pub line_time: bool,
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
        let micropython = self.target.micropython;
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
                module_path: self.path,
                timeout: self.timeout,
                save_stream: self.save_stream,
                micropython,
                line_time: self.line_time,
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
        // With line time, a cycles graph ends each stack in its lines.
        let lines =
            profile.meta.line_time.is_some() && *weight == reports::flamegraph::Weight::Cycles;
        match crate::output::write_flamegraph(&profile, svg, *weight, false, lines) {
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::capture::Target;
    use crate::cmd::{Cli, Command};

    fn run_args(args: &[&str]) -> RunArgs {
        let argv = ["mpprof", "run"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_flags_give_the_defaults() {
        let (rec, out, warning) = run_args(&["s.py"]).into_parts().unwrap();
        assert_eq!(rec.target, Target::default());
        assert_eq!(rec.script, PathBuf::from("s.py"));
        assert!(rec.args.is_empty() && rec.timeout.is_none() && rec.save_stream.is_none());
        assert_eq!(rec.micropython, None);
        assert_eq!(
            out,
            RunOutputs {
                profile: PathBuf::from("s.mpprof.json"),
                flamegraph: None,
                summary: SummaryMode::Text,
                top: 10,
                live: false,
            }
        );
        assert_eq!(warning, None);
    }

    #[test]
    fn every_target_option_reaches_the_recording() {
        let (rec, _, _) = run_args(&[
            "--bits64",
            "--heap",
            "64k",
            "--timeout",
            "3s",
            "--save-stream",
            "x.bin",
            "--micropython",
            "1.26",
            "s.py",
        ])
        .into_parts()
        .unwrap();
        assert_eq!(
            rec.target,
            Target::Host {
                word: vm_instrumented::WordSize::Bits64,
                heap: Some(65536)
            }
        );
        assert_eq!(rec.timeout, Some(Duration::from_secs(3)));
        assert_eq!(rec.save_stream, Some(PathBuf::from("x.bin")));
        assert_eq!(rec.micropython, Some(vm_instrumented::DebianRelease::V1_26));
        let (rec, _, warning) = run_args(&["--target", "qemu", "--heap", "8k", "s.py"])
            .into_parts()
            .unwrap();
        assert_eq!(
            rec.target,
            Target::Qemu {
                transport: board_agent::qemu::QemuTransport::SharedRam,
                firmware: None
            }
        );
        assert!(warning.is_some_and(|w| w.contains("--heap")));
        let err = run_args(&["--probe", "--chip", "RP2040", "s.py"])
            .into_parts()
            .unwrap_err();
        assert!(err.to_string().contains("--device PORT"), "{err}");
    }

    #[test]
    fn a_bad_weight_is_refused_before_anything_runs() {
        let err = Cli::try_parse_from(["mpprof", "run", "--weight", "watts", "s.py"]).unwrap_err();
        assert!(err.to_string().contains("watts"), "{err}");
    }
}
