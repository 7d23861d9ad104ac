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

use common::{Q, TestServer, Via};
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
// Zones: the files named by the config, and what they contain (owner names and their types).

struct ZoneFile {
    apex: String,
    path: PathBuf,
}

/// The zones of `CONFIG`, with absolute paths (Knot needs them; gslbd resolves the same ones).
fn zones() -> Vec<ZoneFile> {
    let path = common::data(CONFIG);
    let text = std::fs::read_to_string(&path).expect("read the differential config");
    let config = gslbd::config::parse(&text, &path).expect("parse the differential config");
    let base = path.parent().unwrap();
    config
        .zones
        .iter()
        .map(|z| ZoneFile {
            apex: lower_abs(&z.name),
            path: std::fs::canonicalize(base.join(&z.file))
                .unwrap_or_else(|e| panic!("zone file {}: {e}", z.file.display())),
        })
        .collect()
}

fn lower_abs(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

/// Owner names and the types they hold, read from the zone files (a small reader: enough for
/// these files, which are plain RFC 1035 master files with `$ORIGIN`, `$TTL` and `$INCLUDE`).
#[derive(Default)]
struct ZoneData {
    apexes: Vec<String>,
    types: BTreeMap<String, BTreeSet<String>>,
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
        let mut owner = origin.clone();
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
            let mut rest = &tokens[..];
            if !line.starts_with([' ', '\t']) {
                owner = absolute(tokens[0], &origin);
                rest = &tokens[1..];
            }
            // TTL and class come before the type, in either order.
            let rtype = rest
                .iter()
                .find(|t| !t.chars().all(|c| c.is_ascii_digit()) && !t.eq_ignore_ascii_case("IN"))
                .map(|t| t.to_ascii_uppercase())
                .unwrap_or_default();
            self.types.entry(owner.clone()).or_default().insert(rtype);
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

    /// Whether `name` holds an RRset of type `rtype` in the zone data, directly or through the
    /// wildcard that synthesises it (the source of synthesis of RFC 4592 3.3.1).
    fn holds(&self, name: &str, rtype: &str) -> bool {
        let name = lower_abs(name);
        if let Some(t) = self.types.get(&name) {
            return t.contains(rtype);
        }
        // Closest encloser: the longest existing ancestor (or empty non-terminal).
        let mut n = name.as_str();
        while let Some((_, parent)) = n.split_once('.') {
            if parent.is_empty() {
                break;
            }
            if self.exists(parent) {
                return self
                    .types
                    .get(&format!("*.{parent}"))
                    .is_some_and(|t| t.contains(rtype));
            }
            n = parent;
        }
        false
    }

    /// Whether a node exists at `name`: it owns records or has descendants that do.
    fn exists(&self, name: &str) -> bool {
        self.types.keys().any(|o| is_at_or_below(o, name))
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

fn knotd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("knotd"))
        .find(|p| p.is_file())
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

fn knot_conf(dir: &Path, port: u16, zones: &[ZoneFile]) -> String {
    let d = dir.display();
    let mut c = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    \
         tcp-workers: 1\n    background-workers: 1\n\
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
    async fn start(zones: &[ZoneFile]) -> Knot {
        let bin = knotd_binary().unwrap_or_else(|| {
            panic!(
                "knotd (Knot DNS) is not installed, and the differential test needs it: \
                 run .ci/run, which installs it (Debian package `knot`)"
            )
        });
        let mut failures = String::new();
        for attempt in 1..=5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let conf = dir.path().join("knot.conf");
            std::fs::write(&conf, knot_conf(dir.path(), port, zones)).unwrap();
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
            for apex in pending {
                let q = Q::new(apex, 6).bytes();
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
            if pending.is_empty()
                && common::tcp_raw(self.addr, &Q::new(zones[0].apex.as_str(), 6).bytes())
                    .await
                    .is_some()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(NotReady::Silent)
    }
}

// ---------------------------------------------------------------------------------------------
// The queries.

/// A tiny deterministic generator (Knuth's MMIX LCG); no rand crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn one_in(&mut self, n: u32) -> bool {
        self.next() % n == 0
    }
}

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
        format!(
            "{} {} over {:?}, id {}, flags:{flags}, {edns}",
            self.q.name, self.qtype_name, self.via, self.q.id
        )
    }
}

fn query_names(data: &ZoneData) -> Vec<String> {
    let mut names = BTreeSet::new();
    for owner in data.types.keys() {
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
                _ => Some((
                    if rng.one_in(2) { 512 } else { 4096 },
                    0,
                    rng.one_in(2),
                    vec![],
                )),
            };
            let via = if rng.one_in(5) { Via::Tcp } else { Via::Udp };
            let q = Q {
                id,
                flags,
                name: vary_case(&name, &mut rng),
                qtype,
                qclass: 1,
                edns,
            };
            cases.push(Case { q, via, qtype_name });
        }
    }
    cases
}

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

fn view(bytes: Option<Vec<u8>>) -> Reply {
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
struct Excuse {
    name: &'static str,
    reason: &'static str,
    apply: fn(&ZoneData, &Case, &mut View, &View) -> bool,
}

const EXCUSES: &[Excuse] = &[
    Excuse {
        name: "cd-not-copied",
        reason: "Knot clears CD in answers from unsigned zones; RFC 4035 3.1.6 says the server MUST \
                 copy CD from the query, which gslbd does (Knot's deviation, harmless: CD only \
                 matters to validators)",
        apply: cd_not_copied,
    },
    Excuse {
        name: "ede-on-refused",
        reason: "Knot adds Extended DNS Error 20 (Not Authoritative) to REFUSED; EDE is optional \
                 (RFC 8914 section 3: MAY)",
        apply: ede_on_refused,
    },
    Excuse {
        name: "rdata-name-case",
        reason: "a name in NS/CNAME/SOA/MX/PTR rdata is compressed against the question as the \
                 client wrote it by one server and against zone data by the other: names compare \
                 case-insensitively (RFC 4343 section 3) and compression may take the case of any \
                 earlier occurrence (RFC 1035 4.1.4, RFC 3597 section 4)",
        apply: rdata_name_case,
    },
];

const FLAG_CD: u16 = 0x0010;
const RCODE_REFUSED: u16 = 5;
const OPTION_EDE: u16 = 15;
const EDE_NOT_AUTHORITATIVE: u16 = 20;

/// The query had CD, gslbd copied it, Knot did not.
fn cd_not_copied(_: &ZoneData, case: &Case, g: &mut View, k: &View) -> bool {
    if case.q.flags & FLAG_CD != 0 && g.flags & FLAG_CD != 0 && k.flags & FLAG_CD == 0 {
        g.flags &= !FLAG_CD;
        return true;
    }
    false
}

/// Both REFUSED with EDNS; Knot's OPT carries exactly one option, EDE 20, gslbd's none.
fn ede_on_refused(_: &ZoneData, _: &Case, g: &mut View, k: &View) -> bool {
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
fn rdata_name_case(_: &ZoneData, case: &Case, g: &mut View, k: &View) -> bool {
    let mut qname = case.q.name.clone();
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
        if let Some(head) = x.strip_suffix(s) {
            if (head.is_empty() || head.ends_with('.')) && y.starts_with(head) {
                return true;
            }
        }
        match s.split_once('.') {
            Some((_, rest)) if !rest.is_empty() => s = rest,
            _ => return false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test.

enum Verdict {
    Identical,
    Excused(Vec<&'static str>),
    Different,
}

fn judge(data: &ZoneData, case: &Case, g: &Reply, k: &Reply) -> Verdict {
    if g == k {
        return Verdict::Identical;
    }
    let (Reply::Ok(g), Reply::Ok(k)) = (g, k) else {
        return Verdict::Different;
    };
    let mut g = (**g).clone();
    let mut fired = Vec::new();
    for e in EXCUSES {
        if (e.apply)(data, case, &mut g, k) {
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

fn gslbd_addr(server: &TestServer, via: Via) -> SocketAddr {
    server.addr("all", if via == Via::Tcp { "tcp" } else { "udp" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gslbd_and_knot_agree() {
    let started = Instant::now();
    let zones = zones();
    let data = Arc::new(ZoneData::load(&zones));
    let gslbd = common::start(Source::file(common::data(CONFIG))).await;
    let knot = Knot::start(&zones).await;

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
        let permit = limit.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let (g, k) = tokio::join!(send(g_addr, via, &bytes), send(k_addr, via, &bytes));
            drop(permit);
            (i, view(g), view(k))
        });
    }
    let mut replies = vec![(Reply::None, Reply::None); cases.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, g, k) = done.expect("query task");
        replies[i] = (g, k);
    }

    let mut identical = 0;
    let mut excused: BTreeMap<&str, usize> = BTreeMap::new();
    let mut excused_queries = 0;
    let mut differences = Vec::new();
    for (case, (g, k)) in cases.iter().zip(&replies) {
        match judge(&data, case, g, k) {
            Verdict::Identical => identical += 1,
            Verdict::Excused(names) => {
                excused_queries += 1;
                for n in names {
                    *excused.entry(n).or_default() += 1;
                }
            }
            Verdict::Different => differences.push((case, g, k)),
        }
    }

    let mut summary = format!(
        "differential test: {} queries sent to gslbd and Knot ({} over TCP) in {:.1?}\n  \
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
    println!("{summary}");
    if differences.is_empty() {
        return;
    }
    let mut report = summary;
    for (case, g, k) in differences.iter().take(10000) {
        writeln!(
            report,
            "\n=== {}\n  gslbd:\n{}  knot:\n{}",
            case.describe(),
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
