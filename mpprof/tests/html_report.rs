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

#[test]
fn the_html_report_opens_with_heap_over_time() {
    // A run with collections and marks: the page's chart shows one band per
    // collection and one line per mark, as the browser builds the page.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-heap");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("collects.py");
    std::fs::write(
        &script,
        "import gc\nimport mpprof\n\n\ndef churn(n):\n    out = []\n    for i in range(n):\n        out.append(str(i))\n    return out\n\n\nmpprof.mark(\"start\")\nfor k in range(3):\n    churn(200)\n    gc.collect()\nmpprof.mark(\"end\")\n",
    )
    .unwrap();
    let profile = dir.join("collects.json");
    let html = dir.join("collects.html");
    let run = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "-o"])
        .arg(&profile)
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
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
    let out = Command::new(common::chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium-profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-ready=\"ok\""),
        "{}",
        &dom[..dom.len().min(400)]
    );
    let p = mpprof_profile::Profile::from_json_file(&profile).unwrap();
    assert!(p.gc.collections.len() >= 3, "{:?}", p.gc.collections);
    let chart_start = dom
        .find("id=\"heap-chart\"")
        .expect("the chart is on the page");
    let chart = &dom[chart_start..dom[chart_start..].find("</svg>").unwrap() + chart_start];
    assert_eq!(
        chart.matches("class=\"gc\"").count(),
        p.gc.collections.len()
    );
    assert_eq!(chart.matches("class=\"mark\"").count(), p.markers.len());
    assert_eq!(p.markers.len(), 2);
    assert!(chart.contains("class=\"used\""), "the heap line is drawn");
    // The chart comes first, before the summary.
    assert!(chart_start < dom.find("id=\"summary\"").unwrap());
}
