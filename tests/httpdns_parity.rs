//! Parity: for 1,000 (name, client address) pairs drawn across the lab's geo data, the HTTPDNS
//! answers (Alibaba `/d`, Google JSON `/resolve`, RFC 8484 DoH) equal the DNS answer to a UDP
//! query carrying that address in ECS. One engine behind every transport, checked, not hoped.

mod common;

use common::{cdn_norm as norm, lab_clients as clients, sorted};

use std::collections::BTreeMap;
use std::net::IpAddr;

use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, Record, RecordType};

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

/// The answer section as sorted "name TTL TYPE data" lines (addresses normalized).
fn dns_lines(records: &[Record]) -> Vec<String> {
    sorted(
        records
            .iter()
            .map(|r| {
                let data = match &r.data {
                    RData::A(a) => norm(&a.0.to_string()),
                    RData::AAAA(a) => a.0.to_string(),
                    other => other.to_string(),
                };
                format!(
                    "{} {} {} {data}",
                    r.name.to_lowercase(),
                    r.ttl,
                    u16::from(r.record_type())
                )
            })
            .collect(),
    )
}

fn addrs(records: &[Record], t: RecordType) -> Vec<String> {
    sorted(
        records
            .iter()
            .filter(|r| r.record_type() == t)
            .map(|r| norm(&r.data.to_string()))
            .collect(),
    )
}

fn json_strings(v: &serde_json::Value) -> Vec<String> {
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

async fn dns(server: &TestServer, name: &str, qtype: u16, client: IpAddr) -> (Message, Vec<u8>) {
    let full = if client.is_ipv4() { 32 } else { 128 };
    let q = Q::new(name, qtype).ecs(client, full);
    let bytes = udp_raw(server.addr("all", "udp"), &q.bytes())
        .await
        .expect("DNS reply");
    (Message::from_vec(&bytes).unwrap(), q.bytes())
}

#[tokio::test]
async fn httpdns_doh_and_dns_agree_on_1000_pairs() {
    let server = start_lab().await;
    let http = format!("http://{}", server.addr("http", "http"));
    let web = reqwest::Client::new();
    let mut compared = BTreeMap::<&str, usize>::new();
    let clients = clients(100);
    for name in NAMES {
        for client in &clients {
            let what = format!("{name} for {client}");
            let (a, a_query) = dns(&server, name, 1, *client).await;
            let (aaaa, _) = dns(&server, name, 28, *client).await;
            let a_ttl = a.answers.iter().map(|r| r.ttl).min();
            let aaaa_ttl = aaaa.answers.iter().map(|r| r.ttl).min();

            // Alibaba /d with ip= and query=4,6.
            let host = name.trim_end_matches('.');
            let v: serde_json::Value = web
                .get(format!("{http}/100000/d"))
                .query(&[
                    ("host", host),
                    ("ip", &client.to_string()),
                    ("query", "4,6"),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_else(|e| panic!("{what}: /d: {e}"));
            assert_eq!(
                json_strings(&v["ips"]),
                addrs(&a.answers, RecordType::A),
                "{what}: /d ips\n{v}"
            );
            assert_eq!(
                json_strings(&v["ipsv6"]),
                addrs(&aaaa.answers, RecordType::AAAA),
                "{what}: /d ipsv6\n{v}"
            );
            if let (Some(x), Some(y)) = (a_ttl, aaaa_ttl) {
                assert_eq!(
                    v["ttl"].as_u64(),
                    Some(x.min(y) as u64),
                    "{what}: /d ttl\n{v}"
                );
            } else if let Some(x) = a_ttl.or(aaaa_ttl) {
                assert!(
                    v["ttl"].as_u64().unwrap() <= x as u64,
                    "{what}: /d ttl\n{v}"
                );
            }
            *compared.entry("alibaba").or_default() += 1;

            // Google JSON with the client as edns_client_subnet.
            let full = if client.is_ipv4() { 32 } else { 128 };
            let g: serde_json::Value = web
                .get(format!("{http}/resolve"))
                .query(&[
                    ("name", *name),
                    ("type", "A"),
                    ("edns_client_subnet", &format!("{client}/{full}")),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_else(|e| panic!("{what}: /resolve: {e}"));
            assert_eq!(
                g["Status"].as_u64(),
                Some(u16::from(a.response_code) as u64),
                "{what}: Status\n{g}"
            );
            let google_lines = sorted(
                g["Answer"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|r| {
                                let t = r["type"].as_u64().unwrap();
                                let data = r["data"].as_str().unwrap();
                                let data = if t == 1 { norm(data) } else { data.to_string() };
                                format!(
                                    "{} {} {t} {data}",
                                    r["name"].as_str().unwrap().to_lowercase(),
                                    r["TTL"]
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            );
            assert_eq!(
                google_lines,
                dns_lines(&a.answers),
                "{what}: Google JSON\n{g}"
            );
            *compared.entry("google").or_default() += 1;

            // DoH: the same query bytes (with the same ECS) through RFC 8484 POST.
            let body = web
                .post(format!("{http}/dns-query"))
                .header("content-type", "application/dns-message")
                .body(a_query)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let doh = Message::from_vec(&body).unwrap_or_else(|e| panic!("{what}: DoH: {e}"));
            assert_eq!(doh.response_code, a.response_code, "{what}: DoH rcode");
            assert_eq!(
                dns_lines(&doh.answers),
                dns_lines(&a.answers),
                "{what}: DoH"
            );
            assert_eq!(
                dns_lines(&doh.authorities),
                dns_lines(&a.authorities),
                "{what}: DoH authority"
            );
            *compared.entry("doh").or_default() += 1;
        }
    }
    assert_eq!(compared["alibaba"], 1000);
    assert_eq!(compared["google"], 1000);
    assert_eq!(compared["doh"], 1000);
}
