//! Reading chunks back: locate through the index, fetch a range of the pack (reading
//! ahead, because restores walk packs in the order backups wrote them), open, decompress
//! and check each chunk against its id. Nothing unverified is ever returned.

mod chunks;
mod items;
mod prefetch;

pub use chunks::{ChunkReader, open_chunk};
pub use items::ItemStream;
pub use prefetch::{Plan, Prefetch, plan_of};
