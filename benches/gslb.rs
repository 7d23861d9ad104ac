//! ns per GSLB decision on the lab world: geo lookup alone, one rule's decision, and the whole
//! two-layer chain (object -> vip -> line -> six addresses) through the engine and the encoder.
//!
//!     cargo bench --bench gslb

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use gslbd::config::Source;
use gslbd::engine::{self, Question};
use gslbd::gslb::{AllUp, Chance};
use gslbd::query::client_addr;
use gslbd::snapshot::Snapshot;
use gslbd::zone::name::key_of;
use hickory_proto::rr::{Name, RecordType};

const CLIENTS: &[&str] = &[
    "127.0.10.1",
    "127.0.11.1",
    "127.0.12.1",
    "127.0.13.1",
    "127.0.14.1",
    "192.0.2.130",
    "198.51.100.70",
    "2001:db8:a::1",
];

fn bench(c: &mut Criterion) {
    let snap = Snapshot::build(&Source::lab()).expect("the lab builds");
    let clients: Vec<IpAddr> = CLIENTS.iter().map(|s| s.parse().unwrap()).collect();
    let gslb = &snap.gslb;

    c.bench_function("geo lookup (override + ASN mmdb + City mmdb)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % clients.len();
            black_box(gslb.geo.lookup(black_box(clients[i])));
        })
    });

    let mut cache = gslbd::geo::GeoCache::default();
    c.bench_function("geo lookup (a UDP thread's cache, warm)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % clients.len();
            black_box(cache.lookup(&gslb.geo, black_box(clients[i])).carrier);
        })
    });

    let vip = gslb.rule_index("object.vip.yourcompany.com.").unwrap();
    let yd = gslb.rule_index("object.yd.yourcompany.com.").unwrap();
    let infos: Vec<_> = clients.iter().map(|ip| gslb.geo.lookup(*ip)).collect();
    let addrs: Vec<_> = clients.iter().map(|ip| client_addr(None, *ip)).collect();
    let mut chance = Chance::new(0, 1);
    for (what, rule) in [("carrier", vip), ("location", yd)] {
        c.bench_function(&format!("{what} rule decision (geo done)"), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % clients.len();
                let (client, info) = (&addrs[i], &infos[i]);
                let d = gslb.decide(rule, RecordType::A, client, info, &AllUp, &mut chance, None);
                black_box(d.scope);
            })
        });
    }

    let key = key_of(&Name::from_ascii("object.yourcompany.com.").unwrap());
    c.bench_function("two-layer chain: geo + both rules + engine", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % clients.len();
            let q = Question {
                key: &key,
                name: &key,
                qtype: RecordType::A,
                client: addrs[i],
                dnssec_ok: false,
            };
            black_box(
                engine::answer(
                    snap.view(0),
                    gslb,
                    &q,
                    12,
                    &mut gslbd::query::env(&gslbd::gslb::LiveHealth::CHECKS, None),
                    None,
                )
                .answer
                .len(),
            );
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
