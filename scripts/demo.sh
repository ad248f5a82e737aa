#!/usr/bin/env bash
# A real backup and restore on a local repository, from a fresh machine: builds cairn,
# backs up a sample directory, changes it, backs up again, restores, and checks that the
# restored copy is identical and the repository is sound.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh --build
cargo build --release -p cairn
cairn="$root/target/release/cairn"

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-demo.XXXXXX")
echo "==> working in $work"
cp examples/quickstart.toml "$work/cairn.toml"
mkdir -p "$work/uploads/2026/11" "$work/uploads/empty-album"
for i in $(seq 1 200); do head -c $((RANDOM * 8)) /dev/urandom > "$work/uploads/2026/11/photo-$i.jpg"; done
printf 'hello\n' > "$work/uploads/README with spaces.txt"
ln -s "2026/11/photo-1.jpg" "$work/uploads/latest.jpg"

cd "$work"
export CAIRN_PASSWORD="demo password: use a real one"
export CAIRN_CACHE_DIR="$work/cache"
set -x
"$cairn" init
"$cairn" backup --tag demo
echo "a new upload" > uploads/2026/11/new.txt
"$cairn" backup
"$cairn" snapshots
"$cairn" restore latest --target restored
diff -r uploads restored/uploads
"$cairn" check --read-data
{ set +x; } 2>/dev/null
echo "==> restored copy is identical; repository checked. Files are in $work"
