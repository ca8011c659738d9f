//! `mpprof check`: its options, and how its results are shown.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::Outcome;
use crate::check::{self, CheckOptions};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The budget file.
    #[arg(long, default_value = "mpprof.toml")]
    pub budgets: PathBuf,
    /// Compare relative budgets ("+2%") with the profiles stored here.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Write this run's profiles as the new baseline (into --baseline).
    #[arg(long)]
    pub update_baseline: bool,
    /// Also write JUnit XML (for CI systems that display test results).
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

impl CheckArgs {
    pub fn options(&self) -> CheckOptions {
        CheckOptions {
            budgets: self.budgets.clone(),
            baseline: self.baseline.clone(),
            update_baseline: self.update_baseline,
        }
    }
}

pub fn check(args: CheckArgs) -> Result<Outcome> {
    let verdicts = check::run(&args.options())?;
    if let Some(j) = &args.junit {
        crate::output::write_atomically(
            j,
            |w| Ok(w.write_all(check::junit(&verdicts).as_bytes())?),
        )
        .with_context(|| format!("cannot write {}", j.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdicts)?);
    } else {
        print!("{}", check::render_text(&verdicts));
    }
    if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
        print!("{}", check::github_annotations(&verdicts));
    }
    Ok(if verdicts.iter().all(|v| v.pass) {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
