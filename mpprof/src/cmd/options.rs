//! Option groups shared by several commands, flattened into each (one
//! definition, one conversion into the library's types).

use std::path::PathBuf;

use board_agent::qemu::QemuTransport;
use clap::{Args, ValueEnum};
use reports::flamegraph::Weight;

use crate::capture::{ProbeTarget, Target};
use crate::quantities::parse_size;

/// `--target` as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// The unix port on this machine (32-bit, like a board).
    Host,
    /// The emulated Cortex-M3 board (MPS2-AN385) under qemu.
    Qemu,
}

/// `--transport` as typed: how the emulated board's stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    /// The RTT buffer read from the board's RAM, shared with the host
    /// through a file: the guest never stops for the host.
    SharedRam,
    /// The same buffer through qemu's gdbstub, as a probe reads a board.
    Rtt,
    /// Frames on the board's UART, among the REPL's text.
    Uart,
}

impl From<TransportArg> for QemuTransport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::SharedRam => QemuTransport::SharedRam,
            TransportArg::Rtt => QemuTransport::Rtt,
            TransportArg::Uart => QemuTransport::Uart,
        }
    }
}

/// Where a script runs.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Target")]
pub struct TargetArgs {
    #[arg(long, value_enum, default_value_t = TargetKind::Host)]
    pub target: TargetKind,
    /// GC heap size, e.g. 64k or 1M (host target; a board's is its firmware's).
    #[arg(long, value_parser = parse_size)]
    pub heap: Option<u64>,
    /// Run a 64-bit host build (default 32-bit, like a board).
    #[arg(long)]
    pub bits64: bool,
    /// How the qemu firmware's stream is read: shared-ram (the RTT buffer
    /// read from the board's RAM mapped from a file, never stopping the
    /// guest: the fast path), rtt (the same buffer through qemu's gdbstub, as
    /// a probe reads a board) or uart (framed on the REPL link, as a board
    /// without a probe sends it).
    #[arg(long, value_enum, default_value_t = TransportArg::SharedRam)]
    pub transport: TransportArg,
    /// A real board's serial port, its REPL: a path (e.g. /dev/ttyACM0) or
    /// mpremote's names: a0..a99 (/dev/ttyACM*), u0..u99 (/dev/ttyUSB*),
    /// c0..c99 (COM*), auto (the first USB port with a MicroPython board's
    /// IDs). Without --probe the stream comes framed on the same link.
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
    /// Without MICROPY_DIR, the MicroPython to build from Debian's source
    /// packages: 1.25 (the default) or 1.26 (as MPPROF_MICROPYTHON).
    #[arg(long, value_name = "1.25|1.26", value_parser = parse_release)]
    pub micropython: Option<vm_instrumented::DebianRelease>,
}

fn parse_release(s: &str) -> Result<vm_instrumented::DebianRelease, String> {
    s.parse::<vm_instrumented::DebianRelease>()
        .map_err(|e| e.to_string())
}

/// A mistake in the target options, found before anything runs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetArgsError {
    #[error(transparent)]
    Port(#[from] board_agent::PortError),
    #[error("cannot list the serial ports to resolve --device {name}: {reason}")]
    PortList { name: String, reason: String },
    #[error("--probe reads the stream, but the script goes in through the board's REPL: give its serial port with --device PORT (see `mpprof devices`)")]
    ProbeWithoutDevice,
    #[error("--probe needs the chip's name: add --chip NAME (probe-rs's names, e.g. RP2040, STM32F405RGTx)")]
    ProbeWithoutChip,
}

/// `--device` as typed into a port, the one place names are resolved:
/// mpremote's shortcuts and `auto` against the ports that exist, a path as given.
pub fn resolve_device(name: &str) -> Result<String, TargetArgsError> {
    if !board_agent::ports::needs_port_list(name) {
        return Ok(name.to_string());
    }
    let ports = board_agent::serial_devices().map_err(|e| TargetArgsError::PortList {
        name: name.into(),
        reason: e.to_string(),
    })?;
    Ok(board_agent::resolve_port(name, &ports)?)
}

impl TargetArgs {
    /// The library's [`Target`]; a warning for options the target ignores.
    pub fn into_target(mut self) -> Result<(Target, Option<&'static str>), TargetArgsError> {
        if let Some(name) = self.device.take() {
            self.device = Some(resolve_device(&name)?);
        }
        let heap_ignored = self
            .heap
            .map(|_| "warning: --heap is fixed by the board's firmware; ignored");
        if let Some(selector) = self.probe {
            let Some(port) = self.device else {
                return Err(TargetArgsError::ProbeWithoutDevice);
            };
            let Some(chip) = self.chip else {
                return Err(TargetArgsError::ProbeWithoutChip);
            };
            let probe = ProbeTarget {
                selector: (!selector.is_empty()).then_some(selector),
                chip,
                elf: self.elf,
                flash: self.flash,
            };
            return Ok((
                Target::Device {
                    port,
                    baud: self.baud,
                    probe: Some(probe),
                },
                heap_ignored,
            ));
        }
        if let Some(port) = self.device {
            return Ok((
                Target::Device {
                    port,
                    baud: self.baud,
                    probe: None,
                },
                heap_ignored,
            ));
        }
        Ok(match self.target {
            TargetKind::Host => (
                Target::Host {
                    word: if self.bits64 {
                        vm_instrumented::WordSize::Bits64
                    } else {
                        vm_instrumented::WordSize::Bits32
                    },
                    heap: self.heap,
                },
                None,
            ),
            TargetKind::Qemu => (
                Target::Qemu {
                    transport: self.transport.into(),
                    firmware: self.elf,
                },
                heap_ignored,
            ),
        })
    }
}

/// A flame graph's weight, parsed before anything runs.
pub fn parse_weight(s: &str) -> Result<Weight, String> {
    Weight::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Args)]
pub struct WeightArg {
    /// What a frame's width measures: cycles, opcodes, alloc-bytes or alloc-count.
    #[arg(long, value_parser = parse_weight, default_value = "cycles")]
    pub weight: Weight,
}
