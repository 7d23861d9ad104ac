//! The real `gslbd` binary, driven from outside as an operator would: `dig` walking the lab world,
//! `gslbd check` on broken configurations, and SIGHUP reload while queries keep arriving.
//!
//! Every server is started on loopback with `--port 0` (one shared ephemeral port) and killed when
//! its guard drops; every wait has a deadline. `dig` (bind9-dnsutils) is required: `.ci/run`
//! installs it, and a test that needs it fails (never skips) when it is missing.

mod common;

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;

const BIN: &str = env!("CARGO_BIN_EXE_gslbd");

/// How long a server may take to come up, or to log the outcome of a reload.
const STARTUP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The server process

/// A running `gslbd`, killed (and reaped) on drop. Its stderr is read on a background thread, so
/// the pipe never fills; every line is kept with the moment it was read.
struct Gslbd {
    child: Child,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    reader: Option<JoinHandle<()>>,
}

impl Gslbd {
    fn start(args: &[&str]) -> Gslbd {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        Gslbd {
            child,
            log,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn log_text(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for a stderr line at index `from` or later that contains `needle`; returns its index
    /// and the moment it was read. Panics (with the whole log) on timeout or if gslbd exits.
    fn wait_for(&mut self, needle: &str, from: usize) -> (usize, Instant) {
        let deadline = Instant::now() + STARTUP;
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some(i) = (from..log.len()).find(|&i| log[i].1.contains(needle)) {
                    return (i, log[i].0);
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader drain what is left before showing the log.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "gslbd exited ({status}) before logging \"{needle}\"; stderr:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "gslbd did not log \"{needle}\" within {STARTUP:?}; stderr:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The shared port, from `listening on udp 127.0.0.1:PORT (...)`.
    fn wait_port(&mut self) -> u16 {
        let (i, _) = self.wait_for("listening on udp 127.0.0.1:", 0);
        let line = self.log.lock().unwrap()[i].1.clone();
        let addr = line
            .split("listening on udp ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("cannot find the address in {line:?}"));
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("bad address {addr:?} in {line:?}: {e}"));
        assert_ne!(addr.port(), 0, "--port 0 must be replaced by the real port");
        addr.port()
    }

    fn sighup(&self) {
        let status = common::tool("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -HUP {} failed: {status}",
            self.pid()
        );
    }
}

impl Drop for Gslbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Runs a command to completion, killing it if it outlives `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + limit;
    // The outputs are small (one DNS answer), far below a pipe's capacity: polling cannot block.
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            panic!(
                "{cmd:?} did not finish within {limit:?}; stdout:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn gslbd_check(config: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("check").env("RUST_LOG", "info");
    if let Some(c) = config {
        cmd.arg("-c").arg(c);
    }
    run_bounded(&mut cmd, Duration::from_secs(20)).expect("run gslbd check")
}

// ---------------------------------------------------------------------------------------------
// dig

/// One resource record as dig prints it: owner (lowercased), TTL, type, RDATA.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rr {
    name: String,
    ttl: u32,
    rtype: String,
    rdata: String,
}

impl Rr {
    /// "owner TYPE rdata", the form the assertions compare (TTLs are checked where they matter).
    fn short(&self) -> String {
        format!("{} {} {}", self.name, self.rtype, self.rdata)
    }
}

#[derive(Debug, Clone)]
struct Dig {
    status: String,
    flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    text: String,
}

impl Dig {
    fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }

    fn short(section: &[Rr]) -> Vec<String> {
        section.iter().map(Rr::short).collect()
    }

    fn sorted(section: &[Rr]) -> Vec<Rr> {
        let mut v = section.to_vec();
        v.sort();
        v
    }

    /// Everything but the message ID and timing: what "the same answer" means.
    fn essence(&self) -> (String, Vec<String>, Vec<Rr>, Vec<Rr>, Vec<Rr>) {
        let mut flags = self.flags.clone();
        flags.sort();
        (
            self.status.clone(),
            flags,
            Dig::sorted(&self.answer),
            Dig::sorted(&self.authority),
            Dig::sorted(&self.additional),
        )
    }

    fn parse(text: &str) -> Dig {
        let mut status = None;
        let mut flags = None;
        let (mut answer, mut authority, mut additional) = (Vec::new(), Vec::new(), Vec::new());
        let mut section: Option<&mut Vec<Rr>> = None;
        for line in text.lines() {
            let line = line.trim_end();
            if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
                status = rest
                    .split(',')
                    .find_map(|p| p.trim().strip_prefix("status: "))
                    .map(str::to_string);
            } else if let Some(rest) = line.strip_prefix(";; flags:") {
                let f = rest.split(';').next().unwrap_or("");
                flags = Some(f.split_whitespace().map(str::to_string).collect());
            } else if line == ";; ANSWER SECTION:" {
                section = Some(&mut answer);
            } else if line == ";; AUTHORITY SECTION:" {
                section = Some(&mut authority);
            } else if line == ";; ADDITIONAL SECTION:" {
                section = Some(&mut additional);
            } else if line.is_empty() || line.starts_with(';') {
                if line.is_empty() {
                    section = None;
                }
            } else if let Some(s) = section.as_mut() {
                let f: Vec<&str> = line.split_whitespace().collect();
                assert!(f.len() >= 5, "unexpected record line {line:?} in:\n{text}");
                s.push(Rr {
                    name: f[0].to_lowercase(),
                    ttl: f[1].parse().unwrap_or_else(|_| panic!("TTL in {line:?}")),
                    rtype: f[3].to_string(),
                    rdata: f[4..].join(" "),
                });
            }
        }
        Dig {
            status: status.unwrap_or_else(|| panic!("no status in dig output:\n{text}")),
            flags: flags.unwrap_or_else(|| panic!("no flags in dig output:\n{text}")),
            answer,
            authority,
            additional,
            text: text.to_string(),
        }
    }
}

/// `dig @server -p port +norec [extra...] name`, one try, bounded in time.
fn dig(server: &str, port: u16, name: &str, extra: &[&str]) -> Dig {
    let mut cmd = common::tool("dig");
    cmd.arg(format!("@{server}"))
        .args(["-p", &port.to_string()])
        .args(["+norec", "+time=2", "+tries=1"])
        .args(extra)
        .arg(name);
    dig_run(&mut cmd)
}

fn dig_run(cmd: &mut Command) -> Dig {
    let out = run_bounded(cmd, Duration::from_secs(10)).expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Dig::parse(&text)
}

fn start_lab() -> (Gslbd, u16) {
    let mut lab = Gslbd::start(&["serve", "--port", "0"]);
    let port = lab.wait_port();
    // The hints come after the listening lines; wait for their end.
    lab.wait_for("SIGHUP reloads; Ctrl-C stops.", 0);
    (lab, port)
}

const WWW_A: [&str; 4] = [
    "www.yourcompany.com. A 192.0.2.10",
    "www.yourcompany.com. A 192.0.2.11",
    "www.yourcompany.com. A 192.0.2.12",
    "www.yourcompany.com. A 192.0.2.13",
];

fn sorted(v: Vec<String>) -> Vec<String> {
    let mut v = v;
    v.sort();
    v
}

fn assert_referral(d: &Dig, ns: &[&str], glue: &[&str]) {
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.has_flag("qr"), "{}", d.text);
    assert!(
        !d.has_flag("aa"),
        "a referral is not authoritative:\n{}",
        d.text
    );
    assert!(d.answer.is_empty(), "a referral has no answer:\n{}", d.text);
    assert_eq!(
        sorted(Dig::short(&d.authority)),
        ns.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "{}",
        d.text
    );
    assert_eq!(
        sorted(Dig::short(&d.additional)),
        glue.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "{}",
        d.text
    );
}

fn assert_api_answer(d: &Dig) {
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(
        d.has_flag("aa"),
        "authoritative data must carry AA:\n{}",
        d.text
    );
    assert!(!d.has_flag("ra"), "gslbd does not recurse:\n{}", d.text);
    let answer = Dig::short(&d.answer);
    assert_eq!(
        answer.first().map(String::as_str),
        Some("api.yourcompany.com. CNAME www.yourcompany.com."),
        "the CNAME comes first:\n{}",
        d.text
    );
    assert_eq!(sorted(answer[1..].to_vec()), WWW_A, "{}", d.text);
    assert!(d.answer.iter().all(|r| r.ttl == 300), "{}", d.text);
}

// ---------------------------------------------------------------------------------------------
// 1. dig walks the lab world

#[test]
fn dig_walks_the_lab_world() {
    let (lab, port) = start_lab();

    // The lab says how to query it, with the real port.
    let log = lab.log_text();
    for hint in [
        format!("dig @127.0.0.1 -p {port} api.yourcompany.com"),
        format!("dig @127.0.0.1 -p {port} object.yourcompany.com"),
        format!("dig @127.0.1.1 -p {port} www.yourcompany.com"),
        format!("dig @127.0.0.1 -p {port} +norec nothere.yourcompany.com"),
        format!("dig @127.0.0.1 -p {port} -b 127.0.11.1 object.yourcompany.com"),
        format!("dig @127.0.0.1 -p {port} +subnet=2001:db8:b::/48 object.yourcompany.com"),
        "explain object.yourcompany.com --client 127.0.10.1".to_string(),
        format!("dig @127.0.10.1 -p {port} object.yourcompany.com"),
        format!("dig @127.0.11.1 -p {port} object.yourcompany.com"),
        "resolve object.yourcompany.com --trace".to_string(),
    ] {
        assert!(log.contains(&hint), "no hint \"{hint}\" in:\n{log}");
    }
    // The gslbd commands it prints run as printed, installed or not (here the binary is not on
    // PATH: the banner names its path).
    let explain = log
        .lines()
        .find(|l| l.contains(" explain object.yourcompany.com"))
        .unwrap();
    let words: Vec<&str> = explain
        .split('#')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let out = run_bounded(
        Command::new(words[0]).args(&words[1..]),
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("{explain:?} does not run: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("line mobile -> CNAME object.yd.yourcompany.com."),
        "{explain:?}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the hints work as printed.
    let hints: Vec<String> = log
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("dig @"))
        .map(|l| format!("@{}", l.split('#').next().unwrap().trim()))
        .collect();
    assert_eq!(hints.len(), 8, "{log}");
    for h in &hints {
        let mut cmd = common::tool("dig");
        cmd.args(h.split_whitespace()).args(["+time=2", "+tries=1"]);
        let d = dig_run(&mut cmd);
        let want = if h.contains("nothere") {
            "NXDOMAIN"
        } else {
            "NOERROR"
        };
        assert_eq!(d.status, want, "dig {h}:\n{}", d.text);
    }

    // (a) The root refers www.yourcompany.com to com., with glue for the TLD server.
    let a = dig("127.0.1.1", port, "www.yourcompany.com", &[]);
    assert_referral(
        &a,
        &["com. NS a.gtld-servers.net."],
        &["a.gtld-servers.net. A 127.0.2.1"],
    );

    // (b) The TLD server refers it to yourcompany.com.'s own servers, with their glue.
    let b = dig("127.0.2.1", port, "www.yourcompany.com", &[]);
    assert_referral(
        &b,
        &[
            "yourcompany.com. NS ns1.yourcompany.com.",
            "yourcompany.com. NS ns2.yourcompany.com.",
        ],
        &[
            "ns1.yourcompany.com. A 127.0.3.1",
            "ns2.yourcompany.com. A 127.0.3.2",
        ],
    );

    // (c) The company's server answers api with the CNAME and the four www addresses.
    let c = dig("127.0.3.1", port, "api.yourcompany.com", &[]);
    assert_api_answer(&c);
    // ... and so does its second address.
    let c2 = dig("127.0.3.2", port, "api.yourcompany.com", &[]);
    assert_eq!(c2.essence(), c.essence(), "{}\n{}", c.text, c2.text);

    // (d) The whole object chain in one answer, decided by the GSLB: from 127.0.0.1 (no geo data)
    // the default line and region ...
    let d = dig("127.0.0.1", port, "object.yourcompany.com", &[]);
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.has_flag("aa"), "{}", d.text);
    let answer = Dig::short(&d.answer);
    assert_eq!(answer.len(), 8, "2 CNAMEs + 6 A:\n{}", d.text);
    assert_eq!(
        answer[..2],
        [
            "object.yourcompany.com. CNAME object.vip.yourcompany.com.",
            "object.vip.yourcompany.com. CNAME object.bgp.yourcompany.com.",
        ],
        "the chain in order:\n{}",
        d.text
    );
    let bgp_bj: Vec<String> = (11..=16)
        .map(|i| format!("object.bgp.yourcompany.com. A 203.0.113.{i}"))
        .collect();
    assert_eq!(sorted(answer[2..].to_vec()), bgp_bj, "{}", d.text);
    // ... and from the telecom LDNS's address (dig -b), the telecom line's Shanghai SLBs.
    let dx = dig(
        "127.0.0.1",
        port,
        "object.yourcompany.com",
        &["-b", "127.0.11.1"],
    );
    let answer = Dig::short(&dx.answer);
    assert_eq!(
        answer[1], "object.vip.yourcompany.com. CNAME object.dx.yourcompany.com.",
        "{}",
        dx.text
    );
    let dx_sh: Vec<String> = (81..=86)
        .map(|i| format!("object.dx.yourcompany.com. A 203.0.113.{i}"))
        .collect();
    assert_eq!(sorted(answer[2..].to_vec()), dx_sh, "{}", dx.text);
    // ... and with ECS (dig +subnet) the subnet decides, and the scope comes back.
    let ecs = dig(
        "127.0.0.1",
        port,
        "object.yourcompany.com",
        &["+subnet=2001:db8:b::/48"],
    );
    assert!(
        ecs.text.contains("CLIENT-SUBNET: 2001:db8:b::/48/48"),
        "{}",
        ecs.text
    );
    assert!(
        Dig::short(&ecs.answer)
            .contains(&"object.vip.yourcompany.com. CNAME object.dx.yourcompany.com.".to_string()),
        "{}",
        ecs.text
    );

    // (e) TCP gives what UDP gives.
    let e = dig("127.0.3.1", port, "api.yourcompany.com", &["+tcp"]);
    assert!(e.text.contains("(TCP)"), "dig did not use TCP:\n{}", e.text);
    assert_api_answer(&e);
    assert_eq!(
        e.essence(),
        c.essence(),
        "UDP:\n{}\nTCP:\n{}",
        c.text,
        e.text
    );

    // (f) A `dig +trace`-like walk: follow referrals from the root by glue alone.
    let mut server = "127.0.1.1".to_string();
    let mut path = vec![server.clone()];
    let mut last = None;
    for _ in 0..5 {
        let r = dig(&server, port, "www.yourcompany.com", &[]);
        assert_eq!(r.status, "NOERROR", "at {server}:\n{}", r.text);
        if r.has_flag("aa") {
            last = Some(r);
            break;
        }
        assert!(r.answer.is_empty(), "at {server}:\n{}", r.text);
        let ns: Vec<&Rr> = r.authority.iter().filter(|x| x.rtype == "NS").collect();
        assert!(
            !ns.is_empty(),
            "neither answer nor referral at {server}:\n{}",
            r.text
        );
        let next = ns
            .iter()
            .find_map(|n| {
                r.additional
                    .iter()
                    .find(|g| g.rtype == "A" && g.name == n.rdata.to_lowercase())
            })
            .unwrap_or_else(|| panic!("referral without glue at {server}:\n{}", r.text));
        server = next.rdata.clone();
        path.push(server.clone());
    }
    let last = last.unwrap_or_else(|| panic!("no authoritative answer after 5 steps: {path:?}"));
    assert_eq!(path, ["127.0.1.1", "127.0.2.1", "127.0.3.1"]);
    assert_eq!(sorted(Dig::short(&last.answer)), WWW_A, "{}", last.text);
    drop(lab);
}

// ---------------------------------------------------------------------------------------------
// 2. gslbd check

fn broken(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/broken")
        .join(name)
}

/// `gslbd check -c tests/data/broken/<config>` fails with exactly one problem, and that problem
/// starts with `want_prefix` and contains `want_text`.
fn check_fails(config: &str, want_prefix: &str, want_text: &str) {
    let path = broken(config);
    let out = gslbd_check(Some(&path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "gslbd check {config} must exit 1; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: 1 problem(s)", path.display())),
        "{config}: exactly one problem expected:\n{stderr}"
    );
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with(want_prefix),
        "{config}: the problem should start with \"{want_prefix}\":\n{stderr}"
    );
    assert!(
        first.contains(want_text),
        "{config}: the problem should say \"{want_text}\":\n{stderr}"
    );
}

fn at(file: &str, line: usize) -> String {
    format!("{}:{line}: ", broken(file).display())
}

#[test]
fn check_names_file_and_line() {
    check_fails(
        "bad-ipv4.toml",
        &at("bad-ipv4.zone", 6),
        "invalid IPv4 address \"192.0.2.300\"",
    );
    check_fails(
        "unknown-type.toml",
        &at("unknown-type.zone", 7),
        "unknown record type \"BOGUS\"",
    );
    // Whole-zone problems are reported at the zone's first record (never at a line 0).
    check_fails("no-soa.toml", &at("no-soa.zone", 4), "no SOA record");
    check_fails(
        "no-apex-ns.toml",
        &at("no-apex-ns.zone", 4),
        "no NS records",
    );
    // The line of the CNAME (9), not that of the A record written first (7).
    check_fails(
        "cname-beside-data.toml",
        &at("cname-beside-data.zone", 9),
        "CNAME at www.example.org. beside other data (A)",
    );
    check_fails(
        "outside-zone.toml",
        &at("outside-zone.zone", 7),
        "www.example.net. is outside the zone example.org.",
    );
    check_fails(
        "ns-no-glue.toml",
        &at("ns-no-glue.zone", 8),
        "NS target ns1.child.example.org. of child.example.org. is inside the zone",
    );
    // The included file and its line, not the $INCLUDE line of the outer file.
    check_fails(
        "include-error.toml",
        &at("include-inner.zone", 4),
        "invalid IPv6 address \"2001:db8::zz\"",
    );
    // Config problems: one line, the TOML file and line named, with the offending key.
    check_fails(
        "unknown-key.toml",
        &at("unknown-key.toml", 6),
        "unknown field `colour`",
    );
    let out = gslbd_check(Some(&broken("unknown-key.toml")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field `colour`"), "{stderr}");
    check_fails(
        "undefined-zone.toml",
        &format!(
            "{}: listener \"all\" serves zone \"example.com.\"",
            broken("undefined-zone.toml").display()
        ),
        "which no [[zone]] defines",
    );
    // GSLB and geo problems: the rule or the file (and line) named.
    let cfg = |f: &str| format!("{}: ", broken(f).display());
    check_fails(
        "gslb-outside.toml",
        &cfg("gslb-outside.toml"),
        "GSLB rule app.example.net.: no [[zone]] contains this name",
    );
    check_fails(
        "gslb-conflict.toml",
        &cfg("gslb-conflict.toml"),
        "www.example.org. also has records in",
    );
    check_fails(
        "gslb-unknown-carrier.toml",
        &cfg("gslb-unknown-carrier.toml"),
        "line \"mobil\" is not a carrier defined under [geo.carrier]",
    );
    check_fails(
        "gslb-unknown-region.toml",
        &cfg("gslb-unknown-region.toml"),
        "pool \"shanghai\" names no [gslb.region.shanghai]",
    );
    check_fails(
        "geo-bad-csv.toml",
        &at("bad-geo.csv", 3),
        "bad network \"198.51.100.0/33\"",
    );
    check_fails(
        "geo-wrong-schema.toml",
        "",
        "GeoLite2-City-Test.mmdb: is a GeoLite2-City database, asn_db needs an ASN or ISP database",
    );
    check_fails(
        "geo-missing.toml",
        &format!("{}: ", broken("GeoIP2-City.mmdb").display()),
        "cannot read database",
    );
    // Resolver problems: the hints file and line, or the setting.
    check_fails(
        "resolver-bad-hints.toml",
        &at("bad.hints", 3),
        "bad address 127.0.1.300",
    );
    check_fails(
        "resolver-bad-allow.toml",
        &cfg("resolver-bad-allow.toml"),
        "resolver listener \"r\": allow \"10.0.0.0/33\" is not a network",
    );
    check_fails(
        "resolver-bad-port.toml",
        &cfg("resolver-bad-port.toml"),
        "resolver upstream_port \"fifty-three\": a port number or \"listen\"",
    );
    check_fails(
        "resolver-listen-alone.toml",
        &cfg("resolver-listen-alone.toml"),
        "upstream_port = \"listen\" needs a DNS [[listener]] of ours",
    );
    // The control: the same layout without a problem passes.
    let good = gslbd_check(Some(&broken("good.toml")));
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

#[test]
fn check_passes_on_the_lab_and_the_battery() {
    let lab = gslbd_check(None);
    let stdout = String::from_utf8_lossy(&lab.stdout);
    assert!(
        lab.status.success(),
        "gslbd check (the lab) failed:\n{stdout}{}",
        String::from_utf8_lossy(&lab.stderr)
    );
    assert!(stdout.contains("the built-in lab world: ok ("), "{stdout}");

    let battery = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/battery/battery.toml");
    let out = gslbd_check(Some(&battery));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gslbd check {} failed:\n{stdout}{}",
        battery.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": ok ("), "{stdout}");
}

/// The lab's files (`zones/`, `geo/`) copied into `dir`; returns `dir/zones/lab.toml`.
fn lab_copy(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["zones", "geo"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for e in std::fs::read_dir(root.join(sub)).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    dir.join("zones/lab.toml")
}

/// Replaces the one occurrence of `from` in the file at `path`; returns its 1-based line.
fn edit(path: &Path, from: &str, to: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} in {}",
        path.display()
    );
    let line = text[..text.find(from).unwrap()].matches('\n').count() + 1;
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    line
}

/// `gslbd check -c config`: exit 1 and exactly the problems `want`, in order, then the count.
fn check_gives(config: &Path, want: &[String]) {
    let out = gslbd_check(Some(config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let mut lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.pop(),
        Some(format!("{}: {} problem(s)", config.display(), want.len()).as_str()),
        "{stderr}"
    );
    assert_eq!(lines, want, "{stderr}");
}

/// One bad record is one problem: its zone does not load, and what depends on that zone (the
/// GSLB rules on its names, checks of the records it would have had) is not reported as five
/// more problems that would send the reader to the wrong place.
#[test]
fn one_bad_record_gives_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = lab_copy(dir.path());
    let zone = dir.path().join("zones/yourcompany.com.zone");
    // ns1 is the zone's own nameserver and the GSLB's five rules live in this zone.
    let line = edit(&zone, "IN A    127.0.3.1\n", "IN A    127.0.3.x\n");
    check_gives(
        &config,
        &[format!(
            "{}:{line}: invalid IPv4 address \"127.0.3.x\"",
            zone.display()
        )],
    );
}

/// Every problem that can be found is reported in one run: each bad record of a zone (reading
/// goes on after one), a geo file that does not load and a GSLB rule's own mistake together.
#[test]
fn check_reports_every_problem_in_one_round() {
    let dir = tempfile::tempdir().unwrap();
    let config = lab_copy(dir.path());
    let zone = dir.path().join("zones/yourcompany.com.zone");
    let a = edit(&zone, "IN A    127.0.3.1\n", "IN A    127.0.3.x\n");
    let b = edit(&zone, "IN A    192.0.2.10\n", "IN A    192.0.2.300\n");
    let c = edit(&zone, "IN A    192.0.2.11\n", "IN BOGUS 192.0.2.11\n");
    edit(
        &config,
        "city_db = \"../geo/lab.csv\"",
        "city_db = \"../geo/GeoLite2-City.mmdb\"",
    );
    // The first location rule's `answer = 6` (the rules come after [geo] in the file).
    let text = std::fs::read_to_string(&config).unwrap();
    let at = text.find("[[gslb.location]]").unwrap();
    let rule = text[at..].find("answer = 6").unwrap() + at;
    std::fs::write(
        &config,
        format!("{}answer = 99{}", &text[..rule], &text[rule + 10..]),
    )
    .unwrap();
    let z = zone.display();
    let cfg = config.display();
    check_gives(
        &config,
        &[
            format!("{z}:{a}: invalid IPv4 address \"127.0.3.x\""),
            format!("{z}:{b}: invalid IPv4 address \"192.0.2.300\""),
            format!("{z}:{c}: unknown record type \"BOGUS\""),
            format!(
                "{}/zones/../geo/GeoLite2-City.mmdb: cannot read database: No such file or \
                 directory (os error 2)",
                dir.path().display()
            ),
            format!(
                "{cfg}: [[gslb.location]] object.yd.yourcompany.com.: answer = 99: must be 1 to 16"
            ),
        ],
    );
}

/// Port 53 without the privilege to bind it: the error names the address and says what grants
/// it, and the systemd unit it points at does grant it. Runs the binary as `nobody` when the
/// test runs as root (as CI does), directly otherwise.
#[test]
fn binding_port_53_unprivileged_says_what_to_do() {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .map_or(1024, |s| s.trim().parse::<u16>().unwrap_or(1024));
    assert!(
        start > 53,
        "net.ipv4.ip_unprivileged_port_start = {start}: port 53 needs no privilege on this \
         machine, so this test cannot provoke the error (sysctl -w \
         net.ipv4.ip_unprivileged_port_start=1024 restores the default)"
    );
    let dir = tempfile::tempdir().unwrap();
    // `nobody` must be able to read the configuration.
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
    };
    mode(dir.path(), 0o755);
    std::fs::write(
        dir.path().join("example.org.zone"),
        "$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 900 1209600 300\n  IN NS ns1\nns1 IN A 192.0.2.1\n",
    )
    .unwrap();
    let config = dir.path().join("gslbd.toml");
    std::fs::write(
        &config,
        "[[zone]]\nname = \"example.org.\"\nfile = \"example.org.zone\"\n\n[[listener]]\n\
         name = \"public\"\naddresses = [\"127.0.0.153:53\"]\nzones = [\"*\"]\n",
    )
    .unwrap();
    mode(&dir.path().join("example.org.zone"), 0o644);
    mode(&config, 0o644);
    // SAFETY: geteuid only reads the process's credentials.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = common::tool("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    cmd.arg("serve").arg("-c").arg(&config);
    let out = run_bounded(&mut cmd, Duration::from_secs(20)).expect("run gslbd serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        "cannot bind 127.0.0.153:53 (udp): Permission denied",
        "port 53 needs root or the CAP_NET_BIND_SERVICE capability",
        "setcap cap_net_bind_service=+ep",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE as deploy/gslbd.service does",
    ] {
        assert!(stderr.contains(want), "no {want:?} in:\n{stderr}");
    }
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/gslbd.service"))
            .unwrap();
    assert!(
        unit.lines()
            .any(|l| l.trim() == "AmbientCapabilities=CAP_NET_BIND_SERVICE"),
        "{unit}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. SIGHUP reload while a client keeps asking

const RELOAD_CONFIG: &str = r#"
[[zone]]
name = "example.org."
file = "example.org.zone"

[[listener]]
name = "all"
addresses = ["127.0.0.1:0"]
zones = ["*"]
"#;

fn reload_zone(serial: u32, v: &str) -> String {
    format!(
        "$ORIGIN example.org.\n\
         $TTL 60\n\
         @    IN SOA ns1 hostmaster {serial} 3600 900 1209600 60\n\
         @    IN NS  ns1\n\
         ns1  IN A   127.0.0.1\n\
         v    IN A   {v}\n"
    )
}

/// Replaces a file in one step, so a reload never sees half of it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn query_bytes(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // no RD; one question
    for label in name.trim_end_matches('.').split('.') {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b
}

/// One query of the load: when it was sent, when its reply came, what the reply said.
#[derive(Debug)]
struct Obs {
    sent: Instant,
    received: Option<Instant>,
    outcome: Result<Ipv4Addr, String>,
}

/// What a reply to `v.example.org A` must be: authoritative NOERROR with exactly one A record.
fn judge(id: u16, bytes: &[u8]) -> Result<Ipv4Addr, String> {
    let m = Message::from_vec(bytes).map_err(|e| format!("unparsable reply: {e}"))?;
    if m.metadata.id != id {
        return Err(format!("reply ID {} to query {id}", m.metadata.id));
    }
    if m.metadata.response_code != ResponseCode::NoError {
        return Err(format!("rcode {:?}", m.metadata.response_code));
    }
    if !m.metadata.authoritative {
        return Err("no AA".into());
    }
    match m.answers.as_slice() {
        [r] if r.name.to_ascii().eq_ignore_ascii_case("v.example.org.") => match &r.data {
            RData::A(a) => Ok(a.0),
            other => Err(format!("answer {other:?}")),
        },
        other => Err(format!("answers {other:?}")),
    }
}

/// Sends `v.example.org A` with one query outstanding at a time until `stop` (or `max` queries),
/// never retrying: a query without a reply within `per_query` is recorded as lost.
fn load_client(
    server: SocketAddr,
    stop: Arc<AtomicBool>,
    max: usize,
    per_query: Duration,
    pause: Duration,
) -> (Vec<Obs>, usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(server).unwrap();
    let mut obs = Vec::new();
    let mut strays = 0;
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::SeqCst) && obs.len() < max {
        let id = obs.len() as u16;
        let q = query_bytes(id, "v.example.org.", 1);
        let sent = Instant::now();
        sock.send(&q).expect("send the query");
        let deadline = sent + per_query;
        let (received, outcome) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break (None, Err("timeout".to_string()));
            }
            sock.set_read_timeout(Some(left)).unwrap();
            match sock.recv(&mut buf) {
                // A late reply to an earlier query (one that timed out): not this one's.
                Ok(n) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) != id => strays += 1,
                Ok(n) => break (Some(Instant::now()), judge(id, &buf[..n])),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => break (None, Err(format!("recv: {e}"))),
            }
        };
        obs.push(Obs {
            sent,
            received,
            outcome,
        });
        std::thread::sleep(pause);
    }
    (obs, strays)
}

#[test]
fn reload_under_load() {
    const OLD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const NEW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gslbd.toml");
    let zone = dir.path().join("example.org.zone");
    std::fs::write(&config, RELOAD_CONFIG).unwrap();
    write_atomically(&zone, &reload_zone(1, "192.0.2.1"));

    let mut gslbd = Gslbd::start(&["serve", "-c", config.to_str().unwrap(), "--port", "0"]);
    let port = gslbd.wait_port();
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            load_client(
                server,
                stop,
                8000,
                Duration::from_secs(1),
                Duration::from_micros(300),
            )
        })
    };
    // Stop the client even if an assertion below panics, so the test cannot hang on it.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _stop_guard = StopOnDrop(stop.clone());

    std::thread::sleep(Duration::from_millis(300));

    // (i) A broken zone: the reload fails, the old data keeps being served.
    let mut broken = reload_zone(2, "192.0.2.2");
    broken = broken.replace("v    IN A   192.0.2.2", "v    IN A   192.0.2.2.5");
    write_atomically(&zone, &broken);
    let from = gslbd.log_len();
    gslbd.sighup();
    let (failed_at, t_failed) = gslbd.wait_for("reload failed", from);
    let problem = format!("{}:6: invalid IPv4 address \"192.0.2.2.5\"", zone.display());
    gslbd.wait_for(&problem, failed_at);
    std::thread::sleep(Duration::from_millis(300));

    // (ii) A good zone with a new address and serial: the reload swaps it in.
    write_atomically(&zone, &reload_zone(2, "192.0.2.2"));
    let from = gslbd.log_len();
    let t_hup = Instant::now();
    gslbd.sighup();
    let (_, t_reloaded) = gslbd.wait_for("reloaded", from);
    std::thread::sleep(Duration::from_millis(500));

    stop.store(true, Ordering::SeqCst);
    let (obs, strays) = client.join().expect("the client thread");
    let ran = started.elapsed();

    // The new serial is what SOA says now.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&query_bytes(7, "example.org.", 6), server)
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut buf).expect("a reply to the SOA query");
    let soa = Message::from_vec(&buf[..n]).unwrap();
    match soa.answers.first().map(|r| &r.data) {
        Some(RData::SOA(s)) => assert_eq!(s.serial, 2),
        other => panic!("no SOA in the answer: {other:?}"),
    }

    // Every query answered, once, correctly.
    let ms = |t: Instant| -> i128 {
        if t >= t_reloaded {
            (t - t_reloaded).as_micros() as i128
        } else {
            -((t_reloaded - t).as_micros() as i128)
        }
    };
    let received = obs.iter().filter(|o| o.received.is_some()).count();
    let bad: Vec<String> = obs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.outcome.is_err() || o.received.is_none())
        .map(|(i, o)| format!("#{i} sent at {}us: {:?}", ms(o.sent), o.outcome))
        .take(10)
        .collect();
    assert_eq!(
        received,
        obs.len(),
        "{} queries sent, {received} answered; first problems: {bad:?}",
        obs.len()
    );
    assert!(bad.is_empty(), "bad replies: {bad:?}");
    assert_eq!(strays, 0, "replies that matched no outstanding query");
    assert!(
        obs.len() < 8000,
        "the client hit its cap before the test ended"
    );

    // Old, then new, switching once; never anything else.
    let addrs: Vec<(Instant, Instant, Ipv4Addr)> = obs
        .iter()
        .map(|o| (o.sent, o.received.unwrap(), *o.outcome.as_ref().unwrap()))
        .collect();
    for (i, &(sent, _, a)) in addrs.iter().enumerate() {
        assert!(a == OLD || a == NEW, "#{i} at {}us: {a}", ms(sent));
    }
    let switch = addrs
        .iter()
        .position(|&(_, _, a)| a == NEW)
        .unwrap_or(addrs.len());
    if let Some((i, &(sent, _, _))) = addrs[switch..].iter().enumerate().find(|(_, x)| x.2 == OLD) {
        panic!(
            "the old address came back after the new one: #{} sent at {}us",
            switch + i,
            ms(sent)
        );
    }
    // Replies that arrived before the second SIGHUP are old (the failed reload changed nothing);
    // queries sent after `reloaded` was logged are new. Between the two lies the swap.
    for (i, &(sent, got, a)) in addrs.iter().enumerate() {
        if got < t_hup {
            assert_eq!(
                a,
                OLD,
                "#{i} sent at {}us, before the good reload",
                ms(sent)
            );
        }
        if sent > t_reloaded {
            assert_eq!(a, NEW, "#{i} sent at {}us, after `reloaded`", ms(sent));
        }
    }
    // Each phase saw real traffic, so the checks above mean something.
    let count =
        |f: &dyn Fn(&(Instant, Instant, Ipv4Addr)) -> bool| addrs.iter().filter(|x| f(x)).count();
    let after_failure = count(&|&(s, g, _)| s > t_failed && g < t_hup);
    let after_reload = count(&|&(s, _, _)| s > t_reloaded);
    assert!(
        after_failure >= 20,
        "only {after_failure} queries between the failed reload and the good one"
    );
    assert!(
        after_reload >= 20,
        "only {after_reload} queries after the good reload"
    );
    assert!(ran < Duration::from_secs(15), "the run took {ran:?}");
    eprintln!(
        "reload under load: {} queries in {ran:?}, {after_failure} after the failed reload, \
         {after_reload} after the good one, swap at #{switch} ({}us from the log line)",
        obs.len(),
        addrs.get(switch).map_or(0, |x| ms(x.0))
    );
    drop(gslbd);
}

// ---------------------------------------------------------------------------------------------
// The test harness's own promise: a missing program fails with what to install

/// Tests never skip; a test whose program is missing fails with the command that installs it.
#[test]
fn a_missing_tool_fails_with_the_install_hint() {
    let empty = tempfile::tempdir().unwrap();
    let err = common::find_tool("kdig", empty.path().as_os_str()).unwrap_err();
    assert_eq!(
        err,
        "kdig not found: run .ci/run (it installs what the tests need), \
         or apt-get install knot-dnsutils"
    );
    // Found where PATH says, before the sbin folders.
    std::fs::write(empty.path().join("kdig"), "").unwrap();
    assert_eq!(
        common::find_tool("kdig", empty.path().as_os_str()),
        Ok(empty.path().join("kdig"))
    );
}

// ---------------------------------------------------------------------------------------------
// Geo data that looks right works, or is refused with the reason

/// `gslbd ARGS -c config`, bounded; (exit code, stdout, stderr).
fn gslbd(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("-c").arg(config);
    let out = run_bounded(&mut cmd, Duration::from_secs(20)).expect("run gslbd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A country-only database in the layout of ip-location-db's files (the CC BY 4.0 npm package
/// `@ip-location-db/geolite2-country-mmdb`: database type "GeoLite2-Country", records
/// `{country_code}`), made here in that format, given as `city_db`: lookups find the country and
/// a GSLB rule maps it to its region. A file of that type whose records hold nothing gslbd reads
/// is refused by `check`, saying so.
#[test]
fn a_country_only_mmdb_as_city_db_routes_by_country() {
    use mmdb_writer::Value;
    let dir = tempfile::tempdir().unwrap();
    let write_db = |name: &str, key: &str| {
        let mut w = mmdb_writer::Writer::new("GeoLite2-Country");
        for (net, cc) in [("1.0.1.0/24", "CN"), ("2001:db8:100::/40", "JP")] {
            w.insert_value(
                net.parse::<ipnet::IpNet>().unwrap(),
                Value::map([(key, cc)]),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join(name), w.to_bytes().unwrap()).unwrap();
    };
    write_db("country.mmdb", "country_code");
    write_db("useless.mmdb", "code");
    std::fs::write(
        dir.path().join("example.org.zone"),
        "$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 900 1209600 300\n  IN NS ns1\nns1 IN A 192.0.2.1\n",
    )
    .unwrap();
    let config = |db: &str| {
        let path = dir.path().join(format!("{db}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"
[[zone]]
name = "example.org."
file = "example.org.zone"

[[listener]]
name = "public"
addresses = ["127.0.0.1:0"]
zones = ["*"]

[geo]
city_db = "{db}.mmdb"

[gslb.region.cn]
location = [39.9042, 116.4074]
countries = ["CN"]
[gslb.region.jp]
location = [35.6762, 139.6503]
countries = ["JP"]

[[gslb.location]]
name = "app.example.org."
default = "jp"
pools.cn = ["192.0.2.10"]
pools.jp = ["192.0.2.20"]
"#
            ),
        )
        .unwrap();
        path
    };
    let good = config("country");
    let (code, stdout, stderr) = gslbd(&["check"], &good);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    let (code, stdout, stderr) = gslbd(&["geo", "lookup", "1.0.1.1"], &good);
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["country"], "CN", "{stdout}");
    assert_eq!(v["location_network"], "1.0.1.0/24", "{stdout}");

    for (client, want) in [("1.0.1.1", "192.0.2.10"), ("2001:db8:100::1", "192.0.2.20")] {
        let (code, stdout, stderr) = gslbd(
            &["explain", "app.example.org", "--client", client, "--json"],
            &good,
        );
        assert_eq!(code, Some(0), "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let answer = v.to_string();
        assert!(
            answer.contains(want)
                && !answer.contains(if want.ends_with("10") {
                    "192.0.2.20"
                } else {
                    "192.0.2.10"
                }),
            "{client} should be answered {want}:\n{stdout}"
        );
    }
    // The default region answers an address the database does not know.
    let (_, stdout, _) = gslbd(
        &[
            "explain",
            "app.example.org",
            "--client",
            "1.0.3.1",
            "--json",
        ],
        &good,
    );
    assert!(
        stdout.contains("192.0.2.20") && !stdout.contains("192.0.2.10"),
        "{stdout}"
    );

    let bad = config("useless");
    let (code, _, stderr) = gslbd(&["check"], &bad);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "{}: \"GeoLite2-Country\" database whose records have none of the fields gslbd reads",
            dir.path().join("useless.mmdb").display()
        )) && stderr.contains("its records have: code"),
        "{stderr}"
    );
}

/// Resident memory of process `pid` in bytes (VmRSS).
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// The lab's configuration with its files named by absolute path and `limits` added, written to
/// `dir` (the lab world itself, served from disk with other limits).
fn lab_config_with(dir: &Path, limits: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let zones = root.join("zones");
    let text = std::fs::read_to_string(zones.join("lab.toml"))
        .unwrap()
        .replace("\"../geo/", &format!("\"{}/geo/", root.display()))
        .replace("file = \"", &format!("file = \"{}/", zones.display()))
        .replace("hints = \"", &format!("hints = \"{}/", zones.display()))
        .replace("[limits]\n", &format!("[limits]\n{limits}\n"));
    let path = dir.join("lab.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Issue 13: the UDP fast path's tables (prebuilt answers, GSLB prefixes, geo caches) hold one
/// process-wide budget, `[limits] fast_path_memory`, whatever the flood: a random-name flood
/// (a new NXDOMAIN answer per name) and a random-ECS flood (a new GSLB prefix and geo entry per
/// client /24), from several sockets so both UDP threads of each address fill their tables.
/// Before, each address had 64 MiB and each thread a 65,536-entry geo cache besides.
#[test]
fn fast_path_memory_stays_within_its_budget_under_floods() {
    const BUDGET: usize = 16 << 20;
    // Allocator pages that stay resident after tables start over, thread stacks touched
    // deeper, socket buffers: measured 2-6 MiB on this machine.
    const SLACK: usize = 12 << 20;
    let dir = tempfile::tempdir().unwrap();
    let config = lab_config_with(
        dir.path(),
        &format!("fast_path_memory = {BUDGET}\nudp_workers = 2"),
    );
    let mut gslbd = Gslbd::start(&["serve", "-c", config.to_str().unwrap(), "--port", "0"]);
    let port = gslbd.wait_port();
    // The lab's addresses that serve yourcompany.com.
    let servers =
        [[127, 0, 0, 1], [127, 0, 3, 1], [127, 0, 3, 2]].map(|a| SocketAddr::from((a, port)));
    let flood = |seed: u64, n: usize, ecs: bool| {
        let server = servers[seed as usize % servers.len()];
        std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let mut rng = common::Lcg(seed);
            let mut buf = [0u8; 2048];
            let mut answered = 0;
            for burst in 0..n / 32 {
                for i in 0..32 {
                    let q = if ecs {
                        let net = Ipv4Addr::from(rng.next() << 8);
                        common::Q::new("object.vip.yourcompany.com", 1).ecs(net.into(), 24)
                    } else {
                        let name = format!("r{:08x}.yourcompany.com", rng.next());
                        common::Q::new(&name, 1)
                    };
                    let mut q = q;
                    q.id = (burst * 32 + i) as u16;
                    sock.send_to(&q.bytes(), server).unwrap();
                }
                for _ in 0..32 {
                    if sock.recv_from(&mut buf).is_err() {
                        break;
                    }
                    answered += 1;
                }
            }
            answered
        })
    };
    // Warm up (every code path touched once), then the baseline.
    for h in [flood(1, 2_048, true), flood(2, 2_048, false)] {
        assert!(h.join().unwrap() > 1_000);
    }
    std::thread::sleep(Duration::from_millis(300));
    let baseline = rss(gslbd.pid());
    // Each address gets a random-name and a random-ECS flood.
    let floods: Vec<_> = (0..6).map(|k| flood(100 + k, 32_000, k < 3)).collect();
    let answered: usize = floods.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        answered > 150_000,
        "{answered} of 192,000 answered: the flood did not reach the tables"
    );
    let after = rss(gslbd.pid());
    let grown = after.saturating_sub(baseline);
    eprintln!(
        "fast path: RSS {} -> {} MiB (+{:.1} MiB, budget {} MiB)",
        baseline >> 20,
        after >> 20,
        grown as f64 / (1 << 20) as f64,
        BUDGET >> 20
    );
    assert!(
        grown <= BUDGET + SLACK,
        "RSS grew {:.1} MiB under the floods: more than the {} MiB budget + {} MiB slack",
        grown as f64 / (1 << 20) as f64,
        BUDGET >> 20,
        SLACK >> 20
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Reloads and signals from outside: races, a SIGHUP during the first load, a FIFO as a zone,
//    SIGTERM during a build, a second server on our UDP port

/// A zone for `v.example.org A` = `v`, with `filler` more A records to make a build take time.
fn filled_zone(serial: u32, v: &str, filler: usize) -> String {
    let mut z = reload_zone(serial, v);
    for i in 0..filler {
        z.push_str(&format!("h{i} IN A 192.0.2.{}\n", i % 250 + 1));
    }
    z
}

/// A config serving `example.org.zone` on 127.0.32.x with `extra` appended.
fn ops_config(dir: &Path, ip: &str, extra: &str) -> PathBuf {
    let config = dir.join("gslbd.toml");
    std::fs::write(
        &config,
        format!(
            "[[zone]]\nname = \"example.org.\"\nfile = \"example.org.zone\"\n\n\
             [[listener]]\nname = \"all\"\naddresses = [\"{ip}\"]\nzones = [\"*\"]\n{extra}"
        ),
    )
    .unwrap();
    config
}

impl Gslbd {
    /// The address of the first `listening on PROTO` line.
    fn wait_addr(&mut self, proto: &str) -> SocketAddr {
        let needle = format!("listening on {proto} ");
        let (i, _) = self.wait_for(&needle, 0);
        let line = self.log.lock().unwrap()[i].1.clone();
        line.split(&needle)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    fn signal(&self, name: &str) {
        let status = common::tool("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {}: {status}", self.pid());
    }

    /// Waits for the process to exit, at most `limit`; None if it is still running then.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `v.example.org A` over UDP; panics on anything but one A record.
fn ask_v(server: SocketAddr) -> Ipv4Addr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0u8; 4096];
    for attempt in 0..3u16 {
        sock.send_to(&query_bytes(attempt, "v.example.org.", 1), server)
            .unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return judge(attempt, &buf[..n]).unwrap_or_else(|e| panic!("v.example.org: {e}"));
        }
    }
    panic!("no answer from {server}");
}

/// `POST /admin/reload` with the bearer token over plain HTTP/1.1; the status code.
fn post_reload(http: SocketAddr, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(STARTUP)).unwrap();
    write!(
        s,
        "POST /admin/reload HTTP/1.1\r\nHost: gslbd\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {resp:?}"))
}

/// SIGHUP and `POST /admin/reload` at the same time, with the zone edited in between: the SIGHUP's
/// build reads the old (large, slow) file, the POST's the new (small, fast) one. Whatever finishes
/// first, the data served after the POST returned, and after the SIGHUP's reload ended, is the
/// newest file's: a reload never goes backwards.
#[test]
fn sighup_and_admin_reload_race_ends_at_the_newest_data() {
    const BIG: usize = 60_000;
    const TOKEN: &str = "race-token";
    let dir = tempfile::tempdir().unwrap();
    let config = ops_config(
        dir.path(),
        "127.0.32.1:0",
        &format!("\n[http]\nlisten = [\"127.0.32.1:0\"]\nadmin_token = \"{TOKEN}\"\n"),
    );
    let zone = dir.path().join("example.org.zone");
    let v = |round: u32| format!("192.0.2.{}", round + 10);
    let zone_of = |round: u32| {
        filled_zone(
            round,
            &v(round),
            if round.is_multiple_of(2) { BIG } else { 0 },
        )
    };
    write_atomically(&zone, &zone_of(0));
    let mut gslbd = Gslbd::start(&["serve", "-c", config.to_str().unwrap(), "--port", "0"]);
    let dns = gslbd.wait_addr("udp");
    let http = gslbd.wait_addr("http");
    assert_eq!(ask_v(dns).to_string(), v(0));
    for round in 1..=8u32 {
        let from = gslbd.log_len();
        gslbd.sighup();
        let (hup, _) = gslbd.wait_for("SIGHUP: reloading", from);
        // Let the SIGHUP's build read the current (old) file before it is replaced.
        std::thread::sleep(Duration::from_millis(30));
        write_atomically(&zone, &zone_of(round));
        assert_eq!(post_reload(http, TOKEN), 200, "round {round}");
        assert_eq!(
            ask_v(dns).to_string(),
            v(round),
            "round {round}, POST returned"
        );
        // The SIGHUP's reload has ended (one way or the other): still the newest data.
        let outcome = {
            let deadline = Instant::now() + STARTUP;
            loop {
                let done = {
                    let log = gslbd.log.lock().unwrap();
                    (hup..log.len()).any(|i| {
                        let l = &log[i].1;
                        l.contains("reloaded zones=") || l.contains("reload failed")
                    })
                };
                if done || Instant::now() > deadline {
                    break done;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        assert!(
            outcome,
            "round {round}: the SIGHUP reload never ended:\n{}",
            gslbd.log_text()
        );
        assert_eq!(
            ask_v(dns).to_string(),
            v(round),
            "round {round}: after the SIGHUP's reload ended"
        );
    }
}

/// A SIGHUP while the first (large) load runs is not fatal: the handler is installed before the
/// load, and the reload runs once serving. A SIGTERM while a reload's build runs ends the process
/// at once: it does not wait for the build to finish.
#[test]
fn sighup_during_the_first_load_and_sigterm_during_a_reload() {
    const HUGE: usize = 400_000;
    let dir = tempfile::tempdir().unwrap();
    let config = ops_config(dir.path(), "127.0.32.2:0", "");
    let zone = dir.path().join("example.org.zone");
    write_atomically(&zone, &filled_zone(1, "192.0.2.1", HUGE));
    let mut gslbd = Gslbd::start(&["serve", "-c", config.to_str().unwrap(), "--port", "0"]);
    let (loading, _) = gslbd.wait_for("loading ", 0);
    gslbd.sighup();
    // The SIGHUP landed during the load (the zone takes far longer to load than a kill takes);
    // the process lives on and the queued reload runs once the server is up.
    let dns = gslbd.wait_addr("udp");
    let hup = gslbd.wait_for("SIGHUP: reloading", loading).0;
    gslbd.wait_for("configuration generation 2 serving", hup);
    assert_eq!(ask_v(dns), Ipv4Addr::new(192, 0, 2, 1));

    // SIGTERM during the next reload's build (as long as the first load): exit, not wait.
    let from = gslbd.log_len();
    gslbd.sighup();
    gslbd.wait_for("SIGHUP: reloading", from);
    gslbd.signal("TERM");
    let status = gslbd
        .wait_exit(STARTUP)
        .unwrap_or_else(|| panic!("SIGTERM did not end gslbd:\n{}", gslbd.log_text()));
    assert!(status.success(), "{status}:\n{}", gslbd.log_text());
    // Let the reader drain stderr.
    std::thread::sleep(Duration::from_millis(100));
    let log = gslbd.log_text();
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        !log.contains("configuration generation 3"),
        "shutdown waited for the build to finish:\n{log}"
    );
}

/// A FIFO as a zone path (or a hung mount) must not wedge reloads: the reload fails naming the
/// path, the old data serves, a later reload works, and SIGTERM exits.
#[test]
fn a_fifo_as_zone_fails_the_reload_and_does_not_wedge() {
    let dir = tempfile::tempdir().unwrap();
    let config = ops_config(dir.path(), "127.0.32.3:0", "");
    let zone = dir.path().join("example.org.zone");
    write_atomically(&zone, &reload_zone(1, "192.0.2.1"));
    let mut gslbd = Gslbd::start(&["serve", "-c", config.to_str().unwrap(), "--port", "0"]);
    let dns = gslbd.wait_addr("udp");

    std::fs::remove_file(&zone).unwrap();
    let c = std::ffi::CString::new(zone.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path only.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    let from = gslbd.log_len();
    gslbd.sighup();
    let (failed, _) = gslbd.wait_for("reload failed", from);
    gslbd.wait_for("not a regular file (a FIFO)", failed);
    let log = gslbd.log_text();
    // The file is named (errors not at a line carry no ":0", issue 13 item 9).
    assert!(
        log.contains(&format!("{}: cannot read zone file", zone.display())),
        "{log}"
    );
    assert_eq!(
        ask_v(dns),
        Ipv4Addr::new(192, 0, 2, 1),
        "the old data serves"
    );

    // Reloads are not wedged: a regular file again reloads.
    std::fs::remove_file(&zone).unwrap();
    write_atomically(&zone, &reload_zone(2, "192.0.2.2"));
    let from = gslbd.log_len();
    gslbd.sighup();
    gslbd.wait_for("configuration generation 2 serving", from);
    assert_eq!(ask_v(dns), Ipv4Addr::new(192, 0, 2, 2));

    gslbd.signal("TERM");
    let status = gslbd.wait_exit(STARTUP).expect("SIGTERM ends gslbd");
    assert!(status.success(), "{status}");
}

/// With `tcp = false` nothing else fails when a second gslbd binds our UDP address: through
/// SO_REUSEPORT it would join the port and answer half the queries with its own data. It must
/// refuse to start, naming the address, and the first keeps answering every query.
#[test]
fn a_second_server_cannot_share_our_udp_port() {
    let free = UdpSocket::bind("127.0.32.4:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let extra = "\n[limits]\nudp_workers = 2\n";
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    for (dir, v) in [(&one, "192.0.2.1"), (&two, "192.0.2.2")] {
        let config = ops_config(dir.path(), &addr.to_string(), extra);
        let text = std::fs::read_to_string(&config)
            .unwrap()
            .replace("zones = [\"*\"]", "zones = [\"*\"]\ntcp = false");
        std::fs::write(&config, text).unwrap();
        write_atomically(&dir.path().join("example.org.zone"), &reload_zone(1, v));
    }
    let cfg = |d: &tempfile::TempDir| d.path().join("gslbd.toml").to_str().unwrap().to_string();
    let mut first = Gslbd::start(&["serve", "-c", &cfg(&one)]);
    assert_eq!(first.wait_addr("udp"), addr);
    let mut second = Gslbd::start(&["serve", "-c", &cfg(&two)]);
    let status = second.wait_exit(STARTUP);
    std::thread::sleep(Duration::from_millis(100));
    let log = second.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second gslbd started on {addr} ({status:?}):\n{log}"
    );
    assert!(
        log.contains(&format!("cannot bind {addr} (udp)"))
            && log.contains("Address already in use"),
        "{log}"
    );
    for _ in 0..20 {
        assert_eq!(ask_v(addr), Ipv4Addr::new(192, 0, 2, 1));
    }
}

/// `gslbd explain --json | head`: output into a pipe whose reader has gone ends the command the way
/// SIGPIPE ends other Unix tools (killed by the signal, nothing on stderr), not with a panic.
#[test]
fn explain_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let mut child = Command::new(BIN)
        .args([
            "explain",
            "object.yourcompany.com",
            "--client",
            "127.0.10.1",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run gslbd");
    // The reader goes before gslbd has built the lab and written a byte.
    drop(child.stdout.take());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gslbd explain hangs"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}: {stderr}");
}

/// systemd's `Type=notify` (deploy/gslbd.service): once its sockets are bound and it serves,
/// Runs `cmd` (a `gslbd serve`) with `$NOTIFY_SOCKET` set, waits for its sd_notify(3) message
/// (panics after the start-up time), hands the serving process's PID to `look`, then ends it;
/// returns the message and what `look` saw.
fn while_ready<T>(mut cmd: Command, look: impl FnOnce(u32) -> T) -> (Vec<u8>, T) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(STARTUP)).unwrap();
    let mut child = cmd
        .env("NOTIFY_SOCKET", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 64];
    let got = sock.recv(&mut buf);
    let seen = look(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let n = got.expect("a notify message within the start-up time");
    (buf[..n].to_vec(), seen)
}

/// gslbd sends "READY=1" to the datagram socket `$NOTIFY_SOCKET` names (sd_notify(3)).
#[test]
fn tells_systemd_when_it_serves() {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--port", "0"]);
    let (message, ()) = while_ready(cmd, |_| ());
    assert_eq!(message, b"READY=1");
}

/// Started with a soft limit of 256 open files under a hard limit of 8192 (a service manager's
/// default shape), `gslbd serve` raises the soft limit to the hard one before it binds, as NSD
/// and Unbound do: /proc shows the serving process's limit.
#[test]
fn serve_raises_the_open_files_limit_to_the_hard_limit() {
    // prlimit(1) sets the limits and execs gslbd: the child's PID is gslbd's.
    let mut cmd = common::tool("prlimit");
    cmd.args(["--nofile=256:8192", BIN, "serve", "--port", "0"]);
    let (message, limits) = while_ready(cmd, |pid| {
        std::fs::read_to_string(format!("/proc/{pid}/limits"))
    });
    assert_eq!(message, b"READY=1");
    let limits = limits.unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let nums: Vec<&str> = line
        .split_whitespace()
        .filter(|w| w.parse::<u64>().is_ok())
        .collect();
    assert_eq!(nums, ["8192", "8192"], "{line}");
}
