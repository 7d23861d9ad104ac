#!/usr/bin/env python3
"""Static workload of benches/compare.sh: a zone of N records and a query file.

Usage: gen_zone.py N ZONEFILE QUERYFILE [QUERIES]

The zone is bench.example. (SOA, two NS with in-zone addresses) plus N records on names h0..h{N-1},
the type of h{i} fixed by i % 20: 8/20 A, 4/20 AAAA, 4/20 CNAME (to an A name, in the zone),
2/20 MX (exchange: an A name, so servers add its address), 2/20 TXT.
The query file (dnsperf format, QUERIES lines, default 100,000, fixed seed) asks each sampled name
for the type it holds (A for CNAME names: CNAME + target A in one answer), and 5 % of the lines are
names that do not exist (NXDOMAIN).
"""
import random
import sys

ORIGIN = "bench.example."


def kind(i):
    k = i % 20
    if k < 8:
        return "A"
    if k < 12:
        return "AAAA"
    if k < 16:
        return "CNAME"
    if k < 18:
        return "MX"
    return "TXT"


def a_target(i, n):
    """An A-record name index derived from i (the nearest i' <= j with i' % 20 < 8)."""
    j = (i * 7919 + 13) % n
    j -= j % 20
    return j if j < n else 0


def main():
    n = int(sys.argv[1])
    zone_path, query_path = sys.argv[2], sys.argv[3]
    nq = int(sys.argv[4]) if len(sys.argv) > 4 else 100_000
    if n < 20:
        sys.exit("N must be at least 20")
    with open(zone_path, "w", buffering=1 << 20) as z:
        z.write(f"$ORIGIN {ORIGIN}\n$TTL 3600\n")
        z.write("@ IN SOA ns1 hostmaster 2026112201 3600 900 1209600 300\n")
        z.write("@ IN NS ns1\n@ IN NS ns2\n")
        z.write("ns1 IN A 127.0.60.250\nns2 IN A 127.0.60.251\n")
        w = z.write
        for i in range(n):
            k = i % 20
            if k < 8:
                w(f"h{i} IN A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
            elif k < 12:
                w(f"h{i} IN AAAA 2001:db8::{i >> 16:x}:{i & 0xffff:x}\n")
            elif k < 16:
                w(f"h{i} IN CNAME h{a_target(i, n)}\n")
            elif k < 18:
                w(f"h{i} IN MX 10 h{a_target(i, n)}\n")
            else:
                w(f'h{i} IN TXT "v=spf1 ip4:10.{(i >> 8) & 255}.{i & 255}.0/24 -all" "record {i}"\n')
    rng = random.Random(6)
    with open(query_path, "w") as q:
        for _ in range(nq):
            if rng.random() < 0.05:
                q.write(f"nx{rng.randrange(1 << 30)}.{ORIGIN} A\n")
                continue
            i = rng.randrange(n)
            t = kind(i)
            q.write(f"h{i}.{ORIGIN} {'A' if t == 'CNAME' else t}\n")


if __name__ == "__main__":
    main()
