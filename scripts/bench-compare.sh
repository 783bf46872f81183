#!/usr/bin/env bash
# Before/after benchmark comparison: runs scripts/bench.sh ROUNDS times
# against each of two builds of the example server, interleaved
# (before, after, before, after, ...), so that drift on a noisy machine hits
# both alike. Prints, per scenario and metric, the median of each side, the
# before-runs' range, and whether the change regressed: more than 10 % worse
# AND outside the before-runs' range.
#
#   # the "before" server, built from another commit in a worktree:
#   git worktree add /tmp/before <commit>
#   (cd /tmp/before && cargo build --release --example server)
#   scripts/bench-compare.sh /tmp/before/target/release/examples/server [ROUNDS [AFTER_SERVER]]
#
# The "after" server is this checkout's (built once, here, before the
# rounds start) unless AFTER_SERVER names another binary; edits made while
# it runs do not reach it. Takes about ROUNDS x 2 x 5-10 minutes. Results
# stay in $CARGO_TARGET_DIR/bench-compare.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
before_server=${1:?usage: scripts/bench-compare.sh BEFORE_SERVER_BINARY [ROUNDS]}
rounds=${2:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
out="$CARGO_TARGET_DIR/bench-compare"
mkdir -p "$out"
charts=$(mktemp -d)
trap 'rm -rf "$charts"' EXIT
after_server=${3:-}
if [ -z "$after_server" ]; then
    cargo build -q --release -p eventstream-rocket --example server
    after_server="$out/after-server"
    cp "$CARGO_TARGET_DIR/release/examples/server" "$after_server"
fi

for round in $(seq 1 "$rounds"); do
    for side in before after; do
        echo "::: round $round, $side" >&2
        if [ "$side" = before ]; then server=$before_server; else server=$after_server; fi
        EVENTSTREAM_BENCH_SERVER="$server" EVENTSTREAM_BENCH_CHARTS="$charts" scripts/bench.sh >&2
        cp "$CARGO_TARGET_DIR/bench/results.jsonl" "$out/$side-$round.jsonl"
    done
done

python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])

# scenario -> (what identifies a run, [(metric path, higher is better)])
METRICS = {
    "fanout": (("label", "subscribers"), [("frames_per_sec", True)]),
    "latency": (("label", "subscribers", "rate"), [("latency.p50_ms", False), ("latency.p99_ms", False)]),
    "publish": (("label",), [("events_per_sec", True)]),
    "replay": (("label",), [("replay.p50_ms", False), ("replay.p99_ms", False)]),
    "storm": (("label", "clients"), [("all_resumed_seconds", False)]),
    "memory": (("label", "subscribers"), [("server_bytes_per_connection", False)]),
}

def get(result, path):
    for part in path.split("."):
        result = result.get(part) if isinstance(result, dict) else None
    return result

values, faults = {}, []
for side in ("before", "after"):
    for round_ in range(1, rounds + 1):
        with open(f"{out}/{side}-{round_}.jsonl") as handle:
            for line in handle:
                result = json.loads(line)
                scenario = result.get("scenario")
                if scenario not in METRICS:
                    continue
                keys, metrics = METRICS[scenario]
                name = scenario + " " + " ".join(f"{k}={result.get(k)}" for k in keys if k in result)
                for field in ("lost", "duplicated", "failed", "failed_connections"):
                    if result.get(field):
                        faults.append(f"{side} round {round_}: {name}: {field} = {result[field]}")
                for path, higher in metrics:
                    value = get(result, path)
                    if isinstance(value, (int, float)):
                        values.setdefault((name, path, higher), {}).setdefault(side, []).append(value)

regressions = 0
print(f"{'scenario':70} {'metric':28} {'before median [range]':>30} {'after median':>14}  verdict")
for (name, path, higher), sides in values.items():
    before, after = sides.get("before", []), sides.get("after", [])
    if not before or not after:
        continue
    b, a = statistics.median(before), statistics.median(after)
    worse = (a < b * 0.9) if higher else (a > b * 1.1)
    outside = (a < min(before)) if higher else (a > max(before))
    verdict = "REGRESSION" if worse and outside else ("better" if ((a > b) if higher else (a < b)) else "same")
    regressions += verdict == "REGRESSION"
    change = (a - b) / b * 100 if b else 0.0
    print(f"{name[:70]:70} {path:28} {b:>12.4g} [{min(before):.4g}, {max(before):.4g}] {a:>14.4g}  {verdict} ({change:+.1f} %)")
for fault in faults:
    print("fault:", fault)
print(f"bench-compare: {rounds} interleaved rounds; {regressions} regression(s); {len(faults)} run(s) with lost/duplicated/failed")
PY
