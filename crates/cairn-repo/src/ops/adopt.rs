//! Adoption: indexes the packs a killed backup uploaded but never indexed, from the packs'
//! own headers, so that the next backup reuses their chunks instead of uploading them again.
//!
//! A backup adopts only when it is sure the packs are a dead run's: a run on this machine
//! ended without removing its record (see [`crate::writers::Registration`]), and no other
//! writer may be running anywhere (a running backup's fresh packs are unindexed too, and
//! it indexes them itself). Packs are listed before the writers are, so a pack of a backup
//! that registers later cannot be among them. Packs a prune marker condemns are left to
//! prune. `cairn repair index` adopts whatever the state of the writers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::check::verify_pack;
use super::repair::Unreadable;
use crate::index::{Index, IndexFile, IndexedPack};
use crate::pack::{self, PackId};
use crate::writers::Registration;
use crate::{RepoResult, Repository};

/// What reading a set of unindexed packs found.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    /// Packs whose bytes match their name, ready to be indexed.
    pub adopted: Vec<IndexedPack>,
    /// Packs whose bytes do not: `repair packs` salvages what they hold.
    pub unreadable: Vec<Unreadable>,
}

/// Reads each of `packs` (id, size) from storage and its header.
pub(super) async fn read(
    repo: &Repository,
    packs: impl IntoIterator<Item = (PackId, u64)>,
) -> RepoResult<Orphans> {
    let mut orphans = Orphans::default();
    for (id, size) in packs {
        let name = id.object_name();
        let bytes = repo.backend().get(&name).await?;
        match verify_pack(id, &bytes).and_then(|()| pack::read_header(repo.keys(), &bytes)) {
            Ok(entries) => orphans.adopted.push(IndexedPack::new(id, size, &entries)),
            Err(e) if e.is_damage() => orphans.unreadable.push(Unreadable {
                object: name,
                reason: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(orphans)
}

/// What a backup adopted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    pub packs: usize,
    pub bytes: u64,
}

/// Indexes the packs an interrupted run on this machine left (see the module docs), when
/// `registration` follows one and no other writer may run. `indexed` is the index the
/// backup loaded, `condemned` the packs of the markers it saw.
pub async fn after_interrupted_run(
    repo: &Arc<Repository>,
    registration: &Registration,
    indexed: &Index,
    condemned: &HashSet<PackId>,
) -> RepoResult<Adopted> {
    if !registration.follows_an_interrupted_run() {
        return Ok(Adopted::default());
    }
    let known: HashSet<PackId> = indexed.packs().map(|(id, _)| id).collect();
    let unindexed: HashMap<PackId, u64> = super::stored_packs(repo)
        .await?
        .into_iter()
        .filter(|(id, _)| !known.contains(id) && !condemned.contains(id))
        .collect();
    if unindexed.is_empty() || registration.others_may_run().await? {
        return Ok(Adopted::default());
    }
    let orphans = read(repo, unindexed).await?;
    for damaged in &orphans.unreadable {
        tracing::warn!(
            "{} (left by an interrupted backup) is damaged and not reused: {}; `cairn repair packs` salvages what it holds",
            damaged.object,
            damaged.reason
        );
    }
    if orphans.adopted.is_empty() {
        return Ok(Adopted::default());
    }
    let adopted = Adopted {
        packs: orphans.adopted.len(),
        bytes: orphans.adopted.iter().map(|p| p.size).sum(),
    };
    repo.write_index_file(&IndexFile {
        version: 1,
        packs: orphans.adopted,
        supersedes: Vec::new(),
    })
    .await?;
    Ok(adopted)
}
