//! The `sqlite` source against real database files: consistent copies while another
//! process writes, refusal of damaged databases, page-level incremental storage, and
//! restores that check before they rename.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use cairn_e2e::sqlite::{assert_consistent_bank, create_bank};
use cairn_e2e::{Env, dir_size, source_section, stderr};

fn sqlite_source(name: &str, path: &Path, extra: &str) -> String {
    source_section(name, "sqlite", path, extra)
}
use rusqlite::Connection;

/// Restores `source` of `snapshot` to `target`, insisting on success.
fn restore(env: &Env, snapshot: &str, source: &str, target: &Path) {
    env.ok(&[
        "restore",
        snapshot,
        "--source",
        source,
        "--target",
        target.to_str().expect("a UTF-8 path"),
    ]);
}

/// Snapshot ids, oldest first.
fn snapshot_ids(env: &Env) -> Vec<String> {
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "snapshots"])).expect("snapshots JSON");
    listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

/// After a backup that failed: nothing was committed (the snapshots are still `good`),
/// no copy is left in `scratch`, the repository checks clean, and the latest snapshot
/// restores with `rows` rows in `items`.
fn assert_failed_backup_left_no_trace(
    env: &Env,
    good: &[String],
    scratch: &Path,
    rows: i64,
    what: &str,
) {
    assert_eq!(snapshot_ids(env), good, "{what}: a snapshot was committed");
    assert_eq!(
        std::fs::read_dir(scratch).unwrap().count(),
        0,
        "{what}: the temporary copy was left behind"
    );
    // Whatever chunks landed are unreferenced, but the repository stays sound.
    env.ok(&["check", "--read-data"]);
    let restored = env.path("restored.db");
    let _ = std::fs::remove_file(&restored);
    restore(env, "latest", "app", &restored);
    let count: i64 = Connection::open(&restored)
        .unwrap()
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, rows, "{what}");
}

struct Writer {
    child: Option<Child>,
    stop: std::path::PathBuf,
}

impl Writer {
    fn start(db: &Path, mode: &str, stop: &Path) -> Writer {
        let child = Command::new(env!("CARGO_BIN_EXE_sqlite-writer"))
            .arg(db)
            .arg(mode)
            .arg(stop)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the writer");
        Writer {
            child: Some(child),
            stop: stop.to_path_buf(),
        }
    }

    /// Stops the writer and returns how many transactions it committed.
    fn finish(mut self) -> u64 {
        std::fs::write(&self.stop, b"stop").expect("stop file");
        let child = self.child.take().expect("running");
        let out = child.wait_with_output().expect("writer output");
        assert!(out.status.success(), "the writer failed: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("commit count")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Backs up `db` `count` times while the writer commits in `mode`, then restores every
/// snapshot and checks it is sound and keeps the bank's invariants.
fn backups_under_a_live_writer(mode: &str, count: usize) {
    let env = Env::new();
    let db = env.path("bank.db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", mode).unwrap();
        create_bank(&conn).unwrap();
        // A few MiB of history, so each copy takes long enough to overlap commits.
        conn.execute_batch(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000)
             INSERT INTO ledger(src, dst, amount, memo) SELECT 1, 1, 0, hex(randomblob(40)) FROM c;
             UPDATE counters SET n = 30000 WHERE name = 'ledger';",
        )
        .unwrap();
    }
    env.local_config(&sqlite_source(
        "bank",
        &db,
        "probes = [\"SELECT sum(balance) FROM accounts\"]",
    ));
    env.ok(&["init"]);
    let writer = Writer::start(&db, mode, &env.path("stop"));
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..count {
        env.ok(&["backup"]);
    }
    let commits = writer.finish();
    assert!(commits > 0, "the writer committed nothing");

    let ids = snapshot_ids(&env);
    assert_eq!(ids.len(), count);
    let mut ledger_rows = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let restored = env.path(&format!("restored/{i}.db"));
        restore(&env, id, "bank", &restored);
        ledger_rows.push(assert_consistent_bank(&restored));
    }
    assert!(
        ledger_rows.windows(2).all(|w| w[0] <= w[1]),
        "snapshots went back in time: {ledger_rows:?}"
    );
    let distinct = ledger_rows
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        distinct > count / 2,
        "the writer was not committing during the backups: {ledger_rows:?}"
    );
    // verify restores the newest snapshot into scratch space and re-runs the probe.
    let report: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "verify", "latest"])).unwrap();
    assert_eq!(report["sources"][0]["passed"], true, "{report}");
}

#[test]
fn twenty_backups_under_a_live_wal_writer_all_restore_consistent() {
    backups_under_a_live_writer("wal", 20);
}

#[test]
fn backups_under_a_live_rollback_journal_writer_restore_consistent() {
    backups_under_a_live_writer("delete", 5);
}

/// Overwrites whole pages in the middle of a database file with garbage.
fn damage_pages(db: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let len = std::fs::metadata(db).unwrap().len();
    let mut file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    for page in [len / 4096 / 2, len / 4096 / 2 + 7, len / 4096 / 3] {
        file.seek(SeekFrom::Start(page * 4096)).unwrap();
        file.write_all(&[0xA5; 4096]).unwrap();
    }
    file.sync_all().unwrap();
}

#[test]
fn a_damaged_database_fails_the_backup_and_commits_nothing() {
    let env = Env::new();
    let db = env.path("app.db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, payload BLOB);
             CREATE INDEX items_name ON items(name);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
             INSERT INTO items(name, payload) SELECT hex(randomblob(8)), randomblob(100) FROM c;",
        )
        .unwrap();
    }
    env.local_config(&sqlite_source(
        "app",
        &db,
        "probes = [\"SELECT count(*) FROM items\"]",
    ));
    env.ok(&["init"]);
    env.ok(&["backup"]);
    let good = snapshot_ids(&env);

    damage_pages(&db);
    let scratch = env.path("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = env.cairn_with(&["backup"], &[("TMPDIR", scratch.to_str().unwrap())]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("app") && err.contains("integrity_check"),
        "{err}"
    );
    assert_failed_backup_left_no_trace(&env, &good, &scratch, 20000, "a damaged database");
    env.ok(&["verify", "latest"]);
}

/// A copy that cannot be written (here: a file size limit, EFBIG on the write that would
/// pass it) fails the backup with the copy's directory and the fix named, commits
/// nothing, leaves no copy behind, and the previous snapshot stays restorable. The limit
/// falls mid-copy, then in the copy's last page, which the VFS holds gathered until
/// SQLite ends the copy.
#[test]
fn a_copy_that_cannot_be_written_fails_the_backup_and_commits_nothing() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let db = env.path("app.db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE items(id INTEGER PRIMARY KEY, payload BLOB);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 6000)
             INSERT INTO items(payload) SELECT randomblob(1000) FROM c;
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
    }
    let size = std::fs::metadata(&db).unwrap().len();
    env.local_config(&sqlite_source("app", &db, ""));
    env.ok(&["init"]);
    // Also fills the plugin code cache, so the limited runs below write only the copy.
    env.ok(&["backup"]);
    let good = snapshot_ids(&env);

    let scratch = env.path("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    for limit in [2 << 20, size - 4096] {
        let mut cmd = env.command(&["backup"]);
        cmd.env("TMPDIR", &scratch);
        // SAFETY: between fork and exec the closure calls only async-signal-safe functions.
        unsafe {
            cmd.pre_exec(move || {
                // Ignored, SIGXFSZ makes a write past the limit fail with EFBIG instead of
                // killing the process.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().expect("running cairn");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "limit {limit}: {err}");
        assert!(
            err.contains("app")
                && err.contains(&format!("writing the copy in {} failed", scratch.display()))
                && err.contains("TMPDIR"),
            "limit {limit}: {err}"
        );
        assert_failed_backup_left_no_trace(&env, &good, &scratch, 6000, &format!("limit {limit}"));
    }
}

#[test]
fn a_small_change_to_a_large_database_stores_little() {
    let env = Env::new();
    let db = env.path("big.db");
    let rows = 210_000;
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE blobs(id INTEGER PRIMARY KEY, payload BLOB NOT NULL);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
             INSERT INTO blobs(payload) SELECT randomblob(1000) FROM c;"
        ))
        .unwrap();
    }
    let db_size = std::fs::metadata(&db).unwrap().len();
    assert!(db_size >= 200 * 1024 * 1024, "{db_size}");
    env.local_config(&sqlite_source("big", &db, ""));
    env.ok(&["init"]);
    env.ok(&["backup"]);
    let first = dir_size(&env.path("repo"));

    {
        let conn = Connection::open(&db).unwrap();
        let one_percent = rows / 100;
        conn.execute_batch(&format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {one_percent})
             INSERT INTO blobs(payload) SELECT randomblob(1000) FROM c;
             UPDATE blobs SET payload = randomblob(1000) WHERE id BETWEEN 100000 AND {};",
            100_000 + one_percent - 1
        ))
        .unwrap();
    }
    env.ok(&["backup"]);
    let added = dir_size(&env.path("repo")) - first;
    let limit = db_size / 20;
    eprintln!(
        "database {} MiB; second backup added {:.2} MiB ({:.2}%)",
        db_size >> 20,
        added as f64 / 1048576.0,
        added as f64 * 100.0 / db_size as f64
    );
    assert!(
        added <= limit,
        "the second backup added {added} bytes, more than 5% of {db_size}"
    );
}

#[test]
fn restore_checks_before_it_renames_and_never_overwrites_unasked() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("tenants")).unwrap();
    for (name, rows) in [("a", 10), ("b", 20)] {
        let conn = Connection::open(env.path(&format!("tenants/{name}.db"))).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
             INSERT INTO t SELECT x FROM c;"
        ))
        .unwrap();
    }
    // One database by path, and several by glob.
    let mut sources = sqlite_source("a", &env.path("tenants/a.db"), "");
    sources.push_str(&sqlite_source(
        "all",
        &env.path("tenants/*.db"),
        "check = \"quick\"",
    ));
    env.local_config(&sources);
    env.ok(&["init"]);
    env.ok(&["backup"]);

    let target = env.path("live/a.db");
    std::fs::create_dir_all(env.path("live")).unwrap();
    std::fs::write(&target, b"the file someone cares about").unwrap();
    let target_arg = target.to_str().unwrap();
    let err = env.fails(
        &["restore", "latest", "--source", "a", "--target", target_arg],
        1,
    );
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"the file someone cares about"
    );

    // A stale WAL beside the target would be replayed into the restored file by SQLite.
    std::fs::write(env.path("live/a.db-wal"), b"stale").unwrap();
    env.ok(&[
        "restore", "latest", "--source", "a", "--target", target_arg, "--force",
    ]);
    let mut left: Vec<String> = std::fs::read_dir(env.path("live"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["a.db"],
        "only the database is left, no -wal, -shm or temporary file"
    );
    let conn = Connection::open(&target).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 10);
    drop(conn);

    let dir = env.path("restored-all");
    restore(&env, "latest", "all", &dir);
    for (name, rows) in [("a", 10), ("b", 20)] {
        let conn = Connection::open(dir.join(format!("{name}.db"))).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, rows);
    }
}

#[test]
fn a_missing_database_or_a_failing_probe_fails_clearly() {
    let env = Env::new();
    let db = env.path("app.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    env.local_config(&sqlite_source("app", &env.path("missing.db"), ""));
    env.ok(&["init"]);
    let err = env.fails(&["backup"], 1);
    assert!(
        err.contains("missing.db") && err.contains("does not exist"),
        "{err}"
    );

    env.local_config(&sqlite_source(
        "app",
        &db,
        "probes = [\"SELECT count(*) FROM no_such_table\"]",
    ));
    let err = env.fails(&["backup"], 1);
    assert!(err.contains("no_such_table"), "{err}");
    assert!(snapshot_ids(&env).is_empty());

    env.local_config(&sqlite_source("app", &db, "probes = [\"DELETE FROM t\"]"));
    let err = env.fails(&["backup"], 1);
    assert!(err.contains("read-only"), "{err}");
    let conn = Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "a probe wrote to the database");
}

/// Rows of `t` as (id, hash of v), the whole table's contents in a comparable form.
fn table_digest(conn: &Connection) -> Vec<(i64, String)> {
    let mut stmt = conn
        .prepare("SELECT id, hex(substr(v, 1, 16)) || length(v) FROM t ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// While the copy is taken, the source stores chunks ahead: the copy's, as SQLite writes
/// them. Pages whose newest version is still in the WAL differ in the live file: the
/// snapshot must hold the copy's pages, never those. A WAL of more than 1% of the
/// database turns storing ahead off.
#[test]
fn pages_stored_ahead_from_the_live_file_never_replace_the_copys() {
    let env = Env::new();
    let db = env.path("app.db");
    let live = Connection::open(&db).unwrap();
    live.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)
         INSERT INTO t(v) SELECT randomblob(1000) FROM c;
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    env.local_config(&sqlite_source("app", &db, ""));
    env.ok(&["init"]);
    let wal = env.path("app.db-wal");
    let backup_and_compare = |rows: &str, ahead: bool| {
        // The connection stays open, so the changes stay in the WAL, not in app.db.
        live.execute_batch(&format!(
            "UPDATE t SET v = zeroblob(1000) WHERE id BETWEEN {rows}"
        ))
        .unwrap();
        let wal_bytes = std::fs::metadata(&wal).unwrap().len();
        let db_bytes = std::fs::metadata(&db).unwrap().len();
        assert_eq!(
            wal_bytes <= db_bytes / 100,
            ahead,
            "WAL {wal_bytes} bytes, database {db_bytes}"
        );
        let out = env.cairn(&["-vv", "backup"]);
        let log = stderr(&out);
        assert!(out.status.success(), "{log}");
        assert_eq!(log.contains("stored as it was written"), ahead, "{log}");
        let target = env.path(&format!("restored-{ahead}.db"));
        restore(&env, "latest", "app", &target);
        let restored = Connection::open(&target).unwrap();
        assert_eq!(table_digest(&restored), table_digest(&live));
    };
    backup_and_compare("5000 AND 5019", true);
    backup_and_compare("1 AND 3000", false);
    env.ok(&["check", "--read-data"]);
}
