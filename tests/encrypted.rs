//! DNS over TLS (RFC 7858) and DNS over QUIC (RFC 9250) against the lab: kdig (+tls, +tls-ca,
//! +quic) gets what dig gets over UDP; for the 1,000 (name, client via ECS) pairs of
//! tests/httpdns_parity.rs the DoT and DoQ answers are the TCP answer (same header, question,
//! records and OPT bytes; only the order rotation gives and the CDN's weighted draw may differ);
//! padding (RFC 8467) only when asked; certificates reload on SIGHUP-equivalent `reload`.

mod common;

use common::lab_clients as clients;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::*;
use gslbd::config::Source;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMES: &[&str] = &[
    "object.yourcompany.com.",
    "static.yourcompany.com.",
    "www.yourcompany.com.",
    "api.yourcompany.com.",
    "object.vip.yourcompany.com.",
    "object.dx.yourcompany.com.",
    "yourcompany.cdn.com.",
    "mail2.yourcompany.com.",
    "nothere.yourcompany.com.",
    "x.apps.yourcompany.com.",
];

const ENCRYPTED: &str = "dot = \"127.0.0.1:0\"\ndoq = \"127.0.0.1:0\"\ntls = { cert = \"cert.pem\", key = \"key.pem\" }";

async fn start_encrypted_lab(dir: &Path) -> TestServer {
    start(Source::file(lab_on_disk(dir, ENCRYPTED, ""))).await
}

/// A rustls client trusting the test's certificate, offering `alpn`.
fn client_config(cert: &Path, alpn: &[u8]) -> rustls::ClientConfig {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// One DoT connection (RFC 7858) asking each query in turn.
struct Dot(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl Dot {
    async fn connect(addr: SocketAddr, cert: &Path) -> Dot {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(
            cert,
            gslbd::encrypted::ALPN_DOT,
        )));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"dot"[..]),
            "ALPN dot"
        );
        Dot(tls)
    }
    async fn ask(&mut self, q: &[u8]) -> Vec<u8> {
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(q);
        self.0.write_all(&framed).await.unwrap();
        let len = self.0.read_u16().await.unwrap() as usize;
        let mut buf = vec![0; len];
        self.0.read_exact(&mut buf).await.unwrap();
        buf
    }
}

/// One DoQ connection (RFC 9250): a bidirectional stream per query.
struct Doq {
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl Doq {
    async fn connect(addr: SocketAddr, cert: &Path) -> Doq {
        let mut config = client_config(cert, gslbd::encrypted::ALPN_DOQ);
        config.enable_early_data = false;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let conn = endpoint
            .connect(addr, "127.0.0.1")
            .unwrap()
            .await
            .expect("QUIC handshake");
        Doq {
            conn,
            _endpoint: endpoint,
        }
    }
    async fn ask(&self, q: &[u8]) -> Option<Vec<u8>> {
        let (mut send, mut recv) = self.conn.open_bi().await.unwrap();
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(q);
        send.write_all(&framed).await.unwrap();
        send.finish().unwrap();
        let all = tokio::time::timeout(std::time::Duration::from_secs(5), recv.read_to_end(65537))
            .await
            .ok()?
            .ok()?;
        let len = u16::from_be_bytes([all[0], all[1]]) as usize;
        assert_eq!(all.len(), len + 2, "one length-prefixed message, then FIN");
        Some(all[2..].to_vec())
    }
}

/// The CDN's weighted draw picks one address of an edge pair: compare the edge, not the draw.
fn norm_rdata(rtype: u16, rdata: &[u8]) -> Vec<u8> {
    if rtype == 1
        && rdata.len() == 4
        && rdata[..3] == [198, 51, 100]
        && (10..=51).contains(&rdata[3])
    {
        return vec![198, 51, 100, rdata[3] / 10];
    }
    rdata.to_vec()
}

/// A message cut at its record boundaries: (header, question bytes, per section the sorted raw
/// records with the CDN draw normalized). Two answers with the same shape are the same bytes but
/// for the order of records (rotation) and the CDN's draw.
fn shape(msg: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<Vec<Vec<u8>>>) {
    fn skip_name(m: &[u8], mut at: usize) -> usize {
        loop {
            let l = m[at];
            if l & 0xc0 == 0xc0 {
                return at + 2;
            }
            if l == 0 {
                return at + 1;
            }
            at += 1 + l as usize;
        }
    }
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]) as usize;
    let qend = skip_name(msg, 12) + 4;
    let mut at = qend;
    let mut sections = Vec::new();
    for n in [count(6), count(8), count(10)] {
        let mut recs = Vec::new();
        for _ in 0..n {
            let name_end = skip_name(msg, at);
            let rtype = u16::from_be_bytes([msg[name_end], msg[name_end + 1]]);
            let rdlen = u16::from_be_bytes([msg[name_end + 8], msg[name_end + 9]]) as usize;
            let end = name_end + 10 + rdlen;
            let mut rec = msg[at..name_end + 10].to_vec();
            rec.extend(norm_rdata(rtype, &msg[name_end + 10..end]));
            recs.push(rec);
            at = end;
        }
        recs.sort();
        sections.push(recs);
    }
    assert_eq!(at, msg.len(), "nothing after the records");
    (msg[..12].to_vec(), msg[12..qend].to_vec(), sections)
}

#[tokio::test]
async fn dot_and_doq_answer_what_tcp_answers_on_1000_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_encrypted_lab(dir.path()).await;
    let cert = dir.path().join("lab/cert.pem");
    let tcp = server.addr("all", "tcp");
    let mut dot = Dot::connect(server.addr("all", "dot"), &cert).await;
    let doq = Doq::connect(server.addr("all", "doq"), &cert).await;
    let mut tcp_conn = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut compared = BTreeMap::<&str, usize>::new();
    let mut identical = 0;
    for name in NAMES {
        for client in clients(100) {
            let full = if client.is_ipv4() { 32 } else { 128 };
            for qtype in [1u16, 28] {
                // RFC 9250 4.2.1: Message ID 0 on DoQ; the same bytes go everywhere.
                let mut q = Q::new(name, qtype).ecs(client, full);
                q.id = 0;
                let q = q.bytes();
                tcp_send(&mut tcp_conn, &q).await;
                let want = tcp_recv(&mut tcp_conn).await.expect("TCP answer");
                let what = format!("{name} {qtype} for {client}");
                let over_tls = dot.ask(&q).await;
                assert_eq!(shape(&over_tls), shape(&want), "{what}: DoT");
                assert_eq!(over_tls.len(), want.len(), "{what}: DoT length");
                let over_quic = doq.ask(&q).await.unwrap_or_else(|| panic!("{what}: DoQ"));
                assert_eq!(shape(&over_quic), shape(&want), "{what}: DoQ");
                identical += usize::from(over_tls == want && over_quic == want);
                *compared.entry("pairs").or_default() += usize::from(qtype == 1);
            }
        }
    }
    assert_eq!(compared["pairs"], 1000);
    // Answers without rotation or a weighted draw (over 40 % of this set: NXDOMAIN, NODATA,
    // single-address and CNAME-only ones) are equal byte for byte, not only in shape.
    assert!(identical >= 800, "only {identical} of 2000 byte-identical");

    // The transports are counted apart.
    let metrics = gslbd::metrics::render();
    for via in ["dot", "doq"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.contains(&format!("transport=\"{via}\"")) && !l.ends_with(" 0")),
            "{via} counted:\n{metrics}"
        );
    }
}

/// RFC 7830 / 8467: a query with a Padding option gets a response padded to 468-octet blocks,
/// which is the TCP answer plus that option; without the option nothing is added.
#[tokio::test]
async fn padding_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_encrypted_lab(dir.path()).await;
    let cert = dir.path().join("lab/cert.pem");
    let mut dot = Dot::connect(server.addr("all", "dot"), &cert).await;
    let doq = Doq::connect(server.addr("all", "doq"), &cert).await;
    let mut q = Q::new("mail2.yourcompany.com.", 1);
    q.id = 0;
    let plain = q.clone().bytes();
    if let Some(e) = &mut q.edns {
        e.3 = vec![0, 12, 0, 4, 0, 0, 0, 0];
    }
    let padded_q = q.bytes();
    let tcp = tcp_raw(server.addr("all", "tcp"), &plain).await.unwrap();
    assert_eq!(dot.ask(&plain).await, tcp);
    for padded in [dot.ask(&padded_q).await, doq.ask(&padded_q).await.unwrap()] {
        assert_eq!(padded.len() % 468, 0, "a multiple of 468 octets");
        let m = hickory_proto::op::Message::from_vec(&padded).unwrap();
        let opt = m.edns.as_ref().unwrap();
        assert!(
            opt.option(hickory_proto::rr::rdata::opt::EdnsCode::Padding)
                .is_some()
        );
        // The rest is the TCP answer: same records, same length before the option.
        let t = hickory_proto::op::Message::from_vec(&tcp).unwrap();
        assert_eq!(lines(&m.answers), lines(&t.answers));
        assert_eq!(padded[..tcp.len() - 2], tcp[..tcp.len() - 2]);
    }
}

/// kdig over TLS (opportunistic and with the CA checked) and over QUIC gets the answer dig gets
/// over UDP, for the same client subnet.
#[tokio::test]
async fn kdig_over_tls_and_quic_gets_what_dig_gets() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_encrypted_lab(dir.path()).await;
    let cert = dir.path().join("lab/cert.pem");
    let udp = server.addr("all", "udp");
    let dot = server.addr("all", "dot");
    let doq = server.addr("all", "doq");
    let run = |prog: &'static str, args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            let out = tool(prog)
                .args(&args)
                .args(["+noall", "+answer"])
                .output()
                .expect("runs");
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "{prog} {args:?}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut v: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            v.sort();
            v
        })
        .await
        .unwrap()
    };
    for (name, subnet) in [
        ("mail2.yourcompany.com", "127.0.11.0/24"),
        ("object.yourcompany.com", "127.0.11.0/24"),
        ("object.yourcompany.com", "2001:db8:c::/48"),
    ] {
        let base = |addr: SocketAddr| {
            vec![
                format!("@{}", addr.ip()),
                "-p".into(),
                addr.port().to_string(),
                name.to_string(),
                format!("+subnet={subnet}"),
                "+time=3".into(),
            ]
        };
        let mut dig = base(udp);
        dig.push("+tries=1".into());
        let want = run("dig", dig).await;
        assert!(!want.is_empty(), "{name}: dig got an answer");
        let mut tls = base(dot);
        tls.extend(["+tls".to_string(), "+retry=0".into()]);
        assert_eq!(run("kdig", tls).await, want, "{name}: kdig +tls");
        let mut tls_ca = base(dot);
        tls_ca.extend([
            format!("+tls-ca={}", cert.display()),
            "+tls-hostname=localhost".into(),
            "+retry=0".into(),
        ]);
        assert_eq!(run("kdig", tls_ca).await, want, "{name}: kdig +tls-ca");
        let mut quic = base(doq);
        quic.extend(["+quic".to_string(), "+retry=0".into()]);
        assert_eq!(run("kdig", quic).await, want, "{name}: kdig +quic");
    }
}

/// A DoQ query whose Message ID is not 0 is a protocol error (RFC 9250 4.2.1): no answer.
#[tokio::test]
async fn doq_refuses_a_nonzero_message_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_encrypted_lab(dir.path()).await;
    let doq = Doq::connect(server.addr("all", "doq"), &dir.path().join("lab/cert.pem")).await;
    let q = Q::new("mail2.yourcompany.com.", 1);
    assert_eq!(doq.ask(&q.bytes()).await, None);
    let mut zero = q.clone();
    zero.id = 0;
    assert!(doq.ask(&zero.bytes()).await.is_some());
}

/// Certificates come from the snapshot at each handshake: after the files change and the
/// snapshot is rebuilt (what SIGHUP does), new connections see the new certificate.
#[tokio::test]
async fn a_reload_renews_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_encrypted_lab(dir.path()).await;
    let lab = dir.path().join("lab");
    let old = std::fs::read(lab.join("cert.pem")).unwrap();
    let keep = dir.path().join("old.pem");
    std::fs::write(&keep, &old).unwrap();
    self_signed_cert(&lab);
    assert_ne!(std::fs::read(lab.join("cert.pem")).unwrap(), old);
    let dot = server.addr("all", "dot");
    // Before the reload the old certificate still serves.
    Dot::connect(dot, &keep).await;
    server.handle.reload().expect("reload");
    let mut fresh = Dot::connect(dot, &lab.join("cert.pem")).await;
    let mut q = Q::new("mail2.yourcompany.com.", 1);
    q.id = 7;
    assert_eq!(&fresh.ask(&q.bytes()).await[..2], &[0, 7]);
    // And the old one is no longer trusted for new connections.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(
        &keep,
        gslbd::encrypted::ALPN_DOT,
    )));
    let tcp = tokio::net::TcpStream::connect(dot).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(dot.ip().into());
    assert!(connector.connect(name, tcp).await.is_err());
}

/// Configuration errors name the listener: dot without any certificate.
#[test]
fn dot_without_a_certificate_is_a_check_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_example(dir.path(), "www A 192.0.2.80\n", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("zones = [\"*\"]", "zones = [\"*\"]\ndot = \"127.0.0.1:0\"");
    std::fs::write(&path, text).unwrap();
    let err = gslbd::snapshot::Snapshot::build(&Source::file(&path)).expect_err("refused");
    assert!(
        err.problems
            .iter()
            .any(|p| p.contains("\"all\"") && p.contains("certificate")),
        "{err}"
    );
}
