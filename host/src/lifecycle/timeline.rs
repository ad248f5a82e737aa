//! `cairn timeline`: the points in time each source can be restored to. Each chain covers
//! the time from its base snapshot to its last segment; between two chains is a gap, and
//! the later chain says why it began (the first chain, a log checkpointed away while cairn
//! was stopped, a scheduled snapshot).

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Session;
use crate::repo::changes;

#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct TimelineReport {
    pub sources: Vec<SourceTimeline>,
}

#[derive(Debug, Serialize)]
pub struct SourceTimeline {
    pub source: String,
    pub ranges: Vec<Range>,
}

/// What one chain makes restorable: any point from `from` to `to`.
#[derive(Debug, Serialize)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub chain: String,
    /// The snapshot the chain starts from.
    pub snapshot: String,
    pub segments: u64,
    /// Why this chain began.
    pub began: String,
}

pub async fn run(session: &Session, source: Option<&str>) -> Result<TimelineReport> {
    let repo = session.open_repository().await?;
    let snapshots = repo.readable_snapshots().await?;
    let mut sources: Vec<SourceTimeline> = Vec::new();
    for chain in changes::chains(&repo, source).await? {
        let start = &chain.start;
        // A chain whose snapshot was forgotten restores nothing.
        if !snapshots
            .iter()
            .any(|(_, m)| m.snapshot == start.base && m.source == start.source)
        {
            continue;
        }
        let to = changes::chain_end(&repo, &chain).await?;
        let range = Range {
            from: start.time,
            to,
            chain: start.chain.clone(),
            snapshot: start.base.clone(),
            segments: chain.segments,
            began: start.reason.clone(),
        };
        match sources.iter_mut().find(|s| s.source == start.source) {
            Some(s) => s.ranges.push(range),
            None => sources.push(SourceTimeline {
                source: start.source.clone(),
                ranges: vec![range],
            }),
        }
    }
    Ok(TimelineReport { sources })
}
