//! The script's own modules, for a board: what the script imports from its
//! directory (modules beside it and packages, followed through what those
//! import), read here and copied to the emulated board's `/rom` before the
//! run, as `mpremote` users copy a project. Imports are found by reading
//! each file's `import` and `from` statements; a name that is not a file or
//! package beside the script (a built-in or frozen module) is left to the
//! board.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use board_agent::romfs::RomFile;
use board_agent::BoardFiles;

/// The directory the board mounts the files at.
pub const BOARD_DIR: &str = "/rom";

/// The top-level module names a source imports (`import a.b, c` gives a
/// and c; `from x.y import z` gives x; relative imports stay inside their
/// package, which is copied whole).
fn imported_names(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in source.lines() {
        let code = line.split('#').next().unwrap_or("").trim();
        if let Some(rest) = code.strip_prefix("import ") {
            for part in rest.split(',') {
                if let Some(name) = part.split_whitespace().next() {
                    names.push(name.split('.').next().unwrap_or(name).to_string());
                }
            }
        } else if let Some(rest) = code.strip_prefix("from ") {
            if let Some(name) = rest.split_whitespace().next() {
                if !name.starts_with('.') {
                    names.push(name.split('.').next().unwrap_or(name).to_string());
                }
            }
        }
    }
    names.retain(|n| !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_'));
    names
}

/// Every `.py` file under `dir` (a package), by its path relative to `base`.
fn package_files(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        if p.is_dir() {
            package_files(base, &p, out)?;
        } else if name.ends_with(".py") {
            out.push(p.strip_prefix(base).unwrap_or(&p).to_path_buf());
        }
    }
    Ok(())
}

/// Where a module was found: the directory it is looked up in, the name
/// the host gives that directory, and its place under `/rom`.
struct SearchDir {
    dir: PathBuf,
    host_dir: PathBuf,
    rom_prefix: &'static str,
}

/// The files `script` needs from its directory and from `path` (`--path`,
/// copied to `/rom/lib`), with the names the board and the host give them:
/// the host's as the host target names them (the script as given; a module
/// beside it by its real path, since the unix port puts the script's real
/// directory first on `sys.path`; one from `path` by that directory as
/// given, as MICROPYPATH's entries are used).
pub fn script_modules(script: &Path, path: &[PathBuf]) -> Result<BoardFiles> {
    let dir = script.parent().unwrap_or(Path::new(""));
    let lookup_dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut search = vec![SearchDir {
        dir: lookup_dir.to_path_buf(),
        host_dir: std::fs::canonicalize(lookup_dir).unwrap_or_else(|_| dir.to_path_buf()),
        rom_prefix: "",
    }];
    for p in path {
        if !p.is_dir() {
            anyhow::bail!(
                "--path {}: not a directory; give a directory of modules",
                p.display()
            );
        }
        search.push(SearchDir {
            dir: p.clone(),
            host_dir: p.clone(),
            rom_prefix: "lib/",
        });
    }
    let script_source = std::fs::read_to_string(script)
        .with_context(|| format!("cannot read {}", script.display()))?;
    let mut wanted: VecDeque<String> = imported_names(&script_source).into();
    let mut seen_names = BTreeSet::new();
    // (search dir, path in it)
    let mut chosen: BTreeSet<(usize, PathBuf)> = BTreeSet::new();
    while let Some(name) = wanted.pop_front() {
        if !seen_names.insert(name.clone()) {
            continue;
        }
        // The first directory that has it, as sys.path is searched.
        for (i, d) in search.iter().enumerate() {
            let module = d.dir.join(format!("{name}.py"));
            let package = d.dir.join(&name);
            let mut found = Vec::new();
            if package.join("__init__.py").is_file() {
                package_files(&d.dir, &package, &mut found)?;
            } else if module.is_file() && module != script {
                found.push(PathBuf::from(format!("{name}.py")));
            }
            if found.is_empty() {
                continue;
            }
            for rel in found {
                if chosen.insert((i, rel.clone())) {
                    let text = std::fs::read_to_string(d.dir.join(&rel)).unwrap_or_default();
                    wanted.extend(imported_names(&text));
                }
            }
            break;
        }
    }
    let mut files = BoardFiles::default();
    files
        .names
        .push(("<stdin>".into(), script.display().to_string()));
    for (i, rel) in chosen {
        let d = &search[i];
        let rel_text = rel.to_string_lossy().replace('\\', "/");
        let on_board = format!("{}{rel_text}", d.rom_prefix);
        let data = std::fs::read(d.dir.join(&rel))
            .with_context(|| format!("cannot read {}", d.dir.join(&rel).display()))?;
        files.names.push((
            format!("{BOARD_DIR}/{on_board}"),
            d.host_dir.join(&rel).display().to_string(),
        ));
        files.files.push(RomFile {
            path: on_board,
            data,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_statements_give_their_top_level_names() {
        let src = "import a.b as c, d\nfrom e.f import g\nfrom . import h\n    import i  # in a function\n# import j\nx = 'import k'\n";
        assert_eq!(imported_names(src), ["a", "d", "e", "i"]);
    }
}
