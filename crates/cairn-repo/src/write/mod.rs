//! The write pipeline: chunks in, packs and index files out.
//!
//! The caller hashes each chunk and drops those the repository already holds; new chunks
//! go through a bounded channel to encoder threads (compress + seal, one per core), then
//! to a packer task that fills packs and uploads them with bounded concurrency. An index
//! file naming packs is written only after those packs have landed, and [`ChunkWriter::flush`]
//! returns only when everything stored so far is durable and indexed: the barrier a
//! snapshot manifest waits for. Memory stays bounded by the channel and pack sizes,
//! whatever the amount of data.

mod chunks;
mod content;

pub use chunks::{ChunkWriter, Stored, WriteStats};
pub use content::ContentWriter;
