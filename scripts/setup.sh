#!/usr/bin/env bash
# Installs what building and testing cairn needs, idempotently: the Rust target plugins
# compile to, and the system packages the tests use. Safe to run again and again.
#   scripts/setup.sh           everything the test suite needs
#   scripts/setup.sh --build   only what building cairn needs
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi

# rust-toolchain.toml pins the toolchain and lists the wasm32-wasip2 target; rustup installs
# both on first use, but say so explicitly for machines where that is disabled.
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup target list --installed --toolchain "$toolchain" 2>/dev/null | grep -qx wasm32-wasip2; then
  say "installing the wasm32-wasip2 target for Rust $toolchain"
  rustup target add wasm32-wasip2 --toolchain "$toolchain"
fi

[ "${1:-}" = "--build" ] && exit 0

# The S3-compatible server the object-storage tests start on 127.0.0.1. 0.14.1 is the last
# release that builds with our pinned Rust.
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
  say "installing s3s-fs 0.14.1 (the S3 test server; a few minutes, once)"
  cargo install --locked --quiet s3s-fs@0.14.1 --features binary
fi

# Debian packages the tests use, installed only when missing: PostgreSQL 15's server
# binaries (the postgres tests start their own clusters with initdb and pg_ctl, found
# with `pg_config --bindir`) and its client tools (psql, pg_dump, pgbench); faketime.
apt_packages=()
pg_bindir=$(pg_config --bindir 2>/dev/null || true)
if [ -z "$pg_bindir" ] || [ ! -x "$pg_bindir/initdb" ] || [ ! -x "$pg_bindir/pgbench" ]; then
  apt_packages+=(postgresql-15 postgresql-client-15 libpq-dev)
fi
# libfaketime: the clock-skew tests run cairn as a host whose clock is days off.
if ! command -v faketime >/dev/null 2>&1; then
  apt_packages+=(faketime)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "missing packages ${apt_packages[*]}: install them, or run this as root" >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  say "installing ${apt_packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

# PostgreSQL's server headers, for the test-only security label provider
# (tests/fixtures/label_provider.c) the postgres tests build with cc. Only the headers
# are needed, so the package is unpacked into a cache, not installed: installing it
# would pull in clang and LLVM. tests/src/postgres.rs looks in the same place.
pg_headers="${XDG_CACHE_HOME:-$HOME/.cache}/cairn/postgresql-server-dev-15"
if [ ! -f "$(pg_config --includedir-server)/postgres.h" ] && [ ! -f "$pg_headers/usr/include/postgresql/15/server/postgres.h" ]; then
  say "fetching PostgreSQL 15's server headers into $pg_headers"
  download=$(mktemp -d)
  chmod 777 "$download"
  if ! (cd "$download" && apt-get download -qq postgresql-server-dev-15 2>/dev/null); then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    (cd "$download" && apt-get download -qq postgresql-server-dev-15)
  fi
  mkdir -p "$pg_headers"
  dpkg-deb -x "$download"/postgresql-server-dev-15_*.deb "$pg_headers"
  rm -rf "$download"
fi
if ! command -v cc >/dev/null 2>&1; then
  echo "no C compiler (cc): install gcc, which Rust's linker needs too" >&2
  exit 1
fi
