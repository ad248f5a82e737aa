//! Continuous replication of a SQLite database (`cairn replicate`) under a writer that
//! commits numbered transactions at full speed: restores at many instants are exactly
//! a prefix of what was committed, within the sync interval; a log checkpointed away
//! while cairn was stopped starts a new chain that no restore crosses; SIGKILL at random
//! moments loses nothing durable; nothing of cairn's lands in or beside the database;
//! restores at points of a chain stored through the S3 sink.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cairn_e2e::s3::S3Server;
use cairn_e2e::{Env, source_section};
use rand::Rng;
use rusqlite::Connection;

/// How far behind a commit a restore at `TIME` may be: the sync interval and slack for a
/// loaded 2-core machine (the issue's `TIME - interval - slack`).
const SLACK: Duration = Duration::from_millis(2500);

/// The tests' `max-wal`: small, so that a test build following a writer that never pauses
/// lets go of the log (a gap, a new chain) before the log fills the disk.
const MAX_WAL: &str = "16MiB";

/// A transaction of the writer: the last number it inserted, when it began and when its
/// COMMIT returned.
#[derive(Clone, Copy)]
struct Committed {
    last: i64,
    began: SystemTime,
    committed: SystemTime,
}

fn live_database(env: &Env) -> PathBuf {
    let path = env.path("app.db");
    let conn = Connection::open(&path).expect("create");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE log (n INTEGER PRIMARY KEY, pad BLOB NOT NULL);
         CREATE INDEX log_pad ON log (pad);",
    )
    .expect("schema");
    path
}

fn replicated_env() -> (Env, PathBuf) {
    let env = Env::new();
    let db = live_database(&env);
    env.local_config(&format!(
        "{}[source.replicate]\ninterval = \"1s\"\nmax-wal = \"{MAX_WAL}\"\nbundle-every = \"3s\"\nmerge-every = \"6s\"\n",
        source_section("db", "sqlite", &db, "")
    ));
    env.ok(&["init"]);
    (env, db)
}

/// A writer committing numbered rows (1 to 4 a transaction), its log shared, until `stop`:
/// as fast as it can, or pausing after each transaction as an app between requests does.
struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Committed>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// A writer that never pauses: cairn cannot keep such a log short and lets go of it.
    fn full_speed(db: &Path, first: i64) -> Writer {
        Writer::start(db, first, None)
    }

    /// A busy app: one transaction, then a pause of a millisecond (a thousand a second at
    /// most), so that what is committed stays within reach of a debug build's follower
    /// on a loaded 2-core machine.
    fn paced(db: &Path, first: i64) -> Writer {
        Writer::start(db, first, Some(Duration::from_millis(1)))
    }

    fn start(db: &Path, first: i64, pause: Option<Duration>) -> Writer {
        let (stop, log) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (path, stopping, logged) = (db.to_path_buf(), stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let conn = Connection::open(&path).expect("writer");
            conn.busy_timeout(Duration::from_secs(10)).expect("busy");
            let mut n = first - 1;
            while !stopping.load(Ordering::Relaxed) {
                let began = SystemTime::now();
                conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                for _ in 0..(1 + n % 4) {
                    n += 1;
                    let pad = vec![(n % 251) as u8; 50 + (n % 200) as usize];
                    conn.execute(
                        "INSERT INTO log (n, pad) VALUES (?1, ?2)",
                        rusqlite::params![n, pad],
                    )
                    .expect("insert");
                }
                conn.execute_batch("COMMIT").expect("commit");
                let committed = SystemTime::now();
                logged.lock().expect("log").push(Committed {
                    last: n,
                    began,
                    committed,
                });
                if let Some(pause) = pause {
                    std::thread::sleep(pause);
                }
            }
        });
        Writer {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<Committed> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("writer thread");
        }
        self.log.lock().expect("log").clone()
    }
}

/// A test that fails midway must not leave a writer filling the disk.
impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running `cairn replicate`, killed if the test fails before it is stopped, and the
/// file its log goes to (in the environment: `CAIRN_TEST_KEEP=1` keeps it).
struct Replicating(Option<Child>, PathBuf);

impl Drop for Replicating {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `cairn replicate`, its log (with each read of the follower) appended to
/// `replicate.log`.
fn replicate(env: &Env) -> Replicating {
    let log = env.path("replicate.log");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("replicate.log");
    Replicating(
        Some(
            env.command(&["replicate"])
                .env(
                    "CAIRN_LOG",
                    "info,cairn_runtime::capabilities::sqlite::follow=trace",
                )
                .stdout(std::process::Stdio::piped())
                .stderr(file)
                .spawn()
                .expect("cairn replicate"),
        ),
        log,
    )
}

/// Stops a `cairn replicate` with SIGTERM and insists it stored what was left and exited 0.
fn terminate(mut running: Replicating) -> String {
    let child = running.0.take().expect("running");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("replicate output");
    assert!(
        out.status.success(),
        "replicate after SIGTERM: {}",
        std::fs::read_to_string(&running.1).unwrap_or_default()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `t` in RFC 3339, UTC, with microseconds.
fn rfc3339(t: SystemTime) -> String {
    let since_epoch = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970");
    let secs = since_epoch.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_micros()
    )
}

/// The inverse of [`rfc3339`] (UTC, as `cairn timeline --json` writes it).
fn parse_rfc3339(text: &str) -> SystemTime {
    let num = |range: std::ops::Range<usize>| -> i64 { text[range].parse().expect("a number") };
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
    let fraction = text[19..].trim_end_matches('Z').trim_start_matches('.');
    let nanos: u32 = format!("{fraction:0<9}")[..9].parse().unwrap_or(0);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
}

/// Restores the source as of `at` into a fresh file and returns how many rows it holds,
/// having checked that it passes integrity_check and holds exactly 1..=n.
fn rows_at(env: &Env, at: &str, name: &str) -> i64 {
    let target = env.path(&format!("restored/{name}.db"));
    env.ok(&[
        "restore",
        "--source",
        "db",
        "--at",
        at,
        "--target",
        &target.to_string_lossy(),
    ]);
    let conn = Connection::open(&target).expect("open restored");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok", "the restore at {at} is damaged");
    let (count, max): (i64, Option<i64>) = conn
        .query_row("SELECT count(*), max(n) FROM log", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("rows");
    assert_eq!(
        count,
        max.unwrap_or(0),
        "the restore at {at} is not a prefix"
    );
    count
}

/// Every transaction committed before `at - SLACK` is in `rows`, none begun after `at`.
fn assert_bounds(log: &[Committed], at: SystemTime, rows: i64) {
    for tx in log {
        if tx.committed + SLACK < at {
            assert!(
                tx.last <= rows,
                "transaction {} committed well before the point but is missing ({rows} rows)",
                tx.last
            );
        }
        if tx.began > at {
            assert!(
                tx.last > rows,
                "transaction {} began after the point but is there ({rows} rows)",
                tx.last
            );
        }
    }
}

/// Rows `from..=to`, one transaction each, as an app between requests writes them.
fn insert_rows(app: &Connection, from: i64, to: i64) {
    for n in from..=to {
        app.execute("INSERT INTO log (n, pad) VALUES (?1, x'00')", [n])
            .expect("insert");
    }
}

fn timeline(env: &Env) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["--json", "timeline"])).expect("timeline JSON")
}

/// The bundles (`first..=last`) and single segments under the repository's chains.
fn chain_objects(env: &Env) -> (Vec<(u64, u64)>, Vec<u64>) {
    let (mut bundles, mut singles) = (Vec::new(), Vec::new());
    for object in cairn_e2e::repo_objects(&env.path("repo"), "changes") {
        let name = object.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref().and_then(|n| n.split_once('-')) {
            Some((first, last)) => {
                bundles.push((first.parse().expect("first"), last.parse().expect("last")))
            }
            None => singles.extend(
                name.and_then(|n| n.parse::<u64>().ok())
                    .filter(|&seq| seq > 0),
            ),
        }
    }
    (bundles, singles)
}

#[test]
fn restores_at_many_instants_hold_exactly_what_was_committed_by_then() {
    let (env, db) = replicated_env();
    let schema_before: Vec<String> = {
        let conn = Connection::open(&db).expect("open");
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_schema ORDER BY name")
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    // The chain begins first, so that every instant of the writer's run is restorable.
    let child = replicate(&env);
    std::thread::sleep(Duration::from_millis(1500));
    let writer = Writer::paced(&db, 1);
    std::thread::sleep(Duration::from_secs(7));
    let said = terminate(child);
    let log = writer.stop();
    assert!(said.contains("new chain(s)"), "{said}");
    assert!(
        log.len() > 500,
        "the writer committed only {} transactions",
        log.len()
    );
    // Every 3 s the segments were packed into a bundle, and the single ones deleted; every
    // 6 s, and at the stop, the bundles were merged into one and deleted. The instants
    // below fall inside merges as well as after them.
    assert!(said.contains("bundle(s)"), "{said}");
    assert!(said.contains("bundles merged into"), "{said}");
    let (bundles, singles) = chain_objects(&env);
    assert!(!bundles.is_empty(), "no bundle: {singles:?}");
    for (i, (first, last)) in bundles.iter().enumerate() {
        assert!(
            !singles.iter().any(|s| s >= first && s <= last),
            "segments {first}..={last} are stored both bundled and alone: {singles:?}"
        );
        assert!(
            !bundles[i + 1..]
                .iter()
                .any(|(f, l)| f <= last && l >= first),
            "segments {first}..={last} are stored in two bundles: {bundles:?}"
        );
    }

    // A loaded machine may still make cairn let go of the log (a gap, a new chain);
    // every range must hold, and instants are drawn inside them.
    let ranges = timeline(&env)[0]["ranges"]
        .as_array()
        .cloned()
        .expect("ranges");
    let segments: u64 = ranges.iter().filter_map(|r| r["segments"].as_u64()).sum();
    assert!(
        segments >= 2,
        "only {segments} segments in 7 s at a 1 s interval"
    );
    let mut rng = rand::rng();
    let mut instants = Vec::new();
    for range in &ranges {
        let from = parse_rfc3339(range["from"].as_str().expect("from"));
        let to = parse_rfc3339(range["to"].as_str().expect("to"));
        let span = to.duration_since(from).unwrap_or_default();
        let share = (24 / ranges.len()).max(4);
        instants.extend((0..share).map(|_| from + span.mul_f64(rng.random::<f64>())));
    }
    instants.sort();
    let mut previous = 0;
    for (i, at) in instants.iter().enumerate() {
        let rows = rows_at(&env, &rfc3339(*at), &format!("at-{i}"));
        assert!(rows >= previous, "a later instant restored fewer rows");
        assert_bounds(&log, *at, rows);
        previous = rows;
    }
    // `latest` is the last segment: everything committed a sync before the stop.
    let latest = rows_at(&env, "latest", "latest");
    assert!(latest >= previous);

    // Nothing of cairn's in the database or beside it.
    let conn = Connection::open(&db).expect("open");
    let mut stmt = conn
        .prepare("SELECT sql FROM sqlite_schema ORDER BY name")
        .expect("prepare");
    let schema_after: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(schema_after, schema_before);
    let beside: Vec<String> = std::fs::read_dir(env.dir.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("app.db"))
        .collect();
    assert!(
        beside
            .iter()
            .all(|n| ["app.db", "app.db-wal", "app.db-shm"].contains(&n.as_str())),
        "{beside:?}"
    );
}

#[test]
fn a_log_checkpointed_while_cairn_was_stopped_starts_a_new_chain_no_restore_crosses() {
    let (env, db) = replicated_env();
    let app = Connection::open(&db).expect("app");
    let insert = |from: i64, to: i64| insert_rows(&app, from, to);
    insert(1, 100);
    let child = replicate(&env);
    std::thread::sleep(Duration::from_millis(2500));
    insert(101, 200);
    std::thread::sleep(Duration::from_millis(2500));
    terminate(child);
    let stopped = SystemTime::now();

    // While cairn is stopped, the app writes and another process truncates the log.
    std::thread::sleep(Duration::from_millis(1100));
    insert(201, 300);
    let busy: i64 = app
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .expect("truncate");
    assert_eq!(busy, 0);
    insert(301, 400);
    let in_gap = SystemTime::now();
    std::thread::sleep(Duration::from_millis(1100));

    let child = replicate(&env);
    std::thread::sleep(Duration::from_millis(2500));
    let said = terminate(child);
    assert!(said.contains("checkpointed"), "{said}");

    let sources = timeline(&env);
    let ranges = sources[0]["ranges"].as_array().cloned().expect("ranges");
    assert_eq!(
        ranges.len(),
        2,
        "one chain before the gap, one after: {sources}"
    );
    assert!(
        ranges[1]["began"]
            .as_str()
            .is_some_and(|b| b.contains("checkpointed")),
        "{sources}"
    );
    let text = env.ok(&["timeline"]);
    assert!(text.contains("gap"), "{text}");

    // Before the gap: the first chain's end; in the gap: still that, never the rows
    // committed while nobody followed; after: everything.
    assert_eq!(rows_at(&env, &rfc3339(stopped), "stopped"), 200);
    assert_eq!(rows_at(&env, &rfc3339(in_gap), "in-gap"), 200);
    assert_eq!(rows_at(&env, "latest", "after"), 400);

    // Damaged segments: verify and restore at a point past them fail naming one, and
    // leave nothing at the target.
    let segments: Vec<PathBuf> = cairn_e2e::repo_objects(&env.path("repo"), "changes")
        .into_iter()
        .filter(|p| !p.ends_with("000000000000"))
        .collect();
    assert!(!segments.is_empty(), "the first chain stored no segment");
    for segment in &segments {
        let mut bytes = std::fs::read(segment).expect("read segment");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(segment, bytes).expect("damage segment");
    }
    let at = rfc3339(stopped);
    let out = env.cairn(&["verify", "--source", "db", "--at", &at]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("FAILED") && said.contains("changes/") && said.contains("damaged"),
        "{said}"
    );
    let target = env.path("damaged.db");
    let err = env.fails(
        &[
            "restore",
            "--source",
            "db",
            "--at",
            &at,
            "--target",
            &target.to_string_lossy(),
        ],
        1,
    );
    assert!(err.contains("changes/") && err.contains("damaged"), "{err}");
    assert!(
        !target.exists(),
        "a failed restore left a file at the target"
    );
}

#[test]
fn forget_keeps_the_base_of_a_chain_it_still_needs_and_prune_deletes_one_it_does_not() {
    let (env, db) = replicated_env();
    let app = Connection::open(&db).expect("app");
    let insert = |from: i64, to: i64| insert_rows(&app, from, to);
    insert(1, 100);
    let child = replicate(&env);
    std::thread::sleep(Duration::from_millis(2500));
    insert(101, 200);
    std::thread::sleep(Duration::from_millis(1500));
    let before_backup = SystemTime::now();
    std::thread::sleep(Duration::from_millis(100));
    // A plain backup while the chain goes on past it.
    env.ok(&["backup"]);
    insert(201, 300);
    std::thread::sleep(Duration::from_millis(2500));
    terminate(child);

    // Keeping only the newest snapshot keeps the chain's base too: the chain reaches it,
    // and every point back to it stays restorable.
    let kept = env.ok(&["forget", "--keep-last", "1"]);
    assert!(kept.contains("base of change chain"), "{kept}");
    assert_eq!(rows_at(&env, &rfc3339(before_backup), "kept"), 200);
    assert_eq!(rows_at(&env, "latest", "latest"), 300);
    let verified = env.ok(&["verify", "--source", "db", "--at", "latest"]);
    assert!(
        verified.contains("point in time") && verified.contains("passed"),
        "{verified}"
    );

    // Once a newer snapshot is the oldest kept and the chain ended before it, the chain
    // goes with its base, and prune deletes its objects.
    insert(301, 400);
    env.ok(&["backup"]);
    let said = env.ok(&["forget", "--keep-last", "1", "--prune", "--grace", "0s"]);
    assert!(
        said.contains("change chains whose snapshot was forgotten"),
        "{said}"
    );
    assert!(
        cairn_e2e::repo_objects(&env.path("repo"), "changes").is_empty(),
        "chain objects left behind"
    );
    let sources = timeline(&env);
    assert!(
        sources.as_array().is_none_or(|s| s
            .iter()
            .all(|s| s["ranges"].as_array().is_none_or(Vec::is_empty))),
        "{sources}"
    );
    let err = env.fails(
        &[
            "restore",
            "--source",
            "db",
            "--at",
            &rfc3339(before_backup),
            "--target",
            &env.path("gone.db").to_string_lossy(),
        ],
        1,
    );
    assert!(err.contains("no chain"), "{err}");
    let out = env.cairn(&["verify", "--source", "db", "--at", &rfc3339(before_backup)]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("no chain"), "{said}");
}

#[test]
fn replication_through_s3_restores_each_point() {
    let server = S3Server::start("replicas");
    let env = Env::new().with_vars(&S3Server::credentials());
    let db = live_database(&env);
    env.write_config(&format!(
        "{}{}[source.replicate]\ninterval = \"1s\"\n",
        server.repository_config("replicas", "app"),
        source_section("db", "sqlite", &db, "")
    ));
    env.ok(&["init"]);
    let app = Connection::open(&db).expect("app");
    let insert = |from: i64, to: i64| insert_rows(&app, from, to);
    insert(1, 100);
    let child = replicate(&env);
    std::thread::sleep(Duration::from_millis(2500));
    insert(101, 200);
    std::thread::sleep(Duration::from_millis(2000));
    let between = SystemTime::now();
    std::thread::sleep(Duration::from_millis(100));
    insert(201, 300);
    std::thread::sleep(Duration::from_millis(2000));
    terminate(child);

    let stored = cairn_e2e::repo_objects(&server.bucket_dir("replicas").join("app"), "changes");
    assert!(
        stored.len() >= 2,
        "a chain and its segments in the bucket: {stored:?}"
    );
    assert_eq!(rows_at(&env, &rfc3339(between), "between"), 200);
    assert_eq!(rows_at(&env, "latest", "latest"), 300);
    let verified = env.ok(&["verify", "--source", "db", "--at", "latest"]);
    assert!(verified.contains("passed"), "{verified}");
}

#[test]
fn replication_killed_at_random_moments_restarts_from_what_is_durable() {
    let (env, db) = replicated_env();
    let writer = Writer::full_speed(&db, 1);
    let mut rng = rand::rng();
    for _ in 0..3 {
        let running = replicate(&env);
        std::thread::sleep(Duration::from_millis(rng.random_range(1500..4000)));
        // SIGKILL, as the guard does.
        drop(running);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
    }
    let child = replicate(&env);
    std::thread::sleep(Duration::from_secs(3));
    terminate(child);
    let log = writer.stop();

    // Every chain after the first says why it began; none has a hole.
    let sources = timeline(&env);
    let ranges = sources[0]["ranges"].as_array().cloned().expect("ranges");
    assert!(!ranges.is_empty());
    for range in &ranges[1..] {
        let began = range["began"].as_str().unwrap_or_default();
        assert!(
            !began.is_empty(),
            "a chain began without a reason: {sources}"
        );
    }
    // Each range's end restores consistently and within its bounds.
    for (i, range) in ranges.iter().enumerate() {
        let to = range["to"].as_str().expect("to").to_string();
        assert!(rows_at(&env, &to, &format!("range-{i}")) > 0);
    }
    let latest = rows_at(&env, "latest", "latest");
    assert!(latest <= log[log.len() - 1].last);
}

#[test]
fn replicate_without_a_replicated_source_or_with_a_bad_setting_fails_clearly() {
    let env = Env::new();
    let db = live_database(&env);
    env.local_config(&source_section("db", "sqlite", &db, ""));
    env.ok(&["init"]);
    let err = env.fails(&["replicate"], 1);
    assert!(err.contains("[source.replicate]"), "{err}");
    let err = env.fails(
        &[
            "restore",
            "--source",
            "db",
            "--at",
            "latest",
            "--target",
            "/tmp/x.db",
        ],
        1,
    );
    assert!(err.contains("cairn replicate"), "{err}");
    let err = env.fails(
        &[
            "restore",
            "--source",
            "db",
            "--at",
            "yesterday",
            "--target",
            "/tmp/x.db",
        ],
        1,
    );
    assert!(err.contains("RFC 3339"), "{err}");

    env.local_config(&format!(
        "{}[source.replicate]\ninterval = \"soon\"\n",
        source_section("db", "sqlite", &db, "")
    ));
    let err = env.fails(&["replicate"], 2);
    assert!(
        err.contains("interval") && err.contains("cairn.toml:"),
        "{err}"
    );
}
