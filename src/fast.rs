//! The UDP fast path: what one authoritative UDP thread keeps between queries so that a query it
//! has answered before costs a hash lookup and a copy.
//!
//! - Prebuilt answers: the wire bytes after the question of every answer that does not depend on
//!   the client (no GSLB rule, no rotation), keyed by lowercase name and type. They are captured
//!   from the general path's own encoder the first time the name is asked
//!   ([`wire::Prebuilt::capture`]), so a prebuilt answer is the general path's answer by
//!   construction. They are built as queries arrive rather than for every name at snapshot build:
//!   prebuilding a 1M-record zone would double its memory and load time, and most names are
//!   never asked.
//! - Geo decisions per client network ([`GeoCache`]): GSLB answers the engine still runs get the
//!   client's carrier and location from the cache.
//! - Reused buffers: the loop's reply buffers and the engine's inline sections mean no allocation
//!   per query once the tables are warm.
//!
//! - GSLB prefixes: for a GSLB answer, per name, type and client network (one over which geo
//!   answers uniformly), the chain's records before the last hop as the general encoder wrote
//!   them and that hop's preferred pool ([`wire::GslbPrefix`]); per query only the health-aware
//!   rest of the last hop is decided (`Gslb::decide_preferred`), so failover, rotation and
//!   weights act exactly as on the general path.
//!
//! Everything else takes the general path (`query::respond_into`): errors, answers that need
//! truncation, rotation, networks with finer geo data, and every query when `[limits]
//! udp_fast_path = false`. The tables start over when the snapshot changes (reload). Their memory
//! is bounded: `[limits] fast_path_memory` is one figure for the whole process, split evenly
//! between the authoritative UDP threads, and a thread's share between its answers (1/2), its
//! GSLB prefixes (1/4) and its geo cache (1/4). Bytes are counted as the allocator holds them
//! (each allocation rounded as glibc rounds it, `geo::heap_size`, plus the hash tables' own
//! allocations). A full answer table takes nothing new and starts over at most once per
//! `REFILL`; a full geo cache starts over. No I/O.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::cookie;
use crate::engine::{Answer, Outcome};
use crate::geo::{GeoCache, heap_size};
use crate::gslb::{LiveHealth, Select, Step};
use crate::metrics::{self, Fast, Via};
use crate::query::{self, Client, Parsed, Served, Transport};
use crate::rrl::{self, Kind, Limiter, Verdict};
use crate::snapshot::Snapshot;
use crate::udp::Answerer;
use crate::wire::{self, GslbPrefix, Prebuilt};

/// A full table starts over at most this often: a workload wider than the table (a million
/// names asked at random) then costs the capture of new entries once a minute, not on every
/// miss, and a table that filled with yesterday's names still makes room for today's.
const REFILL: std::time::Duration = std::time::Duration::from_secs(60);

/// A thread's table of answers by lowercase name key, QTYPE and `C` (which clients share the
/// entry). Looked up without building a key: the hash is taken over the parts.
struct Table<C, V> {
    entries: hashbrown::HashTable<Entry<C, V>>,
    /// Heap bytes of the entries' names and values (the table's own allocation is not in it).
    bytes: usize,
    budget: usize,
    /// When the table last started over (or was made).
    cleared: Instant,
}

struct Entry<C, V> {
    name: Box<[u8]>,
    qtype: u16,
    clients: C,
    value: V,
}

impl<C, V> Table<C, V> {
    fn new(budget: usize) -> Self {
        Table {
            entries: hashbrown::HashTable::new(),
            bytes: 0,
            budget,
            cleared: Instant::now(),
        }
    }
}

fn hash_of<C: Hash>(name: &[u8], qtype: u16, clients: &C) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write(name);
    h.write_u16(qtype);
    clients.hash(&mut h);
    h.finish()
}

impl<C: Copy + Eq + Hash, V> Table<C, V> {
    fn get(&self, name: &[u8], qtype: u16, clients: C) -> Option<&V> {
        self.entries
            .find(hash_of(name, qtype, &clients), |e| {
                e.qtype == qtype && e.clients == clients && &*e.name == name
            })
            .map(|e| &e.value)
    }

    /// Bytes held: the entries' allocations and the table's.
    fn held(&self) -> usize {
        self.bytes + self.entries.allocation_size()
    }

    /// Adds an entry whose value owns one allocation of `size` bytes. A full table starts over if
    /// it last did `REFILL` ago, and otherwise takes nothing new.
    fn insert(&mut self, name: &[u8], qtype: u16, clients: C, value: V, size: usize) {
        let cost = heap_size(name.len()) + heap_size(size);
        // A table at capacity doubles on the next insert: count the allocation it would move to.
        let table = if self.entries.len() == self.entries.capacity() {
            (self.entries.allocation_size() * 2).max(64 * size_of::<Entry<C, V>>())
        } else {
            self.entries.allocation_size()
        };
        if self.bytes + table + cost > self.budget {
            if self.cleared.elapsed() < REFILL {
                return;
            }
            self.clear();
            if self.entries.allocation_size() + cost > self.budget {
                return;
            }
        }
        self.bytes += cost;
        let hash = hash_of(name, qtype, &clients);
        if let Some(e) = self.entries.find_mut(hash, |e| {
            e.qtype == qtype && e.clients == clients && &*e.name == name
        }) {
            e.value = value;
            return;
        }
        self.entries.insert_unique(
            hash,
            Entry {
                name: name.into(),
                qtype,
                clients,
                value,
            },
            |e| hash_of(&e.name, e.qtype, &e.clients),
        );
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.cleared = Instant::now();
    }
}

/// Which clients share a GSLB prefix: those not located (ECS source prefix 0) or those of one
/// network over which geo gives one answer (`GeoCache::holds`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Clients {
    NotLocated,
    Network(bool, u128),
}

impl Clients {
    /// The clients `ip` shares answers with, if its network's geo answer is known to be uniform.
    fn of(ip: Option<std::net::IpAddr>, geo: &GeoCache) -> Option<Clients> {
        match ip {
            None => Some(Clients::NotLocated),
            Some(ip) if geo.holds(ip) => {
                let (v4, bits) = GeoCache::network(ip);
                Some(Clients::Network(v4, bits))
            }
            Some(_) => None,
        }
    }
}

/// Whether `a` is the same for every client: no GSLB rule decided it and nothing was rotated.
fn client_independent(a: &Answer<'_>) -> bool {
    a.scope.is_none()
        && [&a.answer, &a.authority, &a.additional]
            .iter()
            .all(|s| s.iter().all(|rr| matches!(rr.select, Select::All)))
}

/// One authoritative UDP thread's state: the snapshot it serves (refreshed per batch), its
/// prebuilt answers and geo cache, and the batch clock for the latency histogram.
pub struct Worker {
    shared: Arc<ArcSwap<Snapshot>>,
    snap: Arc<Snapshot>,
    listener: usize,
    served: Arc<AtomicU64>,
    /// This server's count of answers written from the tables (tests read it).
    fast: Arc<AtomicU64>,
    /// Prebuilt answers: the same for every client asking with the same DO bit (a signed
    /// zone's answer to a DO query carries its RRSIGs and proofs, RFC 4035 3.1).
    answers: Table<bool, Prebuilt>,
    /// GSLB prefixes by client network and DO bit (the chain before the GSLB hop may be signed).
    prefixes: Table<(Clients, bool), GslbPrefix>,
    geo: GeoCache,
    scratch: Vec<u8>,
    batch: Instant,
    /// The response rate limiter all UDP threads of the server share.
    rrl: Arc<Limiter>,
    /// The limiter's clock, read once per batch.
    now_ms: u32,
    /// Limited responses so far (every `slip`-th is slipped).
    limited: u32,
    /// The COOKIE verdict on the query being answered.
    cookie: cookie::Outcome,
    /// Table bytes last added to the process-wide gauge.
    reported: usize,
    /// `Overrides::line_epoch` when `prefixes` were last valid: a drained carrier line changes
    /// what carrier hops answer, and prefixes keep carrier hops.
    line_epoch: u64,
}

impl Worker {
    /// A thread whose tables may hold `share` bytes (its part of `[limits] fast_path_memory`).
    pub fn new(
        shared: Arc<ArcSwap<Snapshot>>,
        listener: usize,
        served: Arc<AtomicU64>,
        fast: Arc<AtomicU64>,
        share: usize,
        rrl: Arc<Limiter>,
    ) -> Self {
        let snap = shared.load_full();
        Worker {
            shared,
            snap,
            listener,
            served,
            fast,
            answers: Table::new(share / 2),
            prefixes: Table::new(share / 4),
            geo: GeoCache::with_budget(share / 4),
            scratch: Vec::with_capacity(512),
            batch: Instant::now(),
            rrl,
            now_ms: 0,
            limited: 0,
            cookie: cookie::Outcome::NONE,
            reported: 0,
            line_epoch: 0,
        }
    }

    /// Bytes the thread's tables hold.
    fn held(&self) -> usize {
        self.answers.held() + self.prefixes.held() + self.geo.bytes()
    }

    /// Response rate limiting (`rrl`) of the reply in `out` to a query from `peer`: false drops
    /// it; a slip rewrites `out`.
    fn limit(&mut self, packet: &[u8], peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        let s = &self.snap.rrl;
        let ip = peer.ip();
        // A client that returned our server cookie is not spoofing its address (RFC 7873 5.2.5).
        if self.cookie.status == cookie::Status::Valid || Limiter::exempt(s, ip) {
            return true;
        }
        let Some(reply) = rrl::classify(out, s.large_size()) else {
            return true;
        };
        let mut lower = [0u8; 255];
        let qname = rrl::lowercase(reply.qname, &mut lower);
        let name: &[u8] = match reply.kind {
            Kind::Positive | Kind::Nodata | Kind::Large => qname,
            // Random names under one zone share the zone's bucket.
            Kind::Nxdomain | Kind::Referral => self
                .snap
                .view(self.listener)
                .find(qname)
                .map_or(qname, |z| &z.origin_key[..]),
            Kind::Error => &[],
        };
        let kind = reply.kind;
        let qname_len = reply.qname.len();
        if self.rrl.charge(s, ip, kind, name, self.now_ms) {
            return true;
        }
        if Limiter::dry_run(s) {
            metrics::count_rrl(kind, metrics::RrlAction::DryRun);
            return true;
        }
        match Limiter::limited(s, &mut self.limited) {
            Verdict::Send => true,
            Verdict::Drop => {
                metrics::count_rrl(kind, metrics::RrlAction::Dropped);
                false
            }
            Verdict::Slip => {
                metrics::count_rrl(kind, metrics::RrlAction::Slipped);
                // A client that sent a cookie learns a server cookie instead (RFC 7873 5.2.3:
                // BADCOOKIE, by server policy under rate limiting); with it, its next query is
                // exempt. Others get TC=1 and retry over TCP.
                if let (Some(c), Ok(q)) = (self.cookie.reply, wire::parse_query(packet)) {
                    out.clear();
                    let payload = self.snap.limits.udp_payload;
                    wire::encode_error_into(
                        q.id,
                        q.flags,
                        wire::rcode::BADCOOKIE,
                        Some(q.question),
                        q.edns.as_ref(),
                        payload,
                        false,
                        out,
                    );
                    wire::append_cookie(
                        out,
                        &q,
                        &c,
                        wire::max_size(q.edns.as_ref(), false, payload),
                    );
                } else {
                    rrl::truncate_to_question(out, qname_len);
                }
                true
            }
        }
    }

    /// Follows the serving snapshot; the tables belong to the one they were built from.
    fn refresh(&mut self) {
        let current = self.shared.load();
        if !Arc::ptr_eq(&current, &self.snap) {
            self.snap = Arc::clone(&current);
            self.answers.clear();
            self.prefixes.clear();
            self.geo.clear();
        }
        let epoch = self.snap.gslb.overrides.line_epoch();
        if epoch != self.line_epoch {
            self.line_epoch = epoch;
            self.prefixes.clear();
        }
    }

    fn respond(&mut self, packet: &[u8], peer: SocketAddr, out: &mut Vec<u8>) -> Option<u16> {
        let snap = &*self.snap;
        let client = Client {
            addr: peer,
            transport: Transport::Udp,
        };
        if !snap.limits.udp_fast_path {
            let served = query::respond_into(snap, self.listener, packet, &client, out, None)?;
            self.cookie = served.cookie;
            return Some(count(served));
        }
        let q = match query::parse(snap, packet, out)? {
            Parsed::Done(rcode) => {
                let client = Client {
                    addr: peer,
                    transport: Transport::Udp,
                };
                let rcode = query::udp_ixfr(snap, self.listener, packet, &client, rcode, out);
                metrics::count(Via::Udp, rcode, None);
                return Some(rcode);
            }
            // Signed queries are rare (transfers, tools): the general path answers and signs.
            Parsed::Signed(_) | Parsed::Notify(_) => {
                let served = query::respond_into(snap, self.listener, packet, &client, out, None)?;
                self.cookie = served.cookie;
                return Some(count(served));
            }
            Parsed::Query(q) => q,
        };
        self.cookie = query::cookie(snap, &q, peer.ip());
        let rcode = self.respond_to(&q, peer, out)?;
        query::add_cookie(&self.snap, &q, &self.cookie, Transport::Udp, out);
        Some(rcode)
    }

    /// The answer to a parsed query, from the tables or the general path.
    fn respond_to(
        &mut self,
        q: &wire::Query<'_>,
        peer: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Option<u16> {
        let snap = &*self.snap;
        let client = Client {
            addr: peer,
            transport: Transport::Udp,
        };
        let payload = snap.limits.udp_payload;
        let max = wire::max_size(q.edns.as_ref(), false, payload);
        // An NSID request (RFC 5001) is answered the general way, which adds the option.
        let tables = !(snap.server.identity.is_some() && q.edns.as_ref().is_some_and(|e| e.nsid));
        let dnssec_ok = q.edns.as_ref().is_some_and(|e| e.dnssec_ok);
        if tables
            && let Some(p) = self.answers.get(q.key(), q.qtype, dnssec_ok)
            && p.write(q, max, payload, out)
        {
            metrics::count(Via::Udp, p.rcode(), None);
            metrics::count_fast(Fast::Prebuilt);
            self.fast.fetch_add(1, Ordering::Relaxed);
            return Some(p.rcode());
        }
        let ecs = q.edns.as_ref().and_then(|e| e.ecs.as_ref());
        let located = query::client_addr(ecs, peer.ip());
        if tables
            && let Some(clients) = Clients::of(located.ip, &self.geo)
            && let Some(prefix) = self.prefixes.get(q.key(), q.qtype, (clients, dnssec_ok))
        {
            // Only the last hop can differ between clients of the network: its preferred pool is
            // geo's (kept), the rest (health, rotation, weights) is decided again.
            let (preferred, pool_scope) = prefix.preferred();
            let overrides = snap.gslb.overrides.active();
            let live = LiveHealth {
                overrides: overrides.as_deref(),
            };
            if let Some(d) = snap.gslb.decide_preferred(
                prefix.rule() as usize,
                q.rtype(),
                preferred,
                pool_scope,
                &live,
                &mut query::chance(),
            ) && let Step::Data(set, select) = d.step
            {
                // As the engine caps and scopes a hop (engine::answer).
                let ttl = set.ttl.min(prefix.ttl_cap().min(d.ttl));
                let scope = prefix.scope().unwrap_or(0).max(d.scope);
                if prefix.write(q, set, select, ttl, scope, max, payload, out) {
                    metrics::count(Via::Udp, wire::rcode::NOERROR, d.hits);
                    metrics::count_fast(Fast::Gslb);
                    self.fast.fetch_add(1, Ordering::Relaxed);
                    return Some(wire::rcode::NOERROR);
                }
            }
        }
        let answer = query::answer(snap, self.listener, q, &client, Some(&mut self.geo));
        query::encode(snap, q, &answer, Transport::Udp, out);
        if client_independent(&answer) {
            if answer.outcome != Outcome::Refused
                && let Some(p) = Prebuilt::capture(q, &answer, payload, &mut self.scratch)
            {
                let size = p.size();
                self.answers.insert(q.key(), q.qtype, dnssec_ok, p, size);
            }
        } else if let Some(last) = answer.last_hop
            // The client's network is in the geo cache now if geo answers it uniformly.
            && let Some(clients) = Clients::of(located.ip, &self.geo)
        {
            let gslb = &snap.gslb;
            let info = match located.ip {
                Some(ip) => self.geo.lookup(&gslb.geo, ip),
                None => Default::default(),
            };
            if let Some(preferred) = gslb.preferred(last.rule as usize, &located, &info)
                && let Some(p) =
                    GslbPrefix::capture(q, &answer, preferred, payload, &mut self.scratch)
            {
                let size = p.size();
                self.prefixes
                    .insert(q.key(), q.qtype, (clients, dnssec_ok), p, size);
            }
        }
        Some(count(Served {
            rcode: wire::rcode_of(answer.outcome),
            hits: answer.hits,
            cookie: cookie::Outcome::NONE,
        }))
    }
}

fn count(s: Served<'_>) -> u16 {
    s.count(Via::Udp);
    s.rcode
}

impl Answerer for Worker {
    fn answer(&mut self, packet: &[u8], peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.cookie = cookie::Outcome::NONE;
        if self.respond(packet, peer, out).is_none() {
            return false;
        }
        !self.snap.rrl.enabled || self.limit(packet, peer, out)
    }

    fn begin(&mut self) {
        self.batch = Instant::now();
        self.refresh();
        self.now_ms = self.rrl.now_ms();
    }

    fn end(&mut self, answered: usize) {
        metrics::observe(Via::Udp, self.batch.elapsed(), answered as u64);
        let held = self.held();
        if held != self.reported {
            metrics::fast_path_bytes(held as i64 - self.reported as i64);
            self.reported = held;
        }
    }

    fn idle(&mut self) {
        // An idle thread lets go of a replaced snapshot (a reloaded 1M-record zone) promptly.
        self.refresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full table takes nothing new until `REFILL` has passed since it last started over; then
    /// it starts over with the new entry.
    #[test]
    fn a_full_table_starts_over_at_most_once_per_refill() {
        // Room for three entries in a table of the smallest allocation.
        let mut t: Table<(), u32> = Table::new(0);
        t.entries.reserve(3, |_| 0);
        t.budget = t.entries.allocation_size() + 3 * (heap_size(3) + heap_size(8));
        for (i, name) in [b"\x01a\0", b"\x01b\0", b"\x01c\0"].iter().enumerate() {
            t.insert(*name, 1, (), i as u32, 8);
        }
        assert_eq!(t.get(b"\x01c\0", 1, ()), Some(&2));
        assert_eq!(
            t.get(b"\x01c\0", 28, ()),
            None,
            "the type is part of the key"
        );
        t.insert(b"\x01d\0", 1, (), 3, 8);
        assert_eq!(t.get(b"\x01d\0", 1, ()), None, "full: nothing new");
        assert_eq!(t.get(b"\x01a\0", 1, ()), Some(&0), "full: nothing lost");
        t.cleared -= REFILL;
        t.insert(b"\x01d\0", 1, (), 3, 8);
        assert_eq!(t.get(b"\x01d\0", 1, ()), Some(&3));
        assert_eq!(t.get(b"\x01a\0", 1, ()), None, "started over");
        assert_eq!(t.entries.len(), 1);
    }
}
