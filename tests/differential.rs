//! Differential test (issue 2): Knot DNS serves the very zone files gslbd serves, a generated set
//! of queries goes to both, and the answers are compared: RCODE, header flags, the question byte
//! for byte, EDNS, and ANSWER, AUTHORITY and ADDITIONAL as sets of (owner, type, class, TTL,
//! rdata). Differences the RFCs allow are listed in `EXCUSES`, each one checking the exact shape
//! of the difference it excuses; anything else fails the test with both answers side by side.
//!
//! Knot (`knotd`, Debian package `knot`) is installed by `.ci/run`; without it this test fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Lcg, Q, TestServer, Via};
use gslbd::config::Source;
use hickory_proto::op::Message;
use tokio::net::UdpSocket;

/// The config gslbd serves; Knot gets a config generated from the same zone list.
const CONFIG: &str = "differential/differential.toml";

/// At least this many queries are generated (issue 2).
const MIN_QUERIES: usize = 1000;

/// Queries in flight at once (each to both servers).
const IN_FLIGHT: usize = 16;

/// Knot's `CNAME_CHAIN_MAX` (knot/nameserver/internet.c): the CNAMEs it puts in one answer.
const KNOT_CNAME_CHAIN_MAX: usize = 5;

// ---------------------------------------------------------------------------------------------
// Zones: the files named by the config, and the names they own.

struct ZoneFile {
    apex: String,
    path: PathBuf,
}

/// The zones of `CONFIG` with absolute paths (Knot needs them; gslbd resolves the same ones),
/// and the EDNS payload gslbd advertises (Knot is configured to advertise the same).
fn zones() -> (Vec<ZoneFile>, u16) {
    let path = common::data(CONFIG);
    let text = std::fs::read_to_string(&path).expect("read the differential config");
    let config = gslbd::config::parse(&text, &path).expect("parse the differential config");
    let base = path.parent().unwrap();
    let zones = config
        .zones
        .iter()
        .map(|z| ZoneFile {
            apex: lower_abs(&z.name),
            path: std::fs::canonicalize(base.join(&z.file))
                .unwrap_or_else(|e| panic!("zone file {}: {e}", z.file.display())),
        })
        .collect();
    (zones, config.limits.udp_payload)
}

fn lower_abs(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

/// The zones' apexes and owner names, read from the zone files (a small reader: enough for these
/// files, which are plain RFC 1035 master files with `$ORIGIN`, `$TTL` and `$INCLUDE`).
#[derive(Default)]
struct ZoneData {
    apexes: Vec<String>,
    owners: BTreeSet<String>,
}

impl ZoneData {
    fn load(zones: &[ZoneFile]) -> ZoneData {
        let mut d = ZoneData::default();
        for z in zones {
            d.apexes.push(z.apex.clone());
            d.read(&z.path, &z.apex);
        }
        d
    }

    fn read(&mut self, path: &Path, origin: &str) {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut origin = origin.to_string();
        let mut in_parens = false;
        for raw in text.lines() {
            let line = strip_comment(raw);
            if in_parens {
                in_parens = !line.contains(')');
                continue;
            }
            let tokens: Vec<&str> = line.split_whitespace().collect();
            if tokens.is_empty() {
                continue;
            }
            if tokens[0].starts_with('$') {
                match tokens[0].to_ascii_uppercase().as_str() {
                    "$ORIGIN" => origin = absolute(tokens[1], &origin),
                    "$INCLUDE" => {
                        let inc = path.parent().unwrap().join(tokens[1]);
                        let inc_origin = tokens
                            .get(2)
                            .map_or(origin.clone(), |o| absolute(o, &origin));
                        self.read(&inc, &inc_origin);
                    }
                    _ => {}
                }
                continue;
            }
            // A record line starting with blanks continues the previous owner.
            if !line.starts_with([' ', '\t']) {
                self.owners.insert(absolute(tokens[0], &origin));
            }
            in_parens = line.contains('(') && !line.contains(')');
        }
    }

    /// The most specific zone served at or above `name`.
    fn zone_of(&self, name: &str) -> Option<&str> {
        let name = lower_abs(name);
        self.apexes
            .iter()
            .filter(|a| is_at_or_below(&name, a))
            .max_by_key(|a| a.len())
            .map(String::as_str)
    }
}

fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn absolute(name: &str, origin: &str) -> String {
    if name == "@" {
        origin.to_string()
    } else if name.ends_with('.') {
        name.to_ascii_lowercase()
    } else {
        format!("{}.{}", name.to_ascii_lowercase(), origin)
    }
}

/// Both lowercase absolute names.
fn is_at_or_below(name: &str, ancestor: &str) -> bool {
    ancestor == "." || name == ancestor || name.ends_with(&format!(".{ancestor}"))
}

// ---------------------------------------------------------------------------------------------
// Knot DNS as a child process, killed on drop.

struct Knot {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (released again: Knot binds it next).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn knot_conf(dir: &Path, port: u16, zones: &[ZoneFile], payload: u16) -> String {
    let d = dir.display();
    let mut c = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    \
         tcp-workers: 1\n    background-workers: 1\n    udp-max-payload: {payload}\n\
         control:\n    listen: \"{d}/knot.sock\"\n\
         log:\n  - target: stderr\n    any: notice\n\
         database:\n    storage: \"{d}\"\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-load: whole\n    \
         zonefile-sync: -1\n    journal-content: none\n    semantic-checks: off\n    \
         dnssec-signing: off\n\
         zone:\n"
    );
    for z in zones {
        writeln!(
            c,
            "  - domain: \"{}\"\n    file: \"{}\"",
            z.apex,
            z.path.display()
        )
        .unwrap();
    }
    c
}

enum NotReady {
    Exited(String),
    Silent,
}

impl Knot {
    async fn start(zones: &[ZoneFile], payload: u16) -> Knot {
        let bin = common::tool_path("knotd");
        let mut failures = String::new();
        for attempt in 1..=5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let conf = dir.path().join("knot.conf");
            std::fs::write(&conf, knot_conf(dir.path(), port, zones, payload)).unwrap();
            let log = dir.path().join("knotd.log");
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(&bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let mut knot = Knot {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log,
                _dir: dir,
            };
            match knot.wait_ready(zones).await {
                Ok(()) => return knot,
                Err(NotReady::Exited(status)) => {
                    writeln!(
                        failures,
                        "attempt {attempt} (port {port}): knotd {status}:\n{}",
                        knot.log_text()
                    )
                    .unwrap();
                }
                Err(NotReady::Silent) => panic!(
                    "knotd started but did not answer SOA queries for every zone within 10 s:\n{}",
                    knot.log_text()
                ),
            }
        }
        panic!("knotd failed to start:\n{failures}");
    }

    async fn answers_tcp(&self, apex: &str) -> bool {
        let connect = tokio::net::TcpStream::connect(self.addr);
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_millis(200), connect).await else {
            return false;
        };
        common::tcp_send(&mut s, &Q::new(apex, 6).bytes()).await;
        common::tcp_recv(&mut s).await.is_some()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until every zone's SOA is answered authoritatively over UDP and TCP (~10 s at most).
    async fn wait_ready(&mut self, zones: &[ZoneFile]) -> Result<(), NotReady> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pending: Vec<&str> = zones.iter().map(|z| z.apex.as_str()).collect();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 65535];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(NotReady::Exited(status.to_string()));
            }
            let mut still = Vec::new();
            for (i, apex) in pending.into_iter().enumerate() {
                let mut q = Q::new(apex, 6);
                q.id = i as u16;
                let q = q.bytes();
                sock.send_to(&q, self.addr).await.unwrap();
                let reply =
                    tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf))
                        .await;
                let ok = matches!(reply, Ok(Ok((n, _))) if n > 12
                    && buf[..2] == q[..2]
                    && buf[2] & 0x04 != 0          // AA
                    && buf[3] & 0x0f == 0          // NOERROR
                    && buf[6..8] != [0, 0]); // an answer
                if !ok {
                    still.push(apex);
                }
            }
            pending = still;
            if pending.is_empty() && self.answers_tcp(&zones[0].apex).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(NotReady::Silent)
    }
}

// ---------------------------------------------------------------------------------------------
// The queries.

const QTYPES: [(&str, u16); 12] = [
    ("A", 1),
    ("AAAA", 28),
    ("MX", 15),
    ("TXT", 16),
    ("NS", 2),
    ("SOA", 6),
    ("CNAME", 5),
    ("SRV", 33),
    ("CAA", 257),
    ("PTR", 12),
    ("ANY", 255),
    ("DS", 43),
];

/// Names beyond the zones' owners: wildcards, empty non-terminals, delegations, misses.
const EXTRA_NAMES: &[&str] = &[
    "x.wild.example.com.",
    "a.b.wild.example.com.",
    "x.sub.wild.example.com.", // sub.wild exists (ENT): no synthesis below it, NXDOMAIN
    "foo.cw.example.com.",
    "a.b.cw.example.com.",
    "nothere.example.com.",
    "child.example.com.",
    "a.b.child.example.com.",
    "ns.elsewhere.org.",
    "nx.example.net.",
    "x.apps.yourcompany.com.",
    "y.deep.apps.yourcompany.com.", // deep.apps exists (ENT): NXDOMAIN
    "a.b.apps.yourcompany.com.",
    "x.img.yourcompany.com.",
    "dev.yourcompany.com.",
    "x.dev.yourcompany.com.",
    "a.ns1.dev.yourcompany.com.",
    "object.vip.yourcompany.com.",
    "nx.cdn.com.",
    // Outside every zone: REFUSED from both.
    ".",
    "com.",
    "org.",
    "example.org.",
    "yourcompany.org.",
];

#[derive(Debug, Clone)]
struct Case {
    q: Q,
    via: Via,
    qtype_name: &'static str,
}

impl Case {
    fn describe(&self) -> String {
        let f = self.q.flags;
        let mut flags = String::new();
        for (bit, n) in [(0x0100, " rd"), (0x0020, " ad"), (0x0010, " cd")] {
            if f & bit != 0 {
                flags.push_str(n);
            }
        }
        let edns = match &self.q.edns {
            None => "no EDNS".to_string(),
            Some((p, v, d, _)) => format!("EDNS({v}) udp={p}{}", if *d { " do" } else { "" }),
        };
        let class = if self.q.qclass == 1 {
            String::new()
        } else {
            format!(" CLASS{}", self.q.qclass)
        };
        format!(
            "{}{class} {} over {:?}, id {}, flags:{flags}, {edns}",
            self.q.name, self.qtype_name, self.via, self.q.id
        )
    }
}

fn query_names(data: &ZoneData) -> Vec<String> {
    let mut names = BTreeSet::new();
    for owner in &data.owners {
        names.insert(owner.clone());
        // Empty non-terminals between the owner and its zone's apex.
        let apex = data.zone_of(owner).unwrap_or(".");
        let mut n = owner.as_str();
        while let Some((_, parent)) = n.split_once('.') {
            if parent.len() <= apex.len() {
                break;
            }
            names.insert(parent.to_string());
            n = parent;
        }
        // One name below every owner: a miss, a wildcard match or a name under a cut or a CNAME.
        names.insert(format!("zz.{}", owner.trim_start_matches("*.")));
    }
    for apex in &data.apexes {
        names.insert(format!("nx-{}", apex));
    }
    names.extend(EXTRA_NAMES.iter().map(|s| s.to_string()));
    names.into_iter().collect()
}

fn vary_case(name: &str, rng: &mut Lcg) -> String {
    if rng.one_in(3) {
        return name.to_string();
    }
    name.chars()
        .map(|c| {
            if rng.one_in(2) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn generate(data: &ZoneData) -> Vec<Case> {
    let mut rng = Lcg(0x5eed_d1ff);
    let mut cases = Vec::new();
    for name in query_names(data) {
        for (qtype_name, qtype) in QTYPES {
            let id = cases.len() as u16;
            let mut flags = 0u16;
            if !rng.one_in(2) {
                flags |= 0x0100; // RD
            }
            if rng.one_in(8) {
                flags |= 0x0020; // AD (RFC 6840 5.7)
            }
            if rng.one_in(8) {
                flags |= 0x0010; // CD
            }
            let edns = match rng.next() % 8 {
                0..=2 => None,
                3..=5 => Some((1232, 0, false, vec![])),
                6 => Some((1232, 0, true, vec![])),
                // Other payloads (below 512 counts as 512, above ours as ours; RFC 6891
                // 6.2.3/6.2.5), and now and then EDNS version 1 (BADVERS, RFC 6891 6.1.3).
                _ => Some((
                    [100, 512, 1400, 4096][rng.next() as usize % 4],
                    if rng.one_in(6) { 1 } else { 0 },
                    rng.one_in(2),
                    vec![],
                )),
            };
            // Now and then QCLASS ANY (RFC 1035 3.2.5), answered from the IN data.
            let qclass = if rng.one_in(25) { 255 } else { 1 };
            let via = if rng.one_in(5) { Via::Tcp } else { Via::Udp };
            let q = Q {
                id,
                flags,
                name: vary_case(&name, &mut rng),
                qtype,
                qclass,
                edns,
            };
            cases.push(Case { q, via, qtype_name });
        }
    }
    // Answers near and over the UDP limits, under every payload: truncation and trimming.
    for (name, qtype_name, qtype) in SIZE_PROBES {
        for edns in [
            None,
            Some((512, 0, false, vec![])),
            Some((1232, 0, false, vec![])),
            Some((1232, 0, true, vec![])),
            Some((4096, 0, false, vec![])),
        ] {
            let id = cases.len() as u16;
            let q = Q {
                id,
                flags: 0,
                name: vary_case(name, &mut rng),
                qtype,
                qclass: 1,
                edns,
            };
            cases.push(Case {
                q,
                via: Via::Udp,
                qtype_name,
            });
        }
    }
    cases
}

/// Big RRsets and many additional addresses (tests/data/battery/example.com.zone).
const SIZE_PROBES: [(&str, &str, u16); 6] = [
    ("big.example.com.", "TXT", 16),
    ("big.example.com.", "ANY", 255),
    ("manymx.example.com.", "MX", 15),
    ("manymx.example.com.", "ANY", 255),
    ("www.yourcompany.com.", "A", 1),
    ("object.yourcompany.com.", "A", 1),
];

// ---------------------------------------------------------------------------------------------
// Responses, reduced to what is compared.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rr {
    owner: String,
    rtype: String,
    class: String,
    ttl: u32,
    rdata: String,
}

impl Rr {
    /// The name an NS, MX or SRV record points at (whose addresses go to ADDITIONAL).
    fn target(&self) -> Option<String> {
        match self.rtype.as_str() {
            "NS" | "MX" | "SRV" => self.rdata.split_whitespace().last().map(lower_abs),
            _ => None,
        }
    }
    fn cname_target(&self) -> Option<String> {
        (self.rtype == "CNAME").then(|| lower_abs(&self.rdata))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Opt {
    payload: u16,
    version: u8,
    dnssec_ok: bool,
    /// The other flag bits (must be zero, RFC 6891 6.1.4).
    z: u16,
    /// (code, data) of each option, in order.
    options: Vec<(u16, Vec<u8>)>,
}

/// Skips a (possibly compressed) name at `at`.
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)? as usize;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l if l & 0xc0 != 0 => return None,
            l => at += 1 + l,
        }
    }
}

/// The OPT RR of a message, read from the wire: its TTL field carries the RCODE extension.
fn raw_opt(b: &[u8]) -> Result<Option<(Opt, u8)>, String> {
    let count = |i: usize| u16::from_be_bytes([b[4 + 2 * i], b[5 + 2 * i]]) as usize;
    let mut at = 12;
    for _ in 0..count(0) {
        at = skip_name(b, at).ok_or("bad question")? + 4;
    }
    let records = count(1) + count(2) + count(3);
    let mut opt = None;
    for i in 0..records {
        at = skip_name(b, at).ok_or("bad owner name")?;
        let f = b.get(at..at + 10).ok_or("short record")?;
        let rtype = u16::from_be_bytes([f[0], f[1]]);
        let rdlen = u16::from_be_bytes([f[8], f[9]]) as usize;
        let rdata = b.get(at + 10..at + 10 + rdlen).ok_or("short rdata")?;
        if rtype == 41 {
            if i < count(1) + count(2) || opt.is_some() {
                return Err("OPT outside ADDITIONAL or twice".into());
            }
            let mut options = Vec::new();
            let mut o = 0;
            while o < rdata.len() {
                let h = rdata.get(o..o + 4).ok_or("short option")?;
                let len = u16::from_be_bytes([h[2], h[3]]) as usize;
                let data = rdata.get(o + 4..o + 4 + len).ok_or("short option data")?;
                options.push((u16::from_be_bytes([h[0], h[1]]), data.to_vec()));
                o += 4 + len;
            }
            let flags = u16::from_be_bytes([f[6], f[7]]);
            opt = Some((
                Opt {
                    payload: u16::from_be_bytes([f[2], f[3]]),
                    version: f[5],
                    dnssec_ok: flags & 0x8000 != 0,
                    z: flags & 0x7fff,
                    options,
                },
                f[4],
            ));
        }
        at += 10 + rdlen;
    }
    if at != b.len() {
        return Err(format!("{} trailing bytes", b.len() - at));
    }
    Ok(opt)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    id: u16,
    /// Header flags: QR, opcode, AA, TC, RD, RA, Z, AD, CD (RCODE masked out).
    flags: u16,
    /// Full RCODE (header + OPT extension).
    rcode: u16,
    /// The question section exactly as sent back.
    question: Vec<u8>,
    answer: BTreeSet<Rr>,
    authority: BTreeSet<Rr>,
    additional: BTreeSet<Rr>,
    opt: Option<Opt>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    None,
    Unparsable(String),
    Ok(Box<View>),
}

fn raw_question(b: &[u8]) -> Option<Vec<u8>> {
    if b[4..6] == [0, 0] {
        return Some(Vec::new());
    }
    let mut at = 12;
    loop {
        let len = *b.get(at)? as usize;
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    b.get(12..at + 4).map(<[u8]>::to_vec)
}

fn rrs(records: &[hickory_proto::rr::Record]) -> BTreeSet<Rr> {
    records
        .iter()
        .filter(|r| r.record_type() != hickory_proto::rr::RecordType::OPT)
        .map(|r| Rr {
            owner: lower_abs(&r.name.to_string()),
            rtype: r.record_type().to_string(),
            class: r.dns_class.to_string(),
            ttl: r.ttl,
            rdata: r.data.to_string(),
        })
        .collect()
}

/// The reply reduced to what is compared, and its size on the wire.
fn view(bytes: Option<Vec<u8>>) -> (Reply, usize) {
    let size = bytes.as_ref().map_or(0, Vec::len);
    (parse(bytes), size)
}

fn parse(bytes: Option<Vec<u8>>) -> Reply {
    let Some(b) = bytes else { return Reply::None };
    if b.len() < 12 {
        return Reply::Unparsable(format!("{} bytes", b.len()));
    }
    let msg = match Message::from_vec(&b) {
        Ok(m) => m,
        Err(e) => return Reply::Unparsable(e.to_string()),
    };
    let Some(question) = raw_question(&b) else {
        return Reply::Unparsable("question not readable".into());
    };
    let header = u16::from_be_bytes([b[2], b[3]]);
    let (opt, high) = match raw_opt(&b) {
        Ok(Some((opt, high))) => (Some(opt), high as u16),
        Ok(None) => (None, 0),
        Err(e) => return Reply::Unparsable(e),
    };
    Reply::Ok(Box::new(View {
        id: u16::from_be_bytes([b[0], b[1]]),
        flags: header & !0x000f,
        rcode: (high << 4) | (header & 0x000f),
        question,
        answer: rrs(&msg.answers),
        authority: rrs(&msg.authorities),
        additional: rrs(&msg.additionals),
        opt,
    }))
}

const RCODES: [&str; 11] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE",
];

fn dig(r: &Reply) -> String {
    let v = match r {
        Reply::None => return "    (no reply)\n".into(),
        Reply::Unparsable(e) => return format!("    (unparsable reply: {e})\n"),
        Reply::Ok(v) => v,
    };
    let mut s = String::new();
    let rc = RCODES
        .get(v.rcode as usize)
        .map_or(format!("RCODE{}", v.rcode), |r| r.to_string());
    let mut flags = String::new();
    for (bit, n) in [
        (0x8000, "qr"),
        (0x0400, "aa"),
        (0x0200, "tc"),
        (0x0100, "rd"),
        (0x0080, "ra"),
        (0x0040, "z"),
        (0x0020, "ad"),
        (0x0010, "cd"),
    ] {
        if v.flags & bit != 0 {
            write!(flags, " {n}").unwrap();
        }
    }
    let opcode = (v.flags >> 11) & 0xf;
    writeln!(
        s,
        "    ;; status: {rc}, id: {}, opcode: {opcode}, flags:{flags}",
        v.id
    )
    .unwrap();
    match &v.opt {
        Some(o) => writeln!(
            s,
            "    ;; EDNS: version {}, udp {}, flags:{}{} options {:?}",
            o.version,
            o.payload,
            if o.dnssec_ok { " do" } else { "" },
            if o.z != 0 {
                format!(" z={:#x}", o.z)
            } else {
                String::new()
            },
            o.options
        )
        .unwrap(),
        None => writeln!(s, "    ;; no EDNS").unwrap(),
    }
    writeln!(s, "    ;; QUESTION (raw): {}", show_question(&v.question)).unwrap();
    for (title, set) in [
        ("ANSWER", &v.answer),
        ("AUTHORITY", &v.authority),
        ("ADDITIONAL", &v.additional),
    ] {
        if set.is_empty() {
            continue;
        }
        writeln!(s, "    ;; {title}").unwrap();
        for rr in set {
            writeln!(
                s,
                "    {} {} {} {} {}",
                rr.owner, rr.ttl, rr.class, rr.rtype, rr.rdata
            )
            .unwrap();
        }
    }
    s
}

/// Which parts of two replies differ, for the report.
fn differing(g: &Reply, k: &Reply) -> String {
    let (Reply::Ok(g), Reply::Ok(k)) = (g, k) else {
        return "a reply is missing or unparsable".into();
    };
    let mut parts = Vec::new();
    if g.id != k.id {
        parts.push("id".to_string());
    }
    if g.flags != k.flags {
        parts.push(format!("header flags (bits {:#06x})", g.flags ^ k.flags));
    }
    for (name, differs) in [
        ("rcode", g.rcode != k.rcode),
        ("question", g.question != k.question),
        ("answer", g.answer != k.answer),
        ("authority", g.authority != k.authority),
        ("additional", g.additional != k.additional),
        ("EDNS", g.opt != k.opt),
    ] {
        if differs {
            parts.push(name.to_string());
        }
    }
    if parts.is_empty() {
        "nothing (but the UDP size limit is exceeded)".into()
    } else {
        parts.join(", ")
    }
}

fn show_question(q: &[u8]) -> String {
    if q.is_empty() {
        return "(none)".into();
    }
    let mut name = String::new();
    let mut at = 0;
    while q[at] != 0 {
        let len = q[at] as usize;
        name.push_str(&String::from_utf8_lossy(&q[at + 1..at + 1 + len]));
        name.push('.');
        at += 1 + len;
    }
    let t = u16::from_be_bytes([q[at + 1], q[at + 2]]);
    let c = u16::from_be_bytes([q[at + 3], q[at + 4]]);
    format!(
        "{} type {t} class {c}",
        if name.is_empty() { "." } else { &name }
    )
}

// ---------------------------------------------------------------------------------------------
// Allowed differences.

/// One difference the RFCs allow. `apply` checks that the two answers differ in exactly this
/// way (in the parts it looks at) and, if so, rewrites gslbd's view into Knot's for those parts
/// and returns true; the answers must then be identical, possibly after further excuses.
/// What an excuse may look at besides the two answers.
struct Pair<'a> {
    data: &'a ZoneData,
    case: &'a Case,
    /// Sizes of the two responses on the wire.
    g_size: usize,
    k_size: usize,
    /// The EDNS payload both servers advertise (and cap UDP answers at).
    payload: u16,
    /// Where Knot's answer is a bare CNAME chain: Knot's answers (over TCP) for the name where it
    /// stopped, and on for each name where such an answer stopped again, as (name, answer).
    continuation: &'a [(String, View)],
}

impl Pair<'_> {
    /// The most a UDP response to this query may carry: 512 without EDNS, else the client's
    /// payload (at least 512) capped by ours (RFC 6891 6.2.3-6.2.5).
    fn udp_limit(&self) -> usize {
        match &self.case.q.edns {
            None => 512,
            Some((payload, ..)) => (*payload).clamp(512, self.payload.max(512)) as usize,
        }
    }
}

struct Excuse {
    name: &'static str,
    reason: &'static str,
    apply: fn(&Pair<'_>, &mut View, &View) -> bool,
}

const EXCUSES: &[Excuse] = &[
    Excuse {
        name: "cd-not-copied",
        reason: "Knot clears CD in its responses; RFC 4035 3.1.6 says the name server MUST copy \
                 CD from the query, as gslbd does (Knot's deviation, harmless for unsigned zones)",
        apply: cd_not_copied,
    },
    Excuse {
        name: "ede-on-refused",
        reason: "Knot adds Extended DNS Error 20 (Not Authoritative) to REFUSED; an EDE option \
                 'can be included in any response' and is never required (RFC 8914 section 3)",
        apply: ede_on_refused,
    },
    Excuse {
        name: "rdata-name-case",
        reason: "a name in NS/CNAME/SOA/MX/PTR rdata is compressed against the question as the \
                 client wrote it by one server and written with the zone's case by the other: \
                 names compare case-insensitively (RFC 4343 section 3), a pointer may target any \
                 earlier occurrence (RFC 1035 4.1.4), and case changes through compression of \
                 these types are expected (RFC 3597 sections 3-4)",
        apply: rdata_name_case,
    },
    Excuse {
        name: "cname-into-other-zone",
        reason: "the CNAME chain leads into another zone served here: gslbd restarts the lookup \
                 at the target as RFC 1034 4.3.2 step 3a says (step 2 then finds the other zone; \
                 RCODE of the last name, RFC 6604), Knot answers from the question's zone only \
                 and the resolver follows the CNAME itself (RFC 1034 5.3.3 step 4b); both legal",
        apply: cname_into_other_zone,
    },
    Excuse {
        name: "cname-chain-limit",
        reason: "Knot puts at most 5 CNAMEs in one answer (its CNAME_CHAIN_MAX), gslbd up to \
                 `cname_chain` (12): RFC 1034 4.3.2 sets no limit, and the resolver completes a \
                 chain cut short (RFC 1034 5.3.3 step 4b)",
        apply: cname_chain_limit,
    },
    Excuse {
        name: "additional-from-other-zone",
        reason: "for an NS/MX/SRV target in another zone served here gslbd adds its addresses, \
                 Knot only takes them from the record's own zone: RFC 1034 4.3.2 step 6 asks \
                 for useful RRs from local data, which both zones are, and none are required",
        apply: additional_from_other_zone,
    },
    Excuse {
        name: "additional-trimmed",
        reason: "UDP answer at the size limit: both leave out optional ADDITIONAL addresses that \
                 do not fit, without TC (RFC 2181 section 9); gslbd's name compression fits more \
                 of them than Knot's (required referral glue is not excused, RFC 9471)",
        apply: additional_trimmed,
    },
];

const FLAG_AA: u16 = 0x0400;
const FLAG_CD: u16 = 0x0010;
const FLAG_TC: u16 = 0x0200;
const RCODE_REFUSED: u16 = 5;
const RCODE_BADVERS: u16 = 16;
const OPTION_EDE: u16 = 15;
const EDE_NOT_AUTHORITATIVE: u16 = 20;

/// The query had CD, gslbd copied it, Knot did not.
fn cd_not_copied(p: &Pair<'_>, g: &mut View, k: &View) -> bool {
    if p.case.q.flags & FLAG_CD != 0 && g.flags & FLAG_CD != 0 && k.flags & FLAG_CD == 0 {
        g.flags &= !FLAG_CD;
        return true;
    }
    false
}

/// Both REFUSED with EDNS; Knot's OPT carries exactly one option, EDE 20, gslbd's none.
fn ede_on_refused(_: &Pair<'_>, g: &mut View, k: &View) -> bool {
    let (Some(go), Some(ko)) = (&mut g.opt, &k.opt) else {
        return false;
    };
    let ede = match ko.options.as_slice() {
        [(OPTION_EDE, data)] if data.len() >= 2 => u16::from_be_bytes([data[0], data[1]]),
        _ => return false,
    };
    if g.rcode == RCODE_REFUSED
        && k.rcode == RCODE_REFUSED
        && go.options.is_empty()
        && ede == EDE_NOT_AUTHORITATIVE
    {
        go.options = ko.options.clone();
        return true;
    }
    false
}

/// Each record that differs has a counterpart on the other side differing only in the case of
/// rdata names, of a type whose rdata names may be compressed, and the case one side shows is
/// exactly that of a suffix of the question as sent.
fn rdata_name_case(p: &Pair<'_>, g: &mut View, k: &View) -> bool {
    let mut qname = p.case.q.name.clone();
    if !qname.ends_with('.') {
        qname.push('.');
    }
    let mut changed = false;
    for (gs, ks) in [
        (&mut g.answer, &k.answer),
        (&mut g.authority, &k.authority),
        (&mut g.additional, &k.additional),
    ] {
        let g_only: Vec<Rr> = gs.difference(ks).cloned().collect();
        for rr in g_only {
            if !matches!(rr.rtype.as_str(), "NS" | "CNAME" | "SOA" | "MX" | "PTR") {
                continue;
            }
            let twin = ks.iter().find(|kr| {
                kr.owner == rr.owner
                    && kr.rtype == rr.rtype
                    && kr.class == rr.class
                    && kr.ttl == rr.ttl
                    && !gs.contains(*kr)
                    && same_but_question_case(&rr.rdata, &kr.rdata, &qname)
            });
            if let Some(kr) = twin {
                gs.remove(&rr);
                gs.insert(kr.clone());
                changed = true;
            }
        }
    }
    changed
}

const RCODE_NOERROR: u16 = 0;
const RCODE_NXDOMAIN: u16 = 3;

/// The CNAME chain in `answer` starting at `qname`: the names visited, qname first.
fn chain(answer: &BTreeSet<Rr>, qname: &str) -> Vec<String> {
    let mut names = vec![lower_abs(qname)];
    while let Some(next) = answer
        .iter()
        .find(|r| r.owner == *names.last().unwrap())
        .and_then(Rr::cname_target)
    {
        if names.contains(&next) {
            break;
        }
        names.push(next);
    }
    names
}

/// Targets of the NS, MX and SRV records among `records`, each with the zone of the record.
fn targets<'a>(
    p: &Pair<'_>,
    records: impl Iterator<Item = &'a Rr>,
) -> Vec<(String, Option<String>)> {
    records
        .filter_map(|r| Some((r.target()?, p.data.zone_of(&r.owner).map(str::to_string))))
        .collect()
}

/// Whether every record of `extra` is an A/AAAA of one of `targets`' names.
fn addresses_of(extra: &BTreeSet<Rr>, targets: &[(String, Option<String>)]) -> bool {
    extra.iter().all(|r| {
        matches!(r.rtype.as_str(), "A" | "AAAA") && targets.iter().any(|(t, _)| *t == r.owner)
    })
}

/// Whether `v` is nothing but the CNAME chain `c` (its names, from the question on): NOERROR, no
/// data at the end, nothing in AUTHORITY or ADDITIONAL.
fn bare_chain(v: &View, c: &[String]) -> bool {
    c.len() >= 2
        && v.answer.len() == c.len() - 1
        && v.answer.iter().all(|r| r.rtype == "CNAME")
        && v.authority.is_empty()
        && v.additional.is_empty()
        && v.rcode == RCODE_NOERROR
}

/// `r` with the names in its rdata lowercased (they compare case-insensitively, RFC 4343, and
/// the two servers compress them against different spellings of the question).
fn folded(r: &Rr) -> Rr {
    let mut r = r.clone();
    if matches!(
        r.rtype.as_str(),
        "NS" | "CNAME" | "SOA" | "MX" | "PTR" | "SRV"
    ) {
        r.rdata = r.rdata.to_ascii_lowercase();
    }
    r
}

fn folded_set(s: &BTreeSet<Rr>) -> BTreeSet<Rr> {
    s.iter().map(folded).collect()
}

/// gslbd's chain limit (`cname_chain` in the differential config).
const GSLBD_CNAME_CHAIN: usize = 12;

/// Knot's answer is a CNAME chain that stops (without data, NOERROR, nothing else) at a name
/// `stop`, and gslbd's answer is that chain continued from `stop` exactly as Knot itself answers
/// for `stop` (`Pair::continuation`: Knot asked for each name where its chain stopped): the extra
/// ANSWER records are Knot's records for the names of gslbd's chain from `stop` on, data and TTLs;
/// where gslbd's chain ends, its RCODE and AUTHORITY (the SOA of a negative answer, RFC 2308 and
/// RFC 6604) are Knot's for that name, or gslbd ended at its own chain limit; ADDITIONAL is at
/// most addresses of NS/MX/SRV targets of the extra records. `at_stop(Knot's chain, zone before,
/// zone of stop)` says whether this is the stop the caller excuses. On success gslbd's view
/// becomes Knot's.
fn continued_chain(
    p: &Pair<'_>,
    g: &mut View,
    k: &View,
    at_stop: impl Fn(&[String], Option<&str>, Option<&str>) -> bool,
) -> bool {
    let qname = &p.case.q.name;
    let kc = chain(&k.answer, qname);
    let Some(stop) = kc.last().filter(|_| kc.len() >= 2) else {
        return false;
    };
    let before = &kc[kc.len() - 2];
    if !bare_chain(k, &kc)
        || !at_stop(&kc, p.data.zone_of(before), p.data.zone_of(stop))
        || !k.answer.is_subset(&g.answer)
    {
        return false;
    }
    let gc = chain(&g.answer, qname);
    if gc.len() < kc.len() || gc[..kc.len()] != kc[..] {
        return false;
    }
    let continuation = &gc[kc.len() - 1..];
    let extra: BTreeSet<Rr> = g.answer.difference(&k.answer).cloned().collect();
    if !extra.iter().all(|r| continuation.contains(&r.owner)) {
        return false;
    }
    // gslbd's chain ends at `last` (data, NODATA or NXDOMAIN there), at a loop, or at its own
    // limit, where it has written the CNAME to `last` and looks no further.
    let last = gc.last().unwrap();
    let at_limit = gc.len() > GSLBD_CNAME_CHAIN;
    let looped = g
        .answer
        .iter()
        .any(|r| r.owner == *last && r.cname_target().is_some_and(|t| gc.contains(&t)));
    let visited = if at_limit {
        &continuation[..continuation.len() - 1]
    } else {
        continuation
    };
    // What Knot serves from `stop` on, for the names gslbd's chain visits from there: exactly
    // the records gslbd added, data and TTLs.
    let served: BTreeSet<Rr> = p
        .continuation
        .iter()
        .flat_map(|(_, v)| v.answer.iter())
        .filter(|r| visited.contains(&r.owner))
        .map(folded)
        .collect();
    if folded_set(&extra) != served {
        return false;
    }
    if at_limit || looped {
        if !g.authority.is_empty() || g.rcode != RCODE_NOERROR {
            return false;
        }
    } else {
        // The chain ends at `last` as Knot's answer whose chain ends there ends it.
        let Some((_, end)) = p
            .continuation
            .iter()
            .find(|(n, v)| chain(&v.answer, n).last() == Some(last))
        else {
            return false;
        };
        if g.rcode != end.rcode || folded_set(&g.authority) != folded_set(&end.authority) {
            return false;
        }
    }
    if !addresses_of(&g.additional, &targets(p, extra.iter())) {
        return false;
    }
    let changed = g.answer != k.answer
        || !g.authority.is_empty()
        || !g.additional.is_empty()
        || g.rcode != k.rcode;
    g.answer = k.answer.clone();
    g.authority.clear();
    g.additional.clear();
    g.rcode = k.rcode;
    changed
}

/// The chain stops where its target lies in another zone served here.
fn cname_into_other_zone(p: &Pair<'_>, g: &mut View, k: &View) -> bool {
    continued_chain(p, g, k, |_, before, stop| stop.is_some() && before != stop)
}

/// The chain stops after exactly Knot's limit of CNAMEs, within one zone.
fn cname_chain_limit(p: &Pair<'_>, g: &mut View, k: &View) -> bool {
    continued_chain(p, g, k, |kc, before, stop| {
        kc.len() - 1 == KNOT_CNAME_CHAIN_MAX && stop.is_some() && before == stop
    })
}

/// gslbd's ADDITIONAL is Knot's plus addresses of NS/MX/SRV targets that lie in a zone served
/// here other than that of the record naming them.
fn additional_from_other_zone(p: &Pair<'_>, g: &mut View, k: &View) -> bool {
    if !k.additional.is_subset(&g.additional) || g.additional == k.additional {
        return false;
    }
    let extra: BTreeSet<Rr> = g.additional.difference(&k.additional).cloned().collect();
    let foreign: Vec<(String, Option<String>)> = targets(p, g.answer.iter().chain(&g.authority))
        .into_iter()
        .filter(|(t, zone)| {
            let tz = p.data.zone_of(t);
            tz.is_some() && tz != zone.as_deref()
        })
        .collect();
    if !addresses_of(&extra, &foreign) {
        return false;
    }
    g.additional = k.additional.clone();
    true
}

/// Same answer over UDP, one ADDITIONAL a strict subset of the other, the extra records being
/// addresses of NS/MX/SRV targets (not referral glue), and the shorter response too full for
/// even one more record (an A with a compressed owner, 16 bytes).
fn additional_trimmed(p: &Pair<'_>, g: &mut View, k: &View) -> bool {
    if p.case.via != Via::Udp
        || g.answer != k.answer
        || g.authority != k.authority
        || g.flags & FLAG_TC != 0
        || k.flags & FLAG_TC != 0
    {
        return false;
    }
    let limit = p.udp_limit();
    let (small, big, small_size) = if g.additional.is_subset(&k.additional) {
        (&g.additional, &k.additional, p.g_size)
    } else if k.additional.is_subset(&g.additional) {
        (&k.additional, &g.additional, p.k_size)
    } else {
        return false;
    };
    let extra: BTreeSet<Rr> = big.difference(small).cloned().collect();
    // In-domain glue of a referral must fit, or the answer is truncated (RFC 9471 section 3).
    let glue = extra.iter().any(|r| {
        g.authority
            .iter()
            .any(|ns| ns.rtype == "NS" && is_at_or_below(&r.owner, &ns.owner))
    });
    if extra.is_empty()
        || glue
        || small_size + 16 <= limit
        || !addresses_of(&extra, &targets(p, g.answer.iter().chain(&g.authority)))
    {
        return false;
    }
    g.additional = k.additional.clone();
    true
}

/// `a` and `b` differ only in tokens where one of them equals the other with a suffix replaced by
/// the same suffix of `qname` (as sent).
fn same_but_question_case(a: &str, b: &str, qname: &str) -> bool {
    let (ta, tb): (Vec<&str>, Vec<&str>) = (
        a.split_whitespace().collect(),
        b.split_whitespace().collect(),
    );
    ta.len() == tb.len()
        && ta.iter().zip(&tb).all(|(x, y)| {
            x == y
                || (x.eq_ignore_ascii_case(y)
                    && (suffix_from(x, y, qname) || suffix_from(y, x, qname)))
        })
}

/// `x` is `y` with some trailing labels taken from `qname`, byte for byte.
fn suffix_from(x: &str, y: &str, qname: &str) -> bool {
    let mut s = qname;
    loop {
        if let Some(head) = x.strip_suffix(s)
            && (head.is_empty() || head.ends_with('.'))
            && y.starts_with(head)
        {
            return true;
        }
        match s.split_once('.') {
            Some((_, rest)) if !rest.is_empty() => s = rest,
            _ => return false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test.

/// What kinds of answers the generated queries produced (from gslbd's side), to show that the
/// comparison covered them all.
#[derive(Debug, Default)]
struct Shapes {
    noerror: usize,
    nodata: usize,
    nxdomain: usize,
    refused: usize,
    referral: usize,
    cname: usize,
    truncated: usize,
    badvers: usize,
    no_reply: usize,
}

impl Shapes {
    fn count<'a>(replies: impl Iterator<Item = &'a Reply>) -> Shapes {
        let mut s = Shapes::default();
        for r in replies {
            let Reply::Ok(v) = r else {
                s.no_reply += 1;
                continue;
            };
            match v.rcode {
                RCODE_NOERROR => s.noerror += 1,
                RCODE_NXDOMAIN => s.nxdomain += 1,
                RCODE_REFUSED => s.refused += 1,
                RCODE_BADVERS => s.badvers += 1,
                _ => {}
            }
            let soa_only = v.authority.iter().all(|r| r.rtype == "SOA");
            if v.rcode == RCODE_NOERROR && v.answer.is_empty() && !v.authority.is_empty() {
                if soa_only {
                    s.nodata += 1;
                } else if v.flags & FLAG_AA == 0 && v.authority.iter().all(|r| r.rtype == "NS") {
                    s.referral += 1;
                }
            }
            s.cname += v.answer.iter().any(|r| r.rtype == "CNAME") as usize;
            s.truncated += (v.flags & FLAG_TC != 0) as usize;
        }
        s
    }

    fn assert_covered(&self) {
        let all = [
            self.noerror,
            self.nodata,
            self.nxdomain,
            self.refused,
            self.referral,
            self.cname,
            self.truncated,
            self.badvers,
        ];
        assert!(
            all.iter().all(|&n| n > 0),
            "the generated queries miss a kind of answer: {self:?}"
        );
    }
}

enum Verdict {
    Identical,
    Excused(Vec<&'static str>),
    Different,
}

fn judge(p: &Pair<'_>, g: &Reply, k: &Reply) -> Verdict {
    // Every query generated here deserves an answer: silence or garbage is never agreement.
    let (Reply::Ok(g), Reply::Ok(k)) = (g, k) else {
        return Verdict::Different;
    };
    // Nor is a UDP response larger than the sizes allow, whatever the other server does.
    if p.case.via == Via::Udp && p.g_size.max(p.k_size) > p.udp_limit() {
        return Verdict::Different;
    }
    if g == k {
        return Verdict::Identical;
    }
    let mut g = (**g).clone();
    let mut fired = Vec::new();
    for e in EXCUSES {
        if (e.apply)(p, &mut g, k) {
            fired.push(e.name);
        }
    }
    if !fired.is_empty() && g == **k {
        Verdict::Excused(fired)
    } else {
        Verdict::Different
    }
}

async fn send(addr: SocketAddr, via: Via, bytes: &[u8]) -> Option<Vec<u8>> {
    match via {
        Via::Udp => match common::udp_raw(addr, bytes).await {
            // One retry: a lost loopback datagram is not a difference between the servers.
            None => common::udp_raw(addr, bytes).await,
            r => r,
        },
        Via::Tcp => common::tcp_raw(addr, bytes).await,
    }
}

/// Knot asked for the name where its CNAME chain in `k` stopped, and on while its answers stop at
/// a further name (at most `GSLBD_CNAME_CHAIN` times): what an excuse for a continued chain must
/// find in gslbd's answer. Empty when `k` is no bare chain.
async fn knot_continuation(addr: SocketAddr, case: &Case, k: &Reply) -> Vec<(String, View)> {
    let Reply::Ok(k) = k else { return Vec::new() };
    let mut out: Vec<(String, View)> = Vec::new();
    let (mut view, mut qname) = ((**k).clone(), lower_abs(&case.q.name));
    for _ in 0..GSLBD_CNAME_CHAIN {
        let c = chain(&view.answer, &qname);
        if !bare_chain(&view, &c) {
            break;
        }
        let stop = c.last().unwrap().clone();
        if out.iter().any(|(n, _)| *n == stop) {
            break;
        }
        let q = Q {
            id: 0x4b4e,
            flags: 0,
            name: stop.clone(),
            qtype: case.q.qtype,
            qclass: case.q.qclass,
            edns: Some((1232, 0, false, vec![])),
        };
        let Reply::Ok(next) = parse(common::tcp_raw(addr, &q.bytes()).await) else {
            panic!("Knot gave no answer to {stop} type {}", case.q.qtype);
        };
        out.push((stop.clone(), (*next).clone()));
        (view, qname) = (*next, stop);
    }
    out
}

fn gslbd_addr(server: &TestServer, via: Via) -> SocketAddr {
    server.addr("all", if via == Via::Tcp { "tcp" } else { "udp" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gslbd_and_knot_agree() {
    let started = Instant::now();
    let (zones, payload) = zones();
    let data = ZoneData::load(&zones);
    // The fast path (the default) answers the comparison with Knot; the general path must give
    // the same bytes, and so must the fast path's second answer to each UDP query (from the
    // prebuilt answer its first one left). One UDP thread: with one per CPU the second ask
    // mostly reaches a thread whose tables are empty and the general path is compared with
    // itself.
    let mut source = Source::file(common::data(CONFIG));
    source.udp_workers = Some(1);
    let gslbd = common::start(source).await;
    let general =
        common::start_on_path(Source::file(common::data(CONFIG)), common::Path::General).await;
    let knot = Knot::start(&zones, payload).await;

    let cases = generate(&data);
    assert!(
        cases.len() >= MIN_QUERIES,
        "only {} queries generated",
        cases.len()
    );

    let limit = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, case) in cases.iter().enumerate() {
        let bytes = case.q.bytes();
        let (g_addr, k_addr, via) = (gslbd_addr(&gslbd, case.via), knot.addr, case.via);
        let general_addr = gslbd_addr(&general, case.via);
        let permit = limit.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let (g, k, gen_reply) = tokio::join!(
                send(g_addr, via, &bytes),
                send(k_addr, via, &bytes),
                send(general_addr, via, &bytes)
            );
            drop(permit);
            let paths = [g.clone(), gen_reply];
            (i, view(g), view(k), paths)
        });
    }
    let mut replies = vec![((Reply::None, 0), (Reply::None, 0)); cases.len()];
    let mut firsts = vec![None; cases.len()];
    let mut path_differences = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, g, k, [fast, general]) = done.expect("query task");
        if fast != general {
            path_differences.push(format!(
                "{}\n  fast:    {fast:?}\n  general: {general:?}",
                cases[i].describe()
            ));
        }
        replies[i] = (g, k);
        firsts[i] = fast;
    }
    // Every UDP query again, one at a time, so the server's fast-path counter tells which
    // answers came from its tables: each must, unless the fast path never keeps such an answer
    // (`common::never_prebuilt`), and must be the first answer's bytes.
    let (mut again_fast, mut again_general) = (0, BTreeMap::<&str, usize>::new());
    for (i, case) in cases.iter().enumerate() {
        if case.via != Via::Udp {
            continue;
        }
        let bytes = case.q.bytes();
        let before = gslbd.handle.fast_answers();
        let again = send(gslbd_addr(&gslbd, Via::Udp), Via::Udp, &bytes).await;
        let written = gslbd.handle.fast_answers() - before;
        if again != firsts[i] {
            path_differences.push(format!(
                "{}\n  first: {:?}\n  again: {again:?}",
                case.describe(),
                firsts[i]
            ));
        }
        let Some(reply) = &again else { continue };
        if written > 0 {
            again_fast += 1;
            continue;
        }
        match common::never_prebuilt(&gslbd, "all", &bytes, reply).await {
            Some(why) => *again_general.entry(why).or_default() += 1,
            None => path_differences.push(format!(
                "{}\n  asked again, answered the general way, not from the fast path's tables",
                case.describe()
            )),
        }
    }
    assert!(
        path_differences.is_empty(),
        "{} of {} queries answered differently by the fast and the general path:\n{}",
        path_differences.len(),
        cases.len(),
        path_differences[..path_differences.len().min(5)].join("\n")
    );

    // Where Knot stops a chain that gslbd continues, what Knot answers for the rest of it.
    let mut continuations = vec![Vec::new(); cases.len()];
    for (i, (case, ((g, _), (k, _)))) in cases.iter().zip(&replies).enumerate() {
        if g != k {
            continuations[i] = knot_continuation(knot.addr, case, k).await;
        }
    }

    let mut identical = 0;
    let mut excused: BTreeMap<&str, usize> = BTreeMap::new();
    let mut excused_queries = 0;
    let mut differences = Vec::new();
    for ((case, ((g, g_size), (k, k_size))), continuation) in
        cases.iter().zip(&replies).zip(&continuations)
    {
        let pair = Pair {
            data: &data,
            case,
            g_size: *g_size,
            k_size: *k_size,
            payload,
            continuation,
        };
        match judge(&pair, g, k) {
            Verdict::Identical => identical += 1,
            Verdict::Excused(names) => {
                excused_queries += 1;
                for n in names {
                    *excused.entry(n).or_default() += 1;
                }
            }
            Verdict::Different => differences.push((case, g, *g_size, k, *k_size)),
        }
    }

    let mut summary = format!(
        "differential test: {} queries sent to gslbd and Knot ({} over TCP) in {:.1?}; the fast \
         path's first and second reply and the general path's byte-identical; asked again, \
         {again_fast} from the fast path's tables, the general way {again_general:?}\n  \
         identical: {identical}\n  excused: {excused_queries}\n",
        cases.len(),
        cases.iter().filter(|c| c.via == Via::Tcp).count(),
        started.elapsed()
    );
    for e in EXCUSES {
        writeln!(
            summary,
            "    {:>5} {}: {}",
            excused.get(e.name).copied().unwrap_or(0),
            e.name,
            e.reason
        )
        .unwrap();
    }
    writeln!(summary, "  different: {}", differences.len()).unwrap();
    let shapes = Shapes::count(replies.iter().map(|((g, _), _)| g));
    writeln!(summary, "  gslbd's answers: {shapes:?}").unwrap();
    println!("{summary}");
    shapes.assert_covered();
    if differences.is_empty() {
        // An excuse that never fires is either dead or hides its case behind another: the generated
        // queries must exercise every one.
        let idle: Vec<&str> = EXCUSES
            .iter()
            .map(|e| e.name)
            .filter(|n| !excused.contains_key(n))
            .collect();
        assert!(
            idle.is_empty(),
            "excuses that never fired: {idle:?}\n{summary}"
        );
        return;
    }
    let mut report = summary;
    for (case, g, g_size, k, k_size) in differences.iter().take(10) {
        writeln!(
            report,
            "\n=== {}\n  differs in: {}\n  gslbd ({g_size} bytes):\n{}  knot ({k_size} bytes):\n{}",
            case.describe(),
            differing(g, k),
            dig(g),
            dig(k)
        )
        .unwrap();
    }
    if differences.len() > 10 {
        writeln!(report, "\n... and {} more", differences.len() - 10).unwrap();
    }
    panic!("{report}");
}

// ---------------------------------------------------------------------------------------------
// The excuses on their own: each fires on the difference it names, and near misses (the same
// shape with one thing wrong) are differences. The run above requires every excuse to fire.

fn rr(owner: &str, ttl: u32, rtype: &str, rdata: &str) -> Rr {
    Rr {
        owner: owner.to_string(),
        rtype: rtype.to_string(),
        class: "IN".to_string(),
        ttl,
        rdata: rdata.to_string(),
    }
}

fn reply(rcode: u16, answer: &[Rr], authority: &[Rr], additional: &[Rr]) -> View {
    View {
        id: 1,
        flags: 0x8400,
        rcode,
        question: Vec::new(),
        answer: answer.iter().cloned().collect(),
        authority: authority.iter().cloned().collect(),
        additional: additional.iter().cloned().collect(),
        opt: None,
    }
}

fn zone_data() -> ZoneData {
    ZoneData {
        apexes: vec!["example.com.".into(), "example.net.".into()],
        owners: BTreeSet::new(),
    }
}

fn case(name: &str, via: Via) -> Case {
    Case {
        q: Q::new(name, 1),
        via,
        qtype_name: "A",
    }
}

/// Which excuses made `g` and `k` agree, or None when they remain a difference.
fn verdict(p: &Pair<'_>, g: View, k: View) -> Option<Vec<&'static str>> {
    match judge(p, &Reply::Ok(Box::new(g)), &Reply::Ok(Box::new(k))) {
        Verdict::Excused(names) => Some(names),
        Verdict::Identical => Some(Vec::new()),
        Verdict::Different => None,
    }
}

fn pair<'a>(
    data: &'a ZoneData,
    case: &'a Case,
    continuation: &'a [(String, View)],
    sizes: (usize, usize),
) -> Pair<'a> {
    Pair {
        data,
        case,
        g_size: sizes.0,
        k_size: sizes.1,
        payload: 1232,
        continuation,
    }
}

const SOA_NET: &str = "ns.example.net. h.example.net. 1 3600 900 604800 60";

#[test]
fn excuse_cd_not_copied() {
    let data = zone_data();
    let mut c = case("a.example.com.", Via::Udp);
    c.q.flags |= FLAG_CD;
    let p = pair(&data, &c, &[], (100, 100));
    let mut g = reply(0, &[rr("a.example.com.", 300, "A", "192.0.2.1")], &[], &[]);
    g.flags |= FLAG_CD;
    let k = reply(0, &[rr("a.example.com.", 300, "A", "192.0.2.1")], &[], &[]);
    assert_eq!(
        verdict(&p, g.clone(), k.clone()),
        Some(vec!["cd-not-copied"])
    );
    // gslbd setting CD on a query without it is a difference.
    let c = case("a.example.com.", Via::Udp);
    let p = pair(&data, &c, &[], (100, 100));
    assert_eq!(verdict(&p, g, k), None);
}

#[test]
fn excuse_ede_on_refused() {
    let data = zone_data();
    let c = case("example.org.", Via::Udp);
    let p = pair(&data, &c, &[], (100, 100));
    let opt = |options| Opt {
        payload: 1232,
        version: 0,
        dnssec_ok: false,
        z: 0,
        options,
    };
    let mut g = reply(RCODE_REFUSED, &[], &[], &[]);
    g.opt = Some(opt(vec![]));
    let mut k = g.clone();
    k.opt = Some(opt(vec![(OPTION_EDE, vec![0, 20])]));
    assert_eq!(
        verdict(&p, g.clone(), k.clone()),
        Some(vec!["ede-on-refused"])
    );
    // Another EDE code, or EDE on an answer that is not REFUSED: differences.
    let mut k18 = k.clone();
    k18.opt = Some(opt(vec![(OPTION_EDE, vec![0, 18])]));
    assert_eq!(verdict(&p, g.clone(), k18), None);
    let (mut g0, mut k0) = (g, k);
    (g0.rcode, k0.rcode) = (0, 0);
    assert_eq!(verdict(&p, g0, k0), None);
}

#[test]
fn excuse_rdata_name_case() {
    let data = zone_data();
    let c = case("a.EXAMPLE.com.", Via::Udp);
    let p = pair(&data, &c, &[], (100, 100));
    let k = reply(
        0,
        &[rr("a.example.com.", 300, "CNAME", "b.example.com.")],
        &[],
        &[],
    );
    let g = reply(
        0,
        &[rr("a.example.com.", 300, "CNAME", "b.EXAMPLE.com.")],
        &[],
        &[],
    );
    assert_eq!(verdict(&p, g, k.clone()), Some(vec!["rdata-name-case"]));
    // A case the question does not have, another TTL, or a type whose rdata is no name.
    let g = reply(
        0,
        &[rr("a.example.com.", 300, "CNAME", "b.ExAmple.com.")],
        &[],
        &[],
    );
    assert_eq!(verdict(&p, g, k.clone()), None);
    let g = reply(
        0,
        &[rr("a.example.com.", 301, "CNAME", "b.EXAMPLE.com.")],
        &[],
        &[],
    );
    assert_eq!(verdict(&p, g, k), None);
    let k = reply(
        0,
        &[rr("a.example.com.", 300, "TXT", "\"b.example.com.\"")],
        &[],
        &[],
    );
    let g = reply(
        0,
        &[rr("a.example.com.", 300, "TXT", "\"b.EXAMPLE.com.\"")],
        &[],
        &[],
    );
    assert_eq!(verdict(&p, g, k), None);
}

#[test]
fn excuse_cname_into_other_zone() {
    let data = zone_data();
    let c = case("a.example.com.", Via::Tcp);
    let cname = rr("a.example.com.", 300, "CNAME", "b.example.net.");
    let target = rr("b.example.net.", 60, "A", "192.0.2.1");
    let soa = rr("example.net.", 60, "SOA", SOA_NET);
    let k = reply(0, std::slice::from_ref(&cname), &[], &[]);
    // Knot, asked for the target, has data there: gslbd must have that data, TTL and all.
    let has_data = [(
        "b.example.net.".to_string(),
        reply(0, std::slice::from_ref(&target), &[], &[]),
    )];
    let p = pair(&data, &c, &has_data, (100, 100));
    let g = reply(0, &[cname.clone(), target.clone()], &[], &[]);
    assert_eq!(
        verdict(&p, g, k.clone()),
        Some(vec!["cname-into-other-zone"])
    );
    // The mutation the old excuse let through: every cross-zone target NXDOMAIN.
    let nx = reply(
        RCODE_NXDOMAIN,
        std::slice::from_ref(&cname),
        std::slice::from_ref(&soa),
        &[],
    );
    assert_eq!(verdict(&p, nx.clone(), k.clone()), None);
    // Other data, another TTL, the data plus a record Knot does not serve there.
    let other = rr("b.example.net.", 60, "A", "192.0.2.2");
    let g = reply(0, &[cname.clone(), other], &[], &[]);
    assert_eq!(verdict(&p, g, k.clone()), None);
    let longer = rr("b.example.net.", 61, "A", "192.0.2.1");
    let g = reply(0, &[cname.clone(), longer], &[], &[]);
    assert_eq!(verdict(&p, g, k.clone()), None);
    let more = rr("b.example.net.", 60, "A", "192.0.2.9");
    let g = reply(0, &[cname.clone(), target.clone(), more], &[], &[]);
    assert_eq!(verdict(&p, g, k.clone()), None);
    // Where Knot says NXDOMAIN for the target, gslbd's NXDOMAIN with the same SOA is excused,
    // with another SOA TTL or RCODE it is not.
    let nx_there = [(
        "b.example.net.".to_string(),
        reply(RCODE_NXDOMAIN, &[], std::slice::from_ref(&soa), &[]),
    )];
    let p = pair(&data, &c, &nx_there, (100, 100));
    assert_eq!(
        verdict(&p, nx.clone(), k.clone()),
        Some(vec!["cname-into-other-zone"])
    );
    let soa_ttl = rr("example.net.", 61, "SOA", SOA_NET);
    let g = reply(
        RCODE_NXDOMAIN,
        std::slice::from_ref(&cname),
        &[soa_ttl],
        &[],
    );
    assert_eq!(verdict(&p, g, k.clone()), None);
    let nodata = reply(0, std::slice::from_ref(&cname), &[soa], &[]);
    assert_eq!(verdict(&p, nodata, k.clone()), None);
    // Without Knot's answer for the target nothing is excused; nor a stop in the same zone.
    let p = pair(&data, &c, &[], (100, 100));
    assert_eq!(verdict(&p, nx, k), None);
    let same = rr("a.example.com.", 300, "CNAME", "b.example.com.");
    let data_same = rr("b.example.com.", 60, "A", "192.0.2.1");
    let k = reply(0, std::slice::from_ref(&same), &[], &[]);
    let cont = [(
        "b.example.com.".to_string(),
        reply(0, std::slice::from_ref(&data_same), &[], &[]),
    )];
    let p = pair(&data, &c, &cont, (100, 100));
    assert_eq!(verdict(&p, reply(0, &[same, data_same], &[], &[]), k), None);
}

#[test]
fn excuse_cname_chain_limit() {
    let data = zone_data();
    let c = case("l1.example.com.", Via::Tcp);
    let link = |i: usize| {
        rr(
            &format!("l{i}.example.com."),
            300,
            "CNAME",
            &format!("l{}.example.com.", i + 1),
        )
    };
    let end = |i: usize| rr(&format!("l{i}.example.com."), 60, "A", "192.0.2.7");
    // Knot: l1 -> l6 (5 CNAMEs) and stops; asked for l6: l6 -> l7 -> data.
    let k = reply(0, &(1..=5).map(link).collect::<Vec<_>>(), &[], &[]);
    let rest = reply(0, &[link(6), end(7)], &[], &[]);
    let cont = [("l6.example.com.".to_string(), rest)];
    let p = pair(&data, &c, &cont, (100, 100));
    let mut whole: Vec<Rr> = (1..=6).map(link).collect();
    whole.push(end(7));
    let g = reply(0, &whole, &[], &[]);
    assert_eq!(verdict(&p, g, k.clone()), Some(vec!["cname-chain-limit"]));
    // gslbd's chain cut short of the data, or ending in NXDOMAIN, or with another TTL.
    let g = reply(0, &(1..=6).map(link).collect::<Vec<_>>(), &[], &[]);
    assert_eq!(verdict(&p, g, k.clone()), None);
    let soa = rr(
        "example.com.",
        60,
        "SOA",
        "ns.example.com. h.example.com. 1 3600 900 604800 60",
    );
    let g = reply(
        RCODE_NXDOMAIN,
        &(1..=6).map(link).collect::<Vec<_>>(),
        &[soa],
        &[],
    );
    assert_eq!(verdict(&p, g, k.clone()), None);
    let mut changed = whole.clone();
    changed.pop();
    changed.push(rr("l7.example.com.", 3600, "A", "192.0.2.7"));
    assert_eq!(verdict(&p, reply(0, &changed, &[], &[]), k), None);
    // Knot stopping after 4 CNAMEs is not its limit.
    let k4 = reply(0, &(1..=4).map(link).collect::<Vec<_>>(), &[], &[]);
    let rest = reply(0, &[link(5), link(6), end(7)], &[], &[]);
    let cont = [("l5.example.com.".to_string(), rest)];
    let p = pair(&data, &c, &cont, (100, 100));
    assert_eq!(verdict(&p, reply(0, &whole, &[], &[]), k4), None);
}

#[test]
fn excuse_additional_from_other_zone() {
    let data = zone_data();
    let c = case("example.com.", Via::Tcp);
    let p = pair(&data, &c, &[], (100, 100));
    let mx = rr("example.com.", 300, "MX", "10 mx.example.net.");
    let addr = rr("mx.example.net.", 300, "A", "192.0.2.25");
    let k = reply(0, std::slice::from_ref(&mx), &[], &[]);
    let g = reply(
        0,
        std::slice::from_ref(&mx),
        &[],
        std::slice::from_ref(&addr),
    );
    assert_eq!(
        verdict(&p, g, k.clone()),
        Some(vec!["additional-from-other-zone"])
    );
    // Not an address, or the address of a name nothing here points at, or a target in the
    // record's own zone (Knot adds those itself).
    let txt = rr("mx.example.net.", 300, "TXT", "\"x\"");
    assert_eq!(
        verdict(
            &p,
            reply(0, std::slice::from_ref(&mx), &[], &[txt]),
            k.clone()
        ),
        None
    );
    let stray = rr("other.example.net.", 300, "A", "192.0.2.26");
    assert_eq!(
        verdict(&p, reply(0, std::slice::from_ref(&mx), &[], &[stray]), k),
        None
    );
    let mx_own = rr("example.com.", 300, "MX", "10 mx.example.com.");
    let own = rr("mx.example.com.", 300, "A", "192.0.2.25");
    let k = reply(0, std::slice::from_ref(&mx_own), &[], &[]);
    assert_eq!(verdict(&p, reply(0, &[mx_own], &[], &[own]), k), None);
}

#[test]
fn excuse_additional_trimmed() {
    let data = zone_data();
    let c = case("example.com.", Via::Udp); // EDNS 1232
    let mx = rr("example.com.", 300, "MX", "10 mx.example.com.");
    let addr = rr("mx.example.com.", 300, "A", "192.0.2.25");
    let g = reply(
        0,
        std::slice::from_ref(&mx),
        &[],
        std::slice::from_ref(&addr),
    );
    let k = reply(0, std::slice::from_ref(&mx), &[], &[]);
    // Knot's answer too full for one more record: excused.
    let p = pair(&data, &c, &[], (1200, 1220));
    assert_eq!(
        verdict(&p, g.clone(), k.clone()),
        Some(vec!["additional-trimmed"])
    );
    // Room left for it, over TCP, or the left-out record is not an address of a target.
    let p = pair(&data, &c, &[], (300, 280));
    assert_eq!(verdict(&p, g.clone(), k.clone()), None);
    let tcp = case("example.com.", Via::Tcp);
    let p = pair(&data, &tcp, &[], (1200, 1220));
    assert_eq!(verdict(&p, g, k.clone()), None);
    let stray = rr("www.example.com.", 300, "A", "192.0.2.80");
    let p = pair(&data, &c, &[], (1200, 1220));
    assert_eq!(verdict(&p, reply(0, &[mx], &[], &[stray]), k), None);
}

/// Every excuse has its unit test above (a new excuse needs one).
#[test]
fn every_excuse_is_unit_tested() {
    let tested = [
        "cd-not-copied",
        "ede-on-refused",
        "rdata-name-case",
        "cname-into-other-zone",
        "cname-chain-limit",
        "additional-from-other-zone",
        "additional-trimmed",
    ];
    let names: Vec<&str> = EXCUSES.iter().map(|e| e.name).collect();
    assert_eq!(names, tested);
}
