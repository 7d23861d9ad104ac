//! The resolver's cache: RRsets and negative answers by (name, type), with an injectable clock.
//!
//! - TTLs are clamped to [min_ttl, max_ttl] when stored; answers read the remaining time, so TTLs
//!   count down in what clients see (RFC 1035 3.2.1). An expired entry is no answer, except as a
//!   stale answer (RFC 8767, `get_stale`): when a walk for it fails, an entry expired less than
//!   `serve_expired_ttl` ago is served with TTL 30. Stale entries are the first to go when the
//!   cache is over a bound; past the window they are dropped at the next eviction.
//! - Negative answers (RFC 2308 5) live for min(SOA TTL, SOA MINIMUM), capped by `negative_max_ttl`;
//!   without an SOA they are not cached (RFC 2308 5: "SHOULD NOT").
//! - Every entry carries a rank (RFC 2181 5.4.1): glue and referral NS records steer the walk but are
//!   never given to clients as answers, and lower-ranked data never replaces higher-ranked data
//!   that is still alive.
//! - Entries learned with an ECS scope (RFC 7871 7.3.1) are stored per scope network and only
//!   given to clients inside it.
//! - Bounded in entries (`cache_entries`) and in bytes (`cache_memory`, Unbound's
//!   `rrset-cache-size` + `msg-cache-size`), bytes counted as held: the record structs, their heap
//!   (names longer than hickory's inline buffer, RDATA), the key and the entry. Over either bound,
//!   expired entries go first, then by use: first every entry not read lately (never read since
//!   stored, as every name of a junk burst, or not read within the last 4 x `cache_entries`
//!   reads and stores), least recently used first, then the entries read lately, least recently
//!   used first. That is 2Q's idea (a probationary queue for one-hit wonders in front of LRU) on
//!   one table. Expiry alone ignored use: one burst of long-TTL junk names evicted a whole
//!   working set and kept it out for a day.
//!
//! No I/O; one mutex. The cache lives outside the config snapshot, so reloads keep it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::{RData, Record, RecordType};
use ipnet::IpNet;

use crate::wire::CachedRrset;
use crate::zone::name::Key;

/// Where time comes from: the system's monotonic clock, or a hand-moved one in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Time since an arbitrary fixed start.
    fn now(&self) -> Duration;
}

#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that moves only when told to: cache expiry is tested without sleeping.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// How much a piece of data is trusted (RFC 2181 5.4.1, highest last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// Addresses from a referral's additional section.
    Glue,
    /// NS records from a referral (the parent's copy, not authoritative).
    Referral,
    /// Data from an authoritative answer.
    Answer,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    /// Bytes the entries may hold, as `Entry::bytes` counts them.
    pub max_bytes: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
    pub negative_max_ttl: u32,
    /// Seconds past expiry an entry may still be served stale (RFC 8767 4: "max stale timer";
    /// 0: never).
    pub serve_expired_ttl: u32,
}

/// The TTL of a stale answer (RFC 8767 4: "30 seconds ... is RECOMMENDED"), so clients come back
/// soon for fresh data.
pub const STALE_TTL: u32 = 30;

/// One RRset as stored: records as received (TTLs are rewritten when read), and for data clients
/// may be given (rank `Answer`) the same pre-encoded, so a direct cache hit is bytes copied and
/// TTLs patched (`Cache::answer_wire`), not every record cloned and encoded.
#[derive(Debug, Clone)]
pub struct Rrset {
    pub records: Arc<[Record]>,
    pub wire: Option<Arc<CachedRrset>>,
}

impl Rrset {
    pub fn rtype(&self) -> RecordType {
        self.records
            .first()
            .map_or(RecordType::NULL, |r| r.record_type())
    }
    pub fn rdatas(&self) -> impl Iterator<Item = &RData> {
        self.records.iter().map(|r| &r.data)
    }
}

#[derive(Debug, Clone)]
pub enum Data {
    Rrset(Rrset),
    /// NODATA (at key (name, type)) or NXDOMAIN (at key (name, NXDOMAIN_TYPE)), with the SOA to put
    /// in AUTHORITY.
    Negative {
        soa: Option<Box<Record>>,
    },
}

/// The type slot NXDOMAIN entries are stored under: type 0 is reserved (RFC 6895 3.1), so no real
/// question ever asks for it.
const NXDOMAIN_TYPE: u16 = 0;

#[derive(Debug, Clone)]
struct Entry {
    expires: Duration,
    /// The TTL it was stored with (after the clamps): how long it lives in all.
    ttl: u32,
    /// Read since stored.
    read: bool,
    /// `Inner::tick` at the last read (or the store).
    used: u64,
    /// What this entry holds, with its share of the key (see `held`).
    bytes: usize,
    rank: Rank,
    /// None: valid for every client; Some: only for clients inside this network (ECS scope).
    scope: Option<IpNet>,
    data: Data,
}

/// What a lookup found, with TTLs already counted down.
#[derive(Debug, Clone)]
pub enum Hit {
    Rrset(Vec<Record>),
    NoData(Option<Record>),
    NxDomain(Option<Record>),
}

#[derive(Debug)]
pub struct Cache {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: Limits,
    /// Keyed by the name's lookup key followed by the type's two bytes (one byte string, so a
    /// lookup borrows a stack buffer instead of allocating a key).
    map: HashMap<Box<[u8]>, Vec<Entry>>,
    entries: usize,
    bytes: usize,
    /// Counts reads and stores: the recency order.
    tick: u64,
    evicted: u64,
}

impl Cache {
    pub fn new(clock: Arc<dyn Clock>, limits: Limits) -> Cache {
        Cache {
            clock,
            inner: Mutex::new(Inner {
                limits,
                map: HashMap::new(),
                entries: 0,
                bytes: 0,
                tick: 0,
                evicted: 0,
            }),
        }
    }

    /// Applies new limits (reload); shrinking takes effect at the next insert.
    pub fn set_limits(&self, limits: Limits) {
        self.lock().limits = limits;
    }

    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data; keep serving it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the entries (what `cache_memory` bounds).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Live entries removed to make room, since start.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// Stores an RRset (all records share owner and type). TTL = the smallest record TTL, clamped.
    pub fn insert_rrset(&self, key: Key, records: Vec<Record>, rank: Rank, scope: Option<IpNet>) {
        let Some(first) = records.first() else {
            return;
        };
        let rtype = u16::from(first.record_type());
        let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
        let mut inner = self.lock();
        let ttl = ttl.clamp(
            inner.limits.min_ttl,
            inner.limits.max_ttl.max(inner.limits.min_ttl),
        );
        if ttl == 0 {
            return;
        }
        // Encoded outside the lock would be better for a big RRset, but the TTL clamp needs the
        // limits; the encoding is a copy of bytes per record, far below the lookup that follows.
        let wire = (rank == Rank::Answer)
            .then(|| CachedRrset::encode(&records))
            .flatten()
            .map(Arc::new);
        let bytes = held(&key, &records) + wire.as_ref().map_or(0, |w| w.size());
        let entry = Entry {
            expires: self.clock.now() + Duration::from_secs(ttl as u64),
            ttl,
            read: false,
            used: 0,
            bytes,
            rank,
            scope,
            data: Data::Rrset(Rrset {
                records: records.into(),
                wire,
            }),
        };
        inner.put((key, rtype), entry, self.clock.now());
    }

    /// Stores NODATA for (name, type) or NXDOMAIN for the name, timed by the SOA (RFC 2308 5).
    pub fn insert_negative(
        &self,
        key: Key,
        rtype: Option<RecordType>,
        soa: Option<Record>,
        scope: Option<IpNet>,
    ) {
        let Some(ttl) = soa.as_ref().and_then(negative_ttl) else {
            return;
        };
        let mut inner = self.lock();
        let ttl = ttl.min(inner.limits.negative_max_ttl);
        if ttl == 0 {
            return;
        }
        let slot = rtype.map_or(NXDOMAIN_TYPE, u16::from);
        let bytes = held(&key, soa.as_slice());
        let entry = Entry {
            expires: self.clock.now() + Duration::from_secs(ttl as u64),
            ttl,
            read: false,
            used: 0,
            bytes,
            rank: Rank::Answer,
            scope,
            data: Data::Negative {
                soa: soa.map(Box::new),
            },
        };
        inner.put((key, slot), entry, self.clock.now());
    }

    /// The live entry for (name, type) of at least `min_rank` that applies to `client`, TTLs counted
    /// down. NXDOMAIN for the name answers every type.
    pub fn get(
        &self,
        key: &[u8],
        rtype: RecordType,
        min_rank: Rank,
        client: Option<IpAddr>,
    ) -> Option<Hit> {
        self.lookup(key, rtype, min_rank, client, false)
    }

    /// As `get`, but an entry expired less than `serve_expired_ttl` ago is found too, with TTL
    /// `STALE_TTL` (RFC 8767 4): only for answering when a walk failed.
    pub fn get_stale(
        &self,
        key: &[u8],
        rtype: RecordType,
        min_rank: Rank,
        client: Option<IpAddr>,
    ) -> Option<Hit> {
        self.lookup(key, rtype, min_rank, client, true)
    }

    /// A cached NXDOMAIN for the name itself (any type), live or, with `stale`, stale: RFC 8020
    /// lets it answer every name below (nothing exists under a name that does not exist).
    pub fn nxdomain(&self, key: &[u8], client: Option<IpAddr>, stale: bool) -> Option<Hit> {
        match self.lookup(
            key,
            RecordType::from(NXDOMAIN_TYPE),
            Rank::Answer,
            client,
            stale,
        ) {
            Some(h @ Hit::NxDomain(_)) => Some(h),
            _ => None,
        }
    }

    fn lookup(
        &self,
        key: &[u8],
        rtype: RecordType,
        min_rank: Rank,
        client: Option<IpAddr>,
        stale: bool,
    ) -> Option<Hit> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let window = if stale {
            Duration::from_secs(u64::from(inner.limits.serve_expired_ttl))
        } else {
            Duration::ZERO
        };
        let mut buf = [0u8; 257];
        let n = key.len().min(255);
        buf[..n].copy_from_slice(&key[..n]);
        for slot in [u16::from(rtype), NXDOMAIN_TYPE] {
            buf[n..n + 2].copy_from_slice(&slot.to_be_bytes());
            let Some(list) = inner.map.get_mut(&buf[..n + 2]) else {
                continue;
            };
            let Some(e) = find(list, now, window, min_rank, client) else {
                continue;
            };
            inner.tick += 1;
            e.used = inner.tick;
            e.read = true;
            let left = if e.expires > now {
                remaining(e.expires, now)
            } else {
                STALE_TTL
            };
            return Some(match &e.data {
                Data::Rrset(rr) => Hit::Rrset(
                    rr.records
                        .iter()
                        .map(|r| {
                            let mut r = r.clone();
                            r.ttl = left;
                            r
                        })
                        .collect(),
                ),
                Data::Negative { soa } => {
                    let soa = soa.as_deref().cloned().map(|mut s| {
                        s.ttl = left;
                        s
                    });
                    if slot == NXDOMAIN_TYPE {
                        Hit::NxDomain(soa)
                    } else {
                        Hit::NoData(soa)
                    }
                }
            });
        }
        None
    }

    /// A direct hit's answer as bytes: the live RRset of rank `Answer` stored for exactly
    /// (name, type) that applies to `client`, pre-encoded, with (seconds left, TTL it was stored
    /// with). None whenever `get` would find anything else first (nothing, a negative entry, an
    /// RRset without its encoding): the general path answers those. Counts as a read, as `get`.
    pub fn answer_wire(
        &self,
        key: &[u8],
        rtype: RecordType,
        client: Option<IpAddr>,
    ) -> Option<(Arc<CachedRrset>, u32, u32)> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut buf = [0u8; 257];
        let n = key.len().min(255);
        buf[..n].copy_from_slice(&key[..n]);
        buf[n..n + 2].copy_from_slice(&u16::from(rtype).to_be_bytes());
        let list = inner.map.get_mut(&buf[..n + 2])?;
        let e = find(list, now, Duration::ZERO, Rank::Answer, client)?;
        let Data::Rrset(Rrset {
            wire: Some(wire), ..
        }) = &e.data
        else {
            return None;
        };
        inner.tick += 1;
        e.used = inner.tick;
        e.read = true;
        Some((wire.clone(), remaining(e.expires, now), e.ttl))
    }

    /// Convenience: the live RRset for (name, type) of at least `min_rank`, for any client.
    pub fn rrset(&self, key: &[u8], rtype: RecordType, min_rank: Rank) -> Option<Vec<Record>> {
        match self.get(key, rtype, min_rank, None) {
            Some(Hit::Rrset(r)) => Some(r),
            _ => None,
        }
    }

    /// Drops everything (e.g. `POST /admin/flush`-style operations and tests).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.entries = 0;
        inner.bytes = 0;
    }
}

/// The first entry of a slot's list alive within `window` past expiry, of at least `min_rank`,
/// whose scope covers `client`.
fn find(
    list: &mut [Entry],
    now: Duration,
    window: Duration,
    min_rank: Rank,
    client: Option<IpAddr>,
) -> Option<&mut Entry> {
    list.iter_mut().find(|e| {
        e.expires + window > now
            && e.rank >= min_rank
            && match (e.scope, client) {
                (None, _) => true,
                (Some(net), Some(ip)) => net.contains(&ip),
                (Some(_), None) => false,
            }
    })
}

/// Seconds left, rounded up so a live entry never shows TTL 0.
fn remaining(expires: Duration, now: Duration) -> u32 {
    let ms = expires.saturating_sub(now).as_millis() as u64;
    ms.div_ceil(1000) as u32
}

/// RFC 2308 5: the negative TTL is the smaller of the SOA record's TTL and its MINIMUM field.
pub fn negative_ttl(soa: &Record) -> Option<u32> {
    match &soa.data {
        RData::SOA(s) => Some(soa.ttl.min(s.minimum)),
        _ => None,
    }
}

/// What an entry holds in memory: per record the struct itself (hickory's `Record` carries its
/// owner name and RDATA inline, a few hundred bytes whatever the type) plus the heap behind it
/// (names past `Name`'s inline buffer, RDATA bytes), plus the key and the entry. Not exact, but
/// it grows as the real allocation does: 4,000 A records cost ~1 MB held, not their 64 KB of
/// wire form, and that is what the bound must see.
fn held(key: &[u8], records: &[Record]) -> usize {
    fn name_heap(n: &hickory_proto::rr::Name) -> usize {
        // Label bytes and label ends live inline up to 32 and 24 bytes (tinyvec), beyond that
        // on the heap.
        let len = n.len();
        if len > 32 {
            len + n.num_labels() as usize
        } else {
            0
        }
    }
    let per_record: usize = records
        .iter()
        .map(|r| {
            let rdata = match &r.data {
                RData::A(_) | RData::AAAA(_) => 0,
                RData::NS(n) => name_heap(&n.0),
                RData::CNAME(n) => name_heap(&n.0),
                RData::PTR(n) => name_heap(&n.0),
                RData::SOA(soa) => name_heap(&soa.mname) + name_heap(&soa.rname),
                // Wire length as a stand-in for the heap of every other type.
                other => {
                    use hickory_proto::serialize::binary::BinEncodable;
                    other.to_bytes().map_or(0, |b| b.len())
                }
            };
            std::mem::size_of::<Record>() + name_heap(&r.name) + rdata
        })
        .sum();
    // The key twice (map key and hash table slot), the entry and the list it sits in.
    per_record + 2 * (key.len() + 2) + std::mem::size_of::<Entry>() + 64
}

impl Inner {
    fn put(&mut self, (name, rtype): (Key, u16), mut entry: Entry, now: Duration) {
        let mut key = Vec::with_capacity(name.len() + 2);
        key.extend_from_slice(&name);
        key.extend_from_slice(&rtype.to_be_bytes());
        self.tick += 1;
        entry.used = self.tick;
        let list = self.map.entry(key.into_boxed_slice()).or_default();
        let (before, before_bytes) = (list.len(), list.iter().map(|e| e.bytes).sum::<usize>());
        // Expired variants go; a live one with the same scope is replaced unless it outranks us.
        list.retain(|e| e.expires > now);
        if let Some(i) = list.iter().position(|e| e.scope == entry.scope) {
            if list[i].rank <= entry.rank {
                list[i] = entry;
            }
        } else {
            list.push(entry);
        }
        let after_bytes: usize = list.iter().map(|e| e.bytes).sum();
        self.entries = self.entries + list.len() - before;
        self.bytes = self.bytes + after_bytes - before_bytes;
        if self.entries > self.limits.max_entries || self.bytes > self.limits.max_bytes {
            self.evict(now);
        }
    }

    /// Brings the cache down to 90 % of both bounds: entries past the stale window first, then
    /// by worth: expired (stale) entries, entries not read lately, entries read lately, least
    /// recently used first in each. One pass over the map, amortised over the 10 % of inserts it
    /// frees room for.
    fn evict(&mut self, now: Duration) {
        let target_entries = self.limits.max_entries - self.limits.max_entries / 10;
        let target_bytes = self.limits.max_bytes - self.limits.max_bytes / 10;
        let window = Duration::from_secs(u64::from(self.limits.serve_expired_ttl));
        self.map.retain(|_, list| {
            list.retain(|e| e.expires + window > now);
            !list.is_empty()
        });
        self.recount();
        if self.entries > target_entries || self.bytes > target_bytes {
            // "Lately": within the last 4 x cache_entries reads and stores, long enough for a
            // name asked a few times a minute to stay through any burst the bound allows.
            let lately = self.tick.saturating_sub(4 * self.limits.max_entries as u64);
            let worth = |e: &Entry| -> u8 {
                if e.expires <= now {
                    0
                } else if e.read && e.used > lately {
                    2
                } else {
                    1
                }
            };
            // (worth, used, bytes) of every entry, least worth keeping first.
            let mut order: Vec<(u8, u64, usize)> = self
                .map
                .values()
                .flat_map(|l| l.iter().map(|e| (worth(e), e.used, e.bytes)))
                .collect();
            order.sort_unstable();
            // The key at and below which entries go (`used` ticks are unique).
            let (mut entries, mut bytes) = (self.entries, self.bytes);
            let mut cut = None;
            for &(h, u, b) in &order {
                if entries <= target_entries && bytes <= target_bytes {
                    break;
                }
                entries -= 1;
                bytes -= b;
                cut = Some((h, u));
            }
            if let Some(cut) = cut {
                let before = self.entries;
                self.map.retain(|_, list| {
                    list.retain(|e| (worth(e), e.used) > cut);
                    !list.is_empty()
                });
                self.recount();
                self.evicted += (before - self.entries) as u64;
            }
        }
    }

    fn recount(&mut self) {
        self.entries = self.map.values().map(Vec::len).sum();
        self.bytes = self
            .map
            .values()
            .flat_map(|l| l.iter().map(|e| e.bytes))
            .sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::str::FromStr;

    fn limits() -> Limits {
        Limits {
            max_entries: 100,
            max_bytes: 1 << 30,
            min_ttl: 0,
            max_ttl: 86400,
            negative_max_ttl: 3600,
            serve_expired_ttl: 0,
        }
    }

    fn a(name: &str, ttl: u32, ip: [u8; 4]) -> Record {
        Record::from_rdata(
            Name::from_str(name).unwrap(),
            ttl,
            RData::A(A::from(std::net::Ipv4Addr::from(ip))),
        )
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let n = Name::from_str("example.").unwrap();
        Record::from_rdata(
            n.clone(),
            ttl,
            RData::SOA(SOA::new(n.clone(), n, 1, 2, 3, 4, minimum)),
        )
    }

    fn key(s: &str) -> Key {
        crate::zone::name::key_of(&Name::from_str(s).unwrap())
    }

    fn setup() -> (Arc<ManualClock>, Cache) {
        let clock = Arc::new(ManualClock::default());
        let cache = Cache::new(clock.clone(), limits());
        (clock, cache)
    }

    #[test]
    fn ttl_counts_down_and_expires() {
        let (clock, cache) = setup();
        cache.insert_rrset(
            key("www.example."),
            vec![a("www.example.", 300, [192, 0, 2, 1])],
            Rank::Answer,
            None,
        );
        let got = cache
            .rrset(&key("WWW.Example."), RecordType::A, Rank::Answer)
            .unwrap();
        assert_eq!(got[0].ttl, 300);
        clock.advance(Duration::from_secs(100));
        let got = cache
            .rrset(&key("www.example."), RecordType::A, Rank::Answer)
            .unwrap();
        assert_eq!(got[0].ttl, 200);
        clock.advance(Duration::from_millis(199_500));
        let got = cache
            .rrset(&key("www.example."), RecordType::A, Rank::Answer)
            .unwrap();
        assert_eq!(got[0].ttl, 1, "a live entry never shows 0");
        clock.advance(Duration::from_millis(500));
        assert!(
            cache
                .rrset(&key("www.example."), RecordType::A, Rank::Answer)
                .is_none()
        );
    }

    #[test]
    fn ttl_clamps() {
        let clock = Arc::new(ManualClock::default());
        let cache = Cache::new(
            clock.clone(),
            Limits {
                min_ttl: 60,
                max_ttl: 600,
                ..limits()
            },
        );
        cache.insert_rrset(
            key("a.example."),
            vec![a("a.example.", 5, [192, 0, 2, 1])],
            Rank::Answer,
            None,
        );
        cache.insert_rrset(
            key("b.example."),
            vec![a("b.example.", 86400, [192, 0, 2, 2])],
            Rank::Answer,
            None,
        );
        let ttl = |n| cache.rrset(&key(n), RecordType::A, Rank::Answer).unwrap()[0].ttl;
        assert_eq!(ttl("a.example."), 60);
        assert_eq!(ttl("b.example."), 600);
    }

    #[test]
    fn negative_by_soa_rule_with_cap() {
        let (clock, cache) = setup();
        // min(SOA TTL 900, MINIMUM 300) = 300.
        cache.insert_negative(key("nx.example."), None, Some(soa(900, 300)), None);
        cache.insert_negative(
            key("www.example."),
            Some(RecordType::MX),
            Some(soa(7200, 86400)),
            None,
        );
        match cache.get(&key("nx.example."), RecordType::AAAA, Rank::Answer, None) {
            Some(Hit::NxDomain(Some(s))) => assert_eq!(s.ttl, 300),
            other => panic!("{other:?}"),
        }
        match cache.get(&key("www.example."), RecordType::MX, Rank::Answer, None) {
            // capped by negative_max_ttl 3600
            Some(Hit::NoData(Some(s))) => assert_eq!(s.ttl, 3600),
            other => panic!("{other:?}"),
        }
        assert!(
            cache
                .get(&key("www.example."), RecordType::A, Rank::Answer, None)
                .is_none(),
            "NODATA for MX says nothing about A"
        );
        // Without an SOA nothing is cached.
        cache.insert_negative(key("nosoa.example."), None, None, None);
        assert!(
            cache
                .get(&key("nosoa.example."), RecordType::A, Rank::Glue, None)
                .is_none()
        );
        clock.advance(Duration::from_secs(301));
        assert!(
            cache
                .get(&key("nx.example."), RecordType::A, Rank::Answer, None)
                .is_none()
        );
    }

    #[test]
    fn ranks() {
        let (_clock, cache) = setup();
        let k = key("ns1.example.");
        cache.insert_rrset(
            k.clone(),
            vec![a("ns1.example.", 300, [192, 0, 2, 53])],
            Rank::Glue,
            None,
        );
        assert!(cache.rrset(&k, RecordType::A, Rank::Answer).is_none());
        assert!(cache.rrset(&k, RecordType::A, Rank::Glue).is_some());
        cache.insert_rrset(
            k.clone(),
            vec![a("ns1.example.", 300, [192, 0, 2, 54])],
            Rank::Answer,
            None,
        );
        // Glue arriving later does not replace the authoritative answer.
        cache.insert_rrset(
            k.clone(),
            vec![a("ns1.example.", 300, [192, 0, 2, 99])],
            Rank::Glue,
            None,
        );
        let got = cache.rrset(&k, RecordType::A, Rank::Glue).unwrap();
        assert_eq!(got[0].data, RData::A(A::new(192, 0, 2, 54)));
    }

    #[test]
    fn ecs_scoped_entries() {
        let (_clock, cache) = setup();
        let k = key("geo.example.");
        let net: IpNet = "198.51.100.0/24".parse().unwrap();
        cache.insert_rrset(
            k.clone(),
            vec![a("geo.example.", 60, [192, 0, 2, 1])],
            Rank::Answer,
            Some(net),
        );
        let inside = Some("198.51.100.7".parse().unwrap());
        let outside = Some("203.0.113.7".parse().unwrap());
        assert!(matches!(
            cache.get(&k, RecordType::A, Rank::Answer, inside),
            Some(Hit::Rrset(_))
        ));
        assert!(
            cache
                .get(&k, RecordType::A, Rank::Answer, outside)
                .is_none()
        );
        cache.insert_rrset(
            k.clone(),
            vec![a("geo.example.", 60, [192, 0, 2, 2])],
            Rank::Answer,
            Some("203.0.113.0/24".parse().unwrap()),
        );
        match cache.get(&k, RecordType::A, Rank::Answer, outside) {
            Some(Hit::Rrset(r)) => assert_eq!(r[0].data, RData::A(A::new(192, 0, 2, 2))),
            other => panic!("{other:?}"),
        }
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn bounded_never_read_entries_go_oldest_first() {
        let (_clock, cache) = setup();
        for i in 0..250u32 {
            let name = format!("n{i}.example.");
            cache.insert_rrset(
                key(&name),
                vec![a(&name, 1000 + i, [192, 0, 2, 1])],
                Rank::Answer,
                None,
            );
            assert!(cache.len() <= 100, "bound holds after insert {i}");
        }
        // The longest-lived (latest) entries survive; the earliest went first.
        assert!(
            cache
                .rrset(&key("n249.example."), RecordType::A, Rank::Answer)
                .is_some()
        );
        assert!(
            cache
                .rrset(&key("n0.example."), RecordType::A, Rank::Answer)
                .is_none()
        );
    }

    /// The junk burst of issue 14: a working set read all along survives thousands of long-TTL
    /// names each stored once; eviction by expiry alone kept the junk (longer TTLs) instead.
    #[test]
    fn a_junk_burst_does_not_evict_the_working_set() {
        let (_clock, cache) = setup();
        let work: Vec<String> = (0..40).map(|i| format!("w{i}.example.")).collect();
        for n in &work {
            cache.insert_rrset(key(n), vec![a(n, 300, [192, 0, 2, 1])], Rank::Answer, None);
        }
        let mut missed = 0;
        for j in 0..450u32 {
            let n = format!("junk{j}.evil.");
            cache.insert_rrset(
                key(&n),
                vec![a(&n, 86400, [192, 0, 2, 9])],
                Rank::Answer,
                None,
            );
            // Honest clients keep asking their names meanwhile, one per junk name.
            let w = &work[j as usize % work.len()];
            if cache.rrset(&key(w), RecordType::A, Rank::Answer).is_none() {
                missed += 1;
            }
        }
        assert_eq!(missed, 0, "working-set misses during the burst");
        let kept = work
            .iter()
            .filter(|n| cache.rrset(&key(n), RecordType::A, Rank::Answer).is_some())
            .count();
        assert_eq!(kept, work.len(), "the whole working set is still cached");
        assert!(cache.evicted() > 0 && cache.len() <= 100);
    }

    #[test]
    fn bounded_in_bytes_as_held() {
        let (_clock, cache) = setup();
        cache.set_limits(Limits {
            max_bytes: 4 << 20,
            ..limits()
        });
        // 4,000 A records: 64 KB on the wire, ~1 MB as records in memory.
        let big = |name: &str| -> Vec<Record> {
            (0..4000u32)
                .map(|i| a(name, 3600, [10, 0, (i >> 8) as u8, i as u8]))
                .collect()
        };
        let one = super::held(&key("big0.example."), &big("big0.example."));
        assert!(one > 4000 * 100, "{one} bytes counted for 4,000 records");
        for i in 0..20 {
            let n = format!("big{i}.example.");
            cache.insert_rrset(key(&n), big(&n), Rank::Answer, None);
            assert!(
                cache.bytes() <= 4 << 20,
                "{} bytes after {i}",
                cache.bytes()
            );
        }
        assert!(cache.len() >= 2, "the bound still leaves room for several");
        let last = cache.rrset(&key("big19.example."), RecordType::A, Rank::Answer);
        assert_eq!(
            last.map(|r| r.len()),
            Some(4000),
            "the newest is kept whole"
        );
    }
}
