//! Every export opened in the viewer it is for, in headless Chromium driven
//! by mouse and keyboard: speedscope (the npm package, its built app served
//! on the loopback address) shows our speedscope file and our Chrome trace,
//! and our flame graph SVG zooms when a frame is clicked. Screenshots are
//! kept under the cargo target dir (`target/tmp/viewers/`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mpprof_profile::Profile;

mod common;
use common::browser::{serve, Browser};

const SPEEDSCOPE_VERSION: &str = "1.25.0";

fn artifacts() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("viewers");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The protocol parser fixture profiled once (per test binary), and the
/// profile.
fn profiled() -> (PathBuf, Profile) {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let path = ONCE
        .get_or_init(|| {
            let out = artifacts().join("protocol_parser.mpprof.json");
            let o = common::mpprof(&[
                "run",
                "-q",
                "-o",
                out.to_str().unwrap(),
                common::root()
                    .join("fixtures/programs/protocol_parser.py")
                    .to_str()
                    .unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            out
        })
        .clone();
    let p = Profile::from_json_file(&path).unwrap();
    (path, p)
}

fn export(profile: &Path, format: &str, out: &Path) {
    let o = common::mpprof(&[
        "export",
        profile.to_str().unwrap(),
        "--format",
        format,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Open `file` in speedscope; the browser with the profile loaded.
fn speedscope_with(file: &Path, name: &str) -> Browser {
    let app = common::npm_package("speedscope", SPEEDSCOPE_VERSION).join("dist/release");
    assert!(app.join("index.html").exists(), "the package ships the app");
    let route = format!("/{name}");
    let base = serve(&app, HashMap::from([(route.clone(), file.to_path_buf())]));
    let mut b = Browser::launch(&artifacts().join(format!("{name}.browser")), 1200, 800);
    b.open(&format!("{base}/index.html#profileURL={base}{route}"));
    // speedscope names the tab after the profile once it has imported it.
    b.wait_for("document.title.endsWith(' - speedscope') || document.body.innerText.includes('Something went wrong')");
    let text = b.eval("document.body.innerText").to_string();
    assert!(
        !text.contains("Something went wrong"),
        "import failed: {text}"
    );
    b
}

/// Press `3` (speedscope's sandwich view, a table of every function) and
/// the function names it lists, once it lists every one of `expected`: the
/// table's header comes first and its rows a moment later (a page read in
/// between had the header alone), so the wait is for the rows. A name
/// never listed fails there, with the page's text.
fn sandwich_names(b: &mut Browser, expected: &[String]) -> String {
    b.type_key("3");
    let names = serde_json::to_string(expected).unwrap();
    b.wait_for(&format!(
        "document.body.innerText.includes('Self') && {names}.every(n => document.body.innerText.includes(n))"
    ));
    b.eval("document.body.innerText")
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn speedscope_loads_our_speedscope_file() {
    let (profile, p) = profiled();
    let file = artifacts().join("protocol_parser.speedscope.json");
    export(&profile, "speedscope", &file);
    let mut b = speedscope_with(&file, "protocol_parser.speedscope.json");
    // The flame chart as it first opens, kept for a person to look at.
    b.screenshot(&artifacts().join("speedscope.png"));
    let title = b.eval("document.title");
    assert!(
        title.as_str().unwrap().contains("protocol_parser.py"),
        "{title}"
    );
    // Every function with time of its own is listed by name.
    let own_time: Vec<String> = p
        .functions
        .iter()
        .filter(|f| f.excl_ticks > 0)
        .map(|f| f.qualname.clone())
        .collect();
    let text = sandwich_names(&mut b, &own_time);
    b.screenshot(&artifacts().join("speedscope-sandwich.png"));
    for name in &own_time {
        assert!(text.contains(name), "{name} in: {text}");
    }
    assert!(text.contains("checksum") && text.contains("parse"));
    assert!(b.exceptions().is_empty(), "{:?}", b.exceptions());
}

/// The Trace Event Format's documented fields: every event a phase, a
/// name, a process and a thread; timed events a timestamp in microseconds;
/// complete events (`X`) a duration, and on one thread they nest (two
/// slices are apart or one holds the other, as viewers draw them); instant
/// events a scope; counters numeric arguments; metadata a name in `args`.
fn trace_event_format(trace: &serde_json::Value) {
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    assert!(["ms", "ns"].contains(&trace["displayTimeUnit"].as_str().unwrap_or("ms")));
    let mut slices: HashMap<(u64, u64), Vec<(f64, f64)>> = HashMap::new();
    for e in events {
        let ph = e["ph"].as_str().expect("ph");
        assert!(
            e["name"].is_string() && e["pid"].is_u64() && e["tid"].is_u64(),
            "{e}"
        );
        if ph == "M" {
            assert!(e["args"]["name"].is_string(), "{e}");
            continue;
        }
        let ts = e["ts"].as_f64().unwrap_or_else(|| panic!("ts: {e}"));
        assert!(ts >= 0.0);
        match ph {
            "X" => {
                let dur = e["dur"].as_f64().unwrap_or_else(|| panic!("dur: {e}"));
                assert!(dur >= 0.0);
                let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
                slices.entry(key).or_default().push((ts, ts + dur));
            }
            "i" => assert!(
                ["g", "p", "t"].contains(&e["s"].as_str().unwrap_or("t")),
                "{e}"
            ),
            "C" => assert!(
                e["args"]
                    .as_object()
                    .unwrap()
                    .values()
                    .all(|v| v.is_number()),
                "{e}"
            ),
            other => panic!("a phase this export does not write: {other}"),
        }
    }
    // Slices of the call thread nest; (the gc thread's regions may hold
    // collections, which is nesting too).
    let eps = 1e-6;
    for (thread, s) in &slices {
        for (i, a) in s.iter().enumerate() {
            for b in &s[i + 1..] {
                let apart = a.1 <= b.0 + eps || b.1 <= a.0 + eps;
                let nested = (a.0 <= b.0 + eps && b.1 <= a.1 + eps)
                    || (b.0 <= a.0 + eps && a.1 <= b.1 + eps);
                assert!(
                    apart || nested,
                    "thread {thread:?}: {a:?} and {b:?} overlap"
                );
            }
        }
    }
}

#[test]
fn speedscope_loads_our_chrome_trace() {
    // The file keeps to the Trace Event Format, and speedscope imports it
    // as Chrome's: our slices become its frames.
    let (profile, p) = profiled();
    let file = artifacts().join("protocol_parser.trace.json");
    export(&profile, "chrome-trace", &file);
    trace_event_format(&serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap());
    let mut b = speedscope_with(&file, "protocol_parser.trace.json");
    b.screenshot(&artifacts().join("speedscope-chrome-trace.png"));
    let labels: Vec<String> = p
        .functions
        .iter()
        .filter(|f| f.incl_ticks > 0)
        .map(|f| p.function_label(f.id))
        .collect();
    let text = sandwich_names(&mut b, &labels);
    for label in &labels {
        assert!(text.contains(label), "{label} in: {text}");
    }
    assert!(b.exceptions().is_empty(), "{:?}", b.exceptions());
}

#[test]
fn our_flame_graph_zooms_when_a_frame_is_clicked() {
    let (profile, p) = profiled();
    let svg = artifacts().join("protocol_parser.svg");
    let o = common::mpprof(&[
        "flamegraph",
        profile.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--weight",
        "opcodes",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut b = Browser::launch(&artifacts().join("flame"), 1200, 600);
    b.open(&format!("file://{}", svg.display()));
    b.screenshot(&artifacts().join("flamegraph.png"));
    // The hottest function by opcodes has a frame.
    let hottest = &p.functions[p.top_functions(|f| f.opcodes)[0]].qualname;
    let titles = b.eval(
        "[...document.querySelectorAll('#frames > g > title')].map(t => t.textContent).join('\\n')",
    );
    assert!(
        titles.as_str().unwrap().contains(hottest.as_str()),
        "{hottest} in {titles}"
    );
    // Click the frame of `mix`, a small part of the graph.
    let width_of = "(() => { const g = [...document.querySelectorAll('#frames > g')].find(g => g.querySelector('title').textContent.startsWith('mix ')); return g.querySelector('rect').getBoundingClientRect().width; })()";
    let before = b.eval(width_of).as_f64().unwrap();
    let full = b
        .eval("document.querySelector('#frames').getBoundingClientRect().width")
        .as_f64()
        .unwrap();
    assert!(
        before < full * 0.2,
        "mix is narrow before: {before} of {full}"
    );
    let at = b.eval("(() => { const g = [...document.querySelectorAll('#frames > g')].find(g => g.querySelector('title').textContent.startsWith('mix ')); const r = g.querySelector('rect').getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()");
    b.click(at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
    let after = b.eval(width_of).as_f64().unwrap();
    b.screenshot(&artifacts().join("flamegraph-zoomed.png"));
    assert!(
        after > before * 1.5 && after > full * 0.9,
        "zoomed to the whole width: {before} -> {after} of {full}"
    );
    // The reset button appears.
    let reset_hidden = b.eval("document.querySelector('#unzoom').classList.contains('hide')");
    assert_eq!(reset_hidden, serde_json::json!(false));
    assert!(b.exceptions().is_empty(), "{:?}", b.exceptions());
}
