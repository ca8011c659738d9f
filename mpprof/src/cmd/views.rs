//! `mpprof report`, `flamegraph`, `diff`, `export` and `licenses`: views of
//! saved profiles, each a thin layer over a `reports` renderer.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use reports::flamegraph::Weight;

use super::options::{parse_weight, WeightArg};
use crate::output::{load_profile, write_atomically, write_flamegraph};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A profile written by `mpprof run`.
    pub profile: PathBuf,
    /// Only the lines of this function (name or qualified name).
    #[arg(long)]
    pub function: Option<String>,
    /// Only the N hottest lines per file.
    #[arg(long)]
    pub top: Option<usize>,
    /// Print only the annotated source, not the summary.
    #[arg(long)]
    pub source_only: bool,
    /// Write a self-contained HTML report (summary, source, flame graphs) instead.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FlamegraphArgs {
    pub profile: PathBuf,
    /// The SVG to write.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub weight: WeightArg,
    /// Draw the inverted (icicle) view.
    #[arg(long)]
    pub icicle: bool,
    /// End each stack in line frames (`function:line`, as py-spy --lines),
    /// from a profile made with `mpprof run --line-time` (cycles weight).
    #[arg(long)]
    pub lines: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The profile before the change.
    pub a: PathBuf,
    /// The profile after it.
    pub b: PathBuf,
    /// Also write a differential flame graph (red: B costs more).
    #[arg(long)]
    pub flamegraph: Option<PathBuf>,
    /// The differential flame graph's weight.
    #[arg(long, value_parser = parse_weight, default_value = "opcodes")]
    pub weight: Weight,
    #[arg(long, default_value_t = 15)]
    pub top: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// Folded stacks (`a;b;c N`), for flamegraph tools.
    Collapsed,
    /// speedscope's JSON.
    Speedscope,
    /// Chrome Trace Event JSON (Perfetto, chrome://tracing).
    ChromeTrace,
    /// Gzipped pprof protobuf (`go tool pprof`).
    Pprof,
    /// The Firefox Profiler's processed profile (open it there with
    /// "Load a profile from file"): time and allocated bytes as call trees,
    /// collections, marks and regions as markers, the heap as a memory track.
    Firefox,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub profile: PathBuf,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    #[arg(short, long)]
    pub output: PathBuf,
    /// For collapsed stacks.
    #[command(flatten)]
    pub weight: WeightArg,
    /// pprof: a label on every sample, KEY=VALUE (repeatable), beside the
    /// profile's own target, micropython_version and script; e.g.
    /// --label board=pico --label commit=abc123.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

/// `KEY=VALUE`, the key as continuous profilers accept label names
/// (letters, digits and `_`, not starting with a digit).
fn parse_label(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let key_ok = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !key_ok {
        return Err(format!(
            "label key `{k}`: letters, digits and _ only, not starting with a digit"
        ));
    }
    if v.is_empty() {
        return Err(format!("label `{k}` has no value"));
    }
    Ok((k.to_string(), v.to_string()))
}

pub fn report(args: ReportArgs) -> Result<()> {
    let p = load_profile(&args.profile)?;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if let Some(name) = &args.function {
        if p.find_functions(name).is_empty() {
            let mut names: Vec<&str> = p.functions.iter().map(|f| f.qualname.as_str()).collect();
            names.sort();
            names.dedup();
            anyhow::bail!(
                "no function named {name} in the profile; its functions are: {}",
                names.join(", ")
            );
        }
    }
    if let Some(out) = &args.html {
        let page = reports::html::render_html(&p);
        write_atomically(out, |w| Ok(w.write_all(page.as_bytes())?))?;
        eprintln!("mpprof: HTML report written to {}", out.display());
        return Ok(());
    }
    if !args.source_only {
        print!(
            "{}",
            reports::summary::render(
                &p,
                &reports::summary::SummaryOptions {
                    top: args.top.unwrap_or(10),
                    color
                }
            )
        );
    }
    print!(
        "{}",
        reports::annotate::render(
            &p,
            &reports::annotate::AnnotateOptions {
                function: args.function,
                top: args.top,
                color
            }
        )
    );
    Ok(())
}

pub fn flamegraph(args: FlamegraphArgs) -> Result<()> {
    let p = load_profile(&args.profile)?;
    write_flamegraph(
        &p,
        &args.output,
        args.weight.weight,
        args.icicle,
        args.lines,
    )?;
    eprintln!("mpprof: flame graph written to {}", args.output.display());
    Ok(())
}

pub fn diff(args: DiffArgs) -> Result<()> {
    let a = load_profile(&args.a)?;
    let b = load_profile(&args.b)?;
    print!("{}", reports::diff::render(&a, &b, args.top));
    if let Some(path) = &args.flamegraph {
        write_atomically(path, |w| {
            reports::flamegraph::write_diff_svg(&a, &b, args.weight, w)?;
            Ok(())
        })?;
        eprintln!(
            "mpprof: differential flame graph written to {}",
            path.display()
        );
    }
    Ok(())
}

pub fn export(args: ExportArgs) -> Result<()> {
    let p = load_profile(&args.profile)?;
    if !args.labels.is_empty() && !matches!(args.format, ExportFormat::Pprof) {
        anyhow::bail!("--label is for --format pprof");
    }
    write_atomically(&args.output, |w| {
        match args.format {
            ExportFormat::Collapsed => reports::export::collapsed(&p, args.weight.weight, w)?,
            ExportFormat::Speedscope => serde_json::to_writer(w, &reports::export::speedscope(&p))?,
            ExportFormat::ChromeTrace => {
                serde_json::to_writer(w, &reports::export::chrome_trace(&p))?
            }
            ExportFormat::Pprof => reports::export::pprof_with_labels(&p, &args.labels, w)?,
            ExportFormat::Firefox => serde_json::to_writer(w, &reports::firefox::firefox(&p))?,
        }
        Ok(())
    })?;
    eprintln!("mpprof: written {}", args.output.display());
    Ok(())
}

/// The licence texts of the copyleft crates in this binary.
pub fn licenses() {
    println!("mpprof is MIT-licensed. It includes these crates under their own licences:\n");
    println!(
        "==== inferno (CDDL-1.0) ====\n{}",
        include_str!("../../../LICENSES/inferno-CDDL-1.0.txt")
    );
    println!(
        "==== serialport (MPL-2.0) ====\n{}",
        include_str!("../../../LICENSES/serialport-MPL-2.0.txt")
    );
}
