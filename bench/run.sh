#!/usr/bin/env bash
# Runs the benchmarks: installs restic if missing, builds release binaries, prints ratios.
#   bench/run.sh            all benchmarks
#   BENCH_DIR=/fast/disk bench/run.sh   where the data sets go (default: the temp dir)
#   BENCH_RECYCLE_MIB=0 bench/run.sh    time without recycling memory first (bench/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
missing=()
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release -p cairn -p cairn-bench
target/release/plugin_boundary
target/release/backup_vs_restic
target/release/sqlite_vs_backup
target/release/s3_vs_restic
target/release/postgres_vs_pg_dump
target/release/items_rss
target/release/replicate_lag
BENCH_SINK=s3 target/release/replicate_lag
