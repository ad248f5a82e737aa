#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds cairn and its
# plugins once (one target directory), runs every test, then formatting and lint checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Builds the binary the end-to-end tests run (and the embedded plugins, via build.rs).
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
# The built-in plugins' own unit tests, natively, one package at a time (a source and a
# sink enable different features of cairn-sdk, which one invocation would unify).
(cd plugins && for p in cairn-source-filesystem cairn-source-sqlite cairn-source-postgres cairn-sink-local cairn-sink-s3; do
  cargo test -p "$p" --target-dir ../target/plugins-native
done)

cargo fmt --all -- --check
for ws in plugins tests/plugins examples/sink-flat-dir bench/probe; do (cd "$ws" && cargo fmt --all -- --check); done
cargo clippy --workspace --all-targets -- -D warnings
# Guest code compiles for wasm32 in its own workspaces: lint it there.
(cd plugins && for p in cairn-source-filesystem cairn-source-sqlite cairn-source-postgres cairn-sink-local cairn-sink-s3; do
  cargo clippy --release --target wasm32-wasip2 -p "$p" --target-dir ../target/wasm -- -D warnings
done)
(cd tests/plugins && cargo clippy --release --target wasm32-wasip2 --target-dir ../../target/wasm -- -D warnings)
echo "all tests and checks passed"
