#!/usr/bin/env bash
# HTTPDNS throughput of the lab world with wrk, and server CPU per answered request.
# Usage: benches/wrk-httpdns.sh [seconds] [connections]   (loopback only; installs wrk if missing)
#   gslb:   /100000/d?host=object.yourcompany.com&ip=127.0.10.1 -- geo lookup + both GSLB rules
#           (carrier line, then region) on every request
#   static: /100000/d?host=www.yourcompany.com -- zone data only
# One wrk thread, so the load generator and the server share the machine predictably.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-50}

if ! command -v wrk >/dev/null; then
    echo "wrk not found: installing it with apt-get" >&2
    { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || true
fi
if ! command -v wrk >/dev/null; then
    echo "wrk is not installed and could not be installed (apt-get install wrk failed); giving up" >&2
    exit 1
fi

cargo build --release --quiet
log=$(mktemp)
# --port 0: every listener, the HTTP one included, on an ephemeral port, so this can run beside
# anything else.
./target/release/gslbd serve --port 0 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT

# The HTTP port, from the log line `listening on http 127.0.0.1:PORT (http)` (colour codes
# stripped); give up after 10 s.
port=
for _ in $(seq 100); do
    port=$(sed 's/\x1b\[[0-9;]*m//g' "$log" |
        sed -n 's/.*listening on http 127\.0\.0\.1:\([0-9]*\) (http).*/\1/p' | head -n1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "gslbd exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { cat "$log" >&2; echo "no 'listening on http' line within 10 s" >&2; exit 1; }
base="http://127.0.0.1:$port"

# The handlers must answer before anything is measured.
probe=$(curl -s --max-time 5 "$base/100000/d?host=www.yourcompany.com" || true)
case "$probe" in
*'"ips"'*) ;;
*)
    echo "GET /100000/d does not answer addresses yet: $probe" >&2
    exit 1
    ;;
esac

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)

run() {
    local name=$1 path=$2
    # A short warm-up (connections, allocator, caches), not counted.
    wrk -t1 -c"$conns" -d1s "$base$path" >/dev/null
    local t0 t1 out reqs rps
    t0=$(cpu)
    out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$base$path")
    t1=$(cpu)
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    echo "== $name: GET $path ($conns connections, 1 thread, ${secs}s)"
    echo "$out" | grep -E "Latency  |50%|99%|Non-2xx|Socket errors" || true
    awk -v r="$rps" -v n="$reqs" -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN {
        printf "requests/s: %.0f   requests: %d   server CPU per request: %.2f us\n",
            r, n, t / hz * 1e6 / n }'
}

run gslb "/100000/d?host=object.yourcompany.com&ip=127.0.10.1"
run static "/100000/d?host=www.yourcompany.com"
