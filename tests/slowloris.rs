//! Clients that hold a resource without using it (issue 13, item 3): the real server on loopback,
//! raw sockets, short timeouts configured so each test takes seconds. Each attack is shown to leave
//! legitimate clients answered; the limits are generous upper bounds, never timings to match.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Q, TestServer};
use gslbd::config::Source;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// 16 strings of 250 bytes: a ~4 KB reply to a ~40-byte query, so a client that never reads
/// fills the socket buffers quickly.
fn big_txt() -> String {
    let s = format!("\"{}\" ", "x".repeat(250));
    format!("big TXT {}\n", s.repeat(16))
}

async fn start(dir: &std::path::Path, limits: &str, extra: &str) -> TestServer {
    let path = common::write_example(dir, &big_txt(), &format!("[limits]\n{limits}\n{extra}"));
    common::start(Source::file(path)).await
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Q::new(name, 16);
    q.id = id;
    q.bytes()
}

fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut f = (bytes.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(bytes);
    f
}

/// One legitimate client: connect, ask, read the reply; true when answered within `limit`.
async fn legit_tcp(addr: SocketAddr, id: u16, limit: Duration) -> bool {
    let ask = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(&framed(&query(id, "ns.example.com.")))
            .await
            .ok()?;
        let len = s.read_u16().await.ok()? as usize;
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).await.ok()?;
        (buf[..2] == id.to_be_bytes()).then_some(())
    };
    tokio::time::timeout(limit, ask)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// `n` legitimate clients one after another; how many were answered, each within `limit`.
async fn legit_round(addr: SocketAddr, n: usize, limit: Duration) -> usize {
    let mut answered = 0;
    for i in 0..n {
        if legit_tcp(addr, 1000 + i as u16, limit).await {
            answered += 1;
        }
    }
    answered
}

/// An attacker that pipelines queries with big replies and never reads one, reconnecting whenever
/// the server lets go of it, until `stop`. Returns the connections it made.
fn pipeliner(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let burst: Vec<u8> = (0..2000u16)
            .flat_map(|i| framed(&query(i, "big.example.com.")))
            .collect();
        let mut connections = 0;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            connections += 1;
            // Hold the connection while the server keeps it: a write that fails means it was
            // closed; one that blocks means the server stopped reading (it is stuck writing to us).
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                let piece =
                    &burst[sent % burst.len()..(sent % burst.len() + 4096).min(burst.len())];
                match tokio::time::timeout(Duration::from_millis(100), s.write(piece)).await {
                    Ok(Ok(n)) if n > 0 => sent += n,
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
        }
        connections
    })
}

/// Every slot of a small cap taken by clients that pipeline and never read: the write deadline
/// (tcp_io_timeout_ms) frees them, so legitimate clients keep getting answers while the attack
/// goes on. Without a write timeout the stuck writes hold every slot for good (0 answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelining_clients_that_never_read_do_not_lock_others_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "tcp_max_connections = 4\ntcp_io_timeout_ms = 300\ntcp_max_outstanding = 16",
        "",
    )
    .await;
    let addr = server.addr("all", "tcp");
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..8).map(|_| pipeliner(addr, stop.clone())).collect();
    // Let them fill every slot and every socket buffer first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    let answered = legit_round(addr, 12, Duration::from_secs(5)).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut attacks = 0;
    for a in attackers {
        attacks += a.await.unwrap();
    }
    assert_eq!(
        answered, 12,
        "legitimate clients answered during the attack"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // The attackers were let go of and came back: the deadline acted, not an idle slot.
    assert!(attacks > 8, "attacker connections: {attacks}");
}

/// Clients that connect and send nothing, and clients that send a message a byte at a time: the
/// idle ones are closed first when the cap is reached (RFC 7766 6.2.3), the slow ones when their
/// message is not whole within tcp_io_timeout_ms. Idle timeout here is long (30 s), so only those
/// two rules can let the legitimate clients in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_and_slow_clients_do_not_lock_others_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "tcp_max_connections = 4\ntcp_io_timeout_ms = 300\ntcp_idle_timeout_ms = 30000",
        "",
    )
    .await;
    let addr = server.addr("all", "tcp");
    let stop = Arc::new(AtomicBool::new(false));
    let closed_slow = Arc::new(AtomicUsize::new(0));
    let mut holders = Vec::new();
    // Four idle clients, four that drip one byte of a message every 100 ms (never finishing it).
    for i in 0..8 {
        let stop = stop.clone();
        let closed_slow = closed_slow.clone();
        holders.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            if i % 2 == 0 {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return;
            }
            let msg = framed(&query(7, "ns.example.com."));
            for b in msg.iter().cycle().take(200) {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if s.write_all(&[*b]).await.is_err() {
                    closed_slow.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answered = legit_round(addr, 12, Duration::from_secs(5)).await;
    // The drippers are cut off by the message deadline well before their 20 s of bytes end.
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        while closed_slow.load(Ordering::Relaxed) < 4 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for h in holders {
        h.await.unwrap();
    }
    assert_eq!(answered, 12, "legitimate clients answered");
    assert!(
        cut.is_ok(),
        "slow senders closed: {}",
        closed_slow.load(Ordering::Relaxed)
    );
}

/// Each listener has its own connection cap: listener "a" full of busy connections (pipelining,
/// never reading, with a write deadline long enough to keep them) leaves "b" answering at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_caps_are_per_listener() {
    let dir = tempfile::tempdir().unwrap();
    let b = "[[listener]]\nname = \"b\"\naddresses = [\"127.0.0.2:0\"]\nzones = [\"*\"]\n";
    let server = start(
        dir.path(),
        "tcp_max_connections = 2\ntcp_io_timeout_ms = 20000",
        b,
    )
    .await;
    let a_addr = server.addr("all", "tcp");
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..4).map(|_| pipeliner(a_addr, stop.clone())).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // "a" is full: a client there waits (it is not answered within a second)...
    let a_answered = legit_tcp(a_addr, 1, Duration::from_secs(1)).await;
    // ...while "b" answers.
    let b_answered = legit_round(server.addr("b", "tcp"), 5, Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    assert!(
        !a_answered,
        "listener a was not full: the test would prove nothing"
    );
    assert_eq!(b_answered, 5);
}

/// Pipelining still works with a small outstanding cap: 50 queries in one write, 50 replies, each
/// ID once (the cap only stops reading until replies go out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelined_queries_beyond_the_outstanding_cap_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "tcp_max_outstanding = 2", "").await;
    let mut s = TcpStream::connect(server.addr("all", "tcp")).await.unwrap();
    let burst: Vec<u8> = (0..50u16)
        .flat_map(|i| framed(&query(i, "big.example.com.")))
        .collect();
    s.write_all(&burst).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..50 {
        let reply = common::tcp_recv(&mut s).await.expect("a reply");
        ids.push(u16::from_be_bytes([reply[0], reply[1]]));
    }
    ids.sort();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());
}

/// A connection with nothing outstanding is closed after tcp_idle_timeout_ms (RFC 7766 6.2.3), and
/// one whose message stops half-way after tcp_io_timeout_ms, even though it keeps its byte trickle
/// going slower than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_and_half_sent_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "tcp_idle_timeout_ms = 400\ntcp_io_timeout_ms = 300",
        "",
    )
    .await;
    let addr = server.addr("all", "tcp");
    // Idle after one answered query.
    let mut s = TcpStream::connect(addr).await.unwrap();
    common::tcp_send(&mut s, &query(1, "ns.example.com.")).await;
    assert!(common::tcp_recv(&mut s).await.is_some());
    let mut one = [0u8; 1];
    let eof = tokio::time::timeout(Duration::from_secs(5), s.read(&mut one)).await;
    assert!(
        matches!(eof, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection closed: {eof:?}"
    );
    // A message trickled a byte per 150 ms: each byte comes well within the idle timeout, so only
    // the whole-message deadline can cut it off.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let msg = framed(&query(2, "ns.example.com."));
    let started = Instant::now();
    let mut closed = false;
    for b in &msg {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    if !closed {
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut one)).await;
        closed = matches!(r, Ok(Ok(0)) | Ok(Err(_)));
    }
    assert!(closed, "a message sent one byte per 150 ms was cut off");
    assert!(started.elapsed() < Duration::from_secs(10));
}

// ---------------------------------------------------------------------------------------------
// HTTP (HTTPDNS, DoH): the connection layer of src/http/mod.rs and src/http/check.rs

fn http_section(settings: &str) -> String {
    format!(
        "[http]\nlisten = [\"127.0.0.1:0\"]\nrate_limit = {{ per_ip = 0, per_account = 0, burst_seconds = 1 }}\n{settings}\n"
    )
}

async fn start_http(dir: &std::path::Path, settings: &str) -> TestServer {
    start(dir, "", &http_section(settings)).await
}

/// Sends `request` as is on a new connection and reads until the server closes it or `limit`
/// passes; returns the status and body of the first response (None: nothing came).
async fn http_raw(addr: SocketAddr, request: &[u8], limit: Duration) -> Option<(u16, String)> {
    let ask = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(request).await.ok()?;
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all).await;
        Some(all)
    };
    let all = tokio::time::timeout(limit, ask).await.ok().flatten()?;
    parse_response(&all)
}

fn parse_response(all: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(all);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

const GET_NS: &[u8] =
    b"GET /resolve?name=ns.example.com&type=A HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// `n` legitimate HTTP clients one after another; how many got a 200 within `limit` each.
async fn legit_http_round(addr: SocketAddr, n: usize, limit: Duration) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if let Some((200, body)) = http_raw(addr, GET_NS, limit).await {
            assert!(body.contains("127.0.0.1"), "{body}");
            ok += 1;
        }
    }
    ok
}

/// Twice max_connections of idle sockets (connected, nothing sent) and of keep-alive clients
/// (one request answered, the connection kept open), with idle and header timeouts far longer than
/// the test: the longest-idle connections are closed for newcomers, so every legitimate client is
/// answered. A server that refuses (or queues) newcomers at the cap answers none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_idle_and_keepalive_crowds_do_not_lock_others_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_http(
        dir.path(),
        "max_connections = 8\nidle_timeout_ms = 60000\nheader_read_timeout_ms = 60000",
    )
    .await;
    let addr = server.addr("http", "http");
    let mut crowd = Vec::new();
    for _ in 0..16 {
        crowd.push(TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..16 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let keep = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        s.write_all(keep).await.unwrap();
        let mut buf = [0u8; 512];
        // The reply, if this one got in before later ones pushed it out; either way it stays open
        // on our side.
        let _ = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
        crowd.push(s);
    }
    let answered = legit_http_round(addr, 12, Duration::from_secs(5)).await;
    drop(crowd);
    assert_eq!(answered, 12, "legitimate HTTP clients answered");
}

/// A request head trickled (a header field growing by 64 bytes every 100 ms, staying far below the
/// head size limit) is cut off by header_read_timeout_ms although each piece comes well within
/// any idle bound, and the server keeps answering others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_slow_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_http(
        dir.path(),
        "header_read_timeout_ms = 500\nidle_timeout_ms = 60000",
    )
    .await;
    let addr = server.addr("http", "http");
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: ")
                .await
                .unwrap();
            let started = Instant::now();
            for _ in 0..100 {
                // 100 pieces, 10 s: the server must close long before the head could end.
                if s.write_all(&[b'a'; 64]).await.is_err() {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answered = legit_http_round(addr, 5, Duration::from_secs(5)).await;
    for s in slow {
        let cut = s.await.unwrap();
        assert!(
            cut.is_some_and(|t| t < Duration::from_secs(8)),
            "slow head cut off: {cut:?}"
        );
    }
    assert_eq!(answered, 5);
}

/// Keep-alive connections are closed after max_requests_per_connection requests, and after
/// idle_timeout_ms with no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_cap_and_idle_timeout_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_http(
        dir.path(),
        "max_requests_per_connection = 3\nidle_timeout_ms = 400\nheader_read_timeout_ms = 60000",
    )
    .await;
    let addr = server.addr("http", "http");
    let req = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut got = Vec::new();
    let mut answered = 0;
    let mut closed = false;
    for _ in 0..5 {
        if s.write_all(req).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                answered += 1;
            }
            Err(_) => panic!("no reply and no close"),
        }
    }
    assert_eq!(answered, 3, "{}", String::from_utf8_lossy(&got));
    assert!(closed);
    // Idle: one request, then silence.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut all = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
    assert!(r.is_ok(), "an idle keep-alive connection is closed");
    assert_eq!(parse_response(&all).map(|r| r.0), Some(200));
}

/// A request that outlasts request_timeout_ms (a DoH POST whose body stops half-way) gets 408 with
/// the JSON error, counted in /metrics; the setting reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_timeout_is_a_json_408_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_http(dir.path(), "request_timeout_ms = 30000").await;
    let addr = server.addr("http", "http");
    let half_post = b"POST /dns-query HTTP/1.1\r\nHost: t\r\nContent-Type: application/dns-message\r\nContent-Length: 40\r\n\r\n0123456789";
    // 30 s: nothing within 1 s.
    assert_eq!(
        http_raw(addr, half_post, Duration::from_secs(1)).await,
        None
    );
    let config = dir.path().join("gslbd.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("request_timeout_ms = 30000", "request_timeout_ms = 300"),
    )
    .unwrap();
    server.handle.reload().expect("reload");
    let (status, body) = http_raw(addr, half_post, Duration::from_secs(5))
        .await
        .expect("a reply");
    assert_eq!(status, 408, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(v["code"], "RequestTimeout");
    let (_, metrics) = http_raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("RequestTimeout") && l.contains("408")),
        "408 counted"
    );
}

/// Item 9: what hyper accepted or answered with an empty body is refused with the JSON error.
/// RFC 9112 3.2 (Host), 2.2 (bare LF), 3.2 and RFC 3986 2.1 (bytes of the request target).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_malformed_heads_get_json_400() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_http(dir.path(), "").await;
    let addr = server.addr("http", "http");
    let cases: &[(&[u8], u16)] = &[
        (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /healthz HTTP/1.1\nHost: t\nConnection: close\n\n",
            400,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: t\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /\xff HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            200,
        ),
        (b"GET /healthz HTTP/1.0\r\n\r\n", 200),
    ];
    for (req, want) in cases {
        let (status, body) = http_raw(addr, req, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no reply to {:?}", String::from_utf8_lossy(req)));
        assert_eq!(status, *want, "{:?}: {body}", String::from_utf8_lossy(req));
        if *want == 400 {
            let v: serde_json::Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{e}: {body:?} for {:?}", String::from_utf8_lossy(req)));
            assert_eq!(v["code"], "BadRequest", "{body}");
        }
    }
    // A good request, then a bad one on the same connection: the first is answered, then the 400.
    let two = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n";
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(two).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("closed")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    // The 200's JSON body, then the 400 and its own.
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    let (_, second) = text.split_once("}HTTP/1.1 ").expect("a second response");
    assert!(second.starts_with("400 "), "{text}");
    assert_eq!(
        parse_response(format!("HTTP/1.1 {second}").as_bytes())
            .unwrap()
            .0,
        400
    );
    assert!(second.contains("\"code\":\"BadRequest\""), "{text}");
}
