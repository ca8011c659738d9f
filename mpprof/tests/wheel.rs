//! `pip install mpprof`: the wheel maturin builds from this workspace
//! (pyproject.toml, `bindings = "bin"`) installs the `mpprof` command into
//! a fresh virtual environment, and that command profiles a script with
//! its MicroPython build kept in the user cache directory, as an installed
//! tool must (there is no cargo `target/` beside it).
//!
//! maturin comes from the Python package index through pip, into a virtual
//! environment kept under the cargo target dir. The wheel is built with the
//! dev profile in a target dir of its own (a release wheel is the same
//! packaging, only slower to compile; sharing the tests' target dir would
//! replace the `mpprof` binary other tests are running).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

const MATURIN_VERSION: &str = "1.16.0";

fn run(cmd: &mut Command, what: &str) -> String {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        o.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `python3 -m venv DIR`, with Debian's venv and pip support installed
/// when the interpreter lacks them.
fn make_venv(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        common::apt(&["python3", "python3-venv", "python3-pip"]);
        let _ = std::fs::remove_dir_all(dir);
        run(
            Command::new("python3").args(["-m", "venv"]).arg(dir),
            "python3 -m venv",
        );
    }
}

/// maturin, pip-installed once into a virtual environment under the target dir.
fn maturin() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("maturin-{MATURIN_VERSION}"));
    let bin = venv.join("bin/maturin");
    let done = venv.join(".installed");
    if !done.exists() {
        make_venv(&venv);
        run(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("maturin=={MATURIN_VERSION}")),
            "pip install maturin",
        );
        std::fs::write(&done, "").unwrap();
    }
    assert!(bin.exists());
    bin
}

/// `dst` as a copy of `src` made of hard links (the fetched MicroPython
/// source, so the installed tool builds without fetching it again).
fn link_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let t = e.file_type().unwrap();
        if t.is_dir() {
            link_tree(&from, &to);
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).unwrap();
        }
    }
}

#[test]
fn the_wheel_installs_a_working_mpprof() {
    let root = common::root();
    // The fetched source this checkout's tests already use.
    let host = common::host_vm();
    let cache_of_tests = host
        .ancestors()
        .find(|a| a.join("source").is_dir())
        .expect("the tests' MicroPython cache")
        .to_path_buf();

    let wheels = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wheel");
    let _ = std::fs::remove_dir_all(&wheels);
    run(
        Command::new(maturin())
            .args(["build", "--profile", "dev", "--quiet", "--out"])
            .arg(&wheels)
            .current_dir(&root)
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("wheel-target"),
            ),
        "maturin build",
    );
    let wheel: Vec<PathBuf> = std::fs::read_dir(&wheels)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(wheel.len(), 1, "one wheel: {wheel:?}");
    let name = wheel[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("mpprof-{}-py3-none-", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );

    // A user's machine: no cargo target dir anywhere above the install,
    // a cache directory and a home of its own.
    let home = std::env::temp_dir().join(format!("mpprof-wheel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    assert!(!home.ancestors().any(|a| a.ends_with("target")));
    let venv = home.join("venv");
    make_venv(&venv);
    run(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--no-index",
                "--disable-pip-version-check",
            ])
            .arg(&wheel[0]),
        "pip install the wheel",
    );
    let mpprof = venv.join("bin/mpprof");
    assert!(mpprof.exists(), "pip put mpprof in the environment's bin/");
    let xdg = home.join("xdg-cache");
    let installed = |args: &[&str]| {
        let mut c = Command::new(&mpprof);
        c.args(args)
            .current_dir(&home)
            .env("HOME", home.join("home"))
            .env("XDG_CACHE_HOME", &xdg)
            .env_remove("MPPROF_CACHE_DIR")
            .env_remove("MICROPY_DIR")
            .env_remove("MPPROF_MICROPYTHON");
        c
    };

    let version = run(&mut installed(&["--version"]), "mpprof --version");
    assert!(
        version.contains(&format!("mpprof {}", env!("CARGO_PKG_VERSION")))
            && version.contains("1.25"),
        "{version}"
    );
    // The licence texts travel in the wheel's metadata and in the binary.
    let licenses = run(&mut installed(&["licenses"]), "mpprof licenses");
    for text in ["inferno-CDDL-1.0.txt", "serialport-MPL-2.0.txt"] {
        let ours = std::fs::read_to_string(root.join("LICENSES").join(text)).unwrap();
        assert!(
            licenses.contains(ours.trim()),
            "mpprof licenses prints {text}"
        );
        let in_wheel = walk(&venv)
            .into_iter()
            .find(|p| p.ends_with(Path::new("licenses/LICENSES").join(text)))
            .unwrap_or_else(|| panic!("{text} installed with the wheel's metadata"));
        assert_eq!(std::fs::read_to_string(in_wheel).unwrap(), ours);
    }

    // The installed tool builds its MicroPython in the user cache dir (the
    // source, already fetched by this checkout, is linked in beforehand).
    link_tree(&cache_of_tests.join("source"), &xdg.join("mpprof/source"));
    let out = home.join("bound_method.mpprof.json");
    let script = root.join("fixtures/causes/bound_method.py");
    run(
        &mut installed(&[
            "run",
            "-q",
            "-o",
            out.to_str().unwrap(),
            script.to_str().unwrap(),
        ]),
        "the installed mpprof run",
    );
    let p = mpprof_profile::Profile::from_json_file(&out).unwrap();
    // The fixture makes N = 100 bound methods on line 15.
    let allocs = common::allocations(&p, "bound_method.py");
    let (count, _) = allocs
        .get(&(15, "bound_method".to_string()))
        .copied()
        .unwrap_or_else(|| panic!("line 15's bound methods: {allocs:?}"));
    assert_eq!(count, 100);
    let built: Vec<PathBuf> = walk(&xdg.join("mpprof"))
        .into_iter()
        .filter(|p| {
            p.ends_with("micropython") && p.parent().is_some_and(|d| d.join(".built").exists())
        })
        .collect();
    assert_eq!(
        built.len(),
        1,
        "one MicroPython built in the user cache: {built:?}"
    );
    assert!(
        !home.join("home/.cache/mpprof").exists(),
        "$XDG_CACHE_HOME is preferred to ~/.cache"
    );
    let _ = std::fs::remove_dir_all(&home);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
