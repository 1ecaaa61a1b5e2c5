#!/usr/bin/env bash
# Load benchmark: wxgate against a direct upstream, nginx proxy_pass and HAProxy jwt_verify,
# interleaved in one run on one machine: plaintext HTTP/1.1, HTTPS (HTTP/1.1 and HTTP/2),
# TLS handshakes (full and resumed), idle connections (plaintext and TLS), and wxgate's
# logins and refreshes (memory and Redis store). See bench/README.md.
#
#   bash bench/run.sh                 # ROUNDS=5 DURATION=10s CONNS=64 RATE=2000 IDLE=5000 ...
#   QUICK=1 bash bench/run.sh         # a smoke test of a few minutes
#
# Everything listens on 127.0.0.1 only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# ---------------------------------------------------------------- options
if [ "${QUICK:-0}" = 1 ]; then
    ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-2s} IDLE=${IDLE:-1000}
    TLS_ROUNDS=${TLS_ROUNDS:-1} HS_ROUNDS=${HS_ROUNDS:-1} HS_DURATION=${HS_DURATION:-2s}
    LOGIN_ROUNDS=${LOGIN_ROUNDS:-1} LOGIN_DURATION=${LOGIN_DURATION:-2s}
fi
ROUNDS=${ROUNDS:-5}              # interleaved rounds of the plaintext throughput test
DURATION=${DURATION:-10s}        # wrk -d / h2load -D per run (also the open-loop run length)
CONNS=${CONNS:-64}               # wrk and h2load --h1 connections, and the open-loop connections
RATE=${RATE:-2000}               # open-loop requests per second
IDLE=${IDLE:-5000}               # idle keep-alive connections for the memory test
OPEN_ROUNDS=${OPEN_ROUNDS:-$ROUNDS}
TLS_ROUNDS=${TLS_ROUNDS:-3}      # interleaved rounds of each HTTPS throughput test (h1, h2)
H2_CONNS=${H2_CONNS:-16}         # HTTP/2 connections (h2load -c) ...
H2_STREAMS=${H2_STREAMS:-4}      # ... and concurrent streams on each (h2load -m)
HS_ROUNDS=${HS_ROUNDS:-3}        # interleaved rounds of the handshake test (full, resumed)
HS_DURATION=${HS_DURATION:-5s}   # each handshake run
HS_CONNS=${HS_CONNS:-$CONNS}     # concurrent handshaking clients
IDLE_TLS=${IDLE_TLS:-$IDLE}      # idle TLS keep-alive connections for the memory test
IDLE_WAIT=${IDLE_WAIT:-15}       # seconds the idle connections sit before VmRSS is read
LOGIN_ROUNDS=${LOGIN_ROUNDS:-3}  # interleaved rounds of the login test
LOGIN_DURATION=${LOGIN_DURATION:-5s}
LOGIN_CONNS=${LOGIN_CONNS:-16}   # concurrent login (refresh) clients
LOADGEN_CPU=${LOADGEN_CPU:-0}    # wrk, h2load and the bench clients
SERVER_CPU=${SERVER_CPU:-1}      # the upstream, the proxy under test, mock-wechat and Redis
SETUPS=(direct nginx haproxy wxgate)
COMMAND="ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS RATE=$RATE IDLE=$IDLE OPEN_ROUNDS=$OPEN_ROUNDS"
COMMAND+=" TLS_ROUNDS=$TLS_ROUNDS H2_CONNS=$H2_CONNS H2_STREAMS=$H2_STREAMS"
COMMAND+=" HS_ROUNDS=$HS_ROUNDS HS_DURATION=$HS_DURATION HS_CONNS=$HS_CONNS IDLE_TLS=$IDLE_TLS IDLE_WAIT=$IDLE_WAIT"
COMMAND+=" LOGIN_ROUNDS=$LOGIN_ROUNDS LOGIN_DURATION=$LOGIN_DURATION LOGIN_CONNS=$LOGIN_CONNS"
COMMAND+=" LOADGEN_CPU=$LOADGEN_CPU SERVER_CPU=$SERVER_CPU bash bench/run.sh"

die() {
    echo "bench: $*" >&2
    exit 1
}
say() { echo "== $*"; }

# A duration in wrk's form (10s, 1m, 10) as whole seconds, for the tools that take seconds.
secs_of() { # secs_of NAME: the variable NAME's duration in seconds
    local value=${!1} secs
    case "$value" in
    *m) secs=$((${value%m} * 60)) ;;
    *s) secs=${value%s} ;;
    *) secs=$value ;;
    esac
    [[ "$secs" =~ ^[1-9][0-9]*$ ]] || die "$1=$value: use seconds (10s) or minutes (1m)"
    echo "$secs"
}
DURATION_SECS=$(secs_of DURATION)
HS_SECS=$(secs_of HS_DURATION)
LOGIN_SECS=$(secs_of LOGIN_DURATION)
for n in ROUNDS CONNS RATE IDLE OPEN_ROUNDS TLS_ROUNDS H2_CONNS H2_STREAMS HS_ROUNDS HS_CONNS IDLE_TLS LOGIN_ROUNDS LOGIN_CONNS; do
    [[ "${!n}" =~ ^[1-9][0-9]*$ ]] || die "$n=${!n} is not a positive integer"
done

# ---------------------------------------------------------------- tools
say "tools"
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 && sudo="sudo"
fi
missing=()
for tool in wrk:wrk h2load:nghttp2-client nginx:nginx haproxy:haproxy redis-server:redis-server curl:curl openssl:openssl; do
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
for tool in wrk h2load nginx haproxy redis-server redis-cli curl openssl taskset cargo getconf; do
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
cargo build --release --locked --quiet --example bench_upstream --example bench_openloop \
    --example bench_idle --example bench_handshake --example bench_login
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WXGATE=$TARGET/release/wxgate
EX=$TARGET/release/examples
for bin in "$WXGATE" "$EX/bench_upstream" "$EX/bench_openloop" "$EX/bench_idle" "$EX/bench_handshake" "$EX/bench_login"; do
    [ -x "$bin" ] || die "build produced no $bin"
done

# ---------------------------------------------------------------- limits
# Each idle connection is a descriptor in the client and one in the proxy (plus the
# upstream side); leave room for wrk and the pools.
max_idle=$((IDLE > IDLE_TLS ? IDLE : IDLE_TLS))
need_fds=$((max_idle * 2 + 4096))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need_fds" ]; then
    ulimit -Hn "$need_fds" 2>/dev/null || die "ulimit -n: hard limit $hard < $need_fds needed for IDLE=$IDLE IDLE_TLS=$IDLE_TLS (raise it, or lower them)"
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
pick_port() { # pick_port VAR...
    local port var
    for var in "$@"; do
        for _ in $(seq 500); do
            port=$((20000 + RANDOM % 10000))
            case "$USED_PORTS" in *" $port "*) continue ;; esac
            if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                USED_PORTS+="$port "
                printf -v "$var" '%s' "$port"
                continue 2
            fi
        done
        die "no free port found"
    done
}
pick_port UPSTREAM_PORT NGINX_PORT HAPROXY_PORT WXGATE_PORT ADMIN_PORT
pick_port UPSTREAM_TLS_PORT NGINX_TLS_PORT HAPROXY_TLS_PORT WXGATE_TLS_PORT WXGATE_TLS_PLAIN_PORT ADMIN_TLS_PORT
pick_port MOCK_PORT REDIS_PORT LOGIN_MEMORY_PORT LOGIN_MEMORY_ADMIN LOGIN_REDIS_PORT LOGIN_REDIS_ADMIN
declare -A PORT=([direct]=$UPSTREAM_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [wxgate]=$WXGATE_PORT)
declare -A TLS_PORT=([direct]=$UPSTREAM_TLS_PORT [nginx]=$NGINX_TLS_PORT [haproxy]=$HAPROXY_TLS_PORT [wxgate]=$WXGATE_TLS_PORT)

# wait_http NAME URL LOGFILE PID [curl args]: until anything answers HTTP on URL (status
# other than 000).
wait_http() {
    local name=$1 url=$2 log=$3 pid=$4 code
    shift 4
    for _ in $(seq 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$@" "$url" || true)
        [ "$code" != 000 ] && return 0
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; die "$name exited during start-up"; }
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    die "$name did not answer on $url within 30 s"
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

# One ECDSA P-256 server certificate for localhost and 127.0.0.1, signed by a throwaway CA
# that the clients trust and verify it against. Served alone, as a leaf signed directly by a
# root would be.
TLS_DIR=$TMP/tls
mkdir -p "$TLS_DIR"
make_certificate() {
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 -new "${ec[@]}" -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" \
        -days 2 -subj "/CN=wxgate bench CA" &&
        openssl req -new "${ec[@]}" -keyout "$TLS_DIR/tls.key" -out "$TLS_DIR/tls.csr" -subj "/CN=localhost" &&
        printf '%s\n' "subjectAltName = DNS:localhost, IP:127.0.0.1" "basicConstraints = critical, CA:FALSE" \
            "keyUsage = critical, digitalSignature" "extendedKeyUsage = serverAuth" >"$TLS_DIR/tls.ext" &&
        openssl x509 -req -in "$TLS_DIR/tls.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
            -set_serial "0x$(openssl rand -hex 8)" -days 2 -sha256 -extfile "$TLS_DIR/tls.ext" -out "$TLS_DIR/tls.crt" &&
        cat "$TLS_DIR/tls.crt" "$TLS_DIR/tls.key" >"$TLS_DIR/haproxy.pem"
}
make_certificate >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "openssl could not make the certificate"; }
# curl to https://localhost:PORT, trusting the CA: curl_tls PORT
curl_tls() { echo "--cacert $TLS_DIR/ca.crt --resolve localhost:$1:127.0.0.1"; }

say "start (servers on CPU $SERVER_CPU, load generators on CPU $LOADGEN_CPU, temp dir $TMP)"
# Every TLS setup is its own process (the upstream behind the proxies is shared): the TLS
# idle-memory test runs on processes that no other test has used, and each test's CPU time
# is its own setup's.
start_upstream() { # start_upstream NAME PORT [--tls CERT KEY]: sets STARTED
    local name=$1 port=$2 scheme=http
    shift 2
    [ $# -eq 0 ] || scheme=https
    taskset -c "$SERVER_CPU" "$EX/bench_upstream" "127.0.0.1:$port" "$@" >"$TMP/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    # shellcheck disable=SC2046
    wait_http "$name" "$scheme://localhost:$port/" "$TMP/$name.log" "$STARTED" $(curl_tls "$port")
}
start_upstream upstream "$UPSTREAM_PORT"
UPSTREAM_PID=$STARTED
start_upstream upstream-tls "$UPSTREAM_TLS_PORT" --tls "$TLS_DIR/tls.crt" "$TLS_DIR/tls.key"
UPSTREAM_TLS_PID=$STARTED

# nginx: one worker on SERVER_CPU, upstream keep-alive, access log on (its default) to a file.
# With TLS: TLS 1.3 with the one suite and group, session tickets (its default, made
# explicit) with a lifetime like rustls', HTTP/2; and keep-alive limits out of the way
# (by default it closes a connection after 1,000 requests, and h2load does not reconnect).
mask="1$(printf '%*s' "$SERVER_CPU" '' | tr ' ' 0)"
nginx_version=$(nginx -v 2>&1 | sed 's#.*/##; s# .*##')
if [ "$(printf '%s\n' 1.25.1 "$nginx_version" | sort -V | head -n 1)" = 1.25.1 ]; then
    NGINX_H2_LISTEN="" NGINX_H2_ON="http2 on;"
else
    NGINX_H2_LISTEN=" http2" NGINX_H2_ON=""
fi
write_nginx() { # write_nginx NAME PORT TLS(0|1)
    local name=$1 port=$2 listen tls=""
    mkdir -p "$TMP/$name"
    if [ "$3" = 1 ]; then
        listen="listen 127.0.0.1:$port ssl$NGINX_H2_LISTEN;"
        tls="$NGINX_H2_ON
        ssl_certificate $TLS_DIR/tls.crt;
        ssl_certificate_key $TLS_DIR/tls.key;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        ssl_ecdh_curve X25519;
        ssl_session_tickets on;
        ssl_session_timeout 12h;
        keepalive_requests 1000000;
        keepalive_timeout 5m;"
    else
        listen="listen 127.0.0.1:$port;"
    fi
    cat >"$TMP/$name.conf" <<EOF
worker_processes 1;
worker_cpu_affinity $mask;
worker_rlimit_nofile $need_fds;
daemon off;
pid $TMP/$name.pid;
error_log $TMP/$name-error.log warn;
events { worker_connections $((max_idle + 4096)); }
http {
    access_log $TMP/$name-access.log;
    client_body_temp_path $TMP/$name/body;
    proxy_temp_path $TMP/$name/proxy;
    fastcgi_temp_path $TMP/$name/fastcgi;
    uwsgi_temp_path $TMP/$name/uwsgi;
    scgi_temp_path $TMP/$name/scgi;
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
    }
    server {
        $listen
        $tls
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}
start_nginx() { # start_nginx NAME PORT TLS(0|1): sets STARTED (master and worker PIDs)
    local name=$1 port=$2 pid workers scheme=http
    [ "$3" = 0 ] || scheme=https
    write_nginx "$@"
    nginx -t -q -p "$TMP/" -e "$TMP/$name-error.log" -c "$TMP/$name.conf" || die "nginx rejected $TMP/$name.conf"
    taskset -c "$SERVER_CPU" nginx -p "$TMP/" -e "$TMP/$name-error.log" -c "$TMP/$name.conf" >"$TMP/$name-stdout.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # shellcheck disable=SC2046
    wait_http "$name" "$scheme://localhost:$port/" "$TMP/$name-error.log" "$pid" $(curl_tls "$port")
    workers=$(children_of "$pid")
    [ -n "$workers" ] || die "no $name worker found"
    # shellcheck disable=SC2206
    PIDS+=($workers)
    STARTED="$pid $workers"
}
start_nginx nginx "$NGINX_PORT" 0
NGINX_GROUP=$STARTED
start_nginx nginx-tls "$NGINX_TLS_PORT" 1
NGINX_TLS_GROUP=$STARTED

# HAProxy: one thread on SERVER_CPU; the bearer must be an HS256 JWT whose signature
# jwt_verify accepts with the shared secret, and its `sub` becomes X-OpenId. HAProxy checks
# neither exp nor aud/iss here (wxgate does). Access log (httplog) to stdout, to a file.
# With TLS: TLS 1.3 with the one suite and group, ALPN h2 then http/1.1, OpenSSL's session
# tickets (HAProxy's default).
HA_MAXCONN=$((max_idle + 2048))
start_haproxy() { # start_haproxy NAME PORT TLS(0|1): sets STARTED
    local name=$1 port=$2 bind scheme=http
    bind="bind 127.0.0.1:$port"
    if [ "$3" = 1 ]; then
        scheme=https
        bind+=" ssl crt $TLS_DIR/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.3 ciphersuites TLS_AES_128_GCM_SHA256 curves X25519"
    fi
    cat >"$TMP/$name.cfg" <<EOF
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
    $bind
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny deny_status 401 unless { var(txn.alg) -m str HS256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$SECRET") -m int 1 }
    http-request set-header X-OpenId %[var(txn.bearer),jwt_payload_query('\$.sub')]
    default_backend upstream
backend upstream
    server up 127.0.0.1:$UPSTREAM_PORT
EOF
    haproxy -c -q -f "$TMP/$name.cfg" || die "haproxy rejected $TMP/$name.cfg"
    taskset -c "$SERVER_CPU" haproxy -db -f "$TMP/$name.cfg" >>"$TMP/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    # shellcheck disable=SC2046
    wait_http "$name" "$scheme://localhost:$port/" "$TMP/$name.log" "$STARTED" $(curl_tls "$port")
}
start_haproxy haproxy "$HAPROXY_PORT" 0
HAPROXY_PID=$STARTED
start_haproxy haproxy-tls "$HAPROXY_TLS_PORT" 1
HAPROXY_TLS_PID=$STARTED

# wxgate as shipped (access log on stderr, metrics on the admin listener), except
# header_read_timeout: hyper also applies it to an idle keep-alive connection waiting for
# its next request, and the idle-memory test holds connections longer than the default 10s.
# write_gateway FILE SECRET PORT ADMIN_PORT [SERVER_LINES] [WECHAT_LINES] [AUTH_LINES] [STORE_SECTION]
write_gateway() {
    cat >"$1" <<EOF
[server]
listen = "127.0.0.1:$3"
header_read_timeout = "5m"
${5:-}

[admin]
listen = "127.0.0.1:$4"

[wechat]
${6:-}
[[wechat.apps]]
appid = "wx0123456789abcdef"
secret = "bench-app-secret-not-used"

[auth]
audience = "bench"
${7:-}
[[auth.keys]]
kid = "bench"
alg = "HS256"
secret = "$2"

${8:-}

[[routes]]
prefix = "/"
upstream = "http://127.0.0.1:$UPSTREAM_PORT"
auth = "required"
EOF
}
start_wxgate() { # start_wxgate NAME CONFIG URL [curl args]: sets STARTED
    local name=$1 config=$2 url=$3
    shift 3
    "$WXGATE" check -c "$config" >"$TMP/$name-check.log" 2>&1 ||
        { cat "$TMP/$name-check.log" >&2; die "wxgate check failed for $name"; }
    taskset -c "$SERVER_CPU" "$WXGATE" run -c "$config" >>"$TMP/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_http "$name" "$url" "$TMP/$name.log" "$STARTED" "$@"
}
write_gateway "$TMP/gateway.toml" "$SECRET" "$WXGATE_PORT" "$ADMIN_PORT"
start_wxgate wxgate "$TMP/gateway.toml" "http://127.0.0.1:$WXGATE_PORT/"
WXGATE_PID=$STARTED
wait_http "wxgate admin" "http://127.0.0.1:$ADMIN_PORT/metrics" "$TMP/wxgate.log" "$WXGATE_PID"
write_gateway "$TMP/gateway-tls.toml" "$SECRET" "$WXGATE_TLS_PLAIN_PORT" "$ADMIN_TLS_PORT" \
    "tls_listen = \"127.0.0.1:$WXGATE_TLS_PORT\"
tls_cert_file = \"$TLS_DIR/tls.crt\"
tls_key_file = \"$TLS_DIR/tls.key\""
# shellcheck disable=SC2046
start_wxgate wxgate-tls "$TMP/gateway-tls.toml" "https://localhost:$WXGATE_TLS_PORT/" $(curl_tls "$WXGATE_TLS_PORT")
WXGATE_TLS_PID=$STARTED

# Logins: mock-wechat stands for WeChat; it, Redis and both gateways run on SERVER_CPU like
# the upstream. Redis without persistence (no RDB snapshots, no AOF): the test measures
# the gateway, not a disk. The login rate limit and WeChat's concurrency cap are raised out
# of the way: every login here comes from one address.
taskset -c "$SERVER_CPU" "$WXGATE" mock-wechat --listen "127.0.0.1:$MOCK_PORT" >>"$TMP/mock.log" 2>&1 &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
wait_http mock-wechat "http://127.0.0.1:$MOCK_PORT/" "$TMP/mock.log" "$MOCK_PID"
mkdir -p "$TMP/redis"
taskset -c "$SERVER_CPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$TMP/redis" >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 300); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$REDIS_PID" 2>/dev/null || { tail -n 20 "$TMP/redis.log" >&2; die "redis-server exited during start-up"; }
    sleep 0.1
done
[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || die "redis-server did not answer within 30 s"
LOGIN_WECHAT="api_base = \"http://127.0.0.1:$MOCK_PORT\"
max_concurrent_calls = 4096"
LOGIN_AUTH="login_rate_limit = { per_minute = 1000000000, burst = 1000000 }"
write_gateway "$TMP/gateway-login-memory.toml" "$SECRET" "$LOGIN_MEMORY_PORT" "$LOGIN_MEMORY_ADMIN" \
    "" "$LOGIN_WECHAT" "$LOGIN_AUTH" '[store]
backend = "memory"'
start_wxgate login-memory "$TMP/gateway-login-memory.toml" "http://127.0.0.1:$LOGIN_MEMORY_PORT/"
LOGIN_MEMORY_PID=$STARTED
write_gateway "$TMP/gateway-login-redis.toml" "$SECRET" "$LOGIN_REDIS_PORT" "$LOGIN_REDIS_ADMIN" \
    "" "$LOGIN_WECHAT" "$LOGIN_AUTH" "[store]
backend = \"redis\"
url = \"redis://127.0.0.1:$REDIS_PORT/0\"
key_prefix = \"wxgate-bench:\""
start_wxgate login-redis "$TMP/gateway-login-redis.toml" "http://127.0.0.1:$LOGIN_REDIS_PORT/"
LOGIN_REDIS_PID=$STARTED
declare -A LOGIN_PORT=([memory]=$LOGIN_MEMORY_PORT [redis]=$LOGIN_REDIS_PORT)
declare -A LOGIN_PID=([memory]=$LOGIN_MEMORY_PID [redis]=$LOGIN_REDIS_PID)
STORES=(memory redis)

TOKEN=$("$WXGATE" token -c "$TMP/gateway.toml" --openid obench --ttl 1h)
# A well-formed token signed with another secret, for the refusals.
write_gateway "$TMP/other.toml" "$(random_secret)" "$WXGATE_PORT" "$ADMIN_PORT"
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

# The processes of each setup: the plaintext ones, and the TLS terminators (for direct, the
# TLS upstream; the proxies forward to the plaintext upstream).
declare -A SERVER_PIDS=([direct]="$UPSTREAM_PID" [nginx]="$NGINX_GROUP" [haproxy]="$HAPROXY_PID" [wxgate]="$WXGATE_PID")
declare -A TLS_PIDS=([direct]="$UPSTREAM_TLS_PID" [nginx]="$NGINX_TLS_GROUP" [haproxy]="$HAPROXY_TLS_PID" [wxgate]="$WXGATE_TLS_PID")
EVERY_PID="${SERVER_PIDS[*]} ${TLS_PIDS[*]} $UPSTREAM_TLS_PID $MOCK_PID $REDIS_PID $LOGIN_MEMORY_PID $LOGIN_REDIS_PID"

# ---------------------------------------------------------------- correctness
say "correctness"
# expect SETUP URL WHAT STATUS SEEN_OPENID [curl args...]: status and the x-seen-openid
# echoed (only `/echo` echoes: the load runs on `/` cost the upstream the same in every
# setup). The protocol of the answer is shown.
expect() {
    local setup=$1 url=$2 what=$3 want_status=$4 want_seen=$5
    shift 5
    local head proto status seen
    head=$(curl -s -o /dev/null -D - --max-time 5 "$@" "$url/echo") || die "$setup: $what: no answer"
    proto=$(printf '%s' "$head" | awk 'NR == 1 { print $1 }')
    status=$(printf '%s' "$head" | awk 'NR == 1 { print $2 }')
    seen=$(printf '%s' "$head" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-seen-openid" { print $2 }')
    if [ "$status" != "$want_status" ] || [ "$seen" != "$want_seen" ]; then
        die "$setup: $what: got $status x-seen-openid=${seen:--}, want $want_status x-seen-openid=${want_seen:--}"
    fi
    printf '  %-8s %-52s %s %s%s\n' "$setup" "$what" "$proto" "$status" "${seen:+ (upstream saw X-OpenId: $seen)}"
}
for setup in "${SETUPS[@]}"; do
    plain="http://127.0.0.1:${PORT[$setup]}"
    tls="https://localhost:${TLS_PORT[$setup]}"
    # shellcheck disable=SC2207
    tls_args=($(curl_tls "${TLS_PORT[$setup]}"))
    if [ "$setup" = direct ] || [ "$setup" = nginx ]; then
        note=""
        [ "$setup" = nginx ] && note=" (no auth at nginx)"
        expect "$setup" "$plain" "valid token$note" 200 "" -H "$AUTH"
        expect "$setup" "$tls" "HTTPS h1: valid token$note" 200 "" "${tls_args[@]}" --http1.1 -H "$AUTH"
        expect "$setup" "$tls" "HTTPS h2: valid token$note" 200 "" "${tls_args[@]}" --http2 -H "$AUTH"
        continue
    fi
    expect "$setup" "$plain" "valid token" 200 obench -H "$AUTH"
    expect "$setup" "$plain" "valid token, spoofed X-OpenId" 200 obench -H "$AUTH" -H "X-OpenId: ospoof"
    expect "$setup" "$plain" "token signed with another secret" 401 "" -H "Authorization: Bearer $BAD_TOKEN"
    expect "$setup" "$plain" "garbage token" 401 "" -H "Authorization: Bearer abc.def.ghi"
    expect "$setup" "$plain" "no token" 401 "" -H "X-OpenId: ospoof"
    for proto in 1.1 2; do
        expect "$setup" "$tls" "HTTPS h${proto%.1}: valid token, spoofed X-OpenId" 200 obench "${tls_args[@]}" --http"$proto" -H "$AUTH" -H "X-OpenId: ospoof"
        expect "$setup" "$tls" "HTTPS h${proto%.1}: token signed with another secret" 401 "" "${tls_args[@]}" --http"$proto" -H "Authorization: Bearer $BAD_TOKEN"
        expect "$setup" "$tls" "HTTPS h${proto%.1}: no token" 401 "" "${tls_args[@]}" --http"$proto" -H "X-OpenId: ospoof"
    done
done
# (HAProxy's `http-request deny` answers 403 unless given deny_status; 401 here, like wxgate.)
grep -q '"GET /echo HTTP/1.1" 200' "$TMP/nginx-access.log" || die "nginx wrote no access-log line"
grep -q '"GET /echo HTTP/2.0" 200' "$TMP/nginx-tls-access.log" || die "nginx (TLS) wrote no HTTP/2 access-log line"
grep -q ' bench upstream/up ' "$TMP/haproxy.log" || die "haproxy wrote no access-log line"
grep -q ' bench~ upstream/up ' "$TMP/haproxy-tls.log" || die "haproxy (TLS) wrote no access-log line"
grep -q 'wxgate::access' "$TMP/wxgate.log" || die "wxgate wrote no access-log line"
grep -q 'wxgate::access' "$TMP/wxgate-tls.log" || die "wxgate (TLS) wrote no access-log line"
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics") || die "wxgate's /metrics does not answer"
grep -q '^wxgate_requests_total{.*route="/".*} [1-9]' <<<"$metrics" ||
    die "wxgate's /metrics does not count the proxied requests"
echo "  access logs written by nginx, haproxy and wxgate (plaintext and TLS); wxgate /metrics counts the requests"
# A login and a refresh through each store; the refresh token must work once, not twice.
for store in "${STORES[@]}"; do
    base="http://127.0.0.1:${LOGIN_PORT[$store]}/auth"
    answer=$(curl -s --max-time 5 -H 'Content-Type: application/json' -d "{\"code\":\"check-$store-$RANDOM$RANDOM\"}" "$base/login") ||
        die "$store store: login: no answer"
    refresh=$(sed -n 's/.*"refresh_token":"\([^"]*\)".*/\1/p' <<<"$answer")
    [ -n "$refresh" ] || die "$store store: login did not succeed: $answer"
    body="{\"refresh_token\":\"$refresh\"}"
    first=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Content-Type: application/json' -d "$body" "$base/refresh")
    again=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Content-Type: application/json' -d "$body" "$base/refresh")
    [ "$first" = 200 ] && [ "$again" = 400 ] || die "$store store: refresh answered $first, then $again (want 200, then 400)"
    printf '  %-8s %-52s %s\n' "login" "$store store: login 200, refresh 200, refresh again 400" ok
done
[ "$(redis-cli -p "$REDIS_PORT" --scan --pattern 'wxgate-bench:*' | head -n 1)" != "" ] ||
    die "the Redis store's gateway wrote nothing to Redis"

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
truncate_logs() {
    local log
    for log in nginx-access nginx-tls-access haproxy haproxy-tls wxgate wxgate-tls login-memory login-redis mock; do
        : >"$TMP/$log.log"
    done
}
alive() {
    local pid
    for pid in $EVERY_PID; do kill -0 "$pid" 2>/dev/null || die "server process $pid died; logs in $TMP"; done
}
# median of the arguments (mean of the middle two for an even count)
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# wrk and h2load print latencies as 312.00us, 1.20ms, 2.00s
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1e3; else if (v ~ /m$/) m = 6e7; else m = 1e6; printf "%.0f", n * m }'; }
us_per_req() { awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# parse_kv LINE: the tools' `key=value ...` result line into the associative array KV
declare -A KV
parse_kv() {
    local kv
    KV=()
    for kv in $1; do KV[${kv%%=*}]=${kv#*=}; done
}

# gated SECONDS CMD...: runs a bench tool that prints `ready`, waits for a line on stdin,
# measures and prints one result line, then waits for the end of its input. The CPU time
# of each PID list in GATED_GROUPS is taken around the measured part only (GATED_DELTA,
# in clock ticks); the result line is GATED_LINE.
GATED_GROUPS=()
GATED_DELTA=()
gated() {
    local wait_secs=$1 line="" i gated_pid
    shift
    local -a before=()
    coproc GATED { exec taskset -c "$LOADGEN_CPU" "$@" 2>"$TMP/gated.err"; }
    # shellcheck disable=SC2153 # GATED_PID is set by coproc
    gated_pid=$GATED_PID
    PIDS+=("$gated_pid")
    read -r -t 120 line <&"${GATED[0]}" || true
    [ "$line" = ready ] || { cat "$TMP/gated.err" >&2; die "$(basename "$1"): ${line:-no answer before measuring}"; }
    for i in "${!GATED_GROUPS[@]}"; do
        # shellcheck disable=SC2086
        before[i]=$(cpu_ticks ${GATED_GROUPS[i]})
    done
    echo go >&"${GATED[1]}"
    line=""
    read -r -t "$wait_secs" line <&"${GATED[0]}" || true
    GATED_DELTA=()
    for i in "${!GATED_GROUPS[@]}"; do
        # shellcheck disable=SC2086
        GATED_DELTA[i]=$(($(cpu_ticks ${GATED_GROUPS[i]}) - before[i]))
    done
    eval "exec ${GATED[1]}>&-"
    wait "$gated_pid" || true
    [ -n "$line" ] || { cat "$TMP/gated.err" >&2; die "$(basename "$1"): no result"; }
    GATED_LINE=$line
}

declare -A RPS P50 P99 PCPU UCPU
for setup in "${SETUPS[@]}"; do RPS[$setup]="" P50[$setup]="" P99[$setup]="" PCPU[$setup]="" UCPU[$setup]=""; done

# ---------------------------------------------------------------- idle memory
# First, while the processes are fresh: after the load tests their allocators hold freed
# memory that new connections would reuse without growing RSS.
# idle_kib SETUP LABEL PORT COUNT "PIDS" [bench_idle args]: sets KIB, VmRSS growth per idle
# connection
idle_kib() {
    local setup=$1 label=$2 port=$3 count=$4 pids=$5 before after line idler_pid
    shift 5
    alive
    # shellcheck disable=SC2086
    before=$(rss_kib $pids)
    coproc IDLER { exec taskset -c "$LOADGEN_CPU" "$EX/bench_idle" "127.0.0.1:$port" "$count" -H "$AUTH" "$@" 2>"$TMP/idle.err"; }
    # shellcheck disable=SC2153 # IDLER_PID is set by coproc
    idler_pid=$IDLER_PID
    PIDS+=("$idler_pid")
    line=""
    read -r -t 600 line <&"${IDLER[0]}" || true
    [ "$line" = "ready $count" ] || { cat "$TMP/idle.err" >&2; die "$setup: idle $label connections: ${line:-no answer}"; }
    # Idle means idle for a while: wxgate parks an HTTP/1 connection after 1 s without a
    # request, and its allocator returns the freed pages after a 10 s decay. Every setup
    # waits the same.
    sleep "$IDLE_WAIT"
    # shellcheck disable=SC2086
    after=$(rss_kib $pids)
    echo check >&"${IDLER[1]}"
    read -r -t 60 line <&"${IDLER[0]}" || true
    eval "exec ${IDLER[1]}>&-"
    wait "$idler_pid" || true
    [ "$line" = "open $count of $count" ] || die "$setup closed idle $label connections during the measurement: $line"
    KIB=$(awk -v a="$after" -v b="$before" -v n="$count" 'BEGIN { printf "%.2f", (a - b) / n }')
    printf '  %-8s %-9s RSS %7s KiB -> %7s KiB with %s idle connections (all still open): %s KiB/conn\n' \
        "$setup" "$label" "$before" "$after" "$count" "$KIB"
}
say "idle memory: $IDLE plaintext and $IDLE_TLS TLS keep-alive connections, one request each, then idle"
declare -A IDLE_KIB IDLE_TLS_KIB
# "direct" holds the connections at the upstream itself: a plain hyper 1 server, for scale.
for setup in "${SETUPS[@]}"; do
    idle_kib "$setup" plaintext "${PORT[$setup]}" "$IDLE" "${SERVER_PIDS[$setup]}"
    IDLE_KIB[$setup]=$KIB
done
for setup in "${SETUPS[@]}"; do
    idle_kib "$setup" TLS "${TLS_PORT[$setup]}" "$IDLE_TLS" "${TLS_PIDS[$setup]}" --tls "$TLS_DIR/ca.crt"
    IDLE_TLS_KIB[$setup]=$KIB
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

# ---------------------------------------------------------------- HTTPS throughput
# h2load over TLS 1.3 offering only the one suite and group, so every setup negotiates the
# same; HTTP/1.1 (--h1: CONNS connections, one request in flight on each) and HTTP/2
# (H2_CONNS connections, H2_STREAMS streams in flight on each).
TLS13=(--tls13-ciphers=TLS_AES_128_GCM_SHA256 --groups=X25519)
h2load_shape() { # h2load_shape h1|h2: h2load's connection options
    if [ "$1" = h1 ]; then echo "--h1 -c$CONNS -m1"; else echo "-c$H2_CONNS -m$H2_STREAMS"; fi
}
# h2load_run OUT SETUP h1|h2 DURATION: one run; fails on any error, non-2xx answer, or
# another protocol, suite or group than intended
h2load_run() {
    local out=$1 setup=$2 proto=$3 duration=$4 alpn want field
    # shellcheck disable=SC2046
    taskset -c "$LOADGEN_CPU" h2load -t1 $(h2load_shape "$proto") -D "$duration" "${TLS13[@]}" -H "$AUTH" \
        "https://127.0.0.1:${TLS_PORT[$setup]}/" >"$out" 2>&1 || { cat "$out" >&2; die "h2load ($proto) failed against $setup"; }
    [ "$proto" = h1 ] && alpn=http/1.1 || alpn=h2
    for want in "TLS Protocol: TLSv1.3" "Cipher: TLS_AES_128_GCM_SHA256" "Server Temp Key: X25519" "Application protocol: $alpn"; do
        grep -q "^$want" "$out" || { cat "$out" >&2; die "$setup ($proto): h2load did not negotiate $want"; }
    done
    for field in failed errored timeout; do
        awk -v f="$field" '/^requests:/ { for (i = 2; i <= NF; i++) if ($(i + 1) ~ "^" f) exit ($i != 0) }' "$out" ||
            { cat "$out" >&2; die "$setup ($proto): h2load counted $field requests"; }
    done
    awk '/^status codes:/ { exit ($5 + $7 + $9 != 0) }' "$out" || { cat "$out" >&2; die "$setup ($proto) answered non-2xx under load"; }
}
declare -A TRPS TLAT TPCPU TUCPU
for key in {direct,nginx,haproxy,wxgate}-{h1,h2}; do TRPS[$key]="" TLAT[$key]="" TPCPU[$key]="" TUCPU[$key]=""; done
say "HTTPS throughput: h2load -t1, HTTP/1.1 ($(h2load_shape h1)) and HTTP/2 ($(h2load_shape h2)), -D $DURATION, $TLS_ROUNDS interleaved rounds"
# A short unrecorded run each first: TLS sessions, pools, code and allocators warm.
for proto in h1 h2; do
    for setup in "${SETUPS[@]}"; do h2load_run "$TMP/h2load-warm.txt" "$setup" "$proto" 1s; done
done
echo "  every setup negotiated TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, and h2 or http/1.1 as asked"
printf '  %-5s %-5s %-8s %10s %10s %14s %14s\n' round proto setup req/s mean_us tls_us/req upstr_us/req
for round in $(seq "$TLS_ROUNDS"); do
    for proto in h1 h2; do
        for setup in "${SETUPS[@]}"; do
            alive
            truncate_logs
            # shellcheck disable=SC2086
            tls_before=$(cpu_ticks ${TLS_PIDS[$setup]})
            up_before=$(cpu_ticks "$UPSTREAM_PID")
            out="$TMP/h2load-$proto-$setup-$round.txt"
            h2load_run "$out" "$setup" "$proto" "$DURATION"
            # shellcheck disable=SC2086
            tls_after=$(cpu_ticks ${TLS_PIDS[$setup]})
            up_after=$(cpu_ticks "$UPSTREAM_PID")
            rps=$(awk '/^finished in/ { printf "%.0f", $4 }' "$out")
            done_requests=$(awk '/^requests:/ { for (i = 2; i <= NF; i++) if ($(i + 1) ~ /^succeeded/) print $i }' "$out")
            mean=$(to_us "$(awk '/^time for request:/ { print $6 }' "$out")")
            if [ -z "$rps" ] || [ -z "$done_requests" ] || [ "$done_requests" -eq 0 ]; then
                cat "$out" >&2
                die "cannot read h2load's output"
            fi
            key=$setup-$proto
            tcpu=$(us_per_req $((tls_after - tls_before)) "$done_requests")
            if [ "$setup" = direct ]; then ucpu="-"; else ucpu=$(us_per_req $((up_after - up_before)) "$done_requests"); fi
            TRPS[$key]+="$rps " TLAT[$key]+="$mean " TPCPU[$key]+="$tcpu " TUCPU[$key]+="$ucpu "
            printf '  %-5s %-5s %-8s %10s %10s %14s %14s\n' "$round" "$proto" "$setup" "$rps" "$mean" "$tcpu" "$ucpu"
        done
    done
done

# ---------------------------------------------------------------- handshakes
say "TLS handshakes: $HS_CONNS clients, a new connection per request, full and resumed, ${HS_SECS}s each (after 1s warm-up), $HS_ROUNDS interleaved rounds"
declare -A HCPS HCPU HRES
for key in {direct,nginx,haproxy,wxgate}-{full,resumed}; do HCPS[$key]="" HCPU[$key]="" HRES[$key]=""; done
printf '  %-5s %-8s %-8s %9s %9s %9s %9s %14s\n' round kind setup conn/s resumed p50_us p99_us tls_us/conn
for round in $(seq "$HS_ROUNDS"); do
    for kind in full resumed; do
        for setup in "${SETUPS[@]}"; do
            alive
            truncate_logs
            resume=()
            [ "$kind" = resumed ] && resume=(--resume)
            GATED_GROUPS=("${TLS_PIDS[$setup]}")
            gated $((HS_SECS + 60)) "$EX/bench_handshake" "127.0.0.1:${TLS_PORT[$setup]}" --ca "$TLS_DIR/ca.crt" \
                --conns "$HS_CONNS" --duration "$HS_SECS" "${resume[@]}" -H "$AUTH"
            parse_kv "$GATED_LINE"
            [ "${KV[errors]:-x}" = 0 ] && [ "${KV[connections]:-0}" -gt 0 ] || { cat "$TMP/gated.err" >&2; die "$setup: $kind handshakes: $GATED_LINE"; }
            resumed=$(awk -v r="${KV[resumed]}" -v n="${KV[connections]}" 'BEGIN { printf "%.1f", 100 * r / n }')
            if [ "$kind" = full ] && [ "${KV[resumed]}" != 0 ]; then die "$setup: a full-handshake run resumed ${KV[resumed]} sessions"; fi
            key=$setup-$kind
            cpu=$(us_per_req "${GATED_DELTA[0]}" "${KV[connections]}")
            HCPS[$key]+="${KV[cps]} " HCPU[$key]+="$cpu " HRES[$key]+="$resumed "
            printf '  %-5s %-8s %-8s %9s %8s%% %9s %9s %14s\n' "$round" "$kind" "$setup" "${KV[cps]}" "$resumed" "${KV[p50_us]}" "${KV[p99_us]}" "$cpu"
        done
    done
done
for setup in "${SETUPS[@]}"; do
    # shellcheck disable=SC2086
    low=$(median ${HRES[$setup-resumed]})
    if awk -v r="$low" 'BEGIN { exit !(r < 90) }'; then
        echo "  note: $setup resumed only $low% of the sessions it could (median)"
    fi
done

# ---------------------------------------------------------------- logins
say "logins: $LOGIN_CONNS clients on keep-alive connections through mock-wechat, memory and Redis stores, ${LOGIN_SECS}s each (after 1s warm-up), $LOGIN_ROUNDS interleaved rounds"
declare -A LRPS L50 L99 LCPU LMOCK LREDIS
for key in {memory,redis}-{login,refresh}; do LRPS[$key]="" L50[$key]="" L99[$key]="" LCPU[$key]="" LMOCK[$key]="" LREDIS[$key]=""; done
printf '  %-5s %-8s %-7s %9s %9s %9s %14s %12s %12s\n' round op store per_s p50_us p99_us wxgate_us/op mock_us/op redis_us/op
for round in $(seq "$LOGIN_ROUNDS"); do
    for op in login refresh; do
        for store in "${STORES[@]}"; do
            alive
            truncate_logs
            GATED_GROUPS=("${LOGIN_PID[$store]}" "$MOCK_PID" "$REDIS_PID")
            gated $((LOGIN_SECS + 60)) "$EX/bench_login" "127.0.0.1:${LOGIN_PORT[$store]}" --mode "$op" \
                --conns "$LOGIN_CONNS" --duration "$LOGIN_SECS"
            parse_kv "$GATED_LINE"
            [ "${KV[errors]:-x}" = 0 ] && [ "${KV[requests]:-0}" -gt 0 ] || { cat "$TMP/gated.err" >&2; die "$store store: ${op}s: $GATED_LINE"; }
            key=$store-$op
            cpu=$(us_per_req "${GATED_DELTA[0]}" "${KV[requests]}")
            mock=$(us_per_req "${GATED_DELTA[1]}" "${KV[requests]}")
            if [ "$store" = redis ]; then redis=$(us_per_req "${GATED_DELTA[2]}" "${KV[requests]}"); else redis="-"; fi
            LRPS[$key]+="${KV[rps]} " L50[$key]+="${KV[p50_us]} " L99[$key]+="${KV[p99_us]} "
            LCPU[$key]+="$cpu " LMOCK[$key]+="$mock " LREDIS[$key]+="$redis "
            printf '  %-5s %-8s %-7s %9s %9s %9s %14s %12s %12s\n' "$round" "$op" "$store" "${KV[rps]}" "${KV[p50_us]}" "${KV[p99_us]}" "$cpu" "$mock" "$redis"
        done
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
echo "- $(version nginx -v), $(version haproxy -v), $(version wrk -v), $(version h2load --version), $(version redis-server --version | cut -d' ' -f1-3), $(version openssl version), $(version rustc -V)"
echo "- pinning: wrk, h2load and bench clients on CPU $LOADGEN_CPU; upstream, proxies, mock-wechat and Redis on CPU $SERVER_CPU"
echo "- upstream: hyper 1, one thread, 200 \`ok\` (examples/bench_upstream.rs)"
echo "- nginx: 1 worker, proxy_pass to upstream{} keepalive 64, HTTP/1.1 upstream, no auth; access log on (default combined format) to a file"
echo "- haproxy: nbthread 1, jwt_verify HS256 + X-OpenId from \`sub\` (signature only: no exp/aud/iss check), 401 otherwise; httplog to stdout, to a file"
echo "- wxgate: \`auth = \"required\"\` route, full token check (signature, exp, iss, aud, revocation), X-OpenId injected, token removed; access log to a file, metrics on; header_read_timeout 5m (it is also wxgate's idle keep-alive timeout, default 10s)"
echo "- every client sends the same HS256 bearer token (also to direct and nginx, which ignore it)"
echo "- HTTPS: TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, one ECDSA P-256 certificate; nginx and HAProxy terminate TLS themselves (OpenSSL), wxgate with its \`tls_listen\` (rustls, aws-lc-rs), direct is the upstream terminating TLS itself (tokio-rustls, aws-lc-rs); each TLS setup is its own process, forwarding in plaintext to the same upstream"
echo
echo "### Throughput: wrk -t1 -c$CONNS -d$DURATION --latency, median of $ROUNDS interleaved rounds"
echo
echo "| setup | req/s | vs direct | p50 | p99 | proxy CPU µs/req | upstream CPU µs/req |"
echo "|---|---:|---:|---:|---:|---:|---:|"
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
    printf '| %s | %.0f | %s× | %.0f µs | %.0f µs | %s | %s |\n' "$setup" "${M_RPS[$setup]}" \
        "$(ratio "${M_RPS[$setup]}" "${M_RPS[direct]}")" "$p50" "$p99" "$cpu" "$ucpu"
done
echo
echo "- wxgate vs nginx: $(ratio "${M_RPS[wxgate]}" "${M_RPS[nginx]}")× req/s, $(ratio "${M_CPU[wxgate]}" "${M_CPU[nginx]}")× CPU per request"
echo "- wxgate vs haproxy jwt: $(ratio "${M_RPS[wxgate]}" "${M_RPS[haproxy]}")× req/s, $(ratio "${M_CPU[wxgate]}" "${M_CPU[haproxy]}")× CPU per request"
echo "- \"direct\" CPU is the upstream's alone; the proxies' column is the proxy process (nginx: master + worker), measured from /proc/PID/stat"
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

# tls_table h1|h2 TITLE: the HTTPS throughput table of one protocol
tls_table() {
    local proto=$1 setup key cpu ucpu
    local -A rps tcpu
    echo
    echo "### $2"
    echo
    echo "| setup | req/s | vs direct | mean latency | TLS terminator CPU µs/req | upstream CPU µs/req |"
    echo "|---|---:|---:|---:|---:|---:|"
    for setup in "${SETUPS[@]}"; do
        key=$setup-$proto
        # shellcheck disable=SC2086
        {
            rps[$setup]=$(median ${TRPS[$key]})
            tcpu[$setup]=$(median ${TPCPU[$key]})
            mean=$(median ${TLAT[$key]})
        }
        # shellcheck disable=SC2086
        if [ "$setup" = direct ]; then ucpu="-"; else ucpu=$(median ${TUCPU[$key]}); fi
        printf '| %s | %.0f | %s× | %.0f µs | %s | %s |\n' "$setup" "${rps[$setup]}" \
            "$(ratio "${rps[$setup]}" "${rps[direct]}")" "$mean" "${tcpu[$setup]}" "$ucpu"
    done
    echo
    echo "- wxgate vs nginx: $(ratio "${rps[wxgate]}" "${rps[nginx]}")× req/s, $(ratio "${tcpu[wxgate]}" "${tcpu[nginx]}")× CPU per request"
    echo "- wxgate vs haproxy jwt: $(ratio "${rps[wxgate]}" "${rps[haproxy]}")× req/s, $(ratio "${tcpu[wxgate]}" "${tcpu[haproxy]}")× CPU per request"
}
tls_table h1 "HTTPS, HTTP/1.1: h2load --h1 -t1 -c$CONNS -D $DURATION, median of $TLS_ROUNDS interleaved rounds"
tls_table h2 "HTTPS, HTTP/2: h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D $DURATION, median of $TLS_ROUNDS interleaved rounds"
echo
echo "- \"TLS terminator\" is the process holding the client's TLS connection: for direct the upstream itself (so it has no separate upstream column), for the proxies the proxy (nginx: master + worker)"

echo
echo "### New TLS connections: $HS_CONNS clients, one request per connection, ${HS_SECS}s, median of $HS_ROUNDS interleaved rounds"
echo
echo "| setup | full: conn/s | vs direct | CPU µs/conn | resumed: conn/s | vs direct | CPU µs/conn | resumed |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
declare -A M_FULL M_RES M_FCPU M_RCPU
for setup in "${SETUPS[@]}"; do
    # shellcheck disable=SC2086
    {
        M_FULL[$setup]=$(median ${HCPS[$setup-full]})
        M_RES[$setup]=$(median ${HCPS[$setup-resumed]})
        M_FCPU[$setup]=$(median ${HCPU[$setup-full]})
        M_RCPU[$setup]=$(median ${HCPU[$setup-resumed]})
        res=$(median ${HRES[$setup-resumed]})
    }
    printf '| %s | %.0f | %s× | %s | %.0f | %s× | %s | %s%% |\n' "$setup" \
        "${M_FULL[$setup]}" "$(ratio "${M_FULL[$setup]}" "${M_FULL[direct]}")" "${M_FCPU[$setup]}" \
        "${M_RES[$setup]}" "$(ratio "${M_RES[$setup]}" "${M_RES[direct]}")" "${M_RCPU[$setup]}" "$res"
done
echo
for other in nginx haproxy; do
    echo "- wxgate vs $other: full $(ratio "${M_FULL[wxgate]}" "${M_FULL[$other]}")× conn/s at $(ratio "${M_FCPU[wxgate]}" "${M_FCPU[$other]}")× CPU per connection; resumed $(ratio "${M_RES[wxgate]}" "${M_RES[$other]}")× conn/s at $(ratio "${M_RCPU[wxgate]}" "${M_RCPU[$other]}")× CPU"
done
echo "- CPU µs/conn: the TLS terminator's CPU per connection (handshake, one proxied request, close); \`resumed\`: the share of the measured connections that resumed a session (TLS 1.3 tickets; each client resumes its own previous session)"

echo
echo "### Idle connections: KiB of VmRSS per idle keep-alive connection"
echo
echo "| setup | plaintext ($IDLE) | vs direct | TLS ($IDLE_TLS) | vs direct |"
echo "|---|---:|---:|---:|---:|"
for setup in "${SETUPS[@]}"; do
    printf '| %s | %s | %s× | %s | %s× |\n' "$setup" "${IDLE_KIB[$setup]}" "$(ratio "${IDLE_KIB[$setup]}" "${IDLE_KIB[direct]}")" \
        "${IDLE_TLS_KIB[$setup]}" "$(ratio "${IDLE_TLS_KIB[$setup]}" "${IDLE_TLS_KIB[direct]}")"
done
echo
echo "- (VmRSS with the idle connections − VmRSS before) / connections, measured ${IDLE_WAIT} s after the last connection was served, first, on processes no load test had used yet (nginx: master + worker; direct: the upstream, a plain hyper 1 server, for scale); TLS: full TLS 1.3 handshakes, HTTP/1.1, one request each"

echo
echo "### Logins and refreshes: $LOGIN_CONNS clients, keep-alive HTTP/1.1, ${LOGIN_SECS}s, median of $LOGIN_ROUNDS interleaved rounds"
echo
echo "| store | operation | per second | vs memory | p50 | p99 | wxgate CPU µs/op | mock-wechat CPU µs/op | Redis CPU µs/op |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
declare -A M_L M_LCPU
for op in login refresh; do
    for store in "${STORES[@]}"; do
        key=$store-$op
        # shellcheck disable=SC2086
        {
            M_L[$key]=$(median ${LRPS[$key]})
            M_LCPU[$key]=$(median ${LCPU[$key]})
            p50=$(median ${L50[$key]})
            p99=$(median ${L99[$key]})
            mock=$(median ${LMOCK[$key]})
        }
        # shellcheck disable=SC2086
        if [ "$store" = redis ]; then redis=$(median ${LREDIS[$key]}); else redis="-"; fi
        printf '| %s | %s | %.0f | %s× | %.0f µs | %.0f µs | %s | %s | %s |\n' "$store" "$op" "${M_L[$key]}" \
            "$(ratio "${M_L[$key]}" "${M_L[memory-$op]}")" "$p50" "$p99" "${M_LCPU[$key]}" "$mock" "$redis"
    done
done
echo
echo "- Redis vs memory store: logins $(ratio "${M_L[redis-login]}" "${M_L[memory-login]}")× per second at $(ratio "${M_LCPU[redis-login]}" "${M_LCPU[memory-login]}")× wxgate CPU; refreshes $(ratio "${M_L[redis-refresh]}" "${M_L[memory-refresh]}")× at $(ratio "${M_LCPU[redis-refresh]}" "${M_LCPU[memory-refresh]}")×"
echo "- a login: POST /auth/login with a fresh code, which wxgate exchanges at mock-wechat (jscode2session over keep-alive HTTP), then a session stored and two tokens signed; a refresh: POST /auth/refresh, rotating the refresh token"
echo "- wxgate CPU is the gateway's process alone; mock-wechat's and Redis's CPU are measured apart (/proc/PID/stat over the same window); mock-wechat stands for WeChat and would not be on the gateway's machine"
