#!/usr/bin/env bash
# Runs the benchmark scenarios of BENCHMARKS.md against the example server
# and writes the results (one JSON object per line) and the charts.
#
#   scripts/bench.sh            # everything, release build (about 10 minutes)
#   scripts/bench.sh --quick    # a smoke run: dev build, tiny counts, seconds,
#                               # no thresholds (what .ci/run runs)
#   EVENTSTREAM_BENCH_SECTION=broadcast scripts/bench.sh
#                               # one section: core, publish, broadcast, grip, presence, controls, floor, memory
#   EVENTSTREAM_BENCH_SECTION=scale scripts/bench.sh
#                               # as many streams as the machine allows (up to
#                               # 100,000): idle memory, broadcast with both
#                               # controls, reconnect storm; not part of "all"
#   scripts/bench.sh --compare  # side by side with django-eventstream (needs
#                               # PyPI): writes the table and chart into
#                               # BENCHMARKS.md; not part of .ci/run
#   scripts/bench.sh --regress BEFORE_SERVER
#                               # no-regression check: fan-out, replay, storm
#                               # and durable publish (SQLite and PostgreSQL,
#                               # power) against a server built from an older
#                               # commit and this checkout's, three interleaved
#                               # rounds; prints the medians and whether any
#                               # is a regression (>10 % worse and outside the
#                               # before-runs' range)
#
# Before/after comparisons run the same script and load generator against
# another build of the example server (e.g. one built from an older commit
# in a worktree), and keep the committed charts untouched:
#
#   EVENTSTREAM_BENCH_SERVER=/tmp/before/server EVENTSTREAM_BENCH_CHARTS=/tmp/charts \
#       scripts/bench.sh
#
# Everything runs on this machine over loopback: the server, PostgreSQL,
# Pushpin and the load generator share its cores.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
quick=false
compare=false
regress_from=""
[ "${1:-}" = "--quick" ] && quick=true
[ "${1:-}" = "--compare" ] && compare=true
if [ "${1:-}" = "--regress" ]; then
    regress_from=${2:?--regress needs the before server binary}
    [ -x "$regress_from" ] || { echo "bench: $regress_from is not an executable" >&2; exit 1; }
fi
section="${EVENTSTREAM_BENCH_SECTION:-all}"
$compare && section=compare
[ -n "$regress_from" ] && section=regress
want() { [ "$section" = all ] || [ "$section" = "$1" ]; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"

if $quick; then
    profile_flag=""; bin_dir="$CARGO_TARGET_DIR/debug"; out="$CARGO_TARGET_DIR/bench-quick"
else
    profile_flag="--release"; bin_dir="$CARGO_TARGET_DIR/release"; out="$CARGO_TARGET_DIR/bench"
fi
# A server given from elsewhere is not rebuilt (nor is this checkout's,
# which may be mid-edit).
if [ -z "${EVENTSTREAM_BENCH_SERVER:-}" ]; then
    cargo build -q $profile_flag -p eventstream-rocket --features redis --example server
fi
cargo build -q $profile_flag -p eventstream-bench --bin eventstream-bench --example control_raw --example control_rocket --example control_grip
bench="$bin_dir/eventstream-bench"
server_bin="${EVENTSTREAM_BENCH_SERVER:-$bin_dir/examples/server}"
charts="${EVENTSTREAM_BENCH_CHARTS:-$repo/docs/bench}"
rm -rf "$out"; mkdir -p "$out"
results="$out/results.jsonl"
key="bench-publish-key-0123456789"
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/pushpin/pushpin.pid" ] && bash tests/support/pushpin-harness.sh stop "$work/pushpin" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# A port nothing listens on, below Linux's ephemeral range (32768 up), where
# outgoing connections would make bind() fail although nothing listens.
free_port() {
    local port
    while :; do
        port=$(( (RANDOM % 12000) + 20000 ))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

# wait_port PORT [LOG]: waits until PORT accepts connections.
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench: nothing listens on port $1" >&2
    if [ -n "${2:-}" ]; then cat "$2" >&2; fi
    return 1
}

# start_server NAME DATABASE_URL DURABILITY [EXTRA eventstream settings]
# Sets $port and $pid. Retries on another port if the chosen one was taken
# between choosing and binding.
start_server() {
    local extra=${4:+,$4}
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        ROCKET_PORT=$port ROCKET_ADDRESS=127.0.0.1 ROCKET_LOG_LEVEL=off \
        ROCKET_DATABASES="{eventstream={url=\"$2\",max_connections=16}}" \
        ROCKET_EVENTSTREAM="{publish_key=\"$key\",durability=\"$3\"$extra}" \
            "$server_bin" > "$work/$1.log" 2>&1 &
        pid=$!
        pids+=("$pid")
        wait_port "$port" && return 0
        kill "$pid" 2>/dev/null || true
    done
    cat "$work/$1.log" >&2
    return 1
}

# start_control rocket|raw: a control server on a free port
# (bench/examples/control_rocket: a minimal Rocket ByteStream;
# control_raw: a raw tokio writer). Sets $port and $pid.
start_control() {
    port=$(free_port)
    case $1 in
        rocket) ROCKET_PORT=$port ROCKET_ADDRESS=127.0.0.1 ROCKET_LOG_LEVEL=off \
            "$bin_dir/examples/control_rocket" > "$work/control_rocket.log" 2>&1 & ;;
        raw) "$bin_dir/examples/control_raw" "127.0.0.1:$port" > "$work/control_raw.log" 2>&1 & ;;
    esac
    pid=$!; pids+=("$pid"); wait_port "$port" "$work/control_$1.log"
}

# start_control_grip MODE: the control GRIP origin (bench/examples/control_grip,
# MODE plain or filters) on a free port, publishing to $control. Sets
# $origin and $pid.
start_control_grip() {
    origin=$(free_port)
    "$bin_dir/examples/control_grip" "127.0.0.1:$origin" "$control/publish/" "$1" > "$work/control_grip.log" 2>&1 &
    pid=$!; pids+=("$pid"); wait_port "$origin" "$work/control_grip.log"
}

run() {
    echo "::: bench $*" >&2
    "$bench" "$@" --publish-key "$key" --out "$results"
}

postgres_up() {
    psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1
}
# fresh_database NAME: an empty PostgreSQL database.
fresh_database() {
    psql "postgres://postgres@127.0.0.1:5432/postgres" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
    psql "postgres://postgres@127.0.0.1:5432/postgres" -qc "CREATE DATABASE $1" >/dev/null
}

# pick_pushpin_ports: sets $http_port, $offset and $control (Pushpin binds
# its client port and four control ports, 5560..5563 + offset).
pick_pushpin_ports() {
    while :; do
        http_port=$(free_port)
        offset=$(( $(free_port) - 5560 ))
        local busy=false
        for p in 5560 5561 5562 5563; do
            (exec 3<>"/dev/tcp/127.0.0.1/$((p + offset))") 2>/dev/null && busy=true
        done
        $busy || break
    done
    control="http://127.0.0.1:$((5561 + offset))"
}

# start_pushpin ORIGIN_PORT [STREAM_PATH]: Pushpin on the picked ports, in
# front of it; returns once a stream (STREAM_PATH, /events/ready by
# default) is held.
start_pushpin() {
    rm -rf "$work/pushpin"
    PUSHPIN_MESSAGE_RATE=0 PUSHPIN_MESSAGE_HWM=1000000 PUSHPIN_MAXCONN=20000 PUSHPIN_LOG_LEVEL=1 \
        bash tests/support/pushpin-harness.sh start "$work/pushpin" "$http_port" "$offset" "127.0.0.1:$1" >/dev/null
    # Pushpin answers before it can hold streams ("Accept service unavailable").
    for _ in $(seq 1 100); do
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$http_port${2:-/events/ready}" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    echo "bench: Pushpin never held a stream" >&2
    return 1
}

# Side by side with django-eventstream 5.3.4 (bench/django: its README's
# setup, SQLite storage, uvicorn), the same load generator against both in
# one run, each server at its own best: django-eventstream answers 500
# under concurrent publishers on SQLite ("database is locked"), so it gets
# one publish request at a time and 100 subscribers (its fan-out falls off
# past that); ours gets 64 in flight and 1,000 subscribers. Latency (one
# publish request at a time for both) and idle memory use the same load. Three rounds, interleaved; the report
# takes the medians.
if $compare; then
    command -v python3 >/dev/null || { echo "bench: --compare needs python3" >&2; exit 1; }
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q -r bench/django/requirements.txt
    django_db="$work/django.sqlite3"
    django_env=(env BENCH_DJANGO_DB="$django_db" BENCH_PUBLISH_KEY="$key" PYTHONPATH="$repo/bench/django"
        DJANGO_SETTINGS_MODULE=benchsite.settings)
    "${django_env[@]}" "$work/venv/bin/django-admin" migrate -v 0
    compared="$out/compare.jsonl"
    # start_django [NAME=VALUE...]: django-eventstream under uvicorn, with
    # these settings in its environment too.
    start_django() {
        port=$(free_port)
        (cd bench/django && exec "${django_env[@]}" "$@" "$work/venv/bin/uvicorn" benchsite.asgi:application \
            --host 127.0.0.1 --port "$port" --log-level warning) > "$work/django.log" 2>&1 &
        pid=$!; pids+=("$pid")
        wait_port "$port" "$work/django.log"
    }
    on() { "$bench" "$@" --publish-key "$key" --out "$compared"; }
    for round in 1 2 3; do
        echo "::: compare, round $round" >&2
        start_server "compare-$round" "sqlite://$work/compare-$round.db" process "keepalive_secs=20"
        url="http://127.0.0.1:$port"
        on fanout --url "$url" --channel fan --subscribers 1000 --events 2000 --in-flight 64 --label eventstream-rocket
        on latency --url "$url" --channel lat --subscribers 100 --rate 20 --seconds 10 --in-flight 1 --label eventstream-rocket
        on memory --url "$url" --channel idle --subscribers 1000 --server-pid "$pid" --label eventstream-rocket
        kill "$pid"
        start_django
        url="http://127.0.0.1:$port"
        peer() { on "$1" --url "$url" --stream-path "/events/?channel=$2" --publish-url "$url/publish/$2" "${@:3}" --label django-eventstream; }
        peer fanout "fan$round" --subscribers 100 --events 500 --in-flight 1
        peer latency "lat$round" --subscribers 100 --rate 20 --seconds 10 --in-flight 1
        peer memory "idle$round" --subscribers 1000 --server-pid "$pid"
        kill "$pid"
        # Both behind a Pushpin of their own (configured as the README
        # says), the same load: 1,000 subscribers, 50 events/s, one publish
        # request at a time; once on a channel warmed up by 2 s of events,
        # once on a fresh channel (a channel's first subscription makes
        # Pushpin refresh every stream on it a second later). The two
        # control origins (bench/examples/control_grip: no storage) take
        # the same loads: what they pay too is the proxy's.
        if command -v pushpin >/dev/null 2>&1; then
            grip_load=(latency --subscribers 1000 --rate 50 --seconds 4 --in-flight 1 --wave 64 --via pushpin)
            # grip_pair LABEL STREAM_PATH_OF CHANNEL... : the warm and the
            # fresh run through the started Pushpin.
            grip_pair() {
                local label=$1; shift
                on "${grip_load[@]}" --warmup 2 "$@" "warm$round" --label "$label"
                on "${grip_load[@]}" "$@" "fresh$round" --label "$label"
            }
            pick_pushpin_ports
            start_server "compare-grip-$round" "sqlite://$work/compare-grip-$round.db" process \
                "link_key=\"bench-link-key-0123456789\",grip_proxies=[{control_uri=\"$control\",verify_iss=\"pushpin\",verify_key=\"pushpin-sig-key-0123456789\"}]"
            start_pushpin "$port"
            grip_pair eventstream-rocket --url "http://127.0.0.1:$http_port" \
                --publish-base "http://127.0.0.1:$port/events" --channel
            bash tests/support/pushpin-harness.sh stop "$work/pushpin" >/dev/null
            kill "$pid"
            pick_pushpin_ports
            start_django BENCH_GRIP_URL="$control?iss=pushpin&key=pushpin-sig-key-0123456789"
            start_pushpin "$port" "/events/?channel=ready"
            django_url="http://127.0.0.1:$port"
            on "${grip_load[@]}" --warmup 2 --url "http://127.0.0.1:$http_port" --stream-path "/events/?channel=warm$round" \
                --publish-url "$django_url/publish/warm$round" --label django-eventstream
            on "${grip_load[@]}" --url "http://127.0.0.1:$http_port" --stream-path "/events/?channel=fresh$round" \
                --publish-url "$django_url/publish/fresh$round" --label django-eventstream
            bash tests/support/pushpin-harness.sh stop "$work/pushpin" >/dev/null
            kill "$pid"
            for mode in plain filters; do
                if [ "$mode" = plain ]; then label="control: plain GRIP origin"; else label="control: GRIP origin, our Grip-Channel"; fi
                pick_pushpin_ports
                start_control_grip "$mode"
                start_pushpin "$origin"
                grip_pair "$label" --url "http://127.0.0.1:$http_port" \
                    --publish-base "http://127.0.0.1:$origin/events" --channel
                bash tests/support/pushpin-harness.sh stop "$work/pushpin" >/dev/null
                kill "$pid"
            done
        fi
    done
    # The table replaces what stands between the markers in BENCHMARKS.md.
    "$bench" compare --input "$compared" --out-dir "$charts" --markdown "$out/compare.md" \
        --chart-link docs/bench/compare.png --into BENCHMARKS.md --date "$(date +%F)"
    echo "bench: side by side in BENCHMARKS.md, results in $compared"
    exit 0
fi

# No regression: the same loads against the before server and this
# checkout's, interleaved, three rounds.
if [ -n "$regress_from" ]; then
    regressed="$out/regress.jsonl"
    measure() { "$bench" "$@" --publish-key "$key" --out "$regressed" >/dev/null; }
    this_server=$server_bin
    for round in 1 2 3; do
        for who in before after; do
            echo "::: regress, round $round, $who" >&2
            if [ "$who" = before ]; then server_bin=$regress_from; else server_bin=$this_server; fi
            start_server "$who-$round" "sqlite://$work/$who-$round.db" process "keepalive_secs=20"
            url="http://127.0.0.1:$port"
            measure fanout --url "$url" --channel fan --subscribers 1000 --events 2000 --in-flight 64 --label "$who"
            measure replay --url "$url" --channel replay --events 1000 --runs 50 --label "$who"
            measure storm --url "$url" --channel storm --clients 10000 --missed 10 --label "$who"
            kill "$pid"
            start_server "$who-$round-power" "sqlite://$work/$who-$round-power.db" power
            measure publish --url "http://127.0.0.1:$port" --publishers 8 --in-flight 32 --channels 1000 --seconds 10 --label "$who sqlite-power"
            kill "$pid"
            fresh_database eventstream_regress
            start_server "$who-$round-pg" "postgres://postgres@127.0.0.1:5432/eventstream_regress" power
            measure publish --url "http://127.0.0.1:$port" --publishers 8 --in-flight 32 --channels 1000 --seconds 10 --label "$who postgres-power"
            kill "$pid"
        done
    done
    "$bench" regress --input "$regressed"
    exit $?
fi

if $quick; then
    S=40; E=100; SEC=2; STORM=200; MEM=200; PUB_SEC=2
else
    S=1000; E=2000; SEC=10; STORM=10000; MEM=10000; PUB_SEC=10
fi

# In-process fan-out and latency, SQLite, process durability.
if want core; then
start_server sqlite-process "sqlite://$work/process.db" process "keepalive_secs=20"
url="http://127.0.0.1:$port"
run fanout --url "$url" --channel fan --subscribers "$S" --events "$E" --in-flight 64 --label "sqlite, process"
if $quick; then
    run latency --url "$url" --channel lat --subscribers 20 --rate 20 --seconds "$SEC" --label "sqlite, process"
else
    for subs in 100 1000 5000; do
        run fanout --url "$url" --channel "fan$subs" --subscribers "$subs" --events $(( 2000000 / subs < 4000 ? 2000000 / subs : 4000 )) --in-flight 64 --label "sweep"
    done
    run latency --url "$url" --channel lat100 --subscribers 100 --rate 100 --seconds "$SEC" --label "sqlite, process"
    run latency --url "$url" --channel lat1000 --subscribers 1000 --rate 10 --seconds "$SEC" --label "sqlite, process"
    run latency --url "$url" --channel lat10000 --subscribers 10000 --rate 1 --seconds "$SEC" --label "sqlite, process"
fi
run replay --url "$url" --channel replay --events 1000 --runs $($quick && echo 5 || echo 50) --label "sqlite, process"
run storm --url "$url" --channel storm --clients "$STORM" --missed 10 --label "sqlite, process"
run memory --url "$url" --channel idle --subscribers "$MEM" --server-pid "$pid" --label "sqlite, process, chunk_size 8192"
kill "$pid"
fi

# Durable publishing under power-loss durability: SQLite, then PostgreSQL.
if want publish; then
start_server sqlite-power "sqlite://$work/power.db" power
run publish --url "http://127.0.0.1:$port" --publishers 8 --in-flight 32 --channels 1000 --seconds "$PUB_SEC" --label "sqlite, power"
kill "$pid"
if postgres_up; then
    fresh_database eventstream_bench
    start_server postgres-power "postgres://postgres@127.0.0.1:5432/eventstream_bench" power
    run publish --url "http://127.0.0.1:$port" --publishers 8 --in-flight 32 --channels 1000 --seconds "$PUB_SEC" --label "postgres, power"
    kill "$pid"
fi
fi

# Several instances on one PostgreSQL event log (broadcast = "postgres", and
# "redis" when a Redis server answers on 6379).
# First what the bus costs one instance (the same loads with broadcast
# local and postgres), then subscribers on instance A with the events
# published on instance B, then three instances publishing at once.
if want broadcast && postgres_up; then
    bus_db="postgres://postgres@127.0.0.1:5432/eventstream_bus"
    if $quick; then BS=20; BE=100; BR=20; else BS=100; BE=2000; BR=100; fi
    for mode in local postgres; do
        fresh_database eventstream_bus
        start_server "bus-$mode" "$bus_db" process "broadcast=\"$mode\",bus_key=\"bench-bus-key-0123456789\""
        url="http://127.0.0.1:$port"
        run fanout --url "$url" --channel busfan --subscribers "$BS" --events "$BE" --in-flight 64 --label "one instance, broadcast $mode"
        run latency --url "$url" --channel buslat --subscribers "$BS" --rate "$BR" --seconds "$SEC" --label "one instance, broadcast $mode"
        run publish --url "$url" --publishers 8 --in-flight 32 --channels 1000 --seconds "$PUB_SEC" --label "one instance, broadcast $mode"
        kill "$pid"
    done
    # Redis too when a server answers on 6379 (scripts/services.sh starts it).
    transports=(postgres)
    if command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -p 6379 ping 2>/dev/null)" = PONG ]; then
        transports+=(redis)
    fi
    for mode in "${transports[@]}"; do
        fresh_database eventstream_bus
        start_server "bus-a-$mode" "$bus_db" process "broadcast=\"$mode\",bus_key=\"bench-bus-key-0123456789\""; a_port=$port; three=("$pid")
        start_server "bus-b-$mode" "$bus_db" process "broadcast=\"$mode\",bus_key=\"bench-bus-key-0123456789\""; b_port=$port; three+=("$pid")
        cross=(--url "http://127.0.0.1:$a_port" --publish-base "http://127.0.0.1:$b_port/events")
        if $quick; then
            run latency "${cross[@]}" --channel x --subscribers 20 --rate 20 --seconds "$SEC" --label "cross-instance ($mode): subscribers on A, publishing on B"
        else
            run latency "${cross[@]}" --channel x100 --subscribers 100 --rate 100 --seconds "$SEC" --warmup 2 --label "cross-instance ($mode): subscribers on A, publishing on B"
            run latency "${cross[@]}" --channel x1000 --subscribers 1000 --rate 50 --seconds "$SEC" --warmup 2 --label "cross-instance ($mode): subscribers on A, publishing on B"
        fi
        kill "${three[@]}"
    done
    # Three publish loads at once, one per instance: their sum is what the
    # three sustain together; with broadcast local too, for what the bus
    # costs when three writers contend.
    for mode in "${transports[@]}" local; do
        fresh_database eventstream_bus
        start_server "three-a-$mode" "$bus_db" process "broadcast=\"$mode\",bus_key=\"bench-bus-key-0123456789\""; three=("$pid"); ports=("$port")
        start_server "three-b-$mode" "$bus_db" process "broadcast=\"$mode\",bus_key=\"bench-bus-key-0123456789\""; three+=("$pid"); ports+=("$port")
        start_server "three-c-$mode" "$bus_db" process "broadcast=\"$mode\",bus_key=\"bench-bus-key-0123456789\""; three+=("$pid"); ports+=("$port")
        together=()
        for p in "${ports[@]}"; do
            run publish --url "http://127.0.0.1:$p" --publishers 8 --in-flight 32 --channels 1000 --seconds "$PUB_SEC" --label "three instances at once, broadcast $mode" &
            together+=($!)
        done
        for job in "${together[@]}"; do wait "$job"; done
        kill "${three[@]}"
    done
fi

# Through Pushpin (GRIP), configured as the README says: no publish rate
# limit (on 1.36 any limit stalls delivery while publishes arrive less than
# 25 ms apart), room for 10,000 clients. The same loads then run against a
# control origin (bench/examples/control_grip: holds at once, publishes in
# batches, no storage), which shows what Pushpin itself does here.
# grip_runs LABEL ORIGIN_PORT: the GRIP loads through the started Pushpin.
grip_runs() {
    local via=(--url "http://127.0.0.1:$http_port" --publish-base "http://127.0.0.1:$2/events" --wave 64)
    if $quick; then
        run latency "${via[@]}" --channel g1 --subscribers 20 --rate 20 --seconds 1 --label "$1"
    else
        run latency "${via[@]}" --channel g100 --subscribers 100 --rate 50 --seconds 4 --label "$1"
        run latency "${via[@]}" --channel g1000 --subscribers 1000 --rate 50 --seconds 4 --label "$1"
        # The same after 2 s of events: the refresh a channel's first
        # subscription causes (every stream on it, a second later) is over.
        run latency "${via[@]}" --channel g1000w --subscribers 1000 --rate 50 --warmup 2 --seconds 4 --label "$1"
        run latency "${via[@]}" --channel g1000r --subscribers 1000 --rate 200 --warmup 2 --seconds 4 --label "$1"
        run fanout "${via[@]}" --channel gfan --subscribers 1000 --events 400 --in-flight 4 --seconds 60 --label "$1"
        run join "${via[@]}" --channel gjoin --subscribers 1000 --rate 50 --warmup 2 --seconds 4 --label "$1"
        run latency "${via[@]}" --channel g10000 --subscribers 10000 --rate 1 --seconds 10 --label "$1"
    fi
    bash tests/support/pushpin-harness.sh stop "$work/pushpin" >/dev/null
}

if want grip && command -v pushpin >/dev/null 2>&1; then
    pick_pushpin_ports
    start_server grip "sqlite://$work/grip.db" process \
        "link_key=\"bench-link-key-0123456789\",grip_proxies=[{control_uri=\"$control\",verify_iss=\"pushpin\",verify_key=\"pushpin-sig-key-0123456789\"}]"
    start_pushpin "$port"
    grip_runs "grip via pushpin" "$port"
    kill "$pid"
    if ! $quick; then
        pick_pushpin_ports
        start_control_grip filters
        start_pushpin "$origin"
        grip_runs "control: trivial GRIP origin, same Grip-Channel" "$origin"
        kill "$pid"
    fi
fi

# Presence: the same fan-out and the same join with and without every
# stream asking for presence events (presence=1), three interleaved rounds,
# each on fresh channels; the join runs connect every joiner at once (one
# wave) and keep one more stream watching presence, to count the events a
# join storm causes.
if want presence; then
    start_server presence "sqlite://$work/presence.db" process
    url="http://127.0.0.1:$port"
    if $quick; then PF=20; PE=100; PJ=50; rounds=1; else PF=1000; PE=2000; PJ=10000; rounds=3; fi
    for round in $(seq 1 "$rounds"); do
        for mode in without with; do
            query=""; [ "$mode" = with ] && query="?presence=1"
            run fanout --url "$url" --channel "pf$round$mode" --stream-path "/events/pf$round$mode$query" \
                --subscribers "$PF" --events "$PE" --in-flight 64 --label "presence: fan-out, $mode presence=1"
            run join --url "$url" --channel "pj$round$mode" --stream-path "/events/pj$round$mode$query" \
                --subscribers "$PJ" --wave "$PJ" --rate 1 --warmup 2 --seconds 2 --presence-watch 1 \
                --label "presence: join storm, $mode presence=1"
        done
    done
    kill "$pid"
fi

# Control runs for the broadcast sweep (10,000 subscribers x 1 event/s):
# the same load against a minimal Rocket stream and a raw tokio writer.
if want controls && ! $quick; then
    start_control rocket
    run latency --url "http://127.0.0.1:$port" --channel c --subscribers 10000 --rate 1 --seconds "$SEC" --label "control: minimal Rocket ByteStream"
    run latency --url "http://127.0.0.1:$port" --channel c --subscribers 1000 --rate 10 --seconds "$SEC" --label "control: minimal Rocket ByteStream"
    kill "$pid"
    start_control raw
    run latency --url "http://127.0.0.1:$port" --channel c --subscribers 10000 --rate 1 --seconds "$SEC" --label "control: raw tokio writer"
    run latency --url "http://127.0.0.1:$port" --channel c --subscribers 1000 --rate 10 --seconds "$SEC" --label "control: raw tokio writer"
    kill "$pid"
fi
# How far one machine goes (only when asked for: EVENTSTREAM_BENCH_SECTION=scale,
# about 10 minutes): as many concurrent streams as it allows, up to
# EVENTSTREAM_BENCH_STREAMS (100,000), in direct mode. Held idle (server RSS
# and kernel memory per stream), then a broadcast of 1 event/s to all of
# them next to both controls holding as many, then a reconnect storm with
# Last-Event-ID. The server and the load generator each hold one
# descriptor per stream, so the open-file limit per process caps the run;
# the run says so when it does.
if [ "$section" = scale ]; then
    streams=${EVENTSTREAM_BENCH_STREAMS:-100000}
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    limit=$(ulimit -n)
    # A thousand descriptors left for each side's own files and sockets.
    if [ $((streams + 1000)) -gt "$limit" ]; then
        streams=$((limit - 1000))
        echo "bench: the open-file limit is $limit descriptors per process here (hard limit $(ulimit -Hn)); holding $streams streams" >&2
    fi
    start_server scale "sqlite://$work/scale.db" process "keepalive_secs=20"
    url="http://127.0.0.1:$port"
    run memory --url "$url" --channel idle --subscribers "$streams" --server-pid "$pid" --wave 512 --label "scale: eventstream-rocket"
    run latency --url "$url" --channel b --subscribers "$streams" --rate 1 --seconds 20 --wave 512 --label "scale: eventstream-rocket"
    run storm --url "$url" --channel s --clients "$streams" --missed 10 --wave 512 --label "scale: eventstream-rocket"
    kill "$pid"
    start_control rocket
    run latency --url "http://127.0.0.1:$port" --channel c --subscribers "$streams" --rate 1 --seconds 20 --wave 512 --label "scale: control: minimal Rocket ByteStream"
    kill "$pid"
    start_control raw
    run latency --url "http://127.0.0.1:$port" --channel c --subscribers "$streams" --rate 1 --seconds 20 --wave 512 --label "scale: control: raw tokio writer"
    kill "$pid"
    echo "bench: scale results in $results" >&2
    exit 0
fi

# The delivery floor: 100 subscribers x 20 events/s
# published through the HTTP API, split at the publish answer, against ours
# with delivery_timing on (the server's own breakdown, step by step) and
# the two controls, interleaved. Events are stamped when their request is
# sent (--from send), which leaves the load generator's 1 ms timer grain
# out.
if want floor && ! $quick; then
    for round in 1 2 3; do
        start_server "floor-$round" "sqlite://$work/floor-$round.db" process "metrics_path=\"/metrics\",delivery_timing=true"
        run latency --url "http://127.0.0.1:$port" --channel floor --subscribers 100 --rate 20 --seconds "$SEC" \
            --split 1 --from send --stages "http://127.0.0.1:$port/metrics" --label "floor: eventstream-rocket"
        kill "$pid"
        start_control raw
        run latency --url "http://127.0.0.1:$port" --channel c --subscribers 100 --rate 20 --seconds "$SEC" \
            --split 1 --from send --label "floor: control: raw tokio writer"
        kill "$pid"
        start_control rocket
        run latency --url "http://127.0.0.1:$port" --channel c --subscribers 100 --rate 20 --seconds "$SEC" \
            --split 1 --from send --label "floor: control: minimal Rocket ByteStream"
        kill "$pid"
    done
fi
# Idle memory per connection, measured the same way (server RSS before and
# after $MEM idle streams) for the two controls and for ours at each
# chunk_size, with the fan-out each chunk_size gives: the table chunk_size's
# default is picked from.
if want memory && ! $quick; then
    start_control raw
    run memory --url "http://127.0.0.1:$port" --channel idle --subscribers "$MEM" --server-pid "$pid" --label "control: raw tokio writer"
    kill "$pid"
    start_control rocket
    run memory --url "http://127.0.0.1:$port" --channel idle --subscribers "$MEM" --server-pid "$pid" --label "control: minimal Rocket ByteStream"
    kill "$pid"
    for chunk in 1024 2048 4096 8192; do
        start_server "chunk-$chunk" "sqlite://$work/chunk-$chunk.db" process "chunk_size=$chunk"
        run memory --url "http://127.0.0.1:$port" --channel idle --subscribers "$MEM" --server-pid "$pid" --label "chunk_size $chunk"
        run fanout --url "http://127.0.0.1:$port" --channel fan --subscribers "$S" --events "$E" --in-flight 64 --label "chunk_size $chunk"
        kill "$pid"
    done
fi

if [ "$section" = all ] && ! $quick; then
    "$bench" chart --input "$results" --out-dir "$charts"
fi
echo "bench: results in $results"
