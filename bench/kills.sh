#!/usr/bin/env bash
# The long mode of the kill tests (tests/tests/crash.rs; the suite runs one seed of 12
# rounds): SEEDS seeds of ROUNDS rounds of restores, forgets and prunes SIGKILLed at
# random moments, each followed by `check --read-data` and restores of what retention
# kept; then the backup and replication kill tests REPEAT times each. Each seed's counts
# are printed; the first failure stops the run with the seed that replays it.
#   bench/kills.sh                  5 seeds of 60 rounds (about 300 kills), then 3 repeats
#   SEEDS=20 ROUNDS=100 REPEAT=10 bench/kills.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${SEEDS:-5}
rounds=${ROUNDS:-60}
repeat=${REPEAT:-3}
cargo build -p cairn
for _ in $(seq "$seeds"); do
  seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
  CAIRN_KILL_SEED=$seed CAIRN_KILL_ROUNDS=$rounds \
    cargo test -q -p cairn-e2e --test crash restores_forgets_and_prunes_killed -- --nocapture 2>&1 |
    grep -E '^kills: seed [0-9]+: |panicked' || {
      echo "seed $seed failed: CAIRN_KILL_SEED=$seed CAIRN_KILL_ROUNDS=$rounds cargo test -p cairn-e2e --test crash restores_forgets_and_prunes_killed -- --nocapture" >&2
      exit 1
    }
done
for _ in $(seq "$repeat"); do
  cargo test -q -p cairn-e2e --test crash backups_killed_at_random_moments
  cargo test -q -p cairn-e2e --test replicate replication_killed_at_random_moments
done
