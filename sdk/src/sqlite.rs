//! SQLite, run natively by the host: take a consistent copy of a live database with the
//! online backup API ([`snapshot`]), check a copy ([`Database::check`]) and run read-only
//! queries on it ([`Database::query`]). The user's database is only ever opened read-only.
//!
//! ```ignore
//! // Optional: store chunks while the copy is taken (see `ItemWriter::store_ahead`):
//! // with fixed chunks of up to 64 KiB the host stores the copy's own chunks as SQLite
//! // writes them, and `add_blob` of the copy then reads back almost nothing.
//! let ahead = writer.store_ahead("/srv/app/app.db", Chunking::Fixed(65536))?;
//! let copy = sqlite::snapshot("/srv/app/app.db")?;
//! drop(ahead);
//! copy.begin_check(CheckLevel::Full);          // runs while the copy is stored
//! writer.add_blob(&meta, Chunking::Fixed(65536), &copy.contents()?)?;
//! let problems = copy.check(CheckLevel::Full)?; // empty: the copy is sound
//! ```

pub use crate::bindings::cairn::plugin::sqlite::{
    CheckLevel, Database, Followed, Follower, apply_changes, follow, journal_size, open, snapshot,
};
