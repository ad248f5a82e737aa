//! `cairn forget`, and the retention step of `cairn backup`: applies each source's
//! retention policy to that source's snapshots alone and removes the manifests it does not
//! keep. Data stays until `cairn prune` (or `forget --prune`) collects it.
//!
//! A policy that would remove every snapshot of a source is refused for that source, and
//! so is a source whose backup failed in the same run (the caller leaves it out).

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::repo::Repository;
use crate::repo::ops::retention::{Candidate, Policy};
use crate::repo::snapshot::SourceSnapshot;

pub struct ForgetOptions {
    /// List what would be removed, remove nothing.
    pub dry_run: bool,
    /// Only these sources (all sources with snapshots when `None`).
    pub sources: Option<Vec<String>>,
    /// A policy from the command line, replacing the configured ones.
    pub policy: Option<Policy>,
}

#[derive(Debug, Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    pub sources: Vec<SourceRetention>,
    pub warnings: Vec<String>,
}

impl ForgetReport {
    pub fn ok(&self) -> bool {
        self.sources.iter().all(|s| s.refused.is_none())
    }

    pub fn removed(&self) -> usize {
        self.sources.iter().map(|s| s.removed.len()).sum()
    }
}

#[derive(Debug, Serialize)]
pub struct SourceRetention {
    pub source: String,
    pub policy: String,
    pub kept: Vec<Judged>,
    pub removed: Vec<Judged>,
    /// Why nothing of this source was removed although the policy said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Judged {
    pub snapshot: String,
    pub time: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

pub async fn run(
    repo: &Repository,
    config: &Config,
    options: &ForgetOptions,
) -> Result<ForgetReport> {
    let mut by_source: BTreeMap<String, Vec<(String, SourceSnapshot)>> = BTreeMap::new();
    for (name, manifest) in repo.snapshots().await? {
        by_source
            .entry(manifest.source.clone())
            .or_default()
            .push((name, manifest));
    }
    let mut report = ForgetReport {
        dry_run: options.dry_run,
        sources: Vec::new(),
        warnings: Vec::new(),
    };
    for (source, manifests) in by_source {
        if let Some(only) = &options.sources
            && !only.contains(&source)
        {
            continue;
        }
        let policy = match &options.policy {
            Some(policy) => policy.clone(),
            None => match config.retention_for(&source) {
                Some((policy, warnings)) => {
                    report.warnings.extend(
                        warnings
                            .into_iter()
                            .map(|w| format!("source `{source}`: {w}")),
                    );
                    policy
                }
                None => continue,
            },
        };
        report
            .sources
            .push(judge(repo, &source, &policy, manifests, options.dry_run).await?);
    }
    for w in &report.warnings {
        tracing::warn!("retention: {w}");
    }
    Ok(report)
}

async fn judge(
    repo: &Repository,
    source: &str,
    policy: &Policy,
    manifests: Vec<(String, SourceSnapshot)>,
    dry_run: bool,
) -> Result<SourceRetention> {
    let candidates: Vec<Candidate> = manifests
        .iter()
        .map(|(_, m)| Candidate {
            time: m.time,
            tags: m.tags.clone(),
        })
        .collect();
    let verdicts = policy.apply(&candidates);
    let mut outcome = SourceRetention {
        source: source.to_string(),
        policy: policy.describe(),
        kept: Vec::new(),
        removed: Vec::new(),
        refused: None,
    };
    let mut doomed = Vec::new();
    for ((name, manifest), verdict) in manifests.iter().zip(verdicts).rev() {
        let judged = Judged {
            snapshot: manifest.snapshot.clone(),
            time: manifest.time,
            reasons: verdict.reasons,
        };
        if verdict.keep {
            outcome.kept.push(judged);
        } else {
            outcome.removed.push(judged);
            doomed.push(name.clone());
        }
    }
    if outcome.kept.is_empty() && !outcome.removed.is_empty() {
        outcome.refused = Some(format!(
            "the policy ({}) would remove every snapshot of `{source}`; nothing was removed",
            outcome.policy
        ));
        tracing::error!(
            "retention: {}",
            outcome.refused.as_deref().unwrap_or_default()
        );
        return Ok(outcome);
    }
    if !dry_run {
        for name in &doomed {
            repo.backend().delete(name).await?;
        }
    }
    Ok(outcome)
}
