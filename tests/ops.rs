//! Runtime control end to end (issue 16): a region drained through `gslbd ctl` while queries run,
//! answers moving to the next region (dig with the lab carriers' client subnets), `explain`
//! naming the override, the audit file holding the entry, a restart keeping it, undrain restoring;
//! the same through the HTTP API with and without the token; a carrier line drained (the UDP fast
//! path's carrier prefixes follow), an address weighted to 0, and an override expiring by itself.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gslbd::config::{Origin, Source};
use serde_json::{Value, json};

const TOKEN: &str = "lab-admin-token";
const OBJECT: &str = "object.yourcompany.com";
/// The lab's China Mobile client network in Beijing: line yd, region bj (geo/lab.csv).
const MOBILE_BJ: &str = "127.0.10.0/24";

fn source(path: &Path) -> Source {
    Source {
        origin: Origin::File(path.to_path_buf()),
        port: None,
        udp_fast_path: None,
        udp_workers: Some(1),
    }
}

/// The lab with its state and audit files beside the config.
fn lab(dir: &Path) -> PathBuf {
    lab_on_disk(
        dir,
        "",
        "[admin]\noverrides_state = \"overrides.json\"\naudit_log = \"audit.jsonl\"\n",
    )
}

/// The A records dig gets for `name` from `subnet` (ECS), sorted.
fn dig_a(dns: SocketAddr, name: &str, subnet: &str) -> Vec<String> {
    let out = tool("dig")
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string()])
        .args(["+norec", "+time=2", "+tries=2", "+short"])
        .arg(format!("+subnet={subnet}"))
        .arg(name)
        .output()
        .expect("run dig");
    assert!(out.status.success(), "dig: {out:?}");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn pool(first: u8) -> Vec<String> {
    let mut v: Vec<String> = (first..first + 6)
        .map(|i| format!("203.0.113.{i}"))
        .collect();
    v.sort();
    v
}

/// `gslbd ctl ...` against the server's HTTP address; (success, stdout, stderr).
fn ctl(http: SocketAddr, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gslbd"));
    cmd.arg("ctl").args(["--url", &format!("http://{http}")]);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    cmd.args(args)
        .env("USER", "ops-test")
        .env_remove("GSLBD_ADMIN_TOKEN")
        .env_remove("GSLBD_URL")
        .stdin(Stdio::null());
    let out = cmd.output().expect("run gslbd ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Queries for as long as the guard lives, counting answers: the drain happens under load.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(dns: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let (s, a) = (stop.clone(), answered.clone());
        let q = Q::new(OBJECT, 1)
            .ecs("127.0.10.0".parse().unwrap(), 24)
            .bytes();
        let task = tokio::spawn(async move {
            // Bounded in count and time whatever happens.
            let deadline = Instant::now() + Duration::from_secs(60);
            for _ in 0..200_000 {
                if s.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                if udp_raw(dns, &q).await.is_some() {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Load {
            stop,
            answered,
            task: Some(task),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn audit_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("lab/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_a_region_with_ctl_keep_it_over_restart_and_undrain() {
    let dir = tempfile::tempdir().unwrap();
    let config = lab(dir.path());
    let server = start(source(&config)).await;
    let dns = server.addr("all", "udp");
    let http = server.addr("http", "http");
    assert_eq!(
        dig_a(dns, OBJECT, MOBILE_BJ),
        pool(41),
        "yd line, region bj"
    );

    let load = Load::start(dns);
    let (ok, out, err) = ctl(
        http,
        Some(TOKEN),
        &[
            "drain",
            "region",
            "bj",
            "--rule",
            "object.yd.yourcompany.com",
            "--reason",
            "power work",
        ],
    );
    assert!(ok, "ctl drain: {out}{err}");
    // The next answers come from the next region by distance (Shanghai), with no reload.
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), pool(51), "bj drained: sh");
    // Another rule's bj pool is untouched (the drain names one rule).
    assert_eq!(
        dig_a(dns, "object.bgp.yourcompany.com", MOBILE_BJ),
        pool(11)
    );
    let before = load.answered.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        load.answered.load(Ordering::Relaxed) > before,
        "queries keep being answered during and after the drain"
    );
    drop(load);

    // explain names the override, who and why.
    let (ok, text, err) = ctl(
        http,
        Some(TOKEN),
        &["explain", OBJECT, "--client", "127.0.10.1"],
    );
    assert!(ok, "{err}");
    assert!(
        text.contains(
            "failover: region bj: drained by ops-test@api:127.0.0.1: power work, until removed"
        ),
        "{text}"
    );
    assert!(text.contains("region sh (Shanghai)"), "{text}");

    // The audit file has the entry.
    let audit = audit_lines(dir.path());
    let entry = audit
        .iter()
        .find(|e| e["event"] == "override")
        .expect("an override event");
    assert_eq!(entry["op"], "add");
    assert_eq!(entry["who"], "ops-test@api:127.0.0.1");
    assert_eq!(entry["override"]["region"], "bj");
    assert_eq!(entry["override"]["reason"], "power work");
    assert!(entry["time"].as_u64().unwrap() > 1_700_000_000);

    // A reload keeps it, and is audited with the configuration's hash.
    server.handle.reload().expect("reload");
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), pool(51), "a reload keeps it");
    let audit = audit_lines(dir.path());
    let reload = audit.iter().find(|e| e["event"] == "reload").unwrap();
    assert_eq!(reload["result"], "ok");
    assert_eq!(reload["config_before"], reload["config_after"]);
    assert_eq!(reload["config_before"].as_str().unwrap().len(), 16);

    // A restart keeps it (the state file).
    drop(server);
    let server = start(source(&config)).await;
    let dns = server.addr("all", "udp");
    let http = server.addr("http", "http");
    assert_eq!(
        dig_a(dns, OBJECT, MOBILE_BJ),
        pool(51),
        "a restart keeps it"
    );
    let (ok, list, _) = ctl(http, Some(TOKEN), &["overrides"]);
    assert!(ok);
    assert!(
        list.contains("region bj in object.yd.yourcompany.com"),
        "{list}"
    );

    // Undrain restores, and the file no longer holds it.
    let (ok, out, err) = ctl(
        http,
        Some(TOKEN),
        &[
            "undrain",
            "region",
            "bj",
            "--rule",
            "object.yd.yourcompany.com.",
        ],
    );
    assert!(ok, "{out}{err}");
    assert_eq!(
        dig_a(dns, OBJECT, MOBILE_BJ),
        pool(41),
        "undrained: bj again"
    );
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("lab/overrides.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["overrides"], json!([]));
    assert!(
        audit_lines(dir.path())
            .iter()
            .any(|e| e["event"] == "override" && e["op"] == "remove")
    );

    // Nothing to undrain: a clear error, exit 1.
    let (ok, _, err) = ctl(http, Some(TOKEN), &["undrain", "region", "bj"]);
    assert!(!ok);
    assert!(err.contains("404 NoSuchOverride"), "{err}");
    // Bad input: a clear error naming the problem, nothing changed.
    let (ok, _, err) = ctl(http, Some(TOKEN), &["drain", "region", "mars"]);
    assert!(!ok);
    assert!(
        err.contains("400 InvalidArgument: region mars has no pool"),
        "{err}"
    );
    // No token, wrong token.
    let (ok, _, err) = ctl(http, None, &["overrides"]);
    assert!(!ok && err.contains("401 Unauthorized"), "{err}");
    let (ok, _, err) = ctl(http, Some("guess"), &["overrides"]);
    assert!(!ok && err.contains("401 Unauthorized"), "{err}");
}

async fn api(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_drains_lines_weighs_addresses_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let config = lab(dir.path());
    // The bgp line's answers live 5 s instead of 30 while degraded.
    let rule = "name = \"object.bgp.yourcompany.com.\"\nttl = 30\n";
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(rule), "zones/lab.toml's bgp rule moved");
    std::fs::write(
        &config,
        text.replace(rule, &format!("{rule}ttl_degraded = 5\n")),
    )
    .unwrap();
    let server = start(source(&config)).await;
    let dns = server.addr("all", "udp");
    let base = format!("http://{}", server.addr("http", "http"));
    let bgp_ttl = || async {
        let q = Q::new("object.bgp.yourcompany.com.", 1).ecs("127.0.10.0".parse().unwrap(), 24);
        let reply = udp_raw(dns, &q.bytes()).await.expect("an answer");
        let m = hickory_proto::op::Message::from_vec(&reply).unwrap();
        m.answers.iter().map(|r| r.ttl).min().unwrap()
    };
    assert_eq!(bgp_ttl().await, 30, "healthy: the rule's ttl");
    let client = reqwest::Client::new();
    let post = |body: Value, token: Option<&'static str>| {
        api(
            &client,
            reqwest::Method::POST,
            format!("{base}/admin/overrides"),
            token,
            Some(body),
        )
    };

    // Without the token: 401, and nothing changed.
    let (status, v) = post(json!({"line": "mobile", "action": "drain"}), None).await;
    assert_eq!((status, v["code"].as_str()), (401, Some("Unauthorized")));
    let (status, _) = post(json!({"line": "mobile", "action": "drain"}), Some("nope")).await;
    assert_eq!(status, 401);
    // Asked twice so the UDP fast path holds the carrier hop as a prefix.
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), pool(41));
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), pool(41));

    // Drain the mobile line: its clients get the default line (bgp), bj pool of that rule.
    let (status, v) = post(
        json!({"line": "mobile", "action": "drain", "reason": "peering down"}),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let line_id = v["override"]["id"].as_u64().unwrap();
    assert_eq!(
        dig_a(dns, OBJECT, MOBILE_BJ),
        pool(11),
        "mobile drained: bgp line"
    );
    assert_eq!(
        dig_a(dns, OBJECT, MOBILE_BJ),
        pool(11),
        "and again (fast path)"
    );
    // Telecom clients (Shanghai) are not affected.
    assert_eq!(dig_a(dns, OBJECT, "127.0.11.0/24"), pool(81));

    // Weight 0 on one bgp/bj member: drained but checked, five left.
    let (status, v) = post(
        json!({"address": "203.0.113.11", "region": "bj", "rule": "object.bgp.yourcompany.com",
               "action": "weight", "weight": 0}),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let five: Vec<String> = pool(11)
        .into_iter()
        .filter(|a| a != "203.0.113.11")
        .collect();
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), five);
    assert_eq!(bgp_ttl().await, 5, "a member out: ttl_degraded");

    // /admin/health shows the override on the member.
    let (status, v) = api(
        &client,
        reqwest::Method::GET,
        format!("{base}/admin/health?rule=object.bgp.yourcompany.com"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let m = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["address"] == "203.0.113.11")
        .unwrap();
    assert_eq!(m["override"]["action"], "weight");
    assert_eq!(m["state"], "up");

    // Remove the line drain by id: back to the yd line, bj pool.
    let (status, v) = api(
        &client,
        reqwest::Method::DELETE,
        format!("{base}/admin/overrides?id={line_id}"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), pool(41));

    // An override with an expiry goes away by itself.
    let (status, v) = post(
        json!({"region": "bj", "action": "drain", "expires_in": 1}),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), pool(51));
    let deadline = Instant::now() + Duration::from_secs(10);
    while dig_a(dns, OBJECT, MOBILE_BJ) != pool(41) {
        assert!(Instant::now() < deadline, "the drain did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, v) = api(
        &client,
        reqwest::Method::GET,
        format!("{base}/admin/audit?limit=1000"),
        Some(TOKEN),
        None,
    )
    .await;
    let events = v["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["op"] == "remove" && e["who"] == "expiry"),
        "{v}"
    );

    // Bad bodies: 400 with the reason.
    for (body, want) in [
        (
            json!({"address": "192.0.2.77", "action": "drain"}),
            "not a member",
        ),
        (
            json!({"region": "bj", "action": "sideways"}),
            "unknown variant",
        ),
        (json!({"line": "mobile", "action": "up"}), "drain only"),
    ] {
        let (status, v) = post(body.clone(), Some(TOKEN)).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(want), "{body}: {v}");
    }

    // With no admin_token configured the endpoints answer 403 (after a reload without it).
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("admin_token = \"lab-admin-token\"", "");
    std::fs::write(&config, text).unwrap();
    server.handle.reload().expect("reload");
    let (status, v) = post(json!({"region": "bj", "action": "drain"}), Some(TOKEN)).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (403, Some("Forbidden")),
        "{v}"
    );
}

/// Which pool (by its first address's last octet) each of `n` answers came from.
async fn shares(dns: SocketAddr, name: &str, n: usize) -> std::collections::BTreeMap<u8, usize> {
    let mut seen = std::collections::BTreeMap::new();
    let q = Q::new(name, 1)
        .ecs("127.0.10.0".parse().unwrap(), 24)
        .bytes();
    for _ in 0..n {
        let reply = udp_raw(dns, &q).await.expect("an answer");
        let m = hickory_proto::op::Message::from_vec(&reply).unwrap();
        let first = m
            .answers
            .iter()
            .find_map(|r| match &r.data {
                hickory_proto::rr::RData::A(a) => Some(a.0.octets()[3]),
                _ => None,
            })
            .expect("an A record");
        // Pools are 6 consecutive addresses from x1: 41..46 -> 41.
        *seen.entry(first - (first - 1) % 10).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_weights_and_spread_over_many_answers() {
    const N: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let config = lab(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let yd = "name = \"object.yd.yourcompany.com.\"\nttl = 30\n";
    let bgp = "name = \"object.bgp.yourcompany.com.\"\nttl = 30\n";
    assert!(
        text.contains(yd) && text.contains(bgp),
        "zones/lab.toml's rules moved"
    );
    let text = text
        .replace(yd, &format!("{yd}split.bj = {{ bj = 80, sh = 20 }}\n"))
        .replace(bgp, &format!("{bgp}fallback = \"spread\"\n"));
    std::fs::write(&config, text).unwrap();
    let server = start(source(&config)).await;
    let dns = server.addr("all", "udp");
    let yd_name = "object.yd.yourcompany.com.";
    let bgp_name = "object.bgp.yourcompany.com.";

    // 20 % of Beijing's yd answers go to Shanghai (within 5 points: 4 standard deviations).
    let s = shares(dns, yd_name, N).await;
    let sh = s.get(&51).copied().unwrap_or(0) as f64 / N as f64;
    assert_eq!(
        s.get(&41).copied().unwrap_or(0) + s.get(&51).copied().unwrap_or(0),
        N,
        "{s:?}"
    );
    assert!((sh - 0.20).abs() < 0.05, "sh share {sh}: {s:?}");

    let http = server.addr("http", "http");
    let client = reqwest::Client::new();
    let yd = "object.yd.yourcompany.com";

    // A region's weight set at run time replaces its split weight: bj 20 against sh 20 is even.
    let (ok, out, err) = ctl(http, Some(TOKEN), &["weight", "bj", "20", "--rule", yd]);
    assert!(ok, "ctl weight: {out}{err}");
    let s = shares(dns, yd_name, N).await;
    let sh = s.get(&51).copied().unwrap_or(0) as f64 / N as f64;
    assert!(
        (sh - 0.5).abs() < 0.07,
        "sh share {sh} with bj weighted 20: {s:?}"
    );
    let (ok, text, err) = ctl(
        http,
        Some(TOKEN),
        &["explain", OBJECT, "--client", "127.0.10.1"],
    );
    assert!(
        ok && text.contains("weight 20 set by ops-test@api:127.0.0.1"),
        "{text}{err}"
    );
    // Weight 0 takes the region out: every answer from sh.
    let (ok, out, err) = ctl(http, Some(TOKEN), &["weight", "bj", "0", "--rule", yd]);
    assert!(ok, "ctl weight: {out}{err}");
    assert_eq!(shares(dns, yd_name, 50).await.get(&51), Some(&50));
    let (ok, out, err) = ctl(
        http,
        Some(TOKEN),
        &["undrain", "region", "bj", "--rule", yd],
    );
    assert!(ok, "ctl undrain: {out}{err}");

    // bgp, bj drained: with fallback = "spread" its clients go to sh and gz alike (order would
    // send all of them to sh, the nearest).
    let (status, v) = api(
        &client,
        reqwest::Method::POST,
        format!("http://{http}/admin/overrides"),
        Some(TOKEN),
        Some(json!({"region": "bj", "rule": bgp_name, "action": "drain"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let s = shares(dns, bgp_name, N).await;
    let sh = s.get(&21).copied().unwrap_or(0) as f64 / N as f64;
    let gz = s.get(&31).copied().unwrap_or(0) as f64 / N as f64;
    assert_eq!(s.get(&11), None, "bj is drained: {s:?}");
    assert!((sh - 0.5).abs() < 0.07 && (gz - 0.5).abs() < 0.07, "{s:?}");
    // The yd rule (fallback = "order") is not drained and unaffected.
    assert!(shares(dns, yd_name, 50).await.contains_key(&41));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_over_the_admin_socket_drains_and_undrains_without_a_token() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let config = lab_on_disk(dir.path(), "", "[admin]\nsocket = \"admin.sock\"\n");
    let socket = config.parent().unwrap().join("admin.sock");
    // A socket file left by a process that is gone is replaced.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let server = start(source(&config)).await;
    let dns = server.addr("all", "udp");
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "the default mode");

    let ctl_socket = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gslbd"))
            .arg("ctl")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .env("USER", "ops-test")
            .env_remove("GSLBD_ADMIN_TOKEN")
            .env_remove("GSLBD_URL")
            .stdin(Stdio::null())
            .output()
            .expect("run gslbd ctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), pool(41));
    let (ok, out, err) = ctl_socket(&[
        "drain",
        "region",
        "bj",
        "--rule",
        "object.yd.yourcompany.com",
    ]);
    assert!(ok, "ctl --socket drain: {out}{err}");
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), pool(51), "bj drained: sh");
    // The audit trail names the socket and the peer's uid (SO_PEERCRED).
    let uid = meta_uid(&socket);
    let (ok, out, err) = ctl_socket(&["overrides"]);
    assert!(
        ok && out.contains(&format!("ops-test@socket:uid={uid}")),
        "{out}{err}"
    );
    let (ok, out, err) = ctl_socket(&[
        "undrain",
        "region",
        "bj",
        "--rule",
        "object.yd.yourcompany.com",
    ]);
    assert!(ok, "ctl --socket undrain: {out}{err}");
    assert_eq!(dig_a(dns, OBJECT, MOBILE_BJ), pool(41), "undrained");
    // The TCP listener still wants the token.
    let http = server.addr("http", "http");
    let (ok, _, err) = ctl(http, None, &["overrides"]);
    assert!(!ok && err.contains("401 Unauthorized"), "{err}");

    // The socket is bound at start: a reload that changes its mode is refused, and it keeps
    // serving as it was.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}socket_mode = 0o660\n")).unwrap();
    let (ok, _, err) = ctl_socket(&["reload"]);
    assert!(
        !ok && err.contains("[admin] socket (path or mode) changed: restart"),
        "{err}"
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::write(&config, text).unwrap();

    // A second server cannot take a socket that answers.
    let mut again = source(&config);
    again.port = Some(0);
    let second = gslbd::server::Server::bind(again).await;
    let e = second.err().expect("the socket is in use").to_string();
    assert!(
        e.contains("admin.sock") && e.contains("another server answers"),
        "{e}"
    );
}

/// The owner of `path` (this test's uid, who made the socket).
fn meta_uid(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().uid()
}
