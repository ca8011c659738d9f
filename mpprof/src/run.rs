//! `mpprof run`: build the target when needed, run the script on it, decode and
//! aggregate its stream while it runs, then write the profile and show the
//! summary. Whatever happens to the script, the profile collected so far is
//! written.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use board_agent::{HostProcess, RunRequest, Session};
use clap::{Args, ValueEnum};
use mpprof_profile::{ExitReason, Profile};

use crate::aggregate::{Aggregator, RunInfo};
use crate::cli::{BuildConfig, EXIT_FAILED};
use crate::units::{parse_duration, parse_size};
use crate::wire::Decoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The unix port on this machine (32-bit, like a board).
    Host,
    /// The emulated Cortex-M3 board (MPS2-AN385) under qemu.
    Qemu,
}

#[derive(Debug, Args)]
pub struct RunConfig {
    /// The MicroPython script to profile.
    pub script: PathBuf,
    /// Arguments for the script (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
    /// Where to write the profile (default: SCRIPT-STEM.mpprof.json in the
    /// current directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// GC heap size, e.g. 64k or 1M (default: the target's).
    #[arg(long, value_parser = parse_size)]
    pub heap: Option<u64>,
    #[arg(long, value_enum, default_value_t = Target::Host)]
    pub target: Target,
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
    /// Run a 64-bit host build (default 32-bit, like a board).
    #[arg(long)]
    pub bits64: bool,
    /// Also save the raw wire stream (for replay with `mpprof decode`).
    #[arg(long)]
    pub save_stream: Option<PathBuf>,
    /// Also write a flame graph SVG.
    #[arg(long)]
    pub flamegraph: Option<PathBuf>,
    /// Show the live view (a terminal UI) while the script runs.
    #[arg(long)]
    pub live: bool,
    /// The flame graph's weight: cycles, opcodes, alloc-bytes or alloc-count.
    #[arg(long, default_value = "cycles")]
    pub weight: String,
    /// How the qemu firmware's stream is read: shared-ram (the RTT buffer
    /// read from the board's RAM mapped from a file, never stopping the
    /// guest: the fast path), rtt (the same buffer through qemu's gdbstub, as
    /// a probe reads a board) or uart (framed on the REPL link, as a board
    /// without a probe sends it).
    #[arg(long, value_enum, default_value_t = TransportArg::SharedRam)]
    pub transport: TransportArg,
    /// A real board's serial port, its REPL (e.g. /dev/ttyACM0). Without
    /// --probe the stream comes framed on the same link.
    #[arg(long, value_name = "PORT", conflicts_with = "target")]
    pub device: Option<String>,
    /// Read the stream over RTT through a debug probe (probe-rs); give
    /// VID:PID[:SERIAL] when several are attached.
    #[arg(long, value_name = "VID:PID[:SERIAL]", num_args = 0..=1, default_missing_value = "", conflicts_with = "target")]
    pub probe: Option<String>,
    /// The chip behind the probe, by probe-rs's name (e.g. RP2040).
    #[arg(long)]
    pub chip: Option<String>,
    /// The firmware ELF: with --probe, where the RTT control block is looked
    /// up (else RAM is scanned); with --target qemu, the firmware to boot
    /// instead of building one.
    #[arg(long)]
    pub elf: Option<PathBuf>,
    /// Flash this firmware ELF through the probe first.
    #[arg(long, requires = "probe")]
    pub flash: Option<PathBuf>,
    /// The serial link's speed (USB-CDC ignores it).
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
}

impl RunConfig {
    /// A real board (`--device` or `--probe`).
    pub fn on_device(&self) -> bool {
        self.device.is_some() || self.probe.is_some()
    }
}

/// Set by SIGINT/SIGTERM: the script gets KeyboardInterrupt from the terminal
/// itself, and we keep reading so its profile is complete.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn progress_printer(quiet: bool) -> impl FnMut(&str) {
    move |msg: &str| {
        if !quiet || msg.starts_with("warning") {
            eprintln!("mpprof: {msg}");
        }
    }
}

/// The profile file next to the working directory, named after the script.
pub fn default_output(script: &Path) -> PathBuf {
    let stem = script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".into());
    PathBuf::from(format!("{stem}.mpprof.json"))
}

pub fn write_profile(profile: &Profile, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Write beside, then rename: a crash never leaves half a profile.
    let tmp = path.with_extension("json.tmp");
    let f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(f);
    profile.to_json_writer(&mut w)?;
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn build_command(cfg: BuildConfig) -> Result<()> {
    let opts = vm_instrumented::BuildOptions {
        word_size: if cfg.bits64 {
            vm_instrumented::WordSize::Bits64
        } else {
            vm_instrumented::WordSize::Bits32
        },
        flavour: if cfg.plain {
            vm_instrumented::Flavour::Plain
        } else {
            vm_instrumented::Flavour::Instrumented
        },
        ..vm_instrumented::BuildOptions::default()
    };
    let b = vm_instrumented::build_host(&opts, &mut progress_printer(false))?;
    println!("{}", b.micropython.display());
    Ok(())
}

/// Check the script before building anything.
fn check_script(script: &Path) -> Result<()> {
    match std::fs::metadata(script) {
        Err(_) => bail!(
            "the script {} does not exist: give the path of a .py file",
            script.display()
        ),
        Ok(m) if !m.is_file() => bail!(
            "{} is not a file: give the path of a .py file",
            script.display()
        ),
        Ok(_) => Ok(()),
    }
}

/// Reads the stream to its end, decoding and aggregating as it comes.
fn ingest(
    mut stream: Box<dyn Read + Send>,
    mut save: Option<std::fs::File>,
) -> std::thread::JoinHandle<(Aggregator, crate::wire::DecodeStats)> {
    std::thread::spawn(move || {
        let mut dec = Decoder::new();
        let mut agg = Aggregator::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(f) = save.as_mut() {
                        let _ = f.write_all(&buf[..n]);
                    }
                    dec.feed(&buf[..n], &mut |e| agg.event(e));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let stats = *dec.finish(&mut |e| agg.event(e));
        (agg, stats)
    })
}

/// A real board, as `mpprof check` names it (`--device`, `--probe`,
/// `--chip`, `--elf` of `mpprof run`).
#[derive(Debug, Clone, Default)]
pub struct DeviceOptions {
    pub device: String,
    pub probe: Option<String>,
    pub chip: Option<String>,
    pub elf: Option<PathBuf>,
}

/// Run a script and return its profile (for `mpprof check` and tools); on
/// a real board when `device` is given.
pub fn profile_script(
    script: &Path,
    args: &[String],
    heap: Option<u64>,
    target: Target,
    timeout: Option<Duration>,
    device: Option<&DeviceOptions>,
) -> Result<Profile> {
    check_script(script)?;
    let cfg = RunConfig {
        script: script.to_path_buf(),
        args: args.to_vec(),
        output: None,
        heap,
        target,
        timeout,
        quiet: true,
        json: false,
        top: 10,
        bits64: false,
        save_stream: None,
        flamegraph: None,
        weight: "cycles".into(),
        live: false,
        transport: TransportArg::SharedRam,
        device: device.map(|d| d.device.clone()),
        probe: device.and_then(|d| d.probe.clone()),
        chip: device.and_then(|d| d.chip.clone()),
        elf: device.and_then(|d| d.elf.clone()),
        flash: None,
        baud: 115_200,
    };
    let (agg, stats, info) = match target {
        Target::Host if !cfg.on_device() => run_host(&cfg)?,
        _ => run_board(&cfg)?,
    };
    Ok(agg.finish(&stats, &info))
}

pub fn run(cfg: RunConfig) -> Result<ExitCode> {
    check_script(&cfg.script)?;
    let output = cfg
        .output
        .clone()
        .unwrap_or_else(|| default_output(&cfg.script));
    install_signal_handlers();
    let started = Instant::now();
    if cfg.live {
        crate::live::check_live()?;
    }
    let (agg, stats, run_info) = match (cfg.live, cfg.target) {
        (true, _) => crate::live::run_live(&cfg, &output)?,
        (false, Target::Host) if !cfg.on_device() => run_host(&cfg)?,
        (false, _) => run_board(&cfg)?,
    };
    let profile = agg.finish(&stats, &run_info);
    write_profile(&profile, &output)?;
    if let Some(svg) = &cfg.flamegraph {
        // The profile is already safe on disk; a flame graph problem is reported, not fatal.
        match crate::views::write_flamegraph(&profile, svg, &cfg.weight, false) {
            Ok(()) => {
                if !cfg.quiet && !cfg.json {
                    eprintln!("mpprof: flame graph written to {}", svg.display());
                }
            }
            Err(e) => eprintln!("mpprof: no flame graph: {e:#}"),
        }
    }
    let failed = !matches!(
        profile.meta.exit.reason,
        ExitReason::Finished | ExitReason::Stopped
    ) || run_info.status.is_some_and(|s| s != 0);
    if cfg.json {
        let summary = reports::summary::summary_json(&profile, cfg.top);
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !cfg.quiet {
        let opts = reports::summary::SummaryOptions {
            top: cfg.top,
            color: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        eprint!("{}", reports::summary::render(&profile, &opts));
    }
    if !cfg.json && !cfg.quiet {
        let partial = if profile.meta.partial {
            " (partial)"
        } else {
            ""
        };
        eprintln!(
            "mpprof: profile{partial} written to {} ({:.1} s)",
            output.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(if failed {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_host(cfg: &RunConfig) -> Result<(Aggregator, crate::wire::DecodeStats, RunInfo)> {
    let opts = vm_instrumented::BuildOptions {
        word_size: if cfg.bits64 {
            vm_instrumented::WordSize::Bits64
        } else {
            vm_instrumented::WordSize::Bits32
        },
        ..vm_instrumented::BuildOptions::default()
    };
    let build = vm_instrumented::build_host(&opts, &mut progress_printer(cfg.quiet || cfg.json))
        .context("cannot build the instrumented MicroPython")?;
    let host = HostProcess::new(build.micropython);
    let mut session = host
        .start(&RunRequest {
            script: cfg.script.clone(),
            args: cfg.args.clone(),
            heap_bytes: cfg.heap,
            capture_output: false,
        })
        .context("cannot start the script")?;
    let save = match &cfg.save_stream {
        Some(p) => Some(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        ),
        None => None,
    };
    let reader = ingest(session.take_stream().context("no profile stream")?, save);
    let started = Instant::now();
    let mut host_reason = None;
    let exit = loop {
        if let Some(e) = session.try_wait()? {
            break e;
        }
        if let Some(t) = cfg.timeout {
            if started.elapsed() >= t {
                eprintln!("mpprof: timeout after {:?}: stopping the script", t);
                host_reason = Some(ExitReason::Timeout);
                break session.stop_within(Duration::from_secs(3))?;
            }
        }
        if INTERRUPTED.load(Ordering::SeqCst) && host_reason.is_none() {
            // The terminal sent the script SIGINT too; give it time to end
            // cleanly, then make sure.
            host_reason = Some(ExitReason::KeyboardInterrupt);
            break session.stop_within(Duration::from_secs(3))?;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (agg, stats) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stream reader failed"))?;
    if exit.signal == Some(libc::SIGKILL) && host_reason.is_none() {
        host_reason = Some(ExitReason::Killed);
    }
    let message = exit.signal.map(|s| format!("ended by signal {s}"));
    Ok((
        agg,
        stats,
        RunInfo {
            script: cfg.script.display().to_string(),
            args: cfg.args.clone(),
            status: exit.code,
            host_reason,
            signal: exit.signal,
            message,
            embed_sources: true,
        },
    ))
}

/// The qemu firmware's transport, as `--transport` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    /// An RTT buffer read through qemu's gdbstub, as a probe reads a board.
    Rtt,
    /// Frames on the board's UART, interleaved with the REPL's text.
    Uart,
    /// The RTT buffer read from the board's RAM, shared with the host
    /// through a file: the guest never stops for the host.
    SharedRam,
}

/// A board ready to run a script: the emulated one (stopped when closed)
/// or a real one.
pub enum OpenBoard {
    Qemu(board_agent::qemu::QemuSession),
    Device(board_agent::board::Board),
}

impl OpenBoard {
    pub fn board(&mut self) -> &mut board_agent::board::Board {
        match self {
            OpenBoard::Qemu(q) => q.board(),
            OpenBoard::Device(b) => b,
        }
    }

    pub fn close(self) {
        if let OpenBoard::Qemu(q) = self {
            q.shutdown();
        }
    }
}

/// Boot the emulated board or reach the real one, as `cfg` says; returns it
/// with the script's source (checked before anything starts).
pub fn open_board(cfg: &RunConfig) -> Result<(OpenBoard, Vec<u8>)> {
    if cfg.heap.is_some() {
        eprintln!("mpprof: warning: --heap is fixed by the board's firmware; ignored");
    }
    let source = board_source(cfg)?;
    let board = if cfg.on_device() {
        open_device(cfg)?
    } else {
        open_qemu(cfg)?
    };
    Ok((board, source))
}

fn open_qemu(cfg: &RunConfig) -> Result<OpenBoard> {
    let firmware = match &cfg.elf {
        Some(elf) => elf.clone(),
        None => {
            let opts = vm_instrumented::BuildOptions {
                transport: match cfg.transport {
                    TransportArg::Rtt | TransportArg::SharedRam => vm_instrumented::Transport::Rtt,
                    TransportArg::Uart => vm_instrumented::Transport::Uart,
                },
                ..vm_instrumented::BuildOptions::default()
            };
            vm_instrumented::build_qemu(&opts, &mut progress_printer(cfg.quiet || cfg.json))
                .context("cannot build the qemu firmware")?
                .firmware
        }
    };
    if !board_agent::qemu::have_qemu() {
        vm_instrumented::apt_install(&["qemu-system-arm"], &mut progress_printer(cfg.quiet))
            .context("qemu-system-arm is needed for --target qemu")?;
    }
    let board = board_agent::qemu::QemuBoard {
        firmware,
        qemu: "qemu-system-arm".into(),
        icount_shift: 4,
    };
    let transport = match cfg.transport {
        TransportArg::Rtt => board_agent::qemu::QemuTransport::Rtt,
        TransportArg::Uart => board_agent::qemu::QemuTransport::Uart,
        TransportArg::SharedRam => board_agent::qemu::QemuTransport::SharedRam,
    };
    Ok(OpenBoard::Qemu(
        board
            .boot(transport)
            .context("cannot boot the emulated board")?,
    ))
}

/// A real board: its REPL on `--device`, the stream through a probe's RTT
/// (`--probe`) or framed on the same serial link.
fn open_device(cfg: &RunConfig) -> Result<OpenBoard> {
    let Some(device) = &cfg.device else {
        bail!("--probe reads the stream, but the script goes in through the board's REPL: give its serial port with --device PORT (see `mpprof devices`)");
    };
    let rtt = match &cfg.probe {
        Some(selector) => Some(attach_probe(cfg, selector)?),
        None => None,
    };
    Ok(OpenBoard::Device(board_agent::board::Board::open_device(
        device,
        cfg.baud,
        rtt,
        Duration::from_secs(10),
    )?))
}

fn run_board(cfg: &RunConfig) -> Result<(Aggregator, crate::wire::DecodeStats, RunInfo)> {
    let (mut open, source) = open_board(cfg)?;
    let result = run_on_board(cfg, open.board(), &source);
    open.close();
    result
}

#[cfg(feature = "probe")]
fn attach_probe(cfg: &RunConfig, selector: &str) -> Result<Box<dyn board_agent::board::RttSource>> {
    let Some(chip) = &cfg.chip else {
        bail!("--probe needs the chip's name: add --chip NAME (probe-rs's names, e.g. RP2040, STM32F405RGTx)");
    };
    let opts = board_agent::probe::ProbeOptions {
        selector: (!selector.is_empty()).then(|| selector.to_string()),
        chip: chip.clone(),
        flash: cfg.flash.clone(),
        elf: cfg.elf.clone().or_else(|| cfg.flash.clone()),
    };
    Ok(board_agent::probe::attach(&opts)?)
}

#[cfg(not(feature = "probe"))]
fn attach_probe(_: &RunConfig, _: &str) -> Result<Box<dyn board_agent::board::RttSource>> {
    bail!("this mpprof was built without probe support: rebuild with the default features (the `probe` feature)")
}

pub fn board_source(cfg: &RunConfig) -> Result<Vec<u8>> {
    if !cfg.args.is_empty() {
        bail!("script arguments cannot be passed to a board through the raw REPL: drop the arguments after --");
    }
    std::fs::read(&cfg.script).with_context(|| format!("cannot read {}", cfg.script.display()))
}

/// Bytes handed from one thread to another as a `Write`...
pub struct ChannelWriter(pub std::sync::mpsc::Sender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        // A reader gone away means nobody wants the stream any more.
        let _ = self.0.send(b.to_vec());
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// ... and read back as a `Read` (0 once every writer is dropped).
pub struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelReader {
    pub fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            buf: Vec::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.buf = b,
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.drain(..n);
        Ok(n)
    }
}

/// Run the script on a board whose raw REPL is entered, decoding its stream
/// as it arrives. Whatever goes wrong on the way (the link closes, the board
/// stops answering), the stream received so far is kept.
fn run_on_board(
    cfg: &RunConfig,
    board: &mut board_agent::board::Board,
    source: &[u8],
) -> Result<(Aggregator, crate::wire::DecodeStats, RunInfo)> {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let save = match &cfg.save_stream {
        Some(p) => Some(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        ),
        None => None,
    };
    let reader = ingest(Box::new(ChannelReader::new(rx)), save);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let watcher = std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            if INTERRUPTED.load(Ordering::SeqCst) {
                stop2.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut writer = ChannelWriter(tx);
    let timeout = cfg.timeout.unwrap_or(Duration::from_secs(24 * 3600));
    let result = board.run_script(
        source,
        timeout,
        &mut writer,
        &mut |d| {
            let _ = std::io::stdout().write_all(d);
            let _ = std::io::stdout().flush();
        },
        stop.clone(),
    );
    stop.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    drop(writer);
    let (agg, stats) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stream reader failed"))?;
    if stats.frames == 0 && result.is_ok() {
        eprintln!("mpprof: warning: no profile frames came from the board: is its firmware built with mpprof (docs/boards.md)? Without --probe it must use the UART transport (MPPROF_TRANSPORT=uart); with it, RTT");
    }
    let mut host_reason = None;
    let (status, message) = match &result {
        Ok(r) => {
            if !r.output.stderr.is_empty() {
                eprint!("{}", String::from_utf8_lossy(&r.output.stderr));
            }
            if r.interrupted && !INTERRUPTED.load(Ordering::SeqCst) {
                eprintln!("mpprof: timeout: the script was interrupted");
                host_reason = Some(ExitReason::Timeout);
            }
            (r.exit.code, None)
        }
        Err(e) => {
            if matches!(
                e,
                board_agent::board::BoardError::Repl(board_agent::raw_repl::ReplError::DidNotStop(
                    _
                ))
            ) {
                host_reason = Some(ExitReason::Timeout);
            }
            eprintln!("mpprof: the board run failed: {e}; the profile so far is kept");
            (None, Some(e.to_string()))
        }
    };
    if INTERRUPTED.load(Ordering::SeqCst) {
        host_reason = Some(ExitReason::KeyboardInterrupt);
    }
    Ok((
        agg,
        stats,
        RunInfo {
            script: cfg.script.display().to_string(),
            args: Vec::new(),
            status,
            host_reason,
            signal: None,
            message,
            embed_sources: true,
        },
    ))
}
