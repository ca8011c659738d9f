//! `mpprof report PROFILE`: the summary and the annotated source of a saved profile.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mpprof_profile::Profile;

#[derive(Debug, Args)]
pub struct ReportConfig {
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

pub fn load_profile(path: &std::path::Path) -> Result<Profile> {
    Profile::from_json_file(path)
        .with_context(|| format!("cannot load the profile {}", path.display()))
}

pub fn report(cfg: ReportConfig) -> Result<()> {
    let p = load_profile(&cfg.profile)?;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if let Some(name) = &cfg.function {
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
    if let Some(out) = &cfg.html {
        let page = reports::html::render_html(&p);
        let tmp = out.with_extension("html.partial");
        std::fs::write(&tmp, page).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("mpprof: HTML report written to {}", out.display());
        return Ok(());
    }
    if !cfg.source_only {
        print!(
            "{}",
            reports::summary::render(
                &p,
                &reports::summary::SummaryOptions {
                    top: cfg.top.unwrap_or(10),
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
                function: cfg.function,
                top: cfg.top,
                color
            }
        )
    );
    Ok(())
}
