//! The follower against real SQLite: a writer committing numbered transactions at full
//! speed in another connection, with its own autocheckpoints, while the log is followed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::*;

/// A transaction of the writer: the last number it inserted, when it began and when its
/// `COMMIT` returned.
struct Committed {
    last: i64,
    began: Instant,
    committed: Instant,
}

fn live_database(dir: &Path) -> PathBuf {
    let path = dir.join("app.db");
    let conn = Connection::open(&path).expect("create");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE log (n INTEGER PRIMARY KEY, pad BLOB NOT NULL);
         CREATE INDEX log_pad ON log (pad);",
    )
    .expect("schema");
    path
}

fn schema(path: &Path) -> Vec<String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let mut stmt = conn
        .prepare("SELECT sql FROM sqlite_schema ORDER BY name")
        .expect("prepare");
    stmt.query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// Starts a writer inserting numbered rows (1 to 4 a transaction, with pages rewritten by
/// an update now and then) until `stop`.
fn writer(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Committed>> {
    std::thread::spawn(move || {
        let conn = Connection::open(&path).expect("writer");
        conn.busy_timeout(Duration::from_secs(10)).expect("busy");
        let mut log = Vec::new();
        let mut n = 0i64;
        while !stop.load(Ordering::Relaxed) {
            let began = Instant::now();
            conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
            for _ in 0..(1 + n % 4) {
                n += 1;
                let pad = vec![(n % 251) as u8; 100 + (n % 300) as usize];
                conn.execute(
                    "INSERT INTO log (n, pad) VALUES (?1, ?2)",
                    rusqlite::params![n, pad],
                )
                .expect("insert");
            }
            if n % 97 == 0 {
                conn.execute("UPDATE log SET pad = zeroblob(50) WHERE n % 13 = 0", [])
                    .expect("update");
            }
            conn.execute_batch("COMMIT").expect("commit");
            // Near full speed, but not an app that never lets go of the write lock:
            // apps pause between requests. (A test build reads the log about as fast as
            // this writer fills it, so without pauses only the let-go valve bounds it.)
            if n % 500 < 4 {
                std::thread::sleep(Duration::from_millis(1));
            }
            log.push(Committed {
                last: n,
                began,
                committed: Instant::now(),
            });
        }
        log
    })
}

/// Rows in a restored copy, checked: it must pass `integrity_check`, and hold exactly the
/// numbers 1..=n.
fn restored_prefix(path: &Path) -> i64 {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open copy");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok", "the restored copy is damaged");
    let (count, max): (i64, Option<i64>) = conn
        .query_row("SELECT count(*), max(n) FROM log", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("rows");
    assert_eq!(
        count,
        max.unwrap_or(0),
        "not a prefix: {count} rows, the highest {max:?}"
    );
    count
}

/// The follower's `max-wal` in these tests.
const MAX_WAL: u64 = 8 << 20;

#[test]
fn a_copy_at_every_read_is_exactly_a_prefix_of_what_the_writer_committed() {
    let dir = tempfile::tempdir().expect("dir");
    let path = live_database(dir.path());
    let schema_before = schema(&path);
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(path.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(100));

    let scratch = tempfile::tempdir().expect("scratch");
    let mut copy = scratch.path().join("copy.db");
    let mut follower = Follower::open(&path).expect("follow");
    let snapshot_began = Instant::now();
    follower.snapshot(&copy).expect("snapshot");
    let snapshot_done = Instant::now();
    let page_size: u32 = Connection::open(&copy)
        .and_then(|c| c.query_row("PRAGMA page_size", [], |r| r.get(0)))
        .expect("page size");

    // Each round: (reading began, reading and checkpoint done, what was read, or the
    // fresh snapshot a gap made the follower take).
    let mut rounds: Vec<(Instant, Instant, Result<Changes, PathBuf>)> = Vec::new();
    let (mut generations, mut quiet, mut truncated, mut largest_wal, mut gaps) = (0, 0, 0, 0u64, 0);
    let mut header = follower.point().map(|p| p.header);
    for round in 0..60 {
        std::thread::sleep(Duration::from_millis(if round % 3 == 0 { 5 } else { 40 }));
        let began = Instant::now();
        let mut changes = follower.read_on().expect("read");
        let done = follower
            .checkpoint(MAX_WAL, QUIET_FRAMES)
            .expect("checkpoint");
        quiet += usize::from(done.quiet_moment);
        truncated += usize::from(done.truncated);
        if done.gap.is_some() {
            // The log outgrew every checkpoint and the follower let go: a new base.
            gaps += 1;
            let base = scratch.path().join(format!("base-{round}.db"));
            let began = Instant::now();
            follower.snapshot(&base).expect("snapshot after a gap");
            rounds.push((began, Instant::now(), Err(base)));
            continue;
        }
        changes.extend(done.tail);
        rounds.push((began, Instant::now(), Ok(changes)));
        let now = follower.point().map(|p| p.header);
        generations += usize::from(now != header);
        header = now;
        largest_wal = largest_wal.max(
            std::fs::metadata(sibling(&path, "-wal"))
                .map(|m| m.len())
                .unwrap_or(0),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let log = writing.join().expect("writer");
    // Once the app pauses, one checkpoint brings the file under the limit.
    let began = Instant::now();
    let mut changes = follower.read_on().expect("read");
    let done = follower
        .checkpoint(MAX_WAL, QUIET_FRAMES)
        .expect("checkpoint");
    truncated += usize::from(done.truncated);
    assert!(done.gap.is_none(), "a gap once the writer stopped");
    changes.extend(done.tail);
    rounds.push((began, Instant::now(), Ok(changes)));
    let wal_after = std::fs::metadata(sibling(&path, "-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "{} transactions, {generations} generations, {quiet} quiet moments, {truncated} \
         truncations, {gaps} gaps, largest log {largest_wal} bytes",
        log.len()
    );
    assert!(
        log.len() > 1000,
        "the writer committed only {} transactions",
        log.len()
    );
    assert!(
        generations >= 5,
        "the log restarted only {generations} times: checkpoints do not work"
    );
    assert!(
        quiet >= 5,
        "only {quiet} quiet moments under a full-speed writer"
    );
    // How far the log grows between two rounds depends on how fast the writer runs
    // against the follower (a debug build, other tests beside it): only a pause of the
    // app bounds it for certain, and past four times max-wal the follower lets go.
    assert!(
        wal_after <= MAX_WAL,
        "the log is still {wal_after} bytes once the writer stopped"
    );
    if largest_wal > MAX_WAL {
        assert!(
            truncated > 0,
            "the log outgrew max-wal and was never truncated"
        );
    }

    // The snapshot alone: everything committed before it began, nothing begun after it.
    let mut reached = restored_prefix(&copy);
    let bound = |reached: i64, from: Instant, to: Instant| {
        for tx in &log {
            if tx.committed < from {
                assert!(
                    tx.last <= reached,
                    "transaction {} committed before the read but missing",
                    tx.last
                );
            }
            if tx.began > to {
                assert!(
                    tx.last > reached,
                    "transaction {} began after the read but is there",
                    tx.last
                );
            }
        }
    };
    bound(reached, snapshot_began, snapshot_done);
    for (began, done, read) in &rounds {
        match read {
            Ok(changes) => apply(&copy, page_size, changes).expect("apply"),
            Err(base) => copy = base.clone(),
        }
        let now = restored_prefix(&copy);
        assert!(now >= reached);
        bound(now, *began, *done);
        reached = now;
    }
    assert!(
        reached > log[log.len() / 2].last,
        "the copy fell behind: {reached} rows"
    );
    drop(follower);

    // Nothing of cairn's in the database or beside it.
    assert_eq!(schema(&path), schema_before);
    let mut beside: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    beside.sort();
    assert_eq!(beside, ["app.db", "app.db-shm", "app.db-wal"]);
}

#[test]
fn a_log_checkpointed_behind_cairns_back_is_a_gap_and_an_untouched_one_resumes() {
    let dir = tempfile::tempdir().expect("dir");
    let path = live_database(dir.path());
    let app = Connection::open(&path).expect("app");
    app.execute_batch("PRAGMA wal_autocheckpoint=0")
        .expect("no autocheckpoint");
    let insert = |from: i64, to: i64| {
        for n in from..=to {
            app.execute("INSERT INTO log (n, pad) VALUES (?1, x'00')", [n])
                .expect("insert");
        }
    };
    insert(1, 10);
    let copy = dir.path().join("copy.db");
    let mut follower = Follower::open(&path).expect("follow");
    follower.snapshot(&copy).expect("snapshot");
    let page_size = 4096;
    insert(11, 20);
    apply(&copy, page_size, &follower.read_on().expect("read")).expect("apply");
    let point = follower.point();
    drop(follower);

    // Stopped while the app wrote on: the chain goes on, with what was committed since.
    insert(21, 30);
    let mut follower = Follower::open(&path).expect("follow again");
    match follower.resume(point).expect("resume") {
        Resume::Continues(changes) => apply(&copy, page_size, &changes).expect("apply"),
        Resume::Gap(why) => panic!("an untouched log was taken for a gap: {why}"),
    }
    assert_eq!(restored_prefix(&copy), 30);
    let point = follower.point();
    drop(follower);

    // Stopped while another process checkpointed the log away: a gap, said so.
    insert(31, 40);
    let (busy, _, _): (i64, i64, i64) = app
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("truncate");
    assert_eq!(busy, 0);
    insert(41, 45);
    let mut follower = Follower::open(&path).expect("follow again");
    match follower.resume(point).expect("resume") {
        Resume::Gap(why) => assert!(why.contains("checkpointed"), "{why}"),
        Resume::Continues(_) => panic!("a truncated log was taken for a continuation"),
    }
    // A fresh snapshot starts the new chain with everything.
    let fresh = dir.path().join("fresh.db");
    follower.snapshot(&fresh).expect("snapshot");
    assert_eq!(restored_prefix(&fresh), 45);
}

#[test]
fn a_database_not_in_wal_mode_is_refused_naming_the_pragma() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("rollback.db");
    Connection::open(&path)
        .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
        .expect("create");
    let message = match Follower::open(&path) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a rollback-journal database was followed"),
    };
    assert!(message.contains("journal_mode=WAL"), "{message}");
    assert!(
        !sibling(&path, "-wal").exists(),
        "the journal mode was changed"
    );
}

#[test]
fn a_log_that_outgrows_the_follower_unread_is_let_go_before_it_is_read() {
    let dir = tempfile::tempdir().expect("dir");
    let path = live_database(dir.path());
    let app = Connection::open(&path).expect("app");
    app.execute_batch("PRAGMA wal_autocheckpoint=0")
        .expect("no autocheckpoint");
    let copy = dir.path().join("copy.db");
    let mut follower = Follower::open(&path).expect("follow");
    follower.snapshot(&copy).expect("snapshot");
    for n in 1..=300 {
        app.execute("INSERT INTO log (n, pad) VALUES (?1, zeroblob(3000))", [n])
            .expect("insert");
    }
    // All of the log is unread: within four times its size, past four times an eighth.
    let log = std::fs::metadata(sibling(&path, "-wal"))
        .expect("log")
        .len();
    assert_eq!(follower.outgrown(log).expect("outgrown"), None);
    let gap = follower
        .outgrown(log / 8)
        .expect("outgrown")
        .expect("a gap");
    assert!(gap.contains("had not read yet"), "{gap}");
    // The follower holds nothing now: the app's own checkpoint empties the log.
    let (busy, _, _): (i64, i64, i64) = app
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("truncate");
    assert_eq!(busy, 0, "the follower still holds the log");
}

/// Whether another process sees a read lock on the log held by this one. SQLite's locks
/// are POSIX locks on `-shm` (its read locks are bytes 123 to 127), which only another
/// process can test: a forked child asks with `F_GETLK` and answers in its exit status.
fn read_lock_seen_from_another_process(db: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let shm = std::ffi::CString::new(sibling(db, "-shm").as_os_str().as_bytes()).expect("path");
    // SAFETY: the child only calls async-signal-safe functions (open, fcntl, _exit) on
    // memory prepared before the fork, and the parent waits for it.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let fd = libc::open(shm.as_ptr(), libc::O_RDWR);
            let mut lock: libc::flock = std::mem::zeroed();
            lock.l_type = libc::F_WRLCK as _;
            lock.l_whence = libc::SEEK_SET as _;
            lock.l_start = 123;
            lock.l_len = 5;
            let asked = fd >= 0 && libc::fcntl(fd, libc::F_GETLK, &raw mut lock) == 0;
            libc::_exit(if asked && i32::from(lock.l_type) == libc::F_RDLCK {
                0
            } else {
                1
            });
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid, "waitpid");
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// The follower's read transaction is what keeps the app from restarting the log before
/// it is read. A descriptor of `-shm` opened and closed by the follower would drop it for
/// every other process (POSIX locks belong to the process, and go with any close).
#[test]
fn the_apps_process_sees_the_followers_read_lock_through_every_call() {
    let dir = tempfile::tempdir().expect("dir");
    let path = live_database(dir.path());
    let app = Connection::open(&path).expect("app");
    let insert = |from: i64| {
        for n in from..from + 100 {
            app.execute("INSERT INTO log (n, pad) VALUES (?1, zeroblob(3000))", [n])
                .expect("insert");
        }
    };
    let mut follower = Follower::open(&path).expect("follow");
    assert!(read_lock_seen_from_another_process(&path), "after open");
    follower
        .snapshot(&dir.path().join("copy.db"))
        .expect("snapshot");
    assert!(read_lock_seen_from_another_process(&path), "after snapshot");
    insert(1);
    assert_eq!(follower.outgrown(1 << 30).expect("outgrown"), None);
    assert!(read_lock_seen_from_another_process(&path), "after outgrown");
    follower.read_on().expect("read");
    assert!(read_lock_seen_from_another_process(&path), "after a read");
    insert(101);
    // A small max-wal: a quiet moment and a TRUNCATE, ending on a reader of the database
    // alone (slot 0 is one of the bytes asked about).
    let done = follower.checkpoint(4096, QUIET_FRAMES).expect("checkpoint");
    assert!(done.quiet_moment, "{done:?}");
    assert!(
        read_lock_seen_from_another_process(&path),
        "after a checkpoint"
    );
    assert_eq!(follower.outgrown(1 << 30).expect("outgrown"), None);
    assert!(
        read_lock_seen_from_another_process(&path),
        "after outgrown again"
    );
    // The log restarted once, at the point reached: the chain goes on.
    insert(201);
    assert_eq!(follower.read_on().expect("read").transactions, 100);
}
