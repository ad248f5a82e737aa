//! cairn against restic on the same mixed tree, in one run: first backup, unchanged
//! re-backup, restore; wall time, peak RSS and repository size, with cairn/restic ratios;
//! and the floor under any restore here, the tree copied on every core with no repository.
//!
//!     cargo build --release -p cairn -p cairn-bench
//!     target/release/backup_vs_restic [SMALL_FILES LARGE_FILES LARGE_MIB]
//!
//! Defaults: 16,000 files of 1-64 KiB plus 4 files of 128 MiB (about 1 GiB), compressing
//! about 2:1. Times are the median of `$BENCH_ROUNDS` (default 3) rounds, each tool in
//! turn; each round's times go to stderr. Every timed command follows
//! `$BENCH_RECYCLE_MIB` (default 2048) MiB written and deleted (see `Timer`).
//! Needs restic (Debian's `restic` package; bench/run.sh installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cairn_bench::{
    Measured, Timer, cairn_exe, du, measure, median, mixed_tree, print_vs_restic, rounds,
    tree_args, warm, which,
};

fn main() -> Result<()> {
    let (small, large, large_mib) = tree_args("backup_vs_restic")?;
    let cairn = cairn_exe()?;
    let restic = which("restic")
        .context("restic not found: install Debian's `restic` package (bench/run.sh does)")?;
    let version = Command::new(&restic).arg("version").output()?;
    let dir = tempfile::tempdir_in(
        std::env::var_os("BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )?;
    let data = dir.path().join("data");
    let bytes = mixed_tree(&data, small, large, large_mib)?;
    println!(
        "# {} files ({small} of 1-64 KiB, {large} of {large_mib} MiB), {:.0} MiB; {}",
        small + large,
        bytes as f64 / (1 << 20) as f64,
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let timer = Timer::from_env(dir.path())?;
    println!("{}", timer.describe());
    // Warm the page cache so both tools read from memory.
    warm(&data)?;

    let rounds = rounds()?;
    let (mut cairn_runs, mut restic_runs, mut floors) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let work = dir.path().join(format!("round-{round}"));
        let (c, r) = (
            run_cairn(&cairn, &work, &data, &timer)?,
            run_restic(&restic, &work, &data, &timer)?,
        );
        timer.recycle()?;
        let floor = copy_tree(&data, &work.join("copy"))?;
        eprintln!(
            "round {round}: first backup {:.2} / {:.2} s, re-backup {:.2} / {:.2} s, restore {:.2} / {:.2} s (cairn / restic); the tree copied in {:.2} s",
            c.first.time.as_secs_f64(),
            r.first.time.as_secs_f64(),
            c.second.time.as_secs_f64(),
            r.second.time.as_secs_f64(),
            c.restore.time.as_secs_f64(),
            r.restore.time.as_secs_f64(),
            floor.as_secs_f64(),
        );
        cairn_runs.push(c);
        restic_runs.push(r);
        floors.push(floor);
        // Rounds are kept until the end (about 3 GiB each): memory freed by deleting them
        // is, on a VM with free page reporting, slow to touch again (see `Timer`), and
        // without recycling that cost would fall on whichever tool writes first in the
        // next round.
    }
    let (c, r) = (&cairn_runs[rounds - 1], &restic_runs[rounds - 1]);
    let med = |runs: &[Runs], pick: fn(&Runs) -> Measured| {
        median(&runs.iter().map(pick).collect::<Vec<_>>())
    };

    println!("median of {rounds} rounds, run interleaved");
    print_vs_restic(&[
        (
            "first backup",
            med(&cairn_runs, |r| r.first),
            med(&restic_runs, |r| r.first),
        ),
        (
            "unchanged re-backup",
            med(&cairn_runs, |r| r.second),
            med(&restic_runs, |r| r.second),
        ),
        (
            "restore",
            med(&cairn_runs, |r| r.restore),
            med(&restic_runs, |r| r.restore),
        ),
    ]);
    println!(
        "{:<22} {:>10} {:>10} {:>8.2}",
        "repository MiB",
        c.repo_bytes >> 20,
        r.repo_bytes >> 20,
        c.repo_bytes as f64 / r.repo_bytes as f64
    );
    floors.sort();
    let floor = floors[floors.len() / 2].as_secs_f64();
    let restic_restore = med(&restic_runs, |r| r.restore).time.as_secs_f64();
    println!(
        "floor: the tree copied file by file on {} threads, no repository: {floor:.2} s, {:.2} of restic's restore",
        copy_threads(),
        floor / restic_restore
    );
    println!(
        "cairn: re-backup took {:.1}% of the first backup and added {} KiB",
        100.0 * med(&cairn_runs, |r| r.second).time.as_secs_f64()
            / med(&cairn_runs, |r| r.first).time.as_secs_f64(),
        c.second_added / 1024
    );
    Ok(())
}

struct Runs {
    first: Measured,
    second: Measured,
    restore: Measured,
    repo_bytes: u64,
    second_added: u64,
}

fn run_cairn(cairn: &Path, dir: &Path, data: &Path, timer: &Timer) -> Result<Runs> {
    let work = dir.join("cairn");
    std::fs::create_dir_all(&work)?;
    let config = work.join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n[[source]]\nname = \"data\"\nplugin = \"filesystem\"\n[source.options]\npath = \"{}\"\n",
            work.join("repo").display(),
            data.display()
        ),
    )?;
    let cmd = |args: &[&str]| {
        let mut c = Command::new(cairn);
        c.arg("--config")
            .arg(&config)
            .args(args)
            .env("CAIRN_PASSWORD", "bench")
            .env("CAIRN_CACHE_DIR", work.join("cache"));
        c
    };
    run_sequence(&work, &cmd, &["init"], &["backup"], timer)
}

fn run_restic(restic: &Path, dir: &Path, data: &Path, timer: &Timer) -> Result<Runs> {
    let work = dir.join("restic");
    std::fs::create_dir_all(&work)?;
    let cmd = |args: &[&str]| {
        let mut c = Command::new(restic);
        c.arg("--repo")
            .arg(work.join("repo"))
            .arg("--cache-dir")
            .arg(work.join("cache"))
            .args(["--quiet", "--no-lock"])
            .args(args)
            .env("RESTIC_PASSWORD", "bench");
        c
    };
    run_sequence(
        &work,
        &cmd,
        &["init", "--repository-version", "2"],
        &["backup", data.to_str().context("data path is not UTF-8")?],
        timer,
    )
}

/// The same sequence for every tool: init, back up, back up again unchanged, restore;
/// each timed command writes into recycled memory (see `Timer`).
fn run_sequence(
    work: &Path,
    cmd: &dyn Fn(&[&str]) -> Command,
    init: &[&str],
    backup: &[&str],
    timer: &Timer,
) -> Result<Runs> {
    measure(&mut cmd(init))?;
    let first = timer.time(&mut cmd(backup))?;
    let after_first = du(&work.join("repo"));
    let second = timer.time(&mut cmd(backup))?;
    let second_added = du(&work.join("repo")) - after_first;
    let target = work.join("restored");
    let restore = timer.time(&mut cmd(&[
        "restore",
        "latest",
        "--target",
        target.to_str().context("target path is not UTF-8")?,
    ]))?;
    Ok(Runs {
        first,
        second,
        restore,
        repo_bytes: after_first,
        second_added,
    })
}

/// Threads [`copy_tree`] writes with: one per core, as both tools' restores use every core.
fn copy_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The floor under any restore of the tree on this machine: its directories created and
/// its files copied from the page cache, on every core, with no repository to read or
/// decode. It is the kernel's share of a restore whatever the tool, and it says how far
/// below restic's a restore can go.
fn copy_tree(data: &Path, target: &Path) -> Result<Duration> {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    list_tree(data, Path::new(""), &mut dirs, &mut files)?;
    let started = Instant::now();
    std::fs::create_dir_all(target)?;
    for dir in &dirs {
        std::fs::create_dir(target.join(dir))?;
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..copy_threads())
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                        // In the kernel (copy_file_range): no memory of the benchmark's
                        // own, which the tools it starts afterwards would be charged for
                        // (a child's peak RSS starts at its parent's RSS).
                        std::fs::copy(data.join(file), target.join(file))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("a copying thread panicked"))?
        })
    })?;
    Ok(started.elapsed())
}

/// The directories (parents first) and files below `root`, relative to it.
fn list_tree(
    root: &Path,
    relative: &Path,
    dirs: &mut Vec<PathBuf>,
    files: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(relative))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            dirs.push(path.clone());
            list_tree(root, &path, dirs, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}
