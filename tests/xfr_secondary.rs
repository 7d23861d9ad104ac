//! gslbd as a secondary of a real primary (Knot DNS `knotd`): AXFR, then IXFR after a change
//! announced by NOTIFY; a transfer that fails the zone checks is refused and the old data keeps
//! serving; expiry when the primary stays down; TSIG mismatches refused both ways; the data served
//! from a transferred zone equals the same zone loaded from its file; a restart serves the file.
//!
//! Knot listens on 127.0.15.1 (this test's loopback range) on a free port; gslbd on 127.0.0.1:0.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gslbd::config::Source;

const SECRET: &str = "Z3NsYmQtdHNpZy10ZXN0LXZlY3Rvci1zZWNyZXQtMzI=";
const OTHER_SECRET: &str = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=";

fn zone(serial: u32, www: &str, extra: &str) -> String {
    format!(
        "$ORIGIN example.net.\n$TTL 300\n\
         @ SOA ns1 hostmaster {serial} 3600 600 86400 60\n\
         @ NS ns1\n@ NS ns.elsewhere.test.\nns1 A 127.0.15.1\n\
         www A {www}\nwww AAAA ::1\nmail MX 10 www\n\
         alias CNAME www\n*.wild TXT \"wild card\"\n\
         sub NS ns.sub\nns.sub A 127.0.15.9\n\
         txt TXT \"a b\" \"c;d\"\n{extra}"
    )
}

/// A knotd primary for example.net, killed on drop.
struct Knot {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.15.1:0").expect("bind 127.0.15.1");
        let port = l.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.15.1", port)).is_ok() {
            return port;
        }
    }
}

impl Knot {
    /// `key`: the secret Knot requires for transfers (None: open to 127.0.0.0/8);
    /// `notify`: where it sends NOTIFY.
    async fn start(zone_text: &str, key: Option<&str>, notify: Option<SocketAddr>) -> Knot {
        Knot::start_on(free_port(), zone_text, key, notify).await
    }

    async fn start_on(
        port: u16,
        zone_text: &str,
        key: Option<&str>,
        notify: Option<SocketAddr>,
    ) -> Knot {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("zone"), zone_text).unwrap();
        let mut conf = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.15.1@{port}\n    udp-workers: 1\n    \
             tcp-workers: 1\n    background-workers: 1\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: \"{d}\"\n"
        );
        if let Some(secret) = key {
            conf.push_str(&format!(
                "key:\n  - id: xfr-key\n    algorithm: hmac-sha256\n    secret: {secret}\n"
            ));
        }
        conf.push_str("acl:\n  - id: xfr\n    action: transfer\n");
        match key {
            Some(_) => conf.push_str("    key: xfr-key\n"),
            None => conf.push_str("    address: 127.0.0.0/8\n"),
        }
        if let Some(n) = notify {
            conf.push_str(&format!(
                "remote:\n  - id: gslbd\n    address: {}@{}\n",
                n.ip(),
                n.port()
            ));
        }
        conf.push_str(&format!(
            "template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-load: difference\n    \
             journal-content: changes\n    semantic-checks: off\n    zonefile-sync: -1\n\
             zone:\n  - domain: example.net\n    file: \"{d}/zone\"\n    acl: xfr\n"
        ));
        if notify.is_some() {
            conf.push_str("    notify: gslbd\n");
        }
        std::fs::write(dir.path().join("knot.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.path().join("knot.log")).unwrap();
        let child = common::tool("knotd")
            .arg("-c")
            .arg(dir.path().join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("knotd runs");
        let knot = Knot {
            child,
            addr: SocketAddr::from(([127, 0, 15, 1], port)),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if kdig(knot.addr, "example.net", "SOA", &[]).contains("status: NOERROR") {
                return knot;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("knotd did not start:\n{}", knot.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knot.log")).unwrap_or_default()
    }

    /// Writes a new zone file and makes Knot load it (SIGHUP): with `zonefile-load: difference`
    /// the change goes to its journal (IXFR) and NOTIFY goes out.
    fn change(&self, zone_text: &str) {
        std::fs::write(self.dir.path().join("zone"), zone_text).unwrap();
        let ok = common::tool("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

fn kdig(addr: SocketAddr, name: &str, rtype: &str, extra: &[&str]) -> String {
    let out = common::tool("kdig")
        .arg(format!("@{}", addr.ip()))
        .args([
            "-p",
            &addr.port().to_string(),
            name,
            rtype,
            "+tcp",
            "+retry=0",
            "+time=2",
        ])
        .args(extra)
        .output()
        .expect("kdig runs");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn config(dir: &Path, zones: &str) -> PathBuf {
    let path = dir.join("gslbd.toml");
    std::fs::write(
        &path,
        format!(
            "[[key]]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n\n\
             {zones}\n[[listener]]\nname = \"dns\"\naddresses = [\"127.0.0.1:0\"]\nzones = [\"*\"]\n"
        ),
    )
    .unwrap();
    path
}

fn secondary(primary: SocketAddr, key: bool, timers: &str) -> String {
    let key = if key { ", key = \"xfr-key\"" } else { "" };
    format!(
        "[[zone]]\nname = \"example.net\"\nkind = \"secondary\"\nfile = \"example.net.zone\"\n\
         primaries = [{{ address = \"{primary}\"{key} }}]\n{timers}\n"
    )
}

async fn start(path: &Path) -> common::TestServer {
    common::start(Source::file(path)).await
}

fn dns(s: &common::TestServer) -> SocketAddr {
    s.addr("dns", "tcp")
}

/// Polls (up to 15 s) until `check` holds for kdig's answer to NAME TYPE from the server.
async fn until(
    addr: SocketAddr,
    name: &str,
    rtype: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        last = kdig(addr, name, rtype, &[]);
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: never happened; last answer:\n{last}");
}

fn status(s: &common::TestServer) -> gslbd::secondary::ZoneStatus {
    gslbd::secondary::status(&s.handle.snapshot_full()).remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axfr_then_restart_without_primary() {
    let dir = tempfile::tempdir().unwrap();
    // The primary's port must be known before gslbd starts, and gslbd's before Knot does
    // (NOTIFY target): gslbd starts first and retries every second until Knot answers.
    let port = free_port();
    let primary = SocketAddr::from(([127, 0, 15, 1], port));
    let path = config(
        dir.path(),
        &secondary(primary, false, "refresh = 3600\nretry = 1"),
    );
    let server = start(&path).await;
    // Before the first transfer the zone is SERVFAIL (no file yet), not a build error.
    assert!(kdig(dns(&server), "www.example.net", "A", &[]).contains("status: SERVFAIL"));
    let knot = Knot::start_on(port, &zone(1, "127.0.15.2", ""), None, Some(dns(&server))).await;
    until(dns(&server), "www.example.net", "A", "AXFR served", |a| {
        a.contains("127.0.15.2")
    })
    .await;
    let st = status(&server);
    assert_eq!(
        (st.serial, st.transfers_axfr, st.transfers_ixfr),
        (Some(1), 1, 0),
        "{st:?}"
    );
    // What /metrics adds for secondary zones.
    let mut metrics = String::new();
    gslbd::secondary::render_metrics(&server.handle.snapshot_full(), &mut metrics);
    assert!(
        metrics.contains("gslbd_xfr_in_total{zone=\"example.net.\",kind=\"axfr\"} 1"),
        "{metrics}"
    );

    let written = std::fs::read_to_string(dir.path().join("example.net.zone")).unwrap();

    // Restart without the primary: the file serves.
    drop(server);
    drop(knot);
    let server = start(&path).await;
    let a = kdig(dns(&server), "www.example.net", "A", &[]);
    assert!(
        a.contains("127.0.15.2") && a.contains("status: NOERROR"),
        "{a}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("example.net.zone")).unwrap(),
        written
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_failing_the_zone_checks_keeps_the_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let knot = Knot::start(&zone(1, "127.0.15.2", ""), None, None).await;
    let path = config(
        dir.path(),
        &secondary(knot.addr, false, "refresh = 1\nretry = 1"),
    );
    let server = start(&path).await;
    until(dns(&server), "www.example.net", "A", "AXFR", |a| {
        a.contains("127.0.15.2")
    })
    .await;
    // Serial 2 has an in-zone NS target without an address: Knot (checks off) serves it, our
    // loader refuses it.
    knot.change(&zone(2, "127.0.15.3", "@ NS ns2\n"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(&server).failures == 0 {
        assert!(
            Instant::now() < deadline,
            "no refused transfer: {:?}",
            status(&server)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = status(&server);
    assert_eq!(st.serial, Some(1), "{st:?}");
    let err = st.last_error.unwrap_or_default();
    assert!(
        err.contains("NS target ns2.example.net. of example.net. is inside the zone"),
        "{err}"
    );
    let a = kdig(dns(&server), "www.example.net", "A", &[]);
    assert!(
        a.contains("127.0.15.2") && a.contains("status: NOERROR"),
        "{a}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zone_expires_when_the_primary_stays_down() {
    let dir = tempfile::tempdir().unwrap();
    let knot = Knot::start(&zone(1, "127.0.15.2", ""), None, None).await;
    let path = config(
        dir.path(),
        &secondary(knot.addr, false, "refresh = 1\nretry = 1\nexpire = 3"),
    );
    let server = start(&path).await;
    until(dns(&server), "www.example.net", "A", "AXFR", |a| {
        a.contains("127.0.15.2")
    })
    .await;
    drop(knot);
    until(dns(&server), "www.example.net", "A", "expiry", |a| {
        a.contains("status: SERVFAIL")
    })
    .await;
    assert!(status(&server).expired);
    // A reload keeps it expired (the file is still there, but its data is past EXPIRE).
    server.handle.reload().expect("reload");
    assert!(kdig(dns(&server), "www.example.net", "A", &[]).contains("status: SERVFAIL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsig_mismatch_is_refused_both_ways() {
    // Knot requires xfr-key with another secret: its BADSIG is not accepted, nothing is served.
    let dir = tempfile::tempdir().unwrap();
    let knot = Knot::start(&zone(1, "127.0.15.2", ""), Some(OTHER_SECRET), None).await;
    let path = config(
        dir.path(),
        &secondary(knot.addr, true, "refresh = 1\nretry = 1"),
    );
    let server = start(&path).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(&server).failures == 0 {
        assert!(
            Instant::now() < deadline,
            "no failure: {:?}",
            status(&server)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = status(&server).last_error.unwrap_or_default();
    assert!(err.contains("TSIG"), "{err}");
    assert!(kdig(dns(&server), "www.example.net", "A", &[]).contains("status: SERVFAIL"));
    drop(server);
    drop(knot);

    // The same secret: transfers (signed AXFR verified message by message).
    let knot = Knot::start(&zone(1, "127.0.15.2", ""), Some(SECRET), None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &secondary(knot.addr, true, "refresh = 3600\nretry = 1"),
    );
    let server = start(&path).await;
    until(dns(&server), "www.example.net", "A", "signed AXFR", |a| {
        a.contains("127.0.15.2")
    })
    .await;

    // The other way: gslbd verifies kdig's TSIG (known key) and signs its answer, which kdig
    // verifies; a wrong secret is BADSIG, an unknown key BADKEY.
    let good = kdig(
        dns(&server),
        "www.example.net",
        "A",
        &["-y", &format!("hmac-sha256:xfr-key:{SECRET}")],
    );
    assert!(
        good.contains("status: NOERROR") && good.contains("127.0.15.2"),
        "{good}"
    );
    assert!(good.contains("TSIG") && !good.contains("WARNING"), "{good}");
    let bad = kdig(
        dns(&server),
        "www.example.net",
        "A",
        &["-y", &format!("hmac-sha256:xfr-key:{OTHER_SECRET}")],
    );
    assert!(bad.contains("BADSIG"), "{bad}");
    let unknown = kdig(
        dns(&server),
        "www.example.net",
        "A",
        &["-y", &format!("hmac-sha256:nokey:{SECRET}")],
    );
    assert!(unknown.contains("BADKEY"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transferred_zone_answers_like_the_same_zone_from_its_file() {
    let text = zone(7, "127.0.15.2", "");
    let knot = Knot::start(&text, None, None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &secondary(knot.addr, false, "refresh = 3600\nretry = 1"),
    );
    let transferred = start(&path).await;
    until(dns(&transferred), "www.example.net", "A", "AXFR", |a| {
        a.contains("127.0.15.2")
    })
    .await;
    let fdir = tempfile::tempdir().unwrap();
    std::fs::write(fdir.path().join("example.net.zone"), &text).unwrap();
    let fpath = config(
        fdir.path(),
        "[[zone]]\nname = \"example.net\"\nfile = \"example.net.zone\"\n",
    );
    let from_file = start(&fpath).await;
    let questions = [
        ("example.net", 6),
        ("example.net", 2),
        ("example.net", 255),
        ("www.example.net", 1),
        ("WWW.Example.NET", 28),
        ("mail.example.net", 15),
        ("alias.example.net", 1),
        ("x.wild.example.net", 16),
        ("wild.example.net", 16),
        ("nx.example.net", 1),
        ("www.example.net", 16),
        ("a.sub.example.net", 1),
        ("sub.example.net", 2),
        ("txt.example.net", 16),
        ("ns1.example.net", 1),
        ("other.test", 1),
    ];
    for (name, qtype) in questions {
        for via in common::BOTH {
            let q = common::Q::new(name, qtype);
            // The records may come in another order within an RRset (Knot's transfer order):
            // compared as sorted record lines per section, and the header.
            let a = common::ask(&transferred, "dns", via, &q).await;
            let b = common::ask(&from_file, "dns", via, &q).await;
            let view = |m: &hickory_proto::op::Message| {
                (
                    m.metadata.response_code,
                    common::lines(&m.answers),
                    common::lines(&m.authorities),
                    common::lines(&m.additionals),
                )
            };
            assert_eq!(view(&a), view(&b), "{name} type {qtype} over {via:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_from_the_primary_brings_the_change_by_ixfr() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let primary = SocketAddr::from(([127, 0, 15, 1], port));
    // Knot sends NOTIFY from the address the system picks (127.0.0.1), not its listening
    // address: allow the loopback network. Refresh is an hour away: only NOTIFY can bring the
    // change within the test's wait.
    let path = config(
        dir.path(),
        &secondary(
            primary,
            false,
            "refresh = 3600\nretry = 1\nallow_notify = [\"127.0.0.0/8\"]",
        ),
    );
    let server = start(&path).await;
    let knot = Knot::start_on(port, &zone(1, "127.0.15.2", ""), None, Some(dns(&server))).await;
    until(dns(&server), "www.example.net", "A", "AXFR served", |a| {
        a.contains("127.0.15.2")
    })
    .await;
    knot.change(&zone(2, "127.0.15.3", ""));
    until(dns(&server), "www.example.net", "A", "the change", |a| {
        a.contains("127.0.15.3")
    })
    .await;
    let st = status(&server);
    assert_eq!(
        (st.serial, st.transfers_axfr, st.transfers_ixfr),
        (Some(2), 1, 1),
        "{st:?}\n{}",
        knot.log()
    );
}
