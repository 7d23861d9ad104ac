#!/usr/bin/env bash
# Rebuild geo/asn-carriers.csv (ASN -> Chinese carrier) and, with --cidrs, geo/cn-carriers.csv
# (the address ranges of those ASNs as CIDR blocks, in the gslbd override-file format) from the
# npm package @ip-location-db/asn (CC BY 4.0; RouteViews, NRO/RIR and DB-IP data).
#
# Usage: geo/build-asn-carriers.sh [--version VERSION] [--cidrs] [--out-dir DIR]
#   --version VERSION  package version to use (default: 2.3.2026061719, pinned)
#   --cidrs            also write cn-carriers.csv
#   --out-dir DIR      where to write (default: the directory of this script, i.e. geo/)
#
# Needs: npm, tar, python3 (standard library only). Network: the npm registry only.
# The organisation strings matched for each carrier are printed to stderr for review.
set -euo pipefail

PACKAGE="@ip-location-db/asn"
PINNED_VERSION="2.3.2026061719"
# sha1 of the pinned tarball as the registry reports it (dist.shasum); checked only for that version.
PINNED_SHASUM="ab2cb6488fbf93ee2e36df0392abde3ddc0dd7e8"

version="$PINNED_VERSION"
cidrs=0
out_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="${2:?--version needs a value}"; shift 2 ;;
        --version=*) version="${1#*=}"; shift ;;
        --cidrs) cidrs=1; shift ;;
        --out-dir) out_dir="${2:?--out-dir needs a value}"; shift 2 ;;
        --out-dir=*) out_dir="${1#*=}"; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done

for tool in npm tar python3; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetching $PACKAGE@$version ..." >&2
tarball="$(cd "$tmp" && npm pack --silent "$PACKAGE@$version" | tail -n 1)" ||
    { echo "npm pack $PACKAGE@$version failed" >&2; exit 1; }
[ -f "$tmp/$tarball" ] || { echo "npm pack did not produce a tarball" >&2; exit 1; }
shasum="$(sha1sum "$tmp/$tarball" | cut -d' ' -f1)"
if [ "$version" = "$PINNED_VERSION" ] && [ "$shasum" != "$PINNED_SHASUM" ]; then
    echo "checksum mismatch for $tarball: got $shasum, expected $PINNED_SHASUM" >&2
    exit 1
fi
tar -xzf "$tmp/$tarball" -C "$tmp"
for f in asn-ipv4.csv asn-ipv6.csv; do
    [ -f "$tmp/package/$f" ] || { echo "package lacks $f" >&2; exit 1; }
done

# How the file was made, recorded in its header. The default invocation is recorded without
# --version when the pinned version was used.
cmd="geo/build-asn-carriers.sh"
[ "$version" != "$PINNED_VERSION" ] && cmd="$cmd --version $version"
[ "$cidrs" = 1 ] && cmd="$cmd --cidrs"

PKG_DIR="$tmp/package" PKG_NAME="$PACKAGE" PKG_VERSION="$version" PKG_SHASUM="$shasum" \
OUT_DIR="$out_dir" WANT_CIDRS="$cidrs" BUILD_CMD="$cmd" \
python3 - <<'PY'
import collections, csv, datetime, ipaddress, os, re, sys

pkg_dir = os.environ["PKG_DIR"]
out_dir = os.environ["OUT_DIR"]
want_cidrs = os.environ["WANT_CIDRS"] == "1"

# ---------------------------------------------------------------------------------------------
# Matching rules. An organisation string is assigned to a carrier when it matches exactly one
# carrier's pattern and does not look like an overseas subsidiary (Hong Kong, Macau, Americas,
# Europe, "International", "Global", ...): carrier lines in a GSLB are about mainland access
# networks, and e.g. China Mobile Hong Kong or China Telecom Americas are not. Everything is
# case-insensitive. Deliberately conservative: a string has to name the carrier, so a foreign
# "... Mobile ..." or "Unicom Systems Inc." never becomes China Mobile / China Unicom.
# ---------------------------------------------------------------------------------------------
PROVINCES = (r"beijing|tianjin|shanghai|chongqing|hebei|shanxi|liaoning|jilin|heilongjiang|jiangsu|"
             r"zhejiang|anhui|fujian|jiangxi|shandong|henan|hubei|hunan|guangdong|hainan|sichuan|"
             r"guizhou|yunnan|shaanxi|gansu|qinghai|inner ?mongolia|guangxi|tibet|xizang|ningxia|"
             r"xinjiang|kunming|qingdao|shenzhen|guangzhou|hangzhou|wuhan|chengdu|nanjing")
CARRIERS = [
    # China Mobile; China Tietong (CRTC, formerly China Railcom) is a China Mobile subsidiary
    # since 2008 and is mapped to "mobile" as well.
    ("mobile", re.compile(r"\bchina ?mobile\b|\btietong\b|\bchina railcom\b", re.I)),
    # China Telecom: CHINANET (AS4134 and provincial networks), CN2 (AS4809), "China Telecom
    # (Group)", "China Telecommunications Corporation", "CHINATELECOM ...".
    ("telecom", re.compile(r"\bchinanet\b|\bchina ?telecom", re.I)),
    # China Unicom, including the former China Netcom (CNCGROUP, China169 backbone) and
    # provincial "UNICOM <province> province network" names.
    ("unicom", re.compile(r"\bchina ?unicom\b|\bchina ?169\b|\bcncgroup\b|\bchina ?netcom\b|"
                          r"^unicom\b.*\bprovince\b", re.I)),
    # CERNET / CERNET2, the China Education and Research Network.
    ("cernet", re.compile(r"\bcernet2?\b|\bchina education and research network\b", re.I)),
    # China Broadcasting Network and the provincial radio-and-TV (cable) networks it integrates
    # (the "guangdian" line of Chinese DNS providers). Broadcasters themselves (CCTV, China Radio
    # International) are not networks and do not match.
    ("broadcast", re.compile(
        r"^china (broadcast(ing)?|radio and television)\b"
        r"|\b(" + PROVINCES + r")\b.*\b(radio|broadcast(ing)?|catv|cable|tv|television)\b"
        r"|\bhuashu media\b|^oriental cable network\b|^teda cable television\b", re.I)),
]
OVERSEAS = re.compile(
    r"hong ?kong|\(h\.?k\.?\)|\bhk\b|\bmaca[uo]\b|americas|europe|\binternational\b|\bglobal\b|"
    r"singapore|brazil|russia|thailand|south africa|indonesia|shatin|new zealand", re.I)
# Words that make a string worth showing as a near miss when it was not matched.
HINT = re.compile(r"china|chinanet|unicom|cernet|tietong|railcom|cncgroup|p\.r\.china|"
                  r"radio and television|broadcast&tv", re.I)


def classify(org):
    hits = [name for name, rx in CARRIERS if rx.search(org)]
    if not hits:
        return None, "nomatch"
    if len(hits) > 1:
        return None, "ambiguous:" + "+".join(hits)
    if OVERSEAS.search(org):
        return None, "overseas:" + hits[0]
    return hits[0], "ok"


def read_ranges(path):
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) < 4 or not row[2].strip().isdigit():
                continue
            yield row[0].strip(), row[1].strip(), int(row[2]), row[3].strip()


files = ["asn-ipv4.csv", "asn-ipv6.csv"]
orgs_per_asn = collections.defaultdict(collections.Counter)
for name in files:
    for _start, _end, asn, org in read_ranges(os.path.join(pkg_dir, name)):
        orgs_per_asn[asn][org] += 1

table = {}            # asn -> (carrier, organisation)
by_carrier = collections.defaultdict(lambda: collections.defaultdict(list))
skipped = collections.defaultdict(lambda: collections.defaultdict(list))
for asn, counter in orgs_per_asn.items():
    # One organisation per ASN: the most frequent spelling (ties: alphabetically first).
    org = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    carrier, why = classify(org)
    if carrier:
        table[asn] = (carrier, org)
        by_carrier[carrier][org].append(asn)
        others = {classify(o)[0] for o in counter if o != org}
        if others - {carrier}:
            print(f"warning: AS{asn} has other spellings that classify differently: "
                  f"{sorted(counter)}", file=sys.stderr)
    elif why != "nomatch" or HINT.search(org):
        skipped[why][org].append(asn)

# ---- review output on stderr ----------------------------------------------------------------
def show(title, groups):
    print(f"== {title}", file=sys.stderr)
    for org in sorted(groups, key=str.lower):
        asns = sorted(groups[org])
        shown = ",".join(str(a) for a in asns[:12]) + (",..." if len(asns) > 12 else "")
        print(f"   {len(asns):4d} ASN  {org}   [{shown}]", file=sys.stderr)

for name, _rx in CARRIERS:
    show(f"{name}: organisation strings matched", by_carrier[name])
for why in sorted(skipped):
    title = {"nomatch": "not matched (contain a China-related word; check for misses)"}.get(
        why, f"excluded ({why})")
    show(title, skipped[why])

# ---- header ---------------------------------------------------------------------------------
def clean(org):
    # Keep fields free of CSV specials so naive comma-splitting readers work too.
    return re.sub(r"\s+", " ", org.replace(",", ";").replace('"', "")).strip()

today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
header = [
    "{what}",
    f"Source: npm package {os.environ['PKG_NAME']}@{os.environ['PKG_VERSION']} "
    f"(tarball sha1 {os.environ['PKG_SHASUM']}), files {', '.join(files)}.",
    f"Generated {today} by: {os.environ['BUILD_CMD']}",
    "Licence: CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). This is an adapted",
    "extract: rows were selected by organisation name and assigned a carrier id by gslbd's build",
    "script (see geo/ATTRIBUTION.md); commas in organisation names were replaced by ';'.",
    "Attribution required by the package's licence files:",
    "  IP to AS Number data by Route Views, https://www.routeviews.org/ (routeviews.org).",
    "  RIR statistics data by the Number Resource Organization (NRO), https://www.nro.net/.",
    "  IP to ASN Lite data by DB-IP, https://db-ip.com/ ('IP Geolocation by DB-IP'; web pages that",
    "  display or use results must link back to https://db-ip.com).",
    "Compiled by ip-location-db (https://github.com/sapics/ip-location-db).",
    "Carrier ids: mobile (China Mobile, incl. China Tietong), telecom (China Telecom/CHINANET/CN2),",
    "unicom (China Unicom incl. former CNCGROUP/China Netcom), cernet (CERNET/CERNET2),",
    "broadcast (China Broadcasting Network and provincial radio-and-TV networks).",
    "Overseas subsidiaries (Hong Kong, Macau, Americas, Europe, International, Global) are excluded.",
]

def write_header(f, what):
    for line in header:
        f.write("# " + line.format(what=what) + "\n")

# ---- asn-carriers.csv -----------------------------------------------------------------------
path = os.path.join(out_dir, "asn-carriers.csv")
with open(path, "w", encoding="utf-8", newline="\n") as f:
    write_header(f, "ASN -> Chinese carrier table for gslbd (one row per ASN, sorted by ASN).")
    f.write("asn,carrier,organisation\n")
    for asn in sorted(table):
        carrier, org = table[asn]
        f.write(f"{asn},{carrier},{clean(org)}\n")

counts = collections.Counter(c for c, _ in table.values())
print("== rows per carrier: " + ", ".join(f"{n}={counts[n]}" for n, _ in CARRIERS)
      + f", total={len(table)} -> {path}", file=sys.stderr)

# ---- cn-carriers.csv (optional) -------------------------------------------------------------
if want_cidrs:
    rows = []
    addrs = collections.Counter()
    for name in files:
        for start, end, asn, _org in read_ranges(os.path.join(pkg_dir, name)):
            if asn not in table:
                continue
            carrier, org = table[asn]
            a, b = ipaddress.ip_address(start), ipaddress.ip_address(end)
            for net in ipaddress.summarize_address_range(a, b):
                rows.append((net.version, int(net.network_address), net.prefixlen,
                             str(net), carrier, asn, clean(org)))
                if net.version == 4:
                    addrs[carrier] += net.num_addresses
    rows.sort()
    path = os.path.join(out_dir, "cn-carriers.csv")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        write_header(f, "Address blocks of the ASNs in asn-carriers.csv as CIDRs, in the gslbd "
                        "override-file format (carrier only; location columns left empty).")
        f.write("network,carrier,asn,organisation,country,province,city,latitude,longitude\n")
        for _v, _n, _p, net, carrier, asn, org in rows:
            f.write(f"{net},{carrier},{asn},{org},,,,,\n")
    v4 = sum(1 for r in rows if r[0] == 4)
    print(f"== cn-carriers.csv: {v4} IPv4 + {len(rows) - v4} IPv6 blocks -> {path}", file=sys.stderr)
    print("== IPv4 addresses per carrier: "
          + ", ".join(f"{n}={addrs[n]}" for n, _ in CARRIERS), file=sys.stderr)
PY
