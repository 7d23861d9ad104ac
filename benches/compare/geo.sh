# shellcheck shell=bash
# The gslb and chain workloads of benches/compare.sh (sourced by it; uses its functions and
# variables). One decision written three ways by gen_geo.py: gslbd's [gslb] rules, gdnsd's geoip
# plugin (nets maps), PowerDNS's geoip backend (ASN + City mmdb built by `gslbd geo build` from the
# same CSV). NSD has no GSLB at all; Knot's geoip module is a separate package
# (knot-module-geoip) not set up here, so neither takes part.

# expect SERVER DIR: the server's answers against the decision the generator wrote (the six
# addresses, and the line CNAME where the server has one), for every 16th client network, both names.
expect() {
    local s=$1 d=$2 net line region addrs got want bad=0 name n=0
    while read -r net line region addrs; do
        want="$(echo "$addrs" | tr ' ' '\n' | sort | paste -sd' ')"
        [ "$s" = gdnsd ] || want="$line $want"
        for name in vip.geo.bench.example. object.geo.bench.example.; do
            n=$((n + 1))
            got=$(dig +norec +time=2 +tries=1 -p "$port" @"${addr[$s]}" "$name" A +subnet="$net" 2>/dev/null |
                awk '/^;; ANSWER SECTION:/ { a = 1; next } /^$/ { a = 0 }
                     a && $4 == "A" { print $5 }
                     a && $4 == "CNAME" && tolower($5) !~ /^vip\./ { t = tolower($5); sub(/\..*/, "", t); print "0 " t }' |
                sort | sed 's/^0 //' | paste -sd' ')
            if [ "$got" != "$want" ]; then
                bad=$((bad + 1))
                [ "$bad" -le 5 ] && printf '  %s %s from %s: %s, expected %s\n' "$s" "$name" "$net" "$got" "$want" >&2
            fi
        done
    done < <(awk 'NR % 16 == 2' "$d/expected")
    if [ "$bad" = 0 ]; then
        echo "  $s: all $n sampled answers carry the intended line and region" >&2
    else
        echo "  WARNING: $s differs from the intended decision in $bad of $n answers" >&2
    fi
}

run_geo() {
    local d=$work/geo w net name
    mkdir -p "$d"
    echo "gslb/chain workloads: generating 1,024 client networks and the three configurations" >&2
    python3 "$repo/benches/compare/gen_geo.py" "$d" 100000
    "$bin" geo build "$d/geo.csv" --out "$d" >/dev/null
    {
        gslbd_limits
        printf '[[zone]]\nname = "geo.bench.example."\nfile = "geo.bench.example.zone"\n\n'
        printf '[[listener]]\nname = "bench"\naddresses = ["%s:%s"]\nzones = ["*"]\n\n' "${addr[gslbd]}" "$port"
        cat "$d/gslbd-geo.toml"
    } >"$d/gslbd.toml"
    "$bin" check --config "$d/gslbd.toml" >"$d/check.log" 2>&1 || {
        cat "$d/check.log" >&2
        exit 1
    }
    echo "starting gslbd, gdnsd (geoip plugin), PowerDNS (geoip backend):" >&2
    start_gslbd "$d" "$d/gslbd.toml" geo.bench.example.
    start_gdnsd "$d" geo.bench.example. "$d/gdnsd.zone" "$d/gdnsd-plugins.conf"
    start_pdns "$d" geo.bench.example. - "$d/pdns-geo.yaml" "$d/geo-city.mmdb" "$d/geo-asn.mmdb"
    echo "checking the decision (ECS from every 16th client network, both names):" >&2
    for w in gslbd gdnsd pdns; do expect "$w" "$d"; done
    net=$(awk 'NR == 2 { print $1 }' "$d/expected")
    echo "answer shapes for ECS $net (TTLs dropped):" >&2
    for w in gslbd gdnsd pdns; do
        for name in vip.geo.bench.example. object.geo.bench.example.; do
            printf '  %-6s %s\n' "$w" "$(answer "$w" "$name" A "$net" | sed 's/|/ | /g')" >&2
        done
    done
    for w in gslb chain; do
        [ "$workload" = all ] || [ "$workload" = "$w" ] || continue
        echo "$w workload: dnsperf, $rounds rounds of $secs s:" >&2
        measure "$w" "$d/$w.raw" "-B" gslbd gdnsd pdns
        table "$w" gslbd gdnsd pdns |
            sed "s/^#### gslb$/#### gslb: vip -> line -> 6 addresses, 1,024 client networks by ECS/; s/^#### chain$/#### chain: object -> vip -> line -> 6 addresses, 1,024 client networks by ECS/" |
            tee -a "$tables"
    done
    stop_all
    loadms=()
    rssk=()
    pssk=()
}

if [ "$workload" != static ]; then
    run_geo
fi
