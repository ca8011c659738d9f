//! Fidelity: upstream's own test suite passes and fails the same way on the
//! instrumented interpreter with profiling on as on the plain interpreter
//! built from the same source. Also: the source is the pinned release, and a
//! second build reuses the cache.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use vm_instrumented::{build_host, BuildOptions, Flavour};

/// Run upstream's run-tests.py on its basics, float, micropython and misc
/// directories.
fn run_upstream_tests(
    tree: &Path,
    micropython: &Path,
    profile_to: Option<&Path>,
    result_dir: &Path,
) -> Outcome {
    let mut cmd = Command::new("python3");
    cmd.current_dir(tree.join("tests"))
        .arg("run-tests.py")
        .arg("--result-dir")
        .arg(result_dir)
        .args(["-d", "basics", "float", "micropython", "misc"])
        .env("MICROPY_MICROPYTHON", micropython)
        .env_remove("MPPROF_FD");
    match profile_to {
        Some(p) => cmd.env("MPPROF_PATH", p),
        None => cmd.env_remove("MPPROF_PATH"),
    };
    let out = cmd.output().expect("python3 runs upstream's test runner");
    let text = String::from_utf8_lossy(&out.stdout);
    // The runner works in parallel, so its per-test lines interleave; its
    // closing lines and the results file are exact.
    let count_of = |what: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_suffix(what)
                    .and_then(|n| n.trim().parse::<usize>().ok())
            })
            .unwrap_or(0)
    };
    let passed = count_of(" tests passed");
    let skipped: BTreeSet<String> = text
        .lines()
        .find_map(|l| l.split_once(" tests skipped: ").map(|(_, t)| t))
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(result_dir.join("_results.json"))
            .expect("the runner wrote its results"),
    )
    .unwrap();
    let failed: BTreeSet<String> = results["failed_tests"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        passed > 500,
        "upstream's tests did not run ({passed} passed):\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Outcome {
        passed,
        skipped,
        failed,
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    passed: usize,
    skipped: BTreeSet<String>,
    failed: BTreeSet<String>,
}

#[test]
fn upstream_tests_give_the_same_results_with_profiling_on() {
    let mut progress = |m: &str| eprintln!("{m}");
    let plain = build_host(
        &BuildOptions {
            flavour: Flavour::Plain,
            ..BuildOptions::default()
        },
        &mut progress,
    )
    .expect("plain build");
    let instrumented =
        build_host(&BuildOptions::default(), &mut progress).expect("instrumented build");
    assert_eq!(
        plain.source_dir, instrumented.source_dir,
        "both from the same tree"
    );

    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fidelity");
    std::fs::create_dir_all(&tmp).unwrap();
    let stream = tmp.join("stream.bin");
    let plain_run = run_upstream_tests(
        &plain.source_dir,
        &plain.micropython,
        None,
        &tmp.join("plain"),
    );
    let profiled = run_upstream_tests(
        &plain.source_dir,
        &instrumented.micropython,
        Some(&stream),
        &tmp.join("prof"),
    );
    assert_eq!(
        profiled, plain_run,
        "upstream's tests give other results with profiling on"
    );
    // Profiling really was on: the last test's stream was written.
    let bytes = std::fs::read(&stream).expect("the profiled runs wrote a stream");
    assert!(bytes.starts_with(&[0xa7, 0x5c, 1]), "a wire frame");
}

#[test]
fn the_32bit_build_is_board_like_and_a_second_build_is_cached() {
    let mut first = Vec::new();
    let b = build_host(&BuildOptions::default(), &mut |m| first.push(m.to_string())).unwrap();
    let out = Command::new(&b.micropython)
        .args(["-X", "heapsize=64k", "-c", "import sys; print(sys.maxsize)"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let expected = if b.fell_back_to_64 {
        "9223372036854775807"
    } else {
        "2147483647"
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    // Nothing is fetched or built the second time.
    let mut second = Vec::new();
    build_host(&BuildOptions::default(), &mut |m| {
        second.push(m.to_string())
    })
    .unwrap();
    assert!(
        second
            .iter()
            .all(|m| !m.contains("fetching") && !m.contains("building")),
        "{second:?}"
    );
    // The source in use is the verified, pinned release.
    let tarball = BuildOptions::default()
        .cache_dir
        .join("source/micropython_1.25.0+ds.orig.tar.xz");
    if std::env::var_os("MICROPY_DIR").is_none() {
        let data = std::fs::read(&tarball).expect("the verified tarball is cached");
        use sha2::Digest;
        let hash: String = sha2::Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hash,
            "7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea"
        );
    }
}
