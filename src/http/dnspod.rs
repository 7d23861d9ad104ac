//! The Tencent Cloud DNSPod D+ HTTPDNS API, as its SDKs call it (request and answer formats as
//! the Android SDK `DNSPod/httpdns-sdk-android` builds and parses them: `RequestBuilder`,
//! `AesCipherSuite`, `DesCipherSuite`, `rsp/ResponseParser`, `ConfigFromServer`):
//!
//! - `GET /d?dn=&id=&alg=aes|des[&ip=][&type=aaaa|addrs][&ttl=1][&clientip=1]`: `dn` (a name or
//!   a comma list) is hex of the ciphertext: `alg=aes` AES-CBC/PKCS#7 with a random 16-octet IV
//!   in front, key = the account's `dnspod_key` as UTF-8, right-padded with `'0'` to 16 octets
//!   when shorter (`AesCipherSuite.toMakeKey`); `alg=des` DES-ECB/PKCS#5 with the key's first 8
//!   octets, only for accounts with `dnspod_des = true`. `ip` (the client to answer for) is sent
//!   in clear by the SDK; hex ciphertext is accepted too. The whole answer body is encrypted the
//!   same way and sent as hex.
//! - `GET /d?dn=&id=&token=...` (the HTTPS form): everything in clear, the account's
//!   `dnspod_token` must match. With neither `alg` nor `token`, an account with `unsigned = true`
//!   gets the plain public form.
//! - The answer text: `ip;ip,ttl|clientip` (`,ttl` with `ttl=1`, `|clientip` with `clientip=1`);
//!   `type=addrs` gives `v4s,ttl-v6s,ttl|clientip`; a list of names one line per name, each
//!   prefixed `name.:`. A family without addresses is `0` (what the SDK's parser skips as no
//!   address; the vendor's documentation says the same of its empty answers).
//! - `GET /conf?id=&alg=` / `/conf?token=`: `log:0|domain:0|ip:<v4;v4>|ttl:<minutes>`, encrypted
//!   like `/d` (ConfigFromServer reads those keys): the service's IPv4 addresses
//!   (`[http] schedule`, else the bound listen addresses).
//!
//! Errors are the JSON `{code, message}` of `error.rs` with a 4xx status: the SDK treats any
//! non-200 as a failed lookup and falls back, which is what it should do.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use hickory_proto::rr::RecordType;

use crate::gslb::explain::ClientSource;
use crate::http::client::{self, Params};
use crate::http::config::Account;
use crate::http::crypto;
use crate::http::{ApiError, AppState, HttpSettings, Peer};
use crate::metrics;

/// How a request and its answer are protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cipher {
    /// Token form (over HTTPS) or the public plain form.
    Plain,
    /// AES-CBC with this (padded) key.
    Aes(Vec<u8>),
    /// DES-ECB with this 8-octet key.
    Des(Vec<u8>),
}

impl Cipher {
    /// The SDK's key rules: AES keys shorter than 16 octets are right-padded with `'0'`.
    pub fn aes(key: &str) -> Cipher {
        let mut k = key.as_bytes().to_vec();
        while k.len() < 16 {
            k.push(b'0');
        }
        Cipher::Aes(k)
    }

    pub fn des(key: &str) -> Option<Cipher> {
        key.as_bytes().get(..8).map(|k| Cipher::Des(k.to_vec()))
    }

    pub fn decrypt_hex(&self, hex: &[u8]) -> Option<String> {
        let data = data_encoding::HEXLOWER_PERMISSIVE.decode(hex).ok()?;
        let plain = match self {
            Cipher::Plain => data,
            Cipher::Aes(k) => crypto::aes_cbc_decrypt(k, &data)?,
            Cipher::Des(k) => crypto::des_ecb_decrypt(k, &data)?,
        };
        String::from_utf8(plain).ok()
    }

    pub fn encrypt_hex(&self, text: &str) -> Option<String> {
        let sealed = match self {
            Cipher::Plain => return Some(text.to_string()),
            Cipher::Aes(k) => crypto::aes_cbc_encrypt(k, &rand::random(), text.as_bytes())?,
            Cipher::Des(k) => crypto::des_ecb_encrypt(k, text.as_bytes())?,
        };
        Some(data_encoding::HEXLOWER.encode(&sealed))
    }
}

/// The account and cipher of a request (`id` + `alg`, or `token`), after the account's limit.
fn authenticate<'h>(
    st: &AppState,
    http: &'h HttpSettings,
    p: &Params,
) -> Result<(&'h Account, Cipher), ApiError> {
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
    let cipher = match (p.raw("token").filter(|t| !t.is_empty()), p.raw("alg")) {
        (Some(token), _) => {
            let ok = account
                .dnspod_token
                .as_deref()
                .is_some_and(|t| crypto::same(t.as_bytes(), token));
            if !ok {
                return Err(ApiError::invalid_signature());
            }
            Cipher::Plain
        }
        (None, Some(b"aes")) => Cipher::aes(dnspod_key(account)?),
        (None, Some(b"des")) => {
            if !account.dnspod_des {
                return Err(ApiError::forbidden(
                    "alg=des is not enabled for this account (dnspod_des = true)",
                ));
            }
            Cipher::des(dnspod_key(account)?)
                .ok_or_else(|| ApiError::forbidden("dnspod_key is shorter than 8 octets"))?
        }
        (None, None | Some(b"")) if account.unsigned => Cipher::Plain,
        (None, None | Some(b"")) => return Err(ApiError::unsigned_disabled()),
        (None, Some(_)) => return Err(ApiError::invalid_argument("alg must be aes or des")),
    };
    st.limiter.account(id, &http.rate_limit)?;
    Ok((account, cipher))
}

fn dnspod_key(account: &Account) -> Result<&str, ApiError> {
    account
        .dnspod_key
        .as_deref()
        .ok_or_else(|| ApiError::forbidden("this account has no dnspod_key"))
}

fn text_response(body: String, ttl: u32, private: bool) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, client::cache_control(ttl, private));
    resp
}

/// `GET /d`.
pub async fn d(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    answer(&st, peer, query.as_deref(), &headers).unwrap_or_else(IntoResponse::into_response)
}

/// What `type=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    Both,
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
    let (_, cipher) = authenticate(st, http, &p)?;

    let dn_raw = p
        .raw("dn")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| ApiError::missing("dn"))?;
    let dn = match cipher {
        Cipher::Plain => String::from_utf8(dn_raw.to_vec())
            .map_err(|_| ApiError::invalid_host("dn is not UTF-8"))?,
        _ => cipher
            .decrypt_hex(dn_raw)
            .ok_or_else(|| ApiError::invalid_host("dn does not decrypt with this account's key"))?,
    };
    // `ip`: the SDK sends it in clear; an encrypted one (hex) is accepted too.
    let ip = match p.text("ip").ok().flatten().filter(|i| !i.is_empty()) {
        None => None,
        Some(i) if i.parse::<IpAddr>().is_ok() || cipher == Cipher::Plain => Some(i.to_string()),
        Some(i) => Some(
            cipher
                .decrypt_hex(i.as_bytes())
                .ok_or_else(|| ApiError::invalid_ip("ip is neither an address nor ciphertext"))?,
        ),
    };
    let family = match p.raw("type") {
        None | Some(b"") | Some(b"a") | Some(b"A") => Family::V4,
        Some(b"aaaa") | Some(b"AAAA") => Family::V6,
        Some(b"addrs") => Family::Both,
        Some(_) => return Err(ApiError::invalid_argument("type must be aaaa or addrs")),
    };
    let with_ttl = p.flag("ttl").unwrap_or(false);
    let with_client = p.flag("clientip").unwrap_or(false);
    let hosts: Vec<&str> = dn.split(',').collect();
    if hosts.len() > http.max_batch {
        return Err(ApiError::invalid_host(format!(
            "at most {} hosts per request",
            http.max_batch
        )));
    }
    let who = client::client(http, origin, ip.as_deref(), ClientSource::Given)?;
    let shown = match who.shown {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(who.shown, IpAddr::V4),
        a => a,
    };
    let mut lines = Vec::with_capacity(hosts.len());
    let (mut min_ttl, mut private) = (u32::MAX, false);
    for host in &hosts {
        if host.is_empty() {
            return Err(ApiError::invalid_host("empty host in the list"));
        }
        crate::gslb::explain::parse_name(host).map_err(ApiError::invalid_host)?;
        let types: &[RecordType] = match family {
            Family::V4 => &[RecordType::A],
            Family::V6 => &[RecordType::AAAA],
            Family::Both => &[RecordType::A, RecordType::AAAA],
        };
        let mut parts = Vec::with_capacity(2);
        for &t in types {
            let l = super::alibaba::run(
                metrics::Via::HttpdnsTencent,
                &snap,
                http,
                host,
                t,
                &who,
                false,
            )?;
            min_ttl = min_ttl.min(l.ttl);
            private |= super::alibaba::private(&who, &l);
            let addrs = l.addresses(t);
            let mut part = if addrs.is_empty() {
                "0".to_string()
            } else {
                addrs.join(";")
            };
            if with_ttl {
                part.push_str(&format!(",{}", l.ttl));
            }
            parts.push(part);
        }
        let mut line = String::new();
        if hosts.len() > 1 {
            line.push_str(host.trim_end_matches('.'));
            line.push_str(".:");
        }
        line.push_str(&parts.join("-"));
        if with_client {
            line.push('|');
            line.push_str(&shown.to_string());
        }
        lines.push(line);
    }
    let body = cipher
        .encrypt_hex(&lines.join("\n"))
        .ok_or_else(|| ApiError::internal("encrypting the answer failed"))?;
    Ok(text_response(body, min_ttl, private))
}

/// `GET /conf`.
pub async fn conf(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let run = || -> Result<Response, ApiError> {
        let snap = st.handle.snapshot();
        let http = client::settings(&snap)?;
        let origin = client::origin(http, peer, &headers)?;
        st.limiter.client(origin, &http.rate_limit)?;
        let p = Params::parse(query.as_deref());
        let (_, cipher) = authenticate(&st, http, &p)?;
        let addrs: Vec<SocketAddr> = if http.schedule.is_empty() {
            st.handle.http_addresses().to_vec()
        } else {
            http.schedule.clone()
        };
        // IPv4 only: the SDK splits the text on ':'.
        let ips: Vec<String> = addrs
            .iter()
            .filter(|a| a.is_ipv4() && !a.ip().is_unspecified())
            .map(|a| a.ip().to_string())
            .collect();
        let text = format!("log:0|domain:0|ip:{}|ttl:60", ips.join(";"));
        let body = cipher
            .encrypt_hex(&text)
            .ok_or_else(|| ApiError::internal("encrypting the answer failed"))?;
        Ok(text_response(body, 300, false))
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_key_is_padded_with_zeros_like_the_sdk() {
        assert_eq!(
            Cipher::aes("abc"),
            Cipher::Aes(b"abc0000000000000".to_vec())
        );
        assert_eq!(Cipher::des("1234567"), None);
        let c = Cipher::aes("k");
        let hex = c.encrypt_hex("www.qq.com").unwrap();
        assert_eq!(c.decrypt_hex(hex.as_bytes()).unwrap(), "www.qq.com");
        assert_eq!(c.decrypt_hex(b"zz"), None);
    }
}
