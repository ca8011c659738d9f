//! The cause fixtures through the real instrumented MicroPython: each script's
//! marked line allocates for its one reason at least N times, with the cause
//! the analysis names; nothing else in its loop allocates; the human-written
//! `expected.json` agrees with the markers in the scripts; and the hints for
//! the marked lines are specific to them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mpprof::analysis::classify::hint;
use mpprof_profile::{Cause, Profile};

fn causes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/causes")
}

/// `# ALLOC: <cause>` markers of a script: line number (1-based) -> cause.
fn markers(source: &str) -> BTreeMap<u32, String> {
    source
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let (_, m) = l.split_once("# ALLOC:")?;
            Some((i as u32 + 1, m.trim().to_string()))
        })
        .collect()
}

/// The script's loop count: its `N = <int>` line.
fn loop_count(source: &str) -> u64 {
    source
        .lines()
        .find_map(|l| l.strip_prefix("N = ")?.trim().parse().ok())
        .expect("each cause fixture sets N")
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The `for` line enclosing `line` and the lines of that loop's body.
fn enclosing_loop(lines: &[&str], line: u32) -> (u32, Vec<u32>) {
    let idx = line as usize - 1;
    let own = indent(lines[idx]);
    let for_idx = (0..idx)
        .rev()
        .find(|&i| lines[i].trim_start().starts_with("for ") && indent(lines[i]) < own)
        .expect("the marked line is inside a for loop");
    let for_indent = indent(lines[for_idx]);
    let body = (for_idx + 1..lines.len())
        .take_while(|&i| lines[i].trim().is_empty() || indent(lines[i]) > for_indent)
        .filter(|&i| !lines[i].trim().is_empty())
        .map(|i| i as u32 + 1)
        .collect();
    (for_idx as u32 + 1, body)
}

fn profile(script: &Path) -> Profile {
    let name = script
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("script");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("analyse-fixtures");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out_path = dir.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&out_path);
    let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "-o"])
        .arg(&out_path)
        .arg(script)
        .output()
        .expect("mpprof runs");
    assert!(
        out.status.success(),
        "mpprof run {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Profile::from_json_file(&out_path).expect("a valid profile")
}

fn expected() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(causes_dir().join("expected.json")).expect("expected.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("expected.json is JSON");
    v.as_object().expect("an object").clone()
}

#[test]
fn expected_json_agrees_with_the_markers_and_covers_every_cause() {
    let expected = expected();
    let mut covered = Vec::new();
    for entry in std::fs::read_dir(causes_dir()).expect("fixtures/causes") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("py") {
            continue;
        }
        let script = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        if script.starts_with('_') {
            // A module a fixture imports, not a fixture of its own.
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("readable");
        let e = expected
            .get(&script)
            .unwrap_or_else(|| panic!("{script} is missing from expected.json"));
        let marks = markers(&source);
        if script == "quiet_loop.py" {
            assert!(marks.is_empty(), "the quiet loop marks no allocation");
            assert!(loop_count(&source) >= 10_000);
            continue;
        }
        assert_eq!(marks.len(), 1, "{script}: one marked line");
        let (&line, cause) = marks.iter().next().expect("one marker");
        assert_eq!(e["line"].as_u64(), Some(u64::from(line)), "{script}: line");
        assert_eq!(e["cause"].as_str(), Some(cause.as_str()), "{script}: cause");
        let parsed =
            Cause::from_name(cause).unwrap_or_else(|| panic!("{script}: unknown cause {cause}"));
        assert!(
            e["min_count"].as_u64().is_some_and(|m| m > 0),
            "{script}: min_count"
        );
        covered.push(parsed);
    }
    for c in Cause::all() {
        assert_eq!(
            covered.iter().filter(|x| *x == c).count(),
            1,
            "exactly one fixture for {}",
            c.label()
        );
    }
}

#[test]
fn each_marked_line_allocates_for_its_cause_and_nothing_else_in_the_loop_does() {
    let expected = expected();
    for (script, e) in &expected {
        let Some(line) = e.get("line").and_then(|l| l.as_u64()) else {
            continue;
        };
        let line = line as u32;
        let path = causes_dir().join(script);
        let source = std::fs::read_to_string(&path).expect("readable");
        let lines: Vec<&str> = source.lines().collect();
        let n = loop_count(&source);
        let cause = Cause::from_name(e["cause"].as_str().expect("cause")).expect("a cause name");
        let min = e["min_count"].as_u64().expect("min_count");
        let also: Vec<Cause> = e
            .get("also")
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().and_then(Cause::from_name))
                    .collect()
            })
            .unwrap_or_default();

        let p = profile(&path);
        let file = p
            .files
            .iter()
            .position(|f| f.path.ends_with(script.as_str()))
            .unwrap_or_else(|| panic!("{script} not in its profile"));
        let at = |l: u32| p.lines.iter().find(|x| x.file == file && x.line == l);

        // The marked line: its cause first, at least min_count times, and no
        // cause but the expected one and those listed under "also".
        let marked = at(line).unwrap_or_else(|| panic!("{script}:{line} never ran"));
        let top = marked
            .causes
            .first()
            .unwrap_or_else(|| panic!("{script}:{line} does not allocate"));
        assert_eq!(top.cause, cause, "{script}:{line}: {:?}", marked.causes);
        assert!(top.count >= min, "{script}:{line}: {} < {min}", top.count);
        for c in &marked.causes {
            assert!(
                c.cause == cause || also.contains(&c.cause),
                "{script}:{line}: unexpected {} x{}",
                c.cause.label(),
                c.count
            );
        }

        // Nothing else in the loop allocates at all, and no other line of
        // the script allocates once per pass.
        let (for_line, body) = enclosing_loop(&lines, line);
        for l in std::iter::once(for_line).chain(body).filter(|&l| l != line) {
            if let Some(x) = at(l) {
                assert_eq!(
                    x.alloc_count, 0,
                    "{script}:{l} allocates in the loop: {:?}",
                    x.causes
                );
            }
        }
        for x in p.lines.iter().filter(|x| x.file == file && x.line != line) {
            assert!(
                x.alloc_count < n / 2,
                "{script}:{} allocates {} times: {:?}",
                x.line,
                x.alloc_count,
                x.causes
            );
        }

        // The analysis' hint for the line, from the opcode that allocated
        // and the line's text, is specific for every cause it has rules for.
        let site = p
            .alloc_sites
            .iter()
            .filter(|s| s.file == file && s.line == line && s.cause == cause)
            .max_by_key(|s| s.count)
            .expect("a site for the marked line");
        let h = hint(&cause, site.opcode, p.source_line(file, line));
        if !matches!(cause, Cause::Float | Cause::Bigint) {
            assert_ne!(
                h,
                cause.fix(),
                "{script}: a generic hint for {:?}",
                lines[line as usize - 1]
            );
        }
    }
}

/// `<`, `>`, `&` and quotes as the HTML report writes them.
fn html_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[test]
fn each_causes_hint_is_the_same_in_the_summary_the_annotated_source_and_the_html() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("analyse-fixtures-hints");
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (script, e) in &expected() {
        let Some(line) = e.get("line").and_then(|l| l.as_u64()) else {
            continue;
        };
        let line = line as u32;
        let stem = script.trim_end_matches(".py");
        let json = dir.join(format!("{stem}.json"));
        let html = dir.join(format!("{stem}.html"));
        let run = Command::new(env!("CARGO_BIN_EXE_mpprof"))
            .args(["run", "-o"])
            .arg(&json)
            .arg(causes_dir().join(script))
            .output()
            .expect("mpprof runs");
        assert!(
            run.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        // The summary goes to stderr, apart from the script's own output.
        let summary = String::from_utf8_lossy(&run.stderr).to_string();
        let p = Profile::from_json_file(&json).expect("a valid profile");
        let file = p
            .files
            .iter()
            .position(|f| f.path.ends_with(script.as_str()))
            .expect("the script is in its profile");
        let l = p.line(file, line).expect("the marked line has a record");
        let fix = l.fix.clone().expect("the marked line has a stored fix");
        let what = l.what.clone().expect("the marked line names its object");
        let cause = Cause::from_name(e["cause"].as_str().expect("cause")).expect("a cause");
        if !matches!(cause, Cause::Float | Cause::Bigint) {
            assert_ne!(
                fix,
                cause.fix(),
                "{script}: the hint is specific to the line"
            );
        }
        assert!(
            summary.contains(&format!("fix: {fix}")) || summary.contains(&format!("— {fix}")),
            "{script}: the summary shows {fix:?}:\n{summary}"
        );
        let report = Command::new(env!("CARGO_BIN_EXE_mpprof"))
            .arg("report")
            .arg(&json)
            .output()
            .expect("mpprof report runs");
        assert!(report.status.success(), "{script}: report failed");
        let report = String::from_utf8_lossy(&report.stdout);
        assert!(
            report.contains(&format!("allocates: {what}"))
                && report.contains(&format!("fix: {fix}")),
            "{script}: the annotated source shows {what:?} and {fix:?}:\n{report}"
        );
        let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
            .arg("report")
            .arg(&json)
            .arg("--html")
            .arg(&html)
            .output()
            .expect("mpprof report --html runs");
        assert!(out.status.success(), "{script}: report --html failed");
        let page = std::fs::read_to_string(&html).expect("the page was written");
        assert!(
            page.contains(&html_escaped(&fix)),
            "{script}: the HTML report shows {fix:?}"
        );
    }
}

#[test]
fn each_object_is_named_exactly() {
    let path = causes_dir().join("../misc/objects.py");
    let source = std::fs::read_to_string(&path).expect("readable");
    let p = profile(&path);
    let file = p
        .files
        .iter()
        .position(|f| f.path.ends_with("objects.py"))
        .expect("the script is in its profile");
    let mut checked = 0;
    for (i, text) in source.lines().enumerate() {
        let Some((_, want)) = text
            .split_once("# OBJECT:")
            .filter(|_| !text.trim_start().starts_with('#'))
        else {
            continue;
        };
        let line = i as u32 + 1;
        let l = p
            .line(file, line)
            .unwrap_or_else(|| panic!("objects.py:{line} has no record"));
        assert_eq!(
            l.what.as_deref(),
            Some(want.trim()),
            "objects.py:{line} `{}`: {:?}",
            text.trim(),
            l.causes
        );
        assert_eq!(l.scope, mpprof_profile::Scope::PerPass, "objects.py:{line}");
        assert!(l.executions.is_some_and(|n| n >= 50), "objects.py:{line}");
        checked += 1;
    }
    assert_eq!(checked, 11);
}
