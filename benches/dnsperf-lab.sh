#!/usr/bin/env bash
# Whole-server throughput of the lab world with dnsperf, and server CPU per answered query.
# Usage: benches/dnsperf-lab.sh [seconds] [static|gslb]   (loopback only; installs dnsperf if missing)
#   static: the zone-data mix below; gslb: only GSLB names (the two-layer object chain, the CDN's
#   nearest edge, AAAA), sent from 127.0.10.1 so every answer goes through geo + both rules.
# The side-by-side benchmark against NSD/Knot/gdnsd/PowerDNS is issue 6.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
mode=${2:-static}
command -v dnsperf >/dev/null || { apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null; }
cargo build --release --quiet
port=$((20000 + RANDOM % 20000))
./target/release/gslbd serve --port "$port" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
sleep 1
q=$(mktemp)
src=127.0.0.1
if [ "$mode" = gslb ]; then
    src=127.0.10.1
    printf '%s\n' "object.yourcompany.com A" "static.yourcompany.com A" "object.yourcompany.com AAAA" \
        "object.vip.yourcompany.com A" >"$q"
else
    for n in www api object mail nothere x.apps static; do echo "$n.yourcompany.com A"; done >"$q"
    echo "yourcompany.com MX" >>"$q"
fi
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(cpu)
out=$(dnsperf -s 127.0.0.1 -a "$src" -p "$port" -d "$q" -l "$secs" -q 500 -c 1)
t1=$(cpu)
echo "$out" | grep -E "Queries (sent|completed|lost)|Queries per second"
done_q=$(echo "$out" | awk '/Queries completed/ {print $3}')
hz=$(getconf CLK_TCK)
awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$done_q" 'BEGIN { printf "server CPU per query: %.2f us\n", t / hz * 1e6 / n }'
