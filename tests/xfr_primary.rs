//! gslbd as a zone's primary, with Knot (`knotd`) and NSD as its secondaries on loopback: they
//! take the zone by AXFR, follow a change after the NOTIFY a reload sends by IXFR (their logs say
//! which), keep following across a restart of gslbd (the journal on disk), and then hold exactly
//! the records gslbd transfers (compared through AXFR from each of them), GSLB names as their
//! default answer. Also: the transfer ACL, NOTAUTH for other zones, IXFR with no journal, the
//! serial policy. BIND (`named`) follows a signed AXFR, a signed NOTIFY and IXFR. The daemons are
//! installed by `.ci/run`.
//!
//! Addresses: 127.0.25.0/24, port 53xx, one triple per test (gslbd .1, Knot .2, NSD .3); BIND
//! listens on 127.0.0.1 only (see `common::Named`), with gslbd on 127.0.25.100.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gslbd::config::Source;

const PORT: u16 = 5353;

/// The zone, at `serial`, with `extra` records (and 200 more, so that a whole transfer is ten
/// times the size of a small incremental one).
fn zone_text(serial: u32, extra: &str) -> String {
    let filler: String = (0..200)
        .map(|i| format!("filler{i} A 127.1.0.{}\n", i % 250))
        .collect();
    format!(
        "$ORIGIN example.com.\n$TTL 300\n\
         @ SOA ns hostmaster {serial} 3600 900 604800 60\n\
         @ NS ns\n@ NS ns2.other.net.\nns A 127.0.25.1\n\
         www A 127.0.0.10\nwww A 127.0.0.11\nwww AAAA ::1\n\
         mail 600 MX 10 mx.other.net.\ntxt TXT \"hello\" \"world\"\n\
         *.wild A 127.0.0.12\nsub NS ns.sub\nns.sub A 127.0.0.13\n\
         srv SRV 0 5 443 www\n{filler}{extra}"
    )
}

/// gslbd's config: the zone transferable to 127.0.0.0/8 with NOTIFY to the two secondaries, a
/// carrier rule and a location rule inside it (geo: the lab's files).
fn write_config(dir: &Path, ip: &str, secondaries: &[String], extra_zone: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !dir.join("geo").exists() {
        std::os::unix::fs::symlink(root.join("geo"), dir.join("geo")).unwrap();
    }
    let notify: Vec<String> = secondaries.iter().map(|s| format!("\"{s}\"")).collect();
    let text = format!(
        r#"
[[zone]]
name = "example.com."
file = "example.com.zone"
transfer = ["127.0.0.0/8"]
notify = [{notify}]
{extra_zone}

[[zone]]
name = "other.test."
file = "other.test.zone"

[[listener]]
name = "all"
addresses = ["{ip}:{PORT}"]
zones = ["*"]

[geo]
asn_db = "geo/lab.csv"
city_db = "geo/lab.csv"
overrides = ["geo/lab-overrides.csv"]
asn_carriers = ["geo/asn-carriers.csv"]

[geo.carrier.mobile]
name = "China Mobile"
org = ["china mobile"]

[geo.carrier.telecom]
name = "China Telecom"
org = ["chinanet"]

[geo.carrier.unicom]
name = "China Unicom"
org = ["china unicom"]

[gslb.region.bj]
location = [39.9042, 116.4074]

[gslb.region.sh]
location = [31.2304, 121.4737]

[[gslb.carrier]]
name = "vip.example.com."
ttl = 20
default = "bgp.example.com."
lines = {{ mobile = "yd.example.com." }}

[[gslb.location]]
name = "bgp.example.com."
ttl = 30
default = "bj"
pools.bj = ["127.0.0.41", "127.0.0.42", "::41"]
pools.sh = ["127.0.0.51"]

[[gslb.location]]
name = "yd.example.com."
default = "sh"
pools.bj = ["127.0.0.61"]
pools.sh = ["127.0.0.71"]
"#,
        notify = notify.join(", ")
    );
    std::fs::write(
        dir.join("other.test.zone"),
        "$ORIGIN other.test.\n@ 300 SOA ns h 1 3600 900 604800 60\n@ 300 NS ns\nns 300 A 127.0.0.1\n",
    )
    .unwrap();
    let path = dir.join("gslbd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A secondary daemon, killed on drop.
struct Secondary {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Secondary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Secondary {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A Knot secondary of gslbd at `primary`, with `zones` (its `zone:` section, which may use the
/// remote `primary`, the ACL `from_primary` (NOTIFY) and `out` (transfers), and the template
/// `member`).
fn knot_with(ip: &str, primary: SocketAddr, zones: &str) -> Secondary {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let conf = dir.path().join("knot.conf");
    let log = dir.path().join("knot.log");
    std::fs::write(
        &conf,
        format!(
            "server:\n  rundir: \"{d}\"\n  listen: {ip}@{PORT}\n  udp-workers: 1\n  \
             tcp-workers: 1\n  background-workers: 1\n\
             log:\n  - target: \"{}\"\n    any: info\n\
             control:\n  listen: \"{d}/knot.sock\"\n\
             database:\n  storage: \"{d}\"\n\
             remote:\n  - id: primary\n    address: {}@{}\n\
             acl:\n  - id: from_primary\n    address: 127.0.0.0/8\n    action: notify\n  \
             - id: out\n    address: 127.0.0.0/8\n    action: transfer\n\
             template:\n  - id: default\n    storage: \"{d}\"\n  \
             - id: member\n    storage: \"{d}\"\n    master: primary\n    acl: from_primary\n\
             zone:\n{}",
            log.display(),
            primary.ip(),
            primary.port(),
            zones.replace("{d}", &d)
        ),
    )
    .unwrap();
    let child = common::tool("knotd")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Secondary {
        child,
        addr: format!("{ip}:{PORT}").parse().unwrap(),
        log,
        _dir: dir,
    }
}

fn knot(ip: &str, primary: SocketAddr) -> Secondary {
    knot_with(
        ip,
        primary,
        "  - domain: example.com\n    file: \"{d}/example.com.zone\"\n    \
         master: primary\n    acl: [from_primary, out]\n",
    )
}

fn nsd(ip: &str, primary: SocketAddr) -> Secondary {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let conf = dir.path().join("nsd.conf");
    let log = dir.path().join("nsd.log");
    std::fs::write(
        &conf,
        format!(
            "server:\n  ip-address: {ip}@{PORT}\n  username: \"\"\n  chroot: \"\"\n  \
             zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  \
             xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  \
             logfile: \"{}\"\n  verbosity: 3\n  server-count: 1\n\
             remote-control:\n  control-enable: no\n\
             zone:\n  name: example.com\n  zonefile: \"{d}/example.com.zone\"\n  \
             request-xfr: {}@{} NOKEY\n  allow-notify: 127.0.0.0/8 NOKEY\n  \
             provide-xfr: 127.0.0.0/8 NOKEY\n",
            log.display(),
            primary.ip(),
            primary.port()
        ),
    )
    .unwrap();
    let child = common::tool("nsd")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Secondary {
        child,
        addr: format!("{ip}:{PORT}").parse().unwrap(),
        log,
        _dir: dir,
    }
}

/// `kdig` output lines for a question (records only, TTLs kept), sorted.
fn kdig(server: SocketAddr, args: &[&str]) -> Vec<String> {
    let out = common::tool("kdig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+noall", "+answer", "+time=2", "+retry=1"])
        .args(args)
        .output()
        .expect("kdig runs");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

fn serial_at(server: SocketAddr) -> Option<u32> {
    kdig(server, &["example.com", "SOA"])
        .first()
        .and_then(|l| l.split(' ').nth(6))
        .and_then(|s| s.parse().ok())
}

/// Waits (up to 20 s) for `server` to serve `serial`.
async fn wait_serial(server: SocketAddr, serial: u32, who: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if serial_at(server) == Some(serial) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{who} did not reach serial {serial} (has {:?}); its log:\n{}",
        serial_at(server),
        log()
    );
}

/// The AXFR of example.com from `server`, sorted, the closing SOA dropped (records only).
fn axfr(server: SocketAddr) -> Vec<String> {
    axfr_with(server, &[])
}

/// `axfr` with more kdig arguments (`-y KEY`).
fn axfr_with(server: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut v = kdig(server, &[extra, &["example.com", "AXFR"]].concat());
    // The SOA comes first and last in a transfer: keep one.
    if let Some(i) = v.iter().position(|l| l.contains(" SOA "))
        && v.iter().filter(|l| l.contains(" SOA ")).count() == 2
    {
        v.remove(i);
    }
    v
}

/// The sizes of the incremental transfers Knot finished, from its log ("IXFR, incoming, ...
/// finished, ..., N bytes"); an AXFR-style answer to its IXFR is not one of them.
fn knot_ixfr_sizes(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|l| l.contains("IXFR, incoming") && l.contains("finished"))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| w.starts_with("bytes"))?;
            words.get(i.checked_sub(1)?)?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_and_nsd_follow_gslbd_by_axfr_then_ixfr_after_notify_across_a_restart() {
    let (g, k, n) = ("127.0.25.1", "127.0.25.2", "127.0.25.3");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.zone"), zone_text(1, "")).unwrap();
    let config = write_config(
        dir.path(),
        g,
        &[format!("{k}:{PORT}"), format!("{n}:{PORT}")],
        "",
    );
    let server = common::start_at(Source::file(&config), PORT).await;
    let primary: SocketAddr = format!("{g}:{PORT}").parse().unwrap();
    let (knot, nsd) = (knot(k, primary), nsd(n, primary));

    // The initial transfer (both start by asking for the zone).
    wait_serial(knot.addr, 1, "knot", &|| knot.log()).await;
    wait_serial(nsd.addr, 1, "nsd", &|| nsd.log()).await;
    let ours = axfr(primary);
    assert!(ours.len() > 10, "gslbd's AXFR: {ours:#?}");
    assert_eq!(axfr(knot.addr), ours, "knot holds what gslbd transferred");
    assert_eq!(axfr(nsd.addr), ours, "nsd holds what gslbd transferred");
    // GSLB names travel as their default answer: the default line's CNAME, the default region's
    // whole pool, with the rule's TTL.
    for s in [knot.addr, nsd.addr] {
        assert_eq!(
            kdig(s, &["vip.example.com", "CNAME"]),
            ["vip.example.com. 20 IN CNAME bgp.example.com."]
        );
        assert_eq!(
            kdig(s, &["bgp.example.com", "A"]),
            [
                "bgp.example.com. 30 IN A 127.0.0.41",
                "bgp.example.com. 30 IN A 127.0.0.42"
            ]
        );
        assert_eq!(
            kdig(s, &["bgp.example.com", "AAAA"]),
            ["bgp.example.com. 30 IN AAAA ::41"]
        );
    }
    // Static names: the secondaries answer what gslbd answers.
    for q in [
        ["www.example.com", "A"],
        ["mail.example.com", "MX"],
        ["x.wild.example.com", "A"],
        ["srv.example.com", "SRV"],
    ] {
        let want = kdig(primary, &q);
        assert!(!want.is_empty(), "{q:?}");
        assert_eq!(kdig(knot.addr, &q), want, "knot {q:?}");
        assert_eq!(kdig(nsd.addr, &q), want, "nsd {q:?}");
    }

    // A change and a reload: NOTIFY brings them to serial 2 (their refresh is an hour away), by
    // IXFR.
    std::fs::write(
        dir.path().join("example.com.zone"),
        zone_text(2, "new A 127.0.0.20\n").replace("www A 127.0.0.11\n", ""),
    )
    .unwrap();
    server.handle.reload().expect("reload");
    wait_serial(knot.addr, 2, "knot", &|| knot.log()).await;
    wait_serial(nsd.addr, 2, "nsd", &|| nsd.log()).await;
    assert_eq!(axfr(knot.addr), axfr(primary));
    assert_eq!(axfr(nsd.addr), axfr(primary));
    let ixfr_sizes = knot_ixfr_sizes(&knot.log());
    assert!(
        ixfr_sizes.len() == 1 && ixfr_sizes[0] < 1000,
        "knot took the change by a small IXFR ({ixfr_sizes:?}):\n{}",
        knot.log()
    );
    // NSD does not name the kind of transfer in its log, but it gives the bytes it received: the
    // change is a few hundred, the whole zone several thousand.
    let bytes = |serial: u32| -> usize {
        let log = nsd.log();
        let tail = log
            .split(&format!("received update to serial {serial} at "))
            .nth(2)
            .unwrap_or_else(|| panic!("nsd took serial {serial}:\n{log}"));
        tail.split(" of ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bytes of serial {serial}:\n{log}"))
    };
    assert!(
        bytes(1) > 4000 && bytes(2) < 1000,
        "nsd took the change by IXFR: {} bytes for the zone, {} for the change",
        bytes(1),
        bytes(2)
    );

    // Restart gslbd: the journal on disk still answers IXFR from serial 1; then a change and a
    // reload bring the secondaries from 2 to 3 by IXFR again.
    drop(server);
    let server = common::start_at(Source::file(&config), PORT).await;
    let ixfr = kdig(primary, &["example.com", "IXFR=1"]);
    assert!(
        ixfr.iter()
            .any(|l| l == "new.example.com. 300 IN A 127.0.0.20")
            && ixfr
                .iter()
                .any(|l| l == "www.example.com. 300 IN A 127.0.0.11")
            && ixfr.len() == 6,
        "an incremental answer from serial 1 after the restart: {ixfr:#?}"
    );
    std::fs::write(
        dir.path().join("example.com.zone"),
        zone_text(3, "new A 127.0.0.20\nnewer A 127.0.0.21\n").replace("www A 127.0.0.11\n", ""),
    )
    .unwrap();
    server.handle.reload().expect("reload");
    wait_serial(knot.addr, 3, "knot", &|| knot.log()).await;
    wait_serial(nsd.addr, 3, "nsd", &|| nsd.log()).await;
    assert_eq!(axfr(knot.addr), axfr(primary));
    assert_eq!(axfr(nsd.addr), axfr(primary));
    let ixfr_sizes = knot_ixfr_sizes(&knot.log());
    assert!(
        ixfr_sizes.len() == 2 && ixfr_sizes.iter().all(|&b| b < 1000),
        "knot took serial 2 -> 3 by a small IXFR from the journal ({ixfr_sizes:?}):\n{}",
        knot.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_are_refused_outside_the_acl_and_notauth_outside_the_zones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.zone"), zone_text(7, "")).unwrap();
    // Only 127.0.25.99 may transfer: our kdig comes from 127.0.0.1.
    let config = write_config(dir.path(), "127.0.25.4", &[], "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "transfer = [\"127.0.0.0/8\"]",
        "transfer = [\"127.0.25.99\"]",
    );
    std::fs::write(&config, text).unwrap();
    let server = common::start(Source::file(&config)).await;
    let addr = server.addr("all", "tcp");
    let status = |args: &[&str]| {
        let out = common::tool("kdig")
            .arg(format!("@{}", addr.ip()))
            .arg("-p")
            .arg(addr.port().to_string())
            .args(["+time=2", "+retry=0"])
            .args(args)
            .output()
            .unwrap();
        // kdig reports a transfer's error RCODE on stderr.
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let refused = status(&["example.com", "AXFR"]);
    assert!(refused.contains("REFUSED"), "{refused}");
    let refused = status(&["example.com", "IXFR=1"]);
    assert!(refused.contains("REFUSED"), "{refused}");
    // A name inside the zone, or a zone this server does not have: not authoritative for it.
    let notauth = status(&["www.example.com", "AXFR"]);
    assert!(notauth.contains("NOTAUTH"), "{notauth}");
    let notauth = status(&["example.org", "AXFR"]);
    assert!(notauth.contains("NOTAUTH"), "{notauth}");
    // A zone with no transfer setting at all is refused the same way.
    let refused = status(&["other.test", "AXFR"]);
    assert!(refused.contains("REFUSED"), "{refused}");
    // The ordinary questions still work on the same connection type.
    let ok = status(&["+tcp", "www.example.com", "A"]);
    assert!(ok.contains("127.0.0.10"), "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_zone_with_the_same_serial_is_refused_or_renumbered_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.zone"), zone_text(10, "")).unwrap();
    let config = write_config(dir.path(), "127.0.25.5", &[], "");
    let server = common::start(Source::file(&config)).await;
    let addr = server.addr("all", "tcp");
    // Changed data, same serial: the reload fails and serial 10 keeps serving.
    std::fs::write(
        dir.path().join("example.com.zone"),
        zone_text(10, "added A 127.0.0.30\n"),
    )
    .unwrap();
    let err = server
        .handle
        .reload()
        .expect_err("the serial did not increase");
    assert!(
        err.to_string()
            .contains("serial did not increase (10 -> 10)"),
        "{err}"
    );
    assert!(kdig(addr, &["added.example.com", "A"]).is_empty());
    // serial = "increment": served as 11, and IXFR from 10 carries the record.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "notify = []",
        "notify = []\nserial = \"increment\"",
        1,
    );
    std::fs::write(&config, text).unwrap();
    server.handle.reload().expect("renumbered");
    assert_eq!(serial_at(addr), Some(11));
    let ixfr = kdig(addr, &["example.com", "IXFR=10"]);
    assert!(
        ixfr.iter()
            .any(|l| l == "added.example.com. 300 IN A 127.0.0.30"),
        "{ixfr:#?}"
    );
    // A reload of the same file keeps 11 (not 10 from the file, not 12).
    server.handle.reload().expect("same data");
    assert_eq!(serial_at(addr), Some(11));
    // A restart too: the journal remembers the serial it chose.
    drop(server);
    let server = common::start(Source::file(&config)).await;
    assert_eq!(serial_at(server.addr("all", "tcp")), Some(11));
    // `gslbd zone status` reads the same journal.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gslbd"))
        .args(["zone", "status", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("example.com. serial 11 ")
            && text.contains("transfer: 127.0.0.0/8")
            && text.contains("1 changes, IXFR from serial 10"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axfr_of_a_large_zone_spans_many_messages_and_matches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut extra = String::new();
    for i in 0..20_000 {
        extra.push_str(&format!(
            "host{i} A 10.{}.{}.{}\nhost{i} TXT \"record number {i}\"\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    std::fs::write(dir.path().join("example.com.zone"), zone_text(1, &extra)).unwrap();
    let config = write_config(dir.path(), "127.0.25.6", &[], "");
    let server = common::start(Source::file(&config)).await;
    let addr = server.addr("all", "tcp");
    let out = common::tool("kdig")
        .arg(format!("@{}", addr.ip()))
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["+time=5", "example.com", "AXFR"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let records = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .count();
    // 40,000 records + the zone's own + the GSLB defaults + two SOAs.
    assert!(
        records > 40_010,
        "records: {records}\n{}",
        &text[text.len().saturating_sub(500)..]
    );
    let messages: usize = text
        .split("messages, ")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        messages > 10,
        "several 64 KB messages: {messages}\n{}",
        &text[text.len() - 300..]
    );
    assert!(text.contains("host19999.example.com."), "the last host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ixfr_over_udp_gives_the_soa_when_current_and_tc_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.zone"), zone_text(5, "")).unwrap();
    let config = write_config(dir.path(), "127.0.25.7", &[], "");
    let server = common::start(Source::file(&config)).await;
    let addr = server.addr("all", "udp");
    // An IXFR query carrying the client's SOA (RFC 1995 3), sent as one datagram.
    let ixfr = |serial: u32| {
        let mut p = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
        p.extend_from_slice(b"\x07example\x03com\x00\x00\xfb\x00\x01");
        p.extend_from_slice(&[0xc0, 12, 0, 6, 0, 1, 0, 0, 0, 0, 0, 22, 0, 0]);
        p.extend_from_slice(&serial.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    };
    let current = common::udp_raw(addr, &ixfr(5)).await.expect("an answer");
    // QR AA, no TC, NOERROR, one answer: the SOA with serial 5.
    assert_eq!(current[2] & 0x86, 0x84, "{current:?}");
    assert_eq!(current[3] & 0xf, 0);
    assert_eq!(&current[6..8], &[0, 1]);
    let soa = gslbd_message(&current);
    assert_eq!(soa.answers.len(), 1);
    assert!(
        soa.answers[0].to_string().contains(" 5 3600 900"),
        "{soa:?}"
    );
    let behind = common::udp_raw(addr, &ixfr(4)).await.expect("an answer");
    // TC set and nothing in it: ask again over TCP.
    assert_eq!(behind[2] & 0x02, 0x02, "{behind:?}");
    assert_eq!(&behind[6..8], &[0, 0]);
}

fn gslbd_message(b: &[u8]) -> hickory_proto::op::Message {
    hickory_proto::op::Message::from_vec(b).expect("a DNS message")
}

/// A Knot secondary that interprets gslbd's catalog zone (RFC 9432) and takes every member zone
/// from gslbd by the catalog's template.
fn knot_catalog(ip: &str, primary: SocketAddr) -> Secondary {
    knot_with(
        ip,
        primary,
        "  - domain: catalog.invalid\n    file: \"{d}/catalog.zone\"\n    \
         master: primary\n    acl: from_primary\n    catalog-role: interpret\n    \
         catalog-template: member\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knot_secondary_follows_the_catalog_as_zones_come_and_go() {
    let (g, k) = ("127.0.25.8", "127.0.25.9");
    let dir = tempfile::tempdir().unwrap();
    let zone = |name: &str, serial: u32| {
        format!(
            "$ORIGIN {name}.\n$TTL 300\n@ SOA ns hostmaster {serial} 3600 900 604800 60\n\
             @ NS ns\nns A 127.0.0.1\nwww A 127.0.0.80\n"
        )
    };
    for n in ["example.net", "example.org"] {
        std::fs::write(dir.path().join(format!("{n}.zone")), zone(n, 1)).unwrap();
    }
    let with_zones = |names: &[&str]| {
        let mut t = String::new();
        for n in names {
            t.push_str(&format!(
                "[[zone]]\nname = \"{n}\"\nfile = \"{n}.zone\"\ntransfer = [\"127.0.0.0/8\"]\nnotify = [\"{k}:{PORT}\"]\n\n"
            ));
        }
        t.push_str(&format!(
            "[[listener]]\nname = \"all\"\naddresses = [\"{g}:{PORT}\"]\nzones = [\"*\"]\n\n\
             [catalog]\nname = \"catalog.invalid\"\ntransfer = [\"127.0.0.0/8\"]\nnotify = [\"{k}:{PORT}\"]\n"
        ));
        let path = dir.path().join("gslbd.toml");
        std::fs::write(&path, t).unwrap();
        path
    };
    let config = with_zones(&["example.net"]);
    let server = common::start_at(Source::file(&config), PORT).await;
    let primary: SocketAddr = format!("{g}:{PORT}").parse().unwrap();
    let knot = knot_catalog(k, primary);
    let www = |zone: &str| kdig(knot.addr, &[&format!("www.{zone}"), "A"]);
    let wait = |zone: &'static str, present: bool| {
        let knot = &knot;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if www(zone).is_empty() != present {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!(
                "knot: {zone} present = {}, wanted {present}:\n{}",
                !present,
                knot.log()
            );
        }
    };
    wait("example.net", true).await;
    assert_eq!(www("example.net"), ["www.example.net. 300 IN A 127.0.0.80"]);
    assert!(www("example.org").is_empty());
    // A zone added to gslbd's config: a reload changes the catalog, NOTIFY tells Knot, Knot
    // adds the zone and transfers it.
    with_zones(&["example.net", "example.org"]);
    server.handle.reload().expect("reload");
    wait("example.org", true).await;
    // Removed: Knot drops it.
    with_zones(&["example.org"]);
    server.handle.reload().expect("reload");
    wait("example.net", false).await;
    assert_eq!(www("example.org"), ["www.example.org. 300 IN A 127.0.0.80"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_acl_of_a_tsig_key_wants_a_signed_request_and_signs_every_message() {
    const SECRET: &str = "c2VjcmV0IGtleSBmb3IgdGhlIHRyYW5zZmVyIHRlc3Q=";
    let dir = tempfile::tempdir().unwrap();
    let mut extra = String::new();
    for i in 0..3000 {
        extra.push_str(&format!(
            "t{i} TXT \"a record long enough to fill several messages {i}\"\n"
        ));
    }
    std::fs::write(dir.path().join("example.com.zone"), zone_text(3, &extra)).unwrap();
    let config = write_config(dir.path(), "127.0.25.10", &[], "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "transfer = [\"127.0.0.0/8\"]",
        "transfer = [\"127.0.0.1 key xfr-key\"]",
    ) + &format!(
        "\n[[key]]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let server = common::start(Source::file(&config)).await;
    let addr = server.addr("all", "tcp");
    let axfr = |key: Option<&str>| {
        let mut c = common::tool("kdig");
        c.arg(format!("@{}", addr.ip()))
            .arg("-p")
            .arg(addr.port().to_string())
            .args(["+time=5", "+retry=0", "example.com", "AXFR"]);
        if let Some(k) = key {
            c.arg("-y").arg(k);
        }
        let out = c.output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // Signed with the key: the whole zone, every message signed (kdig checks each TSIG and
    // stops at the first that does not verify).
    let ok = axfr(Some(&format!("hmac-sha256:xfr-key:{SECRET}")));
    assert!(
        ok.contains("t2999.example.com.") && !ok.contains(";; ERROR") && !ok.contains(";; WARNING"),
        "{}",
        &ok[ok.len().saturating_sub(600)..]
    );
    let messages: usize = ok
        .split("messages, ")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(messages > 1, "{}", &ok[ok.len().saturating_sub(300)..]);
    // Unsigned: the address alone is not enough.
    let refused = axfr(None);
    assert!(refused.contains("REFUSED"), "{refused}");
    // The right key name with another secret: BADSIG.
    let bad = axfr(Some(
        "hmac-sha256:xfr-key:d3Jvbmcgc2VjcmV0IGZvciB0aGUga2V5IDAwMDA=",
    ));
    assert!(bad.contains("NOTAUTH") || bad.contains("BADSIG"), "{bad}");
    // A key name this server does not know: BADKEY.
    let unknown = axfr(Some(&format!("hmac-sha256:other-key:{SECRET}")));
    assert!(
        unknown.contains("NOTAUTH") || unknown.contains("BADKEY"),
        "{unknown}"
    );
}

/// The records of each transfer BIND took in, by serial, from its log ("Transfer completed:
/// 1 messages, 219 records, ... (serial 1)"): an incremental one carries only the change.
fn bind_transfer_records(log: &str) -> Vec<(u32, usize)> {
    log.lines()
        .filter(|l| l.contains("xfer-in") && l.contains("Transfer completed"))
        .filter_map(|l| {
            let records = l
                .split(" records")
                .next()?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()?;
            let serial = l
                .rsplit("(serial ")
                .next()?
                .trim_end_matches(')')
                .parse()
                .ok()?;
            Some((serial, records))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_follows_gslbd_by_signed_axfr_then_ixfr_after_a_signed_notify() {
    const SECRET: &str = "YmluZCBzZWNvbmRhcnkgb2YgZ3NsYmQsIHNpZ25lZCE=";
    let g = "127.0.25.100";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.zone"), zone_text(1, "")).unwrap();
    // BIND's port first: gslbd's NOTIFY names it. Transfers need the key; NOTIFY is signed.
    let bind_port = common::free_port_on([127, 0, 0, 1].into());
    let config = write_config(
        dir.path(),
        g,
        &[format!("127.0.0.1:{bind_port} key xfr-key")],
        "",
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "transfer = [\"127.0.0.0/8\"]",
        "transfer = [\"127.0.0.0/8 key xfr-key\"]",
    ) + &format!(
        "\n[[key]]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let server = common::start_at(Source::file(&config), PORT).await;
    let primary: SocketAddr = format!("{g}:{PORT}").parse().unwrap();
    // BIND signs its SOA queries and transfers with the key (`primaries ... key`) and takes
    // NOTIFY from elsewhere only when signed with it (`allow-notify { key ...; }`).
    let named = common::Named::start_on(
        bind_port,
        &format!(
            "key \"xfr-key\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n\
             zone \"example.com\" {{ type secondary; file \"{{d}}/example.com.zone\";\n  \
             primaries port {PORT} {{ {g} key xfr-key; }};\n  \
             allow-notify {{ key xfr-key; }};\n  allow-transfer {{ 127.0.0.0/8; }};\n}};\n"
        ),
        &[],
    )
    .await;
    wait_serial(named.addr, 1, "named", &|| named.log()).await;
    let key = format!("hmac-sha256:xfr-key:{SECRET}");
    let ours = |server| {
        let mut v = axfr_with(server, &["-y", &key]);
        v.retain(|l| !l.contains(" TSIG "));
        v
    };
    let want = ours(primary);
    assert!(want.len() > 200, "gslbd's signed AXFR: {want:#?}");
    assert_eq!(axfr(named.addr), want, "named holds what gslbd transferred");
    // Unsigned, the address alone does not transfer.
    assert!(axfr(primary).is_empty());

    std::fs::write(
        dir.path().join("example.com.zone"),
        zone_text(2, "new A 127.0.0.20\n").replace("www A 127.0.0.11\n", ""),
    )
    .unwrap();
    server.handle.reload().expect("reload");
    // Its refresh is an hour away: the signed NOTIFY brings serial 2.
    wait_serial(named.addr, 2, "named", &|| named.log()).await;
    assert_eq!(axfr(named.addr), ours(primary));
    // The whole zone (over 200 records) once, then the change alone (IXFR: its two SOA pairs
    // and the records removed and added). BIND takes NOTIFY from a primary's address signed or
    // not, so its log says whether ours was signed.
    let log = named.log();
    assert!(
        log.contains("received notify for zone 'example.com': TSIG 'xfr-key'"),
        "a signed NOTIFY:\n{log}"
    );
    let transfers = bind_transfer_records(&log);
    assert!(
        matches!(transfers[..], [(1, whole), (2, change)] if whole > 200 && change < 10),
        "named took serial 2 by IXFR ({transfers:?}):\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_notify_is_acknowledged_only_by_a_signed_answer() {
    use base64::Engine as _;
    const SECRET: &str = "bm90aWZ5IGFuc3dlcnMgbXVzdCBiZSBzaWduZWQgdG9v";
    // A stand-in secondary on a socket of this test: it answers the first NOTIFY unsigned (as a
    // forger would: anyone can send an unsigned answer) and the next one signed with the key.
    // gslbd must not take the first for an acknowledgement, so a retry comes.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let fake = sock.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("example.com.zone"), zone_text(1, "")).unwrap();
    let config = write_config(
        dir.path(),
        "127.0.25.101",
        &[format!("{fake} key xfr-key")],
        "",
    );
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "\n[[key]]\nname = \"xfr-key\"\nalgorithm = \"hmac-sha256\"\nsecret = \"{SECRET}\"\n"
        );
    std::fs::write(&config, text).unwrap();
    let ring = gslbd::tsig::Keyring::from_keys([gslbd::tsig::Key::new(
        "xfr-key",
        gslbd::tsig::Algorithm::HmacSha256,
        base64::engine::general_purpose::STANDARD
            .decode(SECRET)
            .unwrap(),
    )
    .unwrap()]);
    // A new serial and a reload send NOTIFY.
    let server = common::start_at(Source::file(&config), PORT).await;
    std::fs::write(dir.path().join("example.com.zone"), zone_text(2, "")).unwrap();
    server.handle.reload().expect("reload");
    let mut buf = [0u8; 1024];
    let mut answers = 0;
    while answers < 2 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no NOTIFY after {answers} answer(s)"))
            .unwrap();
        let msg = &buf[..n];
        assert_eq!((msg[2] >> 3) & 0xf, 4, "a NOTIFY");
        let v = gslbd::tsig::verify_request(&ring, msg, gslbd::tsig::now())
            .expect("signed")
            .expect("with our key");
        // The answer: the request's header with QR set, its question, no records.
        let mut end = 12;
        while msg[end] != 0 {
            end += 1 + msg[end] as usize;
        }
        let mut reply = msg[..end + 5].to_vec();
        reply[2] |= 0x80;
        reply[6..12].fill(0);
        if answers == 1 {
            gslbd::tsig::sign_reply(&mut reply, &v, gslbd::tsig::now());
        }
        sock.send_to(&reply, from).await.unwrap();
        answers += 1;
    }
}
