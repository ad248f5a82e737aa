//! Run records: every backup and drill leaves one in the repository (`runs/<time>-<id>`,
//! sealed), so `cairn status` shows from any host when each source last succeeded, failed
//! and was drilled.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::repo::Repository;
use crate::repo::meta::{self, MetaKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Backup,
    Drill,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub kind: RunKind,
    pub time: DateTime<Utc>,
    pub hostname: String,
    /// The snapshot the run wrote (backup) or restored (drill).
    pub snapshot: String,
    pub sources: Vec<SourceOutcome>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceOutcome {
    pub source: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the run measured: bytes, durations, RTO and RPO for drills.
    #[serde(default)]
    pub details: serde_json::Value,
}

/// Stores a run record. Failing to record is logged, never fatal: the run itself counts.
pub async fn record(repo: &Repository, run: &RunRecord) {
    let sealed = meta::seal(repo.keys(), MetaKind::Run, run);
    let name = format!(
        "runs/{}-{}",
        run.time.format("%Y%m%dT%H%M%S"),
        &crate::repo::snapshot::new_snapshot_id()[..8]
    );
    if let Err(e) = repo.backend().put(&name, sealed.into(), true).await {
        tracing::warn!("could not record this run in the repository: {e}");
    }
}

/// Every run record, oldest first.
pub async fn load(repo: &Repository) -> anyhow::Result<Vec<RunRecord>> {
    let mut names: Vec<String> = repo
        .backend()
        .list("runs/")
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    let mut runs = Vec::new();
    for name in names {
        let sealed = repo.backend().get(&name).await?;
        match meta::open::<RunRecord>(repo.keys(), MetaKind::Run, &sealed) {
            Ok(run) => runs.push(run),
            Err(e) => tracing::warn!("skipping unreadable run record {name}: {e}"),
        }
    }
    runs.sort_by_key(|r| r.time);
    Ok(runs)
}
