//! The tricky zone (issue 12): `tests/data/tricky/tricky.example.zone` holds every record type
//! NSD and Knot load, in several presentation forms (hex and base64 split over fields and lines,
//! mnemonics and numbers), RFC 9460's SVCB vectors, escaped labels, 63-octet labels, a 255-octet
//! name, a signed delegation (DS, RRSIG and NSEC at the cut), NSEC3 records and DNAME owners.
//! gslbd (in-process, on an ephemeral loopback port), NSD and Knot DNS (child processes with
//! generated configs in temporary directories) serve it; a generated set of at least 5,000
//! queries (every name x every type, mixed case, with and without EDNS, DO, 512-byte buffers,
//! UDP and TCP) goes to all three, and gslbd's answer is compared with each peer's: RCODE, header
//! flags, the question byte for byte, EDNS, and the three sections as sets of (owner, type,
//! class, TTL, RDATA bytes). Names inside the RDATA of the RFC 1035 types that may be compressed
//! are decompressed first. Owner names and those RDATA names compare case-insensitively when the
//! query's name had mixed case (a pointer may point at the question as the client wrote it, RFC
//! 1035 4.1.4, RFC 4343 3) and byte for byte when it was all lowercase.
//!
//! Differences the RFCs allow are `EXCUSES`, each checking the exact shape of what it excuses,
//! unit-tested with a near miss it must reject; the run fails when one never fires.
//!
//! HIP (NSD 4.6 and Knot 3.2 do not know it) and the name `dohpath` (Knot 3.2 does not know it)
//! are given to the peers in another form (see the markers in the zone file): their copy of the
//! zone drops the `;begin-gslbd-only` ... `;end-gslbd-only` lines and takes the `;peers: ` ones.
//!
//! `knotd` and `nsd` (Debian packages `knot` and `nsd`) are installed by `.ci/run`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Lcg, Via};
use gslbd::config::Source;
use hickory_proto::rr::Name;
use tokio::net::UdpSocket;

const CONFIG: &str = "tricky/tricky.toml";
const ZONE: &str = "tricky/tricky.example.zone";
const APEX: &str = "tricky.example.";
/// The EDNS payload all three advertise (gslbd's `udp_payload` in the config).
const PAYLOAD: u16 = 1232;
const MIN_QUERIES: usize = 5000;
const IN_FLIGHT: usize = 16;

/// Names below the DNAME owners. Asked once the engine synthesizes CNAMEs from DNAMEs (RFC
/// 6672, issue 12 item 3); until then gslbd answers them as names that do not exist.
const DNAME_BELOW: bool = true;
const DNAME_NAMES: &[&str] = &[
    "x.dn.tricky.example.",
    "a.b.dn.tricky.example.",
    "x.dn-out.tricky.example.",
];

/// Names asked beyond the zone's owners, their parents and one name below each owner.
const EXTRA_NAMES: &[&str] = &[
    "nx.tricky.example.",
    "x.wild.tricky.example.",
    "a.b.wild.tricky.example.",
    "a.secure.tricky.example.",
    "a.b.insecure.tricky.example.",
    "insecure.tricky.example.",
    "x.alias.tricky.example.",
];

/// Every type the zone holds, some it does not, and the meta type ANY.
const QTYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("HINFO", 13),
    ("MX", 15),
    ("TXT", 16),
    ("RP", 17),
    ("AFSDB", 18),
    ("AAAA", 28),
    ("LOC", 29),
    ("SRV", 33),
    ("NAPTR", 35),
    ("KX", 36),
    ("CERT", 37),
    ("DNAME", 39),
    ("APL", 42),
    ("DS", 43),
    ("SSHFP", 44),
    ("IPSECKEY", 45),
    ("RRSIG", 46),
    ("NSEC", 47),
    ("DNSKEY", 48),
    ("DHCID", 49),
    ("NSEC3", 50),
    ("NSEC3PARAM", 51),
    ("TLSA", 52),
    ("SMIMEA", 53),
    ("HIP", 55),
    ("CDS", 59),
    ("CDNSKEY", 60),
    ("OPENPGPKEY", 61),
    ("CSYNC", 62),
    ("ZONEMD", 63),
    ("SVCB", 64),
    ("HTTPS", 65),
    ("SPF", 99),
    ("NID", 104),
    ("L32", 105),
    ("L64", 106),
    ("LP", 107),
    ("EUI48", 108),
    ("EUI64", 109),
    ("URI", 256),
    ("CAA", 257),
    ("TYPE65280", 65280),
    ("ANY", 255),
];

const T_NS: u16 = 2;
const T_CNAME: u16 = 5;
const T_SOA: u16 = 6;
const T_PTR: u16 = 12;
const T_MX: u16 = 15;
const T_A: u16 = 1;
const T_AAAA: u16 = 28;
const T_SRV: u16 = 33;
const T_SVCB: u16 = 64;
const T_HTTPS: u16 = 65;
const T_DNAME: u16 = 39;
const T_RRSIG: u16 = 46;
const T_NSEC: u16 = 47;
const T_NSEC3: u16 = 50;
const T_ANY: u16 = 255;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const RCODE_NOERROR: u16 = 0;
const RCODE_NXDOMAIN: u16 = 3;

// ---------------------------------------------------------------------------------------------
// Names

/// A name in uncompressed wire form, as the zone writes it.
fn wire_of(n: &Name) -> Vec<u8> {
    let mut out = Vec::new();
    for l in n.iter() {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out
}

fn lower(wire: &[u8]) -> Vec<u8> {
    wire.to_ascii_lowercase()
}

/// The presentation form of a wire name (escapes for dots, blanks and backslashes).
fn show(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut at = 0;
    while at < wire.len() && wire[at] != 0 {
        let len = wire[at] as usize;
        for &c in &wire[at + 1..at + 1 + len] {
            match c {
                b'.' | b'\\' | b'"' | b';' | b'(' | b')' => {
                    s.push('\\');
                    s.push(c as char);
                }
                0x21..=0x7e => s.push(c as char),
                _ => write!(s, "\\{c:03}").unwrap(),
            }
        }
        s.push('.');
        at += 1 + len;
    }
    if s.is_empty() { ".".into() } else { s }
}

/// The parent of a wire name (None at the root).
fn parent(wire: &[u8]) -> Option<&[u8]> {
    (wire[0] != 0).then(|| &wire[1 + wire[0] as usize..])
}

fn prepend(label: &[u8], wire: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![label.len() as u8];
    out.extend_from_slice(label);
    out.extend_from_slice(wire);
    (out.len() <= 255).then_some(out)
}

fn parse_wire(text: &str) -> Vec<u8> {
    wire_of(&Name::from_ascii(text).unwrap())
}

/// The zone's owners as gslbd's reader reads them (only which names to ask: the answers come
/// from the servers).
fn owners() -> Vec<(Vec<u8>, bool)> {
    let origin = Name::from_ascii(APEX).unwrap();
    let records =
        gslbd::zone::reader::read_zone(&origin, &common::data(ZONE), &gslbd::zone::reader::DiskFs)
            .expect("the tricky zone reads");
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let dnames: BTreeSet<Vec<u8>> = records
        .iter()
        .filter(|r| u16::from(r.record.record_type()) == T_DNAME)
        .map(|r| lower(&wire_of(&r.record.name)))
        .collect();
    for r in records {
        let w = wire_of(&r.record.name);
        if seen.insert(lower(&w)) {
            let dname = dnames.contains(&lower(&w));
            out.push((w, dname));
        }
    }
    out
}

fn query_names() -> Vec<Vec<u8>> {
    let apex = parse_wire(APEX);
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |w: Vec<u8>, names: &mut Vec<Vec<u8>>| {
        if seen.insert(lower(&w)) {
            names.push(w);
        }
    };
    for (owner, dname) in owners() {
        // Empty non-terminals between the owner and the apex.
        let mut n: &[u8] = &owner;
        while let Some(p) = parent(n) {
            if p.len() <= apex.len() {
                break;
            }
            add(p.to_vec(), &mut names);
            n = p;
        }
        // One name below: a miss, a wildcard match, a name under a cut, a CNAME or a DNAME.
        let below = owner.strip_prefix(b"\x01*").unwrap_or(&owner);
        if let Some(w) = prepend(b"zz", below)
            && (DNAME_BELOW || !dname)
        {
            add(w, &mut names);
        }
        add(owner, &mut names);
    }
    for n in EXTRA_NAMES {
        add(parse_wire(n), &mut names);
    }
    if DNAME_BELOW {
        for n in DNAME_NAMES {
            add(parse_wire(n), &mut names);
        }
    }
    names
}

// ---------------------------------------------------------------------------------------------
// The peers: NSD and Knot as child processes, killed on drop.

struct Peer {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed, and the tricky zone test needs it: run .ci/run")
        })
}

/// A port free for both UDP and TCP on 127.0.0.1 (released again: the peer binds it next).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The zone as the peers get it (see the module doc).
fn peers_zone() -> String {
    let text = std::fs::read_to_string(common::data(ZONE)).unwrap();
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line == ";begin-gslbd-only" {
            skipping = true;
        } else if line == ";end-gslbd-only" {
            skipping = false;
        } else if let Some(rest) = line.strip_prefix(";peers: ") {
            out.push_str(rest);
            out.push('\n');
        } else if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!skipping, "unterminated ;begin-gslbd-only in {ZONE}");
    out
}

fn nsd_conf(d: &Path, port: u16) -> String {
    let d = d.display();
    // minimal-responses: no NS RRset in AUTHORITY of positive answers (optional, RFC 1034
    // 4.3.2 step 6), as gslbd and Knot answer. rrl-ratelimit 0: response rate limiting off (all
    // queries come from one address; its "slip" answers are empty with TC).
    format!(
        "server:\n    ip-address: 127.0.0.1@{port}\n    username: \"\"\n    chroot: \"\"\n    \
         zonesdir: \"{d}\"\n    pidfile: \"{d}/nsd.pid\"\n    database: \"\"\n    \
         xfrdfile: \"{d}/xfrd.state\"\n    xfrdir: \"{d}\"\n    zonelistfile: \"{d}/zone.list\"\n    \
         logfile: \"{d}/nsd.log\"\n    server-count: 1\n    verbosity: 1\n    \
         ipv4-edns-size: {PAYLOAD}\n    minimal-responses: yes\n    rrl-ratelimit: 0\n\
         remote-control:\n    control-enable: no\n\
         zone:\n    name: \"{APEX}\"\n    zonefile: \"{d}/zone\"\n"
    )
}

fn knot_conf(d: &Path, port: u16) -> String {
    let d = d.display();
    format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    \
         tcp-workers: 1\n    background-workers: 1\n    udp-max-payload: {PAYLOAD}\n\
         control:\n    listen: \"{d}/knot.sock\"\n\
         log:\n  - target: stderr\n    any: notice\n\
         database:\n    storage: \"{d}\"\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-load: whole\n    \
         zonefile-sync: -1\n    journal-content: none\n    semantic-checks: off\n    \
         dnssec-signing: off\n\
         zone:\n  - domain: \"{APEX}\"\n    file: \"{d}/zone\"\n"
    )
}

impl Peer {
    async fn start(name: &'static str) -> Peer {
        let zone = peers_zone();
        let mut failures = String::new();
        for attempt in 1..=5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            std::fs::write(dir.path().join("zone"), &zone).unwrap();
            let conf = dir.path().join("peer.conf");
            let (bin, args): (PathBuf, Vec<&str>) = if name == "nsd" {
                std::fs::write(&conf, nsd_conf(dir.path(), port)).unwrap();
                (binary("nsd"), vec!["-d", "-c"])
            } else {
                std::fs::write(&conf, knot_conf(dir.path(), port)).unwrap();
                (binary("knotd"), vec!["-c"])
            };
            let log = dir.path().join("stderr.log");
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(&bin)
                .args(&args)
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let mut peer = Peer {
                name,
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                log,
                _dir: dir,
            };
            match peer.wait_ready().await {
                Ok(()) => return peer,
                Err(why) => {
                    writeln!(
                        failures,
                        "attempt {attempt} (port {port}): {why}:\n{}",
                        peer.logs()
                    )
                    .unwrap();
                }
            }
        }
        panic!("{name} failed to start:\n{failures}");
    }

    fn logs(&self) -> String {
        let mut s = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Ok(l) = std::fs::read_to_string(self._dir.path().join("nsd.log")) {
            s.push_str(&l);
        }
        s
    }

    /// Polls until the apex SOA is answered authoritatively over UDP and TCP (~10 s at most).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let q = query(7, 0, &parse_wire(APEX), T_SOA, None);
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 65535];
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} {status}", self.name));
            }
            sock.send_to(&q, self.addr).await.unwrap();
            let reply =
                tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf)).await;
            let udp_ok = matches!(reply, Ok(Ok((n, _))) if n > 12
                && buf[2] & 0x04 != 0 && buf[3] & 0x0f == 0 && buf[6..8] != [0, 0]);
            if udp_ok && common::tcp_raw(self.addr, &q).await.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "{} did not answer the apex SOA within 10 s",
            self.name
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Queries

#[derive(Debug, Clone)]
struct Case {
    id: u16,
    flags: u16,
    /// As sent (case varied).
    qname: Vec<u8>,
    qtype: u16,
    /// (payload, DO).
    edns: Option<(u16, bool)>,
    via: Via,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        query(self.id, self.flags, &self.qname, self.qtype, self.edns)
    }
    fn dnssec_ok(&self) -> bool {
        matches!(self.edns, Some((_, true)))
    }
    /// The question name was all lowercase: names compare byte for byte.
    fn exact(&self) -> bool {
        !self.qname.iter().any(u8::is_ascii_uppercase)
    }
    fn udp_limit(&self) -> usize {
        match self.edns {
            None => 512,
            Some((p, _)) => p.clamp(512, PAYLOAD) as usize,
        }
    }
    fn describe(&self) -> String {
        let qt = QTYPES
            .iter()
            .find(|(_, c)| *c == self.qtype)
            .map_or(format!("TYPE{}", self.qtype), |(n, _)| n.to_string());
        let edns = match self.edns {
            None => "no EDNS".to_string(),
            Some((p, d)) => format!("EDNS udp={p}{}", if d { " do" } else { "" }),
        };
        format!(
            "{} {qt} over {:?}, id {}, flags {:#06x}, {edns}",
            show(&self.qname),
            self.via,
            self.id,
            self.flags
        )
    }
}

fn query(id: u16, flags: u16, qname: &[u8], qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    b.extend_from_slice(qname);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    if let Some((payload, dnssec_ok)) = edns {
        b.extend_from_slice(&[0, 0, 41]);
        b.extend_from_slice(&payload.to_be_bytes());
        b.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    b
}

/// Flips the case of some letters (never the length octets).
fn vary_case(wire: &[u8], rng: &mut Lcg) -> Vec<u8> {
    let mut out = wire.to_vec();
    if rng.one_in(3) {
        return out;
    }
    let mut at = 0;
    while out[at] != 0 {
        let len = out[at] as usize;
        for c in &mut out[at + 1..at + 1 + len] {
            if c.is_ascii_alphabetic() && rng.one_in(2) {
                *c ^= 0x20;
            }
        }
        at += 1 + len;
    }
    out
}

fn generate() -> Vec<Case> {
    let mut rng = Lcg(0x7121_c4e9);
    let mut cases = Vec::new();
    for name in query_names() {
        for &(_, qtype) in QTYPES {
            let edns = match rng.next() % 6 {
                0 | 1 => None,
                2 => Some((512, rng.one_in(2))),
                3 => Some((4096, rng.one_in(2))),
                _ => Some((1232, rng.one_in(3))),
            };
            cases.push(Case {
                id: cases.len() as u16,
                flags: if rng.one_in(2) { 0x0100 } else { 0 },
                qname: vary_case(&name, &mut rng),
                qtype,
                edns,
                via: if rng.one_in(4) { Via::Tcp } else { Via::Udp },
            });
        }
    }
    cases
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

// ---------------------------------------------------------------------------------------------
// Replies, reduced to what is compared.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rr {
    owner: Vec<u8>,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Opt {
    payload: u16,
    version: u8,
    flags: u16,
    options: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    id: u16,
    /// Header flags without the RCODE.
    flags: u16,
    /// Full RCODE (header + OPT extension).
    rcode: u16,
    question: Vec<u8>,
    answer: BTreeSet<Rr>,
    authority: BTreeSet<Rr>,
    additional: BTreeSet<Rr>,
    opt: Option<Opt>,
}

impl View {
    fn sections(&self) -> [&BTreeSet<Rr>; 3] {
        [&self.answer, &self.authority, &self.additional]
    }
    fn sections_mut(&mut self) -> [&mut BTreeSet<Rr>; 3] {
        [&mut self.answer, &mut self.authority, &mut self.additional]
    }
}

/// Reads a possibly compressed name at `at`: (the name uncompressed, the offset after it).
fn read_name(b: &[u8], mut at: usize) -> Result<(Vec<u8>, usize), String> {
    let mut out = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *b.get(at).ok_or("name runs off the message")? as usize;
        match len {
            0 => {
                out.push(0);
                return Ok((out, end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let ptr = (l & 0x3f) << 8 | *b.get(at + 1).ok_or("short pointer")? as usize;
                end.get_or_insert(at + 2);
                at = ptr;
            }
            l if l < 64 => {
                out.extend_from_slice(b.get(at..at + 1 + l).ok_or("label runs off")?);
                at += 1 + l;
            }
            _ => return Err("bad label type".into()),
        }
    }
    Err("pointer loop".into())
}

/// RDATA with the names the RFC 1035 types may compress written out (RFC 3597 4).
fn rdata_of(
    b: &[u8],
    rtype: u16,
    start: usize,
    len: usize,
    exact: bool,
) -> Result<Vec<u8>, String> {
    let end = start + len;
    let raw = b.get(start..end).ok_or("short RDATA")?;
    let case = |n: Vec<u8>| if exact { n } else { lower(&n) };
    let (names, tail_from) = match rtype {
        T_NS | T_CNAME | T_PTR => (1, None),
        T_MX => (1, Some(2)),
        T_SOA => (2, None),
        _ => return Ok(raw.to_vec()),
    };
    let mut out = Vec::new();
    let mut at = start;
    if let Some(skip) = tail_from {
        out.extend_from_slice(&raw[..skip]);
        at += skip;
    }
    for _ in 0..names {
        let (n, next) = read_name(b, at)?;
        out.extend(case(n));
        at = next;
    }
    out.extend_from_slice(b.get(at..end).ok_or("RDATA shorter than its names")?);
    Ok(out)
}

fn parse(bytes: &[u8], exact: bool) -> Result<View, String> {
    if bytes.len() < 12 {
        return Err(format!("{} bytes", bytes.len()));
    }
    let count = |i: usize| u16::from_be_bytes([bytes[4 + 2 * i], bytes[5 + 2 * i]]) as usize;
    let mut at = 12;
    for _ in 0..count(0) {
        at = read_name(bytes, at)?.1 + 4;
    }
    let question = bytes.get(12..at).ok_or("short question")?.to_vec();
    let header = u16::from_be_bytes([bytes[2], bytes[3]]);
    let mut view = View {
        id: u16::from_be_bytes([bytes[0], bytes[1]]),
        flags: header & !0x000f,
        rcode: header & 0x000f,
        question,
        answer: BTreeSet::new(),
        authority: BTreeSet::new(),
        additional: BTreeSet::new(),
        opt: None,
    };
    for section in 0..3 {
        for _ in 0..count(section + 1) {
            let (owner, next) = read_name(bytes, at)?;
            let f = bytes.get(next..next + 10).ok_or("short record")?;
            let rtype = u16::from_be_bytes([f[0], f[1]]);
            let class = u16::from_be_bytes([f[2], f[3]]);
            let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
            let rdlen = u16::from_be_bytes([f[8], f[9]]) as usize;
            let rdata = rdata_of(bytes, rtype, next + 10, rdlen, exact)?;
            at = next + 10 + rdlen;
            if rtype == 41 {
                if section != 2 || view.opt.is_some() {
                    return Err("OPT outside ADDITIONAL or twice".into());
                }
                view.rcode |= u16::from(f[4]) << 4;
                view.opt = Some(Opt {
                    payload: class,
                    version: f[5],
                    flags: u16::from_be_bytes([f[6], f[7]]),
                    options: rdata,
                });
                continue;
            }
            let rr = Rr {
                owner: if exact { owner } else { lower(&owner) },
                rtype,
                class,
                ttl,
                rdata,
            };
            view.sections_mut()[section].insert(rr);
        }
    }
    if at != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - at));
    }
    Ok(view)
}

fn dig(v: &View) -> String {
    let mut s = format!(
        "    ;; rcode {}, flags {:#06x}, id {}, EDNS {:?}\n",
        v.rcode, v.flags, v.id, v.opt
    );
    for (title, set) in ["ANSWER", "AUTHORITY", "ADDITIONAL"]
        .iter()
        .zip(v.sections())
    {
        for rr in set {
            let hex: String = rr.rdata.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(
                s,
                "    {title:<10} {} {} TYPE{} \\# {} {hex}",
                show(&rr.owner),
                rr.ttl,
                rr.rtype,
                rr.rdata.len()
            )
            .unwrap();
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Allowed differences.

/// What an excuse may look at besides the two replies.
struct Pair<'a> {
    case: &'a Case,
    peer: &'static str,
    /// gslbd's ANSWER to (lowercase qname, qtype) for the non-ANY queries it answered NOERROR.
    answers: &'a BTreeMap<(Vec<u8>, u16), BTreeSet<Rr>>,
    /// The peer's answer to the same query over TCP, asked when its UDP answer had TC.
    peer_tcp: Option<&'a [u8]>,
}

struct Excuse {
    name: &'static str,
    /// The peers it applies to.
    peers: &'static [&'static str],
    reason: &'static str,
    /// Checks that gslbd's view `g` and the peer's `p` differ in exactly this way (in the parts
    /// it looks at) and, if so, makes them equal there and returns true.
    apply: fn(&Pair<'_>, &mut View, &mut View) -> bool,
}

const EXCUSES: &[Excuse] = &[
    Excuse {
        name: "rdata-names-lowercased",
        peers: &["nsd", "knot"],
        reason: "the peers write the domain names inside RP, AFSDB, KX, IPSECKEY, NAPTR and \
                 similar RDATA in lowercase (the canonical form DNSSEC signs, RFC 4034 6.2), \
                 gslbd as the zone wrote them: names compare case-insensitively and case should \
                 be preserved (RFC 4343 3, 4.1). Only in types with names in their RDATA, and \
                 only bytes that are uppercase letters in gslbd's and the same letter in \
                 lowercase in the peer's",
        apply: rdata_names_lowercased,
    },
    Excuse {
        name: "truncated-partial",
        peers: &["nsd"],
        reason: "both set TC with the same RCODE (an answer with its DNSSEC records does not fit \
                 the client's buffer, RFC 4035 3.1.1): the peer keeps the RRsets that fit, gslbd \
                 sends none; RFC 2181 9 allows either, the client asks again over TCP. Only when \
                 gslbd's truncated answer is empty",
        apply: truncated_partial,
    },
    Excuse {
        name: "additional-omitted",
        peers: &["nsd"],
        reason: "NSD (minimal-responses) leaves out the addresses of NS/MX/SRV/SVCB targets in \
                 the ANSWER that gslbd and Knot add: additional section processing adds RRs \
                 'which may be useful' (RFC 1034 4.3.2 step 6, RFC 1035 3.3.9; RFC 9460 4.2 says \
                 SHOULD for SVCB), none required outside a referral's glue (RFC 9471), which is \
                 not excused",
        apply: additional_omitted,
    },
    Excuse {
        name: "nsec3-query-no-cname",
        peers: &["nsd"],
        reason: "QTYPE=NSEC3 at a CNAME: NSD answers NODATA at the name, gslbd (and Knot) follow \
                 the CNAME as RFC 1034 4.3.2 step 3a says; no NSEC3 owner (a hashed name) is a \
                 CNAME's target or owner (RFC 5155 7.2.8), so both answers say the same",
        apply: nsec3_query_no_cname,
    },
    Excuse {
        name: "denial-nsec-or-nsec3",
        peers: &["knot"],
        reason: "the query set DO and the tricky zone holds both a (partial) NSEC chain and NSEC3 \
                 records with an NSEC3PARAM: gslbd (as NSD) proves denial with NSEC, Knot with \
                 NSEC3. Only NSEC/NSEC3 records and their RRSIGs differ, only in AUTHORITY, \
                 RCODE and the rest equal; or gslbd's NSEC proof did not fit a 512-byte buffer \
                 (TC, empty) where Knot's negative answer (SOA, NSEC3 or nothing) did",
        apply: denial_nsec_or_nsec3,
    },
    Excuse {
        name: "any-other-rrset",
        peers: &["nsd"],
        reason: "QTYPE=ANY: each server answers with one RRset of the name (RFC 8482 4.1 lets \
                 the responder choose it); gslbd picks the lowest type, NSD another one. The \
                 peer's RRset must be exactly gslbd's answer to a query for that type",
        apply: any_other_rrset,
    },
    Excuse {
        name: "rrsig-one-type",
        peers: &["knot"],
        reason: "QTYPE=RRSIG: Knot answers with the signatures of one covered type only (its \
                 minimal answer to this meta-like query, as RFC 8482 4.1 allows for ANY; RRSIGs \
                 are meant to come with the data they cover, RFC 4035 3.1.1), gslbd and NSD \
                 with all of them. Knot's records must be exactly gslbd's for that type",
        apply: rrsig_one_type,
    },
];

fn truncated_partial(pr: &Pair<'_>, g: &mut View, p: &mut View) -> bool {
    if g.flags & FLAG_TC == 0
        || p.flags & FLAG_TC == 0
        || g.rcode != p.rcode
        || g.sections().iter().any(|s| !s.is_empty())
        || p.sections().iter().all(|s| s.is_empty())
    {
        return false;
    }
    // What the peer kept is part of its whole answer (over TCP).
    if let Some(Ok(full)) = pr.peer_tcp.map(|b| parse(b, pr.case.exact()))
        && !p
            .sections()
            .iter()
            .zip(full.sections())
            .all(|(part, whole)| part.is_subset(whole))
    {
        return false;
    }
    for s in p.sections_mut() {
        s.clear();
    }
    true
}

/// The targets of NS, MX and SRV records in a section (lowercase wire names).
fn targets(set: &BTreeSet<Rr>) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    for r in set {
        let at = match r.rtype {
            T_NS => 0,
            T_MX | T_SVCB | T_HTTPS => 2,
            T_SRV => 6,
            _ => continue,
        };
        if let Some(Ok((n, _))) = r.rdata.get(at..).map(|d| read_name(d, 0)) {
            out.insert(lower(&n));
        }
    }
    out
}

fn additional_omitted(_: &Pair<'_>, g: &mut View, p: &mut View) -> bool {
    if g.flags & FLAG_AA == 0
        || p.additional.len() >= g.additional.len()
        || !p.additional.is_subset(&g.additional)
    {
        return false;
    }
    let t = targets(&g.answer);
    let omitted_all_addresses = g
        .additional
        .difference(&p.additional)
        .all(|r| matches!(r.rtype, T_A | T_AAAA) && t.contains(&lower(&r.owner)));
    if !omitted_all_addresses {
        return false;
    }
    g.additional = p.additional.clone();
    true
}

fn nsec3_query_no_cname(pr: &Pair<'_>, g: &mut View, p: &mut View) -> bool {
    let qname = lower(&pr.case.qname);
    let soa_only =
        |v: &View| !v.authority.is_empty() && v.authority.iter().all(|r| r.rtype == T_SOA);
    if pr.case.qtype != T_NSEC3
        || !p.answer.is_empty()
        || g.answer.len() != 1
        || g.rcode != RCODE_NOERROR
        || p.rcode != RCODE_NOERROR
        || g.authority != p.authority
        || !soa_only(p)
    {
        return false;
    }
    let cname = g.answer.iter().next().unwrap();
    if cname.rtype != T_CNAME || lower(&cname.owner) != qname {
        return false;
    }
    g.answer.clear();
    g.additional = p.additional.clone();
    true
}

/// Types with domain names inside their RDATA that are not compressed (RFC 3597 4): SRV, RP,
/// AFSDB, KX, NAPTR, IPSECKEY, HIP, LP, DNAME, RRSIG, NSEC, SVCB, HTTPS.
fn names_in_rdata(t: u16) -> bool {
    matches!(
        t,
        17 | 18 | 33 | 35 | 36 | 39 | 45 | 46 | 47 | 55 | 64 | 65 | 107
    )
}

/// `g` and `p` are the same RDATA but for uppercase letters of `g` that are lowercase in `p`.
fn lowercased(g: &Rr, p: &Rr) -> bool {
    g.owner == p.owner
        && g.rtype == p.rtype
        && g.class == p.class
        && g.ttl == p.ttl
        && names_in_rdata(g.rtype)
        && g.rdata.len() == p.rdata.len()
        && g.rdata != p.rdata
        && g.rdata
            .iter()
            .zip(&p.rdata)
            .all(|(a, b)| a == b || (a.is_ascii_uppercase() && a.to_ascii_lowercase() == *b))
}

fn rdata_names_lowercased(_: &Pair<'_>, g: &mut View, p: &mut View) -> bool {
    let mut changed = false;
    for (gs, ps) in g.sections_mut().into_iter().zip(p.sections_mut()) {
        let g_only: Vec<Rr> = gs.difference(ps).cloned().collect();
        for rr in g_only {
            let twin = ps
                .iter()
                .find(|pr| !gs.contains(*pr) && lowercased(&rr, pr))
                .cloned();
            if let Some(t) = twin {
                gs.remove(&rr);
                gs.insert(t);
                changed = true;
            }
        }
    }
    changed
}

/// A denial record: NSEC, NSEC3, or an RRSIG covering one of them.
fn denial_record(r: &Rr) -> bool {
    matches!(r.rtype, T_NSEC | T_NSEC3) || matches!(covered(r), Some(T_NSEC | T_NSEC3))
}

fn denial_nsec_or_nsec3(pr: &Pair<'_>, g: &mut View, p: &mut View) -> bool {
    if !pr.case.dnssec_ok() || g.rcode != p.rcode {
        return false;
    }
    let negative = |v: &View| {
        v.answer.is_empty()
            && v.authority
                .iter()
                .all(|r| matches!(r.rtype, T_SOA | T_RRSIG | T_NSEC | T_NSEC3))
    };
    if g.flags & FLAG_TC != 0 && p.flags & FLAG_TC == 0 {
        // gslbd's NSEC proof too big for the buffer; Knot's negative answer (its NSEC3 proof, or
        // none where its NSEC3 chain has no record for the name) fit.
        if pr.case.via != Via::Udp || g.sections().iter().any(|s| !s.is_empty()) || !negative(p) {
            return false;
        }
        *p = g.clone();
        return true;
    }
    if g.flags != p.flags || g.answer != p.answer || g.additional != p.additional {
        return false;
    }
    let g_only: Vec<Rr> = g.authority.difference(&p.authority).cloned().collect();
    let p_only: Vec<Rr> = p.authority.difference(&g.authority).cloned().collect();
    if g_only.is_empty() && p_only.is_empty() || !g_only.iter().chain(&p_only).all(denial_record) {
        return false;
    }
    p.authority = g.authority.clone();
    true
}

/// The RRsets (by type) of a section owned by `owner`.
fn types_in(set: &BTreeSet<Rr>) -> BTreeSet<u16> {
    set.iter().map(|r| r.rtype).collect()
}

fn any_other_rrset(pr: &Pair<'_>, g: &mut View, p: &mut View) -> bool {
    if pr.case.qtype != T_ANY
        || g.rcode != RCODE_NOERROR
        || p.rcode != RCODE_NOERROR
        || g.answer == p.answer
        || g.authority != p.authority
    {
        return false;
    }
    let (gt, pt) = (types_in(&g.answer), types_in(&p.answer));
    let owner = lower(&pr.case.qname);
    let one_at_qname =
        |v: &View| v.answer.iter().all(|r| lower(&r.owner) == owner) && !v.answer.is_empty();
    if gt.len() != 1 || pt.len() != 1 || gt == pt || !one_at_qname(g) || !one_at_qname(p) {
        return false;
    }
    let t = *pt.iter().next().unwrap();
    let Some(own) = pr.answers.get(&(owner, t)) else {
        return false;
    };
    let norm = |s: &BTreeSet<Rr>| -> BTreeSet<(u16, u32, Vec<u8>)> {
        s.iter()
            .map(|r| (r.rtype, r.ttl, r.rdata.clone()))
            .collect()
    };
    if norm(own) != norm(&p.answer) {
        return false;
    }
    // What follows from each choice (addresses of NS/MX/SRV targets) is not compared.
    g.answer = p.answer.clone();
    g.additional = p.additional.clone();
    true
}

/// The type an RRSIG covers.
fn covered(r: &Rr) -> Option<u16> {
    (r.rtype == T_RRSIG && r.rdata.len() >= 2).then(|| u16::from_be_bytes([r.rdata[0], r.rdata[1]]))
}

fn rrsig_one_type(pr: &Pair<'_>, g: &mut View, p: &mut View) -> bool {
    if pr.case.qtype != T_RRSIG
        || g.rcode != p.rcode
        || g.authority != p.authority
        || p.answer.is_empty()
        || !p.answer.is_subset(&g.answer)
        || p.answer == g.answer
    {
        return false;
    }
    let kinds: BTreeSet<Option<u16>> = p.answer.iter().map(covered).collect();
    let [Some(t)] = kinds.into_iter().collect::<Vec<_>>()[..] else {
        return false;
    };
    let of_type: BTreeSet<Rr> = g
        .answer
        .iter()
        .filter(|r| covered(r) == Some(t))
        .cloned()
        .collect();
    if of_type != p.answer {
        return false;
    }
    g.answer = p.answer.clone();
    true
}

enum Verdict {
    Identical,
    Excused(Vec<&'static str>),
    Different(String),
}

fn judge(pr: &Pair<'_>, g: &[u8], p: &[u8]) -> Verdict {
    let exact = pr.case.exact();
    let (mut gv, mut pv) = match (parse(g, exact), parse(p, exact)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => return Verdict::Different(format!("unparsable: gslbd {a:?}, peer {b:?}")),
    };
    // A UDP response larger than the sizes allow is wrong whatever the peer does.
    if pr.case.via == Via::Udp && g.len().max(p.len()) > pr.case.udp_limit() {
        return Verdict::Different(format!(
            "UDP reply over {} bytes: gslbd {}, {} {}",
            pr.case.udp_limit(),
            g.len(),
            pr.peer,
            p.len()
        ));
    }
    if gv == pv {
        return Verdict::Identical;
    }
    let mut fired = Vec::new();
    for e in EXCUSES {
        if e.peers.contains(&pr.peer) && (e.apply)(pr, &mut gv, &mut pv) {
            fired.push(e.name);
        }
    }
    if !fired.is_empty() && gv == pv {
        Verdict::Excused(fired)
    } else {
        Verdict::Different(format!("gslbd:\n{}  {}:\n{}", dig(&gv), pr.peer, dig(&pv)))
    }
}

// ---------------------------------------------------------------------------------------------
// The test.

#[derive(Debug, Default)]
struct Shapes {
    noerror: usize,
    nodata: usize,
    nxdomain: usize,
    referral: usize,
    cname: usize,
    truncated: usize,
    dnssec_ok: usize,
    tcp: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gslbd_nsd_and_knot_agree_on_the_tricky_zone() {
    let started = Instant::now();
    let gslbd = common::start(Source::file(common::data(CONFIG))).await;
    let nsd = Peer::start("nsd").await;
    let knot = Peer::start("knot").await;
    let peers = [&nsd, &knot];

    let cases = generate();
    assert!(cases.len() >= MIN_QUERIES, "only {} queries", cases.len());

    let limit = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, case) in cases.iter().enumerate() {
        let bytes = case.bytes();
        let via = case.via;
        let g_addr = gslbd.addr("all", if via == Via::Tcp { "tcp" } else { "udp" });
        let (n_addr, k_addr) = (nsd.addr, knot.addr);
        let permit = limit.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let r = tokio::join!(
                send(g_addr, via, &bytes),
                send(n_addr, via, &bytes),
                send(k_addr, via, &bytes)
            );
            // A peer's truncated answer, asked again over TCP (for dnssec-truncated).
            let tc =
                |b: &Option<Vec<u8>>| b.as_ref().is_some_and(|b| b.len() > 3 && b[2] & 0x02 != 0);
            let n_tcp = match tc(&r.1) {
                true => send(n_addr, Via::Tcp, &bytes).await,
                false => None,
            };
            let k_tcp = match tc(&r.2) {
                true => send(k_addr, Via::Tcp, &bytes).await,
                false => None,
            };
            drop(permit);
            (i, r, [n_tcp, k_tcp])
        });
    }
    let mut replies = vec![(None, None, None); cases.len()];
    let mut retried: Vec<[Option<Vec<u8>>; 2]> = vec![[None, None]; cases.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, r, tcp) = done.expect("query task");
        replies[i] = r;
        retried[i] = tcp;
    }

    // gslbd's own answers by (name, type), for the ANY excuse.
    let mut answers = BTreeMap::new();
    let mut shapes = Shapes::default();
    for (case, (g, _, _)) in cases.iter().zip(&replies) {
        let Some(v) = g.as_deref().and_then(|b| parse(b, false).ok()) else {
            continue;
        };
        if case.qtype != T_ANY && v.rcode == RCODE_NOERROR && v.flags & FLAG_TC == 0 {
            answers.insert((lower(&case.qname), case.qtype), v.answer.clone());
        }
        shapes.noerror += usize::from(v.rcode == RCODE_NOERROR);
        shapes.nxdomain += usize::from(v.rcode == RCODE_NXDOMAIN);
        let negative = v.answer.is_empty() && v.authority.iter().all(|r| r.rtype == T_SOA);
        shapes.nodata +=
            usize::from(v.rcode == RCODE_NOERROR && negative && !v.authority.is_empty());
        shapes.referral +=
            usize::from(v.flags & FLAG_AA == 0 && v.authority.iter().any(|r| r.rtype == T_NS));
        shapes.cname +=
            usize::from(v.answer.iter().any(|r| r.rtype == T_CNAME) && case.qtype != T_CNAME);
        shapes.truncated += usize::from(v.flags & FLAG_TC != 0);
        shapes.dnssec_ok += usize::from(case.dnssec_ok());
        shapes.tcp += usize::from(case.via == Via::Tcp);
    }

    let mut summary = format!(
        "tricky zone: {} queries to gslbd, NSD and Knot in {:.1?}\n",
        cases.len(),
        started.elapsed()
    );
    let mut fired: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut report = String::new();
    let mut different = 0;
    for (pi, peer) in peers.iter().enumerate() {
        let (mut identical, mut excused, mut shown) = (0, 0, 0);
        for ((case, r), tcp) in cases.iter().zip(&replies).zip(&retried) {
            let p = if pi == 0 { &r.1 } else { &r.2 };
            let pair = Pair {
                case,
                peer: peer.name,
                answers: &answers,
                peer_tcp: tcp[pi].as_deref(),
            };
            let verdict = match (&r.0, p) {
                (Some(g), Some(p)) => judge(&pair, g, p),
                (g, p) => Verdict::Different(format!(
                    "no reply: gslbd {}, {} {}",
                    g.is_some(),
                    peer.name,
                    p.is_some()
                )),
            };
            match verdict {
                Verdict::Identical => identical += 1,
                Verdict::Excused(names) => {
                    excused += 1;
                    for n in names {
                        *fired.entry((peer.name, n)).or_default() += 1;
                    }
                }
                Verdict::Different(d) => {
                    different += 1;
                    // The first few differences from each peer.
                    shown += 1;
                    if shown <= 12 {
                        writeln!(report, "\n=== {} vs {}\n{d}", case.describe(), peer.name)
                            .unwrap();
                    }
                }
            }
        }
        writeln!(
            summary,
            "  {}: identical {identical}, excused {excused}",
            peer.name
        )
        .unwrap();
    }
    for e in EXCUSES {
        for p in e.peers {
            writeln!(
                summary,
                "    {:>5} {p} {}: {}",
                fired.get(&(*p, e.name)).copied().unwrap_or(0),
                e.name,
                e.reason
            )
            .unwrap();
        }
    }
    writeln!(
        summary,
        "  different: {different}\n  gslbd's answers: {shapes:?}"
    )
    .unwrap();
    println!("{summary}");
    assert!(different == 0, "{summary}{report}");
    for e in EXCUSES {
        for p in e.peers {
            assert!(
                fired.contains_key(&(*p, e.name)),
                "excuse {} never fired for {p}: it is stale (remove it or fix the test)\n{summary}",
                e.name
            );
        }
    }
    for (what, n) in [
        ("NOERROR", shapes.noerror),
        ("NODATA", shapes.nodata),
        ("NXDOMAIN", shapes.nxdomain),
        ("referral", shapes.referral),
        ("CNAME", shapes.cname),
        ("TC", shapes.truncated),
        ("DO", shapes.dnssec_ok),
        ("TCP", shapes.tcp),
    ] {
        assert!(n > 0, "no {what} among gslbd's answers: {shapes:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Each excuse on a difference it excuses and on a near miss it must reject.

fn t_case(qname: &str, qtype: u16, edns: Option<(u16, bool)>, via: Via) -> Case {
    Case {
        id: 1,
        flags: 0,
        qname: parse_wire(qname),
        qtype,
        edns,
        via,
    }
}

fn t_rr(owner: &str, rtype: u16, ttl: u32, rdata: &[u8]) -> Rr {
    Rr {
        owner: parse_wire(owner),
        rtype,
        class: 1,
        ttl,
        rdata: rdata.to_vec(),
    }
}

fn t_view(flags: u16, answer: &[Rr], authority: &[Rr], additional: &[Rr]) -> View {
    View {
        id: 1,
        flags,
        rcode: 0,
        question: Vec::new(),
        answer: answer.iter().cloned().collect(),
        authority: authority.iter().cloned().collect(),
        additional: additional.iter().cloned().collect(),
        opt: None,
    }
}

/// Runs `apply` on copies of `g` and `p`: (it fired, the views are then equal).
fn t_apply(
    apply: fn(&Pair<'_>, &mut View, &mut View) -> bool,
    pair: &Pair<'_>,
    g: &View,
    p: &View,
) -> (bool, bool) {
    let (mut g, mut p) = (g.clone(), p.clone());
    let fired = apply(pair, &mut g, &mut p);
    (fired, g == p)
}

const AA: u16 = 0x8400;

#[test]
fn excuse_denial_nsec_or_nsec3() {
    let answers = BTreeMap::new();
    let soa = t_rr("tricky.example.", T_SOA, 60, &[0]);
    let nsec = t_rr("alias.tricky.example.", T_NSEC, 60, &[0, 1, 0]);
    let nsec_sig = t_rr("alias.tricky.example.", T_RRSIG, 60, &[0, 47, 13]);
    let g = t_view(AA, &[], &[soa.clone(), nsec.clone(), nsec_sig.clone()], &[]);
    let p = t_view(AA, &[], std::slice::from_ref(&soa), &[]);
    let with_do = t_case("zz.tricky.example.", 1, Some((1232, true)), Via::Udp);
    let pair = |c| Pair {
        case: c,
        peer: "knot",
        answers: &answers,
        peer_tcp: None,
    };
    assert_eq!(
        t_apply(denial_nsec_or_nsec3, &pair(&with_do), &g, &p),
        (true, true)
    );
    // The peer's NSEC3 instead.
    let nsec3 = t_rr("2t7b.tricky.example.", T_NSEC3, 60, &[1, 0, 0, 0]);
    let p3 = t_view(AA, &[], &[soa.clone(), nsec3], &[]);
    assert_eq!(
        t_apply(denial_nsec_or_nsec3, &pair(&with_do), &g, &p3),
        (true, true)
    );
    // Near misses: no DO; gslbd's extra is an RRSIG of another type.
    let no_do = t_case("zz.tricky.example.", 1, Some((1232, false)), Via::Udp);
    assert!(!t_apply(denial_nsec_or_nsec3, &pair(&no_do), &g, &p).0);
    let soa_sig = t_rr("tricky.example.", T_RRSIG, 60, &[0, 6, 13]);
    let g2 = t_view(AA, &[], &[soa.clone(), soa_sig.clone()], &[]);
    assert!(!t_apply(denial_nsec_or_nsec3, &pair(&with_do), &g2, &p).0);
}

#[test]
fn excuse_truncated_partial() {
    let answers = BTreeMap::new();
    let soa = t_rr("tricky.example.", T_SOA, 60, &[0]);
    let g = t_view(AA | FLAG_TC, &[], &[], &[]);
    let p = t_view(AA | FLAG_TC, &[], std::slice::from_ref(&soa), &[]);
    let c = t_case("www.tricky.example.", 1, Some((512, true)), Via::Udp);
    let pair = Pair {
        case: &c,
        peer: "nsd",
        answers: &answers,
        peer_tcp: None,
    };
    assert_eq!(t_apply(truncated_partial, &pair, &g, &p), (true, true));
    // Near misses: gslbd's answer not truncated; gslbd's truncated answer not empty.
    let g2 = t_view(AA, &[], &[], &[]);
    assert!(!t_apply(truncated_partial, &pair, &g2, &p).0);
    let g3 = t_view(AA | FLAG_TC, &[], std::slice::from_ref(&soa), &[]);
    assert!(!t_apply(truncated_partial, &pair, &g3, &p).0);
}

#[test]
fn excuse_any_other_rrset() {
    let q = "mail.tricky.example.";
    let a = t_rr(q, 1, 60, &[127, 0, 0, 3]);
    let aaaa = t_rr(q, 28, 60, &[0; 16]);
    let mut answers = BTreeMap::new();
    answers.insert((parse_wire(q), 28), BTreeSet::from([aaaa.clone()]));
    let c = t_case(q, T_ANY, None, Via::Udp);
    let g = t_view(AA, std::slice::from_ref(&a), &[], &[]);
    let p = t_view(AA, std::slice::from_ref(&aaaa), &[], &[]);
    let pair = Pair {
        case: &c,
        peer: "nsd",
        answers: &answers,
        peer_tcp: None,
    };
    assert_eq!(t_apply(any_other_rrset, &pair, &g, &p), (true, true));
    // Near misses: the peer's RRset is not what gslbd answers for its type (TTL); not ANY.
    let p2 = t_view(AA, &[t_rr(q, 28, 61, &[0; 16])], &[], &[]);
    assert!(!t_apply(any_other_rrset, &pair, &g, &p2).0);
    let c2 = t_case(q, 1, None, Via::Udp);
    let pair2 = Pair { case: &c2, ..pair };
    assert!(!t_apply(any_other_rrset, &pair2, &g, &p).0);
}

#[test]
fn excuse_rrsig_one_type() {
    let answers = BTreeMap::new();
    let q = "alias.tricky.example.";
    let s5 = t_rr(q, T_RRSIG, 3600, &[0, 5, 13]);
    let s47 = t_rr(q, T_RRSIG, 300, &[0, 47, 13]);
    let c = t_case(q, T_RRSIG, None, Via::Tcp);
    let pair = Pair {
        case: &c,
        peer: "knot",
        answers: &answers,
        peer_tcp: None,
    };
    let g = t_view(AA, &[s5.clone(), s47.clone()], &[], &[]);
    assert_eq!(
        t_apply(
            rrsig_one_type,
            &pair,
            &g,
            &t_view(AA, std::slice::from_ref(&s5), &[], &[])
        ),
        (true, true)
    );
    // Near misses: a TTL that is not gslbd's; two covered types that are not all of them.
    let s5b = t_rr(q, T_RRSIG, 300, &[0, 5, 13]);
    assert!(!t_apply(rrsig_one_type, &pair, &g, &t_view(AA, &[s5b], &[], &[])).0);
    let s16 = t_rr(q, T_RRSIG, 300, &[0, 16, 13]);
    let g3 = t_view(AA, &[s5.clone(), s47.clone(), s16], &[], &[]);
    let p3 = t_view(AA, &[s5, s47], &[], &[]);
    assert!(!t_apply(rrsig_one_type, &pair, &g3, &p3).0);
}

#[test]
fn excuse_rdata_names_lowercased() {
    let answers = BTreeMap::new();
    let c = t_case("rp.tricky.example.", 17, None, Via::Udp);
    let pair = Pair {
        case: &c,
        peer: "knot",
        answers: &answers,
        peer_tcp: None,
    };
    let rp = |n: &str| {
        t_rr(
            "rp.tricky.example.",
            17,
            60,
            &[parse_wire(n), vec![0]].concat(),
        )
    };
    let g = t_view(AA, &[rp("Host.Tricky.Example.")], &[], &[]);
    let p = t_view(AA, &[rp("host.tricky.example.")], &[], &[]);
    assert_eq!(t_apply(rdata_names_lowercased, &pair, &g, &p), (true, true));
    // Near misses: the peer has uppercase where gslbd has lowercase; a TXT differing in case;
    // another name.
    assert!(!t_apply(rdata_names_lowercased, &pair, &p, &g).0);
    let txt = |s: &[u8]| t_view(AA, &[t_rr("rp.tricky.example.", 16, 60, s)], &[], &[]);
    assert!(
        !t_apply(
            rdata_names_lowercased,
            &pair,
            &txt(b"\x01A"),
            &txt(b"\x01a")
        )
        .0
    );
    let p2 = t_view(AA, &[rp("hast.tricky.example.")], &[], &[]);
    assert!(!t_apply(rdata_names_lowercased, &pair, &g, &p2).0);
}

#[test]
fn excuse_additional_omitted() {
    let answers = BTreeMap::new();
    let c = t_case("tricky.example.", T_MX, None, Via::Udp);
    let pair = Pair {
        case: &c,
        peer: "nsd",
        answers: &answers,
        peer_tcp: None,
    };
    let mx = t_rr(
        "tricky.example.",
        T_MX,
        60,
        &[vec![0, 10], parse_wire("mail.tricky.example.")].concat(),
    );
    let mail = t_rr("mail.tricky.example.", T_A, 60, &[127, 0, 0, 3]);
    let other = t_rr("www.tricky.example.", T_A, 60, &[127, 0, 0, 10]);
    let g = t_view(
        AA,
        std::slice::from_ref(&mx),
        &[],
        std::slice::from_ref(&mail),
    );
    let p = t_view(AA, std::slice::from_ref(&mx), &[], &[]);
    assert_eq!(t_apply(additional_omitted, &pair, &g, &p), (true, true));
    // Near misses: the address left out is not of a target; a non-authoritative (referral)
    // answer, whose glue is required.
    let g2 = t_view(AA, std::slice::from_ref(&mx), &[], &[other]);
    assert!(!t_apply(additional_omitted, &pair, &g2, &p).0);
    let g3 = t_view(0x8000, std::slice::from_ref(&mx), &[], &[mail]);
    assert!(!t_apply(additional_omitted, &pair, &g3, &p).0);
}

#[test]
fn excuse_nsec3_query_no_cname() {
    let answers = BTreeMap::new();
    let q = "alias.tricky.example.";
    let soa = t_rr("tricky.example.", T_SOA, 300, &[0; 22]);
    let cname = t_rr(q, T_CNAME, 60, &parse_wire("www.tricky.example."));
    let g = t_view(
        AA,
        std::slice::from_ref(&cname),
        std::slice::from_ref(&soa),
        &[],
    );
    let p = t_view(AA, &[], std::slice::from_ref(&soa), &[]);
    let c = t_case(q, T_NSEC3, None, Via::Udp);
    let pair = Pair {
        case: &c,
        peer: "nsd",
        answers: &answers,
        peer_tcp: None,
    };
    assert_eq!(t_apply(nsec3_query_no_cname, &pair, &g, &p), (true, true));
    // Near misses: QTYPE NSEC; gslbd's answer holds data after the CNAME.
    let c2 = t_case(q, T_NSEC, None, Via::Udp);
    let pair2 = Pair { case: &c2, ..pair };
    assert!(!t_apply(nsec3_query_no_cname, &pair2, &g, &p).0);
    let www = t_rr("www.tricky.example.", T_NSEC3, 60, &[1]);
    let g2 = t_view(AA, &[cname, www], std::slice::from_ref(&soa), &[]);
    assert!(!t_apply(nsec3_query_no_cname, &pair, &g2, &p).0);
}
