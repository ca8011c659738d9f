//! Where a script runs: the host build, the emulated board or a real board.
//! Opening a [`Target`] builds what it needs (the VM, the firmware), boots
//! or reaches the board, and starts the script: every target yields the same
//! [`Session`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use board_agent::qemu::QemuTransport;
use board_agent::{BoardSession, HostProcess, ReadyBoard, RunRequest, Session};
use vm_instrumented::WordSize;

use super::{Observer, Recording};

/// Where to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The unix port on this machine.
    Host {
        /// 32-bit (like a board) or 64-bit.
        word: WordSize,
        /// The GC heap in bytes; the port's default when `None`.
        heap: Option<u64>,
    },
    /// The emulated Cortex-M3 board (MPS2-AN385) under qemu.
    Qemu {
        transport: QemuTransport,
        /// Boot this firmware instead of building one.
        firmware: Option<PathBuf>,
    },
    /// A real board on its REPL serial port.
    Device {
        port: String,
        baud: u32,
        /// The stream through a debug probe's RTT; else framed on the port.
        probe: Option<ProbeTarget>,
    },
}

impl Default for Target {
    fn default() -> Self {
        Target::Host {
            word: WordSize::Bits32,
            heap: None,
        }
    }
}

/// A board's debug probe (`--probe`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeTarget {
    /// VID:PID[:SERIAL]; `None` for the only one attached.
    pub selector: Option<String>,
    /// probe-rs's name for the chip.
    pub chip: String,
    /// Where the RTT control block is looked up (else RAM is scanned).
    pub elf: Option<PathBuf>,
    /// Flash this first.
    pub flash: Option<PathBuf>,
}

impl Target {
    /// The kind of target, as reports name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Host { .. } => "host",
            Target::Qemu { .. } => "qemu",
            Target::Device { .. } => "board",
        }
    }

    /// Whether cycle counts repeat exactly run to run (guest time under
    /// `qemu -icount`): budgets on cycles make sense only there.
    pub fn deterministic_cycles(&self) -> bool {
        matches!(self, Target::Qemu { .. })
    }
}

/// A started script.
pub struct Opened {
    pub session: Box<dyn Session>,
    /// [`Target::kind`], or "board" for both kinds of board.
    pub kind: &'static str,
    /// On a board: (the board's name, the host's) of the script and of each
    /// module copied with it.
    pub board_names: Vec<(String, String)>,
    /// The modules copied to the board: by their paths under the emulated
    /// board's `/rom` (`units.py`, `pkg/__init__.py`, `lib/util.py`), or by
    /// their absolute paths in a real board's filesystem.
    pub copied: Vec<String>,
}

/// Check the script, build and reach the target, start the script.
pub fn open(rec: &Recording, obs: &mut dyn Observer) -> Result<Opened> {
    let script = &rec.script;
    match std::fs::metadata(script) {
        Err(_) => bail!(
            "the script {} does not exist: give the path of a .py file",
            script.display()
        ),
        Ok(m) if !m.is_file() => bail!(
            "{} is not a file: give the path of a .py file",
            script.display()
        ),
        Ok(_) => {}
    }
    let capture = obs.captures_output();
    let mut progress = |m: &str| obs.progress(m);
    match &rec.target {
        Target::Host { word, heap } => {
            let opts = vm_instrumented::BuildOptions {
                word_size: *word,
                ..build_options(rec)
            };
            let build = vm_instrumented::build_host(&opts, &mut progress)
                .context("cannot build the instrumented MicroPython")?;
            let session = HostProcess::new(build.micropython)
                .start(&RunRequest {
                    script: script.clone(),
                    args: rec.args.clone(),
                    module_path: rec.module_path.clone(),
                    heap_bytes: *heap,
                    capture_output: capture,
                })
                .context("cannot start the script")?;
            Ok(Opened {
                session: Box::new(session),
                kind: "host",
                board_names: Vec::new(),
                copied: Vec::new(),
            })
        }
        Target::Qemu { .. } | Target::Device { .. } => {
            if !rec.args.is_empty() {
                bail!("script arguments cannot be passed to a board through the raw REPL: drop the arguments after --");
            }
            let source = std::fs::read(script)
                .with_context(|| format!("cannot read {}", script.display()))?;
            // The modules the script imports from its directory and from
            // --path go to the board with it: the emulated board's /rom, a
            // real board's filesystem (board_agent::board_fs).
            let mut files = super::board_files::script_modules(script, &rec.module_path)?;
            let mut board = match &rec.target {
                Target::Qemu {
                    transport,
                    firmware,
                } => open_qemu(
                    *transport,
                    firmware.as_ref(),
                    build_options(rec),
                    &mut progress,
                )?,
                Target::Device { port, baud, probe } => open_device(port, *baud, probe.as_ref())?,
                Target::Host { .. } => unreachable!("handled above"),
            };
            let mut copied: Vec<String> = files.files.iter().map(|f| f.path.clone()).collect();
            if matches!(rec.target, Target::Device { .. }) && !files.files.is_empty() {
                let home = board
                    .board()
                    .files_home()
                    .context("cannot find where the board can keep the script's modules")?;
                if let board_agent::board_fs::FilesHome::Filesystem { cwd, lib } = home {
                    copied.clear();
                    for (i, f) in files.files.iter().enumerate() {
                        let placed = board_agent::board_fs::place(f, &cwd, &lib);
                        // names[0] is the script's; then one per file.
                        files.names[i + 1].0 = placed.name;
                        copied.push(placed.path);
                    }
                    files.filesystem = Some((cwd, lib));
                }
            }
            let board_names = files.names.clone();
            Ok(Opened {
                session: Box::new(BoardSession::start_with_files(
                    board, source, capture, files,
                )),
                kind: rec.target.kind(),
                board_names,
                copied,
            })
        }
    }
}

/// How to build what the recording needs.
fn build_options(rec: &Recording) -> vm_instrumented::BuildOptions {
    let defaults = vm_instrumented::BuildOptions::default();
    vm_instrumented::BuildOptions {
        debian_release: rec.micropython.unwrap_or(defaults.debian_release),
        line_time: rec.line_time,
        ..defaults
    }
}

fn open_qemu(
    transport: QemuTransport,
    firmware: Option<&PathBuf>,
    build: vm_instrumented::BuildOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ReadyBoard> {
    let firmware = match firmware {
        Some(elf) => elf.clone(),
        None => {
            let opts = vm_instrumented::BuildOptions {
                transport: match transport {
                    QemuTransport::Rtt | QemuTransport::SharedRam => {
                        vm_instrumented::Transport::Rtt
                    }
                    QemuTransport::Uart => vm_instrumented::Transport::Uart,
                },
                ..build
            };
            vm_instrumented::build_qemu(&opts, progress)
                .context("cannot build the qemu firmware")?
                .firmware
        }
    };
    if !board_agent::qemu::have_qemu() {
        vm_instrumented::apt_install(&["qemu-system-arm"], progress)
            .context("qemu-system-arm is needed for --target qemu")?;
    }
    let board = board_agent::qemu::QemuBoard {
        firmware,
        qemu: "qemu-system-arm".into(),
        icount_shift: 4,
    };
    Ok(ReadyBoard::Qemu(
        board
            .boot(transport)
            .context("cannot boot the emulated board")?,
    ))
}

/// A real board: its REPL on `port`, the stream through a probe's RTT or
/// framed on the same serial link.
fn open_device(port: &str, baud: u32, probe: Option<&ProbeTarget>) -> Result<ReadyBoard> {
    let rtt = probe.map(attach_probe).transpose()?;
    Ok(ReadyBoard::Device(board_agent::board::Board::open_device(
        port,
        baud,
        rtt,
        Duration::from_secs(10),
    )?))
}

#[cfg(feature = "probe")]
fn attach_probe(p: &ProbeTarget) -> Result<Box<dyn board_agent::board::RttSource>> {
    let opts = board_agent::probe::ProbeOptions {
        selector: p.selector.clone(),
        chip: p.chip.clone(),
        flash: p.flash.clone(),
        elf: p.elf.clone().or_else(|| p.flash.clone()),
    };
    Ok(board_agent::probe::attach(&opts)?)
}

#[cfg(not(feature = "probe"))]
fn attach_probe(_: &ProbeTarget) -> Result<Box<dyn board_agent::board::RttSource>> {
    bail!("this mpprof was built without probe support: rebuild with the default features (the `probe` feature)")
}
