//! Scripts that misbehave: Ctrl-C, megabytes of output, odd names and long
//! lines. Each ends with a written, valid profile and a clear status.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mpprof_profile::{ExitReason, Profile};

mod common;
use common::root;

fn out(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("robust");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn ctrl_c_keeps_the_profile_so_far() {
    let profile = out("ctrl-c.json");
    let _ = std::fs::remove_file(&profile);
    // Build first, so the interrupt lands while the script runs.
    assert!(Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .arg("build")
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "-o"])
        .arg(&profile)
        .arg(root().join("fixtures/misc/forever.py"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(1), "an interrupted script is a failed run");
    let p = Profile::from_json_file(&profile).expect("the profile was written");
    assert!(p.meta.partial);
    assert_eq!(p.meta.exit.reason, ExitReason::KeyboardInterrupt);
    let spin = p.find_functions("spin");
    assert!(
        !spin.is_empty() && p.functions[spin[0]].opcodes > 1000,
        "the loop's work is in the profile"
    );
}

#[test]
fn megabytes_of_output_pass_through() {
    let profile = out("chatty.json");
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "-o"])
        .arg(&profile)
        .arg(root().join("fixtures/misc/chatty.py"))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        o.stdout.len(),
        50_000 * 100,
        "every byte of the script's output"
    );
    let p = Profile::from_json_file(&profile).unwrap();
    assert!(!p.meta.partial);
    assert!(p.total_opcodes() > 50_000 * 4);
}

#[test]
fn odd_names_and_long_lines() {
    let profile = out("odd.json");
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "-o"])
        .arg(&profile)
        .arg(root().join("fixtures/misc/odd_names.py"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = Profile::from_json_file(&profile).unwrap();
    assert!(
        !p.find_functions("Ünïcøde_Klass.méthode").is_empty(),
        "{:?}",
        p.functions.iter().map(|f| &f.qualname).collect::<Vec<_>>()
    );
    assert_eq!(
        p.functions[p.find_functions("_ǅ__weird__name_with_µ_and_digits_123")[0]].calls,
        3
    );
    let long = p.find_functions("long_line")[0];
    let line = p.functions[long].line;
    assert!(p.source_line(p.functions[long].file, line).unwrap().len() > 400);
    // Every renderer copes.
    for args in [vec!["report"], vec!["report", "--html"]] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mpprof"));
        c.args(&args);
        if args.len() == 2 {
            c.arg(out("odd.html"));
        }
        let o = c.arg(&profile).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let svg = out("odd.svg");
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["flamegraph", "--weight", "opcodes", "-o"])
        .arg(&svg)
        .arg(&profile)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(std::fs::read_to_string(svg).unwrap().contains("méthode"));
}
