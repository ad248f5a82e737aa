//! `cairn restore`: a snapshot's sources, each to its target.

use anyhow::Result;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::progress::human_bytes;
use crate::lifecycle::restore::{self, RestoreReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A snapshot id (or a unique prefix of one), or `latest`.
    pub snapshot: String,
    /// Where to restore: a directory, a file, or a URL, depending on the source.
    #[arg(long)]
    pub target: String,
    /// Restore only this source, directly to the target.
    #[arg(long)]
    pub source: Option<String>,
    /// Write into a non-empty target directory, or over an existing file.
    #[arg(long)]
    pub force: bool,
    /// Database targets: drop the objects the snapshot holds first, where they exist.
    #[arg(long)]
    pub clean: bool,
    /// Database targets: allow restoring into the very database the snapshot was
    /// taken from (refused otherwise, whatever the URL says).
    #[arg(long)]
    pub into_live: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<RestoreReport> {
    let options = restore::RestoreOptions {
        snapshot: args.snapshot.clone(),
        target: args.target.clone(),
        source: args.source.clone(),
        force: args.force,
        clean: args.clean,
        into_live: args.into_live,
        progress: !cli.global.json,
    };
    restore::run(&session(cli)?, &options).await
}

impl Report for RestoreReport {
    fn text(&self) -> String {
        self.sources
            .iter()
            .map(|s| {
                format!(
                    "restored {} ({} items, {}) to {} in {:.1}s",
                    s.name,
                    s.items,
                    human_bytes(s.bytes),
                    s.target,
                    s.duration_secs
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
