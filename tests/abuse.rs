//! Attacks on the authoritative UDP listeners, reproduced on loopback (issue 13): a spoofed-source
//! amplification flood against response rate limiting, random names under one zone, and DNS
//! cookies (RFC 7873 / RFC 9018) as made and accepted by gslbd, NSD and Knot with one secret.
//!
//! Every client here is a 127.x address of this machine; floods are a fixed number of queries.
//! NSD and Knot (Debian `nsd`, `knot`) and kdig (`knot-dnsutils`) are installed by `.ci/run`.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Q;
use gslbd::config::Source;
use tokio::net::UdpSocket;

/// A TXT answer of about 1,000 bytes to a 40-byte query: the amplifier an attacker picks.
fn big_txt() -> String {
    let chunk = "x".repeat(240);
    format!("big TXT \"{chunk}\" \"{chunk}\" \"{chunk}\" \"{chunk}\"\n")
}

async fn start(dir: &Path, extra: &str) -> common::TestServer {
    let records = format!("{}www A 127.0.0.9\n", big_txt());
    let config = common::write_example(dir, &records, extra);
    common::start(Source::file(config)).await
}

/// What a client got back from a flood.
#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    bytes_in: usize,
    full: usize,
    truncated: usize,
    badcookie: usize,
    bytes_out: usize,
    /// A server cookie seen in a reply (the last one).
    cookie: Option<Vec<u8>>,
}

impl Tally {
    fn amplification(&self) -> f64 {
        self.bytes_out as f64 / self.bytes_in as f64
    }
}

/// An EDNS option: code and data.
type Opt = (u16, Vec<u8>);

/// The OPT record of a reply: (extended RCODE upper bits, options).
fn opt_of(reply: &[u8]) -> Option<(u8, Vec<Opt>)> {
    let count = |i: usize| u16::from_be_bytes([reply[i], reply[i + 1]]) as usize;
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let l = *reply.get(at)? as usize;
            if l == 0 {
                return Some(at + 1);
            }
            if l & 0xc0 == 0xc0 {
                return Some(at + 2);
            }
            at += 1 + l;
        }
    };
    let mut at = skip_name(12)? + 4;
    let records = count(6) + count(8) + count(10);
    for _ in 0..records {
        let start = at;
        at = skip_name(at)?;
        let rtype = u16::from_be_bytes([*reply.get(at)?, *reply.get(at + 1)?]);
        let rdlen = u16::from_be_bytes([*reply.get(at + 8)?, *reply.get(at + 9)?]) as usize;
        let rdata = reply.get(at + 10..at + 10 + rdlen)?;
        if rtype == 41 && reply[start] == 0 {
            let mut opts = Vec::new();
            let mut o = 0;
            while o + 4 <= rdata.len() {
                let code = u16::from_be_bytes([rdata[o], rdata[o + 1]]);
                let len = u16::from_be_bytes([rdata[o + 2], rdata[o + 3]]) as usize;
                opts.push((code, rdata.get(o + 4..o + 4 + len)?.to_vec()));
                o += 4 + len;
            }
            return Some((reply[at + 4], opts));
        }
        at += 10 + rdlen;
    }
    None
}

/// The COOKIE option's data in a reply, if any.
fn cookie_of(reply: &[u8]) -> Option<Vec<u8>> {
    opt_of(reply)?
        .1
        .into_iter()
        .find_map(|(code, data)| (code == 10).then_some(data))
}

/// The extended RCODE of a reply (header bits and the OPT's upper bits, RFC 6891 6.1.3).
fn rcode(reply: &[u8]) -> u16 {
    let high = opt_of(reply).map_or(0, |(h, _)| h);
    (u16::from(high) << 4) | u16::from(reply[3] & 0x0f)
}

/// `n` queries for `name(i)` from `src`, in bursts of 16 (each burst's replies awaited up to
/// 50 ms, so the socket never overflows and the count of replies is the server's doing).
async fn flood(
    src: IpAddr,
    server: SocketAddr,
    n: usize,
    name: impl Fn(usize) -> String,
    cookie: Option<&[u8]>,
) -> Tally {
    let sock = UdpSocket::bind(SocketAddr::new(src, 0)).await.unwrap();
    let mut t = Tally::default();
    let mut buf = vec![0u8; 65535];
    let mut i = 0;
    while i < n {
        let burst = 16.min(n - i);
        for _ in 0..burst {
            let mut q = Q::new(&name(i), 16);
            q.id = i as u16;
            if let Some(c) = cookie {
                let mut opt = vec![0, 10];
                opt.extend_from_slice(&(c.len() as u16).to_be_bytes());
                opt.extend_from_slice(c);
                q.edns = Some((1232, 0, false, opt));
            }
            let b = q.bytes();
            t.bytes_in += b.len();
            t.sent += 1;
            sock.send_to(&b, server).await.unwrap();
            i += 1;
        }
        let until = tokio::time::Instant::now() + Duration::from_millis(50);
        while let Ok(Ok((len, _))) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await
        {
            let r = &buf[..len];
            t.bytes_out += len;
            if r[2] & 0x02 != 0 {
                t.truncated += 1;
            } else if rcode(r) == 23 {
                t.badcookie += 1;
            } else {
                t.full += 1;
            }
            if let Some(c) = cookie_of(r) {
                t.cookie = Some(c);
            }
        }
    }
    t
}

fn metric(name_and_labels: &str) -> u64 {
    gslbd::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0)
}

const CLIENT: &str = "127.0.0.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rrl_limits_an_amplification_flood_and_slips_every_second() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "[rrl]\nenabled = true\nrate = 2\nburst = 10\nslip = 2\n[cookies]\nenabled = false\n",
    )
    .await;
    let addr = server.addr("all", "udp");
    let slipped_before = metric("gslbd_rrl_limited_total{kind=\"positive\",action=\"slipped\"}");
    let start = Instant::now();
    let t = flood(
        CLIENT.parse().unwrap(),
        addr,
        1_500,
        |_| "big.example.com".into(),
        None,
    )
    .await;
    let secs = start.elapsed().as_secs_f64();
    // One bucket: the burst (10) at once, then at most 2 a second (generously, one second more
    // than the flood took). A low rate keeps the burst from dominating a flood this short, so
    // the factor below is the sustained one (slips alone: about 1/2) on a slow machine too.
    let allowed = 10.0 + 2.0 * (secs + 1.0);
    assert!(
        (t.full as f64) <= allowed,
        "{} full answers in {secs:.1} s (at most {allowed:.0}): {t:?}",
        t.full
    );
    assert!(t.full >= 10, "the burst is answered: {t:?}");
    // slip = 2: every second limited response goes out as TC=1 (header and question only).
    let limited = t.sent - t.full;
    assert!(
        t.truncated * 2 >= limited - 2 && t.truncated * 2 <= limited + 2,
        "{} truncated of {limited} limited: {t:?}",
        t.truncated
    );
    assert!(
        t.amplification() < 1.0,
        "bytes out / bytes in = {:.2}: {t:?}",
        t.amplification()
    );
    assert!(
        metric("gslbd_rrl_limited_total{kind=\"positive\",action=\"slipped\"}")
            >= slipped_before + t.truncated as u64
    );

    // Meanwhile another /24 is another bucket, and so is another name for the same client.
    let other = flood(
        "127.0.1.1".parse().unwrap(),
        addr,
        10,
        |_| "big.example.com".into(),
        None,
    )
    .await;
    assert_eq!(other.full, 10, "{other:?}");
    let www = flood(
        CLIENT.parse().unwrap(),
        addr,
        10,
        |_| "www.example.com".into(),
        None,
    )
    .await;
    assert_eq!(www.full, 10, "{www:?}");
    // A limited client that retries over TCP (what TC=1 asks it to do) gets the answer.
    let over_tcp = common::tcp_raw(
        server.addr("all", "tcp"),
        &Q::new("big.example.com", 16).bytes(),
    )
    .await
    .expect("TCP answers");
    assert_eq!(over_tcp[2] & 0x02, 0);
    assert_eq!(u16::from_be_bytes([over_tcp[6], over_tcp[7]]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_names_under_one_zone_share_its_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "[rrl]\nenabled = true\nrate = 10\nslip = 0\n[cookies]\nenabled = false\n",
    )
    .await;
    let addr = server.addr("all", "udp");
    // A random-subdomain flood: every name differs, every answer is NXDOMAIN from one zone.
    let t = flood(
        CLIENT.parse().unwrap(),
        addr,
        400,
        |i| format!("r{i}x.example.com"),
        None,
    )
    .await;
    assert!(
        t.full <= 40,
        "{} NXDOMAIN answers for 400 random names: {t:?}",
        t.full
    );
    assert_eq!(t.truncated, 0, "slip = 0 drops every limited response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_counts_and_exempt_networks_pass() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "[rrl]\nenabled = true\nrate = 5\ndry_run = true\n[cookies]\nenabled = false\n",
    )
    .await;
    let before = metric("gslbd_rrl_limited_total{kind=\"positive\",action=\"dry_run\"}");
    let t = flood(
        CLIENT.parse().unwrap(),
        server.addr("all", "udp"),
        100,
        |_| "big.example.com".into(),
        None,
    )
    .await;
    assert_eq!(t.full, 100, "{t:?}");
    assert!(metric("gslbd_rrl_limited_total{kind=\"positive\",action=\"dry_run\"}") >= before + 90);

    let dir = tempfile::tempdir().unwrap();
    let server = start(
        dir.path(),
        "[rrl]\nenabled = true\nrate = 5\nexempt_networks = [\"127.0.2.0/24\"]\n",
    )
    .await;
    let addr = server.addr("all", "udp");
    let exempt = flood(
        "127.0.2.9".parse().unwrap(),
        addr,
        100,
        |_| "big.example.com".into(),
        None,
    )
    .await;
    assert_eq!(exempt.full, 100, "{exempt:?}");
    let limited = flood(
        "127.0.3.9".parse().unwrap(),
        addr,
        100,
        |_| "big.example.com".into(),
        None,
    )
    .await;
    assert!(limited.full < 50, "{limited:?}");
}

/// RFC 7873 5.2.3 under rate limiting: a client that sends a cookie is slipped a BADCOOKIE with
/// a server cookie; sending it back, it is known not to be spoofed and is answered every time,
/// while a spoofer at the same address (no cookie, or another client cookie with ours) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_server_cookie_is_exempt_from_rate_limits() {
    // On both UDP paths: the fast path's tables and the general path judge cookies alike.
    for fast_path in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let server = start(
            dir.path(),
            &format!(
                "[limits]\nudp_fast_path = {fast_path}\n[rrl]\nenabled = true\nrate = 5\nslip = 1\n\
                 [cookies]\nsecret = \"000102030405060708090a0b0c0d0e0f\"\n"
            ),
        )
        .await;
        let addr = server.addr("all", "udp");
        let client: IpAddr = CLIENT.parse().unwrap();
        let big = |_| "big.example.com".to_string();
        let first = flood(client, addr, 40, big, Some(b"clientck")).await;
        assert!(first.full <= 10, "fast path {fast_path}: {first:?}");
        assert!(
            first.badcookie > 20,
            "fast path {fast_path}: slips are BADCOOKIE: {first:?}"
        );
        let cookie = first.cookie.clone().expect("a server cookie was given");
        assert_eq!(cookie.len(), 24);
        assert_eq!(&cookie[..8], b"clientck");
        let with = flood(client, addr, 200, big, Some(&cookie)).await;
        assert_eq!(with.full, 200, "fast path {fast_path}: {with:?}");
        // Our server cookie with another client cookie is not valid.
        let mut forged = cookie.clone();
        forged[..8].copy_from_slice(b"spoofer!");
        let spoofed = flood(client, addr, 40, big, Some(&forged)).await;
        assert!(spoofed.full <= 10, "fast path {fast_path}: {spoofed:?}");
        // Over TCP the cookie is answered too (and nothing is limited).
        let mut q = Q::new("big.example.com", 16);
        let mut opt = vec![0, 10, 0, 24];
        opt.extend_from_slice(&cookie);
        q.edns = Some((1232, 0, false, opt));
        let reply = common::tcp_raw(server.addr("all", "tcp"), &q.bytes())
            .await
            .expect("TCP answers");
        assert_eq!(cookie_of(&reply).as_deref(), Some(&cookie[..]));
    }
}

// ---------------------------------------------------------------------------------------------
// Cookies between gslbd, NSD and Knot

const SECRET: &str = "5ee1a5ec12e7c0000de5ec2e7c0001e5";

struct Daemon {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns hostmaster 1 3600 900 604800 60\n@ NS ns\nns A 127.0.0.1\nwww A 127.0.0.9\n";

/// NSD or Knot serving `ZONE` with cookies answered under `SECRET`.
async fn peer(name: &str) -> Daemon {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let port = free_port();
        std::fs::write(dir.path().join("zone"), ZONE).unwrap();
        let conf = dir.path().join("peer.conf");
        let mut cmd = if name == "nsd" {
            std::fs::write(
                &conf,
                format!(
                    "server:\n  ip-address: 127.0.0.1@{port}\n  username: \"\"\n  chroot: \"\"\n  \
                     zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  \
                     xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  \
                     server-count: 1\n  rrl-ratelimit: 0\n  answer-cookie: yes\n  \
                     cookie-secret: \"{SECRET}\"\n  cookie-secret-file: \"{d}/none\"\n\
                     remote-control:\n  control-enable: no\n\
                     zone:\n  name: example.com\n  zonefile: \"{d}/zone\"\n"
                ),
            )
            .unwrap();
            let mut c = common::tool("nsd");
            c.arg("-d").arg("-c").arg(&conf);
            c
        } else {
            std::fs::write(
                &conf,
                format!(
                    "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n  udp-workers: 1\n  \
                     tcp-workers: 1\n  background-workers: 1\n\
                     control:\n  listen: \"{d}/knot.sock\"\n\
                     database:\n  storage: \"{d}\"\n\
                     mod-cookies:\n  - id: shared\n    secret: 0x{SECRET}\n\
                     template:\n  - id: default\n    storage: \"{d}\"\n    \
                     global-module: mod-cookies/shared\n\
                     zone:\n  - domain: example.com\n    file: \"{d}/zone\"\n"
                ),
            )
            .unwrap();
            let mut c = common::tool("knotd");
            c.arg("-c").arg(&conf);
            c
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if common::udp_raw(daemon.addr, &Q::new("www.example.com", 1).bytes())
                .await
                .is_some()
            {
                return daemon;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("{name} did not start");
}

/// The COOKIE kdig prints for a query to `server` sending `cookie` (hex).
fn kdig_cookie(server: SocketAddr, cookie: &str) -> (String, String) {
    let out = common::tool("kdig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .arg(format!("+cookie={cookie}"))
        .arg("+nobadcookie")
        .arg("+retry=1")
        .arg("+time=2")
        .args(["www.example.com", "A"])
        .output()
        .expect("kdig runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("")
        .to_string();
    let got = text
        .split("COOKIE: ")
        .nth(1)
        .map(|s| s.split_whitespace().next().unwrap_or("").to_lowercase())
        .unwrap_or_default();
    (status, got)
}

/// Waits for the wall clock's second to change: a cookie made from now on has a newer timestamp
/// than one made before, so "sent back unchanged" (accepted) and "made anew" (not ours) differ.
async fn next_second() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let s = now();
    while now() == s {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_made_by_nsd_knot_and_gslbd_are_accepted_by_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let gslbd = start(dir.path(), &format!("[cookies]\nsecret = \"{SECRET}\"\n")).await;
    let (nsd, knot) = (peer("nsd").await, peer("knot").await);
    let servers = [
        ("gslbd", gslbd.addr("all", "udp")),
        ("nsd", nsd.addr),
        ("knot", knot.addr),
    ];
    let client = "0123456789abcdef";
    for (issuer, from) in servers {
        let (status, issued) = kdig_cookie(from, client);
        // Knot answers a client cookie alone with BADCOOKIE and its server cookie (RFC 7873
        // 5.2.3 lets a server choose that); NSD and gslbd answer the question with it.
        let expect = if issuer == "knot" {
            "BADCOOKIE"
        } else {
            "NOERROR"
        };
        assert_eq!(status, expect, "{issuer}");
        assert_eq!(
            issued.len(),
            48,
            "{issuer} gave a client + server cookie: {issued}"
        );
        assert!(issued.starts_with(client));
        next_second().await;
        for (judge, to) in servers {
            // Accepted: sent back as it came (younger than half an hour, RFC 9018 4.3).
            let (status, back) = kdig_cookie(to, &issued);
            assert_eq!(
                (status.as_str(), back.as_str()),
                ("NOERROR", issued.as_str()),
                "a cookie {issuer} made, sent to {judge}"
            );
        }
        // One hash octet changed: no one's cookie; each makes the same fresh one.
        let mut forged = issued.clone();
        let last = if forged.ends_with('0') { "1" } else { "0" };
        forged.replace_range(47.., last);
        let fresh: Vec<String> = servers
            .iter()
            .map(|(judge, to)| {
                let (_, back) = kdig_cookie(*to, &forged);
                assert_ne!(back, forged, "{judge} accepted a forged cookie");
                back
            })
            .collect();
        // Made in the same second by all three (else this run straddled a second: compare two).
        assert!(
            fresh[0] == fresh[1] || fresh[1] == fresh[2],
            "fresh cookies for one client from one secret: {fresh:?}"
        );
    }
}
