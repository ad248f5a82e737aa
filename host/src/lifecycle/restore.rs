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
use super::{PreparedSource, Session};
use crate::repo::Indexed;
use crate::repo::read::{ChunkReader, read_items};
use crate::repo::snapshot::SourceSnapshot;
use crate::runtime::pipeline::replay::{Replay, RestoreFlags};
use crate::runtime::plugin_api::RestoreTarget;
use crate::runtime::sandbox::grants::Grants;

pub struct RestoreOptions {
    pub snapshot: String,
    pub target: String,
    pub source: Option<String>,
    pub force: bool,
    /// Drop the target database's existing objects first.
    pub clean: bool,
    /// Allow the target to be the very database the snapshot was taken from.
    pub into_live: bool,
    pub progress: bool,
}

impl RestoreOptions {
    fn flags(&self) -> RestoreFlags {
        RestoreFlags {
            force: self.force,
            clean: self.clean,
            into_live: self.into_live,
            keep: false,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub sources: Vec<RestoredSource>,
}

#[derive(Debug, Serialize)]
pub struct RestoredSource {
    pub name: String,
    pub target: String,
    pub items: u64,
    pub bytes: u64,
    pub duration_secs: f64,
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
        restore_source(session, &repo, manifest, &target, options.flags())
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
            duration_secs: started.elapsed().as_secs_f64(),
        });
    }
    progress.finish();
    Ok(RestoreReport {
        snapshot,
        sources: restored,
    })
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
    let mut reader = ChunkReader::new(repo);
    let items = read_items(&mut reader, manifest)
        .await
        .context("reading the snapshot's item list")?;
    let annotations = manifest
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Replay::new(
        ChunkReader::new(repo),
        Some(ChunkReader::new(repo)),
        items,
        annotations,
    ))
}

/// The configured source a manifest was taken from, checked to use the same plugin.
pub async fn prepare_for(session: &Session, manifest: &SourceSnapshot) -> Result<PreparedSource> {
    let source = session.config.source(&manifest.source).with_context(|| {
        format!(
            "source `{}` is not in {}: add its [[source]] section (plugin `{}`) so cairn knows how to restore it",
            manifest.source,
            session.config.path.display(),
            manifest.plugin
        )
    })?;
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

async fn restore_source(
    session: &Session,
    repo: &Indexed,
    manifest: &SourceSnapshot,
    target: &str,
    flags: RestoreFlags,
) -> Result<()> {
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
    let replay = replay_of(repo, manifest).await?.with_flags(flags);
    instance
        .restore(&prepared.options, replay, &guest_target, prepared.timeout)
        .await?;
    Ok(())
}
