//! The UDP fast path against the general path on the lab world (issue 6: "the hot path keeps every
//! answer identical to the general path"): the same questions, from the same clients (packet
//! source addresses and ECS subnets: uniform /24s, a /24 split into finer networks, IPv6, "do
//! not locate me"), to a server with `udp_fast_path` on and one with it off. Each question goes
//! to the fast server three times (the first fills its tables, the others are answered from them)
//! and must get what the general server gives: the same header and counts, question, ECS echo
//! (scope included), and records. Where the lab rotates or samples addresses the records are
//! compared as sets (equal weights rotate a window of the whole pool) or, for the weighted CDN
//! edge, by owner, type and TTL. The fast path's own counters must show it answered.
//!
//! One test in this file, so the process-wide counters it reads are its own.

mod common;

use std::net::IpAddr;

use common::*;
use gslbd::config::Source;
use gslbd::metrics::{self, Fast};
use hickory_proto::op::Message;

const A: u16 = 1;
const MX: u16 = 15;
const TXT: u16 = 16;
const AAAA: u16 = 28;

/// What is compared of a reply.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// Header bytes 2..12: flags and the four counts.
    header: Vec<u8>,
    question: Vec<u8>,
    ecs: Option<(u8, u8, Vec<u8>)>,
    /// (owner, type, TTL) of every record of every section, sorted.
    shapes: Vec<String>,
    /// Every record's data, sorted; None where the lab samples by weight.
    data: Option<Vec<String>>,
}

fn seen(reply: &[u8], qname_len: usize, weighted: bool) -> Seen {
    let m = Message::from_vec(reply).expect("a parsable reply");
    let records = m.answers.iter().chain(&m.authorities).chain(&m.additionals);
    let mut shapes: Vec<String> = records
        .clone()
        .map(|r| format!("{} {} {}", r.name.to_lowercase(), r.record_type(), r.ttl))
        .collect();
    shapes.sort();
    let mut data: Vec<String> = records.map(|r| r.data.to_string()).collect();
    data.sort();
    Seen {
        header: reply[2..12].to_vec(),
        question: reply[12..12 + qname_len + 4].to_vec(),
        ecs: ecs_of(reply),
        shapes,
        data: (!weighted).then_some(data),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_and_general_paths_answer_alike() {
    let fast = start_on_path(Source::lab(), Path::Fast).await;
    let general = start_on_path(Source::lab(), Path::General).await;
    let (fast_addr, general_addr) = (fast.addr("all", "udp"), general.addr("all", "udp"));

    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // (packet source, ECS): mobile Beijing (two hosts of one /24), telecom, unicom, an override
    // range, an unknown ASN, an organisation match, no data; by ECS a uniform /24, 198.51.100.0/24
    // split into /26s of different carriers, 192.0.2.0/24 with an override /29, IPv6, and source
    // prefix 0.
    let clients: Vec<(IpAddr, Option<(IpAddr, u8)>)> = vec![
        (ip("127.0.10.1"), None),
        (ip("127.0.10.77"), None),
        (ip("127.0.11.1"), None),
        (ip("127.0.12.1"), None),
        (ip("127.0.13.9"), None),
        (ip("127.0.14.1"), None),
        (ip("127.0.15.1"), None),
        (ip("127.0.16.1"), None),
        (local, Some((ip("203.0.113.0"), 24))),
        (local, Some((ip("198.51.100.0"), 24))),
        (local, Some((ip("198.51.100.64"), 26))),
        (local, Some((ip("192.0.2.0"), 24))),
        (local, Some((ip("192.0.2.248"), 29))),
        (local, Some((ip("2001:db8:a::"), 48))),
        (local, Some((ip("2001:db8:c::"), 56))),
        (local, Some((ip("0.0.0.0"), 0))),
    ];
    // (name, type, weighted): the two-layer chain and its hops, the CDN's weighted edge, a
    // rotating name, plain data, MX with additional addresses, NXDOMAIN, NODATA at a rule.
    let questions = [
        ("object.yourcompany.com", A, false),
        ("object.yourcompany.com", AAAA, false),
        ("OBJECT.YourCompany.com", A, false),
        ("object.vip.yourcompany.com", A, false),
        ("object.yd.yourcompany.com", A, false),
        ("object.dx.yourcompany.com", AAAA, false),
        ("object.yourcompany.com", TXT, false),
        ("static.yourcompany.com", A, true),
        ("www.yourcompany.com", A, false),
        ("mail.yourcompany.com", A, false),
        ("yourcompany.com", MX, false),
        ("nothere.yourcompany.com", A, false),
    ];

    let prebuilt_before = metrics::fast_answers(Fast::Prebuilt);
    let gslb_before = metrics::fast_answers(Fast::Gslb);
    let mut compared = 0;
    let mut differences = Vec::new();
    for (src, ecs) in &clients {
        for (name, qtype, weighted) in questions {
            let mut q = Q::new(name, qtype);
            if let Some((net, prefix)) = ecs {
                q = q.ecs(*net, *prefix);
            }
            let bytes = q.bytes();
            let qname_len = wire_name(name).len();
            let want = udp_from(*src, general_addr, &bytes)
                .await
                .unwrap_or_else(|| panic!("no general answer to {name} from {src} {ecs:?}"));
            let want = seen(&want, qname_len, weighted);
            for round in 0..3 {
                let got = udp_from(*src, fast_addr, &bytes)
                    .await
                    .unwrap_or_else(|| panic!("no fast answer to {name} from {src} {ecs:?}"));
                let got = seen(&got, qname_len, weighted);
                compared += 1;
                if got != want {
                    differences.push(format!(
                        "{name} {qtype} from {src} ECS {ecs:?}, round {round}:\n  fast:    \
                         {got:?}\n  general: {want:?}"
                    ));
                }
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {compared} fast answers differ from the general path's:\n{}",
        differences.len(),
        differences[..differences.len().min(5)].join("\n")
    );

    // The fast path answered from its tables: prebuilt answers for the client-independent
    // questions (mail, MX, NXDOMAIN; www rotates and is never kept) and GSLB prefixes for the
    // chain from networks geo answers uniformly.
    let prebuilt = metrics::fast_answers(Fast::Prebuilt) - prebuilt_before;
    let gslb = metrics::fast_answers(Fast::Gslb) - gslb_before;
    // The lab's UDP threads (one per CPU) share its port-0 socket and each keeps its own tables:
    // each thread's first sight of a question (or of a question from a network) is a miss.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    println!(
        "{compared} fast answers equal to the general path's; {prebuilt} prebuilt, {gslb} from \
         GSLB prefixes ({threads} UDP threads)"
    );
    // 3 client-independent questions x 16 clients x 3 rounds.
    assert!(
        prebuilt >= 3 * 16 * 3 - 3 * threads,
        "prebuilt answers: {prebuilt}"
    );
    // The 5 address questions of the chain, 3 rounds, from the 6 packet-source networks geo
    // answers uniformly (127.0.10-12, 14-16; 127.0.13/24 holds override lines of its own).
    assert!(
        gslb >= 5 * 6 * 3 - 5 * 6 * threads.min(3),
        "GSLB prefix answers: {gslb}"
    );
    assert!(gslb > 0, "no GSLB prefix answers at all");
}
