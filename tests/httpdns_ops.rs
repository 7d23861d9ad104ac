//! The operations endpoints on the real server over loopback: `/healthz`, `/metrics` (parsed as
//! exposition format and checked to follow real DNS traffic), `/admin/reload` (token, refusal of a
//! broken zone with the old data still serving, then a fixed zone taking effect) and
//! `/openapi.json` (checked both ways against `http::ROUTES`, and every route answered).
//!
//! Counters are process-wide and tests in this file run in parallel, so metric checks read deltas.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use gslbd::config::Source;
use gslbd::http::ROUTES;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use reqwest::StatusCode;
use serde_json::Value;

const LAB_TOKEN: &str = "lab-admin-token";

/// Every test ends within this, whatever hangs.
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test finished within 60 s");
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn url(server: &TestServer, path: &str) -> String {
    format!("http://{}{path}", server.addr("http", "http"))
}

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    client().get(url(server, path)).send().await.unwrap()
}

async fn get_json(server: &TestServer, path: &str) -> Value {
    let resp = get(server, path).await;
    assert_eq!(resp.status(), StatusCode::OK, "GET {path}");
    resp.json().await.unwrap()
}

/// `POST /admin/reload` with `authorization` as the whole header value, if any.
async fn reload(server: &TestServer, authorization: Option<&str>) -> (StatusCode, Value) {
    let mut req = client().post(url(server, "/admin/reload"));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "{status}"
    );
    (status, resp.json().await.unwrap())
}

fn records_of(server: &TestServer) -> usize {
    server
        .handle
        .snapshot()
        .zones
        .iter()
        .map(|z| z.records)
        .sum()
}

// ------------------------------------------------------------------------------------------------
// A small configuration on disk, for reloads and health targets.

const ZONE: &str = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns hostmaster 1 3600 900 604800 60\n\
                    @ NS ns\nns A 127.0.0.1\nwww A 192.0.2.1\n";

/// Writes `gslbd.toml` (one zone, one listener, HTTP with `token`, `extra` appended) and the
/// zone file into `dir`.
fn write_config(dir: &Path, token: Option<&str>, extra: &str) -> PathBuf {
    std::fs::write(dir.join("example.com.zone"), ZONE).unwrap();
    let token = token.map_or(String::new(), |t| format!("admin_token = \"{t}\"\n"));
    let text = format!(
        r#"
[[zone]]
name = "example.com."
file = "example.com.zone"

[[listener]]
name = "all"
addresses = ["127.0.0.1:0"]
zones = ["*"]

[http]
listen = ["127.0.0.1:0"]
{token}
{extra}
"#
    );
    let path = dir.join("gslbd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The A records of `name` (and the RCODE) over UDP from 127.0.0.1.
async fn a_records(server: &TestServer, name: &str) -> (ResponseCode, BTreeSet<String>) {
    let m = ask(server, "all", Via::Udp, &Q::new(name, 1)).await;
    let ips = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    (m.response_code, ips)
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ------------------------------------------------------------------------------------------------
// Prometheus text exposition format 0.0.4, parsed strictly enough to catch what scrapers reject.

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

struct Exposition {
    samples: Vec<Sample>,
    types: HashMap<String, String>,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `a="x",b="y\"z"` (the part between braces) into pairs, unescaping values.
fn parse_labels(s: &str, line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\" in {line:?}"));
        assert!(valid_name(name), "label name {name:?} in {line:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        out.push((name.to_string(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

/// The family a sample belongs to: its own name, or a histogram's for `_bucket`/`_sum`/`_count`.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (types.get(base)? == "histogram").then_some(base)
    })
}

/// Parses and checks: every sample line is `name{labels} value`, every family has one HELP and
/// one TYPE before its samples, families are contiguous, and no series appears twice.
fn parse_exposition(text: &str) -> Exposition {
    let mut types = HashMap::new();
    let mut helps = HashSet::new();
    let mut samples = Vec::new();
    let mut series = HashSet::new();
    let mut finished = HashSet::new();
    let mut current: Option<String> = None;
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(name), Some(help)) => {
                    assert!(valid_name(name) && !help.is_empty(), "{line:?}");
                    assert!(helps.insert(name.to_string()), "second HELP: {line:?}");
                }
                (Some("TYPE"), Some(name), Some(ty)) => {
                    assert!(valid_name(name), "{line:?}");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                        "{line:?}"
                    );
                    assert!(
                        types.insert(name.to_string(), ty.to_string()).is_none(),
                        "second TYPE: {line:?}"
                    );
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "blank line in the exposition");
        let (series_part, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series_part.split_once('{') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                (name, parse_labels(inner, line))
            }
            None => (series_part, Vec::new()),
        };
        assert!(valid_name(name), "metric name in {line:?}");
        let family = family_of(name, &types)
            .unwrap_or_else(|| panic!("no TYPE before {line:?}"))
            .to_string();
        assert!(helps.contains(&family), "no HELP before {line:?}");
        if current.as_deref() != Some(family.as_str()) {
            if let Some(prev) = current.replace(family.clone()) {
                finished.insert(prev);
            }
            assert!(!finished.contains(&family), "{family} is split: {line:?}");
        }
        let mut key = labels.clone();
        key.sort();
        assert!(
            series.insert((name.to_string(), key)),
            "duplicate series {line:?}"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Exposition { samples, types }
}

impl Exposition {
    /// The value of the series `name` with exactly `labels` (0 when absent: zero counters with
    /// labels are not always written).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        self.samples
            .iter()
            .find(|s| {
                let mut got = s.labels.clone();
                got.sort();
                s.name == name && got == want
            })
            .map_or(0.0, |s| s.value)
    }

    /// Checks every histogram: per label set, `le` increasing and ending at +Inf, buckets
    /// cumulative, `_count` equal to the +Inf bucket, a `_sum`. Returns how many label sets.
    fn check_histograms(&self) -> usize {
        let mut checked = 0;
        for (family, ty) in &self.types {
            if ty != "histogram" {
                continue;
            }
            let mut buckets: HashMap<Vec<(String, String)>, Vec<(f64, f64)>> = HashMap::new();
            for s in self
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket"))
            {
                let le = s
                    .labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or_else(|| panic!("bucket without le: {s:?}"));
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse::<f64>().unwrap()
                };
                let rest: Vec<_> = s.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                buckets.entry(rest).or_default().push((le, s.value));
            }
            assert!(!buckets.is_empty(), "{family} has no buckets");
            for (labels, b) in buckets {
                for w in b.windows(2) {
                    assert!(w[0].0 < w[1].0, "{family}{labels:?}: le not increasing");
                    assert!(w[0].1 <= w[1].1, "{family}{labels:?}: not cumulative");
                }
                let (last_le, inf) = *b.last().unwrap();
                assert!(last_le.is_infinite(), "{family}{labels:?}: no +Inf bucket");
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let count = self.value(&format!("{family}_count"), &pairs);
                assert_eq!(count, inf, "{family}{labels:?}: _count != +Inf bucket");
                assert!(
                    self.samples
                        .iter()
                        .any(|s| s.name == format!("{family}_sum")),
                    "{family}: no _sum"
                );
                checked += 1;
            }
        }
        checked
    }
}

async fn scrape(server: &TestServer) -> Exposition {
    let resp = get(server, "/metrics").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    parse_exposition(&resp.text().await.unwrap())
}

// ------------------------------------------------------------------------------------------------
// /healthz

#[tokio::test]
async fn healthz_describes_the_serving_snapshot() {
    bounded(async {
        let server = start(Source::lab()).await;
        let resp = get(&server, "/healthz").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        let snap = server.handle.snapshot();
        assert_eq!(
            body,
            serde_json::json!({
                "status": "ok",
                "zones": 7,
                "records": records_of(&server),
                "listeners": snap.listeners.len(),
                // The lab checks no addresses.
                "health": { "targets": 0, "down": 0 },
            })
        );
        assert_eq!(snap.listeners.len(), 6);
        assert!(body["records"].as_u64().unwrap() > 50, "{body}");
    })
    .await;
}

/// Health targets are counted up and down: one checked address accepts connections, the other
/// refuses them and goes down after one failed check.
#[tokio::test]
async fn healthz_and_metrics_count_health_targets() {
    bounded(async {
        let alive = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let alive_port = alive.local_addr().unwrap().port();
        let accepting = tokio::spawn(async move {
            loop {
                // Accept and drop: a TCP check only needs the handshake.
                let _ = alive.accept().await;
            }
        });
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);

        let dir = tempfile::tempdir().unwrap();
        let extra = format!(
            r#"
[gslb.region.a]
location = [0.0, 0.0]

[gslb.health.tcp]
kind = "tcp"
port = 80
interval_ms = 50
timeout_ms = 50
up = 1
down = 1

[[gslb.location]]
name = "app.example.com."
ttl = 10
answer = 2
default = "a"
health = "tcp"
pools.a = [{{ address = "192.0.2.10", check = "127.0.0.1:{alive_port}" }}, {{ address = "192.0.2.11", check = "127.0.0.1:{closed_port}" }}]
"#
        );
        let server = start(Source::file(write_config(dir.path(), None, &extra))).await;

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = get_json(&server, "/healthz").await;
            if body["health"] == serde_json::json!({ "targets": 2, "down": 1 }) {
                break;
            }
            assert!(Instant::now() < deadline, "never one down of two: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let m = scrape(&server).await;
        assert_eq!(m.value("gslbd_health_targets", &[("state", "up")]), 1.0);
        assert_eq!(m.value("gslbd_health_targets", &[("state", "down")]), 1.0);
        assert_eq!(m.types["gslbd_health_targets"], "gauge");
        accepting.abort();
    })
    .await;
}

