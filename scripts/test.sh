#!/usr/bin/env bash
# The whole test suite, on a fresh machine too. Starts (installing when
# needed) what the tests use, then runs:
#   1. every Rust test of the workspace: the library on SQLite and
#      PostgreSQL, the generator and its parity with cargo-generate, the
#      load generator;
#   2. demo apps generated from this checkout into a directory outside it
#      (SQLite and PostgreSQL), built with the shared target directory:
#      their own tests;
#   3. the JavaScript clients in Chromium, and the demo app end to end.
# Prints a closing "tests: N passed, N failed" line.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# shellcheck source=scripts/services.sh
source scripts/services.sh
ensure_services

# Tests that need a service fail instead of skipping when CI is set.
export CI="${CI:-true}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
work=$(mktemp -d)
log_file="$work/test.log"
trap 'rm -rf "$work"' EXIT
status=0
run() {
    echo "::: $*" | tee -a "$log_file"
    local code=0
    # `|| code=...` keeps set -e from ending the script at the first failure.
    "$@" 2>&1 | tee -a "$log_file" || code=${PIPESTATUS[0]}
    if [ "$code" -ne 0 ]; then
        echo "::: failed ($code): $*" | tee -a "$log_file"
        status=1
    fi
    return 0
}

# 1. The workspace (also builds the example server the JS tests use), with
# the Redis bus compiled in; and the library's unit tests without it (the
# refusal of broadcast = "redis" in a build that lacks the feature).
run cargo test --workspace --locked --features eventstream-rocket/redis,eventstream-rocket/internals
run cargo test -p eventstream-rocket --lib --locked

# 2. A generated demo app, outside the checkout, sharing the target dir.
demo="$work/demo-app"
run "$CARGO_TARGET_DIR/debug/eventstream-rocket" new demo-app --destination "$demo" --lib-path "$repo"
cp Cargo.lock "$demo/Cargo.lock"
run bash -c "cd '$demo' && cargo test && cargo build"

# The PostgreSQL variant too, on a database of its own.
demo_pg="$work/demo-pg"
run "$CARGO_TARGET_DIR/debug/eventstream-rocket" new demo-pg --database postgres --destination "$demo_pg" --lib-path "$repo"
cp Cargo.lock "$demo_pg/Cargo.lock"
admin="postgres://postgres@127.0.0.1:5432/postgres"
psql "$admin" -qc 'DROP DATABASE IF EXISTS eventstream_demo_test WITH (FORCE)' >/dev/null
psql "$admin" -qc 'CREATE DATABASE eventstream_demo_test' >/dev/null
run env TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/eventstream_demo_test" bash -c "cd '$demo_pg' && cargo test"

# 3. Browser tests.
if [ ! -d js/node_modules ] || [ js/package-lock.json -nt js/node_modules/.package-lock.json ]; then
    run bash -c "cd js && npm ci --no-audit --no-fund"
fi
export EVENTSTREAM_SERVER_BIN="$CARGO_TARGET_DIR/debug/examples/server"
run bash -c "cd js && npm test"
run env DEMO_APP_DIR="$demo" DEMO_APP_BIN="$CARGO_TARGET_DIR/debug/demo-app" \
    bash -c "cd js && node --test --test-concurrency=1 e2e/*.test.mjs"

awk '
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) passed += $i
            if ($(i + 1) ~ /^failed/) failed += $i
        }
    }
    /^# pass [0-9]+$/ { passed += $3 }
    /^# fail [0-9]+$/ { failed += $3 }
    END { printf "tests: %d passed, %d failed\n", passed, failed }
' "$log_file"
exit "$status"
