//! Memory as the number of items grows: `cairn backup` and `cairn restore` of a source of
//! N synthetic items (the bench probe's `items` mode: three directories to each one-chunk
//! stream), peak RSS and wall time for each N, and the bytes each further item costs.
//!
//! `items_rss [MAX]` runs N = 10k, 100k, 1M, ... up to MAX (default 1,000,000).

use std::process::Command;

use anyhow::Result;
use cairn_bench::measure;

fn main() -> Result<()> {
    let max: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let probe = cairn_e2e::build_wasm(
        &cairn_e2e::workspace_root().join("bench/probe"),
        "cairn-bench-probe",
    );
    let cairn = cairn_e2e::workspace_root().join("target/release/cairn");
    anyhow::ensure!(
        cairn.exists(),
        "{} not found: build it with `cargo build --release -p cairn`",
        cairn.display()
    );
    println!(
        "{:>10}  {:>10} {:>9}  {:>10} {:>9}  {:>9}",
        "items", "backup RSS", "time", "restore RSS", "time", "repo"
    );
    let mut first: Option<(u64, u64, u64)> = None;
    let mut count = 10_000;
    while count <= max {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("cairn.toml");
        std::fs::write(
            &config,
            format!(
                "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n[[source]]\nname = \"items\"\nplugin = \"{}\"\ntimeout = \"24h\"\n[source.options]\ndir = \"{}\"\nmode = \"items\"\ncount = {count}\n",
                dir.path().join("repo").display(),
                probe.display(),
                dir.path().display()
            ),
        )?;
        let run = |args: &[&str]| {
            let mut cmd = Command::new(&cairn);
            cmd.arg("--config")
                .arg(&config)
                .args(args)
                .env("CAIRN_PASSWORD", "bench")
                .env("CAIRN_CACHE_DIR", dir.path().join("cache"));
            cmd
        };
        measure(&mut run(&["init"]))?;
        let backup = measure(&mut run(&["backup"]))?;
        let target = dir.path().join("restored");
        let restore = measure(&mut run(&[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap_or_default(),
        ]))?;
        println!(
            "{count:>10}  {:>7} MiB {:>8.1}s  {:>7} MiB {:>8.1}s  {:>5} MiB",
            backup.peak_rss_kib / 1024,
            backup.time.as_secs_f64(),
            restore.peak_rss_kib / 1024,
            restore.time.as_secs_f64(),
            cairn_bench::du(&dir.path().join("repo")) >> 20
        );
        match first {
            None => first = Some((count, backup.peak_rss_kib, restore.peak_rss_kib)),
            Some((n0, b0, r0)) => {
                let per = |kib: u64, kib0: u64| {
                    (kib.saturating_sub(kib0) * 1024) as f64 / (count - n0) as f64
                };
                println!(
                    "{:>10}  {:>7.0} B/item {:>11.0} B/item  (growth since {n0} items)",
                    "",
                    per(backup.peak_rss_kib, b0),
                    per(restore.peak_rss_kib, r0)
                );
            }
        }
        count *= 10;
    }
    Ok(())
}
