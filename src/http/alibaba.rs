//! The Alibaba-Cloud-HTTPDNS-compatible API, so the vendor's SDKs work pointed at us unchanged:
//! `/{account}/d` (one host), `/{account}/resolve` (a batch), and their signed forms `sign_d`,
//! `sign_resolve` (`t` = expiry in unix seconds, `s` = md5 hex of `host-secret-t`).
//!
//! Order of checks: the per-client rate limit (before anything else, so bad requests count too),
//! the account, unsigned access, the signature, then the per-account limit (after
//! authentication, so nobody can spend an account's quota without its secret), then the rest.
//!
//! Beside the vendor's fields every answer carries `scope` (the ECS scope, 0 when the answer does
//! not depend on the client), `line`/`region` when a GSLB rule decided, and `explain` on request.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use hickory_proto::rr::RecordType;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};

use crate::gslb::explain::{self, ClientSource};
use crate::http::client::{self, Client, Params};
use crate::http::config::Account;
use crate::http::{ApiError, AppState, HttpSettings, Peer};
use crate::lookup::{self, Lookup};
use crate::metrics;
use crate::snapshot::Snapshot;

pub async fn d(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(&st, peer, &uri, query.as_deref(), &headers, Api::D, false)
}

pub async fn resolve(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        &st,
        peer,
        &uri,
        query.as_deref(),
        &headers,
        Api::Resolve,
        false,
    )
}

pub async fn sign_d(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(&st, peer, &uri, query.as_deref(), &headers, Api::D, true)
}

pub async fn sign_resolve(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    respond(
        &st,
        peer,
        &uri,
        query.as_deref(),
        &headers,
        Api::Resolve,
        true,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    D,
    Resolve,
}

fn respond(
    st: &AppState,
    peer: SocketAddr,
    uri: &Uri,
    query: Option<&str>,
    headers: &HeaderMap,
    api: Api,
    signed: bool,
) -> Response {
    match answer(st, peer, uri, query, headers, api, signed) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn answer(
    st: &AppState,
    peer: SocketAddr,
    uri: &Uri,
    query: Option<&str>,
    headers: &HeaderMap,
    api: Api,
    signed: bool,
) -> Result<Response, ApiError> {
    let snap = st.handle.snapshot();
    let http = client::settings(&snap)?;
    let origin = client::origin(http, peer, headers)?;
    st.limiter.client(origin, &http.rate_limit)?;

    // The router matched `/{account_id}/...`: the first segment. Account ids are letters, digits,
    // `-` and `_` (config check), so the raw segment is compared as is; anything percent-encoded
    // names no account.
    let id = uri
        .path()
        .strip_prefix('/')
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    let account = http
        .accounts
        .get(id)
        .ok_or_else(|| ApiError::invalid_account(id))?;
    if !signed && !account.unsigned {
        return Err(ApiError::unsigned_disabled());
    }

    let p = Params::parse(query);
    let host = p
        .text("host")
        .map_err(|_| ApiError::invalid_host("host is not UTF-8"))?
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ApiError::missing("host"))?;
    if signed {
        verify(account, host, &p, http.max_sign_duration_s, unix_now())?;
    }
    st.limiter.account(id, &http.rate_limit)?;

    let hosts: Vec<&str> = match api {
        Api::D => vec![host],
        Api::Resolve => host.split(',').collect(),
    };
    if hosts.len() > http.max_batch {
        return Err(ApiError::invalid_host(format!(
            "at most {} hosts per request",
            http.max_batch
        )));
    }
    for h in &hosts {
        check_host(h)?;
    }
    let types = query_types(&p)?;
    let ip = p
        .text("ip")
        .map_err(|_| ApiError::invalid_ip("ip is not UTF-8"))?;
    let who = client::client(http, origin, ip, ClientSource::Given)?;
    let explain = p.flag("explain").unwrap_or(false);

    Ok(match api {
        Api::D => single(&snap, http, host, &types, &who, explain)?,
        Api::Resolve => batch(&snap, http, &hosts, &types, &who, explain)?,
    })
}

/// `host` must be a domain name (RFC 1035 2.3.4 lengths; empty labels are not names).
fn check_host(h: &str) -> Result<(), ApiError> {
    if h.is_empty() {
        return Err(ApiError::invalid_host("empty host in the list"));
    }
    explain::parse_name(h).map_err(ApiError::invalid_host)?;
    Ok(())
}

/// `query=4` (default), `6`, or both (`4,6` / `6,4`).
fn query_types(p: &Params) -> Result<Vec<RecordType>, ApiError> {
    match p.raw("query") {
        None | Some(b"") | Some(b"4") => Ok(vec![RecordType::A]),
        Some(b"6") => Ok(vec![RecordType::AAAA]),
        Some(b"4,6") | Some(b"6,4") => Ok(vec![RecordType::A, RecordType::AAAA]),
        Some(_) => Err(ApiError::invalid_argument("query must be 4, 6 or 4,6")),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The vendor's signature: `s` = lowercase hex md5 of `host-secret-t`, with `host` exactly as the
/// parameter was given (the comma list for `sign_resolve`) and `t` the expiry, unix seconds.
fn verify(account: &Account, host: &str, p: &Params, max: u64, now: u64) -> Result<(), ApiError> {
    let t = p
        .text("t")
        .ok()
        .flatten()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::missing("t"))?;
    let s = p
        .raw("s")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::missing("s"))?;
    // An account without a secret can sign nothing.
    let secret = account
        .secret
        .as_deref()
        .ok_or_else(ApiError::invalid_signature)?;
    let expiry: u64 = t
        .parse()
        .map_err(|_| ApiError::invalid_argument("t must be unix seconds"))?;
    if expiry < now {
        return Err(ApiError::signature_expired());
    }
    if expiry > now.saturating_add(max) {
        return Err(ApiError::invalid_duration(max));
    }
    if !same_hex(&sign(host, secret, t), s) {
        return Err(ApiError::invalid_signature());
    }
    Ok(())
}

/// md5 hex of `host-secret-t`.
pub fn sign(host: &str, secret: &str, t: &str) -> String {
    let digest = Md5::new()
        .chain_update(host.as_bytes())
        .chain_update(b"-")
        .chain_update(secret.as_bytes())
        .chain_update(b"-")
        .chain_update(t.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares hex case-insensitively, in time independent of where they differ.
fn same_hex(expected: &str, given: &[u8]) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
            == 0
}

/// Runs one lookup and counts it under `via` (the vendor dialects share this).
pub(crate) fn run(
    via: metrics::Via,
    snap: &Snapshot,
    http: &HttpSettings,
    host: &str,
    qtype: RecordType,
    who: &Client,
    explain: bool,
) -> Result<Lookup, ApiError> {
    let start = Instant::now();
    let l = lookup::lookup(snap, http.view, host, qtype, who.addr, who.source, explain)
        .map_err(ApiError::invalid_host)?;
    metrics::record(via, l.status, l.region.as_deref(), start.elapsed());
    Ok(l)
}

/// Tailored to the caller's own address: no `ip=`, and a GSLB rule decided.
pub(crate) fn private(who: &Client, l: &Lookup) -> bool {
    !who.explicit && l.scope.is_some()
}

/// `scope`, `line`, `region` and `explain` of one lookup, added to `obj`.
fn extras(obj: &mut Map<String, Value>, scope: u8, l: &Lookup) {
    obj.insert("scope".into(), scope.into());
    if let Some(line) = &l.line {
        obj.insert("line".into(), line.as_str().into());
    }
    if let Some(region) = &l.region {
        obj.insert("region".into(), region.as_str().into());
    }
    if let Some(e) = &l.explain {
        obj.insert(
            "explain".into(),
            serde_json::to_value(e).unwrap_or(Value::Null),
        );
    }
}

/// `/d`: `{"host","ips","ipsv6","ttl","origin_ttl","client_ip"}`. With `query=4,6` the TTL is the
/// smaller and the scope the larger of the two lookups; line, region and explain are the first's
/// (A when asked).
fn single(
    snap: &Snapshot,
    http: &HttpSettings,
    host: &str,
    types: &[RecordType],
    who: &Client,
    explain: bool,
) -> Result<Response, ApiError> {
    let mut lookups = Vec::with_capacity(types.len());
    for &t in types {
        lookups.push((
            t,
            run(
                metrics::Via::HttpdnsAlibaba,
                snap,
                http,
                host,
                t,
                who,
                explain,
            )?,
        ));
    }
    let addrs = |rt: RecordType| -> Vec<String> {
        lookups
            .iter()
            .filter(|(t, _)| *t == rt)
            .flat_map(|(_, l)| l.addresses(rt))
            .collect()
    };
    let ttl = lookups.iter().map(|(_, l)| l.ttl).min().unwrap_or(0);
    let scope = lookups
        .iter()
        .map(|(_, l)| l.scope.unwrap_or(0))
        .max()
        .unwrap_or(0);
    let private = lookups.iter().any(|(_, l)| private(who, l));
    let mut obj = json!({
        "host": host,
        "ips": addrs(RecordType::A),
        "ipsv6": addrs(RecordType::AAAA),
        "ttl": ttl,
        "origin_ttl": ttl,
        "client_ip": who.echo(),
    });
    if let (Some(map), Some((_, first))) = (obj.as_object_mut(), lookups.first()) {
        extras(map, scope, first);
    }
    Ok(client::json(obj, ttl, private))
}

/// `/resolve`: `{"dns":[...]}`, one entry per host per type asked (the vendor's shape: AAAA
/// entries carry their addresses in `ips` with `type` 28).
fn batch(
    snap: &Snapshot,
    http: &HttpSettings,
    hosts: &[&str],
    types: &[RecordType],
    who: &Client,
    explain: bool,
) -> Result<Response, ApiError> {
    let mut entries = Vec::with_capacity(hosts.len() * types.len());
    let mut ttl = u32::MAX;
    let mut private_any = false;
    for host in hosts {
        for &t in types {
            let l = run(
                metrics::Via::HttpdnsAlibaba,
                snap,
                http,
                host,
                t,
                who,
                explain,
            )?;
            ttl = ttl.min(l.ttl);
            private_any |= private(who, &l);
            let mut obj = json!({
                "host": host,
                "client_ip": who.echo(),
                "ips": l.addresses(t),
                "type": u16::from(t),
                "ttl": l.ttl,
                "origin_ttl": l.ttl,
            });
            if let Some(map) = obj.as_object_mut() {
                extras(map, l.scope.unwrap_or(0), &l);
            }
            entries.push(obj);
        }
    }
    let ttl = if entries.is_empty() { 0 } else { ttl };
    Ok(client::json(json!({ "dns": entries }), ttl, private_any))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_md5_hex_of_host_secret_t() {
        // md5("www.aliyun.com-secret-1700000000"), computed independently with `md5sum`.
        let s = sign("www.aliyun.com", "secret", "1700000000");
        assert_eq!(s, "bd61faa12226beb9ff7312480e2baf34");
        assert!(same_hex(&s, s.to_uppercase().as_bytes()));
        assert!(!same_hex(&s, &s.as_bytes()[..31]));
    }

    fn account(secret: Option<&str>) -> Account {
        Account {
            secret: secret.map(str::to_string),
            unsigned: true,
            ..Account::default()
        }
    }

    #[test]
    fn verify_codes() {
        let acc = account(Some("k"));
        let now = 1_000_000;
        let q = |t: &str, s: &str| Params::parse(Some(&format!("t={t}&s={s}")));
        let good = sign("a.com", "k", "1000100");
        assert_eq!(
            verify(&acc, "a.com", &q("1000100", &good), 3600, now),
            Ok(())
        );
        let code = |r: Result<(), ApiError>| r.unwrap_err().code;
        assert_eq!(
            code(verify(&acc, "b.com", &q("1000100", &good), 3600, now)),
            "InvalidSignature"
        );
        let old = sign("a.com", "k", "999999");
        assert_eq!(
            code(verify(&acc, "a.com", &q("999999", &old), 3600, now)),
            "SignatureExpired"
        );
        let far = sign("a.com", "k", "1003601");
        assert_eq!(
            code(verify(&acc, "a.com", &q("1003601", &far), 3600, now)),
            "InvalidDuration"
        );
        assert_eq!(
            code(verify(&acc, "a.com", &q("x", &good), 3600, now)),
            "InvalidArgument"
        );
        assert_eq!(
            code(verify(&acc, "a.com", &q("", &good), 3600, now)),
            "MissingArgument"
        );
        assert_eq!(
            code(verify(&acc, "a.com", &q("1000100", ""), 3600, now)),
            "MissingArgument"
        );
        assert_eq!(
            code(verify(
                &account(None),
                "a.com",
                &q("1000100", &good),
                3600,
                now
            )),
            "InvalidSignature"
        );
        assert_eq!(
            code(verify(
                &acc,
                "a.com",
                &q("18446744073709551615", &good),
                u64::MAX,
                now
            )),
            "InvalidSignature"
        );
    }
}
