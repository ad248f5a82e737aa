//! `cairn restore`: puts sources of a snapshot back, each through its own plugin. With
//! `--source NAME` that source goes to the target; otherwise each source goes to
//! `TARGET/<source name>`. A restore never writes into a non-empty directory (or over an
//! existing file) unless forced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::progress::{Progress, human_bytes};
use super::resume::Present;
use super::{PreparedSource, Session};
use crate::repo::Indexed;
use crate::repo::changes;
use crate::repo::snapshot::SourceSnapshot;
use crate::runtime::PluginError;
use crate::runtime::pipeline::follow::ChangeSource;
use crate::runtime::pipeline::replay::{ItemList, Replay, RestoreFlags};
use crate::runtime::plugin_api::RestoreTarget;
use crate::runtime::sandbox::grants::Grants;
use futures::future::BoxFuture;

/// What `cairn restore` was asked; every flag off by default.
#[derive(Debug, Default, Clone)]
pub struct RestoreOptions {
    pub snapshot: String,
    pub target: String,
    pub source: Option<String>,
    pub force: bool,
    /// Like `force`, and files already at the target with the snapshot's contents
    /// (verified against its chunk ids) are kept instead of read again.
    pub resume: bool,
    /// Drop the target database's existing objects first.
    pub clean: bool,
    /// Allow the target to be the very database the snapshot was taken from.
    pub into_live: bool,
    /// Leave objects to the restoring user (`no-owner`).
    pub no_owner: bool,
    /// Restore no privileges (`no-privileges`).
    pub no_privileges: bool,
    pub progress: bool,
}

impl RestoreOptions {
    fn flags(&self) -> RestoreFlags {
        RestoreFlags {
            force: self.force || self.resume,
            clean: self.clean,
            into_live: self.into_live,
            keep: false,
        }
    }

    /// The flags a source reads by name.
    fn named_flags(&self) -> Vec<String> {
        [
            (self.no_owner, "no-owner"),
            (self.no_privileges, "no-privileges"),
        ]
        .into_iter()
        .filter(|(given, _)| *given)
        .map(|(_, name)| name.to_string())
        .collect()
    }
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub sources: Vec<RestoredSource>,
    /// A point-in-time restore: the time asked for and the segments of changes applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<PointInTime>,
}

#[derive(Debug, Serialize)]
pub struct PointInTime {
    pub requested: chrono::DateTime<chrono::Utc>,
    /// When the newest segment applied had been read: everything committed before this
    /// (less one sync interval) is there, nothing committed after `requested`.
    pub reached: chrono::DateTime<chrono::Utc>,
    pub chain: String,
    pub segments: u64,
}

#[derive(Debug, Serialize)]
pub struct RestoredSource {
    pub name: String,
    pub target: String,
    pub items: u64,
    pub bytes: u64,
    /// With `--resume`: files found whole at the target, kept as they were.
    #[serde(skip_serializing_if = "is_zero")]
    pub kept_files: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub kept_bytes: u64,
    pub duration_secs: f64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub async fn run(session: &Session, options: &RestoreOptions) -> Result<RestoreReport> {
    let repo = session
        .open_repository()
        .await?
        .load_readable_index()
        .await?;
    let manifests = repo
        .find_snapshot(&options.snapshot, options.source.as_deref())
        .await?;
    let progress = Progress::new(options.progress);
    let mut restored = Vec::new();
    let snapshot = manifests
        .first()
        .map(|(_, m)| m.snapshot.clone())
        .unwrap_or_default();
    for (_, manifest) in &manifests {
        let target = if options.source.is_some() || options.target.contains("://") {
            options.target.clone()
        } else {
            Path::new(&options.target)
                .join(&manifest.source)
                .to_string_lossy()
                .into_owned()
        };
        progress.set(format!("restoring {} to {target}", manifest.source));
        let started = Instant::now();
        let kept = restore_source(session, &repo, manifest, &target, options)
            .await
            .with_context(|| {
                format!(
                    "restoring source `{}` of snapshot {}",
                    manifest.source,
                    manifest.short_id()
                )
            })?;
        tracing::info!(source = %manifest.source, "restored {} items, {} into {target}", manifest.items, human_bytes(manifest.bytes));
        restored.push(RestoredSource {
            name: manifest.source.clone(),
            target,
            items: manifest.items,
            bytes: manifest.bytes,
            kept_files: kept.files,
            kept_bytes: kept.bytes,
            duration_secs: started.elapsed().as_secs_f64(),
        });
    }
    progress.finish();
    Ok(RestoreReport {
        snapshot,
        sources: restored,
        at: None,
    })
}

/// `TIME` of `--at`: RFC 3339, or `latest` (now: the newest point stored).
pub fn parse_at(at: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    if at == "latest" {
        return Ok(chrono::Utc::now());
    }
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .with_context(|| {
            format!("--at {at}: not a time; give RFC 3339 (2026-12-06T14:30:00Z) or `latest`")
        })
}

/// The segments a point-in-time restore applies, already read.
struct Segments(std::vec::IntoIter<bytes::Bytes>);

impl ChangeSource for Segments {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<bytes::Bytes>, PluginError>> {
        let next = self.0.next();
        Box::pin(async move { Ok(next) })
    }
}

/// `cairn restore --source NAME --at TIME`: the newest chain that began at or before
/// TIME, its snapshot restored beside the target, the chain's segments read at or before
/// TIME applied and checked by the plugin, then renamed into place. Nothing is left at
/// the target if any step fails.
pub async fn run_at(
    session: &Session,
    options: &RestoreOptions,
    at: &str,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let name = options
        .source
        .as_deref()
        .context("--at restores one source: name it with --source")?;
    let requested = parse_at(at)?;
    let repo = session
        .open_repository()
        .await?
        .load_readable_index()
        .await?;
    let snapshots = repo.readable_snapshots().await?;
    let chains = changes::chains(&repo, Some(name)).await?;
    let base_of = |chain: &changes::Chain| {
        snapshots
            .iter()
            .map(|(_, m)| m)
            .find(|m| m.snapshot == chain.start.base && m.source == name)
    };
    let Some((chain, manifest)) = chains
        .iter()
        .rev()
        .filter(|c| c.start.time <= requested)
        .find_map(|c| base_of(c).map(|m| (c, m)))
    else {
        let first = chains
            .iter()
            .find(|c| base_of(c).is_some())
            .map(|c| c.start.time);
        bail!(
            "no chain of source `{name}` reaches back to {}: {} (see `cairn timeline --source {name}`)",
            requested.format("%Y-%m-%d %H:%M:%S UTC"),
            match first {
                Some(t) => format!(
                    "its first restorable point is {}",
                    t.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => "it has no chain; run `cairn replicate`".to_string(),
            }
        );
    };
    let (segments, reached) = match segments_until(&repo, chain, requested).await {
        // A replicator running beside the restore bundled segments since the listing.
        Err(e) if e.downcast_ref().is_some_and(changes::gone_since_listed) => {
            let chain = changes::relisted(repo.repo(), chain).await?;
            segments_until(&repo, &chain, requested).await?
        }
        read => read?,
    };
    let mut prepared = prepare_for(session, manifest).await?;
    anyhow::ensure!(
        prepared.info.restore_target == RestoreTarget::File,
        "--at restores sources that restore to a file (sqlite)"
    );
    let final_path = PathBuf::from(grant_target(
        RestoreTarget::File,
        &options.target,
        options.force,
        &mut prepared.grants,
    )?);
    anyhow::ensure!(
        !final_path.is_dir(),
        "{}: --at restores one database file; name the file to create",
        final_path.display()
    );
    let temp = final_path.with_file_name(format!(".tmp-{:016x}", rand::random::<u64>()));
    let applied = segments.len() as u64;
    let rebuilt = async {
        let grants = Arc::new(prepared.grants.clone());
        let guest_temp = temp.to_string_lossy().into_owned();
        let mut instance = session
            .runtime
            .instantiate_source(&prepared.plugin, &prepared.name, grants.clone())
            .await?;
        let replay = replay_of(&repo, manifest)
            .await?
            .with_flags(options.flags())
            .with_named_flags(options.named_flags());
        instance
            .restore(&prepared.options, replay, &guest_temp, prepared.timeout)
            .await
            .context("restoring the chain's snapshot")?;
        let mut following = session
            .runtime
            .instantiate_following(&prepared.plugin, &prepared.name, grants)
            .await?;
        following
            .apply(
                &prepared.options,
                Box::new(Segments(segments.into_iter())),
                &guest_temp,
                prepared.timeout,
            )
            .await
            .context("applying the chain's changes")?;
        // SQLite would apply a stale log beside the target to the restored file.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = final_path.clone().into_os_string();
            side.push(suffix);
            match std::fs::remove_file(&side) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("removing {}", PathBuf::from(side).display())));
                }
                _ => {}
            }
        }
        // The segments were applied unsynced: the whole file reaches the disk once, here.
        std::fs::File::open(&temp)
            .and_then(|file| file.sync_all())
            .with_context(|| format!("syncing {}", temp.display()))?;
        std::fs::rename(&temp, &final_path)
            .with_context(|| format!("moving the restored database to {}", final_path.display()))
    }
    .await;
    if rebuilt.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    rebuilt.with_context(|| {
        format!(
            "restoring source `{name}` as of {}",
            requested.format("%Y-%m-%d %H:%M:%S UTC")
        )
    })?;
    Ok(RestoreReport {
        snapshot: manifest.snapshot.clone(),
        sources: vec![RestoredSource {
            name: name.to_string(),
            target: final_path.to_string_lossy().into_owned(),
            items: manifest.items,
            bytes: manifest.bytes,
            kept_files: 0,
            kept_bytes: 0,
            duration_secs: started.elapsed().as_secs_f64(),
        }],
        at: Some(PointInTime {
            requested,
            reached,
            chain: chain.start.chain.clone(),
            segments: applied,
        }),
    })
}

/// The chain's segments read at or before `until`, in order (whether stored alone or in
/// bundles), and the time the last of them was read (the chain's start with none).
async fn segments_until(
    repo: &Indexed,
    chain: &changes::Chain,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<(Vec<bytes::Bytes>, chrono::DateTime<chrono::Utc>)> {
    use futures::StreamExt;
    let reads = changes::read_segments(repo.repo(), chain);
    futures::pin_mut!(reads);
    let mut segments = Vec::new();
    let mut reached = chain.start.time;
    while let Some(segment) = reads.next().await {
        let segment = segment.context("reading the chain's segments")?;
        if segment.header.time > until {
            break;
        }
        reached = segment.header.time;
        segments.push(segment.changes);
    }
    Ok((segments, reached))
}

/// Grants a restore target and returns the guest path (or URL) handed to the plugin.
pub fn grant_target(
    kind: RestoreTarget,
    target: &str,
    force: bool,
    grants: &mut Grants,
) -> Result<String> {
    match kind {
        // The user named this server on the command line: that is its grant.
        RestoreTarget::Url => {
            grants
                .hosts
                .extend(crate::runtime::sandbox::url_authority(target));
            Ok(target.to_string())
        }
        RestoreTarget::Directory => grant_directory(&absolute(target)?, force, grants),
        RestoreTarget::File => {
            let file = absolute(target)?;
            // A source holding several files (a glob of databases) restores into a directory.
            if file.is_dir() {
                return grant_directory(&file, force, grants);
            }
            if force {
                refuse_links(&file)?;
            } else if file.exists() {
                bail!(
                    "{} exists: choose another target, or pass --force to replace it",
                    file.display()
                );
            }
            let parent = file
                .parent()
                .context("the target file has no parent directory")?;
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
            clean_temporaries(parent, false)?;
            grants.write(parent);
            Ok(file.to_string_lossy().into_owned())
        }
    }
}

fn grant_directory(dir: &Path, force: bool, grants: &mut Grants) -> Result<String> {
    if force {
        refuse_links(dir)?;
        // What a killed restore into this directory left half-written.
        clean_temporaries(dir, true)?;
    } else if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        bail!(
            "{} is not empty: restore into an empty or new directory, or pass --force to write into it",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    grants.write(dir);
    Ok(dir.to_string_lossy().into_owned())
}

/// A forced restore replaces what it finds; through a symlink at or above the target it
/// would replace what the link points to, somewhere the user never named. Refused, naming
/// the resolved path, which the user can give instead if that is where they mean.
fn refuse_links(target: &Path) -> Result<()> {
    for ancestor in target.ancestors() {
        let Ok(meta) = std::fs::symlink_metadata(ancestor) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let link = std::fs::read_link(ancestor)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            bail!(
                "{} passes through the symlink {} (-> {link}): a forced restore does not follow symlinks, so that it cannot replace what one points to; if you mean to restore there, give the resolved target {}",
                target.display(),
                ancestor.display(),
                resolved(target).display()
            );
        }
    }
    Ok(())
}

/// `path` with every symlink of its existing part resolved.
fn resolved(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

fn clean_temporaries(dir: &Path, recursive: bool) -> Result<()> {
    let removed = crate::runtime::capabilities::files::remove_temporaries(dir, recursive)
        .with_context(|| format!("removing what a killed restore left in {}", dir.display()))?;
    if removed > 0 {
        tracing::info!(
            "removed {removed} temporary file(s) an interrupted restore left in {}",
            dir.display()
        );
    }
    Ok(())
}

fn absolute(target: &str) -> Result<PathBuf> {
    let path = std::path::absolute(target).with_context(|| format!("target {target}"))?;
    Ok(crate::runtime::sandbox::grants::normalize(&path).unwrap_or(path))
}

/// The replay session for one source of a snapshot.
pub async fn replay_of(repo: &Indexed, manifest: &SourceSnapshot) -> Result<Replay> {
    Ok(resumed_replay_of(repo, manifest, None).await?.0)
}

/// The replay session for one source of a snapshot; with `resume_in` (a target
/// directory), the files found whole there are read from there (see [`super::resume`]).
async fn resumed_replay_of(
    repo: &Indexed,
    manifest: &SourceSnapshot,
    resume_in: Option<&Path>,
) -> Result<(Replay, Present)> {
    let list = ItemList::new(repo, manifest);
    let annotations = manifest
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut present = match resume_in {
        Some(dir) => super::resume::find(repo.repo(), dir, &list).await?,
        None => Present::default(),
    };
    let replay = Replay::resuming(list, annotations, std::mem::take(&mut present.items))
        .await
        .context("reading the snapshot's item list")?;
    Ok((replay, present))
}

/// The configured source a manifest was taken from, checked to use the same plugin; for a
/// source this config does not name (a snapshot another host took), the snapshot's own
/// record of its plugin and options.
pub async fn prepare_for(session: &Session, manifest: &SourceSnapshot) -> Result<PreparedSource> {
    let Some(source) = session.config.source(&manifest.source) else {
        return prepare_recorded(session, manifest).await;
    };
    let prepared = session.prepare_source(source).await?;
    if prepared.info.name != manifest.plugin {
        bail!(
            "source `{}` was backed up by plugin `{}` but is now configured with `{}`",
            manifest.source,
            manifest.plugin,
            prepared.info.name
        );
    }
    Ok(prepared)
}

/// A source of a snapshot that this config does not name: its plugin (built in) with the
/// options the snapshot recorded. Those options were the other host's, so they grant
/// nothing here: the plugin gets the restore target, as every restore does, and no more.
async fn prepare_recorded(session: &Session, manifest: &SourceSnapshot) -> Result<PreparedSource> {
    let missing = |why: &str| {
        anyhow::anyhow!(
            "source `{}` is not in {}, and {why}: add its [[source]] section (plugin `{}`) so cairn knows how to restore it",
            manifest.source,
            session.config.path.display(),
            manifest.plugin
        )
    };
    let Some(options) = &manifest.options else {
        return Err(missing(
            "its snapshot does not record the plugin's options (it was taken by an older cairn)",
        ));
    };
    if crate::builtin::find(&manifest.plugin).is_none() {
        return Err(missing(&format!(
            "its plugin `{}` is not built in (a .wasm plugin is found through the config)",
            manifest.plugin
        )));
    }
    let (plugin, info) = session
        .plugin(&manifest.plugin, crate::runtime::PluginKind::Source)
        .await?;
    tracing::info!(
        "source `{}` is not in {}: restoring it with plugin `{}` and the options its snapshot recorded on {}",
        manifest.source,
        session.config.path.display(),
        manifest.plugin,
        manifest.hostname
    );
    Ok(PreparedSource {
        name: manifest.source.clone(),
        plugin,
        info,
        options: options.clone(),
        grants: Grants::default(),
        timeout: crate::config::DEFAULT_SOURCE_TIMEOUT,
        changed_files: Default::default(),
    })
}

async fn restore_source(
    session: &Session,
    repo: &Indexed,
    manifest: &SourceSnapshot,
    target: &str,
    options: &RestoreOptions,
) -> Result<Present> {
    let flags = options.flags();
    let mut prepared = prepare_for(session, manifest).await?;
    let guest_target = grant_target(
        prepared.info.restore_target,
        target,
        flags.force,
        &mut prepared.grants,
    )?;
    let mut instance = session
        .runtime
        .instantiate_source(
            &prepared.plugin,
            &prepared.name,
            Arc::new(prepared.grants.clone()),
        )
        .await?;
    // Files are looked for only in a directory target: where a plugin puts an item in a
    // directory is its path there; a file target is one database, written anew.
    let resume_in =
        (options.resume && Path::new(&guest_target).is_dir()).then(|| PathBuf::from(&guest_target));
    let (replay, present) = resumed_replay_of(repo, manifest, resume_in.as_deref()).await?;
    if present.files > 0 {
        tracing::info!(
            "{} file(s), {}, already whole in {guest_target}: kept",
            present.files,
            human_bytes(present.bytes)
        );
    }
    let replay = replay
        .with_flags(flags)
        .with_named_flags(options.named_flags());
    instance
        .restore(&prepared.options, replay, &guest_target, prepared.timeout)
        .await?;
    Ok(present)
}
