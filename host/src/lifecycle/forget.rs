//! `cairn forget`, and the retention step of `cairn backup`: the repository's forget
//! (`cairn_repo::ops::forget`) with each source's policy from the command line or the
//! config.

use anyhow::Result;

use crate::config::Config;
use crate::repo::Repository;
use crate::repo::ops::forget;
use crate::repo::ops::retention::Policy;

pub use forget::{ForgetReport, Judged, SourceRetention};

pub struct ForgetOptions {
    /// List what would be removed, remove nothing.
    pub dry_run: bool,
    /// Only these sources (all sources with snapshots when `None`).
    pub sources: Option<Vec<String>>,
    /// A policy from the command line, replacing the configured ones.
    pub policy: Option<Policy>,
}

pub async fn run(
    repo: &Repository,
    config: &Config,
    options: &ForgetOptions,
) -> Result<ForgetReport> {
    let policy_of = |source: &str| match &options.policy {
        Some(policy) => Some((policy.clone(), Vec::new())),
        None => config.retention_for(source),
    };
    let options = forget::ForgetOptions {
        dry_run: options.dry_run,
        sources: options.sources.clone(),
        policy_of: &policy_of,
    };
    Ok(forget::run(repo, &options).await?)
}
