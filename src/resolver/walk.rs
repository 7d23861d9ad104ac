//! The iterative walk (RFC 1034 5.3.3, RFC 1035 7): from the closest delegation the cache knows
//! (or the root hints) down the referrals to the servers that answer, following CNAMEs across
//! zones, caching what it learns.
//!
//! Rules kept here, with where they come from:
//! - a reply is used only for names inside the zone the server was asked about (its bailiwick);
//!   glue only for names inside the referring zone (RFC 2181 5.4.1, the "bailiwick rule");
//! - a referral must lead strictly down (an upward or sideways referral is a lame server);
//! - servers without glue are resolved first (glueless delegations), at a bounded depth;
//! - SERVFAIL, REFUSED, timeouts and lame replies move on to the next server; a timed-out server
//!   is asked again after the others with its timeout doubled (RFC 6298 5.5), three times in all,
//!   and then counts as down: skipped by every walk for a minute, then probed by one (`Infra`);
//!   a zone whose servers are all down fails at once (RFC 1035 7.2);
//! - every client query has a budget of upstream queries shared by all its sub-walks (against
//!   loops and NXNSAttack-style amplification, CVE-2020-12662);
//! - CNAME loops and over-long chains end in SERVFAIL;
//! - with `qname_minimisation` (RFC 9156, relaxed mode; `Qmin`), a zone's servers are asked for
//!   the name cut one label below the zone (QTYPE A), and only the servers of the zone just
//!   above the name see the whole question. A minimised query answered NXDOMAIN, REFUSED,
//!   FORMERR, SERVFAIL or an alias is asked again with the full name (servers that get empty
//!   non-terminals wrong are common, RFC 9156 2.3), and its answer is not cached.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::Instance;
use super::cache::{Hit, Rank};
use super::config::{ResolverListener, ResolverSettings};
use super::trace::{Step, record_lines};
use super::upstream::{self, Ask, UpstreamError};
use crate::wire::rcode;
use crate::zone::name::{Key, is_at_or_below, key_of};

/// Glueless server names resolved inside glueless server names...: deeper is a misconfiguration.
const MAX_DEPTH: u8 = GLUELESS_PER_DELEGATION.len() as u8 - 1;
/// Glueless server names looked up per delegation, by how deep the walk already is in such
/// lookups (Unbound's target-fetch-policy "3 2 1 0 0"). A referral naming many servers without
/// addresses otherwise turns one client query into a lookup per name, all sent to whoever serves
/// those names (NXNSAttack, CVE-2020-12662; RFC 9520 on bounding the work failures cause).
const GLUELESS_PER_DELEGATION: [usize; 5] = [3, 2, 1, 0, 0];

fn glueless_cap(depth: u8) -> usize {
    GLUELESS_PER_DELEGATION
        .get(depth as usize)
        .copied()
        .unwrap_or(0)
}

/// CNAME records followed inside one reply.
const MAX_CHAIN_IN_REPLY: usize = 16;

/// RFC 9156 2.3: at most this many minimised queries for one name at one walk...
const MAX_MINIMISE_COUNT: u8 = 10;
/// ...of which the first ones add one label each; later ones share what is left, so a name with
/// many labels (a random-subdomain attack's) costs at most MAX_MINIMISE_COUNT queries, not one per
/// label.
const MINIMISE_ONE_LAB: u8 = 4;

/// QNAME minimisation for one name's iteration (RFC 9156 2.3): which name the next query asks.
struct Qmin {
    on: bool,
    /// Labels of the name asked last (0: none asked yet).
    labels: u8,
    /// Minimised queries so far (RFC 9156's MINIMISE_COUNT).
    count: u8,
}

impl Qmin {
    fn new(on: bool) -> Qmin {
        Qmin {
            on,
            labels: 0,
            count: 0,
        }
    }

    /// The name to ask a server of `zone` for `name`: one label below the deeper of the zone and
    /// the name asked last (more once MINIMISE_ONE_LAB are spent), or the whole name once there
    /// (or minimisation is off).
    fn next(&mut self, name: &Name, zone: &Name) -> Name {
        let total = name.num_labels();
        let base = self.labels.max(zone.num_labels());
        if !self.on || base >= total {
            return name.clone();
        }
        let left = total - base;
        let add = if self.count < MINIMISE_ONE_LAB {
            1
        } else if self.count >= MAX_MINIMISE_COUNT {
            left
        } else {
            (left / (MAX_MINIMISE_COUNT - self.count)).max(1)
        };
        let mut labels = base + add;
        // RFC 9156 2.3: labels starting with an underscore (RFC 8552: _tcp, _443, ...) are not
        // zone cuts in practice; asking them one by one would only cost queries.
        while labels < total
            && name
                .iter()
                .nth(usize::from(total - labels))
                .is_some_and(|l| l.first() == Some(&b'_'))
        {
            labels += 1;
        }
        self.count += 1;
        self.labels = labels;
        name.trim_to(usize::from(labels))
    }
}

/// Everything a walk reads.
pub struct Env<'a> {
    pub settings: &'a ResolverSettings,
    pub listener: &'a ResolverListener,
    pub instance: &'a Instance,
    /// Port of every server asked.
    pub port: u16,
}

/// The outcome of a client's question.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub rcode: u16,
    pub answer: Vec<Record>,
    pub authority: Vec<Record>,
    /// Why, when rcode is SERVFAIL.
    pub reason: Option<String>,
    pub upstream_queries: u32,
}

pub struct Walk<'a> {
    env: &'a Env<'a>,
    spent: u32,
    pub trace: Option<Vec<Step>>,
    /// The client's subnet for ECS zones (already cut to /24 or /56).
    ecs: Option<(IpAddr, u8)>,
    /// For scoped cache entries.
    client: Option<IpAddr>,
    /// Answers from the cache may be stale (RFC 8767): set only for a cache-only walk after a
    /// real one failed.
    pub stale: bool,
    /// A name whose answers the cache does not give this walk (prefetch refreshes it).
    pub refresh: Option<Key>,
}

/// What one name's iteration produced.
enum Got {
    /// Records for the name (a CNAME chain and/or the RRset asked for); `next` is set when the
    /// chain leaves what this server answers for.
    Answer {
        records: Vec<Record>,
        next: Option<Name>,
    },
    NxDomain {
        chain: Vec<Record>,
        soa: Option<Record>,
    },
    NoData {
        chain: Vec<Record>,
        soa: Option<Record>,
    },
}

/// How a reply was read.
enum Class {
    Answer {
        records: Vec<Record>,
        next: Option<Name>,
    },
    NxDomain {
        chain: Vec<Record>,
        last: Name,
        soa: Option<Record>,
    },
    NoData {
        chain: Vec<Record>,
        last: Name,
        soa: Option<Record>,
    },
    Referral {
        zone: Name,
        ns: Vec<Record>,
        glue: Vec<Record>,
    },
    Lame(String),
}

type Boxed<'s, T> = Pin<Box<dyn Future<Output = T> + Send + 's>>;

fn text_type(t: RecordType) -> String {
    t.to_string()
}

impl<'a> Walk<'a> {
    pub fn new(env: &'a Env<'a>, client: Option<IpAddr>, trace: bool) -> Walk<'a> {
        let ecs = client.map(|ip| {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            let full = if ip.is_ipv4() { 32 } else { 128 };
            crate::query::truncate(ip, full)
        });
        Walk {
            env,
            spent: 0,
            trace: trace.then(Vec::new),
            ecs,
            client,
            stale: false,
            refresh: None,
        }
    }

    /// The cache's answer-rank entry for (key, rtype), stale ones included when `stale` is set.
    fn cached(&self, key: &[u8], rtype: RecordType) -> Option<Hit> {
        if self.refresh.as_deref() == Some(key) {
            return None;
        }
        let cache = &self.env.instance.cache;
        if self.stale {
            cache.get_stale(key, rtype, Rank::Answer, self.client)
        } else {
            cache.get(key, rtype, Rank::Answer, self.client)
        }
    }

    fn step(&mut self, s: impl FnOnce() -> Step) {
        if let Some(t) = &mut self.trace {
            t.push(s());
        }
    }

    /// Resolves a client's question. `cache_only`: answer from the cache or not at all (RD=0).
    pub async fn resolve(
        &mut self,
        name: &Name,
        qtype: RecordType,
        cache_only: bool,
    ) -> Resolution {
        let result = self.resolve_name(name.clone(), qtype, 0, cache_only).await;
        let spent = self.spent;
        match result {
            Ok((rc, answer, authority)) => Resolution {
                rcode: rc,
                answer,
                authority,
                reason: None,
                upstream_queries: spent,
            },
            Err(reason) => {
                self.step(|| Step::Fail {
                    reason: reason.clone(),
                });
                Resolution {
                    rcode: rcode::SERVFAIL,
                    answer: Vec::new(),
                    authority: Vec::new(),
                    reason: Some(reason),
                    upstream_queries: spent,
                }
            }
        }
    }

    /// A walk for a client (`resolve` with the network allowed) that gives up after
    /// `walk_timeout`: a walk through slow or dead servers must not hold a walk slot, and the
    /// client, far longer than the client waits (stub resolvers retry after 1-5 s; Unbound
    /// bounds a query's total work the same way).
    pub async fn bounded(&mut self, name: &Name, qtype: RecordType) -> Resolution {
        let limit = self.env.settings.walk_timeout;
        match tokio::time::timeout(limit, self.resolve(name, qtype, false)).await {
            Ok(r) => r,
            Err(_) => {
                let reason = format!("walk took longer than {} ms", limit.as_millis());
                self.step(|| Step::Fail {
                    reason: reason.clone(),
                });
                Resolution {
                    rcode: rcode::SERVFAIL,
                    answer: Vec::new(),
                    authority: Vec::new(),
                    reason: Some(reason),
                    upstream_queries: self.spent,
                }
            }
        }
    }

    /// (rcode, answer, authority), or why it failed.
    #[allow(clippy::type_complexity)]
    fn resolve_name(
        &mut self,
        name: Name,
        qtype: RecordType,
        depth: u8,
        cache_only: bool,
    ) -> Boxed<'_, Result<(u16, Vec<Record>, Vec<Record>), String>> {
        Box::pin(async move {
            let mut answer: Vec<Record> = Vec::new();
            let mut current = name;
            let mut seen: Vec<Key> = vec![key_of(&current)];
            loop {
                // The cache first: a whole answer, a negative one, or a CNAME to continue from.
                let key = key_of(&current);
                match self.cached(&key, qtype) {
                    Some(Hit::Rrset(rs)) => {
                        self.cache_step(&current, qtype, "answer", &rs);
                        answer.extend(rs);
                        return Ok((rcode::NOERROR, answer, Vec::new()));
                    }
                    Some(Hit::NxDomain(soa)) => {
                        let soa: Vec<Record> = soa.into_iter().collect();
                        self.cache_step(&current, qtype, "NXDOMAIN", &soa);
                        return Ok((rcode::NXDOMAIN, answer, soa));
                    }
                    Some(Hit::NoData(soa)) => {
                        let soa: Vec<Record> = soa.into_iter().collect();
                        self.cache_step(&current, qtype, "NODATA", &soa);
                        return Ok((rcode::NOERROR, answer, soa));
                    }
                    None => {}
                }
                // RFC 8020: an ancestor known not to exist has no names below it either
                // (Unbound's harden-below-nxdomain): answered without asking anyone, which also
                // blunts random-subdomain floods under a name already found missing.
                if let Some(soa) = self.nxdomain_above(&current) {
                    let soa: Vec<Record> = soa.into_iter().collect();
                    self.cache_step(&current, qtype, "NXDOMAIN above (RFC 8020)", &soa);
                    return Ok((rcode::NXDOMAIN, answer, soa));
                }
                // With the client: a CNAME learned under an ECS scope is that scope's.
                let cached_cname = if qtype == RecordType::CNAME {
                    None
                } else {
                    match self.cached(&key, RecordType::CNAME) {
                        Some(Hit::Rrset(c)) => Some(c),
                        _ => None,
                    }
                };
                let next = if let Some(c) = cached_cname {
                    self.cache_step(&current, qtype, "CNAME", &c);
                    let target = cname_target(&c);
                    // A CNAME a DNAME made is answered with that DNAME (RFC 6672 3.4), as the
                    // first answer was.
                    if let Some(t) = &target
                        && let Some(d) = self.cached_dname(&current, t)
                        && !answer.contains(&d)
                    {
                        answer.push(d);
                    }
                    answer.extend(c);
                    match target {
                        Some(t) => t,
                        None => return Err(format!("bad CNAME at {current}")),
                    }
                } else if cache_only {
                    return Err("not in the cache (recursion not desired)".into());
                } else {
                    let got = self.iterate(&current, qtype, depth).await?;
                    let (Got::Answer { records: c, .. }
                    | Got::NxDomain { chain: c, .. }
                    | Got::NoData { chain: c, .. }) = &got;
                    answer.extend(c.iter().cloned());
                    self.chain_within_limit(&answer)?;
                    match got {
                        Got::Answer { next, .. } => match next {
                            None => return Ok((rcode::NOERROR, answer, Vec::new())),
                            Some(n) => n,
                        },
                        Got::NxDomain { soa, .. } => {
                            return Ok((rcode::NXDOMAIN, answer, soa.into_iter().collect()));
                        }
                        Got::NoData { soa, .. } => {
                            return Ok((rcode::NOERROR, answer, soa.into_iter().collect()));
                        }
                    }
                };
                let next_key = key_of(&next);
                if seen.contains(&next_key) {
                    return Err(format!("CNAME loop: {next} comes back"));
                }
                self.chain_within_limit(&answer)?;
                seen.push(next_key);
                let from = current.to_string();
                self.step(|| Step::Follow {
                    from,
                    to: next.to_string(),
                });
                current = next;
            }
        })
    }

    /// `[limits] cname_chain`, counted as CNAME records in the answer so far: a chain that came
    /// in one reply counts the same as one followed reply by reply or read from the cache (it
    /// was answered NOERROR once, then SERVFAIL from the cache).
    fn chain_within_limit(&self, answer: &[Record]) -> Result<(), String> {
        let hops = answer
            .iter()
            .filter(|r| r.record_type() == RecordType::CNAME)
            .count();
        if hops > self.env.settings.cname_chain {
            return Err(format!(
                "CNAME chain longer than {} hops",
                self.env.settings.cname_chain
            ));
        }
        Ok(())
    }

    /// The SOA of a cached NXDOMAIN for a name strictly above `name` (RFC 8020 2), if any.
    fn nxdomain_above(&self, name: &Name) -> Option<Option<Record>> {
        let mut above = name.base_name();
        while above.num_labels() > 0 {
            if let Some(Hit::NxDomain(soa)) =
                self.env
                    .instance
                    .cache
                    .nxdomain(&key_of(&above), self.client, self.stale)
            {
                return Some(soa);
            }
            above = above.base_name();
        }
        None
    }

    /// A cached DNAME above `name` that substitutes it to `target`.
    fn cached_dname(&self, name: &Name, target: &Name) -> Option<Record> {
        let mut above = name.base_name();
        while above.num_labels() > 0 {
            if let Some(Hit::Rrset(d)) = self.cached(&key_of(&above), RecordType::DNAME)
                && let Some(r) = d.into_iter().next()
                && dname_target(&r)
                    .and_then(|t| substitute(name, &r.name, &t))
                    .is_some_and(|s| key_of(&s) == key_of(target))
            {
                return Some(r);
            }
            above = above.base_name();
        }
        None
    }

    fn cache_step(&mut self, name: &Name, qtype: RecordType, result: &str, records: &[Record]) {
        self.step(|| Step::Cache {
            name: name.to_string(),
            qtype: text_type(qtype),
            result: result.to_string(),
            records: record_lines(records),
        });
    }

    /// The closest enclosing delegation the cache knows, else the root hints: (zone, servers).
    fn closest_cut(&self, name: &Name, qtype: RecordType) -> (Name, Vec<Name>, &'static str) {
        // DS lives on the parent side of a cut (RFC 4035 3.1.4.1).
        let mut at = if qtype == RecordType::DS && !name.is_root() {
            name.base_name()
        } else {
            name.clone()
        };
        loop {
            let key = key_of(&at);
            if let Some(ns) = self
                .env
                .instance
                .cache
                .rrset(&key, RecordType::NS, Rank::Referral)
            {
                let servers = ns_names(&ns);
                // Usable if some server has an address, or (below the root) can be looked up
                // outside the zone it serves.
                let usable = servers.iter().any(|s| {
                    !self.addresses(s).is_empty()
                        || (!at.is_root() && !is_at_or_below(&key_of(s), &key))
                });
                if usable {
                    return (at, servers, "cache");
                }
            }
            if at.is_root() {
                break;
            }
            at = at.base_name();
        }
        let servers = self
            .env
            .settings
            .hints
            .servers
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        (Name::root(), servers, "hints")
    }

    fn families(&self) -> (bool, bool) {
        let src = &self.env.listener.source;
        if src.is_empty() {
            (true, true)
        } else {
            (
                src.iter().any(IpAddr::is_ipv4),
                src.iter().any(IpAddr::is_ipv6),
            )
        }
    }

    fn cached_addresses(&self, server: &Name) -> Vec<IpAddr> {
        let (v4, v6) = self.families();
        let key = key_of(server);
        let mut out = Vec::new();
        for (want, t) in [(v4, RecordType::A), (v6, RecordType::AAAA)] {
            if !want {
                continue;
            }
            if let Some(rs) = self.env.instance.cache.rrset(&key, t, Rank::Glue) {
                out.extend(rs.iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }));
            }
        }
        out
    }

    /// Addresses of a server: the cache, then the root hints.
    fn addresses(&self, server: &Name) -> Vec<IpAddr> {
        let mut out = self.cached_addresses(server);
        if out.is_empty() {
            let (v4, v6) = self.families();
            let key = key_of(server);
            for (n, ips) in &self.env.settings.hints.servers {
                if key_of(n) == key {
                    out.extend(
                        ips.iter()
                            .filter(|ip| (ip.is_ipv4() && v4) || (ip.is_ipv6() && v6)),
                    );
                }
            }
        }
        out
    }

    fn ecs_for(&self, zone: &Name) -> Option<(IpAddr, u8)> {
        let key = key_of(zone);
        if self
            .env
            .settings
            .ecs_zones
            .iter()
            .any(|z| is_at_or_below(&key, z))
        {
            self.ecs
        } else {
            None
        }
    }

    /// Walks from the closest known delegation to a final reply for (name, qtype).
    async fn iterate(&mut self, name: &Name, qtype: RecordType, depth: u8) -> Result<Got, String> {
        let (mut zone, mut servers, from) = self.closest_cut(name, qtype);
        {
            let (z, s) = (
                zone.to_string(),
                servers.iter().map(ToString::to_string).collect(),
            );
            self.step(|| Step::Start {
                name: name.to_string(),
                qtype: text_type(qtype),
                zone: z,
                servers: s,
                from,
            });
        }
        let mut qmin = Qmin::new(self.env.settings.qname_minimisation);
        'zone: loop {
            let zone_key = key_of(&zone);
            // The question this zone's servers are asked now: minimised (QTYPE A, RFC 9156 3)
            // until the name is reached.
            let asked = qmin.next(name, &zone);
            let minimised = asked.num_labels() < name.num_labels();
            let asked_type = if minimised { RecordType::A } else { qtype };
            // 0x20 for this zone's servers, until one of them does not echo the case.
            let mut caps = self.env.settings.use_caps_for_id;
            let mut tried: HashSet<IpAddr> = HashSet::new();
            let mut looked_up: HashSet<Key> = HashSet::new();
            // Servers that timed out in this zone, with how many times: each is asked again (its
            // RTO doubled) after the others, up to DOWN_AFTER times in all (RFC 1035 7.2).
            let mut timed_out: Vec<(IpAddr, u32)> = Vec::new();
            // Addresses known down, checked once per zone visit (checking claims the probe).
            let mut down: HashMap<IpAddr, bool> = HashMap::new();
            loop {
                // Untried addresses of this zone's servers, fastest first.
                let mut candidates: Vec<(IpAddr, Name)> = Vec::new();
                for s in &servers {
                    for ip in self.addresses(s) {
                        if tried.contains(&ip) || candidates.iter().any(|(c, _)| *c == ip) {
                            continue;
                        }
                        let infra = &self.env.instance.infra;
                        if *down.entry(ip).or_insert_with(|| infra.is_down(ip)) {
                            continue;
                        }
                        candidates.push((ip, s.clone()));
                    }
                }
                self.env.instance.infra.order(&mut candidates);
                let Some((ip, server_name)) = candidates.into_iter().next() else {
                    // No address left: look up a server name that came without glue. Names inside
                    // the zone itself cannot be looked up without the zone (that delegation is broken).
                    let glueless = servers
                        .iter()
                        .find(|s| {
                            let k = key_of(s);
                            !looked_up.contains(&k) && !is_at_or_below(&k, &zone_key)
                        })
                        .cloned();
                    if let Some(s) = glueless {
                        looked_up.insert(key_of(&s));
                        if depth >= MAX_DEPTH || looked_up.len() > glueless_cap(depth) {
                            continue;
                        }
                        let (z, sn) = (zone.to_string(), s.to_string());
                        self.step(|| Step::Glueless {
                            zone: z,
                            server_name: sn,
                        });
                        let (v4, v6) = self.families();
                        for (want, t) in [(v4, RecordType::A), (v6, RecordType::AAAA)] {
                            // A failed lookup only means this server stays without an address;
                            // a spent budget ends the whole walk (checked before the next query).
                            if want && self.spent < self.env.settings.budget {
                                let _ = self.resolve_name(s.clone(), t, depth + 1, false).await;
                            }
                        }
                        continue;
                    }
                    let again: Vec<IpAddr> = timed_out
                        .iter()
                        .filter(|(ip, n)| {
                            // A probe that timed out marked its server down again: one try.
                            *n < DOWN_AFTER && !self.env.instance.infra.marked_down(*ip)
                        })
                        .map(|(ip, _)| *ip)
                        .collect();
                    if !again.is_empty() {
                        for ip in again {
                            tried.remove(&ip);
                        }
                        continue;
                    }
                    if !down.is_empty() && down.values().all(|d| *d) {
                        // Fail fast: nothing was asked, every server is known down (a probe
                        // will find out when one is back).
                        return Err(format!("every server of {zone} is down"));
                    }
                    return Err(format!("no server for {zone} gave a usable answer"));
                };
                tried.insert(ip);
                if self.spent >= self.env.settings.budget {
                    return Err(format!(
                        "upstream query budget of {} queries spent",
                        self.env.settings.budget
                    ));
                }
                self.spent += 1;
                self.env.instance.stats.upstream(1);
                let ecs = self.ecs_for(&zone);
                let ask = Ask {
                    name: &asked,
                    qtype: asked_type,
                    server: SocketAddr::new(ip, self.env.port),
                    source: self.env.listener.source_for(ip),
                    ecs,
                    timeout: self
                        .env
                        .instance
                        .infra
                        .timeout(ip, self.env.settings.timeout),
                    tcp_timeout: self.env.settings.timeout,
                    caps,
                };
                let reply = match upstream::exchange(&ask).await {
                    Ok(r) => r,
                    Err(UpstreamError::CaseMismatch) => {
                        // The server lowercased the question (or a forger guessed all but the
                        // case): counted, and the zone is asked again without 0x20, this server
                        // first (Unbound's fallback for servers that do not echo the case).
                        self.env
                            .instance
                            .stats
                            .caps_mismatches
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        caps = false;
                        tried.remove(&ip);
                        let (z, sn) = (zone.to_string(), server_name.to_string());
                        self.step(|| Step::Failed {
                            server: ip.to_string(),
                            server_name: sn,
                            zone: z,
                            reason: "reply not in the case asked (0x20): asking without".into(),
                        });
                        continue;
                    }
                    Err(e) => {
                        if matches!(e, UpstreamError::Timeout) {
                            self.env.instance.infra.timed_out(ip, ask.timeout);
                            match timed_out.iter_mut().find(|(t, _)| *t == ip) {
                                Some((_, n)) => *n += 1,
                                None => timed_out.push((ip, 1)),
                            }
                        } else {
                            self.env.instance.infra.failed(ip);
                        }
                        let (z, sn) = (zone.to_string(), server_name.to_string());
                        self.step(|| Step::Failed {
                            server: ip.to_string(),
                            server_name: sn,
                            zone: z,
                            reason: e.to_string(),
                        });
                        continue;
                    }
                };
                self.env.instance.infra.rtt(ip, reply.rtt);
                let scope = reply_scope(&reply.message, ecs);
                let class = classify(&reply.message, &zone, &asked, asked_type);
                let (result, shown): (String, Vec<Record>) = match &class {
                    Class::Answer { records, next } => (
                        match next {
                            Some(n) => format!("answer, alias to {n}"),
                            None => "answer".to_string(),
                        },
                        records.clone(),
                    ),
                    Class::NxDomain { chain, soa, .. } => (
                        "NXDOMAIN".into(),
                        chain.iter().chain(soa.iter()).cloned().collect(),
                    ),
                    Class::NoData { chain, soa, .. } => (
                        "NODATA".into(),
                        chain.iter().chain(soa.iter()).cloned().collect(),
                    ),
                    Class::Referral { zone: z, ns, glue } => (
                        format!("referral to {z}"),
                        ns.iter().chain(glue.iter()).cloned().collect(),
                    ),
                    Class::Lame(why) => (format!("lame: {why}"), Vec::new()),
                };
                if let Class::Lame(why) = &class {
                    if minimised {
                        // Relaxed mode (RFC 9156 2.3): some servers refuse or fail names they
                        // do not hold (or any type but the one asked); the full name decides.
                        qmin.on = false;
                        let (z, sn, why) = (zone.to_string(), server_name.to_string(), why.clone());
                        self.step(|| Step::Failed {
                            server: ip.to_string(),
                            server_name: sn,
                            zone: z,
                            reason: format!("{why} to a minimised query: asking the full name"),
                        });
                        continue 'zone;
                    }
                    // Lame for this zone: rank it behind the servers that answer.
                    self.env.instance.infra.failed(ip);
                    let (z, sn, why) = (zone.to_string(), server_name.to_string(), why.clone());
                    self.step(|| Step::Failed {
                        server: ip.to_string(),
                        server_name: sn,
                        zone: z,
                        reason: format!("lame: {why}"),
                    });
                    continue;
                }
                {
                    let z = zone.to_string();
                    let sn = server_name.to_string();
                    self.step(|| Step::Query {
                        server: ip.to_string(),
                        server_name: sn,
                        zone: z,
                        name: asked.to_string(),
                        qtype: text_type(asked_type),
                        proto: reply.proto,
                        tc_retry: reply.truncated_udp,
                        rtt_ms: reply.rtt.as_secs_f64() * 1000.0,
                        result,
                        records: record_lines(&shown),
                    });
                }
                if minimised {
                    match &class {
                        // A cut between the zone and the name: followed below as always.
                        Class::Referral { .. } => {}
                        // No cut at the name asked (an empty non-terminal or a name with data):
                        // one label more, from the same zone's servers.
                        Class::NoData { chain, .. } if chain.is_empty() => {
                            store(&self.env.instance.cache, &class, asked_type, scope);
                            continue 'zone;
                        }
                        Class::Answer {
                            records,
                            next: None,
                        } if records.iter().all(|r| r.record_type() == asked_type) => {
                            store(&self.env.instance.cache, &class, asked_type, scope);
                            continue 'zone;
                        }
                        // NXDOMAIN (from a server that gets empty non-terminals wrong, or
                        // right: the full name will say so again) or an alias: relaxed mode asks
                        // the full name and caches nothing of this reply (its NXDOMAIN would end
                        // every name below, RFC 8020).
                        _ => {
                            qmin.on = false;
                            continue 'zone;
                        }
                    }
                }
                store(&self.env.instance.cache, &class, qtype, scope);
                match class {
                    Class::Lame(_) => unreachable!("handled above"),
                    Class::Referral {
                        zone: child, ns, ..
                    } => {
                        servers = ns_names(&ns);
                        zone = child;
                        continue 'zone;
                    }
                    Class::Answer { records, next } => return Ok(Got::Answer { records, next }),
                    Class::NxDomain { chain, soa, .. } => {
                        let soa = soa.map(negative_soa);
                        return Ok(Got::NxDomain { chain, soa });
                    }
                    Class::NoData { chain, soa, .. } => {
                        let soa = soa.map(negative_soa);
                        return Ok(Got::NoData { chain, soa });
                    }
                }
            }
        }
    }
}

/// What a classified reply puts in the cache: a referral's NS (rank Referral) and glue (Glue),
/// an answer's and a negative answer's chain (Answer), the negative itself with its SOA.
fn store(cache: &super::cache::Cache, class: &Class, qtype: RecordType, scope: Option<IpNet>) {
    let chain = |records: &[Record]| {
        for set in group(records.to_vec()) {
            let k = key_of(&set[0].name);
            cache.insert_rrset(k, set, Rank::Answer, scope);
        }
    };
    match class {
        Class::Lame(_) => {}
        Class::Referral {
            zone: child,
            ns,
            glue,
        } => {
            cache.insert_rrset(key_of(child), ns.clone(), Rank::Referral, None);
            for set in group(glue.clone()) {
                let k = key_of(&set[0].name);
                cache.insert_rrset(k, set, Rank::Glue, None);
            }
        }
        Class::Answer { records, .. } => chain(records),
        // NXDOMAIN covers every type of the name, NODATA only the one asked (RFC 2308 5).
        Class::NxDomain {
            chain: c,
            last,
            soa,
        }
        | Class::NoData {
            chain: c,
            last,
            soa,
        } => {
            chain(c);
            let rtype = matches!(class, Class::NoData { .. }).then_some(qtype);
            cache.insert_negative(key_of(last), rtype, soa.clone().map(negative_soa), scope);
        }
    }
}

/// The fuzzing entry (fuzz/targets.rs, replayed by tests/fuzz_replay.rs): `reply` read as a
/// server of `zone`'s answer to (`name`, `qtype`), classified and cached exactly as a walk does.
/// Returns what was cached for the name, so a harness can check it is well formed. Not for other
/// callers.
#[doc(hidden)]
pub fn classify_and_store(
    reply: &[u8],
    zone: &Name,
    name: &Name,
    qtype: RecordType,
    cache: &super::cache::Cache,
) -> Option<Vec<Record>> {
    let m = Message::from_vec(reply).ok()?;
    let class = classify(&m, zone, name, qtype);
    store(cache, &class, qtype, None);
    match cache.get(&key_of(name), qtype, Rank::Answer, None)? {
        Hit::Rrset(r) => Some(r),
        Hit::NxDomain(soa) | Hit::NoData(soa) => Some(soa.into_iter().collect()),
    }
}

/// The SOA as a negative answer shows it: TTL = min(TTL, MINIMUM) (RFC 2308 5).
fn negative_soa(mut soa: Record) -> Record {
    if let Some(t) = super::cache::negative_ttl(&soa) {
        soa.ttl = t;
    }
    soa
}

/// The server names of an NS RRset.
fn ns_names(records: &[Record]) -> Vec<Name> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(n) => Some(n.0.clone()),
            _ => None,
        })
        .collect()
}

fn cname_target(records: &[Record]) -> Option<Name> {
    records.iter().find_map(|r| match &r.data {
        RData::CNAME(c) => Some(c.0.clone()),
        _ => None,
    })
}

/// Records grouped into RRsets (same owner, case-insensitively, and type), in first-seen order.
fn group(records: Vec<Record>) -> Vec<Vec<Record>> {
    let mut out: Vec<(Key, RecordType, Vec<Record>)> = Vec::new();
    for r in records {
        let k = key_of(&r.name);
        let t = r.record_type();
        match out.iter_mut().find(|(ok, ot, _)| *ok == k && *ot == t) {
            Some((_, _, v)) => v.push(r),
            None => out.push((k, t, vec![r])),
        }
    }
    out.into_iter().map(|(_, _, v)| v).collect()
}

/// The network a reply applies to, from its ECS scope (RFC 7871 7.3.1): None = every client.
fn reply_scope(m: &Message, sent: Option<(IpAddr, u8)>) -> Option<IpNet> {
    let (addr, source) = sent?;
    let ecs = m
        .edns
        .as_ref()?
        .options()
        .as_ref()
        .iter()
        .find_map(|(_, o)| match o {
            hickory_proto::rr::rdata::opt::EdnsOption::Subnet(s) => Some(*s),
            _ => None,
        })?;
    let scope = ecs.scope_prefix().min(source);
    if scope == 0 {
        return None;
    }
    IpNet::new(addr, scope).ok().map(|n| n.trunc())
}

/// The target of a DNAME record (its RDATA is one uncompressed name, RFC 6672 2.1).
pub fn dname_target(r: &Record) -> Option<Name> {
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    match &r.data {
        RData::Unknown { code, rdata } if *code == RecordType::DNAME => {
            let mut d = BinDecoder::new(&rdata.anything);
            let n = Name::read(&mut d).ok()?;
            (d.index() == rdata.anything.len()).then_some(n)
        }
        _ => None,
    }
}

/// `name` with the DNAME's owner replaced by its target (RFC 6672 2.2); None when the result
/// would be longer than 255 octets or the DNAME is not above `name`.
pub fn substitute(name: &Name, owner: &Name, target: &Name) -> Option<Name> {
    let (n, o) = (name.num_labels(), owner.num_labels());
    if n <= o || !owner.zone_of(name) {
        return None;
    }
    let prefix: Vec<&[u8]> = name.iter().take((n - o) as usize).collect();
    let mut out = Name::from_labels(prefix).ok()?;
    out.set_fqdn(false);
    out.append_domain(target).ok()
}

/// The CNAME a DNAME synthesizes for `name` (RFC 6672 3.1: the DNAME's TTL).
pub fn synthesized_cname(name: &Name, dname: &Record, target: &Name) -> Record {
    Record::from_rdata(
        name.clone(),
        dname.ttl,
        RData::CNAME(hickory_proto::rr::rdata::CNAME(target.clone())),
    )
}

/// A DNAME in the reply's answer above `name`, inside the zone, and the name it substitutes to.
fn dname_above(m: &Message, name: &Name, zone_key: &[u8]) -> Option<(Record, Name)> {
    m.answers.iter().find_map(|r| {
        if r.record_type() != RecordType::DNAME || !is_at_or_below(&key_of(&r.name), zone_key) {
            return None;
        }
        let target = dname_target(r)?;
        Some((r.clone(), substitute(name, &r.name, &target)?))
    })
}

/// Reads a reply from a server of `zone` to (name, qtype).
fn classify(m: &Message, zone: &Name, name: &Name, qtype: RecordType) -> Class {
    // Checked before anything is read from it (found by fuzzing): only a response to a QUERY
    // counts, and every record must be of class IN with RDATA that parsed as its type (hickory
    // reads an empty RDATA as an UPDATE placeholder, RFC 2136, which no answer may carry).
    if m.metadata.op_code != OpCode::Query || m.metadata.message_type != MessageType::Response {
        return Class::Lame(format!(
            "opcode {:?} is not a response to a query",
            m.metadata.op_code
        ));
    }
    if let Some(bad) = m
        .answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .find(|r| r.dns_class != DNSClass::IN || matches!(r.data, RData::Update0(_)))
    {
        return Class::Lame(format!(
            "malformed record {} {} {}",
            bad.name,
            bad.dns_class,
            bad.record_type()
        ));
    }
    let zone_key = key_of(zone);
    let inside = |r: &Record| is_at_or_below(&key_of(&r.name), &zone_key);
    let rc = m.metadata.response_code;
    if rc != ResponseCode::NoError && rc != ResponseCode::NXDomain {
        return Class::Lame(format!("{rc}"));
    }
    // Follow the chain inside the reply, keeping only records this server may speak for.
    let mut chain = Vec::new();
    let mut cur = name.clone();
    let mut next = None;
    let mut done = false;
    for _ in 0..MAX_CHAIN_IN_REPLY {
        let cur_key = key_of(&cur);
        if !is_at_or_below(&cur_key, &zone_key) {
            next = Some(cur.clone());
            break;
        }
        let at: Vec<&Record> = m
            .answers
            .iter()
            .filter(|r| inside(r) && key_of(&r.name) == cur_key)
            .collect();
        let wanted: Vec<Record> = at
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .map(|r| (*r).clone())
            .collect();
        if !wanted.is_empty() {
            chain.extend(wanted);
            done = true;
            break;
        }
        // RFC 6672 3.4: a DNAME above the name (in this server's zone) redirects it; the CNAME
        // is made from the DNAME here rather than taken from the reply (the server's synthesized
        // one is only a convenience for old resolvers), and both go to the client, as Unbound
        // answers.
        if let Some((dname, target)) = dname_above(m, &cur, &zone_key) {
            if !chain.contains(&dname) {
                chain.push(dname.clone());
            }
            chain.push(synthesized_cname(&cur, &dname, &target));
            cur = target;
            next = Some(cur.clone());
            continue;
        }
        match at.iter().find(|r| r.record_type() == RecordType::CNAME) {
            Some(c) => {
                let target = match &c.data {
                    RData::CNAME(t) => t.0.clone(),
                    _ => break,
                };
                chain.push((*c).clone());
                cur = target;
                next = Some(cur.clone());
            }
            None => break,
        }
    }
    let soa = m
        .authorities
        .iter()
        .find(|r| {
            r.record_type() == RecordType::SOA
                && inside(r)
                && is_at_or_below(&key_of(&cur), &key_of(&r.name))
        })
        .cloned();
    // RFC 6604 3: the RCODE speaks for the last name of the chain. When the chain leaves this
    // server's zone, the server cannot know that name, so its NXDOMAIN says nothing about it
    // (and must not be cached for it): the walk follows the alias and the target's own servers
    // decide, as Unbound does.
    if rc == ResponseCode::NXDomain && next.is_some() && !is_at_or_below(&key_of(&cur), &zone_key) {
        return Class::Answer {
            records: chain,
            next,
        };
    }
    if rc == ResponseCode::NXDomain {
        return Class::NxDomain {
            chain,
            last: cur,
            soa,
        };
    }
    if done {
        return Class::Answer {
            records: chain,
            next: None,
        };
    }
    if !chain.is_empty() {
        let cur_key = key_of(&cur);
        let target_inside = is_at_or_below(&cur_key, &zone_key);
        // The target may sit below a cut inside this zone: the server then adds the child's NS
        // (a referral for the target), and the walk continues there.
        let target_delegated = m.authorities.iter().any(|r| {
            let k = key_of(&r.name);
            r.record_type() == RecordType::NS
                && k != zone_key
                && is_at_or_below(&k, &zone_key)
                && is_at_or_below(&cur_key, &k)
        });
        if target_inside && soa.is_some() && !target_delegated {
            // The alias's target is this server's and it has nothing of the type (its SOA says so).
            return Class::NoData {
                chain,
                last: cur,
                soa,
            };
        }
        return Class::Answer {
            records: chain,
            next,
        };
    }
    if !m.answers.is_empty() && m.answers.iter().any(inside) {
        return Class::Lame("answer section does not answer the question".into());
    }
    // No answer: a referral strictly down toward the name, or NODATA. Some servers set AA on
    // referrals (old BIND, some load balancers); an AA reply with no answer, no SOA and the NS
    // of a zone below is still a referral, and following it is what Unbound does (taking it for
    // NODATA would answer an empty NOERROR for a name that exists). An AA reply whose NS are not
    // such a cut is an ordinary NODATA (servers add the apex NS to it).
    let referral_ns = m
        .authorities
        .iter()
        .find(|r| r.record_type() == RecordType::NS)
        .filter(|first| {
            if !m.metadata.authoritative {
                return true;
            }
            let k = key_of(&first.name);
            soa.is_none()
                && k != zone_key
                && is_at_or_below(&k, &zone_key)
                && is_at_or_below(&key_of(name), &k)
        });
    if let Some(first) = referral_ns {
        let child = first.name.clone();
        let child_key = key_of(&child);
        let below_zone = child_key != zone_key && is_at_or_below(&child_key, &zone_key);
        if !below_zone || !is_at_or_below(&key_of(name), &child_key) {
            return Class::Lame(format!(
                "referral to {child} does not lead down from {zone}"
            ));
        }
        let ns: Vec<Record> = m
            .authorities
            .iter()
            .filter(|r| r.record_type() == RecordType::NS && key_of(&r.name) == child_key)
            .cloned()
            .collect();
        let targets: Vec<Key> = ns
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(n) => Some(key_of(&n.0)),
                _ => None,
            })
            .collect();
        // Glue only for the named servers and only inside the referring zone (RFC 2181 5.4.1).
        let glue: Vec<Record> = m
            .additionals
            .iter()
            .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
            .filter(|r| {
                let k = key_of(&r.name);
                targets.contains(&k) && is_at_or_below(&k, &zone_key)
            })
            .cloned()
            .collect();
        return Class::Referral {
            zone: child,
            ns,
            glue,
        };
    }
    if m.metadata.authoritative || soa.is_some() {
        return Class::NoData {
            chain,
            last: cur,
            soa,
        };
    }
    Class::Lame("neither an answer nor a referral".into())
}

/// What the resolver knows of each server address (Unbound's infra cache): smoothed round-trip
/// times (RFC 6298's estimator) so the fastest known server is asked first and each gets a
/// retransmission timeout that fits it, and servers that stopped answering, skipped until a
/// probe (RFC 1035 7.2: "keep track of ... which servers are down").
#[derive(Debug)]
pub struct Infra {
    clock: std::sync::Arc<dyn super::Clock>,
    hosts: std::sync::Mutex<std::collections::HashMap<IpAddr, Host>>,
}

#[derive(Debug, Clone, Copy)]
struct Host {
    /// Smoothed RTT and its variation, in ms (RFC 6298 2).
    srtt: f64,
    rttvar: f64,
    /// Timeouts in a row, reset by any reply.
    timeouts: u32,
    /// Timeouts since first seen (for metrics).
    timeouts_total: u64,
    /// Skipped until then (clock time); a walk that finds it past asks it once (the probe) and
    /// pushes it on, so only one walk at a time probes a dead server.
    down_until: Option<Duration>,
}

/// RFC 6298 2.4 says 1 s; resolvers use less because DNS servers answer in one round trip and a
/// lost datagram is better retried soon (Unbound's floor is 50 ms, with exponential backoff).
const RTO_FLOOR_MS: f64 = 50.0;
/// The first timeout of a server never measured (see `Infra::timeout`).
const UNKNOWN_RTO_MS: f64 = 376.0;
/// Timeouts in a row after which a server counts as down (and attempts per server per zone in
/// one walk: 50, 100, 200 ms for a server 1 ms away, so a reply delayed by 100 ms still lands).
const DOWN_AFTER: u32 = 3;
/// How long a down server is skipped before one query probes it again (Unbound keeps such hosts
/// for infra-host-ttl, 900 s, but probes them sooner; a minute keeps a repaired server's outage
/// short).
pub const DOWN_FOR: Duration = Duration::from_secs(60);

impl Host {
    fn backoff(&self) -> f64 {
        f64::from(1u32 << self.timeouts.min(16))
    }
    fn rto(&self) -> f64 {
        (self.srtt + 4.0 * self.rttvar).max(RTO_FLOOR_MS) * self.backoff()
    }
    /// Servers are asked in this order, smallest first: the SRTT, or after timeouts the RTO they
    /// earned (a server that just timed out goes behind every one that answers).
    fn rank(&self) -> f64 {
        if self.timeouts == 0 {
            self.srtt
        } else {
            self.rto()
        }
    }
}

impl Default for Infra {
    fn default() -> Self {
        Infra::new(std::sync::Arc::new(super::SystemClock::default()))
    }
}

impl Infra {
    pub fn new(clock: std::sync::Arc<dyn super::Clock>) -> Infra {
        Infra {
            clock,
            hosts: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<IpAddr, Host>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reply came after `sample`: the server is up.
    pub fn rtt(&self, ip: IpAddr, sample: Duration) {
        let s = sample.as_secs_f64() * 1000.0;
        let mut m = self.lock();
        let e = m.entry(ip).or_insert(Host {
            srtt: s,
            rttvar: s / 2.0,
            timeouts: 0,
            timeouts_total: 0,
            down_until: None,
        });
        // RFC 6298 2.3: alpha 1/8, beta 1/4.
        e.rttvar = 0.75 * e.rttvar + 0.25 * (e.srtt - s).abs();
        e.srtt = 0.875 * e.srtt + 0.125 * s;
        e.timeouts = 0;
        e.down_until = None;
    }

    /// No reply within `waited`: back off (RFC 6298 5.5: the timer doubles per timeout until a
    /// reply), and after `DOWN_AFTER` in a row mark the server down for `DOWN_FOR`.
    pub fn timed_out(&self, ip: IpAddr, waited: Duration) {
        let w = waited.as_secs_f64() * 1000.0;
        let now = self.clock.now();
        let mut m = self.lock();
        let e = m.entry(ip).or_insert(Host {
            srtt: w,
            rttvar: 0.0,
            timeouts: 0,
            timeouts_total: 0,
            down_until: None,
        });
        e.timeouts = (e.timeouts + 1).min(16);
        e.timeouts_total += 1;
        if e.timeouts >= DOWN_AFTER {
            e.down_until = Some(now + DOWN_FOR);
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        // A refused connection is as bad as a timeout for choosing, but cost no time.
        let mut m = self.lock();
        let e = m.entry(ip).or_insert(Host {
            srtt: 1000.0,
            rttvar: 500.0,
            timeouts: 0,
            timeouts_total: 0,
            down_until: None,
        });
        e.srtt = e.srtt.max(1000.0);
    }

    /// Smoothed RTT in ms as the ordering sees it (backed off by timeouts), or None if never
    /// measured.
    pub fn srtt(&self, ip: IpAddr) -> Option<f64> {
        self.lock().get(&ip).map(Host::rank)
    }

    /// Whether the server is down now. A server whose mark has passed is up for this one caller,
    /// which probes it; the mark is pushed on so concurrent walks keep skipping it meanwhile.
    pub fn is_down(&self, ip: IpAddr) -> bool {
        let now = self.clock.now();
        let mut m = self.lock();
        match m.get_mut(&ip).and_then(|e| e.down_until.as_mut()) {
            Some(until) if *until > now => true,
            Some(until) => {
                *until = now + DOWN_FOR;
                false
            }
            None => false,
        }
    }

    /// Whether the server is marked down now (without claiming a probe).
    pub fn marked_down(&self, ip: IpAddr) -> bool {
        let now = self.clock.now();
        self.lock()
            .get(&ip)
            .and_then(|e| e.down_until)
            .is_some_and(|u| u > now)
    }

    /// How long to wait for this server: RTO = SRTT + 4 RTTVAR (RFC 6298 2.3), at least 50 ms,
    /// doubled per timeout since its last reply (5.5), at most `max`. An unmeasured server gets
    /// 376 ms (Unbound's UNKNOWN_SERVER_NICENESS: long enough for any server on Earth, short
    /// enough that a dead one costs little before the backoff).
    pub fn timeout(&self, ip: IpAddr, max: Duration) -> Duration {
        let rto = match self.lock().get(&ip) {
            Some(e) => e.rto(),
            None => UNKNOWN_RTO_MS,
        };
        Duration::from_secs_f64(rto / 1000.0).min(max)
    }

    /// Orders candidates: unmeasured first (in random order, so each gets measured), then by SRTT.
    pub fn order<T: Clone>(&self, c: &mut [(IpAddr, T)]) {
        let m = self.lock();
        let keyed: Vec<(f64, u32)> = c
            .iter()
            .map(|(ip, _)| (m.get(ip).map_or(-1.0, Host::rank), rand::random::<u32>()))
            .collect();
        drop(m);
        let mut idx: Vec<usize> = (0..c.len()).collect();
        idx.sort_by(|&a, &b| {
            keyed[a]
                .0
                .total_cmp(&keyed[b].0)
                .then(keyed[a].1.cmp(&keyed[b].1))
        });
        let sorted: Vec<(IpAddr, T)> = idx.iter().map(|&i| c[i].clone()).collect();
        c.clone_from_slice(&sorted);
    }

    /// (address, timeouts since first seen) of every server that ever timed out, for metrics.
    pub fn timeouts(&self) -> Vec<(IpAddr, u64)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.timeouts_total > 0)
            .map(|(ip, e)| (*ip, e.timeouts_total))
            .collect();
        v.sort();
        v
    }

    /// (address, SRTT ms, timeouts in a row, down) for every server known, for metrics.
    pub fn snapshot(&self) -> Vec<(IpAddr, f64, u32, bool)> {
        let now = self.clock.now();
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .map(|(ip, e)| {
                (
                    *ip,
                    e.rank(),
                    e.timeouts,
                    e.down_until.is_some_and(|u| u > now),
                )
            })
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faster_servers_first_unknown_explored() {
        let infra = Infra::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        for _ in 0..5 {
            infra.rtt(a, Duration::from_millis(80));
            infra.rtt(b, Duration::from_millis(5));
        }
        let mut v = vec![(a, 'a'), (b, 'b'), (c, 'c')];
        infra.order(&mut v);
        assert_eq!(
            v.iter().map(|x| x.1).collect::<String>(),
            "cba",
            "unmeasured c first, then b (5 ms), then a (80 ms)"
        );
        infra.timed_out(b, Duration::from_millis(1500));
        infra.rtt(c, Duration::from_millis(20));
        let mut v = vec![(a, 'a'), (b, 'b'), (c, 'c')];
        infra.order(&mut v);
        assert_eq!(v.iter().map(|x| x.1).collect::<String>(), "cab");
        assert!(infra.timeout(c, Duration::from_secs(2)) < Duration::from_secs(1));
        assert_eq!(
            infra.timeout("192.0.2.9".parse().unwrap(), Duration::from_millis(700)),
            Duration::from_millis(376),
            "unmeasured: Unbound's 376 ms"
        );
        assert_eq!(
            infra.timeout("192.0.2.9".parse().unwrap(), Duration::from_millis(200)),
            Duration::from_millis(200),
            "never more than timeout_ms"
        );
    }

    #[test]
    fn timeouts_back_off_then_mark_down_until_a_probe() {
        let clock = std::sync::Arc::new(super::super::ManualClock::default());
        let infra = Infra::new(clock.clone());
        let ip: IpAddr = "127.0.14.99".parse().unwrap();
        let max = Duration::from_secs(2);
        for _ in 0..8 {
            infra.rtt(ip, Duration::from_millis(1));
        }
        // RFC 6298 5.5: the floor, then doubled per timeout.
        let mut seen = Vec::new();
        for _ in 0..DOWN_AFTER {
            assert!(!infra.is_down(ip));
            let t = infra.timeout(ip, max);
            seen.push(t.as_millis());
            infra.timed_out(ip, t);
        }
        assert_eq!(seen, vec![50, 100, 200]);
        assert!(
            infra.is_down(ip),
            "down after {DOWN_AFTER} timeouts in a row"
        );
        clock.advance(DOWN_FOR + Duration::from_secs(1));
        assert!(!infra.is_down(ip), "past the mark: this caller probes");
        assert!(infra.is_down(ip), "and everyone else keeps skipping it");
        infra.rtt(ip, Duration::from_millis(1));
        assert!(!infra.is_down(ip), "a reply brings it back");
        assert_eq!(infra.timeout(ip, max), Duration::from_millis(50));
    }
}
