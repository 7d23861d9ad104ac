#!/usr/bin/env bash
# Warm-cache throughput of gslbd's iterative resolver beside Unbound, both resolving the lab world,
# with dnsperf (one client), and server CPU per answered query.
# Usage: benches/dnsperf-resolver.sh [seconds] [rounds] [outstanding]   (loopback only; needs root
#   for port 53; installs dnsperf and unbound with apt-get if missing). Defaults: 10 s, 3 rounds,
#   100 queries outstanding (dnsperf -q); with -q 500 this dnsperf (2.x) reports ~300 "lost"
#   queries per run against any server, benches/dnsperf-lab.sh's authoritative lab included.
#
# - The lab's authoritative listeners (zones/lab.toml without its [http] and [resolver] tables) run
#   in their own gslbd process on PORT 53: Unbound sends to port 53 only, whatever a referral says,
#   and both resolvers must walk the same servers.
# - gslbd's resolver is a second gslbd process (a config with only [resolver]: lab root hints,
#   upstream_port 53, listener 127.0.40.2, upstream source 127.0.11.1), so its CPU figure is the
#   resolver's alone. Unbound (num-threads: 1, iterator only) listens on 127.0.40.1 and also sends
#   from 127.0.11.1, so the lab's GSLB sees the same client (China Telecom, Shanghai) from both.
# - Both caches are warmed with the query file, then dnsperf runs SECONDS against each, alternating,
#   ROUNDS times. The GSLB names have TTLs of 20-60 s, so during a run both resolvers refetch them
#   now and then, as in production; the lab process's CPU is printed too.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
outstanding=${3:-100}

install() { # command package
    if command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; then
        return 0
    fi
    echo "$1 not found: installing $2 with apt-get" >&2
    { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; } || true
    command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || {
        echo "$1 is not installed and could not be installed (apt-get install $2 failed)" >&2
        exit 1
    }
}
install dnsperf dnsperf
install unbound unbound
unbound=$(command -v unbound || echo /usr/sbin/unbound)
if [ "$(id -u)" != 0 ]; then
    echo "this benchmark binds port 53 on loopback addresses (Unbound only sends to port 53):" \
        "run it as root (or give target/release/gslbd CAP_NET_BIND_SERVICE)" >&2
fi

cargo build --release --quiet
bin=./target/release/gslbd
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# The lab, authoritative side only: the same zone and geo files, the config without the tables
# named http / resolver (and their sub-tables).
mkdir -p "$work/lab/zones" "$work/lab/geo"
cp zones/*.zone "$work/lab/zones/"
cp geo/lab.csv geo/lab-overrides.csv geo/asn-carriers.csv "$work/lab/geo/"
awk '
    /^[[:space:]]*\[/ {
        h = $0; sub(/#.*/, "", h); gsub(/[][[:space:]]/, "", h)
        skip = (h == "http" || h ~ /^http\./ || h == "resolver" || h ~ /^resolver\./)
    }
    !skip
' zones/lab.toml >"$work/lab/zones/lab.toml"

rport=$((20000 + RANDOM % 20000))
uport=$((rport + 1))
printf '. 3600000 NS a.root-servers.net.\na.root-servers.net. 3600000 A 127.0.1.1\n' >"$work/lab.hints"
cat >"$work/resolver.toml" <<EOF
[resolver]
hints = "lab.hints"
upstream_port = 53
ecs_zones = []

[[resolver.listener]]
name = "bench"
addresses = ["127.0.40.2:$rport"]
source = ["127.0.11.1"]
allow = ["127.0.0.0/8"]
EOF
cat >"$work/unbound.conf" <<EOF
server:
    interface: 127.0.40.1@$uport
    port: $uport
    outgoing-interface: 127.0.11.1
    do-ip6: no
    do-not-query-localhost: no
    module-config: "iterator"
    root-hints: "$work/lab.hints"
    access-control: 127.0.0.0/8 allow
    chroot: ""
    username: ""
    directory: "$work"
    pidfile: "$work/unbound.pid"
    use-syslog: no
    logfile: ""
    qname-minimisation: yes
    harden-referral-path: no
    so-reuseport: no
    verbosity: 1
    num-threads: 1
remote-control:
    control-enable: no
EOF

"$bin" serve --config "$work/lab/zones/lab.toml" --port 53 2>"$work/lab.log" &
lab=$!
pids+=("$lab")
"$bin" serve --config "$work/resolver.toml" 2>"$work/resolver.log" &
res=$!
pids+=("$res")
"$unbound" -d -c "$work/unbound.conf" 2>"$work/unbound.log" &
ub=$!
pids+=("$ub")

# Every server must answer before anything is measured (10 s at most each).
ready() { # name pid addr port log
    for _ in $(seq 50); do
        kill -0 "$2" 2>/dev/null || { cat "$5" >&2; echo "$1 exited" >&2; exit 1; }
        if dig +time=1 +tries=1 -p "$4" @"$3" www.yourcompany.com A 2>/dev/null |
            grep -q 'status: NOERROR'; then
            return 0
        fi
        sleep 0.2
    done
    cat "$5" >&2
    echo "$1 does not answer www.yourcompany.com A at $3 port $4 within 10 s" >&2
    exit 1
}
ready "lab (port 53)" "$lab" 127.0.1.1 53 "$work/lab.log"
ready "gslbd resolver" "$res" 127.0.40.2 "$rport" "$work/resolver.log"
ready unbound "$ub" 127.0.40.1 "$uport" "$work/unbound.log"

q="$work/queries"
cat >"$q" <<EOF
www.yourcompany.com A
www.yourcompany.com AAAA
api.yourcompany.com A
object.yourcompany.com A
object.yourcompany.com AAAA
object.vip.yourcompany.com A
static.yourcompany.com A
static.yourcompany.com AAAA
yourcompany.com MX
yourcompany.com TXT
mail.yourcompany.com A
mail2.yourcompany.com AAAA
about.yourcompany.com TXT
x.apps.yourcompany.com A
foo.img.yourcompany.com A
_sip._tcp.yourcompany.com SRV
build.dev.yourcompany.com A
ci.dev.yourcompany.com A
nothere.yourcompany.com A
nothere.dev.yourcompany.com A
EOF

# Warm both caches: every name once (the answers are checked for sanity, not compared: the
# differential comparison is tests/resolver_peers.rs).
for target in "127.0.40.2 $rport" "127.0.40.1 $uport"; do
    set -- $target
    while read -r name type; do
        dig +time=2 +tries=1 -p "$2" @"$1" "$name" "$type" >/dev/null || true
    done <"$q"
    dnsperf -s "$1" -p "$2" -d "$q" -l 1 -q 100 -c 1 >/dev/null
done

hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
results="$work/results"
: >"$results"
run() { # label pid addr port round
    local t0 l0 out t1 l1 done_q lost qps
    t0=$(cpu "$2")
    l0=$(cpu "$lab")
    out=$(dnsperf -s "$3" -p "$4" -d "$q" -l "$secs" -q "$outstanding" -c 1)
    t1=$(cpu "$2")
    l1=$(cpu "$lab")
    done_q=$(echo "$out" | awk '/Queries completed/ {print $3}')
    lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
    qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
    echo "$out" | sed -n 's/^ *Response codes: *//p' >"$work/rcodes.$1"
    awk -v r="$5" -v s="$1" -v qps="$qps" -v lost="$lost" -v n="$done_q" -v t=$((t1 - t0)) \
        -v lt=$((l1 - l0)) -v hz="$hz" 'BEGIN {
            printf "%-5s %-16s %12.0f %8d %14.2f %14.2f\n", r, s, qps, lost,
                (n ? t / hz * 1e6 / n : 0), (n ? lt / hz * 1e6 / n : 0)
        }' | tee -a "$results"
}

echo "dnsperf -c 1 -q $outstanding -l $secs, warm caches, $(wc -l <"$q") lab names; CPU = utime+stime per completed query"
printf '%-5s %-16s %12s %8s %14s %14s\n' round server "q/s" lost "CPU us/query" "lab us/query"
for r in $(seq "$rounds"); do
    run gslbd-resolver "$res" 127.0.40.2 "$rport" "$r"
    run unbound "$ub" 127.0.40.1 "$uport" "$r"
done
echo
sort -k2,2 "$results" | awk '{ n[$2]++; q[$2] += $3; l[$2] += $4; c[$2] += $5 }
    END { for (s in n) printf "%-5s %-16s %12.0f %8.0f %14.2f\n", "mean", s, q[s] / n[s], l[s] / n[s], c[s] / n[s] }' |
    sort -k2,2
# Fast SERVFAILs would make any q/s figure meaningless: show what the answers were.
for s in gslbd-resolver unbound; do
    printf '%-22s last round: %s\n' "$s" "$(cat "$work/rcodes.$s")"
done
