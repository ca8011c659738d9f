//! The emulated board's RAM at 0x21000000, backed by a host file
//! (`-object memory-backend-file,...,share=on`): the host reads the RTT
//! buffer there while the guest runs, without the gdbstub's stop-the-world
//! round trips. A fast path for the emulated board only: real boards are
//! read through a probe.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::rtt::MemoryAccess;

/// Where the MPS2's RAM starts, and its size.
pub const BASE: u32 = 0x2100_0000;
pub const SIZE: u64 = 16 * 1024 * 1024;

/// The file qemu maps as the board's RAM; removed when dropped.
pub struct SharedRamFile {
    pub path: PathBuf,
}

impl SharedRamFile {
    /// A new file of zeros (the RAM's power-on state) in `dir`.
    pub fn create(dir: &Path) -> std::io::Result<SharedRamFile> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.join(format!("mpprof-ram-{}-{n}", std::process::id()));
        let f = File::create(&path)?;
        f.set_len(SIZE)?;
        Ok(SharedRamFile { path })
    }

    pub fn open(&self) -> std::io::Result<SharedRam> {
        Ok(SharedRam {
            file: File::options().read(true).write(true).open(&self.path)?,
        })
    }
}

impl Drop for SharedRamFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads and writes of the board's RAM through the file.
pub struct SharedRam {
    file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum SharedRamError {
    #[error("{addr:#x}+{len} is outside the shared RAM ({BASE:#x}, 16 MiB)")]
    Range { addr: u32, len: usize },
    #[error("shared RAM file: {0}")]
    Io(#[from] std::io::Error),
}

impl SharedRam {
    fn offset(addr: u32, len: usize) -> Result<u64, SharedRamError> {
        let off = u64::from(
            addr.checked_sub(BASE)
                .ok_or(SharedRamError::Range { addr, len })?,
        );
        if off + len as u64 > SIZE {
            return Err(SharedRamError::Range { addr, len });
        }
        Ok(off)
    }
}

impl MemoryAccess for SharedRam {
    type Error = SharedRamError;
    fn begin(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn read(&mut self, addr: u32, out: &mut [u8]) -> Result<(), Self::Error> {
        let off = Self::offset(addr, out.len())?;
        self.file.read_exact_at(out, off)?;
        Ok(())
    }
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), Self::Error> {
        let off = Self::offset(addr, data.len())?;
        self.file.write_all_at(data, off)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_land_at_their_offsets_and_stay_in_range() {
        let f = SharedRamFile::create(&std::env::temp_dir()).unwrap();
        let mut ram = f.open().unwrap();
        ram.write(BASE + 100, b"abc").unwrap();
        let mut out = [0u8; 5];
        ram.read(BASE + 99, &mut out).unwrap();
        assert_eq!(&out, b"\0abc\0");
        assert!(ram.read(BASE - 1, &mut out).is_err());
        assert!(ram.read(BASE + SIZE as u32 - 2, &mut out).is_err());
        let path = f.path.clone();
        drop(f);
        assert!(!path.exists());
    }
}
