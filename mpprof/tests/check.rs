//! `mpprof check`: budgets over real runs, failures that read in a few
//! lines, exit codes, JUnit, CI annotations, baselines, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::root;

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("check")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check(budgets: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mpprof"));
    c.arg("check").arg("--budgets").arg(budgets).args(extra);
    c.env_remove("GITHUB_ACTIONS");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn budget_file(d: &Path, body: &str) -> PathBuf {
    let f = d.join("mpprof.toml");
    let fixtures = root().join("fixtures");
    std::fs::write(&f, body.replace("FIXTURES", fixtures.to_str().unwrap())).unwrap();
    f
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_repositorys_own_budgets_hold() {
    let d = dir("repo");
    let junit = d.join("junit.xml");
    let o = check(
        &root().join("mpprof.toml"),
        &["--junit", junit.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains(" 0 failed"));
    let xml = std::fs::read_to_string(junit).unwrap();
    assert!(xml.starts_with("<?xml") && xml.contains("failures=\"0\""));
    assert_eq!(
        xml.matches("<testcase").count(),
        stdout(&o).matches("\n  ok ").count()
    );
}

#[test]
fn a_broken_budget_fails_briefly_with_causes_fixes_and_annotations() {
    let d = dir("fail");
    let f = budget_file(
        &d,
        r#"
[[script]]
path = "FIXTURES/causes/bound_method.py"
[[script.budget]]
function = "Sensor.hot"
allocs = 0
"#,
    );
    let o = check(&f, &[], &[("GITHUB_ACTIONS", "true")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("FAIL"), "{out}");
    let offender = out
        .lines()
        .find(|l| l.contains("bound_method.py:15"))
        .expect("the offending line");
    // The object and the line's own fix, as the profile stores them.
    assert!(
        offender.contains("bound method") && offender.contains("fix: cache `self."),
        "{offender}"
    );
    assert!(
        out.lines().count() <= 12,
        "a failure reads in a few lines:\n{out}"
    );
    assert!(
        out.contains("::error file=") && out.contains("bound_method.py,line=15::"),
        "{out}"
    );
    // JSON output carries the same verdicts.
    let o = check(&f, &["--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[0]["pass"], false);
    assert!(v[0]["measured"].as_u64().unwrap() >= 100);
}

#[test]
fn baselines_make_relative_budgets_and_figures_are_deterministic() {
    let d = dir("baseline");
    let base = d.join("base");
    let f = budget_file(
        &d,
        r#"
[[script]]
path = "FIXTURES/causes/float.py"
[[script.budget]]
function = "hot"
opcodes = "+0%"
allocs = "+0"
"#,
    );
    // Relative budgets need a baseline.
    let o = check(&f, &[], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--baseline"), "{}", stderr(&o));
    let o = check(
        &f,
        &["--baseline", base.to_str().unwrap(), "--update-baseline"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The same script gives the same figures: +0% holds exactly.
    for _ in 0..2 {
        let o = check(&f, &["--baseline", base.to_str().unwrap()], &[]);
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    }
    // A baseline from another target is refused.
    let stored = std::fs::read_dir(&base)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stored).unwrap()).unwrap();
    p["meta"]["target"] = "qemu".into();
    std::fs::write(&stored, p.to_string()).unwrap();
    let o = check(&f, &["--baseline", base.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("from target `qemu`"), "{}", stderr(&o));
}

#[test]
fn bad_budget_files_are_usage_errors_that_say_what_to_fix() {
    let d = dir("bad");
    let cases = [
        ("[[script]]\npath = \"x.py\"\n[[script.budget]]\nallocs = = 1\n", "line 4"),
        ("[[script]]\npath = \"FIXTURES/misc/fib.py\"\nspeed = 1\n", "speed"),
        (
            "[[script]]\npath = \"FIXTURES/misc/fib.py\"\n[[script.budget]]\nfunction = \"fibb\"\nallocs = 0\n",
            "nearest: fib",
        ),
        (
            "[[script]]\npath = \"FIXTURES/misc/fib.py\"\n[[script.budget]]\nline = \"fib.py:999\"\nallocs = 0\n",
            "never ran",
        ),
        (
            "[[script]]\npath = \"FIXTURES/misc/fib.py\"\n[[script.budget]]\nregion = \"isr\"\nallocs = 0\n",
            "no region `isr`",
        ),
        (
            "[[script]]\npath = \"FIXTURES/misc/fib.py\"\n[[script.budget]]\nfunction = \"fib\"\ncycles = 100\n",
            "only with target = \"qemu\"",
        ),
        ("[[script]]\npath = \"FIXTURES/misc/nope.py\"\n", "does not exist"),
    ];
    for (body, expect) in cases {
        let f = budget_file(&d, body);
        let o = check(&f, &[], &[]);
        assert_eq!(o.status.code(), Some(2), "{body}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(expect),
            "{body}: expected `{expect}` in {}",
            stderr(&o)
        );
    }
    let o = check(&d.join("missing.toml"), &[], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read the budget file"));
}

#[test]
fn cycles_on_a_line_budget_are_the_lines_exact_time_on_the_board() {
    let d = dir("line-cycles");
    let script = root().join("fixtures/timing/lines.py");
    let source = std::fs::read_to_string(&script).unwrap();
    let line = source
        .lines()
        .position(|l| l.trim() == "s = sorted(xs)")
        .unwrap()
        + 1;
    let f = budget_file(
        &d,
        &format!(
            r#"
[[script]]
path = "FIXTURES/timing/lines.py"
target = "qemu"
[[script.budget]]
line = "lines.py:{line}"
cycles = 1
"#
        ),
    );
    let o = check(&f, &["--json"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    // The script's own output comes first, then the verdicts.
    let out_text = stdout(&o);
    let json = &out_text[out_text.find("\n[").map_or(0, |i| i + 1)..];
    let verdicts: serde_json::Value = serde_json::from_str(json).unwrap();
    let v = verdicts
        .as_array()
        .and_then(|a| a.iter().find(|v| v["metric"] == "cycles"))
        .unwrap_or_else(|| panic!("a cycles verdict: {verdicts}"));
    assert_eq!(v["pass"], false);
    // The same line's inclusive time in a line-time profile of the same
    // script (the emulated board repeats to the tick).
    let out = d.join("lines.json");
    let r = common::mpprof(&[
        "run",
        "-q",
        "--line-time",
        "--target",
        "qemu",
        "-o",
        out.to_str().unwrap(),
        script.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let p = mpprof_profile::Profile::from_json_file(&out).unwrap();
    let fid = p.functions[p.find_functions("work")[0]].file;
    let l = p.line(fid, line as u32).unwrap();
    assert!(l.incl_ticks.unwrap() > 1_000_000);
    assert_eq!(v["measured"].as_u64(), l.incl_ticks);
}
