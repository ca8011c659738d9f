//! Versions: a tree whose code moved under a hunk is refused loudly (no
//! fuzz), naming its version and the supported ones, and nothing is built.

use std::path::Path;
use std::process::Command;

use vm_instrumented::{prepared_source, BuildError, BuildOptions, MicroPythonVersion};

#[test]
fn a_hunk_that_does_not_fit_fails_loudly_instead_of_landing_elsewhere() {
    // The real source in use (Debian's, or MICROPY_DIR's).
    let opts = BuildOptions::default();
    prepared_source(&opts, &mut |m| eprintln!("{m}")).expect("the source prepares");
    let pristine = match &opts.micropy_dir {
        Some(d) => d.clone(),
        None => vm_instrumented::debian_tree(&opts.cache_dir, opts.debian_release),
    };
    let version = MicroPythonVersion::of_tree(&pristine).unwrap();

    // A copy where, as upstream did in v1.28 (the weakref sweep), more code
    // follows GC_EXIT() in gc_collect_end: with fuzz, `patch` put the
    // collection-end hook into the next function that ends like the hunk.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("versions-moved");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let tree = tmp.join("micropython");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&pristine)
        .arg(&tree)
        .status()
        .unwrap()
        .success());
    let gc = tree.join("py/gc.c");
    let text = std::fs::read_to_string(&gc).unwrap();
    let end = text
        .find("void gc_collect_end(void) {")
        .expect("gc_collect_end");
    let exit = end + text[end..].find("    GC_EXIT();\n").expect("its GC_EXIT") + 15;
    let moved = format!(
        "{}    gc_collect_end_more_work();\n{}",
        &text[..exit],
        &text[exit..]
    );
    std::fs::write(&gc, moved).unwrap();

    let err = prepared_source(
        &BuildOptions {
            micropy_dir: Some(tree.clone()),
            cache_dir: tmp.join("cache"),
            ..BuildOptions::default()
        },
        &mut |_| {},
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BuildError::Patch { .. }), "{msg}");
    assert!(msg.contains("0003-py-gc-heap-event-hooks.patch"), "{msg}");
    assert!(
        msg.contains(&format!("MicroPython {version}")) && msg.contains("without fuzz"),
        "{msg}"
    );
    assert!(
        msg.contains("1.28.x"),
        "names the supported versions: {msg}"
    );
    // Nothing half-patched is left to build from.
    let prepared = std::fs::read_dir(tmp.join("cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join(".prepared").exists())
        .count();
    assert_eq!(prepared, 0);
}
