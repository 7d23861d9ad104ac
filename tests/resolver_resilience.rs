//! The resolver on bad networks (issue 14): a root -> com -> leaf hierarchy served by gslbd
//! itself (tests/data/resilience/resilience.toml), reached through delaying proxies the test runs
//! on 127.0.14.11-13 (so round-trip times and bursts of delay are the test's to choose), plus
//! servers that never answer. Every address is in 127.0.14.0/24; cache and infra time move only
//! with the hand-moved clock.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use gslbd::config::Source;
use gslbd::resolver::ManualClock;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const CLIENT: &str = "127.0.14.100";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A proxy in front of one of our authoritative listeners that holds each reply back: `delay_ms`
/// on every reply, and `burst_ms` more on the next `burst` replies (congestion for a moment).
/// Its tasks end when it is dropped.
struct Proxy {
    delay_ms: AtomicU64,
    burst: AtomicU64,
    burst_ms: AtomicU64,
    /// Queries received, by transport.
    udp: AtomicU64,
    tcp: AtomicU64,
    /// Every question received, in order ("name. TYPE", the name lowercased).
    seen: std::sync::Mutex<Vec<String>>,
    /// Every question's name as it came (its case kept).
    raw: std::sync::Mutex<Vec<String>>,
    /// Replies go back with their question lowercased (a server that does not echo 0x20).
    lowercase: std::sync::atomic::AtomicBool,
    /// Names whose replies are turned into NXDOMAIN (a server that gets empty non-terminals
    /// wrong, RFC 9156 2.3; lowercase, with the final dot).
    nxdomain_for: std::sync::Mutex<Vec<String>>,
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().iter() {
            t.abort();
        }
    }
}

impl Proxy {
    async fn start(listen: SocketAddr, target: SocketAddr) -> Arc<Proxy> {
        let p = Arc::new(Proxy {
            delay_ms: AtomicU64::new(0),
            burst: AtomicU64::new(0),
            burst_ms: AtomicU64::new(0),
            udp: AtomicU64::new(0),
            tcp: AtomicU64::new(0),
            seen: std::sync::Mutex::new(Vec::new()),
            raw: std::sync::Mutex::new(Vec::new()),
            lowercase: std::sync::atomic::AtomicBool::new(false),
            nxdomain_for: std::sync::Mutex::new(Vec::new()),
            tasks: std::sync::Mutex::new(Vec::new()),
        });
        let sock = Arc::new(UdpSocket::bind(listen).await.expect("bind the UDP proxy"));
        let tcp = TcpListener::bind(listen).await.expect("bind the TCP proxy");
        // The tasks hold a weak reference, so dropping the test's Arc ends them.
        let weak = Arc::downgrade(&p);
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let Some(p) = weak.upgrade() else { return };
                p.udp.fetch_add(1, Ordering::SeqCst);
                let (q, sock) = (buf[..n].to_vec(), sock.clone());
                let broken = p.note(&q);
                tokio::spawn(async move {
                    let Some(mut reply) = udp_raw(target, &q).await else {
                        return;
                    };
                    if broken {
                        nxdomain(&mut reply);
                    }
                    if p.lowercase.load(Ordering::SeqCst) {
                        lowercase_question(&mut reply);
                    }
                    tokio::time::sleep(p.hold()).await;
                    let _ = sock.send_to(&reply, from).await;
                });
            }
        });
        let weak = Arc::downgrade(&p);
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = tcp.accept().await {
                let Some(p) = weak.upgrade() else { return };
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(target).await else {
                        return;
                    };
                    // A new connection's first reply costs one round trip more: the handshake.
                    let mut handshake = true;
                    while let Some(q) = tcp_recv(&mut conn).await {
                        p.tcp.fetch_add(1, Ordering::SeqCst);
                        let broken = p.note(&q);
                        tcp_send(&mut up, &q).await;
                        let Some(mut reply) = tcp_recv(&mut up).await else {
                            return;
                        };
                        if broken {
                            nxdomain(&mut reply);
                        }
                        if p.lowercase.load(Ordering::SeqCst) {
                            lowercase_question(&mut reply);
                        }
                        let mut hold = p.hold();
                        if std::mem::take(&mut handshake) {
                            hold += Duration::from_millis(p.delay_ms.load(Ordering::SeqCst));
                        }
                        tokio::time::sleep(hold).await;
                        let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&reply);
                        if conn.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    let _ = conn.read_u8().await;
                });
            }
        });
        p.tasks
            .lock()
            .unwrap()
            .extend([udp_task.abort_handle(), tcp_task.abort_handle()]);
        p
    }

    /// How long this reply is held.
    fn hold(&self) -> Duration {
        let burst = self
            .burst
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let extra = if burst {
            self.burst_ms.load(Ordering::SeqCst)
        } else {
            0
        };
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst) + extra)
    }

    /// Logs a query's question; whether its reply is to be turned into NXDOMAIN.
    fn note(&self, q: &[u8]) -> bool {
        let Ok(m) = Message::from_vec(q) else {
            return false;
        };
        let Some(question) = m.queries.first() else {
            return false;
        };
        self.raw.lock().unwrap().push(question.name().to_string());
        let name = question.name().to_string().to_ascii_lowercase();
        self.seen
            .lock()
            .unwrap()
            .push(format!("{name} {}", question.query_type()));
        self.nxdomain_for.lock().unwrap().contains(&name)
    }

    fn saw(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    fn burst(&self, replies: u64, ms: u64) {
        self.burst_ms.store(ms, Ordering::SeqCst);
        self.burst.store(replies, Ordering::SeqCst);
    }

    fn queries(&self) -> u64 {
        self.udp.load(Ordering::SeqCst) + self.tcp.load(Ordering::SeqCst)
    }
}

/// RCODE NXDOMAIN in a reply, the rest left as it was.
fn nxdomain(reply: &mut [u8]) {
    if reply.len() > 3 {
        reply[3] = (reply[3] & 0xf0) | 3;
    }
}

/// The question's name in a reply lowercased, the rest left as it was.
fn lowercase_question(reply: &mut [u8]) {
    let mut at = 12;
    while let Some(&len) = reply.get(at) {
        if len == 0 || len & 0xc0 != 0 || at + 1 + len as usize > reply.len() {
            break;
        }
        reply[at + 1..at + 1 + len as usize].make_ascii_lowercase();
        at += 1 + len as usize;
    }
}

/// A server that never answers: a UDP socket the test holds, counting what it is sent.
struct Silent {
    count: Arc<AtomicU64>,
    task: tokio::task::AbortHandle,
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Silent {
    async fn start(addr: SocketAddr) -> Silent {
        let sock = UdpSocket::bind(addr).await.expect("bind the silent server");
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while sock.recv_from(&mut buf).await.is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        });
        Silent {
            count,
            task: task.abort_handle(),
        }
    }

    fn asked(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

struct World {
    server: TestServer,
    clock: Arc<ManualClock>,
    root: Arc<Proxy>,
    tld: Arc<Proxy>,
    leaf: Arc<Proxy>,
}

impl World {
    async fn start() -> World {
        World::start_from("resilience/resilience.toml").await
    }

    async fn start_from(config: &str) -> World {
        let clock = Arc::new(ManualClock::default());
        let server = start_with_clock(Source::file(data(config)), clock.clone()).await;
        let port = server.addr("root", "udp").port();
        let proxy = |front: &str, listener: &str| {
            Proxy::start(
                SocketAddr::new(ip(front), port),
                server.addr(listener, "udp"),
            )
        };
        let root = proxy("127.0.14.11", "root").await;
        let tld = proxy("127.0.14.12", "tld").await;
        let leaf = proxy("127.0.14.13", "leaf").await;
        World {
            server,
            clock,
            root,
            tld,
            leaf,
        }
    }

    fn port(&self) -> u16 {
        self.server.addr("root", "udp").port()
    }

    fn instance(&self) -> Arc<gslbd::resolver::Instance> {
        let snap = self.server.handle.snapshot();
        let settings = snap.resolver.clone().unwrap();
        self.server.handle.resolvers().instance("r", &settings)
    }

    /// Asks resolver "r" over UDP (4096-byte payload, so big answers fit) and waits.
    async fn ask(&self, name: &str, qtype: u16) -> Message {
        let q = Q::new(name, qtype).payload(4096);
        let bytes = udp_from(ip(CLIENT), self.server.addr("r", "udp"), &q.bytes())
            .await
            .unwrap_or_else(|| panic!("no reply to {name} within {TIMEOUT:?}"));
        Message::from_vec(&bytes).unwrap()
    }

    /// Asks resolver "r" over TCP (for answers bigger than a UDP reply may carry).
    async fn ask_tcp(&self, name: &str, qtype: u16) -> Message {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(ip(CLIENT), 0)).unwrap();
        let mut stream = socket.connect(self.server.addr("r", "tcp")).await.unwrap();
        tcp_send(&mut stream, &Q::new(name, qtype).bytes()).await;
        let bytes = tcp_recv(&mut stream)
            .await
            .unwrap_or_else(|| panic!("no TCP reply to {name} within {TIMEOUT:?}"));
        Message::from_vec(&bytes).unwrap()
    }
}

fn a_records(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_truncated_reply_from_a_far_server_gets_its_own_tcp_budget() {
    let w = World::start().await;
    // Every server 150 ms away. Warm-up walks measure the leaf, so its RTO settles near 150 ms
    // plus its variation: the TCP retry must not inherit what is left of that.
    for p in [&w.root, &w.tld, &w.leaf] {
        p.delay(150);
    }
    for i in 1..=6 {
        let m = w.ask(&format!("a{i}.far.com"), 1).await;
        assert_eq!(a_records(&m), vec![ip(&format!("192.0.2.{}", 90 + i))]);
    }
    let tcp_before = w.leaf.tcp.load(Ordering::SeqCst);
    let m = w.ask_tcp("big.far.com", 16).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(
        m.answers
            .iter()
            .filter(|r| r.record_type() == RecordType::TXT)
            .count(),
        30,
        "the whole RRset, fetched over TCP after TC=1"
    );
    assert!(
        w.leaf.tcp.load(Ordering::SeqCst) > tcp_before,
        "TCP was used"
    );
}

#[tokio::test]
async fn a_reply_delayed_past_the_rto_is_retried_with_backoff() {
    let w = World::start().await;
    // A fast leaf (its RTO at the 50 ms floor)...
    for i in 1..=8 {
        let m = w.ask(&format!("a{i}.far.com"), 1).await;
        assert_eq!(a_records(&m).len(), 1);
    }
    // ...congested for a moment: its next three replies come 120 ms late. The third try, with
    // its timeout doubled twice (50, 100, 200 ms), waits long enough for it.
    w.leaf.burst(3, 120);
    let before = w.leaf.queries();
    let m = w.ask("www.far.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(a_records(&m), vec![ip("192.0.2.90")]);
    assert!(
        w.leaf.queries() - before >= 3,
        "asked again after each late reply"
    );
}

#[tokio::test]
async fn servers_that_keep_timing_out_are_skipped_then_probed() {
    let w = World::start().await;
    let dead = [
        Silent::start(SocketAddr::new(ip("127.0.14.20"), w.port())).await,
        Silent::start(SocketAddr::new(ip("127.0.14.21"), w.port())).await,
    ];
    // Measured as fast before they died, so each try costs 50, 100, 200 ms, not 376 ms and up.
    let inst = w.instance();
    for d in ["127.0.14.20", "127.0.14.21"] {
        inst.infra.rtt(ip(d), Duration::from_millis(5));
    }
    let m = w.ask("www.dead.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let counts = || dead.iter().map(Silent::asked).collect::<Vec<_>>();
    assert_eq!(counts(), vec![3, 3], "three tries each, backing off");

    // Now both are known down: the next query fails at once, without sending them anything.
    let m = w.ask("other.dead.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(counts(), vec![3, 3], "down servers are skipped");

    // A minute later one query probes each again, once.
    w.clock.advance(Duration::from_secs(61));
    let m = w.ask("third.dead.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(counts(), vec![4, 4], "one probe each after the down time");
}

#[tokio::test]
async fn a_walk_through_a_tarpit_ends_at_walk_timeout() {
    let w = World::start().await;
    let mut tarpit = Vec::new();
    for i in 30..=42 {
        tarpit.push(Silent::start(SocketAddr::new(ip(&format!("127.0.14.{i}")), w.port())).await);
    }
    // 13 servers that never answer, each first tried with a 376 ms timeout: asking them all
    // would take ~5 s (and the budget of 40 allows three rounds). walk_timeout_ms = 1500 ends the
    // walk first, and the client gets its SERVFAIL (`ask` waits 2 s at most).
    let m = w.ask("www.tarpit.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let asked: u64 = tarpit.iter().map(Silent::asked).sum();
    assert!(
        (1..13).contains(&asked),
        "{asked} tarpit queries: the walk should end before asking all 13"
    );
    // The walk slot is free again: the next query walks (and answers).
    let m = w.ask("www.far.com", 1).await;
    assert_eq!(a_records(&m), vec![ip("192.0.2.90")]);
}

#[tokio::test]
async fn cname_chain_limit_holds_for_chains_inside_replies() {
    let w = World::start().await;
    // c0 -> c1 -> ... -> c100: the server sends 12 CNAMEs per reply; 100 hops exceed
    // [limits] cname_chain = 12 whether they come in replies or from the cache.
    for round in ["walk", "cache"] {
        let m = w.ask("c0.chain.com", 1).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::ServFail,
            "{round}: {m:?}"
        );
        assert!(m.answers.is_empty(), "{round}");
    }
    // A chain within the limit (c90 -> c100: 10 hops) is answered, from a walk and the cache.
    for round in ["walk", "cache"] {
        let m = w.ask("c90.chain.com", 1).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{round}");
        assert_eq!(m.answers.len(), 11, "{round}: 10 CNAMEs and the A");
        assert_eq!(a_records(&m), vec![ip("192.0.2.100")]);
    }
}

#[tokio::test]
async fn expired_answers_are_served_stale_while_the_servers_fail() {
    let w = World::start().await;
    let m = w.ask("www.far.com", 1).await;
    assert_eq!(a_records(&m), vec![ip("192.0.2.90")]);
    // Five minutes on (TTL 300: expired) and the leaf's replies come too late to be used.
    w.clock.advance(Duration::from_secs(301));
    w.leaf.delay(5_000);
    let before = w.leaf.queries();
    let m = w.ask("www.far.com", 1).await;
    assert!(w.leaf.queries() > before, "a walk was tried first");
    // RFC 8767 4: the expired answer, with TTL 30, rather than SERVFAIL.
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(a_records(&m), vec![ip("192.0.2.90")]);
    assert_eq!(m.answers[0].ttl, 30);
    assert_eq!(gslbd::resolver::Stats::get(&w.instance().stats.stale), 1);
    // A name never cached has nothing stale to give.
    let m = w.ask("a1.far.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    // Past serve_expired_ttl (3600 s after expiry) the data is too old to serve.
    w.clock.advance(Duration::from_secs(3600));
    let m = w.ask("www.far.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    assert!(m.answers.is_empty());
}

#[tokio::test]
async fn names_below_a_cached_nxdomain_are_nxdomain_without_asking() {
    let w = World::start().await;
    let m = w.ask("nothere.far.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let before = w.leaf.queries();
    // RFC 8020: nothing exists below a name that does not exist.
    for name in ["a.nothere.far.com", "b.c.NotHere.far.com"] {
        let m = w.ask(name, 28).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(
            m.authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA),
            "{name}: the SOA of the cached NXDOMAIN"
        );
    }
    assert_eq!(w.leaf.queries(), before, "answered from the cache");
    // A sibling is still asked.
    let m = w.ask("a.other.far.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(w.leaf.queries() > before);
}

/// Cache hits are written from the RRset's encoding made when it was stored (issue 14: a hit on
/// a big RRset cloned and encoded every record). Through real sockets: the same records, in the
/// same order, with the TTL counted down, whole over TCP; TC with empty sections over UDP when
/// it cannot fit; the owner written as the client wrote the name; and nothing asked upstream.
#[tokio::test]
async fn cache_hits_are_sent_from_the_stored_encoding() {
    let w = World::start().await;
    let inst = w.instance();
    let txt = |m: &Message| -> Vec<(String, u32)> {
        m.answers
            .iter()
            .filter(|r| r.record_type() == RecordType::TXT)
            .map(|r| (r.data.to_string(), r.ttl))
            .collect()
    };
    let first = w.ask_tcp("big.far.com", 16).await;
    assert_eq!(txt(&first).len(), 30);
    assert!(txt(&first).iter().all(|(_, ttl)| *ttl == 300));
    assert_eq!(
        a_records(&w.ask("www.far.com", 1).await),
        vec![ip("192.0.2.90")]
    );
    let (asked, hits) = (
        w.leaf.queries(),
        gslbd::resolver::Stats::get(&inst.stats.cache_answers),
    );

    w.clock.advance(Duration::from_secs(100));
    let again = w.ask_tcp("big.far.com", 16).await;
    let want: Vec<(String, u32)> = txt(&first).into_iter().map(|(d, _)| (d, 200)).collect();
    assert_eq!(txt(&again), want, "the same RRset, TTL counted down");
    assert_eq!(again.answers.len(), 30);

    // UDP (the listener's 1232-byte payload): too big, so TC and nothing half-written.
    let m = w.ask("big.far.com", 16).await;
    assert!(m.metadata.truncation, "TC over UDP: {m:?}");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && m.authorities.is_empty());

    // The owner is the question as written (a pointer to it), case and all.
    let m = w.ask("WwW.FAR.com", 1).await;
    assert_eq!(a_records(&m), vec![ip("192.0.2.90")]);
    assert_eq!(m.answers[0].name.to_string(), "WwW.FAR.com.");
    assert_eq!(m.answers[0].ttl, 200);

    assert_eq!(w.leaf.queries(), asked, "every answer came from the cache");
    assert_eq!(
        gslbd::resolver::Stats::get(&inst.stats.cache_answers) - hits,
        3,
        "counted as cache answers"
    );
}

/// RFC 9156: each server is asked for one label below its zone (QTYPE A), and only the servers of
/// the name's own zone see the question; an empty non-terminal (deep.far.com, b.deep.far.com) is
/// NODATA and the walk adds the next label.
#[tokio::test]
async fn qname_minimisation_shows_each_server_one_label_more() {
    let w = World::start().await;
    let m = w.ask("a.b.deep.far.com", 28).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(m.answers.len(), 1, "{m:?}");
    assert_eq!(w.root.saw(), ["com. A"]);
    assert_eq!(w.tld.saw(), ["far.com. A"]);
    assert_eq!(
        w.leaf.saw(),
        [
            "deep.far.com. A",
            "b.deep.far.com. A",
            "a.b.deep.far.com. AAAA"
        ]
    );
}

/// `qname_minimisation = false`: every server is asked the client's question.
#[tokio::test]
async fn without_qname_minimisation_every_server_sees_the_question() {
    let w = World::start_from("resilience/no-qmin.toml").await;
    let m = w.ask("a.b.deep.far.com", 28).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    for p in [&w.root, &w.tld, &w.leaf] {
        assert_eq!(p.saw(), ["a.b.deep.far.com. AAAA"]);
    }
}

/// Relaxed mode (RFC 9156 2.3): a server that answers NXDOMAIN for an empty non-terminal is
/// asked the full name, which resolves; the wrong NXDOMAIN is not cached (RFC 8020 would then end
/// every name below it).
#[tokio::test]
async fn qname_minimisation_survives_nxdomain_for_empty_non_terminals() {
    let w = World::start().await;
    w.leaf
        .nxdomain_for
        .lock()
        .unwrap()
        .extend(["deep.far.com.".to_string(), "b.deep.far.com.".to_string()]);
    let m = w.ask("a.b.deep.far.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(a_records(&m), vec![ip("192.0.2.77")]);
    assert_eq!(w.leaf.saw(), ["deep.far.com. A", "a.b.deep.far.com. A"]);
    let m = w.ask("x.deep.far.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(a_records(&m), vec![ip("192.0.2.78")]);
}

/// Prefetch (Unbound's): a hit in the last 10 % of an answer's TTL is answered from the cache at
/// once and starts one refresh, so the leaf sees a second query before the answer expires; a hit
/// while that refresh is in flight starts nothing; the fresh answer replaces the old one.
#[tokio::test]
async fn a_hit_in_the_last_tenth_of_its_ttl_refreshes_it_in_the_background() {
    let w = World::start().await;
    let inst = w.instance();
    let prefetches = || gslbd::resolver::Stats::get(&inst.stats.prefetches);
    assert_eq!(
        a_records(&w.ask("www.far.com", 1).await),
        vec![ip("192.0.2.90")]
    );
    let before = w.leaf.queries();
    // 267 of 300 s gone (89 %): a plain hit.
    w.clock.advance(Duration::from_secs(267));
    assert_eq!(w.ask("www.far.com", 1).await.answers[0].ttl, 33);
    assert_eq!((prefetches(), w.leaf.queries()), (0, before));
    // 271 s (the last 10 %): the cached answer, TTL 29, not a fresh one the client waited for
    // (the leaf now takes 40 ms to reply: within its 50 ms RTO, so one query).
    w.leaf.delay(40);
    w.clock.advance(Duration::from_secs(4));
    let m = w.ask("www.far.com", 1).await;
    assert_eq!(a_records(&m), vec![ip("192.0.2.90")]);
    assert_eq!(m.answers[0].ttl, 29);
    // Another hit: while the refresh is in flight it starts nothing; after, the answer is fresh.
    assert_eq!(
        a_records(&w.ask("www.far.com", 1).await),
        vec![ip("192.0.2.90")]
    );
    assert_eq!(prefetches(), 1, "one refresh for both hits");
    let key =
        gslbd::zone::name::key_of(&hickory_proto::rr::Name::from_ascii("www.far.com.").unwrap());
    let fresh = || {
        inst.cache
            .rrset(&key, RecordType::A, gslbd::resolver::cache::Rank::Answer)
            .is_some_and(|r| r[0].ttl == 300)
    };
    for _ in 0..200 {
        if fresh() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fresh(), "the refresh stored a fresh answer");
    assert_eq!(
        w.leaf.queries(),
        before + 1,
        "the leaf was asked once more, before expiry"
    );
    assert_eq!(w.ask("www.far.com", 1).await.answers[0].ttl, 300);
    assert_eq!(prefetches(), 1);
}

/// 0x20 (`use_caps_for_id`): off, a server that lowercases the question in its replies is
/// answered as any other; on, names go out in mixed case, servers that echo them (gslbd's root
/// and com.) are used as ever, and the lowercasing leaf's reply is refused (counted), then the
/// leaf is asked again without 0x20 and the walk answers (Unbound's fallback).
#[tokio::test]
async fn caps_for_id_refuses_replies_in_another_case_then_asks_without() {
    let off = World::start().await;
    off.leaf.lowercase.store(true, Ordering::SeqCst);
    assert_eq!(
        a_records(&off.ask("www.far.com", 1).await),
        vec![ip("192.0.2.90")]
    );
    assert_eq!(
        *off.leaf.raw.lock().unwrap(),
        ["www.far.com."],
        "no 0x20 by default"
    );
    assert_eq!(
        gslbd::resolver::Stats::get(&off.instance().stats.caps_mismatches),
        0
    );
    drop(off);

    let w = World::start_from("resilience/caps.toml").await;
    w.leaf.lowercase.store(true, Ordering::SeqCst);
    let m = w.ask("www.far.com", 1).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{m:?}");
    assert_eq!(a_records(&m), vec![ip("192.0.2.90")]);
    let mixed = |s: &String| s.chars().any(|c| c.is_ascii_uppercase());
    let root = w.root.raw.lock().unwrap().clone();
    assert!(
        root.len() == 1 && mixed(&root[0]) && root[0].eq_ignore_ascii_case("com."),
        "{root:?}"
    );
    let leaf = w.leaf.raw.lock().unwrap().clone();
    assert_eq!(leaf.len(), 2, "{leaf:?}");
    assert!(
        mixed(&leaf[0]) && leaf[0].eq_ignore_ascii_case("www.far.com."),
        "{leaf:?}"
    );
    assert_eq!(leaf[1], "www.far.com.", "asked again without 0x20");
    assert_eq!(
        gslbd::resolver::Stats::get(&w.instance().stats.caps_mismatches),
        1
    );
}
