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
gslbd=${GSLBD:-$root/target/release/gslbd}
[ -n "${GSLBD:-}" ] || (cd "$root" && cargo build --release --quiet)
d=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$d"
}
trap cleanup EXIT INT TERM

# 16 strings of 250 bytes: a ~4 KB reply to a ~40-byte query.
big=$(python3 -c 'print(" ".join(["\"" + "x" * 250 + "\""] * 16))')
printf '%s\n' '$ORIGIN example.com.' '$TTL 300' '@ SOA ns hostmaster 1 3600 900 604800 60' \
    '@ NS ns' 'ns A 127.0.0.1' "big TXT $big" >"$d/example.com.zone"

cat >"$d/gslbd.toml" <<CONF
[limits]
udp_workers = 1
tcp_max_connections = 16
tcp_idle_timeout_ms = 10000
tcp_io_timeout_ms = 500

[[zone]]
name = "example.com."
file = "example.com.zone"

[[listener]]
name = "all"
addresses = ["127.0.31.1:5300"]
zones = ["*"]

[http]
listen = ["127.0.31.1:8300"]
max_connections = 64
rate_limit = { per_ip = 0, per_account = 0, burst_seconds = 1 }
CONF

mkdir -p "$d/nsd" "$d/knot"
cat >"$d/nsd/nsd.conf" <<CONF
server:
    ip-address: 127.0.31.2@5300
    port: 5300
    do-ip6: no
    server-count: 1
    tcp-count: 16
    tcp-timeout: 10
    username: ""
    chroot: ""
    zonesdir: "$d"
    database: ""
    zonelistfile: "$d/nsd/zone.list"
    xfrdfile: "$d/nsd/xfrd.state"
    xfrdir: "$d/nsd"
    pidfile: "$d/nsd/nsd.pid"
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "example.com."
    zonefile: "$d/example.com.zone"
CONF

cat >"$d/knot/knot.conf" <<CONF
server:
    rundir: "$d/knot"
    pidfile: "$d/knot/knot.pid"
    listen: 127.0.31.3@5300
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
    tcp-max-clients: 16
    tcp-idle-timeout: 10
    tcp-io-timeout: 500
database:
    storage: "$d/knot/db"
control:
    listen: "$d/knot/knot.sock"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$d/knot"
    journal-content: none
    zonefile-sync: -1
zone:
  - domain: "example.com."
    file: "$d/example.com.zone"
CONF

"$gslbd" serve --config "$d/gslbd.toml" >"$d/gslbd.log" 2>&1 &
pids+=($!)
"$nsd" -d -c "$d/nsd/nsd.conf" >"$d/nsd.log" 2>&1 &
pids+=($!)
"$knotd" -c "$d/knot/knot.conf" >"$d/knot.log" 2>&1 &
pids+=($!)

# Ready when each answers over TCP (at most 10 s each).
for a in 127.0.31.1 127.0.31.2 127.0.31.3; do
    up=0
    for _ in $(seq 100); do
        if python3 -c '
import socket, struct, sys
q = struct.pack(">HHHHHH", 9, 0x100, 1, 0, 0, 0) + b"\x02ns\x07example\x03com\x00\x00\x01\x00\x01"
try:
    s = socket.create_connection((sys.argv[1], 5300), 0.5)
    s.sendall(struct.pack(">H", len(q)) + q)
    s.settimeout(0.5)
    sys.exit(0 if len(s.recv(2)) == 2 else 1)
except OSError:
    sys.exit(1)
' "$a"; then up=1; break; fi
        sleep 0.1
    done
    [ $up = 1 ] || { echo "$a does not answer; logs:" >&2; tail -5 "$d"/*.log >&2; exit 1; }
done

row() { # proto addr port attack attackers
    local ok total conns
    read -r ok total conns < <(python3 "$here/slowloris.py" "$1" "$2" "$3" "$4" --attackers "$5" --secs "$secs")
    printf '%d/%d (%d %%)' "$ok" "$total" $((100 * ok / (total > 0 ? total : 1)))
}

echo "| TCP attack (32 attackers, cap 16) | gslbd | NSD | Knot |"
echo "| --- | ---: | ---: | ---: |"
for attack in pipeline idle slow; do
    case $attack in
        pipeline) label="pipeline big replies, never read" ;;
        idle) label="connect and send nothing" ;;
        slow) label="a query a byte every 200 ms" ;;
    esac
    g=$(row dns 127.0.31.1 5300 $attack 32)
    n=$(row dns 127.0.31.2 5300 $attack 32)
    k=$(row dns 127.0.31.3 5300 $attack 32)
    echo "| $label | $g | $n | $k |"
done
echo
echo "| HTTP attack on gslbd (128 attackers, max_connections 64) | legitimate clients answered |"
echo "| --- | ---: |"
for attack in idle keepalive slow; do
    case $attack in
        idle) label="connect and send nothing" ;;
        keepalive) label="one request, then keep the connection" ;;
        slow) label="request head trickled, 64 bytes every 200 ms" ;;
    esac
    echo "| $label | $(row http 127.0.31.1 8300 $attack 128) |"
done
