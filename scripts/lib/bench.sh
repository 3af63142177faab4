# Helpers shared by the load benchmarks (scripts/bench-*), sourced after
# `set -euo pipefail`. A script using them sets SERVER_PID (the server it
# is measuring, or "") before calling wait_http.

die() { echo "$(basename "$0"): $*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@" || die "'$*' needs root (passwordless sudo failed)"
    else die "'$*' needs root and sudo is missing: install it by hand"
    fi
}

# A free loopback port: random in 20000..59999, checked with bash's /dev/tcp.
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

# wait_http URL: until it answers at all (any status), at most 30 s; fails
# early when SERVER_PID has exited.
wait_http() {
    local url=$1
    for _ in $(seq 1 300); do
        if [ -n "${SERVER_PID:-}" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
            return 1
        fi
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    return 1
}

# CPU accounting, so each row says how much other work shared the cores:
# all cores' busy and total ticks (/proc/stat), and one process's.
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
machine_ticks() { awk '/^cpu / {b = $2+$3+$4+$7+$8+$9; t = b+$5+$6; print b, t; exit}' /proc/stat; }
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# The median of the arguments (the mean of the two middle ones for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%s", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median_int() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) printf "%d", v[(NR + 1) / 2]; else printf "%d", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# insert_rows FILE TABLE_HEAD ROWS: puts ROWS (lines) at the end of the
# table whose header line starts with TABLE_HEAD (its separator line
# follows it), leaving the rest of FILE as it was.
insert_rows() {
    local file=$1 head=$2 tmp
    tmp=$(mktemp "${TMPDIR:-/tmp}/bench-rows.XXXXXX")
    ROWS="$3" awk -v head="$head" '
        BEGIN { rows = ENVIRON["ROWS"] }
        state == 2 && !done && $0 !~ /^\|/ { print rows; done = 1 }
        { print }
        state == 1 { state = 2 }
        state == 0 && index($0, head) == 1 { state = 1 }
        END { if (!done) print rows }' "$file" >"$tmp"
    cat "$tmp" >"$file"
    rm -f "$tmp"
}
