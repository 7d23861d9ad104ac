//! Who an HTTP answer is for, and the small request plumbing the three APIs share (query-string
//! parameters, `Cache-Control`, JSON answers).
//!
//! The address rule, in order:
//! 1. `ip=` (Alibaba) or `edns_client_subnet=` (Google), when `allow_client_ip` is set, read as an
//!    ECS subnet (RFC 7871): a bare address is a /32 or /128, prefix 0 means "do not locate me";
//!    like an ECS option it is cut to /24 or /56 before the GSLB sees it (`query::client_addr`).
//! 2. Else, when the TCP peer is a trusted proxy, the address it forwards: the right-most
//!    `X-Forwarded-For` entry that is not itself a trusted proxy, else `X-Real-IP`. Headers from any
//!    other peer are ignored (anyone can write them).
//! 3. Else the peer.
//!
//! 2 and 3 give the request's *origin*, used at full length like a packet's source address, and
//! the key of the per-client rate limit (a caller cannot dodge the limit by naming another client
//! with `ip=`).

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::gslb::ClientAddr;
use crate::gslb::explain::ClientSource;
use crate::http::{ApiError, HttpSettings};
use crate::query;
use crate::snapshot::Snapshot;
use crate::wire::ClientSubnet;

/// The `[http]` settings of a snapshot. The HTTP listener only exists when `[http]` does and a
/// reload cannot remove it (listen addresses need a restart), so None is an internal error.
pub fn settings(snap: &Snapshot) -> Result<&HttpSettings, ApiError> {
    snap.http
        .as_ref()
        .ok_or_else(|| ApiError::internal("no [http] section in the configuration"))
}

/// The address the request comes from: the peer, or the client a trusted proxy forwards.
pub fn origin(
    http: &HttpSettings,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<IpAddr, ApiError> {
    let peer = unmap(peer.ip());
    if !http.is_trusted(peer) {
        return Ok(peer);
    }
    // Every hop appends the address it received the request from, so the right-most entries are
    // the ones our own proxies wrote; the first one that is not a trusted proxy is the client.
    // Entries left of it came from the client and are not believed (nor parsed).
    // Several X-Forwarded-For fields are one comma-separated list (RFC 9110 5.3).
    let mut leftmost = None;
    let fields: Vec<&HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
    for field in fields.iter().rev() {
        let text = field
            .to_str()
            .map_err(|_| ApiError::invalid_ip("X-Forwarded-For is not ASCII"))?;
        for entry in text.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let ip = forwarded_addr(entry).ok_or_else(|| {
                ApiError::invalid_ip(format!("X-Forwarded-For entry \"{entry}\" is no address"))
            })?;
            if !http.is_trusted(ip) {
                return Ok(ip);
            }
            leftmost = Some(ip);
        }
    }
    if let Some(v) = headers.get("x-real-ip") {
        let ip = v
            .to_str()
            .ok()
            .and_then(|s| forwarded_addr(s.trim()))
            .ok_or_else(|| ApiError::invalid_ip("X-Real-IP is not an address"))?;
        return Ok(ip);
    }
    // Only trusted proxies in the chain: the request started at the furthest of them.
    Ok(leftmost.unwrap_or(peer))
}

/// An address as proxies write it: bare, `a.b.c.d:port` or `[v6]:port`.
fn forwarded_addr(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(unmap)
}

/// IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 peer) as IPv4.
pub(crate) fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Who an answer is for.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// What the GSLB decides by.
    pub addr: ClientAddr,
    pub source: ClientSource,
    /// The caller named the client (`ip=`, `edns_client_subnet=`): the answer is for whoever asks
    /// the same URL, so shared caches may keep it.
    pub explicit: bool,
    /// The address as given (explicit) or the origin, for the echo.
    pub shown: IpAddr,
    /// The prefix the caller wrote, when it wrote one.
    pub given_prefix: Option<u8>,
}

impl Client {
    /// `client_ip` of the Alibaba answers: the address given (with its prefix, when one was
    /// written and is shorter than a full address), or the origin.
    pub fn echo(&self) -> String {
        let full = if self.shown.is_ipv4() { 32 } else { 128 };
        match self.given_prefix {
            Some(p) if p < full => format!("{}/{p}", self.shown),
            _ => self.shown.to_string(),
        }
    }
}

/// The client of an answer: `given` (the raw `ip=` / `edns_client_subnet=` value, None or empty
/// when absent) or the request's `origin`. `source` says how an explicit address is reported
/// (`Given` for Alibaba's `ip=`, `Ecs` for Google's subnet).
pub fn client(
    http: &HttpSettings,
    origin: IpAddr,
    given: Option<&str>,
    source: ClientSource,
) -> Result<Client, ApiError> {
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return Ok(Client {
            addr: query::client_addr(None, origin),
            source: ClientSource::Packet,
            explicit: false,
            shown: origin,
            given_prefix: None,
        });
    };
    if !http.allow_client_ip {
        return Err(ApiError::forbidden(
            "naming the client (ip=, edns_client_subnet=) is disabled on this server",
        ));
    }
    let (ip, prefix, written) = parse_subnet(given)
        .ok_or_else(|| ApiError::invalid_ip(format!("\"{given}\" is not an address or subnet")))?;
    let subnet = ClientSubnet {
        family: if ip.is_ipv4() { 1 } else { 2 },
        source_prefix: prefix,
        scope_prefix: 0,
        addr: ip,
    };
    Ok(Client {
        // The same cut (/24, /56) and prefix-0 rule as an ECS option in a DNS query.
        addr: query::client_addr(Some(&subnet), origin),
        source,
        explicit: true,
        shown: ip,
        given_prefix: written.then_some(prefix),
    })
}

/// `addr` or `addr/prefix`; an IPv4-mapped IPv6 subnet becomes the IPv4 one (RFC 7871 6: FAMILY
/// is the address's own). Returns (address, prefix, whether a prefix was written).
pub(crate) fn parse_subnet(s: &str) -> Option<(IpAddr, u8, bool)> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = a.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        None => max,
        // Digits only: "+24" and " 24" are not prefixes.
        Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u8>().ok().filter(|p| *p <= max)?
        }
        Some(_) => return None,
    };
    Some(match ip {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), prefix - 96, p.is_some()),
            None => (ip, prefix, p.is_some()),
        },
        _ => (ip, prefix, p.is_some()),
    })
}

/// The query string, decoded once. Values stay bytes until a handler asks for text, so a
/// non-UTF-8 percent-encoding becomes the error of the parameter it is in. A repeated parameter:
/// the first one counts (the signature and the lookup always read the same one).
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` pairs (what SDKs and browsers send): `&`
    /// separated, `+` is a space, `%XX` a byte; a malformed `%` stays as written.
    pub fn parse(query: Option<&str>) -> Params {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Params { pairs }
    }

    /// Every pair in order, decoded (for signatures over a set of parameters).
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The first value of `key`, as bytes.
    pub fn raw(&self, key: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `key` as text: Ok(None) when absent.
    pub fn text(&self, key: &str) -> Result<Option<&str>, NotUtf8> {
        self.raw(key)
            .map(|v| std::str::from_utf8(v).map_err(|_| NotUtf8))
            .transpose()
    }

    /// A yes/no parameter (`explain=1`, Google's `cd`/`do`): absent, empty, `0`, `false` = no;
    /// `1`, `true` = yes; anything else is None (the caller decides whether that is an error).
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.raw(key) {
            None | Some(b"") | Some(b"0") | Some(b"false") => Some(false),
            Some(b"1") | Some(b"true") => Some(true),
            Some(_) => None,
        }
    }
}

/// A parameter's bytes (after percent-decoding) are not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (b.get(i + 1).and_then(hex), b.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex(c: &u8) -> Option<u8> {
    (*c as char).to_digit(16).map(|d| d as u8)
}

/// `Cache-Control` of an answer (RFC 9111 5.2.2): `private` when it was tailored to the caller's
/// own address (a shared cache must not hand it to others), `public` when it is the same for
/// everyone asking this URL.
/// `name=`, required: the text as given and the name it parses to (InvalidHost otherwise).
pub fn qname(p: &Params) -> Result<(&str, hickory_proto::rr::Name), ApiError> {
    let name = p
        .text("name")
        .map_err(|_| ApiError::invalid_host("name is not UTF-8"))?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::missing("name"))?;
    let qname = crate::gslb::explain::parse_name(name).map_err(ApiError::invalid_host)?;
    Ok((name, qname))
}

pub fn cache_control(ttl: u32, private: bool) -> HeaderValue {
    let kind = if private { "private" } else { "public" };
    HeaderValue::from_str(&format!("{kind}, max-age={ttl}")).expect("ASCII is a header value")
}

/// A 200 JSON answer with its `Cache-Control`.
pub fn json(body: serde_json::Value, ttl: u32, private: bool) -> Response {
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, cache_control(ttl, private));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_decode_and_first_wins() {
        let p = Params::parse(Some("host=a%2Eb&host=c&x=%zz&y=%4&e=&f&sp=a+b&bad=%ff"));
        assert_eq!(p.text("host"), Ok(Some("a.b")));
        assert_eq!(p.text("x"), Ok(Some("%zz")));
        assert_eq!(p.text("y"), Ok(Some("%4")));
        assert_eq!(p.text("e"), Ok(Some("")));
        assert_eq!(p.text("f"), Ok(Some("")));
        assert_eq!(p.text("sp"), Ok(Some("a b")));
        assert_eq!(p.text("bad"), Err(NotUtf8));
        assert_eq!(p.text("none"), Ok(None));
        assert_eq!(Params::parse(Some("%")).raw("%"), Some(&b""[..]));
        assert_eq!(Params::parse(Some("a=%4")).raw("a"), Some(&b"%4"[..]));
        assert_eq!(Params::parse(Some("a=%41")).raw("a"), Some(&b"A"[..]));
    }

    #[test]
    fn subnets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(parse_subnet("1.2.3.4"), Some((ip("1.2.3.4"), 32, false)));
        assert_eq!(parse_subnet("1.2.3.4/24"), Some((ip("1.2.3.4"), 24, true)));
        assert_eq!(parse_subnet("0.0.0.0/0"), Some((ip("0.0.0.0"), 0, true)));
        assert_eq!(
            parse_subnet("::ffff:127.0.10.1"),
            Some((ip("127.0.10.1"), 32, false))
        );
        assert_eq!(
            parse_subnet("2001:db8::/48"),
            Some((ip("2001:db8::"), 48, true))
        );
        for bad in [
            "",
            "1.2.3.4/",
            "1.2.3.4/33",
            "1.2.3.4/+1",
            "x",
            "1.2.3",
            "::/129",
            "1.2.3.4/0024",
        ] {
            assert_eq!(parse_subnet(bad), None, "{bad}");
        }
    }
}
