//! Following a live SQLite database's write-ahead log: every committed transaction read
//! from the `-wal` file natively, in order, with no hole, and checkpoints kept under
//! control, without writing anything into the database.
//!
//! # Why no frame is ever lost
//!
//! SQLite overwrites the log from its start (a *restart*, or the truncation of a
//! `TRUNCATE` checkpoint) only once every frame is copied into the database, and only
//! while no reader uses the log. The follower always holds a read transaction, opened
//! after the frames before its snapshot were read ("rolling": the next one begins, the
//! log is read to its end, then the previous one ends). SQLite gives a reader one of two
//! kinds of lock:
//! - a *read mark* (a slot from 1): no restart or truncation can happen while it is held,
//!   so every frame stays in the file until read;
//! - slot 0, given only when the whole log was already copied into the database when the
//!   reader began: no checkpoint can copy anything while it is held, so the log can
//!   restart only while it holds nothing more than what the reader saw, which the
//!   follower read before it let go of the previous reader.
//!
//! Either way the log restarts at most once between two reads, and only at the point the
//! follower had reached; a new generation seen while following simply continues the
//! chain. Across a stop of the follower nothing is held, so [`Follower::resume`] accepts
//! only the same generation still holding the point the chain reached.
//!
//! # Checkpoints
//!
//! A reader that always holds a read mark would let the log grow without end (no restart
//! can happen). After each read the follower runs a PASSIVE checkpoint, which blocks no
//! one. When the log holds more frames than its caller allows (a few times
//! [`QUIET_FRAMES`]: see the tailer), it makes a *quiet moment*, moving to a slot-0
//! reader so that the app's next write restarts the log. First without the write lock:
//! it reads to the log's end, copies the log into the database, and begins a reader at
//! once, which works whenever the app commits nothing in between (a window as
//! long as one of the app's transactions). Failing that, under the write lock taken with
//! a bounded wait (`BEGIN IMMEDIATE`, rolled back: nothing is written). A restart reuses
//! the file without shrinking it; when the file is past `max-wal` bytes, the quiet moment
//! is taken under the lock and ends in a TRUNCATE checkpoint with a bounded wait, the lock
//! handed over to it (see [`Follower::checkpoint`]). It never runs a RESTART checkpoint,
//! and its connections never checkpoint on close.
//!
//! # Locks belong to the process
//!
//! The read transaction protects the log only while the app's process sees its lock, a
//! POSIX lock on `-shm`. Closing *any* descriptor of that file in this process drops every
//! such lock at once, so the follower never opens `-shm` (nor the database) itself: it reads
//! the wal-index header through SQLite's own mapping. Only `-wal`, which carries no lock,
//! is read through descriptors of its own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::wal::{self, Changes, WalHeader, WalPosition};

/// SQLite's own autocheckpoint length, in frames: the unit of how long a log may grow.
pub const QUIET_FRAMES: i64 = 1000;
/// The longest the follower holds up the app's writers: waiting for the write lock, or a
/// TRUNCATE waiting for the app's readers.
pub const QUIET_WAIT: Duration = Duration::from_millis(200);
/// How long a snapshot waits for the write lock before it gives up.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);
/// How many times a quiet moment is tried without the write lock before it takes it.
pub const QUIET_TRIES: usize = 4;
/// Past this many times `max-wal` of log, the follower stops holding the log back (a gap).
pub const LET_GO: u64 = 4;

/// Why following cannot go on from a point, in words for the user.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("{path}: {what}: {error}")]
    Sqlite {
        path: String,
        what: &'static str,
        error: rusqlite::Error,
    },
    #[error(
        "{0}: the database is not in WAL mode (journal_mode is {1}): continuous replication \
         reads the write-ahead log; set `PRAGMA journal_mode=WAL` in the app that owns it"
    )]
    NotWal(String, String),
    #[error(
        "{path}: the app held the write lock for {secs}s without a break, so {what} could \
         not begin; cairn tries again",
        secs = SNAPSHOT_WAIT.as_secs()
    )]
    Busy { path: String, what: String },
    #[error("{0}: {1}")]
    Wal(String, wal::WalError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Where a chain stands: after `at`, or before the first frame of whichever generation of
/// the log comes next (`None`: the log was empty).
pub type Point = Option<WalPosition>;

/// Whether a chain can go on from a point after the follower was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// It goes on; what was committed since the point.
    Continues(Changes),
    /// The chain cannot go on: a fresh snapshot must start a new one. Why, for the user.
    Gap(String),
}

/// What a checkpoint did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checkpointed {
    /// Frames read in a quiet moment: to be shipped like any other read.
    pub tail: Changes,
    /// The read transaction moved to the database alone: the log restarts at the next write.
    pub quiet_moment: bool,
    pub truncated: bool,
    /// The log's frames and how many of them are in the database, after the last step.
    pub log_frames: i64,
    pub copied_frames: i64,
    /// The follower let go of the log, which outgrew every checkpoint: why. The chain
    /// cannot go on; a new snapshot must begin the next one.
    pub gap: Option<String>,
}

/// A live database being followed.
pub struct Follower {
    path: PathBuf,
    wal_path: PathBuf,
    /// Two readers taking turns holding the read transaction; none after letting go.
    readers: [Connection; 2],
    holding: Option<usize>,
    checkpointer: Connection,
    locker: Connection,
    point: Point,
}

impl Follower {
    /// Opens the live database at `path` and starts holding a read transaction. The chain
    /// point is unknown until [`Follower::snapshot`] or [`Follower::resume`].
    pub fn open(path: &Path) -> Result<Follower, FollowError> {
        let what = path.to_string_lossy().into_owned();
        let open = || -> Result<Connection, FollowError> {
            // Read-write so that it can take the write lock and checkpoint; it writes
            // nothing, and never checkpoints on close (which would truncate the log).
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| sqlite(&what, "opening", e))?;
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                .map_err(|e| sqlite(&what, "configuring the connection", e))?;
            Ok(conn)
        };
        let first = open()?;
        let mode: String = first
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| sqlite(&what, "reading journal_mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(FollowError::NotWal(what, mode));
        }
        let mut follower = Follower {
            wal_path: sibling(path, "-wal"),
            path: path.to_path_buf(),
            readers: [first, open()?],
            holding: None,
            checkpointer: open()?,
            locker: open()?,
            point: None,
        };
        follower.begin_read(0)?;
        follower.holding = Some(0);
        Ok(follower)
    }

    pub fn point(&self) -> Point {
        self.point
    }

    /// Whether the chain can go on from `point`, reached before the follower was stopped,
    /// and if it can, what was committed since. Nothing was held while it was stopped, so
    /// the check and the read happen under the write lock: no checkpoint can restart the
    /// log between them.
    pub fn resume(&mut self, point: Point) -> Result<Resume, FollowError> {
        if !self.lock_writes(SNAPSHOT_WAIT)? {
            return Err(self.busy("resuming"));
        }
        let verdict = self.resume_locked(point);
        let unlocked = self.locker.execute_batch("ROLLBACK");
        let verdict = verdict?;
        unlocked.map_err(|e| self.err("releasing the write lock", e))?;
        Ok(verdict)
    }

    fn resume_locked(&mut self, point: Point) -> Result<Resume, FollowError> {
        let gap = match (point, self.header()?) {
            (Some(at), Some(now)) if at.header == now => {
                if wal::holds(&mut self.wal()?, at).map_err(|e| self.wal_err(e))? {
                    self.point = point;
                    return Ok(Resume::Continues(self.read_on()?));
                }
                "the write-ahead log no longer holds the point replication reached (it was \
                 overwritten while cairn was stopped)"
            }
            (Some(_), _) => {
                "the write-ahead log was checkpointed and restarted while cairn was stopped \
                 (another process ran a checkpoint, or the app closed the database)"
            }
            (None, _) => {
                "the write-ahead log was empty when replication stopped, so changes made since \
                 cannot be told apart from a checkpoint"
            }
        };
        Ok(Resume::Gap(gap.to_string()))
    }

    /// Copies the live database into `dest` (a new file) as of the end of its log, and
    /// starts the chain there: the write lock is taken for as long as it takes to read the
    /// log's last frames and begin a read transaction, then the copy is taken inside that
    /// read transaction while the app writes on.
    pub fn snapshot(&mut self, dest: &Path) -> Result<Point, FollowError> {
        if !self.lock_writes(SNAPSHOT_WAIT)? {
            return Err(self.busy("a snapshot"));
        }
        // No transaction commits now: the new reader's snapshot is the log's end.
        let read = self.read_on();
        let unlocked = self.locker.execute_batch("ROLLBACK");
        read?;
        unlocked.map_err(|e| self.err("releasing the write lock", e))?;
        let mut out = Connection::open(dest)
            .map_err(|e| sqlite(&dest.to_string_lossy(), "creating the copy", e))?;
        out.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
            .map_err(|e| sqlite(&dest.to_string_lossy(), "preparing the copy", e))?;
        {
            // Inside the holding reader's open transaction: one step copies its snapshot.
            let holding = self.holding.unwrap_or(0);
            let backup = Backup::new(&self.readers[holding], &mut out)
                .map_err(|e| self.err("starting the copy", e))?;
            loop {
                match backup.step(-1).map_err(|e| self.err("copying", e))? {
                    StepResult::Done => break,
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        Ok(self.point)
    }

    /// Reads the transactions committed since the last read, and moves the read
    /// transaction to the log's new end.
    pub fn read_on(&mut self) -> Result<Changes, FollowError> {
        let next = self.holding.map_or(0, |held| 1 - held);
        self.begin_read(next)?;
        let changes = self.read_log()?;
        if let Some(held) = self.holding {
            self.end_read(held)?;
        }
        self.holding = Some(next);
        Ok(changes)
    }

    /// Stops holding anything, so that SQLite's own checkpoints can restart the log: the
    /// chain cannot go on from here (frames may be overwritten unread), and the next read
    /// starts from nothing.
    fn let_go(&mut self) -> Result<(), FollowError> {
        if let Some(held) = self.holding.take() {
            self.end_read(held)?;
        }
        self.point = None;
        Ok(())
    }

    fn read_log(&mut self) -> Result<Changes, FollowError> {
        let Some(header) = self.header()? else {
            // No log yet, or an emptied one whose next generation has not begun.
            return Ok(Changes::default());
        };
        let from = match self.point {
            Some(at) if at.header == header => at,
            // A new generation: by the locking argument above, the previous one ended at
            // the point reached.
            _ => WalPosition::start(header),
        };
        let read = wal::read_after(&mut self.wal()?, from).map_err(|e| self.wal_err(e))?;
        tracing::trace!(
            "read salt {:08x} frames {}..{}: {} transactions",
            header.salt[0],
            from.frame,
            read.end.frame,
            read.changes.transactions
        );
        if !read.changes.is_empty() || self.point.is_none_or(|at| at.header != header) {
            self.point = Some(read.end);
        }
        Ok(read.changes)
    }

    /// Keeps the log short without blocking the app: a PASSIVE checkpoint, a quiet moment
    /// when the log holds more than `quiet_frames` frames, a TRUNCATE with a bounded wait
    /// when the file outgrew `max_wal` bytes.
    pub fn checkpoint(
        &mut self,
        max_wal: u64,
        quiet_frames: i64,
    ) -> Result<Checkpointed, FollowError> {
        let mut done = Checkpointed::default();
        self.keep_short(max_wal, quiet_frames, &mut done)?;
        // The log of the current generation, as far as it was read (to its end).
        let log = self.point.map_or(0, |at| {
            u64::from(at.frame) * (u64::from(at.header.page_size) + wal::FRAME_HEADER as u64)
        });
        // A quiet moment this time leaves the log free to restart at the app's next write.
        if !done.quiet_moment && log > max_wal.saturating_mul(LET_GO) {
            done.gap = Some(self.let_go_of(format!(
                "the write-ahead log reached {} MiB, {LET_GO} times max-wal, because the app \
                 wrote without a pause long enough for cairn's checkpoints",
                log >> 20
            ))?);
        }
        Ok(done)
    }

    /// Lets go of the log, before reading it, when it holds more that the follower has not
    /// read than `LET_GO` times `max_wal` (from the wal-index header): a writer faster
    /// than the follower reads would otherwise keep it behind for ever while the log
    /// fills the disk. The gap, when it let go.
    pub fn outgrown(&mut self, max_wal: u64) -> Result<Option<String>, FollowError> {
        let Some(header) = self.header()? else {
            return Ok(None);
        };
        let unread = self.unread_frames()?;
        let bytes = u64::from(unread) * (u64::from(header.page_size) + wal::FRAME_HEADER as u64);
        if bytes <= max_wal.saturating_mul(LET_GO) {
            return Ok(None);
        }
        self.let_go_of(format!(
            "the write-ahead log held {} MiB cairn had not read yet, {LET_GO} times max-wal, \
             because the app wrote faster than cairn reads",
            bytes >> 20
        ))
        .map(Some)
    }

    /// The frames committed to the log that the follower has not read yet, from the
    /// wal-index header: a look at shared memory, no I/O. 0 when there is no log.
    pub fn unread_frames(&self) -> Result<u32, FollowError> {
        let Some(index) = self.index_header()? else {
            return Ok(0);
        };
        // A new generation began right where the point is (see the module comment).
        Ok(match self.point {
            Some(at) if index.salt == at.header.salt => index.max_frame.saturating_sub(at.frame),
            _ => index.max_frame,
        })
    }

    /// Lets go, for a reason: an app that never pauses long enough would have the log
    /// grow until the disk fills. Its disk comes first: SQLite checkpoints the log, and a
    /// new chain begins.
    fn let_go_of(&mut self, why: String) -> Result<String, FollowError> {
        self.let_go()?;
        Ok(format!("{why}; cairn let SQLite checkpoint it"))
    }

    /// The wal-index header at the start of `-shm`, read where SQLite reads it: the shared
    /// memory our connections have mapped. Never through a descriptor of our own: closing
    /// one drops every POSIX lock this process holds on the file, the follower's read lock
    /// among them, and the app would then restart the log under the follower unseen
    /// (<https://www.sqlite.org/howtocorrupt.html>, 2.2).
    fn index_header(&self) -> Result<Option<wal::IndexHeader>, FollowError> {
        use rusqlite::ffi;
        use std::ffi::c_void;
        // It began a read when the follower opened: its wal-index is mapped.
        let conn = &self.readers[0];
        let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
        // SAFETY: the connection is open and used by this thread alone (the follower is
        // `&self` here and never shared between threads at once); FILE_POINTER writes
        // the main database's `sqlite3_file` pointer into `file`.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                conn.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_FILE_POINTER,
                (&raw mut file).cast::<c_void>(),
            )
        };
        if rc != ffi::SQLITE_OK || file.is_null() {
            return Ok(None);
        }
        // SAFETY: `file` is the connection's open database file; SQLite's own method
        // returns the first 32 KiB region of the wal-index it mapped, which stays mapped
        // while the connection is open. Its bytes change under us: they are read volatile, and
        // the header is trusted only when its two copies agree.
        unsafe {
            let methods = (*file).pMethods;
            if methods.is_null() || (*methods).iVersion < 2 {
                return Ok(None);
            }
            let Some(map) = (*methods).xShmMap else {
                return Ok(None);
            };
            let mut region: *mut c_void = std::ptr::null_mut();
            if map(file, 0, 32768, 0, &raw mut region) != ffi::SQLITE_OK || region.is_null() {
                return Ok(None);
            }
            let mut bytes = [0u8; 96];
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = std::ptr::read_volatile(region.cast::<u8>().add(i));
            }
            Ok(wal::IndexHeader::decode(&bytes))
        }
    }

    fn keep_short(
        &mut self,
        max_wal: u64,
        quiet_frames: i64,
        done: &mut Checkpointed,
    ) -> Result<(), FollowError> {
        (done.log_frames, done.copied_frames) = self.passive()?;
        // A checkpoint of the app's was running (busy, -1): the log is as long as the
        // wal-index says.
        let log_frames = match done.log_frames {
            -1 => self
                .index_header()?
                .map_or(0, |index| i64::from(index.max_frame)),
            frames => frames,
        };
        // A restart reuses the file from its start without shrinking it: only a TRUNCATE
        // gives the disk back.
        let oversized = self.wal_size()? > max_wal;
        if log_frames <= quiet_frames && !oversized {
            return Ok(());
        }
        // A quiet moment that holds no one up comes first; only a TRUNCATE needs the lock.
        if !oversized && self.quiet_without_lock(done)? {
            return Ok(());
        }
        if !self.lock_writes(QUIET_WAIT)? {
            // No TRUNCATE this time, but the log can still restart.
            if oversized {
                self.quiet_without_lock(done)?;
            }
            return Ok(());
        }
        let all_copied = match self.quiet_moment(done) {
            Ok(all_copied) => all_copied,
            Err(e) => {
                let _ = self.locker.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        if all_copied && oversized {
            self.truncate_handing_over(done)?;
            Ok(())
        } else {
            self.locker
                .execute_batch("ROLLBACK")
                .map_err(|e| self.err("releasing the write lock", e))?;
            Ok(())
        }
    }

    /// A quiet moment that holds no one up: moves the read transaction to the log's end,
    /// copies the log into the database, and begins a reader at once. When the app
    /// committed nothing in between (a window as long as one of its transactions, where
    /// the write lock is free only between two of them), the new reader reads from the
    /// database alone and the app's next write restarts the log. Whether it worked: the
    /// second read found nothing new.
    fn quiet_without_lock(&mut self, done: &mut Checkpointed) -> Result<bool, FollowError> {
        for _ in 0..QUIET_TRIES {
            done.tail.extend(self.read_on()?);
            let (log, copied) = self.passive()?;
            (done.log_frames, done.copied_frames) = (log, copied);
            if log < 0 || log != copied {
                continue;
            }
            let more = self.read_on()?;
            let quiet = more.is_empty();
            done.tail.extend(more);
            if quiet {
                tracing::trace!("quiet moment without the lock");
                done.quiet_moment = true;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// With the write lock held: read the last frames, copy them into the database, and
    /// move to a reader that leaves the log free to restart. Whether the whole log is in
    /// the database (the new reader reads from the database alone).
    fn quiet_moment(&mut self, done: &mut Checkpointed) -> Result<bool, FollowError> {
        done.tail.extend(self.read_on()?);
        // The app's last commit may still be checkpointing (-1: busy); it cannot commit
        // again while the lock is held, so wait for it, within the bound.
        let deadline = std::time::Instant::now() + QUIET_WAIT;
        loop {
            (done.log_frames, done.copied_frames) = self.passive()?;
            if done.log_frames >= 0 || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::yield_now();
        }
        let all_copied = done.log_frames >= 0 && done.log_frames == done.copied_frames;
        tracing::trace!(
            "quiet moment under the lock: log {}, copied {}",
            done.log_frames,
            done.copied_frames
        );
        done.quiet_moment = all_copied;
        if all_copied {
            done.tail.extend(self.read_on()?);
        }
        Ok(all_copied)
    }

    /// With the write lock held, the whole log in the database and the read transaction
    /// on the database alone: a TRUNCATE checkpoint empties the file. It needs the write
    /// lock itself, so the locker hands it over from inside the checkpoint's busy handler:
    /// it lets go, and the checkpoint, trying again at once, takes it before an app
    /// sleeping in its own busy handler wakes. The TRUNCATE then waits for the app's
    /// readers, within the bound, holding the app's writers up that long at most.
    fn truncate_handing_over(&mut self, done: &mut Checkpointed) -> Result<(), FollowError> {
        // An in-memory connection holds the locker's place while the handler has it.
        let stand_in = Connection::open_in_memory().map_err(|e| self.err("opening", e))?;
        let locker = std::mem::replace(&mut self.locker, stand_in);
        BUSY.with_borrow_mut(|busy| {
            *busy = Busy {
                until: Some(std::time::Instant::now() + QUIET_WAIT),
                hand_over: Some(locker),
                released: None,
            }
        });
        let handler = self.checkpointer.busy_handler(Some(spin));
        let truncated = handler.and_then(|()| {
            self.checkpointer
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
        });
        let busy = BUSY.take();
        // The handler only borrows the locker, so it is always there to come back.
        if let Some(locker) = busy.hand_over {
            self.locker = locker;
        }
        // The checkpoint failed before it ever waited: the lock is still held.
        let released = busy
            .released
            .unwrap_or_else(|| self.locker.execute_batch("ROLLBACK"));
        released.map_err(|e| self.err("releasing the write lock", e))?;
        let (busy, log, copied): (i64, i64, i64) =
            truncated.map_err(|e| self.err("checkpointing (TRUNCATE)", e))?;
        done.truncated = busy == 0;
        (done.log_frames, done.copied_frames) = (log, copied);
        tracing::trace!("TRUNCATE: busy {busy}, log {log}, copied {copied}");
        Ok(())
    }

    /// Takes the write lock within `wait`. SQLite's busy handler sleeps between tries and
    /// loses every time to an app that begins its next transaction the moment it commits
    /// the last; trying again at once, many times a millisecond, finds the gap.
    fn lock_writes(&self, wait: Duration) -> Result<bool, FollowError> {
        self.locker
            .busy_timeout(Duration::ZERO)
            .map_err(|e| self.err("busy_timeout", e))?;
        let started = std::time::Instant::now();
        let mut tries = 0u64;
        loop {
            tries += 1;
            match self.locker.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => {
                    tracing::trace!("write lock after {tries} tries in {:?}", started.elapsed());
                    return Ok(true);
                }
                Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                    if started.elapsed() > wait {
                        tracing::debug!("no write lock after {tries} tries in {wait:?}");
                        return Ok(false);
                    }
                    std::thread::yield_now();
                }
                Err(e) => return Err(self.err("taking the write lock", e)),
            }
        }
    }

    fn passive(&self) -> Result<(i64, i64), FollowError> {
        let (_busy, log, copied): (i64, i64, i64) = self
            .checkpointer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.err("checkpointing (PASSIVE)", e))?;
        Ok((log, copied))
    }

    fn begin_read(&self, reader: usize) -> Result<(), FollowError> {
        let conn = &self.readers[reader];
        conn.execute_batch("BEGIN")
            .map_err(|e| self.err("beginning a read", e))?;
        // A deferred transaction takes its read lock at its first read.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| self.err("beginning a read", e))?;
        Ok(())
    }

    fn end_read(&self, reader: usize) -> Result<(), FollowError> {
        self.readers[reader]
            .execute_batch("COMMIT")
            .map_err(|e| self.err("ending a read", e))
    }

    /// The log's header, if it has a valid one.
    fn header(&self) -> Result<Option<WalHeader>, FollowError> {
        let mut bytes = [0u8; wal::WAL_HEADER];
        let mut file = match File::open(&self.wal_path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(FollowError::Io(
                    self.wal_path.to_string_lossy().into_owned(),
                    e,
                ));
            }
        };
        match std::io::Read::read_exact(&mut file, &mut bytes) {
            Ok(()) => Ok(WalHeader::decode(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(FollowError::Io(
                self.wal_path.to_string_lossy().into_owned(),
                e,
            )),
        }
    }

    fn wal(&self) -> Result<File, FollowError> {
        File::open(&self.wal_path)
            .map_err(|e| FollowError::Io(self.wal_path.to_string_lossy().into_owned(), e))
    }

    fn wal_size(&self) -> Result<u64, FollowError> {
        match std::fs::metadata(&self.wal_path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(FollowError::Io(
                self.wal_path.to_string_lossy().into_owned(),
                e,
            )),
        }
    }

    fn busy(&self, what: &str) -> FollowError {
        FollowError::Busy {
            path: self.path.to_string_lossy().into_owned(),
            what: what.to_string(),
        }
    }

    fn err(&self, what: &'static str, error: rusqlite::Error) -> FollowError {
        sqlite(&self.path.to_string_lossy(), what, error)
    }

    fn wal_err(&self, error: wal::WalError) -> FollowError {
        FollowError::Wal(self.wal_path.to_string_lossy().into_owned(), error)
    }
}

/// What [`spin`] does for the TRUNCATE checkpoint running on this thread.
#[derive(Default)]
struct Busy {
    /// Until when it tells SQLite to try again.
    until: Option<std::time::Instant>,
    /// The locker, holding the write lock the checkpoint waits for.
    hand_over: Option<Connection>,
    /// Set once the locker let go (the checkpoint's first wait).
    released: Option<rusqlite::Result<()>>,
}

thread_local! {
    static BUSY: std::cell::RefCell<Busy> = std::cell::RefCell::default();
}

/// The TRUNCATE checkpoint's busy handler: at its first wait (for the write lock the
/// locker holds) the locker lets go; then it yields and tries again at once until the
/// deadline (SQLite's own handler sleeps for milliseconds between tries and so never
/// finds a busy app's short gaps).
fn spin(_tries: i32) -> bool {
    BUSY.with_borrow_mut(|busy| {
        if busy.released.is_none()
            && let Some(locker) = &busy.hand_over
        {
            busy.released = Some(locker.execute_batch("ROLLBACK"));
            return true;
        }
        let go_on = busy
            .until
            .is_some_and(|until| std::time::Instant::now() < until);
        if go_on {
            std::thread::yield_now();
        }
        go_on
    })
}

fn sqlite(path: &str, what: &'static str, error: rusqlite::Error) -> FollowError {
    FollowError::Sqlite {
        path: path.to_string(),
        what,
        error,
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `changes` onto the database file at `db` (a restored snapshot): each page at
/// its place, the file cut to the database's size after the last transaction. Not
/// synced: a restore applies many segments onto a temporary file and syncs it once,
/// before it renames it into place (a page rewritten by many segments then reaches the
/// disk once).
pub fn apply(db: &Path, page_size: u32, changes: &Changes) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if changes.is_empty() {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new().write(true).open(db)?;
    for (&page, image) in &changes.pages {
        file.write_all_at(image, u64::from(page - 1) * u64::from(page_size))?;
    }
    file.set_len(u64::from(changes.db_pages) * u64::from(page_size))
}

#[cfg(test)]
mod tests;
