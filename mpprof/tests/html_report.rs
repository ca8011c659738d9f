//! The HTML report opens in a real browser (headless Chromium, installed from
//! Debian's packages when missing), renders without script errors, shows
//! the hottest function, opens with the heap over time and the allocation
//! rate, sorts its tables when a heading is clicked and draws bars beside
//! the annotated source (and the text report draws them too).

use std::path::{Path, PathBuf};
use std::process::Command;

use mpprof_profile::Profile;
use serde_json::Value;

mod common;
use common::browser::Browser;

/// `mpprof run SCRIPT` then `mpprof report --html`: the profile and the page.
fn profile_and_page(script: &Path, dir: &Path) -> (Profile, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let stem = script.file_stem().unwrap().to_string_lossy().into_owned();
    let profile = dir.join(format!("{stem}.json"));
    let html = dir.join(format!("{stem}.html"));
    common::record(script, &profile);
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
    // The hottest function by exclusive time (Sensor.hot, unless the
    // machine was busy while the module ran) is shown; the DOM is
    // serialized HTML, so `<module>` is in it as `&lt;module&gt;`.
    let hottest = &p.functions[p.top_functions(|f| f.excl_ticks)[0]].qualname;
    let shown = hottest
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert!(dom.contains(shown.as_str()), "{hottest} is shown");
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

    // The allocation-rate track: each round of churn(200) makes at least
    // its 200 strings before the collection that follows it, so the bar
    // ending at each collection counts 200 or more; all the bars together
    // count every allocation of the run.
    let mut b = Browser::launch(&dir.join("browser"), 1200, 900);
    b.open(&format!("file://{}", html.display()));
    let bars = b.eval(
        "[...document.querySelectorAll('#heap-chart rect.alloc-rate')].map(r => [Number(r.dataset.start), Number(r.dataset.end), Number(r.dataset.count), r.getBoundingClientRect().height])",
    );
    let bars: Vec<(u64, u64, u64, f64)> = bars
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_u64().unwrap(),
                r[1].as_u64().unwrap(),
                r[2].as_u64().unwrap(),
                r[3].as_f64().unwrap(),
            )
        })
        .collect();
    for c in &p.gc.collections {
        let bar = bars
            .iter()
            .find(|b| b.1 == c.at)
            .unwrap_or_else(|| panic!("a bar ends at the collection at {}: {bars:?}", c.at));
        assert!(bar.2 >= 200, "churn(200) before it: {bar:?}");
        assert!(bar.3 > 0.0, "drawn");
    }
    let run_total =
        p.gc.heap_samples
            .iter()
            .map(|h| h.allocs_before)
            .max()
            .unwrap();
    assert_eq!(bars.iter().map(|b| b.2).sum::<u64>(), run_total);
    assert!(run_total >= 600);
    b.screenshot(&dir.join("heap-chart.png"));
}

/// The cells of column `col` (1-based) of the table `table`, as the page
/// shows them now: each cell's `data-v` (its value) or its text.
fn column(b: &mut Browser, table: &str, col: usize) -> Vec<String> {
    let v = b.eval(&format!(
        "[...document.querySelector({}).tBodies[0].rows].map(r => {{ const c = r.cells[{}]; return c.getAttribute('data-v') ?? c.textContent; }})",
        Value::from(table),
        col - 1
    ));
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

fn numbers(cells: &[String]) -> Vec<u64> {
    cells.iter().map(|c| c.parse().unwrap()).collect()
}

#[test]
fn html_tables_sort_when_a_heading_is_clicked() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-sort");
    let (p, html) = profile_and_page(
        &common::root().join("fixtures/programs/protocol_parser.py"),
        &dir,
    );
    let mut b = Browser::launch(&dir.join("browser"), 1200, 900);
    b.open(&format!("file://{}", html.display()));
    // Allocating lines: click "bytes", largest first; again, smallest first.
    let before = numbers(&column(&mut b, "#alloc-table", 3));
    assert!(before.len() >= 3, "{before:?}");
    b.click_element("#alloc-table thead th:nth-child(3)");
    let mut want = before.clone();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(numbers(&column(&mut b, "#alloc-table", 3)), want);
    b.screenshot(&dir.join("sorted-by-bytes.png"));
    b.click_element("#alloc-table thead th:nth-child(3)");
    want.reverse();
    assert_eq!(numbers(&column(&mut b, "#alloc-table", 3)), want);
    assert_eq!(
        b.eval("document.querySelector('#alloc-table thead th:nth-child(3)').getAttribute('aria-sort')"),
        "ascending"
    );
    // The source: by opcodes, the profile's busiest line comes first; by
    // line, back in the file's order.
    let busiest = p.lines.iter().max_by_key(|l| l.opcodes).unwrap().line;
    b.click_element("table.source thead th:nth-child(3)");
    assert_eq!(column(&mut b, "table.source", 1)[0], busiest.to_string());
    b.click_element("table.source thead th:nth-child(1)");
    let lines = numbers(&column(&mut b, "table.source", 1));
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
    assert!(b.exceptions().is_empty(), "{:?}", b.exceptions());
}

#[test]
fn the_annotated_source_has_bars_in_html_and_text() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-bars");
    let (p, html) = profile_and_page(
        &common::root().join("fixtures/programs/protocol_parser.py"),
        &dir,
    );
    let mut b = Browser::launch(&dir.join("browser"), 1200, 900);
    b.open(&format!("file://{}", html.display()));
    // Each line's opcode bar is as wide, of the widest, as its opcodes are
    // of the busiest line's (to a pixel).
    let rows = b.eval(
        "[...document.querySelector('table.source').tBodies[0].rows].map(r => { const s = r.querySelector('span.ops'); return [Number(r.cells[0].dataset.v), s ? s.getBoundingClientRect().width : 0]; })",
    );
    let widths: Vec<(u32, f64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap() as u32, r[1].as_f64().unwrap()))
        .collect();
    let file = &p.files[p.functions[p.top_functions(|f| f.opcodes)[0]].file];
    let ops = |line: u32| {
        p.lines
            .iter()
            .filter(|l| l.line == line && p.files[l.file].path == file.path)
            .map(|l| l.opcodes)
            .sum::<u64>()
    };
    let max_ops = widths.iter().map(|w| ops(w.0)).max().unwrap();
    let widest = widths.iter().map(|w| w.1).fold(0.0, f64::max);
    assert!(widest > 20.0, "{widths:?}");
    for &(line, w) in &widths {
        let want = ops(line) as f64 / max_ops as f64 * widest;
        if ops(line) == 0 {
            assert_eq!(w, 0.0, "line {line} has no opcodes and no bar");
        } else {
            assert!(
                (w - want).abs() <= 1.0 || (want < 1.0 && w <= 1.5),
                "line {line}: {w} px, want {want}"
            );
        }
    }
    assert!(b.exceptions().is_empty(), "{:?}", b.exceptions());
    b.eval("document.querySelector('table.source tr.hot').scrollIntoView({block: 'center'})");
    b.screenshot(&dir.join("source-bars.png"));

    // The text report: the busiest line's bar is full (ten cells), a line
    // with no opcodes has none.
    let profile = dir.join("protocol_parser.json");
    let o = common::mpprof(&["report", "--source-only", profile.to_str().unwrap()]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let busiest = p.lines.iter().max_by_key(|l| l.opcodes).unwrap();
    let row = text
        .lines()
        .find(|l| {
            l.get(1..5)
                .is_some_and(|n| n.trim() == busiest.line.to_string())
        })
        .unwrap_or_else(|| panic!("line {} in {text}", busiest.line));
    assert!(row.contains("██████████"), "{row}");
    let blank = text
        .lines()
        .find(|l| l.get(1..5).is_some_and(|n| n.trim() == "1"))
        .unwrap();
    assert!(!blank.contains('█') && !blank.contains('▏'), "{blank}");
}

#[test]
fn the_html_reports_flame_graphs_show_the_hottest_function_and_zoom() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-flame");
    let (p, html) = profile_and_page(
        &common::root().join("fixtures/programs/protocol_parser.py"),
        &dir,
    );
    let mut b = Browser::launch(&dir.join("browser"), 1200, 900);
    b.open(&format!("file://{}", html.display()));
    // The first graph (time): its frames live in the iframe's document.
    let frames = "document.querySelector('iframe').contentDocument";
    b.wait_for(&format!(
        "{frames} && {frames}.querySelector('#frames > g')"
    ));
    let hottest = &p.functions[p.top_functions(|f| f.excl_ticks)[0]].qualname;
    let titles = b.eval(&format!(
        "[...{frames}.querySelectorAll('#frames > g > title')].map(t => t.textContent).join('\\n')"
    ));
    assert!(
        titles.as_str().unwrap().contains(hottest.as_str()),
        "{hottest} in {titles}"
    );
    // Click `mix`, a small frame, where it is on the screen: the iframe's
    // place on the page plus the frame's place in the iframe.
    let find = format!(
        "[...{frames}.querySelectorAll('#frames > g')].find(g => g.querySelector('title').textContent.startsWith('mix '))"
    );
    let geometry = format!(
        "(() => {{ const f = document.querySelector('iframe'); const r = {find}.querySelector('rect').getBoundingClientRect(); const o = f.getBoundingClientRect(); return [o.x + f.clientLeft + r.x + r.width / 2, o.y + f.clientTop + r.y + r.height / 2, r.width, {frames}.querySelector('#frames').getBoundingClientRect().width, f.clientWidth]; }})()"
    );
    b.eval("document.querySelector('iframe').scrollIntoView({block: 'center'})");
    let g = b.eval(&geometry);
    let (x, y, before, full) = (
        g[0].as_f64().unwrap(),
        g[1].as_f64().unwrap(),
        g[2].as_f64().unwrap(),
        g[3].as_f64().unwrap(),
    );
    assert!(before < full * 0.5, "mix is small: {before} of {full}");
    // The graph spans its frame (it drops its own width to fit its parent).
    let frame_width = g[4].as_f64().unwrap();
    assert!(
        full > frame_width * 0.9,
        "the graph is {full} px of a {frame_width} px frame"
    );
    b.screenshot(&dir.join("flame-before.png"));
    b.click(x, y);
    let after = b.eval(&geometry)[2].as_f64().unwrap();
    b.screenshot(&dir.join("flame-zoomed.png"));
    assert!(
        after > full * 0.9,
        "a click zooms mix to the graph's width: {before} -> {after} of {full}"
    );
    assert!(b.exceptions().is_empty(), "{:?}", b.exceptions());
}
