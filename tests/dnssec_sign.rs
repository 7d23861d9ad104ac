//! Zones signed by gslbd when the snapshot is built (src/dnssec), judged by independent
//! implementations: the zone is transferred out of the running server (AXFR over loopback, `dig`)
//! and verified whole by BIND's `dnssec-verify` and ldns's `ldns-verify-zone`, for algorithms 13
//! and 15, with a CSK and with a KSK + ZSK pair. Keys made by BIND's `dnssec-keygen` load into
//! gslbd; keys made by `gslbd dnssec keygen` are used by `dnssec-signzone` and
//! `dnssec-dsfromkey`, whose DS equals `gslbd dnssec ds`. Ed25519 signatures of two separate
//! builds are identical (fixed validity steps). Bad keys are `gslbd check` errors naming file
//! and reason, and a reload with one keeps the old snapshot serving.
//!
//! Addresses: 127.0.28.0/24, ephemeral ports.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use gslbd::config::Source;

const BIN: &str = env!("CARGO_BIN_EXE_gslbd");
const IP: &str = "127.0.28.1";

/// The test zone: wildcard, empty non-terminal, delegations with DS and glue and without DS,
/// CNAME, MX, TXT, SRV, several records per RRset, owners and RDATA names in mixed case.
const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n\
@ SOA ns1 hostmaster 1 3600 900 604800 60\n\
@ NS ns1\n@ NS NS2.Example.COM.\n@ MX 10 Mail\n@ MX 20 mail2.other.net.\n\
@ TXT \"v=spf1 -all\"\n\
ns1 A 127.0.28.10\nNS2 A 127.0.28.11\nns2 AAAA ::1\n\
Mail A 127.0.28.12\nWWW A 127.0.28.13\nwww A 127.0.28.14\nwww A 127.0.28.15\nwww 600 AAAA ::2\n\
alias CNAME WWW.example.com.\n\
*.wild A 127.0.28.16\n*.wild TXT \"wild\"\n\
a.b.ent A 127.0.28.17\n\
txt TXT \"hello\" \"world\"\ntxt TXT \"second\"\n\
_sip._tcp SRV 0 5 5060 Www.Example.Com.\n\
secure NS ns.secure\nsecure DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n\
ns.secure A 127.0.28.18\n\
insecure NS ns.other.net.\n\
Mixed.Case.Name A 127.0.28.19\n";

/// Runs a program; panics with its output when it fails.
fn run(mut cmd: std::process::Command) -> Output {
    let out = cmd.output().expect("program runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Makes a key with BIND's dnssec-keygen; returns the stem path.
fn bind_keygen(dir: &Path, alg: &str, ksk: bool, zone: &str) -> PathBuf {
    let mut cmd = common::tool("dnssec-keygen");
    cmd.args(["-q", "-K"]).arg(dir).args(["-a", alg]);
    if ksk {
        cmd.args(["-f", "KSK"]);
    }
    cmd.arg(zone);
    let stem = stdout(&run(cmd)).trim().to_string();
    dir.join(stem)
}

/// Makes a key with `gslbd dnssec keygen`; returns the stem path.
fn gslbd_keygen(dir: &Path, alg: u8, role: &str, zone: &str) -> PathBuf {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["dnssec", "keygen", "--zone", zone, "--algorithm"])
        .arg(alg.to_string())
        .arg(format!("--{role}"))
        .arg("--out")
        .arg(dir);
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("wrote "))
        .expect("keygen says what it wrote");
    let key = line
        .trim_start_matches("wrote ")
        .split(" and ")
        .next()
        .unwrap();
    PathBuf::from(key.trim_end_matches(".key"))
}

/// Writes the zone and a config signing it with `keys`; returns the config path.
fn write_config(dir: &Path, keys: &[PathBuf], zone: &str) -> PathBuf {
    std::fs::write(dir.join("example.com.zone"), zone).unwrap();
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("{:?}", k.display().to_string()))
        .collect();
    let text = format!(
        r#"
[[zone]]
name = "example.com."
file = "example.com.zone"
transfer = ["127.0.0.0/8"]
dnssec = {{ keys = [{}], validity_days = 14, refresh_days = 7 }}

[[listener]]
name = "all"
addresses = ["{IP}:0"]
zones = ["*"]
"#,
        keys.join(", ")
    );
    let path = dir.join("gslbd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The whole zone by AXFR from `server`, as dig prints it (one SOA).
fn axfr(server: SocketAddr) -> String {
    let mut cmd = common::tool("dig");
    cmd.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args([
            "example.com",
            "AXFR",
            "+onesoa",
            "+nocmd",
            "+nostats",
            "+nocomments",
            "+time=2",
            "+tries=1",
        ]);
    let text = stdout(&run(cmd));
    assert!(
        text.contains("RRSIG") && !text.contains("Transfer failed"),
        "AXFR: {text}"
    );
    text
}

/// `dnssec-verify` and `ldns-verify-zone` on a zone file; panics with their output on failure.
/// (dnssec-verify warns "addnode: NSEC node already exists" on a zone in AXFR order, not on the
/// same records in canonical order: a warning about the file's order, not an error.) `csk`: the zone has no ZSK (dnssec-verify's `-z`).
fn verify(file: &Path, what: &str, csk: bool) {
    let mut bind = common::tool("dnssec-verify");
    if csk {
        bind.arg("-z");
    }
    bind.args(["-o", "example.com"]).arg(file);
    let out = bind.output().expect("dnssec-verify runs");
    assert!(
        out.status.success(),
        "{what}: dnssec-verify failed:\n{}\n{}\nzone:\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(file).unwrap()
    );
    let mut ldns = common::tool("ldns-verify-zone");
    ldns.arg(file);
    let out = ldns.output().expect("ldns-verify-zone runs");
    assert!(
        out.status.success(),
        "{what}: ldns-verify-zone failed:\n{}\n{}\nzone:\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(file).unwrap()
    );
}

/// Starts gslbd on `config`, transfers the zone out and verifies it.
async fn serve_and_verify(dir: &Path, config: &Path, what: &str, csk: bool) -> String {
    let server = common::start(Source::file(config)).await;
    let addr = server.addr("all", "tcp");
    let text = tokio::task::spawn_blocking(move || axfr(addr))
        .await
        .unwrap();
    let file = dir.join("axfr.zone");
    std::fs::write(&file, &text).unwrap();
    verify(&file, what, csk);
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_zones_verify_with_bind_and_ldns() {
    // Each algorithm with a CSK and with a KSK + ZSK; BIND's and gslbd's keys mixed, so both
    // kinds load.
    let cases: &[(&str, u8, &str, bool)] = &[
        ("13 CSK (gslbd keygen)", 13, "gslbd", false),
        ("13 KSK+ZSK (dnssec-keygen)", 13, "bind", true),
        ("15 CSK (dnssec-keygen)", 15, "bind", false),
        ("15 KSK+ZSK (gslbd keygen)", 15, "gslbd", true),
    ];
    for &(what, alg, maker, split) in cases {
        let dir = tempfile::tempdir().unwrap();
        let bind_alg = if alg == 13 {
            "ECDSAP256SHA256"
        } else {
            "ED25519"
        };
        let keys: Vec<PathBuf> = match (maker, split) {
            ("bind", false) => vec![bind_keygen(dir.path(), bind_alg, true, "example.com")],
            ("bind", true) => vec![
                bind_keygen(dir.path(), bind_alg, true, "example.com"),
                bind_keygen(dir.path(), bind_alg, false, "example.com"),
            ],
            (_, false) => vec![gslbd_keygen(dir.path(), alg, "csk", "example.com")],
            (_, true) => vec![
                gslbd_keygen(dir.path(), alg, "ksk", "example.com"),
                gslbd_keygen(dir.path(), alg, "zsk", "example.com"),
            ],
        };
        let config = write_config(dir.path(), &keys, ZONE);
        let text = serve_and_verify(dir.path(), &config, what, !split).await;
        // The pieces the chain must have (and must not have).
        let has = |owner: &str, rtype: &str| {
            text.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[0].eq_ignore_ascii_case(owner) && f[3] == rtype
            })
        };
        assert!(has("example.com.", "DNSKEY"), "{what}");
        assert!(
            has("example.com.", "CDS") && has("example.com.", "CDNSKEY"),
            "{what}"
        );
        assert!(
            has("secure.example.com.", "NSEC"),
            "{what}: delegation with DS"
        );
        assert!(
            has("insecure.example.com.", "NSEC"),
            "{what}: delegation without DS"
        );
        assert!(
            !has("ns.secure.example.com.", "NSEC"),
            "{what}: glue has no NSEC"
        );
        assert!(
            !has("ent.example.com.", "NSEC"),
            "{what}: ENT has no NSEC (RFC 4035 2.3)"
        );
        let sig_over = |owner: &str, covered: &str| {
            text.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 4
                    && f[0].eq_ignore_ascii_case(owner)
                    && f[3] == "RRSIG"
                    && f[4] == covered
            })
        };
        assert!(
            !sig_over("secure.example.com.", "NS"),
            "{what}: NS at a cut is unsigned"
        );
        assert!(sig_over("secure.example.com.", "DS"), "{what}");
        assert!(
            !sig_over("ns.secure.example.com.", "A"),
            "{what}: glue is unsigned"
        );
    }
}

/// The verifiers must reject what is wrong: a record changed after signing fails both.
#[tokio::test(flavor = "multi_thread")]
async fn verifiers_catch_a_changed_record() {
    let dir = tempfile::tempdir().unwrap();
    let keys = vec![gslbd_keygen(dir.path(), 15, "csk", "example.com")];
    let config = write_config(dir.path(), &keys, ZONE);
    let server = common::start(Source::file(&config)).await;
    let addr = server.addr("all", "tcp");
    let text = tokio::task::spawn_blocking(move || axfr(addr))
        .await
        .unwrap();
    let tampered = text.replace("127.0.28.19", "127.0.28.99");
    assert_ne!(tampered, text);
    let file = dir.path().join("tampered.zone");
    std::fs::write(&file, tampered).unwrap();
    let mut bind = common::tool("dnssec-verify");
    bind.args(["-o", "example.com"]).arg(&file);
    assert!(!bind.output().unwrap().status.success());
    let mut ldns = common::tool("ldns-verify-zone");
    ldns.arg(&file);
    assert!(!ldns.output().unwrap().status.success());
}

#[test]
fn ds_equals_dnssec_dsfromkey_and_bind_uses_gslbd_keys() {
    let dir = tempfile::tempdir().unwrap();
    for (bind_alg, alg) in [("ECDSAP256SHA256", 13u8), ("ED25519", 15)] {
        // BIND's key, gslbd's DS.
        let bind_key = bind_keygen(dir.path(), bind_alg, true, "example.com");
        let ours_of = |k: &Path| {
            let mut cmd = std::process::Command::new(BIN);
            cmd.args(["dnssec", "ds", "--key"]).arg(k);
            stdout(&run(cmd))
        };
        let theirs_of = |k: &Path| {
            let mut cmd = common::tool("dnssec-dsfromkey");
            cmd.arg("-2").arg(format!("{}.key", k.display()));
            stdout(&run(cmd))
        };
        let norm = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(norm(ours_of(&bind_key)), norm(theirs_of(&bind_key)));
        // gslbd's key, BIND's DS.
        let our_key = gslbd_keygen(dir.path(), alg, "ksk", "example.com");
        assert_eq!(norm(ours_of(&our_key)), norm(theirs_of(&our_key)));
        // dnssec-signzone signs with gslbd's KSK and a ZSK of gslbd's, and the result verifies.
        let zsk = gslbd_keygen(dir.path(), alg, "zsk", "example.com");
        let zone = dir.path().join(format!("signzone-{alg}.zone"));
        let dnskeys: String = [&our_key, &zsk]
            .iter()
            .map(|k| std::fs::read_to_string(format!("{}.key", k.display())).unwrap())
            .collect();
        std::fs::write(&zone, format!("{ZONE}{dnskeys}")).unwrap();
        let mut cmd = common::tool("dnssec-signzone");
        cmd.current_dir(dir.path())
            .args(["-q", "-o", "example.com", "-k"])
            .arg(format!("{}.key", our_key.display()))
            .arg(&zone)
            .arg(format!("{}.key", zsk.display()));
        run(cmd);
        let mut check = common::tool("dnssec-verify");
        check
            .args(["-o", "example.com"])
            .arg(format!("{}.signed", zone.display()));
        run(check);
    }
    // `ds --config --zone`: the configured KSK's DS, not the ZSK's.
    let ksk = gslbd_keygen(dir.path(), 13, "ksk", "example.com");
    let zsk = gslbd_keygen(dir.path(), 13, "zsk", "example.com");
    let config = write_config(dir.path(), &[ksk.clone(), zsk], ZONE);
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["dnssec", "ds", "--config"])
        .arg(&config)
        .args(["--zone", "example.com"]);
    let from_config = stdout(&run(cmd));
    let mut cmd = common::tool("dnssec-dsfromkey");
    cmd.arg("-2").arg(format!("{}.key", ksk.display()));
    let want = stdout(&run(cmd));
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(norm(&from_config), norm(&want));
}

/// The RRSIG records of a signed build of `config`, sorted (presentation form).
async fn rrsigs_of(config: &Path) -> Vec<String> {
    let server = common::start(Source::file(config)).await;
    let addr = server.addr("all", "tcp");
    let text = tokio::task::spawn_blocking(move || axfr(addr))
        .await
        .unwrap();
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("RRSIG"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn ed25519_signatures_are_identical_across_servers() {
    let dir = tempfile::tempdir().unwrap();
    let keys = vec![gslbd_keygen(dir.path(), 15, "csk", "example.com")];
    let config = write_config(dir.path(), &keys, ZONE);
    // Two servers, each building its own snapshot from the same files.
    let a = rrsigs_of(&config).await;
    let b = rrsigs_of(&config).await;
    assert!(a.len() > 20, "{a:#?}");
    assert_eq!(a, b);
    // ECDSA: the same validity fields (inception, expiration, key tag), other signature bytes.
    let dir = tempfile::tempdir().unwrap();
    let keys = vec![gslbd_keygen(dir.path(), 13, "csk", "example.com")];
    let config = write_config(dir.path(), &keys, ZONE);
    let a = rrsigs_of(&config).await;
    let b = rrsigs_of(&config).await;
    let fields = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|l| l.split(' ').take(12).collect::<Vec<_>>().join(" "))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert_eq!(fields(&a), fields(&b));
    assert_ne!(a, b, "ECDSA signatures are randomized");
}

/// `gslbd check` on `config`: (success, stderr + stdout).
fn check(config: &Path) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_are_config_errors_and_reload_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let good = gslbd_keygen(dir.path(), 13, "csk", "example.com");
    let config = write_config(dir.path(), std::slice::from_ref(&good), ZONE);
    let (ok, out) = check(&config);
    assert!(ok, "{out}");

    // A missing file, a key of another zone, an algorithm gslbd does not sign with.
    let missing = dir.path().join("Kexample.com.+013+00001");
    let other = gslbd_keygen(dir.path(), 13, "csk", "example.org");
    let rsa = bind_keygen(dir.path(), "RSASHA256", true, "example.com");
    for (key, want) in [
        (&missing, "No such file"),
        (&other, "the key is for zone example.org."),
        (&rsa, "algorithm 8 is not supported"),
    ] {
        let bad = write_config(dir.path(), std::slice::from_ref(key), ZONE);
        let (ok, out) = check(&bad);
        assert!(!ok, "{out}");
        assert!(out.contains(want), "want \"{want}\" in: {out}");
        let name = key.file_name().unwrap().to_string_lossy().into_owned();
        assert!(out.contains(&name), "the file is named: {out}");
    }

    // A server serving the signed zone; its config then gets a bad key: the reload fails and
    // the signed zone keeps serving.
    let config = write_config(dir.path(), std::slice::from_ref(&good), ZONE);
    let server = common::start(Source::file(&config)).await;
    let addr = server.addr("all", "tcp");
    let before = tokio::task::spawn_blocking(move || axfr(addr))
        .await
        .unwrap();
    write_config(dir.path(), std::slice::from_ref(&rsa), ZONE);
    let handle = server.handle.clone();
    let reloaded = tokio::task::spawn_blocking(move || handle.reload())
        .await
        .unwrap();
    let err = reloaded.expect_err("a bad key fails the reload");
    assert!(
        err.to_string().contains("algorithm 8 is not supported"),
        "{err}"
    );
    let after = tokio::task::spawn_blocking(move || axfr(addr))
        .await
        .unwrap();
    assert_eq!(before, after);
}

/// A GSLB name (no RRsets, a rule attached after the zones load) gets an NSEC listing what its
/// rule answers, and the chain stays whole.
#[test]
fn gslb_names_get_nsec_with_the_rules_types() {
    let dir = tempfile::tempdir().unwrap();
    let key = gslbd_keygen(dir.path(), 15, "csk", "example.com");
    let config = write_config(dir.path(), &[key], ZONE);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::os::unix::fs::symlink(root.join("geo"), dir.path().join("geo")).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        r#"
[geo]
asn_db = "geo/lab.csv"
city_db = "geo/lab.csv"
overrides = ["geo/lab-overrides.csv"]
asn_carriers = ["geo/asn-carriers.csv"]

[geo.carrier.mobile]
name = "China Mobile"
org = ["china mobile"]

[geo.carrier.telecom]
name = "China Telecom"
org = ["chinanet"]

[geo.carrier.unicom]
name = "China Unicom"
org = ["china unicom"]

[gslb.region.bj]
location = [39.9042, 116.4074]

[[gslb.carrier]]
name = "line.example.com."
ttl = 20
default = "pool.example.com."
lines = { mobile = "www.example.com." }

[[gslb.location]]
name = "pool.example.com."
ttl = 30
default = "bj"
pools.bj = ["127.0.28.20", "127.0.28.21"]

[[gslb.location]]
name = "pool6.example.com."
default = "bj"
pools.bj = ["127.0.28.22", "::22"]
"#,
    );
    std::fs::write(&config, text).unwrap();
    let snap =
        gslbd::snapshot::Snapshot::build(&Source::file(&config)).unwrap_or_else(|e| panic!("{e}"));
    let zone = &snap.zones[0];
    let bitmap = |name: &str| -> Vec<u16> {
        let key = gslbd::zone::name::key_of(&hickory_proto::rr::Name::from_ascii(name).unwrap());
        let node = zone.node(&key).expect(name);
        let nsec = node
            .rrset(hickory_proto::rr::RecordType::NSEC)
            .unwrap_or_else(|| panic!("{name} has no NSEC"));
        let mut wire = Vec::new();
        nsec.rdatas[0].uncompressed(&mut wire);
        // Skip the next name, then read the RFC 4034 4.1.2 windows.
        let mut at = 0;
        while wire[at] != 0 {
            at += 1 + wire[at] as usize;
        }
        at += 1;
        let mut types = Vec::new();
        while at < wire.len() {
            let (window, len) = (wire[at] as u16, wire[at + 1] as usize);
            for (i, b) in wire[at + 2..at + 2 + len].iter().enumerate() {
                for bit in 0..8 {
                    if b & (0x80 >> bit) != 0 {
                        types.push(window * 256 + (i * 8 + bit) as u16);
                    }
                }
            }
            at += 2 + len;
        }
        types
    };
    // CNAME 5, A 1, RRSIG 46, NSEC 47.
    assert_eq!(bitmap("line.example.com."), vec![5, 46, 47]);
    assert_eq!(bitmap("pool.example.com."), vec![1, 46, 47]);
    assert_eq!(bitmap("pool6.example.com."), vec![1, 28, 46, 47]);
}

/// The serial of a zone text (the SOA line of an AXFR).
fn serial_of(axfr: &str) -> u32 {
    axfr.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 6 && f[3] == "SOA").then(|| f[6].parse().unwrap())
        })
        .expect("an SOA")
}

/// A reload of unchanged data keeps the zone byte for byte (the serving version's ECDSA
/// signatures are reused, so the serial policy sees no change); a changed record without a new
/// serial gets the next serial (signed zones follow `serial = "increment"`), and the re-signed
/// zone, SOA signature included, still verifies.
#[tokio::test(flavor = "multi_thread")]
async fn reloads_reuse_signatures_and_raise_the_serial_on_change() {
    let dir = tempfile::tempdir().unwrap();
    let keys = vec![gslbd_keygen(dir.path(), 13, "csk", "example.com")];
    let config = write_config(dir.path(), &keys, ZONE);
    let server = common::start(Source::file(&config)).await;
    let addr = server.addr("all", "tcp");
    let first = tokio::task::spawn_blocking(move || axfr(addr))
        .await
        .unwrap();
    let reload = |server: &common::TestServer| {
        let handle = server.handle.clone();
        tokio::task::spawn_blocking(move || handle.reload().map(|_| ()))
    };
    reload(&server)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let second = tokio::task::spawn_blocking(move || axfr(addr))
        .await
        .unwrap();
    assert_eq!(first, second, "an unchanged reload changes nothing");
    assert_eq!(serial_of(&second), 1);

    std::fs::write(
        dir.path().join("example.com.zone"),
        ZONE.replace("127.0.28.19", "127.0.28.29"),
    )
    .unwrap();
    reload(&server)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let third = tokio::task::spawn_blocking(move || axfr(addr))
        .await
        .unwrap();
    assert_eq!(serial_of(&third), 2, "{third}");
    assert!(third.contains("127.0.28.29"));
    let file = dir.path().join("third.zone");
    std::fs::write(&file, &third).unwrap();
    verify(&file, "after a change", true);
}

/// A zone gslbd signs at load is served with DO as a pre-signed one is (src/zone/denial.rs
/// indexes the records the signer added): BIND's `delv`, trusting the zone's CSK, validates a
/// positive answer, a CNAME, a wildcard expansion, an NXDOMAIN, a NODATA and an empty
/// non-terminal, each asked of the running server over loopback.
#[tokio::test(flavor = "multi_thread")]
async fn a_zone_signed_at_load_answers_do_queries_that_validate() {
    let dir = tempfile::tempdir().unwrap();
    let key = gslbd_keygen(dir.path(), 13, "csk", "example.com");
    let config = write_config(dir.path(), std::slice::from_ref(&key), ZONE);
    // The trust anchor: the CSK's DNSKEY from its .key file.
    // (The stem "Kexample.com.+013+TAG" has dots of its own: `.key` is appended, not swapped in.)
    let text = std::fs::read_to_string(format!("{}.key", key.display())).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("DNSKEY"))
        .expect("a DNSKEY line");
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = fields.iter().position(|f| *f == "DNSKEY").unwrap();
    let anchor = dir.path().join("anchor");
    std::fs::write(
        &anchor,
        format!(
            "trust-anchors {{ example.com. static-key {} {} {} \"{}\"; }};\n",
            fields[at + 1],
            fields[at + 2],
            fields[at + 3],
            fields[at + 4..].concat()
        ),
    )
    .unwrap();
    let server = common::start(Source::file(&config)).await;
    let addr = server.addr("all", "udp");
    let mut failures = Vec::new();
    for (name, t, want) in [
        ("www.example.com", "A", "; fully validated"),
        ("alias.example.com", "A", "; fully validated"),
        ("host.wild.example.com", "A", "; fully validated"),
        (
            "nothere.example.com",
            "A",
            "; negative response, fully validated",
        ),
        (
            "www.example.com",
            "TXT",
            "; negative response, fully validated",
        ),
        (
            "b.ent.example.com",
            "A",
            "; negative response, fully validated",
        ),
    ] {
        let got =
            tokio::task::block_in_place(|| common::delv(addr, "example.com.", &anchor, name, t));
        if got != want {
            failures.push(format!("{name} {t}: {got}"));
        }
    }
    assert!(failures.is_empty(), "delv:\n{}", failures.join("\n"));
}
