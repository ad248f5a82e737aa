//! The `sqlite` capability: consistent copies of live databases through SQLite's online
//! backup API, and integrity checks and read-only queries on copies, all native.
//!
//! The user's database is only ever opened read-only: nothing (no table, no trigger, no
//! pragma that persists) is written into it. Copies live in host temporary files that are
//! removed when the plugin drops its handle, or when its store goes away after a trap.

pub mod copy_tap;
pub mod follow;
mod host;
mod tail;
mod vfs;
pub mod wal;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::capabilities::sqlite::copy_tap::CopyTap;
use crate::errors::io_error;
use crate::plugin_api::PluginError;
use crate::plugin_api::sqlite::CheckLevel;
use crate::repo::known::KnownChunks;
use crate::repo::write::ChunkWriter;

/// How long a snapshot waits for a writer's lock before giving up (retryable).
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// The most problems a check reports, and rows a query returns.
const MAX_PROBLEMS: u32 = 100;
const MAX_ROWS: usize = 1000;

type CheckTask = tokio::task::JoinHandle<Result<Vec<String>, PluginError>>;

/// A database file the host holds for a plugin: a snapshot copy (its temporary file goes
/// with the handle) or a restored copy.
pub struct Database {
    path: PathBuf,
    /// Removes the snapshot copy on drop.
    copy: Option<tempfile::TempPath>,
    page_size: u32,
    page_count: u64,
    size: u64,
    running_check: Option<(CheckLevel, CheckTask)>,
    /// The copy's chunks stored as it was written, if a tap stored them.
    known: Option<Arc<KnownChunks>>,
}

/// What [`StoreAheadHandover::take_over`] returns: the writer and fixed chunk size, if a
/// store-ahead was taken over.
pub type Handover<'a> = Pin<Box<dyn Future<Output = Option<(Arc<ChunkWriter>, u32)>> + Send + 'a>>;

/// What a snapshot may take over from the backup it is taken in: a store-ahead of the same
/// database, with fixed chunks no larger than the copy's writes. The backup stops it and
/// hands over the writer and chunk size the copy's tap stores with (`copy_tap`). A trait,
/// so that this capability knows nothing of the capture that implements it.
pub trait StoreAheadHandover: Send {
    fn take_over<'a>(&'a mut self, source: &'a str, largest_chunk: u32) -> Handover<'a>;
}

fn sqlite_error(what: &str, e: rusqlite::Error) -> PluginError {
    use rusqlite::ErrorCode;
    let message = format!("{what}: {e}");
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            PluginError::Retryable(message)
        }
        Some(ErrorCode::CannotOpen) => PluginError::NotFound(message),
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => PluginError::Denied(message),
        _ => PluginError::Permanent(message),
    }
}

/// An error while taking the copy. The live database is only read, so a full disk or a
/// failed write is the copy's filesystem, not the database's.
fn copy_error(what: &str, temp_dir: &Path, e: rusqlite::Error) -> PluginError {
    use rusqlite::ffi;
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return PluginError::Permanent(format!(
            "{what}: no room for the copy in {} ({e}): cairn copies each database there \
             before storing it; free space, or point TMPDIR at a filesystem with room for \
             the whole database",
            temp_dir.display()
        ));
    }
    let writing = matches!(
        &e,
        rusqlite::Error::SqliteFailure(failure, _) if matches!(
            failure.extended_code,
            ffi::SQLITE_IOERR_WRITE | ffi::SQLITE_IOERR_TRUNCATE | ffi::SQLITE_IOERR_FSYNC
        )
    );
    if writing {
        return PluginError::Permanent(format!(
            "{what}: writing the copy in {} failed ({e}): check that filesystem (space, \
             quotas, file size limits) or point TMPDIR at another one",
            temp_dir.display()
        ));
    }
    sqlite_error(what, e)
}

/// Opens a file that nobody else writes (a copy) read-only and immutable: SQLite then
/// takes no locks and creates no `-wal` or `-shm` beside it.
fn open_immutable(path: &Path) -> Result<Connection, PluginError> {
    let uri = format!("file:{}?immutable=1", uri_escape(&path.to_string_lossy()));
    crate::capabilities::sqlite::vfs::register().map_err(PluginError::Permanent)?;
    Connection::open_with_flags_and_vfs(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        crate::capabilities::sqlite::vfs::NAME,
    )
    .map_err(|e| sqlite_error(&path.to_string_lossy(), e))
}

/// Escapes what a SQLite URI filename treats specially.
fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

fn page_geometry(conn: &Connection, what: &str) -> Result<(u32, u64), PluginError> {
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| sqlite_error(what, e))?;
    let page_count: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| sqlite_error(what, e))?;
    Ok((page_size, page_count.max(0) as u64))
}

/// Copies the live database at `source` into a new temporary file in `temp_dir`, in one
/// backup step: one read transaction sees one committed state, whatever writers do. With
/// a `tap`, the copy's chunks are stored as it is written.
pub fn snapshot(
    source: &Path,
    temp_dir: &Path,
    tap: Option<CopyTap>,
) -> Result<Database, PluginError> {
    let what = source.to_string_lossy();
    let meta = std::fs::metadata(source).map_err(|e| io_error(&what, e))?;
    if !meta.is_file() {
        return Err(PluginError::Permanent(format!(
            "{what} is not a file: point `path` at a SQLite database file"
        )));
    }
    crate::capabilities::sqlite::vfs::register().map_err(PluginError::Permanent)?;
    // Through our VFS, the backup reads the live database 64 KiB at a time instead of one
    // page per system call; what it reads ahead lasts one read transaction.
    let live = Connection::open_with_flags_and_vfs(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        crate::capabilities::sqlite::vfs::NAME,
    )
    .map_err(|e| sqlite_error(&what, e))?;
    live.busy_timeout(LOCK_WAIT)
        .map_err(|e| sqlite_error(&what, e))?;
    let copy = tempfile::Builder::new()
        .prefix(".cairn-sqlite-")
        .suffix(".db")
        .tempfile_in(temp_dir)
        .map_err(|e| io_error(&temp_dir.to_string_lossy(), e))?
        .into_temp_path();
    let mut out = Connection::open_with_flags_and_vfs(
        &copy,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        crate::capabilities::sqlite::vfs::NAME,
    )
    .map_err(|e| sqlite_error("the snapshot copy", e))?;
    // A scratch file: no journal and no fsync (a third of the copy's time), written
    // through the VFS that gathers page writes into 64 KiB calls. If the host dies
    // mid-copy the file is simply discarded.
    out.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
        .map_err(|e| sqlite_error("the snapshot copy", e))?;
    let tapped = match tap {
        Some(tap) => {
            let result = tap.result();
            crate::capabilities::sqlite::vfs::tap(&out, Box::new(tap))
                .map_err(|e| sqlite_error("the snapshot copy", e))?;
            Some(result)
        }
        None => None,
    };
    let copy_started = Instant::now();
    {
        let backup = Backup::new(&live, &mut out).map_err(|e| sqlite_error(&what, e))?;
        let started = Instant::now();
        loop {
            match backup
                .step(-1)
                .map_err(|e| copy_error(&what, temp_dir, e))?
            {
                StepResult::Done => break,
                // One step of -1 pages copies everything; a writer holding the lock makes
                // it report busy without copying, so wait and try again.
                StepResult::More | StepResult::Busy | StepResult::Locked => {
                    if started.elapsed() > LOCK_WAIT {
                        return Err(PluginError::Retryable(format!(
                            "{what}: the database stayed locked by a writer for {}s",
                            LOCK_WAIT.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {}
            }
        }
    }
    crate::capabilities::sqlite::vfs::flush(&out).map_err(|e| copy_error(&what, temp_dir, e))?;
    let (page_size, page_count) = page_geometry(&out, "the snapshot copy")?;
    tracing::debug!(
        "{what}: copied {page_count} pages in {:.2?}",
        copy_started.elapsed()
    );
    drop(out);
    drop(live);
    let known = tapped.and_then(|tapped| tapped.finish()).map(Arc::new);
    if let Some(known) = &known {
        tracing::debug!(
            "{what}: {} chunks of the copy stored as it was written",
            known.stored()
        );
    }
    if page_count == 0 {
        return Err(PluginError::Permanent(format!(
            "{what}: the copy came out empty (0 pages): is this the right database file?"
        )));
    }
    held_copy(copy, (page_size, page_count), known)
}

/// A snapshot copy in a temporary file as the plugin holds it (the file goes with it).
fn held_copy(
    copy: tempfile::TempPath,
    (page_size, page_count): (u32, u64),
    known: Option<Arc<KnownChunks>>,
) -> Result<Database, PluginError> {
    let size = std::fs::metadata(&copy)
        .map_err(|e| io_error("the snapshot copy", e))?
        .len();
    Ok(Database {
        path: copy.to_path_buf(),
        copy: Some(copy),
        page_size,
        page_count,
        size,
        running_check: None,
        known,
    })
}

/// Opens a copy (a restored file) for checks and queries.
pub fn open(path: &Path) -> Result<Database, PluginError> {
    let what = path.to_string_lossy();
    let size = std::fs::metadata(path)
        .map_err(|e| io_error(&what, e))?
        .len();
    let conn = open_immutable(path)?;
    let (page_size, page_count) = page_geometry(&conn, &what)?;
    Ok(Database {
        path: path.to_path_buf(),
        copy: None,
        page_size,
        page_count,
        size,
        running_check: None,
        known: None,
    })
}

/// Runs `integrity_check` or `quick_check`; the problems found, none when sound.
pub fn check(path: &Path, level: CheckLevel) -> Result<Vec<String>, PluginError> {
    let conn = open_immutable(path)?;
    let pragma = match level {
        CheckLevel::Full => "integrity_check",
        CheckLevel::Quick => "quick_check",
    };
    let what = path.to_string_lossy();
    let started = Instant::now();
    let rows: Result<Vec<String>, _> = conn
        .prepare(&format!("PRAGMA {pragma}({MAX_PROBLEMS})"))
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect())
        });
    tracing::debug!("{what}: {pragma} took {:.2?}", started.elapsed());
    match rows {
        Ok(rows) if rows == ["ok"] => Ok(Vec::new()),
        Ok(rows) => Ok(rows),
        // Damage bad enough to stop the check itself is the check's finding, not a failure
        // to run it.
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            ) =>
        {
            Ok(vec![e.to_string()])
        }
        Err(e) => Err(sqlite_error(&what, e)),
    }
}

/// Runs one read-only statement and renders its rows as text.
pub fn query(path: &Path, sql: &str) -> Result<Vec<Vec<String>>, PluginError> {
    use rusqlite::types::ValueRef;
    let conn = open_immutable(path)?;
    let bad_query = |e: rusqlite::Error| PluginError::Permanent(format!("query `{sql}`: {e}"));
    let mut stmt = conn.prepare(sql).map_err(bad_query)?;
    if !stmt.readonly() {
        return Err(PluginError::Permanent(format!(
            "query `{sql}` would write: probes must be read-only (SELECT)"
        )));
    }
    let columns = stmt.column_count();
    let mut rows = stmt.query([]).map_err(bad_query)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(bad_query)? {
        if out.len() == MAX_ROWS {
            break;
        }
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i).map_err(bad_query)? {
                ValueRef::Null => "NULL".to_string(),
                ValueRef::Integer(v) => v.to_string(),
                ValueRef::Real(v) => v.to_string(),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                ValueRef::Blob(b) => format!("x'{}'", hex::encode(b)),
            });
        }
        out.push(values);
    }
    Ok(out)
}

/// Runs blocking SQLite work off the async executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PluginError> + Send + 'static,
) -> Result<T, PluginError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(PluginError::Permanent(format!("SQLite task failed: {e}"))))
}

/// A live database a plugin follows (`sqlite.follower`): the follower with its tailer,
/// used on blocking threads one call at a time.
pub struct Followed {
    tailed: Arc<tail::Tailed>,
}

fn follow_error(e: follow::FollowError) -> PluginError {
    match e {
        follow::FollowError::Busy { .. } => PluginError::Retryable(e.to_string()),
        follow::FollowError::NotWal(..) => PluginError::Permanent(e.to_string()),
        other => PluginError::Permanent(other.to_string()),
    }
}

/// A point as the plugin carries it.
fn encode_point(point: follow::Point) -> String {
    serde_json::to_string(&point).expect("a WAL position always serialises")
}

fn decode_point(point: &str) -> Result<follow::Point, PluginError> {
    serde_json::from_str(point)
        .map_err(|e| PluginError::Permanent(format!("not a SQLite log position: {e}")))
}

/// Changes encoded for a segment, with the page size of the log they were read from
/// (empty when there are none).
fn encode_changes(changes: &wal::Changes, point: follow::Point) -> Vec<u8> {
    match point {
        Some(at) if !changes.is_empty() => changes.encode(at.header.page_size),
        _ => Vec::new(),
    }
}

impl Followed {
    pub fn open(path: &Path) -> Result<Followed, PluginError> {
        let follower = follow::Follower::open(path).map_err(follow_error)?;
        let tailed = tail::Tailed::start(follower).map_err(|e| {
            PluginError::Retryable(format!("starting the thread that follows the log: {e}"))
        })?;
        Ok(Followed {
            tailed: Arc::new(tailed),
        })
    }

    fn with<T: Send + 'static, W>(
        &self,
        work: W,
    ) -> impl Future<Output = Result<T, PluginError>> + use<T, W>
    where
        W: FnOnce(&mut tail::State) -> Result<T, PluginError> + Send + 'static,
    {
        let tailed = self.tailed.clone();
        blocking(move || {
            tailed.with(work).unwrap_or_else(|| {
                Err(PluginError::Permanent(
                    "an earlier call on this follower panicked".into(),
                ))
            })
        })
    }

    /// Whether the chain goes on from `point`: if so, what changed since (encoded) and the
    /// point reached; if not, why.
    pub async fn resume(
        &self,
        point: String,
    ) -> Result<Result<(Vec<u8>, String), String>, PluginError> {
        self.with(move |state| {
            let point = decode_point(&point)?;
            Ok(match state.follower.resume(point).map_err(follow_error)? {
                follow::Resume::Continues(changes) => {
                    state.chain_begins();
                    let point = state.follower.point();
                    Ok((encode_changes(&changes, point), encode_point(point)))
                }
                follow::Resume::Gap(why) => Err(why),
            })
        })
        .await
    }

    /// A copy in a temporary file as of the end of the log, and that point.
    pub async fn snapshot(&self, temp_dir: PathBuf) -> Result<(Database, String), PluginError> {
        self.with(move |state| {
            let copy = tempfile::Builder::new()
                .prefix(".cairn-sqlite-")
                .suffix(".db")
                .tempfile_in(&temp_dir)
                .map_err(|e| io_error(&temp_dir.to_string_lossy(), e))?
                .into_temp_path();
            // The backup API writes a fresh file; it must not find one there.
            std::fs::remove_file(&copy).map_err(|e| io_error(&copy.to_string_lossy(), e))?;
            let point = state.follower.snapshot(&copy).map_err(follow_error)?;
            state.chain_begins();
            let geometry = page_geometry(&open_immutable(&copy)?, "the snapshot copy")?;
            Ok((held_copy(copy, geometry, None)?, encode_point(point)))
        })
        .await
    }

    /// What was committed since the last read, encoded (empty if nothing), and the point
    /// reached, after a checkpoint that keeps the log under `max_wal` bytes; or the gap,
    /// when the log outgrew every checkpoint and the follower had to let go of it.
    pub async fn sync(
        &self,
        max_wal: u64,
    ) -> Result<Result<(Vec<u8>, String), String>, PluginError> {
        self.with(move |state| {
            Ok(match state.sync(max_wal).map_err(follow_error)? {
                tail::Synced::Changes(changes) => {
                    let point = state.follower.point();
                    Ok((encode_changes(&changes, point), encode_point(point)))
                }
                tail::Synced::Gap(why) => Err(why),
            })
        })
        .await
    }
}

/// Writes encoded changes onto the database file at `path`.
pub fn apply_changes(path: &Path, encoded: &[u8]) -> Result<(), PluginError> {
    if encoded.is_empty() {
        return Ok(());
    }
    let (page_size, changes) = wal::Changes::decode(encoded).map_err(PluginError::Permanent)?;
    let (copy_page_size, _) = page_geometry(&open_immutable(path)?, &path.to_string_lossy())?;
    if copy_page_size != page_size {
        return Err(PluginError::Permanent(format!(
            "{}: the changes are of {page_size}-byte pages, the database has {copy_page_size}-byte pages",
            path.display()
        )));
    }
    follow::apply(path, page_size, &changes).map_err(|e| io_error(&path.to_string_lossy(), e))
}

/// Bytes of the `-wal` and `-journal` files beside `database`; a missing one counts 0.
pub fn journal_size(database: &Path) -> Result<u64, PluginError> {
    let mut total = 0;
    for suffix in ["-wal", "-journal"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::metadata(&name) {
            Ok(meta) => total += meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&Path::new(&name).to_string_lossy(), e)),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_uri_specials() {
        assert_eq!(uri_escape("/a b/c?d#e%f.db"), "/a b/c%3Fd%23e%25f.db");
    }

    #[test]
    fn snapshot_of_a_live_wal_database_checks_clean_and_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.db");
        let conn = Connection::open(&live).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);",
        )
        .unwrap();
        let entries = || std::fs::read_dir(dir.path()).unwrap().count();
        let before = entries();
        let db = snapshot(&live, dir.path(), None).unwrap();
        assert!(db.page_count > 0);
        assert!(check(&db.path, CheckLevel::Full).unwrap().is_empty());
        assert_eq!(query(&db.path, "SELECT sum(x) FROM t").unwrap(), [["6"]]);
        assert!(query(&db.path, "DELETE FROM t").is_err());
        let copy = db.path.clone();
        drop(db);
        assert!(
            !copy.exists(),
            "the temporary copy is removed with its handle"
        );
        assert_eq!(before, entries());
    }

    /// Copies written through the gathering VFS hold the source's pages byte for byte
    /// (bar the header fields a backup rewrites), for small and large pages alike.
    #[test]
    fn a_copy_holds_every_page_of_the_source() {
        for page_size in [1024, 4096, 65536] {
            let dir = tempfile::tempdir().unwrap();
            let live = dir.path().join("live.db");
            let conn = Connection::open(&live).unwrap();
            conn.execute_batch(&format!(
                "PRAGMA page_size={page_size}; PRAGMA journal_mode=WAL;
                 CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB);
                 CREATE INDEX t_body ON t(body);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000)
                 INSERT INTO t(body) SELECT randomblob(300 + i % 700) FROM n;
                 DELETE FROM t WHERE id % 7 = 0;
                 PRAGMA wal_checkpoint(TRUNCATE);"
            ))
            .unwrap();
            let db = snapshot(&live, dir.path(), None).unwrap();
            assert_eq!(db.page_size, page_size);
            let (source, copy) = (
                std::fs::read(&live).unwrap(),
                std::fs::read(&db.path).unwrap(),
            );
            assert!(source.len() > 8 << 20);
            assert_eq!(source.len(), copy.len(), "page size {page_size}");
            // The header's write and read versions (WAL or not), change counter, schema
            // cookie and version-valid-for number belong to the copy.
            let differs: Vec<usize> = (0..source.len())
                .filter(|&i| source[i] != copy[i])
                .collect();
            assert!(
                differs
                    .iter()
                    .all(|i| matches!(i, 18 | 19 | 24..=27 | 40..=43 | 92..=95)),
                "page size {page_size}: the copy differs at {:?}",
                &differs[..differs.len().min(10)]
            );
            assert!(check(&db.path, CheckLevel::Full).unwrap().is_empty());
            // Read back through the read-ahead cache, in table order both ways and in
            // index order, the copy answers as the source does.
            let answer = |conn: &Connection, sql: &str| -> String {
                conn.query_row(sql, [], |r| r.get(0)).unwrap()
            };
            let copy = open_immutable(&db.path).unwrap();
            for sql in [
                "SELECT group_concat(hex(substr(body, 1 + id % 200, 2)), '') FROM (SELECT * FROM t ORDER BY id)",
                "SELECT group_concat(hex(substr(body, 1 + id % 300, 2)), '') FROM (SELECT * FROM t ORDER BY id DESC)",
                "SELECT group_concat(id, ',') FROM (SELECT id FROM t INDEXED BY t_body ORDER BY body)",
            ] {
                assert!(
                    answer(&conn, sql) == answer(&copy, sql),
                    "page size {page_size}: {sql} differs"
                );
            }
        }
    }

    /// What the VFS reads ahead from a live database lasts one read transaction. A writer
    /// moves money between the first accounts (a few blocks of pages, which the VFS keeps)
    /// and counts its commits; in WAL mode it keeps checkpointing into the database file.
    /// Every read through the VFS sees the total kept and the count never going back, the
    /// last one sees every commit, and every snapshot keeps the total of all accounts.
    #[test]
    fn reads_of_a_live_database_through_the_vfs_never_outlive_their_transaction() {
        const ACCOUNTS: i64 = 20_000;
        const MOVED: u64 = 1_000;
        for mode in ["wal", "delete"] {
            let dir = tempfile::tempdir().unwrap();
            let live = dir.path().join("bank.db");
            let conn = Connection::open(&live).unwrap();
            conn.pragma_update(None, "journal_mode", mode).unwrap();
            conn.execute_batch(&format!(
                "CREATE TABLE commits(n INTEGER);
                 INSERT INTO commits VALUES (0);
                 CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER, pad BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {ACCOUNTS})
                 INSERT INTO accounts SELECT i, 100, randomblob(200) FROM n;"
            ))
            .unwrap();
            drop(conn);
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writer = {
                let (live, stop) = (live.clone(), stop.clone());
                std::thread::spawn(move || {
                    let conn = Connection::open(&live).unwrap();
                    conn.execute_batch("PRAGMA synchronous=OFF").unwrap();
                    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
                    let mut commits = 0i64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let (from, to) = (seed % MOVED + 1, (seed >> 32) % MOVED + 1);
                        conn.busy_timeout(Duration::from_secs(10)).unwrap();
                        conn.execute_batch(&format!(
                            "BEGIN IMMEDIATE;
                             UPDATE accounts SET balance = balance - 7 WHERE id = {from};
                             UPDATE accounts SET balance = balance + 7 WHERE id = {to};
                             UPDATE commits SET n = n + 1;
                             COMMIT;"
                        ))
                        .unwrap();
                        commits += 1;
                        if commits % 20 == 0 && mode == "wal" {
                            // Without waiting: while a reader holds the WAL it backfills what
                            // it can, otherwise it starts the WAL over.
                            conn.busy_timeout(Duration::ZERO).unwrap();
                            let _ =
                                conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
                        }
                    }
                    commits
                })
            };
            crate::capabilities::sqlite::vfs::register().unwrap();
            let reader = Connection::open_with_flags_and_vfs(
                &live,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                crate::capabilities::sqlite::vfs::NAME,
            )
            .unwrap();
            reader.busy_timeout(Duration::from_secs(10)).unwrap();
            // One statement, one read transaction.
            let read = |conn: &Connection, accounts: i64| -> (i64, i64) {
                conn.query_row(
                    "SELECT (SELECT n FROM commits),
                            (SELECT sum(balance) FROM accounts WHERE id <= ?1)",
                    [accounts],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap()
            };
            let mut seen = 0;
            for _ in 0..200 {
                let (commits, total) = read(&reader, MOVED as i64);
                assert_eq!(total, MOVED as i64 * 100, "{mode}: a read transaction");
                assert!(
                    commits >= seen,
                    "{mode}: read {commits} commits after {seen}"
                );
                seen = commits;
                // Lets the writer in, in rollback-journal mode.
                std::thread::sleep(Duration::from_millis(2));
            }
            for _ in 0..3 {
                let db = snapshot(&live, dir.path(), None).unwrap();
                let copy = open_immutable(&db.path).unwrap();
                assert_eq!(
                    read(&copy, ACCOUNTS).1,
                    ACCOUNTS * 100,
                    "{mode}: a snapshot"
                );
                assert!(check(&db.path, CheckLevel::Full).unwrap().is_empty());
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let commits = writer.join().unwrap();
            assert!(
                commits > 100,
                "{mode}: the writer committed only {commits} times"
            );
            assert_eq!(
                read(&reader, MOVED as i64).0,
                commits,
                "{mode}: the last read"
            );
        }
    }

    /// A copy taken with a tap while another connection writes: every chunk the tap
    /// recorded is the chunk the finished copy holds there, and stored. It records some
    /// (not those written while the encoders were busy: how many depends on the machine)
    /// by either write path: pages gathered into 64 KiB writes, or 64 KiB pages written
    /// as they come.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tapped_copy_records_the_ids_of_the_chunks_it_holds() {
        const CHUNK: usize = 65536;
        let repo = crate::repo::memory::repository().await;
        let writer = Arc::new(ChunkWriter::start(&repo.load_index().await.unwrap()).unwrap());
        for page_size in [1024, 4096, 65536] {
            let dir = tempfile::tempdir().unwrap();
            let live = dir.path().join("live.db");
            Connection::open(&live)
                .unwrap()
                .execute_batch(&format!(
                    "PRAGMA page_size={page_size}; PRAGMA journal_mode=WAL;
                     CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB);
                     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 30000)
                     INSERT INTO t(body) SELECT randomblob(300 + i % 200) FROM n;"
                ))
                .unwrap();
            // Chunks written while the encoders are busy are left, not waited for (see
            // copy_tap), so on a loaded machine one copy may record few: every recorded id
            // must be right in every attempt, and some attempt must record chunks.
            let mut recorded = (0, 0);
            for _attempt in 0..5 {
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let busy = {
                    let (live, stop) = (live.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let conn = Connection::open(&live).unwrap();
                        conn.busy_timeout(Duration::from_secs(10)).unwrap();
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            conn.execute("INSERT INTO t(body) VALUES (randomblob(400))", [])
                                .unwrap();
                        }
                    })
                };
                let tap = CopyTap::new(writer.clone(), CHUNK as u32);
                let (source, temp) = (live.clone(), dir.path().to_path_buf());
                let db = tokio::task::spawn_blocking(move || snapshot(&source, &temp, Some(tap)))
                    .await
                    .unwrap()
                    .unwrap();
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                busy.join().unwrap();
                let known = db.known.clone().expect("the tap stored chunks");
                let copy = std::fs::read(&db.path).unwrap();
                let whole = copy.len() / CHUNK;
                for (index, chunk) in copy.chunks_exact(CHUNK).enumerate() {
                    if let Some(id) = known.get(index as u64) {
                        assert_eq!(
                            id,
                            repo.keys().chunk_id(chunk),
                            "page size {page_size}, chunk {index}"
                        );
                        assert!(writer.holds(&id));
                    }
                }
                assert!(check(&db.path, CheckLevel::Full).unwrap().is_empty());
                recorded = (known.stored(), whole);
                if known.stored() >= 5 && whole > 100 {
                    break;
                }
            }
            assert!(
                recorded.0 >= 5 && recorded.1 > 100,
                "page size {page_size}: {} of {} chunks recorded",
                recorded.0,
                recorded.1
            );
        }
        writer.flush().await.unwrap();
    }

    #[test]
    fn copy_write_errors_name_the_copy_directory_and_the_fix() {
        let copying = |code| {
            let e = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
            copy_error("/srv/app.db", Path::new("/scratch"), e)
        };
        for (code, says) in [
            (
                rusqlite::ffi::SQLITE_FULL,
                "no room for the copy in /scratch",
            ),
            (
                rusqlite::ffi::SQLITE_IOERR_WRITE,
                "writing the copy in /scratch failed",
            ),
        ] {
            let message = copying(code).to_string();
            assert!(
                message.contains(says) && message.contains("TMPDIR"),
                "{message}"
            );
        }
        assert!(matches!(
            copying(rusqlite::ffi::SQLITE_BUSY),
            PluginError::Retryable(_)
        ));
    }

    #[test]
    fn opening_a_copy_creates_no_side_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(conn);
        let db = open(&path).unwrap();
        assert!(check(&db.path, CheckLevel::Quick).unwrap().is_empty());
        assert_eq!(query(&db.path, "SELECT count(*) FROM t").unwrap(), [["1"]]);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["copy.db"]);
    }
}
