//! `mpprof flamegraph`, `mpprof diff`, `mpprof export` and `mpprof licenses`:
//! views of saved profiles, each a thin layer over a `reports` renderer.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use reports::flamegraph::{FlameOptions, Weight};

use crate::report_cmd::load_profile;

#[derive(Debug, Args)]
pub struct FlamegraphConfig {
    pub profile: PathBuf,
    /// The SVG to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// cycles, opcodes, alloc-bytes or alloc-count.
    #[arg(long, default_value = "cycles")]
    pub weight: String,
    /// Draw the inverted (icicle) view.
    #[arg(long)]
    pub icicle: bool,
}

#[derive(Debug, Args)]
pub struct DiffConfig {
    /// The profile before the change.
    pub a: PathBuf,
    /// The profile after it.
    pub b: PathBuf,
    /// Also write a differential flame graph (red: B costs more).
    #[arg(long)]
    pub flamegraph: Option<PathBuf>,
    #[arg(long, default_value = "opcodes")]
    pub weight: String,
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
}

#[derive(Debug, Args)]
pub struct ExportConfig {
    pub profile: PathBuf,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    #[arg(short, long)]
    pub output: PathBuf,
    /// For collapsed stacks: cycles, opcodes, alloc-bytes or alloc-count.
    #[arg(long, default_value = "cycles")]
    pub weight: String,
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    Ok(std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
    ))
}

/// Write to `path` through a temporary file, so a failure leaves no broken file.
fn write_atomically(path: &Path, f: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("partial");
    let result = (|| {
        let mut w = create(&tmp)?;
        f(&mut w)?;
        w.flush()?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

pub fn write_flamegraph(
    p: &mpprof_profile::Profile,
    path: &Path,
    weight: &str,
    icicle: bool,
) -> Result<()> {
    let weight = Weight::parse(weight)?;
    write_atomically(path, |w| {
        reports::flamegraph::write_svg(
            p,
            &FlameOptions {
                weight,
                icicle,
                title: None,
            },
            w,
        )?;
        Ok(())
    })
}

pub fn flamegraph(cfg: FlamegraphConfig) -> Result<()> {
    let p = load_profile(&cfg.profile)?;
    write_flamegraph(&p, &cfg.output, &cfg.weight, cfg.icicle)?;
    eprintln!("mpprof: flame graph written to {}", cfg.output.display());
    Ok(())
}

pub fn diff(cfg: DiffConfig) -> Result<()> {
    let a = load_profile(&cfg.a)?;
    let b = load_profile(&cfg.b)?;
    print!("{}", reports::diff::render(&a, &b, cfg.top));
    if let Some(path) = &cfg.flamegraph {
        let weight = Weight::parse(&cfg.weight)?;
        write_atomically(path, |w| {
            reports::flamegraph::write_diff_svg(&a, &b, weight, w)?;
            Ok(())
        })?;
        eprintln!(
            "mpprof: differential flame graph written to {}",
            path.display()
        );
    }
    Ok(())
}

pub fn export(cfg: ExportConfig) -> Result<()> {
    let p = load_profile(&cfg.profile)?;
    write_atomically(&cfg.output, |w| {
        match cfg.format {
            ExportFormat::Collapsed => {
                reports::export::collapsed(&p, Weight::parse(&cfg.weight)?, w)?
            }
            ExportFormat::Speedscope => serde_json::to_writer(w, &reports::export::speedscope(&p))?,
            ExportFormat::ChromeTrace => {
                serde_json::to_writer(w, &reports::export::chrome_trace(&p))?
            }
            ExportFormat::Pprof => reports::export::pprof(&p, w)?,
        }
        Ok(())
    })?;
    eprintln!("mpprof: written {}", cfg.output.display());
    Ok(())
}

/// The licence texts of the copyleft crates in this binary.
pub fn licenses() {
    println!("mpprof is MIT-licensed. It includes these crates under their own licences:\n");
    println!(
        "==== inferno (CDDL-1.0) ====\n{}",
        include_str!("../../LICENSES/inferno-CDDL-1.0.txt")
    );
    println!(
        "==== serialport (MPL-2.0) ====\n{}",
        include_str!("../../LICENSES/serialport-MPL-2.0.txt")
    );
}
