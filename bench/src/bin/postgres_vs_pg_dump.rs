//! cairn's `postgres` source against pg_dump and pg_restore on the same pgbench database,
//! in one run on one cluster: backup against `pg_dump -Fc` and `pg_dump -Fd -j2`, an
//! unchanged re-backup, and restore into a new database against `pg_restore` (one job,
//! and `-j2`). Times include building indexes and constraints on restore.
//!
//!     cargo build --release -p cairn -p cairn-bench
//!     target/release/postgres_vs_pg_dump [SCALE]
//!
//! Default scale 50 (5 million pgbench_accounts rows, about 750 MiB on disk). Starts its
//! own cluster with Debian's PostgreSQL 15 (scripts/setup.sh installs it); the client
//! tools and cairn run on the same machine, as the server does. It also times the
//! server alone (COPY of the largest table into /dev/null through one and two
//! connections): on a small machine that is the floor every tool shares. Every timed
//! command follows `$BENCH_RECYCLE_MIB` (default 2048) MiB written and deleted (see
//! `Timer`).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use cairn_bench::{Measured, Timer, cairn_exe, du, measure, median};
use cairn_e2e::postgres::{PASSWORD, PASSWORD_VAR, PgCluster};

fn main() -> Result<()> {
    let scale: u32 = match std::env::args().nth(1) {
        Some(a) => a.parse().context("usage: postgres_vs_pg_dump [SCALE]")?,
        None => 50,
    };
    let cairn = cairn_exe()?;
    let dir = tempfile::tempdir_in(
        std::env::var_os("BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )?;
    let pg = PgCluster::start();
    pg.create_database("bench");
    let init =
        pg.output(
            pg.client("pgbench", "bench")
                .args(["-i", "-q", "-s", &scale.to_string()]),
        );
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    pg.psql("bench", "VACUUM ANALYZE");
    let size: u64 = pg
        .psql("bench", "SELECT pg_database_size('bench')")
        .parse()?;
    println!(
        "# pgbench scale {scale}: database {:.0} MiB, PostgreSQL {}",
        size as f64 / (1 << 20) as f64,
        pg.psql("bench", "SHOW server_version")
    );
    let timer = Timer::from_env(dir.path())?;
    println!("{}", timer.describe());
    // Warm the server's cache and the page cache alike for every contender.
    pg.psql(
        "bench",
        "SELECT count(*) FROM pgbench_accounts; SELECT count(*) FROM pgbench_history",
    );

    let work = dir.path().join("cairn");
    std::fs::create_dir_all(&work)?;
    let cairn_run = |round: usize, args: &[&str]| {
        let config = work.join(format!("cairn-{round}.toml"));
        let mut cmd = Command::new(&cairn);
        cmd.arg("--config")
            .arg(&config)
            .args(args)
            .env("CAIRN_PASSWORD", "bench")
            .env(PASSWORD_VAR, PASSWORD)
            .env("CAIRN_CACHE_DIR", work.join("cache"));
        cmd
    };
    let custom = dir.path().join("bench.dump");
    let directory = dir.path().join("bench.dir");
    let mut rounds: Vec<Vec<Measured>> = Vec::new();
    for round in 0..ROUNDS {
        let mut m = Vec::new();
        // The server's own share: COPY of the big table with nobody storing it, through
        // one connection (all pg_dump -Fc uses) and through two (half each).
        m.push(timer.time(&mut copy_to_null(&pg, "true"))?);
        m.push(copy_halves_to_null(&pg, &timer)?);
        let _ = std::fs::remove_file(&custom);
        m.push(
            timer.time(
                pg.client("pg_dump", "bench")
                    .args(["-Fc", "-f"])
                    .arg(&custom),
            )?,
        );
        let _ = std::fs::remove_dir_all(&directory);
        m.push(
            timer.time(
                pg.client("pg_dump", "bench")
                    .args(["-Fd", "-j2", "-f"])
                    .arg(&directory),
            )?,
        );
        std::fs::write(
            work.join(format!("cairn-{round}.toml")),
            format!(
                "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n[[source]]\nname = \"bench\"\nplugin = \"postgres\"\n[source.options]\nurl = \"{}\"\npassword = \"env:{PASSWORD_VAR}\"\n",
                work.join(format!("repo-{round}")).display(),
                pg.url("bench")
            ),
        )?;
        measure(&mut cairn_run(round, &["init"]))?;
        measure(&mut cairn_run(round, &["plugin", "inspect", "postgres"]))?;
        m.push(timer.time(&mut cairn_run(round, &["backup"]))?);
        m.push(timer.time(&mut cairn_run(round, &["backup"]))?);

        for db in ["from_pg_restore", "from_pg_restore_j2", "from_cairn"] {
            pg.psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
            pg.create_database(db);
        }
        m.push(
            timer.time(
                pg.client("pg_restore", "from_pg_restore")
                    .args(["-d", "from_pg_restore"])
                    .arg(&custom),
            )?,
        );
        m.push(
            timer.time(
                pg.client("pg_restore", "from_pg_restore_j2")
                    .args(["-j2", "-d", "from_pg_restore_j2"])
                    .arg(&directory),
            )?,
        );
        m.push(timer.time(&mut cairn_run(
            round,
            &[
                "restore",
                "latest",
                "--source",
                "bench",
                "--target",
                &pg.url("from_cairn"),
            ],
        ))?);
        let count = "SELECT count(*) FROM pgbench_accounts";
        anyhow::ensure!(
            pg.psql("from_cairn", count) == pg.psql("bench", count),
            "the restored database differs"
        );
        rounds.push(m);
    }
    let median = |i: usize| median(&rounds.iter().map(|r| r[i]).collect::<Vec<_>>());
    let (floor_one, floor_two, dump_fc, dump_fd, backup, rebackup) = (
        median(0),
        median(1),
        median(2),
        median(3),
        median(4),
        median(5),
    );
    let (restore_pg, restore_pg_j2, restore_cairn) = (median(6), median(7), median(8));

    println!("median of {ROUNDS} rounds");
    println!(
        "{:<40} {:>9} {:>8} {:>11}",
        "", "seconds", "ratio", "peak RSS"
    );
    let row = |name: &str, m: Measured, peer: Measured| {
        println!(
            "{:<40} {:>9.2} {:>8.2} {:>7} MiB",
            name,
            m.time.as_secs_f64(),
            m.time.as_secs_f64() / peer.time.as_secs_f64(),
            m.peak_rss_kib / 1024
        )
    };
    println!("backup (ratio against pg_dump -Fc)");
    row("  server alone: COPY accounts, 1 conn", floor_one, dump_fc);
    row("  server alone: COPY accounts, 2 conns", floor_two, dump_fc);
    row("  pg_dump -Fc", dump_fc, dump_fc);
    row("  pg_dump -Fd -j2", dump_fd, dump_fc);
    row("  cairn backup (jobs 2)", backup, dump_fc);
    row("  cairn unchanged re-backup", rebackup, dump_fc);
    println!("restore (ratio against pg_restore)");
    row("  pg_restore", restore_pg, restore_pg);
    row("  pg_restore -j2 (directory)", restore_pg_j2, restore_pg);
    row("  cairn restore (jobs 2)", restore_cairn, restore_pg);
    println!(
        "stored: pg_dump -Fc {:.0} MiB, -Fd {:.0} MiB, cairn repository {:.0} MiB",
        file_mib(&custom),
        du(&directory) as f64 / (1 << 20) as f64,
        du(&work.join("repo-0")) as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// Times of each contender are the median of this many rounds, run interleaved.
const ROUNDS: usize = 3;

/// psql copying part of pgbench_accounts into /dev/null.
fn copy_to_null(pg: &PgCluster, range: &str) -> Command {
    let mut cmd = pg.client("psql", "bench");
    cmd.args([
        "-X",
        "-c",
        &format!("COPY (SELECT * FROM pgbench_accounts WHERE {range}) TO STDOUT"),
    ]);
    cmd
}

/// Both halves of pgbench_accounts copied into /dev/null at once, by two connections.
fn copy_halves_to_null(pg: &PgCluster, timer: &Timer) -> Result<Measured> {
    let half = pg.psql(
        "bench",
        "SELECT pg_relation_size('pgbench_accounts') / current_setting('block_size')::int / 2",
    );
    timer.recycle()?;
    let started = std::time::Instant::now();
    let mut first = copy_to_null(pg, &format!("ctid < '({half},0)'"))
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let second = measure(&mut copy_to_null(pg, &format!("ctid >= '({half},0)'")))?;
    anyhow::ensure!(first.wait()?.success(), "COPY of the first half failed");
    Ok(Measured {
        time: started.elapsed(),
        peak_rss_kib: second.peak_rss_kib,
    })
}

fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64
}
