//! cairn's `s3` sink against restic's s3 backend, both writing to the same local
//! S3-compatible server (s3s-fs on 127.0.0.1), on the same mixed tree, in one run: first
//! backup and restore, wall time and peak RSS, with cairn/restic ratios.
//!
//!     cargo build --release -p cairn -p cairn-bench
//!     target/release/s3_vs_restic [SMALL_FILES LARGE_FILES LARGE_MIB]
//!
//! Defaults: about 1 GiB (16,000 files of 1-64 KiB plus 4 of 128 MiB). Every timed
//! command follows `$BENCH_RECYCLE_MIB` (default 2048) MiB written and deleted (see
//! `Timer`). Needs restic and s3s-fs (bench/run.sh and scripts/setup.sh install them).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use cairn_bench::{
    Measured, Timer, cairn_exe, du, measure, mixed_tree, print_vs_restic, tree_args, warm, which,
};
use cairn_e2e::s3::{ACCESS_KEY, S3Server, SECRET_KEY};

fn main() -> Result<()> {
    let (small, large, large_mib) = tree_args("s3_vs_restic")?;
    let cairn = cairn_exe()?;
    let restic = which("restic").context("restic not found (bench/run.sh installs it)")?;
    let dir = tempfile::tempdir_in(
        std::env::var_os("BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )?;
    let data = dir.path().join("data");
    let bytes = mixed_tree(&data, small, large, large_mib)?;
    warm(&data)?;
    let server = S3Server::start("cairn");
    std::fs::create_dir(server.bucket_dir("restic"))?;
    println!(
        "# {} files, {:.0} MiB, to s3s-fs on 127.0.0.1",
        small + large,
        bytes as f64 / (1 << 20) as f64
    );
    let timer = Timer::from_env(dir.path())?;
    println!("{}", timer.describe());

    let work = dir.path().join("cairn");
    std::fs::create_dir_all(&work)?;
    let config = work.join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "{}[[source]]\nname = \"data\"\nplugin = \"filesystem\"\n[source.options]\npath = \"{}\"\n",
            server.repository_config("cairn", ""),
            data.display()
        ),
    )?;
    let cairn_cmd = |args: &[&str]| {
        let mut c = Command::new(&cairn);
        c.arg("--config")
            .arg(&config)
            .args(args)
            .env("CAIRN_PASSWORD", "bench")
            .env("CAIRN_CACHE_DIR", work.join("cache"))
            .envs(S3Server::credentials());
        c
    };
    let restic_work = dir.path().join("restic");
    let restic_cmd = |args: &[&str]| {
        let mut c = Command::new(&restic);
        c.arg("--repo")
            .arg(format!("s3:{}/restic", server.endpoint()))
            .arg("--cache-dir")
            .arg(restic_work.join("cache"))
            .args(["--quiet", "--no-lock"])
            .args(args)
            .env("RESTIC_PASSWORD", "bench")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        c
    };
    let data_arg = data.to_str().context("data path is not UTF-8")?;
    let c = sequence(&cairn_cmd, &["init"], &["backup"], &work, &timer)?;
    let r = sequence(
        &restic_cmd,
        &["init", "--repository-version", "2"],
        &["backup", data_arg],
        &restic_work,
        &timer,
    )?;
    print_vs_restic(&[("first backup", c.0, r.0), ("restore", c.1, r.1)]);
    let (cb, rb) = (
        du(&server.bucket_dir("cairn")),
        du(&server.bucket_dir("restic")),
    );
    println!(
        "{:<22} {:>10} {:>10} {:>8.2}",
        "bucket MiB",
        cb >> 20,
        rb >> 20,
        cb as f64 / rb as f64
    );
    Ok(())
}

/// init, first backup, restore (into `work/restored`).
fn sequence(
    cmd: &dyn Fn(&[&str]) -> Command,
    init: &[&str],
    backup: &[&str],
    work: &Path,
    timer: &Timer,
) -> Result<(Measured, Measured)> {
    std::fs::create_dir_all(work)?;
    measure(&mut cmd(init))?;
    let first = timer.time(&mut cmd(backup))?;
    let target = work.join("restored");
    let restore = timer.time(&mut cmd(&[
        "restore",
        "latest",
        "--target",
        target.to_str().context("target path is not UTF-8")?,
    ]))?;
    Ok((first, restore))
}
