#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds (and lints)
# cairn and its plugins once (one target directory), runs every test, then checks
# formatting and lints the guest code for wasm32.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Lint while building, as `cargo clippy` arranges it: clippy-driver compiles and lints the
# workspaces' own crates, dependencies compile with plain rustc. A separate
# `cargo clippy` would check every dependency again, wasmtime's included: 7 of a cold
# run's 38 minutes. CLIPPY_ARGS is how cargo-clippy hands `-- -D warnings` to the driver.
export RUSTC_WORKSPACE_WRAPPER
RUSTC_WORKSPACE_WRAPPER=$(rustup which clippy-driver)
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# Builds the binary the end-to-end tests run (and the embedded plugins, via build.rs).
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
# The SDK's error helpers and exports compile only for a plugin kind: test them as one.
cargo test -p cairn-sdk --features source --lib
# The built-in plugins' own unit tests, natively, one package at a time (a source and a
# sink enable different features of cairn-sdk, which one invocation would unify).
(cd plugins && for p in cairn-source-filesystem cairn-source-sqlite cairn-source-postgres cairn-sink-local cairn-sink-s3; do
  cargo test -p "$p" --target-dir ../target/plugins-native
done)

cargo fmt --all -- --check
for ws in plugins tests/plugins examples/sink-flat-dir bench/probe; do (cd "$ws" && cargo fmt --all -- --check); done
# Guest code compiles for wasm32 in its own workspaces (host/build.rs builds it without
# the wrapper): lint it there.
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
(cd plugins && for p in cairn-source-filesystem cairn-source-sqlite cairn-source-postgres cairn-sink-local cairn-sink-s3; do
  cargo clippy --release --target wasm32-wasip2 -p "$p" --target-dir ../target/wasm -- -D warnings
done)
(cd tests/plugins && cargo clippy --release --target wasm32-wasip2 --target-dir ../../target/wasm -- -D warnings)
echo "all tests and checks passed"
