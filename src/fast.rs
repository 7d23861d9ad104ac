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
//! - Geo decisions per client network ([`GeoCache`]): GSLB answers still run the engine (pools
//!   rotate, health changes), but the client's carrier and location come from the cache.
//! - Reused buffers: the loop's reply buffers and the engine's inline sections mean no allocation
//!   per query once the tables are warm.
//!
//! Everything else takes the general path (`query::respond_into`): errors, answers that need
//! truncation, GSLB names, and every query when `[limits] udp_fast_path = false`. Both tables
//! start over when the snapshot changes (reload) and when they reach their bounds. No I/O.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::engine::{Answer, Outcome};
use crate::geo::GeoCache;
use crate::gslb::{Label, Select, Step};
use crate::metrics::{self, Fast, Via};
use crate::query::{self, Client, Parsed, Served, Transport};
use crate::snapshot::Snapshot;
use crate::udp::Answerer;
use crate::wire::{self, GslbPrefix, Prebuilt};

/// Prebuilt answers one thread keeps before starting over.
const ANSWERS: usize = 131_072;
/// ... and the bytes they may hold.
const ANSWER_BYTES: usize = 32 << 20;

/// Prebuilt answers by lowercase name key + QTYPE.
#[derive(Default)]
struct Answers {
    map: hashbrown::HashMap<Box<[u8]>, Prebuilt, rustc_hash::FxBuildHasher>,
    bytes: usize,
}

impl Answers {
    fn get(&self, key: &[u8], qtype: u16) -> Option<&Prebuilt> {
        let mut k = [0u8; 257];
        let k = table_key(&mut k, key, qtype);
        self.map.get(k)
    }

    fn insert(&mut self, key: &[u8], qtype: u16, answer: Prebuilt) {
        if self.map.len() >= ANSWERS || self.bytes >= ANSWER_BYTES {
            self.clear();
        }
        let mut k = [0u8; 257];
        let k = table_key(&mut k, key, qtype);
        self.bytes += k.len() + answer.size();
        self.map.insert(k.into(), answer);
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

fn table_key<'b>(buf: &'b mut [u8; 257], key: &[u8], qtype: u16) -> &'b [u8] {
    let n = key.len().min(255);
    buf[..n].copy_from_slice(&key[..n]);
    buf[n..n + 2].copy_from_slice(&qtype.to_be_bytes());
    &buf[..n + 2]
}

/// Which clients share a GSLB prefix: those not located (ECS source prefix 0) or those of one
/// network over which geo gives one answer (`GeoCache::holds`).
#[derive(Clone, Copy, PartialEq, Eq)]
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

/// GSLB prefixes by lowercase name + QTYPE + client network.
#[derive(Default)]
struct Prefixes {
    map: hashbrown::HashMap<Box<[u8]>, GslbPrefix, rustc_hash::FxBuildHasher>,
    bytes: usize,
}

/// `table_key` followed by the client network: a tag byte and the network's address bits.
fn prefix_key<'b>(buf: &'b mut [u8; 274], key: &[u8], qtype: u16, clients: Clients) -> &'b [u8] {
    let n = key.len().min(255);
    buf[..n].copy_from_slice(&key[..n]);
    buf[n..n + 2].copy_from_slice(&qtype.to_be_bytes());
    match clients {
        Clients::NotLocated => {
            buf[n + 2] = 0;
            &buf[..n + 3]
        }
        Clients::Network(v4, bits) => {
            buf[n + 2] = if v4 { 4 } else { 6 };
            buf[n + 3..n + 19].copy_from_slice(&bits.to_be_bytes());
            &buf[..n + 19]
        }
    }
}

impl Prefixes {
    fn get(&self, key: &[u8], qtype: u16, clients: Clients) -> Option<&GslbPrefix> {
        let mut k = [0u8; 274];
        self.map.get(prefix_key(&mut k, key, qtype, clients))
    }

    fn insert(&mut self, key: &[u8], qtype: u16, clients: Clients, prefix: GslbPrefix) {
        if self.map.len() >= ANSWERS || self.bytes >= ANSWER_BYTES {
            self.clear();
        }
        let mut k = [0u8; 274];
        let k = prefix_key(&mut k, key, qtype, clients);
        self.bytes += k.len() + prefix.size();
        self.map.insert(k.into(), prefix);
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
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
    answers: Answers,
    prefixes: Prefixes,
    geo: GeoCache,
    scratch: Vec<u8>,
    batch: Instant,
}

impl Worker {
    pub fn new(shared: Arc<ArcSwap<Snapshot>>, listener: usize, served: Arc<AtomicU64>) -> Self {
        let snap = shared.load_full();
        Worker {
            shared,
            snap,
            listener,
            served,
            answers: Answers::default(),
            prefixes: Prefixes::default(),
            geo: GeoCache::default(),
            scratch: Vec::with_capacity(512),
            batch: Instant::now(),
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
    }

    fn respond(&mut self, packet: &[u8], peer: SocketAddr, out: &mut Vec<u8>) -> Option<u16> {
        let snap = &*self.snap;
        let client = Client {
            addr: peer,
            transport: Transport::Udp,
        };
        if !snap.limits.udp_fast_path {
            return query::respond_into(snap, self.listener, packet, &client, out, None).map(count);
        }
        let q = match query::parse(snap, packet, out)? {
            Parsed::Error(rcode) => {
                metrics::count(Via::Udp, rcode, None);
                return Some(rcode);
            }
            Parsed::Query(q) => q,
        };
        let payload = snap.limits.udp_payload;
        let max = wire::max_size(q.edns.as_ref(), false, payload);
        if let Some(p) = self.answers.get(q.key(), q.qtype)
            && p.write(&q, max, payload, out)
        {
            metrics::count(Via::Udp, p.rcode(), None);
            metrics::count_fast(Fast::Prebuilt);
            return Some(p.rcode());
        }
        let ecs = q.edns.as_ref().and_then(|e| e.ecs.as_ref());
        let located = query::client_addr(ecs, peer.ip());
        if let Some(clients) = Clients::of(located.ip, &self.geo)
            && let Some(prefix) = self.prefixes.get(q.key(), q.qtype, clients)
        {
            // Only the last hop can differ between clients of the network: decide it again.
            let gslb = &snap.gslb;
            let info = match located.ip {
                Some(ip) => self.geo.lookup(&gslb.geo, ip),
                None => Default::default(),
            };
            let d = gslb.decide(prefix.rule() as usize, q.rtype(), &located, &info, None);
            if let Step::Data(set, select) = d.step {
                // As the engine caps and scopes a hop (engine::answer_cached).
                let ttl = set.ttl.min(prefix.ttl_cap().min(d.ttl));
                let scope = prefix.scope().unwrap_or(0).max(d.scope);
                if prefix.write(&q, set, select, ttl, scope, max, payload, out) {
                    let region = match d.label {
                        Label::Region(r) => Some(&*r.hits),
                        _ => None,
                    };
                    metrics::count(Via::Udp, wire::rcode::NOERROR, region);
                    metrics::count_fast(Fast::Gslb);
                    return Some(wire::rcode::NOERROR);
                }
            }
        }
        let answer = query::answer(snap, self.listener, &q, &client, Some(&mut self.geo));
        query::encode(snap, &q, &answer, Transport::Udp, out);
        if client_independent(&answer) {
            if answer.outcome != Outcome::Refused
                && let Some(p) = Prebuilt::capture(&q, &answer, payload, &mut self.scratch)
            {
                self.answers.insert(q.key(), q.qtype, p);
            }
        } else if answer.last_hop.is_some()
            // The client's network is in the geo cache now if geo answers it uniformly.
            && let Some(clients) = Clients::of(located.ip, &self.geo)
            && let Some(p) = GslbPrefix::capture(&q, &answer, payload, &mut self.scratch)
        {
            self.prefixes.insert(q.key(), q.qtype, clients, p);
        }
        Some(count(Served {
            rcode: wire::rcode_of(answer.outcome),
            region: answer.region,
        }))
    }
}

fn count(s: Served<'_>) -> u16 {
    s.count(Via::Udp);
    s.rcode
}

impl Answerer for Worker {
    fn begin(&mut self) {
        self.batch = Instant::now();
        self.refresh();
    }

    fn answer(&mut self, packet: &[u8], peer: SocketAddr, out: &mut Vec<u8>) -> bool {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.respond(packet, peer, out).is_some()
    }

    fn end(&mut self, answered: usize) {
        metrics::observe(Via::Udp, self.batch.elapsed(), answered as u64);
    }

    fn idle(&mut self) {
        // An idle thread lets go of a replaced snapshot (a reloaded 1M-record zone) promptly.
        self.refresh();
    }
}
