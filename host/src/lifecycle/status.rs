//! `cairn status`: per source, the newest snapshot, the last backup run, the last success,
//! the last failure with its reason, and the last drill with its result, read from the
//! repository's snapshots and run records.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Session;
use super::history::{self, RunKind};

#[derive(Debug, Default, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub newest_snapshot: Option<DateTime<Utc>>,
    pub snapshots: usize,
    pub last_backup: Option<Event>,
    pub last_success: Option<Event>,
    pub last_failure: Option<Event>,
    pub last_drill: Option<Event>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub time: DateTime<Utc>,
    pub ok: bool,
    pub hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub details: serde_json::Value,
}

pub async fn run(session: &Session) -> Result<Vec<SourceStatus>> {
    let repo = session.open_repository().await?;
    let mut status: BTreeMap<String, SourceStatus> = BTreeMap::new();
    for source in &session.config.sources {
        status
            .entry(source.name().to_string())
            .or_insert_with(|| new_status(source.name()));
    }
    for (_, manifest) in repo.readable_snapshots().await? {
        let s = status
            .entry(manifest.source.clone())
            .or_insert_with(|| new_status(&manifest.source));
        s.snapshots += 1;
        s.newest_snapshot = s.newest_snapshot.max(Some(manifest.time));
    }
    for run in history::load(&repo).await? {
        for outcome in &run.sources {
            let s = status
                .entry(outcome.source.clone())
                .or_insert_with(|| new_status(&outcome.source));
            let event = Event {
                time: run.time,
                ok: outcome.ok,
                hostname: run.hostname.clone(),
                error: outcome.error.clone(),
                details: outcome.details.clone(),
            };
            match run.kind {
                RunKind::Drill => s.last_drill = Some(event),
                RunKind::Backup => {
                    if event.ok {
                        s.last_success = Some(event.clone());
                    } else {
                        s.last_failure = Some(event.clone());
                    }
                    s.last_backup = Some(event);
                }
            }
        }
    }
    Ok(status.into_values().collect())
}

fn new_status(source: &str) -> SourceStatus {
    SourceStatus {
        source: source.to_string(),
        ..Default::default()
    }
}
