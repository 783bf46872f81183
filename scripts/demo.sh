#!/usr/bin/env bash
# Scaffolds the demo chat app (SQLite) from this checkout into a directory
# outside it, builds it, and runs it.
#
#   scripts/demo.sh [DIR]      # default DIR: ~/eventstream-demo
#
# The app shares this checkout's target directory, so only the app itself
# and its few extra crates compile after the library has been built once.
# Re-running reuses an existing DIR.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$HOME/eventstream-demo}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
case "$dest/" in
    "$repo"/*) echo "demo: choose a directory outside the checkout (cargo would take it for a workspace member)" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
port=${ROCKET_PORT:-8000}

if [ ! -e "$dest/Cargo.toml" ]; then
    echo "demo: building the generator (the first build compiles the dependencies: a few minutes)"
    (cd "$repo" && cargo run -p eventstream-rocket-generator -- new eventstream-demo --destination "$dest" --lib-path "$repo")
    # Same dependency versions as the library build: nothing is rebuilt twice.
    cp "$repo/Cargo.lock" "$dest/Cargo.lock"
fi
cd "$dest"
echo "demo: building $dest"
# Cargo's own progress lines ("Compiling ...") show where the build is.
cargo build
echo "demo: serving http://127.0.0.1:$port  (Ctrl-C stops it)"
ROCKET_PORT=$port exec cargo run -q
