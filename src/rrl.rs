//! Response rate limiting (RRL) for the authoritative UDP listeners, as BIND, NSD and Knot do it:
//! an authoritative server on the internet must not be an amplifier for spoofed queries.
//!
//! Every UDP response is put in a bucket keyed by (the client's network, the response's kind, a
//! name): the query name for answers and NODATA, the zone for NXDOMAIN and referrals (so random
//! names under one zone share a bucket), nothing for errors. A bucket earns `rate` credits per
//! second up to `burst`; each response costs one whether it goes out or not, and the balance may
//! fall to one second's worth below zero (BIND's accounting: a source that keeps flooding above the
//! rate stays limited instead of getting `rate` answers a second). A limited response is dropped,
//! except every `slip`-th, which goes out as a minimal TC=1 reply (header and question only) so a
//! real client behind a spoofed address retries over TCP, where no limit applies (RFC 7766 and the
//! RRL design of Vixie and Schryver).
//!
//! The buckets are one table shared by the UDP threads, without a lock: each slot is two atomics
//! (the key's 64-bit hash and the balance with its timestamp, updated by compare-and-swap). A slot
//! whose key differs is taken over by the new key, so the table's memory is fixed
//! (`table_size` slots of 16 bytes) and a collision can only give a client a fresh bucket, never
//! take answers away from another. The hash is keyed per process (SipHash-1-3 with a random key,
//! `std::hash::RandomState`), so a client cannot aim collisions. No I/O.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;
use serde::Deserialize;

/// What a response is, for the limits. The order is the metrics' label order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NOERROR with answers.
    Positive = 0,
    /// NXDOMAIN.
    Nxdomain = 1,
    /// NOERROR, no answer, authoritative.
    Nodata = 2,
    /// NOERROR, no answer, not authoritative: a delegation.
    Referral = 3,
    /// Any other RCODE.
    Error = 4,
    /// QTYPE ANY, or a response larger than `large_size`: the amplifiers.
    Large = 5,
}

pub const KINDS: [&str; 6] = [
    "positive", "nxdomain", "nodata", "referral", "error", "large",
];

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "positive" => Kind::Positive,
            "nxdomain" => Kind::Nxdomain,
            "nodata" => Kind::Nodata,
            "referral" => Kind::Referral,
            "error" => Kind::Error,
            "large" => Kind::Large,
            _ => return None,
        })
    }
}

/// `[rrl]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RrlConfig {
    pub enabled: bool,
    /// Responses per second a bucket may get (NSD `rrl-ratelimit`, Knot `rate-limit`).
    pub rate: u32,
    /// Per-kind rates replacing `rate` (BIND's `nxdomains-per-second`, `errors-per-second` ...).
    pub rates: std::collections::BTreeMap<String, u32>,
    /// Responses a bucket may get at once after a quiet spell (0 = the kind's rate).
    pub burst: u32,
    /// Every `slip`-th limited response goes out truncated (TC=1); 0 drops them all, 1 truncates
    /// them all (NSD `rrl-slip`, Knot `rate-limit-slip`).
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Buckets in the shared table, rounded up to a power of two (16 bytes each; a restart applies
    /// a change).
    pub table_size: usize,
    /// Responses larger than this many bytes are of kind `large`.
    pub large_size: usize,
    /// Client networks never limited (NSD `rrl-whitelist` is per kind; this is per network).
    pub exempt_networks: Vec<String>,
    /// Kinds never limited (e.g. `["referral"]`).
    pub exempt_kinds: Vec<String>,
    /// Count what would be limited, limit nothing (BIND `log-only`).
    pub dry_run: bool,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            enabled: false,
            rate: 200,
            rates: Default::default(),
            burst: 0,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            table_size: 1 << 20,
            large_size: 1024,
            exempt_networks: Vec::new(),
            exempt_kinds: Vec::new(),
            dry_run: false,
        }
    }
}

/// `[rrl]` compiled: what the UDP threads read per response (it reloads with the snapshot).
#[derive(Debug, Clone)]
pub struct RrlSettings {
    pub enabled: bool,
    /// Per kind: credits per second (0 = the kind is exempt) and the burst, in milli-credits.
    rates: [(i64, i64); 6],
    slip: u32,
    v4_mask: u32,
    v6_mask: u128,
    large_size: usize,
    exempt: Vec<IpNet>,
    dry_run: bool,
    /// Slots asked for (the table is made once, at start).
    pub table_size: usize,
}

/// Highest rate or burst accepted: the balance is kept in milli-credits in 32 bits.
const MAX_RATE: u32 = 1_000_000;

impl RrlSettings {
    /// Compiles `[rrl]`; problems are returned as lines for `check`.
    pub fn compile(c: &RrlConfig) -> Result<RrlSettings, Vec<String>> {
        let mut problems = Vec::new();
        let mut rates = [(0i64, 0i64); 6];
        for (k, r) in rates.iter_mut().enumerate() {
            let rate = c.rates.get(KINDS[k]).copied().unwrap_or(c.rate);
            // No burst configured: one second's worth of the kind's rate.
            let burst = if c.burst == 0 { rate } else { c.burst };
            *r = (i64::from(rate) * 1000, i64::from(burst.max(1)) * 1000);
        }
        for (name, &rate) in &c.rates {
            if Kind::parse(name).is_none() {
                problems.push(format!(
                    "[rrl] rates: unknown kind {name:?} (kinds: {})",
                    KINDS.join(", ")
                ));
            }
            if rate > MAX_RATE {
                problems.push(format!("[rrl] rates.{name} = {rate}: at most {MAX_RATE}"));
            }
        }
        if c.rate == 0 || c.rate > MAX_RATE || c.burst > MAX_RATE {
            problems.push(format!(
                "[rrl] rate = {}, burst = {}: the rate must be 1 to {MAX_RATE}, the burst at most {MAX_RATE}",
                c.rate, c.burst
            ));
        }
        for k in &c.exempt_kinds {
            match Kind::parse(k) {
                Some(kind) => rates[kind as usize].0 = 0,
                None => problems.push(format!(
                    "[rrl] exempt_kinds: unknown kind {k:?} (kinds: {})",
                    KINDS.join(", ")
                )),
            }
        }
        if c.ipv4_prefix > 32 || c.ipv6_prefix > 128 {
            problems.push(format!(
                "[rrl] ipv4_prefix = {}, ipv6_prefix = {}: at most 32 and 128",
                c.ipv4_prefix, c.ipv6_prefix
            ));
        }
        if c.table_size == 0 || c.table_size > 1 << 26 {
            problems.push(format!(
                "[rrl] table_size = {}: 1 to {} buckets",
                c.table_size,
                1 << 26
            ));
        }
        let mut exempt = Vec::new();
        for n in &c.exempt_networks {
            match n
                .parse::<IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
            {
                Ok(net) => exempt.push(net.trunc()),
                Err(_) => problems.push(format!(
                    "[rrl] exempt_networks: {n:?} is not a network (e.g. \"198.51.100.0/24\")"
                )),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(RrlSettings {
            enabled: c.enabled,
            rates,
            slip: c.slip,
            v4_mask: u32::MAX
                .checked_shl(32 - u32::from(c.ipv4_prefix))
                .unwrap_or(0),
            v6_mask: u128::MAX
                .checked_shl(128 - u32::from(c.ipv6_prefix))
                .unwrap_or(0),
            large_size: c.large_size,
            exempt,
            dry_run: c.dry_run,
            table_size: c.table_size.next_power_of_two(),
        })
    }

    /// Responses above this size are of kind `large`.
    pub fn large_size(&self) -> usize {
        self.large_size
    }

    pub fn off() -> RrlSettings {
        RrlSettings::compile(&RrlConfig::default()).expect("the defaults compile")
    }
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send a minimal TC=1 reply instead (or BADCOOKIE, to a client that sent a cookie).
    Slip,
    Drop,
}

/// The shared bucket table.
pub struct Limiter {
    /// Slot i is `slots[2i]` (the key's hash with its low bit set, 0 = never used) and
    /// `slots[2i + 1]` (high 32 bits: the balance in milli-credits as an i32; low 32: milliseconds
    /// since `start` at the last update, wrapping).
    slots: Box<[AtomicU64]>,
    mask: usize,
    keys: std::hash::RandomState,
    start: std::time::Instant,
}

// `zeroed_atomics` reinterprets u64s as AtomicU64s.
const _: () = assert!(
    align_of::<AtomicU64>() == align_of::<u64>() && size_of::<AtomicU64>() == size_of::<u64>()
);

/// `n` atomics at zero, from a zeroed allocation: the kernel hands those pages out lazily, so a
/// large table costs memory only where buckets are used (a limiter that is never enabled, none).
fn zeroed_atomics(n: usize) -> Box<[AtomicU64]> {
    let v: Box<[u64]> = vec![0u64; n].into_boxed_slice();
    let len = v.len();
    let ptr = Box::into_raw(v) as *mut u64 as *mut AtomicU64;
    // SAFETY: AtomicU64 has the size, alignment (asserted above) and bit validity of u64, and
    // the allocation is handed over whole (same length, same layout).
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }
}

fn pack(balance: i64, ms: u32) -> u64 {
    ((balance as i32 as u32 as u64) << 32) | u64::from(ms)
}

fn unpack(v: u64) -> (i64, u32) {
    (i64::from((v >> 32) as u32 as i32), v as u32)
}

/// The response fields a bucket is chosen by, read from the reply bytes so the fast path's
/// prebuilt answers and the general path's are classified alike.
pub struct Reply<'r> {
    pub kind: Kind,
    /// The query name as echoed (wire form, the client's case).
    pub qname: &'r [u8],
}

/// Classifies a reply. None: not a reply we can read (then it is not limited).
pub fn classify(reply: &[u8], large_size: usize) -> Option<Reply<'_>> {
    if reply.len() < 12 || u16::from_be_bytes([reply[4], reply[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    loop {
        let len = *reply.get(at)? as usize;
        if len == 0 {
            at += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
    }
    let qname = &reply[12..at];
    let qtype = u16::from_be_bytes([*reply.get(at)?, *reply.get(at + 1)?]);
    let rcode = reply[3] & 0x0f;
    let aa = reply[2] & 0x04 != 0;
    let ancount = u16::from_be_bytes([reply[6], reply[7]]);
    let kind = match rcode {
        3 => Kind::Nxdomain,
        0 if qtype == 255 || reply.len() > large_size => Kind::Large,
        0 if ancount > 0 => Kind::Positive,
        0 if aa => Kind::Nodata,
        0 => Kind::Referral,
        _ => Kind::Error,
    };
    Some(Reply { kind, qname })
}

/// The lowercase wire name of `name` (uncompressed, as `classify` found it) into `buf`.
pub fn lowercase<'b>(name: &[u8], buf: &'b mut [u8; 255]) -> &'b [u8] {
    let n = name.len().min(255);
    for (d, s) in buf[..n].iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..n]
}

impl Limiter {
    pub fn new(table_size: usize) -> Limiter {
        let size = table_size.max(1).next_power_of_two();
        Limiter {
            slots: zeroed_atomics(2 * size),
            mask: size - 1,
            keys: std::hash::RandomState::new(),
            start: std::time::Instant::now(),
        }
    }

    /// Milliseconds since the table was made (wrapping), the clock of the balances. The UDP
    /// threads read it once per batch.
    pub fn now_ms(&self) -> u32 {
        self.start.elapsed().as_millis() as u32
    }

    /// Whether the client's network is exempt from limits.
    pub fn exempt(s: &RrlSettings, client: IpAddr) -> bool {
        s.exempt.iter().any(|n| n.contains(&client))
    }

    /// Charges one response of `kind` to the bucket of (`client`'s network, `kind`, `name`) at
    /// `now_ms`; Send when the bucket had a credit left. `name` is the lowercase key the kind is
    /// limited by (the query name or the zone; empty for errors).
    pub fn charge(
        &self,
        s: &RrlSettings,
        client: IpAddr,
        kind: Kind,
        name: &[u8],
        now_ms: u32,
    ) -> bool {
        let (rate, burst) = s.rates[kind as usize];
        if rate == 0 {
            return true;
        }
        let mut h = self.keys.build_hasher();
        h.write_u8(kind as u8);
        match client {
            IpAddr::V4(a) => h.write_u32(u32::from(a) & s.v4_mask),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => h.write_u32(u32::from(a) & s.v4_mask),
                None => h.write_u128(u128::from(a) & s.v6_mask),
            },
        }
        h.write(name);
        let tag = h.finish() | 1;
        let i = 2 * (tag as usize & self.mask);
        let (slot_tag, state) = (&self.slots[i], &self.slots[i + 1]);
        // One second of debt at most: a flood above the rate stays limited, and a bucket that
        // has been quiet for `1 + burst / rate` seconds is full again.
        let floor = -rate;
        if slot_tag.load(Ordering::Relaxed) != tag {
            // A new key (or another key's slot, taken over): a full bucket, less this response.
            slot_tag.store(tag, Ordering::Relaxed);
            state.store(pack(burst - 1000, now_ms), Ordering::Relaxed);
            return true;
        }
        let mut cur = state.load(Ordering::Relaxed);
        loop {
            let (balance, then) = unpack(cur);
            let elapsed = i64::from(now_ms.wrapping_sub(then).min(1 << 30));
            // Milli-credits: `rate` per second is `rate / 1000` per millisecond, times 1000.
            let earned = (balance + elapsed * rate / 1000).min(burst);
            let send = earned >= 1000;
            let next = pack((earned - 1000).max(floor), now_ms);
            match state.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return send,
                Err(v) => cur = v,
            }
        }
    }

    /// The verdict on a limited response: `n` counts this thread's limited responses.
    pub fn limited(s: &RrlSettings, n: &mut u32) -> Verdict {
        if s.slip == 0 {
            return Verdict::Drop;
        }
        *n = n.wrapping_add(1);
        if (*n).is_multiple_of(s.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Whether limits are counted but not applied.
    pub fn dry_run(s: &RrlSettings) -> bool {
        s.dry_run
    }

    /// Bytes the table holds.
    pub fn bytes(&self) -> usize {
        self.slots.len() * size_of::<AtomicU64>()
    }
}

/// Rewrites the reply in `out` (whose question is echoed at offset 12) as a minimal truncated
/// one: the header with TC=1 and no records, and the question (what NSD and Knot send as a slip).
pub fn truncate_to_question(out: &mut Vec<u8>, qname_len: usize) {
    let end = 12 + qname_len + 4;
    if out.len() < end {
        return;
    }
    out.truncate(end);
    out[2] |= 0x02;
    out[6..12].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> RrlSettings {
        RrlSettings::compile(&toml::from_str(toml).unwrap()).unwrap()
    }

    #[test]
    fn a_flood_above_the_rate_stays_limited_and_a_quiet_bucket_refills() {
        let s = settings("enabled = true\nrate = 10\nburst = 5");
        let l = Limiter::new(1024);
        let c: IpAddr = "198.51.100.7".parse().unwrap();
        let sent = |t: u32| l.charge(&s, c, Kind::Positive, b"\x01a\0", t);
        // The burst at once, then nothing.
        let burst: usize = (0..20).filter(|_| sent(0)).count();
        assert_eq!(burst, 5);
        // 100 queries a second (10x the rate) for 5 seconds: the balance sits at the floor, so
        // nothing gets through (BIND's accounting, not `rate` answers a second).
        let flood: usize = (0..500).filter(|i| sent(10 * i + 10)).count();
        assert!(flood <= 10, "{flood} answers during the flood");
        // Quiet for 2.5 s: one second of debt repaid, the bucket full again.
        let after: usize = (0..20).filter(|_| sent(5_010 + 2_500)).count();
        assert_eq!(after, 5);
        // Another network (/24) and another name are other buckets.
        let other: IpAddr = "198.51.101.7".parse().unwrap();
        assert!(l.charge(&s, other, Kind::Positive, b"\x01a\0", 7_510));
        assert!(l.charge(&s, c, Kind::Positive, b"\x01b\0", 7_510));
        // The same /24 is the same bucket.
        let same: IpAddr = "198.51.100.200".parse().unwrap();
        assert!(!l.charge(&s, same, Kind::Positive, b"\x01a\0", 7_510));
    }

    #[test]
    fn kinds_and_rates() {
        let s = settings(
            "enabled = true\nrate = 5\nrates = { nxdomain = 1 }\nexempt_kinds = [\"referral\"]",
        );
        let l = Limiter::new(64);
        let c: IpAddr = "2001:db8::1".parse().unwrap();
        let n = |k: Kind| (0..50).filter(|_| l.charge(&s, c, k, b"\0", 0)).count();
        assert_eq!(n(Kind::Positive), 5);
        assert_eq!(n(Kind::Nxdomain), 1);
        assert_eq!(n(Kind::Referral), 50);
        assert!(
            RrlSettings::compile(&toml::from_str("rates = { nxdomains = 1 }").unwrap()).is_err()
        );
        assert!(
            RrlSettings::compile(&toml::from_str("exempt_networks = [\"x\"]").unwrap()).is_err()
        );
    }

    #[test]
    fn slip_every_nth() {
        let s = settings("slip = 3");
        let mut n = 0;
        let v: Vec<Verdict> = (0..6).map(|_| Limiter::limited(&s, &mut n)).collect();
        use Verdict::*;
        assert_eq!(v, [Drop, Drop, Slip, Drop, Drop, Slip]);
        let s = settings("slip = 0");
        assert_eq!(Limiter::limited(&s, &mut n), Drop);
    }

    #[test]
    fn classify_reads_the_header() {
        // id, flags (QR AA, rcode), counts, question www.example. A IN
        let reply = |flags: u16, an: u16, qtype: u16| {
            let mut b = vec![0, 1];
            b.extend_from_slice(&flags.to_be_bytes());
            b.extend_from_slice(&[0, 1]);
            b.extend_from_slice(&an.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0]);
            b.extend_from_slice(b"\x03WWW\x07example\x00");
            b.extend_from_slice(&qtype.to_be_bytes());
            b.extend_from_slice(&[0, 1]);
            b
        };
        let k = |b: Vec<u8>| classify(&b, 1024).unwrap().kind;
        assert_eq!(k(reply(0x8400, 1, 1)), Kind::Positive);
        assert_eq!(k(reply(0x8403, 0, 1)), Kind::Nxdomain);
        assert_eq!(k(reply(0x8400, 0, 1)), Kind::Nodata);
        assert_eq!(k(reply(0x8000, 0, 1)), Kind::Referral);
        assert_eq!(k(reply(0x8405, 0, 1)), Kind::Error);
        assert_eq!(k(reply(0x8400, 1, 255)), Kind::Large);
        let mut big = reply(0x8400, 1, 1);
        big.resize(1500, 0);
        assert_eq!(k(big), Kind::Large);
        assert_eq!(
            classify(&reply(0x8400, 1, 1), 1024).unwrap().qname,
            b"\x03WWW\x07example\x00"
        );
        let mut r = reply(0x8400, 1, 1);
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
        truncate_to_question(&mut r, 13);
        assert_eq!(r.len(), 12 + 13 + 4);
        assert_eq!(r[2] & 0x02, 0x02, "TC");
        assert_eq!(&r[6..12], &[0; 6]);
    }
}
