//! `cairn check`: the repository's structure and, with `--read-data`, its stored bytes.

use anyhow::Result;

use super::{session, usage_error};
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::check::{self, CheckReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Download and verify every pack.
    #[arg(long)]
    pub read_data: bool,
    /// Download and verify a random N% of the packs (implies --read-data).
    #[arg(long, value_name = "N%")]
    pub read_data_subset: Option<String>,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<CheckReport> {
    let session = session(cli)?;
    let subset = match &args.read_data_subset {
        Some(text) => parse_percent(text)?,
        None => 100.0,
    };
    let options = check::CheckOptions {
        read_data: args.read_data || args.read_data_subset.is_some(),
        subset_percent: subset,
        progress: !cli.global.json,
    };
    check::run(&session, &options).await
}

/// `--read-data-subset`: a share of the packs, `10%` or `10`.
fn parse_percent(text: &str) -> Result<f64> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(usage_error(
            "--read-data-subset",
            format!("`{text}` is not a percentage between 0 and 100, like 10%"),
        )),
    }
}

impl Report for CheckReport {
    fn ok(&self) -> bool {
        CheckReport::ok(self)
    }

    fn text(&self) -> String {
        let mut lines = Vec::new();
        for w in &self.warnings {
            lines.push(format!("warning: {}: {}", w.object, w.message));
        }
        for e in &self.errors {
            lines.push(format!("error: {}: {}", e.object, e.message));
        }
        lines.push(format!(
            "{} index files, {} packs ({} read), {} chunks, {} snapshot manifests: {}",
            self.index_files,
            self.packs,
            self.packs_read,
            self.chunks,
            self.snapshots,
            if self.ok() {
                "no errors".to_string()
            } else {
                format!("{} errors", self.errors.len())
            }
        ));
        lines.join("\n")
    }
}
