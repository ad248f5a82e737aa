//! `cairn ls`: the items of a snapshot, per source, in the order they were stored.

use anyhow::{Context, Result};
use serde::Serialize;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::repo::read::{ChunkReader, read_items};
use crate::repo::tree::{ItemKind, ItemRecord};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A snapshot id (or a prefix of one), or `latest`.
    pub snapshot: String,
    /// Only this source's items.
    #[arg(long)]
    pub source: Option<String>,
}

/// Serialised as the list itself.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Listing(Vec<ListedItem>);

#[derive(Serialize)]
struct ListedItem {
    source: String,
    path: String,
    kind: ItemKind,
    size: u64,
    mode: u32,
    mtime: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    /// Stored as read although it changed during every read (see the user guide).
    changed_while_read: bool,
}

pub async fn run(cli: &Cli, args: &Args) -> Result<Listing> {
    let repo = session(cli)?
        .open_repository()
        .await?
        .load_readable_index()
        .await?;
    let manifests = repo
        .find_snapshot(&args.snapshot, args.source.as_deref())
        .await?;
    let mut reader = ChunkReader::new(&repo);
    let mut listed = Vec::new();
    for (name, manifest) in manifests {
        let items = read_items(&mut reader, &manifest)
            .await
            .with_context(|| format!("reading the items of {name}"))?;
        listed.extend(
            items
                .into_iter()
                .map(|item| listed_item(&manifest.source, item)),
        );
    }
    Ok(Listing(listed))
}

fn listed_item(source: &str, item: ItemRecord) -> ListedItem {
    ListedItem {
        source: source.to_string(),
        mtime: (item.mtime_ns != 0).then(|| chrono::DateTime::from_timestamp_nanos(item.mtime_ns)),
        path: item.path,
        kind: item.kind,
        size: item.size,
        mode: item.mode,
        target: item.target,
        changed_while_read: item.changed_while_read,
    }
}

impl Report for Listing {
    fn text(&self) -> String {
        let mut lines = Vec::with_capacity(self.0.len());
        for item in &self.0 {
            let kind = match item.kind {
                ItemKind::Dir => 'd',
                ItemKind::File => '-',
                ItemKind::Symlink => 'l',
                ItemKind::Data => 'D',
            };
            let mtime = item
                .mtime
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into());
            let path = if item.path.is_empty() {
                "."
            } else {
                &item.path
            };
            let mut line = format!(
                "{kind}{:04o} {:>12} {mtime}  {}/{path}",
                item.mode & 0o7777,
                item.size,
                item.source
            );
            if let Some(target) = &item.target {
                line.push_str(&format!(" -> {target}"));
            }
            if item.changed_while_read {
                line.push_str("  [changed while read]");
            }
            lines.push(line);
        }
        lines.join("\n")
    }
}
