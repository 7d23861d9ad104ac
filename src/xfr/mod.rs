//! Zone transfers, the primary side: who may transfer a zone (`transfer` ACL), the serial policy
//! and IXFR journal a reload keeps (`reconcile`, run by `Snapshot::build_after` while the new
//! zones are still owned), and the outgoing AXFR (RFC 5936) and IXFR (RFC 1995) messages
//! (`Outgoing`, written lazily one message at a time by the TCP connection that asked).
//!
//! What a secondary receives for a GSLB name: it cannot run the GSLB, so the name is transferred
//! as its default answer (the carrier rule's `default` line, the location rule's `default`
//! region's whole pool), with the rule's TTL; a standard secondary then serves a safe fallback.
//!
//! Nothing here does network I/O; `reconcile` reads journal files (a build reads zone files
//! too), and journals are written by the server (`commit`) only once the snapshot holding them
//! is the one serving.

pub mod catalog;
pub mod journal;
pub mod notify;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::rr::RecordType;
use ipnet::IpNet;
use serde::Deserialize;

use crate::gslb::Gslb;
use crate::snapshot::Snapshot;
use crate::wire::{self, rcode};
use crate::zone::rdata::{Part, WireRdata};
use crate::zone::{Node, NodeTable, Zone};

pub use journal::{Diff, Journal, Rec};

const IXFR: u16 = 251;
const SOA: u16 = 6;

/// What a reload does when a zone's data changed but its serial did not increase (Knot's
/// `zonefile-load: difference-no-serial` and `serial-policy`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SerialPolicy {
    /// The reload fails: the operator raises the serial.
    #[default]
    Keep,
    /// The served serial is the previous one plus one.
    Increment,
    /// The served serial is the time (seconds since 1970), or the previous plus one when that is
    /// not newer.
    Unixtime,
}

/// One entry of a zone's `transfer` ACL: a client matches when it comes from `net` (when set)
/// and signed its request with `key` (when set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    pub net: Option<IpNet>,
    /// A TSIG key name, lowercase, without the trailing dot.
    pub key: Option<String>,
}

/// Where NOTIFY goes for a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    pub addr: SocketAddr,
    pub key: Option<String>,
}

/// The transfer settings of one zone and its journal, in the snapshot beside the zone.
#[derive(Debug, Clone, Default)]
pub struct ZoneXfr {
    pub acl: Vec<AclEntry>,
    pub notify: Vec<NotifyTarget>,
    pub policy: SerialPolicy,
    pub journal_path: Option<PathBuf>,
    pub journal_size: u64,
    /// None: the zone is not transferable (no ACL and no NOTIFY), so no journal is kept.
    pub journal: Option<Arc<Journal>>,
    /// A zone gslbd writes itself (the catalog): its serial is the build time, kept while its
    /// data stays the same.
    pub synthesized: bool,
}

impl ZoneXfr {
    /// Whether the zone is offered to secondaries at all.
    pub fn transferable(&self) -> bool {
        !self.acl.is_empty() || !self.notify.is_empty()
    }

    /// Whether a client at `ip`, whose request was signed with `key` (already verified), may
    /// transfer the zone.
    pub fn allows(&self, ip: IpAddr, key: Option<&str>) -> bool {
        let ip = canonical(ip);
        self.acl.iter().any(|e| {
            e.net.is_none_or(|n| n.contains(&ip))
                && e.key
                    .as_deref()
                    .is_none_or(|k| key.is_some_and(|have| same_key(k, have)))
        })
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn same_key(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Compiles a zone's `transfer`, `notify`, `serial` and journal settings; problems are returned
/// as config problems naming the zone. `zone_file` is the zone file's path (the default journal
/// sits beside it when it is on disk).
pub fn compile(zc: &crate::config::ZoneConfig, base: &Path) -> Result<ZoneXfr, Vec<String>> {
    let mut problems = Vec::new();
    let mut acl = Vec::new();
    for entry in &zc.transfer {
        match parse_acl(entry) {
            Ok(e) => acl.push(e),
            Err(e) => problems.push(format!("zone {}: transfer \"{entry}\": {e}", zc.name)),
        }
    }
    let mut notify = Vec::new();
    for entry in &zc.notify {
        match parse_notify(entry) {
            Ok(t) => notify.push(t),
            Err(e) => problems.push(format!("zone {}: notify \"{entry}\": {e}", zc.name)),
        }
    }
    if zc.journal_size < 4096 {
        problems.push(format!(
            "zone {}: journal_size = {}: at least 4096 bytes",
            zc.name, zc.journal_size
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let zone_file = base.join(&zc.file);
    let journal_path = zc.journal.as_ref().map(|j| base.join(j)).or_else(|| {
        zone_file.is_file().then(|| {
            let mut p = zone_file.clone().into_os_string();
            p.push(".journal");
            PathBuf::from(p)
        })
    });
    Ok(ZoneXfr {
        acl,
        notify,
        policy: zc.serial,
        journal_path,
        journal_size: zc.journal_size,
        journal: None,
        synthesized: false,
    })
}

fn parse_acl(entry: &str) -> Result<AclEntry, String> {
    let words: Vec<&str> = entry.split_whitespace().collect();
    let net = |w: &str| {
        w.parse::<IpNet>()
            .or_else(|_| w.parse::<IpAddr>().map(IpNet::from))
            .map(|n| n.trunc())
            .map_err(|_| format!("\"{w}\" is not an address or network"))
    };
    match words[..] {
        [n] => Ok(AclEntry {
            net: Some(net(n)?),
            key: None,
        }),
        ["key", k] => Ok(AclEntry {
            net: None,
            key: Some(key_name(k)),
        }),
        [n, "key", k] => Ok(AclEntry {
            net: Some(net(n)?),
            key: Some(key_name(k)),
        }),
        _ => Err("expected \"NETWORK\", \"key NAME\" or \"NETWORK key NAME\"".into()),
    }
}

fn parse_notify(entry: &str) -> Result<NotifyTarget, String> {
    let words: Vec<&str> = entry.split_whitespace().collect();
    let (addr, key) = match words[..] {
        [a] => (a, None),
        [a, "key", k] => (a, Some(key_name(k))),
        _ => return Err("expected \"ADDRESS[:PORT]\" or \"ADDRESS[:PORT] key NAME\"".into()),
    };
    let addr = addr
        .parse::<SocketAddr>()
        .or_else(|_| addr.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("\"{addr}\" is not an address (IP, IP:PORT or [IPv6]:PORT)"))?;
    Ok(NotifyTarget { addr, key })
}

fn key_name(k: &str) -> String {
    k.trim_end_matches('.').to_ascii_lowercase()
}

/// RFC 1982 serial number arithmetic: whether `a` is newer than `b`.
pub fn newer(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

/// A record's TTL as transferred: an RRSIG keeps its own (RFC 4034 3).
fn ttl_of(set_ttl: u32, r: &WireRdata) -> u32 {
    r.ttl().unwrap_or(set_ttl)
}

/// The RRsets a transfer carries at a node: its own, or a GSLB rule's default answer.
fn node_sets<'a>(node: &'a Node, gslb: &'a Gslb) -> Vec<(u16, u32, &'a [WireRdata])> {
    match node.rule {
        Some(rule) if (rule as usize) < gslb.rules.len() => {
            let (ttl, sets) = gslb.default_rrsets(rule as usize);
            sets.into_iter()
                .map(|s| (u16::from(s.rtype), ttl, &s.rdatas[..]))
                .collect()
        }
        _ => node
            .rrsets
            .iter()
            .map(|s| (u16::from(s.rtype), s.ttl, &s.rdatas[..]))
            .collect(),
    }
}

fn rec(owner: &[u8], rtype: u16, ttl: u32, r: &WireRdata) -> Rec {
    let mut rdata = Vec::with_capacity(r.len());
    r.uncompressed(&mut rdata);
    Rec {
        owner: owner.into(),
        rtype,
        ttl,
        rdata: rdata.into(),
    }
}

/// The GSLB names of a zone and what a transfer carries for each (for `gslbd check`).
pub fn dynamic_names(zone: &Zone, gslb: &Gslb) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = zone
        .nodes
        .iter()
        .filter_map(|n| {
            let rule = n.rule? as usize;
            let (ttl, sets) = gslb.default_rrsets(rule);
            let what: Vec<String> = sets
                .iter()
                .flat_map(|s| {
                    s.rdatas.iter().map(|r| {
                        format!(
                            "{} {}",
                            s.rtype,
                            crate::zone::rdata::presentation(s.rtype, r)
                        )
                    })
                })
                .collect();
            Some((
                crate::zone::name::display(&n.key),
                format!("its default answer (TTL {ttl}): {}", what.join(", ")),
            ))
        })
        .collect();
    out.sort();
    out
}

/// The zone's SOA record as transferred.
pub fn soa_rec(zone: &Zone) -> Rec {
    let soa = zone.soa();
    rec(zone.apex().owner(), SOA, soa.ttl, &soa.rdatas[0])
}

/// An order-independent digest of every record a transfer of the zone carries except its SOA:
/// whether two versions hold the same data, without keeping the old one (a restart compares the
/// zone file with the journal's last version by it).
pub fn fingerprint(zone: &Zone, gslb: &Gslb) -> u128 {
    let mut sum = 0u128;
    let mut buf = Vec::with_capacity(256);
    for table in [&zone.nodes, &zone.nsec3] {
        for node in table.iter() {
            let apex = node.key == zone.origin_key;
            for (rtype, ttl, rdatas) in node_sets(node, gslb) {
                if apex && rtype == SOA {
                    continue;
                }
                for r in rdatas {
                    buf.clear();
                    r.uncompressed(&mut buf);
                    sum = sum.wrapping_add(rec_hash(&node.key, rtype, ttl_of(ttl, r), &buf));
                }
            }
        }
    }
    sum
}

fn rec_hash(key: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> u128 {
    use std::hash::Hasher;
    // A fixed key: the digest is compared across restarts.
    let mut h = siphasher::sip128::SipHasher13::new_with_keys(0x6773_6c62, 0x6a6f_7572);
    h.write(key);
    h.write_u16(rtype);
    h.write_u32(ttl);
    h.write(rdata);
    siphasher::sip128::Hasher128::finish128(&h).as_u128()
}

/// The records that differ between two versions of a zone, SOA aside: (removed, added).
pub fn difference(
    old: &Zone,
    old_gslb: &Gslb,
    new: &Zone,
    new_gslb: &Gslb,
) -> (Vec<Rec>, Vec<Rec>) {
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for (old_t, new_t) in [(&old.nodes, &new.nodes), (&old.nsec3, &new.nsec3)] {
        // Old nodes the new version also has: when that is all of them, none was removed.
        let mut kept = 0;
        for n in new_t.iter() {
            let old_node = old_t.get(&n.key);
            if let Some(o) = old_node {
                kept += 1;
                // Most nodes of a reloaded zone did not change: compared in place, without
                // collecting their sets (a 1M-record reload spent most of its diff there).
                if identical(o, n) {
                    continue;
                }
            }
            let apex = n.key == new.origin_key;
            let new_sets = node_sets(n, new_gslb);
            let old_sets = old_node.map(|o| node_sets(o, old_gslb)).unwrap_or_default();
            missing_from(n.owner(), apex, &new_sets, &old_sets, &mut added);
            if let Some(o) = old_node {
                missing_from(o.owner(), apex, &old_sets, &new_sets, &mut removed);
            }
        }
        if kept == old_t.len() {
            continue;
        }
        for o in old_t.iter().filter(|o| new_t.get(&o.key).is_none()) {
            missing_from(o.owner(), false, &node_sets(o, old_gslb), &[], &mut removed);
        }
    }
    (removed, added)
}

/// Two versions of a node holding the same records in the same order (no GSLB rule, whose
/// transferred form depends on the rules): nothing to add or remove there.
fn identical(old: &Node, new: &Node) -> bool {
    old.rule.is_none()
        && new.rule.is_none()
        && old.rrsets.len() == new.rrsets.len()
        && old.rrsets.iter().zip(&new.rrsets).all(|(a, b)| {
            a.rtype == b.rtype
                && a.ttl == b.ttl
                && a.rdatas.len() == b.rdatas.len()
                && a.rdatas.iter().zip(&b.rdatas).all(|(x, y)| x.identical(y))
        })
}

/// Appends to `out` the records of `sets` (at `owner`) that `others` does not hold with the same
/// TTL; the SOA is left out at the apex (IXFR carries it apart, RFC 1995 4).
fn missing_from(
    owner: &[u8],
    apex: bool,
    sets: &[(u16, u32, &[WireRdata])],
    others: &[(u16, u32, &[WireRdata])],
    out: &mut Vec<Rec>,
) {
    for &(rtype, ttl, rdatas) in sets {
        if apex && rtype == SOA {
            continue;
        }
        let other = others.iter().find(|s| s.0 == rtype);
        for r in rdatas {
            let t = ttl_of(ttl, r);
            let kept = other.is_some_and(|&(_, ot, ord)| {
                ord.iter().any(|o| o.same_data(r) && ttl_of(ot, o) == t)
            });
            if !kept {
                out.push(rec(owner, rtype, t, r));
            }
        }
    }
}

/// The SOA's RDATA with the serial zeroed: whether anything but the serial changed.
fn soa_sans_serial(r: &Rec) -> Vec<u8> {
    let mut v = r.rdata.to_vec();
    if v.len() >= 20 {
        let at = v.len() - 20;
        v[at..at + 4].fill(0);
    }
    v.extend_from_slice(&r.ttl.to_be_bytes());
    v
}

/// An RRSIG at the apex covering the SOA (RFC 4034 3.1.1: type covered first).
fn soa_signature(r: &Rec, apex: &[u8]) -> bool {
    r.rtype == 46 && r.rdata.starts_with(&SOA.to_be_bytes()) && r.owner.eq_ignore_ascii_case(apex)
}

/// `set_serial`, then `resign` (a signed zone's SOA is signed again, `dnssec::sign::resign_soa`).
fn set_serial_and(resign: &mut dyn FnMut(&mut Zone), zone: &mut Zone, serial: u32) {
    set_serial(zone, serial);
    resign(zone);
}

/// Sets the zone's serial (a policy's choice) in its SOA record.
fn set_serial(zone: &mut Zone, serial: u32) {
    let key = zone.origin_key.clone();
    let apex = zone
        .nodes
        .get_or_insert_with(&key, || unreachable!("a built zone has its apex"));
    if let Some(soa) = apex.rrsets.iter_mut().find(|s| s.rtype == RecordType::SOA)
        && let Some(r) = soa.rdatas.first().and_then(|r| r.with_soa_serial(serial))
    {
        soa.rdatas[0] = r;
    }
    zone.serial = serial;
}

fn bumped(policy: SerialPolicy, last: u32) -> u32 {
    let next = last.wrapping_add(1);
    match policy {
        SerialPolicy::Keep | SerialPolicy::Increment => next,
        SerialPolicy::Unixtime => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32);
            if newer(now, last) { now } else { next }
        }
    }
}

/// The version of a zone served before this build: the running snapshot's copy on a reload, or
/// the journal on disk at start.
pub enum Previous<'a> {
    Served {
        zone: &'a Zone,
        gslb: &'a Gslb,
        journal: Option<Arc<Journal>>,
    },
    Journal(Journal),
    None,
}

/// A journal to write once the snapshot holding it serves.
#[derive(Debug, Clone)]
pub struct Pending {
    pub path: PathBuf,
    pub journal: Arc<Journal>,
}

/// Applies the serial policy to a freshly loaded transferable zone against the version served
/// before it and extends its journal with the difference. Err: the data changed but the serial
/// did not increase under `serial = "keep"` (the reload fails, the old data keeps serving).
/// Returns a note for the log when something was decided that an operator should know of.
pub fn reconcile(
    name: &str,
    zone: &mut Zone,
    gslb: &Gslb,
    x: &mut ZoneXfr,
    previous: Previous<'_>,
    resign: &mut dyn FnMut(&mut Zone),
) -> Result<(Option<Pending>, Option<String>), String> {
    let mut note = None;
    let (journal, changed) = match previous {
        Previous::Served {
            zone: old,
            gslb: old_gslb,
            journal,
        } => {
            let (mut removed, mut added) = difference(old, old_gslb, zone, gslb);
            let old_soa = soa_rec(old);
            let soa_changed = soa_sans_serial(&old_soa) != soa_sans_serial(&soa_rec(zone));
            // The SOA's own signature (a signed zone, `dnssec`) changes with the serial: it is
            // part of the SOA, not a change of data.
            let apex = &zone.origin_key;
            let data_changed = removed
                .iter()
                .chain(&added)
                .any(|r| !soa_signature(r, apex))
                || soa_changed;
            let last = old.serial;
            if data_changed && !newer(zone.serial, last) {
                if x.policy == SerialPolicy::Keep {
                    return Err(format!(
                        "zone {name}: the data changed but the serial did not increase ({} -> {}): raise it, or set serial = \"increment\" or \"unixtime\"",
                        last, zone.serial
                    ));
                }
                let s = bumped(x.policy, last);
                note = Some(format!(
                    "zone {name}: data changed, serial {} in the file, serving {s} (serial = {:?})",
                    zone.serial, x.policy
                ));
                set_serial_and(resign, zone, s);
                // A signed zone's SOA signature changed with the serial (`dnssec`).
                (removed, added) = difference(old, old_gslb, zone, gslb);
            } else if !data_changed && (x.synthesized || newer(last, zone.serial)) {
                // The policy bumped the serial earlier; the file still has the old one.
                set_serial_and(resign, zone, last);
            }
            let base = journal.as_deref().cloned().unwrap_or_else(|| {
                Journal::start(last, fingerprint(old, old_gslb), old_soa.clone())
            });
            if zone.serial == last {
                (base, false)
            } else {
                let mut j = base;
                let diff = Diff {
                    from: last,
                    to: zone.serial,
                    soa_from: old_soa,
                    soa_to: soa_rec(zone),
                    removed,
                    added,
                };
                j.push(diff, fingerprint(zone, gslb), x.journal_size);
                (j, true)
            }
        }
        Previous::Journal(j) => {
            let fp = fingerprint(zone, gslb);
            let soa = soa_rec(zone);
            let same = fp == j.fingerprint && soa_sans_serial(&soa) == soa_sans_serial(&j.soa);
            if same && zone.serial == j.serial {
                (j, false)
            } else if same && (x.synthesized || newer(j.serial, zone.serial)) {
                // Served with a serial the policy chose; the file has the data.
                set_serial_and(resign, zone, j.serial);
                (j, false)
            } else if same {
                // Only the serial moved on: a difference with no records.
                let mut j2 = j.clone();
                let diff = Diff {
                    from: j.serial,
                    to: zone.serial,
                    soa_from: j.soa.clone(),
                    soa_to: soa,
                    removed: vec![],
                    added: vec![],
                };
                j2.push(diff, fp, x.journal_size);
                (j2, true)
            } else {
                // Edited while stopped: what changed is unknown, so the journal starts over
                // (secondaries get AXFR once).
                if !newer(zone.serial, j.serial) {
                    let s = bumped(x.policy, j.serial);
                    note = Some(if x.policy == SerialPolicy::Keep {
                        format!(
                            "zone {name}: changed while gslbd was stopped but the serial did not increase ({} -> {}); serving {s}",
                            j.serial, zone.serial
                        )
                    } else {
                        format!("zone {name}: changed while stopped, serving serial {s}")
                    });
                    set_serial_and(resign, zone, s);
                }
                (Journal::start(zone.serial, fp, soa_rec(zone)), true)
            }
        }
        Previous::None => (
            Journal::start(zone.serial, fingerprint(zone, gslb), soa_rec(zone)),
            true,
        ),
    };
    let journal = Arc::new(journal);
    x.journal = Some(journal.clone());
    let pending = match (&x.journal_path, changed) {
        (Some(path), true) => Some(Pending {
            path: path.clone(),
            journal,
        }),
        _ => None,
    };
    Ok((pending, note))
}

/// Writes the journals a snapshot about to serve carries (logged, counted; a failure leaves the
/// in-memory journal serving and the next restart starts a new one).
pub fn commit(pending: &[Pending]) {
    for p in pending {
        if let Err(e) = p.journal.write(&p.path) {
            tracing::warn!(path = %p.path.display(), "cannot write the IXFR journal: {e}");
        }
    }
}

/// Transfer counters (`/metrics`), process-wide.
pub struct Counters {
    /// [axfr, ixfr, ixfr answered as axfr, ixfr up to date, refused, notauth]
    out: [AtomicU64; 6],
    bytes: AtomicU64,
    /// NOTIFY: [sent, acknowledged, given up]
    pub notify: [AtomicU64; 3],
}

pub static COUNTERS: Counters = Counters {
    out: [const { AtomicU64::new(0) }; 6],
    bytes: AtomicU64::new(0),
    notify: [const { AtomicU64::new(0) }; 3],
};

/// The Prometheus lines of the transfer counters.
pub fn render_metrics(s: &mut String) {
    use std::fmt::Write;
    s.push_str("# HELP gslbd_xfr_out_total Outgoing zone transfer requests by outcome.\n");
    s.push_str("# TYPE gslbd_xfr_out_total counter\n");
    for (i, k) in [
        "axfr",
        "ixfr",
        "ixfr_as_axfr",
        "ixfr_up_to_date",
        "refused",
        "notauth",
    ]
    .iter()
    .enumerate()
    {
        let _ = writeln!(
            s,
            "gslbd_xfr_out_total{{result=\"{k}\"}} {}",
            COUNTERS.out[i].load(Ordering::Relaxed)
        );
    }
    s.push_str("# HELP gslbd_xfr_out_bytes_total Bytes of outgoing transfer messages.\n");
    s.push_str("# TYPE gslbd_xfr_out_bytes_total counter\n");
    let _ = writeln!(
        s,
        "gslbd_xfr_out_bytes_total {}",
        COUNTERS.bytes.load(Ordering::Relaxed)
    );
    s.push_str("# HELP gslbd_notify_total NOTIFY messages to secondaries by outcome.\n");
    s.push_str("# TYPE gslbd_notify_total counter\n");
    for (i, k) in ["sent", "acknowledged", "given_up"].iter().enumerate() {
        let _ = writeln!(
            s,
            "gslbd_notify_total{{result=\"{k}\"}} {}",
            COUNTERS.notify[i].load(Ordering::Relaxed)
        );
    }
}

/// Largest transfer message: the 16-bit TCP length (RFC 1035 4.2.2) less room a TSIG record
/// may need.
const MESSAGE_MAX: usize = 65535 - 512;

/// What `answer_tcp` decided for a message.
pub enum TcpAnswer {
    /// Not a transfer request: answer it the usual way.
    NotTransfer,
    /// One reply (an error, or an up-to-date IXFR).
    One(Vec<u8>),
    /// A transfer, one message at a time.
    Stream(Box<Outgoing>),
}

/// The TCP side of a transfer request to authoritative listener `listener` from `peer`.
pub fn answer_tcp(
    snap: &Arc<Snapshot>,
    listener: usize,
    packet: &[u8],
    peer: SocketAddr,
) -> TcpAnswer {
    // Cheap test first: one question whose type is AXFR or IXFR.
    if !is_transfer(packet) {
        return TcpAnswer::NotTransfer;
    }
    // A signed request (RFC 8945): verified first; its key is what the ACL's "key NAME"
    // entries match, and every message of the answer is signed (5.3.1).
    let now = crate::tsig::now();
    let stripped;
    let (packet, verified) = match crate::tsig::verify_request(&snap.keys, packet, now) {
        None => (packet, None),
        Some(Ok(v)) => {
            stripped = v.stripped(packet);
            (&stripped[..], Some(v))
        }
        Some(Err(refused)) => {
            // BADKEY / BADSIG / BADTIME: NOTAUTH with the TSIG error (5.2), as for any query.
            return match query_error(snap, packet) {
                Some(mut out) => {
                    refused.finish(&mut out, now);
                    TcpAnswer::One(out)
                }
                None => TcpAnswer::NotTransfer,
            };
        }
    };
    let Ok(q) = wire::parse_query(packet) else {
        return TcpAnswer::NotTransfer;
    };
    let payload = snap.limits.udp_payload;
    let error = |rc: u16| {
        let mut out = Vec::new();
        wire::encode_error_into(
            q.id,
            q.flags,
            rc,
            Some(q.question),
            q.edns.as_ref(),
            payload,
            false,
            &mut out,
        );
        if let Some(v) = &verified {
            crate::tsig::sign_reply(&mut out, v, now);
        }
        TcpAnswer::One(out)
    };
    let key = verified.as_ref().map(|v| v.key.name.to_string());
    let index = match locate(snap, listener, &q, peer, key.as_deref()) {
        Ok(i) => i,
        Err(rc) => return error(rc),
    };
    let (zone, x) = (&snap.zones[index], &snap.xfr[index]);
    let plan = if q.qtype == IXFR {
        let Some(client) = ixfr_serial(packet) else {
            return error(rcode::FORMERR);
        };
        if !newer(zone.serial, client) {
            // RFC 1995 2: the client is current (or newer): the SOA alone.
            COUNTERS.out[3].fetch_add(1, Ordering::Relaxed);
            Plan::Records(VecDeque::from([soa_rec(zone)]))
        } else {
            match x
                .journal
                .as_ref()
                .and_then(|j| (j.serial == zone.serial).then(|| j.since(client)).flatten())
            {
                Some(diffs) => {
                    COUNTERS.out[1].fetch_add(1, Ordering::Relaxed);
                    let mut recs = VecDeque::new();
                    // RFC 1995 4: the new SOA, then per difference the old SOA, what was
                    // removed, the new SOA, what was added; the new SOA last.
                    recs.push_back(soa_rec(zone));
                    for d in diffs {
                        recs.push_back(d.soa_from.clone());
                        recs.extend(d.removed.iter().cloned());
                        recs.push_back(d.soa_to.clone());
                        recs.extend(d.added.iter().cloned());
                    }
                    recs.push_back(soa_rec(zone));
                    Plan::Records(recs)
                }
                None => {
                    // RFC 1995 4: the journal does not reach the client's serial: the whole
                    // zone, AXFR-style.
                    COUNTERS.out[2].fetch_add(1, Ordering::Relaxed);
                    Plan::Zone(Cursor::default())
                }
            }
        }
    } else {
        COUNTERS.out[0].fetch_add(1, Ordering::Relaxed);
        Plan::Zone(Cursor::default())
    };
    TcpAnswer::Stream(Box::new(Outgoing {
        snap: snap.clone(),
        zone: index,
        id: q.id,
        flags: q.flags,
        question: q.question.to_vec(),
        plan,
        done: false,
        signer: verified.as_ref().map(crate::tsig::ReplySigner::new),
    }))
}

/// An error reply to `packet` with its header and question (for a TSIG refusal to finish).
fn query_error(snap: &Snapshot, packet: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match wire::parse_query(packet) {
        Err(wire::Reject::Error {
            id,
            flags,
            question,
            edns,
            ..
        }) => {
            wire::encode_error_into(
                id,
                flags,
                rcode::NOTAUTH,
                question,
                edns.as_ref(),
                snap.limits.udp_payload,
                false,
                &mut out,
            );
            Some(out)
        }
        _ => None,
    }
}

/// The zone a transfer request is for (its index in `snap.zones`), or the RCODE refusing it:
/// NOTAUTH when the listener has no zone of that name (RFC 5936 2.2.1, as Knot and NSD),
/// REFUSED when the ACL does not let the client in.
fn locate(
    snap: &Snapshot,
    listener: usize,
    q: &wire::Query<'_>,
    peer: SocketAddr,
    key: Option<&str>,
) -> Result<usize, u16> {
    let zone = snap
        .view(listener)
        .find(q.key())
        .filter(|z| z.origin_key[..] == *q.key());
    let Some(zone) = zone else {
        COUNTERS.out[5].fetch_add(1, Ordering::Relaxed);
        return Err(rcode::NOTAUTH);
    };
    let index = snap
        .zones
        .iter()
        .position(|z| std::ptr::eq(&**z, zone))
        .ok_or(rcode::SERVFAIL)?;
    if !snap.xfr[index].allows(peer.ip(), key) {
        COUNTERS.out[4].fetch_add(1, Ordering::Relaxed);
        return Err(rcode::REFUSED);
    }
    Ok(index)
}

/// IXFR over UDP (RFC 1995 2): the current SOA alone when the client is up to date, else an empty
/// answer with TC set, so the client asks again over TCP. None: not an IXFR request.
pub fn answer_udp(
    snap: &Snapshot,
    listener: usize,
    packet: &[u8],
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    if !is_transfer(packet) {
        return None;
    }
    let q = wire::parse_query(packet).ok()?;
    if q.qtype != IXFR {
        return None;
    }
    let payload = snap.limits.udp_payload;
    let mut out = Vec::new();
    let mut error = |rc: u16| {
        wire::encode_error_into(
            q.id,
            q.flags,
            rc,
            Some(q.question),
            q.edns.as_ref(),
            payload,
            false,
            &mut out,
        );
    };
    let index = match locate(snap, listener, &q, peer, None) {
        Ok(i) => i,
        Err(rc) => {
            error(rc);
            return Some(out);
        }
    };
    let zone = &snap.zones[index];
    let Some(client) = ixfr_serial(packet) else {
        error(rcode::FORMERR);
        return Some(out);
    };
    let mut m = Message::new(q.id, q.flags, q.question);
    if newer(zone.serial, client) {
        let mut b = m.finish();
        b[2] |= 0x02; // TC
        return Some(b);
    }
    COUNTERS.out[3].fetch_add(1, Ordering::Relaxed);
    let soa = soa_rec(zone);
    m.put(&soa.owner, SOA, soa.ttl, Rdata::Raw(&soa.rdata));
    Some(m.finish())
}

/// Whether `packet` is a standard query with one question of type AXFR or IXFR.
pub fn is_transfer(packet: &[u8]) -> bool {
    if packet.len() < 17 || packet[2] & 0x80 != 0 || (packet[2] >> 3) & 0xf != 0 {
        return false;
    }
    if packet[4..6] != [0, 1] {
        return false;
    }
    let mut at = 12;
    while let Some(&l) = packet.get(at) {
        if l == 0 || l & 0xc0 != 0 {
            break;
        }
        at += 1 + l as usize;
    }
    matches!(packet.get(at + 1..at + 3), Some([0, 252]) | Some([0, 251]))
}

/// The serial of the SOA an IXFR request carries in AUTHORITY (RFC 1995 3).
fn ixfr_serial(packet: &[u8]) -> Option<u32> {
    let mut at = 12;
    at = skip_name(packet, at)? + 4; // question
    if packet.get(8..10)? == [0, 0] {
        return None;
    }
    at = skip_name(packet, at)?;
    let rtype = u16::from_be_bytes(packet.get(at..at + 2)?.try_into().ok()?);
    if rtype != SOA {
        return None;
    }
    at += 10;
    at = skip_name(packet, at)?; // MNAME
    at = skip_name(packet, at)?; // RNAME
    Some(u32::from_be_bytes(packet.get(at..at + 4)?.try_into().ok()?))
}

fn skip_name(p: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let l = *p.get(at)?;
        if l == 0 {
            return Some(at + 1);
        }
        if l & 0xc0 == 0xc0 {
            return Some(at + 2);
        }
        at += 1 + l as usize;
    }
}

/// Where a whole-zone transfer is: the opening SOA, the nodes (SOA skipped at the apex), the
/// NSEC3 nodes, the closing SOA.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cursor {
    stage: u8,
    node: usize,
    set: usize,
    rdata: usize,
}

enum Plan {
    /// AXFR, or IXFR falling back to it.
    Zone(Cursor),
    /// IXFR: these records, in order.
    Records(VecDeque<Rec>),
}

/// An outgoing transfer: `next_message` writes the next message, lazily, so a large zone is
/// never held twice.
pub struct Outgoing {
    snap: Arc<Snapshot>,
    zone: usize,
    id: u16,
    flags: u16,
    question: Vec<u8>,
    plan: Plan,
    done: bool,
    /// Signs each message when the request was signed.
    signer: Option<crate::tsig::ReplySigner>,
}

impl Outgoing {
    /// The next message of the transfer (None: it is complete).
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let mut m = Message::new(self.id, self.flags, &self.question);
        let zone = &self.snap.zones[self.zone];
        let gslb = &self.snap.gslb;
        match &mut self.plan {
            Plan::Records(recs) => {
                while let Some(r) = recs.front() {
                    if !m.put(&r.owner, r.rtype, r.ttl, Rdata::Raw(&r.rdata)) {
                        break;
                    }
                    recs.pop_front();
                }
                self.done = recs.is_empty();
            }
            Plan::Zone(c) => {
                self.done = fill_zone(&mut m, zone, gslb, c);
            }
        }
        let mut out = m.finish();
        if let Some(signer) = &mut self.signer {
            signer.sign(&mut out, crate::tsig::now());
        }
        COUNTERS
            .bytes
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        Some(out)
    }
}

/// Writes the zone from `c` on into `m` until it is full; true when the zone is complete.
fn fill_zone(m: &mut Message, zone: &Zone, gslb: &Gslb, c: &mut Cursor) -> bool {
    let soa = zone.soa();
    let apex = zone.apex().owner();
    loop {
        match c.stage {
            0 | 3 => {
                if !m.put(apex, SOA, soa.ttl, Rdata::Parts(&soa.rdatas[0])) {
                    return false;
                }
                if c.stage == 3 {
                    return true;
                }
                c.stage = 1;
            }
            1 | 2 => {
                let table: &NodeTable = if c.stage == 1 {
                    &zone.nodes
                } else {
                    &zone.nsec3
                };
                let Some(node) = table.iter().nth(c.node) else {
                    c.stage += 1;
                    c.node = 0;
                    continue;
                };
                let is_apex = node.key == zone.origin_key;
                let sets = node_sets(node, gslb);
                while let Some(&(rtype, ttl, rdatas)) = sets.get(c.set) {
                    if is_apex && rtype == SOA {
                        c.set += 1;
                        continue;
                    }
                    while let Some(r) = rdatas.get(c.rdata) {
                        if !m.put(node.owner(), rtype, ttl_of(ttl, r), Rdata::Parts(r)) {
                            return false;
                        }
                        c.rdata += 1;
                    }
                    c.set += 1;
                    c.rdata = 0;
                }
                c.node += 1;
                c.set = 0;
            }
            _ => return true,
        }
    }
}

enum Rdata<'a> {
    /// From the zone: names that RFC 3597 lets us compress are compressed.
    Parts(&'a WireRdata),
    /// From the journal: written as stored.
    Raw(&'a [u8]),
}

/// One transfer message being written: header, the question, answer records with names
/// compressed through a hash table (a 64 KB message holds thousands of names; the answer
/// encoder's linear list is for small answers).
struct Message {
    buf: Vec<u8>,
    names: rustc_hash::FxHashMap<u64, u16>,
    count: u16,
}

impl Message {
    fn new(id: u16, qflags: u16, question: &[u8]) -> Message {
        let mut buf = Vec::with_capacity(16 * 1024);
        buf.extend_from_slice(&id.to_be_bytes());
        // QR, AA; opcode 0; RD copied (RFC 5936 2.2.1).
        let flags = 0x8400 | (qflags & 0x0100);
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(question);
        let mut m = Message {
            buf,
            names: Default::default(),
            count: 0,
        };
        let qname_len = question.len() - 4;
        let qname = question[..qname_len].to_vec();
        m.register(&qname, 12);
        m
    }

    /// Registers every suffix of `name` (uncompressed, written at `at`) as a pointer target.
    fn register(&mut self, name: &[u8], at: usize) {
        let mut off = 0;
        while off < name.len() && name[off] != 0 && at + off < 0x3fff {
            self.names
                .entry(suffix_hash(&name[off..]))
                .or_insert((at + off) as u16);
            off += 1 + name[off] as usize;
        }
    }

    fn name(&mut self, name: &[u8], compress: bool) {
        let mut off = 0;
        while off < name.len() && name[off] != 0 {
            if compress {
                let h = suffix_hash(&name[off..]);
                if let Some(&ptr) = self.names.get(&h)
                    && wire::same_name(&self.buf, ptr as usize, &name[off..])
                {
                    self.buf.extend_from_slice(&(0xc000 | ptr).to_be_bytes());
                    return;
                }
                let here = self.buf.len();
                if here < 0x3fff {
                    self.names.insert(h, here as u16);
                }
            }
            let l = name[off] as usize;
            self.buf.extend_from_slice(&name[off..off + 1 + l]);
            off += 1 + l;
        }
        self.buf.push(0);
    }

    /// Adds a record; false when it does not fit (the message is left as it was).
    fn put(&mut self, owner: &[u8], rtype: u16, ttl: u32, rdata: Rdata<'_>) -> bool {
        let start = self.buf.len();
        self.name(owner, true);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&1u16.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        match rdata {
            Rdata::Parts(r) => {
                for p in r.parts() {
                    match p {
                        Part::Bytes(b) => self.buf.extend_from_slice(b),
                        Part::Name { wire, compress } => self.name(wire, compress),
                    }
                }
            }
            Rdata::Raw(b) => self.buf.extend_from_slice(b),
        }
        let len = self.buf.len() - len_at - 2;
        if self.buf.len() > MESSAGE_MAX && self.count > 0 {
            self.buf.truncate(start);
            // Names registered past `start` point into bytes that are gone.
            self.names.retain(|_, at| (*at as usize) < start);
            return false;
        }
        self.buf[len_at..len_at + 2].copy_from_slice(&(len as u16).to_be_bytes());
        self.count += 1;
        true
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf[6..8].copy_from_slice(&self.count.to_be_bytes());
        self.buf
    }
}

/// A name suffix's hash, case-insensitive (RFC 4343).
fn suffix_hash(name: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    for &b in name {
        h.write_u8(b.to_ascii_lowercase());
        if b == 0 {
            break;
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_arithmetic_follows_rfc_1982() {
        assert!(newer(2, 1));
        assert!(!newer(1, 2));
        assert!(!newer(5, 5));
        assert!(newer(0, u32::MAX));
        assert!(newer(1, u32::MAX - 5));
        assert!(!newer(u32::MAX - 5, 1));
    }

    #[test]
    fn acl_entries_parse_and_match() {
        let x = ZoneXfr {
            acl: vec![
                parse_acl("10.0.0.0/8").unwrap(),
                parse_acl("key Xfr-Key.").unwrap(),
                parse_acl("192.0.2.7 key other").unwrap(),
            ],
            ..Default::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(x.allows(ip("10.1.2.3"), None));
        assert!(x.allows(ip("::ffff:10.1.2.3"), None));
        assert!(!x.allows(ip("127.0.0.1"), None));
        assert!(x.allows(ip("127.0.0.1"), Some("xfr-key")));
        assert!(!x.allows(ip("192.0.2.7"), None));
        assert!(x.allows(ip("192.0.2.7"), Some("other.")));
        assert!(!x.allows(ip("192.0.2.8"), Some("other")));
        assert!(parse_acl("10.0.0.0/33").is_err());
        assert!(parse_acl("key").is_err());
        assert!(parse_notify("127.0.0.1").unwrap().addr.port() == 53);
        assert!(parse_notify("[::1]:5300 key k").unwrap().key.as_deref() == Some("k"));
        assert!(parse_notify("nowhere").is_err());
    }

    #[test]
    fn transfer_requests_are_recognised_by_their_question() {
        let q = |t: u8| {
            let mut p = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            p.extend_from_slice(b"\x07example\x03com\x00\x00");
            p.extend_from_slice(&[t, 0, 1]);
            p
        };
        assert!(is_transfer(&q(252)));
        assert!(is_transfer(&q(251)));
        assert!(!is_transfer(&q(1)));
        let mut response = q(252);
        response[2] |= 0x80;
        assert!(!is_transfer(&response));
    }
}
