//! Reading an RTT up-buffer over any memory-access backend: qemu's gdbstub
//! here, a debug probe (probe-rs) on hardware. The control block uses
//! SEGGER's published layout on 32-bit targets: a 16-byte id
//! ("SEGGER RTT"), the number of up and down buffers, then 24-byte buffer
//! records (name, buffer, size, write offset, read offset, flags).

/// Target memory, read and written in batches (`begin` .. `end`).
pub trait MemoryAccess {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Start a batch of accesses (a halting backend halts here).
    fn begin(&mut self) -> Result<(), Self::Error>;
    /// End the batch (the target runs again).
    fn end(&mut self) -> Result<(), Self::Error>;
    fn read(&mut self, addr: u32, out: &mut [u8]) -> Result<(), Self::Error>;
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), Self::Error>;
}

pub const RTT_ID: &[u8] = b"SEGGER RTT";
const CB_HEADER: u32 = 24;
const BUFFER_RECORD: u32 = 24;

#[derive(Debug, thiserror::Error)]
pub enum RttError<E: std::error::Error + 'static> {
    #[error("target memory: {0}")]
    Memory(#[source] E),
    #[error("no RTT control block found in {start:#x}..{end:#x}: is the firmware built with mpprof, and has it started?")]
    NotFound { start: u32, end: u32 },
    #[error("the RTT control block at {addr:#x} is malformed ({why})")]
    Malformed { addr: u32, why: &'static str },
}

/// An up-buffer (target → host) found in a control block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpChannel {
    /// Address of the buffer record (its fields follow at +4, +8, +12, +16).
    pub record: u32,
    pub buffer: u32,
    pub size: u32,
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Find the control block by scanning `start..end` for its id.
pub fn find_control_block<M: MemoryAccess>(
    mem: &mut M,
    start: u32,
    end: u32,
) -> Result<u32, RttError<M::Error>> {
    let chunk = 4096u32;
    let mut buf = vec![0u8; (chunk + 16) as usize];
    let mut addr = start;
    mem.begin().map_err(RttError::Memory)?;
    let found = (|| {
        while addr < end {
            let n = (end - addr).min(chunk + 16);
            let slice = &mut buf[..n as usize];
            mem.read(addr, slice).map_err(RttError::Memory)?;
            if let Some(pos) = slice
                .windows(RTT_ID.len() + 1)
                .position(|w| &w[..RTT_ID.len()] == RTT_ID && w[RTT_ID.len()] == 0)
            {
                return Ok(Some(addr + pos as u32));
            }
            addr = addr.saturating_add(chunk);
        }
        Ok(None)
    })();
    mem.end().map_err(RttError::Memory)?;
    match found? {
        Some(a) => Ok(a),
        None => Err(RttError::NotFound { start, end }),
    }
}

/// Read the first up channel's record from the control block at `cb`.
pub fn up_channel<M: MemoryAccess>(mem: &mut M, cb: u32) -> Result<UpChannel, RttError<M::Error>> {
    let mut hdr = [0u8; (CB_HEADER + BUFFER_RECORD) as usize];
    mem.begin().map_err(RttError::Memory)?;
    let r = mem.read(cb, &mut hdr).map_err(RttError::Memory);
    mem.end().map_err(RttError::Memory)?;
    r?;
    if &hdr[..RTT_ID.len()] != RTT_ID {
        return Err(RttError::Malformed {
            addr: cb,
            why: "id",
        });
    }
    let max_up = le32(&hdr[16..20]);
    if max_up == 0 || max_up > 16 {
        return Err(RttError::Malformed {
            addr: cb,
            why: "number of up buffers",
        });
    }
    let rec = &hdr[CB_HEADER as usize..];
    let ch = UpChannel {
        record: cb + CB_HEADER,
        buffer: le32(&rec[4..8]),
        size: le32(&rec[8..12]),
    };
    if ch.size < 2 || ch.size > 16 * 1024 * 1024 {
        return Err(RttError::Malformed {
            addr: cb,
            why: "buffer size",
        });
    }
    Ok(ch)
}

/// Drain whatever the target has written to `ch` into `out`; returns the
/// number of bytes read. Advances the target's read offset, freeing the space.
pub fn drain<M: MemoryAccess>(
    mem: &mut M,
    ch: &UpChannel,
    out: &mut Vec<u8>,
) -> Result<usize, RttError<M::Error>> {
    mem.begin().map_err(RttError::Memory)?;
    let r = drain_halted(mem, ch, out);
    mem.end().map_err(RttError::Memory)?;
    r
}

fn drain_halted<M: MemoryAccess>(
    mem: &mut M,
    ch: &UpChannel,
    out: &mut Vec<u8>,
) -> Result<usize, RttError<M::Error>> {
    let mut offs = [0u8; 8];
    mem.read(ch.record + 12, &mut offs)
        .map_err(RttError::Memory)?;
    let wr = le32(&offs[0..4]);
    let rd = le32(&offs[4..8]);
    if wr >= ch.size || rd >= ch.size {
        return Err(RttError::Malformed {
            addr: ch.record,
            why: "read or write offset past the buffer",
        });
    }
    if wr == rd {
        return Ok(0);
    }
    let start = out.len();
    if wr > rd {
        out.resize(start + (wr - rd) as usize, 0);
        mem.read(ch.buffer + rd, &mut out[start..])
            .map_err(RttError::Memory)?;
    } else {
        let first = (ch.size - rd) as usize;
        out.resize(start + first + wr as usize, 0);
        mem.read(ch.buffer + rd, &mut out[start..start + first])
            .map_err(RttError::Memory)?;
        if wr > 0 {
            mem.read(ch.buffer, &mut out[start + first..])
                .map_err(RttError::Memory)?;
        }
    }
    mem.write(ch.record + 16, &wr.to_le_bytes())
        .map_err(RttError::Memory)?;
    Ok(out.len() - start)
}

/// The address of a symbol in an ELF file's symbol table (the RTT control
/// block is `_SEGGER_RTT`).
pub fn elf_symbol(elf: &std::path::Path, name: &str) -> Result<u32, String> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(elf).map_err(|e| format!("cannot read {}: {e}", elf.display()))?;
    let file = object::File::parse(&*data)
        .map_err(|e| format!("{} is not an ELF file: {e}", elf.display()))?;
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .and_then(|s| u32::try_from(s.address()).ok())
        .ok_or_else(|| {
            format!(
                "{} has no {name} symbol: not a firmware built with mpprof's RTT transport",
                elf.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain RAM as a memory backend, laid out as a target would.
    struct Ram {
        base: u32,
        bytes: Vec<u8>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("out of range")]
    struct OutOfRange;

    impl MemoryAccess for Ram {
        type Error = OutOfRange;
        fn begin(&mut self) -> Result<(), OutOfRange> {
            Ok(())
        }
        fn end(&mut self) -> Result<(), OutOfRange> {
            Ok(())
        }
        fn read(&mut self, addr: u32, out: &mut [u8]) -> Result<(), OutOfRange> {
            let s = addr.checked_sub(self.base).ok_or(OutOfRange)? as usize;
            let src = self.bytes.get(s..s + out.len()).ok_or(OutOfRange)?;
            out.copy_from_slice(src);
            Ok(())
        }
        fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), OutOfRange> {
            let s = addr.checked_sub(self.base).ok_or(OutOfRange)? as usize;
            let dst = self.bytes.get_mut(s..s + data.len()).ok_or(OutOfRange)?;
            dst.copy_from_slice(data);
            Ok(())
        }
    }

    fn put32(ram: &mut Ram, addr: u32, v: u32) {
        ram.write(addr, &v.to_le_bytes()).unwrap();
    }

    /// A control block at 0x1100 with a 16-byte up buffer at 0x1200.
    fn target() -> Ram {
        let mut ram = Ram {
            base: 0x1000,
            bytes: vec![0xee; 0x400],
        };
        let cb = 0x1100;
        let mut id = [0u8; 16];
        id[..10].copy_from_slice(RTT_ID);
        ram.write(cb, &id).unwrap();
        put32(&mut ram, cb + 16, 1);
        put32(&mut ram, cb + 20, 1);
        put32(&mut ram, cb + 24, 0); // name
        put32(&mut ram, cb + 28, 0x1200); // buffer
        put32(&mut ram, cb + 32, 16); // size
        put32(&mut ram, cb + 36, 0); // wr
        put32(&mut ram, cb + 40, 0); // rd
        ram
    }

    #[test]
    fn finds_block_and_drains_with_wraparound() {
        let mut ram = target();
        let cb = find_control_block(&mut ram, 0x1000, 0x1400).unwrap();
        assert_eq!(cb, 0x1100);
        let ch = up_channel(&mut ram, cb).unwrap();
        assert_eq!(
            ch,
            UpChannel {
                record: 0x1118,
                buffer: 0x1200,
                size: 16
            }
        );

        // The target writes 10 bytes.
        ram.write(0x1200, b"0123456789").unwrap();
        put32(&mut ram, 0x1118 + 12, 10);
        let mut out = Vec::new();
        assert_eq!(drain(&mut ram, &ch, &mut out).unwrap(), 10);
        assert_eq!(out, b"0123456789");
        // The read offset was advanced for the target.
        let mut rd = [0u8; 4];
        ram.read(0x1118 + 16, &mut rd).unwrap();
        assert_eq!(u32::from_le_bytes(rd), 10);

        // Then 9 more, wrapping past the end of the 16-byte buffer.
        ram.write(0x120a, b"abcdef").unwrap();
        ram.write(0x1200, b"ghi").unwrap();
        put32(&mut ram, 0x1118 + 12, 3);
        out.clear();
        assert_eq!(drain(&mut ram, &ch, &mut out).unwrap(), 9);
        assert_eq!(out, b"abcdefghi");
        assert_eq!(drain(&mut ram, &ch, &mut out).unwrap(), 0);
    }

    #[test]
    fn missing_or_corrupt_block_is_an_error() {
        let mut ram = Ram {
            base: 0,
            bytes: vec![0; 256],
        };
        assert!(matches!(
            find_control_block(&mut ram, 0, 256),
            Err(RttError::NotFound { .. })
        ));
        let mut ram = target();
        put32(&mut ram, 0x1118 + 12, 999); // write offset past the buffer
        let ch = up_channel(&mut ram, 0x1100).unwrap();
        assert!(matches!(
            drain(&mut ram, &ch, &mut Vec::new()),
            Err(RttError::Malformed { .. })
        ));
    }
}
