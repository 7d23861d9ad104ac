//! What an operator watches (issue 16 items 5 and 6): `/metrics` as Prometheus scrapes it from the
//! lab (build info, process figures, per-member state and weight, overrides), checked against the
//! Grafana dashboard in deploy/ so that every metric the dashboard plots exists.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "lab-admin-token";

/// The metric names a PromQL expression reads: identifiers outside strings, label matchers,
/// range selectors and grouping lists that are neither functions nor operators nor numbers.
/// (`label_values(METRIC, LABEL)` in a template variable reads METRIC.)
fn metric_names(expr: &str) -> Vec<String> {
    let expr = match expr.strip_prefix("label_values(") {
        Some(rest) => rest.split([',', ')']).next().unwrap_or(""),
        None => expr,
    };
    // Operators, and the aggregations (their grouping may come before the parenthesis:
    // `sum by (x) (...)`).
    let keywords = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let grouping = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_to = |i: usize, close: u8| {
        let mut j = i;
        while j < b.len() && b[j] != close {
            if b[j] == b'"' {
                j += 1;
                while j < b.len() && b[j] != b'"' {
                    j += 1 + usize::from(b[j] == b'\\');
                }
            }
            j += 1;
        }
        j + 1
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += 1 + usize::from(b[i] == b'\\');
                }
                i += 1;
            }
            b'{' => i = skip_to(i, b'}'),
            b'[' => i = skip_to(i, b']'),
            b'$' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
            }
            b'0'..=b'9' | b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j] == b' ' {
                    j += 1;
                }
                if grouping.contains(&word) {
                    if b.get(j) == Some(&b'(') {
                        i = skip_to(j, b')');
                    }
                } else if b.get(j) == Some(&b'(') || keywords.contains(&word) {
                    // A function call or an operator.
                } else {
                    out.push(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Every PromQL expression of a Grafana dashboard: panel targets' `expr` and template variables'
/// queries.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::Object(q)) => {
                        if let Some(Value::String(s)) = q.get("query") {
                            out.push(s.clone());
                        }
                    }
                    ("definition", Value::String(s)) => out.push(s.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// The metric names a /metrics page exports: every `# TYPE` (a histogram's `_bucket`, `_sum`
/// and `_count` series with it) and every sample's name.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                names.insert(name.to_string());
                if kind == "histogram" {
                    for s in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{s}"));
                    }
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// The value of the sample `series` (name with labels, as rendered) on a /metrics page.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn promql_names_are_found() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le, transport) (rate(a_bucket{x=~\"$i\",s=\"b c\"}[5m]))) / on(instance) group_left b_total offset 5m"
        ),
        ["a_bucket", "b_total"]
    );
    assert_eq!(
        metric_names("label_values(gslbd_build_info, instance)"),
        ["gslbd_build_info"]
    );
    assert_eq!(metric_names("time() - up{a=\"1\"} / 1e6"), ["up"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_plots_only_exported_metrics_and_members_show_their_overrides() {
    let server = start_lab().await;
    let base = format!("http://{}", server.addr("http", "http"));
    let client = reqwest::Client::new();
    let scrape = || async {
        let resp = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    };
    // Some traffic, so counters with labels per transport have series too.
    let _ = ask(
        &server,
        "all",
        Via::Udp,
        &Q::new("object.yourcompany.com.", 1),
    )
    .await;
    let text = scrape().await;
    let have = exported(&text);

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-gslbd.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .expect("deploy/grafana-gslbd.json is JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    assert!(
        used.len() >= 15,
        "too few metrics found in the dashboard: {used:?}"
    );
    let missing: Vec<&String> = used.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "deploy/grafana-gslbd.json uses metrics /metrics does not export: {missing:?}"
    );

    // The build and the process.
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.lines().any(|l| l.starts_with("gslbd_build_info{")
            && l.contains(&format!("version=\"{version}\""))
            && l.ends_with(" 1")),
        "{text}"
    );
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|v| v > 1e6));
    // This process has the server's sockets open, at least one per lab listener.
    assert!(sample(&text, "process_open_fds").is_some_and(|v| v >= 6.0));
    assert!(sample(&text, "process_threads").is_some_and(|v| v >= 2.0));
    // CPU time in clock ticks (10 ms): a quick test may not have spent one yet.
    let cpu = sample(&text, "process_cpu_seconds_total").expect("process_cpu_seconds_total");
    assert!(cpu >= 0.0, "{cpu}");

    // Drain one member and force a region down: the per-member gauges and the override gauge
    // follow.
    const RULE: &str = "object.lt.yourcompany.com.";
    let addr = "203.0.113.101";
    let member = |a: &str| format!("{{rule=\"{RULE}\",region=\"bj\",address=\"{a}\"}}");
    assert_eq!(
        sample(&text, &format!("gslbd_member_weight{}", member(addr))),
        Some(1.0),
        "{text}"
    );
    for body in [
        json!({"address": addr, "action": "drain", "reason": "metrics test"}),
        json!({"region": "sh", "rule": RULE, "action": "down"}),
    ] {
        let resp = client
            .post(format!("{base}/admin/overrides"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }
    let text = scrape().await;
    let cpu_later = sample(&text, "process_cpu_seconds_total").unwrap();
    assert!(cpu_later >= cpu, "a counter: {cpu} then {cpu_later}");
    assert_eq!(
        sample(&text, &format!("gslbd_member_weight{}", member(addr))),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "gslbd_member_overridden{{rule=\"{RULE}\",region=\"bj\",address=\"{addr}\",action=\"drain\"}}"
            )
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "gslbd_overrides{target=\"address\",action=\"drain\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "gslbd_overrides{target=\"region\",action=\"down\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "gslbd_overrides{target=\"line\",action=\"drain\"}"),
        Some(0.0)
    );
    // Every member of sh in that rule is out (its region is forced down).
    let sh: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "gslbd_member_weight{{rule=\"{RULE}\",region=\"sh\""
            ))
        })
        .collect();
    assert!(
        !sh.is_empty() && sh.iter().all(|l| l.ends_with(" 0")),
        "{sh:?}"
    );
    // The lab's members are unchecked: up, one series per state.
    assert_eq!(
        sample(
            &text,
            &format!(
                "gslbd_member_state{{rule=\"{RULE}\",region=\"bj\",address=\"{addr}\",state=\"up\"}}"
            )
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_by_rule_region_family_and_line() {
    const N: u64 = 300;
    let server = start_lab().await;
    let dns = server.addr("all", "udp");
    let base = format!("http://{}", server.addr("http", "http"));
    let client = reqwest::Client::new();
    let traffic = || async {
        let resp = client
            .get(format!("{base}/admin/traffic"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()
    };
    let before = traffic().await;
    // China Mobile in Beijing (ECS): the mobile line, then the yd rule's bj pool; A and AAAA.
    let mobile_bj: std::net::IpAddr = "127.0.10.0".parse().unwrap();
    for qtype in [1, 28] {
        let q = Q::new("object.yourcompany.com.", qtype).ecs(mobile_bj, 24);
        for _ in 0..N / 2 {
            udp_raw(dns, &q.bytes()).await.expect("an answer");
        }
    }
    // Over TCP too (one relaxed add on every path).
    let q = Q::new("object.yd.yourcompany.com.", 1).ecs(mobile_bj, 24);
    assert!(tcp_raw(dns, &q.bytes()).await.is_some());
    let after = traffic().await;
    let delta = |path: &[&str]| {
        let get = |v: &Value| path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0);
        get(&after) - get(&before)
    };
    const YD: &str = "object.yd.yourcompany.com";
    assert_eq!(delta(&["rules", YD, "bj", "ipv4"]), N / 2 + 1, "{after}");
    assert_eq!(delta(&["rules", YD, "bj", "ipv6"]), N / 2, "{after}");
    assert_eq!(delta(&["rules", YD, "sh", "ipv4"]), 0, "{after}");
    assert_eq!(delta(&["families", "ipv6"]), N / 2, "{after}");
    assert_eq!(delta(&["families", "ipv4"]), N / 2 + 1, "{after}");
    assert_eq!(delta(&["regions", "bj"]), N + 1, "{after}");
    // The mobile line leads to the yd rule: its answers are that rule's.
    let mobile = &after["lines"]["object.vip.yourcompany.com"]["mobile"];
    assert_eq!(mobile["target"], YD, "{after}");
    assert_eq!(
        delta(&["lines", "object.vip.yourcompany.com", "mobile", "answers"]),
        N + 1,
        "{after}"
    );
    assert_eq!(
        delta(&["lines", "object.vip.yourcompany.com", "telecom", "answers"]),
        0,
        "{after}"
    );
    // The same counters on /metrics.
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series =
        format!("gslbd_gslb_pool_answers_total{{rule=\"{YD}\",region=\"bj\",family=\"ipv6\"}}");
    assert_eq!(
        sample(&text, &series),
        after["rules"][YD]["bj"]["ipv6"].as_f64(),
        "{text}"
    );
}

/// A headless Chromium run that ends within 30 s (killed otherwise, and when the test fails
/// before it ends). It reaches loopback only: every other destination goes to a proxy address
/// on which nothing listens, host names do not resolve, and the background services that would
/// call home are off.
struct Chromium(std::process::Child);

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium(dir: &std::path::Path, args: &[&str]) -> String {
    let out = dir.join(format!("chromium-{}.out", args.len()));
    let mut child = Chromium(
        tool("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--disable-domain-reliability",
                "--no-pings",
                "--proxy-server=http://127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=5000",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .args(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::process::Stdio::null())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start chromium"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "chromium {args:?}: {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chromium {args:?} still running after 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::read_to_string(out).unwrap()
}

/// The opening tags `<TAG ...>` of `dom` that hold every one of `attrs`.
fn tags<'d>(dom: &'d str, tag: &str, attrs: &[&str]) -> Vec<&'d str> {
    dom.match_indices(&format!("<{tag} "))
        .map(|(i, _)| &dom[i..i + dom[i..].find('>').unwrap_or(dom.len() - i)])
        .filter(|t| attrs.iter().all(|a| t.contains(a)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_lab().await;
    let base = format!("http://{}", server.addr("http", "http"));
    let client = reqwest::Client::new();

    // The CSP allows this origin only, and nothing inline.
    for (path, media) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let resp = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(media),
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        let csp = h["content-security-policy"].to_str().unwrap().to_string();
        for want in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(want), "{path}: {csp}");
        }
        for never in [
            "unsafe-inline",
            "unsafe-eval",
            "*",
            "http:",
            "https:",
            "data:",
        ] {
            assert!(!csp.contains(never), "{path}: {csp}");
        }
        let body = resp.text().await.unwrap();
        // No outside assets: nothing the page loads names another origin.
        assert!(
            !body.contains("src=\"http") && !body.contains("href=\"http"),
            "{path}"
        );
    }

    // Drain one member through the API; the page must show it drained.
    const YD: &str = "object.yd.yourcompany.com.";
    let resp = client
        .post(format!("{base}/admin/overrides"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"address": "203.0.113.41", "region": "bj", "rule": YD,
                      "action": "drain", "reason": "ui test"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The token comes in the fragment (never sent to the server); the query string asks the
    // explain box.
    let url = format!("{base}/ui?explain=object.yourcompany.com&ip=127.0.10.1#token={TOKEN}");
    let d = dir.path().to_path_buf();
    let u = url.clone();
    let dom = tokio::task::spawn_blocking(move || chromium(&d, &["--dump-dom", &u]))
        .await
        .unwrap();
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the page did not load its data:\n{dom}"
    );
    // Every region of the lab is a dot, with its state and answers.
    for region in ["bj", "sh", "gz", "hk", "sv"] {
        let dots = tags(
            &dom,
            "circle",
            &[
                &format!("data-region=\"{region}\""),
                "data-state=\"",
                "data-answers=\"",
            ],
        );
        assert_eq!(dots.len(), 1, "region {region}:\n{dom}");
    }
    // bj has a drained member: degraded; sh is whole.
    assert_eq!(
        tags(
            &dom,
            "circle",
            &["data-region=\"bj\"", "data-state=\"degraded\""]
        )
        .len(),
        1
    );
    assert_eq!(
        tags(&dom, "circle", &["data-region=\"sh\"", "data-state=\"up\""]).len(),
        1
    );
    // The drained member in its pool; its neighbour up.
    let rule_at = dom
        .find(&format!("data-rule=\"{YD}\""))
        .expect("the yd rule is drawn");
    let rule_part = &dom[rule_at..];
    let rule_part = &rule_part[..rule_part[1..]
        .find("data-rule=")
        .map_or(rule_part.len(), |i| i + 1)];
    assert_eq!(
        tags(
            rule_part,
            "tr",
            &[
                "data-address=\"203.0.113.41\"",
                "data-region=\"bj\"",
                "data-state=\"drained\""
            ]
        )
        .len(),
        1,
        "{rule_part}"
    );
    assert_eq!(
        tags(
            rule_part,
            "tr",
            &["data-address=\"203.0.113.42\"", "data-state=\"up\""]
        )
        .len(),
        1,
        "{rule_part}"
    );
    assert!(
        rule_part.contains("drained by ui test") || rule_part.contains(": ui test"),
        "{rule_part}"
    );
    // With the token, the member can be put back from the page.
    assert!(rule_part.contains(">undrain</button>"), "{rule_part}");
    // The carrier rule's lines.
    assert_eq!(tags(&dom, "tr", &["data-line=\"mobile\""]).len(), 1);
    // The explain box answered, hop by hop: the mobile line, then Beijing.
    let explained = tags(&dom, "pre", &["id=\"explain-result\"", "data-done=\"1\""]);
    assert_eq!(explained.len(), 1, "{dom}");
    let at = dom.find("id=\"explain-result\"").unwrap();
    let result = &dom[at..at + dom[at..].find("</pre>").unwrap()];
    assert!(result.contains("object.yd.yourcompany.com"), "{result}");
    assert!(result.contains("region bj (Beijing)"), "{result}");
    // The token left the address bar, and never reached the server in the query.
    assert!(!dom.contains(TOKEN), "the token is in the page");

    // A screenshot for people, kept in the test's folder.
    let shot = dir.path().join("ui.png");
    let arg = format!("--screenshot={}", shot.display());
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || chromium(&d, &[&arg, "--window-size=1280,1600", &url]))
        .await
        .unwrap();
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
