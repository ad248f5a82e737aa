//! `cairn restore`: a snapshot's sources, each to its target.

use anyhow::Result;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::progress::human_bytes;
use crate::lifecycle::restore::{self, RestoreReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A snapshot id (or a unique prefix of one), or `latest`. Leave it out with --at.
    #[arg(required_unless_present = "at", conflicts_with = "at")]
    pub snapshot: Option<String>,
    /// Restore the source as it was at TIME (RFC 3339, or `latest` for the newest point
    /// stored), from its continuous replication: the newest chain's snapshot at or
    /// before TIME and the changes after it up to TIME. Needs --source.
    #[arg(long, value_name = "TIME", requires = "source")]
    pub at: Option<String>,
    /// Where to restore: a directory, a file, or a URL, depending on the source.
    #[arg(long)]
    pub target: String,
    /// Restore only this source, directly to the target.
    #[arg(long)]
    pub source: Option<String>,
    /// Write into a non-empty target directory, or over an existing file.
    #[arg(long)]
    pub force: bool,
    /// Carry on an interrupted restore: like --force, but files already at the target
    /// with the snapshot's contents (each hashed against the snapshot) are kept, not
    /// read from the repository again.
    #[arg(long, conflicts_with = "at")]
    pub resume: bool,
    /// Database targets: drop the objects the snapshot holds first, where they exist.
    #[arg(long)]
    pub clean: bool,
    /// Database targets: allow restoring into the very database the snapshot was
    /// taken from (refused otherwise, whatever the URL says).
    #[arg(long)]
    pub into_live: bool,
    /// Database targets: leave every object to the restoring user instead of giving it to
    /// its owner (the roles need not exist).
    #[arg(long)]
    pub no_owner: bool,
    /// Database targets: restore no privileges (GRANT, REVOKE, default privileges).
    #[arg(long)]
    pub no_privileges: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<RestoreReport> {
    let options = restore::RestoreOptions {
        snapshot: args.snapshot.clone().unwrap_or_default(),
        target: args.target.clone(),
        source: args.source.clone(),
        force: args.force,
        resume: args.resume,
        clean: args.clean,
        into_live: args.into_live,
        no_owner: args.no_owner,
        no_privileges: args.no_privileges,
        progress: !cli.global.json,
    };
    match &args.at {
        Some(at) => restore::run_at(&session(cli)?, &options, at).await,
        None => restore::run(&session(cli)?, &options).await,
    }
}

impl Report for RestoreReport {
    fn text(&self) -> String {
        let mut lines: Vec<String> = self
            .sources
            .iter()
            .map(|s| {
                let kept = match s.kept_files {
                    0 => String::new(),
                    n => format!(
                        "; {n} files, {}, were already there",
                        human_bytes(s.kept_bytes)
                    ),
                };
                format!(
                    "restored {} ({} items, {}{kept}) to {} in {:.1}s",
                    s.name,
                    s.items,
                    human_bytes(s.bytes),
                    s.target,
                    s.duration_secs
                )
            })
            .collect();
        if let Some(at) = &self.at {
            lines.push(format!(
                "  as of {} (asked for {}): snapshot {} and {} segments of changes",
                at.reached.format("%Y-%m-%d %H:%M:%S UTC"),
                at.requested.format("%Y-%m-%d %H:%M:%S UTC"),
                &self.snapshot[..8.min(self.snapshot.len())],
                at.segments
            ));
        }
        lines.join("\n")
    }
}
