//! The HTML report opens in a real browser (headless Chromium, installed from
//! Debian's packages when missing), renders without script errors, shows
//! the hottest function and opens with the heap over time.

use std::path::{Path, PathBuf};
use std::process::Command;

use mpprof_profile::Profile;

mod common;

/// `mpprof run SCRIPT` then `mpprof report --html`: the profile and the page.
fn profile_and_page(script: &Path, dir: &Path) -> (Profile, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let stem = script.file_stem().unwrap().to_string_lossy().into_owned();
    let profile = dir.join(format!("{stem}.json"));
    let html = dir.join(format!("{stem}.html"));
    let o = common::mpprof(&[
        "run",
        "-q",
        "-o",
        profile.to_str().unwrap(),
        script.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = common::mpprof(&[
        "report",
        profile.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (Profile::from_json_file(&profile).unwrap(), html)
}

/// The page as Chromium builds it, after its script ran without error.
fn dom_of(html: &Path, dir: &Path) -> String {
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
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium-profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("data-ready=\"ok\""),
        "the page's script ran: {}",
        &dom[..dom.len().min(400)]
    );
    assert!(!dom.contains("data-error=\""), "no script error");
    dom
}

#[test]
fn the_html_report_renders_in_chromium() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html");
    let (p, html) = profile_and_page(
        &common::root().join("fixtures/causes/bound_method.py"),
        &dir,
    );
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing is fetched from anywhere.
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
    let dom = dom_of(&html, &dir);
    // The hottest function by exclusive time is Sensor.hot.
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
    let (p, html) = profile_and_page(&script, &dir);
    let dom = dom_of(&html, &dir);
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
