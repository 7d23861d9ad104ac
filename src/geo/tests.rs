//! Table tests over the lab CSV files (design.md section 3), MaxMind's own test databases and
//! broken inputs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;
use crate::zone::reader::DiskFs;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> Net {
    csv::parse_net(s).unwrap()
}

/// The lab's carriers as the lab config defines them; ASNs from `asns` (the shared table file is
/// someone else's and not needed here).
const LAB_CARRIERS: &str = r#"
[carrier.mobile]
name = "China Mobile"
asns = [9808]
org = ["china mobile", "cmnet"]
[carrier.telecom]
name = "China Telecom"
asns = [4134]
org = ["chinanet", "china telecom"]
[carrier.unicom]
name = "China Unicom"
asns = [4837]
org = ["china unicom", "china169"]
"#;

fn config(head: &str) -> GeoConfig {
    toml::from_str(&format!("{head}\n{LAB_CARRIERS}")).unwrap()
}

fn lab() -> Geo {
    let cfg = config(
        r#"
overrides = ["geo/lab-overrides.csv"]
asn_db = "geo/lab.csv"
city_db = "geo/lab.csv"
"#,
    );
    Geo::load(&cfg, &root(), &DiskFs).unwrap()
}

fn carrier_name(geo: &Geo, g: &GeoInfo<'_>) -> Option<String> {
    g.carrier.map(|c| geo.carrier(c).id.clone())
}

struct Row {
    ip: &'static str,
    carrier: Option<&'static str>,
    via: Option<&'static str>,
    carrier_by: Option<(GeoSource, &'static str)>,
    carrier_scope: u8,
    province: Option<&'static str>,
    city: Option<&'static str>,
    location: Option<(f64, f64)>,
    location_by: Option<(GeoSource, &'static str)>,
    location_scope: u8,
}

#[allow(clippy::too_many_arguments)]
fn row(
    ip: &'static str,
    carrier: Option<&'static str>,
    via: Option<&'static str>,
    by: Option<(GeoSource, &'static str)>,
    carrier_scope: u8,
    place: Option<(&'static str, &'static str, f64, f64)>,
    location_by: Option<(GeoSource, &'static str)>,
    location_scope: u8,
) -> Row {
    Row {
        ip,
        carrier,
        via,
        carrier_by: by,
        carrier_scope,
        province: place.map(|p| p.0),
        city: place.map(|p| p.1),
        location: place.map(|p| (p.2, p.3)),
        location_by,
        location_scope,
    }
}

use GeoSource::{AsnDb, CityDb, Override};
const TABLE: Option<&str> = Some("asn table");
const ORG: Option<&str> = Some("organisation match");
const OVR: Option<&str> = Some("override");

#[test]
fn lab_table() {
    let geo = lab();
    #[rustfmt::skip]
    let rows = [
        row("127.0.10.1", Some("mobile"), TABLE, Some((AsnDb, "127.0.10.0/24")), 24,
            Some(("Beijing", "Beijing", 39.9042, 116.4074)), Some((CityDb, "127.0.10.0/24")), 24),
        row("127.0.11.1", Some("telecom"), TABLE, Some((AsnDb, "127.0.11.0/24")), 24,
            Some(("Shanghai", "Shanghai", 31.2304, 121.4737)), Some((CityDb, "127.0.11.0/24")), 24),
        row("127.0.12.200", Some("unicom"), TABLE, Some((AsnDb, "127.0.12.0/24")), 24,
            Some(("Guangdong", "Guangzhou", 23.1291, 113.2644)), Some((CityDb, "127.0.12.0/24")), 24),
        // The operator's own range: no database knows it.
        row("127.0.13.1", Some("mobile"), OVR, Some((Override, "127.0.13.0/24")), 24,
            Some(("Guangdong", "Guangzhou", 23.1291, 113.2644)), Some((Override, "127.0.13.0/24")), 24),
        // Private ASN in no table, organisation naming no carrier.
        row("127.0.14.1", None, None, None, 24,
            Some(("Sichuan", "Chengdu", 30.5728, 104.0668)), Some((CityDb, "127.0.14.0/24")), 24),
        // ASN in no table; the organisation matches "china mobile".
        row("127.0.15.1", Some("mobile"), ORG, Some((AsnDb, "127.0.15.0/24")), 24,
            Some(("Xinjiang", "Urumqi", 43.8256, 87.6168)), Some((CityDb, "127.0.15.0/24")), 24),
        row("192.0.2.1", Some("mobile"), TABLE, Some((AsnDb, "192.0.2.0/25")), 25,
            Some(("Shaanxi", "Xi'an", 34.3416, 108.9398)), Some((CityDb, "192.0.2.0/25")), 25),
        // The db's /25 is the source, but the override /29 at .248 narrows where the answer
        // holds to 192.0.2.128/26.
        row("192.0.2.129", Some("telecom"), TABLE, Some((AsnDb, "192.0.2.128/25")), 26,
            Some(("Sichuan", "Chengdu", 30.5728, 104.0668)), Some((CityDb, "192.0.2.128/25")), 26),
        // The override wins with its own prefix; location still from the city db's /25.
        row("192.0.2.250", Some("unicom"), OVR, Some((Override, "192.0.2.248/29")), 29,
            Some(("Sichuan", "Chengdu", 30.5728, 104.0668)), Some((CityDb, "192.0.2.128/25")), 29),
        row("198.51.100.1", Some("unicom"), TABLE, Some((AsnDb, "198.51.100.0/26")), 26,
            Some(("Beijing", "Beijing", 39.9042, 116.4074)), Some((CityDb, "198.51.100.0/26")), 26),
        row("198.51.100.65", Some("mobile"), TABLE, Some((AsnDb, "198.51.100.64/26")), 26,
            Some(("Guangdong", "Shenzhen", 22.5431, 114.0579)), Some((CityDb, "198.51.100.64/26")), 26),
        row("198.51.100.129", Some("telecom"), TABLE, Some((AsnDb, "198.51.100.128/26")), 26,
            Some(("Zhejiang", "Hangzhou", 30.2741, 120.1551)), Some((CityDb, "198.51.100.128/26")), 26),
        row("198.51.100.200", None, None, None, 26,
            Some(("California", "Mountain View", 37.3861, -122.0839)),
            Some((CityDb, "198.51.100.192/26")), 26),
        row("203.0.113.77", Some("unicom"), TABLE, Some((AsnDb, "203.0.113.0/24")), 24,
            Some(("Xinjiang", "Urumqi", 43.8256, 87.6168)), Some((CityDb, "203.0.113.0/24")), 24),
        row("2001:db8:a::1", Some("mobile"), TABLE, Some((AsnDb, "2001:db8:a::/48")), 48,
            Some(("Shanghai", "Shanghai", 31.2304, 121.4737)), Some((CityDb, "2001:db8:a::/48")), 48),
        row("2001:db8:b:1::1", Some("telecom"), TABLE, Some((AsnDb, "2001:db8:b::/48")), 48,
            Some(("Guangdong", "Guangzhou", 23.1291, 113.2644)), Some((CityDb, "2001:db8:b::/48")), 48),
        row("2001:db8:c:ffff::1", Some("unicom"), TABLE, Some((AsnDb, "2001:db8:c::/48")), 48,
            Some(("Beijing", "Beijing", 39.9042, 116.4074)), Some((CityDb, "2001:db8:c::/48")), 48),
        // The default answer: nothing anywhere; the answer holds for 127.0.0.0/21 (the lab rows
        // start at 127.0.8.0/21).
        row("127.0.0.1", None, None, None, 21, None, None, 21),
    ];
    for r in &rows {
        let g = geo.lookup(ip(r.ip));
        let what = format!("{} -> {g:?}", r.ip);
        assert_eq!(carrier_name(&geo, &g).as_deref(), r.carrier, "{what}");
        assert_eq!(g.carrier_via, r.via, "{what}");
        assert_eq!(
            g.carrier_by,
            r.carrier_by.map(|(s, n)| (s, net(n))),
            "{what}"
        );
        assert_eq!(g.carrier_scope, r.carrier_scope, "{what}");
        assert_eq!(g.province, r.province, "{what}");
        assert_eq!(g.city, r.city, "{what}");
        assert_eq!(g.location, r.location, "{what}");
        assert_eq!(
            g.location_by,
            r.location_by.map(|(s, n)| (s, net(n))),
            "{what}"
        );
        assert_eq!(g.location_scope, r.location_scope, "{what}");
        assert_eq!(g.country.is_some(), r.province.is_some(), "{what}");
        // Every network reported contains the address, in the address's family.
        for (_, n) in g.carrier_by.iter().chain(g.location_by.iter()) {
            assert!(n.contains(ip(r.ip)), "{what}");
        }
    }
}

#[test]
fn lab_fields() {
    let geo = lab();
    let g = geo.lookup(ip("127.0.10.1"));
    assert_eq!(g.asn, Some(9808));
    assert_eq!(
        g.organisation,
        Some("China Mobile Communications Group Co., Ltd.")
    );
    assert_eq!(g.country, Some("CN"));
    // The lab CSV has no subdivision codes.
    assert_eq!(g.province_code, None);
    assert_eq!(geo.carrier(g.carrier.unwrap()).name, "China Mobile");

    // Override wins for the carrier; ASN and organisation still come from the ASN db.
    let g = geo.lookup(ip("192.0.2.250"));
    assert_eq!(g.asn, Some(4134));
    assert_eq!(g.organisation, Some("CHINANET-BACKBONE"));

    let g = geo.lookup(ip("127.0.15.1"));
    assert_eq!(g.asn, Some(64513));

    let g = geo.lookup(ip("198.51.100.200"));
    assert_eq!(
        (g.country, g.asn, g.organisation),
        (Some("US"), Some(15169), Some("GOOGLE"))
    );

    let g = geo.lookup(ip("127.0.0.1"));
    assert_eq!(
        (g.carrier, g.asn, g.organisation, g.country, g.location),
        (None, None, None, None, None)
    );
    assert!(g.carrier_by.is_none() && g.location_by.is_none());

    // IPv6 outside every row.
    let g = geo.lookup(ip("2001:db8:d::1"));
    assert_eq!((g.carrier, g.country), (None, None));
}

#[test]
fn ipv4_mapped_is_ipv4() {
    let geo = lab();
    for (v4, mapped) in [
        ("127.0.10.1", "::ffff:127.0.10.1"),
        ("192.0.2.250", "::ffff:192.0.2.250"),
        ("127.0.0.1", "::ffff:127.0.0.1"),
    ] {
        let a = geo.lookup(ip(v4));
        let b = geo.lookup(ip(mapped));
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{mapped}");
    }
    let g = geo.lookup(ip("::ffff:127.0.10.1"));
    assert_eq!(g.carrier_by, Some((AsnDb, net("127.0.10.0/24"))));
    assert_eq!(g.carrier_by.unwrap().1.to_string(), "127.0.10.0/24");
}

#[test]
fn carrier_ids() {
    let geo = lab();
    let ids: Vec<&str> = geo.carriers().iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["mobile", "telecom", "unicom"]);
    for (i, id) in ids.iter().enumerate() {
        let cid = geo.carrier_id(id).unwrap();
        assert_eq!(cid, CarrierId(i as u16));
        assert_eq!(geo.carrier(cid).id, *id);
    }
    assert_eq!(geo.carrier_id("cernet"), None);
}

#[test]
fn empty_geo_finds_nothing() {
    for geo in [
        Geo::empty(),
        Geo::load(&GeoConfig::default(), Path::new("/nonexistent"), &DiskFs).unwrap(),
    ] {
        assert!(geo.is_empty());
        let g = geo.lookup(ip("192.0.2.1"));
        assert!(g.carrier.is_none() && g.country.is_none() && g.location_by.is_none());
        assert_eq!((g.carrier_scope, g.location_scope), (0, 0));
        assert!(geo.carriers().is_empty());
    }
    assert!(!lab().is_empty());
}

#[test]
fn geo_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Geo>();
}

#[test]
fn config_shape() {
    let cfg = config(r#"asn_db = "x.mmdb""#);
    assert_eq!(cfg.asn_db.as_deref(), Some(Path::new("x.mmdb")));
    assert_eq!(cfg.carrier["mobile"].asns, [9808]);
    let e = toml::from_str::<GeoConfig>("asn_dbs = \"x\"").unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    let e = toml::from_str::<GeoConfig>("[carrier.x]\nasn = [1]").unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    assert_eq!(
        toml::from_str::<GeoConfig>("").unwrap(),
        GeoConfig::default()
    );
}

#[test]
fn compile_csv_round_trip() {
    let path = root().join("geo/lab.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let (asn, city) = compile_csv(&text, Path::new("geo/lab.csv")).unwrap();
    // Deterministic: the same CSV gives the same bytes (committable, diffable).
    assert_eq!(
        compile_csv(&text, Path::new("geo/lab.csv")).unwrap(),
        (asn.clone(), city.clone())
    );

    let asn = maxminddb::Reader::from_source(asn).unwrap();
    assert_eq!(asn.metadata().database_type, "gslbd-ASN");
    // Not 0: libmaxminddb (mmdblookup, PowerDNS's geoip backend) refuses such metadata.
    assert_eq!(asn.metadata().build_epoch, 1_767_225_600);
    assert_eq!(asn.metadata().ip_version, 6);
    let found = asn.lookup(ip("127.0.10.1")).unwrap();
    assert_eq!(found.network().unwrap().to_string(), "127.0.10.0/24");
    let rec: maxminddb::geoip2::Asn = found.decode().unwrap().unwrap();
    assert_eq!(rec.autonomous_system_number, Some(9808));
    assert_eq!(
        rec.autonomous_system_organization,
        Some("China Mobile Communications Group Co., Ltd.")
    );
    // The IPv4-mapped alias works for other readers too.
    let found = asn.lookup(ip("::ffff:127.0.11.1")).unwrap();
    let rec: maxminddb::geoip2::Asn = found.decode().unwrap().unwrap();
    assert_eq!(rec.autonomous_system_number, Some(4134));
    assert!(!asn.lookup(ip("127.0.0.1")).unwrap().has_data());

    let city = maxminddb::Reader::from_source(city).unwrap();
    assert_eq!(city.metadata().database_type, "gslbd-City");
    for (addr, network, country, province, name, lat, lon) in [
        (
            "192.0.2.77",
            "192.0.2.0/25",
            "CN",
            "Shaanxi",
            "Xi'an",
            34.3416,
            108.9398,
        ),
        (
            "198.51.100.200",
            "198.51.100.192/26",
            "US",
            "California",
            "Mountain View",
            37.3861,
            -122.0839,
        ),
        (
            "2001:db8:b::5",
            "2001:db8:b::/48",
            "CN",
            "Guangdong",
            "Guangzhou",
            23.1291,
            113.2644,
        ),
    ] {
        let found = city.lookup(ip(addr)).unwrap();
        assert_eq!(found.network().unwrap().to_string(), network);
        let rec: maxminddb::geoip2::City = found.decode().unwrap().unwrap();
        assert_eq!(rec.country.iso_code, Some(country));
        assert_eq!(rec.subdivisions[0].names.english, Some(province));
        assert_eq!(rec.city.names.english, Some(name));
        assert_eq!(rec.location.latitude, Some(lat));
        assert_eq!(rec.location.longitude, Some(lon));
    }
    // The carrier column is not in either database.
    assert!(!city.lookup(ip("127.0.13.1")).unwrap().has_data());
}

#[test]
fn compile_csv_nested_rows() {
    let text = "network,carrier,asn,organisation,country,province,city,latitude,longitude\n\
                10.1.0.0/16,,2,Inner,,,,,\n\
                10.0.0.0/8,,1,Outer,CN,,,,\n";
    let (asn, city) = compile_csv(text, Path::new("n.csv")).unwrap();
    let asn = maxminddb::Reader::from_source(asn).unwrap();
    let city = maxminddb::Reader::from_source(city).unwrap();
    let get = |a: &str| {
        let r = asn.lookup(ip(a)).unwrap();
        let rec: maxminddb::geoip2::Asn = r.decode().unwrap().unwrap();
        (
            rec.autonomous_system_number,
            r.network().unwrap().to_string(),
        )
    };
    // The more specific row wins whatever the line order.
    assert_eq!(get("10.1.2.3"), (Some(2), "10.1.0.0/16".into()));
    assert_eq!(get("10.2.0.1").0, Some(1));
    // The inner row has no location columns: the city db keeps the outer row there.
    assert!(city.lookup(ip("10.1.2.3")).unwrap().has_data());
}

/// A temporary folder with the given files.
fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn load_err(cfg: &GeoConfig, base: &Path) -> Vec<String> {
    Geo::load(cfg, base, &DiskFs).unwrap_err()
}

const HEADER_LINE: &str =
    "network,carrier,asn,organisation,country,province,city,latitude,longitude";

#[test]
fn broken_override_csv() {
    let text = format!(
        "# comment\n{HEADER_LINE}\n\
         192.0.2.0/33,,,,,,,,\n\
         192.0.2.1/24,,,,,,,,\n\
         192.0.3.0/24,,,,,,,91,10\n\
         192.0.4.0/24,,,,,,,10,\n\
         192.0.5.0/24,,x9,,,,,,\n\
         192.0.6.0/24,nosuch,,,,,,,\n\
         192.0.6.0/24,mobile,,,,,,,\n\
         192.0.7.0/24,mobile,,,China,,,,\n\
         192.0.8.0/24,mobile,,,,,\n\
         192.0.9.0/24,,,,,,,10,east\n\
         192.0.10.0/24,mobile,,,,,,,\n"
    );
    let dir = folder(&[("o.csv", text.as_bytes())]);
    let cfg = config(r#"overrides = ["o.csv"]"#);
    let errs = load_err(&cfg, dir.path());
    let f = dir.path().join("o.csv").display().to_string();
    let expect = [
        (3, "bad network \"192.0.2.0/33\""),
        (
            4,
            "host bits set in 192.0.2.1/24 (the network is 192.0.2.0/24)",
        ),
        (5, "latitude 91 out of range"),
        (6, "latitude and longitude go together"),
        (7, "bad ASN \"x9\""),
        (9, "duplicate network 192.0.6.0/24 (first at line 8)"),
        (10, "bad country \"China\""),
        (11, "expected 9 columns"),
        (12, "bad longitude \"east\""),
    ];
    // Line 8's unknown carrier is checked only once the file parses (below).
    assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    for ((line, msg), e) in expect.iter().zip(&errs) {
        assert!(
            e.starts_with(&format!("{f}:{line}: {msg}")),
            "{e} / {line}: {msg}"
        );
    }

    // Once the syntax is right, the unknown carrier is reported with its line.
    let text = format!("{HEADER_LINE}\n192.0.6.0/24,nosuch,,,,,,,\n");
    let dir = folder(&[("o.csv", text.as_bytes())]);
    let errs = load_err(&cfg, dir.path());
    let f = dir.path().join("o.csv").display().to_string();
    assert_eq!(
        errs,
        [format!(
            "{f}:2: unknown carrier \"nosuch\" (defined: mobile, telecom, unicom)"
        )]
    );
}

#[test]
fn override_header_and_duplicates_across_files() {
    let dir = folder(&[
        ("nohead.csv", b"192.0.2.0/24,mobile,,,,,,,\n"),
        ("empty.csv", b"# nothing\n"),
        (
            "a.csv",
            format!("{HEADER_LINE}\n192.0.2.0/24,mobile,,,,,,,\n").as_bytes(),
        ),
        (
            "b.csv",
            format!("{HEADER_LINE}\n\n192.0.2.0/24,unicom,,,,,,,\n").as_bytes(),
        ),
    ]);
    let d = |n: &str| dir.path().join(n).display().to_string();
    let cfg = config(r#"overrides = ["nohead.csv", "empty.csv", "a.csv", "b.csv", "gone.csv"]"#);
    let errs = load_err(&cfg, dir.path());
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[0].starts_with(&format!(
        "{}:1: expected the header line network,carrier",
        d("nohead.csv")
    )));
    assert!(errs[1].starts_with(&format!("{}: empty file", d("empty.csv"))));
    assert_eq!(
        errs[2],
        format!(
            "{}:3: duplicate network 192.0.2.0/24 (first at {}:2)",
            d("b.csv"),
            d("a.csv")
        )
    );
    assert!(errs[3].starts_with(&format!("{}: cannot read override file", d("gone.csv"))));
}

#[test]
fn broken_csv_as_database() {
    let text = format!(
        "{HEADER_LINE}\n10.0.0.0/8,,,,,,,95.5,1\n10.1.0.0/16,,1,,,,,,\n10.1.0.0/16,,2,,,,,,\n"
    );
    let dir = folder(&[("db.csv", text.as_bytes())]);
    let cfg = config(
        r#"asn_db = "db.csv"
city_db = "db.csv""#,
    );
    let errs = load_err(&cfg, dir.path());
    let f = dir.path().join("db.csv").display().to_string();
    // The file is compiled once for both roles: each problem once.
    assert_eq!(
        errs,
        [
            format!("{f}:2: latitude 95.5 out of range (-90 to 90)"),
            format!("{f}:4: duplicate network 10.1.0.0/16 (first at line 3)"),
        ]
    );
}

#[test]
fn wrong_schema_missing_and_garbage_databases() {
    let text = std::fs::read_to_string(root().join("geo/lab.csv")).unwrap();
    let (asn, city) = compile_csv(&text, Path::new("lab.csv")).unwrap();
    let dir = folder(&[
        ("city.mmdb", &city),
        ("asn.mmdb", &asn),
        ("junk.mmdb", b"not a database"),
    ]);
    let d = |n: &str| dir.path().join(n).display().to_string();

    let errs = load_err(&config(r#"asn_db = "city.mmdb""#), dir.path());
    assert_eq!(
        errs,
        [format!(
            "{}: is a gslbd-City database, asn_db needs an ASN or ISP database (GeoLite2-ASN, \
             GeoIP2-ISP, DB-IP ASN)",
            d("city.mmdb")
        )]
    );
    let errs = load_err(&config(r#"city_db = "asn.mmdb""#), dir.path());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(&format!(
            "{}: is a gslbd-ASN database, city_db needs a City",
            d("asn.mmdb")
        )),
        "{errs:?}"
    );
    let errs = load_err(&config(r#"asn_db = "missing.mmdb""#), dir.path());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(&format!("{}: cannot read database: ", d("missing.mmdb"))),
        "{errs:?}"
    );
    let errs = load_err(&config(r#"city_db = "junk.mmdb""#), dir.path());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(&format!("{}: not a readable MaxMind DB", d("junk.mmdb"))),
        "{errs:?}"
    );

    // The right files in the right places load, and behave like the CSV.
    let cfg = config(
        r#"asn_db = "asn.mmdb"
city_db = "city.mmdb""#,
    );
    let geo = Geo::load(&cfg, dir.path(), &DiskFs).unwrap();
    let g = geo.lookup(ip("127.0.11.9"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("telecom"));
    assert_eq!(g.province, Some("Shanghai"));
}

/// A database whose type names nothing we know is judged by its records.
#[test]
fn schema_probe_by_records() {
    let mut w = mmdb_writer::Writer::new("Lab-Geo-Data");
    w.insert_value(
        "192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(),
        mmdb_writer::Value::map([(
            "location",
            mmdb_writer::Value::map([("latitude", 1.5), ("longitude", 2.5)]),
        )]),
    )
    .unwrap();
    let looks_like_city = w.to_bytes().unwrap();
    let mut w = mmdb_writer::Writer::new("Lab-Geo-Data");
    w.insert_value(
        "192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(),
        mmdb_writer::Value::map([("something", mmdb_writer::Value::from(1u32))]),
    )
    .unwrap();
    let unknown = w.to_bytes().unwrap();
    let mut w = mmdb_writer::Writer::new("GeoLite2-ASN");
    w.insert_value(
        "192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(),
        mmdb_writer::Value::map([("autonomous_system_number", "9808")]),
    )
    .unwrap();
    let bad_types = w.to_bytes().unwrap();
    let dir = folder(&[
        ("c.mmdb", &looks_like_city),
        ("u.mmdb", &unknown),
        ("t.mmdb", &bad_types),
    ]);
    let d = |n: &str| dir.path().join(n).display().to_string();

    let geo = Geo::load(&config(r#"city_db = "c.mmdb""#), dir.path(), &DiskFs).unwrap();
    assert_eq!(geo.lookup(ip("192.0.2.1")).location, Some((1.5, 2.5)));
    let errs = load_err(&config(r#"asn_db = "c.mmdb""#), dir.path());
    assert_eq!(
        errs,
        [format!(
            "{}: is a \"Lab-Geo-Data\" database whose records look like City records, asn_db \
             needs an ASN or ISP database (GeoLite2-ASN, GeoIP2-ISP, DB-IP ASN)",
            d("c.mmdb")
        )]
    );
    let errs = load_err(&config(r#"city_db = "u.mmdb""#), dir.path());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("is unknown and its records have none of the fields"),
        "{errs:?}"
    );
    let errs = load_err(&config(r#"asn_db = "t.mmdb""#), dir.path());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(&format!(
            "{}: the record for 192.0.2.0/24 does not decode as an ASN record",
            d("t.mmdb")
        )),
        "{errs:?}"
    );
}

/// ip-location-db's files are flat: `country_code` (its country files, whatever their source:
/// the GeoLite2 one says "GeoLite2-Country"), and for cities `state1`, `city` as a string,
/// `latitude`, `longitude` (floats). They answer like MaxMind's layout; a database of a fitting
/// type whose records hold none of the fields we read is refused, naming what it has.
#[test]
fn ip_location_db_layouts() {
    use mmdb_writer::Value;
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    let mut w = mmdb_writer::Writer::new("GeoLite2-Country");
    w.insert_value(net("1.0.1.0/24"), Value::map([("country_code", "CN")]))
        .unwrap();
    w.insert_value(net("2001:db8::/32"), Value::map([("country_code", "JP")]))
        .unwrap();
    let country = w.to_bytes().unwrap();
    let mut w = mmdb_writer::Writer::new("DBIP-City-Lite");
    w.insert_value(
        net("1.0.2.0/24"),
        Value::map([
            ("country_code", Value::from("CN")),
            ("state1", Value::from("Beijing")),
            ("state2", Value::from("")),
            ("city", Value::from("Haidian")),
            ("postcode", Value::from("")),
            ("latitude", Value::Float(39.95)),
            ("longitude", Value::Float(116.25)),
            ("timezone", Value::from("Asia/Shanghai")),
        ]),
    )
    .unwrap();
    let city = w.to_bytes().unwrap();
    let mut w = mmdb_writer::Writer::new("GeoLite2-Country");
    w.insert_value(net("1.0.1.0/24"), Value::map([("code", "CN")]))
        .unwrap();
    let useless = w.to_bytes().unwrap();
    let dir = folder(&[
        ("country.mmdb", &country),
        ("city.mmdb", &city),
        ("useless.mmdb", &useless),
    ]);

    let geo = Geo::load(&config(r#"city_db = "country.mmdb""#), dir.path(), &DiskFs).unwrap();
    let g = geo.lookup(ip("1.0.1.1"));
    assert_eq!(
        (g.country, g.province, g.location),
        (Some("CN"), None, None)
    );
    assert_eq!(geo.lookup(ip("2001:db8::1")).country, Some("JP"));
    assert_eq!(geo.lookup(ip("1.0.2.1")).country, None);

    let geo = Geo::load(&config(r#"city_db = "city.mmdb""#), dir.path(), &DiskFs).unwrap();
    let g = geo.lookup(ip("1.0.2.1"));
    assert_eq!(g.country, Some("CN"));
    assert_eq!((g.province, g.province_code), (Some("Beijing"), None));
    assert_eq!(g.city, Some("Haidian"));
    let (lat, lon) = g.location.unwrap();
    assert!(
        (lat - 39.95).abs() < 1e-4 && (lon - 116.25).abs() < 1e-4,
        "{lat} {lon}"
    );

    let errs = load_err(&config(r#"city_db = "useless.mmdb""#), dir.path());
    assert_eq!(
        errs,
        [format!(
            "{}: \"GeoLite2-Country\" database whose records have none of the fields gslbd \
             reads (country.iso_code, subdivisions, city, location (GeoIP2, DB-IP) or \
             country_code, state1, city, latitude, longitude (ip-location-db)); its records \
             have: code",
            dir.path().join("useless.mmdb").display()
        )]
    );
}

#[test]
fn asn_carrier_tables() {
    let dir = folder(&[
        (
            "t1.csv",
            b"# shared table\nasn,carrier,organisation\n9808,mobile,China Mobile\n\
              4538,cernet,China Education and Research Network Center\n\
              4134,telecom,Chinanet\n64512,telecom,test\n",
        ),
        (
            "t2.csv",
            b"64512,unicom,conflict\n4837,unicom,China Unicom\n9808,unicom,ok\n",
        ),
        ("bad.csv", b"asn,carrier\nAS12x,mobile\n"),
    ]);
    let d = |n: &str| dir.path().join(n).display().to_string();
    // `asns` in the config win over the tables (9808 -> unicom in t2 is not a conflict).
    let mut cfg: GeoConfig = toml::from_str(
        r#"
asn_carriers = ["t1.csv", "t2.csv"]
asn_db = "lab.csv"
[carrier.mobile]
asns = [9808]
[carrier.telecom]
[carrier.unicom]
"#,
    )
    .unwrap();
    let errs = load_err(&cfg, dir.path());
    assert_eq!(
        errs,
        [
            format!(
                "{}:1: AS64512 is mapped to carrier unicom here and to telecom at {}:6",
                d("t2.csv"),
                d("t1.csv")
            ),
            format!(
                "{}: cannot read geo CSV: No such file or directory (os error 2)",
                d("lab.csv")
            ),
        ]
    );

    cfg.asn_db = Some(root().join("geo/lab.csv"));
    std::fs::write(dir.path().join("t2.csv"), "4837,unicom,China Unicom\n").unwrap();
    let geo = Geo::load(&cfg, dir.path(), &DiskFs).unwrap();
    // cernet is not defined here: its row is skipped, not an error.
    assert_eq!(geo.carriers().len(), 3);
    assert_eq!(
        geo.carrier(geo.carrier_id("mobile").unwrap()).name,
        "mobile"
    );
    for (a, c) in [
        ("127.0.10.1", "mobile"),
        ("127.0.11.1", "telecom"),
        ("127.0.12.1", "unicom"),
    ] {
        let g = geo.lookup(ip(a));
        assert_eq!(carrier_name(&geo, &g).as_deref(), Some(c), "{a}");
        assert_eq!(g.carrier_via, TABLE);
    }
    // No org patterns here: 64513 maps to nothing.
    assert_eq!(geo.lookup(ip("127.0.15.1")).carrier, None);

    cfg.asn_carriers = vec!["bad.csv".into()];
    let errs = load_err(&cfg, dir.path());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(&format!("{}:2: bad ASN \"AS12x\"", d("bad.csv"))),
        "{errs:?}"
    );
}

#[test]
fn carrier_config_errors() {
    let cfg: GeoConfig = toml::from_str(
        r#"
[carrier."bad id"]
[carrier.a]
asns = [1]
org = ["Same", ""]
[carrier.b]
asns = [1]
org = ["same"]
"#,
    )
    .unwrap();
    let errs = load_err(&cfg, Path::new("."));
    assert_eq!(
        errs,
        [
            "geo.carrier.bad id: a carrier id is letters, digits, '-' and '_'",
            "geo.carrier.b.asns: AS1 is also listed for carrier a (geo.carrier.a.asns)",
            "geo.carrier.a.org: empty pattern",
            "geo.carrier.b.org: pattern \"same\" is also a pattern of carrier a",
        ]
    );
}

#[test]
fn nested_overrides_inherit_and_narrow() {
    let text = format!(
        "{HEADER_LINE}\n\
         10.1.0.0/16,,,,,Hebei,,,\n\
         10.0.0.0/8,mobile,,,CN,Beijing,,39.9,116.4\n\
         10.2.0.0/16,,4134,,,,,,\n\
         10.3.0.0/16,,,Some China Unicom branch,,,,,\n\
         2001:db8::/32,unicom,,,,,,,\n"
    );
    let dir = folder(&[("o.csv", text.as_bytes())]);
    let mut cfg = config(r#"overrides = ["o.csv"]"#);
    cfg.carrier.get_mut("mobile").unwrap().asns.clear();
    let geo = Geo::load(&cfg, dir.path(), &DiskFs).unwrap();

    let g = geo.lookup(ip("10.1.2.3"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("mobile"));
    // The carrier comes from the /8, the province from the /16; both hold only inside the /16.
    assert_eq!(g.carrier_by, Some((Override, net("10.0.0.0/8"))));
    assert_eq!((g.carrier_scope, g.location_scope), (16, 16));
    assert_eq!((g.country, g.province), (Some("CN"), Some("Hebei")));
    assert_eq!(g.location, Some((39.9, 116.4)));
    assert_eq!(g.location_by, Some((Override, net("10.0.0.0/8"))));

    // Elsewhere in the /8, away from the /16s: the /8's answer, for 10.128.0.0/9.
    let g = geo.lookup(ip("10.200.0.1"));
    assert_eq!((g.province, g.carrier_scope), (Some("Beijing"), 9));

    // The override's ASN goes through the ASN table (4134 is telecom's).
    let g = geo.lookup(ip("10.2.0.1"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("mobile"));
    // ...but the /8's carrier column is more specific than a derivation: it stays.
    assert_eq!(g.carrier_via, OVR);
    assert_eq!(g.asn, Some(4134));

    let g = geo.lookup(ip("2001:db8:1::1"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("unicom"));
    assert_eq!(g.carrier_by, Some((Override, net("2001:db8::/32"))));
    // IPv4-mapped clients find the IPv4 overrides.
    assert_eq!(geo.lookup(ip("::ffff:10.1.2.3")).province, Some("Hebei"));

    // Without a carrier column, an override ASN or organisation decides through the tables.
    let text = format!(
        "{HEADER_LINE}\n\
         10.2.0.0/16,,4134,,,,,,\n\
         10.3.0.0/16,,,Some China Unicom branch,,,,,\n"
    );
    let dir = folder(&[("o.csv", text.as_bytes())]);
    let geo = Geo::load(&config(r#"overrides = ["o.csv"]"#), dir.path(), &DiskFs).unwrap();
    let g = geo.lookup(ip("10.2.0.1"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("telecom"));
    assert_eq!(
        (g.carrier_via, g.carrier_by),
        (TABLE, Some((Override, net("10.2.0.0/16"))))
    );
    let g = geo.lookup(ip("10.3.0.1"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("unicom"));
    assert_eq!(
        (g.carrier_via, g.carrier_by),
        (ORG, Some((Override, net("10.3.0.0/16"))))
    );
    assert_eq!(g.organisation, Some("Some China Unicom branch"));
}

#[test]
fn org_match_prefers_the_longest_pattern() {
    let mut cfg = config("");
    cfg.carrier.get_mut("mobile").unwrap().org = vec!["china".into()];
    cfg.asn_db = Some("geo/lab.csv".into());
    for c in cfg.carrier.values_mut() {
        c.asns.clear();
    }
    let geo = Geo::load(&cfg, &root(), &DiskFs).unwrap();
    // "CHINA UNICOM China169 Backbone" contains "china" (mobile) and "china unicom" (unicom).
    let g = geo.lookup(ip("127.0.12.1"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("unicom"));
    assert_eq!(g.carrier_via, ORG);
    // "CHINANET-BACKBONE": "chinanet" (telecom) is longer than "china".
    let g = geo.lookup(ip("127.0.11.1"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("telecom"));
}

/// MaxMind's own test databases (tests/data/geo/README.md): the probe and the lookups on files
/// written by MaxMind's writer.
#[test]
fn maxmind_test_databases() {
    let base = root().join("tests/data/geo");
    let cfg: GeoConfig = toml::from_str(
        r#"
asn_db = "GeoLite2-ASN-Test.mmdb"
city_db = "GeoLite2-City-Test.mmdb"
[carrier.mobile]
asns = [9808]
[carrier.telstra]
org = ["telstra"]
"#,
    )
    .unwrap();
    let geo = Geo::load(&cfg, &base, &DiskFs).unwrap();

    let g = geo.lookup(ip("112.1.1.1"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("mobile"));
    assert_eq!(g.carrier_by, Some((AsnDb, net("112.0.0.0/10"))));
    assert_eq!(
        g.organisation,
        Some("Guangdong Mobile Communication Co.Ltd.")
    );
    assert_eq!(g.country, None);

    let g = geo.lookup(ip("1.128.0.1"));
    assert_eq!(carrier_name(&geo, &g).as_deref(), Some("telstra"));
    assert_eq!((g.carrier_via, g.asn), (ORG, Some(1221)));

    let g = geo.lookup(ip("175.16.199.1"));
    assert_eq!(
        (g.country, g.province, g.province_code, g.city),
        (
            Some("CN"),
            Some("Jilin Sheng"),
            Some("22"),
            Some("Changchun")
        )
    );
    assert_eq!(g.location, Some((43.88, 125.3228)));
    assert_eq!(g.location_by, Some((CityDb, net("175.16.199.0/24"))));

    // Two subdivisions: the first (largest) is the province.
    let g = geo.lookup(ip("2.125.160.216"));
    assert_eq!(
        (g.province, g.province_code, g.city),
        (Some("England"), Some("ENG"), Some("Boxford"))
    );
    assert_eq!(g.location_by, Some((CityDb, net("2.125.160.216/29"))));

    for a in ["81.2.69.160", "::ffff:81.2.69.160"] {
        let g = geo.lookup(ip(a));
        assert_eq!(g.city, Some("London"), "{a}");
        assert_eq!(g.location_by, Some((CityDb, net("81.2.69.160/27"))), "{a}");
    }
    let g = geo.lookup(ip("2001:218::1"));
    assert_eq!((g.country, g.province), (Some("JP"), None));
    assert_eq!(g.location_by, Some((CityDb, net("2001:218::/32"))));

    // Wrong roles.
    let swapped: GeoConfig = toml::from_str(
        r#"
asn_db = "GeoLite2-City-Test.mmdb"
city_db = "GeoLite2-ASN-Test.mmdb"
"#,
    )
    .unwrap();
    let errs = load_err(&swapped, &base);
    let d = |n: &str| base.join(n).display().to_string();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with(&format!(
            "{}: is a GeoLite2-City database, asn_db needs an ASN or ISP database",
            d("GeoLite2-City-Test.mmdb")
        )),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with(&format!(
            "{}: is a GeoLite2-ASN database, city_db needs a City",
            d("GeoLite2-ASN-Test.mmdb")
        )),
        "{errs:?}"
    );
}

#[test]
fn distances() {
    let beijing = (39.9042, 116.4074);
    let shanghai = (31.2304, 121.4737);
    let d = distance_km(beijing, shanghai);
    assert!((d - 1068.0).abs() < 5.0, "{d}");
    assert_eq!(distance_km(beijing, beijing), 0.0);
    assert!((distance_km(shanghai, beijing) - d).abs() < 1e-9);
    // Half the circumference between antipodes.
    let half = distance_km((0.0, 0.0), (0.0, 180.0));
    assert!(
        (half - std::f64::consts::PI * 6371.0).abs() < 1e-6,
        "{half}"
    );
}

#[test]
fn net_display_and_contains() {
    assert_eq!(net("192.0.2.248/29").to_string(), "192.0.2.248/29");
    assert_eq!(net("2001:db8:a::/48").to_string(), "2001:db8:a::/48");
    assert!(net("192.0.2.248/29").contains(ip("192.0.2.255")));
    assert!(!net("192.0.2.248/29").contains(ip("192.0.2.247")));
    assert_eq!(Net::containing(ip("10.1.2.3"), 0).to_string(), "0.0.0.0/0");
    assert_eq!(
        Net::containing(ip("10.1.2.3"), 40).to_string(),
        "10.1.2.3/32"
    );
}

/// The serving threads' `GeoCache` answers exactly as `Geo::lookup` for every address of the
/// lab's networks, asked in an order that visits each /24 many times; a /24 split into finer
/// networks (198.51.100.0/24 into /26s, 192.0.2.0/24 with an override /29) is never cached.
#[test]
fn geo_cache_answers_as_lookup() {
    let geo = lab();
    let mut cache = GeoCache::default();
    let fields = |g: &GeoInfo<'_>| {
        format!(
            "{:?} {} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            g.carrier,
            g.carrier_scope,
            g.location_scope,
            g.asn,
            g.organisation,
            g.country,
            g.province,
            g.province_code,
            g.city,
            g.location
        )
    };
    let mut v4 = Vec::new();
    for base in [
        "127.0.10.0",
        "127.0.13.0",
        "127.0.14.0",
        "127.0.16.0",
        "192.0.2.0",
        "198.51.100.0",
        "203.0.113.0",
    ] {
        let b = u32::from(base.parse::<std::net::Ipv4Addr>().unwrap());
        // 7 is odd: the walk visits every host of the /24 in a scattered order.
        v4.extend((0..256u32).map(|i| IpAddr::from((b + (i * 7) % 256).to_be_bytes())));
    }
    let v6 = [
        "2001:db8:a::1",
        "2001:db8:a:ff::2",
        "2001:db8:b::9",
        "2001:db8:d::1",
    ]
    .map(ip)
    .to_vec();
    for round in 0..2 {
        for &a in v4.iter().chain(&v6) {
            assert_eq!(
                fields(&cache.lookup(&geo, a)),
                fields(&geo.lookup(a)),
                "{a} (round {round})"
            );
        }
    }
    let cached: Vec<_> = ["127.0.10.0", "198.51.100.0", "192.0.2.0"]
        .iter()
        .map(|n| cache.holds(ip(n)))
        .collect();
    assert_eq!(cached, [true, false, false]);
}
