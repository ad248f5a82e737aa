//! `cairn drill`: a restore drill. The newest snapshot of every source (or one) is restored
//! into scratch space and verified by its plugin, measuring the time to restore (RTO) and
//! the age of the newest restorable point (RPO). The result is recorded in the
//! repository, so `cairn status` shows it from any host.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use chrono::Utc;
use serde::Serialize;

use super::Session;
use super::history::{self, RunKind, RunRecord, SourceOutcome};
use super::progress::Progress;
use super::verify::{VerifiedSource, verify_source};

pub struct DrillOptions {
    pub source: Option<String>,
    pub scratch: Option<String>,
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct DrillReport {
    pub time: chrono::DateTime<Utc>,
    pub sources: Vec<DrilledSource>,
}

impl DrillReport {
    pub fn ok(&self) -> bool {
        self.sources.iter().all(|s| s.verified.passed)
    }
}

#[derive(Debug, Serialize)]
pub struct DrilledSource {
    pub snapshot: String,
    pub snapshot_time: chrono::DateTime<Utc>,
    /// Measured time to restore and check, in seconds.
    pub rto_secs: f64,
    /// Age of the newest restorable point, in seconds.
    pub rpo_secs: i64,
    pub checks_passed: usize,
    pub checks_total: usize,
    #[serde(flatten)]
    pub verified: VerifiedSource,
}

pub async fn run(session: &Session, options: &DrillOptions) -> Result<DrillReport> {
    let repo = session
        .open_repository()
        .await?
        .load_readable_index()
        .await?;
    // The newest manifest of each source.
    let mut newest = BTreeMap::new();
    for (_, manifest) in repo.readable_snapshots().await? {
        if options
            .source
            .as_ref()
            .is_none_or(|s| *s == manifest.source)
        {
            newest.insert(manifest.source.clone(), manifest);
        }
    }
    if newest.is_empty() {
        match &options.source {
            Some(s) => bail!("source `{s}` has no snapshot to drill"),
            None => bail!("the repository has no snapshots yet; run `cairn backup`"),
        }
    }
    let time = Utc::now();
    let progress = Progress::new(options.progress);
    let mut sources = Vec::new();
    for manifest in newest.values() {
        progress.set(format!("drilling {}", manifest.source));
        let verified =
            verify_source(session, &repo, manifest, options.scratch.as_deref(), false).await;
        sources.push(DrilledSource {
            snapshot: manifest.snapshot.clone(),
            snapshot_time: manifest.time,
            rto_secs: verified.duration_secs,
            rpo_secs: (time - manifest.time).num_seconds(),
            checks_passed: verified.checks.iter().filter(|c| c.passed).count(),
            checks_total: verified.checks.len(),
            verified,
        });
    }
    progress.finish();
    history::record(
        &repo,
        &RunRecord {
            kind: RunKind::Drill,
            time,
            hostname: crate::repo::machine::hostname(),
            snapshot: sources
                .first()
                .map(|s| s.snapshot.clone())
                .unwrap_or_default(),
            sources: sources
                .iter()
                .map(|s| SourceOutcome {
                    source: s.verified.name.clone(),
                    ok: s.verified.passed,
                    error: (!s.verified.passed).then(|| failure_of(&s.verified)),
                    details: serde_json::json!({
                        "snapshot": s.snapshot,
                        "rto_secs": s.rto_secs,
                        "rpo_secs": s.rpo_secs,
                        "bytes": s.verified.bytes,
                        "checks_passed": s.checks_passed,
                        "checks_total": s.checks_total,
                    }),
                })
                .collect(),
        },
    )
    .await;
    Ok(DrillReport { time, sources })
}

/// One line saying why a source's verification failed.
pub fn failure_of(v: &VerifiedSource) -> String {
    if let Some(e) = &v.error {
        return e.clone();
    }
    let failed: Vec<String> = v
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    if failed.is_empty() {
        "no checks ran".into()
    } else {
        failed.join("; ")
    }
}
