//! gslbd as a secondary of a real primary (Knot DNS `knotd`): AXFR, then IXFR after a change
//! announced by NOTIFY; a transfer that fails the zone checks is refused and the old data keeps
//! serving; expiry when the primary stays down; TSIG mismatches refused both ways; the data served
//! from a transferred zone equals the same zone loaded from its file; a restart serves the file.
//!
//! The same with BIND (`named`) as the primary: a signed AXFR, then NOTIFY and a signed IXFR.
//!
//! Knot listens on 127.0.15.1 (this test's loopback range) on a free port; gslbd on 127.0.0.1:0;
//! BIND on 127.0.0.1 (it listens only on addresses its interface scan finds) on a free port.

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
        Knot::spawn(port, dir, &conf, "example.net").await
    }

    /// Runs knotd with `conf` (in `dir`) on 127.0.15.1@`port`; returns once `zone`'s SOA
    /// answers.
    async fn spawn(port: u16, dir: tempfile::TempDir, conf: &str, zone: &str) -> Knot {
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
            if kdig(knot.addr, zone, "SOA", &[]).contains("status: NOERROR") {
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
        self.hup();
    }

    /// A new knot.conf, read at SIGHUP (zones added or removed).
    fn reconfigure(&self, conf: &str) {
        std::fs::write(self.dir.path().join("knot.conf"), conf).unwrap();
        self.hup();
    }

    fn hup(&self) {
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
             {zones}\n[[listener]]\nname = \"dns\"\naddresses = [\"127.0.0.1:0\"]\nzones = [\"*\"]\n\n\
             [http]\nlisten = [\"127.0.0.1:0\"]\nadmin_token = \"zones-token\"\n"
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
    // The runtime state, from the running server (`gslbd ctl zones`, /admin/zones).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gslbd"))
        .args([
            "ctl",
            "--url",
            &format!("http://{}", server.addr("http", "http")),
        ])
        .args(["--token", "zones-token", "zones"])
        .env_remove("GSLBD_ADMIN_TOKEN")
        .env_remove("GSLBD_URL")
        .output()
        .expect("gslbd ctl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("example.net. secondary serial 1"), "{text}");
    assert!(text.contains("held serial 1, last transfer 20"), "{text}");
    assert!(text.contains("(axfr), next refresh 20"), "{text}");
    // (The refreshes tried before Knot started count as failures.)
    assert!(text.contains("transfers: 1 AXFR, 0 IXFR, "), "{text}");
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
    // alias.test (a file zone) leads into the secondary zone by a CNAME.
    std::fs::write(
        dir.path().join("alias.test.zone"),
        "$ORIGIN alias.test.\n$TTL 300\n@ SOA ns h 1 3600 600 86400 60\n@ NS ns\n\
         ns A 127.0.15.1\nwww CNAME www.example.net.\n",
    )
    .unwrap();
    let path = config(
        dir.path(),
        &(secondary(knot.addr, false, "refresh = 1\nretry = 1\nexpire = 3")
            + "[[zone]]\nname = \"alias.test\"\nfile = \"alias.test.zone\"\n"),
    );
    let server = start(&path).await;
    until(dns(&server), "www.example.net", "A", "AXFR", |a| {
        a.contains("127.0.15.2")
    })
    .await;
    let chain = kdig(dns(&server), "www.alias.test", "A", &[]);
    assert!(
        chain.contains("status: NOERROR") && chain.contains("127.0.15.2"),
        "{chain}"
    );
    drop(knot);
    until(dns(&server), "www.example.net", "A", "expiry", |a| {
        a.contains("status: SERVFAIL")
    })
    .await;
    assert!(status(&server).expired);
    // The chain ends in data nobody vouches for any more: SERVFAIL, not NXDOMAIN.
    let chain = kdig(dns(&server), "www.alias.test", "A", &[]);
    assert!(chain.contains("status: SERVFAIL"), "{chain}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gslbd_follows_a_bind_primary_by_signed_axfr_then_ixfr_after_notify() {
    let dir = tempfile::tempdir().unwrap();
    // gslbd first (BIND's also-notify names it), retrying every second until BIND answers; BIND's
    // port is chosen before, for gslbd's primaries. NOTIFY comes from 127.0.0.1, the primary's
    // address: the default allow_notify takes it.
    let port = common::free_port_on([127, 0, 0, 1].into());
    let primary = SocketAddr::from(([127, 0, 0, 1], port));
    let path = config(
        dir.path(),
        &secondary(primary, true, "refresh = 3600\nretry = 1"),
    );
    let server = start(&path).await;
    let text = zone(1, "127.0.15.2", "");
    let named = common::Named::start_on(
        port,
        &format!(
            "key \"xfr-key\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
             zone \"example.net\" {{ type primary; file \"{{d}}/example.net.zone\";\n  \
             ixfr-from-differences yes;\n  allow-transfer {{ key xfr-key; }};\n  \
             also-notify {{ 127.0.0.1 port {}; }};\n  notify-delay 0;\n}};\n",
            dns(&server).port()
        ),
        &[("example.net.zone", &text)],
    )
    .await;
    until(
        dns(&server),
        "www.example.net",
        "A",
        "signed AXFR from named",
        |a| a.contains("127.0.15.2"),
    )
    .await;
    let st = status(&server);
    assert_eq!(
        (st.serial, st.transfers_axfr, st.transfers_ixfr),
        (Some(1), 1, 0),
        "{st:?}"
    );
    // A change, SIGHUP: named journals the difference and sends NOTIFY; gslbd asks for IXFR.
    named.write(
        "example.net.zone",
        &zone(2, "127.0.15.3", "new A 127.0.15.4\n"),
    );
    named.reload();
    until(dns(&server), "new.example.net", "A", "the change", |a| {
        a.contains("127.0.15.4")
    })
    .await;
    let st = status(&server);
    assert_eq!(
        (st.serial, st.transfers_axfr, st.transfers_ixfr),
        (Some(2), 1, 1),
        "{st:?}\n{}",
        named.log()
    );
    let log = named.log();
    assert!(
        log.contains("IXFR started: TSIG xfr-key (serial 1 -> 2)"),
        "named answered a signed incremental IXFR:\n{log}"
    );
    assert!(kdig(dns(&server), "www.example.net", "A", &[]).contains("127.0.15.3"));
}

/// The start of a Knot config on 127.0.15.1@`port` with its files in `dir`: one worker each,
/// transfers to loopback, a remote `gslbd` and a default template (its `acl` and `notify`) that
/// the caller may go on with before its `zone:` list.
fn knot_head(dir: &Path, port: u16, gslbd: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.15.1@{port}\n    udp-workers: 1\n    \
         tcp-workers: 1\n    background-workers: 1\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n    storage: \"{d}\"\n\
         acl:\n  - id: xfr\n    action: transfer\n    address: 127.0.0.0/8\n\
         remote:\n  - id: gslbd\n    address: {}@{}\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    acl: xfr\n    notify: gslbd\n",
        gslbd.ip(),
        gslbd.port()
    )
}

/// Knot's config for a catalog it generates (RFC 9432, `catalog-role: generate`) of `members`
/// (zones with a `www` A record of 127.0.15.5), everything transferable to loopback and NOTIFY
/// to gslbd.
fn knot_catalog_conf(dir: &Path, port: u16, gslbd: SocketAddr, members: &[&str]) -> String {
    let mut conf = knot_head(dir, port, gslbd);
    conf.push_str("zone:\n  - domain: catalog.invalid\n    catalog-role: generate\n");
    for m in members {
        let file = dir.join(format!("{m}.zone"));
        if !file.exists() {
            std::fs::write(
                &file,
                format!(
                    "$ORIGIN {m}.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n\
                     @ NS ns1\nns1 A 127.0.15.1\nwww A 127.0.15.5\n"
                ),
            )
            .unwrap();
        }
        conf.push_str(&format!(
            "  - domain: {m}\n    file: \"{}\"\n    catalog-role: member\n    \
             catalog-zone: catalog.invalid\n",
            file.display()
        ));
    }
    conf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_from_knot_adds_and_removes_member_zones() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let primary = SocketAddr::from(([127, 0, 15, 1], port));
    // Knot sends NOTIFY from 127.0.0.1, not its listening address: allow the loopback network.
    // Refresh is an hour away: only NOTIFY brings the catalog's changes within the test.
    let path = config(
        dir.path(),
        &format!(
            "[[zone]]\nname = \"catalog.invalid\"\nkind = \"catalog\"\nfile = \"catalog.zone\"\n\
             members_dir = \"members\"\nprimaries = [{{ address = \"{primary}\" }}]\n\
             refresh = 3600\nretry = 1\nallow_notify = [\"127.0.0.0/8\"]\n"
        ),
    );
    let server = start(&path).await;
    let kdir = tempfile::tempdir().unwrap();
    let conf = |members: &[&str]| knot_catalog_conf(kdir.path(), port, dns(&server), members);
    let knot = Knot::spawn(
        port,
        tempfile::tempdir().unwrap(),
        &conf(&["example.org"]),
        "example.org",
    )
    .await;
    let served = |zone: &'static str| {
        let (server, knot) = (&server, &knot);
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let a = kdig(dns(server), &format!("www.{zone}"), "A", &[]);
                if a.contains("status: NOERROR") && a.contains("127.0.15.5") {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{zone} not served: {a}\n{:#?}\n{}",
                    gslbd::secondary::status(&server.handle.snapshot_full()),
                    knot.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    served("example.org").await;
    let member_file = dir.path().join("members/example.org.zone");
    assert!(member_file.exists());
    // A member added on the producer: NOTIFY, the catalog's IXFR, the new member transferred.
    knot.reconfigure(&conf(&["example.org", "example.com"]));
    served("example.com").await;
    // Removed: REFUSED (no longer a zone here), its file gone, the other member still served.
    knot.reconfigure(&conf(&["example.com"]));
    until(
        dns(&server),
        "www.example.org",
        "A",
        "example.org removed",
        |a| a.contains("status: REFUSED"),
    )
    .await;
    assert!(!member_file.exists());
    served("example.com").await;
    let zones: Vec<String> = gslbd::secondary::status(&server.handle.snapshot_full())
        .into_iter()
        .map(|s| s.zone)
        .collect();
    assert_eq!(
        zones,
        ["catalog.invalid.", "example.com."],
        "{}",
        knot.log()
    );
    // A restart serves the members of the catalog file without the primary.
    drop(knot);
    drop(server);
    let server = start(&path).await;
    let a = kdig(dns(&server), "www.example.com", "A", &[]);
    assert!(
        a.contains("127.0.15.5") && a.contains("status: NOERROR"),
        "{a}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_udp_reply_keeps_room_for_its_tsig() {
    use base64::Engine as _;
    // Four 100-byte TXT records: 482 bytes unsigned, within the 512 of a query without EDNS;
    // with the reply's TSIG (about 80 bytes) they no longer fit (RFC 8945 5.3).
    let dir = tempfile::tempdir().unwrap();
    let txt: String = (0..4)
        .map(|i| format!("big TXT \"{}\"\n", i.to_string().repeat(99) + "x"))
        .collect();
    std::fs::write(
        dir.path().join("big.test.zone"),
        format!("$ORIGIN big.test.\n$TTL 300\n@ SOA ns h 1 3600 600 86400 60\n@ NS ns\nns A 127.0.15.1\n{txt}"),
    )
    .unwrap();
    let path = config(
        dir.path(),
        "[[zone]]\nname = \"big.test\"\nfile = \"big.test.zone\"\n",
    );
    let server = start(&path).await;
    let addr = server.addr("dns", "udp");
    let q = common::Q::new("big.big.test", 16).no_edns().bytes();
    let plain = common::udp_raw(addr, &q).await.expect("an answer");
    assert!(plain.len() > 450 && plain.len() <= 512, "{}", plain.len());
    assert_eq!(plain[2] & 0x02, 0, "unsigned, it fits whole");

    let secret = base64::engine::general_purpose::STANDARD
        .decode(SECRET)
        .unwrap();
    let key = std::sync::Arc::new(
        gslbd::tsig::Key::new("xfr-key", gslbd::tsig::Algorithm::HmacSha256, secret).unwrap(),
    );
    let mut signed = q.clone();
    let mut verifier = gslbd::tsig::sign_request(&mut signed, &key, gslbd::tsig::now());
    let reply = common::udp_raw(addr, &signed).await.expect("an answer");
    assert!(
        reply.len() <= 512,
        "the signed reply is {} bytes",
        reply.len()
    );
    assert_eq!(reply[2] & 0x02, 0x02, "truncated to make room: TC set");
    verifier
        .verify(&reply, gslbd::tsig::now())
        .expect("the reply's TSIG verifies");
}

/// A catalog zone file as Knot serves it (a plain zone here): version 2 and `entries` under
/// `zones` (e.g. "a1.zones PTR shared.test.").
fn catalog_text(name: &str, serial: u32, entries: &str) -> String {
    format!(
        "$ORIGIN {name}.\n$TTL 0\n@ SOA invalid. invalid. {serial} 3600 600 2147483646 0\n\
         @ NS invalid.\nversion TXT \"2\"\n{entries}"
    )
}

/// RFC 9432 5.4 and 5.6 with two catalogs from one Knot primary: a zone the second catalog
/// also lists stays with its owner; the owner's `coo` moves it (same unique label: its data is
/// kept, no new transfer); removed from the old catalog it is still served; a new unique label
/// resets it (its data dropped, transferred anew); `group` properties are shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_moves_between_catalogs_by_coo_and_is_reset_by_a_new_label() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let primary = SocketAddr::from(([127, 0, 15, 1], port));
    let cat = |name: &str| {
        format!(
            "[[zone]]\nname = \"{name}\"\nkind = \"catalog\"\nfile = \"{name}.zone\"\n\
             members_dir = \"members\"\nprimaries = [{{ address = \"{primary}\" }}]\n\
             refresh = 3600\nretry = 1\nallow_notify = [\"127.0.0.0/8\"]\n"
        )
    };
    let path = config(
        dir.path(),
        &format!("{}\n{}", cat("cat-a.invalid"), cat("cat-b.invalid")),
    );
    let server = start(&path).await;
    let kdir = tempfile::tempdir().unwrap();
    let d = kdir.path().display().to_string();
    let write = |file: &str, text: String| std::fs::write(kdir.path().join(file), text).unwrap();
    write(
        "cat-a",
        catalog_text("cat-a.invalid", 1, "a1.zones PTR shared.test.\n"),
    );
    write(
        "cat-b",
        catalog_text("cat-b.invalid", 1, "b0.zones PTR other.test.\n"),
    );
    for (zone, www) in [("shared.test", "127.0.15.6"), ("other.test", "127.0.15.7")] {
        write(
            zone,
            format!(
                "$ORIGIN {zone}.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n\
                 @ NS ns1\nns1 A 127.0.15.1\nwww A {www}\n"
            ),
        );
    }
    let gslbd_addr = dns(&server);
    let mut conf = knot_head(kdir.path(), port, gslbd_addr);
    conf.push_str(
        "    zonefile-load: difference\n    journal-content: changes\n    semantic-checks: off\n    \
         zonefile-sync: -1\nzone:\n",
    );
    for z in ["cat-a", "cat-b"] {
        conf.push_str(&format!("  - domain: {z}.invalid\n    file: \"{d}/{z}\"\n"));
    }
    for z in ["shared.test", "other.test"] {
        conf.push_str(&format!("  - domain: {z}\n    file: \"{d}/{z}\"\n"));
    }
    let knot = Knot::spawn(port, kdir, &conf, "cat-a.invalid").await;
    // The member's status, polled (15 s) until `check` holds.
    let member = |what: &'static str, check: fn(&gslbd::secondary::ZoneStatus) -> bool| {
        let (server, knot) = (&server, &knot);
        async move {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let all = gslbd::secondary::status(&server.handle.snapshot_full());
                let found = all.iter().find(|s| s.zone == "shared.test.");
                if found.is_some_and(check) {
                    return found.cloned().unwrap();
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: never happened\n{all:#?}\n{}",
                    knot.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let www = |a: &str| a.contains("status: NOERROR") && a.contains("127.0.15.6");
    let s = member("shared.test transferred as cat-a's", |s| {
        s.transfers_axfr == 1 && s.serial == Some(1)
    })
    .await;
    assert_eq!(
        (s.catalog.as_deref(), s.catalog_label.as_deref()),
        (Some("cat-a.invalid."), Some("a1"))
    );
    until(
        gslbd_addr,
        "www.shared.test",
        "A",
        "shared.test served",
        www,
    )
    .await;

    // cat-b lists it too, under the same label, with a group: it stays cat-a's (5.4).
    let b_entries = "b0.zones PTR other.test.\na1.zones PTR shared.test.\n\
                     group.a1.zones TXT \"gslb\"\n";
    write_in(&knot, "cat-b", catalog_text("cat-b.invalid", 2, b_entries));
    until(
        gslbd_addr,
        "www.other.test",
        "A",
        "other.test served",
        |a| a.contains("127.0.15.7"),
    )
    .await;
    until(gslbd_addr, "cat-b.invalid", "SOA", "cat-b serial 2", |_| {
        gslbd::secondary::status(&server.handle.snapshot_full())
            .iter()
            .any(|s| s.zone == "cat-b.invalid." && s.serial == Some(2))
    })
    .await;
    let s = member("still cat-a's", |_| true).await;
    assert_eq!(s.catalog.as_deref(), Some("cat-a.invalid."), "{s:#?}");

    // cat-a's coo names cat-b: it moves, its data kept (no second transfer, 4.4.1 and 5.4).
    write_in(
        &knot,
        "cat-a",
        catalog_text(
            "cat-a.invalid",
            2,
            "a1.zones PTR shared.test.\ncoo.a1.zones PTR cat-b.invalid.\n",
        ),
    );
    let s = member("moved to cat-b", |s| {
        s.catalog.as_deref() == Some("cat-b.invalid.")
    })
    .await;
    assert_eq!(
        (s.transfers_axfr, s.groups.clone()),
        (1, vec!["gslb".to_string()])
    );
    // Gone from cat-a: cat-b's member, still served, its file kept.
    write_in(&knot, "cat-a", catalog_text("cat-a.invalid", 3, ""));
    until(gslbd_addr, "cat-a.invalid", "SOA", "cat-a serial 3", |_| {
        gslbd::secondary::status(&server.handle.snapshot_full())
            .iter()
            .any(|s| s.zone == "cat-a.invalid." && s.serial == Some(3))
    })
    .await;
    assert!(www(&kdig(gslbd_addr, "www.shared.test", "A", &[])));
    assert!(dir.path().join("members/shared.test.zone").exists());
    let s = member("still cat-b's", |_| true).await;
    assert_eq!(s.catalog.as_deref(), Some("cat-b.invalid."), "{s:#?}");

    // A new unique label in cat-b: a reset (5.6), the zone transferred anew by AXFR.
    write_in(
        &knot,
        "cat-b",
        catalog_text(
            "cat-b.invalid",
            3,
            "b0.zones PTR other.test.\nb2.zones PTR shared.test.\n",
        ),
    );
    let s = member("reset by the new label", |s| {
        s.catalog_label.as_deref() == Some("b2") && s.transfers_axfr == 2
    })
    .await;
    assert!(s.groups.is_empty(), "{s:#?}");
    until(
        gslbd_addr,
        "www.shared.test",
        "A",
        "served after the reset",
        www,
    )
    .await;
}

/// Rewrites one of Knot's zone files and makes it load the change (journal + NOTIFY).
fn write_in(knot: &Knot, file: &str, text: String) {
    std::fs::write(knot.dir.path().join(file), text).unwrap();
    knot.hup();
}
