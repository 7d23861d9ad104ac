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

/// A `Responder` status that answers nothing (the check times out).
const SILENT: u16 = 0;

/// A tiny HTTP server answering every request with the status in `status` (`SILENT`: no answer).
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
                    if code == SILENT {
                        // Hold the connection without a word: the check ends only at its timeout.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
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

// ---------------------------------------------------------------------------------------------
// Health that does not forget: unknown until checked, saved across restarts, kept across a
// change of timing.

/// One region, two members checked over HTTP at `checks` (127.0.32.x responders); checks run
/// every `interval_ms` with `timeout_ms`, one result flips a state. `state_file`: `[gslb]
/// health_state`.
fn slow_checks(
    dir: &std::path::Path,
    checks: [SocketAddr; 2],
    interval_ms: u64,
    state_file: bool,
) -> std::path::PathBuf {
    let gslb = if state_file {
        "[gslb]\nhealth_state = \"health-state.json\"\n"
    } else {
        ""
    };
    let policy = format!(
        r#"
{gslb}
[gslb.region.a]
location = [0.0, 0.0]

[gslb.health.web]
kind = "http"
port = 80
path = "/health"
interval_ms = {interval_ms}
timeout_ms = 15000
up = 1
down = 1

[[gslb.location]]
name = "app.example.com."
ttl = 10
answer = 2
default = "a"
health = "web"
pools.a = [{{ address = "192.0.2.1", check = "{}" }}, {{ address = "192.0.2.2", check = "{}" }}]
"#,
        checks[0], checks[1]
    );
    write_example(dir, "", &policy)
}

/// The states explain shows for the pool of app.example.com (None: unchecked).
fn states(server: &TestServer) -> Vec<(Option<gslbd::health::State>, bool)> {
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
    e.hops[0]
        .pool
        .iter()
        .map(|m| (m.state, m.check.as_ref().is_some_and(|c| c.restored)))
        .collect()
}

/// A member whose first check has not finished is not answered once another member is known up:
/// the second member's check hangs for 15 s, the first passes at once.
#[tokio::test]
async fn a_member_is_not_answered_before_its_first_check() {
    use gslbd::health::State;
    let up = Arc::new(AtomicU16::new(200));
    let hung = Arc::new(AtomicU16::new(SILENT));
    let r1 = Responder::start("127.0.32.10:0".parse().unwrap(), up).await;
    let r2 = Responder::start("127.0.32.11:0".parse().unwrap(), hung).await;
    let dir = tempfile::tempdir().unwrap();
    let server = start(Source::file(slow_checks(
        dir.path(),
        [r1.addr, r2.addr],
        20_000,
        false,
    )))
    .await;
    until(&server, &["192.0.2.1"], "the checked member alone").await;
    assert_eq!(
        states(&server),
        [(Some(State::Up), false), (Some(State::Unknown), false)],
        "answered from the member known up while the other's first check runs"
    );
    // `gslbd explain` prints the same structure: the waiting member says so.
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
    let text = gslbd::gslb::explain::render(&e);
    assert!(
        text.contains("192.0.2.2")
            && text.contains("unknown (no check finished yet: not answered)"),
        "{text}"
    );
}

/// The states are saved (`[gslb] health_state`) and come back at the next start, before any
/// check finishes; a reload that changes only a check's timing keeps them.
#[tokio::test]
async fn saved_states_survive_restart_and_retuning() {
    use gslbd::health::State;
    let s1 = Arc::new(AtomicU16::new(200));
    let s2 = Arc::new(AtomicU16::new(SILENT));
    let r1 = Responder::start("127.0.32.12:0".parse().unwrap(), s1.clone()).await;
    // Nothing listens at the second member's check address at first: refused, down at once.
    let closed = TcpListener::bind("127.0.32.13:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let config = slow_checks(dir.path(), [r1.addr, dead], 20_000, true);
    let file = dir.path().join("health-state.json");

    let first = start(Source::file(&config)).await;
    until(&first, &["192.0.2.1"], "the dead member out").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.contains("\"down\"") && text.contains("\"up\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "state file never written: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);

    // From now on no check finishes within the test (15 s timeouts): what the second server
    // knows comes from the file alone.
    s1.store(SILENT, Ordering::Relaxed);
    let _r2 = Responder::start(dead, s2).await;
    let second = start(Source::file(&config)).await;
    assert_eq!(
        answer(&second).await,
        set(&["192.0.2.1"]),
        "right after restart"
    );
    assert_eq!(
        states(&second),
        [(Some(State::Up), true), (Some(State::Down), true)]
    );

    // Retune the check (interval only) and reload: new targets, same states.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("interval_ms = 20000", "interval_ms = 25000");
    std::fs::write(&config, text).unwrap();
    second.handle.reload().expect("reload");
    assert_eq!(
        answer(&second).await,
        set(&["192.0.2.1"]),
        "right after the reload"
    );
    assert_eq!(
        states(&second)
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>(),
        [Some(State::Up), Some(State::Down)]
    );
}
