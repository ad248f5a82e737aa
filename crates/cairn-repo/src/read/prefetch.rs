//! The in-order prefetch a restore reads through: the chunks of a snapshot, fetched a
//! window of packs ahead and opened on the blocking pool, delivered by position.

use std::sync::Arc;

use bytes::Bytes;

use super::chunks::{ChunkReader, READ_AHEAD, fetch_range, open_chunk};
use crate::crypto::ChunkId;
use crate::index::{Index, Location};
use crate::pack::PackId;
use crate::{RepoError, RepoResult};

/// Chunks opened ahead of use. A restore reads items in order, so one task fetches their
/// chunks in that order (reading packs sequentially, through the read-ahead window) and
/// opens them on several threads; readers take them by position in the sequence.
pub struct Prefetch {
    rx: tokio::sync::mpsc::Receiver<Delivered>,
    front: Option<Delivered>,
    task: tokio::task::JoinHandle<()>,
}

/// Decoded bytes (KiB) opened or being opened ahead of the reader, at most. A budget in
/// bytes rather than chunks: a run of small files needs many chunks ahead to keep the
/// decoding threads busy, and large chunks must not add up.
const PREFETCH_KIB: u32 = 8 * 1024;

/// A chunk at its position in the plan; the last of a decoding batch carries the batch's
/// share of [`PREFETCH_KIB`], given back when the reader takes it.
type Delivered = (
    usize,
    RepoResult<Bytes>,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

/// Pack windows requested at once, ahead of the chunks being opened: hides the latency
/// of object storage, where each range read is a request. The sink runs at most
/// `repository.concurrency` of them (default 4); windows are used in order, so asking for
/// more than that keeps its slots busy while a slow read holds up the ones behind it.
/// With 4, a restore from a local S3 server (s3s-fs on loopback) took 8.6-12.8 s and left
/// a core idle; with 8, 6.3-9.8 s. At most this many windows of [`READ_AHEAD`] are held.
const WINDOWS_IN_FLIGHT: usize = 8;

/// One range read of a pack that serves consecutive chunks of the plan.
struct PlannedWindow {
    pack: PackId,
    start: u64,
    end: u64,
    /// (position in the plan, chunk, where it is)
    chunks: Vec<(usize, ChunkId, Option<Location>)>,
}

/// Raw bytes one decoding job opens at most: small chunks (small files) go in batches, so
/// that each costs no thread hand-off of its own, while a batch stays small enough to
/// keep every core busy.
const BATCH_BYTES: u64 = 1024 * 1024;

type Planned = (usize, ChunkId, Option<Location>);
type Opened = Vec<(usize, RepoResult<Bytes>)>;

/// Splits a window's chunks into consecutive decoding batches of about [`BATCH_BYTES`].
fn decode_batches(chunks: Vec<Planned>) -> Vec<Vec<Planned>> {
    let mut batches: Vec<Vec<Planned>> = Vec::new();
    let mut raw = 0u64;
    for chunk in chunks {
        let size = chunk.2.map_or(0, |loc| loc.raw_length as u64);
        match batches.last_mut() {
            Some(batch) if raw + size <= BATCH_BYTES => batch.push(chunk),
            _ => {
                raw = 0;
                batches.push(vec![chunk]);
            }
        }
        raw += size;
    }
    batches
}

/// A decoding batch under way: its chunks' positions, the task, and its budget.
type Opening = (
    Vec<usize>,
    tokio::task::JoinHandle<Opened>,
    tokio::sync::OwnedSemaphorePermit,
);

/// Waits for a decoding job and passes its chunks on; false once nobody listens.
async fn deliver(tx: &tokio::sync::mpsc::Sender<Delivered>, (seqs, job, budget): Opening) -> bool {
    let opened = job.await.unwrap_or_else(|e| {
        seqs.iter()
            .map(|&seq| (seq, Err(RepoError::Other(format!("decoding task: {e}")))))
            .collect()
    });
    let mut budget = Some(budget);
    let last = opened.len().saturating_sub(1);
    for (i, (seq, chunk)) in opened.into_iter().enumerate() {
        let permit = if i == last { budget.take() } else { None };
        if tx.send((seq, chunk, permit)).await.is_err() {
            return false;
        }
    }
    true
}

/// The chunks a prefetch fetches, in the order they will be asked for, produced as it goes
/// (a restore's plan comes from its item list, read a chunk at a time).
pub type Plan = futures::stream::BoxStream<'static, ChunkId>;

/// A plan of chunks known up front.
pub fn plan_of(chunks: Vec<ChunkId>) -> Plan {
    Box::pin(futures::stream::iter(chunks))
}

/// Chunks one range read serves at most. Deduplicated data asks for the same few chunks
/// over and over (a file of zeros, a million one-line files alike), all within one range
/// of a pack: without a bound, one window would list every chunk of the restore.
const WINDOW_CHUNKS: usize = 4096;

/// Groups the plan into range reads as it arrives: consecutive chunks of one pack, within
/// READ_AHEAD of the window's start, share a read, up to [`WINDOW_CHUNKS`]. A chunk the
/// index lacks gets a window of its own, which reports it.
fn plan_windows(
    index: Arc<Index>,
    plan: Plan,
) -> impl futures::Stream<Item = PlannedWindow> + Send + 'static {
    use futures::StreamExt;
    let state = (plan.enumerate().fuse(), None::<PlannedWindow>);
    futures::stream::unfold(state, move |(mut plan, mut open)| {
        let index = index.clone();
        async move {
            loop {
                let Some((seq, id)) = plan.next().await else {
                    return open.take().map(|w| (w, (plan, None)));
                };
                let loc = index.get(&id);
                if let (Some(loc), Some(w)) = (loc, open.as_mut()) {
                    let (start, end) = (loc.offset as u64, loc.offset as u64 + loc.length as u64);
                    if w.pack == loc.pack
                        && w.chunks.len() < WINDOW_CHUNKS
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
                let started = PlannedWindow {
                    pack,
                    start,
                    end,
                    chunks: vec![(seq, id, loc)],
                };
                if let Some(full) = open.replace(started) {
                    return Some((full, (plan, open)));
                }
            }
        }
    })
}

impl Prefetch {
    /// Starts fetching `plan` (every chunk of the items, in order): several pack windows
    /// download at once, and their chunks open on several threads.
    pub fn start(reader: ChunkReader, plan: Plan) -> Prefetch {
        Self::with_budget(reader, plan, PREFETCH_KIB)
    }

    /// [`Prefetch::start`] with `budget_kib` of decoded bytes ahead.
    fn with_budget(reader: ChunkReader, plan: Plan, budget_kib: u32) -> Prefetch {
        use futures::StreamExt;
        // The byte budget bounds what waits; the channel only needs room for small chunks.
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let budget = Arc::new(tokio::sync::Semaphore::new(budget_kib as usize));
        let parallel = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            + 1;
        let task = tokio::spawn(async move {
            let keys = reader.keys().clone();
            let repo = reader.repo.clone();
            let windows = plan_windows(reader.index.clone(), plan);
            let fetched = windows.map(|w| {
                let repo = repo.clone();
                async move {
                    let bytes = if w.chunks.iter().any(|(_, _, loc)| loc.is_none()) {
                        Err(RepoError::Corrupt("no index names it".into()))
                    } else {
                        fetch_range(&repo, &w.pack, w.start, w.end - w.start).await
                    };
                    (w, bytes)
                }
            });
            let mut fetched = std::pin::pin!(fetched.buffered(WINDOWS_IN_FLIGHT));
            let mut opening = std::collections::VecDeque::new();
            while let Some((window, bytes)) = fetched.next().await {
                // Every chunk of a window that failed to download reports its failure.
                let bytes = bytes.map_err(|e| e.to_string());
                for batch in decode_batches(window.chunks) {
                    let seqs = batch.iter().map(|(seq, _, _)| *seq).collect();
                    let kib = batch
                        .iter()
                        .map(|(_, _, loc)| loc.map_or(0, |l| l.raw_length.div_ceil(1024)))
                        .sum::<u32>()
                        .clamp(1, budget_kib);
                    // Batches decoded but not yet passed on hold budget too: pass them on
                    // rather than wait for budget only the reader can give back.
                    let permit = loop {
                        if let Ok(permit) = budget.clone().try_acquire_many_owned(kib) {
                            break permit;
                        }
                        match opening.pop_front() {
                            Some(job) => {
                                if !deliver(&tx, job).await {
                                    return;
                                }
                            }
                            None => match budget.clone().acquire_many_owned(kib).await {
                                Ok(permit) => break permit,
                                Err(_) => return,
                            },
                        }
                    };
                    let (keys, bytes, start) = (keys.clone(), bytes.clone(), window.start);
                    let job = tokio::task::spawn_blocking(move || {
                        batch
                            .into_iter()
                            .map(|(seq, id, loc)| {
                                let opened = match (&bytes, loc) {
                                    (Ok(bytes), Some(loc)) => {
                                        let at = (loc.offset as u64 - start) as usize;
                                        let sealed = &bytes[at..at + loc.length as usize];
                                        open_chunk(&keys, &id, sealed, &loc)
                                    }
                                    (Err(e), _) => {
                                        Err(RepoError::Corrupt(format!("chunk {id}: {e}")))
                                    }
                                    (Ok(_), None) => Err(RepoError::Corrupt(format!(
                                        "chunk {id} is referenced but no index names it"
                                    ))),
                                };
                                (seq, opened)
                            })
                            .collect::<Opened>()
                    });
                    opening.push_back((seqs, job, permit));
                    while opening.len() >= parallel {
                        let job = opening.pop_front().expect("non-empty");
                        if !deliver(&tx, job).await {
                            return;
                        }
                    }
                }
            }
            for job in opening {
                if !deliver(&tx, job).await {
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
                Some((at, chunk, _budget)) if at == seq => return Some(chunk),
                Some(ahead) if ahead.0 > seq => {
                    self.front = Some(ahead);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory;
    use crate::pack::ChunkKind;
    use crate::write::ChunkWriter;

    /// The same chunk asked for again and again (deduplicated data) is served by windows
    /// of a bounded length, not one window listing the whole plan.
    #[tokio::test]
    async fn a_chunk_asked_for_over_and_over_fills_windows_of_a_bounded_length() {
        use futures::StreamExt;
        let repo = memory::repository().await;
        let writer = ChunkWriter::start(&repo.load_index().await.unwrap()).unwrap();
        let id = writer
            .store(ChunkKind::Data, Bytes::from_static(b"zeros"), false)
            .await
            .unwrap()
            .id;
        writer.flush().await.unwrap();
        let indexed = repo.load_index().await.unwrap();
        let plan = plan_of(vec![id; 3 * WINDOW_CHUNKS + 5]);
        let windows: Vec<usize> = plan_windows(indexed.index().clone(), plan)
            .map(|w| w.chunks.len())
            .collect()
            .await;
        assert_eq!(windows, [WINDOW_CHUNKS, WINDOW_CHUNKS, WINDOW_CHUNKS, 5]);
    }

    /// Many small chunks around a few large ones, the mix that needs the byte budget and
    /// batching: every chunk arrives, in order, whatever the budget, even one smaller
    /// than a single chunk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prefetch_delivers_every_chunk_in_order_within_any_budget() {
        let repo = memory::repository().await;
        let writer = ChunkWriter::start(&repo.load_index().await.unwrap()).unwrap();
        let mut chunks = Vec::new();
        for i in 0..400u32 {
            let len = if i % 100 == 7 {
                3 << 20
            } else {
                1000 + (i as usize * 37) % 9000
            };
            let data: Vec<u8> = (0..len)
                .map(|j| (j as u32 ^ i.wrapping_mul(2654435761)) as u8)
                .collect();
            let data = Bytes::from(data);
            let id = writer
                .store(ChunkKind::Data, data.clone(), false)
                .await
                .unwrap()
                .id;
            chunks.push((id, data));
        }
        writer.flush().await.unwrap();
        let indexed = repo.load_index().await.unwrap();
        for budget_kib in [1, 2048, PREFETCH_KIB] {
            let plan = plan_of(chunks.iter().map(|(id, _)| *id).collect());
            let mut prefetch = Prefetch::with_budget(ChunkReader::new(&indexed), plan, budget_kib);
            for (seq, (_, data)) in chunks.iter().enumerate() {
                let got =
                    tokio::time::timeout(std::time::Duration::from_secs(20), prefetch.take(seq))
                        .await
                        .unwrap_or_else(|_| {
                            panic!("chunk {seq} never came (budget {budget_kib} KiB)")
                        });
                assert_eq!(&got.expect("prefetched").unwrap(), data, "chunk {seq}");
            }
        }
    }
}
