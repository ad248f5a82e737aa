//! Reading chunks back: locate through the index, fetch a range of the pack (reading
//! ahead, because restores walk packs in the order backups wrote them), open, decompress
//! and check each chunk against its id. Nothing unverified is ever returned.

use std::sync::Arc;

use bytes::Bytes;

use super::crypto::ChunkId;
use super::index::Index;
use super::pack::{PackId, decode_chunk};
use super::snapshot::SourceSnapshot;
use super::tree::{self, ItemRecord};
use super::{RepoError, RepoResult, Repository};

/// How far past a requested chunk one pack read extends.
const READ_AHEAD: u64 = 8 * 1024 * 1024;

/// A window of one pack held in memory.
struct Window {
    pack: PackId,
    start: u64,
    bytes: Bytes,
}

pub struct ChunkReader {
    repo: Arc<Repository>,
    index: Arc<Index>,
    window: Option<Window>,
    pack_sizes: std::collections::HashMap<PackId, u64>,
}

impl ChunkReader {
    pub fn new(repo: Arc<Repository>) -> Self {
        let index = repo.index();
        Self::with_index(repo, index)
    }

    /// A reader that locates chunks through `index` rather than the repository's.
    pub fn with_index(repo: Arc<Repository>, index: Arc<Index>) -> Self {
        let pack_sizes = index.packs().collect();
        ChunkReader {
            repo,
            index,
            window: None,
            pack_sizes,
        }
    }

    pub async fn read(&mut self, id: &ChunkId) -> RepoResult<Bytes> {
        let loc = self.index.get(id).ok_or_else(|| {
            RepoError::Corrupt(format!("chunk {id} is referenced but no index names it"))
        })?;
        let start = loc.offset as u64;
        let end = start + loc.length as u64;
        let cached = self.window.as_ref().filter(|w| {
            w.pack == loc.pack && w.start <= start && end <= w.start + w.bytes.len() as u64
        });
        let sealed = match cached {
            Some(w) => w
                .bytes
                .slice((start - w.start) as usize..(end - w.start) as usize),
            None => {
                let pack_size = self.pack_sizes.get(&loc.pack).copied().unwrap_or(end);
                let read_end = (start + READ_AHEAD).max(end).min(pack_size.max(end));
                let name = loc.pack.object_name();
                let bytes = self
                    .repo
                    .backend()
                    .get_range(&name, start, read_end - start)
                    .await
                    .map_err(|e| {
                        if e.is_not_found() {
                            RepoError::Corrupt(format!("pack {name} is missing"))
                        } else {
                            e.into()
                        }
                    })?;
                if (bytes.len() as u64) < end - start {
                    return Err(RepoError::Corrupt(format!(
                        "pack {name} is shorter than its index says"
                    )));
                }
                let sealed = bytes.slice(0..(end - start) as usize);
                self.window = Some(Window {
                    pack: loc.pack,
                    start,
                    bytes,
                });
                sealed
            }
        };
        let keys = self.repo.keys().clone();
        let id = *id;
        let raw_length = loc.raw_length;
        let pack = loc.pack;
        // Decryption and decompression of a 1 MiB chunk take about a millisecond: off the
        // async threads, so other plugin calls keep moving.
        tokio::task::spawn_blocking(move || decode_chunk(&keys, &id, &sealed, raw_length))
            .await
            .map_err(|e| RepoError::Other(format!("decoding task: {e}")))?
            .map_err(|e| e.context(format!("pack {}", pack.to_hex())))
    }
}

/// Reads a snapshot's item list.
pub async fn read_items(
    reader: &mut ChunkReader,
    manifest: &SourceSnapshot,
) -> RepoResult<Vec<ItemRecord>> {
    let mut bytes = Vec::new();
    for id in &manifest.tree {
        bytes.extend_from_slice(&reader.read(id).await?);
    }
    tree::parse_lines(&bytes)
}
