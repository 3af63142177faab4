# Private store servers for the benchmarks (scripts/bench-stores), sourced
# after scripts/lib/bench.sh: each on a free loopback port, in a directory
# under $WORK, with nothing persisted that a run needs afterwards. Each
# start_* sets <NAME>_URL and <NAME>_PID; stop_services stops every one
# started (call it from the EXIT trap).

SERVICE_PIDS=()

# ensure_pkg COMMAND PACKAGE: installs Debian's PACKAGE when COMMAND is missing.
ensure_pkg() {
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (Debian package)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2"
    command -v "$1" >/dev/null 2>&1 || die "installed $2 but $1 is still missing"
}

stop_services() {
    local pid
    for pid in "${SERVICE_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SERVICE_PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVICE_PIDS=()
}

start_redis() {
    ensure_pkg redis-server redis-server
    local port
    port=$(free_port)
    mkdir -p "$WORK/redis"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis" --save '' --appendonly no \
        --daemonize no --protected-mode yes >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    SERVICE_PIDS+=("$REDIS_PID")
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    REDIS_URL="redis://127.0.0.1:$port"
    log "redis-server on $REDIS_URL"
}

start_memcached() {
    ensure_pkg memcached memcached
    local port user=()
    [ "$(id -u)" -eq 0 ] && user=(-u nobody)
    port=$(free_port)
    memcached -l 127.0.0.1 -p "$port" -U 0 -m "${MEMCACHED_MB:-1024}" "${user[@]}" >"$WORK/memcached.log" 2>&1 &
    MEMCACHED_PID=$!
    SERVICE_PIDS+=("$MEMCACHED_PID")
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    MEMCACHED_URL="memcached://127.0.0.1:$port"
    log "memcached on $MEMCACHED_URL"
}

# PostgreSQL refuses to run as root: as root the cluster belongs to the
# `postgres` system user (created by Debian's package). Durability settings
# are the server's defaults (fsync on), so the figures are a real
# deployment's, not an in-memory database's.
start_postgres() {
    local bin port dir run=()
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$bin" ]; then
        log "installing postgresql (Debian package)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
        bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    port=$(free_port)
    dir=$WORK/postgres
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir" "$WORK"
        run=(runuser -u postgres --)
    fi
    "${run[@]}" "$bin/initdb" -D "$dir/data" -U tessera --auth=trust -E UTF8 >"$WORK/postgres-initdb.log" 2>&1 ||
        { cat "$WORK/postgres-initdb.log" >&2; die "initdb failed"; }
    "${run[@]}" "$bin/postgres" -D "$dir/data" -h 127.0.0.1 -p "$port" -k "$dir" \
        -c max_connections=200 >"$WORK/postgres.log" 2>&1 &
    POSTGRES_PID=$!
    SERVICE_PIDS+=("$POSTGRES_PID")
    for _ in $(seq 1 100); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.1
    done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || { cat "$WORK/postgres.log" >&2; die "postgres did not start"; }
    POSTGRES_BIN=$bin
    POSTGRES_PORT=$port
    POSTGRES_URL="postgres://tessera@127.0.0.1:$port/postgres"
    log "postgres ($("$bin/postgres" --version | awk '{print $3}')) on $POSTGRES_URL"
}

# new_postgres_db NAME: a fresh database on the private server; prints its URL.
new_postgres_db() {
    "$POSTGRES_BIN/createdb" -h 127.0.0.1 -p "$POSTGRES_PORT" -U tessera "$1"
    echo "postgres://tessera@127.0.0.1:$POSTGRES_PORT/$1"
}
