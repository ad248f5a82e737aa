//! Reading a followed database's log between syncs, so that the log stays about as short
//! as the app's own checkpoints would keep it.
//!
//! A follower always holds a read transaction, and the log restarts only at a quiet
//! moment (see [`follow`]). Read once a sync interval, a busy app's log would grow by a
//! whole interval of frames between restarts (hundreds of MiB at full speed), and SQLite
//! makes the app pay for a long log: each page it reads is looked up in every block of
//! the wal-index, and while the follower's reader sits on the database alone (after a
//! quiet moment) each of the app's autocheckpoints sorts the whole log before finding it
//! cannot copy it. So a tailer thread looks at the wal-index header every few
//! milliseconds (shared memory, no I/O), reads what was committed once there is a
//! checkpoint's worth of it, copies it into the database with a PASSIVE checkpoint on its
//! own thread (work the app's checkpoints would otherwise do), and makes a quiet moment
//! when the log grows past a few of those. A sync takes what the tailer read and reads
//! the rest, and leaves the checkpoint after it to the tailer, so that a checkpoint's
//! `fsync` never delays a segment. What is shipped, and when, is unchanged.
//!
//! [`follow`]: super::follow

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::follow::{FollowError, Follower, QUIET_FRAMES};
use super::wal::Changes;

/// Unread frames past which the tailer reads: SQLite's own autocheckpoint length.
const TAIL_FRAMES: u32 = 1000;
/// A log longer than this gets a quiet moment. A few autocheckpoints' worth: each quiet
/// moment may take the app's write lock for a moment.
const TAIL_QUIET_FRAMES: i64 = 4 * QUIET_FRAMES;
/// How often the tailer looks at a busy log, and at most how long it waits on an idle one.
const LOOK_BUSY: Duration = Duration::from_millis(5);
const LOOK_IDLE: Duration = Duration::from_millis(100);

/// A follower with its tailer.
pub struct Tailed {
    shared: Arc<Shared>,
    /// Taken only to join it.
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
}

/// The follower and what the tailer found since the last sync.
pub struct State {
    pub follower: Follower,
    /// What was read since the last sync.
    read: Changes,
    /// Whether a chain goes on from the follower's point: the tailer reads only then.
    following: bool,
    /// The last sync's `max-wal` (none before the first: the tailer then never truncates
    /// nor lets go).
    max_wal: u64,
    /// Whether the follower's reader sits on the database alone (a quiet moment).
    on_database: bool,
    /// Whether frames were read since the last checkpoint.
    unchecked: bool,
    /// Why the chain cannot go on, found by the tailer; the next sync says so.
    gap: Option<String>,
    /// What stopped the tailer; the next sync returns it.
    error: Option<FollowError>,
}

/// What a sync found.
pub enum Synced {
    /// What was committed since the last sync (empty if nothing).
    Changes(Changes),
    /// The chain cannot go on: why.
    Gap(String),
}

impl State {
    /// A new chain begins (a snapshot) or goes on (a resume) from the follower's point:
    /// nothing read before it belongs to it.
    pub fn chain_begins(&mut self) {
        self.read = Changes::default();
        self.gap = None;
        self.error = None;
        self.on_database = false;
        self.unchecked = true;
        self.following = true;
    }

    /// Reads what the tailer has not, and hands over everything read since the last sync;
    /// the tailer checkpoints after it.
    pub fn sync(&mut self, max_wal: u64) -> Result<Synced, FollowError> {
        if let Some(e) = self.error.take() {
            self.following = false;
            return Err(e);
        }
        if self.gap.is_none() {
            self.read(max_wal)?;
        }
        if let Some(gap) = self.gap.take() {
            self.following = false;
            self.read = Changes::default();
            return Ok(Synced::Gap(gap));
        }
        self.max_wal = max_wal;
        Ok(Synced::Changes(std::mem::take(&mut self.read)))
    }

    /// Reads the log to its end, unless the follower has to let go of it (a gap, kept
    /// for the sync).
    fn read(&mut self, max_wal: u64) -> Result<(), FollowError> {
        if let Some(gap) = self.follower.outgrown(max_wal)? {
            self.gap = Some(gap);
            return Ok(());
        }
        let read = self.follower.read_on()?;
        self.unchecked |= !read.is_empty() || self.on_database;
        self.on_database = false;
        self.read.extend(read);
        Ok(())
    }

    /// Checkpoints the log, with a quiet moment when it is long.
    fn checkpoint(&mut self, max_wal: u64) -> Result<(), FollowError> {
        let done = self.follower.checkpoint(max_wal, TAIL_QUIET_FRAMES)?;
        self.unchecked = false;
        if let Some(gap) = done.gap {
            self.gap = Some(gap);
            return Ok(());
        }
        self.on_database = done.quiet_moment;
        self.read.extend(done.tail);
        Ok(())
    }

    /// One look of the tailer: whether there was anything to read.
    fn look(&mut self) -> bool {
        if !self.following || self.gap.is_some() || self.error.is_some() {
            return false;
        }
        let max_wal = self.max_wal;
        let unread = match self.follower.unread_frames() {
            Ok(unread) => unread,
            Err(e) => {
                self.error = Some(e);
                return false;
            }
        };
        // Off the database as soon as the app has restarted the log: a reader there keeps
        // the app's checkpoints from copying anything.
        let reads = unread >= TAIL_FRAMES || (self.on_database && unread > 0);
        if !reads && !self.unchecked {
            return false;
        }
        let mut step = || {
            if reads {
                self.read(max_wal)?;
            }
            if self.gap.is_none() {
                self.checkpoint(max_wal)?;
            }
            Ok::<_, FollowError>(())
        };
        if let Err(e) = step() {
            self.error = Some(e);
        }
        true
    }
}

impl Tailed {
    /// Starts the tailer's thread (the follower's checkpoints run there only).
    pub fn start(follower: Follower) -> std::io::Result<Tailed> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                follower,
                read: Changes::default(),
                following: false,
                max_wal: u64::MAX,
                on_database: false,
                unchecked: false,
                gap: None,
                error: None,
            }),
            stop: AtomicBool::new(false),
        });
        let tailer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-wal-tail".into())
            .spawn(move || tail(&tailer))?;
        Ok(Tailed {
            shared,
            thread: Some(thread),
        })
    }

    /// Runs `work` on the follower's state, the tailer held off meanwhile, then wakes the
    /// tailer to checkpoint what `work` read.
    pub fn with<T>(&self, work: impl FnOnce(&mut State) -> T) -> Option<T> {
        let done = {
            let mut state = self.shared.state.lock().ok()?;
            work(&mut state)
        };
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
        Some(done)
    }
}

impl Drop for Tailed {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn tail(shared: &Shared) {
    let mut wait = LOOK_BUSY;
    while !shared.stop.load(Ordering::Acquire) {
        std::thread::park_timeout(wait);
        let Ok(mut state) = shared.state.lock() else {
            return;
        };
        wait = match state.look() {
            true => LOOK_BUSY,
            false => (wait * 2).min(LOOK_IDLE),
        };
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use rusqlite::Connection;

    use super::*;
    use crate::capabilities::sqlite::follow;

    /// Inserts numbered rows, one a transaction, as fast as it can until `stop`; how many.
    fn writer(path: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<i64> {
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let conn = Connection::open(&path).expect("writer");
            conn.busy_timeout(Duration::from_secs(10)).expect("busy");
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                conn.execute("INSERT INTO log (n, pad) VALUES (?1, randomblob(300))", [n])
                    .expect("insert");
            }
            n
        })
    }

    #[test]
    fn between_syncs_the_tailer_keeps_a_busy_log_short_and_every_commit_reaches_a_sync() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("app.db");
        Connection::open(&path)
            .and_then(|c| {
                c.execute_batch(
                    "PRAGMA journal_mode=WAL;
                     CREATE TABLE log (n INTEGER PRIMARY KEY, pad BLOB NOT NULL);
                     CREATE INDEX log_pad ON log (pad);",
                )
            })
            .expect("schema");
        let stop = Arc::new(AtomicBool::new(false));
        let writing = writer(&path, stop.clone());
        let tailed = Tailed::start(Follower::open(&path).expect("follow")).expect("tailer");
        let copy = dir.path().join("copy.db");
        tailed
            .with(|state| {
                state.follower.snapshot(&copy)?;
                state.chain_begins();
                Ok::<_, FollowError>(())
            })
            .expect("state")
            .expect("snapshot");
        let page_size: u32 = Connection::open(&copy)
            .and_then(|c| c.query_row("PRAGMA page_size", [], |r| r.get(0)))
            .expect("page size");
        // Syncs four seconds apart, until the writer has filled many quiet moments' worth
        // of log (a test build's writer is slow).
        const INTERVAL: Duration = Duration::from_secs(4);
        let max_wal = 1 << 30;
        let sync = || match tailed.with(|state| state.sync(max_wal)) {
            Some(Ok(Synced::Changes(changes))) => changes,
            Some(Ok(Synced::Gap(why))) => panic!("a gap: {why}"),
            Some(Err(e)) => panic!("sync: {e}"),
            None => panic!("the tailer panicked"),
        };
        let (started, mut syncs, mut frames) = (Instant::now(), 0u64, 0u64);
        while frames < 20 * TAIL_QUIET_FRAMES as u64 || syncs < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the writer wrote only {frames} frames in a minute"
            );
            std::thread::sleep(INTERVAL);
            let changes = sync();
            frames += changes.frames;
            syncs += 1;
            follow::apply(&copy, page_size, &changes).expect("apply");
        }
        stop.store(true, Ordering::Relaxed);
        let written = writing.join().expect("writer");
        let last = sync();
        follow::apply(&copy, page_size, &last).expect("apply");

        // Every commit reached a sync, in order: the copy holds exactly the rows written.
        let conn = Connection::open(&copy).expect("copy");
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(check, "ok");
        let (count, max): (i64, i64) = conn
            .query_row("SELECT count(*), max(n) FROM log", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("rows");
        assert_eq!((count, max), (written, written));

        // The log restarted many times within each interval: the file (never truncated
        // under this max-wal) is far shorter than one interval's frames.
        let frame = u64::from(page_size) + super::super::wal::FRAME_HEADER as u64;
        let log_frames = std::fs::metadata(dir.path().join("app.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
            / frame;
        let per_interval = frames / syncs;
        eprintln!(
            "{written} rows, {frames} frames in {syncs} syncs; the log reached {log_frames} frames"
        );
        assert!(
            log_frames * 2 < per_interval,
            "the log reached {log_frames} frames, for {per_interval} frames an interval"
        );
    }
}
