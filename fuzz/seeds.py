#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/seed-*): ordinary inputs of
each kind, the corners the battery pins, and inputs fuzzing found (kept as regressions). Run from
the repository root; the files are checked in, so CI needs no Python for them."""

import os
import struct


def name(n):
    out = b""
    for label in n.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qname, qtype=1, qclass=1, flags=0x0100, edns=None, extra_ar=b"", counts=None):
    qd, an, ns, ar = counts or (1, 0, 0, (1 if edns is not None else 0))
    head = struct.pack(">HHHHHH", 0x1234, flags, qd, an, ns, ar)
    body = name(qname) + struct.pack(">HH", qtype, qclass)
    if edns is not None:
        payload, do, opts = edns
        body += b"\0" + struct.pack(">HHIH", 41, payload, 0x8000 if do else 0, len(opts)) + opts
    return head + body + extra_ar


def ecs(ip4, prefix):
    octets = bytes(int(x) for x in ip4.split("."))[: (prefix + 7) // 8]
    data = struct.pack(">HBB", 1, prefix, 0) + octets
    return struct.pack(">HH", 8, len(data)) + data


def write(target, items):
    d = os.path.join("fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(items):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(data)


dns = [
    query("object.yourcompany.com", 1, edns=(1232, False, ecs("127.0.10.0", 24))),
    query("www.yourcompany.com", 28, edns=(4096, True, b"")),
    query("yourcompany.com", 255),
    query("nothere.yourcompany.com", 1, edns=(512, False, b"")),
    query("static.yourcompany.com", 1, flags=0),
    query("yourcompany.com", 252),
    query("id.server", 16, qclass=3),
    query("www.example.com", 1, edns=(1232, False, struct.pack(">HH", 3, 0))),
    query("www.example.com", 1, edns=(1232, False, struct.pack(">HH", 10, 12) + b"x" * 12)),
    query("", 1, counts=(0, 0, 0, 1), edns=(1232, False, b"")),
    query("big.example.com", 16, edns=(512, False, b"")),
    query("c1.example.com", 1),
    query("a.b.wild.example.com", 15),
    b"\x12\x34",
    b"\x12\x34\x81\x00" + b"\0" * 8,
]
write("query", dns)
write("fast_path", dns)

with open("tests/data/battery/example.com.zone", "rb") as f:
    battery_zone = f.read()
write(
    "zone",
    [
        battery_zone,
        b"$ORIGIN example.com.\n$TTL 60\n@ SOA ns h 1 1 1 1 1\n@ NS ns\nns A 192.0.2.1\nd DNAME x.example.net.\nw.d A 192.0.2.2\n",
        b"@ 60 IN SOA ns h ( 1 2\n 3 4 5 )\n@ NS ns\n$INCLUDE same\n",
        b"@ 60 IN TXT \"unterminated\n",
        b"a 60 IN TYPE65280 \\# 3 010203\n",
    ],
)

with open("zones/lab.toml", "rb") as f:
    lab = f.read()
write(
    "config",
    [
        lab,
        b"[limits]\nudp_payload = 100\n",
        b"[[zone]]\nname = 1\n",
        b"[server]\nidentity = \"ns1\"\nversion = \"x\"\n",
    ],
)

with open("geo/lab.csv", "rb") as f:
    geo = f.read()
write("geo_csv", [geo, geo.splitlines(True)[0] + b"1.2.3.0/24,,,,,\n", b"network\n::/0\n"])


def reply(flags, answers, qtype=1):
    head = struct.pack(">HHHHHH", 0x1234, flags, 1, len(answers), 0, 0)
    q = name("www.yourcompany.com") + struct.pack(">HH", qtype, 1)
    return head + q + b"".join(answers)


def rr(rtype, rdata, rclass=1, owner=b"\xc0\x0c", ttl=300):
    return owner + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


write(
    "resolver_reply",
    [
        reply(0x8400, [rr(1, bytes([192, 0, 2, 10]))]),
        reply(0x8400, [rr(5, name("web.yourcompany.com"))]),
        # Found by fuzzing: opcode UPDATE (5) and an A record with RDLENGTH 0 was cached and served
        # malformed to every client (issue 14 item 4).
        reply(0x8000 | (5 << 11) | 0x0400, [rr(1, b"")]),
        # A CHAOS-class A record must not be cached as IN.
        reply(0x8400, [rr(1, bytes([192, 0, 2, 66]), rclass=3)]),
        reply(0x8403, []),
    ],
)

write(
    "http",
    [
        b"GET /100000/d?host=object.yourcompany.com\n\n",
        b"GET /resolve?name=www.yourcompany.com&type=AAAA\n\n",
        b"GET /dns-query?dns=EjQBAAABAAAAAAAAA3d3dwt5b3VyY29tcGFueQNjb20AAAEAAQ\n\n",
        b"POST /dns-query\ncontent-type: application/dns-message\n\n\x12\x34",
        b"GET /healthz\n\n",
        b"GET /metrics\n\n",
        b"GET /openapi.json\n\n",
        b"POST /admin/reload\nauthorization: Bearer nope\n\n",
        b"GET /trace?name=www.yourcompany.com\n\n",
        b"GET /%ff%fe?x=\xff\n\n",
    ],
)
