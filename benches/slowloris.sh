#!/usr/bin/env bash
# Slowloris side by side (issue 13, item 3): gslbd, NSD and Knot DNS configured alike (16 TCP
# connections each; idle timeout 10 s; Knot's tcp-io-timeout and gslbd's tcp_io_timeout_ms 500 ms;
# NSD has only tcp-timeout, 10 s), each attacked over TCP by 32 clients that pipeline and never
# read, that sit idle, or that send a query a byte every 200 ms, while a legitimate client starts
# every 100 ms; the share answered within 2 s is the figure. Then HTTPDNS, gslbd alone (NSD and
# Knot have none): 128 idle sockets, 128 keep-alive clients, 128 trickled heads against
# max_connections = 64.
#
#   benches/slowloris.sh [SECS]        # SECS per attack, default 10 (~2.5 min in all)
#
# Addresses: 127.0.31.1 gslbd, 127.0.31.2 NSD, 127.0.31.3 Knot, port 5300; HTTP 127.0.31.1:8300.
# Loopback only. Every process it starts is killed on exit; the temporary directory removed.
set -euo pipefail
secs=${1:-10}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
nsd=$(command -v nsd || echo /usr/sbin/nsd)
knotd=$(command -v knotd || echo /usr/sbin/knotd)
for b in "$nsd" "$knotd"; do
    [ -x "$b" ] || { echo "$b missing: apt-get install nsd knot" >&2; exit 1; }
done
(cd "$root" && cargo build --release --quiet)
gslbd=$root/target/release/gslbd
d=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$d"
}
trap cleanup EXIT INT TERM

big=$(printf '"%s" ' $(for _ in $(seq 16); do printf 'x%.0s' $(seq 250); echo; done))
cat >"$d/example.com.zone" <<EOF
\$ORIGIN example.com.
\$TTL 300
@ SOA ns hostmaster 1 3600 900 604800 60
@ NS ns
ns A 127.0.0.1
big TXT $big
