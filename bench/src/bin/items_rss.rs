//! Memory as the number of items grows: `cairn backup`, a second backup (with the first as
//! its parent), `restore`, `prune` and `check` of a source of N synthetic items (the bench
//! probe's `items` mode: three directories to each one-chunk stream), peak RSS and wall
//! time of each for each N, and the bytes of RSS each further item costs.
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
    // Each command reads the whole item list of a snapshot: the first backup writes it;
    // the second (with the first as parent), restore, prune and check read it back.
    const COMMANDS: [&str; 5] = ["backup", "backup again", "restore", "prune", "check"];
    println!(
        "{:>10}  {:<13} {:>10} {:>9}  {:>12}",
        "items", "command", "peak RSS", "time", "B/item more"
    );
    let mut first: Option<(u64, Vec<u64>)> = None;
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
        let target = dir.path().join("restored");
        let target = target.to_str().unwrap_or_default();
        let mut peaks = Vec::new();
        for command in COMMANDS {
            let args: Vec<&str> = match command {
                "backup" | "backup again" => vec!["backup"],
                "restore" => vec!["restore", "latest", "--target", target],
                "prune" => vec!["prune", "--grace", "0s"],
                _ => vec!["check"],
            };
            let measured = measure(&mut run(&args))?;
            peaks.push(measured.peak_rss_kib);
            let growth = match &first {
                Some((n0, base)) => format!(
                    "{:.0}",
                    (measured.peak_rss_kib.saturating_sub(base[peaks.len() - 1]) * 1024) as f64
                        / (count - n0) as f64
                ),
                None => String::new(),
            };
            println!(
                "{count:>10}  {command:<13} {:>6} MiB {:>8.1}s  {growth:>12}",
                measured.peak_rss_kib / 1024,
                measured.time.as_secs_f64(),
            );
        }
        println!(
            "{count:>10}  repository    {:>6} MiB",
            cairn_bench::du(&dir.path().join("repo")) >> 20
        );
        if first.is_none() {
            first = Some((count, peaks));
        }
        count *= 10;
    }
    Ok(())
}
