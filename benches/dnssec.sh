#!/usr/bin/env bash
# Server CPU per query with DO set on a pre-signed zone: gslbd vs NSD vs Knot DNS, same run
# (issue 18, "static signed answers").
#
# Usage: benches/dnssec.sh [--records N] [--secs S] [--rounds R] [--outstanding Q] [--nsec3]
#                          [--bin GSLBD] [--port P]
#   defaults: --records 10000 --secs 10 --rounds 3 --outstanding 100 --port 5318; --bin:
#   target/release/gslbd (built by `cargo build --release` when missing).
#
# The zone is benches/compare/gen_zone.py's bench.example. (N records: A, AAAA, in-zone CNAMEs,
# MX, TXT) signed by dnssec-signzone (ECDSAP256SHA256, NSEC; NSEC3 with --nsec3) and served as it
# is by all three (Knot with dnssec-signing off). The query file is gen_zone.py's (hits, CNAME ->
# A, MX, TXT, 5 % NXDOMAIN), sent by dnsperf with DO set (-D): every answer carries RRSIGs, the
# NXDOMAINs their NSEC/NSEC3 proofs.
# Loopback only, one UDP worker each: 127.0.18.101 gslbd, .102 NSD, .103 Knot. Servers on CPU 1 and
# dnsperf on CPU 0 when there are two CPUs. CPU = utime+stime of the server over the run divided
# by the queries completed (from /proc, the process and its children), rounds in rotating order,
# median reported.
set -euo pipefail
cd "$(dirname "$0")/.."

records=10000
secs=10
rounds=3
outstanding=100
port=5318
bin=
nsec3=0
while [ $# -gt 0 ]; do
    case $1 in
    --records) records=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --outstanding) outstanding=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --nsec3) nsec3=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$bin" ]; then
    [ -x target/release/gslbd ] || cargo build --release --quiet
    bin=target/release/gslbd
fi
bin=$(realpath "$bin")
nsd=$(command -v nsd || echo /usr/sbin/nsd)
knotd=$(command -v knotd || echo /usr/sbin/knotd)

work=$(mktemp -d "${TMPDIR:-/tmp}/gslbd-dnssec.XXXXXX")
declare -A pid=() addr=()
addr[gslbd]=127.0.18.101
addr[nsd]=127.0.18.102
addr[knot]=127.0.18.103
cleanup() {
    local p
    for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pin_server=()
pin_client=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    pin_server=(taskset -c 1)
    pin_client=(taskset -c 0)
fi
hz=$(getconf CLK_TCK)
tree() { # pid: the pid and its descendants (NSD serves from child processes)
    local p c
    for p in "$@"; do
        echo "$p"
        for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree "$c"; done
    done
}
cpu_ticks() { # utime+stime of the process tree
    local t=0 p v
    for p in $(tree "$1"); do
        v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || continue
        t=$((t + v))
    done
    echo "$t"
}

# The signed zone.
python3 benches/compare/gen_zone.py "$records" "$work/bench.unsigned" "$work/queries" >/dev/null
key=$(dnssec-keygen -q -K "$work" -a ECDSAP256SHA256 -f KSK -n ZONE bench.example.)
grep -v '^;' "$work/$key.key" >>"$work/bench.unsigned"
opts=()
[ "$nsec3" = 1 ] && opts=(-3 - -H 0)
dnssec-signzone -q -K "$work" -d "$work" -z -N keep -s 20260101000000 -e 20360101000000 "${opts[@]}" \
    -o bench.example. -f "$work/bench.zone" "$work/bench.unsigned" >/dev/null

cat >"$work/gslbd.toml" <<EOF
[limits]
udp_workers = 1
[[zone]]
name = "bench.example."
file = "$work/bench.zone"
[[listener]]
name = "all"
addresses = ["${addr[gslbd]}:$port"]
zones = ["*"]
EOF
cat >"$work/nsd.conf" <<EOF
server:
    ip-address: ${addr[nsd]}@$port
    username: ""
    chroot: ""
    zonesdir: "$work"
    pidfile: "$work/nsd.pid"
    database: ""
    xfrdfile: "$work/xfrd.state"
    xfrdir: "$work"
    zonelistfile: "$work/zone.list"
    logfile: "$work/nsd.log"
    server-count: 1
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: bench.example.
    zonefile: $work/bench.zone
EOF
mkdir -p "$work/knot"
cat >"$work/knot.conf" <<EOF
server:
    rundir: "$work/knot"
    listen: ${addr[knot]}@$port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$work/knot/knot.sock"
database:
    storage: "$work/knot"
template:
  - id: default
    storage: "$work/knot"
    zonefile-load: whole
    zonefile-sync: -1
    journal-content: none
    semantic-checks: off
    dnssec-signing: off
zone:
  - domain: bench.example.
    file: "$work/bench.zone"
EOF

"${pin_server[@]}" "$bin" serve --config "$work/gslbd.toml" >"$work/gslbd.log" 2>&1 &
pid[gslbd]=$!
"${pin_server[@]}" "$nsd" -d -c "$work/nsd.conf" >"$work/nsd.out" 2>&1 &
pid[nsd]=$!
"${pin_server[@]}" "$knotd" -c "$work/knot.conf" >"$work/knot.log" 2>&1 &
pid[knot]=$!
for s in gslbd nsd knot; do
    for _ in $(seq 300); do
        dig +short +norec +time=1 +tries=1 @"${addr[$s]}" -p "$port" bench.example. SOA >/dev/null 2>&1 && break
        sleep 0.1
    done
done

declare -A results=()
order=(gslbd nsd knot)
for r in $(seq "$rounds"); do
    for s in "${order[@]}"; do
        before=$(cpu_ticks "${pid[$s]}")
        out=$("${pin_client[@]}" dnsperf -D -s "${addr[$s]}" -p "$port" -d "$work/queries" \
            -l "$secs" -q "$outstanding" 2>&1)
        after=$(cpu_ticks "${pid[$s]}")
        done_q=$(awk '/Queries completed:/ { print $3 }' <<<"$out")
        qps=$(awk '/Queries per second:/ { printf "%d", $4 }' <<<"$out")
        us=$(awk -v t=$((after - before)) -v hz="$hz" -v q="$done_q" 'BEGIN { printf "%.2f", t / hz / q * 1e6 }')
        results[$s]+="$us:$qps "
        echo "round $r $s: $us us CPU/query, $qps qps" >&2
    done
    order=("${order[@]:1}" "${order[0]}")
done

denial=NSEC
[ "$nsec3" = 1 ] && denial="NSEC3 (opt-out off, 0 iterations)"
echo
echo "DO set, pre-signed bench.example. ($records records, $denial), $rounds rounds of ${secs} s, median:"
echo
echo "| server | CPU per query (µs) | queries/s |"
echo "| --- | ---: | ---: |"
for s in gslbd nsd knot; do
    med=$(tr ' ' '\n' <<<"${results[$s]}" | grep . | sort -t: -k1 -g | awk -F: '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }')
    echo "| $s | ${med%%:*} | ${med##*:} |"
done
