//! Forget: applies each source's retention policy to that source's snapshots alone and removes the manifests it does not
//! keep. Data stays until `cairn prune` (or `forget --prune`) collects it.
//!
//! A policy that would remove every snapshot of a source is refused for that source, and
//! so is a source whose backup failed in the same run (the caller leaves it out). A
//! snapshot that begins a change chain reaching the oldest snapshot the policy keeps is
//! kept with it, so that every point in time back to that snapshot stays restorable.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::changes;
use crate::ops::retention::{Candidate, Policy, Verdict};
use crate::snapshot::SourceSnapshot;
use crate::{RepoResult, Repository};

/// A source's policy and the warnings that came with it (a rule given twice); `None`
/// leaves the source alone.
pub type PolicyOf<'a> = &'a (dyn Fn(&str) -> Option<(Policy, Vec<String>)> + Sync);

pub struct ForgetOptions<'a> {
    /// List what would be removed, remove nothing.
    pub dry_run: bool,
    /// Only these sources (all sources with snapshots when `None`).
    pub sources: Option<Vec<String>>,
    pub policy_of: PolicyOf<'a>,
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

pub async fn run(repo: &Repository, options: &ForgetOptions<'_>) -> RepoResult<ForgetReport> {
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
        let Some((policy, warnings)) = (options.policy_of)(&source) else {
            continue;
        };
        report.warnings.extend(
            warnings
                .into_iter()
                .map(|w| format!("source `{source}`: {w}")),
        );
        report
            .sources
            .push(judge(repo, &source, &policy, manifests, options.dry_run).await?);
    }
    for w in &report.warnings {
        tracing::warn!("retention: {w}");
    }
    Ok(report)
}

/// The snapshots the policy would remove that begin a change chain reaching the oldest
/// snapshot it keeps, and why each stays: every point in time back to that snapshot stays
/// restorable, and a chain restores nothing without its base.
async fn chain_bases(
    repo: &Repository,
    source: &str,
    manifests: &[(String, SourceSnapshot)],
    verdicts: &[Verdict],
) -> RepoResult<HashMap<String, String>> {
    let oldest_kept = manifests
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| v.keep)
        .map(|((_, m), _)| m.time)
        .min();
    let mut bases = HashMap::new();
    // A policy that keeps nothing is refused whole; chains change nothing about that.
    let Some(oldest_kept) = oldest_kept else {
        return Ok(bases);
    };
    for chain in changes::chains(repo, Some(source)).await? {
        let end = changes::chain_end(repo, &chain).await?;
        if end >= oldest_kept {
            bases.insert(
                chain.start.base.clone(),
                format!(
                    "base of change chain {} (points in time up to {})",
                    &chain.start.chain[..chain.start.chain.len().min(8)],
                    end.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            );
        }
    }
    Ok(bases)
}

async fn judge(
    repo: &Repository,
    source: &str,
    policy: &Policy,
    manifests: Vec<(String, SourceSnapshot)>,
    dry_run: bool,
) -> RepoResult<SourceRetention> {
    let candidates: Vec<Candidate> = manifests
        .iter()
        .map(|(_, m)| Candidate {
            seq: m.seq,
            time: m.time,
            tags: m.tags.clone(),
        })
        .collect();
    let verdicts = policy.apply(&candidates);
    let chain_bases = chain_bases(repo, source, &manifests, &verdicts).await?;
    let mut outcome = SourceRetention {
        source: source.to_string(),
        policy: policy.describe(),
        kept: Vec::new(),
        removed: Vec::new(),
        refused: None,
    };
    let mut doomed = Vec::new();
    for ((name, manifest), verdict) in manifests.iter().zip(verdicts).rev() {
        let mut judged = Judged {
            snapshot: manifest.snapshot.clone(),
            time: manifest.time,
            reasons: verdict.reasons,
        };
        let base_of = chain_bases.get(&manifest.snapshot);
        if let Some(reason) = base_of.filter(|_| !verdict.keep) {
            judged.reasons.push(reason.clone());
        }
        if verdict.keep || base_of.is_some() {
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
