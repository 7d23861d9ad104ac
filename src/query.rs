//! One DNS message in, one out: parse, answer from the snapshot, encode. Every DNS transport calls
//! `respond`, so UDP, TCP and DoH give identical answers. No I/O (counters aside). The engine's
//! per-answer inputs that are not in the message (live health, the round-robin position, the
//! random source of weighted picks) are supplied here, by `env`.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use hickory_proto::rr::RecordType;

use crate::engine::{self, Answer, Env, Question};
use crate::geo::GeoCache;
use crate::gslb::{Chance, ClientAddr, HealthView, LiveHealth, Rng};
use crate::metrics;
use crate::snapshot::Snapshot;
use crate::wire::{self, Reject, rcode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// RFC 8484: one message per HTTP exchange, sized like TCP (RFC 8484 section 6).
    Https,
    /// RFC 7858: TCP framing inside TLS, sized like TCP.
    Tls,
    /// RFC 9250: one message per QUIC stream with the TCP length prefix, sized like TCP.
    Quic,
}

/// What the client is, for answers that depend on it (the GSLB) and for logs.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
    pub transport: Transport,
}

const CLASS_IN: u16 = 1;
const CLASS_CH: u16 = 3;
const CLASS_ANY: u16 = 255;

/// What a response was, for the counters.
#[derive(Debug, Clone, Copy)]
pub struct Served<'s> {
    pub rcode: u16,
    /// The answer counter of the GSLB pool (and family) that answered, if one did.
    pub hits: Option<&'s std::sync::atomic::AtomicU64>,
    /// The verdict on the query's COOKIE option.
    pub cookie: crate::cookie::Outcome,
}

impl Served<'_> {
    /// Counts the response (the latency is recorded by the caller, which knows what to time).
    pub fn count(&self, via: metrics::Via) {
        metrics::count(via, self.rcode, self.hits);
    }
}

/// The counters' name of a transport.
pub fn via_of(t: Transport) -> metrics::Via {
    match t {
        Transport::Udp => metrics::Via::Udp,
        Transport::Tcp => metrics::Via::Tcp,
        Transport::Https => metrics::Via::Doh,
        Transport::Tls => metrics::Via::Dot,
        Transport::Quic => metrics::Via::Doq,
    }
}

/// Answers one message; None means send nothing (RFC 1035 4.1.1 responses, runt packets).
pub fn respond(
    snap: &Snapshot,
    listener: usize,
    packet: &[u8],
    client: &Client,
) -> Option<Vec<u8>> {
    let start = std::time::Instant::now();
    let mut out = Vec::with_capacity(512);
    let served = respond_into(snap, listener, packet, client, &mut out, None)?;
    let via = via_of(client.transport);
    served.count(via);
    metrics::observe(via, start.elapsed(), 1);
    Some(out)
}

/// `respond` into `out` (cleared first), uncounted; geo lookups go through `geo` when given.
/// This is the general path: every query the UDP fast path does not answer from its prebuilt
/// answers comes here.
pub fn respond_into<'s>(
    snap: &'s Snapshot,
    listener: usize,
    packet: &[u8],
    client: &Client,
    out: &mut Vec<u8>,
    geo: Option<&mut GeoCache>,
) -> Option<Served<'s>> {
    respond_reserving(snap, listener, packet, client, out, geo, 0)
}

/// `respond_into` with `reserve` bytes of the size limit kept free (for a TSIG record).
fn respond_reserving<'s>(
    snap: &'s Snapshot,
    listener: usize,
    packet: &[u8],
    client: &Client,
    out: &mut Vec<u8>,
    geo: Option<&mut GeoCache>,
    reserve: usize,
) -> Option<Served<'s>> {
    match parse(snap, packet, out)? {
        Parsed::Signed(v) => {
            // RFC 8945 5.3: the request without its TSIG is answered as any other, then the
            // reply is signed chained on the request's MAC; the answer leaves room for the
            // TSIG record within the client's limit (truncated earlier when needed).
            let stripped = v.stripped(packet);
            let served = respond_reserving(
                snap,
                listener,
                &stripped,
                client,
                out,
                geo,
                v.reply_overhead(),
            )?;
            crate::tsig::sign_reply(out, &v, crate::tsig::now());
            Some(served)
        }
        Parsed::Notify(q) => {
            let rc = crate::secondary::notify(snap, q.key(), q.qtype, client.addr.ip());
            wire::encode_error_into(
                q.id,
                q.flags,
                rc,
                Some(q.question),
                q.edns.as_ref(),
                snap.limits.udp_payload,
                false,
                out,
            );
            Some(Served {
                rcode: rc,
                hits: None,
                cookie: crate::cookie::Outcome::NONE,
            })
        }
        Parsed::Done(rcode) => Some(Served {
            rcode: udp_ixfr(snap, listener, packet, client, rcode, out),
            hits: None,
            cookie: crate::cookie::Outcome::NONE,
        }),
        Parsed::Query(q) => {
            let answer = answer(snap, listener, &q, client, geo);
            encode_reserving(snap, &q, &answer, client.transport, reserve, out);
            let c = cookie(snap, &q, client.addr.ip());
            add_cookie_reserving(snap, &q, &c, client.transport, reserve, out);
            Some(Served {
                rcode: wire::rcode_of(answer.outcome),
                hits: answer.hits,
                cookie: c,
            })
        }
    }
}

/// A message that parsed: a question for the engine, or a response already in `out` (an error,
/// or a CHAOS answer about the server) with its RCODE.
// The query (with its 255-byte key) stays inline: boxing it would allocate per query.
#[allow(clippy::large_enum_variant)]
pub enum Parsed<'p> {
    Query(wire::Query<'p>),
    Done(u16),
    /// RFC 1996 NOTIFY: answered by `respond_into` (which knows the source address).
    Notify(wire::Query<'p>),
    /// Signed with a key of ours and verified (RFC 8945 5.2): answer `Verified::stripped` and
    /// sign the reply (`respond_into` does both).
    Signed(crate::tsig::Verified),
}

/// IXFR over UDP, which `parse` refuses like every transfer: answered instead by
/// `xfr::answer_udp` (the SOA, or TC) when the zone's ACL lets the client in. Only a REFUSED
/// reply is looked at again, so ordinary queries pay nothing. Returns the RCODE sent.
pub fn udp_ixfr(
    snap: &Snapshot,
    listener: usize,
    packet: &[u8],
    client: &Client,
    rcode: u16,
    out: &mut Vec<u8>,
) -> u16 {
    if rcode != rcode::REFUSED || client.transport != Transport::Udp {
        return rcode;
    }
    match crate::xfr::answer_udp(snap, listener, packet, client.addr) {
        Some(r) => {
            *out = r;
            u16::from(out[3] & 0xf)
        }
        None => rcode,
    }
}

/// Parses `packet`; errors (FORMERR, NOTIMP, BADVERS, REFUSED for what is never answered here)
/// are written to `out` whole. None: send nothing.
// Inlined for the same reason as `wire::parse_query`: the Query is not copied between frames.
#[inline]
pub fn parse<'p>(snap: &Snapshot, packet: &'p [u8], out: &mut Vec<u8>) -> Option<Parsed<'p>> {
    let payload = snap.limits.udp_payload;
    let q = match wire::parse_query(packet) {
        Ok(q) => q,
        Err(Reject::Drop) => return None,
        Err(Reject::Error {
            id,
            flags,
            rcode,
            question,
            edns,
            tsig,
        }) => {
            wire::encode_error_into(
                id,
                flags,
                rcode,
                question,
                edns.as_ref(),
                payload,
                false,
                out,
            );
            if let Some(t) = tsig {
                // No keys: every key is unknown (BADKEY, unsigned, RFC 8945 5.2.1). With keys,
                // the TSIG is verified: key, MAC, time, each with its own error (5.2).
                let now = crate::tsig::now();
                let verdict = match snap.keys.is_empty() {
                    true => None,
                    false => crate::tsig::verify_request(&snap.keys, packet, now),
                };
                match verdict {
                    None => wire::append_tsig_error(out, &t),
                    Some(Ok(v)) => {
                        out.clear();
                        return Some(Parsed::Signed(v));
                    }
                    Some(Err(refused)) => refused.finish(out, now),
                }
            }
            return Some(Parsed::Done(rcode));
        }
    };
    if (q.flags >> 11) & 0xf == wire::OPCODE_NOTIFY {
        return Some(Parsed::Notify(q));
    }
    let rc = if q.qclass == CLASS_CH {
        if let Some(text) = chaos_text(snap, &q) {
            wire::encode_chaos_txt(&q, text.as_bytes(), payload, out);
            return Some(Parsed::Done(rcode::NOERROR));
        }
        rcode::REFUSED
    } else {
        match refusal(&q) {
            None => return Some(Parsed::Query(q)),
            Some(rc) => rc,
        }
    };
    wire::encode_error_into(
        q.id,
        q.flags,
        rc,
        Some(q.question),
        q.edns.as_ref(),
        payload,
        false,
        out,
    );
    Some(Parsed::Done(rc))
}

/// RFC 4892 and BIND's convention: CHAOS TXT `id.server.` / `hostname.bind.` give the identity,
/// `version.server.` / `version.bind.` the version, each only when configured (`[server]`).
/// None: everything else in CHAOS, and what is not configured, which is REFUSED (no zones in
/// that class).
fn chaos_text<'s>(snap: &'s Snapshot, q: &wire::Query<'_>) -> Option<&'s str> {
    const ID_SERVER: &[u8] = b"\x02id\x06server\x00";
    const HOSTNAME_BIND: &[u8] = b"\x08hostname\x04bind\x00";
    const VERSION_SERVER: &[u8] = b"\x07version\x06server\x00";
    const VERSION_BIND: &[u8] = b"\x07version\x04bind\x00";
    if !matches!(q.qtype, 16 | 255) {
        return None;
    }
    match q.key() {
        k if k == ID_SERVER || k == HOSTNAME_BIND => snap.server.identity.as_deref(),
        k if k == VERSION_SERVER || k == VERSION_BIND => snap.server.version.as_deref(),
        _ => None,
    }
}

/// The process-wide round-robin position: every answer takes the next, so consecutive answers
/// from any thread rotate (relaxed: only the spread matters).
static ROUND: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static RNG: Cell<Rng> = Cell::new(Rng::from_clock({
        let local = 0u8;
        &local as *const u8 as u64
    }));
}

/// The chance of one live answer: the next round-robin position, and a generator seeded from
/// this thread's.
pub fn chance() -> Chance {
    let seed = RNG.with(|c| {
        let mut rng = c.get();
        let v = rng.next_u64();
        c.set(rng);
        v
    });
    Chance::new(ROUND.fetch_add(1, Ordering::Relaxed), seed)
}

/// What no DNS listener of ours answers, whatever its data: the one refusal table, shared by the
/// authoritative and the resolver listeners. None: a question for the engine (or the resolver).
pub fn refusal(q: &wire::Query<'_>) -> Option<u16> {
    Some(match q.rtype() {
        // RFC 6891 6.1.1: OPT is a pseudo-RR, not something to ask for.
        RecordType::OPT => rcode::FORMERR,
        // No zone transfers (yet): refuse, as NSD and Knot do without an ACL allowing it. A
        // resolver never transfers: zones go between a zone's own servers.
        RecordType::AXFR | RecordType::IXFR => rcode::REFUSED,
        _ if matches!(q.qtype, 253 | 254) => rcode::NOTIMP, // MAILB, MAILA (RFC 883, obsolete)
        // QCLASS ANY (RFC 1035 3.2.5) is answered as IN: IN is the only class with data here.
        // CHAOS and HESIOD have no zones (the CHAOS identity names are answered before this).
        _ if q.qclass != CLASS_IN && q.qclass != CLASS_ANY => rcode::REFUSED,
        _ => return None,
    })
}

/// The engine's inputs for a live answer: health as the checks and overrides say
/// (`LiveHealth`), `chance()`, and the serving thread's geo cache when it has one.
pub fn env<'a>(health: &'a dyn HealthView, geo: Option<&'a mut GeoCache>) -> Env<'a> {
    Env {
        health,
        chance: chance(),
        geo_cache: geo,
    }
}

/// The engine's answer to a parsed query from `client`.
pub fn answer<'s>(
    snap: &'s Snapshot,
    listener: usize,
    q: &wire::Query<'_>,
    client: &Client,
    geo: Option<&mut GeoCache>,
) -> Answer<'s> {
    // One atomic load: the overrides in force for this answer.
    let overrides = snap.gslb.overrides.active();
    let live = LiveHealth {
        overrides: overrides.as_deref(),
    };
    engine::answer(
        snap.view(listener),
        &snap.gslb,
        &Question {
            key: q.key(),
            name: q.name(),
            qtype: q.rtype(),
            client: client_addr(
                q.edns.as_ref().and_then(|e| e.ecs.as_ref()),
                client.addr.ip(),
            ),
            dnssec_ok: q.edns.as_ref().is_some_and(|e| e.dnssec_ok),
        },
        snap.limits.cname_chain,
        &mut env(&live, geo),
        None,
    )
}

/// Encodes `answer` for a client on `transport` (its size limit) into `out`.
pub fn encode(
    snap: &Snapshot,
    q: &wire::Query<'_>,
    answer: &Answer<'_>,
    transport: Transport,
    out: &mut Vec<u8>,
) {
    encode_reserving(snap, q, answer, transport, 0, out);
}

fn encode_reserving(
    snap: &Snapshot,
    q: &wire::Query<'_>,
    answer: &Answer<'_>,
    transport: Transport,
    reserve: usize,
    out: &mut Vec<u8>,
) {
    let payload = snap.limits.udp_payload;
    let max = wire::max_size(q.edns.as_ref(), transport != Transport::Udp, payload)
        .saturating_sub(reserve);
    wire::encode_answer_into(q, answer, max, payload, out);
    if let Some(id) = &snap.server.identity {
        wire::append_nsid(out, q, id.as_bytes(), max);
    }
}

/// Judges the query's COOKIE option (RFC 7873 5.2) from `ip`.
pub fn cookie(snap: &Snapshot, q: &wire::Query<'_>, ip: IpAddr) -> crate::cookie::Outcome {
    match q.edns.as_ref().and_then(|e| e.cookie.as_ref()) {
        Some(c) if snap.cookies.enabled => {
            crate::cookie::check(&snap.cookies, c.bytes(), ip, crate::cookie::now())
        }
        _ => crate::cookie::Outcome::NONE,
    }
}

/// Adds the COOKIE option `c` says to answer with to `out`, a response to `q` on `transport`.
pub fn add_cookie(
    snap: &Snapshot,
    q: &wire::Query<'_>,
    c: &crate::cookie::Outcome,
    transport: Transport,
    out: &mut Vec<u8>,
) {
    add_cookie_reserving(snap, q, c, transport, 0, out);
}

fn add_cookie_reserving(
    snap: &Snapshot,
    q: &wire::Query<'_>,
    c: &crate::cookie::Outcome,
    transport: Transport,
    reserve: usize,
    out: &mut Vec<u8>,
) {
    if let Some(reply) = &c.reply {
        let max = wire::max_size(
            q.edns.as_ref(),
            transport != Transport::Udp,
            snap.limits.udp_payload,
        )
        .saturating_sub(reserve);
        wire::append_cookie(out, q, reply, max);
    }
}

/// Longest ECS source prefixes used (RFC 7871 11.1 recommends resolvers send no more than these;
/// longer ones are cut so one client's full address never picks an answer nobody else shares).
pub const ECS_MAX_V4: u8 = 24;
pub const ECS_MAX_V6: u8 = 56;

/// The address the GSLB decides by: the ECS subnet when the query has one (RFC 7871 7.1.1), else
/// the packet's source. ECS SOURCE PREFIX-LENGTH 0 means "do not locate me" (RFC 7871 7.1.2).
pub fn client_addr(ecs: Option<&wire::ClientSubnet>, peer: IpAddr) -> ClientAddr {
    match ecs {
        Some(e) if e.source_prefix == 0 => ClientAddr {
            ip: None,
            prefix: 0,
        },
        Some(e) => {
            let (ip, prefix) = truncate(e.addr, e.source_prefix);
            ClientAddr {
                ip: Some(ip),
                prefix,
            }
        }
        None => {
            let ip = match peer {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
                v4 => v4,
            };
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            ClientAddr {
                ip: Some(ip),
                prefix,
            }
        }
    }
}

/// `addr` cut to at most /24 (IPv4) or /56 (IPv6), with the bits past the prefix cleared.
pub fn truncate(addr: IpAddr, prefix: u8) -> (IpAddr, u8) {
    match addr {
        IpAddr::V4(a) => {
            let p = prefix.min(ECS_MAX_V4);
            let mask = u32::MAX.checked_shl(32 - p as u32).unwrap_or(0);
            (IpAddr::V4((u32::from(a) & mask).into()), p)
        }
        IpAddr::V6(a) => {
            let p = prefix.min(ECS_MAX_V6);
            let mask = u128::MAX.checked_shl(128 - p as u32).unwrap_or(0);
            (IpAddr::V6((u128::from(a) & mask).into()), p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(qtype: u16, qclass: u16) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(b"\x03www\x07example\x03com\x00");
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&qclass.to_be_bytes());
        b
    }

    #[test]
    fn one_refusal_table() {
        for (qtype, qclass, want) in [
            (1, 1, None),
            (1, 255, None), // QCLASS ANY is answered as IN
            (41, 1, Some(rcode::FORMERR)),
            (252, 1, Some(rcode::REFUSED)),
            (251, 1, Some(rcode::REFUSED)),
            (253, 1, Some(rcode::NOTIMP)),
            (254, 1, Some(rcode::NOTIMP)),
            (16, 3, Some(rcode::REFUSED)),
            (1, 4, Some(rcode::REFUSED)),
        ] {
            let b = q(qtype, qclass);
            let parsed = wire::parse_query(&b).unwrap();
            assert_eq!(refusal(&parsed), want, "type {qtype} class {qclass}");
        }
    }

    #[test]
    fn the_chance_advances() {
        let (a, b) = (chance(), chance());
        assert_ne!(
            a.round, b.round,
            "every answer takes the next round-robin position"
        );
    }
}
