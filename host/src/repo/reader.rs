//! Reading chunks back: locate through the index, fetch a range of the pack (reading
//! ahead, because restores walk packs in the order backups wrote them), open, decompress
//! and check each chunk against its id. Nothing unverified is ever returned.

use std::sync::Arc;

use bytes::Bytes;

use super::crypto::ChunkId;
use super::index::{Index, Location};
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

    pub fn keys(&self) -> &crate::repo::crypto::Keys {
        self.repo.keys()
    }
}

/// Opens one fetched chunk (CPU work: decrypt, decompress, hash).
pub fn open_chunk(
    keys: &crate::repo::crypto::Keys,
    id: &ChunkId,
    sealed: &[u8],
    loc: &Location,
) -> RepoResult<Bytes> {
    decode_chunk(keys, id, sealed, loc.raw_length)
        .map_err(|e| e.context(format!("pack {}", loc.pack.to_hex())))
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

/// Chunks opened ahead of use. A restore reads items in order, so one task fetches their
/// chunks in that order (reading packs sequentially, through the read-ahead window) and
/// opens them on several threads; readers take them by position in the sequence.
pub struct Prefetch {
    rx: tokio::sync::mpsc::Receiver<(usize, RepoResult<Bytes>)>,
    front: Option<(usize, RepoResult<Bytes>)>,
    task: tokio::task::JoinHandle<()>,
}

/// Chunks opened or being opened ahead of the reader, at most.
const PREFETCH_AHEAD: usize = 16;

impl Prefetch {
    /// Starts fetching `plan` (every chunk of the items, in order).
    pub fn start(mut reader: ChunkReader, plan: Vec<ChunkId>) -> Prefetch {
        let (tx, rx) = tokio::sync::mpsc::channel(PREFETCH_AHEAD);
        let parallel = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            + 1;
        let task = tokio::spawn(async move {
            let keys = reader.keys().clone();
            let mut opening = std::collections::VecDeque::new();
            for (seq, id) in plan.into_iter().enumerate() {
                let job = match reader.fetch_sealed(&id).await {
                    Ok((sealed, loc)) => {
                        let keys = keys.clone();
                        tokio::task::spawn_blocking(move || open_chunk(&keys, &id, &sealed, &loc))
                    }
                    Err(e) => tokio::task::spawn_blocking(move || Err(e)),
                };
                opening.push_back((seq, job));
                while opening.len() >= parallel {
                    let (seq, job) = opening.pop_front().expect("non-empty");
                    let opened = job
                        .await
                        .unwrap_or_else(|e| Err(RepoError::Other(format!("decoding task: {e}"))));
                    if tx.send((seq, opened)).await.is_err() {
                        return;
                    }
                }
            }
            for (seq, job) in opening {
                let opened = job
                    .await
                    .unwrap_or_else(|e| Err(RepoError::Other(format!("decoding task: {e}"))));
                if tx.send((seq, opened)).await.is_err() {
                    return;
                }
            }
        });
        Prefetch {
            rx,
            front: None,
            task,
        }
    }

    /// The chunk at position `seq`, or `None` if the prefetch is already past it (the
    /// caller then reads it directly). Chunks before `seq` are dropped: nobody asked.
    pub async fn take(&mut self, seq: usize) -> Option<RepoResult<Bytes>> {
        loop {
            match self.front.take() {
                Some((at, chunk)) if at == seq => return Some(chunk),
                Some((at, chunk)) if at > seq => {
                    self.front = Some((at, chunk));
                    return None;
                }
                _ => {}
            }
            self.front = Some(self.rx.recv().await?);
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
