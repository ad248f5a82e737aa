//! `cairn backup`: one snapshot of every configured source.

use anyhow::Result;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::backup::{self, BackupReport};
use crate::lifecycle::progress::human_bytes;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<BackupReport> {
    let options = backup::BackupOptions {
        tags: args.tags.clone(),
        progress: !cli.global.json,
    };
    backup::run(&session(cli)?, &options).await
}

impl Report for BackupReport {
    fn ok(&self) -> bool {
        BackupReport::ok(self)
    }

    fn text(&self) -> String {
        let mut lines = vec![format!(
            "snapshot {} at {}",
            &self.snapshot[..8],
            self.time.format("%Y-%m-%d %H:%M:%S UTC")
        )];
        for s in &self.sources {
            match &s.error {
                None => {
                    lines.push(format!(
                        "  {:<16} ok      {} items, {} ({} new) in {:.1}s",
                        s.name,
                        s.counts.items,
                        human_bytes(s.counts.bytes),
                        human_bytes(s.bytes_new),
                        s.duration_secs
                    ));
                    if s.counts.files_changed_while_read > 0 {
                        lines.push(format!(
                            "  {:<16} warning {} file(s) changed during every read: stored as last read and flagged (`cairn ls` shows them)",
                            "", s.counts.files_changed_while_read
                        ));
                    }
                }
                Some(e) => lines.push(format!("  {:<16} FAILED  {e}", s.name)),
            }
        }
        lines.push(format!(
            "stored {} in {:.1}s",
            human_bytes(self.bytes_stored),
            self.duration_secs
        ));
        if let Some(retention) = &self.retention {
            for s in &retention.sources {
                match &s.refused {
                    Some(refused) => lines.push(format!("retention: {refused}")),
                    None if !s.removed.is_empty() => lines.push(format!(
                        "retention: removed {} snapshot(s) of {} ({})",
                        s.removed.len(),
                        s.source,
                        s.policy
                    )),
                    None => {}
                }
            }
        }
        if !self.ok() {
            lines.push("some sources failed: their previous snapshots are untouched".into());
        }
        lines.join("\n")
    }
}
