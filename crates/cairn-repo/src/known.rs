//! The chunks of a file already stored, by position: what a writer that stored a file's
//! fixed-size chunks as they were written (a SQLite copy, chunk by chunk) hands to the
//! writer that stores the whole file, so that those chunks are neither read back nor hashed
//! again.

use crate::crypto::ChunkId;

/// The ids of a file's chunks, each stored from exactly the bytes the file holds at its
/// position; `None` where a chunk was not (or not only) written whole.
#[derive(Debug)]
pub struct KnownChunks {
    chunk_size: u32,
    ids: Vec<Option<ChunkId>>,
}

impl KnownChunks {
    /// `ids[i]` is the chunk starting at `i * chunk_size`.
    pub fn new(chunk_size: u32, ids: Vec<Option<ChunkId>>) -> KnownChunks {
        KnownChunks { chunk_size, ids }
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// How many chunks are known.
    pub fn stored(&self) -> usize {
        self.ids.iter().flatten().count()
    }

    /// The id of the chunk at `index` (the one starting at `index * chunk_size`), if
    /// the whole of it was stored as written.
    pub fn get(&self, index: u64) -> Option<ChunkId> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.ids.get(i).copied().flatten())
    }
}
