//! HTTPS: `[http.tls]` with a certificate made by openssl for the test; kdig +https (HTTP/2, RFC
//! 8484) and curl (HTTP/1.1) talk to it; a bad key is a `gslbd check` error naming the file.

mod common;

use std::path::Path;

use common::*;
use gslbd::config::Source;
use gslbd::snapshot::Snapshot;

fn setup(dir: &Path) {
    common::self_signed_cert(dir);
    write_example(
        dir,
        "www A 192.0.2.80\n",
        r#"
[http]
listen = ["127.0.0.1:0"]
tls = { cert = "cert.pem", key = "key.pem" }

[[http.account]]
id = "100000"
"#,
    );
}

#[tokio::test]
async fn doh_and_httpdns_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let server = start(Source::file(dir.path().join("gslbd.toml"))).await;
    let http = server.addr("http", "http");

    // kdig speaks DoH over HTTP/2 and TLS (it does not check the certificate without +tls-ca).
    let out = tokio::task::spawn_blocking(move || {
        tool("kdig")
            .arg(format!("@{}", http.ip()))
            .args([
                "-p",
                &http.port().to_string(),
                "+https",
                "+timeout=3",
                "+retry=0",
            ])
            .arg("www.example.com")
            .output()
            .expect("kdig runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("status: NOERROR"), "{text}");
    assert!(
        text.contains("www.example.com.") && text.contains("192.0.2.80"),
        "{text}"
    );
    assert!(
        text.contains("HTTP/2-POST"),
        "came over DoH (HTTP/2): {text}"
    );

    // curl over HTTPS/1.1 to the Alibaba-compatible endpoint, trusting the test's certificate.
    let cert = dir.path().join("cert.pem");
    let out = tokio::task::spawn_blocking(move || {
        tool("curl")
            .args(["-sS", "--http1.1", "--max-time", "5", "--cacert"])
            .arg(cert)
            .arg(format!(
                "https://127.0.0.1:{}/100000/d?host=www.example.com",
                http.port()
            ))
            .output()
            .expect("curl runs")
    })
    .await
    .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{body}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ips"], serde_json::json!(["192.0.2.80"]), "{v}");

    // Plain HTTP to the TLS port is not answered as HTTP.
    let plain = reqwest::Client::new()
        .get(format!("http://{http}/healthz"))
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[test]
fn a_key_that_is_not_pem_is_a_check_error() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    std::fs::write(dir.path().join("key.pem"), "not a key\n").unwrap();
    let err = Snapshot::build(&Source::file(dir.path().join("gslbd.toml")))
        .expect_err("a broken key is refused");
    assert!(
        err.problems[0].contains("key.pem") && err.problems[0].contains("private key"),
        "{err}"
    );
}

/// BIND's dig speaks RFC 8484 over plain HTTP (`+http-plain`, POST and GET): against the lab it
/// gets the answer UDP gives, ECS included.
#[tokio::test]
async fn dig_over_plain_http_gets_what_udp_gets() {
    let server = start_lab().await;
    let http = server.addr("http", "http");
    let udp = server.addr("all", "udp");
    let run = move |args: Vec<String>| {
        let out = tool("dig")
            .args(&args)
            .args(["+noall", "+answer", "+time=3", "+tries=1"])
            .output()
            .expect("dig runs");
        assert!(out.status.success(), "{args:?}");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines
    };
    for (name, subnet) in [
        ("mail2.yourcompany.com", None),
        ("object.yourcompany.com", Some("127.0.11.0/24")),
        ("object.yourcompany.com", Some("2001:db8:c::/48")),
    ] {
        let extra: Vec<String> = subnet.map(|s| format!("+subnet={s}")).into_iter().collect();
        let over = |transport: &str, port: u16, ip: std::net::IpAddr| {
            let mut a = vec![
                format!("@{ip}"),
                "-p".to_string(),
                port.to_string(),
                name.to_string(),
            ];
            if !transport.is_empty() {
                a.push(transport.to_string());
            }
            a.extend(extra.clone());
            a
        };
        let want = tokio::task::spawn_blocking({
            let a = over("", udp.port(), udp.ip());
            move || run(a)
        })
        .await
        .unwrap();
        assert!(!want.is_empty());
        for t in ["+http-plain", "+http-plain-get"] {
            let got = tokio::task::spawn_blocking({
                let a = over(t, http.port(), http.ip());
                move || run(a)
            })
            .await
            .unwrap();
            assert_eq!(got, want, "{name} {subnet:?} over {t}");
        }
    }
}
