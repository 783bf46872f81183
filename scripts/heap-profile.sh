#!/usr/bin/env bash
# What one idle stream holds, by who allocated it: runs the release example
# server under heaptrack (Debian: apt-get install -y heaptrack), opens N
# idle streams with the load generator, and prints the peak heap by
# allocation site, divided by N (the table in BENCHMARKS.md, "Memory per
# idle connection").
#
#   scripts/heap-profile.sh [N]          # N idle streams, 2000 by default
#
# Allocated bytes, not RSS: pages of a buffer never written are counted
# here but are not resident.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
n=${1:-2000}
command -v heaptrack >/dev/null || { echo "heap-profile: heaptrack is missing (apt-get install -y heaptrack)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
cargo build -q --release -p eventstream-rocket --features redis --example server
cargo build -q --release -p eventstream-bench --bin eventstream-bench
server="$CARGO_TARGET_DIR/release/examples/server"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
key="heap-profile-key-0123456789"
port=$(( (RANDOM % 12000) + 20000 ))
ROCKET_PORT=$port ROCKET_ADDRESS=127.0.0.1 ROCKET_LOG_LEVEL=off \
ROCKET_DATABASES="{eventstream={url=\"sqlite://$work/events.db\"}}" \
ROCKET_EVENTSTREAM="{publish_key=\"$key\"}" \
    heaptrack -o "$work/heap" "$server" > "$work/heaptrack.log" 2>&1 &
for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done
pid=$(pgrep -n -f "^$server" || true)
[ -n "$pid" ] || { cat "$work/heaptrack.log" >&2; exit 1; }
"$CARGO_TARGET_DIR/release/eventstream-bench" memory --url "http://127.0.0.1:$port" \
    --channel idle --subscribers "$n" --server-pid "$pid" --publish-key "$key"
kill -TERM "$pid"
wait
heaptrack_print -f "$work"/heap.*zst --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    --print-leaks 0 --flamegraph-cost-type peak -F "$work/stacks" >/dev/null
python3 - "$work/stacks" "$n" <<'PY'
import collections, re, sys
path, n = sys.argv[1], int(sys.argv[2])
held = collections.Counter()
for line in open(path):
    line = line.rstrip("\n")
    if not line:
        continue
    stack, cost = line.rsplit(" ", 1)
    frames = stack.split(";")
    if "poll_read_from_io" in stack:
        who = "hyper: the connection's read buffer"
    elif "eventstream_rocket" in stack:
        inner = [f for f in frames if "eventstream_rocket" in f][-1]
        found = re.search(r"eventstream_rocket(?:\.\.|::)([a-z_]+)(?:\.\.|::)?([A-Za-z_]*)", inner)
        who = "ours: " + (found.group(1) + ("::" + found.group(2) if found.group(2) else "") if found else inner[:60])
    elif "HeaderMap" in stack and "send_response" in stack:
        who = "rocket: response headers"
    elif "rocket" in stack:
        who = "rocket: other"
    elif "hyper" in stack:
        who = "hyper: other"
    elif "tokio" in stack:
        who = "tokio: tasks and the rest"
    else:
        who = "other"
    held[who] += int(cost)
print(f"peak heap per idle stream ({n} streams), by who allocated it:")
for who, cost in held.most_common():
    if cost / n >= 1:
        print(f"{cost / n:10.0f} B  {who}")
print(f"{sum(held.values()) / n:10.0f} B  in all (startup included)")
PY
