//! The resolver's cache: RRsets and negative answers by (name, type), with an injectable clock.
//!
//! - TTLs are clamped to [min_ttl, max_ttl] when stored; answers read the remaining time, so TTLs
//!   count down in what clients see (RFC 1035 3.2.1, RFC 8767 is not implemented: expired = gone).
//! - Negative answers (RFC 2308 5) live for min(SOA TTL, SOA MINIMUM), capped by `negative_max_ttl`;
//!   without an SOA they are not cached (RFC 2308 5: "SHOULD NOT").
//! - Every entry carries a rank (RFC 2181 5.4.1): glue and referral NS records steer the walk but are
//!   never given to clients as answers, and lower-ranked data never replaces higher-ranked data
//!   that is still alive.
//! - Entries learned with an ECS scope (RFC 7871 7.3.1) are stored per scope network and only
//!   given to clients inside it.
//! - Bounded: over `max_entries`, expired entries go first, then those closest to expiry.
//!
//! No I/O; one mutex. The cache lives outside the config snapshot, so reloads keep it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::{RData, Record, RecordType};
use ipnet::IpNet;

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
    pub min_ttl: u32,
    pub max_ttl: u32,
    pub negative_max_ttl: u32,
}

/// One RRset as stored: records as received (TTLs are rewritten when read).
#[derive(Debug, Clone)]
pub struct Rrset {
    pub records: Arc<[Record]>,
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
}

impl Cache {
    pub fn new(clock: Arc<dyn Clock>, limits: Limits) -> Cache {
        Cache {
            clock,
            inner: Mutex::new(Inner {
                limits,
                map: HashMap::new(),
                entries: 0,
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
        let entry = Entry {
            expires: self.clock.now() + Duration::from_secs(ttl as u64),
            rank,
            scope,
            data: Data::Rrset(Rrset {
                records: records.into(),
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
        let entry = Entry {
            expires: self.clock.now() + Duration::from_secs(ttl as u64),
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
        let now = self.clock.now();
        let inner = self.lock();
        let mut buf = [0u8; 257];
        let n = key.len().min(255);
        buf[..n].copy_from_slice(&key[..n]);
        for slot in [u16::from(rtype), NXDOMAIN_TYPE] {
            buf[n..n + 2].copy_from_slice(&slot.to_be_bytes());
            let Some(list) = inner.map.get(&buf[..n + 2]) else {
                continue;
            };
            let Some(e) = list.iter().find(|e| {
                e.expires > now
                    && e.rank >= min_rank
                    && match (e.scope, client) {
                        (None, _) => true,
                        (Some(net), Some(ip)) => net.contains(&ip),
                        (Some(_), None) => false,
                    }
            }) else {
                continue;
            };
            let left = remaining(e.expires, now);
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
    }
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

impl Inner {
    fn put(&mut self, (name, rtype): (Key, u16), entry: Entry, now: Duration) {
        let mut key = Vec::with_capacity(name.len() + 2);
        key.extend_from_slice(&name);
        key.extend_from_slice(&rtype.to_be_bytes());
        let list = self.map.entry(key.into_boxed_slice()).or_default();
        let before = list.len();
        // Expired variants go; a live one with the same scope is replaced unless it outranks us.
        list.retain(|e| e.expires > now);
        if let Some(i) = list.iter().position(|e| e.scope == entry.scope) {
            if list[i].rank > entry.rank {
                self.entries = self.entries + list.len() - before;
                return;
            }
            list[i] = entry;
        } else {
            list.push(entry);
        }
        self.entries = self.entries + list.len() - before;
        if self.entries > self.limits.max_entries {
            self.evict(now);
        }
    }

    /// Brings the cache down to 90 % of its bound: expired entries first, then the ones that would
    /// expire soonest. One pass over the map, amortised over the 10 % of inserts it frees room for.
    fn evict(&mut self, now: Duration) {
        let target = self.limits.max_entries - self.limits.max_entries / 10;
        self.map.retain(|_, list| {
            list.retain(|e| e.expires > now);
            !list.is_empty()
        });
        self.entries = self.map.values().map(Vec::len).sum();
        if self.entries <= target {
            return;
        }
        let mut expiries: Vec<Duration> = self
            .map
            .values()
            .flat_map(|l| l.iter().map(|e| e.expires))
            .collect();
        let cut = self.entries - target;
        expiries.select_nth_unstable(cut - 1);
        let threshold = expiries[cut - 1];
        let mut to_remove = cut;
        self.map.retain(|_, list| {
            list.retain(|e| {
                if to_remove > 0 && e.expires <= threshold {
                    to_remove -= 1;
                    false
                } else {
                    true
                }
            });
            !list.is_empty()
        });
        self.entries = self.map.values().map(Vec::len).sum();
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
            min_ttl: 0,
            max_ttl: 86400,
            negative_max_ttl: 3600,
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
    fn bounded_with_eviction_of_soonest_expiring() {
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
}
