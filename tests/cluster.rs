//! The fleet end to end (issue 17): three etcd members (Debian's etcd-server) and three gslbd
//! processes on loopback. A push of the lab reaches every node; a change pushed reaches every
//! node; a push that fails the check is refused by the CLI; a revision forced into etcd that does
//! not build leaves every node on the old one and `cluster status` says why; a drain through one
//! node's API changes another node's answers; with etcd's quorum gone every node keeps answering,
//! reports degraded, and a node restarted meanwhile serves its cached revision; with etcd back the
//! nodes rejoin and follow the next push.
#![cfg(feature = "cluster")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_gslbd");
const TOKEN: &str = "lab-admin-token";
const OBJECT: &str = "object.yourcompany.com";
/// The lab's China Mobile client network in Beijing: line yd, region bj (geo/lab.csv).
const MOBILE_BJ: &str = "127.0.10.0/24";

fn pool(first: u8) -> Vec<String> {
    let mut v: Vec<String> = (first..first + 6)
        .map(|i| format!("203.0.113.{i}"))
        .collect();
    v.sort();
    v
}

/// Three etcd members on `127.0.17.{base+1..=base+3}` (client 2379, peer 2380), data in `dir`.
struct Etcd {
    base: u8,
    dir: PathBuf,
    members: Vec<Option<Child>>,
}

impl Etcd {
    fn ip(&self, i: usize) -> String {
        format!("127.0.17.{}", self.base as usize + i + 1)
    }

    fn endpoints(&self) -> String {
        (0..3)
            .map(|i| format!("http://{}:2379", self.ip(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start(base: u8, dir: &Path) -> Etcd {
        let mut e = Etcd {
            base,
            dir: dir.to_path_buf(),
            members: vec![None, None, None],
        };
        for i in 0..3 {
            e.start_member(i);
        }
        e.wait_healthy(&[0, 1, 2]);
        e
    }

    fn start_member(&mut self, i: usize) {
        let cluster = (0..3)
            .map(|j| format!("e{j}=http://{}:2380", self.ip(j)))
            .collect::<Vec<_>>()
            .join(",");
        let ip = self.ip(i);
        let log = std::fs::File::create(self.dir.join(format!("etcd{i}.log"))).unwrap();
        let child = tool("etcd")
            .args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(self.dir.join(format!("etcd{i}")))
            .args(["--listen-client-urls", &format!("http://{ip}:2379")])
            .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
            .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://{ip}:2380"),
            ])
            .args(["--initial-cluster", &cluster])
            .args([
                "--initial-cluster-token",
                &format!("gslbd-test-{}", self.base),
            ])
            .args(["--initial-cluster-state", "new"])
            // No metrics or pprof listeners of its own beyond the client URL.
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd runs (apt-get install etcd-server; .ci/run does)");
        self.members[i] = Some(child);
    }

    fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        tool("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints(), "--command-timeout=3s"])
            .args(args)
            .output()
            .expect("etcdctl runs")
    }

    fn wait_healthy(&self, members: &[usize]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = members.iter().all(|&i| {
                tool("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args([
                        "--endpoints",
                        &format!("http://{}:2379", self.ip(i)),
                        "endpoint",
                        "health",
                    ])
                    .output()
                    .is_ok_and(|o| o.status.success())
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..3 {
            self.stop_member(i);
        }
    }
}

/// One gslbd process serving a node file, with the addresses it logged.
struct Node {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(file: &Path) -> Node {
        let mut child = Command::new(BIN)
            .args(["serve", "--port", "0", "-c"])
            .arg(file)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gslbd runs");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        let node = Node { child, lines };
        // Serving once the HTTP listener is logged (it is bound last).
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.find("http", "http").is_none() {
            assert!(
                Instant::now() < deadline,
                "node did not start:\n{}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// `listening on PROTO ADDR (LISTENER)`.
    fn find(&self, proto: &str, listener: &str) -> Option<SocketAddr> {
        let want = format!("({listener})");
        self.lines.lock().unwrap().iter().find_map(|l| {
            let rest = &l[l.find("listening on ")? + 13..];
            let mut parts = rest.split_whitespace();
            (parts.next()? == proto && parts.clone().nth(1)? == want)
                .then(|| parts.next()?.parse().ok())
                .flatten()
        })
    }

    fn dns(&self) -> SocketAddr {
        self.find("udp", "all").expect("the all listener")
    }

    fn http(&self) -> SocketAddr {
        self.find("http", "http").expect("the http listener")
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let out = tool("curl")
            .args(["-s", "--max-time", "3"])
            .arg(format!("http://{}/metrics", self.http()))
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.parse().ok()).flatten()
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dig's answer lines for `name` (A or TXT), from `subnet` by ECS; "REFUSED"/"SERVFAIL" for those.
fn dig(dns: SocketAddr, name: &str, qtype: &str, subnet: &str) -> Vec<String> {
    let out = tool("dig")
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string()])
        .args(["+norec", "+time=2", "+tries=2"])
        .arg(format!("+subnet={subnet}"))
        .args([name, qtype])
        .output()
        .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for rcode in ["REFUSED", "SERVFAIL", "NXDOMAIN"] {
        if text.contains(&format!("status: {rcode}")) {
            return vec![rcode.to_string()];
        }
    }
    // The answer section's RDATA: every field after name, TTL, class and type.
    let mut v: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.split_whitespace().nth(3) == Some(qtype))
        .map(|l| l.split_whitespace().skip(4).collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

/// Waits until `f` holds (polling), returning how long it took.
fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Whether a command succeeded, and its stdout and stderr together.
fn outcome(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("gslbd runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn cluster_cli(args: &[&str]) -> (bool, String) {
    outcome(
        Command::new(BIN)
            .arg("cluster")
            .args(args)
            .env("USER", "fleet-test"),
    )
}

/// The lab on disk to push (its zone files copied, not linked, so the test can change one), and
/// three node files: `[cluster]` plus the lab's listeners, `[http]` and `[resolver]` (node-local
/// sections), each with its own cache folder.
fn world(dir: &Path, etcd: &Etcd, prefix: &str) -> (PathBuf, Vec<PathBuf>) {
    let lab = lab_on_disk(dir, "", "");
    let zone = dir.join("lab/yourcompany.com.zone");
    let text = std::fs::read_to_string(&zone).unwrap();
    std::fs::remove_file(&zone).unwrap();
    std::fs::write(&zone, text).unwrap();
    let lab_text = std::fs::read_to_string(&lab).unwrap();
    // The node-local sections: from the first [[listener]] up to [geo], and [resolver] onwards.
    let listeners =
        &lab_text[lab_text.find("[[listener]]").unwrap()..lab_text.find("[geo]").unwrap()];
    let resolver = &lab_text[lab_text.find("[resolver]").unwrap()..];
    let endpoints: Vec<String> = etcd
        .endpoints()
        .split(',')
        .map(|e| format!("{e:?}"))
        .collect();
    let nodes = (1..=3)
        .map(|i| {
            let d = dir.join(format!("node{i}"));
            std::fs::create_dir_all(&d).unwrap();
            // The certificate the lab's DoT listener names sits beside the lab config.
            // And the root hints its [resolver] names: node-local sections' files are the node's.
            for f in ["cert.pem", "key.pem", "lab.hints"] {
                std::fs::copy(dir.join("lab").join(f), d.join(f)).unwrap();
            }
            let p = d.join("node.toml");
            std::fs::write(
                &p,
                format!(
                    "[cluster]\nendpoints = [{}]\nprefix = \"{prefix}\"\nnode = \"node{i}\"\n\
                     lease_ttl = 2\ntimeout_ms = 1000\n\n\
                     [admin]\noverrides_state = \"overrides.json\"\n\n{listeners}\n{resolver}\n",
                    endpoints.join(", ")
                ),
            )
            .unwrap();
            p
        })
        .collect();
    (lab, nodes)
}

#[test]
fn pushes_reach_every_node_and_a_bad_revision_reaches_none() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(0, dir.path());
    let (lab, files) = world(dir.path(), &etcd, "/fleet-a/");
    let nodes: Vec<Node> = files.iter().map(|f| Node::start(f)).collect();
    // Before any revision a node serves its own file: listeners, no zones.
    for n in &nodes {
        assert_eq!(dig(n.dns(), OBJECT, "A", MOBILE_BJ), ["REFUSED"]);
    }
    let eps = etcd.endpoints();
    let common = ["--endpoints", eps.as_str(), "--prefix", "/fleet-a/"];
    let push = |path: &Path| {
        let mut args = vec!["push", "-c", path.to_str().unwrap()];
        args.extend(common);
        cluster_cli(&args)
    };
    let (ok, out) = push(&lab);
    assert!(ok, "push: {out}");
    assert!(out.contains("pushed as revision 1"), "{out}");
    let took = until(
        "every node serving revision 1",
        Duration::from_secs(20),
        || {
            nodes
                .iter()
                .all(|n| dig(n.dns(), OBJECT, "A", MOBILE_BJ) == pool(41))
        },
    );
    eprintln!("push -> last of 3 nodes serving: {took:?}");

    // A change pushed reaches every node.
    let zone = dir.path().join("lab/yourcompany.com.zone");
    let mut text = std::fs::read_to_string(&zone).unwrap();
    text.push_str("\nfleet-change 300 IN TXT \"revision two\"\n");
    std::fs::write(&zone, &text).unwrap();
    let serial_bumped = bump_serial(&zone);
    assert!(serial_bumped, "the lab zone has a serial to bump");
    let (ok, out) = push(&lab);
    assert!(ok && out.contains("revision 2"), "{out}");
    let took = until(
        "every node serving revision 2",
        Duration::from_secs(20),
        || {
            nodes.iter().all(|n| {
                dig(n.dns(), "fleet-change.yourcompany.com", "TXT", MOBILE_BJ)
                    == ["\"revision two\""]
            })
        },
    );
    eprintln!("push of a change -> last of 3 nodes serving: {took:?}");

    // A push that fails the check is refused by the CLI; etcd is not touched.
    let bad = dir.path().join("lab/bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&lab)
            .unwrap()
            .replace("yourcompany.com.zone", "missing.zone"),
    )
    .unwrap();
    let (ok, out) = push(&bad);
    assert!(!ok, "a config that does not check is refused: {out}");
    assert!(
        out.contains("missing.zone") && out.contains("refused"),
        "{out}"
    );
    let cur = etcd.etcdctl(&["get", "--print-value-only", "/fleet-a/config/current"]);
    assert_eq!(String::from_utf8_lossy(&cur.stdout).trim(), "2");

    // A revision forced into etcd past the check (its zone file is not in it): every node builds
    // it, fails, keeps serving revision 2, and says why in its member key.
    let conf = "[[zone]]\nname = \"yourcompany.com\"\nfile = \"gone.zone\"\n";
    let meta = serde_json::json!({
        "revision": 3, "config": "c.toml", "who": "forced", "at": 0,
        "files": [{"path": "c.toml", "size": conf.len(), "chunks": 1,
                   "sha256": gslbd::cluster::sha256_hex(conf.as_bytes())}],
    });
    for (k, v) in [
        (
            "/fleet-a/config/rev/000000000003/file/00000/000000",
            conf.to_string(),
        ),
        ("/fleet-a/config/rev/000000000003/meta", meta.to_string()),
        ("/fleet-a/config/current", "3".to_string()),
    ] {
        let o = etcd.etcdctl(&["put", k, &v]);
        assert!(o.status.success(), "{o:?}");
    }
    let status = || cluster_cli(&["status", "--endpoints", &eps, "--prefix", "/fleet-a/"]);
    until(
        "every node reporting the failed build",
        Duration::from_secs(20),
        || {
            let (_, out) = status();
            out.matches("build-failed").count() >= 3
        },
    );
    let (ok, out) = status();
    assert!(!ok, "status exits 1 when nodes diverge: {out}");
    assert!(out.contains("gone.zone"), "the reason is shown: {out}");
    assert!(out.contains("serves revision 2 (current 3)"), "{out}");
    for n in &nodes {
        assert_eq!(dig(n.dns(), OBJECT, "A", MOBILE_BJ), pool(41));
        assert_eq!(
            dig(n.dns(), "fleet-change.yourcompany.com", "TXT", MOBILE_BJ),
            ["\"revision two\""]
        );
    }
    // A good push after it: every node follows again, and status is clean.
    let (ok, out) = push(&lab);
    assert!(ok && out.contains("revision 4"), "{out}");
    let mut last = String::new();
    let clean = Instant::now() + Duration::from_secs(20);
    while Instant::now() < clean {
        let (ok, out) = status();
        last = out;
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(status().0, "status clean on revision 4:\n{last}");
}

/// Adds 1 to the SOA serial of a zone file written as the lab writes it (the number before the
/// "; serial" comment, or the third field of the SOA line).
fn bump_serial(zone: &Path) -> bool {
    let text = std::fs::read_to_string(zone).unwrap();
    let mut out = String::new();
    let mut done = false;
    for line in text.lines() {
        if !done && line.contains("; serial") {
            let trimmed = line.trim_start();
            let n: u64 = trimmed
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if n > 0 {
                out.push_str(&line.replacen(&n.to_string(), &(n + 1).to_string(), 1));
                out.push('\n');
                done = true;
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    std::fs::write(zone, out).unwrap();
    done
}

fn ctl(http: SocketAddr, args: &[&str]) -> (bool, String) {
    outcome(
        Command::new(BIN)
            .arg("ctl")
            .args(["--url", &format!("http://{http}"), "--token", TOKEN])
            .args(args)
            .env("USER", "fleet-test")
            .env_remove("GSLBD_ADMIN_TOKEN")
            .env_remove("GSLBD_URL"),
    )
}

#[test]
fn a_drain_through_one_node_reaches_the_others_and_etcd_loss_loses_no_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(10, dir.path());
    let (lab, files) = world(dir.path(), &etcd, "/fleet-b/");
    let eps = etcd.endpoints();
    let (ok, out) = cluster_cli(&[
        "push",
        "-c",
        lab.to_str().unwrap(),
        "--endpoints",
        &eps,
        "--prefix",
        "/fleet-b/",
    ]);
    assert!(ok, "{out}");
    let mut nodes: Vec<Node> = files.iter().map(|f| Node::start(f)).collect();
    until(
        "every node serving the lab",
        Duration::from_secs(20),
        || {
            nodes
                .iter()
                .all(|n| dig(n.dns(), OBJECT, "A", MOBILE_BJ) == pool(41))
        },
    );

    // A drain through node 1's API changes node 3's answers.
    let (ok, out) = ctl(
        nodes[0].http(),
        &[
            "drain",
            "region",
            "bj",
            "--rule",
            "object.yd.yourcompany.com",
            "--reason",
            "fleet",
        ],
    );
    assert!(ok, "{out}");
    let took = until("node 3 answering from sh", Duration::from_secs(10), || {
        dig(nodes[2].dns(), OBJECT, "A", MOBILE_BJ) == pool(51)
    });
    eprintln!("drain on node 1 -> node 3 answering without bj: {took:?}");
    let (ok, listed) = ctl(nodes[2].http(), &["overrides"]);
    assert!(
        ok && listed.contains("fleet"),
        "node 3 lists the override: {listed}"
    );
    // The audit entry is in etcd too.
    let audit = etcd.etcdctl(&["get", "--prefix", "--print-value-only", "/fleet-b/audit/"]);
    let audit = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(
        audit.contains("\"override\"") && audit.contains("fleet"),
        "{audit}"
    );

    // etcd loses its quorum: every node keeps answering, with the drain, and reports degraded.
    etcd.stop_member(1);
    etcd.stop_member(2);
    until("every node degraded", Duration::from_secs(30), || {
        nodes
            .iter()
            .all(|n| n.metric("gslbd_cluster_connected") == Some(0.0))
    });
    for n in &nodes {
        assert_eq!(dig(n.dns(), OBJECT, "A", MOBILE_BJ), pool(51));
    }
    // A node restarted while etcd is down serves its cached revision and the fleet's overrides
    // as it last saw them (its `overrides_state` file).
    drop(nodes.remove(1));
    let restarted = Node::start(&files[1]);
    assert_eq!(
        dig(restarted.dns(), "www.yourcompany.com", "A", MOBILE_BJ).len(),
        4,
        "the cached revision serves with etcd down:\n{}",
        restarted.log()
    );
    assert_eq!(
        dig(restarted.dns(), OBJECT, "A", MOBILE_BJ),
        pool(51),
        "and the fleet's drain, from its overrides_state file"
    );
    nodes.insert(1, restarted);
    // An undrain through node 2 while etcd is down applies there at once, and reaches the others
    // when etcd is back.
    let (ok, out) = ctl(
        nodes[1].http(),
        &[
            "undrain",
            "region",
            "bj",
            "--rule",
            "object.yd.yourcompany.com",
        ],
    );
    assert!(ok, "{out}");

    etcd.start_member(1);
    etcd.start_member(2);
    etcd.wait_healthy(&[0, 1, 2]);
    until(
        "every node connected again",
        Duration::from_secs(30),
        || {
            nodes
                .iter()
                .all(|n| n.metric("gslbd_cluster_connected") == Some(1.0))
        },
    );
    until(
        "the undrain reached every node",
        Duration::from_secs(15),
        || {
            nodes
                .iter()
                .all(|n| dig(n.dns(), OBJECT, "A", MOBILE_BJ) == pool(41))
        },
    );
}

/// An HTTP health endpoint on a loopback address that counts probes by the node named in their
/// User-Agent (`gslbd-health (NODE)`), answering 200, or 503 once failed.
struct Backend {
    addr: SocketAddr,
    seen: Arc<Mutex<std::collections::BTreeMap<String, u32>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Backend {
    fn start(ip: &str) -> Backend {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, f, st) = (seen.clone(), failing.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded: ends with the test (stop) or after two minutes whatever happens.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 2048];
                let n = conn.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                if let Some(node) = req
                    .lines()
                    .find_map(|l| l.strip_prefix("User-Agent: gslbd-health ("))
                    .and_then(|r| r.strip_suffix(')'))
                {
                    *s.lock().unwrap().entry(node.to_string()).or_default() += 1;
                }
                let status = if f.load(Ordering::Relaxed) {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = conn.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Backend {
            addr,
            seen,
            failing,
            stop,
        }
    }

    /// The nodes that probed it since the last call.
    fn probers(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap())
            .into_keys()
            .collect()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn each_backend_is_probed_by_two_nodes_not_three() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(20, dir.path());
    let backends: Vec<Backend> = (41..47)
        .map(|i| Backend::start(&format!("127.0.17.{i}")))
        .collect();
    let member = |i: usize| {
        format!(
            "{{ address = \"203.0.113.{}\", check = \"{}\" }}",
            i + 1,
            backends[i].addr
        )
    };
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
interval_ms = 200
timeout_ms = 200
up = 1
down = 1

[[gslb.location]]
name = "app.example.com."
ttl = 10
answer = 3
default = "a"
health = "web"
pools.a = [{}, {}, {}]
pools.b = [{}, {}, {}]
"#,
        member(0),
        member(1),
        member(2),
        member(3),
        member(4),
        member(5)
    );
    let fleet_dir = dir.path().join("fleet");
    std::fs::create_dir_all(&fleet_dir).unwrap();
    let fleet = write_example(&fleet_dir, "", &policy);
    let eps: Vec<String> = etcd
        .endpoints()
        .split(',')
        .map(|e| format!("{e:?}"))
        .collect();
    let files: Vec<PathBuf> = (1..=3)
        .map(|i| {
            let d = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&d).unwrap();
            let p = d.join("node.toml");
            std::fs::write(
                &p,
                format!(
                    "[cluster]\nendpoints = [{}]\nprefix = \"/fleet-c/\"\nnode = \"node{i}\"\n\
                     lease_ttl = 2\ntimeout_ms = 1000\nprobe_replicas = 2\n\n\
                     [[listener]]\nname = \"all\"\naddresses = [\"127.0.0.1:0\"]\nzones = [\"*\"]\n\n\
                     [http]\nlisten = [\"127.0.0.1:0\"]\n",
                    eps.join(", ")
                ),
            )
            .unwrap();
            p
        })
        .collect();
    let (ok, out) = cluster_cli(&[
        "push",
        "-c",
        fleet.to_str().unwrap(),
        "--endpoints",
        &etcd.endpoints(),
        "--prefix",
        "/fleet-c/",
    ]);
    assert!(ok, "{out}");
    let mut nodes: Vec<Node> = files.iter().map(|f| Node::start(f)).collect();
    let a = |n: &Node| dig(n.dns(), "app.example.com", "A", "127.0.0.1/32");
    let pool_a = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];
    until(
        "every node answering pool a",
        Duration::from_secs(20),
        || nodes.iter().all(|n| a(n) == pool_a),
    );
    // Settled (every node joined and sees the others): from now on each backend is probed by
    // exactly the two nodes rendezvous hashing picks, not by all three.
    // Waits until etcd lists `want` members (the nodes running), then for the probes' new
    // shares, and returns who probes each backend.
    let settle = |nodes: &[Node], want: usize| {
        assert_eq!(nodes.len(), want, "nodes running");
        until("membership settled", Duration::from_secs(20), || {
            let (_, out) = cluster_cli(&[
                "status",
                "--endpoints",
                &etcd.endpoints(),
                "--prefix",
                "/fleet-c/",
                "--json",
            ]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            v["members"].as_array().map_or(0, Vec::len) == want
        });
        std::thread::sleep(Duration::from_secs(1));
        backends.iter().for_each(|b| drop(b.probers()));
        std::thread::sleep(Duration::from_secs(2));
        backends.iter().map(Backend::probers).collect::<Vec<_>>()
    };
    let probers = settle(&nodes, 3);
    for (b, p) in backends.iter().zip(&probers) {
        assert_eq!(p.len(), 2, "{} probed by {p:?}", b.addr);
    }

    // A backend fails: every node drops it, including the node that does not probe it (it goes
    // by the other two's observations).
    backends[0]
        .failing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let not_prober = ["node1", "node2", "node3"]
        .iter()
        .position(|n| !probers[0].iter().any(|p| p == n))
        .unwrap();
    until(
        "every node dropping 203.0.113.1",
        Duration::from_secs(10),
        || {
            nodes.iter().all(|n| {
                let v = a(n);
                !v.contains(&"203.0.113.1".to_string()) && !v.is_empty() && v[0] != "SERVFAIL"
            })
        },
    );
    assert!(
        !backends[0]
            .probers()
            .contains(&format!("node{}", not_prober + 1)),
        "the node that does not probe it dropped it without probing"
    );
    backends[0]
        .failing
        .store(false, std::sync::atomic::Ordering::Relaxed);
    until(
        "every node answering pool a again",
        Duration::from_secs(10),
        || nodes.iter().all(|n| a(n) == pool_a),
    );

    // A node stops: within the lease TTL its endpoints move to the two left, which probe all.
    drop(nodes.pop());
    let probers = settle(&nodes, 2);
    for (b, p) in backends.iter().zip(&probers) {
        assert_eq!(p, &["node1", "node2"], "{} probed by {p:?}", b.addr);
    }
}

/// openssl, bounded; panics with its error output.
fn openssl(dir: &Path, args: &[&str]) {
    let out = tool("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a certificate for etcd at `ip`, and a client certificate, in `dir`.
fn etcd_certs(dir: &Path, ip: &str) {
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &key[..],
            &[
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=gslbd test CA",
            ],
        ]
        .concat(),
    );
    for (name, ext) in [
        (
            "server",
            format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"),
        ),
        ("client", "extendedKeyUsage=clientAuth\n".to_string()),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                &["req"],
                &key[..],
                &[
                    "-keyout",
                    &format!("{name}-key.pem"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }
}

/// etcd asking for client certificates over TLS: a node and the CLI with `[cluster] tls` push,
/// follow and list; without the client certificate etcd is not reachable.
#[test]
fn the_fleet_talks_to_etcd_over_tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ip = "127.0.17.31";
    etcd_certs(dir.path(), ip);
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let mut etcd = tool("etcd")
        .args(["--name", "tls0"])
        .arg("--data-dir")
        .arg(dir.path().join("etcd-tls"))
        .args(["--listen-client-urls", &format!("https://{ip}:2379")])
        .args(["--advertise-client-urls", &format!("https://{ip}:2379")])
        .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://{ip}:2380"),
        ])
        .args(["--initial-cluster", &format!("tls0=http://{ip}:2380")])
        .args(["--cert-file", "server.pem", "--key-file", "server-key.pem"])
        .args(["--client-cert-auth", "--trusted-ca-file", "ca.pem"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("etcd runs");
    struct Reap<'a>(&'a mut Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _reap = Reap(&mut etcd);
    let cluster = format!(
        "[cluster]\nendpoints = [\"https://{ip}:2379\"]\nprefix = \"/fleet-d/\"\nnode = \"tls1\"\n\
         lease_ttl = 2\ntimeout_ms = 1000\n\
         tls = {{ ca = \"../ca.pem\", cert = \"../client.pem\", key = \"../client-key.pem\" }}\n"
    );
    let fleet_dir = dir.path().join("fleet");
    std::fs::create_dir_all(&fleet_dir).unwrap();
    let fleet = write_example(&fleet_dir, "tls TXT \"over tls\"\n", &cluster);
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let node_file = node_dir.join("node.toml");
    std::fs::write(
        &node_file,
        format!(
            "{cluster}\n[[listener]]\nname = \"all\"\naddresses = [\"127.0.0.1:0\"]\nzones = [\"*\"]\n\n\
             [http]\nlisten = [\"127.0.0.1:0\"]\n"
        ),
    )
    .unwrap();
    // Pushed once etcd is up (it takes a moment to listen).
    let mut pushed = (false, String::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        pushed = cluster_cli(&["push", "-c", fleet.to_str().unwrap()]);
        if pushed.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(pushed.0, "push over TLS: {}", pushed.1);
    let node = Node::start(&node_file);
    until(
        "the node serving the pushed zone",
        Duration::from_secs(20),
        || dig(node.dns(), "tls.example.com", "TXT", "127.0.0.1/32") == ["\"over tls\""],
    );
    let (ok, out) = cluster_cli(&["status", "-c", node_file.to_str().unwrap()]);
    assert!(
        ok && out.contains("tls1") && out.contains("revision 1"),
        "{out}"
    );
    // Without the client certificate (the CA alone), etcd refuses the connection.
    let no_cert = node_dir.join("no-cert.toml");
    std::fs::write(
        &no_cert,
        cluster.replace(
            "tls = { ca = \"../ca.pem\", cert = \"../client.pem\", key = \"../client-key.pem\" }",
            "tls = { ca = \"../ca.pem\" }",
        ),
    )
    .unwrap();
    let (ok, out) = cluster_cli(&["status", "-c", no_cert.to_str().unwrap()]);
    assert!(!ok, "no client certificate, no etcd: {out}");
}
