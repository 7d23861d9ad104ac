//! The iterative resolver end to end: real servers on loopback (tests/data/resolver/resolver.toml,
//! a root, TLDs and leaf zones on one shared ephemeral port, plus the resolver's listeners), asked
//! over real UDP/TCP sockets. Upstream traffic is counted by the authoritative servers themselves
//! (`Handle::served`), and cache expiry is driven by a hand-moved clock.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gslbd::config::Source;
use gslbd::resolver::ManualClock;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

const CLIENT: &str = "127.0.50.20";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn hierarchy() -> (TestServer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let server =
        start_with_clock(Source::file(data("resolver/resolver.toml")), clock.clone()).await;
    (server, clock)
}

/// Asks resolver listener `r` from an allowed client address over UDP.
async fn ask_r(server: &TestServer, listener: &str, q: &Q) -> Message {
    let bytes = udp_from(ip(CLIENT), server.addr(listener, "udp"), &q.bytes())
        .await
        .unwrap_or_else(|| panic!("no reply to {} from {listener}", q.name));
    Message::from_vec(&bytes).unwrap()
}

/// Asks over TCP from the allowed client address (the peer address decides access).
async fn ask_tcp(server: &TestServer, listener: &str, q: &Q) -> Message {
    ask_tcp_from(ip(CLIENT), server, listener, q).await
}

async fn ask_tcp_from(src: IpAddr, server: &TestServer, listener: &str, q: &Q) -> Message {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(src, 0)).unwrap();
    let mut stream = tokio::time::timeout(TIMEOUT, socket.connect(server.addr(listener, "tcp")))
        .await
        .expect("connect in time")
        .expect("connects");
    tcp_send(&mut stream, &q.bytes()).await;
    let bytes = tcp_recv(&mut stream).await.expect("a TCP reply");
    Message::from_vec(&bytes).unwrap()
}

fn a_records(m: &Message) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn assert_recursive_flags(m: &Message) {
    assert!(m.metadata.recursion_available, "RA set");
    assert!(m.metadata.recursion_desired, "RD copied");
    assert!(
        !m.metadata.authoritative,
        "a resolver's answer is not authoritative"
    );
}

/// Counts queries the hierarchy's authoritative servers answer while `f` runs.
async fn upstream<F: std::future::Future<Output = T>, T>(server: &TestServer, f: F) -> (T, u64) {
    let before = server.handle.served();
    let out = f.await;
    (out, server.handle.served() - before)
}

#[tokio::test]
async fn walks_glueless_and_cross_zone_then_answers_from_cache() {
    let (server, _clock) = hierarchy().await;
    // Glueless: com. names ns.hosting.net. without an address; the resolver looks it up first
    // (root, com, root->net cached? no: root, net, hosting) and then asks it.
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.glueless.com", 1))).await;
    assert_recursive_flags(&m);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![ip("192.0.2.40")]);
    // root -> com referral -> glueless.com referral; ns.hosting.net: root (again, the net. referral
    // is not cached yet) -> net -> hosting.net answer; then the question itself.
    assert_eq!(n, 6, "upstream queries for a cold glueless walk");

    let (m2, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.glueless.com", 1))).await;
    assert_eq!(
        n, 0,
        "the second identical query is answered from the cache"
    );
    assert_eq!(a_records(&m2), vec![ip("192.0.2.40")]);

    // Cross-zone CNAME: example.com's answer points into cdn.net, another server's zone.
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("edge.example.com", 1))).await;
    assert_eq!(m.answers.len(), 2, "{:?}", m.answers);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(m.answers[1].name, Name::from_ascii("e.cdn.net.").unwrap());
    assert_eq!(a_records(&m), vec![ip("192.0.2.80")]);
    // com. and net. referrals came from the cache: only com, example, net, cdn were asked.
    assert_eq!(n, 4, "cached referrals keep the walk off the root");

    // An alias into a child zone delegated to another server: the parent's answer stops at the
    // cut, and the walk continues below it (AAAA: NODATA with the child's SOA).
    let m = ask_r(&server, "r", &Q::new("tosub.example.com", 1)).await;
    assert_eq!(a_records(&m), vec![ip("192.0.2.70")]);
    let m = ask_r(&server, "r", &Q::new("tosub.example.com", 28)).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.authorities[0].name,
        Name::from_ascii("sub.example.com.").unwrap()
    );

    // In-zone chain and MX over UDP and TCP alike.
    let m = ask_r(&server, "r", &Q::new("alias.example.com", 1)).await;
    assert_eq!(a_records(&m), vec![ip("192.0.2.10"), ip("192.0.2.11")]);
    let t = ask_tcp(&server, "r", &Q::new("alias.example.com", 1)).await;
    assert_eq!(lines(&t.answers), lines(&m.answers));
    let mx = ask_tcp(&server, "r", &Q::new("example.com", 15)).await;
    assert_eq!(mx.answers.len(), 1);
    assert!(matches!(mx.answers[0].data, RData::MX(_)));
}

#[tokio::test]
async fn negative_answers_are_cached_by_the_soa_rule_and_expire() {
    let (server, clock) = hierarchy().await;
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("nope.example.com", 1))).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(n > 0);
    // RFC 2308: the SOA in AUTHORITY carries min(SOA TTL 300, MINIMUM 60).
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 60);

    clock.advance(Duration::from_secs(20));
    let (m, n) = upstream(
        &server,
        ask_r(&server, "r", &Q::new("nope.example.com", 28)),
    )
    .await;
    assert_eq!(
        n, 0,
        "NXDOMAIN answers every type of the name from the cache"
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].ttl, 40, "the negative TTL counts down");

    clock.advance(Duration::from_secs(41));
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("nope.example.com", 1))).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(n, 1, "expired: asked again (referrals still cached)");

    // NODATA: the name exists, the type does not.
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.example.com", 15))).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(n, 1);
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.example.com", 15))).await;
    assert_eq!(n, 0, "NODATA from the cache");
    assert!(m.answers.is_empty());
    // ... but NODATA for MX says nothing about A.
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.example.com", 1))).await;
    assert_eq!(a_records(&m).len(), 2);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn ttls_count_down_and_entries_expire_with_the_clock() {
    let (server, clock) = hierarchy().await;
    let m = ask_r(&server, "r", &Q::new("www.example.com", 1)).await;
    assert!(m.answers.iter().all(|r| r.ttl == 300));
    clock.advance(Duration::from_secs(100));
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.example.com", 1))).await;
    assert_eq!(n, 0);
    assert!(m.answers.iter().all(|r| r.ttl == 200), "{:?}", m.answers);
    clock.advance(Duration::from_secs(200));
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.example.com", 1))).await;
    assert_eq!(n, 1, "expired at 300 s: asked again");
    assert!(m.answers.iter().all(|r| r.ttl == 300));
}

/// Issue 14: TTLs leave clamped the first time as from the cache: a week-long answer at
/// `max_ttl` (86400 by default) and a day-long negative TTL at `negative_max_ttl` (3600). (A TTL
/// past 2^31 - 1, which no zone file of ours can hold, is `resolver::serve`'s unit test.)
#[tokio::test]
async fn answers_leave_with_clamped_ttls_from_the_walk_and_the_cache() {
    let (server, clock) = hierarchy().await;
    for round in ["walk", "cache"] {
        let m = ask_r(&server, "r", &Q::new("www.long.com", 1)).await;
        assert_eq!(a_records(&m), [ip("127.0.50.77")], "{round}");
        assert_eq!(m.answers[0].ttl, 86400, "{round}: a week capped at max_ttl");
        let m = ask_r(&server, "r", &Q::new("nope.long.com", 1)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            m.authorities[0].ttl, 3600,
            "{round}: a day's negative TTL capped at negative_max_ttl"
        );
    }
    // The cached copy counts down from the clamped TTL.
    clock.advance(Duration::from_secs(100));
    let m = ask_r(&server, "r", &Q::new("www.long.com", 1)).await;
    assert_eq!(m.answers[0].ttl, 86300);
}

/// A UDP socket at `addr` that counts what it receives and never answers: a dead server.
async fn silent_server(addr: SocketAddr) -> Arc<std::sync::atomic::AtomicU64> {
    let sock = UdpSocket::bind(addr).await.expect("bind the silent server");
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while sock.recv_from(&mut buf).await.is_ok() {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    count
}

#[tokio::test]
async fn identical_concurrent_queries_share_one_walk_and_a_dead_server_is_skipped() {
    let (server, _clock) = hierarchy().await;
    let port = server.addr("root", "udp").port();
    let dead = silent_server(SocketAddr::new(ip("127.0.50.8"), port)).await;
    // Make the dead server look fastest, so the walk asks it first and waits for its timeout
    // (SRTT 200 ms + 4 x RTTVAR 100 ms = 600 ms): long enough for every concurrent query, even on
    // a loaded machine, to find the walk in flight.
    let snap = server.handle.snapshot();
    let settings = snap.resolver.clone().unwrap();
    let inst = server.handle.resolvers().instance("r", &settings);
    inst.infra.rtt(ip("127.0.50.8"), Duration::from_millis(200));
    inst.infra.rtt(ip("127.0.50.4"), Duration::from_millis(300));

    let before = server.handle.served();
    let target = server.addr("r", "udp");
    let mut tasks = Vec::new();
    for i in 0..40u16 {
        let mut q = Q::new("www.slow.com", 1);
        q.id = i;
        tasks.push(tokio::spawn(async move {
            udp_from(ip(CLIENT), target, &q.bytes()).await
        }));
    }
    for t in tasks {
        let bytes = t.await.unwrap().expect("every client gets an answer");
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(a_records(&m), vec![ip("192.0.2.60")]);
    }
    assert_eq!(
        dead.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the dead server was asked once, by the one walk"
    );
    assert_eq!(
        server.handle.served() - before,
        3,
        "root, com and the live slow.com server: one walk for 40 queries"
    );
    assert!(
        gslbd::resolver::Stats::get(&inst.stats.coalesced) >= 30,
        "queries joined the walk in flight"
    );
    assert!(
        inst.infra.srtt(ip("127.0.50.8")).unwrap() > 300.0,
        "the timeout ranks the dead server behind the live one"
    );
}

#[tokio::test]
async fn cname_loop_is_servfail() {
    let (server, _clock) = hierarchy().await;
    let m = ask_r(&server, "r", &Q::new("loop.example.com", 1)).await;
    assert_recursive_flags(&m);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.answers.is_empty());
}

#[tokio::test]
async fn lame_server_is_passed_over_for_the_next() {
    let (server, _clock) = hierarchy().await;
    let snap = server.handle.snapshot();
    let settings = snap.resolver.clone().unwrap();
    let inst = server.handle.resolvers().instance("r", &settings);
    // The lame server (it refuses lame.com) looks fastest, so it is asked first.
    inst.infra.rtt(ip("127.0.50.9"), Duration::from_millis(1));
    inst.infra.rtt(ip("127.0.50.4"), Duration::from_millis(30));
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.lame.com", 1))).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![ip("192.0.2.50")]);
    assert_eq!(n, 4, "root, com, the lame server (REFUSED), the good one");
    assert!(inst.infra.srtt(ip("127.0.50.9")).unwrap() >= 1000.0);
}

#[tokio::test]
async fn truncated_upstream_reply_is_retried_over_tcp() {
    let (server, _clock) = hierarchy().await;
    // Over UDP to us with a 1232-byte payload the 14 TXT records do not fit either: TC, then the
    // client's TCP retry gets them, from the cache.
    let m = ask_r(&server, "r", &Q::new("big.example.com", 16)).await;
    assert!(m.metadata.truncation, "1.5 KB does not fit 1232 bytes");
    let (t, n) = upstream(
        &server,
        ask_tcp(&server, "r", &Q::new("big.example.com", 16)),
    )
    .await;
    assert_eq!(
        t.answers.len(),
        14,
        "upstream was asked over TCP after its TC"
    );
    assert_eq!(n, 0);

    // The same walk traced: the leaf's UDP reply was truncated and TCP answered.
    let snap = server.handle.snapshot();
    let settings = snap.resolver.clone().unwrap();
    let inst = server.handle.resolvers().instance("trace", &settings);
    let env = gslbd::resolver::Env {
        settings: &settings,
        listener: &settings.listeners[0],
        instance: &inst,
        port: server.handle.resolvers().upstream_port(&settings),
    };
    let name = Name::from_ascii("big.example.com.").unwrap();
    let (res, steps) = gslbd::resolver::resolve_traced(&env, &name, RecordType::TXT, None).await;
    assert_eq!(res.answer.len(), 14);
    let json = serde_json::to_value(&steps).unwrap();
    let last = json.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["step"], "query");
    assert_eq!(last["proto"], "tcp");
    assert_eq!(last["tc_retry"], true);
}

#[tokio::test]
async fn clients_outside_the_allowed_networks_are_refused() {
    let (server, _clock) = hierarchy().await;
    let q = Q::new("www.example.com", 1);
    let (bytes, n) = upstream(
        &server,
        udp_from(ip(CLIENT), server.addr("closed", "udp"), &q.bytes()),
    )
    .await;
    let m = Message::from_vec(&bytes.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.metadata.recursion_available);
    assert_eq!(n, 0, "a refused client causes no upstream query");
    // Listener r allows 127.0.50.0/24 only.
    let bytes = udp_from(ip("127.0.60.1"), server.addr("r", "udp"), &q.bytes()).await;
    let m = Message::from_vec(&bytes.unwrap()).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // Over TCP too.
    let m = ask_tcp_from(ip("127.0.60.1"), &server, "r", &q).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = ask_tcp(&server, "closed", &q).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn recursion_not_desired_is_refused_unless_the_client_may_snoop() {
    let (server, _clock) = hierarchy().await;
    let mut q = Q::new("www.example.com", 1);
    q.flags = 0; // RD clear
    let snooper = ip("127.0.50.99"); // in allow_snoop
    let ask_from = |src: IpAddr, q: Q| {
        let addr = server.addr("r", "udp");
        async move {
            let bytes = udp_from(src, addr, &q.bytes()).await.expect("a reply");
            Message::from_vec(&bytes).unwrap()
        }
    };
    let (m, n) = upstream(&server, ask_from(snooper, q.clone())).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(n, 0, "RD=0 never starts a walk");
    ask_r(&server, "r", &Q::new("www.example.com", 1)).await;
    // Cached now. An ordinary allowed client still cannot read the cache without recursion
    // (cache snooping, Unbound's `allow`)...
    let m = ask_r(&server, "r", &q).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
    // ...a client in allow_snoop can.
    let m = ask_from(snooper, q.clone()).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m).len(), 2);
    assert!(!m.metadata.recursion_desired);
}

#[tokio::test]
async fn nxns_style_delegations_look_up_three_glueless_names_at_most() {
    let (server, _clock) = hierarchy().await;
    // 14 glueless servers whose names do not exist. Looking each up (until the budget of 12 is
    // spent) made one client query 12 upstream queries, 10 of them to whoever serves the names
    // (NXNSAttack); three lookups per delegation, as Unbound's target-fetch-policy "3 2 1 0 0",
    // make it root, com, then ns1-3.nothing.net.: root -> net (once) and net twice per name (QNAME
    // minimisation asks nothing.net. first; its NXDOMAIN is not believed in relaxed mode, RFC 9156
    // 2.3, as Unbound's "best effort" mode, so the full name is asked too).
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.nxns.com", 1))).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(n, 9, "upstream queries for one NXNS client query");
    // The failed lookups are cached (NXDOMAIN), the delegation is not retried name by name: the
    // same question again asks nobody.
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.nxns.com", 1))).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(n, 0, "a repeated NXNS client query asks nothing");
}

#[tokio::test]
async fn same_parse_discipline_as_the_authoritative_side() {
    let (server, _clock) = hierarchy().await;
    let target = server.addr("r", "udp");
    // Two questions: FORMERR (RFC 9619), with RA since this is a resolver.
    let mut b = Q::new("www.example.com", 1).bytes();
    b[5] = 2;
    let m = udp_from(ip(CLIENT), target, &b).await.unwrap();
    assert_eq!(m[3] & 0x0f, 1, "FORMERR");
    assert_eq!(m[3] & 0x80, 0x80, "RA");
    // EDNS version 1: BADVERS.
    let mut q = Q::new("www.example.com", 1);
    q.edns = Some((1232, 1, false, vec![]));
    let m = ask_r(&server, "r", &q).await;
    // RCODE 16 (hickory names it BADSIG, the same number; RFC 6891 6.1.3 calls it BADVERS).
    assert_eq!(u16::from(m.metadata.response_code), 16);
    // A response (QR=1) is dropped, as is a runt.
    let mut b = Q::new("www.example.com", 1).bytes();
    b[2] |= 0x80;
    assert!(udp_from(ip(CLIENT), target, &b).await.is_none());
    // AXFR through a resolver: REFUSED.
    let m = ask_r(&server, "r", &Q::new("example.com", 252)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // EDNS echoed with our payload.
    let m = ask_r(&server, "r", &Q::new("www.example.com", 1)).await;
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(1232));
}

#[tokio::test]
async fn the_cache_survives_a_reload() {
    let (server, _clock) = hierarchy().await;
    ask_r(&server, "r", &Q::new("www.example.com", 1)).await;
    server.handle.reload().expect("the same config reloads");
    let (m, n) = upstream(&server, ask_r(&server, "r", &Q::new("www.example.com", 1))).await;
    assert_eq!(n, 0, "still cached after the reload");
    assert_eq!(a_records(&m).len(), 2);
}

/// The lab's carrier LDNSes (design.md section 3): the same walk, different GSLB answers, because
/// each asks from its own address.
#[tokio::test]
async fn lab_carrier_resolvers_get_their_own_regions() {
    let server = start_lab().await;
    let q = Q::new("object.yourcompany.com", 1);
    let client = ip("127.0.0.1");
    let mobile = Message::from_vec(
        &udp_from(client, server.addr("mobile", "udp"), &q.bytes())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_recursive_flags(&mobile);
    let names: Vec<String> = mobile.answers.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(names[0], "object.yourcompany.com.");
    assert_eq!(names[1], "object.vip.yourcompany.com.");
    assert_eq!(names[2], "object.yd.yourcompany.com.", "mobile line");
    let addrs = a_records(&mobile);
    assert_eq!(addrs.len(), 6);
    assert!(
        addrs.iter().all(|a| (41..=46).contains(&match a {
            IpAddr::V4(v4) => v4.octets()[3],
            _ => 0,
        })),
        "mobile Beijing SLBs 203.0.113.41-46: {addrs:?}"
    );

    let telecom = Message::from_vec(
        &udp_from(client, server.addr("telecom", "udp"), &q.bytes())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        telecom.answers[2].name.to_string(),
        "object.dx.yourcompany.com."
    );
    assert!(
        a_records(&telecom)
            .iter()
            .all(|a| (81..=86).contains(&match a {
                IpAddr::V4(v4) => v4.octets()[3],
                _ => 0,
            })),
        "telecom Shanghai SLBs 203.0.113.81-86"
    );

    // The second identical query: from the cache, no authoritative server asked.
    let before = server.handle.served();
    let again = Message::from_vec(
        &udp_from(client, server.addr("mobile", "udp"), &q.bytes())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(server.handle.served(), before);
    assert_eq!(a_records(&again), addrs);

    // static -> cdn.com crosses zones and servers.
    let s = Message::from_vec(
        &udp_from(
            client,
            server.addr("unicom", "udp"),
            &Q::new("static.yourcompany.com", 1).bytes(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(s.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(s.answers[1].name.to_string(), "yourcompany.cdn.com.");
}

/// `gslbd resolve --trace`: the walk printed step by step, root -> TLD -> authoritative.
#[test]
fn resolve_command_traces_the_walk() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gslbd"))
        .args([
            "resolve",
            "object.yourcompany.com",
            "--trace",
            "--resolver",
            "unicom",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = text.find("referral to com. from 127.0.1.1").expect(&text);
    let tld = text
        .find("referral to yourcompany.com. from 127.0.2.1")
        .expect(&text);
    let auth = text.find("answer from 127.0.3.").expect(&text);
    assert!(root < tld && tld < auth, "{text}");
    assert!(
        text.contains("object.lt.yourcompany.com."),
        "unicom line: {text}"
    );
    assert!(text.contains("status NOERROR"), "{text}");

    // JSON: the same structure GET /trace serves.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gslbd"))
        .args(["resolve", "nope.yourcompany.com", "AAAA", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "NXDOMAIN");
    assert_eq!(v["resolver"], "mobile");
    assert!(v["trace"].as_array().unwrap().len() >= 3);

    // A name that loops: exit status 1 and the reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gslbd"))
        .args([
            "resolve",
            "loop.example.com",
            "-c",
            data("resolver/resolver.toml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("CNAME loop"), "{text}");
}

/// `GET /trace` on the HTTPDNS server: the same walk as JSON, the cache visible as steps, and the
/// resolver's allow list enforced on the requester.
#[tokio::test]
async fn trace_over_http() {
    let server = start_lab().await;
    let base = format!("http://{}", server.addr("http", "http"));
    let client = |local: &str| {
        reqwest::Client::builder()
            .local_address(ip(local))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let url = format!("{base}/trace?name=object.yourcompany.com&type=AAAA&resolver=telecom");
    let resp = client("127.0.0.1").get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "NOERROR");
    assert_eq!(v["resolver"], "telecom");
    assert_eq!(v["upstream_queries"], 3);
    let servers: Vec<&str> = v["trace"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "query")
        .map(|s| s["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers[..2], ["127.0.1.1", "127.0.2.1"], "{v}");
    assert!(servers[2].starts_with("127.0.3."), "{v}");
    let answer: Vec<&str> = v["answer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        answer
            .iter()
            .any(|l| l.starts_with("object.dx.yourcompany.com.")),
        "telecom line: {answer:?}"
    );
    // The same question again: one step, from the cache; and DNS to the same LDNS shares it.
    let v: serde_json::Value = client("127.0.0.1")
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["upstream_queries"], 0);
    let steps: Vec<&str> = v["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        ["cache", "follow", "cache", "follow", "cache"],
        "{v}"
    );
    let before = server.handle.served();
    let m = Message::from_vec(
        &udp_from(
            ip("127.0.0.1"),
            server.addr("telecom", "udp"),
            &Q::new("object.yourcompany.com", 28).bytes(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(m.answers.len(), 4, "2 CNAMEs + 2 AAAA");
    assert_eq!(
        server.handle.served(),
        before,
        "the DNS listener shares the cache"
    );

    // /metrics counts per resolver listener.
    let metrics = client("127.0.0.1")
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
    };
    assert_eq!(
        value("gslbd_resolver_upstream_queries_total{resolver=\"telecom\"}"),
        3
    );
    assert!(value("gslbd_resolver_cache_answers_total{resolver=\"telecom\"}") >= 1);
    assert!(value("gslbd_resolver_cache_entries{resolver=\"telecom\"}") >= 5);
    assert!(value("gslbd_queries_total{transport=\"recursive\",rcode=\"NOERROR\"}") >= 1);

    // A requester the resolver does not serve: the lab's trusted proxy says the client is
    // 203.0.113.5, outside the default allow list (loopback).
    let resp = client("127.0.0.2")
        .get(&url)
        .header("X-Forwarded-For", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let e: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(e["code"], "Forbidden");
    // Bad input: precise codes.
    for (path, status, code) in [
        ("/trace", 400, "MissingArgument"),
        ("/trace?name=a..b", 400, "InvalidHost"),
        (
            "/trace?name=www.yourcompany.com&type=BOGUS",
            400,
            "InvalidArgument",
        ),
        (
            "/trace?name=www.yourcompany.com&resolver=nope",
            400,
            "InvalidArgument",
        ),
    ] {
        let resp = client("127.0.0.1")
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{path}");
        let e: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(e["code"], code, "{path}");
    }
    // The documented schema's required fields are there.
    let doc: serde_json::Value = client("127.0.0.1")
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for f in doc["components"]["schemas"]["Trace"]["required"]
        .as_array()
        .unwrap()
    {
        assert!(v.get(f.as_str().unwrap()).is_some(), "{f} missing in {v}");
    }
}

/// ECS forwarding (RFC 7871): for zones in `ecs_zones` the resolver sends the client's /24, so the
/// GSLB answers for the client rather than for the resolver's own address, and the cache keeps
/// one answer per scope network.
#[tokio::test]
async fn ecs_forwarding_decides_by_the_client_not_the_resolver() {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in gslbd::lab::FILES {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }
    let config = gslbd::lab::CONFIG.replace(
        "upstream_port = \"listen\"",
        "upstream_port = \"listen\"\necs_zones = [\"yourcompany.com.\"]",
    );
    assert!(config.contains("ecs_zones"));
    let path = dir.path().join(gslbd::lab::CONFIG_NAME);
    std::fs::write(&path, config).unwrap();
    let server = start(Source::file(&path)).await;
    // Every client asks the mobile LDNS (which sends from 127.0.10.1, mobile/Beijing).
    let ldns = server.addr("mobile", "udp");
    let q = Q::new("object.yourcompany.com", 1).bytes();
    let line = |m: &Message| m.answers[2].name.to_string();

    let unicom = Message::from_vec(&udp_from(ip("127.0.12.5"), ldns, &q).await.unwrap()).unwrap();
    assert_eq!(
        line(&unicom),
        "object.lt.yourcompany.com.",
        "decided by 127.0.12.0/24"
    );
    let telecom = Message::from_vec(&udp_from(ip("127.0.11.5"), ldns, &q).await.unwrap()).unwrap();
    assert_eq!(
        line(&telecom),
        "object.dx.yourcompany.com.",
        "decided by 127.0.11.0/24"
    );

    // Another client of the same network: the cached answer for that scope, no upstream query.
    let before = server.handle.served();
    let again = Message::from_vec(&udp_from(ip("127.0.12.77"), ldns, &q).await.unwrap()).unwrap();
    assert_eq!(server.handle.served(), before);
    assert_eq!(line(&again), "object.lt.yourcompany.com.");
    assert_eq!(a_records(&again), a_records(&unicom));

    // Without ecs_zones the same LDNS answers everyone for its own address (mobile).
    let plain = start_lab().await;
    let m = Message::from_vec(
        &udp_from(ip("127.0.12.5"), plain.addr("mobile", "udp"), &q)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line(&m), "object.yd.yourcompany.com.");
}
