//! `cairn verify`: proves a snapshot restorable. Each source of the snapshot is restored by
//! its plugin into a scratch place (a temporary directory, or a scratch database URL) and
//! checked there (integrity checks, probes, row counts): the live system is never touched.
//! A source whose verification fails does not stop the others; the run fails. With
//! `--at`, a replicated source's point in time is proved instead: restored as of that time
//! into a scratch directory, its chain's changes applied and the plugin's check run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Session;
use super::progress::Progress;
use super::restore::{self, PointInTime, RestoreOptions, prepare_for, replay_of};
use crate::repo::Indexed;
use crate::repo::snapshot::SourceSnapshot;
use crate::runtime::pipeline::replay::{NO_FLAGS, RestoreFlags};
use crate::runtime::plugin_api::RestoreTarget;

pub struct VerifyOptions {
    pub snapshot: String,
    pub source: Option<String>,
    /// For sources restored to a URL (a database server): the scratch database.
    pub scratch: Option<String>,
    /// Leave the scratch database in place afterwards.
    pub keep: bool,
    pub progress: bool,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub snapshot: String,
    pub time: chrono::DateTime<chrono::Utc>,
    /// With `--at`: the point in time proved (its snapshot is `snapshot`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<PointInTime>,
    pub sources: Vec<VerifiedSource>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.sources.iter().all(|s| s.passed)
    }
}

#[derive(Debug, Serialize)]
pub struct VerifiedSource {
    pub name: String,
    pub plugin: String,
    pub passed: bool,
    /// The plugin declined to restore at all, to protect what is there (the target is the
    /// live system, the scratch database exists): nothing was restored or checked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    /// Why the verification could not run to the end (restore failed, plugin crashed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub checks: Vec<CheckOutcome>,
    /// Time to restore and check: the measured recovery time.
    pub duration_secs: f64,
    /// Bytes the source's snapshot holds.
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct CheckOutcome {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

pub async fn run(session: &Session, options: &VerifyOptions) -> Result<VerifyReport> {
    let repo = session
        .open_repository()
        .await?
        .load_readable_index()
        .await?;
    let manifests = repo
        .find_snapshot(&options.snapshot, options.source.as_deref())
        .await?;
    let Some((_, first)) = manifests.first() else {
        bail!("snapshot {} holds no sources", options.snapshot);
    };
    let (snapshot, time) = (first.snapshot.clone(), first.time);
    let progress = Progress::new(options.progress);
    let mut sources = Vec::new();
    for (_, manifest) in &manifests {
        progress.set(format!("verifying {}", manifest.source));
        sources.push(
            verify_source(
                session,
                &repo,
                manifest,
                options.scratch.as_deref(),
                options.keep,
            )
            .await,
        );
    }
    progress.finish();
    Ok(VerifyReport {
        snapshot,
        time,
        at: None,
        sources,
    })
}

/// Proves the point in time `at` (RFC 3339 or `latest`) of a replicated source
/// restorable: restored into a scratch directory as `restore --at` restores it (which
/// fails unless the plugin's check passes), then thrown away.
pub async fn run_at(
    session: &Session,
    source: &str,
    at: &str,
    progress: bool,
) -> Result<VerifyReport> {
    let config = session
        .config
        .sources
        .iter()
        .find(|s| s.name() == source)
        .with_context(|| format!("no source named `{source}` in the config"))?;
    let scratch = tempfile::Builder::new()
        .prefix("cairn-verify-")
        .tempdir()
        .context("creating a scratch directory")?;
    let options = RestoreOptions {
        snapshot: String::new(),
        target: scratch
            .path()
            .join(format!("{source}.db"))
            .to_string_lossy()
            .into_owned(),
        source: Some(source.to_string()),
        progress,
        ..Default::default()
    };
    let started = Instant::now();
    let restored = restore::run_at(session, &options, at).await;
    let duration_secs = started.elapsed().as_secs_f64();
    let (report, error) = match restored {
        Ok(report) => (Some(report), None),
        Err(e) => {
            tracing::error!(source, "verification of the point in time failed");
            (None, Some(format!("{e:#}")))
        }
    };
    let point = report.as_ref().and_then(|r| r.at.as_ref());
    let checks = match (&report, point) {
        (Some(report), Some(point)) => vec![CheckOutcome {
            name: "point in time".into(),
            passed: true,
            detail: format!(
                "snapshot {} and {} segments of chain {} restored as of {}, and checked by the plugin",
                short(&report.snapshot),
                point.segments,
                short(&point.chain),
                point.reached.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        }],
        _ => Vec::new(),
    };
    let bytes = report
        .as_ref()
        .and_then(|r| r.sources.first())
        .map_or(0, |s| s.bytes);
    Ok(VerifyReport {
        snapshot: report
            .as_ref()
            .map(|r| r.snapshot.clone())
            .unwrap_or_default(),
        time: point.map_or_else(chrono::Utc::now, |p| p.reached),
        sources: vec![VerifiedSource {
            name: source.to_string(),
            plugin: config.plugin.clone(),
            passed: error.is_none() && !checks.is_empty(),
            refused: false,
            error,
            checks,
            duration_secs,
            bytes,
        }],
        at: report.and_then(|r| r.at),
    })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// Restores one source into scratch space and checks it; failures become the report's.
pub async fn verify_source(
    session: &Session,
    repo: &Indexed,
    manifest: &SourceSnapshot,
    scratch_url: Option<&str>,
    keep: bool,
) -> VerifiedSource {
    let started = Instant::now();
    let outcome = checks_of(session, repo, manifest, scratch_url, keep).await;
    let (checks, error, refused) = match outcome {
        Ok(checks) => (checks, None, false),
        Err(e) => {
            let refused = e
                .downcast_ref::<crate::runtime::CallError>()
                .and_then(|c| c.plugin_error())
                .is_some_and(|p| {
                    matches!(
                        p,
                        crate::runtime::PluginError::Denied(_)
                            | crate::runtime::PluginError::AlreadyExists(_)
                    )
                });
            (Vec::new(), Some(format!("{e:#}")), refused)
        }
    };
    let passed = error.is_none() && !checks.is_empty() && checks.iter().all(|c| c.passed);
    if !passed {
        tracing::error!(source = %manifest.source, "verification failed");
    }
    VerifiedSource {
        name: manifest.source.clone(),
        plugin: manifest.plugin.clone(),
        passed,
        refused,
        error,
        checks,
        duration_secs: started.elapsed().as_secs_f64(),
        bytes: manifest.bytes,
    }
}

async fn checks_of(
    session: &Session,
    repo: &Indexed,
    manifest: &SourceSnapshot,
    scratch_url: Option<&str>,
    keep: bool,
) -> Result<Vec<CheckOutcome>> {
    let mut prepared = prepare_for(session, manifest).await?;
    // Kept until the plugin is done: the directory goes away with it.
    let scratch_dir;
    let scratch = match prepared.info.restore_target {
        // Without --scratch the plugin uses the scratch database its options name.
        RestoreTarget::Url => {
            let url = scratch_url.unwrap_or_default();
            prepared
                .grants
                .hosts
                .extend(crate::runtime::sandbox::url_authority(url));
            url.to_string()
        }
        RestoreTarget::Directory | RestoreTarget::File => {
            scratch_dir = tempfile::Builder::new()
                .prefix("cairn-verify-")
                .tempdir()
                .context("creating a scratch directory")?;
            prepared.grants.write(scratch_dir.path());
            scratch_dir.path().to_string_lossy().into_owned()
        }
    };
    let mut instance = session
        .runtime
        .instantiate_source(
            &prepared.plugin,
            &prepared.name,
            Arc::new(prepared.grants.clone()),
        )
        .await?;
    let replay = replay_of(repo, manifest)
        .await?
        .with_flags(RestoreFlags { keep, ..NO_FLAGS });
    let report = instance
        .verify(&prepared.options, replay, &scratch, prepared.timeout)
        .await?;
    Ok(report
        .checks
        .into_iter()
        .map(|c| CheckOutcome {
            name: c.name,
            passed: c.passed,
            detail: c.detail,
        })
        .collect())
}
