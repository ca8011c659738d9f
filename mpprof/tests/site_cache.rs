//! More allocation sites than the runtime's site cache holds at once: every
//! allocation still counted at its line, whichever slot (one-byte or wide
//! repeat) or new SITE record carried it.

use std::collections::BTreeMap;
use std::process::Command;

use mpprof_profile::Profile;

mod common;

const LINES: u32 = 300;
const PASSES: u64 = 20;
/// The first of the function's allocating lines (after the import, the
/// blank line, the def and the for).
const FIRST_LINE: u32 = 5;

/// A function whose LINES lines each make one float per pass (a boxed
/// float), and the plain interpreter's measure of them: what a call of
/// PASSES passes allocates less what a call of none does (its frame and
/// range), with the collector off, after a first call of none (whatever a
/// first call makes once) and with the globals that hold the figures made
/// before (a global's first store can grow the module's dict).
fn script() -> String {
    let mut s = String::from("import gc\n\ndef many(n):\n    for i in range(n):\n");
    for k in 0..LINES {
        s += &format!("        x{k} = i * {k}.5\n");
    }
    s += &format!(
        "\na = b = c = 0\ngc.collect()\ngc.disable()\n\
         many(0)\na = gc.mem_alloc()\nmany(0)\nb = gc.mem_alloc()\nmany({PASSES})\nc = gc.mem_alloc()\n\
         print('floats', (c - b) - (b - a))\n"
    );
    s
}

#[test]
fn every_allocation_of_hundreds_of_sites_is_counted_at_its_line() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("site-cache");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("many_sites.py");
    std::fs::write(&path, script()).unwrap();

    // The truth: upstream's plain interpreter, the same source.
    let out = Command::new(common::plain_host_vm())
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let plain_bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("floats "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no figure from the plain run: {text}"));

    let profile_path = dir.join("many_sites.json");
    common::record(&path, &profile_path);
    let p = Profile::from_json_file(&profile_path).unwrap();
    assert_eq!(p.meta.dropped.lost_allocs, 0);
    let mut per_line: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for s in &p.alloc_sites {
        if p.functions[s.function].name == "many" {
            let e = per_line.entry(s.line).or_default();
            e.0 += s.count;
            e.1 += s.bytes;
        }
    }
    let mut block_bytes = 0;
    for line in FIRST_LINE..FIRST_LINE + LINES {
        let (count, bytes) = per_line.get(&line).copied().unwrap_or_default();
        assert_eq!(count, PASSES, "line {line}: one float per pass");
        // Requested bytes, in the GC's 16-byte blocks as mem_alloc() counts.
        block_bytes += bytes.div_ceil(count).div_ceil(16) * 16 * count;
    }
    assert_eq!(
        block_bytes, plain_bytes,
        "the floats' blocks against gc.mem_alloc()"
    );
}
