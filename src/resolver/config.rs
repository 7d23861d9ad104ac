//! `[resolver]` in the config file, and its compiled form in the snapshot.
//!
//! ```toml
//! [resolver]
//! hints = "root.hints"        # absent: IANA's root servers, built in
//! upstream_port = 53          # or "listen": the port of our own DNS listeners (the lab)
//! ecs_zones = ["cdn.com."]    # forward the client's /24 (/56) as ECS to servers of these zones
//! cache_entries = 100000
//! cache_memory = "64M"        # bytes the cache may hold (a number, or with k/M/G suffix)
//! min_ttl = 0
//! max_ttl = 86400
//! negative_max_ttl = 3600     # RFC 2308 5 cap
//! serve_expired_ttl = 86400   # RFC 8767: serve data expired up to this long when a walk fails (0: never)
//! timeout_ms = 1500           # longest wait for one upstream reply (and a TCP retry's budget)
//! walk_timeout_ms = 8000      # longest a client query may walk before SERVFAIL
//! upstream_budget = 64        # upstream queries one client query may cause
//! qname_minimisation = true   # RFC 9156, relaxed: servers above a zone see one label more, not the name
//! prefetch = false            # a hit in the last 10 % of an answer's TTL refreshes it in the background
//! use_caps_for_id = false     # 0x20: random case in upstream names, echoed exactly or refused
//!
//! [[resolver.listener]]
//! name = "mobile"
//! addresses = ["127.0.10.1:1053"]
//! source = ["127.0.10.1"]     # upstream queries leave from here (one per address family)
//! allow = ["127.0.0.0/8", "::1/128"]   # the default: loopback only
//! allow_snoop = []            # clients also answered with RD=0 from the cache (Unbound's allow_snoop)
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use std::time::Duration;

use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::Deserialize;

use super::cache;
use super::hints::Hints;
use crate::zone::name::Key;
use crate::zone::reader::ZoneFs;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    #[serde(default)]
    pub hints: Option<PathBuf>,
    #[serde(default)]
    pub upstream_port: UpstreamPort,
    #[serde(default)]
    pub ecs_zones: Vec<String>,
    #[serde(default = "d_cache_entries")]
    pub cache_entries: usize,
    #[serde(default = "d_cache_memory")]
    pub cache_memory: Bytes,
    #[serde(default)]
    pub min_ttl: u32,
    #[serde(default = "d_max_ttl")]
    pub max_ttl: u32,
    #[serde(default = "d_negative_max_ttl")]
    pub negative_max_ttl: u32,
    #[serde(default = "d_serve_expired_ttl")]
    pub serve_expired_ttl: u32,
    #[serde(default = "d_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "d_walk_timeout_ms")]
    pub walk_timeout_ms: u64,
    #[serde(default = "d_budget")]
    pub upstream_budget: u32,
    #[serde(default = "yes")]
    pub qname_minimisation: bool,
    #[serde(default)]
    pub prefetch: bool,
    #[serde(default)]
    pub use_caps_for_id: bool,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ResolverListenerConfig>,
}

fn d_cache_entries() -> usize {
    100_000
}
fn d_cache_memory() -> Bytes {
    Bytes::Count(64 << 20)
}
fn d_max_ttl() -> u32 {
    86_400 // Unbound's cache-max-ttl
}
fn d_negative_max_ttl() -> u32 {
    3_600 // Unbound's cache-max-negative-ttl
}
fn d_serve_expired_ttl() -> u32 {
    86_400 // RFC 8767 5: "1 to 3 days" is suggested; Unbound's serve-expired-ttl is similar
}
fn d_timeout_ms() -> u64 {
    1_500
}
fn d_walk_timeout_ms() -> u64 {
    8_000
}
fn d_budget() -> u32 {
    64
}

/// A size: a number of bytes, or text with a k, M or G suffix (powers of 1024, as Unbound's
/// `rrset-cache-size: 64m`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Bytes {
    Count(u64),
    Text(String),
}

impl Bytes {
    pub fn get(&self) -> Result<u64, String> {
        match self {
            Bytes::Count(n) => Ok(*n),
            Bytes::Text(t) => {
                let t = t.trim();
                let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_lowercase()) {
                    Some('k') => (&t[..t.len() - 1], 10),
                    Some('m') => (&t[..t.len() - 1], 20),
                    Some('g') => (&t[..t.len() - 1], 30),
                    _ => (t, 0),
                };
                digits
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| n.checked_mul(1 << shift))
                    .ok_or_else(|| format!("\"{t}\" is not a size (a number, or like 64M)"))
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum UpstreamPort {
    Port(u16),
    Named(String),
}

impl Default for UpstreamPort {
    fn default() -> Self {
        UpstreamPort::Port(53)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResolverListenerConfig {
    pub name: String,
    pub addresses: Vec<SocketAddr>,
    #[serde(default)]
    pub source: Vec<IpAddr>,
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub allow_snoop: Vec<String>,
    #[serde(default = "yes")]
    pub udp: bool,
    #[serde(default = "yes")]
    pub tcp: bool,
}

fn yes() -> bool {
    true
}

/// The compiled `[resolver]`.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    pub hints: Hints,
    /// None: our own DNS listeners' port, known once they are bound.
    pub upstream_port: Option<u16>,
    pub ecs_zones: Vec<Key>,
    pub cache: cache::Limits,
    pub timeout: Duration,
    pub walk_timeout: Duration,
    pub budget: u32,
    pub cname_chain: usize,
    /// RFC 9156 in relaxed mode (see `walk::Qmin`).
    pub qname_minimisation: bool,
    /// Unbound's `prefetch` (see `resolver::prefetch`).
    pub prefetch: bool,
    /// Unbound's `use-caps-for-id` (see `upstream`).
    pub use_caps_for_id: bool,
    pub listeners: Vec<ResolverListener>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverListener {
    pub name: String,
    pub addresses: Vec<SocketAddr>,
    pub source: Vec<IpAddr>,
    pub allow: Vec<IpNet>,
    /// Clients whose RD=0 queries are answered from the cache; everyone else's are REFUSED, so
    /// the cache cannot be probed for who asked what (cache snooping). Also allowed to recurse.
    pub allow_snoop: Vec<IpNet>,
    pub udp: bool,
    pub tcp: bool,
}

impl ResolverListener {
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        self.allow
            .iter()
            .chain(&self.allow_snoop)
            .any(|n| n.contains(&ip))
    }

    /// Whether the client may read the cache without recursion (RD=0).
    pub fn allows_snoop(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        self.allow_snoop.iter().any(|n| n.contains(&ip))
    }

    /// The source address for a server of this family (None: let the system choose).
    pub fn source_for(&self, server: IpAddr) -> Option<IpAddr> {
        self.source
            .iter()
            .copied()
            .find(|s| s.is_ipv4() == server.is_ipv4())
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Networks as written in `allow` and `allow_snoop`: a CIDR or a single address.
fn networks(what: &str, key: &str, text: &[String], problems: &mut Vec<String>) -> Vec<IpNet> {
    let mut out = Vec::new();
    for a in text {
        match a.parse::<IpNet>() {
            Ok(n) => out.push(n.trunc()),
            Err(_) => match a.parse::<IpAddr>() {
                Ok(ip) => out.push(IpNet::from(ip)),
                Err(_) => problems.push(format!("{what}: {key} \"{a}\" is not a network")),
            },
        }
    }
    out
}

impl ResolverSettings {
    /// Checks and compiles; every problem is one line naming the setting.
    /// The root hints the config names (or IANA's). Errors name the hints file (and line), so the
    /// caller reports them as file problems, not config problems.
    pub fn hints(c: &ResolverConfig, base: &Path, fs: &dyn ZoneFs) -> Result<Hints, String> {
        match &c.hints {
            None => Ok(Hints::iana()),
            Some(p) => {
                let path = base.join(p);
                let text = fs
                    .read(&path)
                    .map_err(|e| format!("{}: cannot read root hints: {e}", path.display()))?;
                Hints::parse(&text, &path)
            }
        }
    }

    /// Checks and compiles; every problem is one line naming the setting.
    pub fn build(
        c: &ResolverConfig,
        hints: Hints,
        cname_chain: usize,
    ) -> Result<ResolverSettings, Vec<String>> {
        let mut problems = Vec::new();
        let upstream_port = match &c.upstream_port {
            UpstreamPort::Port(0) => {
                problems.push("resolver upstream_port 0: give a port or \"listen\"".into());
                None
            }
            UpstreamPort::Port(p) => Some(*p),
            UpstreamPort::Named(s) if s == "listen" => None,
            UpstreamPort::Named(s) => {
                problems.push(format!(
                    "resolver upstream_port \"{s}\": a port number or \"listen\""
                ));
                None
            }
        };
        let mut ecs_zones = Vec::new();
        for z in &c.ecs_zones {
            match Name::from_ascii(z) {
                Ok(mut n) => {
                    n.set_fqdn(true);
                    ecs_zones.push(crate::zone::name::key_of(&n));
                }
                Err(e) => problems.push(format!("resolver ecs_zones \"{z}\": {e}")),
            }
        }
        if c.cache_entries < 10 {
            problems.push("resolver cache_entries must be at least 10".into());
        }
        let max_bytes = match c.cache_memory.get() {
            Ok(n) if n >= 64 << 10 => n.min(usize::MAX as u64) as usize,
            Ok(n) => {
                problems.push(format!(
                    "resolver cache_memory {n} is below 64k: too small to hold a big RRset"
                ));
                0
            }
            Err(e) => {
                problems.push(format!("resolver cache_memory {e}"));
                0
            }
        };
        if c.min_ttl > c.max_ttl {
            problems.push(format!(
                "resolver min_ttl {} is above max_ttl {}",
                c.min_ttl, c.max_ttl
            ));
        }
        if c.serve_expired_ttl > 7 * 86_400 {
            // RFC 8767 5: a week at most ("1 to 3 days" suggested); older data is more likely
            // wrong than an error is unhelpful.
            problems.push(format!(
                "resolver serve_expired_ttl {} is above 604800 (a week)",
                c.serve_expired_ttl
            ));
        }
        if !(10..=60_000).contains(&c.timeout_ms) {
            problems.push(format!(
                "resolver timeout_ms {} is outside 10..=60000",
                c.timeout_ms
            ));
        }
        if !(100..=120_000).contains(&c.walk_timeout_ms) {
            problems.push(format!(
                "resolver walk_timeout_ms {} is outside 100..=120000",
                c.walk_timeout_ms
            ));
        }
        if c.upstream_budget == 0 {
            problems.push("resolver upstream_budget must be at least 1".into());
        }
        let mut listeners = Vec::new();
        for l in &c.listeners {
            let what = format!("resolver listener \"{}\"", l.name);
            if listeners
                .iter()
                .any(|x: &ResolverListener| x.name == l.name)
            {
                problems.push(format!("{what} is configured twice"));
            }
            if l.addresses.is_empty() {
                problems.push(format!("{what}: no addresses"));
            }
            if l.source.iter().filter(|s| s.is_ipv4()).count() > 1
                || l.source.iter().filter(|s| s.is_ipv6()).count() > 1
            {
                problems.push(format!("{what}: at most one source address per family"));
            }
            let allow_text = l
                .allow
                .clone()
                .unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1/128".into()]);
            let allow = networks(&what, "allow", &allow_text, &mut problems);
            let allow_snoop = networks(&what, "allow_snoop", &l.allow_snoop, &mut problems);
            listeners.push(ResolverListener {
                name: l.name.clone(),
                addresses: l.addresses.clone(),
                source: l.source.clone(),
                allow,
                allow_snoop,
                udp: l.udp,
                tcp: l.tcp,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ResolverSettings {
            hints,
            upstream_port,
            ecs_zones,
            cache: cache::Limits {
                max_entries: c.cache_entries,
                max_bytes,
                min_ttl: c.min_ttl,
                max_ttl: c.max_ttl,
                negative_max_ttl: c.negative_max_ttl,
                serve_expired_ttl: c.serve_expired_ttl,
            },
            timeout: Duration::from_millis(c.timeout_ms),
            walk_timeout: Duration::from_millis(c.walk_timeout_ms),
            budget: c.upstream_budget,
            cname_chain,
            qname_minimisation: c.qname_minimisation,
            prefetch: c.prefetch,
            use_caps_for_id: c.use_caps_for_id,
            listeners,
        })
    }
}
