//! `cairn prune`: condemn what no snapshot needs; delete what was condemned a grace ago.

use anyhow::Result;

use super::{grace_of, session};
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::progress::human_bytes;
use crate::repo::ops::prune::{self, PruneReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long condemned data waits before a prune deletes it. Running backups are
    /// respected whatever it is; the grace is the window for recovering forgotten data.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub grace: String,
    /// Report what would be condemned and deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<PruneReport> {
    let session = session(cli)?;
    let options = prune::PruneOptions {
        grace: grace_of(&args.grace)?,
        dry_run: args.dry_run,
    };
    let repo = session.open_repository().await?;
    Ok(prune::run(&repo, &options).await?)
}

impl Report for PruneReport {
    fn text(&self) -> String {
        let mut lines = Vec::new();
        let prefix = if self.dry_run { "would have " } else { "" };
        lines.push(format!(
            "{prefix}deleted {} packs, freeing {}",
            self.packs_deleted,
            human_bytes(self.bytes_freed),
        ));
        if self.packs_kept > 0 {
            lines.push(format!(
                "kept {} condemned packs: snapshots written since need them",
                self.packs_kept
            ));
        }
        if self.packs_condemned > 0 {
            lines.push(format!(
                "{prefix}condemned {} packs ({}), {} of them repacked ({} of live data copied): a prune after the grace period deletes them",
                self.packs_condemned,
                human_bytes(self.bytes_condemned),
                self.packs_repacked,
                human_bytes(self.bytes_repacked)
            ));
        }
        if self.packs_waiting > 0 {
            lines.push(format!(
                "{} packs condemned earlier are still within the grace period",
                self.packs_waiting
            ));
        }
        if self.packs_waiting_for_backups > 0 {
            lines.push(format!(
                "{} condemned packs wait for backups that were running when they were condemned: {}",
                self.packs_waiting_for_backups,
                self.blocking_backups.join(", ")
            ));
        }
        if self.chains_deleted > 0 {
            lines.push(format!(
                "{prefix}deleted {} change chains whose snapshot was forgotten ({} objects)",
                self.chains_deleted, self.change_objects_deleted
            ));
        }
        for writer in &self.writers_evicted {
            lines.push(format!(
                "{writer}: evicted a backup silent for three heartbeats (on another machine); it cannot commit, and its data goes with later prunes"
            ));
        }
        lines.join("\n")
    }
}
