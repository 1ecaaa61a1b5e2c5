#!/usr/bin/env bash
# A soak with injected faults: two wxgate instances (the release binary) sharing one
# redis-server, mixed traffic, and WeChat, upstream, Redis and reload faults on a schedule.
# See bench/README.md ("Soak with injected faults").
#
#   bash bench/soak.sh             # 10 minutes
#   SOAK=60s bash bench/soak.sh    # a short run (at least 30s)
#
# Everything listens on 127.0.0.1 only; every process it starts is stopped on exit. Exits
# non-zero when an assertion fails. KEEP_TMP=1 keeps the logs of a passing run.
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK=${SOAK:-10m}
command -v redis-server >/dev/null 2>&1 || {
    echo "soak: redis-server is not installed (apt-get install redis-server)" >&2
    exit 1
}

echo "== build"
# The gateways are the shipped release binary. The soak's own clients, mock WeChat and
# upstream are a debug build: they only need to keep up, and a debug build of the example
# avoids a second full LTO link.
cargo build --release --locked --bin wxgate
cargo build --locked --example soak

echo "== soak SOAK=$SOAK"
SOAK=$SOAK WXGATE_BIN=target/release/wxgate exec target/debug/examples/soak
