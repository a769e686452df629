#!/usr/bin/env bash
# A throwaway PostgreSQL for Prefect's server, and a campaign with several workers against it.
#
#   scripts/postgres.sh [demo] [WORKERS [PARALLEL [EXPERIMENTS]]]   # default 4 8 16
#       a throwaway PostgreSQL; `autoresearch serve --database` on it; WORKERS `autoresearch
#       worker`s, each with its own clone; a campaign of EXPERIMENTS, PARALLEL in flight (the
#       README's multi-machine commands, on one machine)
#   scripts/postgres.sh run CMD [ARG...]   # CMD with PREFECT_API_DATABASE_CONNECTION_URL (and
#                                          # PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) set
#   scripts/postgres.sh hold               # the URL on stdout; kept until stdin closes
#   scripts/postgres.sh install            # the binaries only
#
# The cluster lives in a fresh folder under $TMPDIR, listens on 127.0.0.1 only (a free port,
# password login; its unix socket in a folder only its owner enters) and is stopped and deleted
# when the script exits. PostgreSQL refuses to run as root: as root, it runs as the user
# `postgres` (Debian's package creates it), else `nobody` (PG_OS_USER to choose). The binaries:
# PG_BINDIR, else the newest /usr/lib/postgresql/*/bin, else initdb on PATH; where they are
# missing and we are root with apt-get, Debian's `postgresql` is installed (PG_INSTALL=0: never),
# else the script says what to install and exits 3 (the test and the bench skip on that).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UNAVAILABLE=3
DB=prefect # the database and its owner (the cluster's superuser)

say() { printf 'postgres.sh: %s\n' "$*" >&2; }

find_bindir() {
    local dir
    if [ -n "${PG_BINDIR:-}" ]; then
        [ -x "$PG_BINDIR/initdb" ] && echo "$PG_BINDIR"
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
    done
    dir="$(command -v initdb 2>/dev/null || true)"
    [ -n "$dir" ] && dirname "$(readlink -f "$dir")"
    return 0
}

install_postgres() {
    BINDIR="$(find_bindir)"
    [ -n "$BINDIR" ] && return 0
    if [ -n "${PG_BINDIR:-}" ]; then
        say "PG_BINDIR=$PG_BINDIR has no initdb"
        exit "$UNAVAILABLE"
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${PG_INSTALL:-1}" != 0 ]; then
        say "installing Debian's postgresql (apt-get)"
        local apt=(apt-get -o DPkg::Lock::Timeout=600 -qq)
        "${apt[@]}" update >&2
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends \
            postgresql >&2
        BINDIR="$(find_bindir)"
        [ -n "$BINDIR" ] && return 0
    fi
    say "PostgreSQL is not installed: install Debian's postgresql (sudo apt-get install" \
        "postgresql), or set PG_BINDIR to the folder of its initdb and pg_ctl"
    exit "$UNAVAILABLE"
}

as_owner() { # a command as the cluster's owner (ourselves unless root)
    if [ "$(id -u)" != 0 ]; then
        "$@"
    elif command -v runuser >/dev/null; then
        (cd / && runuser -u "$OWNER" -- "$@")
    else
        (cd / && su -s /bin/sh "$OWNER" -c '"$0" "$@"' -- "$@")
    fi
}

free_port() { # a port nothing on 127.0.0.1 answers on (pg_ctl fails if it is taken meanwhile)
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

WORK="" PGDIR="" CHILDREN=()
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM HUP
    for pid in "${CHILDREN[@]}"; do # ours, newest first: the campaign, workers, then serve
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${CHILDREN[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$PGDIR" ] && [ -f "$PGDIR/data/postmaster.pid" ]; then
        as_owner "$BINDIR/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    exit "$rc"
}

start_postgres() {
    install_postgres
    OWNER="$(id -un)"
    if [ "$(id -u)" = 0 ]; then
        OWNER="${PG_OS_USER:-$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)}"
    fi
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/autoresearch-pg.XXXXXX")"
    chmod 711 "$WORK" # the owner passes through to its own folder, sees nothing else
    PGDIR="$WORK/pg"
    mkdir -m 700 "$PGDIR"
    [ "$(id -u)" = 0 ] && chown "$OWNER" "$PGDIR"
    local password port
    password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')"
    (umask 077 && printf '%s\n' "$password" >"$PGDIR/password")
    [ "$(id -u)" = 0 ] && chown "$OWNER" "$PGDIR/password"
    as_owner "$BINDIR/initdb" -D "$PGDIR/data" -U "$DB" --pwfile="$PGDIR/password" -E UTF8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$WORK/initdb.log" 2>&1 || {
        say "initdb failed:"
        tail -20 "$WORK/initdb.log" >&2
        exit 1
    }
    rm -f "$PGDIR/password"
    for _ in 1 2 3; do
        port="$(free_port)"
        if as_owner "$BINDIR/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PGDIR \
-c max_connections=300" start >/dev/null; then
            break
        fi
        port=""
    done
    if [ -z "$port" ]; then
        say "PostgreSQL did not start; its log:"
        as_owner tail -20 "$PGDIR/postgres.log" >&2 || true
        exit 1
    fi
    as_owner "$BINDIR/createdb" -h "$PGDIR" -p "$port" -U "$DB" -O "$DB" "$DB"
    export PGHOST=127.0.0.1 PGPORT="$port" PGUSER="$DB" PGPASSWORD="$password" PGDATABASE="$DB"
    export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://$DB:$password@127.0.0.1:$port/$DB"
    say "PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" \
        "as $OWNER, database $DB, in $PGDIR (deleted at exit)"
}

run_child() { # CMD in the background (so that a signal reaches our trap at once), its status
    "$@" <&0 &
    CHILDREN=("$!" "${CHILDREN[@]}")
    wait "$!"
}

# The README's multi-machine commands, on one machine: a study whose evaluator sleeps 2 s,
# evaluated on work pool `demo` by WORKERS workers, each with its own clone of the repository.
demo() {
    local workers="${1:-4}" parallel="${2:-8}" experiments="${3:-16}"
    local cli="${AUTORESEARCH:-$ROOT/.venv/bin/autoresearch}" port repo i
    [ -x "$cli" ] || cli="$(command -v autoresearch)" || {
        say "no autoresearch: make .venv (pip install -e .) or set AUTORESEARCH"
        exit 1
    }
    start_postgres
    repo="$WORK/project"
    mkdir -p "$repo/study"
    git init -q --bare "$WORK/remote.git"
    cat >"$repo/study/study.yaml" <<EOF
name: demo
editable: [model.py]
protected: [evaluate.py]
evaluator: {kind: command, command: python evaluate.py, timeout_s: 120, work_pool: demo}
metric: {name: score, direction: minimize}
proposer: {kind: mutate}
parallel: $parallel
remote: $WORK/remote.git
EOF
    printf 'import time, model\ntime.sleep(2)\nprint(f"score: {abs(model.X - 3.0):.6f}")\n' \
        >"$repo/study/evaluate.py"
    printf 'X = 10.0\nY = 1.0\n' >"$repo/study/model.py"
    cat >"$WORK/deployments.yaml" <<EOF
name: demo
build: null
push: null
deployments:
  - name: demo
    entrypoint: flows/campaign.py:campaign
    parameters: {study: $repo/study}
    work_pool: {name: campaigns}
EOF
    git -C "$repo" init -q -b main
    git -C "$repo" add -A
    git -C "$repo" -c user.name=demo -c user.email=demo@localhost commit -qm demo

    export PREFECT_HOME="$WORK/home"
    port="$(free_port)"
    # the server's machine: Prefect on PostgreSQL, the password in PGPASSWORD (off the command
    # line); the server logs each request that failed on a lock (Prefect keeps them quiet)
    PREFECT_SERVER_LOG_RETRYABLE_ERRORS=true "$cli" serve --no-worker --port "$port" \
        --database "postgresql+asyncpg://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE" \
        --home "$PREFECT_HOME" --deployments "$WORK/deployments.yaml" >"$WORK/serve.log" 2>&1 &
    CHILDREN=("$!" "${CHILDREN[@]}")
    for _ in $(seq 1500); do # serve records its server once it answers
        [ -f "$PREFECT_HOME/serve.json" ] && break
        kill -0 "${CHILDREN[0]}" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
        sleep 0.2
    done
    [ -f "$PREFECT_HOME/serve.json" ] || { say "serve did not answer in 300 s"; exit 1; }
    say "autoresearch serve on http://127.0.0.1:$port, database on PostgreSQL"
    # each worker's machine: its clone, the server's URL; the login and signing key are in the
    # shared Prefect home here (elsewhere: --auth-file, --key-file)
    export PREFECT_API_URL="http://127.0.0.1:$port/api"
    for i in $(seq "$workers"); do
        git clone -q "$repo" "$WORK/clone-$i"
        "$cli" worker --pool demo --clone "$WORK/clone-$i" \
            --limit $(((parallel + workers - 1) / workers)) >"$WORK/worker-$i.log" 2>&1 &
        CHILDREN=("$!" "${CHILDREN[@]}")
    done
    say "$workers workers on pool demo; the campaign: $experiments experiments, $parallel in flight"
    # the campaign (on the server's machine)
    local start=$SECONDS
    run_child "$cli" run "$repo/study" -n "$experiments"
    say "$experiments experiments in $((SECONDS - start)) s; log lines naming a lock error:" \
        "$(cat "$WORK"/*.log "$PREFECT_HOME/server.log" |
            grep -ciE 'database is locked|deadlock detected|could not obtain lock' || true)"
}

case "${1:-demo}" in
install)
    install_postgres
    say "PostgreSQL binaries in $BINDIR"
    ;;
hold)
    start_postgres
    printf '%s\n' "$PREFECT_API_DATABASE_CONNECTION_URL"
    run_child cat >/dev/null
    ;;
run)
    shift
    [ $# -gt 0 ] || { say "usage: $0 run CMD [ARG...]"; exit 2; }
    start_postgres
    run_child "$@"
    ;;
demo)
    shift || true
    demo "$@"
    ;;
-h | --help)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    ;;
*)
    demo "$@"
    ;;
esac
