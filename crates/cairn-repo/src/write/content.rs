//! Items' contents into chunks: a stream cut by the chunker (fixed or content-defined),
//! each chunk hashed and handed to the [`ChunkWriter`] unless the repository holds it.

use std::sync::Arc;

use bytes::Bytes;

use super::{ChunkWriter, WriteStats};
use crate::chunker::{Chunking, StreamChunker};
use crate::crypto::ChunkId;
use crate::pack::ChunkKind;
use crate::{RepoError, RepoResult};

/// Cuts one item's bytes into chunks and stores them, remembering the chunk list.
pub struct ContentWriter {
    writer: Arc<ChunkWriter>,
    chunker: StreamChunker,
    kind: ChunkKind,
    /// Storing ahead of an item (see `ChunkWriter::store`).
    ahead: bool,
    ready: Vec<Bytes>,
    chunks: Vec<(ChunkId, u32)>,
    size: u64,
    /// Bytes of the chunks this writer found the repository lacked.
    new_bytes: u64,
}

/// How much of a file is read at once.
const READ_SIZE: usize = 4 * 1024 * 1024;
/// The read that confirms a file ended where its size said.
const END_PROBE: usize = 64 * 1024;

impl ContentWriter {
    pub fn new(writer: Arc<ChunkWriter>, chunking: Chunking, kind: ChunkKind) -> Self {
        ContentWriter {
            writer,
            chunker: StreamChunker::new(chunking),
            kind,
            ahead: false,
            ready: Vec::new(),
            chunks: Vec::new(),
            size: 0,
            new_bytes: 0,
        }
    }

    /// A writer for chunks stored ahead of the item that will use them: it counts only
    /// new chunks (see `ChunkWriter::store`) and keeps no chunk list.
    pub fn ahead(mut self) -> Self {
        self.ahead = true;
        self
    }

    async fn store_ready(&mut self) -> RepoResult<()> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let ready = std::mem::take(&mut self.ready);
        let lengths: Vec<u32> = ready.iter().map(|chunk| chunk.len() as u32).collect();
        let stored = self.writer.store_all(self.kind, ready, self.ahead).await?;
        for (stored, len) in stored.into_iter().zip(lengths) {
            if stored.new {
                self.new_bytes += len as u64;
            }
            // Chunks stored ahead belong to no item: a list of them would only grow.
            if !self.ahead {
                self.chunks.push((stored.id, len));
            }
        }
        Ok(())
    }

    pub async fn write(&mut self, data: &[u8]) -> RepoResult<()> {
        self.size += data.len() as u64;
        self.chunker.push(data, &mut self.ready);
        self.store_ready().await
    }

    /// Appends a chunk this writer's [`ChunkWriter`] already stored (or is storing),
    /// known by its id without its bytes: the copy of a database whose chunks were stored
    /// as it was written (`runtime::copy_tap`). Only between chunks, as the chunks around
    /// it must be cut where they would be if its bytes had gone through the chunker.
    pub fn push_known(&mut self, id: ChunkId, len: u32) -> RepoResult<()> {
        if !self.chunker.is_between_chunks() || !self.ready.is_empty() || self.ahead {
            return Err(RepoError::Other(
                "a known chunk was added in the middle of another".into(),
            ));
        }
        if !self.writer.holds(&id) {
            return Err(RepoError::Other(format!(
                "chunk {id} was to be stored already, but the repository lacks it"
            )));
        }
        WriteStats::add(&self.writer.stats().chunks_known, 1);
        WriteStats::add(&self.writer.stats().bytes_known, len as u64);
        self.chunks.push((id, len));
        self.size += len as u64;
        Ok(())
    }

    /// Reads `reader` to its end natively. `size_hint` (the file's size, if known) sizes
    /// the reads: buffers are zero-filled before a read, so a small file must cost a small
    /// buffer. Reads block the calling thread, which is where a plugin call already runs;
    /// the encoders work meanwhile on other cores.
    pub async fn read_all(
        &mut self,
        reader: &mut impl std::io::Read,
        size_hint: Option<u64>,
    ) -> std::io::Result<RepoResult<()>> {
        let start = self.size;
        loop {
            let read = self.size - start;
            let want = match size_hint {
                // One byte more than what is left, so the end shows in the same read.
                Some(hint) if read < hint => {
                    (hint - read).saturating_add(1).min(READ_SIZE as u64) as usize
                }
                // Past the hint: a small read to confirm the end, full ones if it grew.
                Some(hint) if read == hint => END_PROBE,
                _ => READ_SIZE,
            };
            match self.read_once(reader, want).await? {
                Ok(0) => return Ok(Ok(())),
                Ok(_) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
    }

    /// One read of at most `max` bytes from `reader` straight into the chunker, storing
    /// the chunks it completes; the bytes read, 0 at the end.
    pub async fn read_once(
        &mut self,
        reader: &mut impl std::io::Read,
        max: usize,
    ) -> std::io::Result<RepoResult<usize>> {
        let n = self.chunker.read_from(reader, max, &mut self.ready)?;
        self.size += n as u64;
        Ok(self.store_ready().await.map(|()| n))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Of the bytes chunked so far, those the repository did not hold yet.
    pub fn new_bytes(&self) -> u64 {
        self.new_bytes
    }

    pub async fn finish(mut self) -> RepoResult<(Vec<(ChunkId, u32)>, u64)> {
        self.chunker.finish(&mut self.ready);
        self.store_ready().await?;
        Ok((self.chunks, self.size))
    }
}
