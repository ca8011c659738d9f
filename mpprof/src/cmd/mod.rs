//! The command line: clap's structs, each turned once into the library's
//! types, and the one place where results become exit statuses. Nothing
//! below this module imports it.

pub mod check;
pub mod options;
pub mod run;
pub mod views;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::record::aggregate::RunInfo;
use crate::record::ingest::profile_from_stream;

/// How a command that ran ended, beyond an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The script failed (uncaught exception, non-zero exit, timeout,
    /// crash), or a budget failed.
    Failed,
}

/// Exit status: the script or a budget failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: mpprof's own errors (usage, set-up, bad input).
pub const EXIT_USAGE: u8 = 2;

/// The one mapping from a command's result to the process's exit status.
pub fn exit_code(result: Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(EXIT_FAILED),
        Err(e) => {
            eprintln!("mpprof: error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `mpprof --version`: mpprof's version and the MicroPython versions it
/// builds, read from vm-instrumented's patch-set table.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let default = vm_instrumented::DebianRelease::default();
    let debian: Vec<String> = vm_instrumented::DebianRelease::ALL
        .iter()
        .map(|&r| {
            let v = r.upstream_version();
            if r == default {
                format!("{v} (default)")
            } else {
                v.to_string()
            }
        })
        .collect();
    format!(
        "{}\nMicroPython versions: {} (a checkout in MICROPY_DIR)\nfetched and built by itself: Debian's {} (--micropython)",
        env!("CARGO_PKG_VERSION"),
        vm_instrumented::supported_versions(),
        debian.join(" or "),
    )
});

#[derive(Debug, Parser)]
#[command(
    name = "mpprof",
    version = VERSION.as_str(),
    about = "Profiler and allocation analyser for MicroPython"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a script on the instrumented MicroPython and profile it.
    Run(Box<run::RunArgs>),
    /// Show a saved profile: summary and annotated source.
    Report(views::ReportArgs),
    /// Turn a recorded wire stream into a profile.
    Decode(DecodeArgs),
    /// Build (or locate) the instrumented MicroPython and print its path.
    Build(BuildArgs),
    /// Draw a flame graph of a saved profile.
    Flamegraph(views::FlamegraphArgs),
    /// Compare two profiles: what changed, function by function and line by line.
    Diff(views::DiffArgs),
    /// Export a profile for speedscope, Perfetto, pprof or flamegraph tools.
    Export(views::ExportArgs),
    /// Attach the live view to a running target's stream (a FIFO or file
    /// written through MPPROF_PATH).
    Live(LiveArgs),
    /// Run the scripts of a budget file and check their budgets (for CI).
    Check(check::CheckArgs),
    /// List the serial ports boards may be on.
    Devices,
    /// Print the licences of the third-party code in this binary.
    Licenses,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
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
pub struct BuildArgs {
    /// Build the 64-bit interpreter instead of the board-like 32-bit one.
    #[arg(long)]
    pub bits64: bool,
    /// Build the uninstrumented interpreter from the same source.
    #[arg(long)]
    pub plain: bool,
}

/// `mpprof live STREAM`.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// The stream to follow.
    pub stream: PathBuf,
    /// Where to write the profile when the view closes.
    #[arg(short, long, default_value = "live.mpprof.json")]
    pub output: PathBuf,
    /// The script's path, for source lines and names.
    #[arg(long, default_value = "")]
    pub script: String,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = |r: Result<()>| r.map(|()| Outcome::Success);
    exit_code(match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Report(args) => done(views::report(args)),
        Command::Decode(args) => done(decode(args)),
        Command::Build(args) => done(build(args)),
        Command::Flamegraph(args) => done(views::flamegraph(args)),
        Command::Diff(args) => done(views::diff(args)),
        Command::Export(args) => done(views::export(args)),
        Command::Check(args) => check::check(args),
        Command::Live(args) => done(live(args)),
        Command::Devices => done(devices()),
        Command::Licenses => {
            views::licenses();
            Ok(Outcome::Success)
        }
    })
}

fn build(args: BuildArgs) -> Result<()> {
    let opts = vm_instrumented::BuildOptions {
        word_size: if args.bits64 {
            vm_instrumented::WordSize::Bits64
        } else {
            vm_instrumented::WordSize::Bits32
        },
        flavour: if args.plain {
            vm_instrumented::Flavour::Plain
        } else {
            vm_instrumented::Flavour::Instrumented
        },
        ..vm_instrumented::BuildOptions::default()
    };
    let b = vm_instrumented::build_host(&opts, &mut |m| eprintln!("mpprof: {m}"))?;
    println!("{}", b.micropython.display());
    Ok(())
}

/// Follow a running target's stream in the live view.
fn live(args: LiveArgs) -> Result<()> {
    crate::live::check_terminal()?;
    // Opening a FIFO waits for its writer: say what we wait for.
    eprintln!("mpprof: waiting for the stream {}", args.stream.display());
    let file = std::fs::File::open(&args.stream).with_context(|| {
        format!(
            "cannot open the stream {}: start the VM with MPPROF_PATH={0}",
            args.stream.display()
        )
    })?;
    let mut view = crate::live::LiveView::new("attached", &args.script, &args.output, false)?;
    view.say("(attached to a running target: its output is on its own terminal)\n");
    let profile = crate::capture::follow(Box::new(file), &args.script, &mut view);
    drop(view);
    crate::output::write_profile(&profile?, &args.output)?;
    eprintln!("mpprof: profile written to {}", args.output.display());
    Ok(())
}

/// Serial ports (for `--device`) and debug probes (for `--probe`), like
/// `mpremote devs` and `probe-rs list`.
fn devices() -> Result<()> {
    let mut devs = board_agent::serial_devices()?;
    devs.sort_by(|a, b| a.path.cmp(&b.path));
    println!("serial ports (--device PORT, or a0.. u0.. c0.. auto):");
    if devs.is_empty() {
        println!("  none found");
    } else if devs.iter().all(|d| d.usb.is_none()) {
        println!("  no USB serial port found (no board attached); other ports:");
    }
    // As `mpremote devs`: port, serial number, VID:PID, manufacturer, product.
    let rows: Vec<[String; 6]> = devs
        .iter()
        .map(|d| {
            let u = d.usb.clone().unwrap_or_default();
            let or_dash = |s: Option<String>| s.filter(|s| !s.is_empty()).unwrap_or("-".into());
            let board = d
                .usb
                .as_ref()
                .and_then(|u| board_agent::ports::known_board(u.vid, u.pid))
                .map(|w| format!("(auto: {w})"))
                .unwrap_or_default();
            [
                d.path.clone(),
                or_dash(u.serial_number),
                d.vid_pid(),
                or_dash(u.manufacturer),
                or_dash(u.product),
                board,
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..6).map(width).collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("  {}", line.join(" ").trim_end());
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

fn decode(cfg: DecodeArgs) -> Result<()> {
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
    let profile = profile_from_stream(bytes, &RunInfo::for_stream(&cfg.script.unwrap_or_default()));
    crate::output::write_profile(&profile, &cfg.output)?;
    eprintln!("mpprof: profile written to {}", cfg.output.display());
    Ok(())
}
