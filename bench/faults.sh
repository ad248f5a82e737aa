#!/usr/bin/env bash
# The long mode of the fault-injection tests: many seeds, many rounds each, over storage
# that fails as real storage does. First the repository layer's (crates/cairn-repo/src/
# faults.rs; the suite runs one seed of 80 rounds): SEEDS seeds of ROUNDS rounds. Then the
# binary's, with faults at the sink plugin's boundary (tests/tests/faults.rs; the suite
# runs one seed of 16 rounds): BIN_SEEDS seeds of BIN_ROUNDS rounds. Each seed's counts
# are printed; the first failure stops the run with the seed that replays it.
#   bench/faults.sh                 20 seeds of 1000 rounds, then 3 of 100
#   SEEDS=200 ROUNDS=300 BIN_SEEDS=10 BIN_ROUNDS=200 bench/faults.sh
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

bin_seeds=${BIN_SEEDS:-3}
bin_rounds=${BIN_ROUNDS:-100}
cargo build -p cairn
for _ in $(seq "$bin_seeds"); do
  seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
  CAIRN_FAULT_SEED=$seed CAIRN_FAULT_ROUNDS=$bin_rounds \
    cargo test -q -p cairn-e2e --test faults -- --nocapture 2>&1 |
    grep -E '^sink faults: seed [0-9]+: |panicked' || {
      echo "seed $seed failed: CAIRN_FAULT_SEED=$seed CAIRN_FAULT_ROUNDS=$bin_rounds cargo test -p cairn-e2e --test faults -- --nocapture" >&2
      exit 1
    }
done
