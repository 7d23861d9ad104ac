#!/usr/bin/env bash
# Side by side: gslbd against NSD, Knot DNS, gdnsd and PowerDNS, same machine, same run (issue 6).
#
# Usage: benches/compare.sh [--records N[,N...]] [--secs S] [--rounds R] [--outstanding Q]
#                           [--workload static|gslb|chain|all] [--port P] [--bin GSLBD] [--out FILE]
#                           [--no-floor]
#   defaults: --records 10000,1000000 --secs 10 --rounds 3 --outstanding 100 --workload all
#             --port 5300; --bin: target/release/gslbd after `cargo build --release` (if the build
#             fails, the last good binary kept in $TMPDIR/gslbd-compare-last-good, else the one in
#             target/); --out: also write the tables (markdown) to FILE; --no-floor: leave out the
#             two UDP reflectors measured beside the first static size (below).
#   Needs root for apt-get (installs nsd, knot, gdnsd, pdns-server, pdns-backend-bind,
#   pdns-backend-geoip, dnsperf when missing). Loopback only. benches/README.md explains the columns.
#
# Workloads (generators in benches/compare/):
#   static  bench.example. with N records (A, AAAA, in-zone CNAMEs, MX, TXT), 100k queries: hits,
#           CNAME -> A, MX (+ additional A), TXT, 5 % NXDOMAIN. All five servers.
#   gslb    vip.geo.bench.example. A: the client's carrier picks a line (CNAME), the client's
#           province picks a region whose six addresses answer; 1,024 client /24s, each query
#           carrying its own ECS subnet (binary dnsperf input, -B). gslbd, gdnsd geoip, PowerDNS geoip.
#   chain   object.geo.bench.example. A: a static CNAME to vip, then the above: object -> vip ->
#           line -> addresses in one response. Same three servers.
#
# Every server listens on its own loopback address, one port, one UDP worker:
#   127.0.60.1 gslbd ([limits] udp_workers = 1)    127.0.60.2 NSD (server-count: 1)
#   127.0.60.3 Knot (udp-workers: 1)              127.0.60.4 gdnsd (udp_threads = 1)
#   127.0.60.5 PowerDNS (receiver-threads=1, distributor-threads=1)
# The floor (first static size only): compare/reflector.c, a UDP echo doing no DNS work, on
# 127.0.60.6 (recvfrom/sendto, one packet per call) and 127.0.60.7 (recvmmsg/sendmmsg batches).
# Servers run on CPU 1 and dnsperf on CPU 0 when there are two CPUs or more (PIN=0 turns it off).
# Before each run the script waits for the machine to be idle (QUIET_WAIT seconds at most, default
# 60), and repeats a run during which something else used more than 10 % of a CPU (twice at most).
# For each server: load time (process start -> the zone's SOA answered with AA), resident memory
# after load (VmRSS and PSS, summed over the process and its children), then dnsperf against each
# in turn, ROUNDS rounds (the order rotates every round); CPU = utime+stime of the server's
# processes over the run divided by the queries completed, and core = busy time of the servers'
# CPU over the run divided by the same.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

records=10000,1000000
secs=10
rounds=3
outstanding=100
workload=all
port=5300
bin=
out=
floor=1
while [ $# -gt 0 ]; do
    case $1 in
    --records) records=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --outstanding) outstanding=$2; shift 2 ;;
    --workload) workload=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-floor) floor=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $workload in static | gslb | chain | all) ;; *) echo "--workload: static|gslb|chain|all" >&2; exit 2 ;; esac
case $port in 53 | 1053) echo "--port: not 53 or 1053 (the lab's ports)" >&2; exit 2 ;; esac

# ---------------------------------------------------------------------------------------------
# Peers from Debian's packages. Debian starts daemons on install where it can: stop them, they
# must not hold ports (ours are not 53, but a stray daemon would also eat CPU).
need=()
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
have nsd || need+=(nsd)
have knotd || need+=(knot)
have gdnsd || need+=(gdnsd)
have pdns_server || need+=(pdns-server)
[ -e /usr/lib/x86_64-linux-gnu/pdns/libbindbackend.so ] || ls /usr/lib/*/pdns/libbindbackend.so >/dev/null 2>&1 ||
    need+=(pdns-backend-bind)
ls /usr/lib/*/pdns/libgeoipbackend.so >/dev/null 2>&1 || need+=(pdns-backend-geoip)
have dnsperf || need+=(dnsperf)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} with apt-get" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } || {
        echo "apt-get install ${need[*]} failed" >&2
        exit 1
    }
    for svc in nsd knot gdnsd pdns; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
            systemctl stop "$svc" || true
        elif command -v service >/dev/null; then
            service "$svc" stop >/dev/null 2>&1 || true
        fi
    done
fi
nsd=$(command -v nsd || echo /usr/sbin/nsd)
knotd=$(command -v knotd || echo /usr/sbin/knotd)
gdnsd=$(command -v gdnsd || echo /usr/sbin/gdnsd)
pdns=$(command -v pdns_server || echo /usr/sbin/pdns_server)

# ---------------------------------------------------------------------------------------------
# gslbd: build; if the tree does not build (work in progress), the last good binary.
keep="${TMPDIR:-/tmp}/gslbd-compare-last-good"
if [ -z "$bin" ]; then
    if cargo build --release --quiet 2>"${TMPDIR:-/tmp}/gslbd-compare-build.log"; then
        mkdir -p "$keep"
        cp target/release/gslbd "$keep/gslbd"
        bin=$keep/gslbd
    elif [ -x "$keep/gslbd" ]; then
        echo "cargo build --release failed (${TMPDIR:-/tmp}/gslbd-compare-build.log): using the last good binary $keep/gslbd" >&2
        bin=$keep/gslbd
    elif [ -x target/release/gslbd ]; then
        echo "cargo build --release failed: using target/release/gslbd as it is" >&2
        bin=target/release/gslbd
    else
        cat "${TMPDIR:-/tmp}/gslbd-compare-build.log" >&2
        exit 1
    fi
fi
bin=$(realpath "$bin")

# ---------------------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/gslbd-compare.XXXXXX")
declare -A pid=() addr=() loadms=() rssk=() pssk=()
cleanup() {
    local p all=()
    for p in "${pid[@]}"; do mapfile -t -O "${#all[@]}" all < <(tree "$p"); done
    kill_all "${all[@]}"
    for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
kill_all() { # pids: SIGTERM, 5 s to exit, then SIGKILL
    local p left
    [ $# -gt 0 ] || return 0
    for p in "$@"; do kill "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do
        left=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && left=1; done
        [ "$left" = 0 ] && return 0
        sleep 0.1
    done
    for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

addr[gslbd]=127.0.60.1
addr[nsd]=127.0.60.2
addr[knot]=127.0.60.3
addr[gdnsd]=127.0.60.4
addr[pdns]=127.0.60.5
addr[floor-1]=127.0.60.6
addr[floor-mmsg]=127.0.60.7

pin_server=()
pin_client=()
if [ "${PIN:-1}" != 0 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    pin_server=(taskset -c 1)
    pin_client=(taskset -c 0)
fi

hz=$(getconf CLK_TCK)
now_ms() { echo $(($(date +%s%N) / 1000000)); }
tree() { # pid: the pid and its descendants
    local p c
    for p in "$@"; do
        echo "$p"
        for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree "$c"; done
    done
}
cpu_ticks() { # pid: utime+stime of the process tree (all threads)
    local t=0 p v
    for p in $(tree "$1"); do
        v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null) || continue
        t=$((t + v))
    done
    echo "$t"
}
# tree_kib PID FILE FIELD: FIELD (kB) of /proc/P/FILE summed over the process tree of PID.
tree_kib() {
    local t=0 p v
    for p in $(tree "$1"); do
        v=$(awk -v f="$3:" '$1 == f { print $2 }' "/proc/$p/$2" 2>/dev/null) || continue
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
rss_kib() { tree_kib "$1" status VmRSS; }
# Pss: shared pages divided among the processes sharing them.
pss_kib() { tree_kib "$1" smaps_rollup Pss; }
nprocs() { tree "$1" | wc -l; }

# wait_ready NAME ZONE LOG T0_MS: until NAME answers ZONE SOA with AA (300 s at most);
# stores the load time and RSS.
wait_ready() {
    local name=$1 zone=$2 log=$3 t0=$4 a deadline p
    a=${addr[$name]}
    deadline=$(($(now_ms) + 300000))
    while :; do
        if ! kill -0 "${pid[$name]}" 2>/dev/null; then
            cat "$log" >&2
            echo "$name exited before answering $zone SOA (log above)" >&2
            exit 1
        fi
        if dig +norec +time=1 +tries=1 -p "$port" @"$a" "$zone" SOA 2>/dev/null |
            grep -q 'flags: qr aa.*ANSWER: 1,'; then
            break
        fi
        if [ "$(now_ms)" -gt "$deadline" ]; then
            cat "$log" >&2
            echo "$name does not answer $zone SOA at $a port $port within 300 s (log above)" >&2
            exit 1
        fi
        sleep 0.02
    done
    loadms[$name]=$(($(now_ms) - t0))
    # Knot pins its UDP worker i to CPU i itself (worker 0 -> CPU 0, dnsperf's): every thread of
    # every server back onto CPU 1.
    if [ ${#pin_server[@]} -gt 0 ]; then
        for p in $(tree "${pid[$name]}"); do taskset -a -p -c 1 "$p" >/dev/null 2>&1 || true; done
    fi
    sleep 0.5 # let lazy frees / background workers settle before reading RSS
    rssk[$name]=$(rss_kib "${pid[$name]}")
    pssk[$name]=$(pss_kib "${pid[$name]}")
    printf '  %-6s up in %6.2f s, RSS %7.1f MiB, PSS %7.1f MiB (%d process%s)\n' "$name" \
        "$(echo "${loadms[$name]}" | awk '{ print $1 / 1000 }')" \
        "$(echo "${rssk[$name]}" | awk '{ print $1 / 1024 }')" \
        "$(echo "${pssk[$name]}" | awk '{ print $1 / 1024 }')" "$(nprocs "${pid[$name]}")" \
        "$([ "$(nprocs "${pid[$name]}")" = 1 ] && echo "" || echo "es, summed")" >&2
}

stop_all() {
    local s all=()
    for s in "${!pid[@]}"; do mapfile -t -O "${#all[@]}" all < <(tree "${pid[$s]}"); done
    kill_all "${all[@]}"
    for s in "${!pid[@]}"; do wait "${pid[$s]}" 2>/dev/null || true; done
    pid=()
}

# ---------------------------------------------------------------------------------------------
# Starting each server: DIR ZONE-NAME ZONE-FILE (and, for the geo workloads, the generated files).
gslbd_workers=1
start_gslbd() { # dir toml
    local d=$1 cfg=$2 t0
    t0=$(now_ms)
    "${pin_server[@]}" "$bin" serve --config "$cfg" >"$d/gslbd.log" 2>&1 &
    pid[gslbd]=$!
    wait_ready gslbd "$3" "$d/gslbd.log" "$t0"
}
gslbd_limits() { # the [limits] table of a generated config
    if [ "$gslbd_workers" = 1 ]; then
        printf '[limits]\nudp_workers = 1\n\n'
    fi
}
# Does this gslbd know `[limits] udp_workers`? (It is being added; without it, leave it out.)
probe_gslbd_workers() {
    local d=$work/probe
    mkdir -p "$d"
    printf '$ORIGIN probe.example.\n@ 3600 IN SOA ns1 h 1 1 1 1 1\n@ 3600 IN NS ns1\nns1 3600 IN A 127.0.0.1\n' >"$d/z"
    printf '[limits]\nudp_workers = 1\n\n[[zone]]\nname = "probe.example."\nfile = "z"\n\n[[listener]]\nname = "p"\naddresses = ["127.0.0.1:0"]\nzones = ["*"]\n' >"$d/c.toml"
    if ! "$bin" check --config "$d/c.toml" >"$d/out" 2>&1; then
        if grep -q 'udp_workers' "$d/out"; then
            echo "NOTE: this gslbd does not accept [limits] udp_workers; running it without (its default worker count)" >&2
            gslbd_workers=0
        else
            cat "$d/out" >&2
            exit 1
        fi
    fi
}

start_nsd() { # dir zone-name zone-file
    local d=$1 t0
    mkdir -p "$d/nsd"
    cat >"$d/nsd/nsd.conf" <<EOF
server:
    ip-address: ${addr[nsd]}@$port
    port: $port
    do-ip6: no
    server-count: 1
    reuseport: no
    username: ""
    chroot: ""
    zonesdir: "$d/nsd"
    database: ""
    zonelistfile: "$d/nsd/zone.list"
    xfrdfile: "$d/nsd/xfrd.state"
    xfrdir: "$d/nsd"
    pidfile: "$d/nsd/nsd.pid"
    verbosity: 1
    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: "$2"
    zonefile: "$3"
EOF
    t0=$(now_ms)
    "${pin_server[@]}" "$nsd" -d -c "$d/nsd/nsd.conf" >"$d/nsd.log" 2>&1 &
    pid[nsd]=$!
    wait_ready nsd "$2" "$d/nsd.log" "$t0"
}

start_knot() { # dir zone-name zone-file
    local d=$1 t0
    mkdir -p "$d/knot"
    cat >"$d/knot/knot.conf" <<EOF
server:
    rundir: "$d/knot"
    pidfile: "$d/knot/knot.pid"
    listen: ${addr[knot]}@$port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$d/knot/db"
control:
    listen: "$d/knot/knot.sock"
log:
  - target: stderr
    any: info
template:
  - id: default
    storage: "$d/knot"
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
zone:
  - domain: "$2"
    file: "$3"
EOF
    t0=$(now_ms)
    "${pin_server[@]}" "$knotd" -c "$d/knot/knot.conf" >"$d/knot.log" 2>&1 &
    pid[knot]=$!
    wait_ready knot "$2" "$d/knot.log" "$t0"
}

start_gdnsd() { # dir zone-name zone-file [plugins-stanza-file]
    local d=$1 t0 plugins=""
    mkdir -p "$d/gdnsd/zones" "$d/gdnsd/run" "$d/gdnsd/state"
    ln -sf "$3" "$d/gdnsd/zones/${2%.}" 2>/dev/null
    # gdnsd wants regular files in zones/ (no symlinks): copy.
    rm -f "$d/gdnsd/zones/${2%.}"
    cp "$3" "$d/gdnsd/zones/${2%.}"
    [ -n "${4:-}" ] && plugins=$(cat "$4")
    cat >"$d/gdnsd/config" <<EOF
options => {
    listen => { ${addr[gdnsd]}:$port => { udp_threads => 1, tcp_threads => 1 } }
    run_dir => $d/gdnsd/run
    state_dir => $d/gdnsd/state
    # chase in-zone CNAMEs like the others (gdnsd 3 answers just the CNAME by default)
    experimental_no_chain => false
}
$plugins
EOF
    t0=$(now_ms)
    "${pin_server[@]}" "$gdnsd" -c "$d/gdnsd" start >"$d/gdnsd.log" 2>&1 &
    pid[gdnsd]=$!
    wait_ready gdnsd "$2" "$d/gdnsd.log" "$t0"
}

start_pdns() { # dir zone-name zone-file  |  dir zone-name - geoip-yaml city.mmdb asn.mmdb
    local d=$1 t0 backend
    mkdir -p "$d/pdns"
    if [ "$3" != - ]; then
        printf 'zone "%s" { type master; file "%s"; };\n' "${2%.}" "$3" >"$d/pdns/named.conf"
        backend=(--launch=bind --bind-config="$d/pdns/named.conf")
    else
        backend=(--launch=geoip --geoip-zones-file="$4"
            --geoip-database-files="mmdb:$5 mmdb:$6" --edns-subnet-processing=yes)
    fi
    t0=$(now_ms)
    "${pin_server[@]}" "$pdns" --no-config --daemon=no --guardian=no --disable-syslog \
        --socket-dir="$d/pdns" --local-address="${addr[pdns]}" --local-port="$port" \
        --receiver-threads=1 --distributor-threads=1 --reuseport=no \
        --security-poll-suffix= --write-pid=no --loglevel=4 "${backend[@]}" >"$d/pdns.log" 2>&1 &
    pid[pdns]=$!
    wait_ready pdns "$2" "$d/pdns.log" "$t0"
}

# start_floor DIR NAME MODE: the reflector (no zone: running and bound is ready).
start_floor() {
    local d=$1
    [ -x "$work/reflector" ] || cc -O2 -o "$work/reflector" "$repo/benches/compare/reflector.c"
    "${pin_server[@]}" "$work/reflector" "${addr[$2]}" "$port" "$3" >"$d/$2.log" 2>&1 &
    pid[$2]=$!
    for _ in $(seq 50); do
        ss -Hlun "src ${addr[$2]}:$port" 2>/dev/null | grep -q . && return 0
        kill -0 "${pid[$2]}" 2>/dev/null || break
        sleep 0.1
    done
    cat "$d/$2.log" >&2
    echo "the $3 reflector did not start on ${addr[$2]}:$port" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Answers compared before measuring: a fast server giving wrong answers measures nothing.
# answer SERVER NAME TYPE [ECS]: rcode, then the answer section (name type rdata, TTLs dropped,
# lowercased, sorted).
answer() {
    local extra=()
    [ -n "${4:-}" ] && extra=(+subnet="$4")
    dig +norec +time=2 +tries=1 -p "$port" @"${addr[$1]}" "$2" "$3" "${extra[@]}" 2>/dev/null | awk '
        /^;; ->>HEADER<<-/ { for (i = 1; i <= NF; i++) if ($i == "status:") { s = $(i + 1); sub(/,/, "", s) } }
        /^;; ANSWER SECTION:/ { a = 1; next }
        /^$/ { a = 0 }
        a && !/^;/ { $2 = ""; $3 = ""; print tolower($0) }
        END { print "rcode " s }' | sort | tr -s ' ' | paste -sd'|'
}
# check_same SERVERS... < "name type [ecs]" lines: prints differences against the first server.
check_same() {
    local ref=$1 name type ecs a b s bad=0
    shift
    while read -r name type ecs; do
        a=$(answer "$ref" "$name" "$type" "$ecs")
        for s in "$@"; do
            b=$(answer "$s" "$name" "$type" "$ecs")
            if [ "$a" != "$b" ]; then
                bad=$((bad + 1))
                [ "$bad" -le 10 ] && printf '  DIFFERENT %s %s %s\n    %-6s %s\n    %-6s %s\n' "$name" "$type" "$ecs" "$ref" "$a" "$s" "$b" >&2
            fi
        done
    done
    if [ "$bad" = 0 ]; then echo "  answers: identical (sets compared, order ignored)" >&2; fi
    return 0
}

# ---------------------------------------------------------------------------------------------
# measure WORKLOAD-LABEL QUERYFILE DNSPERF-EXTRA-ARGS SERVERS...: ROUNDS rounds, every server once a
# round, the order rotating. Appends rows to $work/rows:
#   label round server qps lost cpu_us rcodes other% core_us
# core_us = busy time of CPU 1 (the servers' CPU when pinned: user, system, irq, softirq) per
# completed query: everything the server's core did for the run, whoever it was charged to.
# other% = CPU time the rest of the machine used during the run (all CPUs, minus the server and
# dnsperf), in % of one CPU: a build or test running beside the benchmark shows here. A run with
# more than 10 % is repeated (twice at most) and the row keeps the last try.
rows=$work/rows
: >"$rows"
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
cpu1_ticks() { awk '/^cpu1 / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
# wait_quiet: before a run, wait (QUIET_WAIT seconds at most, default 60) until the machine is idle:
# under 10 % of a CPU busy over two seconds (the servers are idle between runs).
wait_quiet() {
    local b0 b1 pct t0 max=${QUIET_WAIT:-60} said=
    t0=$(date +%s)
    while :; do
        b0=$(busy_ticks)
        sleep 2
        b1=$(busy_ticks)
        pct=$(((b1 - b0) * 50 / hz))
        [ "$pct" -le 10 ] && return 0
        if [ -z "$said" ]; then
            echo "  (the machine is busy: $pct % of a CPU; waiting up to $max s for it to calm down)" >&2
            said=1
        fi
        if [ $(($(date +%s) - t0)) -ge "$max" ]; then
            echo "  (still busy: measuring anyway, see the other CPU column)" >&2
            return 0
        fi
        sleep 3
    done
}
measure() {
    local label=$1 qf=$2 extra=$3
    shift 3
    local servers=("$@") n=$# r i s t0 t1 b0 b1 c0 c1 o q lost qps rc ex try other client
    read -r -a ex <<<"$extra"
    for r in $(seq "$rounds"); do
        for i in $(seq 0 $((n - 1))); do
            s=${servers[$(((i + r - 1) % n))]}
            for try in 1 2 3; do
                wait_quiet
                t0=$(cpu_ticks "${pid[$s]}")
                b0=$(busy_ticks)
                c0=$(cpu1_ticks)
                o=$({
                    "${pin_client[@]}" dnsperf -s "${addr[$s]}" -p "$port" -d "$qf" -c 1 -q "$outstanding" \
                        -l "$secs" "${ex[@]}" 2>&1 || echo "DNSPERF FAILED"
                    times
                })
                b1=$(busy_ticks)
                c1=$(cpu1_ticks)
                t1=$(cpu_ticks "${pid[$s]}")
                if echo "$o" | grep -q 'DNSPERF FAILED'; then
                    echo "$o" >&2
                    echo "dnsperf failed against $s" >&2
                    exit 1
                fi
                # `times`: the last line is the children's (dnsperf's) user and system time.
                client=$(echo "$o" | tail -1 | awk '{ for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print t }')
                other=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v c="$client" -v hz="$hz" -v s="$secs" \
                    'BEGIN { o = ((b - t) / hz - c) / s * 100; printf "%.0f", (o < 0 ? 0 : o) }')
                [ "$other" -le 10 ] && break
                [ "$try" -lt 3 ] && echo "  ($s: $other % of a CPU used elsewhere during the run: again)" >&2
            done
            q=$(echo "$o" | awk '/Queries completed:/ { print $3 }')
            lost=$(echo "$o" | awk '/Queries lost:/ { print $3 }')
            qps=$(echo "$o" | awk '/Queries per second:/ { print $4 }')
            rc=$(echo "$o" | sed -n 's/^ *Response codes: *//p' | awk -F', ' '{
                for (i = 1; i <= NF; i++) { split($i, a, " "); gsub(/[()]/, "", a[3]); printf "%s%s=%s", (i > 1 ? "," : ""), a[1], a[3] } }')
            [ ${#pin_server[@]} -gt 0 ] || c1=$c0
            awk -v l="$label" -v r="$r" -v s="$s" -v qps="$qps" -v lost="$lost" -v n="$q" \
                -v t=$((t1 - t0)) -v c=$((c1 - c0)) -v hz="$hz" -v rc="$rc" -v other="$other" 'BEGIN {
                    printf "%s %s %s %.0f %d %.3f %s %s %.3f\n", l, r, s, qps, lost, (n ? t / hz * 1e6 / n : 0), rc, other,
                        (n ? c / hz * 1e6 / n : 0)
                }' >>"$rows"
            tail -1 "$rows" | awk '{ printf "  round %s %-10s %9s q/s %6s lost %7s us CPU/query %7s us core/query  %s  (other: %s %%)\n", $2, $3, $4, $5, $6, $9, $7, $8 }' >&2
        done
    done
}

# table LABEL SERVERS...: markdown table, means over the rounds (min-max of q/s), and the median of
# CPU per query (one disturbed round moves a mean of three by a tenth of a microsecond).
table() {
    local label=$1 s
    shift
    echo
    echo "#### $label"
    echo
    echo "| server | q/s (mean) | q/s (min-max) | lost (mean) | µs CPU / query | µs CPU (median) | µs core / query | load s | RSS MiB | PSS MiB | procs | other CPU % (max) | answers (last round) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    for s in "$@"; do
        awk -v l="$label" -v s="$s" -v ld="${loadms[$s]:-0}" -v rss="${rssk[$s]:-0}" -v pss="${pssk[$s]:-0}" \
            -v np="$(nprocs "${pid[$s]}")" '
            $1 == l && $3 == s {
                if (s ~ /^floor/) ld = rss = pss = -1
                n++; q += $4; lo += $5; c += $6; rc = $7; co += $9; cv[n] = $6
                if ($8 > ot) ot = $8
                if (n == 1 || $4 < mn) mn = $4
                if ($4 > mx) mx = $4
            }
            END {
                if (!n) exit
                core = (co > 0 ? sprintf("%.2f", co / n) : "-")
                for (i = 2; i <= n; i++) {
                    v = cv[i]
                    for (j = i - 1; j > 0 && cv[j] > v; j--) cv[j + 1] = cv[j]
                    cv[j + 1] = v
                }
                med = (n % 2 ? cv[(n + 1) / 2] : (cv[n / 2] + cv[n / 2 + 1]) / 2)
                if (ld < 0) {
                    printf "| %s | %.0f | %.0f-%.0f | %.0f | %.2f | %.2f | %s | - | - | - | %d | %d | %s |\n",
                        s, q / n, mn, mx, lo / n, c / n, med, core, np, ot, rc
                    exit
                }
                printf "| %s | %.0f | %.0f-%.0f | %.0f | %.2f | %.2f | %s | %.2f | %.1f | %.1f | %d | %d | %s |\n",
                    s, q / n, mn, mx, lo / n, c / n, med, core, ld / 1000, rss / 1024, pss / 1024, np, ot, rc
            }' "$rows"
    done
}

tables=$work/tables
: >"$tables"
machine() {
    local w=", udp_workers = 1" p=""
    [ "$gslbd_workers" = 1 ] || w=", udp_workers not supported: its default workers"
    [ ${#pin_server[@]} -gt 0 ] && p="; servers on CPU 1, dnsperf on CPU 0"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), kernel $(uname -r);" \
        "dnsperf -c 1 -q $outstanding -l $secs, $rounds rounds; gslbd $("$bin" --version 2>/dev/null | awk '{ print $2 }')" \
        "(binary of $(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC'))$w$p"
}

probe_gslbd_workers
echo "gslbd: $bin" >&2

# ---------------------------------------------------------------------------------------------
run_static() { # records first|next
    local n=$1 d=$work/static-$1
    mkdir -p "$d"
    echo "static workload, $n records: generating" >&2
    python3 "$repo/benches/compare/gen_zone.py" "$n" "$d/bench.example.zone" "$d/queries"
    {
        gslbd_limits
        printf '[[zone]]\nname = "bench.example."\nfile = "bench.example.zone"\n\n'
        printf '[[listener]]\nname = "bench"\naddresses = ["%s:%s"]\nzones = ["*"]\n' "${addr[gslbd]}" "$port"
    } >"$d/gslbd.toml"
    echo "starting the servers one at a time (load time = start -> SOA answered):" >&2
    start_gslbd "$d" "$d/gslbd.toml" bench.example.
    start_nsd "$d" bench.example. "$d/bench.example.zone"
    start_knot "$d" bench.example. "$d/bench.example.zone"
    start_gdnsd "$d" bench.example. "$d/bench.example.zone"
    start_pdns "$d" bench.example. "$d/bench.example.zone"
    echo "comparing 40 answers of the query file across the servers:" >&2
    awk 'NR <= 30 || (/^nx/ && nx++ < 5) || (/ MX$/ && mx++ < 5)' "$d/queries" >"$d/sample"
    check_same gslbd nsd knot gdnsd pdns <"$d/sample"
    local servers=(gslbd nsd knot gdnsd pdns)
    if [ "$floor" = 1 ] && [ "$2" = first ]; then
        if command -v cc >/dev/null; then
            start_floor "$d" floor-1 single
            start_floor "$d" floor-mmsg mmsg
            servers+=(floor-1 floor-mmsg)
        else
            echo "NOTE: no C compiler (cc): the floor (UDP reflectors) is left out" >&2
        fi
    fi
    echo "dnsperf, $rounds rounds of $secs s:" >&2
    measure "static-$n" "$d/queries" "" "${servers[@]}"
    table "static-$n" "${servers[@]}" | sed "s/^#### static-$n/#### static, $n records/" | tee -a "$tables"
    stop_all
    loadms=()
    rssk=()
    pssk=()
}

if [ "$workload" = static ] || [ "$workload" = all ]; then
    IFS=, read -r -a sizes <<<"$records"
    which=first
    for n in "${sizes[@]}"; do
        run_static "$n" "$which"
        which=next
    done
fi

# shellcheck source-path=SCRIPTDIR source=compare/geo.sh
. "$repo/benches/compare/geo.sh"

echo
echo "### Summary"
echo
machine
cat "$tables"
if [ -n "$out" ]; then
    { echo "### Run of $(machine)"; cat "$tables"; } >"$out"
fi
