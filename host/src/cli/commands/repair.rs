//! `cairn repair packs|index|snapshots`: make a damaged repository readable again, saving
//! what is intact and naming what is lost (`cairn_repo::ops::repair`).

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::progress::Progress;
use crate::repo::ops::repair::{self, IndexRepair, PackRepair, SnapshotRepair};

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Read every pack; copy the chunks of damaged ones that still open into new packs,
    /// then drop the damaged packs. Run first.
    Packs(Args),
    /// Rebuild the index from the packs: replace damaged index files, adopt packs no index
    /// names, drop packs storage lost.
    Index(Args),
    /// Rewrite snapshots that need lost data without the items that lost it (tagged
    /// `repaired`); remove damaged manifests and those left with nothing. Run last.
    Snapshots(Args),
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Report what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum RepairReport {
    Packs(PackRepair),
    Index(IndexRepair),
    Snapshots(SnapshotRepair),
}

pub async fn run(cli: &Cli, command: &RepairCommand) -> Result<RepairReport> {
    let repo = session(cli)?.open_repository().await?;
    Ok(match command {
        RepairCommand::Packs(args) => {
            let progress = Progress::new(!cli.global.json);
            let repaired = repair::packs(&repo, args.dry_run, &|phase| progress.set(phase)).await;
            progress.finish();
            RepairReport::Packs(repaired?)
        }
        RepairCommand::Index(args) => {
            RepairReport::Index(repair::index(&repo, args.dry_run).await?)
        }
        RepairCommand::Snapshots(args) => {
            RepairReport::Snapshots(repair::snapshots(&repo, args.dry_run).await?)
        }
    })
}

/// How many lost paths a snapshot's text lists before it says how many more (`--json`
/// has them all).
const PATHS_SHOWN: usize = 20;

impl Report for RepairReport {
    fn text(&self) -> String {
        let mut lines = Vec::new();
        let (will, would) = match self.dry_run() {
            true => ("would be ", "would have "),
            false => ("", ""),
        };
        match self {
            RepairReport::Packs(r) => {
                for d in &r.damaged {
                    lines.push(format!(
                        "{}: {}; {would}salvaged {} chunk(s), {} lost; {will}removed",
                        d.pack, d.reason, d.chunks_salvaged, d.chunks_lost
                    ));
                }
                lines.push(format!(
                    "{} packs read, {} damaged",
                    r.packs_read,
                    r.damaged.len()
                ));
                if r.chunks_lost() > 0 {
                    lines.push(
                        "next: `cairn repair snapshots` drops the items that need the lost chunks"
                            .into(),
                    );
                }
            }
            RepairReport::Index(r) => {
                for u in &r.index_files_removed {
                    lines.push(format!(
                        "{}: {}; {will}replaced by an index read from the packs",
                        u.object, u.reason
                    ));
                }
                for p in &r.packs_adopted {
                    lines.push(format!("{p}: named by no index; {will}adopted"));
                }
                for p in &r.packs_missing {
                    lines.push(format!(
                        "{p}: indexed, but storage does not have it; {will}dropped from the index"
                    ));
                }
                for u in &r.packs_unreadable {
                    lines.push(format!(
                        "{}: named by no index and unreadable ({}); `cairn repair packs` removes it",
                        u.object, u.reason
                    ));
                }
                lines.push(format!(
                    "{} index file(s) {will}replaced, {} pack(s) {will}adopted, {} missing pack(s) {will}dropped",
                    r.index_files_removed.len(),
                    r.packs_adopted.len(),
                    r.packs_missing.len()
                ));
                if !r.packs_missing.is_empty() {
                    lines.push(
                        "next: `cairn repair snapshots` drops the items that need the missing packs"
                            .into(),
                    );
                }
            }
            RepairReport::Snapshots(r) => {
                for s in &r.repaired {
                    let what = match (&s.snapshot, &s.source) {
                        (Some(id), Some(source)) => format!("snapshot {id} ({source})"),
                        _ => s.object.clone(),
                    };
                    let outcome = match (&s.rewritten_as, s.removed) {
                        (_, true) => format!("{will}removed"),
                        (Some(name), false) => format!("rewritten as {name}, tagged `repaired`"),
                        (None, false) => format!(
                            "would be rewritten with its {} intact item(s), tagged `repaired`",
                            s.items_kept
                        ),
                    };
                    lines.push(format!("{what}: {}; {outcome}", s.reason));
                    for path in s.items_lost.iter().take(PATHS_SHOWN) {
                        lines.push(format!("  lost: {path}"));
                    }
                    if s.items_lost.len() > PATHS_SHOWN {
                        lines.push(format!(
                            "  ... and {} more (`--json` lists them all)",
                            s.items_lost.len() - PATHS_SHOWN
                        ));
                    }
                }
                lines.push(format!(
                    "{} snapshot manifest(s) read, {} {would}repaired",
                    r.snapshots_checked,
                    r.repaired.len()
                ));
            }
        }
        lines.join("\n")
    }
}

impl RepairReport {
    fn dry_run(&self) -> bool {
        match self {
            RepairReport::Packs(r) => r.dry_run,
            RepairReport::Index(r) => r.dry_run,
            RepairReport::Snapshots(r) => r.dry_run,
        }
    }
}
