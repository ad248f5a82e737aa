//! cairn's `sqlite` source against `sqlite3 DB ".backup OUT"` on the same database, in one
//! run: the time to a consistent copy, and cairn's time to a stored, integrity-checked
//! snapshot (with `check = "full"` and `"quick"`), plus an unchanged re-backup; and the
//! shell's copy checked with `PRAGMA integrity_check`, what cairn's work costs by hand.
//!
//!     cargo build --release -p cairn -p cairn-bench
//!     target/release/sqlite_vs_backup [SIZE_MIB]
//!
//! Default 1024 MiB: an events table with an index, text that compresses about 3:1. Times
//! are the median of `$BENCH_ROUNDS` (default 3) rounds, each contender in turn; each
//! round's times go to stderr. Every timed command follows `$BENCH_RECYCLE_MIB` (default
//! 2048) MiB written and deleted (see `Timer`). Needs the sqlite3 shell (Debian's
//! `sqlite3` package; bench/run.sh installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use cairn_bench::{
    LocalCairn, Measured, Timer, cairn_exe, du, events_database, median, rounds, warm,
};

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
    events_database(&db, size_mib)?;
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
    let timer = Timer::from_env(dir.path())?;
    println!("{}", timer.describe());
    // Warm the page cache so both tools read from memory.
    warm(dir.path())?;

    // Every timed command writes into memory just used (see `Timer`). cairn removes its
    // scratch copy when it finishes, so the shell's copy is removed too. The shell's copy
    // is first checked as cairn checks its own, so that the benchmark also shows what
    // doing by hand what cairn does costs (less compression, encryption and storing).
    let shell_backup = || -> Result<(Measured, Measured)> {
        let out = dir.path().join("copy.db");
        let copied = timer.time(
            Command::new("sqlite3")
                .arg(&db)
                .arg(format!(".backup {}", out.display())),
        )?;
        let checked = timer.time(
            Command::new("sqlite3")
                .arg(&out)
                .arg("PRAGMA integrity_check"),
        )?;
        std::fs::remove_file(&out)?;
        Ok((copied, checked))
    };
    let rounds = rounds()?;
    let (mut shell, mut shell_checked, mut full, mut quick, mut again) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut repo_bytes = 0;
    for round in 0..rounds {
        let full_repo = CairnRepo::new(
            &cairn,
            &dir.path().join(format!("round-{round}/full")),
            &db,
            "full",
            &timer,
        )?;
        let quick_repo = CairnRepo::new(
            &cairn,
            &dir.path().join(format!("round-{round}/quick")),
            &db,
            "quick",
            &timer,
        )?;
        let (s1, f, s2, q, a) = (
            shell_backup()?,
            full_repo.backup()?,
            shell_backup()?,
            quick_repo.backup()?,
            full_repo.backup()?,
        );
        eprintln!(
            "round {round}: sqlite3 .backup {:.2} s and {:.2} s (then integrity_check {:.2} s and {:.2} s); cairn integrity_check {:.2} s, quick_check {:.2} s, re-backup {:.2} s",
            s1.0.time.as_secs_f64(),
            s2.0.time.as_secs_f64(),
            s1.1.time.as_secs_f64(),
            s2.1.time.as_secs_f64(),
            f.time.as_secs_f64(),
            q.time.as_secs_f64(),
            a.time.as_secs_f64()
        );
        shell.extend([s1.0, s2.0]);
        shell_checked.extend([s1, s2].map(|(copied, checked)| Measured {
            time: copied.time + checked.time,
            peak_rss_kib: copied.peak_rss_kib.max(checked.peak_rss_kib),
        }));
        full.push(f);
        quick.push(q);
        again.push(a);
        repo_bytes = du(&full_repo.repo);
        // Repositories stay until the end: deleting them would free memory just before the
        // next round's first contender.
    }
    let peer = median(&shell);

    println!("median of {rounds} rounds, run interleaved");
    println!(
        "{:<38} {:>9} {:>8} {:>11}",
        "", "seconds", "ratio", "peak RSS"
    );
    let row = |name: &str, m: Measured| {
        println!(
            "{:<38} {:>9.2} {:>8.2} {:>7} MiB",
            name,
            m.time.as_secs_f64(),
            m.time.as_secs_f64() / peer.time.as_secs_f64(),
            m.peak_rss_kib / 1024
        )
    };
    row("sqlite3 .backup", peer);
    row(
        "sqlite3 .backup, then integrity_check",
        median(&shell_checked),
    );
    row("cairn backup, integrity_check", median(&full));
    row("cairn backup, quick_check", median(&quick));
    row("cairn unchanged re-backup (full)", median(&again));
    println!(
        "repository {:.0} MiB for a {:.0} MiB database ({:.2}x)",
        repo_bytes as f64 / (1 << 20) as f64,
        db_bytes as f64 / (1 << 20) as f64,
        repo_bytes as f64 / db_bytes as f64
    );
    Ok(())
}

/// A cairn repository backing up the database with one check level, and how its backups
/// are timed.
struct CairnRepo {
    cairn: LocalCairn,
    repo: PathBuf,
    timer: Timer,
}

impl CairnRepo {
    fn new(cairn: &Path, work: &Path, db: &Path, check: &str, timer: &Timer) -> Result<Self> {
        let cairn = LocalCairn::sqlite(cairn, work, db, &format!("check = \"{check}\"\n"))?;
        Ok(CairnRepo {
            repo: cairn.repo.clone(),
            cairn,
            timer: timer.clone(),
        })
    }

    fn backup(&self) -> Result<Measured> {
        self.timer.time(&mut self.cairn.command(&["backup"]))
    }
}
