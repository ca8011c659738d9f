//! The script's own modules for the emulated board: a ROMFS image (the
//! read-only filesystem format of MicroPython's `extmod/vfs_rom.c`) that the
//! firmware mounts at `/rom` at every start-up, with `/rom` and `/rom/lib`
//! on `sys.path`, and the raw-REPL code that writes it into the board's RAM
//! before the run.
//!
//! The format, as upstream's source describes it: records of a kind and a
//! payload length (both big-endian varuints, 7 bits a byte, the high bit set
//! on all but the last) and the payload; the image is one record of kind
//! 0x14a6b1 (encoded "RM1" with the first two high bits set) holding
//! directory (4) and file (5) records, each its name's length, the name and
//! nested records; a file's bytes are a verbatim-data record (2). The whole
//! image has an even length.

/// Where the firmware looks for the image (our `mpprof_qemu_romfs.c`, or
/// the port's own ROMFS partition, moved here by the vm-instrumented crate
/// where the port has one) and how much room it has.
pub const ROMFS_ADDR: u32 = 0x2180_0000;
pub const ROMFS_MAX: usize = 8 * 1024 * 1024;

const KIND_DATA: u64 = 2;
const KIND_DIRECTORY: u64 = 4;
const KIND_FILE: u64 = 5;
const KIND_FILESYSTEM: u64 = 0x14a6b1;

/// One file for the board: its path under `/rom` (`sensor.py`,
/// `drivers/__init__.py`, `lib/util.py`) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RomFile {
    pub path: String,
    pub data: Vec<u8>,
}

fn put_varuint(out: &mut Vec<u8>, v: u64) {
    let mut groups = vec![(v & 0x7f) as u8];
    let mut rest = v >> 7;
    while rest != 0 {
        groups.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.extend(groups.iter().rev());
}

fn record(kind: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(payload.len() + 8);
    put_varuint(&mut r, kind);
    put_varuint(&mut r, payload.len() as u64);
    r.extend_from_slice(payload);
    r
}

fn named(kind: u64, name: &str, nested: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(name.len() + nested.len() + 4);
    put_varuint(&mut payload, name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(nested);
    record(kind, &payload)
}

/// The records of a directory's entries (files given by their paths below
/// it), directories before files, each sorted by name.
fn entries(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dirs: std::collections::BTreeMap<&str, Vec<(&str, &[u8])>> = Default::default();
    let mut plain: Vec<(&str, &[u8])> = Vec::new();
    for &(path, data) in files {
        match path.split_once('/') {
            Some((dir, rest)) => dirs.entry(dir).or_default().push((rest, data)),
            None => plain.push((path, data)),
        }
    }
    for (dir, inner) in &dirs {
        out.extend(named(KIND_DIRECTORY, dir, &entries(inner)));
    }
    plain.sort_by_key(|f| f.0);
    for (name, data) in plain {
        out.extend(named(KIND_FILE, name, &record(KIND_DATA, data)));
    }
    out
}

/// The ROMFS image of `files`.
pub fn image(files: &[RomFile]) -> Vec<u8> {
    let list: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| (f.path.as_str(), f.data.as_slice()))
        .collect();
    let body = entries(&list);
    let mut img = record(KIND_FILESYSTEM, &body);
    if img.len() % 2 == 1 {
        // Pad the length's varuint with a leading 0x80 (the format allows
        // it; the kind's bytes must stay "RM1").
        let mut padded = Vec::with_capacity(img.len() + 1);
        put_varuint(&mut padded, KIND_FILESYSTEM);
        padded.push(0x80);
        put_varuint(&mut padded, body.len() as u64);
        padded.extend_from_slice(&body);
        img = padded;
    }
    img
}

/// `data` as a Python bytes literal: printable ASCII as itself, the rest
/// escaped.
pub(crate) fn bytes_literal(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() + 3);
    s.push_str("b'");
    for &b in data {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('\'');
    s
}

/// Raw-REPL programs that write `image` at [`ROMFS_ADDR`], each small
/// enough for a board's heap: the first clears the image's first bytes (a
/// half-written image is never mounted), the last writes them.
pub fn writer_programs(image: &[u8]) -> Vec<String> {
    const CHUNK: usize = 2048;
    let head = image.len().min(4);
    let at = |offset: usize, data: &[u8]| {
        format!(
            "import uctypes\nuctypes.bytearray_at({}, {})[:] = {}\n",
            ROMFS_ADDR as usize + offset,
            data.len(),
            bytes_literal(data)
        )
    };
    let mut programs = vec![at(0, &[0u8; 4][..head])];
    let mut offset = head;
    while offset < image.len() {
        let end = (offset + CHUNK).min(image.len());
        programs.push(at(offset, &image[offset..end]));
        offset = end;
    }
    programs.push(at(0, &image[..head]));
    programs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_starts_rm1_and_has_an_even_length() {
        for n in 0..4 {
            let img = image(&[RomFile {
                path: "a.py".into(),
                data: vec![b'x'; n],
            }]);
            assert_eq!(&img[..3], &[0xd2, 0xcd, 0x31]);
            assert_eq!(img.len() % 2, 0, "{img:?}");
        }
    }

    #[test]
    fn directories_nest_and_files_carry_their_bytes() {
        let img = image(&[
            RomFile {
                path: "pkg/__init__.py".into(),
                data: b"X = 1\n".to_vec(),
            },
            RomFile {
                path: "m.py".into(),
                data: b"Y = 2\n".to_vec(),
            },
        ]);
        // kind 4, then "pkg", then the file record inside it.
        let dir = img.windows(5).position(|w| w == b"\x03pkg\x05").unwrap();
        assert_eq!(img[dir - 2], 4);
        assert!(img.windows(6).any(|w| w == b"X = 1\n"));
        assert!(img.windows(5).any(|w| w == b"\x04m.py"));
    }

    #[test]
    fn varuints_are_big_endian_with_continuation_bits() {
        let mut v = Vec::new();
        put_varuint(&mut v, 0x14a6b1);
        assert_eq!(v, b"\xd2\xcd\x31");
        v.clear();
        put_varuint(&mut v, 127);
        assert_eq!(v, [127]);
    }

    #[test]
    fn the_writers_clear_the_head_first_and_write_it_last() {
        let img = image(&[RomFile {
            path: "m.py".into(),
            data: vec![b'\''; 5000],
        }]);
        let p = writer_programs(&img);
        assert!(p[0].contains("[:] = b'\\x00\\x00\\x00\\x00'"), "{}", p[0]);
        assert!(p.last().unwrap().contains("b'\\xd2\\xcd1"));
        assert!(p.len() >= 4);
    }
}
