#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: stable from run to run on a noisy
# machine, unlike timings, so this is what each change to the request path is measured with.
# wxgate (the release build) runs under valgrind in front of the bench upstream, on an
# `auth = "required"` route, and for each case a fixed number of requests is sent with
# h2load after a warm-up; only those requests are counted.
#
#   bash bench/callgrind.sh                  # REQUESTS=20000
#   KEEP_TMP=1 bash bench/callgrind.sh       # keep the callgrind.out.* files for callgrind_annotate
#
# Cases: plaintext HTTP/1.1, HTTPS HTTP/1.1, HTTPS HTTP/2 (on connections made during the
# warm-up, so no handshake is counted), and new TLS connections (a full handshake and one
# request each). Needs valgrind, h2load, curl and openssl (Debian: valgrind, nghttp2-client,
# curl, openssl).
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-20000}
HANDSHAKES=${HANDSHAKES:-200}
die() {
    echo "callgrind: $*" >&2
    exit 1
}
for tool in valgrind callgrind_control h2load curl openssl; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done

cargo build --release --locked --quiet
cargo build --release --locked --quiet --example bench_upstream
WXGATE=target/release/wxgate
UPSTREAM=target/release/examples/bench_upstream

TMP=$(mktemp -d "${TMPDIR:-/tmp}/wxgate-callgrind.XXXXXX")
PIDS=()
cleanup() {
    trap - EXIT
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

USED_PORTS=" "
pick_port() { # pick_port VAR...: ports below the ephemeral range, free now
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
pick_port UPSTREAM_PORT PORT TLS_PORT ADMIN_PORT

ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
{
    openssl req -x509 -new "${ec[@]}" -keyout "$TMP/ca.key" -out "$TMP/ca.crt" -days 2 -subj "/CN=wxgate callgrind CA" &&
        openssl req -new "${ec[@]}" -keyout "$TMP/tls.key" -out "$TMP/tls.csr" -subj "/CN=localhost" &&
        printf '%s\n' "subjectAltName = DNS:localhost, IP:127.0.0.1" "basicConstraints = critical, CA:FALSE" \
            "keyUsage = critical, digitalSignature" "extendedKeyUsage = serverAuth" >"$TMP/tls.ext" &&
        openssl x509 -req -in "$TMP/tls.csr" -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" -set_serial 0x1 -days 2 \
            -sha256 -extfile "$TMP/tls.ext" -out "$TMP/tls.crt"
} >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "openssl could not make the certificate"; }

SECRET=$(head -c 512 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 48)
cat >"$TMP/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
tls_listen = "127.0.0.1:$TLS_PORT"
tls_cert_file = "$TMP/tls.crt"
tls_key_file = "$TMP/tls.key"
header_read_timeout = "5m"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[wechat.apps]]
appid = "wx0123456789abcdef"
secret = "callgrind-app-secret-not-used"

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
"$WXGATE" check -c "$TMP/gateway.toml" >/dev/null
TOKEN=$("$WXGATE" token -c "$TMP/gateway.toml" --openid ocallgrind --ttl 1h)
AUTH="Authorization: Bearer $TOKEN"

"$UPSTREAM" "127.0.0.1:$UPSTREAM_PORT" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$TMP/callgrind.out.%p" \
    "$WXGATE" run -c "$TMP/gateway.toml" >"$TMP/wxgate.log" 2>&1 &
VG=$!
PIDS+=("$VG")
for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$ADMIN_PORT/healthz" || true)" = 200 ] && break
    kill -0 "$VG" 2>/dev/null || { tail -n 20 "$TMP/wxgate.log" >&2; die "wxgate exited under valgrind"; }
    sleep 0.2
done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "http://127.0.0.1:$PORT/")" = 200 ] || die "the route does not answer 200"

TLS13=(--tls13-ciphers=TLS_AES_128_GCM_SHA256 --groups=X25519)
run_h2load() { # run_h2load OUT ARGS...: fails unless every request was answered 2xx
    local out=$1
    shift
    h2load "$@" -H "$AUTH" >"$out.txt" 2>&1 || { cat "$out.txt" >&2; die "h2load failed"; }
    awk '/^status codes:/ { exit ($5 + $7 + $9 != 0) } /^requests:/ { for (i = 2; i <= NF; i++) if ($(i + 1) ~ "^(failed|errored|timeout)") bad += $i } END { exit bad != 0 }' \
        "$out.txt" || { cat "$out.txt" >&2; die "h2load counted failed or non-2xx requests"; }
}
# count NAME N: the instructions counted since the last call, per unit of N
count() {
    callgrind_control -d "$1" "$VG" >/dev/null 2>&1
    local file
    file=$(ls -t "$TMP"/callgrind.out.* | head -n 1)
    awk -v n="$2" -v name="$1" '/^(summary|totals):/ { ir = $2 } END { printf "  %-24s %12d Ir  %9.0f Ir per %s\n", name, ir, ir / n, (name ~ /handshake/ ? "connection" : "request") }' "$file"
}
measure() { # measure NAME N WARM H2LOAD_ARGS...: WARM requests of the same shape, then N counted
    local name=$1 n=$2 warm=$3
    shift 3
    run_h2load "$TMP/$name-warm" -n "$warm" "$@"
    callgrind_control -z "$VG" >/dev/null 2>&1
    run_h2load "$TMP/$name" -n "$n" "$@"
    count "$name" "$n"
}

echo "== instructions per request (callgrind, $REQUESTS requests a case, $HANDSHAKES handshakes)"
# Each h2load run makes its own connections: 4 of them amortised over the run's requests
# (less than 0.5 % of a request's count with TLS).
measure plaintext-h1 "$REQUESTS" "$((REQUESTS / 10))" --h1 -c4 -m1 "http://127.0.0.1:$PORT/"
measure https-h1 "$REQUESTS" "$((REQUESTS / 10))" --h1 -c4 -m1 "${TLS13[@]}" "https://127.0.0.1:$TLS_PORT/"
measure https-h2 "$REQUESTS" "$((REQUESTS / 10))" -c4 -m8 "${TLS13[@]}" "https://127.0.0.1:$TLS_PORT/"
measure https-handshake "$HANDSHAKES" "$HANDSHAKES" --h1 -c"$HANDSHAKES" -m1 "${TLS13[@]}" "https://127.0.0.1:$TLS_PORT/"
