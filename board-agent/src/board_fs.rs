//! The script's own modules on a real board (`--device`): copied through
//! the raw REPL into the board's filesystem before the run and removed after
//! it, as a user would with `mpremote cp`. Modules beside the script go to
//! the board's current directory (the `''` first on its `sys.path`, so they
//! come before frozen modules, as the script's directory does on the host),
//! those from `--path` to the `lib` directory on its `sys.path` (`/lib`,
//! `/flash/lib`). The emulated board, driven as a device, has no writable
//! filesystem but has our firmware's RAM ROMFS: it gets the same `/rom` as
//! `--target qemu` ([`FilesHome::RamRomfs`]).

use crate::romfs::RomFile;

/// Where a board keeps the script's modules for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilesHome {
    /// Our firmware on the emulated board: a ROMFS image in its RAM,
    /// mounted at `/rom` ([`crate::board::Board::put_romfs`]).
    RamRomfs,
    /// A board with a filesystem: its current directory and the `lib`
    /// directory on its `sys.path`.
    Filesystem { cwd: String, lib: String },
}

/// A raw-REPL program that says where the board can keep modules, one line
/// each: its platform, whether it has our RAM ROMFS (`vfs.rom_ioctl` on the
/// qemu port), its current directory, the first `sys.path` entry ending in
/// `/lib` (or nothing) and whether `sys.path` starts with `''`.
pub const PROBE: &str = "import sys, os
try:
    import vfs
    _r = hasattr(vfs, 'rom_ioctl')
except ImportError:
    _r = False
print(sys.platform)
print('rom' if _r and sys.platform == 'qemu' else 'norom')
print(os.getcwd())
print(([p for p in sys.path if p.endswith('/lib')] + [''])[0])
print('cwd-first' if sys.path and sys.path[0] == '' else 'no-cwd')
";

/// [`PROBE`]'s answer as a [`FilesHome`], or why the modules cannot go on
/// this board.
pub fn parse_probe(answer: &str) -> Result<FilesHome, String> {
    let lines: Vec<&str> = answer.lines().map(str::trim_end).collect();
    let [platform, rom, cwd, lib, first, ..] = lines[..] else {
        return Err(format!("the board's answer to the probe: {answer:?}"));
    };
    if rom == "rom" {
        return Ok(FilesHome::RamRomfs);
    }
    if first != "cwd-first" {
        return Err(format!(
            "the board's ({platform}) sys.path does not start with '' (its current directory), so modules copied there would not be found: copy them to a directory on its sys.path yourself (mpremote cp)"
        ));
    }
    Ok(FilesHome::Filesystem {
        cwd: cwd.to_string(),
        lib: if lib.is_empty() {
            join(cwd, "lib")
        } else {
            lib.to_string()
        },
    })
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// One module's place on the board: the path it is written to, and the
/// name MicroPython gives it when imported (the `''` entry of `sys.path`
/// gives a relative name: `units.py`, `pkg/__init__.py`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub path: String,
    pub name: String,
}

/// Where each of `files` (by their paths under `/rom`: `units.py`,
/// `lib/util.py`) goes in the board's filesystem.
pub fn place(file: &RomFile, cwd: &str, lib: &str) -> Placed {
    match file.path.strip_prefix("lib/") {
        Some(rest) => {
            let path = join(lib, rest);
            Placed {
                name: path.clone(),
                path,
            }
        }
        None => Placed {
            path: join(cwd, &file.path),
            name: file.path.clone(),
        },
    }
}

/// The directories `path` needs, outermost first, below `root` (the
/// current directory, which exists): `/lib/pkg/a.py` under `/` gives
/// `/lib`, `/lib/pkg`.
pub fn parent_dirs(path: &str, root: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut at = 0;
    while let Some(i) = path[at..].find('/') {
        let dir = &path[..at + i];
        at += i + 1;
        if dir.is_empty() || dir.len() <= root.trim_end_matches('/').len() {
            continue;
        }
        dirs.push(dir.to_string());
    }
    dirs
}

/// A Python string literal of `s`.
pub fn str_literal(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if (' '..='~').contains(&c) => out.push(c),
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out.push('\'');
    out
}

/// A program printing what `path` is on the board: `absent`, `dir`, or
/// `file SIZE`.
pub fn stat_program(path: &str) -> String {
    format!(
        "import os\ntry:\n    _s = os.stat({p})\n    print('dir' if _s[0] & 0x4000 else 'file', _s[6])\nexcept OSError:\n    print('absent')\n",
        p = str_literal(path)
    )
}

/// A program printing `len` bytes of the file at `path` from `offset`, in
/// hex.
pub fn read_program(path: &str, offset: usize, len: usize) -> String {
    format!(
        "import binascii\nwith open({p}, 'rb') as _f:\n    _f.seek({offset})\n    print(binascii.hexlify(_f.read({len})).decode())\n",
        p = str_literal(path)
    )
}

/// Programs that write `data` to `path`, each small enough for a board's
/// heap.
pub fn write_programs(path: &str, data: &[u8]) -> Vec<String> {
    const CHUNK: usize = 1024;
    let mut programs = Vec::new();
    let mut chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for (i, chunk) in chunks.into_iter().enumerate() {
        programs.push(format!(
            "with open({p}, {mode}) as _f:\n    _f.write({b})\n",
            p = str_literal(path),
            mode = if i == 0 { "'wb'" } else { "'ab'" },
            b = crate::romfs::bytes_literal(chunk)
        ));
    }
    programs
}

/// A program that makes the directory `dir`.
pub fn mkdir_program(dir: &str) -> String {
    format!("import os\nos.mkdir({})\n", str_literal(dir))
}

/// A program that removes `files`, then `dirs` (innermost first), saying
/// each it could not remove.
pub fn remove_program(files: &[String], dirs: &[String]) -> String {
    let list = |v: &[String]| {
        let items: Vec<String> = v.iter().map(|s| str_literal(s)).collect();
        format!("[{}]", items.join(", "))
    };
    format!(
        "import os\nfor _p in {}:\n    try:\n        os.remove(_p)\n    except OSError:\n        print('not removed:', _p)\nfor _d in {}:\n    try:\n        os.rmdir(_d)\n    except OSError:\n        print('not removed:', _d)\n",
        list(files),
        list(dirs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_answer_says_where_modules_go() {
        assert_eq!(
            parse_probe("qemu\nrom\n/\n\nno-cwd\n"),
            Ok(FilesHome::RamRomfs)
        );
        assert_eq!(
            parse_probe("rp2\nnorom\n/\n/lib\ncwd-first\n"),
            Ok(FilesHome::Filesystem {
                cwd: "/".into(),
                lib: "/lib".into()
            })
        );
        assert_eq!(
            parse_probe("pyboard\r\nnorom\r\n/flash\r\n\r\ncwd-first\r\n"),
            Ok(FilesHome::Filesystem {
                cwd: "/flash".into(),
                lib: "/flash/lib".into()
            })
        );
        let e = parse_probe("esp32\nnorom\n/\n/lib\nno-cwd\n").unwrap_err();
        assert!(e.contains("mpremote cp"), "{e}");
        assert!(parse_probe("garbage").is_err());
    }

    #[test]
    fn modules_beside_the_script_go_to_the_current_directory_and_path_ones_to_lib() {
        let f = |p: &str| RomFile {
            path: p.into(),
            data: Vec::new(),
        };
        assert_eq!(
            place(&f("pkg/__init__.py"), "/", "/lib"),
            Placed {
                path: "/pkg/__init__.py".into(),
                name: "pkg/__init__.py".into()
            }
        );
        assert_eq!(
            place(&f("lib/util.py"), "/flash", "/flash/lib"),
            Placed {
                path: "/flash/lib/util.py".into(),
                name: "/flash/lib/util.py".into()
            }
        );
        assert_eq!(parent_dirs("/lib/pkg/a.py", "/"), ["/lib", "/lib/pkg"]);
        assert_eq!(parent_dirs("/flash/a.py", "/flash"), Vec::<String>::new());
        assert_eq!(parent_dirs("/a.py", "/"), Vec::<String>::new());
    }
}
