//! SQLite, run natively by the host: take a consistent copy of a live database with the
//! online backup API ([`snapshot`]), check a copy ([`Database::check`]) and run read-only
//! queries on it ([`Database::query`]). The user's database is only ever opened read-only.
//!
//! ```ignore
//! let copy = sqlite::snapshot("/srv/app/app.db")?;
//! copy.begin_check(CheckLevel::Full);          // runs while the copy is stored
//! writer.add_blob(&meta, &Chunking::Fixed(65536), &copy.contents()?)?;
//! let problems = copy.check(CheckLevel::Full)?; // empty: the copy is sound
//! ```

pub use crate::bindings::cairn::plugin::sqlite::{CheckLevel, Database, open, snapshot};
