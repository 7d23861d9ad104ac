//! Client packets on a resolver listener -> responses: the same parse and error discipline as the
//! authoritative side (`wire::parse_query`: FORMERR, BADVERS, NOTIMP, dropped garbage), then the
//! access list (REFUSED outside `allow`: no open resolver, RFC 5358), then the cache or a walk.
//! RA is set on every response from here; AA never is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::{Env, Instance, Resolution, ResolverListener, ResolverSettings};
use crate::metrics;
use crate::wire::{self, Query, Reject, rcode};

/// What to do with one packet.
pub enum Step {
    /// Send this (or nothing).
    Done(Option<Vec<u8>>),
    /// Needs a walk: call `walk` with the same packet.
    Walk,
}

struct Ctx<'a> {
    listener: &'a ResolverListener,
    payload: u16,
    tcp: bool,
}

/// Answers from what is at hand (errors, refusals, the cache); `Step::Walk` when it cannot.
#[allow(clippy::too_many_arguments)]
pub fn answer_now(
    instance: &Instance,
    port: u16,
    settings: &ResolverSettings,
    listener: usize,
    payload: u16,
    packet: &[u8],
    peer: SocketAddr,
    tcp: bool,
) -> Step {
    let start = Instant::now();
    let l = &settings.listeners[listener];
    let ctx = Ctx {
        listener: l,
        payload,
        tcp,
    };
    let q = match check(&ctx, packet, peer) {
        Ok(q) => q,
        Err(reply) => return Step::Done(counted(reply, start)),
    };
    let env = Env {
        settings,
        listener: l,
        instance,
        port,
    };
    let Some(name) = qname(&q) else {
        return Step::Done(counted(Some(error(&ctx, &q, rcode::FORMERR)), start));
    };
    let client = Some(client_ip(&q, peer));
    if let Some(res) = super::from_cache(&env, &name, q.rtype(), client) {
        return Step::Done(counted(Some(encode(&ctx, &q, &res)), start));
    }
    // RD clear: answer from the cache only (RFC 1034 4.3.1); what is not cached is refused rather
    // than walked, so the cache cannot be used to make us query on someone's behalf.
    if q.flags & 0x0100 == 0 {
        return Step::Done(counted(Some(error(&ctx, &q, rcode::REFUSED)), start));
    }
    Step::Walk
}

/// The walk for a packet `answer_now` could not answer.
#[allow(clippy::too_many_arguments)]
pub async fn walk(
    instance: Arc<Instance>,
    port: u16,
    settings: Arc<ResolverSettings>,
    listener: usize,
    payload: u16,
    packet: Vec<u8>,
    peer: SocketAddr,
    tcp: bool,
) -> Option<Vec<u8>> {
    let start = Instant::now();
    let l = &settings.listeners[listener];
    let ctx = Ctx {
        listener: l,
        payload,
        tcp,
    };
    let q = match check(&ctx, &packet, peer) {
        Ok(q) => q,
        Err(reply) => return counted(reply, start),
    };
    let env = Env {
        settings: &settings,
        listener: l,
        instance: &instance,
        port,
    };
    let name = qname(&q)?;
    let res = super::resolve(&env, &name, q.rtype(), Some(client_ip(&q, peer))).await;
    if let Some(why) = &res.reason {
        tracing::debug!(name = %name, qtype = %q.rtype(), "SERVFAIL: {why}");
    }
    counted(Some(encode(&ctx, &q, &res)), start)
}

/// A reply and its RCODE, as decided (not read back from the bytes).
type Reply = Option<(Vec<u8>, u16)>;

fn counted(reply: Reply, start: Instant) -> Option<Vec<u8>> {
    let (bytes, rc) = reply?;
    metrics::record(metrics::Via::Recursive, rc, None, start.elapsed());
    Some(bytes)
}

/// Parse and policy: Ok(query) to answer, Err(reply) otherwise.
fn check<'p>(ctx: &Ctx<'_>, packet: &'p [u8], peer: SocketAddr) -> Result<Query<'p>, Reply> {
    let q = match wire::parse_query(packet) {
        Ok(q) => q,
        Err(Reject::Drop) => return Err(None),
        Err(Reject::Error {
            id,
            flags,
            rcode,
            question,
            edns,
            tsig,
        }) => {
            let mut bytes =
                wire::encode_error_ra(id, flags, rcode, question, edns.as_ref(), ctx.payload, true);
            if let Some(t) = tsig {
                wire::append_tsig_error(&mut bytes, &t);
            }
            return Err(Some((bytes, rcode)));
        }
    };
    if !ctx.listener.allows(peer.ip()) {
        return Err(Some(error(ctx, &q, rcode::REFUSED)));
    }
    // The same table as the authoritative listeners (zone transfers go between a zone's
    // servers, not through a resolver; other classes than IN have nothing to resolve).
    if let Some(rc) = crate::query::refusal(&q) {
        return Err(Some(error(ctx, &q, rc)));
    }
    Ok(q)
}

fn qname(q: &Query<'_>) -> Option<Name> {
    let mut d = BinDecoder::new(q.question);
    Name::read(&mut d).ok()
}

/// Who the client is, for ECS forwarding: its own ECS subnet when it sent one, else its address.
fn client_ip(q: &Query<'_>, peer: SocketAddr) -> std::net::IpAddr {
    match q.edns.as_ref().and_then(|e| e.ecs) {
        Some(e) if e.source_prefix > 0 => crate::query::truncate(e.addr, e.source_prefix).0,
        _ => peer.ip(),
    }
}

fn error(ctx: &Ctx<'_>, q: &Query<'_>, rc: u16) -> (Vec<u8>, u16) {
    let bytes = wire::encode_error_ra(
        q.id,
        q.flags,
        rc,
        Some(q.question),
        q.edns.as_ref(),
        ctx.payload,
        true,
    );
    (bytes, rc)
}

fn encode(ctx: &Ctx<'_>, q: &Query<'_>, res: &Resolution) -> (Vec<u8>, u16) {
    let max = wire::max_size(q.edns.as_ref(), ctx.tcp, ctx.payload);
    let bytes = wire::encode_records(q, res.rcode, &res.answer, &res.authority, max, ctx.payload);
    (bytes, res.rcode)
}
