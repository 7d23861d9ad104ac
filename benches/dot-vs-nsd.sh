#!/usr/bin/env bash
# DoT: server CPU per query, gslbd beside NSD (tls-port) on the same zone, in one run:
#   long  = one long-lived connection (dnsperf -m dot -c 1), CPU / queries answered;
#   short = a new TLS connection per query (kdig +tls, N times), CPU / query (handshake included).
# CPU = utime+stime of the server's processes from /proc (all threads, all NSD children).
# Everything on loopback (127.0.33.1 gslbd, 127.0.33.2 NSD). Needs nsd, dnsperf, kdig, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-5}; SHORT=${SHORT:-200}
bin=${GSLBD:-target/release/gslbd}
[ -x "$bin" ] || cargo build --release --bin gslbd
dir=$(mktemp -d); trap 'kill $GPID $NPID 2>/dev/null || true; sleep 0.5; rm -rf "$dir"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=bench \
  -addext subjectAltName=IP:127.0.33.1,IP:127.0.33.2 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
printf '$ORIGIN example.com.\n$TTL 300\n@ SOA ns hostmaster 1 3600 900 604800 60\n@ NS ns\nns A 127.0.0.1\nwww A 192.0.2.80\n' > "$dir/example.com.zone"
cat > "$dir/gslbd.toml" <<EOT
[limits]
udp_workers = 1
[[zone]]
name = "example.com."
file = "example.com.zone"
[[listener]]
name = "all"
addresses = ["127.0.33.1:5353"]
zones = ["*"]
dot = "127.0.33.1:8853"
tls = { cert = "cert.pem", key = "key.pem" }
EOT
cat > "$dir/nsd.conf" <<EOT
server:
  ip-address: 127.0.33.2@5353
  ip-address: 127.0.33.2@8853
  tls-port: 8853
  tls-service-key: "$dir/key.pem"
  tls-service-pem: "$dir/cert.pem"
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$dir"
  pidfile: "$dir/nsd.pid"
  xfrdfile: "$dir/xfrd.state"
  zonelistfile: "$dir/zone.list"
  database: ""
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: example.com.
  zonefile: example.com.zone
EOT
"$bin" serve --config "$dir/gslbd.toml" >"$dir/gslbd.log" 2>&1 & GPID=$!
nsd -d -c "$dir/nsd.conf" >"$dir/nsd.log" 2>&1 & NPID=$!
sleep 2; [ -n "${DEBUG:-}" ] && ss -ltnp | grep -E "8853|5353" >&2
tree() { local c; echo "$1"; for c in $(pgrep -P "$1" || true); do tree "$c"; done; }
cpu() { # ticks of $1 and all its descendants (NSD forks twice: main, then server children)
  local t=0 p
  for p in $(tree "$1"); do
    # Fields after the command name, which may hold spaces ("nsd: server 1"): utime, stime.
    [ -r /proc/$p/stat ] && t=$(( t + $(sed 's/.*) //' /proc/$p/stat | awk '{print $12+$13}') ))
  done
  echo $t
}
hz=$(getconf CLK_TCK)
printf 'www.example.com A\n' > "$dir/q"
for who in gslbd:127.0.33.1:$GPID nsd:127.0.33.2:$NPID; do
  IFS=: read -r name ip pid <<<"$who"
  kdig @"$ip" -p 8853 +tls +short www.example.com | grep -q 192.0.2.80 || { echo "$name: no DoT answer"; exit 1; }
  a=$(cpu "$pid")
  n=$(dnsperf -m dot -s "$ip" -p 8853 -d "$dir/q" -l "$SECS" -c 1 -q 20 2>/dev/null | awk '/Queries completed/ {print $3}')
  b=$(cpu "$pid"); [ -n "${DEBUG:-}" ] && echo "$name pids: $(tree "$pid" | tr "\n" " ") ticks $a -> $b" >&2
  for _ in $(seq "$SHORT"); do kdig @"$ip" -p 8853 +tls +retry=0 +short www.example.com >/dev/null; done
  c=$(cpu "$pid")
  awk -v n="$name" -v q="$n" -v l=$((b-a)) -v s=$((c-b)) -v k="$SHORT" -v hz="$hz" 'BEGIN {
    printf "%-6s long-lived: %8d queries, %6.2f us CPU/query | new connection per query: %4d, %7.1f us CPU/query\n",
      n, q, l*1e6/hz/q, k, s*1e6/hz/k }'
done
