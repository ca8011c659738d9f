//! `mpprof check`: regression budgets for CI. Runs each script of a budget
//! file, evaluates every budget against its profile (or a stored baseline),
//! and reports what failed and why, briefly.
//!
//! Opcode counts and allocations are deterministic on every target, and
//! cycles are on the emulated board: budgets can be exact.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mpprof_profile::{FunctionId, Profile};
use serde::Deserialize;

use crate::capture::{ProbeTarget, Quiet, Recording, Target};
use crate::output::write_profile;
use crate::quantities::{parse_duration, parse_size};

/// What to check, and against what.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The budget file.
    pub budgets: PathBuf,
    /// Compare relative budgets ("+2%") with the profiles stored here.
    pub baseline: Option<PathBuf>,
    /// Write this run's profiles as the new baseline (into `baseline`).
    pub update_baseline: bool,
}

/// The budget file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    #[serde(default)]
    pub script: Vec<ScriptBudgets>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptBudgets {
    pub path: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    pub heap: Option<String>,
    pub target: Option<String>,
    pub timeout: Option<String>,
    /// With target = "device": the board's serial port (its REPL); a value
    /// starting with `$` names an environment variable holding it, so one
    /// budget file serves machines whose boards enumerate differently.
    pub device: Option<String>,
    /// With target = "device": read the stream through a debug probe
    /// (VID:PID[:SERIAL], or "" for the only one), with `chip` and
    /// optionally `elf`, as `mpprof run --probe` does.
    pub probe: Option<String>,
    pub chip: Option<String>,
    pub elf: Option<PathBuf>,
    #[serde(default)]
    pub budget: Vec<Budget>,
}

/// A limit: an absolute number, a size ("8k"), or relative to the baseline
/// ("+2%", "-5%", "+100").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Limit {
    Number(u64),
    Text(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// What the budget covers: a function, a line (`file.py:42`), a region,
    /// the span between two marks, or the whole run.
    pub function: Option<String>,
    pub line: Option<String>,
    pub region: Option<String>,
    pub between: Option<[String; 2]>,
    /// Limits per call instead of in total (function budgets).
    #[serde(default)]
    pub per_call: bool,
    pub allocs: Option<Limit>,
    pub alloc_bytes: Option<Limit>,
    pub opcodes: Option<Limit>,
    pub calls: Option<Limit>,
    pub cycles: Option<Limit>,
    pub peak_heap: Option<Limit>,
    pub collections: Option<Limit>,
    /// A floor: the largest free block after the last collection must be at least this.
    pub largest_free: Option<Limit>,
    /// A name for reports.
    pub name: Option<String>,
}

/// One evaluated limit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub script: String,
    pub budget: String,
    pub metric: String,
    pub limit: String,
    pub measured: u64,
    pub allowed: u64,
    pub pass: bool,
    /// For failed allocation budgets: the offending lines with causes and fixes.
    pub offenders: Vec<String>,
    /// Where to annotate (file, line) in CI.
    pub location: Option<(String, u32)>,
}

/// Parse a budget file, with the line and column of any mistake.
pub fn parse_budgets(text: &str, path: &Path) -> Result<BudgetFile> {
    let file: BudgetFile = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" at line {line}, column {col}")
            })
            .unwrap_or_default();
        anyhow::anyhow!("{}{at}: {}", path.display(), e.message())
    })?;
    if file.script.is_empty() {
        bail!(
            "{} has no [[script]] entries: add one with a path and its [[script.budget]] limits",
            path.display()
        );
    }
    Ok(file)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The names closest to `name`, for "did you mean".
pub fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<(usize, String)> = candidates
        .map(|c| (edit_distance(name, c), c.to_string()))
        .collect();
    v.sort();
    v.dedup_by(|a, b| a.1 == b.1);
    v.into_iter().take(3).map(|(_, c)| c).collect()
}

/// Measured figures for one budget's scope.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    allocs: u64,
    alloc_bytes: u64,
    opcodes: u64,
    calls: u64,
    cycles: u64,
}

fn scope_label(b: &Budget) -> String {
    if let Some(n) = &b.name {
        return n.clone();
    }
    match (&b.function, &b.line, &b.region, &b.between) {
        (Some(f), _, _, _) => format!(
            "function {f}{}",
            if b.per_call { " (per call)" } else { "" }
        ),
        (_, Some(l), _, _) => format!("line {l}"),
        (_, _, Some(r), _) => format!("region {r}"),
        (_, _, _, Some([a, z])) => format!("between {a} and {z}"),
        _ => "whole run".into(),
    }
}

fn functions_named(p: &Profile, name: &str) -> Result<Vec<FunctionId>> {
    let ids = p.find_functions(name);
    if ids.is_empty() {
        let near = nearest(name, p.functions.iter().map(|f| f.qualname.as_str()));
        bail!(
            "the profile has no function named `{name}`; nearest: {}",
            near.join(", ")
        );
    }
    Ok(ids)
}

/// The measured figures a budget covers: one function, line, region, span
/// between marks, or the whole run.
fn figures(p: &Profile, b: &Budget) -> Result<Figures> {
    if let Some(name) = &b.function {
        return function_figures(p, name, b.per_call);
    }
    if let Some(spec) = &b.line {
        return line_figures(p, spec, b.cycles.is_some());
    }
    if let Some(name) = &b.region {
        return region_figures(p, name);
    }
    if let Some([a, z]) = &b.between {
        return span_figures(p, a, z);
    }
    Ok(Figures {
        allocs: p.gc.alloc_count,
        alloc_bytes: p.gc.alloc_bytes,
        opcodes: p.total_opcodes(),
        calls: p.functions.iter().map(|f| f.calls).sum(),
        cycles: p.meta.duration_ticks,
    })
}

fn function_figures(p: &Profile, name: &str, per_call: bool) -> Result<Figures> {
    let ids = functions_named(p, name)?;
    let mut f = Figures::default();
    for id in ids {
        let func = &p.functions[id];
        f.allocs += func.alloc_count;
        f.alloc_bytes += func.alloc_bytes;
        f.opcodes += func.opcodes;
        f.calls += func.calls;
        f.cycles += func.incl_ticks;
    }
    if per_call {
        let c = f.calls.max(1);
        f.allocs = f.allocs.div_ceil(c);
        f.alloc_bytes = f.alloc_bytes.div_ceil(c);
        f.opcodes = f.opcodes.div_ceil(c);
        f.cycles = f.cycles.div_ceil(c);
    }
    Ok(f)
}

/// A line's figures; its cycles are its inclusive line time (the calls it
/// makes included, as a function budget's are), which only a line-time run
/// measures: `mpprof check` makes one for a script with such a budget.
fn line_figures(p: &Profile, spec: &str, wants_cycles: bool) -> Result<Figures> {
    let (file, line) = spec
        .rsplit_once(':')
        .and_then(|(f, l)| l.parse::<u32>().ok().map(|l| (f, l)))
        .with_context(|| format!("line budget `{spec}` must be FILE.py:LINE"))?;
    let fids: Vec<usize> = (0..p.files.len())
        .filter(|&i| p.files[i].path == file || p.files[i].path.ends_with(&format!("/{file}")))
        .collect();
    if fids.is_empty() {
        let near = nearest(
            file,
            p.files
                .iter()
                .map(|f| f.path.rsplit('/').next().unwrap_or("")),
        );
        bail!(
            "the profile has no file `{file}`; nearest: {}",
            near.join(", ")
        );
    }
    let l = fids
        .iter()
        .find_map(|&fid| p.line(fid, line))
        .with_context(|| {
            let lines: Vec<String> = p
                .lines
                .iter()
                .filter(|l| fids.contains(&l.file))
                .map(|l| l.line.to_string())
                .collect();
            format!(
                "line {line} of {file} never ran; lines that did: {}",
                nearest(&line.to_string(), lines.iter().map(String::as_str)).join(", ")
            )
        })?;
    let cycles = match l.incl_ticks {
        Some(t) => t,
        None if wants_cycles => bail!(
            "line budget `{spec}` sets cycles, but the profile has no time per line: it was made without line time (a baseline from before? update it with --update-baseline)"
        ),
        None => 0,
    };
    Ok(Figures {
        allocs: l.alloc_count,
        alloc_bytes: l.alloc_bytes,
        opcodes: l.opcodes,
        calls: 0,
        cycles,
    })
}

fn region_figures(p: &Profile, name: &str) -> Result<Figures> {
    let rs: Vec<_> = p.regions.iter().filter(|r| r.label == name).collect();
    if rs.is_empty() {
        let near = nearest(name, p.regions.iter().map(|r| r.label.as_str()));
        bail!(
            "the profile has no region `{name}`; its regions: {}",
            if near.is_empty() {
                "none".into()
            } else {
                near.join(", ")
            }
        );
    }
    let mut f = Figures::default();
    for r in rs {
        f.allocs += r.alloc_count;
        f.alloc_bytes += r.alloc_bytes;
        f.opcodes += r.opcodes;
        f.cycles += r.end.unwrap_or(r.start).saturating_sub(r.start);
        f.calls += 1;
    }
    Ok(f)
}

fn span_figures(p: &Profile, a: &str, z: &str) -> Result<Figures> {
    let find = |label: &str| {
        p.markers
            .iter()
            .find(|m| m.label == label)
            .with_context(|| {
                format!(
                    "the profile has no mark `{label}`; its marks: {}",
                    nearest(label, p.markers.iter().map(|m| m.label.as_str())).join(", ")
                )
            })
    };
    let (m0, m1) = (find(a)?, find(z)?);
    Ok(Figures {
        allocs: m1.allocs_before.saturating_sub(m0.allocs_before),
        alloc_bytes: m1.alloc_bytes_before.saturating_sub(m0.alloc_bytes_before),
        opcodes: m1.opcodes_before.saturating_sub(m0.opcodes_before),
        calls: 0,
        cycles: m1.at.saturating_sub(m0.at),
    })
}

/// Resolve a limit to the allowed maximum (or minimum for floors).
fn allowed(limit: &Limit, metric: &str, baseline: Option<u64>) -> Result<u64> {
    match limit {
        Limit::Number(n) => Ok(*n),
        Limit::Text(t) => {
            let t = t.trim();
            if let Some(exact) = t.strip_prefix('=') {
                return exact
                    .trim()
                    .parse::<u64>()
                    .with_context(|| format!("`{t}` is not an exact count"));
            }
            if let Some(rest) = t
                .strip_prefix('+')
                .or_else(|| t.strip_prefix('-').map(|_| t))
            {
                let base = baseline.with_context(|| {
                    format!("`{metric} = \"{t}\"` is relative: give --baseline DIR with a stored profile (make one with --update-baseline)")
                })?;
                let negative = t.starts_with('-');
                let rest = rest.trim_start_matches('-');
                let delta = if let Some(pct) = rest.strip_suffix('%') {
                    let v: f64 = pct
                        .trim()
                        .parse()
                        .with_context(|| format!("`{t}` is not a percentage"))?;
                    (base as f64 * v / 100.0).round() as u64
                } else {
                    rest.parse::<u64>()
                        .with_context(|| format!("`{t}` is not a number"))?
                };
                Ok(if negative {
                    base.saturating_sub(delta)
                } else {
                    base + delta
                })
            } else {
                parse_size(t).map_err(|e| anyhow::anyhow!("{metric}: {e}"))
            }
        }
    }
}

fn offenders(p: &Profile, b: &Budget) -> (Vec<String>, Option<(String, u32)>) {
    let fns: Option<Vec<FunctionId>> = b.function.as_ref().map(|n| p.find_functions(n));
    let mut lines: Vec<_> = p
        .allocating_lines_ranked()
        .into_iter()
        .filter(|l| fns.as_ref().is_none_or(|f| f.contains(&l.function)))
        .filter(|l| p.files.get(l.file).is_some_and(|f| !f.path.is_empty()))
        .collect();
    lines.truncate(5);
    let first = lines
        .first()
        .map(|l| (p.files[l.file].path.clone(), l.line));
    let text = lines
        .into_iter()
        .map(|l| {
            let file = p.files[l.file]
                .path
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            let cause = l.what_label().unwrap_or_default();
            let fix = l.fix.clone().unwrap_or_else(|| {
                l.causes
                    .first()
                    .map_or(String::new(), |c| c.cause.fix().to_string())
            });
            format!(
                "{file}:{} {} allocation(s), {cause}: `{}` — fix: {fix}",
                l.line,
                l.alloc_count,
                p.source_line(l.file, l.line).unwrap_or("").trim()
            )
        })
        .collect();
    (text, first)
}

/// The target a script's budgets run on: `target = "host"` (the default),
/// `"qemu"`, or `"device"` with `device` (and optionally `probe`, `chip`,
/// `elf`) naming the board.
fn script_target(s: &ScriptBudgets, heap: Option<u64>) -> Result<Target> {
    let kind = s.target.as_deref().unwrap_or("host");
    if kind != "device" && (s.device.is_some() || s.probe.is_some()) {
        bail!(
            "{}: `device` and `probe` need target = \"device\"",
            s.path.display()
        );
    }
    match kind {
        "host" => Ok(Target::Host {
            word: vm_instrumented::WordSize::Bits32,
            heap,
        }),
        "qemu" => Ok(Target::Qemu {
            transport: board_agent::qemu::QemuTransport::SharedRam,
            firmware: None,
        }),
        "device" => device_target(s),
        other => bail!(
            "{}: unknown target `{other}`: use host, qemu or device",
            s.path.display()
        ),
    }
}

fn device_target(s: &ScriptBudgets) -> Result<Target> {
    let Some(device) = &s.device else {
        bail!(
            "{}: target = \"device\" needs device = \"/dev/ttyACM0\" (or \"$VARIABLE\" naming an environment variable that holds the port)",
            s.path.display()
        );
    };
    let port = match device.strip_prefix('$') {
        Some(var) => std::env::var(var).map_err(|_| {
            anyhow::anyhow!(
                "{}: device = \"{device}\", but the environment variable {var} is not set: set it to the board's serial port (see `mpprof devices`)",
                s.path.display()
            )
        })?,
        None => device.clone(),
    };
    let probe = match &s.probe {
        None => None,
        Some(selector) => Some(ProbeTarget {
            selector: (!selector.is_empty()).then(|| selector.clone()),
            chip: s.chip.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: probe needs chip = \"NAME\" (probe-rs's names, e.g. RP2040)",
                    s.path.display()
                )
            })?,
            elf: s.elf.clone(),
            flash: None,
        }),
    };
    Ok(Target::Device {
        port,
        baud: 115_200,
        probe,
    })
}

/// Evaluate one script's budgets.
pub fn evaluate(
    p: &Profile,
    s: &ScriptBudgets,
    baseline: Option<&Profile>,
    deterministic_cycles: bool,
) -> Result<Vec<Verdict>> {
    let mut out = Vec::new();
    for b in &s.budget {
        let label = scope_label(b);
        let fig =
            figures(p, b).with_context(|| format!("{}: budget `{label}`", s.path.display()))?;
        let base = match baseline {
            Some(bp) => Some(figures(bp, b).with_context(|| {
                format!("{}: budget `{label}` in the baseline", s.path.display())
            })?),
            None => None,
        };
        for m in metrics(b, &fig, base.as_ref(), p, baseline) {
            let Some(limit) = m.limit else { continue };
            if m.name == "cycles" && !deterministic_cycles {
                bail!(
                    "{}: budget `{label}` sets cycles, but target `{}` measures time that varies run to run (wall time on the host, real cycles on a board): budget cycles only with target = \"qemu\" (deterministic), or budget opcodes instead",
                    s.path.display(),
                    s.target.as_deref().unwrap_or("host")
                );
            }
            let allow = allowed(limit, m.name, m.baseline)
                .with_context(|| format!("{}: budget `{label}`", s.path.display()))?;
            out.push(verdict(p, s, b, &label, &m, limit, allow));
        }
    }
    Ok(out)
}

/// One metric a budget may limit: its limit, what was measured, the
/// baseline's value, and whether the limit is a floor.
struct Metric<'a> {
    name: &'static str,
    limit: &'a Option<Limit>,
    measured: u64,
    baseline: Option<u64>,
    floor: bool,
}

fn metrics<'a>(
    b: &'a Budget,
    fig: &Figures,
    base: Option<&Figures>,
    p: &Profile,
    baseline: Option<&Profile>,
) -> [Metric<'a>; 8] {
    let m = |name, limit, measured, baseline, floor| Metric {
        name,
        limit,
        measured,
        baseline,
        floor,
    };
    let largest_free = |p: &Profile| p.gc.largest_free_after_last().unwrap_or(p.meta.heap_bytes);
    [
        m(
            "allocs",
            &b.allocs,
            fig.allocs,
            base.map(|f| f.allocs),
            false,
        ),
        m(
            "alloc_bytes",
            &b.alloc_bytes,
            fig.alloc_bytes,
            base.map(|f| f.alloc_bytes),
            false,
        ),
        m(
            "opcodes",
            &b.opcodes,
            fig.opcodes,
            base.map(|f| f.opcodes),
            false,
        ),
        m("calls", &b.calls, fig.calls, base.map(|f| f.calls), false),
        m(
            "cycles",
            &b.cycles,
            fig.cycles,
            base.map(|f| f.cycles),
            false,
        ),
        m(
            "peak_heap",
            &b.peak_heap,
            p.gc.peak_used_bytes,
            baseline.map(|b| b.gc.peak_used_bytes),
            false,
        ),
        m(
            "collections",
            &b.collections,
            p.gc.count(),
            baseline.map(|b| b.gc.count()),
            false,
        ),
        m(
            "largest_free",
            &b.largest_free,
            largest_free(p),
            baseline.map(largest_free),
            true,
        ),
    ]
}

fn verdict(
    p: &Profile,
    s: &ScriptBudgets,
    b: &Budget,
    label: &str,
    m: &Metric,
    limit: &Limit,
    allow: u64,
) -> Verdict {
    let exact = matches!(limit, Limit::Text(t) if t.trim().starts_with('='));
    let pass = if exact {
        m.measured == allow
    } else if m.floor {
        m.measured >= allow
    } else {
        m.measured <= allow
    };
    let (offenders, location) = if !pass && m.name.starts_with("alloc") {
        offenders(p, b)
    } else {
        (Vec::new(), None)
    };
    let bound = if m.floor { ">= " } else { "<= " };
    Verdict {
        script: s.path.display().to_string(),
        budget: label.to_string(),
        metric: m.name.into(),
        limit: match limit {
            _ if exact => format!("== {allow}"),
            Limit::Number(n) => format!("{bound}{n}"),
            Limit::Text(t) => format!("{bound}{t} ({allow})"),
        },
        measured: m.measured,
        allowed: allow,
        pass,
        offenders,
        location,
    }
}

fn baseline_path(dir: &Path, script: &Path) -> PathBuf {
    let name: String = script
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.mpprof.json"))
}

/// The results as JUnit XML.
pub fn junit(verdicts: &[Verdict]) -> String {
    use reports::format::escape_xml as esc;
    let failures = verdicts.iter().filter(|v| !v.pass).count();
    let mut o = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites><testsuite name=\"mpprof budgets\" tests=\"{}\" failures=\"{failures}\">\n",
        verdicts.len()
    );
    for v in verdicts {
        let _ = write!(
            o,
            "  <testcase classname=\"{}\" name=\"{}: {}\"",
            esc(&v.script),
            esc(&v.budget),
            esc(&v.metric)
        );
        if v.pass {
            o.push_str("/>\n");
        } else {
            let _ = writeln!(
                o,
                "><failure message=\"{} is {}, limit {}\">{}</failure></testcase>",
                esc(&v.metric),
                v.measured,
                esc(&v.limit),
                esc(&v.offenders.join("\n"))
            );
        }
    }
    o.push_str("</testsuite></testsuites>\n");
    o
}

/// Run every script of the budget file and evaluate its budgets.
pub fn run(cfg: &CheckOptions) -> Result<Vec<Verdict>> {
    let text = std::fs::read_to_string(&cfg.budgets).with_context(|| {
        format!(
            "cannot read the budget file {} (write one, or pass --budgets FILE)",
            cfg.budgets.display()
        )
    })?;
    let file = parse_budgets(&text, &cfg.budgets)?;
    if cfg.update_baseline && cfg.baseline.is_none() {
        bail!("--update-baseline needs --baseline DIR to write the profiles into");
    }
    let base_dir = cfg.budgets.parent().unwrap_or(Path::new("."));
    let mut verdicts = Vec::new();
    for s in &file.script {
        let heap = s
            .heap
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{}: heap: {e}", s.path.display()))?;
        let timeout = s
            .timeout
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{}: timeout: {e}", s.path.display()))?;
        let script = if s.path.is_absolute() {
            s.path.clone()
        } else {
            base_dir.join(&s.path)
        };
        let target = script_target(s, heap)?;
        let recording = Recording {
            args: s.args.clone(),
            timeout,
            // Cycles on a line are measured per line: the line-time build.
            line_time: s
                .budget
                .iter()
                .any(|b| b.line.is_some() && b.cycles.is_some()),
            ..Recording::new(target.clone(), script)
        };
        let profile = crate::capture::record(&recording, &mut Quiet { verbose: false })
            .with_context(|| format!("cannot profile {}", s.path.display()))?;
        let baseline = match (&cfg.baseline, cfg.update_baseline) {
            (Some(dir), false) => {
                let bp = baseline_path(dir, &s.path);
                if bp.exists() {
                    let b = Profile::from_json_file(&bp)
                        .with_context(|| format!("cannot load the baseline {}", bp.display()))?;
                    if b.meta.target != profile.meta.target {
                        bail!(
                            "the baseline {} is from target `{}`, this run is `{}`: update it with --update-baseline",
                            bp.display(),
                            b.meta.target,
                            profile.meta.target
                        );
                    }
                    let name = |p: &str| p.rsplit('/').next().unwrap_or("").to_string();
                    if name(&b.meta.script) != name(&profile.meta.script) {
                        bail!(
                            "the baseline {} is of {}, not {}",
                            bp.display(),
                            b.meta.script,
                            profile.meta.script
                        );
                    }
                    Some(b)
                } else {
                    None
                }
            }
            _ => None,
        };
        // Updating: this run is the new baseline, so relative limits compare
        // it with itself.
        let against = if cfg.update_baseline {
            Some(&profile)
        } else {
            baseline.as_ref()
        };
        verdicts.extend(evaluate(
            &profile,
            s,
            against,
            target.deterministic_cycles(),
        )?);
        if let (Some(dir), true) = (&cfg.baseline, cfg.update_baseline) {
            write_profile(&profile, &baseline_path(dir, &s.path))?;
        }
    }
    Ok(verdicts)
}

/// The results as a table, script by script.
pub fn render_text(verdicts: &[Verdict]) -> String {
    let mut o = String::new();
    let mut by_script: BTreeMap<&str, Vec<&Verdict>> = BTreeMap::new();
    for v in verdicts {
        by_script.entry(&v.script).or_default().push(v);
    }
    for (script, vs) in by_script {
        let _ = writeln!(o, "{script}");
        for v in vs {
            let _ = writeln!(
                o,
                "  {:<4} {:<32} {:<12} measured {:>10}  limit {}",
                if v.pass { "ok" } else { "FAIL" },
                reports::format::clip(&v.budget, 32),
                v.metric,
                v.measured,
                v.limit
            );
            for off in &v.offenders {
                let _ = writeln!(o, "         {off}");
            }
        }
    }
    let failed = verdicts.iter().filter(|v| !v.pass).count();
    let _ = writeln!(
        o,
        "\n{} budgets, {} passed, {} failed",
        verdicts.len(),
        verdicts.len() - failed,
        failed
    );
    o
}

/// GitHub Actions annotations for the failed budgets.
pub fn github_annotations(verdicts: &[Verdict]) -> String {
    let mut o = String::new();
    for v in verdicts.iter().filter(|v| !v.pass) {
        let loc = v
            .location
            .as_ref()
            .map(|(f, l)| format!(" file={f},line={l}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "::error{loc}::mpprof budget {} {}: measured {}, limit {}",
            v.budget, v.metric, v.measured, v.limit
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_files_name_the_place() {
        let e = parse_budgets(
            "[[script]]\npath = \"a.py\"\n[[script.budget]]\nallocs = = 0\n",
            Path::new("m.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 4"), "{e}");
        let e = parse_budgets(
            "[[script]]\npath = \"a.py\"\nspeed = 3\n",
            Path::new("m.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("speed"), "{e}");
        assert!(parse_budgets("", Path::new("m.toml")).is_err());
    }

    #[test]
    fn limits_absolute_sizes_and_relative() {
        assert_eq!(allowed(&Limit::Number(0), "allocs", None).unwrap(), 0);
        assert_eq!(
            allowed(&Limit::Text("8k".into()), "peak_heap", None).unwrap(),
            8192
        );
        assert_eq!(
            allowed(&Limit::Text("+2%".into()), "opcodes", Some(1000)).unwrap(),
            1020
        );
        assert_eq!(
            allowed(&Limit::Text("-10%".into()), "opcodes", Some(1000)).unwrap(),
            900
        );
        assert_eq!(
            allowed(&Limit::Text("+5".into()), "calls", Some(10)).unwrap(),
            15
        );
        assert_eq!(
            allowed(&Limit::Text("=1973".into()), "calls", None).unwrap(),
            1973
        );
        assert!(allowed(&Limit::Text("+2%".into()), "opcodes", None)
            .unwrap_err()
            .to_string()
            .contains("--baseline"));
    }

    #[test]
    fn nearest_names() {
        let names = ["blink", "Pin.on", "Pin.off", "<module>"];
        assert_eq!(nearest("blnk", names.iter().copied())[0], "blink");
    }
}
