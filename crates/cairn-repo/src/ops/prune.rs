//! Prune: removes data no snapshot needs, in two phases, so a backup running at the same
//! time, on this host or another, never loses data.
//!
//! Phase 1 *condemns* packs: those no snapshot references (and unindexed leftovers of
//! interrupted backups), and partly used ones after copying their live chunks into new
//! packs (repacking). It writes a prune marker and deletes nothing. From then on backups
//! do not reuse chunks of condemned packs.
//!
//! Phase 2, in a later prune once the grace period has passed and no running backup could
//! depend on the marker (see [`crate::writers`]), deletes a condemned pack only if every
//! chunk of it that a snapshot now references (a snapshot written meanwhile by a backup
//! that started before the marker) also lives in a pack that is not condemned; otherwise
//! the pack is kept. Index files naming deleted packs are rewritten first, so the index
//! never names a missing pack.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use serde::Serialize;

use crate::changes;
use crate::crypto::ChunkId;
use crate::index::{IndexFile, IndexedPack};
use crate::meta::{self, MetaKind};
use crate::pack::{PackBuilder, PackId};
use crate::read::{ChunkReader, ItemStream};
use crate::writers::{self, Registration};
use crate::{Indexed, PruneMarker, RepoError, RepoResult, Repository};

pub struct PruneOptions {
    /// How old a marker must be before its packs are deleted. Safety does not depend on
    /// it (running backups are respected whatever it is); it is the window in which a
    /// forgotten snapshot's data can still be recovered by hand.
    pub grace: chrono::Duration,
    /// Report what would happen; change nothing.
    pub dry_run: bool,
}

/// A pack whose live chunks make up less than this share of its bytes is repacked.
const REPACK_BELOW: f64 = 0.5;

#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Phase 2: packs deleted now, and the bytes that freed.
    pub packs_deleted: usize,
    pub bytes_freed: u64,
    /// Condemned packs a newer snapshot turned out to need: kept.
    pub packs_kept: usize,
    /// Phase 1: packs condemned now (deleted by a prune after the grace period).
    pub packs_condemned: usize,
    pub bytes_condemned: u64,
    /// Partly used packs whose live chunks were copied into new packs.
    pub packs_repacked: usize,
    pub bytes_repacked: u64,
    /// Condemned packs still within their grace period.
    pub packs_waiting: usize,
    /// Condemned packs past their grace period, kept because a backup that was running
    /// may depend on them (named in `blocking_backups`).
    pub packs_waiting_for_backups: usize,
    pub blocking_backups: Vec<String>,
    /// Backups judged dead (silent for three heartbeats) and evicted: they cannot commit.
    pub writers_evicted: Vec<String>,
    pub index_files_rewritten: usize,
    /// Change chains whose base snapshot was forgotten (they restore nothing), deleted
    /// with their objects.
    pub chains_deleted: usize,
    pub change_objects_deleted: usize,
}

/// Deletes the change chains whose base snapshot is gone. Chains are listed before
/// snapshots: a chain's start is written after its base, so a chain seen here has a base
/// the snapshot listing sees, unless it was forgotten.
async fn prune_chains(repo: &Repository, dry_run: bool) -> RepoResult<(usize, usize)> {
    let chains = changes::chains(repo, None).await?;
    if chains.is_empty() {
        return Ok((0, 0));
    }
    let bases: HashSet<String> = repo
        .snapshots()
        .await?
        .into_iter()
        .map(|(_, m)| m.snapshot)
        .collect();
    let (mut deleted, mut objects) = (0, 0);
    for chain in chains.iter().filter(|c| !bases.contains(&c.start.base)) {
        deleted += 1;
        objects += if dry_run {
            chain.stored
        } else {
            changes::delete_chain(repo, &chain.start.chain).await?
        };
    }
    Ok((deleted, objects))
}

/// Prunes (see the module docs), holding the maintenance lock unless it is a dry run: two
/// prunes side by side would condemn, repack and delete the same packs twice.
pub async fn run(
    repo: &std::sync::Arc<Repository>,
    options: &PruneOptions,
) -> RepoResult<PruneReport> {
    if options.dry_run {
        return run_locked(repo, options, None).await;
    }
    let lock = Registration::lock_maintenance(repo, "prune").await?;
    let result = run_locked(repo, options, Some(&lock)).await;
    lock.release_after(result).await
}

async fn run_locked(
    repo: &std::sync::Arc<Repository>,
    options: &PruneOptions,
    lock: Option<&Registration>,
) -> RepoResult<PruneReport> {
    let mut report = PruneReport {
        dry_run: options.dry_run,
        ..Default::default()
    };
    // The order matters (see crate::writers): markers, then running backups, then what
    // the repository references. A backup that registers after this prune looked is sure
    // to see every marker listed here, or to load an index already rewritten without its
    // packs.
    let markers = repo.prune_markers().await?;
    let writers = writers::resolve(repo, !options.dry_run).await?;
    report.writers_evicted = writers.evicted.clone();
    let intact = |e: RepoError| {
        e.within("prune needs every index file and snapshot intact, and deleted nothing (`cairn check` lists the damage)")
    };
    let indexed = repo.load_index().await.map_err(intact)?;
    let referenced = referenced_chunks(&indexed).await.map_err(intact)?;
    let index_files = read_index_files(repo).await?;
    let mut pack_chunks: HashMap<PackId, Vec<ChunkId>> = HashMap::new();
    for (_, file) in &index_files {
        for pack in &file.packs {
            let id = PackId::from_hex(&pack.id)?;
            let chunks = pack_chunks.entry(id).or_default();
            for c in &pack.chunks {
                chunks.push(ChunkId::from_hex(&c.id)?);
            }
        }
    }
    let stored = super::stored_packs(repo).await?;
    let condemned: HashSet<PackId> = markers
        .iter()
        .flat_map(|(_, m)| m.packs.iter())
        .filter_map(|p| PackId::from_hex(p).ok())
        .collect();

    // Phase 2: markers past their grace period that no running backup could depend on.
    let now = Utc::now();
    let (due, waiting): (Vec<_>, Vec<_>) = markers
        .into_iter()
        .partition(|(_, m)| now - m.time >= options.grace);
    report.packs_waiting = waiting.iter().map(|(_, m)| m.packs.len()).sum();
    let mut blocking: HashSet<String> = HashSet::new();
    let (due, held): (Vec<_>, Vec<_>) = due.into_iter().partition(|(name, _)| {
        let by = writers.blocking(name);
        let free = by.is_empty();
        blocking.extend(by);
        free
    });
    report.packs_waiting_for_backups = held.iter().map(|(_, m)| m.packs.len()).sum();
    report.blocking_backups = blocking.into_iter().collect();
    report.blocking_backups.sort();
    // Where else each referenced chunk lives, outside condemned packs.
    let safe_copies: HashSet<ChunkId> = pack_chunks
        .iter()
        .filter(|(pack, _)| !condemned.contains(pack) && stored.contains_key(pack))
        .flat_map(|(_, chunks)| chunks.iter().copied())
        .collect();
    let mut delete: HashSet<PackId> = HashSet::new();
    for (_, marker) in &due {
        for hex in &marker.packs {
            let Ok(pack) = PackId::from_hex(hex) else {
                continue;
            };
            if !stored.contains_key(&pack) {
                continue;
            }
            let needed = pack_chunks
                .get(&pack)
                .into_iter()
                .flatten()
                .any(|c| referenced.contains(c) && !safe_copies.contains(c));
            if needed {
                report.packs_kept += 1;
            } else {
                delete.insert(pack);
            }
        }
    }
    report.packs_deleted = delete.len();
    report.bytes_freed = delete.iter().map(|p| stored[p]).sum();

    // Phase 1: condemn what no snapshot needs among packs not condemned yet.
    let mut condemn: Vec<PackId> = Vec::new();
    let mut repack: Vec<PackId> = Vec::new();
    for (&pack, &size) in &stored {
        if condemned.contains(&pack) {
            continue;
        }
        // An unindexed pack is most likely a running backup's, not yet indexed; it is
        // condemned (as a leftover) only when no backup runs.
        if writers.any() && !pack_chunks.contains_key(&pack) {
            continue;
        }
        let chunks = pack_chunks
            .get(&pack)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let live = chunks.iter().filter(|c| referenced.contains(c)).count();
        if live == 0 {
            condemn.push(pack);
            report.bytes_condemned += size;
        } else if (live as f64) < REPACK_BELOW * chunks.len() as f64 {
            repack.push(pack);
        }
    }
    if options.dry_run {
        report.packs_condemned = condemn.len() + repack.len();
        report.packs_repacked = repack.len();
        return Ok(report);
    }

    // Repack before condemning, so every live chunk has a copy outside condemned packs.
    if !repack.is_empty() {
        // Chunks that another pack staying as it is already holds are not copied again:
        // a prune killed after it repacked, before it wrote its marker, left such copies.
        let repacking: HashSet<PackId> = repack.iter().copied().collect();
        let mut live: HashSet<ChunkId> = repack
            .iter()
            .flat_map(|pack| pack_chunks.get(pack).into_iter().flatten())
            .filter(|c| referenced.contains(c))
            .copied()
            .collect();
        for (pack, chunks) in &pack_chunks {
            if stored.contains_key(pack)
                && !condemned.contains(pack)
                && !repacking.contains(pack)
                && !delete.contains(pack)
            {
                for chunk in chunks {
                    live.remove(chunk);
                }
            }
        }
        let (written, files) = repack_live(&indexed, &repack, &pack_chunks, &live).await?;
        report.packs_repacked = repack.len();
        report.bytes_repacked = written;
        report.index_files_rewritten += files;
        for pack in &repack {
            report.bytes_condemned += stored[pack];
        }
        condemn.extend(repack);
    }
    report.packs_condemned = condemn.len();

    if !delete.is_empty() {
        // A prune that was frozen while another took the lock from it stops here.
        if let Some(lock) = lock {
            lock.confirm().await?;
        }
        report.index_files_rewritten += drop_from_index(repo, &index_files, &delete).await?;
        for pack in &delete {
            repo.backend()
                .delete(&pack.object_name())
                .await
                .map_err(|e| {
                    RepoError::from(e).within(format!("deleting pack {}", pack.to_hex()))
                })?;
        }
    }
    for (name, _) in &due {
        repo.backend().delete(name).await?;
    }
    let (chains, objects) = prune_chains(repo, options.dry_run).await?;
    (report.chains_deleted, report.change_objects_deleted) = (chains, objects);
    if !condemn.is_empty() {
        let marker = PruneMarker {
            version: 1,
            time: Utc::now(),
            packs: condemn.iter().map(PackId::to_hex).collect(),
        };
        let sealed = meta::seal(repo.keys(), MetaKind::Prune, &marker);
        let name = format!("prune/{}", crate::snapshot::new_snapshot_id());
        repo.backend().put(&name, sealed.into(), true).await?;
    }
    Ok(report)
}

/// Every chunk a snapshot needs: its item list's chunks and its items' chunks.
async fn referenced_chunks(repo: &Indexed) -> RepoResult<HashSet<ChunkId>> {
    let mut reader = ChunkReader::new(repo);
    let mut referenced = HashSet::new();
    for (name, manifest) in repo.snapshots().await? {
        referenced.extend(manifest.tree.iter().copied());
        let unreadable = |e: RepoError| {
            e.within(format!(
                "reading the items of {name}: prune needs every snapshot readable (run cairn check)"
            ))
        };
        let mut items = ItemStream::new(&mut reader, &manifest);
        while let Some(item) = items.next().await.map_err(unreadable)? {
            referenced.extend(item.chunks.iter().map(|(id, _)| *id));
        }
    }
    Ok(referenced)
}

async fn read_index_files(repo: &Repository) -> RepoResult<Vec<(String, IndexFile)>> {
    let mut files = Vec::new();
    for (name, _) in repo.index_files().await? {
        let file = repo.read_index_file(&name).await?;
        files.push((name, file));
    }
    Ok(files)
}

/// Copies the chunks of `packs` that are in `live` into new packs and indexes them;
/// returns the bytes written and the index files written.
async fn repack_live(
    repo: &Indexed,
    packs: &[PackId],
    pack_chunks: &HashMap<PackId, Vec<ChunkId>>,
    live: &HashSet<ChunkId>,
) -> RepoResult<(u64, usize)> {
    let mut reader = ChunkReader::new(repo);
    let mut builder = PackBuilder::with_capacity(repo.config().pack_size as usize);
    let mut landed = Vec::new();
    let mut written = 0u64;
    let mut copied = HashSet::new();
    for pack in packs {
        for id in pack_chunks.get(pack).into_iter().flatten() {
            if !live.contains(id) || !copied.insert(*id) {
                continue;
            }
            // Sealed bytes move as they are: no decryption, no recompression.
            let (sealed, loc) = reader.fetch_sealed(id).await?;
            builder.add(*id, loc.kind, &sealed, loc.raw_length);
            if builder.len() >= repo.config().pack_size as usize {
                let full = std::mem::replace(
                    &mut builder,
                    PackBuilder::with_capacity(repo.config().pack_size as usize),
                );
                written += upload(repo, full, &mut landed).await?;
            }
        }
    }
    if !builder.is_empty() {
        written += upload(repo, builder, &mut landed).await?;
    }
    if landed.is_empty() {
        return Ok((written, 0));
    }
    repo.write_index_file(&IndexFile {
        version: 1,
        packs: landed,
        supersedes: Vec::new(),
    })
    .await?;
    Ok((written, 1))
}

pub(super) async fn upload(
    repo: &Repository,
    builder: PackBuilder,
    landed: &mut Vec<IndexedPack>,
) -> RepoResult<u64> {
    let (id, bytes, entries) = builder.finish(repo.keys());
    let size = bytes.len() as u64;
    repo.put_content_addressed(&id.object_name(), bytes).await?;
    landed.push(IndexedPack::new(id, size, &entries));
    Ok(size)
}

/// Rewrites the index files that name any of `packs` without them: the new file lands
/// first (superseding the old ones), then the old ones go. Returns how many were replaced.
pub(super) async fn drop_from_index(
    repo: &Repository,
    files: &[(String, IndexFile)],
    packs: &HashSet<PackId>,
) -> RepoResult<usize> {
    let names_pack = |file: &IndexFile| {
        file.packs
            .iter()
            .any(|p| PackId::from_hex(&p.id).is_ok_and(|id| packs.contains(&id)))
    };
    let affected: Vec<&(String, IndexFile)> = files.iter().filter(|(_, f)| names_pack(f)).collect();
    if affected.is_empty() {
        return Ok(0);
    }
    let survivors: Vec<IndexedPack> = affected
        .iter()
        .flat_map(|(_, f)| f.packs.iter())
        .filter(|p| PackId::from_hex(&p.id).is_ok_and(|id| !packs.contains(&id)))
        .cloned()
        .collect();
    let superseded: Vec<String> = affected.iter().map(|(n, _)| n.clone()).collect();
    if !survivors.is_empty() {
        repo.write_index_file(&IndexFile {
            version: 1,
            packs: survivors,
            supersedes: superseded.clone(),
        })
        .await?;
    }
    for name in &superseded {
        repo.backend().delete(name).await?;
    }
    Ok(superseded.len())
}
