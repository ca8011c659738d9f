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
/// the function names it lists.
fn sandwich_names(b: &mut Browser) -> String {
    b.type_key("3");
    b.wait_for("document.body.innerText.includes('Self')");
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
    let text = sandwich_names(&mut b);
    b.screenshot(&artifacts().join("speedscope-sandwich.png"));
    // Every function with time of its own is listed by name.
    for f in p.functions.iter().filter(|f| f.excl_ticks > 0) {
        assert!(text.contains(&f.qualname), "{} in: {text}", f.qualname);
    }
    assert!(text.contains("checksum") && text.contains("parse"));
    assert!(b.exceptions().is_empty(), "{:?}", b.exceptions());
}

#[test]
fn speedscope_loads_our_chrome_trace() {
    // speedscope imports the Trace Event Format as Chrome writes it: our
    // slices become its frames.
    let (profile, p) = profiled();
    let file = artifacts().join("protocol_parser.trace.json");
    export(&profile, "chrome-trace", &file);
    let mut b = speedscope_with(&file, "protocol_parser.trace.json");
    b.screenshot(&artifacts().join("speedscope-chrome-trace.png"));
    let text = sandwich_names(&mut b);
    for f in p.functions.iter().filter(|f| f.incl_ticks > 0) {
        let label = p.function_label(f.id);
        assert!(text.contains(&label), "{label} in: {text}");
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
