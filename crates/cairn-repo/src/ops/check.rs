//! Check: proves the repository is readable, reading storage directly (never the
//! local cache).
//!
//! Structure: every index file and snapshot manifest opens and matches its content name,
//! every item list decodes, every chunk a snapshot references is indexed, every indexed
//! pack exists with its indexed size. `--read-data`: every pack (or a random subset) is
//! downloaded, hashed against its name, its header compared with the index, and every
//! chunk opened, decompressed and checked against its id. Each problem names the object.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use crate::crypto::ChunkId;
use crate::index::{Index, IndexFile};
use crate::meta::{self, MetaKind};
use crate::pack::{self, PackId};
use crate::read::{ChunkReader, ItemStream};
use crate::snapshot::SourceSnapshot;
use crate::{RepoError, RepoResult, Repository};

pub struct CheckOptions {
    pub read_data: bool,
    /// Percentage of packs to read with `read_data` (100 for all).
    pub subset_percent: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
    pub index_files: usize,
    pub packs: usize,
    pub packs_read: usize,
    pub chunks: usize,
    pub snapshots: usize,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    pub object: String,
    pub message: String,
}

impl CheckReport {
    fn error(&mut self, object: impl Into<String>, message: impl std::fmt::Display) {
        self.errors.push(Problem {
            object: object.into(),
            message: message.to_string(),
        });
    }

    fn warning(&mut self, object: impl Into<String>, message: impl std::fmt::Display) {
        self.warnings.push(Problem {
            object: object.into(),
            message: message.to_string(),
        });
    }

    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Reads a content-addressed metadata object from storage (never the cache) and opens it:
/// bytes that do not hash to the name are damage, as is what fails to open.
pub(super) async fn read_verified<T: serde::de::DeserializeOwned>(
    repo: &Repository,
    name: &str,
    kind: MetaKind,
) -> RepoResult<T> {
    let bytes = repo.backend().get(name).await?;
    if name.rsplit('/').next() != Some(blake3::hash(&bytes).to_hex().as_str()) {
        return Err(RepoError::Corrupt(
            "contents do not match the name (damaged)".into(),
        ));
    }
    meta::open(repo.keys(), kind, &bytes)
}

/// Fails unless `bytes` hash to the pack's name, which proves them as written.
pub(super) fn verify_pack(id: PackId, bytes: &[u8]) -> RepoResult<()> {
    if PackId::of(bytes) != id {
        return Err(RepoError::Corrupt(
            "contents do not match the pack's name (damaged)".into(),
        ));
    }
    Ok(())
}

/// Checks `repo`, telling `phase` what it is doing as it goes (for a progress line).
pub async fn run(
    repo: &Arc<Repository>,
    options: &CheckOptions,
    phase: &(dyn Fn(&str) + Sync),
) -> RepoResult<CheckReport> {
    let backend = repo.backend().clone();
    let mut report = CheckReport::default();

    phase("checking index files");
    let mut index = Index::default();
    let mut index_of_pack: HashMap<PackId, String> = HashMap::new();
    for (name, _) in backend.list("index/").await? {
        report.index_files += 1;
        match read_verified::<IndexFile>(repo, &name, MetaKind::Index).await {
            Ok(file) => {
                for pack in &file.packs {
                    match (PackId::from_hex(&pack.id), pack.entries()) {
                        (Ok(id), Ok(entries)) => {
                            index.add_pack(id, pack.size, &entries);
                            index_of_pack.insert(id, name.clone());
                        }
                        (Err(e), _) | (_, Err(e)) => report.error(&name, e),
                    }
                }
            }
            Err(e) => report.error(&name, e),
        }
    }

    phase("checking packs");
    let stored: HashMap<String, u64> = backend.list("data/").await?.into_iter().collect();
    let indexed: Vec<(PackId, u64)> = index.packs().collect();
    report.packs = indexed.len();
    let indexed_names: HashSet<String> = indexed.iter().map(|(id, _)| id.object_name()).collect();
    for (id, size) in &indexed {
        let name = id.object_name();
        match stored.get(&name) {
            None => report.error(&name, format!("missing (named by {})", index_of_pack[id])),
            Some(actual) if actual != size => {
                report.error(&name, format!("is {actual} bytes, the index says {size}"))
            }
            Some(_) => {}
        }
    }
    for name in stored.keys().filter(|n| !indexed_names.contains(*n)) {
        report.warning(
            name,
            "not named by any index (left by an interrupted backup: the next backup on its machine adopts it, `cairn repair index` adopts it now, or prune removes it)",
        );
    }
    report.chunks = index.chunk_count();

    phase("checking snapshots");
    // Item lists are read, and references resolved, through the index checked above.
    let index = Arc::new(index);
    for (name, _) in backend.list("snapshots/").await? {
        report.snapshots += 1;
        let manifest = match read_verified::<SourceSnapshot>(repo, &name, MetaKind::Snapshot).await
        {
            Ok(m) => m,
            Err(e) => {
                report.error(&name, e);
                continue;
            }
        };
        let reader = ChunkReader::with_index(repo.clone(), index.clone());
        let mut items = ItemStream::new(reader, &manifest);
        loop {
            match items.next().await {
                Ok(Some(item)) => {
                    if let Some((id, _)) = item.chunks.iter().find(|(id, _)| !index.contains(id)) {
                        report.error(
                            &name,
                            format!(
                                "item `{}` references chunk {id}, which no index names",
                                item.path
                            ),
                        );
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    report.error(
                        &name,
                        format!("item list of source `{}`: {e}", manifest.source),
                    );
                    break;
                }
            }
        }
    }

    if options.read_data {
        let mut to_read: Vec<(PackId, u64)> = indexed
            .into_iter()
            .filter(|(id, _)| stored.contains_key(&id.object_name()))
            .collect();
        if options.subset_percent < 100.0 {
            use rand::seq::SliceRandom;
            to_read.shuffle(&mut rand::rng());
            let keep = ((to_read.len() as f64 * options.subset_percent / 100.0).ceil() as usize)
                .min(to_read.len());
            to_read.truncate(keep);
        }
        // Which chunks the index places in each pack, gathered in one pass.
        let mut indexed_in: HashMap<PackId, Vec<ChunkId>> = HashMap::new();
        for (chunk, loc) in index.chunks() {
            indexed_in.entry(loc.pack).or_default().push(chunk);
        }
        let total = to_read.len();
        for (n, (id, _)) in to_read.into_iter().enumerate() {
            phase(&format!("reading packs: {n}/{total}"));
            let name = id.object_name();
            report.packs_read += 1;
            let expected = indexed_in.remove(&id).unwrap_or_default();
            if let Err(e) = read_pack(repo, id, expected).await {
                report.error(&name, e);
            }
        }
    }
    Ok(report)
}

/// Downloads one pack and verifies every byte of it, and that it holds the chunks the
/// index places in it (`expected`).
async fn read_pack(
    repo: &Arc<Repository>,
    id: PackId,
    expected: Vec<ChunkId>,
) -> Result<(), RepoError> {
    let bytes = repo.backend().get(&id.object_name()).await?;
    verify_pack(id, &bytes)?;
    let keys = repo.keys().clone();
    tokio::task::spawn_blocking(move || {
        let entries = pack::read_header(&keys, &bytes)?;
        for entry in &entries {
            let sealed = &bytes[entry.offset as usize..(entry.offset + entry.length) as usize];
            pack::decode_chunk(&keys, &entry.id, sealed, entry.raw_length)?;
        }
        let in_header: HashSet<ChunkId> = entries.iter().map(|e| e.id).collect();
        if let Some(missing) = expected.iter().find(|c| !in_header.contains(c)) {
            return Err(RepoError::Corrupt(format!(
                "the index places chunk {missing} here, but the pack header does not list it"
            )));
        }
        Ok(())
    })
    .await
    .map_err(|e| RepoError::Other(format!("checking task: {e}")))?
}
