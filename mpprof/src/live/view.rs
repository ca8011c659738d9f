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

use reports::format::{bytes, count, ticks};

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
    let mid =
        Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).split(rows[1]);
    draw_functions(f, top[0], st, p);
    draw_heap(f, top[1], st, p);
    draw_lines(f, mid[0], st, p);
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
    let rows: Vec<Row> = ids
        .iter()
        .enumerate()
        .skip(first)
        .take(visible)
        .map(|(i, &id)| {
            let fun = &p.functions[id];
            let style = if st.focus == Pane::Functions && i == st.selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            Row::new(vec![
                Cell::from(p.function_label(id)),
                Cell::from(count(fun.calls)),
                Cell::from(ticks(p, fun.incl_ticks)),
                Cell::from(format!(
                    "{} {:>4.1}%",
                    ticks(p, fun.excl_ticks),
                    fun.excl_ticks as f64 * 100.0 / total as f64
                )),
                Cell::from(count(fun.opcodes)),
                Cell::from(count(fun.alloc_count)),
            ])
            .style(style)
        })
        .collect();
    let header = Row::new(["function", "calls", "incl", "excl", "opcodes", "allocs"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let table = Table::new(
        rows,
        [
            Constraint::Min(20),
            Constraint::Length(8),
            Constraint::Length(12),
            Constraint::Length(18),
            Constraint::Length(10),
            Constraint::Length(7),
        ],
    )
    .header(header)
    .block(block(
        &format!("Functions (sorted by {}, s: sort)", st.sort.name()),
        st.focus == Pane::Functions,
    ));
    f.render_widget(table, area);
}

fn draw_lines(f: &mut Frame, area: Rect, st: &LiveState, p: &Profile) {
    let rows: Vec<Row> =
        reports::summary::alloc_line_rows(p, area.height.saturating_sub(3) as usize)
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let style = if st.focus == Pane::Lines && i == st.selected {
                    Style::default().add_modifier(Modifier::REVERSED)
                } else {
                    Style::default()
                };
                let runs = r.runs();
                Row::new(vec![
                    Cell::from(r.place),
                    Cell::from(count(r.count)),
                    Cell::from(bytes(r.bytes)),
                    Cell::from(Span::styled(r.cause, Style::default().fg(Color::Red))),
                    Cell::from(match runs {
                        runs if runs.is_empty() => format!("{}  — {}", r.source, r.fix),
                        runs => format!("{}  ({runs})  — {}", r.source, r.fix),
                    }),
                ])
                .style(style)
            })
            .collect();
    let header = Row::new(["line", "allocs", "bytes", "cause", "source — fix"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let table = Table::new(
        rows,
        [
            Constraint::Length(22),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(14),
            Constraint::Min(20),
        ],
    )
    .header(header)
    .block(block("Allocating lines", st.focus == Pane::Lines));
    f.render_widget(table, area);
}

fn draw_heap(f: &mut Frame, area: Rect, st: &LiveState, p: &Profile) {
    let outer = block("Heap", false);
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    let parts = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .split(inner);
    let used = p.gc.heap_samples.last().map_or(0, |h| h.used);
    let size = p.meta.heap_bytes.max(1);
    let ratio = (used as f64 / size as f64).clamp(0.0, 1.0);
    f.render_widget(
        Gauge::default()
            .gauge_style(Style::default().fg(Color::Green))
            .ratio(ratio)
            .label(format!("{} used of {}", bytes(used), bytes(size))),
        parts[0],
    );
    f.render_widget(
        Paragraph::new(format!(
            "peak {}  allocated {} in {}",
            bytes(p.gc.peak_used_bytes),
            bytes(p.gc.alloc_bytes),
            count(p.gc.alloc_count)
        )),
        parts[1],
    );
    let gcs = p.gc.count() as usize;
    f.render_widget(
        Paragraph::new(format!(
            "{gcs} collection(s) {}{}",
            "|".repeat(gcs.min(20)),
            p.gc.largest_free_after_last()
                .map(|b| format!("  largest free {}", bytes(b)))
                .unwrap_or_default()
        )),
        parts[2],
    );
    let data: Vec<u64> = st.alloc_rate.iter().copied().collect();
    f.render_widget(
        Sparkline::default()
            .block(Block::default().title("allocations / 100 ms"))
            .data(&data)
            .style(Style::default().fg(Color::Magenta)),
        parts[3],
    );
}

fn draw_opcodes(f: &mut Frame, area: Rect, p: &Profile) {
    let total: u64 = p.opcode_mix.iter().map(|o| o.count).sum::<u64>().max(1);
    let rows: Vec<Row> = p
        .opcode_mix
        .iter()
        .take(area.height.saturating_sub(3) as usize)
        .map(|o| {
            Row::new(vec![
                Cell::from(o.opcode.clone()),
                Cell::from(count(o.count)),
                Cell::from(format!("{:.1}%", o.count as f64 * 100.0 / total as f64)),
            ])
        })
        .collect();
    let t = Table::new(
        rows,
        [
            Constraint::Min(12),
            Constraint::Length(10),
            Constraint::Length(6),
        ],
    )
    .block(block("Opcode mix", false));
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
    let text = format!(
        " {} on {} | {:.1} s | {:.0} events/s | dropped {} | {} | profile: {} | ? help",
        st.script.rsplit('/').next().unwrap_or(""),
        st.target,
        st.started.elapsed().as_secs_f64(),
        st.events_per_sec,
        st.dropped + p.meta.dropped.total(),
        st.message.clone().unwrap_or(state),
        st.profile_path
    );
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
            lines.push(Line::from(Span::styled(
                format!(
                    "{:>4} {:>6} {}{alloc}",
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
        Paragraph::new(lines).block(block(&format!("{name} (Esc: close)"), true)),
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
