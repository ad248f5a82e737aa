//! `cairn replicate`: continuous capture of the sources that offer it, until asked to
//! stop. Each source's changes are stored at every sync interval as the next segment of
//! its chain; a fresh snapshot begins a new chain when the last one cannot go on (its
//! point is gone from the source's log) or when `snapshot-every` comes round. Every
//! `bundle-every`, the segments stored since the last bundle are packed into one object
//! (kept in memory until then, so packing reads nothing back), and the single ones
//! deleted: a busy source costs one object a minute, not one a second. Every
//! `merge-every`, the bundles written since the last merge are read back and merged into
//! one object the same way: a day of a busy source keeps 24 objects, not 1,440.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::Utc;
use futures::future::BoxFuture;
use serde::Serialize;

use super::backup::{Run, commit, manifest_of};
use super::{PreparedSource, Session};
use crate::config::Replication;
use crate::repo::Repository;
use crate::repo::changes::{self, ChainStart, Segment, SegmentHeader, Stored};
use crate::repo::snapshot::{new_snapshot_id, next_seq};
use crate::repo::write::ChunkWriter;
use crate::repo::writers::{self, Registration};
use crate::runtime::PluginError;
use crate::runtime::pipeline::capture::{Capture, Parent};
use crate::runtime::pipeline::follow::{ChainStore, FollowStep};

/// The tag of the snapshots that begin chains.
pub const CHAIN_TAG: &str = "replicate";

pub struct ReplicateOptions {
    /// The sources to follow; all that have `[source.replicate]` when empty.
    pub sources: Vec<String>,
    /// Turns true when the run must stop (SIGINT, SIGTERM): each source stores what is
    /// left and returns.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ReplicateReport {
    pub sources: Vec<ReplicatedSource>,
}

impl ReplicateReport {
    pub fn ok(&self) -> bool {
        self.sources.iter().all(|s| s.error.is_none())
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ReplicatedSource {
    pub name: String,
    /// Chains this run began, and why the last began.
    pub chains_begun: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_chain_reason: Option<String>,
    /// Whether the run went on from the chain a previous run left.
    pub resumed: bool,
    pub segments: u64,
    /// Bytes of segments stored (encrypted and compressed).
    pub bytes: u64,
    /// Bundles written, and the single segments they replaced.
    pub bundles: u64,
    pub bundled_segments: u64,
    /// Merges written, and the bundles they replaced.
    pub merges: u64,
    pub merged_bundles: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub async fn run(session: &Session, options: &ReplicateOptions) -> Result<ReplicateReport> {
    let selected: Vec<_> = session
        .config
        .sources
        .iter()
        .filter(|s| match options.sources.is_empty() {
            true => s.replicate.is_some(),
            false => options.sources.iter().any(|n| n == s.name()),
        })
        .collect();
    for name in &options.sources {
        session
            .config
            .source(name)
            .with_context(|| format!("no source `{name}` in {}", session.config.path.display()))?;
    }
    anyhow::ensure!(
        !selected.is_empty(),
        "no source is replicated: add a [source.replicate] table to a source that offers it (sqlite), or name one with --source"
    );
    let repo = session.open_repository().await?;
    let runs = selected.into_iter().map(|source| {
        let (repo, stop) = (repo.clone(), options.stop.clone());
        async move {
            let stats = Arc::new(Mutex::new(ReplicatedSource {
                name: source.name().to_string(),
                ..Default::default()
            }));
            let outcome = follow_source(
                session,
                repo,
                source.name(),
                source.replication(),
                stop,
                stats.clone(),
            )
            .await;
            let mut report = stats.lock().map(|s| s.clone()).unwrap_or_default();
            if let Err(e) = outcome {
                tracing::error!(source = %report.name, "replication stopped: {e:#}");
                report.error = Some(format!("{e:#}"));
            }
            report
        }
    });
    Ok(ReplicateReport {
        sources: futures::future::join_all(runs).await,
    })
}

async fn follow_source(
    session: &Session,
    repo: Arc<Repository>,
    name: &str,
    settings: Replication,
    stop: tokio::sync::watch::Receiver<bool>,
    stats: Arc<Mutex<ReplicatedSource>>,
) -> Result<()> {
    let source = session
        .config
        .source(name)
        .context("the source left the config")?;
    let prepared = session.prepare_source(source).await?;
    let mut instance = session
        .runtime
        .instantiate_following(
            &prepared.plugin,
            &prepared.name,
            Arc::new(prepared.grants.clone()),
        )
        .await?;
    let chain = RepoChain::new(repo, prepared.clone(), settings, stats).await?;
    let (requests, served) = tokio::sync::mpsc::channel(1);
    let handle = ChainHandle {
        requests,
        resume: chain.resume.clone(),
        settings,
        stop,
        stopping: false,
        next_snapshot: chain.next_snapshot.clone(),
    };
    // The repository's work runs here, in the command's task, while the plugin follows:
    // the follower's calls only pass requests over.
    let (followed, ()) = tokio::join!(
        instance.follow(
            &prepared.options,
            settings.max_log,
            Box::new(handle),
            prepared.timeout
        ),
        chain.serve(served)
    );
    followed?;
    Ok(())
}

/// The most bytes of changes kept in memory for the next bundle: past this, the bundle is
/// written early.
const BUNDLE_MAX_BYTES: usize = 64 << 20;
/// The most bytes of changes one merge reads back and writes: past this, the bundles are
/// merged early (a source this busy pays for its bytes, not its requests).
const MERGE_MAX_BYTES: usize = 64 << 20;

/// What the follower asks of the repository.
enum Request {
    BeginSnapshot(Reply<Capture>),
    BeginChain(Box<Capture>, String, String, Reply<()>),
    Append(Bytes, String, Reply<()>),
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, PluginError>>;

/// The [`ChainStore`] a follower writes through: requests to the [`RepoChain`] serving
/// them, and the schedule of syncs and snapshots.
struct ChainHandle {
    requests: tokio::sync::mpsc::Sender<Request>,
    resume: Option<String>,
    settings: Replication,
    stop: tokio::sync::watch::Receiver<bool>,
    stopping: bool,
    next_snapshot: Arc<Mutex<tokio::time::Instant>>,
}

impl ChainHandle {
    fn ask<T: Send + 'static>(
        &self,
        request: impl FnOnce(Reply<T>) -> Request,
    ) -> BoxFuture<'static, Result<T, PluginError>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let requests = self.requests.clone();
        let request = request(reply);
        Box::pin(async move {
            let gone =
                || PluginError::Permanent("the repository side of replication stopped".into());
            requests.send(request).await.map_err(|_| gone())?;
            answer.await.map_err(|_| gone())?
        })
    }
}

impl ChainStore for ChainHandle {
    fn resume_point(&self) -> Option<String> {
        self.resume.clone()
    }

    fn begin_snapshot(&mut self) -> BoxFuture<'_, Result<Capture, PluginError>> {
        self.ask(Request::BeginSnapshot)
    }

    fn begin_chain(
        &mut self,
        capture: Capture,
        start: String,
        reason: String,
    ) -> BoxFuture<'_, Result<(), PluginError>> {
        self.resume = None;
        self.ask(|reply| Request::BeginChain(Box::new(capture), start, reason, reply))
    }

    fn append(&mut self, changes: Bytes, end: String) -> BoxFuture<'_, Result<(), PluginError>> {
        self.ask(|reply| Request::Append(changes, end, reply))
    }

    fn wait(&mut self) -> BoxFuture<'_, FollowStep> {
        Box::pin(async move {
            if self.stopping || *self.stop.borrow() {
                self.stopping = true;
                return FollowStep::Stop;
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.interval) => {}
                _ = self.stop.changed() => {
                    self.stopping = true;
                    return FollowStep::Stop;
                }
            }
            let now = tokio::time::Instant::now();
            if let Ok(mut next) = self.next_snapshot.lock()
                && now >= *next
            {
                *next = now + self.settings.snapshot_every;
                return FollowStep::Snapshot;
            }
            FollowStep::Sync
        })
    }
}

/// A source's chains in the repository, as its follower writes them.
struct RepoChain {
    repo: Arc<Repository>,
    source: PreparedSource,
    settings: Replication,
    next_snapshot: Arc<Mutex<tokio::time::Instant>>,
    /// The chain being written and its next segment's number.
    chain: Option<(String, u64)>,
    resume: Option<String>,
    base: Option<Base>,
    stats: Arc<Mutex<ReplicatedSource>>,
    /// The chain's segments stored singly since its last bundle, and their bytes.
    pending: Vec<Segment>,
    pending_bytes: usize,
    /// The bundles this run wrote since the chain's last merge.
    bundled: Vec<Bundled>,
    /// The merge running.
    merging: Option<tokio::task::JoinHandle<()>>,
}

/// A bundle the replicator wrote, waiting to be merged.
struct Bundled {
    chain: String,
    stored: Stored,
    /// When its first and last segments were read.
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
    /// Bytes of changes it holds.
    bytes: usize,
}

/// A chain's base snapshot being captured.
struct Base {
    registration: Registration,
    writer: Arc<ChunkWriter>,
    snapshot: String,
    time: chrono::DateTime<Utc>,
    seq: u64,
    started: Instant,
}

fn failed(what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::Permanent(format!("{what}: {e:#}"))
}

impl RepoChain {
    /// Finds where the source's newest chain ended, if its base snapshot is still there.
    async fn new(
        repo: Arc<Repository>,
        source: PreparedSource,
        settings: Replication,
        stats: Arc<Mutex<ReplicatedSource>>,
    ) -> Result<RepoChain> {
        let chains = changes::chains(&repo, Some(&source.name))
            .await
            .context("listing the source's chains")?;
        let snapshots = repo.readable_snapshots().await?;
        let newest = chains.last().filter(|c| {
            snapshots
                .iter()
                .any(|(_, m)| m.snapshot == c.start.base && m.source == source.name)
        });
        let mut pending = Vec::new();
        let (chain, resume, age) = match newest {
            Some(c) => {
                // A run stopped between a bundle and the deletions it allowed.
                if let Err(e) = changes::delete_covered(&repo, &c.start.chain, &c.covered).await {
                    tracing::warn!(source = %source.name, "deleting segments a bundle holds: {e}");
                }
                // The single segments since the chain's last bundle go into its next one.
                let singles: Vec<Stored> = c
                    .objects
                    .iter()
                    .rev()
                    .take_while(|o| o.first == o.last)
                    .take(changes::BUNDLE_MAX_SEGMENTS / 2)
                    .copied()
                    .collect();
                for stored in singles.into_iter().rev() {
                    pending.extend(
                        changes::read_stored(&repo, &c.start.chain, stored)
                            .await
                            .context("reading the chain's last segments")?,
                    );
                }
                // The last segment is the last pending one, unless the chain ends in a
                // bundle.
                let last_end = match pending.last() {
                    Some(last) => Some(last.header.end.clone()),
                    None => changes::last_segment(&repo, c)
                        .await
                        .context("reading the chain's last segment")?
                        .map(|last| last.header.end),
                };
                let resume = last_end.unwrap_or_else(|| c.start.start.clone());
                let age = (Utc::now() - c.start.time).to_std().unwrap_or_default();
                (
                    Some((c.start.chain.clone(), c.segments + 1)),
                    Some(resume),
                    age,
                )
            }
            None => (None, None, std::time::Duration::ZERO),
        };
        let pending_bytes = pending.iter().map(|s| s.changes.len()).sum();
        let wait = settings.snapshot_every.saturating_sub(age);
        Ok(RepoChain {
            repo,
            source,
            settings,
            next_snapshot: Arc::new(Mutex::new(tokio::time::Instant::now() + wait)),
            chain,
            resume,
            base: None,
            stats,
            pending,
            pending_bytes,
            bundled: Vec::new(),
            merging: None,
        })
    }

    /// Packs the pending segments into one bundle and deletes them as single objects. A
    /// failure leaves them stored singly, which loses nothing: it is warned of, not fatal.
    async fn bundle(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let bytes = std::mem::take(&mut self.pending_bytes);
        let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
            return;
        };
        if pending.len() < 2 {
            return;
        }
        let chain = first.header.chain.clone();
        let singles: Vec<Stored> = (first.header.seq..=last.header.seq)
            .map(|seq| Stored {
                first: seq,
                last: seq,
            })
            .collect();
        let bundled = async {
            let size = changes::write_bundle(&self.repo, &pending).await?;
            changes::delete_covered(&self.repo, &chain, &singles).await?;
            Ok::<_, crate::repo::RepoError>(size)
        };
        match bundled.await {
            Ok(_) => {
                self.stats(|s| {
                    s.bundles += 1;
                    s.bundled_segments += pending.len() as u64;
                });
                self.bundled_one(Bundled {
                    chain,
                    stored: Stored {
                        first: first.header.seq,
                        last: last.header.seq,
                    },
                    from: first.header.time,
                    to: last.header.time,
                    bytes,
                })
                .await;
            }
            Err(e) => tracing::warn!(
                source = %self.source.name,
                "bundling segments {}..={} of chain {}: {e}; they stay stored one by one",
                first.header.seq,
                last.header.seq,
                &chain[..chain.len().min(8)]
            ),
        }
    }

    /// Adds a bundle to the next merge, merging first what it would not fit beside, and
    /// merging when the bundles reach `merge-every` or the byte bound.
    async fn bundled_one(&mut self, bundle: Bundled) {
        let segments = |b: &Bundled| (b.stored.last - b.stored.first + 1) as usize;
        let held: usize = self.bundled.iter().map(segments).sum();
        let bytes: usize = self.bundled.iter().map(|b| b.bytes).sum();
        if held + segments(&bundle) > changes::BUNDLE_MAX_SEGMENTS
            || bytes + bundle.bytes > MERGE_MAX_BYTES
        {
            self.merge().await;
        }
        self.bundled.push(bundle);
        let span = match (self.bundled.first(), self.bundled.last()) {
            (Some(first), Some(last)) => (last.to - first.from).to_std().unwrap_or_default(),
            _ => std::time::Duration::ZERO,
        };
        if span >= self.settings.merge_every {
            self.merge().await;
        }
    }

    /// Merges the bundles written since the last merge into one object, on a task of its
    /// own so that segments go on being stored meanwhile; one merge runs at a time.
    async fn merge(&mut self) {
        self.merged().await;
        let run = std::mem::take(&mut self.bundled);
        if run.len() < 2 {
            return;
        }
        let (repo, source, stats) = (
            self.repo.clone(),
            self.source.name.clone(),
            self.stats.clone(),
        );
        self.merging = Some(tokio::spawn(async move {
            merge_bundles(&repo, &source, &stats, &run).await;
        }));
    }

    /// Waits for the merge running, if any.
    async fn merged(&mut self) {
        if let Some(task) = self.merging.take() {
            let _ = task.await;
        }
    }

    fn stats(&self, update: impl FnOnce(&mut ReplicatedSource)) {
        if let Ok(mut stats) = self.stats.lock() {
            update(&mut stats);
        }
    }

    async fn start_base(&mut self) -> Result<Capture> {
        let registration = Registration::register(&self.repo, writers::DEFAULT_HEARTBEAT)
            .await
            .context("registering the snapshot in the repository")?;
        let indexed = self.repo.load_index_for_backup(&registration).await?;
        let writer = Arc::new(ChunkWriter::start(&indexed)?);
        let parents = self.repo.readable_snapshots().await?;
        let capture = Capture::new(writer.clone(), self.repo.config().chunker, Parent::none());
        self.base = Some(Base {
            registration,
            writer,
            snapshot: new_snapshot_id(),
            time: Utc::now(),
            seq: next_seq(parents.iter().map(|(_, m)| m)),
            started: Instant::now(),
        });
        Ok(capture)
    }

    async fn finish_base(&mut self, capture: Capture, start: String, reason: String) -> Result<()> {
        let base = self
            .base
            .take()
            .context("begin-chain without begin-snapshot")?;
        let captured = capture.finish().await?;
        base.writer
            .flush()
            .await
            .context("storing the snapshot's data")?;
        let tags = [CHAIN_TAG.to_string()];
        let run = Run {
            snapshot: base.snapshot.clone(),
            time: base.time,
            seq: base.seq,
            tags: &tags,
        };
        let manifest = manifest_of(&self.source, captured, &run, base.started);
        let committed = commit(&base.registration, &manifest).await;
        base.registration.release_after(committed).await?;
        // The base holds everything committed before its copy ended, which was before now.
        let start = ChainStart {
            version: 1,
            chain: changes::new_chain_id(),
            source: self.source.name.clone(),
            base: manifest.snapshot.clone(),
            time: Utc::now(),
            start,
            reason: reason.clone(),
            hostname: crate::repo::machine::hostname(),
        };
        changes::write_chain_start(&self.repo, &start).await?;
        // The old chain's last segments are bundled, and its bundles merged, before the
        // new chain's begin.
        self.bundle().await;
        self.merge().await;
        tracing::info!(source = %self.source.name, "chain {} begins at snapshot {}: {reason}", &start.chain[..8], manifest.short_id());
        self.chain = Some((start.chain, 1));
        if let Ok(mut next) = self.next_snapshot.lock() {
            *next = tokio::time::Instant::now() + self.settings.snapshot_every;
        }
        self.stats(|s| {
            s.chains_begun += 1;
            s.last_chain_reason = Some(reason);
        });
        Ok(())
    }

    async fn store(&mut self, changes: Bytes, end: String) -> Result<()> {
        let (chain, seq) = self
            .chain
            .as_mut()
            .context("append before any chain began")?;
        let header = SegmentHeader {
            version: 1,
            chain: chain.clone(),
            seq: *seq,
            time: Utc::now(),
            end,
        };
        let size = changes::write_segment(&self.repo, &header, &changes).await?;
        *seq += 1;
        let resumed = self.resume.take().is_some();
        self.stats(|s| {
            s.segments += 1;
            s.bytes += size;
            s.resumed |= resumed && s.chains_begun == 0;
        });
        self.pending_bytes += changes.len();
        self.pending.push(Segment { header, changes });
        let span = match (self.pending.first(), self.pending.last()) {
            (Some(first), Some(last)) => (last.header.time - first.header.time)
                .to_std()
                .unwrap_or_default(),
            _ => std::time::Duration::ZERO,
        };
        if span >= self.settings.bundle_every
            || self.pending_bytes >= BUNDLE_MAX_BYTES
            || self.pending.len() >= changes::BUNDLE_MAX_SEGMENTS
        {
            self.bundle().await;
        }
        Ok(())
    }
}

impl RepoChain {
    /// Answers the follower's requests until it is done.
    async fn serve(mut self, mut requests: tokio::sync::mpsc::Receiver<Request>) {
        while let Some(request) = requests.recv().await {
            match request {
                Request::BeginSnapshot(reply) => {
                    let _ = reply.send(
                        self.start_base()
                            .await
                            .map_err(|e| failed("starting the snapshot", e)),
                    );
                }
                Request::BeginChain(capture, start, reason, reply) => {
                    self.resume = None;
                    let _ = reply.send(
                        self.finish_base(*capture, start, reason)
                            .await
                            .map_err(|e| failed("committing the chain's snapshot", e)),
                    );
                }
                Request::Append(changes, end, reply) => {
                    let _ = reply.send(
                        self.store(changes, end)
                            .await
                            .map_err(|e| failed("storing a segment", e)),
                    );
                }
            }
        }
        // The follower stopped: what is pending goes into one last bundle, and the bundles
        // of this run into one merge (a run that is killed leaves them to stay apart).
        self.bundle().await;
        self.merge().await;
        self.merged().await;
    }
}

/// Merges `run` (consecutive bundles of one chain) into one object, read back with every
/// segment kept as it was, and deletes them. A failure leaves them as they are, which
/// loses nothing: it is warned of, not fatal.
async fn merge_bundles(
    repo: &Repository,
    source: &str,
    stats: &Mutex<ReplicatedSource>,
    run: &[Bundled],
) {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return;
    };
    let chain = &first.chain;
    let objects: Vec<Stored> = run.iter().map(|b| b.stored).collect();
    let merged = async {
        let mut segments = Vec::new();
        for stored in &objects {
            segments.extend(changes::read_stored(repo, chain, *stored).await?);
        }
        changes::write_bundle(repo, &segments).await?;
        changes::delete_covered(repo, chain, &objects).await
    };
    match merged.await {
        Ok(()) => {
            if let Ok(mut stats) = stats.lock() {
                stats.merges += 1;
                stats.merged_bundles += objects.len() as u64;
            }
        }
        Err(e) => tracing::warn!(
            source,
            "merging the bundles of segments {}..={} of chain {}: {e}; they stay as they are",
            first.stored.first,
            last.stored.last,
            &chain[..chain.len().min(8)]
        ),
    }
}
