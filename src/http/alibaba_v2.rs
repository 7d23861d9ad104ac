//! What Alibaba's current HTTPDNS SDKs call, so an unchanged SDK starts and resolves against us:
//!
//! - `GET /{account}/ss`: the scheduling list an SDK asks for first (the service's addresses).
//!   Field names as the Android SDK's `UpdateRegionServerResponse.fromResponse` reads them:
//!   `service_status` ("enable"), `service_ip`, `service_ipv6`, `service_ip_port`,
//!   `service_ipv6_port`. The addresses are `[http] schedule`, else the HTTP listen addresses as
//!   bound (unspecified ones left out).
//! - `GET /v2/d?id=&m=&dn=&q=&enc=&v=&exp=&s=`, as the Android SDK's `ResolveHostHelper.getPath`
//!   builds it: `m` = 0 plain (`dn`, `q` in the query string), 1 AES-CBC, 2 AES-GCM (then `enc` =
//!   hex of IV + ciphertext of the JSON `{"dn", "q", "sdns-*", "tags"}`, key = the account's
//!   `aes_secret`, hex as `AESEncryptService` decodes it); `exp` = expiry, unix seconds; `s` =
//!   hex HMAC-SHA256, keyed with the hex-decoded `secret`, over `k=v` pairs sorted by key and
//!   joined by `&`, of the non-empty parameters among id, m, dn, cip, q, enc, exp, tags, v and
//!   `sdns-*` (`SignService.generateV2SignContent`). The answer is `{"code": "success", "mode",
//!   "data"}` with `data` the text `{"cip", "answers": [{"dn", "v4": {"ips", "ttl"}, "v6":
//!   {...}}]}` (`ResolveHostResponse.fromResponse`), encrypted like the request when `m` is 1 or 2
//!   and then base64 of IV + ciphertext (`AESEncryptService.decrypt` decodes base64). `dn` may be
//!   a comma list (at most `max_batch` names). Errors use the vendor's codes (`HttpException`:
//!   InvalidAccount, UnsignedInterfaceDisabled, SignatureExpired, InvalidSignature,
//!   InvalidDuration, InvalidHost) in the `{"code", "message"}` body the SDK reads.
//!
//! Order of checks as in `alibaba.rs`: client rate limit, account, signature (or unsigned
//! access), account rate limit, then the request itself.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hickory_proto::rr::RecordType;
use serde_json::{Map, Value, json};

use crate::gslb::explain::ClientSource;
use crate::http::client::{self, Params};
use crate::http::config::Account;
use crate::http::crypto;
use crate::http::{ApiError, AppState, Peer};
use crate::metrics;

/// `GET /{account}/ss`.
pub async fn ss(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = || -> Result<Response, ApiError> {
        let snap = st.handle.snapshot();
        let http = client::settings(&snap)?;
        let origin = client::origin(http, peer, &headers)?;
        st.limiter.client(origin, &http.rate_limit)?;
        http.accounts
            .get(&id)
            .ok_or_else(|| ApiError::invalid_account(&id))?;
        let addrs: Vec<SocketAddr> = if http.schedule.is_empty() {
            st.handle
                .http_addresses()
                .iter()
                .copied()
                .filter(|a| !a.ip().is_unspecified())
                .collect()
        } else {
            http.schedule.clone()
        };
        let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) =
            addrs.into_iter().partition(|a| a.is_ipv4());
        let ips = |v: &[SocketAddr]| v.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>();
        let ports = |v: &[SocketAddr]| v.iter().map(|a| a.port()).collect::<Vec<_>>();
        let body = json!({
            "service_status": "enable",
            "service_ip": ips(&v4),
            "service_ipv6": ips(&v6),
            "service_ip_port": ports(&v4),
            "service_ipv6_port": ports(&v6),
        });
        // The list changes with configuration only; SDKs refresh it on their own schedule.
        Ok(client::json(body, 300, false))
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v2/d`.
pub async fn d(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    answer(&st, peer, query.as_deref(), &headers).unwrap_or_else(IntoResponse::into_response)
}

/// The SDK's encryption modes (`AESEncryptService.EncryptionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Cbc,
    Gcm,
}

impl Mode {
    fn parse(m: Option<&[u8]>) -> Result<Mode, ApiError> {
        match m {
            None | Some(b"") | Some(b"0") => Ok(Mode::Plain),
            Some(b"1") => Ok(Mode::Cbc),
            Some(b"2") => Ok(Mode::Gcm),
            Some(_) => Err(ApiError::invalid_argument("m must be 0, 1 or 2")),
        }
    }
    fn code(self) -> &'static str {
        match self {
            Mode::Plain => "0",
            Mode::Cbc => "1",
            Mode::Gcm => "2",
        }
    }
}

/// Parameters the v2 signature covers (`SignService.includeParamKeys`), plus `sdns-*`.
const SIGNED: &[&str] = &["id", "m", "dn", "cip", "q", "enc", "exp", "tags", "v"];

/// The string the v2 signature is computed over: `k=v` of the covered, non-empty parameters,
/// sorted by key, joined by `&` (values decoded, as the SDK signs them before encoding).
pub fn sign_content<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> String {
    let mut kept: Vec<(&[u8], &[u8])> = Vec::new();
    for (k, v) in pairs {
        let covered = SIGNED.iter().any(|s| s.as_bytes() == k) || k.starts_with(b"sdns-");
        // The first of a repeated parameter counts (as everywhere in `Params`).
        if covered && !v.is_empty() && !kept.iter().any(|(seen, _)| *seen == k) {
            kept.push((k, v));
        }
    }
    kept.sort();
    let mut out = String::new();
    for (k, v) in kept {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&String::from_utf8_lossy(k));
        out.push('=');
        out.push_str(&String::from_utf8_lossy(v));
    }
    out
}

/// The HMAC key of an account's `secret`: hex-decoded as the SDK does, else its bytes.
fn hmac_key(secret: &str) -> Vec<u8> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(secret.as_bytes())
        .unwrap_or_else(|_| secret.as_bytes().to_vec())
}

/// `s` = hex HMAC-SHA256 of `sign_content` under the account's secret.
pub fn sign(secret: &str, content: &str) -> String {
    crypto::hmac_sha256_hex(&hmac_key(secret), content.as_bytes())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn verify(account: &Account, p: &Params, max: u64) -> Result<(), ApiError> {
    let Some(s) = p.raw("s").filter(|s| !s.is_empty()) else {
        return if account.unsigned {
            Ok(())
        } else {
            Err(ApiError::unsigned_disabled())
        };
    };
    let secret = account
        .secret
        .as_deref()
        .ok_or_else(ApiError::invalid_signature)?;
    let exp = p
        .text("exp")
        .ok()
        .flatten()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::missing("exp"))?;
    let exp: u64 = exp
        .parse()
        .map_err(|_| ApiError::invalid_argument("exp must be unix seconds"))?;
    let now = now();
    if exp < now {
        return Err(ApiError::signature_expired());
    }
    if exp > now.saturating_add(max) {
        return Err(ApiError::invalid_duration(max));
    }
    let want = sign(secret, &sign_content(p.pairs()));
    let given = s.to_ascii_lowercase();
    if !crypto::same(want.as_bytes(), &given) {
        return Err(ApiError::invalid_signature());
    }
    Ok(())
}

/// What the request asks: names, types, the client named (`cip`), from the query string or the
/// decrypted `enc`.
struct Ask {
    dn: String,
    q: Option<String>,
    cip: Option<String>,
}

fn decrypt(mode: Mode, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    match mode {
        Mode::Plain => Some(data.to_vec()),
        Mode::Cbc => crypto::aes_cbc_decrypt(key, data),
        Mode::Gcm => crypto::aes_gcm_decrypt(key, data),
    }
}

fn encrypt(mode: Mode, key: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    match mode {
        Mode::Plain => Some(plain.to_vec()),
        Mode::Cbc => crypto::aes_cbc_encrypt(key, &rand::random(), plain),
        Mode::Gcm => crypto::aes_gcm_encrypt(key, &rand::random(), plain),
    }
}

fn ask(mode: Mode, account: &Account, p: &Params) -> Result<Ask, ApiError> {
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        p.text(k)
            .map(|v| v.filter(|v| !v.is_empty()).map(str::to_string))
            .map_err(|_| ApiError::invalid_argument(format!("{k} is not UTF-8")))
    };
    if mode == Mode::Plain {
        return Ok(Ask {
            dn: text("dn")?.ok_or_else(|| ApiError::missing("dn"))?,
            q: text("q")?,
            cip: text("cip")?,
        });
    }
    let key = account
        .aes_key
        .as_deref()
        .ok_or_else(|| ApiError::invalid_argument("this account has no aes_secret: use m=0"))?;
    let enc = p
        .raw("enc")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| ApiError::missing("enc"))?;
    let data = data_encoding::HEXLOWER_PERMISSIVE
        .decode(enc)
        .map_err(|_| ApiError::invalid_argument("enc is not hex"))?;
    let plain = decrypt(mode, key, &data).ok_or_else(|| {
        ApiError::invalid_argument("enc does not decrypt with this account's key")
    })?;
    let v: Value = serde_json::from_slice(&plain)
        .map_err(|_| ApiError::invalid_argument("enc is not a JSON object"))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Ask {
        dn: field("dn").ok_or_else(|| ApiError::missing("dn"))?,
        q: field("q"),
        cip: field("cip"),
    })
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
    let id = p
        .text("id")
        .ok()
        .flatten()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::missing("id"))?;
    let account = http
        .accounts
        .get(id)
        .ok_or_else(|| ApiError::invalid_account(id))?;
    let mode = Mode::parse(p.raw("m"))?;
    verify(account, &p, http.max_sign_duration_s)?;
    st.limiter.account(id, &http.rate_limit)?;

    let ask = ask(mode, account, &p)?;
    let types: &[RecordType] = match ask.q.as_deref() {
        None | Some("4") => &[RecordType::A],
        Some("6") => &[RecordType::AAAA],
        Some("4,6") | Some("6,4") => &[RecordType::A, RecordType::AAAA],
        Some(_) => return Err(ApiError::invalid_argument("q must be 4, 6 or 4,6")),
    };
    let hosts: Vec<&str> = ask.dn.split(',').collect();
    if hosts.len() > http.max_batch {
        return Err(ApiError::invalid_host(format!(
            "at most {} hosts per request",
            http.max_batch
        )));
    }
    let who = client::client(http, origin, ask.cip.as_deref(), ClientSource::Given)?;
    let mut answers = Vec::with_capacity(hosts.len());
    let mut min_ttl = u32::MAX;
    let mut private = false;
    for host in &hosts {
        if host.is_empty() {
            return Err(ApiError::invalid_host("empty host in the list"));
        }
        crate::gslb::explain::parse_name(host).map_err(ApiError::invalid_host)?;
        let mut entry = Map::new();
        entry.insert("dn".into(), (*host).into());
        for &t in types {
            let l = super::alibaba::run(
                metrics::Via::HttpdnsAlibaba,
                &snap,
                http,
                host,
                t,
                &who,
                false,
            )?;
            min_ttl = min_ttl.min(l.ttl);
            private |= super::alibaba::private(&who, &l);
            let key = if t == RecordType::A { "v4" } else { "v6" };
            entry.insert(key.into(), json!({ "ips": l.addresses(t), "ttl": l.ttl }));
        }
        answers.push(Value::Object(entry));
    }
    let cip = match who.shown {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(who.shown, IpAddr::V4),
        ip => ip,
    };
    let data = json!({ "cip": cip.to_string(), "answers": answers }).to_string();
    let data = match mode {
        Mode::Plain => data,
        _ => {
            let key = account.aes_key.as_deref().unwrap_or_default();
            let sealed = encrypt(mode, key, data.as_bytes())
                .ok_or_else(|| ApiError::internal("encrypting the answer failed"))?;
            base64::engine::general_purpose::STANDARD.encode(sealed)
        }
    };
    let body = json!({ "code": "success", "mode": mode.code(), "data": data });
    let ttl = if answers.is_empty() { 0 } else { min_ttl };
    Ok(client::json(body, ttl, private))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_content_sorts_and_keeps_covered_non_empty() {
        let p = Params::parse(Some(
            "id=100000&m=0&dn=a.com&q=4&v=1.0&exp=1700000600&sdk=android_2.6&sid=x&tags=&sdns-k=v&s=zz",
        ));
        assert_eq!(
            sign_content(p.pairs()),
            "dn=a.com&exp=1700000600&id=100000&m=0&q=4&sdns-k=v&v=1.0"
        );
    }

    #[test]
    fn hmac_key_is_hex_when_hex() {
        assert_eq!(hmac_key("0aff"), vec![0x0a, 0xff]);
        assert_eq!(hmac_key("lab-secret"), b"lab-secret".to_vec());
    }
}
