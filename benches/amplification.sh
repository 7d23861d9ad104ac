#!/usr/bin/env bash
# Amplification under a single-source flood, RRL on, side by side (issue 13): gslbd, NSD and Knot
# serve the same zone with the same limits (200 responses/s per bucket, slip 2), and one client
# address sends RATE queries a second for SECS seconds for a ~1,000-byte TXT answer. Reported per
# server: queries sent, replies, full answers, TC=1 slips, bytes out / bytes in (the amplification
# factor: below 1, the attacker gets less than it sends), and the server's RSS after the flood;
# then the same flood with RRL off for gslbd (what an unprotected server gives).
#
# Usage: benches/amplification.sh [RATE] [SECS]     (defaults 10000 and 10)
# Needs nsd, knotd (Debian packages nsd, knot) and python3. Loopback only: the servers listen on
# 127.0.61.1-4 port 5300 and the flood comes from 127.0.61.100.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-10000}
SECS=${2:-10}
PORT=5300
cargo build --release --quiet
bin=$PWD/target/release/gslbd
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

chunk=$(printf 'x%.0s' $(seq 240))
cat > "$dir/zone" <<ZONE
\$ORIGIN example.com.
\$TTL 300
@ SOA ns hostmaster 1 3600 900 604800 60
@ NS ns
ns A 127.0.61.1
big TXT "$chunk" "$chunk" "$chunk" "$chunk"
ZONE

gslbd_conf() { # $1 address, $2 "true"/"false"
  cat <<CONF
[limits]
udp_workers = 1
[[zone]]
name = "example.com."
file = "$dir/zone"
[[listener]]
name = "all"
addresses = ["$1:$PORT"]
zones = ["*"]
tcp = false
[rrl]
enabled = $2
rate = 200
slip = 2
CONF
}
gslbd_conf 127.0.61.1 true > "$dir/gslbd.toml"
gslbd_conf 127.0.61.4 false > "$dir/gslbd-off.toml"
cat > "$dir/nsd.conf" <<CONF
server:
  ip-address: 127.0.61.2@$PORT
  username: ""
  chroot: ""
  zonesdir: "$dir"
  pidfile: "$dir/nsd.pid"
  database: ""
  xfrdfile: "$dir/xfrd.state"
  zonelistfile: "$dir/zone.list"
  server-count: 1
  rrl-ratelimit: 200
  rrl-slip: 2
  rrl-ipv4-prefix-length: 24
remote-control:
  control-enable: no
zone:
  name: example.com
  zonefile: "$dir/zone"
CONF
cat > "$dir/knot.conf" <<CONF
server:
  rundir: "$dir"
  listen: 127.0.61.3@$PORT
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
control:
  listen: "$dir/knot.sock"
database:
  storage: "$dir"
mod-rrl:
  - id: flood
    rate-limit: 200
    slip: 2
template:
  - id: default
    storage: "$dir"
    global-module: mod-rrl/flood
zone:
  - domain: example.com
    file: "$dir/zone"
CONF

"$bin" serve -c "$dir/gslbd.toml" 2>"$dir/gslbd.log" & pids+=($!); gpid=$!
"$bin" serve -c "$dir/gslbd-off.toml" 2>"$dir/gslbd-off.log" & pids+=($!); opid=$!
/usr/sbin/nsd -d -c "$dir/nsd.conf" >"$dir/nsd.log" 2>&1 & pids+=($!); npid=$!
/usr/sbin/knotd -c "$dir/knot.conf" >"$dir/knot.log" 2>&1 & pids+=($!); kpid=$!
sleep 2

# RSS of a process and its children (NSD forks its server), in MiB.
rss() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo $((total / 1024))
}

flood() { # $1 server address
  python3 - "$1" "$PORT" "$RATE" "$SECS" <<'PY'
import socket, struct, sys, time
addr, port, rate, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.61.100", 0))
s.setblocking(False)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
name = b"".join(bytes([len(l)]) + l for l in b"big.example.com".split(b".")) + b"\0"
def query(i):
    # EDNS 1232, no options: the 44-byte query the issue measured against.
    return struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 1) + name + struct.pack(">HH", 16, 1) \
        + b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
sent = bytes_in = replies = full = tc = bytes_out = 0
start = time.monotonic()
tick = 0.01
per_tick = max(1, int(rate * tick))
def drain():
    global replies, full, tc, bytes_out
    while True:
        try:
            r = s.recv(65535)
        except BlockingIOError:
            return
        replies += 1
        bytes_out += len(r)
        if r[2] & 0x02:
            tc += 1
        elif struct.unpack(">H", r[6:8])[0] > 0:
            full += 1
while time.monotonic() - start < secs:
    for _ in range(per_tick):
        q = query(sent)
        try:
            s.sendto(q, (addr, port))
        except BlockingIOError:
            continue
        sent += 1
        bytes_in += len(q)
    drain()
    next_at = start + (sent / rate)
    pause = next_at - time.monotonic()
    if pause > 0:
        time.sleep(pause)
time.sleep(0.3)
drain()
took = time.monotonic() - start
print(f"{sent} sent ({sent/took:.0f}/s), {replies} replies: {full} full, {tc} TC; "
      f"bytes out/in = {bytes_out}/{bytes_in} = {bytes_out/bytes_in:.2f}")
PY
}

echo "single-source flood, $RATE q/s for $SECS s, ~1,000-byte TXT answer, 200/s per bucket, slip 2:"
for s in "gslbd 127.0.61.1 $gpid" "NSD 127.0.61.2 $npid" "Knot 127.0.61.3 $kpid" "gslbd-rrl-off 127.0.61.4 $opid"; do
  set -- $s
  printf '%-14s %s; RSS %s MiB\n' "$1" "$(flood "$2")" "$(rss "$3")"
done
