//! The summary `mpprof run` prints: top functions, top allocating lines with
//! causes and fixes, the heap, and losses.

use std::fmt::Write as _;

use mpprof_profile::{ExitReason, Function, FunctionKind, Line, LineTimeMode, Profile, Scope};
use serde_json::{json, Value};

use crate::format::{bytes, clip, count, percent, short_path, ticks};

#[derive(Debug, Clone)]
pub struct SummaryOptions {
    /// Rows per table.
    pub top: usize,
    /// ANSI colour (only on a terminal, never with NO_COLOR).
    pub color: bool,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        Self {
            top: 10,
            color: false,
        }
    }
}

struct Style {
    on: bool,
}

impl Style {
    fn bold(&self, s: &str) -> String {
        if self.on {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn warn(&self, s: &str) -> String {
        if self.on {
            format!("\x1b[33m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

fn reason_text(r: ExitReason) -> &'static str {
    match r {
        ExitReason::Finished => "finished",
        ExitReason::Exception => "raised an uncaught exception",
        ExitReason::KeyboardInterrupt => "interrupted (KeyboardInterrupt)",
        ExitReason::SystemExit => "exited (SystemExit)",
        ExitReason::Stopped => "stopped profiling (mpprof.stop())",
        ExitReason::MemoryError => "ran out of heap (MemoryError)",
        ExitReason::SyntaxError => "did not compile (SyntaxError)",
        ExitReason::Timeout => "stopped at the timeout",
        ExitReason::Killed => "was killed",
        ExitReason::Crashed => "the VM crashed",
        ExitReason::Unknown => "ended without a summary",
    }
}

/// "the instrumented VM crashed (SIGSEGV) after N events; ...", for a run
/// the VM did not survive.
pub fn crash_line(p: &Profile) -> Option<String> {
    let e = &p.meta.exit;
    if e.reason != ExitReason::Crashed {
        return None;
    }
    Some(format!(
        "mpprof: the instrumented VM crashed ({}) after {} events; the profile so far is written",
        e.signal.as_deref().unwrap_or("a signal"),
        e.events.unwrap_or(0)
    ))
}

/// One allocating line, as the summary shows it. Every text comes from the
/// Profile (the analysis stored each line's object and fix there).
pub struct AllocLineRow {
    pub place: String,
    pub source: String,
    pub count: u64,
    pub bytes: u64,
    /// The exact object (`bytearray`, `returned tuple`, `heap frame`, ...),
    /// or the main cause's label.
    pub cause: String,
    pub fix: String,
    /// How many times the line ran, when known.
    pub executions: Option<u64>,
    pub scope: Scope,
    /// For a line whose allocations are asyncio's event loop's: how many
    /// times the loop resumed a task (all tasks), what they repeat with.
    pub task_resumes: Option<u64>,
}

impl AllocLineRow {
    /// `every pass`, `one-off` or `import`.
    pub fn scope_label(&self) -> &'static str {
        match self.scope {
            Scope::PerPass => "every pass",
            Scope::OneOff => "one-off",
            Scope::Import => "import",
        }
    }

    /// `ran 100x, 2/run`, or nothing when the executions are unknown; for
    /// asyncio's event loop, its allocations per task resume.
    pub fn runs(&self) -> String {
        if let Some(resumes) = self.task_resumes.filter(|&r| r > 0) {
            return format!(
                "ran once, asyncio's event loop: {} per task resume ({} resumes)",
                per_run(self.count, resumes),
                count(resumes)
            );
        }
        match self.executions {
            Some(n) if n > 0 => format!("ran {}x, {}/run", count(n), per_run(self.count, n)),
            _ => String::new(),
        }
    }
}

/// `count / n`, whole when within 0.05 of a whole number, else to a tenth;
/// below 0.1 to a hundredth (a rare allocation is not "0/run").
fn per_run(count: u64, n: u64) -> String {
    let per = count as f64 / n as f64;
    if count > 0 && per < 0.1 {
        return if per < 0.005 {
            "<0.01".into()
        } else {
            format!("{per:.2}")
        };
    }
    if (per - per.round()).abs() < 0.05 {
        format!("{}", per.round() as u64)
    } else {
        format!("{per:.1}")
    }
}

fn row(p: &Profile, l: &Line) -> AllocLineRow {
    let file = p.files.get(l.file).map_or("", |f| f.path.as_str());
    let src = p
        .source_line(l.file, l.line)
        .unwrap_or("")
        .trim()
        .to_string();
    AllocLineRow {
        place: format!("{}:{}", short_path(file), l.line),
        source: src,
        count: l.alloc_count,
        bytes: l.alloc_bytes,
        cause: l.what_label().unwrap_or_default(),
        fix: l.fix.clone().unwrap_or_else(|| {
            l.causes
                .first()
                .map_or(String::new(), |c| c.cause.fix().to_string())
        }),
        executions: l.executions,
        scope: l.scope,
        task_resumes: p
            .asyncio
            .as_ref()
            .filter(|_| l.event_loop)
            .map(|a| a.tasks.iter().map(|t| t.resumes).sum()),
    }
}

/// The allocating lines of one scope, most allocations first.
pub fn alloc_line_rows_in(p: &Profile, scope: Scope, top: usize) -> Vec<AllocLineRow> {
    p.allocating_lines_in(scope)
        .into_iter()
        .take(top)
        .map(|l| row(p, l))
        .collect()
}

/// The allocating lines in reading order: every-pass lines first, then
/// one-off lines, then imports (most allocations first within each).
pub fn alloc_line_rows(p: &Profile, top: usize) -> Vec<AllocLineRow> {
    p.allocating_lines_ranked()
        .into_iter()
        .take(top)
        .map(|l| row(p, l))
        .collect()
}

/// The summary as text.
pub fn render(p: &Profile, opts: &SummaryOptions) -> String {
    let st = Style { on: opts.color };
    let mut o = String::new();
    header_section(&mut o, p, &st);
    functions_section(&mut o, p, opts, &st);
    time_lines_section(&mut o, p, opts, &st);
    tasks_section(&mut o, p, &st);
    allocations_section(&mut o, p, opts, &st);
    heap_section(&mut o, p, &st);
    let _ = writeln!(o, "\n{}", lost_line(&p.meta.dropped, &st));
    o
}

/// What ran, where, and how it ended.
fn header_section(o: &mut String, p: &Profile, st: &Style) {
    let m = &p.meta;
    let _ = writeln!(
        o,
        "\n{} {} on {} (MicroPython {}, {}-bit, heap {}): {}{}, {}",
        st.bold("mpprof:"),
        short_path(&m.script),
        if m.target.is_empty() { "?" } else { &m.target },
        m.micropython_version,
        m.word_bits,
        bytes(m.heap_bytes),
        reason_text(m.exit.reason),
        if m.partial { " (partial profile)" } else { "" },
        ticks(p, m.duration_ticks),
    );

    if !m.copied_to_board.is_empty() {
        let names: Vec<&str> = m.copied_to_board.iter().map(String::as_str).collect();
        // Paths under the emulated board's /rom are relative; a real
        // board's, in its filesystem, absolute.
        let into = if names.iter().all(|n| n.starts_with('/')) {
            "into the board's filesystem for the run (those not there before removed after)"
        } else {
            "to the board's /rom before the run"
        };
        let _ = writeln!(o, "  copied {into}: {}", names.join(", "));
    }
    if let Some(line) = crash_line(p) {
        let _ = writeln!(o, "{}", st.warn(&line));
    }
}

fn functions_section(o: &mut String, p: &Profile, opts: &SummaryOptions, st: &Style) {
    // Functions.
    let total = p.total_ticks().max(1);
    let _ = writeln!(o, "\n{}", st.bold("Top functions (by exclusive time)"));
    let _ = writeln!(
        o,
        "  {:<40} {:>9} {:>12} {:>12} {:>6} {:>11} {:>7}",
        "function", "calls", "inclusive", "exclusive", "excl%", "opcodes", "allocs"
    );
    let funcs: Vec<usize> = p
        .top_functions(|f| f.excl_ticks)
        .into_iter()
        .filter(|&i| p.functions[i].calls > 0 || p.functions[i].opcodes > 0)
        .take(opts.top)
        .collect();
    for i in funcs {
        let f = &p.functions[i];
        let _ = writeln!(
            o,
            "  {:<40} {:>9} {:>12} {:>12} {:>5.1}% {:>11} {:>7}",
            clip(&p.function_label(i), 40),
            count(f.calls),
            ticks(p, f.incl_ticks),
            ticks(p, f.excl_ticks),
            percent(f.excl_ticks, total),
            count(f.opcodes),
            count(f.alloc_count),
        );
    }
}

/// How a profile's line times were taken, for a heading: `exact` or
/// `sampled, N samples every 1 ms`. `None` without line time.
pub fn line_time_note(p: &Profile) -> Option<String> {
    let t = p.meta.line_time?;
    Some(match t.mode {
        LineTimeMode::Sampled => format!(
            "sampled: {} samples, one every {}",
            count(t.samples),
            period(t.sample_period_ns.unwrap_or(0))
        ),
        LineTimeMode::Exact => {
            "exact: the ticks between opcodes, the profiler's cost taken out".into()
        }
        LineTimeMode::Unknown => "measured by a newer runtime".into(),
    })
}

fn period(ns: u64) -> String {
    if ns >= 1_000_000 && ns.is_multiple_of(1_000_000) {
        format!("{} ms", ns / 1_000_000)
    } else if ns >= 1_000 {
        format!("{} µs", ns / 1_000)
    } else {
        format!("{ns} ns")
    }
}

/// A line's time as reports show it: the ticks, and with sampled line time
/// the samples they rest on (`12.00 ms (12 samples)`).
pub fn line_time_text(p: &Profile, ticks_of_line: u64, samples: Option<u64>) -> String {
    match samples {
        Some(1) => format!("{} (1 sample)", ticks(p, ticks_of_line)),
        Some(n) => format!("{} ({} samples)", ticks(p, ticks_of_line), count(n)),
        None => ticks(p, ticks_of_line),
    }
}

/// Lines by their own time (`mpprof run --line-time`), beside the
/// functions: which line is slow, a call into C included.
fn time_lines_section(o: &mut String, p: &Profile, opts: &SummaryOptions, st: &Style) {
    let Some(note) = line_time_note(p) else {
        return;
    };
    let _ = writeln!(o, "\n{} ({note})", st.bold("Top lines by time"));
    let _ = writeln!(
        o,
        "  {:<24} {:>26} {:>6} {:>14}  source",
        "line", "exclusive", "excl%", "inclusive"
    );
    let lines: Vec<&Line> = p
        .lines_by_time()
        .into_iter()
        .filter(|l| l.excl_ticks.unwrap_or(0) > 0 || l.incl_ticks.unwrap_or(0) > 0)
        .take(opts.top)
        .collect();
    if lines.is_empty() {
        let _ = writeln!(o, "  none: no line took measurable time");
    }
    for l in lines {
        let file = p.files.get(l.file).map_or("", |f| f.path.as_str());
        let excl = l.excl_ticks.unwrap_or(0);
        let _ = writeln!(
            o,
            "  {:<24} {:>26} {:>5.1}% {:>14}  {}",
            clip(&format!("{}:{}", short_path(file), l.line), 24),
            line_time_text(p, excl, l.excl_samples),
            p.line_time_percent(l).unwrap_or(0.0),
            ticks(p, l.incl_ticks.unwrap_or(0)),
            clip(p.source_line(l.file, l.line).unwrap_or("").trim(), 60),
        );
    }
}

/// asyncio programs: each task's time, resumes and allocations, and what
/// no task spent (the event loop and its waiting).
fn tasks_section(o: &mut String, p: &Profile, st: &Style) {
    let Some(a) = &p.asyncio else {
        return;
    };
    let _ = writeln!(
        o,
        "\n{}",
        st.bold("Tasks (asyncio: each top-level coroutine with what it awaits and calls)")
    );
    let _ = writeln!(
        o,
        "  {:<40} {:>9} {:>12} {:>11} {:>7} {:>10}",
        "task", "resumes", "time", "opcodes", "allocs", "bytes"
    );
    for t in &a.tasks {
        let _ = writeln!(
            o,
            "  {:<40} {:>9} {:>12} {:>11} {:>7} {:>10}",
            clip(&p.function_label(t.function), 40),
            count(t.resumes),
            ticks(p, t.ticks),
            count(t.opcodes),
            count(t.alloc_count),
            bytes(t.alloc_bytes),
        );
    }
    let runners: Vec<String> = a
        .loop_nodes
        .iter()
        .filter_map(|&n| p.call_tree.get(n))
        .map(|n| p.function_label(n.function))
        .collect();
    let _ = writeln!(
        o,
        "  {:<40} {:>9} {:>12}   (asyncio's loop runs frozen: its work and waiting are the own time of {})",
        "event loop and waiting",
        "",
        ticks(p, a.loop_ticks),
        runners.join(", ")
    );
}

/// The lines to change first, then one-offs and imports apart.
fn allocations_section(o: &mut String, p: &Profile, opts: &SummaryOptions, st: &Style) {
    let m = &p.meta;
    // Allocating lines: the ones to change first, one-offs and imports apart.
    let rows = alloc_line_rows_in(p, Scope::PerPass, opts.top);
    let _ = writeln!(
        o,
        "\n{}",
        st.bold("Top allocating lines (on every pass of a loop or call)")
    );
    if rows.is_empty() {
        if m.exit.reason == ExitReason::Crashed {
            let _ = writeln!(o, "  none recorded before the VM crashed");
        } else if m.partial {
            let _ = writeln!(o, "  none recorded (the profile is partial)");
        } else {
            let _ = writeln!(o, "  none: no line of the script allocated on every pass");
        }
    }
    for r in rows {
        write_row(o, &r);
    }
    let once = alloc_line_rows_in(p, Scope::OneOff, opts.top);
    if !once.is_empty() {
        let _ = writeln!(
            o,
            "\n{}",
            st.bold("One-off allocations (lines that ran once: module level, class bodies, single calls)")
        );
        for r in once {
            write_row(o, &r);
        }
    }
    let imports = alloc_line_rows_in(p, Scope::Import, opts.top);
    let compiles = p
        .functions
        .iter()
        .any(|f| f.kind == FunctionKind::Compile && f.calls > 0);
    if !imports.is_empty() || compiles {
        let _ = writeln!(o, "\n{}", st.bold("Imports"));
        for r in imports {
            let _ = writeln!(
                o,
                "  {:<24} {}: {} allocations, {} — {}",
                clip(&r.place, 24),
                r.cause,
                count(r.count),
                bytes(r.bytes),
                r.fix
            );
        }
    }
    compile_time(o, p, st);
    let outside = p
        .alloc_sites
        .iter()
        .filter(|s| {
            s.node.is_none()
                || p.functions
                    .get(s.function)
                    .is_some_and(|f| f.name == "<runtime>")
        })
        .fold((0u64, 0u64), |a, s| (a.0 + s.count, a.1 + s.bytes));
    if outside.0 > 0 {
        let _ = writeln!(
            o,
            "  (and {} allocations, {}, outside any bytecode: compiling and importing)",
            count(outside.0),
            bytes(outside.1)
        );
    }
}

/// Time in `<compile x.py>` frames: compiling .py sources at import (or
/// exec/eval), which a precompiled .mpy or a frozen module does not spend.
fn compile_time(o: &mut String, p: &Profile, st: &Style) {
    let mut compiles: Vec<&Function> = p
        .functions
        .iter()
        .filter(|f| f.kind == FunctionKind::Compile && f.calls > 0)
        .collect();
    if compiles.is_empty() {
        return;
    }
    compiles.sort_by_key(|f| std::cmp::Reverse(f.incl_ticks));
    let total: u64 = compiles.iter().map(|f| f.incl_ticks).sum();
    let each: Vec<String> = compiles
        .iter()
        .take(5)
        .map(|f| format!("{} {}", f.name, ticks(p, f.incl_ticks)))
        .collect();
    let more = if compiles.len() > 5 { ", …" } else { "" };
    let _ = writeln!(
        o,
        "  {} compiling sources at run time ({}{}): precompile them with mpy-cross or freeze them into the firmware",
        st.bold(&ticks(p, total)),
        each.join(", "),
        more
    );
}

fn heap_section(o: &mut String, p: &Profile, st: &Style) {
    let m = &p.meta;
    // Heap.
    let g = &p.gc;
    let _ = writeln!(o, "\n{}", st.bold("Heap"));
    let _ = writeln!(
        o,
        "  peak {} of {}; allocated {} in {} objects",
        bytes(g.peak_used_bytes),
        bytes(m.heap_bytes),
        bytes(g.alloc_bytes),
        count(g.alloc_count)
    );
    let _ = writeln!(
        o,
        "  {} collection(s), {} in GC{}",
        g.count(),
        ticks(p, g.total_ticks),
        match g.largest_free_after_last() {
            Some(b) => format!(", largest free block after the last: {}", bytes(b)),
            None => String::new(),
        }
    );
    for f in g.failures.iter().take(3) {
        let _ = writeln!(
            o,
            "  {}",
            st.warn(&format!(
                "MemoryError: {} could not be allocated at {} line {}",
                bytes(f.bytes),
                p.function_label(f.function),
                f.line
            ))
        );
    }
}

fn write_row(o: &mut String, r: &AllocLineRow) {
    let _ = writeln!(
        o,
        "  {:<24} {:>8} x {:>9}  {:<16} {}",
        clip(&r.place, 24),
        count(r.count),
        bytes(r.bytes),
        r.cause,
        clip(&r.source, 48)
    );
    let runs = r.runs();
    if !runs.is_empty() {
        let _ = writeln!(o, "  {:<24} {runs}", "");
    }
    let _ = writeln!(o, "  {:<24} fix: {}", "", r.fix);
}

/// What was lost between the VM and the profile, each kind counted exactly.
fn lost_line(d: &mpprof_profile::Dropped, st: &Style) -> String {
    if d.total() == 0 {
        return "Lost on the way: nothing".into();
    }
    let mut parts = Vec::new();
    let mut part = |n: u64, what: &str| {
        if n > 0 {
            parts.push(format!("{} {what}", count(n)));
        }
    };
    part(
        d.records,
        "records dropped on the target (its buffer was full)",
    );
    part(d.frames, "frames missing from the sequence");
    part(
        d.crc_errors,
        "frames failed their CRC (damaged on the link)",
    );
    part(d.bad_frames, "frames undecodable");
    if d.lost_allocs > 0 {
        parts.push(format!(
            "so {} allocations ({}) the target made are missing",
            count(d.lost_allocs),
            bytes(d.lost_alloc_bytes)
        ));
    }
    st.warn(&format!(
        "Lost on the way: {}; the figures above undercount",
        parts.join(", ")
    ))
}

/// The summary as JSON (for `--json`).
pub fn summary_json(p: &Profile, top: usize) -> Value {
    let funcs: Vec<Value> = p
        .top_functions(|f| f.excl_ticks)
        .into_iter()
        .filter(|&i| p.functions[i].calls > 0)
        .take(top)
        .map(|i| {
            let f = &p.functions[i];
            json!({
                "function": f.qualname,
                "file": p.files.get(f.file).map(|s| s.path.clone()),
                "line": f.line,
                "calls": f.calls,
                "incl_ticks": f.incl_ticks,
                "excl_ticks": f.excl_ticks,
                "opcodes": f.opcodes,
                "alloc_count": f.alloc_count,
                "alloc_bytes": f.alloc_bytes,
            })
        })
        .collect();
    let lines: Vec<Value> = p
        .allocating_lines_ranked()
        .into_iter()
        .take(top)
        .map(|l| {
            json!({
                "file": p.files.get(l.file).map(|s| s.path.clone()),
                "line": l.line,
                "source": p.source_line(l.file, l.line).map(str::trim),
                "count": l.alloc_count,
                "bytes": l.alloc_bytes,
                "executions": l.executions,
                "scope": l.scope,
                "what": l.what,
                "fix": l.fix,
                "causes": l.causes.iter().map(|c| json!({"cause": c.cause.label(), "count": c.count, "bytes": c.bytes})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let time_lines: Vec<Value> = p
        .lines_by_time()
        .into_iter()
        .take(top)
        .map(|l| {
            json!({
                "file": p.files.get(l.file).map(|s| s.path.clone()),
                "line": l.line,
                "source": p.source_line(l.file, l.line).map(str::trim),
                "excl_ticks": l.excl_ticks,
                "incl_ticks": l.incl_ticks,
                "excl_samples": l.excl_samples,
                "incl_samples": l.incl_samples,
            })
        })
        .collect();
    json!({
        "script": p.meta.script,
        "target": p.meta.target,
        "exit": p.meta.exit.reason,
        "signal": p.meta.exit.signal,
        "partial": p.meta.partial,
        "duration_ticks": p.meta.duration_ticks,
        "clock": p.meta.clock,
        "top_functions": funcs,
        "tasks": p.asyncio.as_ref().map(|a| a.tasks.iter().map(|t| {
            let f = p.functions.get(t.function);
            json!({
                "task": f.map(|f| f.qualname.clone()),
                "file": f.and_then(|f| p.files.get(f.file)).map(|s| s.path.clone()),
                "line": f.map(|f| f.line),
                "resumes": t.resumes,
                "ticks": t.ticks,
                "opcodes": t.opcodes,
                "alloc_count": t.alloc_count,
                "alloc_bytes": t.alloc_bytes,
            })
        }).collect::<Vec<_>>()),
        "event_loop_ticks": p.asyncio.as_ref().map(|a| a.loop_ticks),
        "top_alloc_lines": lines,
        "line_time": p.meta.line_time,
        "top_time_lines": time_lines,
        "heap": {
            "size": p.meta.heap_bytes,
            "peak_used": p.gc.peak_used_bytes,
            "alloc_bytes": p.gc.alloc_bytes,
            "alloc_count": p.gc.alloc_count,
            "collections": p.gc.count(),
            "gc_ticks": p.gc.total_ticks,
            "largest_free_after_last_collection": p.gc.largest_free_after_last(),
        },
        "dropped": p.meta.dropped,
    })
}

#[cfg(test)]
mod tests {
    use mpprof_profile::{AllocKind, AllocSite, Cause, ProfileBuilder};

    use super::*;

    fn site(
        file: usize,
        f: usize,
        line: u32,
        cause: Cause,
        what: &str,
        fix: &str,
        runs: u64,
    ) -> AllocSite {
        AllocSite {
            function: f,
            file,
            line,
            offset: line,
            opcode: None,
            opcode_name: None,
            node: None,
            type_name: None,
            kind: AllocKind::New,
            cause,
            count: 10,
            bytes: 160,
            what: what.into(),
            fix: fix.into(),
            executions: runs,
            event_loop: false,
        }
    }

    fn sample() -> Profile {
        let mut b = ProfileBuilder::new();
        let file = b.add_file("app.py", None);
        let f = b.add_function(file, 1, "<module>", "<module>");
        b.add_alloc(site(
            file,
            f,
            1,
            Cause::Import,
            "compiling lib.py at import",
            "precompile lib.py with mpy-cross",
            1,
        ));
        b.add_alloc(site(
            file,
            f,
            2,
            Cause::Growth,
            "namespace table regrown",
            "a stored one-off fix",
            1,
        ));
        b.add_alloc(site(
            file,
            f,
            7,
            Cause::Float,
            "float",
            "a stored per-pass fix",
            5,
        ));
        b.build()
    }

    #[test]
    fn the_summary_prints_the_stored_texts_per_pass_lines_first() {
        let text = render(&sample(), &SummaryOptions::default());
        let per_pass = text.find("app.py:7").expect("the per-pass line");
        let one_off = text.find("app.py:2").expect("the one-off line");
        let import = text.find("app.py:1 ").expect("the import line");
        assert!(per_pass < one_off && one_off < import, "{text}");
        assert!(text.contains("fix: a stored per-pass fix"), "{text}");
        assert!(text.contains("ran 5x, 2/run"), "{text}");
        assert!(
            text.contains("compiling lib.py at import: 10 allocations, 160 B — precompile lib.py with mpy-cross"),
            "{text}"
        );
    }

    #[test]
    fn the_diff_shows_what_still_allocates_with_its_fix() {
        let a = sample();
        let mut b = a.clone();
        for l in b.lines.iter_mut().filter(|l| l.line == 7) {
            l.alloc_count = 4;
        }
        let text = crate::diff::render(&a, &b, 10);
        assert!(
            text.contains("still allocates in B: float: a stored per-pass fix"),
            "{text}"
        );
    }
}
