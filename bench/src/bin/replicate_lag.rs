//! Continuous replication of a live SQLite database (`cairn replicate`, 1 s interval, the
//! local sink), in one run on the same database:
//! - a writer's throughput at full speed alone, then with `cairn replicate` following;
//! - the lag from each commit to durable in the sink, p50 and p99, under a steady writer
//!   (`RATE` transactions a second for `SECS`): each commit is matched to the first
//!   segment read after it, durable when that segment's object appeared in the sink (a
//!   watcher lists the repository's `changes/` every 20 ms, since bundling deletes the
//!   single segments a minute later);
//! - objects written (one request each; replication lists nothing after it starts) per
//!   hour, for an idle database and for the steady writer, and the objects the chain
//!   keeps once its segments are bundled and merged, before and after the stop;
//! - a restore at the newest point (the chain's snapshot and every segment since) against
//!   a plain restore of that snapshot.
//!
//! Run:
//!
//!     cargo build --release -p cairn -p cairn-bench
//!     target/release/replicate_lag [SIZE_MIB [SECS [RATE]]]
//!
//! `BENCH_SINK=s3` stores to the local S3 server (s3s-fs on 127.0.0.1) instead of
//! the local sink. Defaults: a 1024 MiB database, an hour (3600 s) of writes at 200
//! transactions a second, each inserting an event and updating a random older one, with
//! `synchronous=NORMAL` (what most apps on WAL set). The full-speed
//! phases run `$BENCH_FULL_SECS` (default 20) each, the idle one `$BENCH_IDLE_SECS`
//! (default 60).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use cairn_bench::{LocalCairn, Timer, cairn_exe, events_database};
use cairn_e2e::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use rand::Rng;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| -> Result<u64> {
        args.get(i).map_or(Ok(default), |a| {
            a.parse()
                .context("usage: replicate_lag [SIZE_MIB [SECS [RATE]]]")
        })
    };
    let (size_mib, secs, rate) = (number(0, 1024)?, number(1, 3600)?, number(2, 200)?);
    let full_secs = env_secs("BENCH_FULL_SECS", 20)?;
    let idle_secs = env_secs("BENCH_IDLE_SECS", 60)?;
    let cairn = cairn_exe()?;
    let dir = tempfile::tempdir_in(
        std::env::var_os("BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )?;
    let db = dir.path().join("app.db");
    events_database(&db, size_mib)?;
    let rows = count_rows(&db)?;
    println!(
        "# database {:.0} MiB, {rows} rows; writes of {secs} s at {rate} tx/s; full-speed phases {full_secs} s, idle {idle_secs} s",
        std::fs::metadata(&db)?.len() as f64 / (1 << 20) as f64,
    );
    let work = dir.path().join("cairn");
    let replicate_table = "[source.replicate]\ninterval = \"1s\"\n";
    // Kept to the end: dropping it stops the server.
    let mut server = None;
    let cairn = match std::env::var("BENCH_SINK").as_deref() {
        Ok("s3") => {
            let s3 = server.insert(S3Server::start("cairn"));
            println!("# sink: s3 (s3s-fs on 127.0.0.1)");
            LocalCairn::sqlite_in(
                &cairn,
                &work,
                &db,
                // The keys in files: the lag is read from the repository in this process
                // too, which the tests' environment variables do not reach.
                &s3.repository_config("cairn", "repo")
                    .replace(
                        "env:TEST_S3_ACCESS_KEY",
                        &secret_file(&work, "access", ACCESS_KEY)?,
                    )
                    .replace(
                        "env:TEST_S3_SECRET_KEY",
                        &secret_file(&work, "secret", SECRET_KEY)?,
                    ),
                &s3.bucket_dir("cairn").join("repo"),
                replicate_table,
            )?
        }
        Ok("local") | Err(_) => {
            println!("# sink: local");
            LocalCairn::sqlite(&cairn, &work, &db, replicate_table)?
        }
        Ok(other) => bail!("BENCH_SINK={other}: the sinks are local and s3"),
    };

    let alone = Writer::run(&db, rows, None, full_secs)?;
    let watch = Watch::start(&cairn.repo);
    let mut replicating = replicate(&cairn)?;
    wait_for_chain(&cairn.repo, Duration::from_secs(600))?;
    let before_idle = watch.seen();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle_written = watch.seen() - before_idle;
    let followed = Writer::run(&db, rows, None, full_secs)?;
    let before_steady = watch.seen();
    let steady = Writer::run(&db, rows, Some(rate), secs)?;
    let steady_written = watch.seen() - before_steady;
    let kept_running = count_objects(&cairn.repo);
    stop(&mut replicating)?;
    let kept_stopped = count_objects(&cairn.repo);
    let appeared = watch.stop();

    println!(
        "writer alone           {:>9.0} tx/s   stalls: {}",
        alone.per_second(),
        alone.stalled()
    );
    println!(
        "writer, replicated     {:>9.0} tx/s   {:.3}x of alone (target at least 0.95x)   stalls: {}",
        followed.per_second(),
        followed.per_second() / alone.per_second(),
        followed.stalled()
    );
    let lags = lags(&cairn, &appeared, &steady.commits)?;
    println!(
        "lag commit -> durable  p50 {:.2} s   p99 {:.2} s   max {:.2} s   ({} commits; target p99 under 2 s)",
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0),
        lags.len()
    );
    println!(
        "objects written/hour   idle {:.0}   steady {:.0}",
        idle_written as f64 * 3600.0 / idle_secs as f64,
        steady_written as f64 * 3600.0 / secs as f64,
    );
    println!(
        "objects kept           {kept_running} while running, {kept_stopped} after the stop's merge ({} s of changes, the chain's start included)",
        secs + full_secs
    );

    let timer = Timer::from_env(dir.path())?;
    let at = timer.time(&mut cairn.command(&[
        "restore",
        "--source",
        "app",
        "--at",
        "latest",
        "--target",
        &dir.path().join("at.db").to_string_lossy(),
    ]))?;
    let base = base_snapshot(&cairn)?;
    let plain = timer.time(&mut cairn.command(&[
        "restore",
        &base,
        "--source",
        "app",
        "--target",
        &dir.path().join("plain.db").to_string_lossy(),
    ]))?;
    println!(
        "restore at latest      {:>7.1} s   {:.2}x a plain restore of its snapshot ({:.1} s), {} s of writes after it",
        at.time.as_secs_f64(),
        at.time.as_secs_f64() / plain.time.as_secs_f64(),
        plain.time.as_secs_f64(),
        secs + full_secs
    );
    Ok(())
}

/// `file:PATH` of a new file under `work` holding `value`.
fn secret_file(work: &Path, name: &str, value: &str) -> Result<String> {
    std::fs::create_dir_all(work)?;
    let path = work.join(format!("s3-{name}-key"));
    std::fs::write(&path, value)?;
    Ok(format!("file:{}", path.display()))
}

fn env_secs(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name} must be seconds")),
        Err(_) => Ok(default),
    }
}

fn count_rows(db: &Path) -> Result<i64> {
    let conn = rusqlite::Connection::open(db)?;
    Ok(conn.query_row("SELECT max(id) FROM events", [], |r| r.get(0))?)
}

/// What a writer did: when each transaction committed, and for how long it ran.
struct Written {
    commits: Vec<SystemTime>,
    took: Duration,
    /// The transactions that took longer than [`STALL`], each one's time.
    stalls: Vec<Duration>,
}

/// A transaction taking longer than this was held up (they take tens of microseconds).
const STALL: Duration = Duration::from_millis(10);

impl Written {
    /// The stalls, in words.
    fn stalled(&self) -> String {
        let total: Duration = self.stalls.iter().sum();
        let longest = self.stalls.iter().max().copied().unwrap_or_default();
        format!(
            "{} transactions over {} ms, {:.2} s in all, the longest {} ms",
            self.stalls.len(),
            STALL.as_millis(),
            total.as_secs_f64(),
            longest.as_millis()
        )
    }

    fn per_second(&self) -> f64 {
        self.commits.len() as f64 / self.took.as_secs_f64()
    }
}

struct Writer;

impl Writer {
    /// Commits transactions for `secs`, each inserting an event and updating a random
    /// older one (pages all over the database change), at `rate` a second or as fast as
    /// it can.
    fn run(db: &Path, rows: i64, rate: Option<u64>, secs: u64) -> Result<Written> {
        let conn = rusqlite::Connection::open(db)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // What most apps on WAL set: commits are not synced one by one.
        conn.execute_batch("PRAGMA synchronous=NORMAL")?;
        let mut rng = rand::rng();
        let started = Instant::now();
        let end = started + Duration::from_secs(secs);
        let mut commits = Vec::new();
        let mut stalls = Vec::new();
        let mut insert = conn.prepare(
            "INSERT INTO events(kind, created, body) VALUES ('write', ?1, hex(randomblob(140)) || ' written by the benchmark')",
        )?;
        let mut update = conn.prepare("UPDATE events SET kind = 'updated' WHERE id = ?1")?;
        while Instant::now() < end {
            if let Some(rate) = rate {
                let due = started + Duration::from_secs_f64(commits.len() as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let began = Instant::now();
            conn.execute_batch("BEGIN IMMEDIATE")?;
            insert.execute([commits.len() as i64])?;
            update.execute([rng.random_range(1..=rows)])?;
            conn.execute_batch("COMMIT")?;
            commits.push(SystemTime::now());
            let took = began.elapsed();
            if took > STALL {
                stalls.push(took);
            }
        }
        Ok(Written {
            commits,
            took: started.elapsed(),
            stalls,
        })
    }
}

/// Starts `cairn replicate` in the background.
fn replicate(cairn: &LocalCairn) -> Result<Child> {
    cairn
        .command(&["replicate"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting cairn replicate")
}

fn stop(child: &mut Child) -> Result<()> {
    // SAFETY: kill(2) on a child's pid, which is ours until we wait for it.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "cairn replicate exited with {status}");
    Ok(())
}

/// Waits until the first chain's start is stored: the snapshot is taken.
fn wait_for_chain(repo: &Path, within: Duration) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < within {
        if count_objects(repo) > 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("no chain began within {within:?}")
}

/// Lists the repository's `changes/` every 20 ms, noting when each object first appeared:
/// single segments are deleted once bundled, so their files cannot be looked at later.
struct Watch {
    stop: Arc<AtomicBool>,
    appeared: Arc<Mutex<HashMap<PathBuf, SystemTime>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(repo: &Path) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let appeared: Arc<Mutex<HashMap<PathBuf, SystemTime>>> = Arc::default();
        let (stopping, noted, repo) = (stop.clone(), Arc::clone(&appeared), repo.to_path_buf());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let now = SystemTime::now();
                let files = cairn_e2e::repo_objects(&repo, "changes");
                if let Ok(mut noted) = noted.lock() {
                    for file in files {
                        noted.entry(file).or_insert(now);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watch {
            stop,
            appeared,
            thread: Some(thread),
        }
    }

    /// How many objects have appeared so far.
    fn seen(&self) -> u64 {
        self.appeared.lock().map_or(0, |a| a.len() as u64)
    }

    fn stop(mut self) -> HashMap<PathBuf, SystemTime> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.appeared.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// The objects under the repository's `changes/`, writes in progress left out.
fn count_objects(repo: &Path) -> u64 {
    cairn_e2e::repo_objects(repo, "changes").len() as u64
}

/// Each commit's lag: from its commit to when the first segment read after it appeared
/// in the sink as an object of its own.
fn lags(
    cairn: &LocalCairn,
    appeared: &HashMap<PathBuf, SystemTime>,
    commits: &[SystemTime],
) -> Result<Vec<f64>> {
    use futures::StreamExt;
    let runtime = tokio::runtime::Runtime::new()?;
    let config = cairn::config::Config::load(&cairn.config)?;
    let session = cairn::lifecycle::Session::new(config, Some(b"bench".to_vec()))?;
    let segments: Vec<(SystemTime, SystemTime)> = runtime.block_on(async {
        let repo = session.open_repository().await?;
        let mut segments = Vec::new();
        for chain in cairn::repo::changes::chains(&repo, Some("app")).await? {
            let read = cairn::repo::changes::read_segments(&repo, &chain);
            futures::pin_mut!(read);
            while let Some(segment) = read.next().await {
                let segment = segment?;
                let object = cairn.repo.join(cairn::repo::changes::segment_name(
                    &chain.start.chain,
                    segment.header.seq,
                ));
                let written = appeared
                    .get(&object)
                    .with_context(|| format!("{} was never seen", object.display()))?;
                segments.push((SystemTime::from(segment.header.time), *written));
            }
        }
        anyhow::Ok(segments)
    })?;
    let mut segments = segments;
    segments.sort();
    let mut lags = Vec::with_capacity(commits.len());
    let mut next = 0;
    for &commit in commits {
        while next < segments.len() && segments[next].0 < commit {
            next += 1;
        }
        let Some(&(_, written)) = segments.get(next) else {
            break;
        };
        lags.push(
            written
                .duration_since(commit)
                .unwrap_or_default()
                .as_secs_f64(),
        );
    }
    anyhow::ensure!(
        !lags.is_empty(),
        "no segment holds the steady writer's commits"
    );
    Ok(lags)
}

fn percentile(sorted_or_not: &[f64], p: f64) -> f64 {
    let mut v = sorted_or_not.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

/// The snapshot the newest chain starts from.
fn base_snapshot(cairn: &LocalCairn) -> Result<String> {
    let out = cairn.command(&["--json", "timeline"]).output()?;
    anyhow::ensure!(out.status.success(), "cairn timeline failed");
    let sources: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    sources[0]["ranges"]
        .as_array()
        .and_then(|r| r.last())
        .and_then(|r| r["snapshot"].as_str())
        .map(str::to_string)
        .context("no range in the timeline")
}
