//! cairn's `sqlite` source against `sqlite3 DB ".backup OUT"` on the same database, in one
//! run: the time to a consistent copy, and cairn's time to a stored, integrity-checked
//! snapshot (with `check = "full"` and `"quick"`), plus an unchanged re-backup.
//!
//!     cargo build --release -p cairn -p cairn-bench
//!     target/release/sqlite_vs_backup [SIZE_MIB]
//!
//! Default 1024 MiB: an events table with an index, text that compresses about 2:1.
//! Needs the sqlite3 shell (Debian's `sqlite3` package; bench/run.sh installs it).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use cairn_bench::{Measured, cairn_exe, du, measure, warm};

fn main() -> Result<()> {
    let size_mib: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().context("usage: sqlite_vs_backup [SIZE_MIB]")?,
        None => 1024,
    };
    let cairn = cairn_exe()?;
    let dir = tempfile::tempdir_in(
        std::env::var_os("BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )?;
    let db = dir.path().join("app.db");
    create_database(&db, size_mib)?;
    let db_bytes = std::fs::metadata(&db)?.len();
    let version = Command::new("sqlite3")
        .arg("--version")
        .output()
        .context("sqlite3 not found: install Debian's `sqlite3` package (bench/run.sh does)")?;
    println!(
        "# database {:.0} MiB (WAL mode, one indexed table); sqlite3 {}",
        db_bytes as f64 / (1 << 20) as f64,
        String::from_utf8_lossy(&version.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("?")
    );
    // Warm the page cache so both tools read from memory.
    warm(dir.path())?;

    let out = dir.path().join("copy.db");
    let peer = measure(
        Command::new("sqlite3")
            .arg(&db)
            .arg(format!(".backup {}", out.display())),
    )?;
    std::fs::remove_file(&out)?;

    let full = run_cairn(&cairn, dir.path(), &db, "full")?;
    let quick = run_cairn(&cairn, dir.path(), &db, "quick")?;

    println!(
        "{:<34} {:>9} {:>8} {:>11}",
        "", "seconds", "ratio", "peak RSS"
    );
    let row = |name: &str, m: Measured| {
        println!(
            "{:<34} {:>9.2} {:>8.2} {:>7} MiB",
            name,
            m.time.as_secs_f64(),
            m.time.as_secs_f64() / peer.time.as_secs_f64(),
            m.peak_rss_kib / 1024
        )
    };
    row("sqlite3 .backup", peer);
    row("cairn backup, integrity_check", full.first);
    row("cairn backup, quick_check", quick.first);
    row("cairn unchanged re-backup (full)", full.second);
    println!(
        "repository {:.0} MiB for a {:.0} MiB database ({:.2}x)",
        full.repo_bytes as f64 / (1 << 20) as f64,
        db_bytes as f64 / (1 << 20) as f64,
        full.repo_bytes as f64 / db_bytes as f64
    );
    Ok(())
}

/// An `events` table (id, kind, time, body) with an index on time, filled to `size_mib`.
fn create_database(path: &Path, size_mib: u64) -> Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE events(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, created INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE INDEX events_created ON events(created);",
    )?;
    // About 600 bytes a row with its index entry.
    let rows = size_mib * 1024 * 1024 / 600;
    let batch = 100_000;
    let mut done = 0;
    while done < rows {
        let n = batch.min(rows - done);
        conn.execute_batch(&format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
             INSERT INTO events(kind, created, body)
             SELECT 'kind-' || (abs(random()) % 20), 1700000000 + {done} + x,
                    hex(randomblob(140)) || ' user signed in from a device in the office ' || x || printf('%.*c', 200, 'x')
             FROM c;"
        ))?;
        done += n;
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

struct CairnRun {
    first: Measured,
    second: Measured,
    repo_bytes: u64,
}

fn run_cairn(cairn: &Path, dir: &Path, db: &Path, check: &str) -> Result<CairnRun> {
    let work = dir.join(format!("cairn-{check}"));
    std::fs::create_dir_all(&work)?;
    let repo = work.join("repo");
    let config = work.join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n[[source]]\nname = \"app\"\nplugin = \"sqlite\"\n[source.options]\npath = \"{}\"\ncheck = \"{check}\"\n",
            repo.display(),
            db.display()
        ),
    )?;
    let tmp = work.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let run = |args: &[&str]| {
        let mut cmd = Command::new(cairn);
        cmd.arg("--config")
            .arg(&config)
            .args(args)
            .env("CAIRN_PASSWORD", "bench")
            .env("CAIRN_CACHE_DIR", work.join("cache"))
            .env("TMPDIR", &tmp);
        cmd
    };
    measure(&mut run(&["init"]))?;
    // Compile the plugins into the cache first, as any second run would find them.
    measure(&mut run(&["plugin", "inspect", "sqlite"]))?;
    let first = measure(&mut run(&["backup"]))?;
    let second = measure(&mut run(&["backup"]))?;
    Ok(CairnRun {
        first,
        second,
        repo_bytes: du(&repo),
    })
}
