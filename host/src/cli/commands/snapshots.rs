//! `cairn snapshots`: the repository's snapshots, oldest first, each with its sources.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use super::session;
use crate::cli::Cli;
use crate::cli::report::Report;
use crate::lifecycle::progress::human_bytes;
use crate::repo::snapshot::SourceSnapshot;

/// Serialised as the list itself.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Listed(Vec<ListedSnapshot>);

#[derive(Serialize)]
struct ListedSnapshot {
    id: String,
    time: chrono::DateTime<chrono::Utc>,
    hostname: String,
    tags: Vec<String>,
    sources: Vec<ListedSource>,
}

#[derive(Serialize)]
struct ListedSource {
    name: String,
    plugin: String,
    plugin_version: String,
    items: u64,
    bytes: u64,
    annotations: BTreeMap<String, String>,
}

pub async fn run(cli: &Cli) -> Result<Listed> {
    let repo = session(cli)?.open_repository().await?;
    let manifests = repo.readable_snapshots().await?;
    Ok(group(manifests.into_iter().map(|(_, m)| m)))
}

/// One entry a snapshot, from the per-source manifests it was stored as.
fn group(manifests: impl Iterator<Item = SourceSnapshot>) -> Listed {
    let mut out: Vec<ListedSnapshot> = Vec::new();
    for m in manifests {
        let source = ListedSource {
            name: m.source.clone(),
            plugin: m.plugin.clone(),
            plugin_version: m.plugin_version.clone(),
            items: m.items,
            bytes: m.bytes,
            annotations: m.annotations.clone(),
        };
        match out.iter_mut().find(|s| s.id == m.snapshot) {
            Some(existing) => existing.sources.push(source),
            None => out.push(ListedSnapshot {
                id: m.snapshot,
                time: m.time,
                hostname: m.hostname,
                tags: m.tags,
                sources: vec![source],
            }),
        }
    }
    out.sort_by_key(|s| s.time);
    Listed(out)
}

impl Report for Listed {
    fn text(&self) -> String {
        if self.0.is_empty() {
            return "no snapshots yet".into();
        }
        let mut lines = vec![format!(
            "{:<10} {:<20} {:<16} {:<12} sources",
            "id", "time (UTC)", "host", "tags"
        )];
        for s in &self.0 {
            let sources = s
                .sources
                .iter()
                .map(|x| format!("{} ({})", x.name, human_bytes(x.bytes)))
                .collect::<Vec<_>>()
                .join(", ");
            lines.push(format!(
                "{:<10} {:<20} {:<16} {:<12} {sources}",
                &s.id[..8],
                s.time.format("%Y-%m-%d %H:%M:%S"),
                s.hostname,
                s.tags.join(",")
            ));
        }
        lines.join("\n")
    }
}
