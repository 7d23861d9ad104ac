//! The HTTPDNS dialects of the vendors' current SDKs against the lab, with crypto that is not
//! ours: requests are built and answers opened by tests/data/httpdns_sdk.py (the SDKs' rules,
//! Python `cryptography`) or by `openssl enc`; answers are read with the field names and the
//! regular expressions the SDKs use, and compared with DNS over UDP carrying the client in ECS
//! for the 1,000 (name, client) pairs of tests/httpdns_parity.rs.
//!
//! - Alibaba `/{account}/ss` (what an SDK asks first) and `/v2/d` (m = 0, 1, 2; HMAC-SHA256).
//! - Tencent DNSPod D+ `/d` with `alg=aes` / `alg=des`, the token form, `/conf`.

mod common;

use common::{cdn_norm as norm, lab_clients as clients, sorted};

use std::net::IpAddr;
use std::path::PathBuf;

use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::{Record, RecordType};
use serde_json::{Value, json};

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

/// The lab's account with every dialect's keys (zones/lab.toml).
const ACCOUNT: &str = "100000";
const SECRET: &str = "lab-secret-100000";
const AES_HEX: &str = "000102030405060708090a0b0c0d0e0f";
const DNSPOD_KEY: &str = "lab-dnspod-key";

fn addrs(records: &[Record], t: RecordType) -> Vec<String> {
    sorted(
        records
            .iter()
            .filter(|r| r.record_type() == t)
            .map(|r| norm(&r.data.to_string()))
            .collect(),
    )
}

/// The A and AAAA answers UDP gives with the client in ECS, and the smallest TTL of each.
async fn udp_answers(
    server: &TestServer,
    name: &str,
    client: IpAddr,
) -> (Vec<String>, Vec<String>, Option<u32>, Option<u32>) {
    let full = if client.is_ipv4() { 32 } else { 128 };
    let mut out = Vec::new();
    for (qtype, t) in [(1, RecordType::A), (28, RecordType::AAAA)] {
        let q = Q::new(name, qtype).ecs(client, full);
        let bytes = udp_raw(server.addr("all", "udp"), &q.bytes())
            .await
            .expect("DNS reply");
        let m = Message::from_vec(&bytes).unwrap();
        // The TTL to cache for: the smallest over the answer (CNAMEs of the chain included),
        // compared only when there are addresses.
        let ttl = m
            .answers
            .iter()
            .any(|r| r.record_type() == t)
            .then(|| m.answers.iter().map(|r| r.ttl).min())
            .flatten();
        out.push((addrs(&m.answers, t), ttl));
    }
    let (v6, t6) = out.pop().unwrap();
    let (v4, t4) = out.pop().unwrap();
    (v4, v6, t4, t6)
}

fn json_strings(v: &Value) -> Vec<String> {
    sorted(
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| norm(s.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn script() -> PathBuf {
    data("httpdns_sdk.py")
}

/// Runs one op of tests/data/httpdns_sdk.py over `items`.
fn sdk(op: &str, items: Vec<Value>) -> Vec<Value> {
    use std::io::Write;
    let mut child = tool("python3")
        .arg(script())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = json!({ "op": op, "items": items }).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "httpdns_sdk.py {op}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `/{account}/ss` answers what `UpdateRegionServerResponse.fromResponse` reads: an enabled
/// service whose addresses and ports are where this server listens.
#[tokio::test]
async fn alibaba_ss_gives_what_the_sdk_starts_with() {
    let server = start_lab().await;
    let http = server.addr("http", "http");
    let web = reqwest::Client::new();
    let r = web
        .get(format!(
            "http://{http}/{ACCOUNT}/ss?platform=android&sdk_version=2.6.5&region=global"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_ne!(v["service_status"], "disable", "{v}");
    assert_eq!(v["service_ip"], json!([http.ip().to_string()]), "{v}");
    assert_eq!(v["service_ip_port"], json!([http.port()]), "{v}");
    assert!(
        v["service_ipv6"].is_array() && v["service_ipv6_port"].is_array(),
        "{v}"
    );
    // The service it names answers the SDK's next request.
    let ip = v["service_ip"][0].as_str().unwrap();
    let port = v["service_ip_port"][0].as_u64().unwrap();
    let next: Value = web
        .get(format!(
            "http://{ip}:{port}/v2/d?id={ACCOUNT}&m=0&dn=mail2.yourcompany.com&v=1.0"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["code"], "success", "{next}");

    let bad = web
        .get(format!("http://{http}/nosuch/ss"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
    let e: Value = bad.json().await.unwrap();
    assert_eq!(e["code"], "InvalidAccount");
}

/// `/v2/d` for 1,000 pairs, a third each plain, AES-CBC and AES-GCM, all signed (HMAC-SHA256),
/// made and opened by the SDK's rules in Python: the addresses are UDP's with the client in ECS.
#[tokio::test]
async fn alibaba_v2_agrees_with_udp_on_1000_pairs() {
    let server = start_lab().await;
    let http = format!("http://{}", server.addr("http", "http"));
    let web = reqwest::Client::new();
    let exp = unix_now() + 600;
    let mut pairs = Vec::new();
    let mut items = Vec::new();
    for name in NAMES {
        for client in clients(100) {
            let mode = pairs.len() % 3;
            items.push(json!({
                "id": ACCOUNT, "mode": mode, "dn": name.trim_end_matches('.'), "q": "4,6",
                "cip": client.to_string(), "exp": exp, "secret": SECRET, "aes_key_hex": AES_HEX,
            }));
            pairs.push((*name, client, mode));
        }
    }
    let queries = sdk("alibaba_request", items);
    let mut bodies = Vec::new();
    for q in &queries {
        let r = web
            .get(format!("{http}/v2/d?{}", q.as_str().unwrap()))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "{q}: {body}");
        bodies.push(json!({ "body": body, "aes_key_hex": AES_HEX }));
    }
    let answers = sdk("alibaba_answer", bodies);
    let mut compared = 0;
    for ((name, client, mode), got) in pairs.iter().zip(&answers) {
        let what = format!("{name} for {client} (m={mode})");
        assert_eq!(got["mode"], mode.to_string(), "{what}");
        let data = &got["data"];
        assert_eq!(data["cip"], client.to_string(), "{what}: cip");
        let answer = &data["answers"][0];
        assert_eq!(answer["dn"], name.trim_end_matches('.'), "{what}");
        let (v4, v6, t4, t6) = udp_answers(&server, name, *client).await;
        assert_eq!(json_strings(&answer["v4"]["ips"]), v4, "{what}: v4\n{data}");
        assert_eq!(json_strings(&answer["v6"]["ips"]), v6, "{what}: v6\n{data}");
        if let Some(t) = t4 {
            assert_eq!(answer["v4"]["ttl"], t, "{what}: v4 ttl");
        }
        if let Some(t) = t6 {
            assert_eq!(answer["v6"]["ttl"], t, "{what}: v6 ttl");
        }
        compared += 1;
    }
    assert_eq!(compared, 1000);
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = tool("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// m=1 with `openssl enc -aes-128-cbc` on both sides (unsigned: the lab account allows it).
#[tokio::test]
async fn alibaba_v2_cbc_made_by_openssl() {
    let server = start_lab().await;
    let http = format!("http://{}", server.addr("http", "http"));
    let iv = "0f0e0d0c0b0a09080706050403020100";
    let plain = br#"{"dn":"object.yourcompany.com","q":"4","cip":"127.0.11.9"}"#;
    let sealed = openssl(&["enc", "-aes-128-cbc", "-K", AES_HEX, "-iv", iv], plain);
    let enc = format!("{iv}{}", hex(&sealed));
    let v: Value = reqwest::get(format!("{http}/v2/d?id={ACCOUNT}&m=1&enc={enc}&v=1.0"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["code"], "success", "{v}");
    assert_eq!(v["mode"], "1");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["data"].as_str().unwrap())
        .unwrap();
    let (riv, body) = raw.split_at(16);
    let opened = openssl(
        &["enc", "-d", "-aes-128-cbc", "-K", AES_HEX, "-iv", &hex(riv)],
        body,
    );
    let data: Value = serde_json::from_slice(&opened).unwrap();
    let client: IpAddr = "127.0.11.9".parse().unwrap();
    let (v4, _, _, _) = udp_answers(&server, "object.yourcompany.com.", client).await;
    assert_eq!(json_strings(&data["answers"][0]["v4"]["ips"]), v4, "{data}");
    assert!(data["answers"][0].get("v6").is_none(), "q=4 only: {data}");
}

/// The vendor's error codes where the SDK reads them (`code`).
#[tokio::test]
async fn alibaba_v2_errors_use_the_vendors_codes() {
    let server = start_lab().await;
    let http = format!("http://{}", server.addr("http", "http"));
    let now = unix_now();
    let make = |id: &str, exp: u64, secret: &str| json!({ "id": id, "mode": 0, "dn": "mail2.yourcompany.com", "exp": exp, "secret": secret });
    let q = sdk(
        "alibaba_request",
        vec![
            make(ACCOUNT, now + 600, SECRET),
            make(ACCOUNT, now + 600, "not-the-secret"),
            make(ACCOUNT, now - 10, SECRET),
            make(ACCOUNT, now + 10 * 86400, SECRET),
            make("139450", now + 600, "lab-secret-139450"),
        ],
    );
    let get = |query: String| {
        let http = http.clone();
        async move {
            let r = reqwest::get(format!("{http}/v2/d?{query}")).await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let s = |v: &Value| v.as_str().unwrap().to_string();
    assert_eq!(get(s(&q[0])).await.1["code"], "success");
    for (i, (status, code)) in [
        (1, (403, "InvalidSignature")),
        (2, (403, "SignatureExpired")),
        (3, (403, "InvalidDuration")),
    ] {
        let (st, v) = get(s(&q[i])).await;
        assert_eq!((st, v["code"].as_str().unwrap()), (status, code), "{v}");
    }
    // A signed-only account: its signed request passes, the same unsigned one does not.
    assert_eq!(get(s(&q[4])).await.1["code"], "success");
    let (st, v) = get("id=139450&m=0&dn=mail2.yourcompany.com&v=1.0".into()).await;
    assert_eq!(
        (st, v["code"].as_str().unwrap()),
        (403, "UnsignedInterfaceDisabled")
    );
    let (st, v) = get("id=nosuch&m=0&dn=a.com".into()).await;
    assert_eq!((st, v["code"].as_str().unwrap()), (403, "InvalidAccount"));
    let (st, v) = get(format!("id={ACCOUNT}&m=2&enc=00112233")).await;
    assert_eq!((st, v["code"].as_str().unwrap()), (400, "InvalidArgument"));
    let (st, v) = get(format!("id={ACCOUNT}&m=0&dn=bad..name")).await;
    assert_eq!((st, v["code"].as_str().unwrap()), (400, "InvalidHost"));
}

/// Tencent `alg=aes` for 1,000 pairs (`type=addrs&ttl=1&clientip=1`, as the SDK asks), made and
/// opened by the SDK's rules in Python and read with its pattern `(.*),(.*)-(.*),(.*)\|(.*)`.
#[tokio::test]
async fn dnspod_aes_agrees_with_udp_on_1000_pairs() {
    let server = start_lab().await;
    let http = format!("http://{}", server.addr("http", "http"));
    let web = reqwest::Client::new();
    let mut pairs = Vec::new();
    let mut items = Vec::new();
    for name in NAMES {
        for client in clients(100) {
            items.push(json!({ "key": DNSPOD_KEY, "plain": name.trim_end_matches('.') }));
            pairs.push((*name, client));
        }
    }
    let encrypted = sdk("dnspod_encrypt", items);
    let mut answers = Vec::new();
    for ((_, client), dn) in pairs.iter().zip(&encrypted) {
        let url = format!(
            "{http}/d?dn={}&ip={client}&clientip=1&ttl=1&id={ACCOUNT}&type=addrs&alg=aes",
            dn.as_str().unwrap()
        );
        let r = web.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        answers.push(json!({ "key": DNSPOD_KEY, "hex": body, "addrs": true }));
    }
    let opened = sdk("dnspod_decrypt", answers);
    let split = |s: &Value| -> Vec<String> {
        let s = s.as_str().unwrap();
        if s == "0" {
            return vec![];
        }
        sorted(s.split(';').map(norm).collect())
    };
    for ((name, client), got) in pairs.iter().zip(&opened) {
        let what = format!("{name} for {client}: {}", got["text"]);
        let g = got["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no match"));
        let (v4, v6, t4, t6) = udp_answers(&server, name, *client).await;
        assert_eq!(split(&g[0]), v4, "{what}");
        assert_eq!(split(&g[2]), v6, "{what}");
        if let Some(t) = t4 {
            assert_eq!(g[1], t.to_string(), "{what}");
        }
        if let Some(t) = t6 {
            assert_eq!(g[3], t.to_string(), "{what}");
        }
        assert_eq!(g[4], client.to_string(), "{what}");
    }
    assert_eq!(opened.len(), 1000);
}

/// Tencent `alg=des` with `openssl enc -des-ecb` (the legacy provider) on both sides, the token
/// form in clear, a batch, and `/conf`.
#[tokio::test]
async fn dnspod_des_token_batch_and_conf() {
    let server = start_lab().await;
    let http = format!("http://{}", server.addr("http", "http"));
    let key = hex(&DNSPOD_KEY.as_bytes()[..8]);
    let des = |extra: &[&str], input: &[u8]| {
        let mut args = vec![
            "enc",
            "-des-ecb",
            "-provider",
            "legacy",
            "-provider",
            "default",
            "-K",
            &key,
        ];
        args.extend_from_slice(extra);
        openssl(&args, input)
    };
    let dn = hex(&des(&[], b"object.yourcompany.com"));
    let body = reqwest::get(format!(
        "{http}/d?dn={dn}&ip=127.0.11.9&clientip=1&ttl=1&id={ACCOUNT}&alg=des"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let text = String::from_utf8(des(&["-d"], &unhex(body.trim()))).unwrap();
    let client: IpAddr = "127.0.11.9".parse().unwrap();
    let (v4, _, t4, _) = udp_answers(&server, "object.yourcompany.com.", client).await;
    let (ips, rest) = text.split_once(',').unwrap_or_else(|| panic!("{text}"));
    let (ttl, cip) = rest.split_once('|').unwrap();
    assert_eq!(sorted(ips.split(';').map(norm).collect()), v4, "{text}");
    assert_eq!(Some(ttl.parse::<u32>().unwrap()), t4, "{text}");
    assert_eq!(cip, "127.0.11.9");

    // The token form: in clear; a batch is one `name.:ips,ttl|clientip` line per name.
    let text = reqwest::get(format!(
        "{http}/d?dn=mail2.yourcompany.com,nothere.yourcompany.com&ip=127.0.11.9&clientip=1&ttl=1&id={ACCOUNT}&token=lab-dnspod-token"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("mail2.yourcompany.com.:"), "{text}");
    assert!(
        lines[1].starts_with("nothere.yourcompany.com.:0,"),
        "{text}"
    );
    assert!(lines.iter().all(|l| l.ends_with("|127.0.11.9")), "{text}");
    let wrong = reqwest::get(format!(
        "{http}/d?dn=mail2.yourcompany.com&id={ACCOUNT}&token=nope"
    ))
    .await
    .unwrap();
    assert_eq!(wrong.status(), 403);
    // DES only where an account enables it.
    let no_des = reqwest::get(format!("{http}/d?dn={dn}&id=139450&alg=des"))
        .await
        .unwrap();
    assert_eq!(no_des.status(), 403);

    // /conf: the SDK's `key:value|...` text, encrypted like /d.
    let body = reqwest::get(format!("{http}/conf?id={ACCOUNT}&alg=aes"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let opened = sdk(
        "dnspod_decrypt",
        vec![json!({ "key": DNSPOD_KEY, "hex": body })],
    );
    let conf = opened[0]["text"].as_str().unwrap();
    assert!(conf.contains("|ip:127.0.0.1|"), "{conf}");
    assert!(conf.starts_with("log:0|domain:0|"), "{conf}");
}

/// Google JSON completeness: `ct=application/dns-message` answers in wire format (the answer UDP
/// gives for the same subnet, CD and DO carried), `random_padding` is accepted, `cd` echoes.
#[tokio::test]
async fn google_json_wire_format_cd_do_and_padding() {
    let server = start_lab().await;
    let http = format!("http://{}", server.addr("http", "http"));
    let client: IpAddr = "127.0.11.9".parse().unwrap();
    let r = reqwest::get(format!(
        "{http}/resolve?name=object.yourcompany.com&type=A&edns_client_subnet=127.0.11.9/32\
         &ct=application/dns-message&cd=1&do=1&random_padding=Xq3vPz"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/dns-message"
    );
    let wire = r.bytes().await.unwrap();
    let m = Message::from_vec(&wire).expect("a DNS message");
    assert!(m.checking_disabled, "CD copied (RFC 4035 3.1.6)");
    assert!(
        m.edns.as_ref().unwrap().flags().dnssec_ok,
        "DO echoed (RFC 3225 3)"
    );
    let (v4, _, _, _) = udp_answers(&server, "object.yourcompany.com.", client).await;
    assert_eq!(addrs(&m.answers, RecordType::A), v4);
    assert!(ecs_of(&wire).is_some(), "ECS echoed with its scope");

    let v: Value = reqwest::get(format!(
        "{http}/resolve?name=mail2.yourcompany.com&type=A&cd=1&random_padding=abcdefgh"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["Status"], 0, "{v}");
    assert_eq!(v["CD"], true, "{v}");
    let bad = reqwest::get(format!("{http}/resolve?name=a.com&ct=text/html"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
