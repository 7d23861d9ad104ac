//! ns per resolver cache hit (issue 14): a UDP hit on a 1-record RRset and on a 4,000-record one
//! (64 KB: truncated, TC=1) and a TCP hit on the same (written whole), each two ways:
//!
//! - "before": what a hit cost until the cache kept its encoding, the cache's general path
//!   (`resolver::from_cache`: every record cloned with its TTL set) and `wire::encode_records`
//!   (every record encoded, then the lot dropped when it does not fit);
//! - "after": `resolver::serve::answer_now`, the whole hit as the listener runs it (parse, access
//!   list, the pre-encoded RRset copied and its TTLs patched, or TC decided from its size).
//!
//!     cargo bench --features cluster --bench resolver

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use gslbd::config::Source;
use gslbd::resolver::cache::Rank;
use gslbd::resolver::serve::{Step, answer_now};
use gslbd::resolver::{Env, Resolvers, from_cache};
use gslbd::snapshot::Snapshot;
use gslbd::wire;
use gslbd::zone::name::key_of;
use hickory_proto::rr::{Name, RData, Record, rdata};

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
    let settings = snap.resolver.clone().expect("the lab has a resolver");
    let resolvers = Resolvers::default();
    let inst = resolvers.instance("mobile", &settings);
    let rrset = |owner: &str, n: u32| -> Vec<Record> {
        let name = Name::from_ascii(owner).unwrap();
        (0..n)
            .map(|i| {
                Record::from_rdata(
                    name.clone(),
                    3600,
                    RData::A(rdata::A::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)),
                )
            })
            .collect()
    };
    for (owner, n) in [("one.example.", 1), ("big.example.", 4000)] {
        let name = Name::from_ascii(owner).unwrap();
        inst.cache
            .insert_rrset(key_of(&name), rrset(owner, n), Rank::Answer, None);
    }
    let peer: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let env = Env {
        settings: &settings,
        listener: &settings.listeners[0],
        instance: &inst,
        port: 53,
    };
    for (what, owner, tcp) in [
        ("1 record, udp", "one.example.", false),
        ("4000 records, udp (TC)", "big.example.", false),
        ("4000 records, tcp", "big.example.", true),
    ] {
        let packet = query(owner, 1);
        let q = wire::parse_query(&packet).unwrap();
        let name = Name::from_ascii(owner).unwrap();
        let max = wire::max_size(q.edns.as_ref(), tcp, 1232);
        c.bench_function(&format!("resolver hit before ({what})"), |b| {
            b.iter(|| {
                let res = from_cache(&env, black_box(&name), q.rtype(), Some(peer.ip())).unwrap();
                let bytes =
                    wire::encode_records(&q, res.rcode, &res.answer, &res.authority, max, 1232);
                black_box(bytes.len())
            })
        });
        c.bench_function(&format!("resolver hit after ({what})"), |b| {
            b.iter(|| {
                match answer_now(&inst, 53, &settings, 0, 1232, black_box(&packet), peer, tcp) {
                    Step::Done(Some(bytes)) => black_box(bytes.len()),
                    _ => panic!("not answered from the cache"),
                }
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
