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
nav a{{margin-right:1em}}</style></head>\n<body>\n",
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
        "<script>window.addEventListener('error',function(e){{document.body.setAttribute('data-error',String(e.message))}});\
document.body.setAttribute('data-ready','ok');</script>\n</body></html>"
    );
    o
}

fn alloc_table(o: &mut String, p: &Profile) {
    let _ = writeln!(o, "<h2 id=\"alloc\">Allocating lines</h2><table><tr><th>line</th><th>count</th><th>bytes</th><th>runs</th><th>when</th><th class=\"cause\">cause</th><th class=\"cause\">source</th><th class=\"fix\">fix</th></tr>");
    for r in alloc_line_rows(p, 30) {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"cause\">{}</td><td class=\"src\">{}</td><td class=\"fix\">{}</td></tr>",
            esc(&r.place),
            count(r.count),
            bytes(r.bytes),
            esc(&r.runs()),
            r.scope_label(),
            esc(&r.cause),
            esc(&r.source),
            esc(&r.fix)
        );
    }
    let _ = writeln!(o, "</table>");
}

fn annotated_source(o: &mut String, p: &Profile) {
    let _ = writeln!(o, "<h2 id=\"source\">Annotated source</h2>");
    let timed = p.meta.line_time.is_some();
    if let Some(note) = crate::summary::line_time_note(p) {
        let _ = writeln!(
            o,
            "<p class=\"line-time\">Time per line: {}</p>",
            esc(&note)
        );
    }
    for f in annotate(p, &AnnotateOptions::default()) {
        let time_head = if timed {
            "<th>time (own)</th><th>time%</th>"
        } else {
            ""
        };
        let _ = writeln!(o, "<h3>{}</h3><table><tr><th>line</th>{time_head}<th>ops%</th><th>opcodes</th><th>allocs</th><th>bytes</th><th class=\"cause\">source</th><th class=\"cause\">cause</th></tr>", esc(&f.path));
        for l in &f.lines {
            let class = if l.hot {
                " class=\"hot\""
            } else if l.alloc_count > 0 {
                " class=\"alloc\""
            } else {
                ""
            };
            // The line's own time with a bar as wide as its share.
            let time_cells = match (timed, l.excl_ticks, l.time_percent) {
                (true, Some(t), Some(pc)) if t > 0 => format!(
                    "<td class=\"time\" data-ticks=\"{t}\">{}</td><td class=\"time\"><span class=\"tbar\" style=\"display:inline-block;background:#c33;height:0.8em;width:{:.1}px\"></span> {pc:.1}</td>",
                    esc(&crate::summary::line_time_text(p, t, l.excl_samples)),
                    pc
                ),
                (true, _, _) => "<td class=\"time\"></td><td class=\"time\"></td>".to_string(),
                _ => String::new(),
            };
            let _ = writeln!(
                o,
                "<tr{class}><td>{}</td>{time_cells}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"src\">{}</td><td class=\"cause\">{}</td></tr>",
                l.line,
                if l.opcodes > 0 { format!("{:.1}", l.opcode_percent) } else { String::new() },
                if l.opcodes > 0 { count(l.opcodes) } else { String::new() },
                if l.alloc_count > 0 { count(l.alloc_count) } else { String::new() },
                if l.alloc_count > 0 { bytes(l.alloc_bytes) } else { String::new() },
                esc(&l.text),
                l.cause
                    .as_ref()
                    .map(|c| format!("{}: {}", esc(c), esc(l.fix.as_deref().unwrap_or(""))))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(o, "</table>");
    }
}

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
                let _ = writeln!(
                    o,
                    "<h3>{}</h3><iframe title=\"{} flame graph\" srcdoc=\"{}\"></iframe>",
                    w.name(),
                    w.name(),
                    esc(&String::from_utf8_lossy(&svg))
                );
            }
            Err(e) => {
                let _ = writeln!(o, "<h3>{}</h3><p>{}</p>", w.name(), esc(&e.to_string()));
            }
        }
    }
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
    let _ = writeln!(
        o,
        "<h2 id=\"heap\">Heap over time</h2><p>Used heap (peak {}), {} collection(s) as red bands as wide as their pause, marks dashed, regions shaded; {} in all.</p>",
        bytes(g.peak_used_bytes),
        count(g.count()),
        ticks(p, p.meta.duration_ticks)
    );
    let _ = writeln!(
        o,
        "<svg id=\"heap-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"heap used over time\">",
        H + 20.0,
        H + 20.0
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
