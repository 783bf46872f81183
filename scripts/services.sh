#!/usr/bin/env bash
# Makes sure the services the test suite talks to are running on this
# machine: PostgreSQL on 127.0.0.1:5432 with a `postgres` role reachable
# without a password from loopback. Installs Debian's package when absent.
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

ensure_services() {
    ensure_postgres
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    ensure_services
fi
