//! Obtain MicroPython, apply the mpprof hook patches to a copy and build the
//! instrumented interpreters: the unix port (the host target) and the qemu
//! port (the emulated Cortex-M board).
//!
//! The source comes from `MICROPY_DIR` (a user's own checkout of a supported
//! release, never modified), or else from Debian's `micropython` source
//! package (1.25.0 or 1.26.1, [`DebianRelease`]), fetched with apt through a
//! private, temporary sources list and checked against its SHA-256. The
//! version is read from the source's `py/mpconfig.h` and picks the patch set
//! ([`patch_set_for`]); the patches apply with no fuzz, so a hunk that does
//! not fit fails loudly. Everything is cached (by default under cargo's
//! `target/`), so a second build downloads and compiles nothing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use sha2::{Digest, Sha256};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The upstream release built when nothing else is asked for.
pub const MICROPYTHON_VERSION: &str = "1.25.0";

/// A MicroPython version, as its `py/mpconfig.h` defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MicroPythonVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
    /// `MICROPY_VERSION_PRERELEASE`: a development tree (upstream's master
    /// between releases is the next release's preview).
    pub prerelease: bool,
}

impl fmt::Display for MicroPythonVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        if self.prerelease {
            f.write_str("-preview")?;
        }
        Ok(())
    }
}

impl MicroPythonVersion {
    /// The version `py/mpconfig.h` defines, `None` when it defines none.
    pub fn from_mpconfig(text: &str) -> Option<Self> {
        let num = |name: &str| {
            text.lines().find_map(|l| {
                let rest = l.trim_start().strip_prefix("#define ")?.trim_start();
                let v = rest.strip_prefix(name)?;
                if !v.starts_with([' ', '\t']) {
                    return None;
                }
                v.trim().parse::<u32>().ok()
            })
        };
        Some(Self {
            major: num("MICROPY_VERSION_MAJOR")?,
            minor: num("MICROPY_VERSION_MINOR")?,
            micro: num("MICROPY_VERSION_MICRO")?,
            prerelease: num("MICROPY_VERSION_PRERELEASE").unwrap_or(0) != 0,
        })
    }

    /// The version of the tree at `dir`.
    pub fn of_tree(dir: &Path) -> Option<Self> {
        Self::from_mpconfig(&std::fs::read_to_string(dir.join("py/mpconfig.h")).ok()?)
    }
}

/// Which patches a range of MicroPython versions takes, in order (paths
/// under `vm-instrumented/patches/`). A file shared by several sets is one
/// file: `common/` holds the patches every version takes, `vX.Y/` those
/// first needed (or changed) at vX.Y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchSet {
    /// The set's name: the first version it is for.
    pub name: &'static str,
    /// The `major.minor` release lines it is for (any micro version).
    pub releases: &'static [(u32, u32)],
    /// Upstream's development tree between releases: `(major, minor)` of
    /// the next release, accepted only as a preview (`MICROPY_VERSION_PRERELEASE`).
    pub preview: Option<(u32, u32)>,
    pub patches: &'static [&'static str],
}

const P_MPCONFIG: &str = "common/0001-py-mpconfig-hook-defaults.patch";
const P_VM: &str = "common/0002-py-vm-frame-and-opcode-hooks.patch";
const P_OBJ: &str = "common/0004-py-obj-typed-alloc-hook.patch";
const P_VM_SLICE: &str = "v1.26/0005-py-vm-slice-fast-path-hook.patch";
const P_FRAMES: &str = "common/0006-py-compile-and-native-frame-hooks.patch";
const P_HEAP_FRAME: &str = "common/0007-py-objfun-heap-frame-hook.patch";

/// The supported versions and their patches (docs/versions.md).
pub const PATCH_SETS: &[PatchSet] = &[
    PatchSet {
        name: "v1.24",
        releases: &[(1, 24)],
        preview: None,
        patches: &[
            P_MPCONFIG,
            P_VM,
            "v1.24/0003-py-gc-heap-event-hooks.patch",
            P_OBJ,
            P_FRAMES,
            P_HEAP_FRAME,
        ],
    },
    PatchSet {
        name: "v1.25",
        releases: &[(1, 25)],
        preview: None,
        patches: &[
            P_MPCONFIG,
            P_VM,
            "v1.25/0003-py-gc-heap-event-hooks.patch",
            P_OBJ,
            P_FRAMES,
            P_HEAP_FRAME,
        ],
    },
    // v1.26: the BUILD_SLICE fast path runs LOAD/STORE_SUBSCR without a
    // dispatch.
    PatchSet {
        name: "v1.26",
        releases: &[(1, 26), (1, 27)],
        preview: None,
        patches: &[
            P_MPCONFIG,
            P_VM,
            "v1.25/0003-py-gc-heap-event-hooks.patch",
            P_OBJ,
            P_VM_SLICE,
            P_FRAMES,
            P_HEAP_FRAME,
        ],
    },
    // v1.28: gc_collect_end ends with the weakref sweep.
    PatchSet {
        name: "v1.28",
        releases: &[(1, 28)],
        preview: Some((1, 29)),
        patches: &[
            P_MPCONFIG,
            P_VM,
            "v1.28/0003-py-gc-heap-event-hooks.patch",
            P_OBJ,
            P_VM_SLICE,
            P_FRAMES,
            P_HEAP_FRAME,
        ],
    },
];

impl PatchSet {
    pub fn supports(&self, v: &MicroPythonVersion) -> bool {
        self.releases.contains(&(v.major, v.minor))
            || v.prerelease && self.preview == Some((v.major, v.minor))
    }
}

/// The patch set for a version; `None` for a version we do not support.
pub fn patch_set_for(v: &MicroPythonVersion) -> Option<&'static PatchSet> {
    PATCH_SETS.iter().find(|s| s.supports(v))
}

/// The supported versions, for messages: "1.24.x, 1.25.x, ... and master
/// (1.29.0-preview)".
pub fn supported_versions() -> String {
    let mut parts: Vec<String> = PATCH_SETS
        .iter()
        .flat_map(|s| s.releases.iter().map(|(a, b)| format!("{a}.{b}.x")))
        .collect();
    let previews: Vec<String> = PATCH_SETS
        .iter()
        .filter_map(|s| {
            s.preview
                .map(|(a, b)| format!("master ({a}.{b}.0-preview)"))
        })
        .collect();
    parts.extend(previews);
    parts.join(", ")
}

/// The Debian source packages mpprof can fetch by itself (without
/// `MICROPY_DIR`), chosen with `MPPROF_MICROPYTHON=1.25|1.26`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DebianRelease {
    /// 1.25.0+ds-1 (trixie).
    #[default]
    V1_25,
    /// 1.26.1+ds-1 (forky, sid).
    V1_26,
}

/// The environment variable choosing the Debian source package.
pub const MICROPYTHON_ENV: &str = "MPPROF_MICROPYTHON";

impl DebianRelease {
    pub const ALL: [DebianRelease; 2] = [DebianRelease::V1_25, DebianRelease::V1_26];

    /// The upstream version in the package.
    pub fn upstream_version(self) -> &'static str {
        match self {
            DebianRelease::V1_25 => "1.25.0",
            DebianRelease::V1_26 => "1.26.1",
        }
    }
    fn debian_version(self) -> &'static str {
        match self {
            DebianRelease::V1_25 => "1.25.0+ds-1",
            DebianRelease::V1_26 => "1.26.1+ds-1",
        }
    }
    fn suite(self) -> &'static str {
        match self {
            DebianRelease::V1_25 => "trixie",
            DebianRelease::V1_26 => "forky",
        }
    }
    /// The original tarball's file name.
    pub fn orig_tarball(self) -> &'static str {
        match self {
            DebianRelease::V1_25 => "micropython_1.25.0+ds.orig.tar.xz",
            DebianRelease::V1_26 => "micropython_1.26.1+ds.orig.tar.xz",
        }
    }
    /// The original tarball's pinned SHA-256.
    pub fn orig_sha256(self) -> &'static str {
        match self {
            DebianRelease::V1_25 => {
                "7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea"
            }
            DebianRelease::V1_26 => {
                "f5ad2ec89d3e921f753d448955af98b6005655f84ba26087dde6ba0e8d062f34"
            }
        }
    }

    /// `MPPROF_MICROPYTHON`, or the default (1.25) when it is unset or empty.
    pub fn from_env() -> Result<Self, BuildError> {
        match std::env::var(MICROPYTHON_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse().map_err(|e: UnknownRelease| {
                BuildError::NoSource(format!("{MICROPYTHON_ENV}={v}: {e}"))
            }),
            _ => Ok(Self::default()),
        }
    }
}

impl fmt::Display for DebianRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DebianRelease::V1_25 => "1.25",
            DebianRelease::V1_26 => "1.26",
        })
    }
}

/// A MicroPython release name that is not one of Debian's packages we fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown MicroPython release {0:?}: mpprof fetches Debian's 1.25 (1.25.0, the default) or 1.26 (1.26.1); for another version set MICROPY_DIR to a checkout of it")]
pub struct UnknownRelease(pub String);

impl FromStr for DebianRelease {
    type Err = UnknownRelease;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        match t {
            "1.25" | "1.25.0" => Ok(DebianRelease::V1_25),
            "1.26" | "1.26.1" => Ok(DebianRelease::V1_26),
            _ => Err(UnknownRelease(s.to_string())),
        }
    }
}

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
    /// The plain build with upstream's `sys.settrace` compiled in
    /// (`MICROPY_PY_SYS_SETTRACE=1`), host only: the call-count oracle of
    /// the tests (a tracer counting 'call' events), independent of mpprof.
    PlainSettrace,
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
    /// Time per source line (`mpprof run --line-time`): an instrumented
    /// build of its own with `runtime/mpprof_line.c` (sampled on the host,
    /// stamped at every dispatch on the boards), so the default build pays
    /// nothing for it.
    pub line_time: bool,
    /// A MicroPython checkout to use instead of Debian's source package.
    pub micropy_dir: Option<PathBuf>,
    /// Debian's source package to fetch when there is no `micropy_dir`
    /// (default: `MPPROF_MICROPYTHON`, else 1.25).
    pub debian_release: DebianRelease,
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
            line_time: false,
            micropy_dir: std::env::var_os("MICROPY_DIR")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            // A bad MPPROF_MICROPYTHON is reported when building
            // (`check_release_env`).
            debian_release: DebianRelease::from_env().unwrap_or_default(),
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
    /// The MicroPython version built, read from the source.
    pub version: MicroPythonVersion,
}

/// A built emulated-board firmware.
#[derive(Debug, Clone)]
pub struct QemuBuild {
    pub firmware: PathBuf,
    pub source_dir: PathBuf,
    pub version: MicroPythonVersion,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    NoSource(String),
    #[error("{dir} does not look like a MicroPython checkout (no {missing}): set MICROPY_DIR to a checkout of a supported MicroPython ({})", supported_versions())]
    NotMicroPython { dir: PathBuf, missing: &'static str },
    #[error("{dir} is MicroPython {version}, which mpprof does not support: its hook patches are for {}; use one of those (docs/versions.md)", supported_versions())]
    UnsupportedVersion {
        dir: PathBuf,
        version: MicroPythonVersion,
    },
    #[error("the downloaded {file} has SHA-256 {found}, expected {expected}: the download is corrupt or not the pinned release; delete {file} and retry")]
    Checksum {
        file: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("patch {name} (set {set}) does not apply to MicroPython {version} in {dir} without fuzz: this tree differs from the releases the patches are written for ({}); use one of those (docs/versions.md)\n{output}", supported_versions())]
    Patch {
        name: String,
        set: &'static str,
        version: MicroPythonVersion,
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
    #[error("{0} is built for the host target only; build it with build_host")]
    HostOnly(&'static str),
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

/// Whether `gcc -m32` can build and link a program with the headers the
/// unix port includes: an empty program links with libc6-dev-i386 alone,
/// while `<errno.h>` also needs the kernel headers' `asm/` (which
/// gcc-multilib provides), and a half-removed multilib leaves them out.
fn can_build_32bit(cache: &Path) -> bool {
    let dir = cache.join("probe-m32");
    let _ = std::fs::create_dir_all(&dir);
    let src = dir.join("t.c");
    let program = "#include <errno.h>\n#include <signal.h>\n#include <stdio.h>\nint main(void) { return errno; }\n";
    if std::fs::write(&src, program).is_err() {
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

/// Where Debian's source package for `release` is cached: the verified
/// tarball and the extracted tree, apart from the other release's.
pub fn debian_source_dir(cache: &Path, release: DebianRelease) -> PathBuf {
    cache.join("source").join(release.debian_version())
}

/// The pristine (unpatched) tree of Debian's source package for `release`.
pub fn debian_tree(cache: &Path, release: DebianRelease) -> PathBuf {
    debian_source_dir(cache, release).join(format!("micropython-{}", release.upstream_version()))
}

/// Debian's source package, verified and extracted; returns the tree.
fn debian_source(
    cache: &Path,
    release: DebianRelease,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, BuildError> {
    let dir = debian_source_dir(cache, release);
    let tree = debian_tree(cache, release);
    let sha = release.orig_sha256();
    let done = dir.join(".extracted");
    if std::fs::read_to_string(&done).is_ok_and(|d| d == sha) && tree.join("py/vm.c").exists() {
        progress(&format!(
            "MicroPython {} source: cached",
            release.upstream_version()
        ));
        return Ok(tree);
    }
    let no_source = |why: &str| {
        BuildError::NoSource(format!(
            "{why}: set MICROPY_DIR to a checkout of a supported MicroPython ({})",
            supported_versions()
        ))
    };
    std::fs::create_dir_all(&dir).map_err(io("cannot create the source cache"))?;
    let tarball = dir.join(release.orig_tarball());
    let verified = |p: &Path| std::fs::read(p).ok().map(|d| sha256_hex(&d));
    if verified(&tarball).as_deref() != Some(sha) {
        if !have("apt-get") {
            return Err(no_source(
                "this machine has no apt-get to fetch MicroPython's source",
            ));
        }
        progress(&format!(
            "fetching MicroPython {} source (Debian {})",
            release.upstream_version(),
            release.debian_version()
        ));
        fetch_with_apt(&dir, release, progress)?;
        match verified(&tarball) {
            Some(h) if h == sha => {}
            Some(h) => {
                return Err(BuildError::Checksum {
                    file: tarball,
                    found: h,
                    expected: sha,
                })
            }
            None => {
                return Err(no_source(&format!(
                    "apt did not produce {}",
                    release.orig_tarball()
                )))
            }
        }
    }
    ensure_tools(&[("xz", "xz-utils"), ("tar", "tar")], progress)?;
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).map_err(io("cannot create the source tree"))?;
    run_quiet(
        Command::new("tar")
            .arg("xf")
            .arg(&tarball)
            .arg("--strip-components=1")
            .arg("-C")
            .arg(&tree),
        &dir.join("extract.log"),
        "extracting the MicroPython source",
    )?;
    std::fs::write(&done, sha).map_err(io("cannot mark the source extracted"))?;
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

fn fetch_with_apt(
    dir: &Path,
    release: DebianRelease,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BuildError> {
    let without_apt = format!(
        "set MICROPY_DIR to a checkout of a supported MicroPython ({}) to build without apt",
        supported_versions()
    );
    let mirror = debian_mirror().ok_or_else(|| {
        BuildError::NoSource(format!(
            "no Debian archive found in this machine's apt sources: {without_apt}"
        ))
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
            "Types: deb-src\nURIs: {mirror}\nSuites: {}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            release.suite()
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
    .map_err(|e| BuildError::NoSource(format!("{e}\n{without_apt}")))?;
    run_quiet(
        Command::new("apt-get")
            .args(&opts)
            .args(["source", "--download-only"])
            .arg(format!("micropython={}", release.debian_version()))
            .current_dir(dir),
        &dir.join("apt-source.log"),
        "apt-get source micropython",
    )
    .map_err(|e| BuildError::NoSource(format!("{e}\n{without_apt}")))?;
    let _ = std::fs::remove_dir_all(&apt);
    Ok(())
}

/// A MicroPython tree's version and its patch set; refuses a tree that is
/// not MicroPython or whose version has no patch set.
pub fn check_checkout(dir: &Path) -> Result<(MicroPythonVersion, &'static PatchSet), BuildError> {
    for missing in ["py/vm.c", "py/gc.c", "ports/unix/Makefile", "py/mpconfig.h"] {
        if !dir.join(missing).exists() {
            return Err(BuildError::NotMicroPython {
                dir: dir.to_path_buf(),
                missing,
            });
        }
    }
    let version = MicroPythonVersion::of_tree(dir).ok_or(BuildError::NotMicroPython {
        dir: dir.to_path_buf(),
        missing: "MICROPY_VERSION_MAJOR/MINOR/MICRO in py/mpconfig.h",
    })?;
    let set = patch_set_for(&version).ok_or_else(|| BuildError::UnsupportedVersion {
        dir: dir.to_path_buf(),
        version,
    })?;
    Ok((version, set))
}

/// A BuildOptions' `MPPROF_MICROPYTHON`, checked: a value that names no
/// release is an error, not silently the default.
fn check_release_env(opts: &BuildOptions) -> Result<(), BuildError> {
    if opts.micropy_dir.is_none() {
        DebianRelease::from_env()?;
    }
    Ok(())
}

/// See make_command().
const MAKE_RECIPE: &str = "make with git discovery stopped at the tree";

/// `make` in the patched tree (the tree or a directory in it). The tree
/// sits inside whatever repository holds the cache (this project's, under
/// `target/`), and MicroPython's `py/makeversionhdr.py` would take that
/// repository's `git describe` as MicroPython's version: the firmware's
/// version string, hence its layout, and with it guest timings on the
/// emulated board, would change with every commit of the project around
/// it (a fresh clone's plain firmware timed the fixture's lines a few ticks
/// apart from a working tree's). Git discovery stops at the tree, so the
/// version comes from `py/mpconfig.h`, as for a release tarball.
fn make_command(tree: &Path) -> Command {
    let mut cmd = Command::new("make");
    let tree = std::fs::canonicalize(tree).unwrap_or_else(|_| tree.to_path_buf());
    if let Some(above) = tree.parent() {
        cmd.env("GIT_CEILING_DIRECTORIES", above);
    }
    cmd
}

/// A content hash naming a patched tree: the source's identity and every
/// embedded file.
fn tree_hash(source_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(source_id.as_bytes());
    // What the builds do beyond the embedded files, when it changes what
    // they make (a tree built otherwise is rebuilt).
    h.update(MAKE_RECIPE.as_bytes());
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
    check_release_env(opts)?;
    let (source, source_id) = match &opts.micropy_dir {
        Some(d) => {
            check_checkout(d)?;
            let hash = |f: &str| sha256_hex(&std::fs::read(d.join(f)).unwrap_or_default());
            let id = format!(
                "dir:{}:{}:{}:{}:{}",
                d.display(),
                hash("py/mpconfig.h"),
                hash("py/vm.c"),
                hash("py/gc.c"),
                hash("py/obj.c")
            );
            (d.clone(), id)
        }
        None => (
            debian_source(cache, opts.debian_release, progress)?,
            format!("debian:{}", opts.debian_release.orig_sha256()),
        ),
    };
    let (version, set) = check_checkout(&source)?;
    let tree = cache.join(format!("tree-{}", tree_hash(&source_id)));
    if tree.join(".prepared").exists() {
        return Ok(tree);
    }
    progress(&format!(
        "applying the mpprof patches (set {}) to a copy of MicroPython {version}",
        set.name
    ));
    ensure_tools(&[("patch", "patch")], progress)?;
    let staging = cache.join(format!(
        "{}.tmp",
        tree.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    copy_tree(&source, &staging)?;
    for name in set.patches {
        let data = embedded_file(&format!("patches/{name}")).ok_or_else(|| BuildError::Io {
            what: format!("patch set {} names {name}", set.name),
            source: std::io::Error::other("not embedded"),
        })?;
        if let Some(output) = run_patch(&staging, data)? {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(BuildError::Patch {
                name: name.to_string(),
                set: set.name,
                version,
                dir: source.clone(),
                output,
            });
        }
    }
    for (name, data) in embedded_files() {
        if let Some(p) = name.strip_prefix("runtime/") {
            write_file(&staging.join("mpprof-usermod/mpprof").join(p), data)?;
        } else if let Some(p) = name.strip_prefix("ports/unix/variant-mpprof/") {
            write_file(&staging.join("ports/unix/variants/mpprof").join(p), data)?;
        } else if let Some(p) = name.strip_prefix("ports/frozen/") {
            write_file(&staging.join("mpprof-frozen").join(p), data)?;
        } else if let Some(p) = name.strip_prefix("ports/qemu/clock/") {
            // The qemu port's clock, a user C module of its own: beside the
            // runtime for the instrumented firmware, alone for the plain one.
            write_file(&staging.join("mpprof-usermod/qemu_clock").join(p), data)?;
            write_file(&staging.join("mpprof-qemu-plain/qemu_clock").join(p), data)?;
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

fn tree_version(tree: &Path) -> Result<MicroPythonVersion, BuildError> {
    MicroPythonVersion::of_tree(tree).ok_or(BuildError::NotMicroPython {
        dir: tree.to_path_buf(),
        missing: "MICROPY_VERSION_MAJOR/MINOR/MICRO in py/mpconfig.h",
    })
}

/// One embedded file by its path under `vm-instrumented/`.
pub fn embedded_file(name: &str) -> Option<&'static [u8]> {
    embedded_files()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
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
        // No fuzz: a hunk whose context does not match exactly fails
        // instead of landing somewhere else (offsets are fine).
        .args([
            "-p1",
            "--forward",
            "--batch",
            "--fuzz=0",
            "--no-backup-if-mismatch",
            "--reject-file=-",
        ])
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

const MAKE_DISABLE: [&str; 5] = [
    "MICROPY_PY_BTREE=0",
    "MICROPY_PY_FFI=0",
    "MICROPY_PY_SSL=0",
    "MICROPY_SSL_AXTLS=0",
    "MICROPY_SSL_MBEDTLS=0",
];

/// The unix port's make variables for a host build of `word_size` from the
/// prepared `tree`, beyond the variant and build directory: what is left
/// out (no network), what is frozen (`ports/frozen/manifest.py`: upstream's
/// asyncio, as the port's own variants freeze it) and the word size. The 32-bit build passes `-m32`
/// itself: `MICROPY_FORCE_32BIT` is gone from upstream after v1.28 (only a
/// warning there), while `CFLAGS_EXTRA`/`LDFLAGS_EXTRA` work on every
/// supported version.
pub fn host_make_args(word_size: WordSize, tree: &Path) -> Vec<String> {
    let mut args: Vec<String> = MAKE_DISABLE.iter().map(|s| s.to_string()).collect();
    args.extend(frozen_make_args(tree));
    if word_size == WordSize::Bits32 {
        args.push("CFLAGS_EXTRA=-m32".into());
        args.push("LDFLAGS_EXTRA=-m32".into());
    }
    args
}

/// What a build freezes: `ports/frozen/manifest.py` (upstream's asyncio).
fn frozen_make_args(tree: &Path) -> [String; 2] {
    let frozen = tree.join("mpprof-frozen");
    [
        format!("FROZEN_MANIFEST={}", frozen.join("manifest.py").display()),
        // Only checked for a README.md: the manifest takes nothing from it.
        format!("MPY_LIB_DIR={}", frozen.display()),
    ]
}

/// mpy-cross, which freezing needs, built by its own make first: the
/// port's make would build it with the port's command-line variables
/// (`BUILD`, `PROG`), which reach a sub-make too.
fn ensure_mpy_cross(tree: &Path, jobs: usize) -> Result<(), BuildError> {
    let dir = tree.join("mpy-cross");
    if dir.join("build/mpy-cross").exists() {
        return Ok(());
    }
    let mut cmd = make_command(tree);
    cmd.arg("-C")
        .arg(&dir)
        .arg(format!("-j{}", jobs.max(1)))
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    run_quiet(&mut cmd, &dir.join("make.log"), "building mpy-cross")
}

/// The build directory's mark of a line-time build (none for a plain one,
/// which has no runtime).
fn line_time_suffix(opts: &BuildOptions) -> &'static str {
    if opts.line_time && opts.flavour == Flavour::Instrumented {
        "-line"
    } else {
        ""
    }
}

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
    let version = tree_version(&tree)?;
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
        Flavour::PlainSettrace => ("standard", "plain-settrace"),
    };
    let bits = match word_size {
        WordSize::Bits32 => "32",
        WordSize::Bits64 => "64",
    };
    let line = line_time_suffix(opts);
    let build_dir = tree
        .join("ports/unix")
        .join(format!("build-{flavour_name}{line}-{bits}"));
    let binary = build_dir.join("micropython");
    if binary.exists() && build_dir.join(".built").exists() {
        return Ok(HostBuild {
            micropython: binary,
            word_size,
            fell_back_to_64,
            source_dir: tree,
            version,
        });
    }
    progress(&format!(
        "building {flavour_name} micropython ({bits}-bit), about 30 s"
    ));
    ensure_mpy_cross(&tree, opts.jobs)?;
    let mut cmd = make_command(&tree);
    cmd.arg("-C")
        .arg(tree.join("ports/unix"))
        .arg(format!("-j{}", opts.jobs.max(1)))
        .arg(format!("VARIANT={variant}"))
        .arg(format!("BUILD={}", build_dir.display()))
        .arg("PROG=micropython")
        .args(host_make_args(word_size, &tree));
    if opts.flavour == Flavour::PlainSettrace {
        // One CFLAGS_EXTRA on the command line: settrace's with -m32's.
        let cflags = if word_size == WordSize::Bits32 {
            "CFLAGS_EXTRA=-m32 -DMICROPY_PY_SYS_SETTRACE=1"
        } else {
            "CFLAGS_EXTRA=-DMICROPY_PY_SYS_SETTRACE=1"
        };
        cmd.arg(cflags);
    }
    if opts.flavour == Flavour::Instrumented {
        cmd.arg(format!(
            "USER_C_MODULES={}",
            tree.join("mpprof-usermod").display()
        ));
        if opts.line_time {
            cmd.arg("MPPROF_LINE_TIME=1");
        }
    }
    // What a failed build left was compiled with that build's flags, which
    // make does not compare: start again from nothing.
    if build_dir.exists() {
        std::fs::remove_dir_all(&build_dir).map_err(io("cannot clear a failed build"))?;
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
        version,
    })
}

/// Where the firmware finds the ROMFS segment the host writes the script's
/// modules into (`board_agent::romfs::ROMFS_ADDR`, 8 MiB): above the RTT
/// block at the start of the MPS2's 16 MiB RAM.
const QEMU_ROMFS_START: &str = "0x21800000";
const QEMU_ROMFS_SIZE: &str = "0x00800000";

/// How a qemu firmware gets that segment. A port without ROMFS support of
/// its own (up to v1.28: VfsRom, but no segment) gets ours
/// (`ports/qemu/clock/mpprof_qemu_romfs.c`). A port with its own
/// (`ports/qemu/vfs_rom_ioctl.c`, on master after v1.28) has its board's
/// partition moved there: the MPS2-AN385's default, 0x21000000, is where
/// the RTT block is.
fn qemu_romfs_args(tree: &Path) -> Vec<String> {
    if tree.join("ports/qemu/vfs_rom_ioctl.c").exists() {
        vec![
            format!("MICROPY_HW_ROMFS_PART0_START={QEMU_ROMFS_START}"),
            format!("MICROPY_HW_ROMFS_PART0_SIZE={QEMU_ROMFS_SIZE}"),
        ]
    } else {
        vec!["MPPROF_QEMU_ROMFS=1".into()]
    }
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
    if opts.flavour == Flavour::PlainSettrace {
        return Err(BuildError::HostOnly("the settrace build"));
    }
    let tree = prepared_source(opts, progress)?;
    let version = tree_version(&tree)?;
    let (flavour_name, extra): (String, Vec<String>) = match opts.flavour {
        Flavour::Instrumented => {
            let (transport, transport_name) = match opts.transport {
                Transport::Rtt => ("rtt", ""),
                Transport::Uart => ("uart", "-uart"),
            };
            // From v1.27 the qemu port runs SysTick itself (1 kHz, with
            // its interrupt) and has a microsecond clock, which recovers
            // the SysTick turns a long call hides; before, it has neither.
            let port_us_clock = (version.major, version.minor) >= (1, 27);
            let (port, clock_name, clock_flags) = match opts.qemu_clock {
                QemuClock::Timer0 => ("qemu", "", ""),
                // The MPS2's CPU clock is 25 MHz.
                QemuClock::CortexMSysTick if port_us_clock => (
                    "cortexm",
                    "-systick",
                    " -DMPPROF_CLOCK_SYSTICK=1 -DMPPROF_CLOCK_HZ=25000000",
                ),
                QemuClock::CortexMSysTick => (
                    "cortexm",
                    "-systick",
                    " -DMPPROF_CLOCK_SYSTICK=1 -DMPPROF_CLOCK_HZ=25000000 -DMPPROF_US_CLOCK=0",
                ),
            };
            let mut extra = vec![
                format!("MPPROF_LINE_TIME={}", u8::from(opts.line_time)),
                format!("USER_C_MODULES={}", tree.join("mpprof-usermod").display()),
                format!("MPPROF_PORT={port}"),
                format!("MPPROF_TRANSPORT={transport}"),
                // The RTT block in the RAM the host can map (0x21000000).
                "MPPROF_SHARED_RTT=1".into(),
                format!("CFLAGS_EXTRA=-DMP_CONFIGFILE=\"<mpprof_qemu_config.h>\"{clock_flags}"),
            ];
            // Before v1.27 the port has no clock, hence no `time` and no
            // asyncio: the qemu port layer's build gets ours
            // (ports/qemu/clock/); the SysTick variant's port layer owns
            // SysTick itself there.
            if !port_us_clock && opts.qemu_clock == QemuClock::Timer0 {
                extra.push("MPPROF_QEMU_HAL=1".into());
            }
            // The script's modules' ROMFS on every version; from v1.27
            // asyncio over the port's own clock (the port leaves it off).
            extra.extend(qemu_romfs_args(&tree));
            if port_us_clock {
                extra.push("MPPROF_QEMU_ASYNCIO=1".into());
            }
            // asyncio frozen, as for the host (ports/frozen/manifest.py).
            extra.extend(frozen_make_args(&tree));
            (
                format!(
                    "instrumented{transport_name}{clock_name}{}",
                    line_time_suffix(opts)
                ),
                extra,
            )
        }
        // The same MicroPython without the profiler: the same frozen
        // modules, ROMFS and asyncio and, before v1.27, the same clock, so
        // the two firmwares' heaps and qstrs are alike.
        Flavour::Plain | Flavour::PlainSettrace => {
            let mut extra: Vec<String> = frozen_make_args(&tree).into();
            extra.extend([
                format!(
                    "USER_C_MODULES={}",
                    tree.join("mpprof-qemu-plain").display()
                ),
                "CFLAGS_EXTRA=-DMP_CONFIGFILE=\"<mpprof_qemu_plain_config.h>\"".into(),
            ]);
            extra.extend(qemu_romfs_args(&tree));
            if (version.major, version.minor) < (1, 27) {
                extra.push("MPPROF_QEMU_HAL=1".into());
            } else {
                extra.push("MPPROF_QEMU_ASYNCIO=1".into());
            }
            ("plain".to_string(), extra)
        }
    };
    let build_dir = tree
        .join("ports/qemu")
        .join(format!("build-mps2-{flavour_name}"));
    let firmware = build_dir.join("firmware.elf");
    if firmware.exists() && build_dir.join(".built").exists() {
        return Ok(QemuBuild {
            firmware,
            source_dir: tree,
            version,
        });
    }
    progress(&format!(
        "building {flavour_name} qemu firmware (MPS2-AN385), about 15 s"
    ));
    // What a failed build left was compiled with that build's flags, which
    // make does not compare: start again from nothing.
    if build_dir.exists() {
        std::fs::remove_dir_all(&build_dir).map_err(io("cannot clear a failed build"))?;
    }
    std::fs::create_dir_all(&build_dir).map_err(io("cannot create the build directory"))?;
    ensure_mpy_cross(&tree, opts.jobs)?;
    let mut cmd = make_command(&tree);
    cmd.arg("-C")
        .arg(tree.join("ports/qemu"))
        .arg(format!("-j{}", opts.jobs.max(1)))
        .arg("BOARD=MPS2_AN385")
        .arg(format!("BUILD={}", build_dir.display()))
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
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_the_patches_and_runtime() {
        let names: Vec<&str> = embedded_files().iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"runtime/micropython.mk"));
        assert!(names.contains(&"ports/unix/variant-mpprof/mpconfigvariant.h"));
        // Every patch set's files are embedded, and every embedded patch is
        // in a set.
        for set in PATCH_SETS {
            for p in set.patches {
                assert!(
                    embedded_file(&format!("patches/{p}")).is_some(),
                    "set {} names {p}, which is not in patches/",
                    set.name
                );
            }
        }
        for n in names.iter().filter(|n| n.ends_with(".patch")) {
            let p = n.strip_prefix("patches/").unwrap();
            assert!(
                PATCH_SETS.iter().any(|s| s.patches.contains(&p)),
                "{n} is in no patch set"
            );
        }
    }

    #[test]
    fn the_patches_readme_lists_the_same_sets() {
        let readme = std::str::from_utf8(
            embedded_file("patches/README.md").expect("patches/README.md is embedded"),
        )
        .unwrap();
        for set in PATCH_SETS {
            let short: Vec<&str> = set
                .patches
                .iter()
                .map(|p| &p[..p.rfind('/').unwrap() + 5])
                .collect();
            let row = format!("| {} |", set.name);
            let line = readme
                .lines()
                .find(|l| l.starts_with(&row))
                .unwrap_or_else(|| panic!("patches/README.md has no row for set {}", set.name));
            assert!(
                line.ends_with(&format!("| {} |", short.join(", "))),
                "{line} vs {short:?}"
            );
            for (a, b) in set.releases {
                assert!(line.contains(&format!("{a}.{b}.x")), "{line}");
            }
        }
    }

    #[test]
    fn no_two_patch_files_are_identical() {
        let patches: Vec<&(&str, &[u8])> = embedded_files()
            .iter()
            .filter(|(n, _)| n.ends_with(".patch"))
            .collect();
        for (i, a) in patches.iter().enumerate() {
            for b in &patches[i + 1..] {
                assert_ne!(
                    a.1, b.1,
                    "{} and {} are the same patch: share one file",
                    a.0, b.0
                );
            }
        }
    }

    fn v(major: u32, minor: u32, micro: u32, prerelease: bool) -> MicroPythonVersion {
        MicroPythonVersion {
            major,
            minor,
            micro,
            prerelease,
        }
    }

    #[test]
    fn the_version_is_read_from_mpconfig() {
        let text = "#define MICROPY_VERSION_MAJOR 1\n#define MICROPY_VERSION_MINOR 29\n#define MICROPY_VERSION_MICRO 0\n#define MICROPY_VERSION_PRERELEASE 1\n#define MICROPY_VERSION_MAJORX 7\n";
        assert_eq!(
            MicroPythonVersion::from_mpconfig(text),
            Some(v(1, 29, 0, true))
        );
        assert_eq!(v(1, 29, 0, true).to_string(), "1.29.0-preview");
        assert_eq!(v(1, 26, 1, false).to_string(), "1.26.1");
        assert_eq!(
            MicroPythonVersion::from_mpconfig("#define MICROPY_VERSION_MAJOR 1\n"),
            None
        );
    }

    #[test]
    fn each_supported_version_has_its_patch_set() {
        let set = |x| patch_set_for(&x).map(|s| s.name);
        assert_eq!(set(v(1, 24, 1, false)), Some("v1.24"));
        assert_eq!(set(v(1, 25, 0, false)), Some("v1.25"));
        assert_eq!(set(v(1, 26, 1, false)), Some("v1.26"));
        assert_eq!(set(v(1, 27, 0, false)), Some("v1.26"));
        assert_eq!(set(v(1, 28, 0, false)), Some("v1.28"));
        // master between v1.28 and v1.29
        assert_eq!(set(v(1, 29, 0, true)), Some("v1.28"));
        // Not checked: refused.
        assert_eq!(set(v(1, 29, 0, false)), None);
        assert_eq!(set(v(1, 23, 0, false)), None);
        assert_eq!(set(v(1, 30, 0, true)), None);
        assert_eq!(set(v(2, 25, 0, false)), None);
    }

    #[test]
    fn debian_releases_parse() {
        assert_eq!("1.25".parse(), Ok(DebianRelease::V1_25));
        assert_eq!(
            DebianRelease::default().upstream_version(),
            MICROPYTHON_VERSION
        );
        assert_eq!("1.25.0".parse(), Ok(DebianRelease::V1_25));
        assert_eq!("1.26".parse(), Ok(DebianRelease::V1_26));
        assert_eq!("v1.26.1".parse(), Ok(DebianRelease::V1_26));
        let err = "1.27".parse::<DebianRelease>().unwrap_err().to_string();
        assert!(err.contains("1.27") && err.contains("MICROPY_DIR"), "{err}");
        for r in DebianRelease::ALL {
            assert_eq!(r.to_string().parse(), Ok(r));
            assert!(patch_set_for(&MicroPythonVersion::from_mpconfig(&format!(
                "#define MICROPY_VERSION_MAJOR 1\n#define MICROPY_VERSION_MINOR {}\n#define MICROPY_VERSION_MICRO 0\n",
                &r.upstream_version()[2..4]
            ))
            .unwrap())
            .is_some());
        }
        // Their sources are cached apart.
        let c = Path::new("/c");
        assert_ne!(
            debian_tree(c, DebianRelease::V1_25),
            debian_tree(c, DebianRelease::V1_26)
        );
    }

    #[test]
    fn an_unsupported_version_is_refused_before_anything_is_built() {
        let dir = std::env::temp_dir().join(format!("mpprof-oldmp-{}", std::process::id()));
        for f in ["py/vm.c", "py/gc.c", "ports/unix/Makefile"] {
            write_file(&dir.join(f), b"").unwrap();
        }
        write_file(
            &dir.join("py/mpconfig.h"),
            b"#define MICROPY_VERSION_MAJOR 1\n#define MICROPY_VERSION_MINOR 23\n#define MICROPY_VERSION_MICRO 0\n#define MICROPY_VERSION_PRERELEASE 0\n",
        )
        .unwrap();
        let opts = BuildOptions {
            micropy_dir: Some(dir.clone()),
            cache_dir: dir.join("cache"),
            ..BuildOptions::default()
        };
        let err = prepared_source(&opts, &mut |_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, BuildError::UnsupportedVersion { .. }),
            "{msg}"
        );
        assert!(msg.contains("MicroPython 1.23.0"), "{msg}");
        assert!(
            msg.contains("1.25.x") && msg.contains("1.29.0-preview"),
            "{msg}"
        );
        let trees = std::fs::read_dir(dir.join("cache"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("tree-"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(trees, 0, "nothing was prepared");
        std::fs::remove_dir_all(&dir).unwrap();
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
