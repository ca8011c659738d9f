//! The live view: a terminal UI redrawn ten times a second while the script
//! runs, fed by snapshots of the same aggregator that builds the profile.
//! Ingestion runs on its own thread and never waits for drawing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mpprof_profile::{FunctionId, Profile};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Gauge, Paragraph, Row, Sparkline, Table, Wrap,
};
use ratatui::Frame;

use reports::format::{bytes, clip_words, count, count_short, ticks};

/// The smallest terminal the view draws in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Exclusive,
    Inclusive,
    Calls,
    Opcodes,
    Allocs,
}

impl SortKey {
    pub fn next(self) -> Self {
        match self {
            Self::Exclusive => Self::Inclusive,
            Self::Inclusive => Self::Calls,
            Self::Calls => Self::Opcodes,
            Self::Opcodes => Self::Allocs,
            Self::Allocs => Self::Exclusive,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Exclusive => "exclusive",
            Self::Inclusive => "inclusive",
            Self::Calls => "calls",
            Self::Opcodes => "opcodes",
            Self::Allocs => "allocs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Functions,
    Lines,
    Output,
}

/// Everything the view shows besides the profile.
#[derive(Debug)]
pub struct LiveState {
    pub target: String,
    pub script: String,
    pub profile_path: String,
    pub started: Instant,
    pub events: u64,
    pub events_per_sec: f64,
    pub dropped: u64,
    pub stream_ended: bool,
    pub script_status: Option<String>,
    pub output: VecDeque<String>,
    pub paused: bool,
    pub sort: SortKey,
    pub focus: Pane,
    pub selected: usize,
    pub source_of: Option<FunctionId>,
    pub help: bool,
    pub message: Option<String>,
    /// Allocations per redraw, for the sparkline.
    pub alloc_rate: VecDeque<u64>,
    pub last_alloc_count: u64,
}

impl LiveState {
    pub fn new(target: &str, script: &str, profile_path: &str) -> Self {
        Self {
            target: target.into(),
            script: script.into(),
            profile_path: profile_path.into(),
            started: Instant::now(),
            events: 0,
            events_per_sec: 0.0,
            dropped: 0,
            stream_ended: false,
            script_status: None,
            output: VecDeque::new(),
            paused: false,
            sort: SortKey::Exclusive,
            focus: Pane::Functions,
            selected: 0,
            source_of: None,
            help: false,
            message: None,
            alloc_rate: VecDeque::new(),
            last_alloc_count: 0,
        }
    }

    /// Take in the script's output, keeping the last lines.
    pub fn push_output(&mut self, text: &str) {
        for line in text.split_inclusive('\n') {
            let clean = line.trim_end_matches(['\n', '\r']).to_string();
            match self.output.back_mut() {
                Some(last) if !last.ends_with('\u{0}') && !line.ends_with('\n') => {
                    last.push_str(&clean)
                }
                _ => self.output.push_back(clean),
            }
        }
        while self.output.len() > 500 {
            self.output.pop_front();
        }
    }

    /// Record a new snapshot's allocation count for the rate sparkline.
    pub fn note_allocs(&mut self, total: u64) {
        self.alloc_rate
            .push_back(total.saturating_sub(self.last_alloc_count));
        self.last_alloc_count = total;
        while self.alloc_rate.len() > 200 {
            self.alloc_rate.pop_front();
        }
    }
}

/// The functions in the current sort order (functions that ran).
pub fn sorted_functions(p: &Profile, sort: SortKey) -> Vec<FunctionId> {
    let key = |f: &mpprof_profile::Function| match sort {
        SortKey::Exclusive => f.excl_ticks,
        SortKey::Inclusive => f.incl_ticks,
        SortKey::Calls => f.calls,
        SortKey::Opcodes => f.opcodes,
        SortKey::Allocs => f.alloc_count,
    };
    p.top_functions(key)
        .into_iter()
        .filter(|&i| {
            let f = &p.functions[i];
            f.calls > 0 || f.opcodes > 0 || f.alloc_count > 0
        })
        .collect()
}

fn block(title: &str, focused: bool) -> Block<'static> {
    let style = if focused {
        Style::default().fg(Color::Yellow)
    } else {
        Style::default()
    };
    Block::default()
        .borders(Borders::ALL)
        .border_style(style)
        .title(Span::styled(
            format!(" {title} "),
            Style::default().add_modifier(Modifier::BOLD),
        ))
}

/// One column of a table, its cells in two forms: numbers whole and
/// abbreviated (`1.6M`) for when the whole ones do not fit.
struct Column {
    header: &'static str,
    full: Vec<String>,
    short: Vec<String>,
    /// Columns are dropped highest rank first when even abbreviated numbers
    /// do not fit; 0: always kept.
    drop: u8,
    /// Text that takes the width left, cut at a word boundary when long.
    flex: bool,
    /// Text that may be cut at a word boundary when nothing else fits.
    clippable: bool,
    style: Style,
}

impl Column {
    fn text(header: &'static str, cells: Vec<String>) -> Self {
        Self {
            header,
            short: cells.clone(),
            full: cells,
            drop: 0,
            flex: false,
            clippable: false,
            style: Style::default(),
        }
    }

    /// A column of counts, each whole or abbreviated.
    fn counts(header: &'static str, values: impl Iterator<Item = u64>, drop: u8) -> Self {
        let values: Vec<u64> = values.collect();
        Self {
            header,
            full: values.iter().map(|&n| count(n)).collect(),
            short: values.iter().map(|&n| count_short(n)).collect(),
            drop,
            flex: false,
            clippable: false,
            style: Style::default(),
        }
    }

    fn clippable(mut self) -> Self {
        self.clippable = true;
        self
    }

    fn flex(mut self) -> Self {
        self.flex = true;
        self
    }

    fn droppable(mut self, rank: u8) -> Self {
        self.drop = rank;
        self
    }

    fn styled(mut self, style: Style) -> Self {
        self.style = style;
        self
    }

    fn width(&self, short: bool) -> u16 {
        let cells = if short { &self.short } else { &self.full };
        cells
            .iter()
            .map(|c| c.chars().count())
            .chain([self.header.chars().count()])
            .max()
            .unwrap_or(0) as u16
    }
}

/// The least width a flexible text column is given before numbers are
/// abbreviated or columns dropped.
const MIN_FLEX: u16 = 12;

/// A table whose columns are sized to their content: numbers whole when they
/// fit, else abbreviated, else the least important columns left out; only
/// the flexible text column is ever cut, at a word boundary.
fn fitted_table<'a>(mut cols: Vec<Column>, avail: u16, row_styles: &[Style]) -> Table<'a> {
    let need = |cols: &[Column], short: bool| -> u16 {
        let gaps = cols.len().saturating_sub(1) as u16;
        cols.iter()
            .map(|c| if c.flex { MIN_FLEX } else { c.width(short) })
            .sum::<u16>()
            + gaps
    };
    let mut short = need(&cols, false) > avail;
    while short && need(&cols, true) > avail {
        let Some((i, _)) = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.drop > 0)
            .max_by_key(|(_, c)| c.drop)
        else {
            break;
        };
        cols.remove(i);
        // With a column fewer, whole numbers may fit again.
        short = need(&cols, false) > avail;
    }
    // Still too wide: the flexible text goes and a shorter text column
    // (a cause) takes its place, cut at a word if need be.
    if need(&cols, short) > avail {
        if let (Some(f), Some(c)) = (
            cols.iter().position(|c| c.flex),
            cols.iter().position(|c| c.clippable && !c.flex),
        ) {
            cols[c].flex = true;
            cols.remove(f);
        }
    }
    let fixed: u16 = cols
        .iter()
        .filter(|c| !c.flex)
        .map(|c| c.width(short))
        .sum::<u16>()
        + cols.len().saturating_sub(1) as u16;
    let flex_width = avail.saturating_sub(fixed) as usize;
    let widths: Vec<Constraint> = cols
        .iter()
        .map(|c| {
            if c.flex {
                Constraint::Length(flex_width as u16)
            } else {
                Constraint::Length(c.width(short))
            }
        })
        .collect();
    let n_rows = cols.first().map_or(0, |c| c.full.len());
    let rows: Vec<Row> = (0..n_rows)
        .map(|r| {
            Row::new(cols.iter().map(|c| {
                let cell = if short { &c.short[r] } else { &c.full[r] };
                let cell = if c.flex {
                    clip_words(cell, flex_width)
                } else {
                    cell.clone()
                };
                Cell::from(Span::styled(cell, c.style))
            }))
            .style(row_styles.get(r).copied().unwrap_or_default())
        })
        .collect();
    let header = Row::new(cols.iter().map(|c| c.header))
        .style(Style::default().add_modifier(Modifier::BOLD));
    Table::new(rows, widths).header(header)
}

/// Text pieces laid out on as few lines as fit `width`, never splitting a
/// piece (a piece wider than the line gets a line of its own, cut at a word).
fn flow(pieces: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for piece in pieces.iter().filter(|p| !p.is_empty()) {
        match lines.last_mut() {
            Some(last) if last.chars().count() + 2 + piece.chars().count() <= width => {
                last.push_str("  ");
                last.push_str(piece);
            }
            _ => lines.push(clip_words(piece, width)),
        }
    }
    lines
}

/// Draw one frame of the view.
pub fn draw(f: &mut Frame, st: &LiveState, p: &Profile) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "The terminal is {}x{}; the live view needs at least {MIN_WIDTH}x{MIN_HEIGHT}. Enlarge it, or press q to quit (the profile is written).",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let rows = Layout::vertical([
        Constraint::Percentage(40),
        Constraint::Percentage(30),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .split(area);
    let top =
        Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).split(rows[0]);
    // The opcode mix takes the width its columns need (up to a third), the
    // allocating lines, with their long source and fix, the rest.
    let mix = opcode_pane_width(p, rows[1].height).min(area.width * 35 / 100);
    let mid = Layout::horizontal([Constraint::Min(0), Constraint::Length(mix)]).split(rows[1]);
    draw_functions(f, top[0], st, p);
    draw_heap(f, top[1], st, p);
    if p.meta.line_time.is_some() {
        // With line time, the slowest lines above the allocating ones.
        let halves =
            Layout::vertical([Constraint::Percentage(50), Constraint::Min(0)]).split(mid[0]);
        draw_time_lines(f, halves[0], p);
        draw_lines(f, halves[1], st, p);
    } else {
        draw_lines(f, mid[0], st, p);
    }
    draw_opcodes(f, mid[1], p);
    draw_output(f, rows[2], st);
    draw_status(f, rows[3], st, p);
    if let Some(fid) = st.source_of {
        draw_source(f, area, p, fid);
    }
    if st.help {
        draw_help(f, area);
    }
}

fn draw_functions(f: &mut Frame, area: Rect, st: &LiveState, p: &Profile) {
    let ids = sorted_functions(p, st.sort);
    let total = p.total_ticks().max(1);
    // Only the rows that fit are built: a profile may have thousands.
    let visible = area.height.saturating_sub(3) as usize;
    let first = st.selected.saturating_sub(visible.saturating_sub(1));
    let shown: Vec<(usize, FunctionId)> = ids
        .iter()
        .copied()
        .enumerate()
        .skip(first)
        .take(visible)
        .collect();
    let funs = || shown.iter().map(|&(_, id)| &p.functions[id]);
    let row_styles: Vec<Style> = shown
        .iter()
        .map(|&(i, _)| {
            if st.focus == Pane::Functions && i == st.selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            }
        })
        .collect();
    let excl: Vec<String> = funs()
        .map(|fun| {
            format!(
                "{} {:>4.1}%",
                ticks(p, fun.excl_ticks),
                fun.excl_ticks as f64 * 100.0 / total as f64
            )
        })
        .collect();
    let excl_short: Vec<String> = funs()
        .map(|fun| {
            format!(
                "{} {:>4.1}%",
                short_ticks(p, fun.excl_ticks),
                fun.excl_ticks as f64 * 100.0 / total as f64
            )
        })
        .collect();
    let cols = vec![
        Column::text(
            "function",
            shown.iter().map(|&(_, id)| p.function_label(id)).collect(),
        )
        .flex(),
        Column::counts("calls", funs().map(|f| f.calls), 2),
        Column {
            header: "incl",
            full: funs().map(|f| ticks(p, f.incl_ticks)).collect(),
            short: funs().map(|f| short_ticks(p, f.incl_ticks)).collect(),
            drop: 3,
            flex: false,
            clippable: false,
            style: Style::default(),
        },
        Column {
            header: "excl",
            full: excl,
            short: excl_short,
            drop: 0,
            flex: false,
            clippable: false,
            style: Style::default(),
        },
        Column::counts("opcodes", funs().map(|f| f.opcodes), 4),
        Column::counts("allocs", funs().map(|f| f.alloc_count), 1),
    ];
    let title = format!("Functions (sorted by {}, s: sort)", st.sort.name());
    let title = if title.chars().count() + 4 <= area.width as usize {
        title
    } else {
        format!("Functions by {}", st.sort.name())
    };
    let table = fitted_table(cols, area.width.saturating_sub(2), &row_styles)
        .block(block(&title, st.focus == Pane::Functions));
    f.render_widget(table, area);
}

/// Ticks like [`ticks`], a board's tick count abbreviated.
fn short_ticks(p: &Profile, t: u64) -> String {
    let full = ticks(p, t);
    match full.strip_suffix(" ticks") {
        Some(_) => format!("{} ticks", count_short(t)),
        None => full,
    }
}

fn draw_lines(f: &mut Frame, area: Rect, st: &LiveState, p: &Profile) {
    let rows = reports::summary::alloc_line_rows(p, area.height.saturating_sub(3) as usize);
    let row_styles: Vec<Style> = (0..rows.len())
        .map(|i| {
            if st.focus == Pane::Lines && i == st.selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            }
        })
        .collect();
    let cols = vec![
        Column::text("line", rows.iter().map(|r| r.place.clone()).collect()),
        Column::counts("allocs", rows.iter().map(|r| r.count), 0),
        Column::text("bytes", rows.iter().map(|r| bytes(r.bytes)).collect()).droppable(2),
        Column::text("cause", rows.iter().map(|r| r.cause.clone()).collect())
            .styled(Style::default().fg(Color::Red))
            .clippable(),
        Column::text("runs", rows.iter().map(|r| r.runs()).collect()).droppable(1),
        Column::text(
            "source — fix",
            rows.iter()
                .map(|r| format!("{}  — {}", r.source, r.fix))
                .collect(),
        )
        .flex(),
    ];
    let table = fitted_table(cols, area.width.saturating_sub(2), &row_styles)
        .block(block("Allocating lines", st.focus == Pane::Lines));
    f.render_widget(table, area);
}

/// The lines that took the most time of their own (`--line-time`): exact
/// ticks on a board, sampled time with its samples on the host.
fn draw_time_lines(f: &mut Frame, area: Rect, p: &Profile) {
    let total = p.total_ticks().max(1);
    let lines: Vec<&mpprof_profile::Line> = p
        .lines_by_time()
        .into_iter()
        .filter(|l| l.excl_ticks.unwrap_or(0) > 0)
        .take(area.height.saturating_sub(3) as usize)
        .collect();
    let place = |l: &mpprof_profile::Line| {
        let file = p.files.get(l.file).map_or("", |x| x.path.as_str());
        format!("{}:{}", reports::format::short_path(file), l.line)
    };
    let cols = vec![
        Column::text("line", lines.iter().map(|l| place(l)).collect()),
        Column::text(
            "own time",
            lines
                .iter()
                .map(|l| {
                    reports::summary::line_time_text(p, l.excl_ticks.unwrap_or(0), l.excl_samples)
                })
                .collect(),
        ),
        Column::text(
            "%",
            lines
                .iter()
                .map(|l| {
                    format!(
                        "{:.1}%",
                        l.excl_ticks.unwrap_or(0) as f64 * 100.0 / total as f64
                    )
                })
                .collect(),
        ),
        Column::text(
            "incl",
            lines
                .iter()
                .map(|l| ticks(p, l.incl_ticks.unwrap_or(0)))
                .collect(),
        )
        .droppable(1),
        Column::text(
            "source",
            lines
                .iter()
                .map(|l| {
                    p.source_line(l.file, l.line)
                        .unwrap_or("")
                        .trim()
                        .to_string()
                })
                .collect(),
        )
        .flex(),
    ];
    let title = match p.meta.line_time {
        Some(t) if t.is_sampled() => format!("Hot lines (sampled, {} samples)", count(t.samples)),
        _ => "Hot lines (exact time)".to_string(),
    };
    let styles = vec![Style::default(); lines.len()];
    let table =
        fitted_table(cols, area.width.saturating_sub(2), &styles).block(block(&title, false));
    f.render_widget(table, area);
}

fn draw_heap(f: &mut Frame, area: Rect, st: &LiveState, p: &Profile) {
    let outer = block("Heap", false);
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    let used = p.gc.heap_samples.last().map_or(0, |h| h.used);
    let size = p.meta.heap_bytes.max(1);
    let ratio = (used as f64 / size as f64).clamp(0.0, 1.0);
    let width = inner.width as usize;
    let gcs = p.gc.count() as usize;
    let pieces = |num: fn(u64) -> String, split: bool| -> Vec<String> {
        let allocated = if split {
            vec![
                format!("allocated {}", bytes(p.gc.alloc_bytes)),
                format!("in {}", num(p.gc.alloc_count)),
            ]
        } else {
            vec![format!(
                "allocated {} in {}",
                bytes(p.gc.alloc_bytes),
                num(p.gc.alloc_count)
            )]
        };
        let mut v = vec![format!("peak {}", bytes(p.gc.peak_used_bytes))];
        v.extend(allocated);
        v.push(format!("{} collection(s)", num(gcs as u64)));
        v.push(
            p.gc.largest_free_after_last()
                .map(|b| format!("largest free {}", bytes(b)))
                .unwrap_or_default(),
        );
        v
    };
    let fits = |lines: &[String]| lines.iter().all(|l| !l.ends_with('…'));
    // Whole counts when they fit, else abbreviated, else on more lines.
    let candidates = [
        (count as fn(u64) -> String, false),
        (count_short, false),
        (count_short, true),
    ];
    let mut text = Vec::new();
    for (num, split) in candidates {
        text = flow(&pieces(num, split), width);
        if fits(&text) {
            break;
        }
    }
    // The collections drawn as bars, where the line has room for them.
    let bars = "|".repeat(gcs.min(20));
    if let Some(line) = text.iter_mut().find(|l| l.contains("collection(s)")) {
        if line.chars().count() + 1 + bars.len() <= width {
            *line = line.replacen("collection(s)", &format!("collection(s) {bars}"), 1);
        }
    }
    let text_rows = (text.len() as u16).min(inner.height.saturating_sub(2));
    let parts = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(text_rows),
        Constraint::Min(1),
    ])
    .split(inner);
    f.render_widget(
        Gauge::default()
            .gauge_style(Style::default().fg(Color::Green))
            .ratio(ratio)
            .label(
                [
                    format!("{} used of {}", bytes(used), bytes(size)),
                    format!("{} / {}", bytes(used), bytes(size)),
                    bytes(used),
                ]
                .into_iter()
                .find(|l| l.chars().count() <= width)
                .unwrap_or_default(),
            ),
        parts[0],
    );
    f.render_widget(
        Paragraph::new(text.into_iter().map(Line::from).collect::<Vec<_>>()),
        parts[1],
    );
    let data: Vec<u64> = st.alloc_rate.iter().copied().collect();
    f.render_widget(
        Sparkline::default()
            .block(Block::default().title(if width >= 20 {
                "allocations / 100 ms"
            } else {
                "allocs / 100 ms"
            }))
            .data(&data)
            .style(Style::default().fg(Color::Magenta)),
        parts[2],
    );
}

/// The width the opcode mix needs with whole counts: name, count, share,
/// the gaps and the borders.
fn opcode_pane_width(p: &Profile, height: u16) -> u16 {
    let shown = p.opcode_mix.iter().take(height.saturating_sub(3) as usize);
    let (name, num) = shown.fold(("opcode".len(), "count".len()), |(n, c), o| {
        (
            n.max(o.opcode.chars().count()),
            c.max(count(o.count).chars().count()),
        )
    });
    (name + num + "100.0%".len() + 2 + 2) as u16
}

fn draw_opcodes(f: &mut Frame, area: Rect, p: &Profile) {
    let total: u64 = p.opcode_mix.iter().map(|o| o.count).sum::<u64>().max(1);
    let mix: Vec<_> = p
        .opcode_mix
        .iter()
        .take(area.height.saturating_sub(3) as usize)
        .collect();
    let cols = vec![
        Column::text("opcode", mix.iter().map(|o| o.opcode.clone()).collect()).flex(),
        Column::counts("count", mix.iter().map(|o| o.count), 0),
        Column::text(
            "share",
            mix.iter()
                .map(|o| format!("{:.1}%", o.count as f64 * 100.0 / total as f64))
                .collect(),
        )
        .droppable(1),
    ];
    let t = fitted_table(cols, area.width.saturating_sub(2), &[]).block(block("Opcode mix", false));
    f.render_widget(t, area);
}

fn draw_output(f: &mut Frame, area: Rect, st: &LiveState) {
    let h = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> = st
        .output
        .iter()
        .skip(st.output.len().saturating_sub(h))
        .map(|l| Line::from(l.as_str()))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(block("Script output", st.focus == Pane::Output)),
        area,
    );
}

fn draw_status(f: &mut Frame, area: Rect, st: &LiveState, p: &Profile) {
    let state = match (&st.script_status, st.stream_ended) {
        (Some(s), _) => format!("script {s}; q to quit"),
        (None, true) => "the stream stopped".into(),
        (None, false) if st.paused => "paused (p to resume)".into(),
        (None, false) => "running".into(),
    };
    // Parts in order; when the bar is too narrow the optional ones go,
    // least useful first, rather than cutting what is left.
    let parts: [(String, u8); 7] = [
        (
            format!(
                "{} on {}",
                st.script.rsplit('/').next().unwrap_or(""),
                st.target
            ),
            0,
        ),
        (format!("{:.1} s", st.started.elapsed().as_secs_f64()), 0),
        (format!("{:.0} events/s", st.events_per_sec), 2),
        (
            format!("dropped {}", count(st.dropped + p.meta.dropped.total())),
            0,
        ),
        (st.message.clone().unwrap_or(state), 0),
        (format!("profile: {}", st.profile_path), 3),
        ("? help".to_string(), 1),
    ];
    let join = |max_rank: u8| {
        let kept: Vec<&str> = parts
            .iter()
            .filter(|(_, rank)| *rank <= max_rank)
            .map(|(t, _)| t.as_str())
            .collect();
        format!(" {}", kept.join(" | "))
    };
    let width = area.width as usize;
    let text = (0..=3u8)
        .rev()
        .map(join)
        .find(|t| t.chars().count() <= width)
        .unwrap_or_else(|| clip_words(&join(0), width));
    f.render_widget(
        Paragraph::new(text).style(Style::default().bg(Color::Blue).fg(Color::White)),
        area,
    );
}

fn centered(area: Rect, pct_w: u16, pct_h: u16) -> Rect {
    let w = area.width * pct_w / 100;
    let h = area.height * pct_h / 100;
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_source(f: &mut Frame, area: Rect, p: &Profile, fid: FunctionId) {
    let r = centered(area, 90, 80);
    f.render_widget(Clear, r);
    let name = p
        .functions
        .get(fid)
        .map_or(String::new(), |x| x.qualname.clone());
    let files = reports::annotate::annotate(
        p,
        &reports::annotate::AnnotateOptions {
            function: Some(name.clone()),
            top: None,
            color: false,
        },
    );
    let mut lines = Vec::new();
    for file in files {
        for l in file.lines {
            let style = if l.hot {
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            let alloc = l
                .cause
                .as_ref()
                .map(|c| format!("  <- {} x {}", count(l.alloc_count), c))
                .unwrap_or_default();
            let time = match (l.excl_ticks, l.time_percent) {
                (Some(t), Some(pc)) if t > 0 => format!("{:>12} {pc:>5.1}% ", ticks(p, t)),
                _ if p.meta.line_time.is_some() => format!("{:>20}", ""),
                _ => String::new(),
            };
            lines.push(Line::from(Span::styled(
                format!(
                    "{:>4} {time}{:>6} {}{alloc}",
                    l.line,
                    if l.opcodes > 0 {
                        format!("{:.1}%", l.opcode_percent)
                    } else {
                        String::new()
                    },
                    l.text
                ),
                style,
            )));
        }
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(&format!("{name} (Esc: close)"), true)),
        r,
    );
}

fn draw_help(f: &mut Frame, area: Rect) {
    let r = centered(area, 60, 60);
    f.render_widget(Clear, r);
    let text = "q       quit (the profile is written)\n\
p       pause the display (collection goes on)\n\
s       change the sort column of the functions\n\
Tab     move focus between panes\n\
Up/Down select a row\n\
Enter   annotated source of the selected function\n\
f       write a flame graph snapshot\n\
?       this help (any key closes it)";
    f.render_widget(Paragraph::new(text).block(block("Keys", true)), r);
}

/// What a key does to the state.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    FlameSnapshot,
}

/// Apply a key press.
pub fn handle_key(st: &mut LiveState, p: &Profile, key: char) -> Action {
    if st.help {
        st.help = false;
        return Action::None;
    }
    match key {
        'q' => return Action::Quit,
        'p' => st.paused = !st.paused,
        's' => st.sort = st.sort.next(),
        '\t' => {
            st.focus = match st.focus {
                Pane::Functions => Pane::Lines,
                Pane::Lines => Pane::Output,
                Pane::Output => Pane::Functions,
            };
            st.selected = 0;
        }
        '?' => st.help = true,
        'f' => return Action::FlameSnapshot,
        '\n' => {
            if st.source_of.is_some() {
                st.source_of = None;
            } else if st.focus == Pane::Functions {
                st.source_of = sorted_functions(p, st.sort).get(st.selected).copied();
            }
        }
        '\u{1b}' => st.source_of = None,
        'k' => st.selected = st.selected.saturating_sub(1),
        'j' => st.selected += 1,
        _ => {}
    }
    Action::None
}

/// How often the view redraws.
pub const FRAME: Duration = Duration::from_millis(100);
