//! Command-line interface: one config struct per command, filled by clap.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::aggregate::{profile_from_stream, RunInfo};

/// Exit status: mpprof's own errors (usage, set-up, bad input).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the script failed (uncaught exception, non-zero exit,
/// timeout), or a budget failed.
pub const EXIT_FAILED: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "mpprof",
    version,
    about = "Profiler and allocation analyser for MicroPython"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script on the instrumented MicroPython and profile it.
    Run(Box<crate::run::RunConfig>),
    /// Show a saved profile: summary and annotated source.
    Report(crate::report_cmd::ReportConfig),
    /// Turn a recorded wire stream into a profile.
    Decode(DecodeConfig),
    /// Build (or locate) the instrumented MicroPython and print its path.
    Build(BuildConfig),
    /// Draw a flame graph of a saved profile.
    Flamegraph(crate::views::FlamegraphConfig),
    /// Compare two profiles: what changed, function by function and line by line.
    Diff(crate::views::DiffConfig),
    /// Export a profile for speedscope, Perfetto, pprof or flamegraph tools.
    Export(crate::views::ExportConfig),
    /// Attach the live view to a running target's stream (a FIFO or file
    /// written through MPPROF_PATH).
    Live(crate::live::AttachConfig),
    /// Run the scripts of a budget file and check their budgets (for CI).
    Check(crate::check::CheckConfig),
    /// List the serial ports boards may be on.
    Devices,
    /// Print the licences of the third-party code in this binary.
    Licenses,
}

#[derive(Debug, Args)]
pub struct DecodeConfig {
    /// The recorded stream (raw wire bytes).
    pub stream: PathBuf,
    /// Where to write the profile JSON.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The script the stream came from (for source lines and names).
    #[arg(long)]
    pub script: Option<String>,
    /// The file is a capture of a board's serial link (frames in envelopes
    /// among the REPL's text, as `--device` boards send them).
    #[arg(long)]
    pub uart: bool,
    /// Which session to decode when the stream holds several (each boot and
    /// soft reset starts one), counted from 1; default: the largest.
    #[arg(long)]
    pub session: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BuildConfig {
    /// Build the 64-bit interpreter instead of the board-like 32-bit one.
    #[arg(long)]
    pub bits64: bool,
    /// Build the uninstrumented interpreter from the same source.
    #[arg(long)]
    pub plain: bool,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(cfg) => crate::run::run(*cfg),
        Command::Report(cfg) => crate::report_cmd::report(cfg).map(|_| ExitCode::SUCCESS),
        Command::Decode(cfg) => decode(cfg).map(|_| ExitCode::SUCCESS),
        Command::Build(cfg) => crate::run::build_command(cfg).map(|_| ExitCode::SUCCESS),
        Command::Flamegraph(cfg) => crate::views::flamegraph(cfg).map(|_| ExitCode::SUCCESS),
        Command::Diff(cfg) => crate::views::diff(cfg).map(|_| ExitCode::SUCCESS),
        Command::Export(cfg) => crate::views::export(cfg).map(|_| ExitCode::SUCCESS),
        Command::Check(cfg) => crate::check::check(cfg),
        Command::Live(cfg) => crate::live::attach(cfg).map(|_| ExitCode::SUCCESS),
        Command::Devices => devices().map(|_| ExitCode::SUCCESS),
        Command::Licenses => {
            crate::views::licenses();
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mpprof: error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Serial ports (for `--device`) and debug probes (for `--probe`), like
/// `mpremote devs` and `probe-rs list`.
fn devices() -> Result<()> {
    let devs = board_agent::serial_devices()?;
    println!("serial ports (--device PORT):");
    if devs.is_empty() {
        println!("  none found");
    }
    for d in devs {
        println!("  {}\t{}", d.path, d.usb.unwrap_or_else(|| "serial".into()));
    }
    print_probes();
    Ok(())
}

#[cfg(feature = "probe")]
fn print_probes() {
    let probes = board_agent::probe::list_probes();
    println!("debug probes (--probe VID:PID[:SERIAL]):");
    if probes.is_empty() {
        println!("  none found");
    }
    for p in probes {
        println!("  {}\t{}", p.selector, p.name);
    }
}

#[cfg(not(feature = "probe"))]
fn print_probes() {
    println!("debug probes: this mpprof was built without probe support (the `probe` feature)");
}

/// The sessions in a stream (each boot or soft reset of a board starts
/// one): the one asked for, or the largest.
fn pick_session(bytes: &[u8], which: Option<usize>) -> Result<&[u8]> {
    let mut starts = Vec::new();
    let mut at = 0;
    while let Some(i) = board_agent::board::session_start(bytes, at) {
        starts.push(i);
        at = i + 1;
    }
    if starts.is_empty() || starts[0] != 0 {
        // Bytes before the first start (a capture begun mid-session) are a
        // session of their own.
        starts.insert(0, 0);
    }
    let sessions: Vec<&[u8]> = starts
        .iter()
        .enumerate()
        .map(|(k, &s)| &bytes[s..starts.get(k + 1).copied().unwrap_or(bytes.len())])
        .collect();
    if sessions.len() > 1 || which.is_some() {
        let chosen = match which {
            Some(n) if n >= 1 && n <= sessions.len() => n - 1,
            Some(n) => bail!(
                "--session {n}: the stream holds {} session(s), numbered from 1",
                sessions.len()
            ),
            None => (0..sessions.len())
                .max_by_key(|&k| sessions[k].len())
                .unwrap_or(0),
        };
        eprintln!(
            "mpprof: {} session(s) of {} bytes; decoding session {} (choose with --session N)",
            sessions.len(),
            sessions
                .iter()
                .map(|s| s.len().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            chosen + 1
        );
        return Ok(sessions[chosen]);
    }
    Ok(bytes)
}

fn decode(cfg: DecodeConfig) -> Result<()> {
    let mut bytes = std::fs::read(&cfg.stream)
        .with_context(|| format!("cannot read the stream {}", cfg.stream.display()))?;
    if cfg.uart {
        let mut demux = board_agent::uart::Demux::new();
        let (mut text, mut frames) = (Vec::new(), Vec::new());
        demux.push(&bytes, &mut text, &mut frames);
        let st = demux.stats();
        eprintln!(
            "mpprof: {} frame envelopes ({} broken) among {} bytes of REPL text",
            st.envelopes, st.broken_envelopes, st.text_bytes
        );
        if st.envelopes == 0 {
            bail!("{} holds no frame envelopes: is it a capture of a board built with MPPROF_TRANSPORT=uart (docs/boards.md)? Drop --uart for a raw stream", cfg.stream.display());
        }
        bytes = frames;
    }
    let bytes = pick_session(&bytes, cfg.session)?;
    let profile = profile_from_stream(
        bytes,
        &RunInfo {
            script: cfg.script.unwrap_or_default(),
            embed_sources: true,
            ..RunInfo::default()
        },
    );
    crate::run::write_profile(&profile, &cfg.output)?;
    eprintln!("mpprof: profile written to {}", cfg.output.display());
    Ok(())
}
