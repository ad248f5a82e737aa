//! Storing a database copy's chunks as SQLite writes them, so that the copy is neither read
//! back nor hashed a second time when it is stored.
//!
//! A snapshot writes its copy through cairn's VFS in aligned 64 KiB writes. When the plugin
//! stored the live file ahead with fixed chunks, the snapshot takes that store-ahead over:
//! instead of reading the live file, it stores every chunk of the copy as soon as it is
//! written whole, and records the chunk's id by its position. Storing the copy afterwards
//! takes a recorded id without reading its bytes, and reads only the rest: a partial last
//! chunk, a chunk written again in part (the header page, at the end), and the chunks
//! written while the encoders were busy. Those are left rather than waited for, so the
//! copy goes at SQLite's pace and the check that follows it can overlap their storing.
//!
//! An id is recorded only for a chunk written whole, at once or in pieces that each
//! continued the last: any later write that touches the chunk, and any truncation or
//! failed write before its end, forgets it. The copy is a private temporary file that
//! only SQLite, through the VFS, writes; so a recorded id is the keyed hash of the bytes
//! the file holds there, which is what reading it back would have found.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::capabilities::sqlite::vfs::WriteTap;
use crate::repo::crypto::ChunkId;
use crate::repo::known::KnownChunks;
use crate::repo::pack::ChunkKind;
use crate::repo::write::ChunkWriter;

/// Bytes of new chunks handed to the repository at once.
const BATCH_BYTES: usize = 1024 * 1024;

/// Stores a copy's chunks as they are written, when the encoders have room; attached to
/// the copy with [`crate::capabilities::sqlite::vfs::tap`].
pub struct CopyTap {
    state: Arc<Mutex<TapState>>,
}

/// What the snapshot keeps of the tap, to learn what it stored once the copy is closed.
pub struct TapResult {
    state: Arc<Mutex<TapState>>,
}

struct TapState {
    writer: Arc<ChunkWriter>,
    chunk_size: u64,
    ids: Vec<Option<ChunkId>>,
    /// Complete chunks written and not yet handed over: (index, bytes).
    batch: Vec<(u64, Bytes)>,
    /// The chunk being written in several pieces: its index and its bytes from its start,
    /// as long as every write to it continued the last.
    assembling: Option<(u64, Vec<u8>)>,
    batch_bytes: usize,
    /// Set when handing chunks over failed: nothing recorded is used then, and the
    /// repository's own error fails the backup when the copy is stored.
    failed: bool,
}

impl CopyTap {
    /// A tap storing chunks of `chunk_size` bytes through `writer`.
    pub fn new(writer: Arc<ChunkWriter>, chunk_size: u32) -> Self {
        let state = Arc::new(Mutex::new(TapState {
            writer,
            chunk_size: u64::from(chunk_size.max(1)),
            ids: Vec::new(),
            batch: Vec::new(),
            assembling: None,
            batch_bytes: 0,
            failed: false,
        }));
        CopyTap { state }
    }

    /// Where to learn what the tap stored, once the copy is written.
    pub fn result(&self) -> TapResult {
        TapResult {
            state: self.state.clone(),
        }
    }
}

impl WriteTap for CopyTap {
    fn written(&mut self, offset: u64, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.failed || bytes.is_empty() {
            return;
        }
        let size = state.chunk_size;
        let end = offset + bytes.len() as u64;
        for index in offset / size..end.div_ceil(size) {
            let (start, stop) = (index * size, (index + 1) * size);
            let (from, to) = (offset.max(start), end.min(stop));
            let piece = &bytes[(from - offset) as usize..(to - offset) as usize];
            state.forget(index);
            let assembled = match state.assembling.take() {
                // A write that covers the chunk, or begins it (a chunk being assembled
                // elsewhere is given up: SQLite has moved on from it).
                _ if from == start => piece.to_vec(),
                // A write that continues the chunk's bytes so far.
                Some((at, mut so_far)) if at == index && start + so_far.len() as u64 == from => {
                    so_far.extend_from_slice(piece);
                    so_far
                }
                // Any other write to the chunk leaves it to be read back; one to another
                // chunk leaves the chunk being assembled as it was.
                Some(other) => {
                    if other.0 != index {
                        state.assembling = Some(other);
                    }
                    continue;
                }
                None => continue,
            };
            if start + assembled.len() as u64 == stop {
                state.batch_bytes += assembled.len();
                state.batch.push((index, Bytes::from(assembled)));
            } else {
                state.assembling = Some((index, assembled));
            }
        }
        if state.batch_bytes >= BATCH_BYTES {
            state.hand_over();
        }
    }

    fn forget_from(&mut self, offset: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let first = offset / state.chunk_size;
        state
            .ids
            .truncate(usize::try_from(first).unwrap_or(usize::MAX));
        state.batch.retain(|(index, _)| *index < first);
        state.count_batch();
        if state
            .assembling
            .as_ref()
            .is_some_and(|(index, _)| *index >= first)
        {
            state.assembling = None;
        }
    }
}

impl TapState {
    fn forget(&mut self, index: u64) {
        if let Some(id) = usize::try_from(index)
            .ok()
            .and_then(|i| self.ids.get_mut(i))
        {
            *id = None;
        }
        self.batch.retain(|(i, _)| *i != index);
        self.count_batch();
    }

    fn count_batch(&mut self) {
        self.batch_bytes = self.batch.iter().map(|(_, chunk)| chunk.len()).sum();
    }

    /// Stores the batch and records the chunks' ids, or drops it if the encoders are busy.
    fn hand_over(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if batch.is_empty() || self.failed {
            return;
        }
        let (indexes, chunks): (Vec<u64>, Vec<Bytes>) = batch.into_iter().unzip();
        let stored = match self.writer.try_store_all(ChunkKind::Data, chunks, true) {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(_) => {
                self.failed = true;
                return;
            }
        };
        for (index, stored) in indexes.into_iter().zip(stored) {
            let Ok(i) = usize::try_from(index) else {
                continue;
            };
            if self.ids.len() <= i {
                self.ids.resize(i + 1, None);
            }
            self.ids[i] = Some(stored.id);
        }
    }
}

impl TapResult {
    /// Hands over what is left and returns the ids recorded; none if storing failed.
    pub fn finish(self) -> Option<KnownChunks> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.hand_over();
        if state.failed {
            return None;
        }
        Some(KnownChunks::new(
            state.chunk_size as u32,
            std::mem::take(&mut state.ids),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::memory;
    use crate::repo::write::ChunkWriter;

    /// Large enough that batches are handed over mid-test, so that both chunks waiting in
    /// a batch and chunks already stored are forgotten.
    const CHUNK: u64 = 256 * 1024;

    /// Writes, rewrites in part, and truncations, applied to a file image and to a tap:
    /// every id the tap keeps is the hash of the image's chunk there, and exactly the
    /// chunks whose last write covered them whole (at once or in order) have one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_chunks_last_written_whole_are_known_and_by_their_final_bytes() {
        let repo = memory::repository().await;
        let writer = Arc::new(ChunkWriter::start(&repo.load_index().await.unwrap()).unwrap());
        let mut tap = CopyTap::new(writer.clone(), CHUNK as u32);
        let result = tap.result();
        let (runtime, drained) = (tokio::runtime::Handle::current(), writer.clone());
        let (image, known) = tokio::task::spawn_blocking(move || {
            let mut image = Vec::new();
            // Each write waits until the encoders are idle, so that none of its chunks is
            // left for being busy.
            let write =
                |image: &mut Vec<u8>, tap: &mut CopyTap, offset: u64, len: u64, fill: u8| {
                    runtime.block_on(drained.flush()).unwrap();
                    let bytes: Vec<u8> = (0..len).map(|i| fill ^ (i % 251) as u8).collect();
                    let end = (offset + len) as usize;
                    if image.len() < end {
                        image.resize(end, 0);
                    }
                    image[offset as usize..end].copy_from_slice(&bytes);
                    tap.written(offset, &bytes);
                };
            // Chunks 0-7 in one write, 8-9 in page-sized pieces in order, 10-11 in one
            // unaligned write that fills 10 but not 11's end.
            write(&mut image, &mut tap, 0, 8 * CHUNK, 1);
            for page in 0..2 * CHUNK / 4096 {
                write(&mut image, &mut tap, 8 * CHUNK + page * 4096, 4096, 2);
            }
            write(&mut image, &mut tap, 11 * CHUNK, 100, 3);
            write(&mut image, &mut tap, 10 * CHUNK, CHUNK + CHUNK / 2, 4);
            // Chunk 3 rewritten in part, chunk 5 rewritten whole.
            write(&mut image, &mut tap, 3 * CHUNK + 10, 20, 5);
            write(&mut image, &mut tap, 5 * CHUNK, CHUNK, 6);
            // Chunks 14-15 written, then cut off; chunk 13 truncated within.
            write(&mut image, &mut tap, 12 * CHUNK, 4 * CHUNK, 7);
            tap.forget_from(13 * CHUNK + 100);
            image.truncate((13 * CHUNK + 100) as usize);
            // Chunk 16 in two halves, the second first; chunk 17 in two halves in order.
            write(&mut image, &mut tap, 16 * CHUNK + CHUNK / 2, CHUNK / 2, 8);
            write(&mut image, &mut tap, 16 * CHUNK, CHUNK / 2, 9);
            write(&mut image, &mut tap, 17 * CHUNK, CHUNK / 2, 10);
            write(&mut image, &mut tap, 17 * CHUNK + CHUNK / 2, CHUNK / 2, 11);
            (image, result.finish().expect("nothing failed"))
        })
        .await
        .unwrap();
        let keys = repo.keys();
        let known_at: Vec<u64> = (0..20).filter(|&i| known.get(i).is_some()).collect();
        assert_eq!(known_at, [0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 12, 17]);
        for index in known_at {
            let chunk = &image[(index * CHUNK) as usize..((index + 1) * CHUNK) as usize];
            let id = known.get(index).unwrap();
            assert_eq!(id, keys.chunk_id(chunk), "chunk {index}");
            assert!(writer.holds(&id), "chunk {index} is stored");
        }
        writer.flush().await.unwrap();
    }
}
