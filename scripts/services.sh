#!/usr/bin/env bash
# Makes sure the services the test suite talks to are running on this
# machine: PostgreSQL on 127.0.0.1:5432 with a `postgres` role reachable
# without a password from loopback, and Redis on 127.0.0.1:6379 (its tests
# start private servers from the same package). Installs Debian's packages
# when absent.
# Sourced by scripts/test.sh; safe to run again.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

postgres_ready() {
    command -v psql >/dev/null 2>&1 &&
        psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1
}

ensure_postgres() {
    if postgres_ready; then
        log "PostgreSQL is up on 127.0.0.1:5432"
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        log "installing PostgreSQL (Debian package)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    # Tests connect over loopback as `postgres` without a password.
    if ! as_root grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
        log "allowing trust authentication from loopback in $hba"
        as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
    fi
    # The server refuses to run as root: pg_ctlcluster switches to `postgres`.
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    for _ in $(seq 1 60); do
        postgres_ready && { log "PostgreSQL $version started"; return; }
        sleep 0.5
    done
    log "PostgreSQL did not come up on 127.0.0.1:5432"
    return 1
}

# Debian's Chromium for the browser tests (playwright-core drives it; it
# never downloads a browser of its own).
ensure_chromium() {
    if [ -x /usr/bin/chromium ]; then
        return
    fi
    log "installing Chromium (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
}

# Node.js and npm for the JavaScript tests.
ensure_node() {
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        return
    fi
    log "installing Node.js and npm (Debian packages)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
}

# The cargo-generate CLI, for the generator's parity test. Built once (about
# ten minutes on two cores) and kept in ~/.cargo/bin.
ensure_cargo_generate() {
    if command -v cargo-generate >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-generate" ]; then
        return
    fi
    log "building the cargo-generate CLI (once; about ten minutes)"
    bash "$(dirname "${BASH_SOURCE[0]}")/install-cargo-generate.sh" >&2
}

# Debian's Pushpin for the GRIP tests (the tests start and stop their own
# instances on private ports through tests/support/pushpin-harness.sh).
ensure_pushpin() {
    if command -v pushpin >/dev/null 2>&1; then
        return
    fi
    log "installing Pushpin (Debian package)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq pushpin curl >/dev/null
}

# Redis: the Redis bus tests start private `redis-server`s on free ports;
# the machine's own server (127.0.0.1:6379, where `broadcast = "redis"`
# looks by default) is started too, as Debian's package would under systemd.
redis_ready() {
    command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]
}

ensure_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        log "installing Redis (Debian package)"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
    fi
    if redis_ready; then
        log "Redis is up on 127.0.0.1:6379"
        return
    fi
    redis-server --daemonize yes --port 6379 --bind 127.0.0.1 >/dev/null
    for _ in $(seq 1 60); do
        redis_ready && { log "Redis started on 127.0.0.1:6379"; return; }
        sleep 0.2
    done
    log "Redis did not come up on 127.0.0.1:6379"
    return 1
}

ensure_services() {
    ensure_postgres
    ensure_redis
    ensure_pushpin
    ensure_chromium
    ensure_node
    ensure_cargo_generate
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    ensure_services
fi
