#!/usr/bin/env bash
# Outgoing zone transfers, gslbd beside Knot, NSD and BIND as primaries of the same zone, in one run:
#   axfr   = a whole transfer of a RECORDS-record zone (kdig AXFR): wall time and the primary's CPU;
#   ixfr   = after a 1 % change (every 100th A record's address changed, serial + 1) and a reload:
#            the incremental transfer's wall time and CPU, and its size;
#   reload = time from the reload (SIGHUP / knotc reload / nsd-control reload / SIGHUP to named)
#            until the primary answers the new serial.
# CPU = utime+stime of the server's processes from /proc (all threads; NSD: its children too).
# Everything on loopback (127.0.34.1 gslbd, .2 Knot, .3 NSD, port 5353; BIND on 127.0.0.1:5399,
# as named listens only on addresses its interface scan finds). Needs knotd, knotc, nsd, named, kdig.
# BIND computes the reload's difference itself (`ixfr-from-differences yes`), as gslbd and Knot do.
# NSD before 4.7 keeps no IXFR history for zones it loads from files: it answers IXFR in AXFR form.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-1000000}
bin=${GSLBD:-target/release/gslbd}
[ -x "$bin" ] || cargo build --release --bin gslbd
dir=$(mktemp -d)
GPID=; KPID=; NPID=; BPID=
trap 'kill $GPID $KPID $NPID $BPID 2>/dev/null || true; sleep 0.5; rm -rf "$dir"' EXIT
PATH=$PATH:/usr/sbin

zone() { # serial, changed(0|1)
  python3 - "$1" "$2" "$RECORDS" <<'EOF'
import sys
serial, changed, n = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
out = [f"$ORIGIN example.com.\n$TTL 300\n@ SOA ns hostmaster {serial} 3600 900 604800 60\n@ NS ns\nns A 127.0.0.1\n"]
for i in range(n - 3):
    last = (i & 255) if not (changed and i % 100 == 0) else ((i + 7) & 255)
    out.append(f"h{i} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{last}\n")
sys.stdout.write("".join(out))
EOF
}
zone 1 0 > "$dir/example.com.zone"
cp "$dir/example.com.zone" "$dir/knot.zone"; cp "$dir/example.com.zone" "$dir/nsd.zone"
cp "$dir/example.com.zone" "$dir/bind.zone"

cat > "$dir/gslbd.toml" <<EOT
[[zone]]
name = "example.com."
file = "example.com.zone"
transfer = ["127.0.0.0/8"]
[[listener]]
name = "all"
addresses = ["127.0.34.1:5353"]
zones = ["*"]
EOT
cat > "$dir/knot.conf" <<EOT
server:
  rundir: "$dir"
  listen: 127.0.34.2@5353
  background-workers: 1
control:
  listen: "$dir/knot.sock"
database:
  storage: "$dir"
acl:
  - id: out
    address: 127.0.0.0/8
    action: transfer
zone:
  - domain: example.com
    file: "$dir/knot.zone"
    storage: "$dir"
    acl: out
    zonefile-load: difference
    journal-content: changes
EOT
cat > "$dir/nsd.conf" <<EOT
server:
  ip-address: 127.0.34.3@5353
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$dir"
  pidfile: "$dir/nsd.pid"
  database: ""
  xfrdfile: "$dir/xfrd.state"
  zonelistfile: "$dir/zone.list"
remote-control:
  control-enable: yes
  control-interface: "$dir/nsd.ctl"
zone:
  name: example.com
  zonefile: "$dir/nsd.zone"
  provide-xfr: 127.0.0.0/8 NOKEY
EOT

mkdir -p "$dir/named"
cat > "$dir/named.conf" <<EOT
options {
  directory "$dir/named";
  pid-file "$dir/named/named.pid";
  session-keyfile "$dir/named/session.key";
  listen-on port 5399 { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  notify no;
  ixfr-from-differences yes;
  max-ixfr-ratio unlimited;
  allow-transfer { 127.0.0.0/8; };
};
controls { };
zone "example.com" { type primary; file "$dir/bind.zone"; };
EOT

cpu() { # total ticks of a process and its children
  local t=0
  for p in "$@" $(pgrep -P "$1" 2>/dev/null || true); do
    if [ -r "/proc/$p/stat" ]; then t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); fi
  done
  echo "$t"
}
tick=$(getconf CLK_TCK)
port_of() { if [ "$1" = 127.0.0.1 ]; then echo 5399; else echo 5353; fi; }
serial_of() { kdig @"$1" -p "$(port_of "$1")" +short +time=1 +retry=0 example.com SOA 2>/dev/null | awk '{print $3}'; }
wait_serial() { # addr serial
  local deadline=$((SECONDS + 600))
  until [ "$(serial_of "$1")" = "$2" ]; do
    [ $SECONDS -lt $deadline ] || { echo "timeout waiting for serial $2 at $1" >&2; exit 1; }
    sleep 0.05
  done
}

"$bin" serve --config "$dir/gslbd.toml" >"$dir/gslbd.log" 2>&1 & GPID=$!
knotd -c "$dir/knot.conf" >"$dir/knot.log" 2>&1 & KPID=$!
nsd -d -c "$dir/nsd.conf" >"$dir/nsd.log" 2>&1 & NPID=$!
named -f -4 -c "$dir/named.conf" >"$dir/named.log" 2>&1 & BPID=$!
for a in 127.0.34.1 127.0.34.2 127.0.34.3 127.0.0.1; do wait_serial $a 1; done

measure() { # label pid addr kdig-args...
  local label=$1 pid=$2 addr=$3; shift 3
  local c0 t0 t1 c1 bytes
  c0=$(cpu "$pid"); t0=$(date +%s.%N)
  bytes=$(kdig @"$addr" -p "$(port_of "$addr")" +time=60 "$@" 2>/dev/null | sed -n 's/^;; Received \([0-9]*\) B.*/\1/p' | tail -1)
  t1=$(date +%s.%N); c1=$(cpu "$pid")
  printf '%-8s %-6s %8.3f s wall  %7.3f s CPU  %10s B\n' "$label" "$2" "$(echo "$t1 - $t0" | bc)" \
    "$(echo "($c1 - $c0) / $tick" | bc -l)" "${bytes:-?}"
}
echo "zone: $RECORDS records"
for run in 1 2; do
  measure gslbd $GPID 127.0.34.1 example.com AXFR
  measure knot $KPID 127.0.34.2 example.com AXFR
  measure nsd $NPID 127.0.34.3 example.com AXFR
  measure bind $BPID 127.0.0.1 example.com AXFR
done

zone 2 1 > "$dir/example.com.zone"
cp "$dir/example.com.zone" "$dir/knot.zone"; cp "$dir/example.com.zone" "$dir/nsd.zone"
cp "$dir/example.com.zone" "$dir/bind.zone"
reload() { # label addr command...
  local label=$1 addr=$2; shift 2
  local t0; t0=$(date +%s.%N)
  "$@" >/dev/null
  wait_serial "$addr" 2
  printf '%-8s reload  %8.3f s to serve serial 2\n' "$label" "$(echo "$(date +%s.%N) - $t0" | bc)"
}
reload gslbd 127.0.34.1 kill -HUP $GPID
reload knot 127.0.34.2 knotc -s "$dir/knot.sock" zone-reload example.com
reload nsd 127.0.34.3 nsd-control -c "$dir/nsd.conf" reload example.com
reload bind 127.0.0.1 kill -HUP $BPID
for run in 1 2; do
  measure gslbd $GPID 127.0.34.1 example.com IXFR=1
  measure knot $KPID 127.0.34.2 example.com IXFR=1
  measure nsd $NPID 127.0.34.3 example.com IXFR=1
  measure bind $BPID 127.0.0.1 example.com IXFR=1
done
