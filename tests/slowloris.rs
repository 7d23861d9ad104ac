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
