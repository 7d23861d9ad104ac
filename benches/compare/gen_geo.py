#!/usr/bin/env python3
"""GSLB and chain workloads of benches/compare.sh: one decision, written three ways.

Usage: gen_geo.py OUTDIR [QUERIES]

The decision (the lab's two layers, design.md section 1): a client's carrier picks a line
(mobile -> yd, telecom -> dx, unicom -> lt, anyone else -> bgp), the client's province picks a
region (bj, sh, gz: eight provinces each, as in zones/lab.toml), and the answer is the six
addresses of that line's pool in that region. Names, in zone geo.bench.example.:
  vip    -> CNAME <line>, whose A records are the region's six addresses   (gslb workload)
  object -> CNAME vip, then the same                                       (chain workload)

Clients: 1,024 /24 networks in 100.64.0.0/14; one in 16 is in no geo data (default line bgp,
default region bj); the others get an ASN (9808 China Mobile, 4134 China Telecom, 4837 China
Unicom, 64500 a transit no carrier owns) and one of the 24 provinces, at random (fixed seed).

Written to OUTDIR:
  geo.csv              the clients in gslbd's geo CSV format (`gslbd geo build` makes the mmdb
                       files PowerDNS reads from it)
  gslbd-geo.toml       gslbd's [geo] and [gslb] tables (the script adds [limits], zone, listener)
  geo.bench.example.zone         the zone for gslbd (object CNAME vip; the rules answer the rest)
  gdnsd-plugins.conf   gdnsd's geoip plugin: one `nets` map from each client network to its
                       (line, region) pool (gdnsd reads no ASN data: nets are how its users map
                       carriers; it compiles City data into the same kind of network tree)
  gdnsd.zone           the zone for gdnsd: vip DYNA (the six addresses, no line CNAME: see below)
  pdns-geo.yaml        PowerDNS geoip backend: vip service by %as (ASN mmdb) -> static CNAME to
                       the line; line services by %ci (City mmdb) through custom_mapping -> region
  expected             NETWORK LINE REGION ADDRESSES... for every client network
  gslb.raw, chain.raw  QUERIES binary queries (dnsperf -B: 2-byte length + message), each with
                       an ECS option (RFC 7871) for a random client network /24
"""
import os
import random
import struct
import sys

ZONE = "geo.bench.example."
REGIONS = {
    "bj": ((39.9042, 116.4074), [("Beijing", "Beijing"), ("Tianjin", "Tianjin"), ("Hebei", "Shijiazhuang"),
                                 ("Shanxi", "Taiyuan"), ("Liaoning", "Shenyang"), ("Jilin", "Changchun"),
                                 ("Heilongjiang", "Harbin"), ("Shandong", "Jinan")]),
    "sh": ((31.2304, 121.4737), [("Shanghai", "Shanghai"), ("Jiangsu", "Nanjing"), ("Zhejiang", "Hangzhou"),
                                 ("Anhui", "Hefei"), ("Fujian", "Fuzhou"), ("Jiangxi", "Nanchang"),
                                 ("Henan", "Zhengzhou"), ("Hubei", "Wuhan")]),
    "gz": ((23.1291, 113.2644), [("Guangdong", "Guangzhou"), ("Guangxi", "Nanning"), ("Hainan", "Haikou"),
                                 ("Hunan", "Changsha"), ("Sichuan", "Chengdu"), ("Chongqing", "Chongqing"),
                                 ("Guizhou", "Guiyang"), ("Yunnan", "Kunming")]),
}
REGION_ORDER = ["bj", "sh", "gz"]          # bj first: the default region
CARRIERS = [  # carrier id, display, ASN, organisation, line, share of clients
    ("mobile", "China Mobile", 9808, "China Mobile Communications Group Co., Ltd.", "yd", 0.35),
    ("telecom", "China Telecom", 4134, "CHINANET-BACKBONE", "dx", 0.30),
    ("unicom", "China Unicom", 4837, "CHINA UNICOM China169 Backbone", "lt", 0.25),
    (None, None, 64500, "Example Transit", "bgp", 0.10),
]
LINES = ["yd", "dx", "lt", "bgp"]
NETWORKS = 1024


def pool(line, region):
    third = LINES.index(line) * 16 + REGION_ORDER.index(region)
    return [f"198.18.{third}.{k}" for k in range(1, 7)]


def networks():
    rng = random.Random(6)
    provinces = [(r, p, c) for r in REGION_ORDER for p, c in REGIONS[r][1]]
    out = []
    for i in range(NETWORKS):
        net = f"100.{64 + (i >> 8)}.{i & 255}.0"
        if i % 16 == 15:
            out.append((net, None, None, None, None))
            continue
        x = rng.random()
        for car in CARRIERS:
            x -= car[5]
            if x < 0:
                break
        out.append((net, car, *rng.choice(provinces)))
    return out


def query(name, net):
    """A query for NAME/A with EDNS and ECS NET/24 (ID 0: dnsperf sets its own)."""
    msg = struct.pack(">HHHHHH", 0, 0, 1, 0, 0, 1)
    for label in name.rstrip(".").split("."):
        msg += bytes([len(label)]) + label.encode()
    msg += b"\0" + struct.pack(">HH", 1, 1)
    ecs = struct.pack(">HBB", 1, 24, 0) + bytes(int(x) for x in net.split(".")[:3])
    opt = struct.pack(">HH", 8, len(ecs)) + ecs
    msg += b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(opt)) + opt
    return struct.pack(">H", len(msg)) + msg


def main():
    out = sys.argv[1]
    nq = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    os.makedirs(out, exist_ok=True)
    nets = networks()
    p = lambda f: os.path.join(out, f)  # noqa: E731

    def decision(car, region):
        return (car[4] if car else "bgp"), (region or "bj")

    with open(p("geo.csv"), "w") as f:
        f.write("# benches/compare: client networks of the gslb and chain workloads (generated)\n")
        f.write("network,carrier,asn,organisation,country,province,city,latitude,longitude\n")
        for net, car, _region, prov, city in nets:
            if car is None:
                continue
            f.write(f'{net}/24,,{car[2]},"{car[3]}",CN,{prov},{city},,\n')

    with open(p("expected"), "w") as f:
        for n in nets:
            line, region = decision(n[1], n[2])
            f.write(f"{n[0]}/24 {line} {region} {' '.join(pool(line, region))}\n")

    # gslbd
    with open(p("gslbd-geo.toml"), "w") as f:
        f.write('[geo]\nasn_db = "geo.csv"\ncity_db = "geo.csv"\n\n')
        for car in CARRIERS:
            if car[0]:
                f.write(f'[geo.carrier.{car[0]}]\nname = "{car[1]}"\nasns = [{car[2]}]\n\n')
        for r in REGION_ORDER:
            (lat, lon), provs = REGIONS[r]
            plist = ", ".join(f'"{pr}"' for pr, _ in provs)
            f.write(f"[gslb.region.{r}]\nlocation = [{lat}, {lon}]\nprovinces = [{plist}]\n\n")
        lines = ", ".join(f'{c[0]} = "{c[4]}.{ZONE}"' for c in CARRIERS if c[0])
        f.write(f'[[gslb.carrier]]\nname = "vip.{ZONE}"\nttl = 20\ndefault = "bgp.{ZONE}"\n'
                f"lines = {{ {lines} }}\n\n")
        for line in LINES:
            f.write(f'[[gslb.location]]\nname = "{line}.{ZONE}"\nttl = 30\nanswer = 6\n'
                    f'select = "mapping"\ndefault = "bj"\n')
            for r in REGION_ORDER:
                addrs = ", ".join(f'"{a}"' for a in pool(line, r))
                f.write(f"pools.{r} = [{addrs}]\n")
            f.write("\n")
    soa = (f"$ORIGIN {ZONE}\n$TTL 3600\n@ IN SOA ns1 hostmaster 2026112201 3600 900 1209600 300\n"
           "@ IN NS ns1\nns1 IN A 127.0.60.250\nobject 600 IN CNAME vip\n")
    with open(p(f"{ZONE}zone"), "w") as f:
        f.write(soa)

    # gdnsd: a DYNC may not point into its own zone ("cannot be used from DYNC in its own zone"),
    # and CNAMEs are chased only inside one zone, so the carrier hop cannot be a CNAME in the same
    # response. The same decision is one DYNA whose "datacenters" are the 12 (line, region) pools:
    # vip answers the six addresses directly (no line CNAME); object -> vip is a zone-local chain.
    combos = [f"{line}_{r}" for line in LINES for r in REGION_ORDER]
    combos.remove("bgp_bj")
    combos.insert(0, "bgp_bj")  # the default: no carrier, no location
    with open(p("gdnsd.zone"), "w") as f:
        f.write(soa)
        f.write("vip 30 DYNA geoip!vip\n")
    with open(p("gdnsd-plugins.conf"), "w") as f:
        f.write("plugins => { geoip => {\n  maps => {\n")
        f.write(f"    gslb => {{\n      datacenters => [{', '.join(combos)}]\n      nets => {{\n")
        for n in nets:
            if n[1]:
                line, region = decision(n[1], n[2])
                f.write(f"        {n[0]}/24 => {line}_{region}\n")
        f.write("      }\n    }\n  }\n  resources => {\n")
        f.write("    vip => {\n      map => gslb\n      dcmap => {\n")
        for c in combos:
            line, r = c.split("_")
            f.write(f"        {c} => [ {', '.join(pool(line, r))} ]\n")
        f.write("      }\n    }\n  }\n}}\n")

    # PowerDNS geoip backend
    z = ZONE.rstrip(".")
    with open(p("pdns-geo.yaml"), "w") as f:
        f.write(f"domains:\n  - domain: {z}\n    ttl: 30\n    records:\n")
        f.write(f"      {z}:\n        - soa: ns1.{z} hostmaster.{z} 2026112201 3600 900 1209600 300\n"
                f"        - ns: ns1.{z}\n")
        f.write(f"      ns1.{z}:\n        - a: 127.0.60.250\n")
        f.write(f"      object.{z}:\n        - cname: {{content: vip.{z}, ttl: 600}}\n")
        for car in CARRIERS:
            key = car[2] if car[0] else "other"
            f.write(f"      {key}.carrier.{z}:\n        - cname: {{content: {car[4]}.{z}, ttl: 20}}\n")
        for line in LINES:
            for r in REGION_ORDER:
                f.write(f"      {r}.{line}.{z}:\n")
                for a in pool(line, r):
                    f.write(f"        - a: {a}\n")
        f.write("    services:\n")
        f.write(f"      vip.{z}: ['%as.carrier.{z}', 'other.carrier.{z}']\n")
        for line in LINES:
            f.write(f"      {line}.{z}: ['%mp.{line}.{z}', 'bj.{line}.{z}']\n")
        f.write("    mapping_lookup_formats: ['%ci']\n    custom_mapping:\n")
        for r in REGION_ORDER:
            for _, city in REGIONS[r][1]:
                f.write(f"      {city.lower()}: {r}\n")

    rng = random.Random(7)
    for label, name in (("gslb", f"vip.{ZONE}"), ("chain", f"object.{ZONE}")):
        with open(p(f"{label}.raw"), "wb") as f:
            for _ in range(nq):
                f.write(query(name, rng.choice(nets)[0]))


if __name__ == "__main__":
    main()
