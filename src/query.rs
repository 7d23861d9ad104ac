//! One DNS message in, one out: parse, answer from the snapshot, encode. Every DNS transport calls
//! `respond`, so UDP and TCP (and later DoH) give identical answers. No I/O.

use std::net::SocketAddr;

use hickory_proto::rr::RecordType;

use crate::engine::{self, Question};
use crate::snapshot::Snapshot;
use crate::wire::{self, Reject, rcode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
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
        &Question {
            key: q.key(),
            qtype,
        },
        snap.limits.cname_chain,
    );
    let max = wire::max_size(q.edns.as_ref(), client.transport == Transport::Tcp, payload);
    Some(wire::encode_answer(&q, &answer, max, payload, 0))
}
