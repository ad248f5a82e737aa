#!/usr/bin/env bash
# The long mode of the fault-injection test: many seeds, many rounds each, over storage
# that fails as real storage does (crates/cairn-repo/src/faults.rs). The test suite runs
# one seed of 80 rounds; this runs SEEDS seeds of ROUNDS rounds and prints each seed's
# counts, stopping at the first failure with the seed that replays it.
#   bench/faults.sh                 20 seeds of 1000 rounds
#   SEEDS=200 ROUNDS=300 bench/faults.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${SEEDS:-20}
rounds=${ROUNDS:-1000}
cargo test --release -p cairn-repo --lib --no-run
for _ in $(seq "$seeds"); do
  seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
  CAIRN_FAULT_SEED=$seed CAIRN_FAULT_ROUNDS=$rounds \
    cargo test --release -q -p cairn-repo --lib under_injected_storage_faults -- --nocapture 2>&1 |
    grep -E '^fault injection: seed [0-9]+:|panicked|seed [0-9]+: ' || {
      echo "seed $seed failed: CAIRN_FAULT_SEED=$seed CAIRN_FAULT_ROUNDS=$rounds cargo test -p cairn-repo --lib under_injected_storage_faults -- --nocapture" >&2
      exit 1
    }
done
