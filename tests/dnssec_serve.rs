//! Serving pre-signed zones (issue 18 item 1, RFC 4033-4035, RFC 5155): gslbd and NSD serve the
//! same three signed zones from `tests/data/dnssec/` (made by its `make.sh` with BIND's
//! `dnssec-signzone`: NSEC, NSEC3, NSEC3 with opt-out; each with a wildcard, empty
//! non-terminals, a signed and two unsigned delegations, CNAME chains and several types at a
//! name), and
//! - a battery of questions (names that exist, NXDOMAIN, NODATA, wildcard answers and wildcard
//!   NODATA, empty non-terminals, names below the delegations, DS at the cuts, DNSKEY, the CNAME
//!   chains, the apex) with DO set goes to both over UDP (gslbd's fast path on: every UDP query
//!   twice, the second from the prebuilt answer) and TCP: RCODE, AA/TC, ANSWER and AUTHORITY as
//!   sets of records (RRSIGs and NSEC/NSEC3 included) must be equal; ADDITIONAL equal for a
//!   referral (glue), and a superset of NSD's otherwise (NSD runs with minimal-responses);
//! - the same questions without DO and without EDNS: the same comparison, and no RRSIG, NSEC or
//!   NSEC3 record unless the question asked for that type;
//! - at a 512-byte buffer with DO, TC is set exactly when NSD sets it (RFC 4035 3.1.1);
//! - `delv` (bind9-dnsutils), trusting each zone's key, validates gslbd's answers: positive
//!   answers "fully validated", negative ones "negative response, fully validated", with the
//!   same verdict it gives NSD's (a wildcard answer under NSEC3 opt-out is "unsigned" from both,
//!   RFC 5155 9.2).
//!
//! `nsd` and `delv` are installed by `.ci/run`.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Path, Q, TestServer, Via};
use gslbd::config::Source;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

const ZONES: [&str; 3] = ["nsec", "nsec3", "optout"];
const PAYLOAD: u16 = 1232;
/// This test's loopback address (the range 127.0.18.0/24 is this feature's).
const IP: [u8; 4] = [127, 0, 18, 1];

fn dir() -> PathBuf {
    common::data("dnssec")
}

// ---------------------------------------------------------------------------------------------
// The servers

struct Nsd {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn zone_path(zone: &str) -> String {
    dir().join(format!("{zone}.zone")).display().to_string()
}

impl Nsd {
    async fn start() -> Nsd {
        let mut failures = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().display();
            let port = common::free_port_on(IP.into());
            let mut conf = format!(
                "server:\n    ip-address: 127.0.18.1@{port}\n    username: \"\"\n    \
                 chroot: \"\"\n    zonesdir: \"{d}\"\n    pidfile: \"{d}/nsd.pid\"\n    \
                 database: \"\"\n    xfrdfile: \"{d}/xfrd.state\"\n    xfrdir: \"{d}\"\n    \
                 zonelistfile: \"{d}/zone.list\"\n    logfile: \"{d}/nsd.log\"\n    \
                 server-count: 1\n    ipv4-edns-size: {PAYLOAD}\n    minimal-responses: yes\n    \
                 rrl-ratelimit: 0\nremote-control:\n    control-enable: no\n"
            );
            for z in ZONES {
                conf.push_str(&format!(
                    "zone:\n    name: \"{z}.example.\"\n    zonefile: \"{}\"\n",
                    zone_path(z)
                ));
            }
            let path = dir.path().join("nsd.conf");
            std::fs::write(&path, conf).unwrap();
            let child = common::tool("nsd")
                .arg("-d")
                .arg("-c")
                .arg(&path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start nsd");
            let mut nsd = Nsd {
                child,
                addr: SocketAddr::from((IP, port)),
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let soa = Q::new("optout.example.", 6).bytes();
            while Instant::now() < deadline {
                if let Ok(Some(_)) = nsd.child.try_wait() {
                    break;
                }
                if common::udp_raw(nsd.addr, &soa).await.is_some()
                    && common::tcp_raw(nsd.addr, &soa).await.is_some()
                {
                    return nsd;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            failures.push_str(
                &std::fs::read_to_string(nsd._dir.path().join("nsd.log")).unwrap_or_default(),
            );
        }
        panic!("nsd did not start:\n{failures}");
    }
}

async fn start_gslbd() -> (TestServer, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut text = format!("[limits]\nudp_payload = {PAYLOAD}\n\n");
    for z in ZONES {
        text.push_str(&format!(
            "[[zone]]\nname = \"{z}.example.\"\nfile = \"{}\"\n\n",
            zone_path(z)
        ));
    }
    text.push_str(
        "[[listener]]\nname = \"all\"\naddresses = [\"127.0.18.1:0\"]\nzones = [\"*\"]\n",
    );
    let path = tmp.path().join("gslbd.toml");
    std::fs::write(&path, text).unwrap();
    let server = common::start_on_path(Source::file(&path), Path::Fast).await;
    (server, tmp)
}

// ---------------------------------------------------------------------------------------------
// The questions

/// (name relative to the zone, QTYPE) asked in every zone.
const BATTERY: &[(&str, RecordType)] = &[
    // The apex.
    ("", RecordType::SOA),
    ("", RecordType::NS),
    ("", RecordType::DNSKEY),
    ("", RecordType::A),
    ("", RecordType::MX),
    ("", RecordType::TXT),
    ("", RecordType::NSEC3PARAM),
    ("", RecordType::AAAA),
    ("", RecordType::DS),
    // Names that exist, several types at one, NODATA.
    ("www", RecordType::A),
    ("www", RecordType::AAAA),
    ("www", RecordType::TXT),
    ("www", RecordType::MX),
    ("www", RecordType::RRSIG),
    ("www", RecordType::NSEC),
    ("ns2", RecordType::AAAA),
    ("mail", RecordType::A),
    // NXDOMAIN.
    ("nothere", RecordType::A),
    ("deep.nothere", RecordType::TXT),
    ("zzz", RecordType::A),
    ("0", RecordType::A),
    // Wildcard answers, wildcard NODATA, a name beside the wildcard, the wildcard's parent.
    ("host.wild", RecordType::A),
    ("host.wild", RecordType::TXT),
    ("a.b.wild", RecordType::A),
    ("host.wild", RecordType::MX),
    ("real.wild", RecordType::A),
    ("real.wild", RecordType::TXT),
    ("wild", RecordType::A),
    ("*.wild", RecordType::A),
    // Empty non-terminals, and below them.
    ("ent", RecordType::A),
    ("b.ent", RecordType::TXT),
    ("a.b.ent", RecordType::A),
    ("x.ent", RecordType::A),
    ("ou", RecordType::A),
    // CNAME chains: to data, into the wildcard, to a name that does not exist.
    ("c1", RecordType::A),
    ("c1", RecordType::CNAME),
    ("c2", RecordType::TXT),
    ("cw", RecordType::A),
    ("cnx", RecordType::A),
    // The signed delegation: referrals with DS, DS at the cut (answered by the parent).
    ("secure", RecordType::A),
    ("host.secure", RecordType::A),
    ("ns.secure", RecordType::A),
    ("secure", RecordType::DS),
    ("secure", RecordType::NS),
    // The unsigned ones: referrals with the proof of no DS, and that proof as NODATA.
    ("insecure", RecordType::A),
    ("host.insecure", RecordType::AAAA),
    ("insecure", RecordType::DS),
    ("deep.ou", RecordType::A),
    ("x.deep.ou", RecordType::A),
    ("deep.ou", RecordType::DS),
];

fn fqdn(rel: &str, zone: &str) -> String {
    if rel.is_empty() {
        format!("{zone}.example.")
    } else {
        format!("{rel}.{zone}.example.")
    }
}

fn question(name: &str, t: RecordType, edns: Option<(u16, bool)>, id: u16) -> Q {
    let mut q = Q::new(name, u16::from(t));
    q.id = id;
    q.flags = 0; // RD clear, as a resolver asks an authoritative server.
    q.edns = edns.map(|(payload, dnssec_ok)| (payload, 0, dnssec_ok, vec![]));
    q
}

// ---------------------------------------------------------------------------------------------
// Comparison

#[derive(Debug, PartialEq, Eq)]
struct View {
    rcode: u16,
    aa: bool,
    tc: bool,
    answer: BTreeSet<String>,
    authority: BTreeSet<String>,
    additional: BTreeSet<String>,
}

fn records(rs: &[hickory_proto::rr::Record]) -> BTreeSet<String> {
    rs.iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.name.to_lowercase(),
                r.ttl,
                r.record_type(),
                r.data
            )
        })
        .collect()
}

fn view(bytes: &[u8]) -> View {
    let m = Message::from_vec(bytes).unwrap_or_else(|e| panic!("unparsable reply: {e}"));
    View {
        rcode: u16::from(m.response_code),
        aa: m.authoritative,
        tc: m.truncation,
        answer: records(&m.answers),
        authority: records(&m.authorities),
        additional: records(&m.additionals),
    }
}

fn has_dnssec(set: &BTreeSet<String>) -> bool {
    set.iter().any(|r| {
        [" RRSIG ", " NSEC ", " NSEC3 "]
            .iter()
            .any(|t| r.contains(t))
    })
}

/// Why gslbd's view `g` differs from NSD's `n` in a way the test does not accept, or None.
fn differ(g: &View, n: &View) -> Option<String> {
    if (g.rcode, g.aa, g.tc) != (n.rcode, n.aa, n.tc) {
        return Some("RCODE or flags".into());
    }
    if g.tc {
        // Both truncated: what a truncated answer still carries is the server's choice (RFC 2181
        // 9: NSD keeps the RRsets that fit, gslbd none); the client asks again over TCP.
        return None;
    }
    if g.answer != n.answer {
        return Some("ANSWER".into());
    }
    if g.authority != n.authority {
        return Some("AUTHORITY".into());
    }
    // A referral's glue is required and compared; other additional data NSD leaves out
    // (minimal-responses) and gslbd may add (RFC 1034 4.3.2 step 6).
    let referral = !g.aa;
    if (referral && g.additional != n.additional) || !n.additional.is_subset(&g.additional) {
        return Some("ADDITIONAL".into());
    }
    None
}

fn show(v: &View) -> String {
    let mut s = format!("rcode {} aa {} tc {}\n", v.rcode, v.aa, v.tc);
    for (name, set) in [
        ("ANSWER", &v.answer),
        ("AUTHORITY", &v.authority),
        ("ADDITIONAL", &v.additional),
    ] {
        s.push_str(&format!("  {name}:\n"));
        for r in set {
            s.push_str(&format!("    {r}\n"));
        }
    }
    s
}

/// Asks every battery question in every zone with `edns` over `via`, compares gslbd with NSD;
/// returns the failures and how many answers had DNSSEC records.
async fn compare(
    g: &TestServer,
    nsd: &Nsd,
    edns: Option<(u16, bool)>,
    via: Via,
) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut signed = 0;
    let mut id = 1u16;
    for zone in ZONES {
        for &(rel, t) in BATTERY {
            id = id.wrapping_add(1);
            let name = fqdn(rel, zone);
            let q = question(&name, t, edns, id).bytes();
            let gr = common::raw(g, "all", via, &q)
                .await
                .unwrap_or_else(|| panic!("gslbd did not answer {name} {t}"));
            let nr = match via {
                Via::Udp => common::udp_raw(nsd.addr, &q).await,
                Via::Tcp => common::tcp_raw(nsd.addr, &q).await,
            }
            .unwrap_or_else(|| panic!("nsd did not answer {name} {t}"));
            let (gv, nv) = (view(&gr), view(&nr));
            let dnssec_ok = matches!(edns, Some((_, true)));
            let asked = matches!(t, RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3);
            if dnssec_ok && (has_dnssec(&gv.answer) || has_dnssec(&gv.authority)) {
                signed += 1;
            }
            let why = if !dnssec_ok
                && !asked
                && [&gv.answer, &gv.authority, &gv.additional]
                    .into_iter()
                    .any(has_dnssec)
            {
                Some("DNSSEC records without DO".to_string())
            } else {
                differ(&gv, &nv)
            };
            if let Some(why) = why {
                failures.push(format!(
                    "{name} {t} {edns:?} {via:?}: {why}\n gslbd: {}\n nsd:   {}",
                    show(&gv),
                    show(&nv)
                ));
            }
        }
    }
    (failures, signed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_zones_answer_as_nsd_answers_them() {
    let nsd = Nsd::start().await;
    let (g, _tmp) = start_gslbd().await;
    let mut all = Vec::new();
    // Without DO first: the fast path then holds the unsigned answers when the signed ones are
    // asked (its tables are keyed by DO).
    for (edns, via) in [
        (None, Via::Udp),
        (Some((PAYLOAD, false)), Via::Udp),
        (Some((PAYLOAD, true)), Via::Udp),
        (Some((PAYLOAD, true)), Via::Tcp),
        (Some((512, true)), Via::Udp),
    ] {
        let (failures, signed) = compare(&g, &nsd, edns, via).await;
        if matches!(edns, Some((PAYLOAD, true))) {
            // Every question of the battery is in a signed zone: each answer carries some.
            assert_eq!(
                signed,
                ZONES.len() * BATTERY.len(),
                "answers with DO but without RRSIG/NSEC/NSEC3 ({edns:?} {via:?})"
            );
        }
        all.extend(failures);
    }
    assert!(
        all.is_empty(),
        "{} differences from NSD:\n{}",
        all.len(),
        all.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// A validator's view

/// (name relative to the zone, type) that delv must validate, positive or negative.
const VALIDATE: &[(&str, &str)] = &[
    ("", "DNSKEY"),
    ("", "SOA"),
    ("www", "A"),
    ("www", "TXT"),
    ("www", "MX"),
    ("nothere", "A"),
    ("host.wild", "A"),
    ("host.wild", "MX"),
    ("ent", "A"),
    ("c1", "A"),
    ("cw", "A"),
    ("cnx", "A"),
    ("secure", "DS"),
    ("insecure", "DS"),
    ("deep.ou", "DS"),
    ("ou", "A"),
];

/// delv's verdict on a name of one of the test zones, trusting that zone's anchor file.
fn delv(addr: SocketAddr, zone: &str, name: &str, t: &str) -> String {
    let anchor = dir().join(format!("{zone}.anchor"));
    common::delv(addr, &format!("{zone}.example."), &anchor, name, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_validates_gslbd_answers_as_it_validates_nsd() {
    let nsd = Nsd::start().await;
    let (g, _tmp) = start_gslbd().await;
    let addr = g.addr("all", "udp");
    let mut failures = Vec::new();
    for zone in ZONES {
        for &(rel, t) in VALIDATE {
            let name = fqdn(rel, zone);
            let (ga, na) = (
                tokio::task::block_in_place(|| delv(addr, zone, &name, t)),
                tokio::task::block_in_place(|| delv(nsd.addr, zone, &name, t)),
            );
            // Under opt-out, the proof that a wildcard's name does not exist is an NSEC3 with
            // the opt-out flag: a validator cannot rule out an unsigned delegation there and
            // takes the answer as insecure (RFC 5155 9.2), from either server.
            let opt_out_wildcard = zone == "optout" && rel == "host.wild" && t == "A";
            let ok = ga == "; fully validated"
                || ga == "; negative response, fully validated"
                || (opt_out_wildcard && ga == "; unsigned answer");
            if !ok || ga != na {
                failures.push(format!("{name} {t}: gslbd {ga:?}, nsd {na:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "delv:\n{}", failures.join("\n"));
}
