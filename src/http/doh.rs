//! DNS over HTTP (RFC 8484): `GET /dns-query?dns=<base64url>` and `POST /dns-query` with an
//! `application/dns-message` body. The message goes through `query::respond`, the function every
//! DNS transport calls, so the answer is the one UDP gives (sized like TCP, RFC 8484 6).
//!
//! The DNS address of the client is the request's origin (the peer, or what a trusted proxy
//! forwards; `client::origin`); an ECS option in the message overrides it as it does over UDP.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT;

use crate::http::client::{self, Params};
use crate::http::{ApiError, AppState, Peer};
use crate::query::{self, Client, Transport};
use crate::wire;

/// RFC 8484 6: the media type of a DNS message.
const DNS_MESSAGE: &str = "application/dns-message";

pub async fn get(
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
        let dns = p
            .raw("dns")
            .filter(|d| !d.is_empty())
            .ok_or_else(|| ApiError::missing("dns"))?;
        // RFC 8484 4.1: base64url (RFC 4648 5) without padding; padding is accepted too, as
        // clients that pad exist and nothing is ambiguous about it.
        let msg = URL_SAFE_NO_PAD_INDIFFERENT
            .decode(dns)
            .map_err(|e| ApiError::invalid_argument(format!("dns is not base64url: {e}")))?;
        answer(&snap, http.view, &msg, SocketAddr::new(origin, peer.port()))
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

pub async fn post(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Owned, as it is kept across the body read (the guard is tied to this thread).
    let snap = arc_swap::Guard::into_inner(st.handle.snapshot());
    let checked = (|| {
        let http = client::settings(&snap)?;
        let origin = client::origin(http, peer, &headers)?;
        st.limiter.client(origin, &http.rate_limit)?;
        if !is_dns_message(&headers) {
            return Err(ApiError::unsupported_media_type());
        }
        Ok((http.view, http.max_body, origin))
    })();
    let (view, max_body, origin) = match checked {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    // The bounds middleware caps the body already; this cap makes the read itself bounded.
    let msg = match axum::body::to_bytes(body, max_body).await {
        Ok(b) => b,
        Err(_) => return ApiError::body_too_large(max_body).into_response(),
    };
    answer(&snap, view, &msg, SocketAddr::new(origin, peer.port()))
        .unwrap_or_else(IntoResponse::into_response)
}

/// `Content-Type: application/dns-message` (parameters and case aside, RFC 9110 8.3.1).
fn is_dns_message(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(DNS_MESSAGE))
}

/// Answers the DNS message `msg` for a client at `addr` as RFC 8484 does (also Google JSON's
/// `ct=application/dns-message`).
pub(crate) fn answer(
    snap: &crate::snapshot::Snapshot,
    view: usize,
    msg: &[u8],
    addr: SocketAddr,
) -> Result<Response, ApiError> {
    let client = Client {
        addr,
        transport: Transport::Https,
    };
    // A message DNS would not answer at all (a response, a runt) has no DNS error to carry: it is
    // an HTTP error. Everything else, FORMERR and REFUSED included, is a 200 with the DNS RCODE
    // (RFC 8484 4.2.1).
    let resp = query::respond(snap, view, msg, &client)
        .ok_or_else(|| ApiError::invalid_argument("not a DNS query message"))?;
    // Without ECS in the query the answer may be tailored to the caller's own address (a GSLB
    // name), and the URL does not say whose: only the caller's own cache may keep it. With ECS
    // the subnet is part of the message, so of the GET URL: any cache may.
    let has_ecs = wire::parse_query(msg)
        .ok()
        .and_then(|q| q.edns)
        .is_some_and(|e| e.ecs.is_some());
    let age = max_age(&resp);
    let cache = if has_ecs {
        format!("max-age={age}")
    } else {
        format!("private, max-age={age}")
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_str(&cache).expect("ASCII is a header value"),
            ),
        ],
        resp,
    )
        .into_response())
}

/// How long an HTTP cache may keep a DNS response (RFC 8484 5.1: no longer than the smallest TTL
/// of the answer section). A negative answer lives as long as the SOA in its authority section
/// (RFC 2308 5: our SOA TTL there already is the negative TTL); a referral as long as its
/// shortest record; an answer with no records (errors) 0.
pub fn max_age(msg: &[u8]) -> u32 {
    let Some(sections) = record_ttls(msg) else {
        return 0;
    };
    let [answer, authority, additional] = &sections;
    if let Some(t) = answer.iter().map(|(_, t)| *t).min() {
        return t;
    }
    const SOA: u16 = 6;
    if let Some(t) = authority
        .iter()
        .filter(|(ty, _)| *ty == SOA)
        .map(|(_, t)| *t)
        .min()
    {
        return t;
    }
    authority
        .iter()
        .chain(additional)
        .map(|(_, t)| *t)
        .min()
        .unwrap_or(0)
}

/// (TYPE, TTL) of the records of each section after the question, OPT left out (its TTL field
/// holds flags, RFC 6891 6.1.3). None when the message is cut short.
fn record_ttls(msg: &[u8]) -> Option<[Vec<(u16, u32)>; 3]> {
    let u16_at =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?])) };
    let qd = u16_at(4)?;
    let counts = [u16_at(6)?, u16_at(8)?, u16_at(10)?];
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut out: [Vec<(u16, u32)>; 3] = Default::default();
    for (section, count) in out.iter_mut().zip(counts) {
        for _ in 0..count {
            pos = skip_name(msg, pos)?;
            let rtype = u16_at(pos)?;
            let ttl = u32::from_be_bytes(msg.get(pos + 4..pos + 8)?.try_into().ok()?);
            let rdlen = u16_at(pos + 8)? as usize;
            pos += 10 + rdlen;
            if pos > msg.len() {
                return None;
            }
            const OPT: u16 = 41;
            if rtype != OPT {
                // RFC 2181 8: a TTL with the top bit set counts as 0.
                section.push((rtype, if ttl > i32::MAX as u32 { 0 } else { ttl }));
            }
        }
    }
    Some(out)
}

/// The offset after the name at `pos` (labels, ending in a root label or a pointer, RFC 1035
/// 4.1.4).
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len & 0xC0 {
            0 if len == 0 => return Some(pos + 1),
            0 => pos += 1 + len as usize,
            0xC0 => return Some(pos + 2),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_of_odd_messages() {
        assert_eq!(max_age(&[]), 0);
        assert_eq!(max_age(&[0; 12]), 0);
        // One question that runs off the end.
        assert_eq!(max_age(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, b'a']), 0);
        // A header claiming an answer that is not there.
        assert_eq!(max_age(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]), 0);
        // One answer record: root, A, IN, TTL 77, 4 bytes.
        let mut m = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 77, 0, 4, 1, 2, 3, 4]);
        assert_eq!(max_age(&m), 77);
        // The same with the TTL's top bit set.
        m[17] = 0x80;
        assert_eq!(max_age(&m), 0);
    }
}
