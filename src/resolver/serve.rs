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
    limits: &'a super::cache::Limits,
}

/// Answers from what is at hand (errors, refusals, the cache); `Step::Walk` when it cannot.
#[allow(clippy::too_many_arguments)]
pub fn answer_now(
    instance: &Arc<Instance>,
    port: u16,
    settings: &Arc<ResolverSettings>,
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
        limits: &settings.cache,
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
    let client = Some(client_ip(&q, peer));
    // RD clear (RFC 1034 4.3.1): REFUSED unless the client is in `allow_snoop`, as Unbound's
    // `allow` does. Answering it from the cache would tell anyone allowed which names other
    // clients asked for, and when (cache snooping); those in `allow_snoop` (monitoring) get the
    // cache only. Never a walk: the cache cannot be used to make us query on someone's behalf.
    let rd = q.flags & 0x0100 != 0;
    if !rd && !l.allows_snoop(peer.ip()) {
        return Step::Done(counted(Some(error(&ctx, &q, rcode::REFUSED)), start));
    }
    // The common hit: the RRset asked for, cached under the name asked, sent from its encoding.
    if let Some((bytes, ttl, left)) = direct_hit(&ctx, instance, &q, client) {
        // Prefetch: the last 10 % of the TTL it was stored with (Unbound's rule). Only for RD
        // queries: RD=0 never makes us ask anyone.
        if settings.prefetch
            && rd
            && u64::from(left) * 10 <= u64::from(ttl)
            && let Some(name) = qname(&q)
        {
            super::prefetch(instance, settings, listener, port, name, q.rtype(), client);
        }
        return Step::Done(counted(Some((bytes, rcode::NOERROR)), start));
    }
    let Some(name) = qname(&q) else {
        return Step::Done(counted(Some(error(&ctx, &q, rcode::FORMERR)), start));
    };
    if let Some(res) = super::from_cache(&env, &name, q.rtype(), client) {
        return Step::Done(counted(Some(encode(&ctx, &q, res)), start));
    }
    if !rd {
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
        limits: &settings.cache,
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
    counted(Some(encode(&ctx, &q, res)), start)
}

/// A direct hit written from the cache's encoding of the RRset (`CachedRrset`): the bytes
/// `encode` would write for the same hit, without cloning or encoding a record. Its TTL gets the
/// same `max_ttl` cap as `clamp_ttls` gives (a reload may have lowered it since the store).
/// With the bytes: the TTL the entry was stored with and the seconds it has left.
fn direct_hit(
    ctx: &Ctx<'_>,
    instance: &Instance,
    q: &Query<'_>,
    client: Option<std::net::IpAddr>,
) -> Option<(Vec<u8>, u32, u32)> {
    let (wire, left, ttl) = instance.cache.answer_wire(q.key(), q.rtype(), client)?;
    instance
        .stats
        .cache_answers
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let max = wire::max_size(q.edns.as_ref(), ctx.tcp, ctx.payload);
    let mut out = Vec::with_capacity(max.min(wire.size() + 512));
    wire.write(q, left.min(ctx.limits.max_ttl), max, ctx.payload, &mut out);
    Some((out, ttl, left))
}

/// TTLs as they may leave: a TTL above 2^31 - 1 is 0 (RFC 2181 8), answers are capped at
/// `max_ttl` and negative answers' SOA at `negative_max_ttl`, as the cache caps what it keeps,
/// so the answer that ends a walk and the cached copy of it say the same. `min_ttl` is not applied
/// here: a cached entry's remaining time may rightly be below it.
fn clamp_ttls(res: &mut Resolution, limits: &super::cache::Limits) {
    let negative = res.answer.is_empty() || res.rcode == rcode::NXDOMAIN;
    let fix = |ttl: u32, cap: u32| {
        if ttl > i32::MAX as u32 {
            0
        } else {
            ttl.min(cap)
        }
    };
    for r in &mut res.answer {
        r.ttl = fix(r.ttl, limits.max_ttl);
    }
    for r in &mut res.authority {
        let cap = if negative && r.record_type() == hickory_proto::rr::RecordType::SOA {
            limits.negative_max_ttl
        } else {
            limits.max_ttl
        };
        r.ttl = fix(r.ttl, cap);
    }
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

fn encode(ctx: &Ctx<'_>, q: &Query<'_>, mut res: Resolution) -> (Vec<u8>, u16) {
    clamp_ttls(&mut res, ctx.limits);
    let max = wire::max_size(q.edns.as_ref(), ctx.tcp, ctx.payload);
    let bytes = wire::encode_records(q, res.rcode, &res.answer, &res.authority, max, ctx.payload);
    (bytes, res.rcode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, RData, Record, rdata};

    #[test]
    fn ttls_leave_clamped() {
        let a = |ttl| {
            Record::from_rdata(
                Name::from_ascii("a.example.").unwrap(),
                ttl,
                RData::A(rdata::A::new(192, 0, 2, 1)),
            )
        };
        let limits = super::super::cache::Limits {
            max_entries: 10,
            max_bytes: 1 << 20,
            min_ttl: 0,
            max_ttl: 86400,
            negative_max_ttl: 3600,
            serve_expired_ttl: 0,
        };
        let mut res = Resolution {
            rcode: rcode::NOERROR,
            answer: vec![a(604800), a(u32::MAX), a(0x8000_0000), a(300)],
            authority: vec![],
            reason: None,
            upstream_queries: 1,
        };
        clamp_ttls(&mut res, &limits);
        let ttls: Vec<u32> = res.answer.iter().map(|r| r.ttl).collect();
        // RFC 2181 8: a TTL with the top bit set is 0.
        assert_eq!(ttls, [86400, 0, 0, 300]);
    }
}
