//! The HTML report opens in a real browser (headless Chromium, installed from
//! Debian's packages when missing), renders without script errors and shows
//! the hottest function.

use std::path::Path;
use std::process::Command;

mod common;

#[test]
fn the_html_report_renders_in_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html");
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join("fib.json");
    let html = dir.join("fib.html");
    let run = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "-o"])
        .arg(&profile)
        .arg(root.join("fixtures/causes/bound_method.py"))
        .output()
        .unwrap();
    assert!(run.status.success());
    let rep = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .arg("report")
        .arg(&profile)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing is fetched from anywhere.
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));

    let user_dir = dir.join("chromium-profile");
    let out = Command::new(common::chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", user_dir.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-ready=\"ok\""),
        "the page's script ran: {}",
        &dom[..dom.len().min(400)]
    );
    assert!(!dom.contains("data-error=\""), "no script error");
    // The hottest function by exclusive time is Sensor.hot.
    let p = mpprof_profile::Profile::from_json_file(&profile).unwrap();
    let hottest = &p.functions[p.top_functions(|f| f.excl_ticks)[0]].qualname;
    assert!(dom.contains(hottest.as_str()), "{hottest} is shown");
    assert!(dom.contains("bound_method") && dom.contains("<iframe"));
}
