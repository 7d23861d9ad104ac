//! Rate limits: token buckets per client address (every API request) and per account (the Alibaba
//! endpoints). Rates come from the snapshot at each request, so they hot-reload; 0 = off. The
//! buckets live here, outside the snapshot, so a reload does not hand everyone a fresh burst.
//!
//! Memory is bounded: at most `MAX_BUCKETS` buckets. A full bucket is the same as no bucket, so
//! when a shard fills up the full ones go first, then the least recently used.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::http::ApiError;
use crate::http::config::RateLimitConfig;

/// Tracked buckets, all keys together.
pub const MAX_BUCKETS: usize = 100_000;
/// Independent locks, so concurrent requests rarely wait for each other.
const SHARDS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A client address; IPv6 by its /64 (RFC 4291 2.5.1: one interface identifier space is one
    /// subscriber's, who can pick any address in it).
    Ip(IpAddr),
    Account(Box<str>),
}

impl Key {
    pub fn ip(ip: IpAddr) -> Key {
        Key::Ip(match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// The rate and size it was last used with (for eviction: is it full by now?).
    rate: f64,
    size: f64,
}

impl Bucket {
    fn level(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + dt * self.rate).min(self.size)
    }
}

pub struct Limiter {
    shards: Vec<Mutex<HashMap<Key, Bucket>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::with_capacity(MAX_BUCKETS)
    }
}

impl Limiter {
    /// A limiter tracking at most `max` buckets (at least one per shard).
    pub fn with_capacity(max: usize) -> Limiter {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
        }
    }

    /// One request from client address `ip`.
    pub fn client(&self, ip: IpAddr, limits: &RateLimitConfig) -> Result<(), ApiError> {
        self.take(
            Key::ip(ip),
            limits.per_ip,
            limits.burst_seconds,
            Instant::now(),
        )
        .map_err(|s| ApiError::limit_exceeded(s, "requests per client address"))
    }

    /// One request on `account`.
    pub fn account(&self, id: &str, limits: &RateLimitConfig) -> Result<(), ApiError> {
        self.take(
            Key::Account(id.into()),
            limits.per_account,
            limits.burst_seconds,
            Instant::now(),
        )
        .map_err(|s| ApiError::limit_exceeded(s, "requests per account"))
    }

    /// Takes one token from `key`'s bucket (`rate` per second, `burst_seconds` of it deep, never
    /// less than one token). Err = whole seconds until a token is there, at least 1.
    pub fn take(&self, key: Key, rate: f64, burst_seconds: f64, now: Instant) -> Result<(), u64> {
        // Off, or a rate no arithmetic below can use (the config check refuses these anyway).
        if !(rate > 0.0 && rate.is_finite()) {
            return Ok(());
        }
        let size = if burst_seconds.is_finite() && burst_seconds > 0.0 {
            (rate * burst_seconds).max(1.0)
        } else {
            1.0
        };
        let shard = &self.shards[(self.hasher.hash_one(&key) as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&key) && map.len() >= self.per_shard {
            evict(&mut map, self.per_shard, now);
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: size,
            last: now,
            rate,
            size,
        });
        // The rates may have changed since this bucket was last used (reload).
        b.rate = rate;
        b.size = size;
        b.tokens = b.level(now);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / rate).ceil();
            Err(if wait.is_finite() && wait >= 1.0 {
                wait.min(u32::MAX as f64) as u64
            } else {
                1
            })
        }
    }

    /// Buckets tracked now (tests, metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room in a full shard: drops the buckets that have refilled (as good as absent), then,
/// if that freed less than a tenth, the least recently used down to nine tenths, so the O(n) work
/// here happens at most once per `cap / 10` new keys.
fn evict(map: &mut HashMap<Key, Bucket>, cap: usize, now: Instant) {
    map.retain(|_, b| b.level(now) < b.size);
    let keep = cap - cap / 10;
    if map.len() < keep.max(1) {
        return;
    }
    let mut ages: Vec<Instant> = map.values().map(|b| b.last).collect();
    // The `keep`-th most recent use is the oldest one kept.
    let at = ages.len() - keep;
    let (_, cutoff, _) = ages.select_nth_unstable(at);
    let cutoff = *cutoff;
    map.retain(|_, b| b.last > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u32) -> Key {
        Key::ip(IpAddr::V4(n.into()))
    }

    #[test]
    fn bucket_refills_at_the_rate() {
        let l = Limiter::default();
        let t0 = Instant::now();
        // 2/s, 1 s deep: two at once, then the third waits.
        assert_eq!(l.take(ip(1), 2.0, 1.0, t0), Ok(()));
        assert_eq!(l.take(ip(1), 2.0, 1.0, t0), Ok(()));
        assert_eq!(l.take(ip(1), 2.0, 1.0, t0), Err(1));
        assert_eq!(
            l.take(ip(1), 2.0, 1.0, t0 + Duration::from_millis(500)),
            Ok(())
        );
        // Another key has its own bucket.
        assert_eq!(l.take(ip(2), 2.0, 1.0, t0), Ok(()));
        // Slow rates: a token every 10 s.
        assert_eq!(l.take(ip(3), 0.1, 1.0, t0), Ok(()));
        assert_eq!(l.take(ip(3), 0.1, 1.0, t0), Err(10));
        assert_eq!(l.take(ip(3), 0.1, 1.0, t0 + Duration::from_secs(4)), Err(6));
        // Off.
        for _ in 0..10 {
            assert_eq!(l.take(ip(4), 0.0, 1.0, t0), Ok(()));
        }
        assert_eq!(l.take(ip(5), f64::NAN, 1.0, t0), Ok(()));
    }

    #[test]
    fn ipv6_counts_by_64() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let c: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert_eq!(Key::ip(a), Key::ip(b));
        assert_ne!(Key::ip(a), Key::ip(c));
        let m: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(Key::ip(m), Key::ip("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn memory_is_bounded() {
        let l = Limiter::with_capacity(1600);
        let t0 = Instant::now();
        for n in 0..50_000u32 {
            let now = t0 + Duration::from_micros(n as u64);
            // A rate slow enough that no bucket refills during the test: only LRU eviction helps.
            let _ = l.take(ip(n), 0.001, 1000.0, now);
            let _ = l.take(ip(n), 0.001, 1000.0, now);
            assert!(l.len() <= 1600, "{} buckets after {n}", l.len());
        }
        // A recent heavy user is still tracked (and still limited).
        let now = t0 + Duration::from_secs(1);
        let k = ip(1_000_000);
        while l.take(k.clone(), 1.0, 1.0, now).is_ok() {}
        assert!(l.take(k, 1.0, 1.0, now).is_err());
    }

    #[test]
    fn full_buckets_go_first() {
        let l = Limiter::with_capacity(SHARDS * 10);
        let t0 = Instant::now();
        for n in 0..10_000u32 {
            let _ = l.take(ip(n), 1000.0, 1.0, t0 + Duration::from_secs(n as u64));
        }
        // Every earlier bucket had refilled by the next insert: nothing but full ones were evicted,
        // and the shard never needed its LRU pass.
        assert!(l.len() <= SHARDS * 10);
    }
}
