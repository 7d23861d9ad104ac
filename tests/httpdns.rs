//! HTTPDNS over real HTTP on loopback: the Alibaba-compatible API (`/d`, `/resolve`, signed forms,
//! every error code), the Google-compatible JSON API, RFC 8484 DoH (byte-identical to UDP), which
//! address an answer is for (ip=, X-Forwarded-For / X-Real-IP from trusted and untrusted peers),
//! Cache-Control, `explain=1`, rate limits (per address, per account, hot-reloaded) and odd input.
//!
//! Not here: curl's `--doh-url` (curl refuses plain-http DoH servers: "Protocol http not supported
//! or disabled in libcurl" for the DoH request), so DoH is driven with reqwest.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use common::*;
use gslbd::config::Source;
use hickory_proto::op::{Message, ResponseCode};
use md5::{Digest, Md5};
use serde_json::Value;

const OBJECT: &str = "object.yourcompany.com";

/// A reply, read whole.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    fn cache(&self) -> String {
        self.header("cache-control")
    }
    /// Asserts an error reply: status and JSON code.
    #[track_caller]
    fn is_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

/// An HTTP client of the server's HTTP listener, optionally from a chosen loopback address.
struct Http {
    base: String,
    web: reqwest::Client,
}

impl Http {
    fn new(server: &TestServer) -> Http {
        Http::from(server, "127.0.0.1")
    }

    /// Requests leave from `local` (any 127.x works on Linux): the server sees it as the peer.
    fn from(server: &TestServer, local: &str) -> Http {
        Http {
            base: format!("http://{}", server.addr("http", "http")),
            web: reqwest::Client::builder()
                .local_address(local.parse::<IpAddr>().unwrap())
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("HTTP reply");
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.expect("HTTP body").to_vec(),
        }
    }

    /// GET `path` (path and query string, sent exactly as written).
    async fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[]).await
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.web.get(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    async fn post(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let mut req = self.web.post(format!("{}{path}", self.base)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req).await
    }
}

fn set<S: AsRef<str>>(v: impl IntoIterator<Item = S>) -> BTreeSet<String> {
    v.into_iter().map(|s| s.as_ref().to_string()).collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    set(v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string()))
}

/// The six SLB addresses of a line's region (zones/lab.toml).
fn pool(first: u8) -> BTreeSet<String> {
    (first..first + 6)
        .map(|n| format!("203.0.113.{n}"))
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The vendor's signature, computed here independently of the server: md5 hex of host-secret-t.
fn sign(host: &str, secret: &str, t: u64) -> String {
    Md5::digest(format!("{host}-{secret}-{t}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

// ------------------------------------------------------------------------------------------------
// Alibaba-compatible API

#[tokio::test]
async fn d_answers_by_the_peer_address_privately() {
    let server = start_lab().await;
    let http = Http::new(&server);
    let r = http.get(&format!("/100000/d?host={OBJECT}")).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    // 127.0.0.1 is known to nobody: the default line (bgp), the default region (bj).
    assert_eq!(strings(&v["ips"]), pool(11), "{v}");
    assert_eq!(v["ipsv6"], serde_json::json!([]));
    assert_eq!(v["host"], OBJECT);
    assert_eq!(v["client_ip"], "127.0.0.1");
    assert_eq!(v["ttl"], 20);
    assert_eq!(v["origin_ttl"], 20);
    assert_eq!(v["scope"], 21);
    assert_eq!(v["line"], "default");
    assert_eq!(v["region"], "bj");
    assert!(v.get("explain").is_none());
    // Tailored to the caller's own address: no shared cache may keep it.
    assert_eq!(r.cache(), "private, max-age=20");
    assert_eq!(r.header("content-type"), "application/json");
}

#[tokio::test]
async fn d_with_ip_decides_like_ecs_and_is_public() {
    let server = start_lab().await;
    let http = Http::new(&server);
    // (ip=, pool, line, region, scope): ip= is cut to /24 like an ECS subnet (tests/gslb.rs TABLE).
    for (client, first, line, region, scope) in [
        ("127.0.10.1", 41, "mobile", "bj", 24),
        ("127.0.11.1", 81, "telecom", "sh", 24),
        ("127.0.12.1", 121, "unicom", "gz", 24),
        ("198.51.100.70", 101, "unicom", "bj", 26),
    ] {
        let r = http
            .get(&format!("/100000/d?host={OBJECT}&ip={client}"))
            .await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(strings(&v["ips"]), pool(first), "{client}: {v}");
        assert_eq!(v["client_ip"], client);
        assert_eq!(v["line"], line, "{client}");
        assert_eq!(v["region"], region, "{client}");
        assert_eq!(v["scope"], scope, "{client}");
        // Named explicitly: the answer is the same for anyone asking this URL.
        assert_eq!(r.cache(), "public, max-age=20", "{client}");
    }
    // A name that does not depend on the client: public, scope 0, no labels, rotating order.
    let r = http.get("/100000/d?host=www.yourcompany.com").await;
    let v = r.json();
    assert_eq!(
        strings(&v["ips"]),
        set(["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"])
    );
    assert_eq!(v["scope"], 0);
    assert_eq!(v["ttl"], 300);
    assert!(v.get("line").is_none() && v.get("region").is_none(), "{v}");
    assert_eq!(r.cache(), "public, max-age=300");
}

#[tokio::test]
async fn d_ipv6_and_both_families() {
    let server = start_lab().await;
    let http = Http::new(&server);
    let v = http
        .get(&format!("/100000/d?host={OBJECT}&ip=127.0.10.1&query=6"))
        .await
        .json();
    assert_eq!(v["ips"], serde_json::json!([]));
    assert_eq!(
        strings(&v["ipsv6"]),
        set(["2001:db8:11::1", "2001:db8:11::2"])
    );
    assert_eq!(v["region"], "bj");

    for q in ["4,6", "6,4", "4%2C6"] {
        let v = http
            .get(&format!("/100000/d?host={OBJECT}&ip=127.0.10.1&query={q}"))
            .await
            .json();
        assert_eq!(strings(&v["ips"]), pool(41), "{q}");
        assert_eq!(
            strings(&v["ipsv6"]),
            set(["2001:db8:11::1", "2001:db8:11::2"])
        );
        assert_eq!(v["ttl"], 20);
        assert_eq!(v["line"], "mobile");
    }

    // A plain name; its AAAA TTL (300) and a family with no records (mail: NODATA, negative TTL).
    let v = http
        .get("/100000/d?host=www.yourcompany.com&query=4,6")
        .await
        .json();
    assert_eq!(strings(&v["ipsv6"]), set(["2001:db8::10", "2001:db8::11"]));
    assert_eq!(v["ttl"], 300);
    let v = http
        .get("/100000/d?host=mail.yourcompany.com&query=6")
        .await
        .json();
    assert_eq!(v["ipsv6"], serde_json::json!([]));
    assert_eq!(v["ttl"], 300, "the SOA's negative TTL");
    let v = http
        .get("/100000/d?host=mail2.yourcompany.com&query=4,6")
        .await
        .json();
    assert_eq!(strings(&v["ips"]), set(["192.0.2.26"]));
    assert_eq!(strings(&v["ipsv6"]), set(["2001:db8::26"]));
}

#[tokio::test]
async fn resolve_batches_up_to_five_hosts() {
    let server = start_lab().await;
    let http = Http::new(&server);
    let hosts = [
        OBJECT,
        "www.yourcompany.com",
        "mail.yourcompany.com",
        "nothere.yourcompany.com",
        "api.yourcompany.com",
    ];
    let list = hosts.join(",");
    let r = http
        .get(&format!("/100000/resolve?host={list}&ip=127.0.11.1"))
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let dns = v["dns"].as_array().unwrap();
    assert_eq!(dns.len(), 5, "{v}");
    for (e, h) in dns.iter().zip(hosts) {
        assert_eq!(e["host"], h);
        assert_eq!(e["type"], 1);
        assert_eq!(e["client_ip"], "127.0.11.1");
    }
    assert_eq!(strings(&dns[0]["ips"]), pool(81));
    assert_eq!(dns[0]["line"], "telecom");
    assert_eq!(dns[0]["region"], "sh");
    assert_eq!(dns[0]["scope"], 24);
    assert_eq!(strings(&dns[2]["ips"]), set(["192.0.2.25"]));
    assert_eq!(dns[3]["ips"], serde_json::json!([]));
    assert_eq!(dns[3]["ttl"], 300);
    assert_eq!(dns[4]["ips"].as_array().unwrap().len(), 4);
    // The smallest TTL of the batch; explicit client: public.
    assert_eq!(r.cache(), "public, max-age=20");

    // One entry per host per type, as the vendor answers.
    let v = http
        .get(&format!(
            "/100000/resolve?host={list}&ip=127.0.11.1&query=4,6"
        ))
        .await
        .json();
    let dns = v["dns"].as_array().unwrap();
    assert_eq!(dns.len(), 10, "{v}");
    let object6 = dns
        .iter()
        .find(|e| e["host"] == OBJECT && e["type"] == 28)
        .unwrap();
    assert_eq!(
        strings(&object6["ips"]),
        set(["2001:db8:22::1", "2001:db8:22::2"])
    );

    // From the peer's own address: private.
    let r = http
        .get("/100000/resolve?host=www.yourcompany.com,object.yourcompany.com")
        .await;
    assert_eq!(r.cache(), "private, max-age=20");
    let r = http
        .get("/100000/resolve?host=www.yourcompany.com,mail.yourcompany.com")
        .await;
    assert_eq!(r.cache(), "public, max-age=300");

    // Six hosts: more than max_batch.
    let six = format!("{list},mail2.yourcompany.com");
    http.get(&format!("/100000/resolve?host={six}"))
        .await
        .is_error(400, "InvalidHost");
    http.get("/100000/resolve?host=www.yourcompany.com,,mail.yourcompany.com")
        .await
        .is_error(400, "InvalidHost");
}

#[tokio::test]
async fn alibaba_error_codes() {
    let server = start_lab().await;
    let http = Http::new(&server);
    http.get("/100000/d").await.is_error(400, "MissingArgument");
    http.get("/100000/d?host=")
        .await
        .is_error(400, "MissingArgument");
    http.get("/100000/d?ip=127.0.0.1")
        .await
        .is_error(400, "MissingArgument");
    http.get("/100000/resolve")
        .await
        .is_error(400, "MissingArgument");
    http.get("/100000/d?host=a..b")
        .await
        .is_error(400, "InvalidHost");
    let long = "a".repeat(300);
    http.get(&format!("/100000/d?host={long}.com"))
        .await
        .is_error(400, "InvalidHost");
    let label64 = "b".repeat(64);
    http.get(&format!("/100000/d?host={label64}.com"))
        .await
        .is_error(400, "InvalidHost");
    http.get("/100000/d?host=%ff%fe.com")
        .await
        .is_error(400, "InvalidHost");
    for bad in [
        "nope",
        "1.2.3",
        "1.2.3.4/33",
        "1.2.3.4/",
        "%ff",
        "1.2.3.4%2F-1",
    ] {
        http.get(&format!("/100000/d?host={OBJECT}&ip={bad}"))
            .await
            .is_error(400, "InvalidIP");
    }
    http.get(&format!("/100000/d?host={OBJECT}&query=5"))
        .await
        .is_error(400, "InvalidArgument");
    http.get(&format!("/999999/d?host={OBJECT}"))
        .await
        .is_error(403, "InvalidAccount");
    http.get(&format!("/999999/sign_resolve?host={OBJECT}"))
        .await
        .is_error(403, "InvalidAccount");
    // The signed-only account refuses the unsigned endpoints.
    http.get(&format!("/139450/d?host={OBJECT}"))
        .await
        .is_error(403, "UnsignedInterfaceDisabled");
    http.get(&format!("/139450/resolve?host={OBJECT}"))
        .await
        .is_error(403, "UnsignedInterfaceDisabled");
    // Wrong method: the router's JSON 405.
    http.post(&format!("/100000/d?host={OBJECT}"), None, vec![])
        .await
        .is_error(405, "MethodNotAllowed");
    // Every error is JSON with no caching.
    let r = http.get("/100000/d").await;
    assert_eq!(r.cache(), "no-store");
    assert_eq!(r.header("content-type"), "application/json");
}

#[tokio::test]
async fn signatures() {
    let server = start_lab().await;
    let http = Http::new(&server);
    let (id, secret) = ("139450", "lab-secret-139450");
    let t = now() + 600;

    // Valid: both accounts, both endpoints.
    let r = http
        .get(&format!(
            "/{id}/sign_d?host={OBJECT}&t={t}&s={}&ip=127.0.10.1",
            sign(OBJECT, secret, t)
        ))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(strings(&r.json()["ips"]), pool(41));
    let s = sign(OBJECT, "lab-secret-100000", t);
    let r = http
        .get(&format!("/100000/sign_d?host={OBJECT}&t={t}&s={s}"))
        .await;
    assert_eq!(r.status, 200);
    // Hex in upper case is the same signature.
    let upper = sign(OBJECT, secret, t).to_uppercase();
    let r = http
        .get(&format!("/{id}/sign_d?host={OBJECT}&t={t}&s={upper}"))
        .await;
    assert_eq!(r.status, 200);
    // sign_resolve signs the host list exactly as given.
    let list = format!("{OBJECT},www.yourcompany.com");
    let r = http
        .get(&format!(
            "/{id}/sign_resolve?host={list}&t={t}&s={}",
            sign(&list, secret, t)
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["dns"].as_array().unwrap().len(), 2);
    let swapped = format!("www.yourcompany.com,{OBJECT}");
    http.get(&format!(
        "/{id}/sign_resolve?host={swapped}&t={t}&s={}",
        sign(&list, secret, t)
    ))
    .await
    .is_error(403, "InvalidSignature");

    // Expired: t in the past, correctly signed.
    let past = now() - 10;
    http.get(&format!(
        "/{id}/sign_d?host={OBJECT}&t={past}&s={}",
        sign(OBJECT, secret, past)
    ))
    .await
    .is_error(403, "SignatureExpired");
    // Tampered s.
    let mut bad = sign(OBJECT, secret, t).into_bytes();
    bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    http.get(&format!("/{id}/sign_d?host={OBJECT}&t={t}&s={bad}"))
        .await
        .is_error(403, "InvalidSignature");
    // Tampered host (signature of another name).
    http.get(&format!(
        "/{id}/sign_d?host=www.yourcompany.com&t={t}&s={}",
        sign(OBJECT, secret, t)
    ))
    .await
    .is_error(403, "InvalidSignature");
    // Tampered t.
    http.get(&format!(
        "/{id}/sign_d?host={OBJECT}&t={}&s={}",
        t + 1,
        sign(OBJECT, secret, t)
    ))
    .await
    .is_error(403, "InvalidSignature");
    // Another account's secret.
    http.get(&format!(
        "/{id}/sign_d?host={OBJECT}&t={t}&s={}",
        sign(OBJECT, "lab-secret-100000", t)
    ))
    .await
    .is_error(403, "InvalidSignature");
    // t further ahead than max_sign_duration_s (lab: the default, 86400 s).
    let far = now() + 2 * 86400;
    http.get(&format!(
        "/{id}/sign_d?host={OBJECT}&t={far}&s={}",
        sign(OBJECT, secret, far)
    ))
    .await
    .is_error(403, "InvalidDuration");
    // Missing pieces.
    http.get(&format!("/{id}/sign_d?host={OBJECT}&t={t}"))
        .await
        .is_error(400, "MissingArgument");
    http.get(&format!("/{id}/sign_d?host={OBJECT}&s={bad}"))
        .await
        .is_error(400, "MissingArgument");
    http.get(&format!("/{id}/sign_d?t={t}&s={bad}"))
        .await
        .is_error(400, "MissingArgument");
    http.get(&format!("/{id}/sign_d?host={OBJECT}&t=soon&s={bad}"))
        .await
        .is_error(400, "InvalidArgument");
    // Unknown account.
    http.get(&format!(
        "/123/sign_d?host={OBJECT}&t={t}&s={}",
        sign(OBJECT, secret, t)
    ))
    .await
    .is_error(403, "InvalidAccount");
}

#[tokio::test]
async fn signature_needs_a_secret() {
    // An account with no secret can use /d but can sign nothing.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gslbd.toml");
    std::fs::write(&config, limits_config("per_ip = 0, per_account = 0", "")).unwrap();
    let server = start(Source::file(&config)).await;
    let http = Http::new(&server);
    let r = http.get("/nosecret/d?host=www.example.test").await;
    assert_eq!(r.status, 200);
    let t = now() + 60;
    http.get(&format!(
        "/nosecret/sign_d?host=www.example.test&t={t}&s={}",
        sign("www.example.test", "", t)
    ))
    .await
    .is_error(403, "InvalidSignature");
}

// ------------------------------------------------------------------------------------------------
// Google-compatible JSON

#[tokio::test]
async fn google_json() {
    let server = start_lab().await;
    let http = Http::new(&server);

    let r = http
        .get(&format!(
            "/resolve?name={OBJECT}&type=A&edns_client_subnet=127.0.11.1/24"
        ))
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["Status"], 0);
    assert_eq!(v["TC"], false);
    assert_eq!(v["RD"], true);
    assert_eq!(v["RA"], false);
    assert_eq!(v["AD"], false);
    assert_eq!(v["CD"], false);
    assert_eq!(
        v["Question"],
        serde_json::json!([{ "name": "object.yourcompany.com.", "type": 1 }])
    );
    let answer = v["Answer"].as_array().unwrap();
    assert_eq!(answer[0]["type"], 5);
    assert_eq!(answer[0]["data"], "object.vip.yourcompany.com.");
    assert_eq!(answer[0]["TTL"], 600);
    assert_eq!(answer[1]["data"], "object.dx.yourcompany.com.");
    let a: BTreeSet<String> = answer
        .iter()
        .filter(|r| r["type"] == 1)
        .map(|r| r["data"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(a, pool(81));
    assert!(v.get("Authority").is_none(), "empty sections are left out");
    assert_eq!(v["edns_client_subnet"], "127.0.11.0/24");
    assert_eq!(v["scope"], 24);
    assert_eq!(v["line"], "telecom");
    assert_eq!(v["region"], "sh");
    assert_eq!(r.cache(), "public, max-age=20");

    // AAAA by mnemonic (any case) and by number.
    for t in ["AAAA", "aaaa", "28", "TYPE28"] {
        let v = http
            .get(&format!(
                "/resolve?name={OBJECT}&type={t}&edns_client_subnet=127.0.10.1"
            ))
            .await
            .json();
        assert_eq!(v["Question"][0]["type"], 28, "{t}");
        let aaaa: BTreeSet<String> = v["Answer"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == 28)
            .map(|r| r["data"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(aaaa, set(["2001:db8:11::1", "2001:db8:11::2"]), "{t}");
    }

    // Not located (prefix 0): the default line and region, echoed as given.
    let v = http
        .get(&format!(
            "/resolve?name={OBJECT}&edns_client_subnet=0.0.0.0/0"
        ))
        .await
        .json();
    assert_eq!(v["line"], "default");
    assert_eq!(v["region"], "bj");
    assert_eq!(v["edns_client_subnet"], "0.0.0.0/0");

    // No subnet: the peer decides, privately; no echo.
    let r = http.get(&format!("/resolve?name={OBJECT}")).await;
    assert_eq!(r.cache(), "private, max-age=20");
    assert!(r.json().get("edns_client_subnet").is_none());

    // NXDOMAIN with the SOA in Authority; CD echoed; DO accepted.
    let r = http
        .get("/resolve?name=nothere.yourcompany.com&cd=1&do=true")
        .await;
    let v = r.json();
    assert_eq!(v["Status"], 3);
    assert_eq!(v["CD"], true);
    assert!(v.get("Answer").is_none());
    assert_eq!(v["Authority"][0]["type"], 6);
    assert_eq!(v["Authority"][0]["name"], "yourcompany.com.");
    assert_eq!(r.cache(), "public, max-age=300");

    // Errors.
    http.get("/resolve").await.is_error(400, "MissingArgument");
    http.get("/resolve?name=")
        .await
        .is_error(400, "MissingArgument");
    http.get("/resolve?type=A")
        .await
        .is_error(400, "MissingArgument");
    http.get("/resolve?name=a..b")
        .await
        .is_error(400, "InvalidHost");
    for t in ["BOGUS", "65536", "OPT", "AXFR", "TYPE"] {
        http.get(&format!("/resolve?name={OBJECT}&type={t}"))
            .await
            .is_error(400, "InvalidArgument");
    }
    http.get(&format!("/resolve?name={OBJECT}&cd=maybe"))
        .await
        .is_error(400, "InvalidArgument");
    for s in ["x", "1.2.3.4/40", "::/200", "1.2.3.4/a"] {
        http.get(&format!("/resolve?name={OBJECT}&edns_client_subnet={s}"))
            .await
            .is_error(400, "InvalidIP");
    }
}

#[tokio::test]
async fn google_json_equals_the_dns_answer() {
    let server = start_lab().await;
    let http = Http::new(&server);
    for (name, qtype, mnemonic) in [
        ("yourcompany.com.", 15u16, "MX"),
        ("mail2.yourcompany.com.", 28, "AAAA"),
        ("api.yourcompany.com.", 5, "CNAME"),
        ("_sip._tcp.yourcompany.com.", 33, "SRV"),
        ("nothere.yourcompany.com.", 1, "A"),
    ] {
        let dns = ask(&server, "all", Via::Udp, &Q::new(name, qtype)).await;
        let v = http
            .get(&format!("/resolve?name={name}&type={mnemonic}"))
            .await
            .json();
        assert_eq!(
            v["Status"].as_u64(),
            Some(u16::from(dns.response_code) as u64)
        );
        let json_lines = |section: &str| -> Vec<String> {
            let mut l: Vec<String> = v[section]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            let t = hickory_proto::rr::RecordType::from(
                                r["type"].as_u64().unwrap() as u16,
                            );
                            format!(
                                "{} {} {t} {}",
                                r["name"].as_str().unwrap().to_lowercase(),
                                r["TTL"],
                                r["data"].as_str().unwrap()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            l.sort();
            l
        };
        assert_eq!(json_lines("Answer"), lines(&dns.answers), "{name}: {v}");
        assert_eq!(
            json_lines("Authority"),
            lines(&dns.authorities),
            "{name}: {v}"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Which address decides: X-Forwarded-For / X-Real-IP

#[tokio::test]
async fn forwarded_addresses_from_trusted_proxies_only() {
    let server = start_lab().await;
    let proxy = Http::from(&server, "127.0.0.2");
    let stranger = Http::from(&server, "127.0.0.3");
    let path = format!("/100000/d?host={OBJECT}");

    // The lab's proxy (127.0.0.2) forwards China Telecom Shanghai.
    let r = proxy
        .get_with(&path, &[("X-Forwarded-For", "127.0.11.1")])
        .await;
    let v = r.json();
    assert_eq!(strings(&v["ips"]), pool(81), "{v}");
    assert_eq!(v["client_ip"], "127.0.11.1");
    assert_eq!(v["line"], "telecom");
    assert_eq!(v["region"], "sh");
    assert_eq!(r.cache(), "private, max-age=20");

    // The same header from anyone else is ignored: 127.0.0.3 itself decides (default line).
    let v = stranger
        .get_with(&path, &[("X-Forwarded-For", "127.0.11.1")])
        .await
        .json();
    assert_eq!(strings(&v["ips"]), pool(11), "{v}");
    assert_eq!(v["client_ip"], "127.0.0.3");
    assert_eq!(v["line"], "default");
    let r = stranger
        .get_with(&path, &[("X-Forwarded-For", "not an address")])
        .await;
    assert_eq!(r.status, 200, "untrusted headers are not even read");

    // A chain: the right-most entry that is not a trusted proxy; entries left of it are the
    // client's own claims and do not count.
    let v = proxy
        .get_with(
            &path,
            &[(
                "X-Forwarded-For",
                "garbage, 127.0.10.1, 127.0.11.1, 127.0.0.2",
            )],
        )
        .await
        .json();
    assert_eq!(v["client_ip"], "127.0.11.1");
    // Several header fields are one list.
    let req = proxy
        .web
        .get(format!("{}{path}", proxy.base))
        .header("X-Forwarded-For", "127.0.10.1")
        .header("X-Forwarded-For", "127.0.12.1");
    let v = proxy.send(req).await.json();
    assert_eq!(v["client_ip"], "127.0.12.1");

    // X-Real-IP, when there is no X-Forwarded-For.
    let v = proxy
        .get_with(&path, &[("X-Real-IP", "127.0.10.1")])
        .await
        .json();
    assert_eq!(strings(&v["ips"]), pool(41));
    assert_eq!(v["client_ip"], "127.0.10.1");
    // Only trusted proxies in the chain: X-Real-IP names the client.
    let v = proxy
        .get_with(
            &path,
            &[
                ("X-Forwarded-For", "127.0.0.2"),
                ("X-Real-IP", "127.0.12.1"),
            ],
        )
        .await
        .json();
    assert_eq!(v["client_ip"], "127.0.12.1");

    // Malformed headers from the trusted proxy: it is broken, say so.
    proxy
        .get_with(&path, &[("X-Forwarded-For", "127.0.11.1, bogus")])
        .await
        .is_error(400, "InvalidIP");
    proxy
        .get_with(&path, &[("X-Real-IP", "bogus")])
        .await
        .is_error(400, "InvalidIP");

    // ip= still wins over a forwarded address.
    let v = proxy
        .get_with(
            &format!("{path}&ip=127.0.10.1"),
            &[("X-Forwarded-For", "127.0.11.1")],
        )
        .await
        .json();
    assert_eq!(strings(&v["ips"]), pool(41));

    // The Google API and DoH read the same rule.
    let v = proxy
        .get_with(
            &format!("/resolve?name={OBJECT}&explain=1"),
            &[("X-Forwarded-For", "127.0.11.1")],
        )
        .await
        .json();
    assert_eq!(v["region"], "sh");
    assert_eq!(v["explain"]["client"]["source"], "packet");
    assert_eq!(v["explain"]["client"]["address"], "127.0.11.1");
    let q = URL_SAFE_NO_PAD.encode(Q::new("object.yourcompany.com.", 1).bytes());
    let r = proxy
        .get_with(
            &format!("/dns-query?dns={q}"),
            &[("X-Forwarded-For", "127.0.11.1")],
        )
        .await;
    let msg = Message::from_vec(&r.body).unwrap();
    let a: BTreeSet<String> = msg
        .answers
        .iter()
        .filter(|r| r.record_type() == hickory_proto::rr::RecordType::A)
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(a, pool(81));
}

// ------------------------------------------------------------------------------------------------
// RFC 8484 DoH

#[tokio::test]
async fn doh_is_byte_identical_to_udp() {
    let server = start_lab().await;
    let http = Http::new(&server);
    let udp = server.addr("all", "udp");
    for (q, max_age) in [
        (Q::new("mail.yourcompany.com.", 1), 3600),
        // Negative: the SOA's TTL (RFC 2308 5).
        (Q::new("nothere.yourcompany.com.", 1), 300),
        (Q::new("yourcompany.com.", 15).no_edns(), 3600),
        (Q::new("api.yourcompany.com.", 5), 300),
        // Another ID: echoed either way.
        (
            Q {
                id: 0,
                ..Q::new("mail2.yourcompany.com.", 28)
            },
            3600,
        ),
    ] {
        let bytes = q.bytes();
        let want = udp_raw(udp, &bytes).await.expect("UDP reply");
        let get = http
            .get(&format!(
                "/dns-query?dns={}",
                URL_SAFE_NO_PAD.encode(&bytes)
            ))
            .await;
        assert_eq!(get.status, 200);
        assert_eq!(get.body, want, "GET {q:?}");
        assert_eq!(get.header("content-type"), "application/dns-message");
        assert!(
            get.cache().ends_with(&format!("max-age={max_age}")),
            "{q:?}: {}",
            get.cache()
        );
        // Padding is accepted too.
        let padded = http
            .get(&format!("/dns-query?dns={}", URL_SAFE.encode(&bytes)))
            .await;
        assert_eq!(padded.body, want, "padded GET {q:?}");
        let post = http
            .post("/dns-query", Some("application/dns-message"), bytes.clone())
            .await;
        assert_eq!(post.status, 200);
        assert_eq!(post.body, want, "POST {q:?}");
        assert_eq!(post.header("content-type"), "application/dns-message");
    }
}

#[tokio::test]
async fn doh_gslb_with_ecs_matches_udp() {
    let server = start_lab().await;
    let http = Http::new(&server);
    let udp = server.addr("all", "udp");
    for (client, prefix) in [("127.0.11.1", 24), ("2001:db8:a::", 48), ("0.0.0.0", 0)] {
        let q = Q::new("object.yourcompany.com.", 1).ecs(ip(client), prefix);
        let want = udp_raw(udp, &q.bytes()).await.expect("UDP reply");
        let post = http
            .post("/dns-query", Some("application/dns-message"), q.bytes())
            .await;
        assert_eq!(post.status, 200);
        let (a, b) = (
            Message::from_vec(&want).unwrap(),
            Message::from_vec(&post.body).unwrap(),
        );
        // Equal weights rotate: compare record sets, and the ECS option byte for byte.
        assert_eq!(lines(&a.answers), lines(&b.answers), "{client}");
        assert_eq!(ecs_of(&want), ecs_of(&post.body), "{client}");
        assert_eq!(a.response_code, b.response_code);
        assert_eq!(want.len(), post.body.len());
        // The subnet is in the message (so in a GET URL): not only for the caller.
        assert_eq!(post.cache(), "max-age=20", "{client}");
    }
}

#[tokio::test]
async fn doh_errors() {
    let server = start_lab().await;
    let http = Http::new(&server);
    let q = Q::new("mail.yourcompany.com.", 1).bytes();
    for ct in [None, Some("text/plain"), Some("application/json")] {
        http.post("/dns-query", ct, q.clone())
            .await
            .is_error(415, "UnsupportedMediaType");
    }
    // Parameters and case of the media type do not matter.
    let r = http
        .post(
            "/dns-query",
            Some("Application/DNS-Message; charset=x"),
            q.clone(),
        )
        .await;
    assert_eq!(r.status, 200);
    http.get("/dns-query")
        .await
        .is_error(400, "MissingArgument");
    http.get("/dns-query?dns=")
        .await
        .is_error(400, "MissingArgument");
    for bad in ["!!!!", "A", "AAAAA", "a+b/", "%ff"] {
        http.get(&format!("/dns-query?dns={bad}"))
            .await
            .is_error(400, "InvalidArgument");
    }
    // A message DNS answers with nothing (a response; a runt): 400.
    let mut response = q.clone();
    response[2] |= 0x80;
    http.post("/dns-query", Some("application/dns-message"), response)
        .await
        .is_error(400, "InvalidArgument");
    http.post("/dns-query", Some("application/dns-message"), vec![1, 2, 3])
        .await
        .is_error(400, "InvalidArgument");
    http.post("/dns-query", Some("application/dns-message"), vec![])
        .await
        .is_error(400, "InvalidArgument");
    // DNS-level errors are DNS answers: 200 with the RCODE (RFC 8484 4.2.1).
    let chaos = Q {
        qclass: 3,
        ..Q::new("version.bind.", 16)
    };
    let r = http
        .post("/dns-query", Some("application/dns-message"), chaos.bytes())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        Message::from_vec(&r.body).unwrap().response_code,
        ResponseCode::Refused
    );
    assert_eq!(r.cache(), "private, max-age=0");
    let opt = Q::new("mail.yourcompany.com.", 41);
    let r = http
        .get(&format!(
            "/dns-query?dns={}",
            URL_SAFE_NO_PAD.encode(opt.bytes())
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        Message::from_vec(&r.body).unwrap().response_code,
        ResponseCode::FormErr
    );
    // Wrong method.
    let r = http
        .send(http.web.put(format!("{}/dns-query", http.base)))
        .await;
    r.is_error(405, "MethodNotAllowed");
}

// ------------------------------------------------------------------------------------------------
// explain=1

#[tokio::test]
async fn explain_matches_the_dns_decision() {
    let server = start_lab().await;
    let http = Http::new(&server);
    let udp = server.addr("all", "udp");
    let q = Q::new("object.yourcompany.com.", 1).ecs(ip("127.0.11.0"), 24);
    let dns = Message::from_vec(&udp_raw(udp, &q.bytes()).await.unwrap()).unwrap();
    let dns_a: BTreeSet<String> = dns
        .answers
        .iter()
        .filter(|r| r.record_type() == hickory_proto::rr::RecordType::A)
        .map(|r| r.data.to_string())
        .collect();

    let v = http
        .get(&format!("/100000/d?host={OBJECT}&ip=127.0.11.1&explain=1"))
        .await
        .json();
    assert_eq!(strings(&v["ips"]), dns_a);
    let e = &v["explain"];
    assert_eq!(e["qname"], "object.yourcompany.com.");
    assert_eq!(e["client"]["address"], "127.0.11.0");
    assert_eq!(e["client"]["prefix"], 24);
    assert_eq!(e["client"]["source"], "given");
    assert_eq!(e["hops"][0]["name"], "object.vip.yourcompany.com.");
    assert_eq!(e["hops"][0]["line"], "telecom");
    assert_eq!(e["hops"][1]["region"], "sh");
    assert_eq!(e["rcode"], "NOERROR");
    assert_eq!(e["scope"], 24);
    let explained: BTreeSet<String> = e["answer"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str().unwrap().split_once(" IN A "))
        .map(|(_, a)| a.to_string())
        .collect();
    assert_eq!(explained, dns_a);

    // The Google API: the subnet came as ECS.
    let v = http
        .get(&format!(
            "/resolve?name={OBJECT}&edns_client_subnet=127.0.11.0/24&explain=1"
        ))
        .await
        .json();
    assert_eq!(v["explain"]["client"]["source"], "ecs");
    assert_eq!(v["explain"]["hops"][1]["region"], "sh");

    // /resolve: one explain per entry; without explain=1 none.
    let v = http
        .get("/100000/resolve?host=object.yourcompany.com,www.yourcompany.com&explain=1")
        .await
        .json();
    for e in v["dns"].as_array().unwrap() {
        assert!(e["explain"].is_object(), "{e}");
    }
    assert_eq!(v["dns"][0]["explain"]["client"]["source"], "packet");
    assert_eq!(v["dns"][1]["explain"]["hops"], serde_json::json!([]));
    let v = http
        .get("/100000/resolve?host=object.yourcompany.com")
        .await
        .json();
    assert!(v["dns"][0].get("explain").is_none());
}

// ------------------------------------------------------------------------------------------------
// Rate limits

/// A config serving tests/data/httpdns/example.test.zone with the given rate limits (inside
/// `rate_limit = { ... }`) and extra `[http]` lines; accounts "100000" (secret "test-secret") and
/// "nosecret".
fn limits_config(rates: &str, extra: &str) -> String {
    let zone = data("httpdns/example.test.zone");
    format!(
        r#"
[[zone]]
name = "example.test."
file = "{}"

[[listener]]
name = "all"
addresses = ["127.0.0.1:0"]
zones = ["*"]

[http]
listen = ["127.0.0.1:0"]
trusted_proxies = ["127.0.0.2"]
rate_limit = {{ {rates}, burst_seconds = 1 }}
{extra}

[[http.account]]
id = "100000"
secret = "test-secret"

[[http.account]]
id = "nosecret"
"#,
        zone.display()
    )
}

#[tokio::test]
async fn per_address_limit() {
    let server = start(Source::file(data("httpdns/per-ip.toml"))).await;
    let http = Http::new(&server);
    let r = http.get("/100000/d?host=www.example.test").await;
    assert_eq!(r.status, 200);
    assert_eq!(strings(&r.json()["ips"]), set(["192.0.2.80"]));
    let r = http.get("/100000/d?host=www.example.test").await;
    r.is_error(429, "LimitExceeded");
    let retry: u64 = r
        .header("retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!(retry >= 1, "{retry}");
    // One bucket per address, for every API; naming another client with ip= changes nothing.
    http.get("/resolve?name=www.example.test")
        .await
        .is_error(429, "LimitExceeded");
    http.get("/dns-query?dns=AAAA")
        .await
        .is_error(429, "LimitExceeded");
    http.get("/100000/d?host=www.example.test&ip=192.0.2.1")
        .await
        .is_error(429, "LimitExceeded");
    // Bad requests count too: another address spends its token on one.
    let other = Http::from(&server, "127.0.0.4");
    other
        .get("/100000/d")
        .await
        .is_error(400, "MissingArgument");
    other
        .get("/100000/d?host=www.example.test")
        .await
        .is_error(429, "LimitExceeded");

    // Behind the trusted proxy the forwarded client is the key, not the proxy.
    let proxy = Http::from(&server, "127.0.0.2");
    let path = "/resolve?name=www.example.test";
    let from = |a: &'static str| [("X-Forwarded-For", a)];
    assert_eq!(proxy.get_with(path, &from("127.0.20.1")).await.status, 200);
    proxy
        .get_with(path, &from("127.0.20.1"))
        .await
        .is_error(429, "LimitExceeded");
    assert_eq!(proxy.get_with(path, &from("127.0.20.2")).await.status, 200);
    let q = URL_SAFE_NO_PAD.encode(Q::new("www.example.test.", 1).bytes());
    let r = proxy
        .get_with(&format!("/dns-query?dns={q}"), &from("127.0.20.3"))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn per_account_limit_and_client_ip_switched_off() {
    let server = start(Source::file(data("httpdns/per-account.toml"))).await;
    let http = Http::new(&server);
    assert_eq!(
        http.get("/100000/d?host=www.example.test").await.status,
        200
    );
    let r = http.get("/100000/resolve?host=www.example.test").await;
    r.is_error(429, "LimitExceeded");
    assert!(r.header("retry-after").parse::<u64>().unwrap() >= 1);
    // Other accounts have their own bucket; the Google API has no account.
    assert_eq!(
        http.get("/200000/d?host=www.example.test").await.status,
        200
    );
    http.get("/200000/d?host=www.example.test")
        .await
        .is_error(429, "LimitExceeded");
    for _ in 0..3 {
        assert_eq!(http.get("/resolve?name=www.example.test").await.status, 200);
    }
    // Requests that fail authentication do not spend the account's tokens: an unknown account.
    http.get("/300000/d?host=www.example.test")
        .await
        .is_error(403, "InvalidAccount");

    // allow_client_ip = false: naming a client is refused.
    http.get("/resolve?name=www.example.test&edns_client_subnet=192.0.2.0/24")
        .await
        .is_error(403, "Forbidden");
}

#[tokio::test]
async fn rate_limits_hot_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gslbd.toml");
    std::fs::write(&config, limits_config("per_ip = 0, per_account = 0", "")).unwrap();
    let server = start(Source::file(&config)).await;
    let http = Http::new(&server);
    for _ in 0..5 {
        assert_eq!(http.get("/resolve?name=www.example.test").await.status, 200);
    }
    std::fs::write(
        &config,
        limits_config("per_ip = 0.01, per_account = 0", "max_batch = 2"),
    )
    .unwrap();
    server.handle.reload().expect("the new config builds");
    assert_eq!(http.get("/resolve?name=www.example.test").await.status, 200);
    http.get("/resolve?name=www.example.test")
        .await
        .is_error(429, "LimitExceeded");
    // The rest of [http] reloaded too.
    Http::from(&server, "127.0.0.5")
        .get("/100000/resolve?host=a.example.test,b.example.test,c.example.test")
        .await
        .is_error(400, "InvalidHost");
}

// ------------------------------------------------------------------------------------------------
// Odd input

/// Tiny deterministic generator for the fuzz-ish tests.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test]
async fn odd_requests_get_answers_not_panics() {
    let server = start_lab().await;
    let http = Http::new(&server);
    let long = "a".repeat(300);
    let labels = format!("{}.", "c".repeat(63)).repeat(4);
    let paths = [
        "/100000/d?host=a..b".to_string(),
        format!("/100000/d?host={long}"),
        format!("/100000/d?host={labels}"),
        "/100000/d?host=%ff%fe".to_string(),
        "/100000/d?host=%00".to_string(),
        "/100000/d?host=%".to_string(),
        "/100000/d?host=%2".to_string(),
        "/100000/d?host=.".to_string(),
        "/100000/d?host=..".to_string(),
        "/100000/d?host=a%20b.com".to_string(),
        "/100000/d?host=%E4%BE%8B%E5%AD%90.com".to_string(),
        "/100000/d?host=*.apps.yourcompany.com".to_string(),
        "/100000/d?host=1.2.3.4".to_string(),
        "/100000/d?host=www.yourcompany.com&host=nothere.yourcompany.com".to_string(),
        "/100000/d?host=www.yourcompany.com&ip=".to_string(),
        "/100000/d?host=www.yourcompany.com&ip=::ffff:127.0.10.1".to_string(),
        "/100000/d?host=www.yourcompany.com&ip=%ff".to_string(),
        "/100000/d?host=www.yourcompany.com&query=4,6,4".to_string(),
        "/100000/d?host=www.yourcompany.com&query=".to_string(),
        "/100000/d?host=www.yourcompany.com&explain=yes".to_string(),
        "/100000/d?&&&=&==&host".to_string(),
        "/100000/d?host=www.yourcompany.com&&&".to_string(),
        "/100000/resolve?host=,,,".to_string(),
        "/100000/resolve?host=www.yourcompany.com,".to_string(),
        "/100000/sign_d?host=a&t=99999999999999999999999&s=x".to_string(),
        "/100000/sign_d?host=a&t=-1&s=x".to_string(),
        "/100000/sign_d?host=a&t=18446744073709551615&s=x".to_string(),
        "/100000/sign_resolve?host=a,b&t=1&s=".to_string(),
        "/%ff/d?host=a".to_string(),
        "/%2F/d?host=a".to_string(),
        "//d?host=a".to_string(),
        "/resolve?name=.&type=NS".to_string(),
        "/resolve?name=yourcompany.com&type=ANY".to_string(),
        "/resolve?name=yourcompany.com&type=0".to_string(),
        "/resolve?name=%E4%BE%8B%E5%AD%90.com".to_string(),
        format!("/resolve?name={long}"),
        "/resolve?name=x&type=TYPE65536".to_string(),
        "/resolve?name=x&type=%ff".to_string(),
        "/resolve?name=x&edns_client_subnet=1.2.3.4/33".to_string(),
        "/resolve?name=x&edns_client_subnet=::ffff:1.2.3.4/100".to_string(),
        "/resolve?name=x&edns_client_subnet=::/0".to_string(),
        "/resolve?name=x&cd=maybe".to_string(),
        "/resolve?name=x&name=y&type=A&type=AAAA".to_string(),
        "/dns-query?dns=%%%".to_string(),
        "/dns-query?dns=AAAA".to_string(),
        "/dns-query?dns=AAA=".to_string(),
        format!("/dns-query?dns={}", "A".repeat(3000)),
        format!("/100000/d?host={}", "a.".repeat(1500)),
    ];
    for path in &paths {
        let r = http.get(path).await;
        assert!(
            matches!(r.status, 200 | 400 | 403 | 404 | 405 | 414),
            "{path}: {}",
            r.status
        );
        if r.status == 200 && !path.starts_with("/dns-query") {
            r.json();
        } else if r.status != 200 {
            assert!(!r.code().is_empty(), "{path}: {}", r.status);
        }
    }
    // Repeated parameters: the first counts.
    let v = http
        .get("/100000/d?host=www.yourcompany.com&host=nothere.yourcompany.com")
        .await
        .json();
    assert_eq!(v["host"], "www.yourcompany.com");
    assert_eq!(v["ips"].as_array().unwrap().len(), 4);
    // An IPv4-mapped ip= is the IPv4 client.
    let v = http
        .get(&format!("/100000/d?host={OBJECT}&ip=::ffff:127.0.10.1"))
        .await
        .json();
    assert_eq!(v["client_ip"], "127.0.10.1");
    assert_eq!(strings(&v["ips"]), pool(41));

    // Random bodies for DoH POST, some with a query-like header.
    let mut rng = Lcg(7);
    for n in 0..200 {
        let len = (rng.next() % 300) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if n % 2 == 0 && body.len() >= 12 {
            body[2] &= 0x7f; // a query, not a response
            body[4..6].copy_from_slice(&[0, 1]);
        }
        let r = http
            .post("/dns-query", Some("application/dns-message"), body.clone())
            .await;
        assert!(matches!(r.status, 200 | 400), "{body:?}: {}", r.status);
        if r.status == 200 {
            assert_eq!(r.header("content-type"), "application/dns-message");
            assert!(r.body.len() >= 12);
        }
    }
    // Still serving.
    let r = http.get(&format!("/100000/d?host={OBJECT}")).await;
    assert_eq!(r.status, 200);
}
