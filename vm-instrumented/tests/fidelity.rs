//! Fidelity: upstream's own test suite passes and fails the same way on the
//! instrumented interpreter with profiling on as on the plain interpreter
//! built from the same source. Also: the source is the pinned release, and a
//! second build reuses the cache.
//!
//! These run on the source `BuildOptions::default()` picks: Debian's 1.25.0
//! (or 1.26.1 with `MPPROF_MICROPYTHON=1.26`; CI runs both), or the checkout
//! in `MICROPY_DIR`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use vm_instrumented::{build_host, host_make_args, BuildOptions, Flavour};

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

/// The host build without the profiler, built (or found built).
fn plain_host_build() -> vm_instrumented::HostBuild {
    let mut progress = |m: &str| eprintln!("{m}");
    build_host(
        &BuildOptions {
            flavour: Flavour::Plain,
            ..BuildOptions::default()
        },
        &mut progress,
    )
    .expect("plain build")
}

#[test]
fn upstream_tests_give_the_same_results_with_profiling_on() {
    let mut progress = |m: &str| eprintln!("{m}");
    let plain = plain_host_build();
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
    eprintln!(
        "MicroPython {}: {} upstream tests passed plain, {} profiled ({} skipped, {} failed)",
        plain.version,
        plain_run.passed,
        profiled.passed,
        plain_run.skipped.len(),
        plain_run.failed.len()
    );
    assert_eq!(
        profiled, plain_run,
        "upstream's tests give other results with profiling on (MicroPython {})",
        plain.version
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
    let opts = BuildOptions::default();
    if opts.micropy_dir.is_none() {
        let release = opts.debian_release;
        let tarball = vm_instrumented::debian_source_dir(&opts.cache_dir, release)
            .join(release.orig_tarball());
        let data = std::fs::read(&tarball).expect("the verified tarball is cached");
        use sha2::Digest;
        let hash: String = sha2::Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let expected = match release {
            vm_instrumented::DebianRelease::V1_25 => {
                "7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea"
            }
            vm_instrumented::DebianRelease::V1_26 => {
                "f5ad2ec89d3e921f753d448955af98b6005655f84ba26087dde6ba0e8d062f34"
            }
        };
        assert_eq!(hash, expected);
        assert_eq!(b.version.to_string(), release.upstream_version());
    }
}

/// The `py/` files the patches change (mpconfig.h aside, which they all
/// include).
const PATCHED: [&str; 6] = ["vm", "gc", "obj", "objfun", "objgenerator", "runtime"];

/// The patches with no profiler configured compile to exactly upstream's
/// machine code: the patched files' objects in the plain build equal those
/// of a build of the pristine source.
#[test]
fn unconfigured_hooks_compile_to_upstreams_code() {
    let mut progress = |m: &str| eprintln!("{m}");
    let opts = BuildOptions {
        flavour: Flavour::Plain,
        ..BuildOptions::default()
    };
    let plain = build_host(&opts, &mut progress).expect("plain build");
    let pristine_src = match &opts.micropy_dir {
        Some(d) => d.clone(),
        None => vm_instrumented::debian_tree(&opts.cache_dir, opts.debian_release),
    };
    // One build directory per source: make would take another version's
    // objects as up to date.
    let build = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "pristine-build-{}-{}",
        plain.version,
        plain.source_dir.file_name().unwrap().to_string_lossy()
    ));
    let st = Command::new("make")
        .arg("-C")
        .arg(pristine_src.join("ports/unix"))
        .arg("-j2")
        .arg("VARIANT=standard")
        .arg(format!("BUILD={}", build.display()))
        .args(host_make_args(plain.word_size, &plain.source_dir))
        .args(PATCHED.iter().map(|o| build.join(format!("py/{o}.o"))))
        .output()
        .expect("make runs");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let disasm = |o: &Path| {
        let out = Command::new("objdump")
            .arg("-d")
            .arg(o)
            .output()
            .expect("objdump (binutils)");
        assert!(out.status.success());
        // Skip the header, which names the file.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(3)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let plain_build = plain.micropython.parent().unwrap().to_path_buf();
    for o in PATCHED {
        let a = disasm(&build.join(format!("py/{o}.o")));
        let b = disasm(&plain_build.join(format!("py/{o}.o")));
        assert!(!a.is_empty());
        assert!(
            a == b,
            "py/{o}.c: the patched build's code differs from upstream's"
        );
    }
}

/// A build says MicroPython's own version (from `py/mpconfig.h`), not the
/// commit of the repository its cache sits in: the version string is part
/// of the firmware, and a string that changed with every commit of this
/// project moved the emulated board's guest timings with it.
#[test]
fn a_build_names_micropythons_release_not_the_projects_commit() {
    let plain = plain_host_build();
    let out = Command::new(&plain.micropython)
        .args(["-c", "import sys; print(sys.version)"])
        .output()
        .expect("the build runs");
    let version = String::from_utf8_lossy(&out.stdout);
    let v = &plain.version;
    let release = format!("MicroPython v{}.{}.{}", v.major, v.minor, v.micro);
    assert!(
        out.status.success() && version.contains(&release),
        "sys.version is {version:?}, not {release}"
    );
}
