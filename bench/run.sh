#!/usr/bin/env bash
# Load benchmark: wxgate against a direct upstream, nginx proxy_pass and HAProxy jwt_verify,
# interleaved in one run on one machine. See bench/README.md.
#
#   bash bench/run.sh                 # ROUNDS=5 DURATION=10s CONNS=64 RATE=2000 IDLE=5000
#   QUICK=1 bash bench/run.sh         # a smoke test of a minute or two
#
# Everything listens on 127.0.0.1 only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# ---------------------------------------------------------------- options
if [ "${QUICK:-0}" = 1 ]; then
    ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-2s} IDLE=${IDLE:-1000}
fi
ROUNDS=${ROUNDS:-5}              # interleaved rounds of the throughput test
DURATION=${DURATION:-10s}        # wrk -d per run (also the open-loop run length)
CONNS=${CONNS:-64}               # wrk -c, and the open-loop connections
RATE=${RATE:-2000}               # open-loop requests per second
IDLE=${IDLE:-5000}               # idle keep-alive connections for the memory test
OPEN_ROUNDS=${OPEN_ROUNDS:-$ROUNDS}
LOADGEN_CPU=${LOADGEN_CPU:-0}    # wrk and the bench clients
SERVER_CPU=${SERVER_CPU:-1}      # the upstream and the proxy under test
SETUPS=(direct nginx haproxy wxgate)
COMMAND="ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS RATE=$RATE IDLE=$IDLE OPEN_ROUNDS=$OPEN_ROUNDS LOADGEN_CPU=$LOADGEN_CPU SERVER_CPU=$SERVER_CPU bash bench/run.sh"

die() {
    echo "bench: $*" >&2
    exit 1
}
say() { echo "== $*"; }

# DURATION in wrk's form (10s, 1m, 10) as seconds for the open-loop tool.
case "$DURATION" in
*m) DURATION_SECS=$((${DURATION%m} * 60)) ;;
*s) DURATION_SECS=${DURATION%s} ;;
*) DURATION_SECS=$DURATION ;;
esac
[[ "$DURATION_SECS" =~ ^[0-9]+$ ]] || die "DURATION=$DURATION: use seconds (10s) or minutes (1m)"
for n in ROUNDS CONNS RATE IDLE OPEN_ROUNDS; do
    [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || die "$n=${!n} is not a positive integer"
done

# ---------------------------------------------------------------- tools
say "tools"
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo="sudo"
fi
missing=()
for tool in wrk:wrk nginx:nginx haproxy:haproxy curl:curl; do
    # nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
    command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    [ "$(id -u)" = 0 ] || [ -n "$sudo" ] || die "missing ${missing[*]}: run as root, or install sudo"
    say "installing ${missing[*]} with apt"
    # The packages' own services must not start (they would listen on public ports):
    # policy-rc.d is Debian's switch for that, used only if none is in place.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
    fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$policy" ]; then $sudo rm -f "$policy"; fi
fi
export PATH="$PATH:/usr/sbin:/sbin"
for tool in wrk nginx haproxy curl taskset cargo getconf; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (cargo: https://rustup.rs)"
done
CPUS=$(nproc)
if [ "$LOADGEN_CPU" -ge "$CPUS" ] || [ "$SERVER_CPU" -ge "$CPUS" ]; then
    die "LOADGEN_CPU=$LOADGEN_CPU / SERVER_CPU=$SERVER_CPU: this machine has $CPUS CPUs"
fi
[ "$LOADGEN_CPU" != "$SERVER_CPU" ] || echo "warning: load generator and servers share CPU $SERVER_CPU"

# ---------------------------------------------------------------- build
say "build (release)"
# The binary alone first, with the features it ships with; then the bench tools
# (examples, which also compile dev-dependencies) without touching target/release/wxgate.
cargo build --release --locked --quiet
cargo build --release --locked --quiet --example bench_upstream --example bench_openloop --example bench_idle
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WXGATE=$TARGET/release/wxgate
EX=$TARGET/release/examples
for bin in "$WXGATE" "$EX/bench_upstream" "$EX/bench_openloop" "$EX/bench_idle"; do
    [ -x "$bin" ] || die "build produced no $bin"
done

# ---------------------------------------------------------------- limits
# Each idle connection is a descriptor in the client and one in the proxy (plus the
# upstream side); leave room for wrk and the pools.
need_fds=$((IDLE * 2 + 4096))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need_fds" ]; then
    ulimit -Hn "$need_fds" 2>/dev/null || die "ulimit -n: hard limit $hard < $need_fds needed for IDLE=$IDLE (raise it, or lower IDLE)"
    hard=$need_fds
fi
want=65536
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -Sn "$want"
echo "ulimit -n $(ulimit -n)"

# ---------------------------------------------------------------- processes
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wxgate-bench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "configs and logs kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

# Ports below the ephemeral range, free now.
USED_PORTS=" "
pick_port() { # pick_port VAR
    local port
    for _ in $(seq 500); do
        port=$((20000 + RANDOM % 10000))
        case "$USED_PORTS" in *" $port "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            printf -v "$1" '%s' "$port"
            return
        fi
    done
    die "no free port found"
}
pick_port UPSTREAM_PORT
pick_port NGINX_PORT
pick_port HAPROXY_PORT
pick_port WXGATE_PORT
pick_port ADMIN_PORT
declare -A PORT=([direct]=$UPSTREAM_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [wxgate]=$WXGATE_PORT)

# wait_http NAME URL LOGFILE PID: until anything answers HTTP on URL (status other than 000).
wait_http() {
    local code
    for _ in $(seq 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$2" || true)
        [ "$code" != 000 ] && return 0
        kill -0 "$4" 2>/dev/null || { tail -n 20 "$3" >&2; die "$1 exited during start-up"; }
        sleep 0.1
    done
    tail -n 20 "$3" >&2
    die "$1 did not answer on $2 within 30 s"
}

children_of() { # the PIDs whose parent is $1
    local stat rest fields
    for stat in /proc/[0-9]*/stat; do
        rest=$(cat "$stat" 2>/dev/null) || continue
        # after "pid (comm) ": state, ppid, ...
        read -r -a fields <<<"${rest##*) }"
        if [ "${fields[1]}" = "$1" ]; then
            stat=${stat#/proc/}
            echo "${stat%/stat}"
        fi
    done
}

random_secret() { # 48 letters and digits (no quoting trouble in any of the configs)
    local s
    s=$(head -c 1024 /dev/urandom | tr -dc 'A-Za-z0-9')
    [ ${#s} -ge 48 ] || die "could not make a secret"
    echo "${s:0:48}"
}
SECRET=$(random_secret)

say "start (servers on CPU $SERVER_CPU, load generators on CPU $LOADGEN_CPU, temp dir $TMP)"
taskset -c "$SERVER_CPU" "$EX/bench_upstream" "127.0.0.1:$UPSTREAM_PORT" >"$TMP/upstream.log" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
wait_http upstream "http://127.0.0.1:$UPSTREAM_PORT/" "$TMP/upstream.log" "$UPSTREAM_PID"

# nginx: one worker on SERVER_CPU, upstream keep-alive, access log on (its default) to a file.
mkdir -p "$TMP/nginx"
mask="1$(printf '%*s' "$SERVER_CPU" '' | tr ' ' 0)"
cat >"$TMP/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity $mask;
worker_rlimit_nofile $need_fds;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections $((IDLE + 4096)); }
http {
    access_log $TMP/nginx-access.log;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
nginx -t -q -p "$TMP/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" || die "nginx rejected $TMP/nginx.conf"
taskset -c "$SERVER_CPU" nginx -p "$TMP/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" >"$TMP/nginx-stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_http nginx "http://127.0.0.1:$NGINX_PORT/" "$TMP/nginx-error.log" "$NGINX_PID"
NGINX_WORKERS=$(children_of "$NGINX_PID")
[ -n "$NGINX_WORKERS" ] || die "no nginx worker found"
# shellcheck disable=SC2206
PIDS+=($NGINX_WORKERS)

# HAProxy: one thread on SERVER_CPU; the bearer must be an HS256 JWT whose signature
# jwt_verify accepts with the shared secret, and its `sub` becomes X-OpenId. HAProxy checks
# neither exp nor aud/iss here (wxgate does). Access log (httplog) to stdout, to a file.
HA_MAXCONN=$((IDLE + 2048))
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    cpu-map 1/1 $SERVER_CPU
    maxconn $HA_MAXCONN
    log stdout format raw local0
defaults
    mode http
    log global
    option httplog
    maxconn $HA_MAXCONN
    timeout connect 5s
    timeout client 5m
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 5m
frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny deny_status 401 unless { var(txn.alg) -m str HS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$SECRET") -m int 1 }
    http-request set-header X-OpenId %[var(txn.bearer),jwt_payload_query('\$.sub')]
    default_backend upstream
backend upstream
    server up 127.0.0.1:$UPSTREAM_PORT
EOF
haproxy -c -q -f "$TMP/haproxy.cfg" || die "haproxy rejected $TMP/haproxy.cfg"
taskset -c "$SERVER_CPU" haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
wait_http haproxy "http://127.0.0.1:$HAPROXY_PORT/" "$TMP/haproxy.log" "$HAPROXY_PID"

# wxgate as shipped (access log on stderr, metrics on the admin listener), except
# header_read_timeout: hyper also applies it to an idle keep-alive connection waiting for
# its next request, and the idle-memory test holds connections longer than the default 10s.
write_gateway() { # write_gateway FILE SECRET
    cat >"$1" <<EOF
[server]
listen = "127.0.0.1:$WXGATE_PORT"
header_read_timeout = "5m"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[wechat]
[[wechat.apps]]
appid = "wx0123456789abcdef"
secret = "bench-app-secret-not-used"

[auth]
audience = "bench"
[[auth.keys]]
kid = "bench"
alg = "HS256"
secret = "$2"

[[routes]]
prefix = "/"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
auth = "required"
EOF
}
write_gateway "$TMP/gateway.toml" "$SECRET"
"$WXGATE" check -c "$TMP/gateway.toml" >"$TMP/wxgate-check.log" 2>&1 ||
    { cat "$TMP/wxgate-check.log" >&2; die "wxgate check failed"; }
taskset -c "$SERVER_CPU" "$WXGATE" run -c "$TMP/gateway.toml" >>"$TMP/wxgate.log" 2>&1 &
WXGATE_PID=$!
PIDS+=("$WXGATE_PID")
wait_http wxgate "http://127.0.0.1:$WXGATE_PORT/" "$TMP/wxgate.log" "$WXGATE_PID"
wait_http "wxgate admin" "http://127.0.0.1:$ADMIN_PORT/metrics" "$TMP/wxgate.log" "$WXGATE_PID"

TOKEN=$("$WXGATE" token -c "$TMP/gateway.toml" --openid obench --ttl 1h)
# A well-formed token signed with another secret, for the refusals.
write_gateway "$TMP/other.toml" "$(random_secret)"
BAD_TOKEN=$("$WXGATE" token -c "$TMP/other.toml" --openid obench --ttl 1h)
AUTH="Authorization: Bearer $TOKEN"

# Every listening socket of the processes started here is on 127.0.0.1.
listening=$(for pid in "${PIDS[@]}"; do ls -l "/proc/$pid/fd" 2>/dev/null; done |
    sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | sort -u | tr '\n' ' ')
ports=""
while read -r verdict where; do
    [ "$verdict" = ok ] || die "a server listens beyond loopback: $where (/proc/net/tcp notation)"
    ports+=" $((16#$where))"
done < <(awk -v ours="$listening" '
    BEGIN { n = split(ours, list, " "); for (i = 1; i <= n; i++) mine[list[i]] = 1 }
    $4 == "0A" && ($10 in mine) {
        split($2, local, ":")
        if (local[1] == "0100007F" || local[1] == "0000000000000000FFFF00000100007F") print "ok", local[2]
        else print "bad", $2
    }' /proc/net/tcp /proc/net/tcp6)
[ -n "$ports" ] || die "found no listening socket of the servers"
echo "  listening on 127.0.0.1 only, ports:$ports"

declare -A SERVER_PIDS=([direct]="$UPSTREAM_PID" [nginx]="$NGINX_PID $NGINX_WORKERS" [haproxy]="$HAPROXY_PID" [wxgate]="$WXGATE_PID")

# ---------------------------------------------------------------- correctness
say "correctness"
# expect SETUP WHAT STATUS SEEN_OPENID [curl args...]: status and the x-seen-openid echoed
# (only `/echo` echoes: the load runs on `/` cost the upstream the same in every setup).
expect() {
    local setup=$1 what=$2 want_status=$3 want_seen=$4
    shift 4
    local head status seen
    head=$(curl -s -o /dev/null -D - --max-time 5 "$@" "http://127.0.0.1:${PORT[$setup]}/echo") ||
        die "$setup: $what: no answer"
    status=$(printf '%s' "$head" | awk 'NR == 1 { print $2 }')
    seen=$(printf '%s' "$head" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-seen-openid" { print $2 }')
    if [ "$status" != "$want_status" ] || [ "$seen" != "$want_seen" ]; then
        die "$setup: $what: got $status x-seen-openid=${seen:--}, want $want_status x-seen-openid=${want_seen:--}"
    fi
    printf '  %-8s %-44s %s%s\n' "$setup" "$what" "$status" "${seen:+ (upstream saw X-OpenId: $seen)}"
}
expect direct "valid token" 200 "" -H "$AUTH"
expect nginx "valid token (no auth at nginx)" 200 "" -H "$AUTH"
for setup in haproxy wxgate; do
    expect "$setup" "valid token" 200 obench -H "$AUTH"
    expect "$setup" "valid token, spoofed X-OpenId" 200 obench -H "$AUTH" -H "X-OpenId: ospoof"
    expect "$setup" "token signed with another secret" 401 "" -H "Authorization: Bearer $BAD_TOKEN"
    expect "$setup" "garbage token" 401 "" -H "Authorization: Bearer abc.def.ghi"
    expect "$setup" "no token" 401 "" -H "X-OpenId: ospoof"
done
# (HAProxy's `http-request deny` answers 403 unless given deny_status; 401 here, like wxgate.)
grep -q '"GET /echo HTTP/1.1" 200' "$TMP/nginx-access.log" || die "nginx wrote no access-log line"
grep -q ' bench upstream/up ' "$TMP/haproxy.log" || die "haproxy wrote no access-log line"
grep -q 'wxgate::access' "$TMP/wxgate.log" || die "wxgate wrote no access-log line"
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics") || die "wxgate's /metrics does not answer"
grep -q '^wxgate_requests_total{.*route="/".*} [1-9]' <<<"$metrics" ||
    die "wxgate's /metrics does not count the proxied requests"
echo "  access logs written by nginx, haproxy and wxgate; wxgate /metrics counts the requests"

# ---------------------------------------------------------------- helpers for measuring
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of the given PIDs (all threads), in clock ticks
    local pid total=0 rest fields
    for pid in "$@"; do
        rest=$(cat "/proc/$pid/stat") || die "process $pid is gone"
        # after "pid (comm) ", fields 3...: utime and stime are the 14th and 15th
        read -r -a fields <<<"${rest##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}
rss_kib() { # VmRSS summed over the given PIDs
    local pid total=0 kib
    for pid in "$@"; do
        kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status") || die "process $pid is gone"
        total=$((total + kib))
    done
    echo "$total"
}
truncate_logs() { : >"$TMP/nginx-access.log"; : >"$TMP/haproxy.log"; : >"$TMP/wxgate.log"; }
alive() {
    local pid
    # shellcheck disable=SC2068
    for pid in ${SERVER_PIDS[@]}; do kill -0 "$pid" 2>/dev/null || die "server process $pid died; logs in $TMP"; done
}
# median of the arguments (mean of the middle two for an even count)
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# wrk prints latencies as 312.00us, 1.20ms, 2.00s
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1e3; else if (v ~ /m$/) m = 6e7; else m = 1e6; printf "%.0f", n * m }'; }
us_per_req() { awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

declare -A RPS P50 P99 PCPU UCPU
for setup in "${SETUPS[@]}"; do RPS[$setup]="" P50[$setup]="" P99[$setup]="" PCPU[$setup]="" UCPU[$setup]=""; done

# ---------------------------------------------------------------- idle memory
# First, while the processes are fresh: after the load tests their allocators hold freed
# memory that new connections would reuse without growing RSS.
say "idle memory: $IDLE keep-alive connections, one request each, then idle"
declare -A IDLE_KIB
# "direct" holds the connections at the upstream itself: a plain hyper 1 server, for scale.
for setup in "${SETUPS[@]}"; do
    alive
    # shellcheck disable=SC2086
    before=$(rss_kib ${SERVER_PIDS[$setup]})
    coproc IDLER { exec taskset -c "$LOADGEN_CPU" "$EX/bench_idle" "127.0.0.1:${PORT[$setup]}" "$IDLE" -H "$AUTH" 2>"$TMP/idle.err"; }
    # shellcheck disable=SC2153 # IDLER_PID is set by coproc
    idler_pid=$IDLER_PID
    PIDS+=("$idler_pid")
    line=""
    read -r -t 600 line <&"${IDLER[0]}" || true
    [ "$line" = "ready $IDLE" ] || { cat "$TMP/idle.err" >&2; die "$setup: idle connections: ${line:-no answer}"; }
    # shellcheck disable=SC2086
    after=$(rss_kib ${SERVER_PIDS[$setup]})
    echo check >&"${IDLER[1]}"
    read -r -t 60 line <&"${IDLER[0]}" || true
    eval "exec ${IDLER[1]}>&-"
    wait "$idler_pid" || true
    [ "$line" = "open $IDLE of $IDLE" ] || die "$setup closed idle connections during the measurement: $line"
    IDLE_KIB[$setup]=$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.2f", (a - b) / n }')
    printf '  %-8s RSS %7s KiB -> %7s KiB with %s idle connections (all still open): %s KiB/conn\n' \
        "$setup" "$before" "$after" "$IDLE" "${IDLE_KIB[$setup]}"
done

# ---------------------------------------------------------------- throughput
say "throughput: wrk -t1 -c$CONNS -d$DURATION --latency, $ROUNDS interleaved rounds"
# A short unrecorded run each first: upstream pools filled, code and allocators warm.
for setup in "${SETUPS[@]}"; do
    taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d1s -H "$AUTH" "http://127.0.0.1:${PORT[$setup]}/" >/dev/null 2>&1 ||
        die "wrk warm-up against $setup failed"
done
printf '  %-5s %-8s %10s %9s %9s %14s %14s\n' round setup req/s p50_us p99_us proxy_us/req upstr_us/req
for round in $(seq "$ROUNDS"); do
    for setup in "${SETUPS[@]}"; do
        alive
        truncate_logs
        # shellcheck disable=SC2086
        proxy_before=$(cpu_ticks ${SERVER_PIDS[$setup]})
        up_before=$(cpu_ticks "$UPSTREAM_PID")
        out="$TMP/wrk-$setup-$round.txt"
        taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -H "$AUTH" \
            "http://127.0.0.1:${PORT[$setup]}/" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed against $setup"; }
        # shellcheck disable=SC2086
        proxy_after=$(cpu_ticks ${SERVER_PIDS[$setup]})
        up_after=$(cpu_ticks "$UPSTREAM_PID")
        rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
        requests=$(awk '/ requests in / { print $1 }' "$out")
        p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$out")")
        p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$out")")
        bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
        if [ -z "$rps" ] || [ -z "$requests" ] || [ "$requests" -eq 0 ]; then
            cat "$out" >&2
            die "cannot read wrk's output"
        fi
        [ -z "$bad" ] || { cat "$out" >&2; die "$setup answered $bad non-2xx responses under load"; }
        errors=$(awk '/Socket errors:/' "$out")
        [ -z "$errors" ] || echo "  note: $setup round $round: $errors"
        pcpu=$(us_per_req $((proxy_after - proxy_before)) "$requests")
        ucpu=$(us_per_req $((up_after - up_before)) "$requests")
        RPS[$setup]+="$rps " P50[$setup]+="$p50 " P99[$setup]+="$p99 " PCPU[$setup]+="$pcpu " UCPU[$setup]+="$ucpu "
        [ "$setup" = direct ] && pcpu_shown="-" || pcpu_shown=$pcpu
        printf '  %-5s %-8s %10s %9s %9s %14s %14s\n' "$round" "$setup" "$rps" "$p50" "$p99" "$pcpu_shown" "$ucpu"
    done
done

# ---------------------------------------------------------------- open loop
say "open loop: $RATE req/s for ${DURATION_SECS}s (after 1s warm-up) over $CONNS connections, $OPEN_ROUNDS interleaved rounds"
declare -A OL50 OL99 OL999
for setup in "${SETUPS[@]}"; do OL50[$setup]="" OL99[$setup]="" OL999[$setup]=""; done
printf '  %-5s %-8s %8s %9s %9s %9s %9s\n' round setup req/s p50_us p99_us p999_us max_us
for round in $(seq "$OPEN_ROUNDS"); do
    for setup in "${SETUPS[@]}"; do
        alive
        truncate_logs
        line=$(taskset -c "$LOADGEN_CPU" "$EX/bench_openloop" "127.0.0.1:${PORT[$setup]}" --rate "$RATE" \
            --duration "$DURATION_SECS" --conns "$CONNS" -H "$AUTH" 2>"$TMP/openloop.err") ||
            { cat "$TMP/openloop.err" >&2; die "open-loop run against $setup failed"; }
        declare -A ol=()
        for kv in $line; do ol[${kv%%=*}]=${kv#*=}; done
        [ "${ol[errors]:-x}" = 0 ] || die "$setup: open loop: $line"
        OL50[$setup]+="${ol[p50_us]} " OL99[$setup]+="${ol[p99_us]} " OL999[$setup]+="${ol[p999_us]} "
        printf '  %-5s %-8s %8s %9s %9s %9s %9s\n' "$round" "$setup" "${ol[rps]}" "${ol[p50_us]}" "${ol[p99_us]}" "${ol[p999_us]}" "${ol[max_us]}"
        unset ol
    done
done

# ---------------------------------------------------------------- report
version() { "$@" 2>&1 | head -n 1 | sed 's/ Copyright.*//; s/ - http.*//' || true; }
echo
echo "## wxgate load benchmark"
echo
echo "- command: \`$COMMAND\` (wxgate $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ', modified'))"
echo "- machine: $CPUS CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), Linux $(uname -r)"
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- $(version nginx -v), $(version haproxy -v), $(version wrk -v), $(version rustc -V)"
echo "- pinning: wrk and bench clients on CPU $LOADGEN_CPU; upstream and proxies on CPU $SERVER_CPU"
echo "- upstream: hyper 1, one thread, 200 \`ok\` (examples/bench_upstream.rs)"
echo "- nginx: 1 worker, proxy_pass to upstream{} keepalive 64, HTTP/1.1 upstream, no auth; access log on (default combined format) to a file"
echo "- haproxy: nbthread 1, jwt_verify HS256 + X-OpenId from \`sub\` (signature only: no exp/aud/iss check), 401 otherwise; httplog to stdout, to a file"
echo "- wxgate: \`auth = \"required\"\` route, full token check (signature, exp, iss, aud, revocation), X-OpenId injected, token removed; access log to a file, metrics on; header_read_timeout 5m (it is also wxgate's idle keep-alive timeout, default 10s)"
echo "- every client sends the same HS256 bearer token (also to direct and nginx, which ignore it)"
echo
echo "### Throughput: wrk -t1 -c$CONNS -d$DURATION --latency, median of $ROUNDS interleaved rounds"
echo
echo "| setup | req/s | vs direct | p50 | p99 | proxy CPU µs/req | upstream CPU µs/req | idle KiB/conn |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
declare -A M_RPS M_CPU
for setup in "${SETUPS[@]}"; do
    # shellcheck disable=SC2086
    {
        M_RPS[$setup]=$(median ${RPS[$setup]})
        M_CPU[$setup]=$(median ${PCPU[$setup]})
        p50=$(median ${P50[$setup]})
        p99=$(median ${P99[$setup]})
        ucpu=$(median ${UCPU[$setup]})
    }
    if [ "$setup" = direct ]; then cpu="-"; else cpu=${M_CPU[$setup]}; fi
    printf '| %s | %.0f | %s× | %.0f µs | %.0f µs | %s | %s | %s |\n' "$setup" "${M_RPS[$setup]}" \
        "$(ratio "${M_RPS[$setup]}" "${M_RPS[direct]}")" "$p50" "$p99" "$cpu" "$ucpu" "${IDLE_KIB[$setup]:--}"
done
echo
echo "- wxgate vs nginx: $(ratio "${M_RPS[wxgate]}" "${M_RPS[nginx]}")× req/s, $(ratio "${M_CPU[wxgate]}" "${M_CPU[nginx]}")× CPU per request"
echo "- wxgate vs haproxy jwt: $(ratio "${M_RPS[wxgate]}" "${M_RPS[haproxy]}")× req/s, $(ratio "${M_CPU[wxgate]}" "${M_CPU[haproxy]}")× CPU per request"
echo "- \"direct\" CPU is the upstream's alone; the proxies' column is the proxy process (nginx: master + worker), measured from /proc/PID/stat"
echo "- idle KiB/conn: (VmRSS with $IDLE idle keep-alive connections − VmRSS before) / $IDLE, measured before the load tests (nginx: master + worker; direct: the upstream, a plain hyper 1 server)"
echo
echo "### Latency at a fixed rate: $RATE req/s open loop, ${DURATION_SECS}s, $CONNS connections, median of $OPEN_ROUNDS rounds"
echo
echo "Latency from each request's scheduled send time (no coordinated omission)."
echo
echo "| setup | p50 | p99 | p99.9 | added p50 | added p99 |"
echo "|---|---:|---:|---:|---:|---:|"
# shellcheck disable=SC2086
{
    d50=$(median ${OL50[direct]})
    d99=$(median ${OL99[direct]})
}
for setup in "${SETUPS[@]}"; do
    # shellcheck disable=SC2086
    {
        p50=$(median ${OL50[$setup]})
        p99=$(median ${OL99[$setup]})
        p999=$(median ${OL999[$setup]})
    }
    if [ "$setup" = direct ]; then
        added50="-" added99="-"
    else
        added50=$(awk -v a="$p50" -v b="$d50" 'BEGIN { printf "%+.0f µs", a - b }')
        added99=$(awk -v a="$p99" -v b="$d99" 'BEGIN { printf "%+.0f µs", a - b }')
    fi
    printf '| %s | %.0f µs | %.0f µs | %.0f µs | %s | %s |\n' "$setup" "$p50" "$p99" "$p999" "$added50" "$added99"
done
