//! Obtain MicroPython v1.25.0, apply the mpprof hook patches to a copy and
//! build the instrumented interpreters: the unix port (the host target) and
//! the qemu port (the emulated Cortex-M board).
//!
//! The source comes from `MICROPY_DIR` (a user's own checkout, never
//! modified), or else from Debian's `micropython` source package, fetched with
//! apt through a private, temporary sources list and checked against its
//! SHA-256. Everything is cached (by default under cargo's `target/`), so a
//! second build downloads and compiles nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The upstream release the patches are written against.
pub const MICROPYTHON_VERSION: &str = "1.25.0";
const DEBIAN_VERSION: &str = "1.25.0+ds-1";
const DEBIAN_SUITE: &str = "trixie";
const ORIG_TARBALL: &str = "micropython_1.25.0+ds.orig.tar.xz";
const ORIG_SHA256: &str = "7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WordSize {
    Bits32,
    Bits64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// With the mpprof runtime and hooks.
    Instrumented,
    /// Upstream's `standard` variant from the same tree: the hooks compile to
    /// nothing, so it behaves exactly as upstream (for fidelity tests and
    /// overhead benchmarks).
    Plain,
}

/// How a board build sends its stream (the host build always writes to a
/// file descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// An RTT control block in target RAM, read through a debug probe (or
    /// qemu's gdbstub).
    #[default]
    Rtt,
    /// Envelopes on the REPL's serial link, for boards without a probe.
    Uart,
}

/// The emulated board's tick source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QemuClock {
    /// The qemu port layer: the CMSDK timer0, restarted at each top-level
    /// frame so runs repeat exactly.
    #[default]
    Timer0,
    /// The real boards' Cortex-M port layer (`mpprof_port_cortexm.c`) with
    /// SysTick, as on a Cortex-M0+ (RP2040): runs the code real boards run.
    CortexMSysTick,
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub word_size: WordSize,
    pub flavour: Flavour,
    /// The board builds' transport.
    pub transport: Transport,
    /// The emulated board's tick source.
    pub qemu_clock: QemuClock,
    /// A MicroPython checkout to use instead of Debian's source package.
    pub micropy_dir: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub jobs: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            word_size: WordSize::Bits32,
            flavour: Flavour::Instrumented,
            transport: Transport::Rtt,
            qemu_clock: QemuClock::Timer0,
            micropy_dir: std::env::var_os("MICROPY_DIR")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            cache_dir: default_cache_dir(),
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// A built host interpreter.
#[derive(Debug, Clone)]
pub struct HostBuild {
    pub micropython: PathBuf,
    pub word_size: WordSize,
    /// A 32-bit build was asked for but no 32-bit toolchain could be had.
    pub fell_back_to_64: bool,
    /// The patched tree (has upstream's `tests/`).
    pub source_dir: PathBuf,
}

/// A built emulated-board firmware.
#[derive(Debug, Clone)]
pub struct QemuBuild {
    pub firmware: PathBuf,
    pub source_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    NoSource(String),
    #[error("{dir} does not look like a MicroPython checkout (no {missing}): set MICROPY_DIR to a MicroPython v1.25.0 checkout")]
    NotMicroPython { dir: PathBuf, missing: &'static str },
    #[error("the downloaded {file} has SHA-256 {found}, expected {expected}: the download is corrupt or not the pinned release; delete {file} and retry")]
    Checksum {
        file: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("patch {name} does not apply to {dir}:\n{output}")]
    Patch {
        name: String,
        dir: PathBuf,
        output: String,
    },
    #[error("{what} failed (log: {log}):\n{tail}")]
    Make {
        what: String,
        log: PathBuf,
        tail: String,
    },
    #[error("`{tool}` is needed and could not be installed: {hint}")]
    MissingTool { tool: String, hint: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

/// `MPPROF_CACHE_DIR`; else `<target>/mpprof-vm` when running from a cargo
/// target directory; else `$XDG_CACHE_HOME/mpprof` or `~/.cache/mpprof`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MPPROF_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Ok(exe) = std::env::current_exe() {
        for a in exe.ancestors() {
            if a.file_name().is_some_and(|n| n == "target") && a.is_dir() {
                return a.join("mpprof-vm");
            }
        }
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(x).join("mpprof");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("mpprof")
}

/// The files this crate embeds (patches, runtime, port configuration).
pub fn embedded_files() -> &'static [(&'static str, &'static [u8])] {
    embedded::FILES
}

fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Holds an exclusive lock on the cache while building.
struct CacheLock(#[allow(dead_code)] std::fs::File);

fn lock_cache(cache: &Path) -> Result<CacheLock, BuildError> {
    std::fs::create_dir_all(cache).map_err(io(format!("cannot create {}", cache.display())))?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join(".lock"))
        .map_err(io("cannot open the cache lock"))?;
    f.lock().map_err(io("cannot lock the cache"))?;
    Ok(CacheLock(f))
}

fn run_quiet(cmd: &mut Command, log: &Path, what: &str) -> Result<(), BuildError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("cannot run {what}")))?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    let _ = std::fs::write(log, &text);
    if out.status.success() {
        return Ok(());
    }
    let s = String::from_utf8_lossy(&text);
    let tail: Vec<&str> = s.lines().rev().take(30).collect();
    Err(BuildError::Make {
        what: what.to_string(),
        log: log.to_path_buf(),
        tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Install Debian packages with apt, when we may.
pub fn apt_install(packages: &[&str], progress: &mut dyn FnMut(&str)) -> Result<(), BuildError> {
    if !have("apt-get") || !is_root() {
        return Err(BuildError::MissingTool {
            tool: packages.join(" "),
            hint: format!(
                "install the Debian packages {} (as root: apt-get install {})",
                packages.join(", "),
                packages.join(" ")
            ),
        });
    }
    progress(&format!("installing {} with apt", packages.join(" ")));
    // Tests may install in parallel: wait for dpkg's lock instead of failing.
    let update = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=600", "update", "-qq"])
        .stdin(Stdio::null())
        .output();
    let _ = update;
    let out = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(io("cannot run apt-get"))?;
    if !out.status.success() {
        return Err(BuildError::MissingTool {
            tool: packages.join(" "),
            hint: String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("apt-get failed")
                .to_string(),
        });
    }
    Ok(())
}

/// Make sure the host build tools are there, installing them if we can.
fn ensure_tools(tools: &[(&str, &str)], progress: &mut dyn FnMut(&str)) -> Result<(), BuildError> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(t, _)| !have(t))
        .map(|(_, p)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing, progress)?;
    for (t, p) in tools {
        if !have(t) {
            return Err(BuildError::MissingTool {
                tool: t.to_string(),
                hint: format!("install the Debian package {p}"),
            });
        }
    }
    Ok(())
}

/// Whether `gcc -m32` can build and link a program.
fn can_build_32bit(cache: &Path) -> bool {
    let dir = cache.join("probe-m32");
    let _ = std::fs::create_dir_all(&dir);
    let src = dir.join("t.c");
    if std::fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    Command::new("gcc")
        .arg("-m32")
        .arg(&src)
        .arg("-o")
        .arg(dir.join("t"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Debian's source package, verified and extracted; returns the tree.
fn debian_source(cache: &Path, progress: &mut dyn FnMut(&str)) -> Result<PathBuf, BuildError> {
    let dir = cache.join("source");
    let tree = dir.join(format!("micropython-{MICROPYTHON_VERSION}"));
    let done = dir.join(".extracted");
    if done.exists() && tree.join("py/vm.c").exists() {
        progress("MicroPython source: cached");
        return Ok(tree);
    }
    std::fs::create_dir_all(&dir).map_err(io("cannot create the source cache"))?;
    let tarball = dir.join(ORIG_TARBALL);
    let verified = |p: &Path| std::fs::read(p).ok().map(|d| sha256_hex(&d));
    if verified(&tarball).as_deref() != Some(ORIG_SHA256) {
        if !have("apt-get") {
            return Err(BuildError::NoSource(
                "this machine has no apt-get to fetch MicroPython's source: set MICROPY_DIR to a MicroPython v1.25.0 checkout".into(),
            ));
        }
        progress(&format!(
            "fetching MicroPython {MICROPYTHON_VERSION} source (Debian {DEBIAN_VERSION})"
        ));
        fetch_with_apt(&dir, progress)?;
        match verified(&tarball) {
            Some(h) if h == ORIG_SHA256 => {}
            Some(h) => {
                return Err(BuildError::Checksum {
                    file: tarball,
                    found: h,
                    expected: ORIG_SHA256,
                })
            }
            None => {
                return Err(BuildError::NoSource(format!(
                    "apt did not produce {ORIG_TARBALL}: set MICROPY_DIR to a MicroPython v1.25.0 checkout"
                )))
            }
        }
    }
    ensure_tools(&[("xz", "xz-utils"), ("tar", "tar")], progress)?;
    let _ = std::fs::remove_dir_all(&tree);
    run_quiet(
        Command::new("tar")
            .arg("xf")
            .arg(&tarball)
            .current_dir(&dir),
        &dir.join("extract.log"),
        "extracting the MicroPython source",
    )?;
    std::fs::write(&done, ORIG_SHA256).map_err(io("cannot mark the source extracted"))?;
    Ok(tree)
}

/// The machine's own Debian archive URI, from its apt sources.
fn debian_mirror() -> Option<String> {
    let mut uris = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "sources"))
        {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            for stanza in text.split("\n\n") {
                let field = |name: &str| {
                    stanza
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                };
                let (Some(u), Some(suites)) = (field("URIs:"), field("Suites:")) else {
                    continue;
                };
                let keyring = field("Signed-By:").unwrap_or_default();
                if suites.contains("security")
                    || !keyring.contains("debian")
                        && !suites.contains("bookworm")
                        && !suites.contains("trixie")
                {
                    continue;
                }
                uris.extend(u.split_whitespace().map(str::to_string));
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        for l in text.lines() {
            let parts: Vec<&str> = l.split_whitespace().collect();
            if parts.len() >= 3 && (parts[0] == "deb" || parts[0] == "deb-src") {
                let uri = parts.iter().skip(1).find(|p| !p.starts_with('['))?;
                if !l.contains("security") {
                    uris.push(uri.to_string());
                }
            }
        }
    }
    uris.into_iter().find(|u| u.contains("debian"))
}

fn fetch_with_apt(dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), BuildError> {
    let mirror = debian_mirror().ok_or_else(|| {
        BuildError::NoSource(
            "no Debian archive found in this machine's apt sources: set MICROPY_DIR to a MicroPython v1.25.0 checkout".into(),
        )
    })?;
    let apt = dir.join("apt");
    let parts = apt.join("parts");
    let lists = apt.join("lists");
    std::fs::create_dir_all(lists.join("partial"))
        .map_err(io("cannot create the private apt lists"))?;
    std::fs::create_dir_all(&parts).map_err(io("cannot create the private apt sources"))?;
    std::fs::write(
        parts.join("mpprof-micropython.sources"),
        format!(
            "Types: deb-src\nURIs: {mirror}\nSuites: {DEBIAN_SUITE}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
    .map_err(io("cannot write the private apt sources"))?;
    let opts = [
        "-o".to_string(),
        "Dir::Etc::SourceList=/dev/null".to_string(),
        "-o".to_string(),
        format!("Dir::Etc::SourceParts={}", parts.display()),
        "-o".to_string(),
        format!("Dir::State::Lists={}", lists.display()),
    ];
    progress("apt-get update (private sources list)");
    run_quiet(
        Command::new("apt-get").args(&opts).arg("update"),
        &dir.join("apt-update.log"),
        "apt-get update with the private sources list",
    )
    .map_err(|e| {
        BuildError::NoSource(format!(
            "{e}\nset MICROPY_DIR to a MicroPython v1.25.0 checkout to build without apt"
        ))
    })?;
    run_quiet(
        Command::new("apt-get")
            .args(&opts)
            .args(["source", "--download-only"])
            .arg(format!("micropython={DEBIAN_VERSION}"))
            .current_dir(dir),
        &dir.join("apt-source.log"),
        "apt-get source micropython",
    )
    .map_err(|e| {
        BuildError::NoSource(format!(
            "{e}\nset MICROPY_DIR to a MicroPython v1.25.0 checkout to build without apt"
        ))
    })?;
    let _ = std::fs::remove_dir_all(&apt);
    Ok(())
}

fn check_checkout(dir: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), BuildError> {
    for missing in ["py/vm.c", "py/gc.c", "ports/unix/Makefile", "py/mpconfig.h"] {
        if !dir.join(missing).exists() {
            return Err(BuildError::NotMicroPython {
                dir: dir.to_path_buf(),
                missing,
            });
        }
    }
    let cfg = std::fs::read_to_string(dir.join("py/mpconfig.h")).unwrap_or_default();
    let num = |name: &str| {
        cfg.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("#define {name} "))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let version = format!(
        "{}.{}.{}",
        num("MICROPY_VERSION_MAJOR"),
        num("MICROPY_VERSION_MINOR"),
        num("MICROPY_VERSION_MICRO")
    );
    if version != MICROPYTHON_VERSION {
        progress(&format!(
            "warning: MICROPY_DIR is MicroPython {version}; the patches are written for {MICROPYTHON_VERSION} and may not apply"
        ));
    }
    Ok(())
}

/// A content hash naming a patched tree: the source's identity and every
/// embedded file.
fn tree_hash(source_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(source_id.as_bytes());
    for (name, data) in embedded_files() {
        h.update(name.as_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    }
    let d = h.finalize();
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(to).map_err(io(format!("cannot create {}", to.display())))?;
    let entries = std::fs::read_dir(from).map_err(io(format!("cannot read {}", from.display())))?;
    for e in entries.flatten() {
        let name = e.file_name();
        if name == ".git" {
            continue;
        }
        let status = Command::new("cp")
            .arg("-a")
            .arg(e.path())
            .arg(to)
            .status()
            .map_err(io("cannot run cp"))?;
        if !status.success() {
            return Err(BuildError::Io {
                what: format!("copying {} failed", e.path().display()),
                source: std::io::Error::other("cp failed"),
            });
        }
    }
    Ok(())
}

/// The patched copy of the source, ready to build.
pub fn prepared_source(
    opts: &BuildOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, BuildError> {
    let cache = &opts.cache_dir;
    let (source, source_id) = match &opts.micropy_dir {
        Some(d) => {
            check_checkout(d, progress)?;
            let vm = std::fs::read(d.join("py/vm.c")).unwrap_or_default();
            let gc = std::fs::read(d.join("py/gc.c")).unwrap_or_default();
            let id = format!(
                "dir:{}:{}:{}",
                d.display(),
                sha256_hex(&vm),
                sha256_hex(&gc)
            );
            (d.clone(), id)
        }
        None => (
            debian_source(cache, progress)?,
            format!("debian:{ORIG_SHA256}"),
        ),
    };
    let tree = cache.join(format!("tree-{}", tree_hash(&source_id)));
    if tree.join(".prepared").exists() {
        return Ok(tree);
    }
    progress("applying the mpprof patches to a copy of the source");
    ensure_tools(&[("patch", "patch")], progress)?;
    let staging = cache.join(format!(
        "{}.tmp",
        tree.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    copy_tree(&source, &staging)?;
    for (name, data) in embedded_files() {
        if let Some(p) = name.strip_prefix("patches/") {
            let out = run_patch(&staging, data)?;
            if let Some(output) = out {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(BuildError::Patch {
                    name: p.to_string(),
                    dir: source.clone(),
                    output,
                });
            }
        } else if let Some(p) = name.strip_prefix("runtime/") {
            write_file(&staging.join("mpprof-usermod/mpprof").join(p), data)?;
        } else if let Some(p) = name.strip_prefix("ports/unix/variant-mpprof/") {
            write_file(&staging.join("ports/unix/variants/mpprof").join(p), data)?;
        } else if let Some(p) = name.strip_prefix("ports/qemu/") {
            write_file(&staging.join("ports/qemu").join(p), data)?;
        } else if let Some(p) = name.strip_prefix("ports/boards/") {
            // Beside the runtime, where real boards' builds find it
            // (docs/boards.md).
            write_file(&staging.join("mpprof-usermod/mpprof").join(p), data)?;
        }
    }
    std::fs::write(staging.join(".prepared"), source_id.as_bytes())
        .map_err(io("cannot mark the tree prepared"))?;
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::rename(&staging, &tree).map_err(io("cannot move the prepared tree into place"))?;
    Ok(tree)
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io(format!("cannot create {}", parent.display())))?;
    }
    std::fs::write(path, data).map_err(io(format!("cannot write {}", path.display())))
}

/// Apply one patch; `Some(output)` when it does not apply.
fn run_patch(dir: &Path, patch: &[u8]) -> Result<Option<String>, BuildError> {
    use std::io::Write;
    let mut child = Command::new("patch")
        .args(["-p1", "--forward", "--batch", "--no-backup-if-mismatch"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io("cannot run patch"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(patch).map_err(io("cannot feed patch"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io("cannot wait for patch"))?;
    if out.status.success() {
        Ok(None)
    } else {
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(Some(s))
    }
}

const MAKE_DISABLE: [&str; 6] = [
    "FROZEN_MANIFEST=",
    "MICROPY_PY_BTREE=0",
    "MICROPY_PY_FFI=0",
    "MICROPY_PY_SSL=0",
    "MICROPY_SSL_AXTLS=0",
    "MICROPY_SSL_MBEDTLS=0",
];

/// Build the unix-port interpreter (the host target).
pub fn build_host(
    opts: &BuildOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<HostBuild, BuildError> {
    let _lock = lock_cache(&opts.cache_dir)?;
    ensure_tools(
        &[("make", "make"), ("gcc", "gcc"), ("python3", "python3")],
        progress,
    )?;
    let tree = prepared_source(opts, progress)?;
    let mut word_size = opts.word_size;
    let mut fell_back_to_64 = false;
    if word_size == WordSize::Bits32
        && !can_build_32bit(&opts.cache_dir)
        && (apt_install(&["gcc-multilib"], progress).is_err() || !can_build_32bit(&opts.cache_dir))
    {
        {
            progress("warning: no 32-bit toolchain (gcc-multilib): building 64-bit; small ints are 63-bit and GC blocks 32 bytes, unlike a board's");
            word_size = WordSize::Bits64;
            fell_back_to_64 = true;
        }
    }
    let (variant, flavour_name) = match opts.flavour {
        Flavour::Instrumented => ("mpprof", "instrumented"),
        Flavour::Plain => ("standard", "plain"),
    };
    let bits = match word_size {
        WordSize::Bits32 => "32",
        WordSize::Bits64 => "64",
    };
    let build_dir = tree
        .join("ports/unix")
        .join(format!("build-{flavour_name}-{bits}"));
    let binary = build_dir.join("micropython");
    if binary.exists() && build_dir.join(".built").exists() {
        return Ok(HostBuild {
            micropython: binary,
            word_size,
            fell_back_to_64,
            source_dir: tree,
        });
    }
    progress(&format!(
        "building {flavour_name} micropython ({bits}-bit), about 30 s"
    ));
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(tree.join("ports/unix"))
        .arg(format!("-j{}", opts.jobs.max(1)))
        .arg(format!("VARIANT={variant}"))
        .arg(format!("BUILD={}", build_dir.display()))
        .arg("PROG=micropython")
        .args(MAKE_DISABLE);
    if word_size == WordSize::Bits32 {
        cmd.arg("MICROPY_FORCE_32BIT=1");
    }
    if opts.flavour == Flavour::Instrumented {
        cmd.arg(format!(
            "USER_C_MODULES={}",
            tree.join("mpprof-usermod").display()
        ));
    }
    std::fs::create_dir_all(&build_dir).map_err(io("cannot create the build directory"))?;
    run_quiet(
        &mut cmd,
        &build_dir.join("make.log"),
        &format!("building {flavour_name} micropython"),
    )?;
    std::fs::write(build_dir.join(".built"), b"").map_err(io("cannot mark the build done"))?;
    Ok(HostBuild {
        micropython: binary,
        word_size,
        fell_back_to_64,
        source_dir: tree,
    })
}

/// Build the qemu-port firmware for MPS2-AN385 (Cortex-M3), the emulated board.
pub fn build_qemu(
    opts: &BuildOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<QemuBuild, BuildError> {
    let _lock = lock_cache(&opts.cache_dir)?;
    ensure_tools(
        &[
            ("make", "make"),
            ("python3", "python3"),
            ("arm-none-eabi-gcc", "gcc-arm-none-eabi"),
        ],
        progress,
    )?;
    if !Path::new("/usr/lib/arm-none-eabi/newlib").exists() && have("apt-get") {
        let _ = apt_install(&["libnewlib-arm-none-eabi"], progress);
    }
    let tree = prepared_source(opts, progress)?;
    let (flavour_name, extra): (String, Vec<String>) = match opts.flavour {
        Flavour::Instrumented => {
            let (transport, transport_name) = match opts.transport {
                Transport::Rtt => ("rtt", ""),
                Transport::Uart => ("uart", "-uart"),
            };
            let (port, clock_name, clock_flags) = match opts.qemu_clock {
                QemuClock::Timer0 => ("qemu", "", ""),
                // The MPS2's CPU clock is 25 MHz; the qemu port has no
                // microsecond clock to recover missed SysTick turns from.
                QemuClock::CortexMSysTick => (
                    "cortexm",
                    "-systick",
                    " -DMPPROF_CLOCK_SYSTICK=1 -DMPPROF_CLOCK_HZ=25000000 -DMPPROF_US_CLOCK=0",
                ),
            };
            (
                format!("instrumented{transport_name}{clock_name}"),
                vec![
                    format!("USER_C_MODULES={}", tree.join("mpprof-usermod").display()),
                    format!("MPPROF_PORT={port}"),
                    format!("MPPROF_TRANSPORT={transport}"),
                    // The RTT block in the RAM the host can map (0x21000000).
                    "MPPROF_SHARED_RTT=1".into(),
                    format!("CFLAGS_EXTRA=-DMP_CONFIGFILE=\"<mpprof_qemu_config.h>\"{clock_flags}"),
                ],
            )
        }
        Flavour::Plain => ("plain".to_string(), Vec::new()),
    };
    let build_dir = tree
        .join("ports/qemu")
        .join(format!("build-mps2-{flavour_name}"));
    let firmware = build_dir.join("firmware.elf");
    if firmware.exists() && build_dir.join(".built").exists() {
        return Ok(QemuBuild {
            firmware,
            source_dir: tree,
        });
    }
    progress(&format!(
        "building {flavour_name} qemu firmware (MPS2-AN385), about 15 s"
    ));
    std::fs::create_dir_all(&build_dir).map_err(io("cannot create the build directory"))?;
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(tree.join("ports/qemu"))
        .arg(format!("-j{}", opts.jobs.max(1)))
        .arg("BOARD=MPS2_AN385")
        .arg(format!("BUILD={}", build_dir.display()))
        .arg("FROZEN_MANIFEST=")
        .args(extra);
    run_quiet(
        &mut cmd,
        &build_dir.join("make.log"),
        &format!("building {flavour_name} qemu firmware"),
    )?;
    std::fs::write(build_dir.join(".built"), b"").map_err(io("cannot mark the build done"))?;
    Ok(QemuBuild {
        firmware,
        source_dir: tree,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_patches_and_runtime() {
        let names: Vec<&str> = embedded_files().iter().map(|(n, _)| *n).collect();
        assert!(names
            .iter()
            .any(|n| n.starts_with("patches/") && n.ends_with(".patch")));
        assert!(names.contains(&"runtime/micropython.mk"));
        assert!(names.contains(&"ports/unix/variant-mpprof/mpconfigvariant.h"));
        // Patches apply in name order.
        let patches: Vec<&&str> = names.iter().filter(|n| n.starts_with("patches/")).collect();
        let mut sorted = patches.clone();
        sorted.sort();
        assert_eq!(patches, sorted);
    }

    #[test]
    fn tree_hash_depends_on_the_source() {
        assert_ne!(tree_hash("a"), tree_hash("b"));
        assert_eq!(tree_hash("a"), tree_hash("a"));
    }

    #[test]
    fn a_directory_that_is_not_micropython_is_refused() {
        let dir = std::env::temp_dir().join(format!("mpprof-notmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let opts = BuildOptions {
            micropy_dir: Some(dir.clone()),
            cache_dir: dir.join("cache"),
            ..BuildOptions::default()
        };
        let err = prepared_source(&opts, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("set MICROPY_DIR"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
