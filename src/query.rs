//! One DNS message in, one out: parse, answer from the snapshot, encode. Every DNS transport calls
//! `respond`, so UDP, TCP and DoH give identical answers. No I/O (counters aside).

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::RecordType;

use crate::engine::{self, Question};
use crate::gslb::ClientAddr;
use crate::metrics;
use crate::snapshot::Snapshot;
use crate::wire::{self, Reject, rcode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// RFC 8484: one message per HTTP exchange, sized like TCP (RFC 8484 section 6).
    Https,
}

/// What the client is, for answers that depend on it (the GSLB) and for logs.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
    pub transport: Transport,
}

const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;

/// Answers one message; None means send nothing (RFC 1035 4.1.1 responses, runt packets).
pub fn respond(
    snap: &Snapshot,
    listener: usize,
    packet: &[u8],
    client: &Client,
) -> Option<Vec<u8>> {
    let start = std::time::Instant::now();
    let mut region = None;
    let resp = respond_counted(snap, listener, packet, client, &mut region)?;
    let via = match client.transport {
        Transport::Udp => metrics::Via::Udp,
        Transport::Tcp => metrics::Via::Tcp,
        Transport::Https => metrics::Via::Doh,
    };
    metrics::record(via, wire::response_rcode(&resp), region, start.elapsed());
    Some(resp)
}

fn respond_counted<'s>(
    snap: &'s Snapshot,
    listener: usize,
    packet: &[u8],
    client: &Client,
    region: &mut Option<&'s str>,
) -> Option<Vec<u8>> {
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
        }) => {
            return Some(wire::encode_error(
                id,
                flags,
                rcode,
                question,
                edns.as_ref(),
                payload,
            ));
        }
    };
    let error = |rc| {
        Some(wire::encode_error(
            q.id,
            q.flags,
            rc,
            Some(q.question),
            q.edns.as_ref(),
            payload,
        ))
    };
    let qtype = q.rtype();
    match qtype {
        // RFC 6891 6.1.1: OPT is a pseudo-RR, not something to ask for.
        RecordType::OPT => return error(rcode::FORMERR),
        // No zone transfers (yet): refuse, as NSD and Knot do without an ACL allowing it.
        RecordType::AXFR | RecordType::IXFR => return error(rcode::REFUSED),
        _ if matches!(q.qtype, 253 | 254) => return error(rcode::NOTIMP), // MAILB, MAILA (RFC 883, obsolete)
        _ => {}
    }
    if q.qclass != CLASS_IN && q.qclass != CLASS_ANY {
        // CHAOS and HESIOD have no zones here.
        return error(rcode::REFUSED);
    }
    let answer = engine::answer(
        snap.view(listener),
        &snap.gslb,
        &Question {
            key: q.key(),
            qtype,
            client: client_addr(
                q.edns.as_ref().and_then(|e| e.ecs.as_ref()),
                client.addr.ip(),
            ),
        },
        snap.limits.cname_chain,
        None,
    );
    *region = answer.region;
    let max = wire::max_size(q.edns.as_ref(), client.transport != Transport::Udp, payload);
    Some(wire::encode_answer(&q, &answer, max, payload))
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
