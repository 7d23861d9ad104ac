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

/// The records of the test zone below its SOA/NS head (common::EXAMPLE_ZONE_HEAD).
const RECORDS: &str = "www A 192.0.2.1\n";

/// Writes `gslbd.toml` (one zone, one listener, HTTP with `token`, `extra` appended) and the
/// zone file into `dir`.
fn write_config(dir: &Path, token: Option<&str>, extra: &str) -> PathBuf {
    let token = token.map_or(String::new(), |t| format!("admin_token = \"{t}\"\n"));
    write_example(
        dir,
        RECORDS,
        &format!("[http]\nlisten = [\"127.0.0.1:0\"]\n{token}\n{extra}"),
    )
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

/// (label name, value) pairs, in the order written.
type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Labels,
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
fn parse_labels(s: &str, line: &str) -> Labels {
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
        let mut want: Labels = labels
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
            let mut buckets: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
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
                let rest: Vec<_> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| k != "le")
                    .cloned()
                    .collect();
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
                "health": { "targets": 0, "down": 0, "unknown": 0 },
                // The initial load is generation 1, and a success.
                "reload": {
                    "generation": 1,
                    "last_success": body["reload"]["last_success"],
                    "failures": 0,
                },
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
            if body["health"] == serde_json::json!({ "targets": 2, "down": 1, "unknown": 0 }) {
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

// ------------------------------------------------------------------------------------------------
// /metrics

/// The exposition is valid, and follows DNS traffic: GSLB answers from a China Mobile address in
/// Beijing count as NOERROR over UDP and as region "bj"; an HTTP 404 counts as an HTTP error.
#[tokio::test]
async fn metrics_are_valid_exposition_and_follow_traffic() {
    bounded(async {
        let server = start(Source::lab()).await;
        let before = scrape(&server).await;
        assert!(
            before.check_histograms() >= 5,
            "one histogram per transport"
        );
        assert_eq!(before.value("gslbd_zones", &[]), 7.0);
        assert_eq!(
            before.value("gslbd_records", &[]),
            records_of(&server) as f64
        );
        assert_eq!(before.value("gslbd_listeners", &[]), 6.0);
        for (family, ty) in [
            ("gslbd_queries_total", "counter"),
            ("gslbd_gslb_answers_total", "counter"),
            ("gslbd_query_duration_seconds", "histogram"),
            ("gslbd_http_errors_total", "counter"),
            ("gslbd_admin_reloads_total", "counter"),
            ("gslbd_zones", "gauge"),
            ("gslbd_records", "gauge"),
            ("gslbd_health_targets", "gauge"),
        ] {
            assert_eq!(
                before.types.get(family).map(String::as_str),
                Some(ty),
                "{family}"
            );
        }

        const N: usize = 3;
        let mobile_bj: IpAddr = "127.0.10.1".parse().unwrap();
        let dns: SocketAddr = server.addr("all", "udp");
        for _ in 0..N {
            let bytes = udp_from(
                mobile_bj,
                dns,
                &Q::new("object.yourcompany.com.", 1).bytes(),
            )
            .await
            .expect("a DNS answer");
            let m = Message::from_vec(&bytes).unwrap();
            assert_eq!(m.response_code, ResponseCode::NoError);
            assert!(m.answers.iter().any(|r| matches!(r.data, RData::A(_))));
        }
        let nope = get(&server, "/no/such/thing/here").await;
        assert_eq!(nope.status(), StatusCode::NOT_FOUND);

        let after = scrape(&server).await;
        let delta = |name: &str, labels: &[(&str, &str)]| {
            after.value(name, labels) - before.value(name, labels)
        };
        let udp_ok = [("transport", "udp"), ("rcode", "NOERROR")];
        assert!(delta("gslbd_queries_total", &udp_ok) >= N as f64);
        assert!(delta("gslbd_gslb_answers_total", &[("region", "bj")]) >= N as f64);
        assert!(
            delta(
                "gslbd_query_duration_seconds_count",
                &[("transport", "udp")]
            ) >= N as f64
        );
        let not_found = [("status", "404"), ("code", "NotFound")];
        assert!(delta("gslbd_http_errors_total", &not_found) >= 1.0);
        assert!(after.check_histograms() >= 5);
    })
    .await;
}

#[test]
fn the_exposition_checker_rejects_what_scrapers_reject() {
    let ok =
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\na_total{x=\"q\\\"\"} 3\n";
    let e = parse_exposition(ok);
    assert_eq!(e.value("a_total", &[("x", "q\"")]), 3.0);
    for bad in [
        // duplicate series
        "# HELP a A.\n# TYPE a gauge\na 1\na 2\n",
        // no TYPE
        "# HELP a A.\na 1\n",
        // no HELP
        "# TYPE a gauge\na 1\n",
        // no value
        "# HELP a A.\n# TYPE a gauge\na\n",
        // family split in two
        "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\na{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n",
    ] {
        let caught = std::panic::catch_unwind(|| parse_exposition(bad)).is_err();
        assert!(caught, "accepted {bad:?}");
    }
}

// ------------------------------------------------------------------------------------------------
// /admin/reload

#[tokio::test]
async fn reload_needs_the_admin_token() {
    bounded(async {
        let server = start(Source::lab()).await;
        for auth in [
            None,
            Some("Bearer wrong-token"),
            Some("Bearer lab-admin-toke"),
            Some("Bearer lab-admin-tokenX"),
            Some("Basic bGFiLWFkbWluLXRva2Vu"),
            Some("lab-admin-token"),
        ] {
            let (status, body) = reload(&server, auth).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(body["code"], "Unauthorized", "{auth:?}");
        }
        let (status, body) = reload(&server, Some(&format!("Bearer {LAB_TOKEN}"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            serde_json::json!({ "reloaded": true, "zones": 7, "records": records_of(&server) })
        );
        // The scheme is case-insensitive (RFC 9110 11.1).
        let (status, _) = reload(&server, Some(&format!("bearer {LAB_TOKEN}"))).await;
        assert_eq!(status, StatusCode::OK);

        let resp = get(&server, "/admin/reload").await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    })
    .await;
}

#[tokio::test]
async fn reload_without_a_configured_token_is_forbidden() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(Source::file(write_config(dir.path(), None, ""))).await;
        for auth in [None, Some("Bearer "), Some("Bearer lab-admin-token")] {
            let (status, body) = reload(&server, auth).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{auth:?}");
            assert_eq!(body["code"], "Forbidden");
            assert_eq!(body["message"], "no admin_token configured");
        }
    })
    .await;
}

/// A broken zone file is refused with its file and line, and the old data keeps serving; once
/// fixed, the next reload serves the new records.
#[tokio::test]
async fn reload_refuses_a_broken_zone_and_keeps_serving() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let token = "t0ken-for-this-test";
        let server = start(Source::file(write_config(dir.path(), Some(token), ""))).await;
        let auth = format!("Bearer {token}");
        let zone = dir.path().join("example.com.zone");
        let before_records = records_of(&server);
        assert_eq!(
            a_records(&server, "www.example.com.").await,
            (ResponseCode::NoError, set(&["192.0.2.1"]))
        );
        let metrics_before = scrape(&server).await;

        // Line 7 is not an address; line 6 changes, which must not be served either.
        std::fs::write(
            &zone,
            format!("{EXAMPLE_ZONE_HEAD}{RECORDS}").replace("192.0.2.1", "192.0.2.2")
                + "new A 192.0.2.300\n",
        )
        .unwrap();
        let (status, body) = reload(&server, Some(&auth)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], "ReloadFailed");
        let problems: Vec<&str> = body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert!(!problems.is_empty());
        assert!(problems.iter().all(|p| !p.contains('\n')));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("example.com.zone:7:") && p.contains("192.0.2.300")),
            "{problems:?}"
        );
        assert_eq!(
            a_records(&server, "www.example.com.").await,
            (ResponseCode::NoError, set(&["192.0.2.1"])),
            "the old data keeps serving"
        );
        assert_eq!(
            a_records(&server, "new.example.com.").await.0,
            ResponseCode::NXDomain
        );
        assert_eq!(
            get_json(&server, "/healthz").await["records"],
            before_records
        );

        // Monitoring sees the failure: /healthz degraded with the problem, the failure counter,
        // the generation unchanged.
        let health = get_json(&server, "/healthz").await;
        assert_eq!(health["status"], "degraded", "{health}");
        assert_eq!(health["reload"]["generation"], 1, "{health}");
        assert_eq!(health["reload"]["failures"], 1, "{health}");
        let last_error = health["reload"]["last_error"].as_str().unwrap_or_default();
        assert!(
            last_error.contains("example.com.zone:7:") && last_error.contains("192.0.2.300"),
            "{health}"
        );
        let first_success = health["reload"]["last_success"].as_u64().unwrap();
        let m = scrape(&server).await;
        assert_eq!(m.value("gslbd_reload_failures_total", &[]), 1.0);
        assert_eq!(m.types["gslbd_reload_failures_total"], "counter");
        assert_eq!(m.value("gslbd_config_generation", &[]), 1.0);
        assert_eq!(m.value("gslbd_reload_degraded", &[]), 1.0);
        let success_ts = m.value("gslbd_reload_last_success_timestamp_seconds", &[]);
        assert_eq!(success_ts.floor() as u64, first_success);

        // Fixed: the new record and the changed one are served.
        std::fs::write(
            &zone,
            format!("{EXAMPLE_ZONE_HEAD}{RECORDS}").replace("192.0.2.1", "192.0.2.2")
                + "new A 192.0.2.30\n",
        )
        .unwrap();
        let (status, body) = reload(&server, Some(&auth)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["reloaded"], true);
        assert_eq!(body["zones"], 1);
        assert_eq!(body["records"], before_records + 1);
        assert_eq!(
            a_records(&server, "new.example.com.").await,
            (ResponseCode::NoError, set(&["192.0.2.30"]))
        );
        assert_eq!(
            a_records(&server, "www.example.com.").await,
            (ResponseCode::NoError, set(&["192.0.2.2"]))
        );

        let metrics_after = scrape(&server).await;
        // Healthy again: a new generation, the failure still counted, no error shown.
        assert_eq!(metrics_after.value("gslbd_reload_failures_total", &[]), 1.0);
        assert_eq!(metrics_after.value("gslbd_config_generation", &[]), 2.0);
        assert_eq!(metrics_after.value("gslbd_reload_degraded", &[]), 0.0);
        assert!(
            metrics_after.value("gslbd_reload_last_success_timestamp_seconds", &[]) >= success_ts
        );
        let health = get_json(&server, "/healthz").await;
        assert_eq!(health["status"], "ok", "{health}");
        assert_eq!(health["reload"]["generation"], 2, "{health}");
        assert!(health["reload"].get("last_error").is_none(), "{health}");
        for (result, at_least) in [("ok", 1.0), ("failed", 1.0)] {
            let labels = [("result", result)];
            let d = metrics_after.value("gslbd_admin_reloads_total", &labels)
                - metrics_before.value("gslbd_admin_reloads_total", &labels);
            assert!(d >= at_least, "{result}: {d}");
        }
        let refused = [("status", "422"), ("code", "ReloadFailed")];
        assert!(
            metrics_after.value("gslbd_http_errors_total", &refused)
                > metrics_before.value("gslbd_http_errors_total", &refused)
        );
    })
    .await;
}

// ------------------------------------------------------------------------------------------------
// /openapi.json and routing

/// Every (method, path) of the router is documented and nothing else is; every local `$ref`
/// resolves.
#[tokio::test]
async fn openapi_documents_exactly_the_routes() {
    bounded(async {
        let server = start(Source::lab()).await;
        let resp = get(&server, "/openapi.json").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let doc: Value = serde_json::from_str(&resp.text().await.unwrap()).expect("JSON");
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

        let routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_ascii_lowercase(), p.to_string()))
            .collect();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
                assert!(op["summary"].is_string(), "{method} {path} has no summary");
                documented.insert((method.clone(), path.clone()));
            }
        }
        assert_eq!(documented, routes);

        // Parameters named in a path are declared as path parameters.
        let alibaba = &doc["paths"]["/{account_id}/d"]["get"];
        let params = resolve_all(&doc, &alibaba["parameters"]);
        for (name, place) in [("account_id", "path"), ("host", "query"), ("ip", "query")] {
            assert!(
                params.iter().any(|p| p["name"] == name && p["in"] == place),
                "{name} in {place}: {params:?}"
            );
        }
        let codes = &doc["components"]["schemas"]["AlibabaError"]["properties"]["code"]["enum"];
        for code in [
            "MissingArgument",
            "InvalidSignature",
            "LimitExceeded",
            "MethodNotAllowed",
        ] {
            assert!(
                codes.as_array().unwrap().iter().any(|c| c == code),
                "{code}"
            );
        }
        assert_eq!(
            doc["paths"]["/admin/reload"]["post"]["security"],
            serde_json::json!([{ "adminToken": [] }])
        );
        assert_eq!(
            doc["components"]["securitySchemes"]["adminToken"]["scheme"],
            "bearer"
        );
        check_refs(&doc, &doc);
    })
    .await;
}

/// Parameters with `$ref`s replaced by what they point at.
fn resolve_all(doc: &Value, params: &Value) -> Vec<Value> {
    params
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p["$ref"].as_str() {
            Some(r) => doc.pointer(&r[1..]).expect("reference resolves").clone(),
            None => p.clone(),
        })
        .collect()
}

fn check_refs(v: &Value, doc: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                let pointer = r.strip_prefix('#').expect("only local references");
                assert!(doc.pointer(pointer).is_some(), "dangling {r}");
            }
            m.values().for_each(|x| check_refs(x, doc));
        }
        Value::Array(a) => a.iter().for_each(|x| check_refs(x, doc)),
        _ => {}
    }
}

/// Every route is served by a handler (whatever it says to a bare request, it is not the 404 of
/// the fallback); an unknown path is a JSON 404 and a wrong method a JSON 405.
#[tokio::test]
async fn every_route_is_routed() {
    bounded(async {
        let server = start(Source::lab()).await;
        let http = client();
        for (method, path) in ROUTES {
            let path = path.replace("{account_id}", "100000");
            let req = match *method {
                "GET" => http.get(url(&server, &path)),
                "POST" => http.post(url(&server, &path)),
                "DELETE" => http.delete(url(&server, &path)),
                other => panic!("a {other} route: teach this test its method"),
            };
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let body = resp.bytes().await.unwrap();
            let not_found =
                serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["code"] == "NotFound");
            assert!(
                status != StatusCode::NOT_FOUND && !not_found,
                "{method} {path} is not routed: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }

        for path in ["/no-such-endpoint", "/100000/no-such-endpoint", "/a/b/c"] {
            let resp = get(&server, path).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(resp.headers()["content-type"], "application/json");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["code"], "NotFound", "{path}");
        }

        let resp = http.put(url(&server, "/healthz")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "MethodNotAllowed");
    })
    .await;
}

/// The documented schemas fit what the handlers answer: every required field is there and every
/// field there is documented (one level deep, items of arrays of objects included).
#[tokio::test]
async fn documented_schemas_match_live_answers() {
    bounded(async {
        let server = start(Source::lab()).await;
        let doc = get_json(&server, "/openapi.json").await;
        let schema = |name: &str| doc["components"]["schemas"][name].clone();
        let cases = [
            (
                "/100000/d?host=object.yourcompany.com&ip=127.0.10.1&query=4,6&explain=1",
                schema("AlibabaAnswer"),
            ),
            ("/100000/d?host=www.yourcompany.com", schema("AlibabaAnswer")),
            (
                "/100000/resolve?host=object.yourcompany.com,www.yourcompany.com&query=4,6&ip=127.0.10.1",
                schema("AlibabaBatch"),
            ),
            (
                "/resolve?name=object.yourcompany.com&edns_client_subnet=127.0.10.0/24&explain=1",
                schema("JsonAnswer"),
            ),
            ("/resolve?name=nothere.yourcompany.com", schema("JsonAnswer")),
            ("/healthz", schema("Health")),
        ];
        for (path, schema) in cases {
            let body = get_json(&server, path).await;
            fits(&body, &schema, &doc, path);
        }
        let entry = &schema("AlibabaBatch")["properties"]["dns"]["items"];
        let batch = get_json(&server, "/100000/resolve?host=www.yourcompany.com&query=4,6").await;
        let entries = batch["dns"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{batch}");
        for e in entries {
            fits(e, entry, &doc, "a batch entry");
        }
    })
    .await;
}

fn fits(body: &Value, schema: &Value, doc: &Value, what: &str) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => doc.pointer(&r[1..]).unwrap(),
        None => schema,
    };
    let obj = body.as_object().unwrap_or_else(|| panic!("{what}: {body}"));
    let props = schema["properties"].as_object().unwrap();
    for req in schema["required"].as_array().into_iter().flatten() {
        let req = req.as_str().unwrap();
        assert!(obj.contains_key(req), "{what}: no {req} in {body}");
    }
    for (k, v) in obj {
        let p = props
            .get(k)
            .unwrap_or_else(|| panic!("{what}: {k} is not documented"));
        if let (Some(items), Some(arr)) = (p["items"].as_object(), v.as_array())
            && (items.contains_key("properties") || items.contains_key("$ref"))
        {
            for x in arr {
                fits(x, &p["items"], doc, &format!("{what} {k}[]"));
            }
        }
    }
}
