//! Flame graphs through inferno: folded stacks from the Profile's call tree,
//! weighted by ticks, opcodes, or allocations (coloured by cause), and
//! differential graphs between two profiles.

use std::collections::BTreeMap;
use std::io::Write;

use inferno::flamegraph::color::{parse_hex_color, PaletteMap};
use inferno::flamegraph::{self, Direction};
use mpprof_profile::{Cause, Profile};

/// What a frame's width measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Cycles,
    Opcodes,
    AllocBytes,
    AllocCount,
}

impl Weight {
    pub fn parse(s: &str) -> Result<Self, FlameError> {
        match s {
            "cycles" | "ticks" | "time" => Ok(Self::Cycles),
            "opcodes" => Ok(Self::Opcodes),
            "alloc-bytes" => Ok(Self::AllocBytes),
            "alloc-count" => Ok(Self::AllocCount),
            other => Err(FlameError::UnknownWeight(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Cycles => "cycles",
            Self::Opcodes => "opcodes",
            Self::AllocBytes => "alloc-bytes",
            Self::AllocCount => "alloc-count",
        }
    }

    fn is_alloc(self) -> bool {
        matches!(self, Self::AllocBytes | Self::AllocCount)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlameError {
    #[error("unknown weight `{0}`: use cycles, opcodes, alloc-bytes or alloc-count")]
    UnknownWeight(String),
    #[error("the profile has no {0} to draw (all weights are zero): pick another --weight")]
    Empty(&'static str),
    #[error("line frames (--lines) need the profile's time per line with the cycles weight: profile with `mpprof run --line-time` and draw with --weight cycles")]
    NoLineTime,
    #[error("cannot write the flame graph: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct FlameOptions {
    pub weight: Weight,
    /// The icicle view: stacks hang down from the root.
    pub icicle: bool,
    pub title: Option<String>,
    /// Line frames (`function:line`, as py-spy `--lines`) ending each stack,
    /// from the profile's line time (cycles weight only).
    pub lines: bool,
}

/// A frame name safe for folded stacks: `;` separates frames and the count
/// follows the last space-free run, so both are replaced.
pub fn frame_name(s: &str) -> String {
    s.replace(';', ":").replace(['\n', '\r'], " ")
}

fn cause_frame(c: &Cause) -> String {
    format!("[{}]", c.label())
}

/// The frame naming an allocating line, `main:24`: the function's name and
/// the line; none when the place has no source line (the runtime).
fn line_frame(p: &Profile, s: &mpprof_profile::AllocSite) -> Option<String> {
    if s.line == 0 {
        return None;
    }
    let name = p.functions.get(s.function).map_or("?", |f| f.name.as_str());
    Some(frame_name(&format!("{name}:{}", s.line)))
}

/// The colour of an allocation cause's frames.
pub fn cause_color(c: &Cause) -> &'static str {
    match c {
        Cause::Float => "#e4572e",
        Cause::Bigint => "#f3a712",
        Cause::BoundMethod => "#a8c686",
        Cause::Tuple => "#669bbc",
        Cause::List => "#29335c",
        Cause::Dict => "#7b2cbf",
        Cause::Set => "#c77dff",
        Cause::Str => "#2a9d8f",
        Cause::Bytes => "#264653",
        Cause::Closure => "#e76f51",
        Cause::Generator => "#f4a261",
        Cause::Instance => "#8ab17d",
        Cause::Exception => "#d00000",
        Cause::Frame => "#9d4edd",
        Cause::Import => "#495057",
        Cause::Growth => "#6c757d",
        Cause::Other(_) => "#adb5bd",
    }
}

/// Folded stacks (`a;b;c N`), sorted, one line per distinct stack.
pub fn folded(p: &Profile, weight: Weight) -> Vec<String> {
    folded_with_lines(p, weight, false)
}

/// [`folded`]; with `lines` and the cycles weight, each stack ends in the
/// line frames of its function (`work:8`), its exclusive time split by the
/// lines' own time ([`Profile::node_line_ticks`]).
pub fn folded_with_lines(p: &Profile, weight: Weight, lines: bool) -> Vec<String> {
    let labels: Vec<String> = (0..p.functions.len())
        .map(|i| frame_name(&p.function_label(i)))
        .collect();
    let stacks = p.stacks();
    let mut acc: BTreeMap<String, u64> = BTreeMap::new();
    let path_of = |node: usize| -> String {
        stacks[node]
            .0
            .iter()
            .map(|&f| labels[f].as_str())
            .collect::<Vec<_>>()
            .join(";")
    };
    if weight.is_alloc() {
        for s in &p.alloc_sites {
            let v = if weight == Weight::AllocBytes {
                s.bytes
            } else {
                s.count
            };
            if v == 0 {
                continue;
            }
            let base = match s.node {
                Some(n) if n < stacks.len() => path_of(n),
                _ => labels.get(s.function).cloned().unwrap_or_default(),
            };
            // As memray does: the allocating line, `function:line`, between
            // the function frames and the cause.
            let key = match line_frame(p, s) {
                Some(line) => format!("{base};{line};{}", frame_name(&cause_frame(&s.cause))),
                None => format!("{base};{}", frame_name(&cause_frame(&s.cause))),
            };
            *acc.entry(key).or_default() += v;
        }
    } else {
        for (i, n) in p.call_tree.iter().enumerate() {
            let v = match weight {
                Weight::Cycles => n.excl_ticks,
                _ => n.opcodes,
            };
            let split = if lines && weight == Weight::Cycles {
                p.node_line_ticks(i)
            } else {
                Vec::new()
            };
            if !split.is_empty() {
                let base = path_of(i);
                let name = p.functions.get(n.function).map_or("?", |f| f.name.as_str());
                for (line, t) in split {
                    let key = format!("{base};{}", frame_name(&format!("{name}:{line}")));
                    *acc.entry(key).or_default() += t;
                }
            } else if v > 0 {
                *acc.entry(path_of(i)).or_default() += v;
            }
        }
    }
    acc.into_iter().map(|(k, v)| format!("{k} {v}")).collect()
}

fn unit_name(p: &Profile, weight: Weight) -> String {
    match weight {
        Weight::Cycles => match p.meta.clock.unit.as_str() {
            "ns" => "ns".into(),
            "cycles" => "cycles".into(),
            _ => "ticks".into(),
        },
        Weight::Opcodes => "opcodes".into(),
        Weight::AllocBytes => "bytes".into(),
        Weight::AllocCount => "allocations".into(),
    }
}

/// Write the flame graph SVG.
pub fn write_svg(p: &Profile, opts: &FlameOptions, out: impl Write) -> Result<(), FlameError> {
    if opts.lines && (opts.weight != Weight::Cycles || p.meta.line_time.is_none()) {
        return Err(FlameError::NoLineTime);
    }
    let lines = folded_with_lines(p, opts.weight, opts.lines);
    if lines.is_empty() {
        return Err(FlameError::Empty(opts.weight.name()));
    }
    let mut palette = PaletteMap::default();
    if opts.weight.is_alloc() {
        for c in Cause::all() {
            if let Some(color) = parse_hex_color(cause_color(c)) {
                palette.insert(cause_frame(c), color);
            }
        }
        for s in &p.alloc_sites {
            if let Cause::Other(_) = s.cause {
                if let Some(color) = parse_hex_color(cause_color(&s.cause)) {
                    palette.insert(cause_frame(&s.cause), color);
                }
            }
        }
    }
    let mut o = flamegraph::Options::default();
    o.title = opts.title.clone().unwrap_or_else(|| {
        format!(
            "{} — {}",
            p.meta.script.rsplit('/').next().unwrap_or("profile"),
            opts.weight.name()
        )
    });
    o.count_name = unit_name(p, opts.weight);
    o.name_type = "Function:".into();
    o.deterministic = true;
    o.hash = true;
    if opts.icicle {
        o.direction = Direction::Inverted;
    }
    if opts.weight.is_alloc() {
        o.palette_map = Some(&mut palette);
    }
    flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), out)?;
    Ok(())
}

/// A differential flame graph: B's stacks, red where B costs more than A,
/// blue where less.
pub fn write_diff_svg(
    a: &Profile,
    b: &Profile,
    weight: Weight,
    out: impl Write,
) -> Result<(), FlameError> {
    let la = folded(a, weight).join("\n");
    let lb = folded(b, weight).join("\n");
    if la.is_empty() && lb.is_empty() {
        return Err(FlameError::Empty(weight.name()));
    }
    let mut diff = Vec::new();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        la.as_bytes(),
        lb.as_bytes(),
        &mut diff,
    )?;
    let text = String::from_utf8_lossy(&diff).into_owned();
    let mut o = flamegraph::Options::default();
    o.title = format!("{} — difference", weight.name());
    o.count_name = unit_name(b, weight);
    o.deterministic = true;
    flamegraph::from_lines(&mut o, text.lines(), out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_names_cannot_break_folded_lines() {
        assert_eq!(frame_name("a;b\nc"), "a:b c");
        assert!(Weight::parse("watts").is_err());
        assert_eq!(Weight::parse("alloc-bytes").unwrap(), Weight::AllocBytes);
    }
}
