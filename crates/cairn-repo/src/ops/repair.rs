//! Repair: puts a damaged repository back into a state every command reads, saving what is
//! intact and naming what is lost. Three steps, each safe beside running backups, run in
//! this order when several are needed:
//!
//! - [`packs`] reads every pack; one whose bytes no longer match its name has the chunks
//!   that still open copied into new packs, and is then dropped from the index and deleted.
//! - [`index`] rebuilds the index from the packs: damaged index files are replaced by one
//!   naming the packs only they named (read from the packs' own headers), packs no index
//!   names are adopted, and packs the index names but storage lost are dropped from it.
//! - [`snapshots`] rewrites each snapshot whose data is partly gone without the items that
//!   lost data (tagged `repaired`, the loss annotated), and removes manifests that are
//!   damaged or keep nothing.
//!
//! Objects are read from storage, never the local cache, as [`super::check`] does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::check::read_verified;
use super::prune::{drop_from_index, upload};
use super::stored_packs;
use crate::chunker::Chunking;
use crate::index::IndexFile;
use crate::meta::MetaKind;
use crate::pack::{self, ChunkKind, PackBuilder, PackEntry, PackId};
use crate::read::ChunkReader;
use crate::snapshot::SourceSnapshot;
use crate::tree::{ItemKind, ItemRecord};
use crate::write::{ChunkWriter, ContentWriter};
use crate::writers::{self, Registration};
use crate::{RepoError, RepoResult, Repository};

/// The tag a rewritten snapshot carries, so that `snapshots` shows which lost data.
pub const REPAIRED_TAG: &str = "repaired";

/// An object repair could not read, and why.
#[derive(Debug, Serialize)]
pub struct Unreadable {
    pub object: String,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct IndexRepair {
    pub dry_run: bool,
    /// Index files that failed authentication or did not decode: removed, after a new
    /// index file names what they may have named.
    pub index_files_removed: Vec<Unreadable>,
    /// Packs no intact index file named (a backup interrupted before it indexed them, or
    /// packs a damaged index file named), now indexed from their own headers.
    pub packs_adopted: Vec<String>,
    /// Packs no index names whose bytes do not match their name: `repair packs` salvages
    /// what they hold.
    pub packs_unreadable: Vec<Unreadable>,
    /// Packs the index named that storage no longer has: dropped from the index.
    pub packs_missing: Vec<String>,
    pub index_files_written: usize,
}

/// Rebuilds the index from the packs (see the module docs).
pub async fn index(repo: &Arc<Repository>, dry_run: bool) -> RepoResult<IndexRepair> {
    exclusively(repo, dry_run, index_locked(repo, dry_run)).await
}

async fn index_locked(repo: &Arc<Repository>, dry_run: bool) -> RepoResult<IndexRepair> {
    let mut report = IndexRepair {
        dry_run,
        ..Default::default()
    };
    let (intact, damaged) = read_index_files(repo).await?;
    report.index_files_removed = damaged;
    let indexed: HashSet<PackId> = intact
        .iter()
        .flat_map(|(_, f)| f.packs.iter())
        .filter_map(|p| PackId::from_hex(&p.id).ok())
        .collect();
    let stored = stored_packs(repo).await?;

    let missing: HashSet<PackId> = indexed
        .iter()
        .filter(|p| !stored.contains_key(p))
        .copied()
        .collect();
    report.packs_missing = sorted_names(&missing);

    let orphans = super::adopt::read(
        repo,
        stored
            .iter()
            .filter(|(id, _)| !indexed.contains(id))
            .map(|(&id, &size)| (id, size)),
    )
    .await?;
    let adopted = orphans.adopted;
    report.packs_adopted = adopted
        .iter()
        .filter_map(|p| PackId::from_hex(&p.id).ok())
        .map(|id| id.object_name())
        .collect();
    report.packs_unreadable = orphans.unreadable;
    report.packs_adopted.sort();
    if dry_run {
        return Ok(report);
    }

    if !missing.is_empty() {
        report.index_files_written += drop_from_index(repo, &intact, &missing).await?;
    }
    let superseded: Vec<String> = report
        .index_files_removed
        .iter()
        .map(|u| u.object.clone())
        .collect();
    if !adopted.is_empty() {
        // Lands before the damaged files go, so nothing they could still name is ever
        // unindexed for longer than it was.
        repo.write_index_file(&IndexFile {
            version: 1,
            packs: adopted,
            supersedes: superseded.clone(),
        })
        .await?;
        report.index_files_written += 1;
    }
    for name in &superseded {
        repo.backend().delete(name).await?;
    }
    Ok(report)
}

/// One pack `repair packs` found damaged.
#[derive(Debug, Serialize)]
pub struct DamagedPack {
    pub pack: String,
    pub reason: String,
    /// Chunks that still opened and checked, copied into new packs.
    pub chunks_salvaged: usize,
    /// Chunks that did not: snapshots that need them lose those items (`repair snapshots`).
    pub chunks_lost: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct PackRepair {
    pub dry_run: bool,
    pub packs_read: usize,
    pub damaged: Vec<DamagedPack>,
    pub index_files_written: usize,
}

impl PackRepair {
    pub fn chunks_lost(&self) -> usize {
        self.damaged.iter().map(|d| d.chunks_lost).sum()
    }
}

/// Reads every pack; salvages and removes the damaged ones (see the module docs).
pub async fn packs(
    repo: &Arc<Repository>,
    dry_run: bool,
    phase: &(dyn Fn(&str) + Sync),
) -> RepoResult<PackRepair> {
    exclusively(repo, dry_run, packs_locked(repo, dry_run, phase)).await
}

async fn packs_locked(
    repo: &Arc<Repository>,
    dry_run: bool,
    phase: &(dyn Fn(&str) + Sync),
) -> RepoResult<PackRepair> {
    let mut report = PackRepair {
        dry_run,
        ..Default::default()
    };
    let (intact, damaged_files) = read_index_files(repo).await?;
    if let Some(file) = damaged_files.first() {
        return Err(RepoError::Other(format!(
            "index file {} is damaged ({}): run `cairn repair index` first, so that every pack's chunks are known",
            file.object, file.reason
        )));
    }
    let mut entries_of: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for (_, file) in &intact {
        for pack in &file.packs {
            entries_of
                .entry(PackId::from_hex(&pack.id)?)
                .or_default()
                .extend(pack.entries()?);
        }
    }
    let stored = stored_packs(repo).await?;
    let mut names: Vec<PackId> = stored.keys().copied().collect();
    names.sort();

    let capacity = repo.config().pack_size as usize;
    let mut builder = PackBuilder::with_capacity(capacity);
    let mut landed = Vec::new();
    let mut salvaged = HashSet::new();
    let mut remove: HashSet<PackId> = HashSet::new();
    let total = names.len();
    for (n, id) in names.into_iter().enumerate() {
        phase(&format!("reading packs: {n}/{total}"));
        report.packs_read += 1;
        let bytes = repo.backend().get(&id.object_name()).await?;
        if PackId::of(&bytes) == id {
            continue;
        }
        // The index says where each chunk sat; a pack no index names has only its header.
        let entries = match entries_of.get(&id) {
            Some(entries) => entries.clone(),
            None => pack::read_header(repo.keys(), &bytes).unwrap_or_default(),
        };
        let keys = repo.keys().clone();
        let opened: Vec<(PackEntry, Option<Vec<u8>>)> = tokio::task::spawn_blocking(move || {
            entries
                .into_iter()
                .map(|e| {
                    let sealed =
                        bytes.get(e.offset as usize..e.offset as usize + e.length as usize);
                    let sound = sealed
                        .filter(|s| pack::decode_chunk(&keys, &e.id, s, e.raw_length).is_ok());
                    (e, sound.map(<[u8]>::to_vec))
                })
                .collect()
        })
        .await
        .map_err(|e| RepoError::Other(format!("salvage task: {e}")))?;
        let mut damage = DamagedPack {
            pack: id.object_name(),
            reason: "contents do not match the pack's name".into(),
            chunks_salvaged: 0,
            chunks_lost: 0,
        };
        for (entry, sealed) in opened {
            match sealed {
                Some(sealed) => {
                    damage.chunks_salvaged += 1;
                    if !dry_run && salvaged.insert(entry.id) {
                        builder.add(entry.id, entry.kind, &sealed, entry.raw_length);
                    }
                }
                None => damage.chunks_lost += 1,
            }
            if builder.len() >= capacity {
                let full = std::mem::replace(&mut builder, PackBuilder::with_capacity(capacity));
                upload(repo, full, &mut landed).await?;
            }
        }
        report.damaged.push(damage);
        remove.insert(id);
    }
    if dry_run || remove.is_empty() {
        return Ok(report);
    }
    if !builder.is_empty() {
        upload(repo, builder, &mut landed).await?;
    }
    // The salvaged copies are indexed before the damaged packs leave the index.
    if !landed.is_empty() {
        repo.write_index_file(&IndexFile {
            version: 1,
            packs: landed,
            supersedes: Vec::new(),
        })
        .await?;
        report.index_files_written += 1;
    }
    report.index_files_written += drop_from_index(repo, &intact, &remove).await?;
    for id in &remove {
        repo.backend().delete(&id.object_name()).await?;
    }
    Ok(report)
}

/// One snapshot manifest `repair snapshots` rewrote or removed.
#[derive(Debug, Serialize)]
pub struct RepairedSnapshot {
    /// The manifest object as it was.
    pub object: String,
    /// Its snapshot id and source, when the manifest itself could be read.
    pub snapshot: Option<String>,
    pub source: Option<String>,
    /// Removed rather than rewritten: the manifest is damaged, or nothing restorable is
    /// left in it.
    pub removed: bool,
    /// The manifest written in its place (not in a dry run).
    pub rewritten_as: Option<String>,
    pub reason: String,
    pub items_kept: usize,
    /// Paths of the items whose data is gone.
    pub items_lost: Vec<String>,
    /// Chunks of the item list itself that are gone: the items they held are lost
    /// without their names.
    pub item_list_chunks_lost: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct SnapshotRepair {
    pub dry_run: bool,
    pub snapshots_checked: usize,
    pub repaired: Vec<RepairedSnapshot>,
}

/// Rewrites or removes the snapshots that need data the index does not have (see the
/// module docs). A chunk the index names is taken as readable: `repair packs` first
/// drops the chunks that are not.
pub async fn snapshots(repo: &Arc<Repository>, dry_run: bool) -> RepoResult<SnapshotRepair> {
    exclusively(repo, dry_run, snapshots_locked(repo, dry_run)).await
}

async fn snapshots_locked(repo: &Arc<Repository>, dry_run: bool) -> RepoResult<SnapshotRepair> {
    let mut report = SnapshotRepair {
        dry_run,
        ..Default::default()
    };
    // New item lists are written as a backup writes them: registered, so that no prune
    // deletes what they reference before they land.
    let registration = match dry_run {
        true => None,
        false => Some(Registration::register(repo, writers::DEFAULT_HEARTBEAT).await?),
    };
    let result = async {
        // What is lost is judged by every intact index file; new item lists deduplicate
        // as a backup's do, against an index without the packs prune condemned.
        let readable = repo.load_readable_index().await?;
        let for_writing = match &registration {
            Some(r) => Some(repo.load_index_for_backup(r).await?),
            None => None,
        };
        let mut reader = ChunkReader::new(&readable);
        let mut names: Vec<String> = repo
            .backend()
            .list("snapshots/")
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        names.sort();
        for name in names {
            report.snapshots_checked += 1;
            let opened = read_verified::<SourceSnapshot>(repo, &name, MetaKind::Snapshot).await;
            let manifest = match opened {
                Ok(m) => m,
                Err(e) if e.is_damage() => {
                    report.repaired.push(RepairedSnapshot {
                        object: name.clone(),
                        snapshot: None,
                        source: None,
                        removed: true,
                        rewritten_as: None,
                        reason: format!("the manifest is damaged: {e}"),
                        items_kept: 0,
                        items_lost: Vec::new(),
                        item_list_chunks_lost: 0,
                    });
                    if !dry_run {
                        repo.backend().delete(&name).await?;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let salvage = salvage_items(&mut reader, &manifest).await?;
            let (kept, lost): (Vec<ItemRecord>, Vec<ItemRecord>) =
                salvage.items.into_iter().partition(|item| {
                    item.chunks
                        .iter()
                        .all(|(id, _)| readable.index().contains(id))
                });
            if lost.is_empty() && salvage.chunks_lost == 0 {
                continue;
            }
            let keeps_data = kept.iter().any(|i| i.kind != ItemKind::Dir);
            let mut repaired = RepairedSnapshot {
                object: name.clone(),
                snapshot: Some(manifest.snapshot.clone()),
                source: Some(manifest.source.clone()),
                removed: !keeps_data,
                rewritten_as: None,
                reason: String::new(),
                items_kept: kept.len(),
                items_lost: lost.into_iter().map(|i| i.path).collect(),
                item_list_chunks_lost: salvage.chunks_lost,
            };
            repaired.reason = match (repaired.items_lost.len(), salvage.chunks_lost) {
                (n, 0) => format!("{n} item(s) need data that is gone"),
                (0, c) => format!("{c} chunk(s) of its item list are gone"),
                (n, c) => format!(
                    "{n} item(s) need data that is gone, and {c} chunk(s) of its item list are gone"
                ),
            };
            if !keeps_data {
                repaired.reason.push_str("; nothing restorable is left");
            }
            if !dry_run {
                if keeps_data {
                    let (Some(registration), Some(for_writing)) = (&registration, &for_writing)
                    else {
                        unreachable!("registered unless a dry run");
                    };
                    let rewritten = rewrite(for_writing, &manifest, &kept, &repaired).await?;
                    registration.confirm().await?;
                    repaired.rewritten_as = Some(repo.write_snapshot(&rewritten).await?);
                }
                repo.backend().delete(&name).await?;
            }
            report.repaired.push(repaired);
        }
        Ok(())
    }
    .await;
    let result = match registration {
        Some(registration) => registration.release_after(result).await,
        None => result,
    };
    result.map(|()| report)
}

/// The items of an item list that can still be read.
struct Salvage {
    items: Vec<ItemRecord>,
    chunks_lost: usize,
}

/// Reads an item list chunk by chunk. Where a chunk is gone, the line it cut on either
/// side is dropped with it: an item is kept only when its whole line was read.
async fn salvage_items(reader: &mut ChunkReader, manifest: &SourceSnapshot) -> RepoResult<Salvage> {
    let mut salvage = Salvage {
        items: Vec::new(),
        chunks_lost: 0,
    };
    // Runs of consecutive readable chunks: lines never join across a lost chunk. A line
    // torn by one is a prefix without its closing brace or a suffix without its opening
    // one (an item has no nested objects), so it fails to parse and is dropped.
    let mut runs: Vec<Vec<u8>> = vec![Vec::new()];
    for id in &manifest.tree {
        match reader.read(id).await {
            Ok(bytes) => runs
                .last_mut()
                .expect("never empty")
                .extend_from_slice(&bytes),
            Err(e) if e.is_damage() => {
                salvage.chunks_lost += 1;
                runs.push(Vec::new());
            }
            Err(e) => return Err(e),
        }
    }
    for bytes in &runs {
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(item) = serde_json::from_slice::<ItemRecord>(line) {
                salvage.items.push(item);
            }
        }
    }
    Ok(salvage)
}

/// The manifest of `manifest`'s snapshot holding only `kept`, with a new item list.
async fn rewrite(
    indexed: &crate::Indexed,
    manifest: &SourceSnapshot,
    kept: &[ItemRecord],
    repaired: &RepairedSnapshot,
) -> RepoResult<SourceSnapshot> {
    let writer = Arc::new(ChunkWriter::start(indexed)?);
    let mut tree = ContentWriter::new(
        writer.clone(),
        Chunking::ContentDefined(indexed.config().chunker),
        ChunkKind::Tree,
    );
    for item in kept {
        tree.write(&item.to_line()).await?;
    }
    let (tree, _) = tree.finish().await?;
    writer.flush().await?;
    let mut rewritten = manifest.clone();
    rewritten.tree = tree.into_iter().map(|(id, _)| id).collect();
    rewritten.items = kept.len() as u64;
    rewritten.bytes = kept
        .iter()
        .filter(|i| matches!(i.kind, ItemKind::File | ItemKind::Data))
        .map(|i| i.size)
        .sum();
    if !rewritten.tags.iter().any(|t| t == REPAIRED_TAG) {
        rewritten.tags.push(REPAIRED_TAG.into());
    }
    let lost = repaired.items_lost.len();
    let mut note = format!("{lost} item(s) dropped by cairn repair");
    if repaired.item_list_chunks_lost > 0 {
        note.push_str(&format!(
            ", and those in {} lost chunk(s) of the item list",
            repaired.item_list_chunks_lost
        ));
    }
    note.push_str(&format!(" on {}", chrono::Utc::now().to_rfc3339()));
    rewritten.annotations.insert("repaired".into(), note);
    Ok(rewritten)
}

/// Runs `work` holding the maintenance lock (no prune or other repair beside it), unless
/// it is a dry run, which changes nothing.
async fn exclusively<T>(
    repo: &Arc<Repository>,
    dry_run: bool,
    work: impl Future<Output = RepoResult<T>>,
) -> RepoResult<T> {
    if dry_run {
        return work.await;
    }
    let lock = Registration::lock_maintenance(repo, "repair").await?;
    let result = work.await;
    lock.release_after(result).await
}

/// Every index file, read from storage: the intact ones, and the damaged with why.
async fn read_index_files(
    repo: &Repository,
) -> RepoResult<(Vec<(String, IndexFile)>, Vec<Unreadable>)> {
    let mut intact = Vec::new();
    let mut damaged = Vec::new();
    for (name, _) in repo.index_files().await? {
        let opened = read_verified::<IndexFile>(repo, &name, MetaKind::Index)
            .await
            .and_then(|file| {
                // An index file whose pack or chunk ids do not parse is as unusable.
                for pack in &file.packs {
                    PackId::from_hex(&pack.id)?;
                    pack.entries()?;
                }
                Ok(file)
            });
        match opened {
            Ok(file) => intact.push((name, file)),
            Err(e) if e.is_damage() => damaged.push(Unreadable {
                object: name,
                reason: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok((intact, damaged))
}

fn sorted_names(packs: &HashSet<PackId>) -> Vec<String> {
    let mut names: Vec<String> = packs.iter().map(PackId::object_name).collect();
    names.sort();
    names
}
