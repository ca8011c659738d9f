//! The HTML report: one self-contained file (no network, no external assets)
//! with the summary, the annotated source with causes and fixes, and the
//! interactive flame graphs.

use std::fmt::Write as _;

use mpprof_profile::Profile;

use crate::annotate::{annotate, AnnotateOptions};
use crate::flamegraph::{write_svg, FlameOptions, Weight};
use crate::format::{bytes, count, ticks};
use crate::summary::{alloc_line_rows, render, SummaryOptions};

use crate::format::escape_xml as esc;

/// Click a header of a `table.sortable` to sort its rows by that column
/// (numbers by the cell's `data-v`, largest first unless the header's
/// `data-first` says otherwise; text A to Z), click again to reverse; the
/// header's `aria-sort` says which way. A heading without a label (the
/// bars) does not sort.
const SORT_SCRIPT: &str = "document.querySelectorAll('table.sortable').forEach(function(t){\
var b=t.tBodies[0];\
t.tHead.querySelectorAll('th').forEach(function(h,i){if(!h.textContent)return;h.addEventListener('click',function(){\
var numeric=h.hasAttribute('data-numeric');\
var first=h.getAttribute('data-first')||(numeric?'descending':'ascending');\
var dir=h.hasAttribute('aria-sort')?(h.getAttribute('aria-sort')==='descending'?'ascending':'descending'):first;\
t.tHead.querySelectorAll('th').forEach(function(o){o.removeAttribute('aria-sort')});\
h.setAttribute('aria-sort',dir);\
var rows=Array.prototype.slice.call(b.rows);\
var key=function(r){var c=r.cells[i];if(numeric){var v=c.getAttribute('data-v');return v===null||v===''?-1:Number(v)}return c.textContent};\
rows.sort(function(x,y){var a=key(x),c=key(y);var d=a<c?-1:a>c?1:0;return dir==='ascending'?d:-d});\
rows.forEach(function(r){b.appendChild(r)});\
})})});";

/// How a column sorts when its heading is first clicked.
#[derive(Clone, Copy, PartialEq)]
enum Sort {
    /// A to Z.
    Text,
    /// By the cells' `data-v`, largest first.
    Largest,
    /// By the cells' `data-v`, smallest first (line numbers: the source's order).
    Smallest,
}

/// A header cell that sorts its column when clicked.
fn th(label: &str, sort: Sort, class: &str) -> String {
    format!(
        "<th{}{}>{}</th>",
        match sort {
            Sort::Text => "",
            Sort::Largest => " data-numeric",
            Sort::Smallest => " data-numeric data-first=\"ascending\"",
        },
        if class.is_empty() {
            String::new()
        } else {
            format!(" class=\"{class}\"")
        },
        esc(label)
    )
}

/// A numeric cell: its figure shown as `text`, its value for sorting.
fn num(value: u64, text: &str) -> String {
    format!("<td data-v=\"{value}\">{text}</td>")
}

/// The report as one HTML document.
pub fn render_html(p: &Profile) -> String {
    let mut o = String::new();
    let title = format!(
        "mpprof — {}",
        p.meta.script.rsplit('/').next().unwrap_or("")
    );
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}\
pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}\
table{{border-collapse:collapse;font-size:13px}}td,th{{padding:2px 8px;text-align:right}}\
td.src{{text-align:left;font-family:monospace;white-space:pre}}tr.hot{{background:#ffe3e3}}\
tr.alloc td.src{{color:#a00}}.cause{{text-align:left;color:#555}}td.fix{{text-align:left;min-width:30em;color:#555}}\
iframe{{width:100%;height:420px;border:1px solid #ccc}}\
nav a{{margin-right:1em}}\
table.sortable th{{cursor:pointer;user-select:none}}th[aria-sort=descending]::after{{content:' \\25BC'}}th[aria-sort=ascending]::after{{content:' \\25B2'}}\
td.bars{{width:10em;min-width:10em;padding:0 4px}}td.bars span{{display:block;height:5px;margin:1px 0}}span.ops{{background:#c33}}span.time{{background:#36c}}span.bytes{{background:#e90}}</style></head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(
        o,
        "<h1>{}</h1><nav><a href=\"#heap\">Heap over time</a><a href=\"#summary\">Summary</a><a href=\"#alloc\">Allocating lines</a><a href=\"#source\">Source</a><a href=\"#flame\">Flame graphs</a></nav>",
        esc(&title)
    );
    heap_chart(&mut o, p);
    let _ = writeln!(
        o,
        "<h2 id=\"summary\">Summary</h2><pre id=\"summary-text\">{}</pre>",
        esc(&render(
            p,
            &SummaryOptions {
                top: 15,
                color: false
            }
        ))
    );

    alloc_table(&mut o, p);
    annotated_source(&mut o, p);
    flame_graphs(&mut o, p);
    let _ = writeln!(
        o,
        "<script>window.addEventListener('error',function(e){{document.body.setAttribute('data-error',String(e.message))}});\n{SORT_SCRIPT}\
document.body.setAttribute('data-ready','ok');</script>\n</body></html>"
    );
    o
}

fn alloc_table(o: &mut String, p: &Profile) {
    let _ = writeln!(
        o,
        "<h2 id=\"alloc\">Allocating lines</h2><p>Click a heading to sort.</p><table id=\"alloc-table\" class=\"sortable\"><thead><tr>{}{}{}{}{}{}{}{}</tr></thead><tbody>",
        th("line", Sort::Text, ""),
        th("count", Sort::Largest, ""),
        th("bytes", Sort::Largest, ""),
        th("runs", Sort::Text, ""),
        th("when", Sort::Text, ""),
        th("cause", Sort::Text, "cause"),
        th("source", Sort::Text, "cause"),
        th("fix", Sort::Text, "fix"),
    );
    for r in alloc_line_rows(p, 30) {
        let _ = writeln!(
            o,
            "<tr><td>{}</td>{}{}<td>{}</td><td>{}</td><td class=\"cause\">{}</td><td class=\"src\">{}</td><td class=\"fix\">{}</td></tr>",
            esc(&r.place),
            num(r.count, &count(r.count)),
            num(r.bytes, &bytes(r.bytes)),
            esc(&r.runs()),
            r.scope_label(),
            esc(&r.cause),
            esc(&r.source),
            esc(&r.fix)
        );
    }
    let _ = writeln!(o, "</tbody></table>");
}

/// A bar as wide as `value` is of `max` (the file's largest line).
fn bar_span(class: &str, value: u64, max: u64) -> String {
    if value == 0 || max == 0 {
        return String::new();
    }
    let pct = (value as f64 / max as f64 * 100.0).max(0.5);
    format!("<span class=\"{class}\" style=\"width:{pct:.2}%\" data-v=\"{value}\"></span>")
}

fn annotated_source(o: &mut String, p: &Profile) {
    let _ = writeln!(
        o,
        "<h2 id=\"source\">Annotated source</h2><p>Bars: opcodes (red){}, bytes allocated (orange), each against the file's largest line. Click a heading to sort; click <i>line</i> to return to the source order.</p>",
        if p.lines.iter().any(|l| l.excl_ticks.is_some()) { ", own time (blue)" } else { "" }
    );
    let timed = p.meta.line_time.is_some();
    if let Some(note) = crate::summary::line_time_note(p) {
        let _ = writeln!(
            o,
            "<p class=\"line-time\">Time per line: {}</p>",
            esc(&note)
        );
    }
    for f in annotate(p, &AnnotateOptions::default()) {
        let (max_ticks, max_ops, max_bytes) = f.maxima();
        let time_head = if timed {
            format!(
                "{}{}",
                th("time (own)", Sort::Largest, ""),
                th("time%", Sort::Largest, "")
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "<h3>{}</h3><table class=\"sortable source\"><thead><tr>{}{time_head}{}{}{}{}{}{}{}</tr></thead><tbody>",
            esc(&f.path),
            th("line", Sort::Smallest, ""),
            th("ops%", Sort::Largest, ""),
            th("opcodes", Sort::Largest, ""),
            th("", Sort::Text, "bars"),
            th("allocs", Sort::Largest, ""),
            th("bytes", Sort::Largest, ""),
            th("source", Sort::Text, "cause"),
            th("cause", Sort::Text, "cause")
        );
        for l in &f.lines {
            let class = if l.hot {
                " class=\"hot\""
            } else if l.alloc_count > 0 {
                " class=\"alloc\""
            } else {
                ""
            };
            // The line's own time (with --line-time), sortable by its ticks.
            let time_cells = match (timed, l.excl_ticks, l.time_percent) {
                (true, Some(t), Some(pc)) if t > 0 => format!(
                    "{}{}",
                    num(
                        t,
                        &esc(&crate::summary::line_time_text(p, t, l.excl_samples))
                    ),
                    num(t, &format!("{pc:.1}"))
                ),
                (true, _, _) => format!("{}{}", num(0, ""), num(0, "")),
                _ => String::new(),
            };
            let bars = format!(
                "{}{}{}",
                l.excl_ticks
                    .filter(|_| timed)
                    .map(|t| bar_span("time", t, max_ticks))
                    .unwrap_or_default(),
                bar_span("ops", l.opcodes, max_ops),
                bar_span("bytes", l.alloc_bytes, max_bytes)
            );
            let _ = writeln!(
                o,
                "<tr{class}>{}{time_cells}{}{}<td class=\"bars\">{bars}</td>{}{}<td class=\"src\">{}</td><td class=\"cause\">{}</td></tr>",
                num(u64::from(l.line), &l.line.to_string()),
                num(l.opcodes, &if l.opcodes > 0 { format!("{:.1}", l.opcode_percent) } else { String::new() }),
                num(l.opcodes, &if l.opcodes > 0 { count(l.opcodes) } else { String::new() }),
                num(l.alloc_count, &if l.alloc_count > 0 { count(l.alloc_count) } else { String::new() }),
                num(l.alloc_bytes, &if l.alloc_count > 0 { bytes(l.alloc_bytes) } else { String::new() }),
                esc(&l.text),
                l.cause
                    .as_ref()
                    .map(|c| format!("{}: {}", esc(c), esc(l.fix.as_deref().unwrap_or(""))))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(o, "</tbody></table>");
    }
}

/// The flame graph's script keeps its zoom and search in the page's URL
/// (`history.replaceState`), which a srcdoc frame has none of: the call
/// throws there on every click. Inside the report the zoom stays in the
/// frame only.
const KEEP_ZOOM_OUT_OF_THE_URL: &str = "<script>(function(){var keep=history.replaceState.bind(history);history.replaceState=function(){try{keep.apply(null,arguments)}catch(e){}}})();</script>";

/// The graph drops its own width to fit its parent, which inside an HTML
/// document (the frame's srcdoc) is the body: without this it shrinks to
/// an inline SVG's default 300 pixels.
const FIT_THE_FRAME: &str =
    "<!DOCTYPE html><style>body{margin:0}svg{display:block;width:100%}</style>";

/// One flame graph per weight, each in an iframe whose srcdoc keeps the
/// graph's own script working.
fn flame_graphs(o: &mut String, p: &Profile) {
    let _ = writeln!(
        o,
        "<h2 id=\"flame\">Flame graphs</h2><p>Click a frame to zoom; Ctrl-F searches.</p>"
    );
    for w in [
        Weight::Cycles,
        Weight::Opcodes,
        Weight::AllocCount,
        Weight::AllocBytes,
    ] {
        let mut svg = Vec::new();
        match write_svg(
            p,
            &FlameOptions {
                weight: w,
                icicle: false,
                title: None,
                lines: false,
            },
            &mut svg,
        ) {
            Ok(()) => {
                // srcdoc keeps the graph's own script (zoom, search) working
                // inside the page, with nothing loaded from elsewhere.
                let svg = String::from_utf8_lossy(&svg);
                let svg = match svg.rfind("</svg>") {
                    Some(end) => {
                        format!(
                            "{FIT_THE_FRAME}{}{KEEP_ZOOM_OUT_OF_THE_URL}{}",
                            &svg[..end],
                            &svg[end..]
                        )
                    }
                    None => svg.into_owned(),
                };
                let _ = writeln!(
                    o,
                    "<h3>{}</h3><iframe title=\"{} flame graph\" srcdoc=\"{}\"></iframe>",
                    w.name(),
                    w.name(),
                    esc(&svg)
                );
            }
            Err(e) => {
                let _ = writeln!(o, "<h3>{}</h3><p>{}</p>", w.name(), esc(&e.to_string()));
            }
        }
    }
}

/// The allocation-rate track's height.
const RATE_H: f64 = 50.0;

/// Allocations between two neighbouring timeline events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocInterval {
    pub start: u64,
    pub end: u64,
    pub count: u64,
    pub bytes: u64,
}

impl AllocInterval {
    pub fn ticks(&self) -> u64 {
        self.end - self.start
    }
}

/// The allocations between neighbouring events of the run's timeline (its
/// heap samples, collections and marks, each with the run's allocation
/// totals up to it), the intervals that allocated.
pub fn alloc_intervals(p: &Profile) -> Vec<AllocInterval> {
    let mut points: Vec<(u64, u64, u64)> = std::iter::once((0, 0, 0))
        .chain(
            p.gc.heap_samples
                .iter()
                .map(|h| (h.at, h.allocs_before, h.alloc_bytes_before)),
        )
        .chain(
            p.gc.collections
                .iter()
                .map(|c| (c.at, c.allocs_before, c.alloc_bytes_before)),
        )
        .chain(
            p.markers
                .iter()
                .map(|m| (m.at, m.allocs_before, m.alloc_bytes_before)),
        )
        .collect();
    points.sort_unstable();
    let mut out: Vec<AllocInterval> = Vec::new();
    let (mut at, mut allocs, mut bytes) = (0u64, 0u64, 0u64);
    for (t, a, b) in points {
        // Totals only grow; a merged timeline entry can lag behind.
        let (a, b) = (a.max(allocs), b.max(bytes));
        if a > allocs {
            // Events at the same moment as the last interval's end add to it.
            match out.last_mut().filter(|l| t <= at && l.end == t) {
                Some(last) => {
                    last.count += a - allocs;
                    last.bytes += b - bytes;
                }
                None => out.push(AllocInterval {
                    start: at.min(t),
                    end: t,
                    count: a - allocs,
                    bytes: b - bytes,
                }),
            }
        }
        at = at.max(t);
        allocs = a;
        bytes = b;
    }
    out
}

/// Heap used over the run's time, as memray's report opens with: the used
/// bytes after each flush and each collection, every collection a band as
/// wide as its pause (its duration and what it freed in a tooltip), every
/// mark a dashed line, every region a shaded span, all on one time axis.
fn heap_chart(o: &mut String, p: &Profile) {
    const W: f64 = 900.0;
    const H: f64 = 180.0;
    let g = &p.gc;
    let mut points: Vec<(u64, u64)> = g.heap_samples.iter().map(|h| (h.at, h.used)).collect();
    // Each collection: the heap just before it (what it freed on top of what
    // was left) and just after, so the line saws down at every pause.
    let block = u64::from(p.meta.gc_block_bytes.max(1));
    points.extend(g.collections.iter().flat_map(|c| {
        [
            (c.at, c.used_after + c.blocks_freed * block),
            (c.at + c.duration, c.used_after),
        ]
    }));
    points.sort_unstable();
    let end = points
        .iter()
        .map(|p| p.0)
        .chain(p.markers.iter().map(|m| m.at))
        .chain(p.regions.iter().map(|r| r.end.unwrap_or(r.start)))
        .chain(std::iter::once(p.meta.duration_ticks))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let top = points
        .iter()
        .map(|p| p.1)
        .chain(std::iter::once(g.peak_used_bytes))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let x = |t: u64| t as f64 / end * W;
    let y = |b: u64| H - b as f64 / top * (H - 10.0);
    let intervals = alloc_intervals(p);
    let _ = writeln!(
        o,
        "<h2 id=\"heap\">Heap over time</h2><p>Used heap (peak {}), {} collection(s) as red bands as wide as their pause, marks dashed, regions shaded; {} in all. Below: allocations per interval between the run's timeline events (flushes, collections, marks), each bar as high as its rate.</p>",
        bytes(g.peak_used_bytes),
        count(g.count()),
        ticks(p, p.meta.duration_ticks)
    );
    // The allocation-rate track sits under the heap and the mark labels.
    let rate_top = H + 26.0;
    let total_h = rate_top + RATE_H + 14.0;
    let _ = writeln!(
        o,
        "<svg id=\"heap-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{total_h}\" viewBox=\"0 0 {W} {total_h}\" role=\"img\" aria-label=\"heap used and allocation rate over time\">"
    );
    let max_rate = intervals
        .iter()
        .map(|i| i.count as f64 / i.ticks().max(1) as f64)
        .fold(0.0, f64::max);
    for i in &intervals {
        let rate = i.count as f64 / i.ticks().max(1) as f64;
        let h = (rate / max_rate * RATE_H).max(1.0);
        let (a, b) = (x(i.start), x(i.end));
        let _ = writeln!(
            o,
            "<rect class=\"alloc-rate\" x=\"{a:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#e90\" data-start=\"{}\" data-end=\"{}\" data-count=\"{}\" data-bytes=\"{}\"><title>{} allocations ({}) in {}</title></rect>",
            rate_top + RATE_H - h,
            (b - a).max(1.0),
            i.start,
            i.end,
            i.count,
            i.bytes,
            count(i.count),
            bytes(i.bytes),
            ticks(p, i.ticks())
        );
    }
    let _ = writeln!(
        o,
        "<text x=\"2\" y=\"{}\" font-size=\"11\" fill=\"#a60\">{}</text>",
        rate_top + RATE_H + 12.0,
        if intervals.is_empty() {
            "allocation rate: none recorded (a profile from before mpprof kept it, or no allocations)".to_string()
        } else {
            format!(
                "allocation rate (highest {} per ms)",
                count((max_rate * p.meta.clock.hz as f64 / 1e3).round() as u64)
            )
        }
    );
    for r in &p.regions {
        let (a, b) = (x(r.start), x(r.end.unwrap_or(r.start)));
        let _ = writeln!(
            o,
            "<rect class=\"region\" x=\"{a:.1}\" y=\"0\" width=\"{:.1}\" height=\"{H}\" fill=\"#dde8ff\"><title>region {}</title></rect>",
            (b - a).max(1.0),
            esc(&r.label)
        );
    }
    for c in &g.collections {
        let _ = writeln!(
            o,
            "<rect class=\"gc\" x=\"{:.1}\" y=\"0\" width=\"{:.1}\" height=\"{H}\" fill=\"#e44\" fill-opacity=\"0.5\"><title>collection: {} pause, {} blocks freed, {} used after</title></rect>",
            x(c.at),
            (x(c.at + c.duration) - x(c.at)).max(1.0),
            ticks(p, c.duration),
            count(c.blocks_freed),
            bytes(c.used_after)
        );
    }
    let line: Vec<String> = points
        .iter()
        .map(|&(t, b)| format!("{:.1},{:.1}", x(t), y(b)))
        .collect();
    let _ = writeln!(
        o,
        "<polyline class=\"used\" fill=\"none\" stroke=\"#225\" stroke-width=\"1.5\" points=\"{}\"/>",
        line.join(" ")
    );
    for m in &p.markers {
        let at = x(m.at);
        // A label near the right edge ends at its line instead of starting there.
        let anchor = if at > W - 80.0 { "end" } else { "start" };
        let _ = writeln!(
            o,
            "<line class=\"mark\" x1=\"{at:.1}\" x2=\"{at:.1}\" y1=\"0\" y2=\"{H}\" stroke=\"#080\" stroke-dasharray=\"4 3\"><title>mark {0}</title></line><text x=\"{at:.1}\" y=\"{1}\" font-size=\"11\" fill=\"#080\" text-anchor=\"{anchor}\">{0}</text>",
            esc(&m.label),
            H + 14.0
        );
    }
    let _ = writeln!(o, "</svg>");
}
