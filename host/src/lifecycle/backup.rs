//! `cairn backup`: one snapshot of every configured source, taken in config order.
//!
//! Every source's options are validated before any source is captured. Each source's
//! manifest is written only after its chunks are in landed packs and index files, so a
//! source that fails (or a crash) commits nothing of it, while the sources that succeeded
//! stay committed.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::forget::{self, ForgetOptions, ForgetReport};
use super::history::{self, RunKind, RunRecord, SourceOutcome};
use super::progress::{Progress, human_bytes};
use super::{PreparedSource, Session};
use crate::repo::Indexed;
use crate::repo::read::{ChunkReader, ItemStream};
use crate::repo::snapshot::{SourceSnapshot, new_snapshot_id};
use crate::repo::write::{ChunkWriter, WriteStats};
use crate::repo::writers::{self, Registration};
use crate::runtime::pipeline::capture::{Capture, CaptureCounts, Captured, Parent};

#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub snapshot: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub sources: Vec<SourceReport>,
    pub bytes_stored: u64,
    pub duration_secs: f64,
    /// The configured retention, applied to the sources that succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<ForgetReport>,
}

impl BackupReport {
    pub fn ok(&self) -> bool {
        self.sources.iter().all(|s| s.error.is_none())
            && self.retention.as_ref().is_none_or(ForgetReport::ok)
    }

    /// Why the named source failed in this run (`None` if it succeeded).
    pub fn error_of(&self, source: &str) -> Option<&str> {
        self.sources
            .iter()
            .find(|s| s.name == source)
            .and_then(|s| s.error.as_deref())
    }
}

#[derive(Debug, Serialize)]
pub struct SourceReport {
    pub name: String,
    pub plugin: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub counts: CaptureCounts,
    /// Bytes of chunks the repository did not hold yet (before compression).
    pub bytes_new: u64,
    pub duration_secs: f64,
}

pub struct BackupOptions {
    pub tags: Vec<String>,
    pub progress: bool,
}

pub async fn run(session: &Session, options: &BackupOptions) -> Result<BackupReport> {
    let started = Instant::now();
    let mut prepared = Vec::new();
    for source in &session.config.sources {
        prepared.push(session.prepare_source(source).await?);
    }
    anyhow::ensure!(
        !prepared.is_empty(),
        "the config has no [[source]] to back up"
    );
    // Validate everything before capturing anything.
    let mut instances = Vec::new();
    for source in &prepared {
        let mut instance = session
            .runtime
            .instantiate_source(
                &source.plugin,
                &source.name,
                Arc::new(source.grants.clone()),
            )
            .await?;
        instance
            .validate(&source.options)
            .await
            .with_context(|| format!("source `{}`", source.name))?;
        instances.push(instance);
    }

    let repo = session.open_repository().await?;
    // Announced before the index is loaded, so a prune meanwhile respects this backup;
    // released however the run ends (a killed run's record is swept by the next one).
    let registration = Registration::register(&repo, writers::DEFAULT_HEARTBEAT)
        .await
        .context("registering the backup in the repository")?;
    let result = run_registered(
        session,
        options,
        (&prepared, instances),
        &registration,
        started,
    )
    .await;
    registration.release_after(result).await
}

async fn run_registered(
    session: &Session,
    options: &BackupOptions,
    (prepared, instances): (
        &[PreparedSource],
        Vec<crate::runtime::source::SourceInstance>,
    ),
    registration: &Registration,
    started: Instant,
) -> Result<BackupReport> {
    let repo = registration.repository();
    let indexed = repo.load_index_for_backup(registration).await?;
    let parents = repo.readable_snapshots().await?;
    let writer = Arc::new(ChunkWriter::start(&indexed)?);
    let run = Run {
        snapshot: new_snapshot_id(),
        time: chrono::Utc::now(),
        seq: crate::repo::snapshot::next_seq(parents.iter().map(|(_, m)| m)),
        tags: &options.tags,
    };
    if let Some((behind, newest)) =
        crate::repo::snapshot::clock_behind(run.time, parents.iter().map(|(_, m)| m))
    {
        tracing::warn!(
            "this machine's clock ({}) is {} behind the newest snapshot's time ({}, taken on {}): one of the two clocks is wrong; snapshots are ordered by the repository's order of writes, so `latest` and retention are unaffected, but check the clocks (NTP)",
            run.time.format("%Y-%m-%d %H:%M:%S UTC"),
            crate::repo::duration::human_span(behind),
            newest.time.format("%Y-%m-%d %H:%M:%S UTC"),
            newest.hostname
        );
    }
    let progress = Progress::new(options.progress);
    let mut reports = Vec::new();

    for (source, mut instance) in prepared.iter().zip(instances) {
        let source_started = Instant::now();
        let stats = writer.stats().clone();
        let new_before = WriteStats::get(&stats.bytes_new);
        let name = source.name.clone();
        let follower = progress.follow(move || {
            format!(
                "{name}: {} read, {} new",
                // Chunks stored ahead are counted again, as known, when their item is read.
                human_bytes(
                    (WriteStats::get(&stats.bytes_new) + WriteStats::get(&stats.bytes_known))
                        .saturating_sub(WriteStats::get(&stats.bytes_ahead))
                ),
                human_bytes(WriteStats::get(&stats.bytes_new)),
            )
        });
        let parent = parents
            .iter()
            .rev()
            .find(|(_, m)| m.source == source.name && m.plugin == source.info.name);
        let result = match capture_source(
            &indexed,
            &writer,
            source,
            &mut instance,
            parent.map(|(_, m)| m),
            &run,
        )
        .await
        {
            Ok((counts, manifest)) => commit(registration, &manifest).await.map(|()| counts),
            Err(e) => Err(e),
        };
        if let Some(f) = follower {
            f.abort();
        }
        let mut report = SourceReport {
            name: source.name.clone(),
            plugin: source.info.name.clone(),
            status: "ok",
            error: None,
            counts: CaptureCounts::default(),
            bytes_new: WriteStats::get(&writer.stats().bytes_new) - new_before,
            duration_secs: source_started.elapsed().as_secs_f64(),
        };
        match result {
            Ok(counts) => {
                tracing::info!(source = %source.name, "captured {} items, {}", counts.items, human_bytes(counts.bytes));
                report.counts = counts;
            }
            Err(e) => {
                tracing::error!(source = %source.name, "backup failed: {e:#}");
                report.status = "failed";
                report.error = Some(format!("{e:#}"));
            }
        }
        reports.push(report);
    }
    progress.finish();
    // Retention for the sources that succeeded; a failed source keeps all it has.
    let succeeded: Vec<String> = reports
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| r.name.clone())
        .collect();
    let retention = if session.config.has_retention() && !succeeded.is_empty() {
        let options = ForgetOptions {
            dry_run: false,
            sources: Some(succeeded),
            policy: None,
        };
        match forget::run(repo, &session.config, &options).await {
            Ok(report) => Some(report),
            Err(e) => {
                tracing::error!("applying retention: {e:#}");
                None
            }
        }
    } else {
        None
    };
    history::record(
        repo,
        &RunRecord {
            kind: RunKind::Backup,
            time: run.time,
            hostname: crate::repo::machine::hostname(),
            snapshot: run.snapshot.clone(),
            sources: reports
                .iter()
                .map(|r| SourceOutcome {
                    source: r.name.clone(),
                    ok: r.error.is_none(),
                    error: r.error.clone(),
                    details: serde_json::json!({
                        "items": r.counts.items,
                        "bytes": r.counts.bytes,
                        "bytes_new": r.bytes_new,
                        "duration_secs": r.duration_secs,
                    }),
                })
                .collect(),
        },
    )
    .await;
    Ok(BackupReport {
        snapshot: run.snapshot,
        time: run.time,
        sources: reports,
        bytes_stored: WriteStats::get(&writer.stats().bytes_stored),
        duration_secs: started.elapsed().as_secs_f64(),
        retention,
    })
}

/// What the manifests of one run share.
pub(crate) struct Run<'a> {
    pub snapshot: String,
    pub time: chrono::DateTime<chrono::Utc>,
    pub seq: u64,
    pub tags: &'a [String],
}

async fn capture_source(
    repo: &Indexed,
    writer: &Arc<ChunkWriter>,
    source: &PreparedSource,
    instance: &mut crate::runtime::source::SourceInstance,
    parent: Option<&SourceSnapshot>,
    run: &Run<'_>,
) -> Result<(CaptureCounts, SourceSnapshot)> {
    let started = Instant::now();
    let parent = match parent {
        Some(manifest) => {
            match Parent::of(
                ItemStream::new(ChunkReader::new(repo), manifest),
                manifest.items,
            )
            .await
            {
                Ok(parent) => parent,
                Err(e) => {
                    // A damaged parent only costs re-reading every file.
                    tracing::warn!(source = %source.name, "ignoring the previous snapshot: {e}");
                    Parent::none()
                }
            }
        }
        None => Parent::none(),
    };
    let capture = Capture::new(writer.clone(), repo.config().chunker, parent)
        .on_changed_files(source.changed_files);
    let (capture, result) = instance
        .backup(&source.options, capture, source.timeout)
        .await;
    result?;
    let captured = capture.finish().await?;
    writer.flush().await.context("storing the data")?;
    let counts = captured.counts;
    Ok((counts, manifest_of(source, captured, run, started)))
}

/// The manifest of what a capture of `source` recorded in `run`.
pub(crate) fn manifest_of(
    source: &PreparedSource,
    captured: Captured,
    run: &Run<'_>,
    started: Instant,
) -> SourceSnapshot {
    SourceSnapshot {
        version: 1,
        snapshot: run.snapshot.clone(),
        time: run.time,
        seq: run.seq,
        hostname: crate::repo::machine::hostname(),
        username: crate::repo::machine::username(),
        tags: run.tags.to_vec(),
        source: source.name.clone(),
        plugin: source.info.name.clone(),
        plugin_version: source.info.version.clone(),
        tree: captured.tree,
        items: captured.counts.items,
        bytes: captured.counts.bytes,
        annotations: captured.annotations,
        duration_secs: started.elapsed().as_secs_f64(),
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        changed_while_read: captured.counts.files_changed_while_read,
        options: Some(source.options.clone()),
    }
}

/// Writes a source's manifest, only while no prune has judged this backup dead: checked
/// before (so nothing is written over deleted data) and after (a prune that evicted the
/// backup in between may not have seen the manifest, so it is taken back).
pub(crate) async fn commit(registration: &Registration, manifest: &SourceSnapshot) -> Result<()> {
    let repo = registration.repository();
    registration.confirm().await?;
    let name = repo
        .write_snapshot(manifest)
        .await
        .context("writing the snapshot manifest")?;
    if let Err(e) = registration.confirm().await {
        if let Err(undo) = repo.backend().delete(&name).await {
            return Err(anyhow::Error::new(e).context(format!(
                "and {name} could not be removed ({undo}): delete it by hand, it may reference deleted data"
            )));
        }
        return Err(e.into());
    }
    Ok(())
}
