//! Health checks end to end: real HTTP responders on loopback, started, failed and stopped by the
//! test; the DNS answers follow within the configured thresholds, fail over to the next region,
//! come back, survive a reload, and fall back by policy when everything is down.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gslbd::config::Source;
use gslbd::gslb::explain::ClientSource;
use gslbd::query::client_addr;
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A tiny HTTP server answering every request with the status in `status`.
struct Responder {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    task: Option<JoinHandle<()>>,
}

impl Responder {
    async fn start(addr: SocketAddr, status: Arc<AtomicU16>) -> Responder {
        let listener = TcpListener::bind(addr).await.expect("bind responder");
        let addr = listener.local_addr().unwrap();
        let st = status.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    let code = st.load(Ordering::Relaxed);
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        Responder {
            addr,
            status,
            task: Some(task),
        }
    }

    /// Connection refused from now on.
    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    async fn restart(&mut self) {
        self.stop();
        // The aborted task drops its listener; rebinding the same port may need a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if TcpListener::bind(self.addr).await.is_ok() || Instant::now() > deadline {
                break;
            }
        }
        *self = Responder::start(self.addr, self.status.clone()).await;
    }
}

fn config(dir: &std::path::Path, ports: [u16; 3]) -> std::path::PathBuf {
    let policy = format!(
        r#"
[gslb.region.a]
location = [0.0, 0.0]
[gslb.region.b]
location = [10.0, 10.0]

[gslb.health.web]
kind = "http"
port = 80
path = "/health"
interval_ms = 100
timeout_ms = 100
up = 2
down = 2

[[gslb.location]]
name = "app.example.com."
ttl = 10
answer = 2
default = "a"
health = "web"
pools.a = [{{ address = "192.0.2.1", check = "127.0.0.1:{}" }}, {{ address = "192.0.2.2", check = "127.0.0.1:{}" }}]
pools.b = [{{ address = "192.0.2.3", check = "127.0.0.1:{}" }}]
"#,
        ports[0], ports[1], ports[2]
    );
    write_example(dir, "", &policy)
}

async fn answer(server: &TestServer) -> BTreeSet<String> {
    let m = ask(server, "all", Via::Udp, &Q::new("app.example.com.", 1)).await;
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Polls the DNS answer until it equals `want` (generous deadline: machines are noisy).
async fn until(server: &TestServer, want: &[&str], what: &str) {
    let want = set(want);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = answer(server).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn answers_follow_health_and_fail_over() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let status: Vec<Arc<AtomicU16>> = (0..3).map(|_| Arc::new(AtomicU16::new(200))).collect();
    let mut r = Vec::new();
    for s in &status {
        r.push(Responder::start(any, s.clone()).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        [r[0].addr.port(), r[1].addr.port(), r[2].addr.port()],
    );
    let server = start(Source::file(&path)).await;

    until(&server, &["192.0.2.1", "192.0.2.2"], "all up").await;

    // A wrong status takes the first address out after `down` failed checks.
    status[0].store(503, Ordering::Relaxed);
    until(&server, &["192.0.2.2"], "first address failing").await;

    // Connection refused on the second: region a has no healthy address, region b takes over.
    r[1].stop();
    until(&server, &["192.0.2.3"], "region a down").await;

    // A reload keeps the health state: still failed over at once, not back to "all up".
    server.handle.reload().expect("same config reloads");
    assert_eq!(answer(&server).await, set(&["192.0.2.3"]), "after reload");

    // Recovery after `up` good checks.
    status[0].store(200, Ordering::Relaxed);
    until(&server, &["192.0.2.1"], "first address back").await;
    r[1].restart().await;
    until(&server, &["192.0.2.1", "192.0.2.2"], "both back").await;

    // Everything down: all_down = "all" answers the preferred region as if it were up, and
    // explain says so.
    status[0].store(500, Ordering::Relaxed);
    r[1].stop();
    r[2].stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap = server.handle.snapshot();
        let e = gslbd::lookup::explain(
            &snap,
            0,
            "app.example.com",
            RecordType::A,
            client_addr(None, "127.0.0.1".parse().unwrap()),
            ClientSource::Packet,
        )
        .unwrap();
        let all_down = e.hops[0]
            .failover
            .iter()
            .any(|f| f.contains("every region is below its healthy minimum"));
        if all_down {
            assert!(e.hops[0].pool.iter().all(|m| !m.healthy), "{e:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never all down: {e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answer(&server).await, set(&["192.0.2.1", "192.0.2.2"]));
}
