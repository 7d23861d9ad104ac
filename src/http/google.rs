//! The Google-Public-DNS-compatible JSON API: `GET /resolve?name=&type=[&edns_client_subnet=]
//! [&cd=][&do=][&ct=][&random_padding=]`, answered from our zones (we are authoritative: `RA` is
//! false, nothing is recursed; `AD` is false, nothing is validated; `TC` is false, HTTP has no
//! size limit).
//!
//! `ct=application/dns-message` answers in wire format: the question (with CD, DO and the
//! subnet as an ECS option, RFC 7871 6) becomes a DNS message answered by `query::respond`, as
//! RFC 8484 DoH is. `random_padding` (Google's way to hide the URL length) is read and ignored.
//!
//! Beside Google's fields: `scope` (the ECS scope, 0 when the answer does not depend on the
//! client), `line`/`region` when a GSLB rule decided, `explain` with `explain=1`.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Instant;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::gslb::explain::ClientSource;
use crate::http::client::{self, Params};
use crate::http::{ApiError, AppState, Peer};
use crate::lookup::{self, Rec};
use crate::metrics;

pub async fn resolve(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match answer(&st, peer, query.as_deref(), &headers) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn answer(
    st: &AppState,
    peer: SocketAddr,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let snap = st.handle.snapshot();
    let http = client::settings(&snap)?;
    let origin = client::origin(http, peer, headers)?;
    st.limiter.client(origin, &http.rate_limit)?;

    let p = Params::parse(query);
    let (name, qname) = client::qname(&p)?;
    let qtype = qtype(&p)?;
    let cd = p
        .flag("cd")
        .ok_or_else(|| ApiError::invalid_argument("cd must be 0, 1, false or true"))?;
    // DNSSEC OK: accepted and ignored: JSON answers carry no RRSIGs or denial records (the
    // lookup asks without DO); a validating client asks over RFC 8484 DoH, which serves them.
    p.flag("do")
        .ok_or_else(|| ApiError::invalid_argument("do must be 0, 1, false or true"))?;
    let subnet = p
        .text("edns_client_subnet")
        .map_err(|_| ApiError::invalid_ip("edns_client_subnet is not UTF-8"))?;
    let who = client::client(http, origin, subnet, ClientSource::Ecs)?;
    let with_explain = p.flag("explain").unwrap_or(false);
    match p.raw("ct") {
        None | Some(b"") | Some(b"application/x-javascript") | Some(b"application/json") => {}
        Some(b"application/dns-message") => {
            let msg = dns_message(&qname, qtype, cd, p.flag("do") == Some(true), subnet)?;
            return crate::http::doh::answer(
                &snap,
                http.view,
                &msg,
                SocketAddr::new(origin, peer.port()),
            );
        }
        Some(_) => {
            return Err(ApiError::invalid_argument(
                "ct must be application/dns-message or application/x-javascript",
            ));
        }
    }

    let start = Instant::now();
    let l = lookup::lookup(
        &snap,
        http.view,
        name,
        qtype,
        who.addr,
        who.source,
        with_explain,
    )
    .map_err(ApiError::invalid_host)?;
    metrics::record(
        metrics::Via::HttpdnsJson,
        l.status,
        l.region.as_deref(),
        start.elapsed(),
    );

    let scope = l.scope.unwrap_or(0);
    let mut obj = json!({
        "Status": l.status,
        "TC": false,
        "RD": true,
        "RA": false,
        "AD": false,
        "CD": cd,
        "Question": [{ "name": qname.to_string(), "type": u16::from(qtype) }],
    });
    let map = obj.as_object_mut().expect("a JSON object literal");
    // Google leaves out empty sections.
    if !l.answer.is_empty() {
        map.insert("Answer".into(), records(&l.answer));
    }
    if !l.authority.is_empty() {
        map.insert("Authority".into(), records(&l.authority));
    }
    if who.explicit {
        // Google's echo: the subnet used and the scope of the answer (RFC 7871 7.2.1). Not
        // located (prefix 0) echoes the address as given.
        let addr = who.addr.ip.unwrap_or(who.shown);
        map.insert(
            "edns_client_subnet".into(),
            format!("{addr}/{scope}").into(),
        );
    }
    map.insert("scope".into(), scope.into());
    if let Some(line) = &l.line {
        map.insert("line".into(), line.as_str().into());
    }
    if let Some(region) = &l.region {
        map.insert("region".into(), region.as_str().into());
    }
    if let Some(e) = &l.explain {
        map.insert(
            "explain".into(),
            serde_json::to_value(e).unwrap_or(Value::Null),
        );
    }
    let private = !who.explicit && l.scope.is_some();
    Ok(client::json(obj, l.ttl, private))
}

/// The DNS query the JSON parameters describe: ID 0 (RFC 8484 4.1), RD, CD when asked; an OPT
/// record (RFC 6891) with DO when asked and the subnet as ECS (RFC 7871 6).
fn dns_message(
    qname: &hickory_proto::rr::Name,
    qtype: RecordType,
    cd: bool,
    dnssec_ok: bool,
    subnet: Option<&str>,
) -> Result<Vec<u8>, ApiError> {
    let mut m = vec![
        0,
        0,
        0x01,
        if cd { 0x10 } else { 0 },
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        1,
    ];
    m.extend_from_slice(&crate::zone::rdata::wire_name(qname));
    m.extend_from_slice(&u16::from(qtype).to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    let mut opts = Vec::new();
    if let Some(s) = subnet.filter(|s| !s.is_empty()) {
        let (ip, prefix, _) = client::parse_subnet(s)
            .ok_or_else(|| ApiError::invalid_ip(format!("\"{s}\" is not an address or subnet")))?;
        let (family, octets): (u16, Vec<u8>) = match ip {
            std::net::IpAddr::V4(a) => (1, a.octets().to_vec()),
            std::net::IpAddr::V6(a) => (2, a.octets().to_vec()),
        };
        let n = prefix.div_ceil(8) as usize;
        let mut addr = octets[..n].to_vec();
        if let Some(last) = addr.last_mut().filter(|_| prefix % 8 != 0) {
            *last &= 0xffu8 << (8 - prefix % 8);
        }
        opts.extend_from_slice(&8u16.to_be_bytes());
        opts.extend_from_slice(&((4 + n) as u16).to_be_bytes());
        opts.extend_from_slice(&family.to_be_bytes());
        opts.extend_from_slice(&[prefix, 0]);
        opts.extend_from_slice(&addr);
    }
    m.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0]);
    m.extend_from_slice(&[if dnssec_ok { 0x80 } else { 0 }, 0]);
    m.extend_from_slice(&(opts.len() as u16).to_be_bytes());
    m.extend_from_slice(&opts);
    Ok(m)
}

fn records(recs: &[Rec]) -> Value {
    recs.iter()
        .map(|r| json!({ "name": r.name, "type": r.rtype, "TTL": r.ttl, "data": r.data }))
        .collect()
}

/// `type=`: a number, a mnemonic (any case) or RFC 3597's `TYPEnnn`; default A. Meta types the
/// DNS path refuses too (OPT, RFC 6891 6.1.1; zone transfers; MAILA/MAILB) are not questions here.
/// `type=`: a mnemonic or a number (also `TYPE65`), default A; pseudo-types are refused.
pub(crate) fn qtype(p: &Params) -> Result<RecordType, ApiError> {
    let bad = |t: &str| ApiError::invalid_argument(format!("\"{t}\" is not a record type"));
    let t = match p.text("type") {
        Err(_) => return Err(ApiError::invalid_argument("type is not UTF-8")),
        Ok(None) | Ok(Some("")) => return Ok(RecordType::A),
        Ok(Some(t)) => t,
    };
    let upper = t.to_ascii_uppercase();
    let number = upper.strip_prefix("TYPE").unwrap_or(&upper);
    let rtype = if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        RecordType::from(number.parse::<u16>().map_err(|_| bad(t))?)
    } else {
        RecordType::from_str(&upper).map_err(|_| bad(t))?
    };
    match u16::from(rtype) {
        41 | 251 | 252 | 253 | 254 => Err(ApiError::invalid_argument(format!(
            "type {t} is not a question type here"
        ))),
        _ => Ok(rtype),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<u16, &'static str> {
        qtype(&Params::parse(Some(&format!("type={s}"))))
            .map(u16::from)
            .map_err(|e| e.code)
    }

    #[test]
    fn types() {
        assert_eq!(t(""), Ok(1));
        assert_eq!(t("aaaa"), Ok(28));
        assert_eq!(t("28"), Ok(28));
        assert_eq!(t("MX"), Ok(15));
        assert_eq!(t("TYPE99"), Ok(99));
        assert_eq!(t("type65535"), Ok(65535));
        assert_eq!(t("ANY"), Ok(255));
        for bad in [
            "65536", "nope", "TYPE", "-1", "OPT", "41", "AXFR", "252", "%ff",
        ] {
            assert_eq!(t(bad), Err("InvalidArgument"), "{bad}");
        }
    }
}
