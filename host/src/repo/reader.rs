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

    pub fn keys(&self) -> &crate::repo::crypto::Keys {
        self.repo.keys()
    }
}

/// Reads `length` bytes of a pack from `start` (fewer at its end).
async fn fetch_range(
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

/// Pack windows being downloaded at once, ahead of the chunks being opened: hides the
/// latency of object storage, where each range read is a request.
const WINDOWS_IN_FLIGHT: usize = 4;

/// One range read of a pack that serves consecutive chunks of the plan.
struct PlannedWindow {
    pack: PackId,
    start: u64,
    end: u64,
    /// (position in the plan, chunk, where it is)
    chunks: Vec<(usize, ChunkId, Option<Location>)>,
}

/// Groups the plan into range reads: consecutive chunks of one pack, within READ_AHEAD of
/// the window's start, share a read. A chunk the index lacks gets a window of its own,
/// which reports it.
fn plan_windows(index: &Index, plan: Vec<ChunkId>) -> Vec<PlannedWindow> {
    let mut windows: Vec<PlannedWindow> = Vec::new();
    for (seq, id) in plan.into_iter().enumerate() {
        let loc = index.get(&id);
        if let (Some(loc), Some(w)) = (loc, windows.last_mut()) {
            let (start, end) = (loc.offset as u64, loc.offset as u64 + loc.length as u64);
            if w.pack == loc.pack
                && start >= w.start
                && end <= w.start + READ_AHEAD.max(w.end - w.start)
            {
                w.end = w.end.max(end);
                w.chunks.push((seq, id, Some(loc)));
                continue;
            }
        }
        let (pack, start, end) = match loc {
            Some(l) => (l.pack, l.offset as u64, l.offset as u64 + l.length as u64),
            None => (PackId([0; 32]), 0, 0),
        };
        windows.push(PlannedWindow {
            pack,
            start,
            end,
            chunks: vec![(seq, id, loc)],
        });
    }
    windows
}

impl Prefetch {
    /// Starts fetching `plan` (every chunk of the items, in order): several pack windows
    /// download at once, and their chunks open on several threads.
    pub fn start(reader: ChunkReader, plan: Vec<ChunkId>) -> Prefetch {
        use futures::StreamExt;
        let (tx, rx) = tokio::sync::mpsc::channel(PREFETCH_AHEAD);
        let parallel = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            + 1;
        let task = tokio::spawn(async move {
            let keys = reader.keys().clone();
            let repo = reader.repo.clone();
            let windows = plan_windows(&reader.index, plan);
            let mut fetched = futures::stream::iter(windows.into_iter().map(|w| {
                let repo = repo.clone();
                async move {
                    let bytes = if w.chunks.iter().any(|(_, _, loc)| loc.is_none()) {
                        Err(RepoError::Corrupt("no index names it".into()))
                    } else {
                        fetch_range(&repo, &w.pack, w.start, w.end - w.start).await
                    };
                    (w, bytes)
                }
            }))
            .buffered(WINDOWS_IN_FLIGHT);
            let mut opening = std::collections::VecDeque::new();
            while let Some((window, bytes)) = fetched.next().await {
                for (seq, id, loc) in window.chunks {
                    let job = match (&bytes, loc) {
                        (Ok(bytes), Some(loc)) => {
                            let at = (loc.offset as u64 - window.start) as usize;
                            let sealed = bytes.slice(at..at + loc.length as usize);
                            let keys = keys.clone();
                            tokio::task::spawn_blocking(move || {
                                open_chunk(&keys, &id, &sealed, &loc)
                            })
                        }
                        (Err(e), _) => {
                            let e = RepoError::Corrupt(format!("chunk {id}: {e}"));
                            tokio::task::spawn_blocking(move || Err(e))
                        }
                        (Ok(_), None) => unreachable!("windows with unindexed chunks fail"),
                    };
                    opening.push_back((seq, job));
                    while opening.len() >= parallel {
                        let (seq, job) = opening.pop_front().expect("non-empty");
                        let opened = job.await.unwrap_or_else(|e| {
                            Err(RepoError::Other(format!("decoding task: {e}")))
                        });
                        if tx.send((seq, opened)).await.is_err() {
                            return;
                        }
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
