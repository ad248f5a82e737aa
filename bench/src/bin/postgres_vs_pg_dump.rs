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
//! tools and cairn run on the same machine, as the server does.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use cairn_bench::{Measured, cairn_exe, du, measure};
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
    // Warm the server's cache and the page cache alike for every contender.
    pg.psql(
        "bench",
        "SELECT count(*) FROM pgbench_accounts; SELECT count(*) FROM pgbench_history",
    );

    let custom = dir.path().join("bench.dump");
    let dump_fc = measure(
        pg.client("pg_dump", "bench")
            .args(["-Fc", "-f"])
            .arg(&custom),
    )?;
    let directory = dir.path().join("bench.dir");
    let dump_fd = measure(
        pg.client("pg_dump", "bench")
            .args(["-Fd", "-j2", "-f"])
            .arg(&directory),
    )?;

    let work = dir.path().join("cairn");
    std::fs::create_dir_all(&work)?;
    let config = work.join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n[[source]]\nname = \"bench\"\nplugin = \"postgres\"\n[source.options]\nurl = \"{}\"\npassword = \"env:{PASSWORD_VAR}\"\n",
            work.join("repo").display(),
            pg.url("bench")
        ),
    )?;
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&cairn);
        cmd.arg("--config")
            .arg(&config)
            .args(args)
            .env("CAIRN_PASSWORD", "bench")
            .env(PASSWORD_VAR, PASSWORD)
            .env("CAIRN_CACHE_DIR", work.join("cache"));
        cmd
    };
    measure(&mut run(&["init"]))?;
    measure(&mut run(&["plugin", "inspect", "postgres"]))?;
    let backup = measure(&mut run(&["backup"]))?;
    let rebackup = measure(&mut run(&["backup"]))?;

    pg.create_database("from_pg_restore");
    let restore_pg = measure(
        pg.client("pg_restore", "from_pg_restore")
            .args(["-d", "from_pg_restore"])
            .arg(&custom),
    )?;
    pg.create_database("from_pg_restore_j2");
    let restore_pg_j2 = measure(
        pg.client("pg_restore", "from_pg_restore_j2")
            .args(["-j2", "-d", "from_pg_restore_j2"])
            .arg(&directory),
    )?;
    pg.create_database("from_cairn");
    let restore_cairn = measure(&mut run(&[
        "restore",
        "latest",
        "--source",
        "bench",
        "--target",
        &pg.url("from_cairn"),
    ]))?;
    let count = "SELECT count(*) FROM pgbench_accounts";
    anyhow::ensure!(
        pg.psql("from_cairn", count) == pg.psql("bench", count),
        "the restored database differs"
    );

    println!(
        "{:<34} {:>9} {:>8} {:>11}",
        "", "seconds", "ratio", "peak RSS"
    );
    let row = |name: &str, m: Measured, peer: Measured| {
        println!(
            "{:<34} {:>9.2} {:>8.2} {:>7} MiB",
            name,
            m.time.as_secs_f64(),
            m.time.as_secs_f64() / peer.time.as_secs_f64(),
            m.peak_rss_kib / 1024
        )
    };
    println!("backup (ratio against pg_dump -Fc)");
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
        du(&work.join("repo")) as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / (1 << 20) as f64
}
