//! Helpers shared by the board tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mpprof_profile::Profile;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// (line, cause) -> (count, bytes) inside the fixture's functions. Module
/// level differs by design: a file run on the host has `__file__` in its
/// globals, code sent through the raw REPL does not, so the globals dict
/// grows at other moments.
pub fn allocations(p: &Profile, script: &str) -> BTreeMap<(u32, String), (u64, u64)> {
    let mut m = BTreeMap::new();
    for s in &p.alloc_sites {
        let f = &p.functions[s.function];
        let in_function =
            f.name != "<module>" && f.name.chars().next().is_some_and(|c| c.is_lowercase());
        if p.files[s.file].path.ends_with(script) && in_function {
            let e = m.entry((s.line, s.cause.label())).or_insert((0, 0));
            e.0 += s.count;
            e.1 += s.bytes;
        }
    }
    m
}
