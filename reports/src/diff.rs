//! Comparing two profiles: which functions and lines got cheaper or dearer.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mpprof_profile::{Line, Profile};

use crate::format::{count, short_path};

/// One compared function or line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffRow {
    /// `qualname (file)` or `file:line`.
    pub name: String,
    pub opcodes: (u64, u64),
    pub ticks: (u64, u64),
    pub allocs: (u64, u64),
    /// For a line that still allocates in B: its object and fix there, as
    /// B's analysis stored them.
    pub advice: Option<String>,
}

impl DiffRow {
    fn magnitude(&self) -> u64 {
        self.opcodes.0.abs_diff(self.opcodes.1) + self.allocs.0.abs_diff(self.allocs.1) * 100
    }
}

/// Functions matched by qualified name and file name.
pub fn function_rows(a: &Profile, b: &Profile) -> Vec<DiffRow> {
    let mut map: BTreeMap<String, DiffRow> = BTreeMap::new();
    for (side, p) in [(0, a), (1, b)] {
        for f in &p.functions {
            if f.calls == 0 && f.opcodes == 0 && f.alloc_count == 0 {
                continue;
            }
            // The profiled script itself matches the other profile's script
            // (a changed version is often a renamed copy); other files match
            // by name.
            let path = p.files.get(f.file).map_or("", |s| s.path.as_str());
            let name = if path.is_empty() {
                f.qualname.clone()
            } else if path == p.meta.script {
                format!("{} (script)", f.qualname)
            } else {
                format!("{} ({})", f.qualname, short_path(path))
            };
            let row = map.entry(name.clone()).or_insert_with(|| DiffRow {
                name,
                opcodes: (0, 0),
                ticks: (0, 0),
                allocs: (0, 0),
                advice: None,
            });
            let set = |t: &mut (u64, u64), v: u64| if side == 0 { t.0 += v } else { t.1 += v };
            set(&mut row.opcodes, f.opcodes);
            set(&mut row.ticks, f.excl_ticks);
            set(&mut row.allocs, f.alloc_count);
        }
    }
    let mut v: Vec<DiffRow> = map
        .into_values()
        .filter(|r| r.magnitude() > 0 || r.ticks.0 != r.ticks.1)
        .collect();
    v.sort_by(|x, y| y.magnitude().cmp(&x.magnitude()).then(x.name.cmp(&y.name)));
    v
}

/// The row of line `l` of `p`: lines are matched by file name (the script
/// as `script`, so two versions of it match) and line number.
fn line_row<'m>(
    map: &'m mut BTreeMap<(String, u32), DiffRow>,
    p: &Profile,
    l: &Line,
) -> &'m mut DiffRow {
    let path = p.files.get(l.file).map_or("", |s| s.path.as_str());
    let file = if path == p.meta.script {
        "script".to_string()
    } else {
        short_path(path).to_string()
    };
    map.entry((file.clone(), l.line))
        .or_insert_with(|| DiffRow {
            name: format!("{file}:{}", l.line),
            opcodes: (0, 0),
            ticks: (0, 0),
            allocs: (0, 0),
            advice: None,
        })
}

/// Lines matched by file name and line number.
pub fn line_rows(a: &Profile, b: &Profile) -> Vec<DiffRow> {
    let mut map: BTreeMap<(String, u32), DiffRow> = BTreeMap::new();
    for (side, p) in [(0, a), (1, b)] {
        for l in &p.lines {
            let row = line_row(&mut map, p, l);
            let set = |t: &mut (u64, u64), v: u64| if side == 0 { t.0 += v } else { t.1 += v };
            set(&mut row.opcodes, l.opcodes);
            set(&mut row.allocs, l.alloc_count);
            if side == 1 && l.alloc_count > 0 {
                row.advice = match (l.what_label(), &l.fix) {
                    (Some(w), Some(f)) => Some(format!("{w}: {f}")),
                    (Some(w), None) => Some(w),
                    _ => None,
                };
            }
        }
    }
    let mut v: Vec<DiffRow> = map.into_values().filter(|r| r.magnitude() > 0).collect();
    v.sort_by(|x, y| y.magnitude().cmp(&x.magnitude()).then(x.name.cmp(&y.name)));
    v
}

/// Lines with a measured time in either profile (`--line-time`), matched as
/// [`line_rows`] matches them, largest change of their own time first. A
/// line without a time on one side (not measured there, or it did not run)
/// counts 0 there.
pub fn line_time_rows(a: &Profile, b: &Profile) -> Vec<DiffRow> {
    let mut map: BTreeMap<(String, u32), DiffRow> = BTreeMap::new();
    for (side, p) in [(0, a), (1, b)] {
        for l in p.lines.iter().filter(|l| l.excl_ticks.is_some()) {
            let row = line_row(&mut map, p, l);
            let t = l.excl_ticks.unwrap_or(0);
            if side == 0 {
                row.ticks.0 += t;
                row.opcodes.0 += l.opcodes;
            } else {
                row.ticks.1 += t;
                row.opcodes.1 += l.opcodes;
            }
        }
    }
    let mut v: Vec<DiffRow> = map
        .into_values()
        .filter(|r| r.ticks.0 != r.ticks.1)
        .collect();
    v.sort_by(|x, y| {
        y.ticks
            .0
            .abs_diff(y.ticks.1)
            .cmp(&x.ticks.0.abs_diff(x.ticks.1))
            .then(x.name.cmp(&y.name))
    });
    v
}

fn delta(t: (u64, u64)) -> String {
    let d = t.1 as i128 - t.0 as i128;
    let pct = if t.0 > 0 {
        format!(" ({:+.0}%)", d as f64 * 100.0 / t.0 as f64)
    } else {
        String::new()
    };
    format!("{}{}{pct}", if d > 0 { "+" } else { "" }, d)
}

/// A change of time in the profile's clock: `+1.20 ms (+35%)`.
fn delta_ticks(p: &Profile, t: (u64, u64)) -> String {
    let sign = if t.1 >= t.0 { "+" } else { "-" };
    let pct = if t.0 > 0 {
        format!(" ({:+.0}%)", (t.1 as f64 - t.0 as f64) * 100.0 / t.0 as f64)
    } else {
        String::new()
    };
    format!("{sign}{}{pct}", crate::format::ticks(p, t.0.abs_diff(t.1)))
}

/// The comparison as text tables.
pub fn render(a: &Profile, b: &Profile, top: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "A: {}   B: {}", a.meta.script, b.meta.script);
    let _ = writeln!(
        o,
        "total opcodes {} -> {} ({}), allocations {} -> {} ({})",
        count(a.total_opcodes()),
        count(b.total_opcodes()),
        delta((a.total_opcodes(), b.total_opcodes())),
        count(a.gc.alloc_count),
        count(b.gc.alloc_count),
        delta((a.gc.alloc_count, b.gc.alloc_count)),
    );
    for (title, rows) in [
        ("Functions", function_rows(a, b)),
        ("Lines", line_rows(a, b)),
    ] {
        let _ = writeln!(o, "\n{title} (largest change first)");
        let _ = writeln!(
            o,
            "  {:<40} {:>10} {:>10} {:>16} {:>8} {:>8} {:>10}",
            "", "opcodes A", "opcodes B", "change", "allocs A", "allocs B", "change"
        );
        for r in rows.iter().take(top) {
            let _ = writeln!(
                o,
                "  {:<40} {:>10} {:>10} {:>16} {:>8} {:>8} {:>10}",
                crate::format::clip(&r.name, 40),
                count(r.opcodes.0),
                count(r.opcodes.1),
                delta(r.opcodes),
                count(r.allocs.0),
                count(r.allocs.1),
                delta(r.allocs)
            );
            if let Some(a) = &r.advice {
                let _ = writeln!(o, "  {:<40} still allocates in B: {a}", "");
            }
        }
        if rows.is_empty() {
            let _ = writeln!(o, "  no differences");
        }
    }
    if a.meta.line_time.is_some() || b.meta.line_time.is_some() {
        let rows = line_time_rows(a, b);
        let _ = writeln!(o, "\nLine time (own time per line, largest change first)");
        for (side, p) in [("A", a), ("B", b)] {
            let note = crate::summary::line_time_note(p)
                .unwrap_or_else(|| "not measured (run with --line-time)".into());
            let _ = writeln!(o, "  {side}: {note}");
        }
        let _ = writeln!(
            o,
            "  {:<40} {:>14} {:>14} {:>22}",
            "", "time A", "time B", "change"
        );
        for r in rows.iter().take(top) {
            let _ = writeln!(
                o,
                "  {:<40} {:>14} {:>14} {:>22}",
                crate::format::clip(&r.name, 40),
                crate::format::ticks(a, r.ticks.0),
                crate::format::ticks(b, r.ticks.1),
                delta_ticks(b, r.ticks)
            );
        }
        if rows.is_empty() {
            let _ = writeln!(o, "  no differences");
        }
    }
    o
}
