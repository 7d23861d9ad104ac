//! ns per piece of the authoritative path on the lab world: parsing a query, the engine's lookup,
//! encoding the answer, the whole general path `query::respond` (parse + lookup + encode +
//! counters), and the UDP fast path (`fast::Worker`, warm: a prebuilt answer written for the
//! query) for a plain hit, a CNAME chain, an MX with additional addresses and an NXDOMAIN; and
//! for the GSLB chain (object -> vip -> line -> pool, client 127.0.10.1) the general path and the
//! fast path (geo from the worker's cache, the engine still deciding).
//!
//!     cargo bench --bench wire

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;

use criterion::{Criterion, criterion_group, criterion_main};
use gslbd::config::Source;
use gslbd::engine::{self, Question};
use gslbd::fast::Worker;
use gslbd::query::{self, Client, Transport, client_addr};
use gslbd::snapshot::Snapshot;
use gslbd::udp::Answerer;
use gslbd::wire;

/// A query as dig sends it: RD, EDNS with a 1232-byte payload.
fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name.trim_end_matches('.').split('.') {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&[0, 1]);
    b.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    b
}

fn bench(c: &mut Criterion) {
    let snap = Snapshot::build(&Source::lab()).expect("the lab builds");
    let cases = [
        // www rotates its four addresses (`rotate = true`): the fast path sends it to the engine.
        ("hit", query("www.yourcompany.com", 1)),
        ("hit, one address", query("mail.yourcompany.com", 1)),
        ("wildcard", query("x.apps.yourcompany.com", 1)),
        ("cname chain", query("api.yourcompany.com", 1)),
        ("mx + additional", query("yourcompany.com", 15)),
        ("nxdomain", query("nothere.yourcompany.com", 1)),
    ];
    let peer: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let client = Client {
        addr: peer,
        transport: Transport::Udp,
    };
    for (what, packet) in &cases {
        c.bench_function(&format!("parse ({what})"), |b| {
            b.iter(|| black_box(wire::parse_query(black_box(packet)).is_ok()))
        });
        let q = wire::parse_query(packet).unwrap();
        let question = Question {
            key: q.key(),
            name: q.name(),
            qtype: q.rtype(),
            client: client_addr(None, peer.ip()),
            dnssec_ok: false,
        };
        c.bench_function(&format!("lookup ({what})"), |b| {
            b.iter(|| {
                black_box(
                    engine::answer(
                        snap.view(0),
                        &snap.gslb,
                        black_box(&question),
                        12,
                        &mut gslbd::query::env(&gslbd::gslb::LiveHealth::CHECKS, None),
                        None,
                    )
                    .answer
                    .len(),
                )
            })
        });
        let answer = engine::answer(
            snap.view(0),
            &snap.gslb,
            &question,
            12,
            &mut gslbd::query::env(&gslbd::gslb::LiveHealth::CHECKS, None),
            None,
        );
        let max = wire::max_size(q.edns.as_ref(), false, 1232);
        let mut buf = Vec::with_capacity(512);
        c.bench_function(&format!("encode ({what})"), |b| {
            b.iter(|| {
                wire::encode_answer_into(&q, black_box(&answer), max, 1232, &mut buf);
                black_box(buf.len())
            })
        });
        c.bench_function(&format!("respond ({what})"), |b| {
            b.iter(|| black_box(query::respond(&snap, 0, black_box(packet), &client)))
        });
        let mut worker = worker();
        let mut out = Vec::with_capacity(512);
        c.bench_function(&format!("fast path ({what})"), |b| {
            b.iter(|| {
                out.clear();
                black_box(worker.answer(black_box(packet), peer, &mut out))
            })
        });
    }
    let gslb_peer: SocketAddr = "127.0.10.1:5353".parse().unwrap();
    let gslb_client = Client {
        addr: gslb_peer,
        transport: Transport::Udp,
    };
    let packet = query("object.yourcompany.com", 1);
    c.bench_function("respond (gslb chain)", |b| {
        b.iter(|| black_box(query::respond(&snap, 0, black_box(&packet), &gslb_client)))
    });
    let mut worker = worker();
    let mut out = Vec::with_capacity(512);
    c.bench_function("fast path (gslb chain)", |b| {
        b.iter(|| {
            out.clear();
            black_box(worker.answer(black_box(&packet), gslb_peer, &mut out))
        })
    });

    // What response rate limiting and cookies add to a prebuilt answer (issue 13): RRL on with a
    // rate no query reaches (every answer classified and charged, none limited); a client
    // cookie alone (a fresh server cookie made per answer); a valid server cookie (checked,
    // echoed, RRL skipped).
    let hit = query("mail.yourcompany.com", 1);
    let peer: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let mut limited = worker_with(|s| {
        s.rrl = gslbd::rrl::RrlSettings::compile(
            &toml::from_str("enabled = true\nrate = 1000000").unwrap(),
        )
        .unwrap();
    });
    c.bench_function("fast path (hit, one address, RRL on)", |b| {
        b.iter(|| {
            out.clear();
            black_box(limited.answer(black_box(&hit), peer, &mut out))
        })
    });
    let with_cookie = |cookie: &[u8]| {
        let mut q = hit.clone();
        q.truncate(q.len() - 2); // OPT RDLENGTH 0
        q.extend_from_slice(&(4 + cookie.len() as u16).to_be_bytes());
        q.extend_from_slice(&[0, 10]);
        q.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
        q.extend_from_slice(cookie);
        q
    };
    let client_only = with_cookie(b"clientck");
    let mut w = worker_with(|_| {});
    c.bench_function("fast path (hit, one address, client cookie)", |b| {
        b.iter(|| {
            out.clear();
            black_box(w.answer(black_box(&client_only), peer, &mut out))
        })
    });
    out.clear();
    w.answer(&client_only, peer, &mut out);
    let given = &out[out.len() - 24..];
    let valid = with_cookie(given);
    c.bench_function("fast path (hit, one address, valid server cookie)", |b| {
        b.iter(|| {
            let mut o = Vec::with_capacity(512);
            black_box(w.answer(black_box(&valid), peer, &mut o))
        })
    });
}

/// A UDP thread's state serving the lab (listener 0), as `server` starts one.
fn worker() -> Worker {
    worker_with(|_| {})
}

/// `worker` with the lab's snapshot changed by `change` first.
fn worker_with(change: impl FnOnce(&mut Snapshot)) -> Worker {
    let mut snap = Snapshot::build(&Source::lab()).expect("the lab builds");
    change(&mut snap);
    let shared = Arc::new(ArcSwap::from_pointee(snap));
    let mut w = Worker::new(
        shared,
        0,
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        64 << 20,
        Arc::new(gslbd::rrl::Limiter::new(1 << 16)),
    );
    w.begin();
    w
}

criterion_group!(benches, bench);
criterion_main!(benches);
