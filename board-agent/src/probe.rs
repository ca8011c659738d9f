//! Real boards through a debug probe, with probe-rs: attach, optionally
//! flash, and read the RTT up-buffer while the core runs. The RTT parsing is
//! ours ([`crate::rtt`]), the same code that reads the emulated board through
//! qemu's gdbstub; probe-rs only provides the memory access.

use std::path::Path;

use probe_rs::probe::list::Lister;
use probe_rs::probe::DebugProbeSelector;
use probe_rs::{MemoryInterface, Permissions, Session};

use crate::board::{RttReader, RttSource};
use crate::rtt::{self, MemoryAccess};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no debug probe found: plug one in (and check the udev rules that let you use it), then see `mpprof devices`")]
    NoProbe,
    #[error("{0} debug probes are attached: choose one with --probe VID:PID[:SERIAL] (see `mpprof devices`)")]
    Several(usize),
    #[error(
        "`{0}` is not a probe selector: write VID:PID or VID:PID:SERIAL in hex, e.g. 2e8a:000c"
    )]
    Selector(String),
    #[error("cannot open the debug probe {probe}: {why}")]
    Open { probe: String, why: String },
    #[error("cannot attach to the chip `{chip}`: {why} (chip names are probe-rs's, e.g. RP2040, STM32F405RGTx, nRF52840_xxAA)")]
    Attach { chip: String, why: String },
    #[error("cannot flash {path}: {why}")]
    Flash { path: String, why: String },
    #[error("RTT: {0}")]
    Rtt(String),
}

/// One attached probe, as `mpprof devices` lists it.
#[derive(Debug, Clone)]
pub struct ProbeInfo {
    pub name: String,
    /// `VID:PID[:SERIAL]`, what `--probe` takes.
    pub selector: String,
}

/// The debug probes attached to this machine.
pub fn list_probes() -> Vec<ProbeInfo> {
    Lister::new()
        .list_all()
        .into_iter()
        .map(|p| ProbeInfo {
            name: p.identifier.clone(),
            selector: match &p.serial_number {
                Some(s) => format!("{:04x}:{:04x}:{s}", p.vendor_id, p.product_id),
                None => format!("{:04x}:{:04x}", p.vendor_id, p.product_id),
            },
        })
        .collect()
}

/// Parse a `VID:PID[:SERIAL]` selector (without touching any hardware).
pub fn parse_selector(s: &str) -> Result<DebugProbeSelector, ProbeError> {
    let mut parts = s.split(':');
    let hex = |p: Option<&str>| p.and_then(|v| u16::from_str_radix(v, 16).ok());
    match (hex(parts.next()), hex(parts.next())) {
        (Some(_), Some(_)) => {}
        _ => return Err(ProbeError::Selector(s.to_string())),
    }
    s.parse::<DebugProbeSelector>()
        .map_err(|_| ProbeError::Selector(s.to_string()))
}

/// What to attach to.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// `VID:PID[:SERIAL]`; `None` takes the only probe attached.
    pub selector: Option<String>,
    pub chip: String,
    /// Flash this ELF first (and reset the chip).
    pub flash: Option<std::path::PathBuf>,
    /// The firmware's ELF, for the `_SEGGER_RTT` symbol; without it RAM is
    /// scanned for the control block.
    pub elf: Option<std::path::PathBuf>,
}

/// Target memory through probe-rs. Cortex-M cores can be read while they
/// run, so `begin`/`end` do not halt.
pub struct ProbeMemory {
    session: Session,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProbeMemoryError(String);

impl MemoryAccess for ProbeMemory {
    type Error = ProbeMemoryError;
    fn begin(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn read(&mut self, addr: u32, out: &mut [u8]) -> Result<(), Self::Error> {
        let mut core = self
            .session
            .core(0)
            .map_err(|e| ProbeMemoryError(e.to_string()))?;
        core.read(u64::from(addr), out)
            .map_err(|e| ProbeMemoryError(e.to_string()))
    }
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), Self::Error> {
        let mut core = self
            .session
            .core(0)
            .map_err(|e| ProbeMemoryError(e.to_string()))?;
        core.write(u64::from(addr), data)
            .map_err(|e| ProbeMemoryError(e.to_string()))
    }
}

/// Attach (and flash when asked), find the RTT control block, and return a
/// reader of its up-channel.
pub fn attach(opts: &ProbeOptions) -> Result<Box<dyn RttSource>, ProbeError> {
    // Check what needs no hardware first, so a typo is reported as one.
    let selector = opts.selector.as_deref().map(parse_selector).transpose()?;
    let rtt_symbol = match &opts.elf {
        Some(elf) => Some(rtt::elf_symbol(elf, "_SEGGER_RTT").map_err(ProbeError::Rtt)?),
        None => None,
    };
    let lister = Lister::new();
    let probe = match selector {
        Some(sel) => lister.open(sel).map_err(|e| ProbeError::Open {
            probe: opts.selector.clone().unwrap_or_default(),
            why: e.to_string(),
        })?,
        None => {
            let all = lister.list_all();
            match all.len() {
                0 => return Err(ProbeError::NoProbe),
                1 => all[0].open().map_err(|e| ProbeError::Open {
                    probe: all[0].identifier.clone(),
                    why: e.to_string(),
                })?,
                n => return Err(ProbeError::Several(n)),
            }
        }
    };
    let mut session = probe
        .attach(opts.chip.as_str(), Permissions::default())
        .map_err(|e| ProbeError::Attach {
            chip: opts.chip.clone(),
            why: e.to_string(),
        })?;
    if let Some(path) = &opts.flash {
        flash(&mut session, path)?;
    }
    let ram: Vec<(u32, u32)> = session
        .target()
        .memory_map
        .iter()
        .filter_map(|r| match r {
            probe_rs::config::MemoryRegion::Ram(ram) => Some((
                u32::try_from(ram.range.start).ok()?,
                u32::try_from(ram.range.end).ok()?,
            )),
            _ => None,
        })
        .collect();
    let mut mem = ProbeMemory { session };
    // A board just flashed and reset (or just powered) sets its control
    // block up as MicroPython starts: give it a few seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let channel = loop {
        match find_channel(&mut mem, rtt_symbol, &ram) {
            Ok(ch) => break ch,
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    };
    Ok(Box::new(RttReader { mem, channel }))
}

/// The up-channel of the control block at `symbol`, or found in `ram`.
fn find_channel(
    mem: &mut ProbeMemory,
    symbol: Option<u32>,
    ram: &[(u32, u32)],
) -> Result<crate::rtt::UpChannel, ProbeError> {
    let cb = match symbol {
        Some(a) => a,
        None => ram
            .iter()
            .find_map(|&(start, end)| rtt::find_control_block(mem, start, end).ok())
            .ok_or_else(|| {
                ProbeError::Rtt("no RTT control block in the chip's RAM: is the firmware built with mpprof (see docs/boards.md), and has it booted? Give --elf FIRMWARE.elf to look up `_SEGGER_RTT` instead".into())
            })?,
    };
    rtt::up_channel(mem, cb).map_err(|e| ProbeError::Rtt(e.to_string()))
}

fn flash(session: &mut Session, path: &Path) -> Result<(), ProbeError> {
    let err = |why: String| ProbeError::Flash {
        path: path.display().to_string(),
        why,
    };
    probe_rs::flashing::download_file(
        session,
        path,
        probe_rs::flashing::ElfLoader(Default::default()),
    )
    .map_err(|e| err(e.to_string()))?;
    let mut core = session.core(0).map_err(|e| err(e.to_string()))?;
    core.reset().map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_checked_before_any_hardware_is_touched() {
        assert!(parse_selector("2e8a:000c").is_ok());
        assert!(parse_selector("0483:374b:0669FF5").is_ok());
        for bad in ["", "2e8a", "xyz:000c", "rp2040"] {
            let e = parse_selector(bad).unwrap_err();
            assert!(e.to_string().contains("VID:PID"), "{bad}: {e}");
        }
    }
}
