//! Host-held bytes behind the WIT `blob` resource: a buffer, a range of an open file, or an
//! item's contents streamed from the repository. The host reads and writes them natively
//! wherever a plugin hands one back; a plugin may also read them in pieces.

mod host;

use std::collections::VecDeque;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};

use crate::repo::RepoError;
use crate::repo::crypto::ChunkId;
use crate::repo::known::KnownChunks;
use crate::repo::read::{ChunkReader, Prefetch};

/// How much of a file one native read takes. Well below the allocator's mmap threshold
/// (set in main.rs), so piece buffers are recycled from the heap instead of being mapped,
/// faulted in and unmapped each time.
const FILE_PIECE: usize = 1024 * 1024;

/// Bytes a server sends as they come (a PostgreSQL COPY OUT).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BlobError>> + Send>>;

pub enum Blob {
    /// Bytes the host hands a plugin (a pack for a sink): read without copying.
    Shared { data: Bytes, pos: usize },
    /// Bytes a plugin builds (with the constructor and `append`).
    Memory { data: BytesMut, pos: usize },
    /// Up to `remaining` bytes of a file, from its current position.
    File {
        file: std::fs::File,
        remaining: u64,
        size: u64,
        /// Of a database copy, the chunks stored as it was written (whole file only).
        known: Option<Arc<KnownChunks>>,
    },
    /// An item's contents, read chunk by chunk from the repository: from the prefetch
    /// when it has them (each chunk with its position there), else directly.
    Chunks {
        reader: Arc<tokio::sync::Mutex<ChunkReader>>,
        prefetch: Option<Arc<tokio::sync::Mutex<Prefetch>>>,
        chunks: VecDeque<(usize, ChunkId)>,
        current: Bytes,
        size: u64,
    },
    /// A stream of unknown length, read as it arrives.
    Stream { stream: ByteStream, current: Bytes },
}

impl Blob {
    pub fn from_bytes(data: Bytes) -> Blob {
        Blob::Shared { data, pos: 0 }
    }

    pub fn size(&self) -> Option<u64> {
        match self {
            Blob::Shared { data, .. } => Some(data.len() as u64),
            Blob::Memory { data, .. } => Some(data.len() as u64),
            Blob::File { size, .. } => Some(*size),
            Blob::Chunks { size, .. } => Some(*size),
            Blob::Stream { .. } => None,
        }
    }

    /// Stops an item's blob from taking chunks from the snapshot's in-order prefetch. Blobs
    /// read side by side (parallel loads) would each drop the chunks the others wait for;
    /// read directly, they cost no more than their own chunks.
    pub fn without_prefetch(mut self) -> Blob {
        if let Blob::Chunks { prefetch, .. } = &mut self {
            *prefetch = None;
        }
        self
    }

    /// The next piece of at most `max` bytes; `None` at the end.
    pub async fn next_piece(&mut self, max: usize) -> Result<Option<Bytes>, BlobError> {
        let max = max.max(1);
        match self {
            Blob::Shared { data, pos } => {
                if *pos >= data.len() {
                    return Ok(None);
                }
                let end = (*pos + max).min(data.len());
                let piece = data.slice(*pos..end);
                *pos = end;
                Ok(Some(piece))
            }
            Blob::Memory { data, pos } => {
                if *pos >= data.len() {
                    return Ok(None);
                }
                let end = (*pos + max).min(data.len());
                let piece = Bytes::copy_from_slice(&data[*pos..end]);
                *pos = end;
                Ok(Some(piece))
            }
            Blob::File {
                file, remaining, ..
            } => {
                if *remaining == 0 {
                    return Ok(None);
                }
                let want = (*remaining).min(max as u64).min(FILE_PIECE as u64) as usize;
                let mut buf = vec![0u8; want];
                let n = read_full(file, &mut buf).map_err(BlobError::Io)?;
                if n == 0 {
                    *remaining = 0;
                    return Ok(None);
                }
                buf.truncate(n);
                *remaining -= n as u64;
                Ok(Some(Bytes::from(buf)))
            }
            Blob::Chunks {
                reader,
                prefetch,
                chunks,
                current,
                ..
            } => {
                while current.is_empty() {
                    let Some((seq, id)) = chunks.pop_front() else {
                        return Ok(None);
                    };
                    let prefetched = match prefetch {
                        Some(p) => p.lock().await.take(seq).await,
                        None => None,
                    };
                    *current = match prefetched {
                        Some(chunk) => chunk,
                        None => reader.lock().await.read(&id).await,
                    }
                    .map_err(BlobError::Repo)?;
                }
                let n = current.len().min(max);
                Ok(Some(current.split_to(n)))
            }
            Blob::Stream { stream, current } => {
                while current.is_empty() {
                    match stream.next().await {
                        Some(piece) => *current = piece?,
                        None => return Ok(None),
                    }
                }
                let n = current.len().min(max);
                Ok(Some(current.split_to(n)))
            }
        }
    }

    /// The remaining contents of a blob the plugin keeps (a borrowed one): shared bytes
    /// without copying, the rest read to the end.
    pub async fn read_all(&mut self) -> Result<Bytes, BlobError> {
        if let Blob::Shared { data, pos } = self {
            let out = data.slice(*pos..);
            *pos = data.len();
            return Ok(out);
        }
        let mut out = BytesMut::with_capacity(self.size().unwrap_or(0) as usize);
        while let Some(piece) = self.next_piece(FILE_PIECE).await? {
            out.extend_from_slice(&piece);
        }
        Ok(out.freeze())
    }

    /// Takes the whole (remaining) contents; for memory blobs without copying.
    pub async fn into_bytes(mut self) -> Result<Bytes, BlobError> {
        if let Blob::Shared { data, pos } = self {
            return Ok(data.slice(pos..));
        }
        if let Blob::File {
            file, remaining, ..
        } = &mut self
        {
            // One buffer of the known size, filled by the kernel: no zero-fill, no copy.
            let mut buf = Vec::with_capacity(*remaining as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut *file, *remaining), &mut buf)
                .map_err(BlobError::Io)?;
            *remaining = 0;
            return Ok(Bytes::from(buf));
        }
        if let Blob::Memory { data, pos } = self {
            let mut data = data;
            let _ = data.split_to(pos);
            return Ok(data.freeze());
        }
        let mut out = BytesMut::with_capacity(self.size().unwrap_or(0) as usize);
        while let Some(piece) = self.next_piece(FILE_PIECE).await? {
            out.extend_from_slice(&piece);
        }
        Ok(out.freeze())
    }
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("reading: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Repo(RepoError),
    /// A server stream failed (the message names the server and statement).
    #[error("{0}")]
    Remote(String),
}
