//! Backups in progress, announced to prune: the commit protocol that keeps a prune from
//! deleting what a running backup is about to reference, without trusting any clock.
//!
//! A backup *registers* (`writers/<run id>`, sealed) before it lists the prune markers, and
//! records in its registration which markers it saw: the packs of those it never reuses.
//! While it runs, a heartbeat rewrites the record with a growing beat counter. A prune
//! deletes the packs of a marker only when no registered backup could depend on them: every
//! backup that is still running must have seen that marker (so it excluded its packs, and
//! its own new packs, written after it saw the marker, cannot be among them).
//!
//! Whether a registered backup is still running is decided without comparing clocks: on the
//! machine that ran it, by its process (see [`crate::machine::ProcessMark`]); elsewhere, by
//! watching its beat for three heartbeat intervals on the prune's own monotonic clock. A
//! backup judged dead is *evicted*: the prune writes `writers/<run id>.evicted`
//! (create-only) before it deletes anything, and the backup confirms before and after it
//! writes each snapshot that no eviction exists, so a backup that was only frozen (a
//! suspended VM, a stopped process) fails loudly instead of committing over deleted data.
//!
//! Prune and repair announce themselves the same way under `locks/`, and that record is
//! the repository's maintenance lock: one that finds another that may be running gives up
//! (see [`Registration::lock_maintenance`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::BackendErrorKind;
use crate::machine::{self, ProcessMark};
use crate::meta::{self, MetaKind};
use crate::{RepoError, RepoResult, Repository};

const EVICTED: &str = ".evicted";

/// What a record announces: a backup (or anything else that writes snapshots), or a
/// maintenance run (prune, repair) that holds the repository's one maintenance lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    Maintenance,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Writer => "writers/",
            Role::Maintenance => "locks/",
        }
    }
}

/// How often a running backup rewrites its record unless told otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// The longest a prune watches a silent record before it judges the backup dead.
const LONGEST_WATCH: Duration = Duration::from_secs(600);

/// The sealed record of one running backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriterRecord {
    pub version: u32,
    pub run: String,
    pub hostname: String,
    /// Where the writer can be proven to have ended, on its own machine.
    pub process: Option<ProcessMark>,
    /// The writer's clock when it registered: for messages only, never for decisions.
    pub started: DateTime<Utc>,
    /// Grows with every heartbeat; a prune watching it see it change knows the writer runs.
    pub beat: u64,
    pub interval_secs: u64,
    /// The prune markers the writer saw before it loaded the index; `None` until it has
    /// listed them (a writer in that state blocks every marker).
    pub seen_markers: Option<Vec<String>>,
}

impl WriterRecord {
    fn blocks(&self, marker: &str) -> bool {
        self.seen_markers
            .as_ref()
            .is_none_or(|seen| !seen.iter().any(|m| m == marker))
    }
}

fn record_name(role: Role, run: &str) -> String {
    format!("{}{run}", role.prefix())
}

fn eviction_name(role: Role, run: &str) -> String {
    format!("{}{run}{EVICTED}", role.prefix())
}

/// This process's registration as a writer; dropping it stops the heartbeat (call
/// [`Registration::release`] to remove the record too).
pub struct Registration {
    repo: Arc<Repository>,
    role: Role,
    record: Arc<Mutex<WriterRecord>>,
    heartbeat: tokio::task::JoinHandle<()>,
    /// Records of ended runs on this machine found at registration: a run that was killed
    /// may have left packs it never indexed.
    ended_before: usize,
}

impl Registration {
    /// Announces a backup to prune. First removes this machine's records of backups whose
    /// process has ended (a backup that was killed cannot remove its own).
    pub async fn register(repo: &Arc<Repository>, interval: Duration) -> RepoResult<Self> {
        Self::announce(repo, Role::Writer, interval).await
    }

    /// Takes the repository's maintenance lock for `what` (a prune, a repair): fails,
    /// naming the holder, while another maintenance run may be running anywhere. Two runs
    /// that start together may both fail; neither proceeds beside the other.
    pub async fn lock_maintenance(repo: &Arc<Repository>, what: &str) -> RepoResult<Self> {
        let lock = Self::announce(repo, Role::Maintenance, DEFAULT_HEARTBEAT).await?;
        let others = match resolve_role(repo, Role::Maintenance, true).await {
            Ok(live) => live,
            Err(e) => {
                let _ = lock.release().await;
                return Err(e);
            }
        };
        let run = lock.run();
        let holders: Vec<String> = others
            .running
            .iter()
            .filter(|r| r.run != run)
            .map(|r| {
                let pid = r.process.as_ref().map(|p| format!(", pid {}", p.pid));
                format!(
                    "{} (on {}{}, started {})",
                    record_name(Role::Maintenance, &r.run),
                    r.hostname,
                    pid.unwrap_or_default(),
                    r.started.format("%Y-%m-%d %H:%M:%S UTC")
                )
            })
            .chain(others.unreadable.iter().cloned())
            .collect();
        if holders.is_empty() {
            return Ok(lock);
        }
        let _ = lock.release().await;
        Err(RepoError::Busy(format!(
            "{what} needs the repository to itself, and another prune or repair holds its lock: {}; run {what} again once that one has ended (a lock whose process ended, or that stops beating, is removed by the next {what})",
            holders.join(", ")
        )))
    }

    async fn announce(repo: &Arc<Repository>, role: Role, interval: Duration) -> RepoResult<Self> {
        let ended_before = sweep_ended_here(repo, role).await?;
        let record = WriterRecord {
            version: 1,
            run: crate::snapshot::new_snapshot_id(),
            hostname: machine::hostname(),
            process: machine::this_process(),
            started: Utc::now(),
            beat: 0,
            interval_secs: interval.as_secs().max(1),
            seen_markers: None,
        };
        put_record(repo, role, &record, true).await?;
        let record = Arc::new(Mutex::new(record));
        let heartbeat = tokio::spawn(beat(repo.clone(), role, record.clone(), interval));
        Ok(Registration {
            repo: repo.clone(),
            role,
            record,
            heartbeat,
            ended_before,
        })
    }

    pub fn repository(&self) -> &Arc<Repository> {
        &self.repo
    }

    pub fn run(&self) -> String {
        self.lock().run.clone()
    }

    /// Whether a run on this machine ended without removing its record (it was killed, or
    /// lost its storage) before this one registered.
    pub fn follows_an_interrupted_run(&self) -> bool {
        self.ended_before > 0
    }

    /// Whether any other writer may be running: one whose record is readable and not
    /// provably ended, or one whose record cannot be read.
    pub async fn others_may_run(&self) -> RepoResult<bool> {
        let run = self.run();
        let live = resolve_role(&self.repo, self.role, false).await?;
        Ok(!live.unreadable.is_empty() || live.running.iter().any(|w| w.run != run))
    }

    /// Records which prune markers this backup saw (and so will not reuse the packs of).
    pub async fn saw_markers(&self, names: Vec<String>) -> RepoResult<()> {
        let record = {
            let mut record = self.lock();
            record.seen_markers = Some(names);
            record.clone()
        };
        put_record(&self.repo, self.role, &record, false).await
    }

    /// Fails if a prune has judged this backup dead (and so may have deleted data it
    /// references), or if its record is gone.
    pub async fn confirm(&self) -> RepoResult<()> {
        let run = self.run();
        let evicted = match self
            .repo
            .backend()
            .get(&eviction_name(self.role, &run))
            .await
        {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e.into()),
        };
        let registered = match self.repo.backend().get(&record_name(self.role, &run)).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e.into()),
        };
        if (evicted || !registered) && self.role == Role::Maintenance {
            return Err(RepoError::Other(format!(
                "another prune or repair judged this one ({}) dead while it ran (it was stopped or frozen for longer than its heartbeat allows), and may be running now; this one stops here: run it again",
                record_name(self.role, &run)
            )));
        }
        if evicted || !registered {
            return Err(RepoError::Other(format!(
                "a prune judged this backup ({}) dead while it ran (it was stopped or frozen for longer than its heartbeat allows) and may have deleted data it needs; no snapshot of it is kept: run the backup again",
                record_name(self.role, &run)
            )));
        }
        Ok(())
    }

    /// Releases this registration once the work it covered ended with `result`, and
    /// returns that result. A release that fails is only a warning: the work is done, and
    /// the record left behind is an ended run's, which the next run on this machine
    /// removes and any other machine judges stale once its heartbeat stops.
    pub async fn release_after<T, E>(self, result: Result<T, E>) -> Result<T, E> {
        let name = record_name(self.role, &self.run());
        if let Err(e) = self.release().await {
            tracing::warn!("removing {name} (the next run on this machine removes it): {e}");
        }
        result
    }

    /// Stops the heartbeat and removes the record (and an eviction, if one was written).
    pub async fn release(self) -> RepoResult<()> {
        self.heartbeat.abort();
        let run = self.run();
        for name in [record_name(self.role, &run), eviction_name(self.role, &run)] {
            match self.repo.backend().delete(&name).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Stops the heartbeat and rewrites the record as another machine's: what a prune
    /// sees of a backup on a host that froze.
    #[cfg(test)]
    pub(crate) async fn freeze_as_if_elsewhere(&self) {
        self.heartbeat.abort();
        let record = {
            let mut record = self.lock();
            if let Some(process) = record.process.as_mut() {
                process.kernel = "another machine".into();
            }
            record.clone()
        };
        put_record(&self.repo, self.role, &record, false)
            .await
            .unwrap();
    }

    /// Leaves the record of a run on this machine whose process has ended: what a killed
    /// backup leaves.
    #[cfg(test)]
    pub(crate) async fn leave_record_of_an_ended_run(repo: &Repository, role: Role) {
        if let Some(ended) = ended_record() {
            put_record(repo, role, &ended, true).await.unwrap();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

async fn put_record(
    repo: &Repository,
    role: Role,
    record: &WriterRecord,
    exclusive: bool,
) -> RepoResult<()> {
    let sealed = meta::seal(repo.keys(), MetaKind::Writer, record);
    let name = record_name(role, &record.run);
    repo.backend()
        .put(&name, sealed.into(), exclusive)
        .await
        .map_err(|e| {
            RepoError::from(e).within(match role {
                Role::Writer => format!("announcing the backup to prune ({name})"),
                Role::Maintenance => format!("taking the maintenance lock ({name})"),
            })
        })
}

async fn beat(
    repo: Arc<Repository>,
    role: Role,
    record: Arc<Mutex<WriterRecord>>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let current = {
            let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
            r.beat += 1;
            r.clone()
        };
        // An evicted backup stops beating: its record must not come back to life.
        if repo
            .backend()
            .get(&eviction_name(role, &current.run))
            .await
            .is_ok()
        {
            return;
        }
        if let Err(e) = put_record(&repo, role, &current, false).await {
            // A missed beat is retried at the next tick; a prune that sees too many
            // missed evicts this backup, which then fails at its confirmation.
            tracing::warn!("backup heartbeat: {e}");
        }
    }
}

/// Removes this machine's records of runs whose process has ended; returns how many.
async fn sweep_ended_here(repo: &Repository, role: Role) -> RepoResult<usize> {
    let mut swept = 0;
    for (name, _) in repo.backend().list(role.prefix()).await? {
        if name.ends_with(EVICTED) {
            continue;
        }
        let Ok(record) = read_record(repo, &name).await else {
            continue;
        };
        if record.process.as_ref().and_then(machine::has_ended) == Some(true) {
            delete_if_present(repo, &name).await?;
            swept += 1;
        }
    }
    Ok(swept)
}

async fn read_record(repo: &Repository, name: &str) -> RepoResult<WriterRecord> {
    let sealed = repo.backend().get(name).await?;
    meta::open(repo.keys(), MetaKind::Writer, &sealed).map_err(|e| e.context(name))
}

async fn delete_if_present(repo: &Repository, name: &str) -> RepoResult<()> {
    match repo.backend().delete(name).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The backups a prune must respect, as it found them.
#[derive(Debug, Default)]
pub struct LiveWriters {
    /// Running (or not provably stopped) backups.
    pub running: Vec<WriterRecord>,
    /// Records that could not be read: they block every marker until removed.
    pub unreadable: Vec<String>,
    /// Backups this prune judged dead and evicted.
    pub evicted: Vec<String>,
}

impl LiveWriters {
    /// The registrations that keep the packs of `marker` from being deleted now.
    pub fn blocking(&self, marker: &str) -> Vec<String> {
        self.running
            .iter()
            .filter(|w| w.blocks(marker))
            .map(|w| record_name(Role::Writer, &w.run))
            .chain(self.unreadable.iter().cloned())
            .collect()
    }

    pub fn any(&self) -> bool {
        !self.running.is_empty() || !self.unreadable.is_empty()
    }
}

/// Finds the backups that may still be running. Records of ended local processes are
/// removed; records from other machines that stay unchanged for three of their heartbeat
/// intervals are evicted. With `evict` false (a dry run), nothing is written and silent
/// foreign records count as running.
pub async fn resolve(repo: &Repository, evict: bool) -> RepoResult<LiveWriters> {
    resolve_role(repo, Role::Writer, evict).await
}

async fn resolve_role(repo: &Repository, role: Role, evict: bool) -> RepoResult<LiveWriters> {
    let listed = repo.backend().list(role.prefix()).await?;
    let names: HashSet<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    let mut live = LiveWriters::default();
    let mut watch: Vec<(String, WriterRecord)> = Vec::new();
    for (name, _) in &listed {
        if name.ends_with(EVICTED) {
            continue;
        }
        if names.contains(format!("{name}{EVICTED}").as_str()) {
            // Evicted earlier (and its heartbeat raced the eviction): the backup fails at
            // its confirmation, so the record is only clutter.
            if evict {
                delete_if_present(repo, name).await?;
            }
            continue;
        }
        let record = match read_record(repo, name).await {
            Ok(record) => record,
            Err(e) if matches!(&e, RepoError::Backend(b) if b.kind == BackendErrorKind::NotFound) =>
            {
                continue; // released meanwhile
            }
            Err(e) => {
                tracing::warn!("{name}: {e}");
                live.unreadable.push(name.clone());
                continue;
            }
        };
        match record.process.as_ref().and_then(machine::has_ended) {
            Some(true) => {
                if evict {
                    delete_if_present(repo, name).await?;
                }
            }
            Some(false) => live.running.push(record),
            None if !evict => live.running.push(record),
            None => watch.push((name.clone(), record)),
        }
    }
    if watch.is_empty() {
        return Ok(live);
    }
    // Watch the foreign records on this machine's monotonic clock: a beat that changes
    // proves the backup runs; one that does not for three intervals means it has stopped.
    let longest = watch
        .iter()
        .map(|(_, r)| Duration::from_secs(r.interval_secs.saturating_mul(3)))
        .max()
        .unwrap_or_default()
        .min(LONGEST_WATCH);
    let started = tokio::time::Instant::now();
    let step = Duration::from_millis(250).max(longest / 40);
    while !watch.is_empty() {
        let elapsed = started.elapsed();
        let mut still = Vec::new();
        for (name, record) in watch {
            let window =
                Duration::from_secs(record.interval_secs.saturating_mul(3)).min(LONGEST_WATCH);
            match read_record(repo, &name).await {
                Ok(now) if now.beat != record.beat => live.running.push(now),
                Err(RepoError::Backend(b)) if b.kind == BackendErrorKind::NotFound => {}
                Ok(_) | Err(_) if elapsed < window => still.push((name, record)),
                Ok(_) | Err(_) => {
                    evict_run(repo, role, &record.run).await?;
                    live.evicted.push(name);
                }
            }
        }
        watch = still;
        if !watch.is_empty() {
            tokio::time::sleep(step).await;
        }
    }
    Ok(live)
}

/// What an eviction holds; its existence is what counts.
#[derive(Serialize)]
struct Eviction<'a> {
    evicted: &'a str,
}

async fn evict_run(repo: &Repository, role: Role, run: &str) -> RepoResult<()> {
    let sealed = meta::seal(repo.keys(), MetaKind::Writer, &Eviction { evicted: run });
    match repo
        .backend()
        .put(&eviction_name(role, run), sealed.into(), true)
        .await
    {
        Ok(()) => {}
        Err(e) if e.kind == BackendErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    delete_if_present(repo, &record_name(role, run)).await
}

/// The record of a run on this machine whose process has ended, if this machine can tell.
#[cfg(test)]
fn ended_record() -> Option<WriterRecord> {
    let me = machine::this_process()?;
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    Some(WriterRecord {
        version: 1,
        run: crate::snapshot::new_snapshot_id(),
        hostname: machine::hostname(),
        process: Some(ProcessMark { pid, ..me }),
        started: Utc::now(),
        beat: 0,
        interval_secs: 30,
        seen_markers: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_of_ended_processes_here_are_swept_and_block_nothing() {
        let repo = crate::memory::repository().await;
        let Some(ended) = ended_record() else {
            return;
        };
        let records = async || repo.backend().list(Role::Writer.prefix()).await.unwrap();
        put_record(&repo, Role::Writer, &ended, true).await.unwrap();
        let live = resolve(&repo, true).await.unwrap();
        assert!(!live.any(), "{live:?}");
        assert!(records().await.is_empty());

        put_record(&repo, Role::Writer, &ended, true).await.unwrap();
        let running = Registration::register(&repo, Duration::from_secs(30))
            .await
            .unwrap();
        let listed = records().await;
        assert_eq!(
            listed.len(),
            1,
            "registering sweeps the ended record: {listed:?}"
        );
        let live = resolve(&repo, true).await.unwrap();
        assert_eq!(
            live.blocking("prune/any"),
            vec![record_name(Role::Writer, &running.run())]
        );
        running.saw_markers(vec!["prune/any".into()]).await.unwrap();
        let live = resolve(&repo, true).await.unwrap();
        assert!(live.blocking("prune/any").is_empty());
        assert_eq!(live.blocking("prune/newer").len(), 1);
        running.release().await.unwrap();
        assert!(records().await.is_empty());
    }
}
