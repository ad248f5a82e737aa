//! The chunk writer: encoder threads (compress + seal), the packer task that fills packs
//! and uploads them with bounded concurrency, and the index files written once their packs
//! have landed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::crypto::{ChunkId, Keys};
use crate::index::{Index, IndexFile, IndexedPack};
use crate::pack::{ChunkEncoder, ChunkKind, PackBuilder, PackEntry, PackId};
use crate::{Indexed, RepoError, RepoResult, Repository};

/// Packs uploading at once: enough to hide an object store's latency, few enough that
/// their buffers stay a small, fixed amount of memory.
const UPLOADS_IN_FLIGHT: usize = 2;
/// Landed packs that trigger an index file before the next flush, so a crash costs at
/// most this many packs' worth of re-upload.
const PACKS_PER_INDEX: usize = 8;
/// New chunks are handed to the encoders in batches of about this many bytes: handing
/// them over one by one woke a thread per 64 KiB page chunk, and the wakeups cost as much
/// CPU as encrypting. A batch is at least one chunk, so a large chunk travels alone.
const BATCH_BYTES: usize = 1024 * 1024;

/// New chunks of one kind, with their ids, for one encoder.
struct Job {
    kind: ChunkKind,
    chunks: Vec<(ChunkId, Bytes)>,
}

struct Encoded {
    id: ChunkId,
    kind: ChunkKind,
    sealed: Vec<u8>,
    raw_length: u32,
}

enum PackerMsg {
    Chunks(Vec<Encoded>),
    Flush(oneshot::Sender<RepoResult<()>>),
}

/// Counts of what a writer stored.
#[derive(Debug, Default)]
pub struct WriteStats {
    pub chunks_new: AtomicU64,
    pub chunks_known: AtomicU64,
    pub bytes_new: AtomicU64,
    pub bytes_known: AtomicU64,
    pub bytes_stored: AtomicU64,
    pub packs: AtomicU64,
    /// Of `bytes_new`, those stored ahead of the item that uses them (see
    /// `runtime::store_ahead` and `runtime::copy_tap`): the item counts them again, as
    /// known.
    pub bytes_ahead: AtomicU64,
}

impl WriteStats {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Chunks handed to the encoders and not yet added to a pack by the packer.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    drained: Notify,
}

/// A chunk handed to [`ChunkWriter::store`]: its id, and whether the repository lacked it.
pub struct Stored {
    pub id: ChunkId,
    pub new: bool,
}

pub struct ChunkWriter {
    keys: Keys,
    index: Arc<Index>,
    pending: Mutex<HashSet<ChunkId>>,
    /// Dropping the writer closes this channel: the encoders then exit, and with them the
    /// last senders to the packer, which then exits too.
    encode_tx: mpsc::Sender<Job>,
    packer_tx: mpsc::Sender<PackerMsg>,
    in_flight: Arc<InFlight>,
    failure: Arc<Mutex<Option<String>>>,
    stats: Arc<WriteStats>,
}

impl ChunkWriter {
    /// Starts the pipeline. The repository's index must be loaded, so known chunks are
    /// not stored again.
    pub fn start(indexed: &Indexed) -> RepoResult<ChunkWriter> {
        let repo = indexed.repo().clone();
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let (encode_tx, encode_rx) = mpsc::channel::<Job>(workers * 2);
        let (packer_tx, packer_rx) = mpsc::channel::<PackerMsg>(workers * 2);
        let encode_rx = Arc::new(Mutex::new(encode_rx));
        let failure = Arc::new(Mutex::new(None));
        let stats = Arc::new(WriteStats::default());
        let keys = repo.keys().clone();
        let level = repo.config().zstd_level;

        for n in 0..workers {
            let rx = encode_rx.clone();
            let tx = packer_tx.clone();
            let keys = keys.clone();
            let mut encoder =
                ChunkEncoder::new(level).map_err(|e| RepoError::Other(format!("zstd: {e}")))?;
            std::thread::Builder::new()
                .name(format!("cairn-encode-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting, by one idle worker at a time.
                        let job = rx.lock().expect("encoder queue lock").blocking_recv();
                        let Some(job) = job else { break };
                        let encoded = job
                            .chunks
                            .into_iter()
                            .map(|(id, data)| Encoded {
                                id,
                                kind: job.kind,
                                sealed: encoder.encode(&keys, &id, &data),
                                raw_length: data.len() as u32,
                            })
                            .collect();
                        if tx.blocking_send(PackerMsg::Chunks(encoded)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| RepoError::Other(format!("starting encoder thread: {e}")))?;
        }

        let in_flight = Arc::new(InFlight::default());
        let packer = Packer {
            repo: repo.clone(),
            builder: PackBuilder::with_capacity(pack_capacity(&repo)),
            uploads: JoinSet::new(),
            upload_slots: Arc::new(Semaphore::new(UPLOADS_IN_FLIGHT)),
            landed: Vec::new(),
            in_flight: in_flight.clone(),
            failure: failure.clone(),
            stats: stats.clone(),
        };
        tokio::spawn(packer.run(packer_rx));

        Ok(ChunkWriter {
            keys,
            index: indexed.index().clone(),
            pending: Mutex::new(HashSet::new()),
            encode_tx,
            packer_tx,
            in_flight,
            failure,
            stats,
        })
    }

    pub fn stats(&self) -> &Arc<WriteStats> {
        &self.stats
    }

    fn check_failure(&self) -> RepoResult<()> {
        match &*self.failure.lock().expect("failure lock") {
            Some(message) => Err(RepoError::Other(message.clone())),
            None => Ok(()),
        }
    }

    fn failed(&self) -> RepoError {
        match self.check_failure() {
            Err(e) => e,
            Ok(()) => RepoError::Other("the write pipeline stopped".into()),
        }
    }

    /// Stores one chunk unless the repository already holds it (see [`Self::store_all`]).
    pub async fn store(&self, kind: ChunkKind, data: Bytes, ahead: bool) -> RepoResult<Stored> {
        let mut stored = self.store_all(kind, vec![data], ahead).await?;
        stored
            .pop()
            .ok_or_else(|| RepoError::Other("storing a chunk returned nothing".into()))
    }

    /// Stores the chunks the repository does not hold yet; returns each chunk's id, in
    /// order. A chunk stored `ahead` of its item counts only if new: the item counts it
    /// again.
    pub async fn store_all(
        &self,
        kind: ChunkKind,
        chunks: Vec<Bytes>,
        ahead: bool,
    ) -> RepoResult<Vec<Stored>> {
        let mut stored = Vec::with_capacity(chunks.len());
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for data in chunks {
            let Some((id, data)) = self.admit(data, ahead, &mut stored) else {
                continue;
            };
            batch_bytes += data.len();
            batch.push((id, data));
            if batch_bytes >= BATCH_BYTES {
                self.encode(kind, std::mem::take(&mut batch)).await?;
                batch_bytes = 0;
            }
        }
        self.encode(kind, batch).await?;
        Ok(stored)
    }

    /// [`ChunkWriter::store_all`] if the encoders can take the new chunks at once (in one
    /// job, whatever its size), else `None`, with nothing hashed or stored: for a caller
    /// whose own work must not wait, and which can store the chunks later otherwise.
    pub fn try_store_all(
        &self,
        kind: ChunkKind,
        chunks: Vec<Bytes>,
        ahead: bool,
    ) -> RepoResult<Option<Vec<Stored>>> {
        self.check_failure()?;
        let permit = match self.encode_tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => return Ok(None),
            Err(mpsc::error::TrySendError::Closed(())) => return Err(self.failed()),
        };
        let mut stored = Vec::with_capacity(chunks.len());
        let new: Vec<_> = chunks
            .into_iter()
            .filter_map(|data| self.admit(data, ahead, &mut stored))
            .collect();
        if !new.is_empty() {
            self.in_flight.count.fetch_add(new.len(), Ordering::SeqCst);
            permit.send(Job { kind, chunks: new });
        }
        Ok(Some(stored))
    }

    /// Hashes a chunk, counts it and notes its id in `stored`; returns it with its id if
    /// the repository lacks it, which then makes it pending: the caller must hand it to
    /// the encoders.
    fn admit(
        &self,
        data: Bytes,
        ahead: bool,
        stored: &mut Vec<Stored>,
    ) -> Option<(ChunkId, Bytes)> {
        let id = self.keys.chunk_id(&data);
        let len = data.len() as u64;
        let known =
            self.index.contains(&id) || !self.pending.lock().expect("pending lock").insert(id);
        stored.push(Stored { id, new: !known });
        if known {
            if !ahead {
                WriteStats::add(&self.stats.chunks_known, 1);
                WriteStats::add(&self.stats.bytes_known, len);
            }
            return None;
        }
        WriteStats::add(&self.stats.chunks_new, 1);
        WriteStats::add(&self.stats.bytes_new, len);
        if ahead {
            WriteStats::add(&self.stats.bytes_ahead, len);
        }
        Some((id, data))
    }

    /// Hands new chunks to the encoders.
    async fn encode(&self, kind: ChunkKind, chunks: Vec<(ChunkId, Bytes)>) -> RepoResult<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.check_failure()?;
        self.in_flight
            .count
            .fetch_add(chunks.len(), Ordering::SeqCst);
        self.encode_tx
            .send(Job { kind, chunks })
            .await
            .map_err(|_| self.failed())
    }

    /// Whether a chunk is stored or on its way (used to trust a parent snapshot's chunks).
    pub fn holds(&self, id: &ChunkId) -> bool {
        self.index.contains(id) || self.pending.lock().expect("pending lock").contains(id)
    }

    /// Returns once every chunk stored so far is in a landed pack named by a landed index.
    pub async fn flush(&self) -> RepoResult<()> {
        loop {
            let drained = self.in_flight.drained.notified();
            if self.in_flight.count.load(Ordering::SeqCst) == 0 {
                break;
            }
            self.check_failure()?;
            drained.await;
        }
        let (tx, rx) = oneshot::channel();
        self.packer_tx
            .send(PackerMsg::Flush(tx))
            .await
            .map_err(|_| self.failed())?;
        rx.await.map_err(|_| self.failed())??;
        self.check_failure()
    }
}

/// A pack closes once it reaches the pack size, so it holds at most that plus one sealed
/// content-defined chunk (a larger fixed-size chunk just grows the buffer once).
fn pack_capacity(repo: &Repository) -> usize {
    repo.config().pack_size as usize
        + repo.config().chunker.max_size as usize
        + crate::crypto::SEALED_OVERHEAD
        + 1
}

struct Packer {
    repo: Arc<Repository>,
    builder: PackBuilder,
    uploads: JoinSet<RepoResult<(PackId, u64, Vec<PackEntry>)>>,
    upload_slots: Arc<Semaphore>,
    landed: Vec<IndexedPack>,
    in_flight: Arc<InFlight>,
    failure: Arc<Mutex<Option<String>>>,
    stats: Arc<WriteStats>,
}

impl Packer {
    async fn run(mut self, mut rx: mpsc::Receiver<PackerMsg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                PackerMsg::Chunks(chunks) => {
                    let count = chunks.len();
                    let mut result = Ok(());
                    for chunk in chunks {
                        result = self.add(chunk).await;
                        if result.is_err() {
                            break;
                        }
                    }
                    if self.in_flight.count.fetch_sub(count, Ordering::SeqCst) == count {
                        self.in_flight.drained.notify_waiters();
                    }
                    if let Err(e) = result {
                        self.fail(&e);
                    }
                }
                PackerMsg::Flush(reply) => {
                    let result = self.flush().await;
                    if let Err(e) = &result {
                        self.fail(e);
                    }
                    let _ = reply.send(result);
                }
            }
        }
    }

    fn fail(&self, e: &RepoError) {
        let mut failure = self.failure.lock().expect("failure lock");
        if failure.is_none() {
            *failure = Some(e.to_string());
        }
        self.in_flight.drained.notify_waiters();
    }

    async fn add(&mut self, chunk: Encoded) -> RepoResult<()> {
        self.builder
            .add(chunk.id, chunk.kind, &chunk.sealed, chunk.raw_length);
        if self.builder.len() >= self.repo.config().pack_size as usize {
            self.seal_pack().await?;
        }
        self.collect_landed(false).await?;
        if self.landed.len() >= PACKS_PER_INDEX {
            self.write_index().await?;
        }
        Ok(())
    }

    /// Closes the current pack and starts its upload (waiting for an upload slot).
    async fn seal_pack(&mut self) -> RepoResult<()> {
        if self.builder.is_empty() {
            return Ok(());
        }
        // The slot comes first: a sealed pack waiting for one would be a pack's worth of
        // memory beyond the uploads and the pack being filled.
        let permit = self
            .upload_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RepoError::Other("upload slots closed".into()))?;
        let fresh = PackBuilder::with_capacity(pack_capacity(&self.repo));
        let builder = std::mem::replace(&mut self.builder, fresh);
        let keys = self.repo.keys().clone();
        let (id, bytes, entries) = tokio::task::spawn_blocking(move || builder.finish(&keys))
            .await
            .map_err(|e| RepoError::Other(format!("sealing a pack: {e}")))?;
        let repo = self.repo.clone();
        let stats = self.stats.clone();
        self.uploads.spawn(async move {
            let _permit = permit;
            let size = bytes.len() as u64;
            repo.put_content_addressed(&id.object_name(), bytes)
                .await
                .map_err(|e| RepoError::Other(format!("uploading pack {}: {e}", id.to_hex())))?;
            WriteStats::add(&stats.bytes_stored, size);
            WriteStats::add(&stats.packs, 1);
            Ok((id, size, entries))
        });
        Ok(())
    }

    /// Moves finished uploads into `landed`; with `all`, waits for every upload.
    async fn collect_landed(&mut self, all: bool) -> RepoResult<()> {
        loop {
            let next = if all {
                self.uploads.join_next().await
            } else {
                self.uploads.try_join_next()
            };
            let Some(joined) = next else { return Ok(()) };
            let (id, size, entries) =
                joined.map_err(|e| RepoError::Other(format!("upload task: {e}")))??;
            self.landed.push(IndexedPack::new(id, size, &entries));
        }
    }

    async fn write_index(&mut self) -> RepoResult<()> {
        if self.landed.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            version: 1,
            packs: std::mem::take(&mut self.landed),
            supersedes: Vec::new(),
        };
        self.repo.write_index_file(&file).await.map(drop)
    }

    async fn flush(&mut self) -> RepoResult<()> {
        self.seal_pack().await?;
        self.collect_landed(true).await?;
        self.write_index().await
    }
}
