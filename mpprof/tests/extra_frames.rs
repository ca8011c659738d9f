//! Work outside the bytecode VM has frames of its own: compiling a module at
//! import (`<compile x.py>`, a child of the importing frame, whose
//! allocations stay on the importing line), `@micropython.native` and
//! `@micropython.viper` functions (calls and time, their `def` line found by
//! name). Run on the host target, end to end, on `fixtures/misc/frames/`.
//! Their times against a build without the profiler are checked on the
//! emulated board by `time_fidelity.rs`.

use std::process::Command;

use mpprof_profile::{FunctionKind, Profile};

mod common;
use common::root;

const SCRIPT: &str = "fixtures/misc/frames/frames.py";

/// The 1-based line of the first line of the fixture containing `text`.
fn line_of(text: &str) -> u32 {
    let src = std::fs::read_to_string(root().join(SCRIPT)).unwrap();
    src.lines()
        .position(|l| l.contains(text))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("{text:?} not in {SCRIPT}"))
}

fn run() -> (Profile, String) {
    let out_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("extra-frames.json");
    let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-o"])
        .arg(&out_path)
        .arg(root().join(SCRIPT))
        .env("NO_COLOR", "1")
        .output()
        .expect("mpprof runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Profile::from_json_file(&out_path).unwrap();
    (p, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn compiling_native_and_viper_code_are_frames_of_their_own() {
    let (p, summary) = run();
    p.validate().expect("the profile is consistent");
    let function = |name: &str| {
        p.functions
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} is a function of the profile"))
    };
    let module = p
        .functions
        .iter()
        .find(|f| f.name == "<module>" && p.files[f.file].path.ends_with("frames.py"))
        .unwrap();

    // Native and viper functions: their calls (main() runs twice, ten
    // calls each) and their def lines.
    let checksum = function("checksum");
    assert_eq!(
        (checksum.kind, checksum.calls, checksum.line),
        (FunctionKind::Native, 20, line_of("def checksum("))
    );
    let count_set = function("count_set");
    assert_eq!(
        (count_set.kind, count_set.calls, count_set.line),
        (FunctionKind::Viper, 20, line_of("def count_set("))
    );
    assert!(checksum.incl_ticks > 0 && count_set.incl_ticks > 0);
    // A native generator: each resume is a call (four values and the end),
    // below the function that iterates it.
    let samples = function("samples");
    assert_eq!(
        (samples.kind, samples.calls, samples.line, samples.opcodes),
        (FunctionKind::Native, 5, line_of("def samples("), 0)
    );
    let drain = function("drain");
    for node in p.call_tree.iter().filter(|n| n.function == samples.id) {
        assert_eq!(node.parent.map(|i| p.call_tree[i].function), Some(drain.id));
    }
    assert_eq!((checksum.opcodes, count_set.opcodes), (0, 0));
    // They are called from main, whose exclusive time no longer holds them.
    let main = function("main");
    for node in p.call_tree.iter().filter(|n| n.function == checksum.id) {
        let parent = node.parent.map(|i| p.call_tree[i].function);
        assert_eq!(parent, Some(main.id));
    }
    assert!(main.excl_ticks < main.incl_ticks);

    // Compiling the imported module: a child of the importing module, and
    // the allocations it made are on the import line.
    let compiling = function("<compile sensor_math.py>");
    assert_eq!(
        (compiling.kind, compiling.calls),
        (FunctionKind::Compile, 1)
    );
    let node = p
        .call_tree
        .iter()
        .find(|n| n.function == compiling.id)
        .unwrap();
    assert_eq!(
        node.parent.map(|i| p.call_tree[i].function),
        Some(module.id)
    );
    let import_line = line_of("import sensor_math");
    let sites: Vec<_> = p
        .alloc_sites
        .iter()
        .filter(|s| s.function == compiling.id)
        .collect();
    assert!(!sites.is_empty(), "compiling allocates");
    assert!(
        sites
            .iter()
            .all(|s| s.line == import_line && p.files[s.file].path.ends_with("frames.py")),
        "compile allocations are at frames.py:{import_line}"
    );
    assert_eq!(
        compiling.alloc_count,
        sites.iter().map(|s| s.count).sum::<u64>()
    );

    // The exec() that fails to compile closes its frame on the way out: what
    // runs after it is the module's again.
    let failed = function("<compile <string>>");
    assert_eq!(failed.calls, 1);
    for node in p.call_tree.iter().filter(|n| n.function == main.id) {
        assert_eq!(
            node.parent.map(|i| p.call_tree[i].function),
            Some(module.id)
        );
    }
    assert_eq!(main.calls, 2);

    // The summary says what compiling cost and what to do about it.
    assert!(
        summary.contains("compiling sources at run time")
            && summary.contains("<compile sensor_math.py>")
            && summary.contains("mpy-cross"),
        "{summary}"
    );
}
