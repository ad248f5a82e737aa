//! PostgreSQL, run natively by the host: connect ([`connect`]), query catalogs
//! ([`Connection::query`]), and move table data as COPY streams that never enter guest
//! memory: a [`CopyOut`]'s contents splice into the item writer (several at once with
//! `ItemWriter::add_blobs`), and [`Connection::copy_in`] loads item contents in parallel.
//!
//! ```ignore
//! let db = postgres::connect("postgres://app@127.0.0.1/app", Some(&password))?;
//! db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
//! let snapshot = &db.query("SELECT pg_export_snapshot()")?[0][0];
//! db.open_workers(2, &format!("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT '{}'", snapshot.as_deref().unwrap_or_default()))?;
//! let copy = db.copy_out("COPY public.events TO STDOUT");
//! writer.add_blobs(vec![BlobItem { meta, chunking: Chunking::ContentDefined, contents: copy.contents()? }], 2)?;
//! let rows = copy.rows();
//! ```

pub use crate::bindings::cairn::plugin::postgres::{
    Connection, CopyIn, CopyOut, ServerIdentity, connect,
};

/// `value` as a SQL string literal (`'it''s'`), for the few values a plugin puts into SQL
/// itself (the query interface takes no parameters).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `name` as a SQL identifier (`"Order"`).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
