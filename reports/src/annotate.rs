//! The annotated source listing: each line of each profiled file with its
//! share of opcodes, its allocations and their cause, hot lines marked. The
//! same rows feed the text report, the HTML report and the live view.

use std::fmt::Write as _;

use mpprof_profile::{FileId, Profile, Scope};

use crate::format::{bar, bytes, count, percent};

/// How wide the text listing's bars are, in characters.
const BAR_CELLS: usize = 10;

#[derive(Debug, Clone, Default)]
pub struct AnnotateOptions {
    /// Only the lines of functions with this (qualified) name.
    pub function: Option<String>,
    /// Only the N hottest lines (by opcodes, then allocations) per file.
    pub top: Option<usize>,
    pub color: bool,
}

/// One row of the listing.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotatedLine {
    pub line: u32,
    pub text: String,
    pub opcodes: u64,
    pub opcode_percent: f64,
    pub alloc_count: u64,
    pub alloc_bytes: u64,
    /// The exact object (or the main cause's label), if the line allocates.
    pub cause: Option<String>,
    /// The fix the analysis stored for the line.
    pub fix: Option<String>,
    /// How many times the line ran, when known.
    pub executions: Option<u64>,
    pub one_off: bool,
    /// Among the hottest lines of the profile (>= 5% of opcodes).
    pub hot: bool,
    /// The line's own time and with its callees, in ticks, and its samples
    /// when sampled: `None` without line time (`mpprof run --line-time`).
    pub excl_ticks: Option<u64>,
    pub incl_ticks: Option<u64>,
    pub excl_samples: Option<u64>,
    /// Its own time as a share of the run's.
    pub time_percent: Option<f64>,
}

/// A file's annotated lines.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotatedFile {
    pub path: String,
    pub lines: Vec<AnnotatedLine>,
}

fn function_ranges(p: &Profile, name: &str, file: FileId) -> Vec<(u32, u32)> {
    // A function spans from its def to the line before the next function
    // defined at the same or lower indentation; without the source, to its
    // last line with data.
    p.find_functions(name)
        .into_iter()
        .filter(|&f| p.functions[f].file == file)
        .map(|f| {
            let last = p
                .lines
                .iter()
                .filter(|l| l.function == f)
                .map(|l| l.line)
                .max()
                .unwrap_or(p.functions[f].line);
            (p.functions[f].line, last)
        })
        .collect()
}

/// The annotated listing of every profiled file with data.
pub fn annotate(p: &Profile, opts: &AnnotateOptions) -> Vec<AnnotatedFile> {
    let total_ops = p.total_opcodes().max(1);
    let mut out = Vec::new();
    for (fid, file) in p.files.iter().enumerate() {
        if file.path.is_empty() {
            continue;
        }
        let data: Vec<_> = p.lines.iter().filter(|l| l.file == fid).collect();
        if data.is_empty() {
            continue;
        }
        let ranges = opts.function.as_deref().map(|n| function_ranges(p, n, fid));
        if ranges.as_ref().is_some_and(|r| r.is_empty()) {
            continue;
        }
        let in_range = |line: u32| {
            ranges
                .as_ref()
                .is_none_or(|r| r.iter().any(|&(a, b)| line >= a && line <= b))
        };
        let n_lines = file
            .source
            .as_ref()
            .map_or(0, |s| s.len() as u32)
            .max(data.iter().map(|l| l.line).max().unwrap_or(0));
        let mut rows: Vec<AnnotatedLine> = (1..=n_lines)
            .filter(|&ln| in_range(ln))
            .map(|ln| {
                let d = data.iter().find(|l| l.line == ln);
                let text = p.source_line(fid, ln).unwrap_or("").to_string();
                let (opcodes, ac, ab) =
                    d.map_or((0, 0, 0), |l| (l.opcodes, l.alloc_count, l.alloc_bytes));
                let allocating = d.filter(|l| l.alloc_count > 0);
                let pct = percent(opcodes, total_ops);
                AnnotatedLine {
                    line: ln,
                    text,
                    opcodes,
                    opcode_percent: pct,
                    alloc_count: ac,
                    alloc_bytes: ab,
                    cause: allocating.and_then(|l| l.what_label()),
                    fix: allocating.and_then(|l| {
                        l.fix
                            .clone()
                            .or_else(|| l.causes.first().map(|c| c.cause.fix().to_string()))
                    }),
                    executions: allocating.and_then(|l| l.executions),
                    one_off: allocating.is_some_and(|l| l.scope != Scope::PerPass),
                    hot: pct >= 5.0,
                    excl_ticks: d.and_then(|l| l.excl_ticks),
                    incl_ticks: d.and_then(|l| l.incl_ticks),
                    excl_samples: d.and_then(|l| l.excl_samples),
                    time_percent: d.and_then(|l| p.line_time_percent(l)),
                }
            })
            .collect();
        if let Some(n) = opts.top {
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.sort_by(|&a, &b| {
                rows[b]
                    .opcodes
                    .cmp(&rows[a].opcodes)
                    .then(rows[b].alloc_count.cmp(&rows[a].alloc_count))
                    .then(a.cmp(&b))
            });
            let mut keep: Vec<usize> = order
                .into_iter()
                .take(n)
                .filter(|&i| rows[i].opcodes > 0 || rows[i].alloc_count > 0)
                .collect();
            keep.sort();
            rows = keep.into_iter().map(|i| rows[i].clone()).collect();
        }
        out.push(AnnotatedFile {
            path: file.path.clone(),
            lines: rows,
        });
    }
    out
}

impl AnnotatedFile {
    /// The largest figures of any of its lines: (ticks, opcodes, bytes),
    /// what the bars are drawn against.
    pub fn maxima(&self) -> (u64, u64, u64) {
        self.lines.iter().fold((0, 0, 0), |(t, o, b), l| {
            (
                t.max(l.excl_ticks.unwrap_or(0)),
                o.max(l.opcodes),
                b.max(l.alloc_bytes),
            )
        })
    }

    /// Whether any line has its ticks (a time bar is drawn then).
    pub fn has_ticks(&self) -> bool {
        self.lines.iter().any(|l| l.excl_ticks.is_some())
    }
}

/// The listing as text.
pub fn render(p: &Profile, opts: &AnnotateOptions) -> String {
    let mut o = String::new();
    let files = annotate(p, opts);
    if files.is_empty() {
        let _ = writeln!(
            o,
            "no profiled lines{}",
            opts.function
                .as_ref()
                .map(|f| format!(" in a function named {f}"))
                .unwrap_or_default()
        );
    }
    let timed = p.meta.line_time.is_some();
    for f in files {
        let _ = writeln!(o, "\n== {} ==", f.path);
        if let Some(note) = crate::summary::line_time_note(p) {
            let _ = writeln!(o, "time per line: {note}");
        }
        let (max_ticks, max_ops, max_bytes) = f.maxima();
        // Bars beside the figures, each against the file's largest line:
        // own time (with --line-time), opcodes, bytes.
        let time_head = if timed {
            format!(
                "{:>24} {:>6} {:<w$} ",
                "time (own)",
                "time%",
                "",
                w = BAR_CELLS
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "{:>5}  {time_head}{:>6} {:>10} {:<w$} {:>7} {:>9} {:<w$}  source",
            "line",
            "ops%",
            "opcodes",
            "",
            "allocs",
            "bytes",
            "",
            w = BAR_CELLS
        );
        for r in &f.lines {
            let (pre, post) = if opts.color && r.hot {
                ("\x1b[1;31m", "\x1b[0m")
            } else {
                ("", "")
            };
            let mark = if r.hot { '>' } else { ' ' };
            let ops = if r.opcodes > 0 {
                format!("{:.1}", r.opcode_percent)
            } else {
                String::new()
            };
            let opc = if r.opcodes > 0 {
                count(r.opcodes)
            } else {
                String::new()
            };
            let ac = if r.alloc_count > 0 {
                count(r.alloc_count)
            } else {
                String::new()
            };
            let ab = if r.alloc_count > 0 {
                bytes(r.alloc_bytes)
            } else {
                String::new()
            };
            let time_cols = if timed {
                match (r.excl_ticks, r.time_percent) {
                    (Some(t), Some(pc)) if t > 0 => format!(
                        "{:>24} {:>6.1} {:<w$} ",
                        crate::summary::line_time_text(p, t, r.excl_samples),
                        pc,
                        bar(t, max_ticks, BAR_CELLS),
                        w = BAR_CELLS
                    ),
                    _ => format!("{:>24} {:>6} {:<w$} ", "", "", "", w = BAR_CELLS),
                }
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "{pre}{mark}{:>4}  {time_cols}{:>6} {:>10} {:<w$} {:>7} {:>9} {:<w$}  {}{post}",
                r.line,
                ops,
                opc,
                bar(r.opcodes, max_ops, BAR_CELLS),
                ac,
                ab,
                bar(r.alloc_bytes, max_bytes, BAR_CELLS),
                r.text,
                w = BAR_CELLS
            );
            if let (Some(c), Some(fix)) = (&r.cause, &r.fix) {
                let runs = match r.executions {
                    Some(n) => format!(
                        " (ran {}x{})",
                        count(n),
                        if r.one_off { ", one-off" } else { "" }
                    ),
                    None => String::new(),
                };
                let indent = 42
                    + 2 * (BAR_CELLS + 1)
                    + if timed {
                        24 + 1 + 6 + 1 + BAR_CELLS + 1
                    } else {
                        0
                    };
                let _ = writeln!(o, "{:>indent$}  ^ allocates: {c}{runs}; fix: {fix}", "");
            }
        }
    }
    o
}
