//! The GSLB through real interfaces: the policy table (every case from the packet's source address
//! and again via ECS), end to end over UDP/TCP from different 127.x source addresses, ECS scopes and
//! TTLs over the two-layer chain, weights, round robin, and `gslbd explain`.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use common::*;
use gslbd::config::Source;
use gslbd::gslb::explain::{self, ClientSource};
use gslbd::query::client_addr;
use gslbd::snapshot::Snapshot;
use gslbd::wire::ClientSubnet;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

const OBJECT: &str = "object.yourcompany.com.";

/// The six SLB addresses of `line` in `region`, as zones/lab.toml lists them.
fn pool(line: &str, region: &str) -> BTreeSet<String> {
    let base = match line {
        "yd" => 41,
        "dx" => 71,
        "lt" => 101,
        "bgp" => 11,
        _ => unreachable!(),
    };
    let off = match region {
        "bj" => 0,
        "sh" => 10,
        "gz" => 20,
        _ => unreachable!(),
    };
    (0..6)
        .map(|k| format!("203.0.113.{}", base + off + k))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (client, packet decision (line, region), ECS decision with the client's /24 or /56
/// (line, region, scope)). ECS source prefixes are cut to /24 and /56, so networks finer than
/// that in geo/lab.csv are only reachable by the packet's source (or HTTPDNS `ip=`).
#[allow(clippy::type_complexity)]
const TABLE: &[(&str, (&str, &str), (&str, &str, u8))] = &[
    // The carrier LDNSes of design.md section 3: ASN db -> asn-carriers.csv, City db province.
    ("127.0.10.1", ("yd", "bj"), ("yd", "bj", 24)),
    ("127.0.11.1", ("dx", "sh"), ("dx", "sh", 24)),
    ("127.0.12.1", ("lt", "gz"), ("lt", "gz", 24)),
    // An operator's override line (geo/lab-overrides.csv): mobile, Guangdong.
    ("127.0.13.1", ("yd", "gz"), ("yd", "gz", 24)),
    // A private ASN no table knows: the default line; Sichuan is mapped to Guangzhou.
    ("127.0.14.1", ("bgp", "gz"), ("bgp", "gz", 24)),
    // Carrier by organisation name; Xinjiang is mapped nowhere: nearest region (Beijing).
    ("127.0.15.1", ("yd", "bj"), ("yd", "bj", 24)),
    // Nothing known: default line, default region; the scope is the widest empty network around
    // the client (127.0.0.0/21: the lab's data starts at 127.0.10.0).
    ("127.0.0.1", ("bgp", "bj"), ("bgp", "bj", 21)),
    // Documentation ranges (HTTPDNS and ECS examples).
    ("192.0.2.1", ("yd", "bj"), ("yd", "bj", 25)),
    ("192.0.2.130", ("dx", "gz"), ("yd", "bj", 25)),
    ("192.0.2.250", ("lt", "gz"), ("yd", "bj", 25)),
    ("198.51.100.1", ("lt", "bj"), ("lt", "bj", 26)),
    ("198.51.100.70", ("yd", "gz"), ("lt", "bj", 26)),
    ("198.51.100.130", ("dx", "sh"), ("lt", "bj", 26)),
    // Google's ASN is no carrier; California maps to no region: nearest (Beijing, 9,555 km).
    ("198.51.100.200", ("bgp", "bj"), ("lt", "bj", 26)),
    ("203.0.113.9", ("lt", "bj"), ("lt", "bj", 24)),
    ("2001:db8:a::1", ("yd", "sh"), ("yd", "sh", 48)),
    ("2001:db8:b::1", ("dx", "gz"), ("dx", "gz", 48)),
    ("2001:db8:c::1", ("lt", "bj"), ("lt", "bj", 48)),
    ("::ffff:127.0.10.1", ("yd", "bj"), ("yd", "bj", 24)),
];

fn addresses(e: &explain::Explain) -> BTreeSet<String> {
    e.answer
        .iter()
        .filter(|l| l.contains(" IN A "))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect()
}

#[test]
fn policy_table_from_the_source_address_and_via_ecs() {
    let snap = Snapshot::build(&Source::lab()).expect("the lab builds");
    for (client, (line, region), (eline, eregion, escope)) in TABLE {
        let addr = ip(client);
        let packet = gslbd::lookup::explain(
            &snap,
            0,
            OBJECT,
            RecordType::A,
            client_addr(None, addr),
            ClientSource::Packet,
        )
        .unwrap();
        assert_eq!(
            addresses(&packet),
            pool(line, region),
            "{client} from the packet:\n{}",
            explain::render(&packet)
        );
        assert_eq!(packet.hops.len(), 2, "{client}: vip and line");
        assert_eq!(
            packet.hops[0].line.as_deref(),
            Some(*line).map(|l| match l {
                "yd" => "mobile",
                "dx" => "telecom",
                "lt" => "unicom",
                _ => "default",
            })
        );
        assert_eq!(packet.hops[1].region.as_deref(), Some(*region));

        // A resolver sends an IPv4-mapped client as IPv4 (RFC 7871 6: FAMILY is the address's).
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let subnet = ClientSubnet {
            family: if addr.is_ipv4() { 1 } else { 2 },
            source_prefix: if addr.is_ipv4() { 32 } else { 128 },
            scope_prefix: 0,
            addr,
        };
        let via_ecs = gslbd::lookup::explain(
            &snap,
            0,
            OBJECT,
            RecordType::A,
            client_addr(Some(&subnet), addr),
            ClientSource::Ecs,
        )
        .unwrap();
        assert_eq!(
            addresses(&via_ecs),
            pool(eline, eregion),
            "{client} via ECS:\n{}",
            explain::render(&via_ecs)
        );
        assert_eq!(
            via_ecs.scope,
            Some(*escope),
            "{client} via ECS:\n{}",
            explain::render(&via_ecs)
        );
        // 20 s (layer 1) caps the region's 30 s.
        assert_eq!(via_ecs.ttl, Some(20));
    }
}

#[test]
fn aaaa_from_the_region_pool() {
    let snap = Snapshot::build(&Source::lab()).unwrap();
    let e = gslbd::lookup::explain(
        &snap,
        0,
        OBJECT,
        RecordType::AAAA,
        client_addr(None, ip("2001:db8:a::1")),
        ClientSource::Packet,
    )
    .unwrap();
    let got: BTreeSet<&str> = e
        .answer
        .iter()
        .filter(|l| l.contains(" AAAA "))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    // yd line (1), Shanghai (2): 2001:db8:12::1 and ::2.
    assert_eq!(got, BTreeSet::from(["2001:db8:12::1", "2001:db8:12::2"]));
}

fn a_records(m: &Message) -> BTreeSet<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

async fn ask_from(server: &TestServer, src: &str, q: &Q) -> (Message, Vec<u8>) {
    let bytes = udp_from(ip(src), server.addr("all", "udp"), &q.bytes())
        .await
        .unwrap_or_else(|| panic!("no reply from {src}"));
    (Message::from_vec(&bytes).unwrap(), bytes)
}

#[tokio::test]
async fn ldns_source_addresses_get_their_carrier_and_region() {
    let server = start_lab().await;
    for (src, line, region) in [
        ("127.0.10.1", "yd", "bj"),
        ("127.0.11.1", "dx", "sh"),
        ("127.0.12.1", "lt", "gz"),
        ("127.0.13.1", "yd", "gz"),
        ("127.0.14.1", "bgp", "gz"),
        ("127.0.0.1", "bgp", "bj"),
    ] {
        let (m, bytes) = ask_from(&server, src, &Q::new(OBJECT, 1)).await;
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert!(m.authoritative);
        // The whole chain in one response: object -> vip -> line -> six addresses.
        let chain: Vec<String> = m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::CNAME)
            .map(|r| format!("{} {} {}", r.name.to_lowercase(), r.ttl, r.data))
            .collect();
        assert_eq!(
            chain,
            vec![
                format!("{OBJECT} 600 object.vip.yourcompany.com."),
                format!("object.vip.yourcompany.com. 20 object.{line}.yourcompany.com."),
            ],
            "from {src}"
        );
        assert_eq!(a_records(&m), pool(line, region), "from {src}");
        for r in m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::A)
        {
            assert_eq!(r.ttl, 20, "the A records live no longer than the vip hop");
        }
        // No ECS asked, none answered.
        assert_eq!(ecs_of(&bytes), None);
    }
    // TCP decides by the connection's source address the same way (here 127.0.0.1: default).
    let m = ask(&server, "all", Via::Tcp, &Q::new(OBJECT, 1)).await;
    assert_eq!(a_records(&m), pool("bgp", "bj"));
    // The authoritative listener of yourcompany.com gives the same answer as "all".
    let bytes = udp_from(
        ip("127.0.11.1"),
        server.addr("yourcompany", "udp"),
        &Q::new(OBJECT, 1).bytes(),
    )
    .await
    .unwrap();
    assert_eq!(
        a_records(&Message::from_vec(&bytes).unwrap()),
        pool("dx", "sh")
    );
}

#[tokio::test]
async fn ecs_decides_and_the_scope_is_the_most_specific_hop() {
    let server = start_lab().await;
    for (subnet, prefix, line, region, scope) in [
        // Unicom Beijing /26 in both dbs: scope 26 (more specific than the /24 sent).
        ("198.51.100.0", 24, "lt", "bj", 26),
        // Longer than /24: cut to 127.0.10.0/24 before use; the ECS echo keeps what was sent.
        ("127.0.10.77", 32, "yd", "bj", 24),
        // IPv6 /56 inside the /48.
        ("2001:db8:c::", 56, "lt", "bj", 48),
        ("2001:db8:a:ff00::", 64, "yd", "sh", 48),
    ] {
        let q = Q::new(OBJECT, 1).ecs(ip(subnet), prefix);
        // Sent from the mobile LDNS: the ECS subnet decides, not the source.
        let (m, bytes) = ask_from(&server, "127.0.10.1", &q).await;
        assert_eq!(a_records(&m), pool(line, region), "ECS {subnet}/{prefix}");
        let (src, got_scope, _) = ecs_of(&bytes).expect("ECS echoed");
        assert_eq!(src, prefix, "SOURCE PREFIX-LENGTH echoed as sent");
        assert_eq!(got_scope, scope, "ECS {subnet}/{prefix}");
    }
    // Over TCP too.
    let m = ask(
        &server,
        "all",
        Via::Tcp,
        &Q::new(OBJECT, 1).ecs(ip("2001:db8:b::"), 48),
    )
    .await;
    assert_eq!(a_records(&m), pool("dx", "gz"));

    // SOURCE PREFIX-LENGTH 0: "do not locate me" (RFC 7871 7.1.2): default answer, scope 0.
    let (m, bytes) = ask_from(
        &server,
        "127.0.10.1",
        &Q::new(OBJECT, 1).ecs(ip("0.0.0.0"), 0),
    )
    .await;
    assert_eq!(a_records(&m), pool("bgp", "bj"));
    assert_eq!(ecs_of(&bytes).map(|e| e.1), Some(0));

    // A name no rule touches: scope 0 (the answer is the same for everyone).
    let (_, bytes) = ask_from(
        &server,
        "127.0.10.1",
        &Q::new("www.yourcompany.com.", 1).ecs(ip("198.51.100.0"), 24),
    )
    .await;
    assert_eq!(ecs_of(&bytes).map(|e| e.1), Some(0));

    // Malformed ECS (address bits past the prefix) is FORMERR.
    let mut q = Q::new(OBJECT, 1);
    q.edns = Some((1232, 0, false, vec![0, 8, 0, 7, 0, 1, 16, 0, 198, 51, 100]));
    let (m, _) = ask_from(&server, "127.0.10.1", &q).await;
    assert_eq!(m.response_code, ResponseCode::FormErr);
}

#[tokio::test]
async fn the_cdn_picks_the_nearest_edge_with_weights() {
    let server = start_lab().await;
    let mut count: HashMap<String, usize> = HashMap::new();
    const N: usize = 2000;
    for _ in 0..N {
        let (m, _) = ask_from(&server, "127.0.10.1", &Q::new("static.yourcompany.com.", 1)).await;
        // static -> yourcompany.cdn.com -> one address of the Beijing edge.
        assert_eq!(m.answers.len(), 2);
        let a = a_records(&m);
        assert_eq!(a.len(), 1);
        *count.entry(a.into_iter().next().unwrap()).or_default() += 1;
    }
    let heavy = *count.get("198.51.100.10").unwrap_or(&0) as f64 / N as f64;
    let light = *count.get("198.51.100.11").unwrap_or(&0) as f64 / N as f64;
    assert_eq!(count.len(), 2, "only the Beijing edge: {count:?}");
    // Weights 3:1 -> 75 % +- 5 % (the binomial standard deviation at N = 2000 is ~1 %).
    assert!((heavy - 0.75).abs() < 0.05, "weight 3 got {heavy}");
    assert!((light - 0.25).abs() < 0.05, "weight 1 got {light}");

    // Distance, not mapping: Guangzhou's edge for a Guangzhou subnet, San Jose's for California.
    let (m, _) = ask_from(
        &server,
        "127.0.0.1",
        &Q::new("static.yourcompany.com.", 1).ecs(ip("2001:db8:b::"), 48),
    )
    .await;
    let a = a_records(&m);
    // One address of the Guangzhou edge: an empty answer is a subset of every pool, so the count
    // is checked too.
    assert_eq!(a.len(), 1, "one edge address per answer: {a:?}");
    assert!(
        a.is_subset(&BTreeSet::from([
            "198.51.100.30".into(),
            "198.51.100.31".into()
        ])),
        "{a:?}"
    );
}

#[tokio::test]
async fn round_robin_rotates_plain_names_and_pools() {
    let server = start_lab().await;
    // www has four A records in a `rotate = true` zone: every one leads some answer, and each
    // answer is the zone order rotated.
    let zone_order = ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"];
    let mut leaders = BTreeSet::new();
    for _ in 0..16 {
        let m = ask(&server, "all", Via::Udp, &Q::new("www.yourcompany.com.", 1)).await;
        let got: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 4);
        let start = zone_order.iter().position(|a| *a == got[0]).unwrap();
        for (i, a) in got.iter().enumerate() {
            assert_eq!(a, zone_order[(start + i) % 4], "{got:?} is a rotation");
        }
        leaders.insert(got[0].clone());
    }
    assert_eq!(leaders.len(), 4, "every address leads some answer");

    // A pool of six with answer = 6: all six every time, in rotating order.
    let mut leaders = BTreeSet::new();
    for _ in 0..24 {
        let (m, _) = ask_from(&server, "127.0.11.1", &Q::new(OBJECT, 1)).await;
        assert_eq!(a_records(&m), pool("dx", "sh"));
        let first = m
            .answers
            .iter()
            .find_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .unwrap();
        leaders.insert(first);
    }
    assert_eq!(leaders.len(), 6);
}

#[tokio::test]
async fn qtypes_at_gslb_names() {
    let server = start_lab().await;
    // CNAME asked at the carrier rule: the CNAME itself, not chased.
    let (m, _) = ask_from(
        &server,
        "127.0.12.1",
        &Q::new("object.vip.yourcompany.com.", 5),
    )
    .await;
    assert_eq!(
        lines(&m.answers),
        vec!["object.vip.yourcompany.com. 20 CNAME object.lt.yourcompany.com."]
    );
    // TXT at a location rule: NODATA with the SOA.
    let (m, _) = ask_from(
        &server,
        "127.0.12.1",
        &Q::new("object.lt.yourcompany.com.", 16),
    )
    .await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // The empty non-terminal above a rule name answers NODATA, not NXDOMAIN (RFC 4592 2.2.2).
    let m = ask(&server, "all", Via::Udp, &Q::new("vip.yourcompany.com.", 1)).await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

/// The real binary: `gslbd explain` for a few clients.
#[test]
fn explain_command() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gslbd"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&[
        "explain",
        "object.yourcompany.com",
        "--client",
        "127.0.10.1",
    ]);
    for want in [
        "client    127.0.10.1/32 (given)",
        "carrier   mobile (China Mobile) by asn table, network 127.0.10.0/24",
        "hop 1     object.vip.yourcompany.com. (carrier rule)",
        "line mobile -> CNAME object.yd.yourcompany.com.",
        "hop 2     object.yd.yourcompany.com. (location rule)",
        "why: province Beijing is mapped to region bj",
        "answer    object.yd.yourcompany.com. 20 IN A 203.0.113.41",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    let text = run(&[
        "explain",
        "object.yourcompany.com",
        "--client",
        "127.0.15.1",
    ]);
    assert!(text.contains("by organisation match"), "{text}");
    assert!(text.contains("why: nearest region bj ("), "{text}");

    let json = run(&[
        "explain",
        "object.yourcompany.com",
        "--ecs",
        "2001:db8:a::/48",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["client"]["source"], "ecs");
    assert_eq!(v["hops"][0]["line"], "mobile");
    assert_eq!(v["hops"][1]["region"], "sh");
    assert_eq!(v["scope"], 48);
    assert_eq!(v["ttl"], 20);
    // The pool of the family asked for (A): six addresses, all picked.
    let pool = v["hops"][1]["pool"].as_array().unwrap();
    assert_eq!(pool.len(), 6);
    assert!(pool.iter().all(|m| m["picked"] == true));

    let text = run(&["explain", "www.yourcompany.com", "--client", "127.0.10.1"]);
    assert!(text.contains("no GSLB rule"), "{text}");
}

/// The recipe of geo/README.md: `gslbd geo build` writes mmdb files that, named as `asn_db` and
/// `city_db`, give exactly the decisions the CSV gives when compiled at load.
#[test]
fn geo_build_mmdb_files_decide_like_the_csv() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_gslbd");
    let out = std::process::Command::new(bin)
        .args(["geo", "build", &format!("{root}/geo/lab.csv"), "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asn = dir.path().join("lab-asn.mmdb");
    let city = dir.path().join("lab-city.mmdb");
    assert!(asn.exists() && city.exists());

    let lab = std::fs::read_to_string(format!("{root}/zones/lab.toml")).unwrap();
    let config = lab
        .replace(
            "asn_db = \"../geo/lab.csv\"",
            &format!("asn_db = \"{}\"", asn.display()),
        )
        .replace(
            "city_db = \"../geo/lab.csv\"",
            &format!("city_db = \"{}\"", city.display()),
        )
        .replace("\"../geo/", &format!("\"{root}/geo/"))
        .replace("file = \"", &format!("file = \"{root}/zones/"))
        .replace("hints = \"", &format!("hints = \"{root}/zones/"));
    assert!(config.contains("lab-asn.mmdb") && config.contains("lab-city.mmdb"));
    let path = dir.path().join("gslbd.toml");
    std::fs::write(&path, config).unwrap();

    let from_mmdb = Snapshot::build(&Source::file(&path)).expect("builds from the mmdb files");
    let from_csv = Snapshot::build(&Source::lab()).unwrap();
    for (client, _, _) in TABLE {
        let c = client_addr(None, ip(client));
        let a = gslbd::lookup::explain(
            &from_mmdb,
            0,
            OBJECT,
            RecordType::A,
            c,
            ClientSource::Packet,
        )
        .unwrap();
        let b =
            gslbd::lookup::explain(&from_csv, 0, OBJECT, RecordType::A, c, ClientSource::Packet)
                .unwrap();
        assert_eq!(
            (addresses(&a), &a.hops[0].line, &a.hops[1].region, a.scope),
            (addresses(&b), &b.hops[0].line, &b.hops[1].region, b.scope),
            "{client}"
        );
    }
}

/// Geo files and policy reload with the zones: an operator moves a network to another carrier and
/// the next answer follows; a broken override file is refused and the previous data keeps serving.
#[tokio::test]
async fn geo_and_policy_reload_with_the_zones() {
    let dir = tempfile::tempdir().unwrap();
    let lines = |carrier: &str| {
        format!(
            "network,carrier,asn,organisation,country,province,city,latitude,longitude\n127.0.20.0/24,{carrier},,,,,,,\n"
        )
    };
    std::fs::write(dir.path().join("lines.csv"), lines("mobile")).unwrap();
    let config = write_example(
        dir.path(),
        "www CNAME www.vip\n",
        r#"
[geo]
overrides = ["lines.csv"]
[geo.carrier.mobile]
[geo.carrier.telecom]

[[gslb.carrier]]
name = "www.vip.example.com."
default = "bgp.example.net."
lines = { mobile = "cm.example.net.", telecom = "ct.example.net." }
"#,
    );
    let server = start(Source::file(config)).await;
    let target = |m: &Message| m.answers.last().map(|r| r.data.to_string());
    let q = Q::new("www.example.com.", 1);
    let (m, _) = ask_from(&server, "127.0.20.1", &q).await;
    assert_eq!(target(&m).as_deref(), Some("cm.example.net."));

    std::fs::write(dir.path().join("lines.csv"), lines("telecom")).unwrap();
    server.handle.reload().expect("reloads");
    let (m, _) = ask_from(&server, "127.0.20.1", &q).await;
    assert_eq!(target(&m).as_deref(), Some("ct.example.net."));

    // A typo in the override file: refused with file and line; telecom keeps being answered.
    std::fs::write(dir.path().join("lines.csv"), lines("telecon")).unwrap();
    let err = server
        .handle
        .reload()
        .expect_err("a bad override file is refused");
    assert!(
        err.problems[0].contains("lines.csv:2:") && err.problems[0].contains("telecon"),
        "{err}"
    );
    let (m, _) = ask_from(&server, "127.0.20.1", &q).await;
    assert_eq!(target(&m).as_deref(), Some("ct.example.net."));
}
