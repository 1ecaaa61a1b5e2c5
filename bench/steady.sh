#!/usr/bin/env bash
# Memory under steady load: wxgate (the release build) in front of the bench upstream on an
# `auth = "required"` route, under `wrk -t1 -c64` for DURATION, with wxgate's VmRSS (from
# /proc/PID/status) and jemalloc's allocated bytes (from /metrics) printed each minute. The
# check that nothing grows with the number of requests served; not part of `cargo test`.
#
#   bash bench/steady.sh                 # DURATION=10m
#   DURATION=2m bash bench/steady.sh
#
# Needs wrk and curl. Like bench/run.sh, the load generator runs on CPU 0 and the servers on
# CPU 1 when the machine has two or more. At the end it prints the CPU each request cost
# wxgate, in user space and in the kernel, and the upstream (from /proc/PID/stat).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10m}
die() {
    echo "steady: $*" >&2
    exit 1
}
for tool in wrk curl taskset; do command -v "$tool" >/dev/null || die "$tool is missing"; done
case "$DURATION" in
*m) minutes=${DURATION%m} ;;
*) die "DURATION is whole minutes, like 10m" ;;
esac
[ "$(nproc)" -ge 2 ] && { LOADGEN_CPU=0 SERVER_CPU=1; } || { LOADGEN_CPU=0 SERVER_CPU=0; }

cargo build --release --locked --quiet
cargo build --release --locked --quiet --example bench_upstream
WXGATE=target/release/wxgate

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wxgate-steady.XXXXXX")
PIDS=()
cleanup() {
    trap - EXIT
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { # a port below the ephemeral range, free now
    local port
    for _ in $(seq 500); do
        port=$((20000 + RANDOM % 10000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
    die "no free port found"
}
UPSTREAM_PORT=$(free_port)
PORT=$(free_port)
ADMIN_PORT=$(free_port)
[ "$UPSTREAM_PORT" != "$PORT" ] && [ "$PORT" != "$ADMIN_PORT" ] && [ "$UPSTREAM_PORT" != "$ADMIN_PORT" ] ||
    die "port clash, run again"

SECRET=$(head -c 512 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 48)
cat >"$TMP/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[wechat.apps]]
appid = "wx0123456789abcdef"
secret = "steady-app-secret-not-used"

[auth]
audience = "bench"
[[auth.keys]]
kid = "bench"
alg = "HS256"
secret = "$SECRET"

[[routes]]
prefix = "/"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
auth = "required"
EOF
TOKEN=$("$WXGATE" token -c "$TMP/gateway.toml" --openid osteady --ttl 2h)

taskset -c "$SERVER_CPU" target/release/examples/bench_upstream "127.0.0.1:$UPSTREAM_PORT" >"$TMP/upstream.log" 2>&1 &
U=$!
PIDS+=("$U")
# The access log goes to a file, as it would to a collector.
taskset -c "$SERVER_CPU" "$WXGATE" run -c "$TMP/gateway.toml" 2>"$TMP/wxgate.log" &
G=$!
PIDS+=("$G")
for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/")" = 200 ] && break
    kill -0 "$G" 2>/dev/null || die "wxgate exited: $(tail -n 5 "$TMP/wxgate.log")"
    sleep 0.1
done

sample() { # sample LABEL: one line of figures
    local rss heap
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$G/status")
    heap=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^wxgate_heap_allocated_bytes / { printf "%d", $2 / 1024 }')
    printf '  %-10s %10s KiB VmRSS %10s KiB heap allocated\n' "$1" "$rss" "${heap:-?}"
}
cpu() { # cpu PID: "utime stime" in clock ticks (fields 14 and 15, after "pid (comm) ")
    local rest
    rest=$(cat "/proc/$1/stat")
    rest=${rest##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo "${12} ${13}"
}
echo "== wxgate under wrk -t1 -c64 -d$DURATION (load on CPU $LOADGEN_CPU, servers on CPU $SERVER_CPU)"
sample start
read -r G_USER0 G_SYS0 <<<"$(cpu "$G")"
read -r U_USER0 U_SYS0 <<<"$(cpu "$U")"
taskset -c "$LOADGEN_CPU" wrk -t1 -c64 -d"$DURATION" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/" >"$TMP/wrk.txt" 2>&1 &
WRK=$!
PIDS+=("$WRK")
for minute in $(seq "$minutes"); do
    # The sample a little before each minute ends, so the last one is taken under load.
    sleep 59
    sample "minute $minute"
    sleep 1
done
wait "$WRK" || die "wrk failed: $(cat "$TMP/wrk.txt")"
read -r G_USER1 G_SYS1 <<<"$(cpu "$G")"
read -r U_USER1 U_SYS1 <<<"$(cpu "$U")"
grep -E "requests in|Requests/sec|Non-2xx|Socket errors" "$TMP/wrk.txt" | sed 's/^/  /'
grep -q "Non-2xx" "$TMP/wrk.txt" && die "non-2xx answers under load"
REQUESTS=$(awk '/requests in/ { print $1 }' "$TMP/wrk.txt")
awk -v n="$REQUESTS" -v hz="$(getconf CLK_TCK)" \
    -v gu=$((G_USER1 - G_USER0)) -v gs=$((G_SYS1 - G_SYS0)) -v uu=$((U_USER1 - U_USER0)) -v us=$((U_SYS1 - U_SYS0)) 'BEGIN {
    f = 1e6 / hz / n
    printf "  CPU per request: wxgate %.1f µs (user %.1f, kernel %.1f, %.0f%% in the kernel); upstream %.1f µs (user %.1f, kernel %.1f)\n",
        (gu + gs) * f, gu * f, gs * f, 100 * gs / (gu + gs), (uu + us) * f, uu * f, us * f
}'
sleep 5
sample "5 s after"
