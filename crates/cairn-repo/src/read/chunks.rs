//! The chunk reader: locate a chunk through the index, fetch a range of its pack (reading
//! ahead), open, decompress and check it against its id.

use std::sync::Arc;

use bytes::Bytes;

use crate::crypto::ChunkId;
use crate::index::{Index, Location};
use crate::pack::{PackId, decode_chunk};
use crate::{Indexed, RepoError, RepoResult, Repository};

/// How far past a requested chunk one pack read extends.
pub(super) const READ_AHEAD: u64 = 8 * 1024 * 1024;

/// A window of one pack held in memory.
struct Window {
    pack: PackId,
    start: u64,
    bytes: Bytes,
}

pub struct ChunkReader {
    pub(super) repo: Arc<Repository>,
    pub(super) index: Arc<Index>,
    window: Option<Window>,
    pack_sizes: std::collections::HashMap<PackId, u64>,
}

impl ChunkReader {
    pub fn new(indexed: &Indexed) -> Self {
        Self::with_index(indexed.repo().clone(), indexed.index().clone())
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

    /// Fetches a chunk's sealed bytes (from the read-ahead window when it holds them),
    /// without opening them.
    pub async fn fetch_sealed(&mut self, id: &ChunkId) -> RepoResult<(Bytes, Location)> {
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
                let bytes = fetch_range(&self.repo, &loc.pack, start, read_end - start).await?;
                let sealed = bytes.slice(0..(end - start) as usize);
                self.window = Some(Window {
                    pack: loc.pack,
                    start,
                    bytes,
                });
                sealed
            }
        };
        Ok((sealed, loc))
    }

    /// Reads, opens and checks one chunk.
    pub async fn read(&mut self, id: &ChunkId) -> RepoResult<Bytes> {
        let (sealed, loc) = self.fetch_sealed(id).await?;
        let keys = self.repo.keys().clone();
        let id = *id;
        // Opening and decompressing a 1 MiB chunk takes about a millisecond: off the async
        // threads, so other plugin calls keep moving.
        tokio::task::spawn_blocking(move || open_chunk(&keys, &id, &sealed, &loc))
            .await
            .map_err(|e| RepoError::Other(format!("decoding task: {e}")))?
    }

    pub fn keys(&self) -> &crate::crypto::Keys {
        self.repo.keys()
    }
}

/// Reads `length` bytes of a pack from `start` (fewer at its end).
pub(super) async fn fetch_range(
    repo: &Repository,
    pack: &PackId,
    start: u64,
    length: u64,
) -> RepoResult<Bytes> {
    let name = pack.object_name();
    let bytes = repo
        .backend()
        .get_range(&name, start, length)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                RepoError::Corrupt(format!("pack {name} is missing"))
            } else {
                e.into()
            }
        })?;
    if (bytes.len() as u64) < length {
        return Err(RepoError::Corrupt(format!(
            "pack {name} is shorter than its index says"
        )));
    }
    Ok(bytes)
}

/// Opens one fetched chunk (CPU work: decrypt, decompress, hash).
pub fn open_chunk(
    keys: &crate::crypto::Keys,
    id: &ChunkId,
    sealed: &[u8],
    loc: &Location,
) -> RepoResult<Bytes> {
    decode_chunk(keys, id, sealed, loc.raw_length)
        .map_err(|e| e.context(format!("pack {}", loc.pack.to_hex())))
}
