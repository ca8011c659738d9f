//! Helpers shared by the integration tests: the repository root, what the
//! tests install or build (once, before any test starts a timer of its own,
//! so a first run on a new machine behaves like the hundredth), and small
//! readers of profiles.
//!
//! Each test binary compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use mpprof_profile::Profile;

pub mod browser;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `mpprof ARGS`, its output captured.
pub fn mpprof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(args)
        .output()
        .unwrap()
}

/// `mpprof run -q -o PROFILE SCRIPT` on the host target, which must succeed.
pub fn record(script: &Path, profile: &Path) {
    let o = mpprof(&[
        "run",
        "-q",
        "-o",
        profile.to_str().unwrap(),
        script.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `mpprof run -q --target qemu -o PROFILE SCRIPT` (the profile beside the
/// script, `.json`), which must succeed: its output and profile.
pub fn record_on_qemu(script: &Path) -> (Output, Profile) {
    let out = script.with_extension("json");
    let o = mpprof(&[
        "run",
        "-q",
        "--target",
        "qemu",
        "-o",
        out.to_str().unwrap(),
        script.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let p = Profile::from_json_file(&out).unwrap();
    (o, p)
}

/// The ids of the call-tree nodes of `window`, the function the timing
/// scripts call each timed case from.
pub fn window_nodes(p: &Profile) -> Vec<mpprof_profile::NodeId> {
    p.call_tree
        .iter()
        .filter(|n| p.functions[n.function].name == "window")
        .map(|n| n.id)
        .collect()
}

/// Install Debian packages for a test (the project installs what its tests
/// need; apt waits for dpkg's lock when tests install in parallel).
pub fn apt(packages: &[&str]) {
    vm_instrumented::apt_install(packages, &mut |_| {})
        .unwrap_or_else(|e| panic!("installing {}: {e}", packages.join(" ")));
}

fn on_path(tool: &str, version_flag: &str) -> bool {
    Command::new(tool)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The instrumented host interpreter (built once; the build itself locks
/// the shared cache, so parallel test binaries wait for one build).
pub fn host_vm() -> PathBuf {
    static VM: OnceLock<PathBuf> = OnceLock::new();
    VM.get_or_init(|| {
        vm_instrumented::build_host(&vm_instrumented::BuildOptions::default(), &mut |_| {})
            .expect("building the instrumented host MicroPython")
            .micropython
    })
    .clone()
}

/// Upstream's plain unix port from the same tree (no hooks, no runtime).
pub fn plain_host_vm() -> PathBuf {
    static VM: OnceLock<PathBuf> = OnceLock::new();
    VM.get_or_init(|| {
        let opts = vm_instrumented::BuildOptions {
            flavour: vm_instrumented::Flavour::Plain,
            ..vm_instrumented::BuildOptions::default()
        };
        vm_instrumented::build_host(&opts, &mut |_| {})
            .expect("building the plain host MicroPython")
            .micropython
    })
    .clone()
}

/// Upstream's plain unix port from the same tree with `sys.settrace`
/// compiled in (`MICROPY_PY_SYS_SETTRACE=1`, no profiler): the call-count
/// oracle's interpreter.
pub fn settrace_host_vm() -> PathBuf {
    static VM: OnceLock<PathBuf> = OnceLock::new();
    VM.get_or_init(|| {
        let opts = vm_instrumented::BuildOptions {
            flavour: vm_instrumented::Flavour::PlainSettrace,
            ..vm_instrumented::BuildOptions::default()
        };
        vm_instrumented::build_host(&opts, &mut |_| {})
            .expect("building the settrace host MicroPython")
            .micropython
    })
    .clone()
}

/// (file name, function name) -> calls.
pub type CallCounts = BTreeMap<(String, String), u64>;

fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// The oracle: `script` run by the settrace build under our tracer
/// (`fixtures/oracle/settrace_calls.py`), its 'call' events counted per
/// function of the file `script` itself (a generator's or coroutine's
/// resumes each fire one, as its first entry does), with the script's
/// stdout. Functions are told apart by name: settrace's `co_firstlineno` is
/// the line of a function's first bytecode (the body's first line, not the
/// `def` line the profile gives), so the oracle checks that no two of the
/// file's functions share a name instead.
pub fn settrace_calls(script: &Path, scratch: &Path) -> (CallCounts, Vec<u8>) {
    let vm = settrace_host_vm();
    std::fs::create_dir_all(scratch).unwrap();
    let counts_file = scratch.join(format!(
        "{}.settrace-calls",
        script.file_name().unwrap().to_string_lossy()
    ));
    let out = Command::new(vm)
        .arg(root().join("fixtures/oracle/settrace_calls.py"))
        .arg(script)
        .arg(&counts_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the settrace oracle on {}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let wanted = file_name(&script.to_string_lossy());
    let mut counts = CallCounts::new();
    let mut first_lines: BTreeMap<String, String> = BTreeMap::new();
    for line in std::fs::read_to_string(&counts_file).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "oracle line {line:?}");
        if file_name(f[0]) != wanted {
            continue;
        }
        let before = first_lines.insert(f[1].to_string(), f[2].to_string());
        assert!(
            before.is_none() || before.as_deref() == Some(f[2]),
            "two functions named {} in {wanted}: the oracle cannot tell them apart",
            f[1]
        );
        *counts
            .entry((wanted.clone(), f[1].to_string()))
            .or_insert(0) += f[3].parse::<u64>().unwrap();
    }
    (counts, out.stdout)
}

/// The same from a profile: each bytecode function of the file named like
/// `script` with its calls (mpprof counts an entry per frame start, a
/// generator's resumes included).
pub fn profile_calls(p: &Profile, script: &Path) -> CallCounts {
    let wanted = file_name(&script.to_string_lossy());
    let mut counts = CallCounts::new();
    for f in &p.functions {
        if f.kind != mpprof_profile::FunctionKind::Bytecode
            || file_name(&p.files[f.file].path) != wanted
        {
            continue;
        }
        *counts.entry((wanted.clone(), f.name.clone())).or_insert(0) += f.calls;
    }
    counts
}

/// The summary's Tasks table as (file name, task) -> resumes: each row
/// `NAME (FILE:LINE)  RESUMES  ...`, the event loop's row left out.
pub fn summary_task_resumes(summary: &str) -> CallCounts {
    let mut tasks = CallCounts::new();
    let rows = summary
        .lines()
        .skip_while(|l| !l.starts_with("Tasks (asyncio"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty());
    for row in rows {
        let row = row.trim();
        if row.starts_with("event loop") {
            continue;
        }
        let (name, rest) = row.split_once(" (").expect("a task row");
        let (place, rest) = rest.split_once(')').expect("a task's place");
        let file = place.rsplit_once(':').map_or(place, |(f, _)| f);
        let resumes = rest.split_whitespace().next().expect("resumes");
        tasks.insert(
            (file_name(file), name.to_string()),
            resumes.parse().expect("resumes as a number"),
        );
    }
    tasks
}

/// The 64-bit instrumented host interpreter (`--bits64`).
pub fn host_vm_64() -> PathBuf {
    static VM: OnceLock<PathBuf> = OnceLock::new();
    VM.get_or_init(|| {
        let opts = vm_instrumented::BuildOptions {
            word_size: vm_instrumented::WordSize::Bits64,
            ..vm_instrumented::BuildOptions::default()
        };
        vm_instrumented::build_host(&opts, &mut |_| {})
            .expect("building the 64-bit instrumented host MicroPython")
            .micropython
    })
    .clone()
}

/// `qemu-system-arm`, installed when missing.
pub fn qemu_installed() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if !*done && !board_agent::qemu::have_qemu() {
        apt(&["qemu-system-arm"]);
    }
    *done = true;
}

/// A qemu firmware built with `opts` (cached after the first build), with
/// the emulator installed: everything a board test needs before it boots.
pub fn qemu_firmware(opts: &vm_instrumented::BuildOptions) -> PathBuf {
    qemu_installed();
    vm_instrumented::build_qemu(opts, &mut |_| {})
        .expect("building the qemu firmware")
        .firmware
}

/// The default emulated-board firmware (RTT transport, timer0).
pub fn default_qemu_firmware() -> PathBuf {
    qemu_firmware(&vm_instrumented::BuildOptions::default())
}

/// The firmware sending its frames on the UART.
pub fn uart_qemu_firmware() -> PathBuf {
    qemu_firmware(&vm_instrumented::BuildOptions {
        transport: vm_instrumented::Transport::Uart,
        ..vm_instrumented::BuildOptions::default()
    })
}

pub fn tmux_installed() {
    if !on_path("tmux", "-V") {
        apt(&["tmux"]);
    }
}

/// Debian's headless-capable Chromium.
pub fn chromium() -> PathBuf {
    let bin = Path::new("/usr/bin/chromium");
    if !bin.exists() {
        apt(&["chromium"]);
    }
    assert!(bin.exists(), "Debian's chromium installs /usr/bin/chromium");
    bin.to_path_buf()
}

/// An npm package at a pinned version, installed with npm (Debian's
/// `npm`, installed when missing) into a folder of its own under the cargo
/// target dir and kept for later runs; the package's folder.
pub fn npm_package(name: &str, version: &str) -> PathBuf {
    let prefix = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("npm")
        .join(format!("{name}-{version}"));
    let package = prefix.join("node_modules").join(name);
    let done = prefix.join(".installed");
    if done.exists() {
        return package;
    }
    // One install at a time in this process (tests run on threads), then
    // look again: another thread may have installed it meanwhile.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    if done.exists() {
        return package;
    }
    if !on_path("npm", "--version") {
        apt(&["nodejs", "npm"]);
    }
    // Parallel test binaries each install into a folder of their own and
    // the first to finish renames it into place.
    let part = prefix.with_extension(format!("part{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&part);
    std::fs::create_dir_all(&part).unwrap();
    let o = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
        ])
        .arg(&part)
        .arg(format!("{name}@{version}"))
        .output()
        .expect("running npm");
    assert!(
        o.status.success(),
        "npm install {name}@{version}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(part.join(".installed"), "").unwrap();
    if std::fs::rename(&part, &prefix).is_err() {
        // Another binary got there first: use its copy.
        let _ = std::fs::remove_dir_all(&part);
    }
    assert!(done.exists(), "{name} installed in {}", prefix.display());
    package
}

/// Whether a process whose command line mentions `needle` is running (for
/// "the emulator was stopped": give it a file path no other run uses).
pub fn process_running_with(needle: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(needle))
            .unwrap_or(false)
    })
}

/// The HELLO a 32-bit host target sends, for streams built by tests.
pub fn host_hello() -> mpprof::wire::Hello {
    mpprof::wire::Hello {
        wire_version: 1,
        word_bytes: 4,
        gc_block_bytes: 16,
        small_int_bits: 31,
        heap_bytes: 65536,
        clock_hz: 1_000_000_000,
        clock: "ns".into(),
        mp_version: "1.25.0".into(),
        platform: "linux".into(),
        target: "host".into(),
    }
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

/// Google's `pprof` tool, built from Debian's sources (`golang-go` and
/// `golang-github-google-pprof-dev`, installed when missing) in GOPATH mode,
/// offline, and kept under the cargo target dir for later runs.
pub fn pprof_tool() -> PathBuf {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-pprof");
        let bin = dir.join("pprof");
        if bin.exists() {
            return bin;
        }
        let src = Path::new("/usr/share/gocode/src/github.com/google/pprof");
        if !on_path("go", "version") || !src.exists() {
            apt(&["golang-go", "golang-github-google-pprof-dev"]);
        }
        std::fs::create_dir_all(&dir).unwrap();
        // Built under a name of its own, then renamed: parallel test
        // binaries never run a half-written tool.
        let part = dir.join(format!("pprof.{}", std::process::id()));
        let o = Command::new("go")
            .args(["build", "-o"])
            .arg(&part)
            .arg("github.com/google/pprof")
            .env("GO111MODULE", "off")
            .env(
                "GOPATH",
                format!("{}:/usr/share/gocode", dir.join("gopath").display()),
            )
            .env("GOCACHE", dir.join("cache"))
            .env("GOPROXY", "off")
            .output()
            .expect("running go build");
        assert!(
            o.status.success(),
            "building pprof: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::rename(&part, &bin).unwrap();
        bin
    })
    .clone()
}

/// A protobuf varint at `b[*i]`, moving `i` past it (the tests read pprof
/// files themselves to check what the tools report).
pub fn protobuf_varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut s = 0;
    loop {
        let c = b[*i];
        *i += 1;
        v |= ((c & 0x7f) as u64) << s;
        if c < 0x80 {
            return v;
        }
        s += 7;
    }
}

/// (file, function, calls, opcodes, allocations inside functions) of every
/// function the program's own files define, files by their paths in the
/// project's folders (`project/drivers/sensor.py`, `project_lib/...`).
pub fn project_functions(p: &Profile, dir: &Path) -> Vec<(String, String, u64, u64, u64)> {
    let dir = std::fs::canonicalize(dir).unwrap();
    let mut v: Vec<_> = p
        .functions
        .iter()
        .filter(|f| f.name != "<runtime>")
        .map(|f| {
            let path = std::fs::canonicalize(&p.files[f.file].path)
                .unwrap_or_else(|_| panic!("{} is not a host file", p.files[f.file].path));
            let rel = path.strip_prefix(&dir).unwrap().display().to_string();
            // Module level differs by design (the script came through the
            // REPL: no `__file__`; files are read differently at import, by
            // the host's file reader or from the board's ROMFS, so compiling
            // them allocates differently too).
            let allocs = if f.name == "<module>" || f.kind == mpprof_profile::FunctionKind::Compile
            {
                0
            } else {
                f.alloc_count
            };
            (rel, f.qualname.clone(), f.calls, f.opcodes, allocs)
        })
        .collect();
    v.sort();
    v
}

/// The three-module project of fixtures/programs (a package, a module
/// beside the script, one in `project_lib` given as `--path`) and what
/// plain MicroPython prints for it with that directory on its path: the
/// programs folder, the script, the library folder and plain's output.
pub fn project_on_plain_micropython() -> (PathBuf, PathBuf, PathBuf, Output) {
    let plain = plain_host_vm();
    let programs = root().join("fixtures/programs");
    let script = programs.join("project/main.py");
    let lib = programs.join("project_lib");
    let upstream = Command::new(&plain)
        .arg(&script)
        .env("MICROPYPATH", format!(".frozen:{}", lib.display()))
        .output()
        .unwrap();
    assert!(upstream.status.success(), "{upstream:?}");
    (programs, script, lib, upstream)
}

/// A finished run's output before its traceback, and the traceback: the
/// unix port prints an uncaught exception's on stderr up to v1.26, on
/// stdout from v1.27 (its `micropython script.py` runs through upstream's
/// shared pyexec). Either way the two parts come apart here.
pub fn split_traceback(run: &Output) -> (String, String) {
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    match out.find("Traceback (most recent call last):") {
        Some(i) => (out[..i].to_string(), out[i..].to_string()),
        None => (out, String::from_utf8_lossy(&run.stderr).into_owned()),
    }
}
