//! DNAME (RFC 6672) end to end: the authoritative side (the DNAME and a synthesized CNAME in
//! ANSWER, chased across served zones and through the lab's GSLB rules, YXDOMAIN when the new name
//! is too long) and the resolver (the DNAME and the CNAME returned, as Unbound returns them, and
//! followed to another server; the same from the cache).
//!
//! The authoritative cases run on the lab world plus one zone of aliases, `alias.example.`,
//! written beside links to the lab's own zone and geo files.

mod common;

use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};

use common::*;
use gslbd::config::Source;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

const A: u16 = 1;
const DNAME: u16 = 39;

/// 209 octets of target: a name 51 octets longer no longer fits in 255 (RFC 1035 3.1).
fn long_target() -> String {
    let l = "l".repeat(63);
    format!("{l}.{l}.{l}.yourcompany.com.")
}

fn alias_zone() -> String {
    format!(
        "$ORIGIN alias.example.
$TTL 300
@     SOA ns hostmaster 1 3600 900 604800 60
@     NS ns
ns    A 127.0.0.1
; into the GSLB: object.vip.alias.example. -> object.vip.yourcompany.com. -> line -> region
vip   600 DNAME vip.yourcompany.com.
; into static data; the owner's own data is answered as usual
www   120 DNAME yourcompany.com.
www   A 192.0.2.99
; to a TLD the lab's root does not delegate
out   DNAME elsewhere.org.
; a long target: long enough names overflow
long  DNAME {}
; to a name that does not exist
nx    DNAME nothere.yourcompany.com.
",
        long_target()
    )
}

/// The lab's config and files, plus `alias.example.`, in `dir`.
fn lab_with_aliases(dir: &FsPath) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let zones = dir.join("zones");
    std::fs::create_dir_all(&zones).unwrap();
    for entry in std::fs::read_dir(root.join("zones")).unwrap() {
        let p = entry.unwrap().path();
        std::os::unix::fs::symlink(&p, zones.join(p.file_name().unwrap())).unwrap();
    }
    std::os::unix::fs::symlink(root.join("geo"), dir.join("geo")).unwrap();
    std::fs::write(zones.join("alias.example.zone"), alias_zone()).unwrap();
    let mut config = std::fs::read_to_string(root.join("zones/lab.toml")).unwrap();
    config.push_str("\n[[zone]]\nname = \"alias.example.\"\nfile = \"alias.example.zone\"\n");
    let path = zones.join("aliases.toml");
    std::fs::write(&path, config).unwrap();
    path
}

async fn start_aliases(path: Path) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = lab_with_aliases(dir.path());
    let mut s = start_on_path(Source::file(config), path).await;
    // The lab rotates (www, GSLB pools): repeats differ in order, not in content.
    s.repeat_udp = false;
    (s, dir)
}

/// "owner TTL TYPE data", a DNAME's target shown as a name (hickory keeps DNAME as opaque data).
fn line(r: &Record) -> String {
    let data = match &r.data {
        RData::Unknown { code, rdata } if *code == RecordType::DNAME => {
            let mut d = BinDecoder::new(&rdata.anything);
            Name::read(&mut d).map_or("?".into(), |n| n.to_string())
        }
        other => other.to_string(),
    };
    format!(
        "{} {} {} {data}",
        r.name.to_lowercase(),
        r.ttl,
        r.record_type()
    )
}

fn answer_lines(m: &Message) -> Vec<String> {
    m.answers.iter().map(line).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6672_3_1_dname_then_synthesized_cname_then_the_target() {
    for path in [Path::General, Path::Fast] {
        let (s, _dir) = start_aliases(path).await;
        for via in BOTH {
            let m = ask(&s, "all", via, &Q::new("www.www.alias.example", A)).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative);
            let lines = answer_lines(&m);
            // DNAME first, then the CNAME with the DNAME's TTL, then the target's data.
            assert_eq!(
                lines[0], "www.alias.example. 120 DNAME yourcompany.com.",
                "{lines:?}"
            );
            assert_eq!(
                lines[1], "www.www.alias.example. 120 CNAME www.yourcompany.com.",
                "{lines:?}"
            );
            let rest: Vec<RecordType> = m.answers[2..].iter().map(|r| r.record_type()).collect();
            assert_eq!(
                rest,
                [RecordType::A; 4],
                "www.yourcompany.com's four addresses"
            );
            // The owner's own data is not redirected.
            let m = ask(&s, "all", via, &Q::new("www.alias.example", A)).await;
            assert_eq!(answer_lines(&m), ["www.alias.example. 300 A 192.0.2.99"]);
            let m = ask(&s, "all", via, &Q::new("www.alias.example", DNAME)).await;
            assert_eq!(
                answer_lines(&m),
                ["www.alias.example. 120 DNAME yourcompany.com."]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6672_the_query_case_is_kept_in_the_synthesized_name() {
    let (s, _dir) = start_aliases(Path::General).await;
    let q = Q::new("MiXeD.www.alias.example", A);
    let reply = raw(&s, "all", Via::Udp, &q.bytes()).await.unwrap();
    let m = Message::from_vec(&reply).unwrap();
    let cname = m
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.to_string()),
            _ => None,
        })
        .expect("a CNAME");
    assert_eq!(cname, "MiXeD.yourcompany.com.");
    // mixed.yourcompany.com does not exist: NXDOMAIN is the last name's (RFC 6604).
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].name.to_string(), "yourcompany.com.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6672_dname_into_a_gslb_name_answers_as_the_gslb_does() {
    for path in [Path::General, Path::Fast] {
        let (s, _dir) = start_aliases(path).await;
        for (net, prefix) in [
            ("127.0.10.0", 24),
            ("127.0.11.0", 24),
            ("127.0.12.0", 24),
            ("203.0.113.0", 24),
        ] {
            let ip: IpAddr = net.parse().unwrap();
            for via in BOTH {
                let direct_q = Q::new("object.vip.yourcompany.com", A).ecs(ip, prefix);
                let alias_q = Q::new("object.vip.alias.example", A).ecs(ip, prefix);
                let direct_raw = raw(&s, "all", via, &direct_q.bytes()).await.unwrap();
                let alias_raw = raw(&s, "all", via, &alias_q.bytes()).await.unwrap();
                let (direct, alias) = (
                    Message::from_vec(&direct_raw).unwrap(),
                    Message::from_vec(&alias_raw).unwrap(),
                );
                let a = answer_lines(&alias);
                assert_eq!(a[0], "vip.alias.example. 600 DNAME vip.yourcompany.com.");
                // The synthesized CNAME's TTL is the DNAME's (RFC 6672 3.1).
                assert_eq!(
                    a[1],
                    "object.vip.alias.example. 600 CNAME object.vip.yourcompany.com."
                );
                // Then the GSLB chain as the client gets it asking directly: the line's CNAME
                // the same, the region's addresses the same set (rotation only reorders).
                let sorted = |m: &Message, skip: usize| {
                    let mut v: Vec<String> = m.answers[skip..].iter().map(line).collect();
                    v.sort();
                    v
                };
                assert_eq!(
                    sorted(&alias, 2),
                    sorted(&direct, 0),
                    "from {net} over {via:?}"
                );
                assert!(direct.answers.len() > 2, "a chain and addresses from {net}");
                assert_eq!(
                    ecs_of(&alias_raw).map(|e| e.1),
                    ecs_of(&direct_raw).map(|e| e.1),
                    "the ECS scope of the GSLB hops"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6672_2_2_yxdomain_when_the_new_name_is_too_long() {
    for path in [Path::General, Path::Fast] {
        let (s, _dir) = start_aliases(path).await;
        for via in BOTH {
            // 1 + 50 + 209 > 255: the DNAME alone, YXDOMAIN, no CNAME.
            let name = format!("{}.long.alias.example", "x".repeat(50));
            let m = ask(&s, "all", via, &Q::new(&name, A)).await;
            assert_eq!(
                u16::from(m.metadata.response_code),
                6,
                "YXDOMAIN over {via:?}"
            );
            let types: Vec<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
            assert_eq!(types, [RecordType::DNAME]);
            // A shorter name fits: the chain goes on (to a name that does not exist).
            let m = ask(&s, "all", via, &Q::new("x.long.alias.example", A)).await;
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
            assert_eq!(m.answers.len(), 2, "DNAME and CNAME");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6672_chain_crosses_zones_and_gives_the_last_names_rcode() {
    let (s, _dir) = start_aliases(Path::General).await;
    for via in BOTH {
        // The new name is in the lab's root zone (served here too), which has no org.
        let m = ask(&s, "all", via, &Q::new("a.out.alias.example", A)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities[0].name.to_string(), ".");
        assert_eq!(
            answer_lines(&m),
            [
                "out.alias.example. 300 DNAME elsewhere.org.",
                "a.out.alias.example. 300 CNAME a.elsewhere.org."
            ]
        );
        let m = ask(&s, "all", via, &Q::new("a.nx.alias.example", A)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.authorities[0].name.to_string(), "yourcompany.com.");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpdns_json_shows_the_dname_and_the_synthesized_cname() {
    let dir = tempfile::tempdir().unwrap();
    let config = lab_with_aliases(dir.path());
    let snap = gslbd::snapshot::Snapshot::build(&Source::file(config)).expect("builds");
    let client = gslbd::gslb::ClientAddr {
        ip: Some("127.0.10.1".parse().unwrap()),
        prefix: 32,
    };
    let l = gslbd::lookup::lookup(
        &snap,
        0,
        "www.www.alias.example",
        RecordType::A,
        client,
        gslbd::gslb::explain::ClientSource::Given,
        false,
    )
    .unwrap();
    assert_eq!(l.answer[0].data, "yourcompany.com.");
    assert_eq!(l.answer[1].name, "www.www.alias.example.");
    assert_eq!(l.answer[1].data, "www.yourcompany.com.");
    assert_eq!(l.answer[1].rtype, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_returns_the_dname_and_cname_and_follows_them() {
    let clock = std::sync::Arc::new(gslbd::resolver::ManualClock::default());
    let s = start_with_clock(Source::file(data("resolver/resolver.toml")), clock).await;
    let src: IpAddr = "127.0.50.20".parse().unwrap();
    let q = Q::new("e.legacy.example.com", A);
    for round in ["walk", "cache"] {
        let bytes = udp_from(src, s.addr("r", "udp"), &q.bytes()).await.unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{round}");
        assert!(m.metadata.recursion_available);
        let types: Vec<RecordType> = m.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(
            types,
            [RecordType::DNAME, RecordType::CNAME, RecordType::A],
            "{round}: {:?}",
            answer_lines(&m)
        );
        assert_eq!(m.answers[1].name.to_string(), "e.legacy.example.com.");
        match &m.answers[1].data {
            RData::CNAME(c) => assert_eq!(c.0.to_string(), "e.cdn.net."),
            other => panic!("{other:?}"),
        }
        match &m.answers[2].data {
            RData::A(a) => assert_eq!(
                a.0.to_string(),
                "192.0.2.80",
                "{round}: from cdn.net's server"
            ),
            other => panic!("{other:?}"),
        }
    }
}
