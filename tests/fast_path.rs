//! The UDP fast path against the general path on the lab world (issue 6: "the hot path keeps every
//! answer identical to the general path"): the same questions, from the same clients (packet
//! source addresses and ECS subnets: uniform /24s, a /24 split into finer networks, IPv6, "do
//! not locate me"), to a server with `udp_fast_path` on and one with it off. Each question goes
//! to the fast server three times (the first fills its tables, the others are answered from them)
//! and must get what the general server gives: the same header and counts, question, ECS echo
//! (scope included), and records. Where the lab rotates addresses (equal weights rotate a window
//! of the whole pool) the order is free; for the weighted CDN edge, which samples one address,
//! the address must be a member of the pool the GSLB chose for that client (read from
//! `explain`), as the general path's is.
//!
//! The fast server runs one UDP thread (`start_on_path`): with one per CPU a repeated question
//! mostly reaches another thread, whose tables are empty, and the general path would be compared
//! with itself. Every second and third ask must be written from the tables (the server's own
//! fast-path counter grows by one), except where the fast path keeps nothing by design:
//! rotation, NODATA at a rule, and GSLB chains from networks geo does not answer uniformly.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::*;
use gslbd::config::Source;
use gslbd::gslb::explain::ClientSource;
use gslbd::metrics::{self, Fast};
use gslbd::query::client_addr;
use gslbd::snapshot::Snapshot;
use gslbd::wire::ClientSubnet;
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};

const A: u16 = 1;
const MX: u16 = 15;
const TXT: u16 = 16;
const AAAA: u16 = 28;

/// What a question is to the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The same for every client: a prebuilt answer.
    Plain,
    /// A chain ending at a GSLB rule: a GSLB prefix per client network.
    Gslb,
    /// The CDN's edge, sampled by weight: a GSLB prefix (the pick is made per query).
    Weighted,
    /// A `rotate = true` zone's RRset: a new order per query, never kept.
    Rotating,
    /// NODATA at a rule name: never kept.
    NodataAtRule,
}

impl Kind {
    /// Whether repeats are written from the tables, for a client network where geo answers
    /// finer than /24 (`fine`) or not.
    fn kept(self, fine: bool) -> bool {
        match self {
            Kind::Plain => true,
            Kind::Gslb | Kind::Weighted => !fine,
            Kind::Rotating | Kind::NodataAtRule => false,
        }
    }
}

/// What is compared of a reply.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// Header bytes 2..12: flags and the four counts.
    header: Vec<u8>,
    question: Vec<u8>,
    ecs: Option<(u8, u8, Vec<u8>)>,
    /// (owner, type, TTL) of every record of every section, sorted.
    shapes: Vec<String>,
    /// Every record's data, sorted; where the lab samples by weight, the sampled addresses are
    /// left out here and checked against the pool (`sampled`).
    data: Vec<String>,
}

/// The reply's comparable parts, and the addresses of its ANSWER A records.
fn seen(reply: &[u8], qname_len: usize, weighted: bool) -> (Seen, Vec<IpAddr>) {
    let m = Message::from_vec(reply).expect("a parsable reply");
    let records = m.answers.iter().chain(&m.authorities).chain(&m.additionals);
    let mut shapes: Vec<String> = records
        .clone()
        .map(|r| format!("{} {} {}", r.name.to_lowercase(), r.record_type(), r.ttl))
        .collect();
    shapes.sort();
    let sampled: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect();
    let mut data: Vec<String> = records
        .filter(|r| !(weighted && r.record_type() == RecordType::A))
        .map(|r| r.data.to_string())
        .collect();
    data.sort();
    let s = Seen {
        header: reply[2..12].to_vec(),
        question: reply[12..12 + qname_len + 4].to_vec(),
        ecs: ecs_of(reply),
        shapes,
        data,
    };
    (s, sampled)
}

/// The IPv4 members of the pool the last GSLB hop chose for `name` from this client, as
/// `explain` (the engine with its trace) reports it.
fn pool_of(
    snap: &Snapshot,
    name: &str,
    src: IpAddr,
    ecs: Option<(IpAddr, u8)>,
) -> BTreeSet<IpAddr> {
    let subnet = ecs.map(|(addr, prefix)| ClientSubnet {
        family: if addr.is_ipv4() { 1 } else { 2 },
        source_prefix: prefix,
        scope_prefix: 0,
        addr,
    });
    let source = if ecs.is_some() {
        ClientSource::Ecs
    } else {
        ClientSource::Packet
    };
    let e = gslbd::lookup::explain(
        snap,
        0,
        name,
        RecordType::A,
        client_addr(subnet.as_ref(), src),
        source,
    )
    .unwrap_or_else(|e| panic!("explain {name}: {e}"));
    let hop = e
        .hops
        .iter()
        .rev()
        .find(|h| !h.pool.is_empty())
        .unwrap_or_else(|| panic!("no GSLB hop with a pool for {name} from {src} {ecs:?}"));
    hop.pool
        .iter()
        .map(|m| m.address)
        .filter(IpAddr::is_ipv4)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_and_general_paths_answer_alike() {
    let fast = start_on_path(Source::lab(), Path::Fast).await;
    let general = start_on_path(Source::lab(), Path::General).await;
    let (fast_addr, general_addr) = (fast.addr("all", "udp"), general.addr("all", "udp"));

    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // (packet source, ECS, geo finer than /24 there): mobile Beijing (two hosts of one /24),
    // telecom, unicom, an override range, an unknown ASN, an organisation match, no data; by ECS
    // a uniform /24, 198.51.100.0/24 split into /26s of different carriers, 192.0.2.0/24 split
    // into /25s with an override /29, IPv6, and source prefix 0. Where geo answers finer than
    // /24 (tests/gslb.rs: scopes 25 and 26) the fast path keeps no GSLB prefix.
    #[allow(clippy::type_complexity)]
    let clients: Vec<(IpAddr, Option<(IpAddr, u8)>, bool)> = vec![
        (ip("127.0.10.1"), None, false),
        (ip("127.0.10.77"), None, false),
        (ip("127.0.11.1"), None, false),
        (ip("127.0.12.1"), None, false),
        (ip("127.0.13.9"), None, false),
        (ip("127.0.14.1"), None, false),
        (ip("127.0.15.1"), None, false),
        (ip("127.0.16.1"), None, false),
        (local, Some((ip("203.0.113.0"), 24)), false),
        (local, Some((ip("198.51.100.0"), 24)), true),
        (local, Some((ip("198.51.100.64"), 26)), true),
        (local, Some((ip("192.0.2.0"), 24)), true),
        (local, Some((ip("192.0.2.248"), 29)), true),
        (local, Some((ip("2001:db8:a::"), 48)), false),
        (local, Some((ip("2001:db8:c::"), 56)), false),
        (local, Some((ip("0.0.0.0"), 0)), false),
    ];
    // (name, type, kind): the two-layer chain and its hops, NODATA at a rule, the CDN's weighted
    // edge, a rotating name, plain data, MX with additional addresses, NXDOMAIN.
    let questions = [
        ("object.yourcompany.com", A, Kind::Gslb),
        ("object.yourcompany.com", AAAA, Kind::Gslb),
        ("OBJECT.YourCompany.com", A, Kind::Gslb),
        ("object.vip.yourcompany.com", A, Kind::Gslb),
        ("object.yd.yourcompany.com", A, Kind::Gslb),
        ("object.dx.yourcompany.com", AAAA, Kind::Gslb),
        ("object.yourcompany.com", TXT, Kind::NodataAtRule),
        ("static.yourcompany.com", A, Kind::Weighted),
        ("www.yourcompany.com", A, Kind::Rotating),
        ("mail.yourcompany.com", A, Kind::Plain),
        ("yourcompany.com", MX, Kind::Plain),
        ("nothere.yourcompany.com", A, Kind::Plain),
    ];

    let snap = Snapshot::build(&Source::lab()).expect("the lab builds");
    let process_fast = || metrics::fast_answers(Fast::Prebuilt) + metrics::fast_answers(Fast::Gslb);
    let (process_before, server_before) = (process_fast(), fast.handle.fast_answers());
    let mut compared = 0;
    let mut differences = Vec::new();
    // (question, client) whose second and third asks were (true) or were not (false) written
    // from the fast path's tables.
    let mut from_tables: Vec<(String, bool)> = Vec::new();
    let mut misjudged = Vec::new();
    let mut pooled = 0;
    for (src, ecs, fine) in &clients {
        for (name, qtype, kind) in questions {
            let weighted = kind == Kind::Weighted;
            let mut q = Q::new(name, qtype);
            if let Some((net, prefix)) = ecs {
                q = q.ecs(*net, *prefix);
            }
            let bytes = q.bytes();
            let qname_len = wire_name(name).len();
            let want = udp_from(*src, general_addr, &bytes)
                .await
                .unwrap_or_else(|| panic!("no general answer to {name} from {src} {ecs:?}"));
            let (want, want_sampled) = seen(&want, qname_len, weighted);
            let pool = weighted.then(|| pool_of(&snap, name, *src, *ecs));
            if let Some(pool) = &pool {
                // The comparison below is only as good as the pool: the general path's own
                // pick must be in it.
                assert!(
                    !want_sampled.is_empty() && want_sampled.iter().all(|a| pool.contains(a)),
                    "general answer {want_sampled:?} to {name} from {src} {ecs:?} outside the \
                     pool {pool:?}"
                );
            }
            let mut repeats = Vec::new();
            for round in 0..3 {
                let before = fast.handle.fast_answers();
                let got = udp_from(*src, fast_addr, &bytes)
                    .await
                    .unwrap_or_else(|| panic!("no fast answer to {name} from {src} {ecs:?}"));
                let written = fast.handle.fast_answers() - before;
                assert!(written <= 1, "one query, {written} fast answers");
                if round > 0 {
                    repeats.push(written == 1);
                }
                let (got, got_sampled) = seen(&got, qname_len, weighted);
                compared += 1;
                let outside: Vec<&IpAddr> = match &pool {
                    Some(pool) => {
                        pooled += 1;
                        got_sampled.iter().filter(|a| !pool.contains(a)).collect()
                    }
                    None => Vec::new(),
                };
                if got != want || !outside.is_empty() {
                    differences.push(format!(
                        "{name} {qtype} from {src} ECS {ecs:?}, round {round}:\n  fast:    \
                         {got:?}\n  general: {want:?}\n  outside the pool {pool:?}: {outside:?}"
                    ));
                }
            }
            let client = match ecs {
                Some((net, prefix)) => format!("ECS {net}/{prefix}"),
                None => format!("{src}"),
            };
            assert_eq!(
                repeats[0], repeats[1],
                "{name} {qtype} from {client}: the second and third asks took different paths"
            );
            let question = format!("{name} {qtype} from {client}");
            if repeats[0] != kind.kept(*fine) {
                misjudged.push(format!(
                    "{question} ({kind:?}): repeats {} from the tables",
                    if repeats[0] {
                        "answered"
                    } else {
                        "not answered"
                    }
                ));
            }
            from_tables.push((question, repeats[0]));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {compared} fast answers differ from the general path's:\n{}",
        differences.len(),
        differences[..differences.len().min(5)].join("\n")
    );
    assert!(
        pooled > 0,
        "no weighted answer was checked against its pool"
    );
    // The exported counter (`gslbd_udp_fast_path_answers_total`) saw what the server's own did:
    // this is the only test in the file, and the general server writes no fast answers.
    assert_eq!(
        process_fast() - process_before,
        fast.handle.fast_answers() - server_before,
        "gslbd_udp_fast_path_answers_total and the server's count disagree"
    );
    let kept = from_tables.iter().filter(|(_, t)| *t).count();
    println!(
        "{compared} fast answers equal to the general path's; the repeats of {kept} of {} \
         (question, client) pairs written from the fast path's tables",
        from_tables.len()
    );
    assert!(
        misjudged.is_empty(),
        "the fast path's tables did not answer as designed:\n{}",
        misjudged.join("\n")
    );
}
