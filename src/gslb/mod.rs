//! GSLB policy: the names whose answer depends on who asks (design.md section 1).
//!
//! Two kinds of rule, compiled at snapshot build time into tables the engine consults:
//! - a **carrier rule** (layer 1) answers a CNAME to the line of the client's carrier;
//! - a **location rule** (layer 2) answers up to N addresses of one region's pool, the region
//!   chosen by province/country mapping or by great-circle distance, failing over to the next
//!   region when too few of its addresses are healthy, weighted within the pool.
//!
//! Everything here is a pure function of its arguments: health comes in through a `HealthView`
//! (the live one reads the atomics `health` owns, outside the snapshot), the round-robin position
//! and the random source of weighted picks come in through `Chance`; no I/O, no global state, no
//! allocation per decision unless an explain trace is asked for. Records are
//! prebuilt `RRset`s in the snapshot; a decision returns a reference to one and a `Select` of its
//! records, so the encoder writes them without building anything.

pub mod explain;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::Deserialize;

use crate::geo::{self, Geo, GeoInfo};
use crate::health::{CheckConfig, Health, State, Target};
use crate::overrides::{Action, Active, Override, Overrides};
use crate::zone::{RRset, WireRdata};

use self::explain::{Hop, MemberView};

/// Most records one GSLB answer may carry (and the largest `answer` a rule may ask for).
pub const MAX_PICK: usize = 16;
/// Most addresses of one family in one pool (indices are u16, selection works on the stack).
pub const MAX_POOL: usize = 256;

// ---------------------------------------------------------------------------------------------
// Configuration (the `[gslb]` part of the config file)

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GslbConfig {
    /// Data centres: coordinates and the provinces/countries they serve.
    pub region: BTreeMap<String, RegionConfig>,
    /// Named health checks pools refer to.
    pub health: BTreeMap<String, CheckConfig>,
    /// Whether a checked member whose first check has not finished is answered.
    pub unknown: Unknown,
    /// Where check states are saved and read back at start (relative to the config file's
    /// folder); None: not saved, every restart starts them unknown.
    pub health_state: Option<std::path::PathBuf>,
    pub carrier: Vec<CarrierRuleConfig>,
    pub location: Vec<LocationRuleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Display name ("Beijing"); the table key is the id.
    #[serde(default)]
    pub name: Option<String>,
    /// [latitude, longitude] in degrees.
    pub location: [f64; 2],
    /// Province names (as the City database writes them) or `CC-CODE` subdivision codes.
    #[serde(default)]
    pub provinces: Vec<String>,
    /// ISO country codes this region serves when no province matched.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Regions to fail over to, in order; the others follow by distance.
    #[serde(default)]
    pub fallback: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierRuleConfig {
    pub name: String,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Carrier id -> CNAME target of that carrier's line.
    #[serde(default)]
    pub lines: BTreeMap<String, String>,
    /// The line of clients whose carrier is unknown or has no line here.
    pub default: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectBy {
    /// Province/country mapping first, distance when nothing maps.
    #[default]
    Mapping,
    /// Distance only.
    Nearest,
}

/// What a checked member whose state is unknown (no check finished since start, no saved state)
/// counts as.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unknown {
    /// Not answered until its first check passes: the members known up are answered, other
    /// regions take over by the usual failover, and when no member anywhere is known up the
    /// rule's `all_down` decides (by default: all of them, as before any check).
    #[default]
    Down,
    /// Answered until a check says otherwise (a dead member is then served for its first check).
    Up,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Spill {
    /// The first healthy region of the failover order takes every client of a failed one.
    #[default]
    Order,
    /// A failed region's clients are spread over every healthy region by weight (gdnsd #126).
    Spread,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AllDown {
    /// Answer the preferred region as if every address were up (a dead answer beats none).
    #[default]
    All,
    /// Answer the default region's addresses.
    Default,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationRuleConfig {
    pub name: String,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Addresses per answer.
    #[serde(default = "default_answer")]
    pub answer: usize,
    /// A region with fewer healthy addresses (of the family asked for) fails over.
    #[serde(default = "one")]
    pub min_healthy: usize,
    /// The TTL while the answer is degraded (a failover, or members of the answering pool down
    /// or drained), like gdnsd's DYNA TTL: clients come back sooner once it recovers. At most
    /// `ttl`; default: `ttl`.
    #[serde(default)]
    pub ttl_degraded: Option<u32>,
    /// Weights between regions: the clients who prefer region K are sent to the regions of
    /// `split.K` in proportion to their weights (`split.bj = { bj = 80, sh = 20 }`).
    #[serde(default)]
    pub split: BTreeMap<String, BTreeMap<String, u32>>,
    /// When the region chosen fails: `order` (default) takes the first healthy region of its
    /// failover order; `spread` spreads its clients over every healthy region, by the weights
    /// of the preferred region's `split` (1 for a region it does not list).
    #[serde(default)]
    pub fallback: Spill,
    #[serde(default)]
    pub select: SelectBy,
    /// The region of clients nothing is known about.
    pub default: String,
    #[serde(default)]
    pub all_down: AllDown,
    /// Name of a `[gslb.health.*]` check run against every address of every pool.
    #[serde(default)]
    pub health: Option<String>,
    /// Region id -> addresses (A and AAAA together).
    pub pools: BTreeMap<String, Vec<MemberConfig>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MemberConfig {
    Address(IpAddr),
    Full(MemberTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberTable {
    pub address: IpAddr,
    #[serde(default = "one_u32")]
    pub weight: u32,
    /// Check this endpoint instead of the address at the check's port (a management interface).
    #[serde(default)]
    pub check: Option<SocketAddr>,
}

fn default_ttl() -> u32 {
    30
}
fn default_answer() -> usize {
    6
}
fn one() -> usize {
    1
}
fn one_u32() -> u32 {
    1
}

// ---------------------------------------------------------------------------------------------
// Runtime tables

#[derive(Debug)]
pub struct Gslb {
    pub geo: Geo,
    pub regions: Vec<Region>,
    pub rules: Vec<Rule>,
    /// `[gslb] unknown`: how a member with no finished check counts.
    pub unknown: Unknown,
    /// `[gslb] health_state`, resolved against the config file's folder (the builder sets it).
    pub health_state: Option<std::path::PathBuf>,
    /// The server's runtime overrides (outside the snapshot, like health: the builder is given
    /// them with the health registry); the query path reads them into its `HealthView`.
    pub overrides: Arc<Overrides>,
}

#[derive(Debug)]
pub struct Region {
    pub id: String,
    pub name: String,
    pub location: (f64, f64),
    provinces: Vec<String>,
    countries: Vec<String>,
    fallback: Vec<usize>,
}

#[derive(Debug)]
pub struct Rule {
    /// Presentation form, for explain and logs.
    pub name: String,
    pub ttl: u32,
    pub kind: RuleKind,
}

impl Rule {
    /// The record types this rule can answer with (CNAME for a carrier rule; A and/or AAAA for
    /// a location rule, as its pools have them): what the name's NSEC type bitmap lists, so a
    /// signed denial never contradicts a dynamic answer (`dnssec::sign`).
    pub fn answer_types(&self) -> Vec<RecordType> {
        match &self.kind {
            RuleKind::Carrier(_) => vec![RecordType::CNAME],
            RuleKind::Location(l) => {
                let mut t = Vec::new();
                if l.pools.iter().any(|p| !p.a.rrset.rdatas.is_empty()) {
                    t.push(RecordType::A);
                }
                if l.pools.iter().any(|p| !p.aaaa.rrset.rdatas.is_empty()) {
                    t.push(RecordType::AAAA);
                }
                t
            }
        }
    }
}

#[derive(Debug)]
pub enum RuleKind {
    Carrier(CarrierRule),
    Location(LocationRule),
}

#[derive(Debug)]
pub struct CarrierRule {
    /// Indexed by `CarrierId`: the line of that carrier, if it has one.
    by_carrier: Vec<Option<usize>>,
    lines: Vec<Line>,
    default: usize,
}

#[derive(Debug)]
struct Line {
    /// Carrier id, or "default".
    label: String,
    cname: RRset,
    /// The CNAME's target as rules are compared (`overrides::norm_rule`).
    target: String,
}

#[derive(Debug)]
pub struct LocationRule {
    answer: usize,
    min_healthy: usize,
    /// `ttl_degraded` (equal to the rule's TTL when not configured).
    ttl_degraded: u32,
    spill: Spill,
    select: SelectBy,
    default: usize,
    all_down: AllDown,
    pools: Vec<Pool>,
}

#[derive(Debug)]
struct Pool {
    region: usize,
    /// Other pools of the rule to fail over to, in order.
    order: Vec<usize>,
    /// `split`: (pool, weight) this pool's clients are sent to; empty: all to this pool.
    split: Vec<(usize, u32)>,
    a: Family,
    aaaa: Family,
    /// This pool's answers by family (A, AAAA): the counter of `metrics::pool_counter`, resolved
    /// once here so an answer counts it with one atomic add.
    hits: Arc<[AtomicU64; 2]>,
}

#[derive(Debug)]
struct Family {
    rrset: RRset,
    members: Vec<Member>,
    equal_weights: bool,
}

#[derive(Debug)]
struct Member {
    addr: IpAddr,
    weight: u32,
    target: Option<Arc<Target>>,
}

impl Member {
    fn state(&self, health: &dyn HealthView) -> State {
        health.state(self.addr, self.target.as_deref())
    }

    fn healthy(&self, health: &dyn HealthView, unknown: Unknown) -> bool {
        match self.state(health) {
            State::Up => true,
            State::Down => false,
            State::Unknown => unknown == Unknown::Up,
        }
    }
}

/// Which records of an RRset go into the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    All,
    /// All of them, starting at this index and wrapping (round robin).
    Rotate(u16),
    /// These, in this order.
    Pick {
        idx: [u16; MAX_PICK],
        len: u8,
    },
}

impl Select {
    /// Indices into an RRset of `n` records, in answer order.
    pub fn indices(&self, n: usize) -> SelectIter {
        SelectIter {
            sel: *self,
            n,
            i: 0,
        }
    }

    pub fn count(&self, n: usize) -> usize {
        match self {
            Select::All | Select::Rotate(_) => n,
            Select::Pick { len, .. } => *len as usize,
        }
    }
}

pub struct SelectIter {
    sel: Select,
    n: usize,
    i: usize,
}

impl Iterator for SelectIter {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        let i = self.i;
        self.i += 1;
        match self.sel {
            Select::All => (i < self.n).then_some(i),
            Select::Rotate(start) => (i < self.n).then(|| (start as usize + i) % self.n),
            Select::Pick { idx, len } => (i < len as usize).then(|| idx[i] as usize),
        }
    }
}

/// Who the answer is for, as far as the GSLB is concerned.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr {
    /// None: the client asked not to be located (ECS with SOURCE PREFIX-LENGTH 0, RFC 7871 7.1.2).
    pub ip: Option<IpAddr>,
    /// Bits of `ip` that are the client's (the ECS source prefix after truncation, or the full
    /// address length); the scope of answers geo knows nothing about.
    pub prefix: u8,
}

/// What one GSLB node answers.
pub enum Step<'g> {
    /// Continue the chain with this CNAME.
    Cname(&'g RRset),
    /// Final records.
    Data(&'g RRset, Select),
    NoData,
}

pub struct Decision<'g> {
    pub step: Step<'g>,
    /// ECS scope of this decision (RFC 7871 7.2.1): the prefix of the geo network that decided.
    pub scope: u8,
    pub ttl: u32,
    /// The carrier line (carrier rules) or region id (location rules) chosen, for labels/metrics.
    pub label: Label<'g>,
    /// The answer counter of the pool that answered and the family asked (location rules).
    pub hits: Option<&'g AtomicU64>,
}

/// The index of a pool's answer counter for `qtype`: AAAA answers, and the rest (A, and the
/// NODATA of other types, counted with A as they were before families were counted).
fn family_ix(qtype: RecordType) -> usize {
    usize::from(qtype == RecordType::AAAA)
}

#[derive(Debug, Clone, Copy)]
pub enum Label<'g> {
    None,
    Line(&'g str),
    Region(&'g Region),
}

/// Why a location rule preferred a region (turned into text only for explain).
enum Why<'i> {
    NotLocated,
    Province(&'i str, usize),
    Country(&'i str, usize),
    Nearest(usize, f64, &'i str),
    Unknown,
}

impl Why<'_> {
    fn text(&self, g: &Gslb) -> String {
        match *self {
            Why::NotLocated => "client not located (ECS source prefix 0): default region".into(),
            Why::Province(p, r) => format!("province {p} is mapped to region {}", g.regions[r].id),
            Why::Country(c, r) => format!("country {c} is mapped to region {}", g.regions[r].id),
            Why::Nearest(r, d, whence) => {
                format!(
                    "nearest region {} ({d:.0} km from {whence})",
                    g.regions[r].id
                )
            }
            Why::Unknown => "no location known for the client: default region".into(),
        }
    }
}

/// Whether a pool member may be answered: the engine's one view of health. The live view reads
/// the health checks' atomics; tests pin states with their own view, and runtime overrides
/// (drains) are one more input behind the same call.
pub trait HealthView {
    /// `target` is the member's health check, None for a member that is not checked (`Up`).
    /// `Unknown` counts as the rule set's `unknown` policy says.
    fn state(&self, addr: IpAddr, target: Option<&Target>) -> State;

    /// The operators' overrides in force (drains, forced states, weights), above the checks;
    /// None: there are none.
    fn overrides(&self) -> Option<&Active> {
        None
    }
}

/// Health as the checks see it now, with the overrides in force.
pub struct LiveHealth<'a> {
    pub overrides: Option<&'a Active>,
}

impl LiveHealth<'_> {
    /// The checks alone.
    pub const CHECKS: LiveHealth<'static> = LiveHealth { overrides: None };
}

impl HealthView for LiveHealth<'_> {
    fn state(&self, _addr: IpAddr, target: Option<&Target>) -> State {
        target.map_or(State::Up, Target::state)
    }

    fn overrides(&self) -> Option<&Active> {
        self.overrides
    }
}

/// A member as one decision sees it: checks and overrides together.
struct Eff<'o> {
    healthy: bool,
    weight: u32,
    /// The override that decided, for explain.
    note: Option<&'o Override>,
    /// An operator took it out (drain, forced down, weight 0, its region drained): kept out even
    /// when `all_down` answers regardless of the checks.
    removed: bool,
}

impl Member {
    fn eff<'o>(
        &self,
        health: &'o dyn HealthView,
        unknown: Unknown,
        rule: &str,
        region: &str,
        region_ov: Option<&'o Override>,
    ) -> Eff<'o> {
        let checked = self.healthy(health, unknown);
        let mut e = Eff {
            healthy: checked,
            weight: self.weight,
            note: None,
            removed: false,
        };
        if let Some(r) = region_ov {
            e.note = Some(r);
            match r.action {
                Action::Up => e.healthy = true,
                // A region's weight acts between regions (`decide_from`); only 0 takes it out.
                Action::Weight if r.weight.unwrap_or(0) > 0 => {}
                _ => {
                    e.healthy = false;
                    e.removed = true;
                }
            }
        }
        if let Some(o) = health
            .overrides()
            .and_then(|a| a.member(rule, region, self.addr))
        {
            e.note = Some(o);
            match o.action {
                Action::Drain | Action::Down => {
                    e.healthy = false;
                    e.removed = true;
                }
                Action::Up => {
                    e.healthy = !e.removed;
                }
                Action::Weight => {
                    e.weight = o.weight.unwrap_or(self.weight);
                    if e.weight == 0 {
                        e.healthy = false;
                        e.removed = true;
                    }
                }
            }
        }
        e
    }
}

/// Every member up, whatever the checks say (benchmarks, and tests that pin the selection).
pub struct AllUp;

impl HealthView for AllUp {
    fn state(&self, _addr: IpAddr, _target: Option<&Target>) -> State {
        State::Up
    }
}

/// The per-answer inputs a decision may vary by besides geo and health: the round-robin position
/// (equal weights and `rotate` zones) and a random source (weighted picks). The caller owns them
/// (a transport keeps a counter and a generator per thread), so the same inputs give the same
/// answer.
#[derive(Debug, Clone, Copy)]
pub struct Chance {
    pub round: u32,
    pub rng: Rng,
}

impl Chance {
    pub fn new(round: u32, seed: u64) -> Chance {
        Chance {
            round,
            rng: Rng::new(seed),
        }
    }
}

/// xorshift64*: weighted picks need spread, not secrecy.
#[derive(Debug, Clone, Copy)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is mapped to a fixed non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A generator seeded from the clock and `salt` (e.g. a thread's address of a local).
    pub fn from_clock(salt: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng::new(t ^ salt.rotate_left(32))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Gslb {
    pub fn empty() -> Gslb {
        Gslb {
            geo: Geo::empty(),
            regions: Vec::new(),
            rules: Vec::new(),
            unknown: Unknown::default(),
            health_state: None,
            overrides: Arc::default(),
        }
    }

    /// What a zone transfer carries for rule `rule`'s name (a secondary cannot run the GSLB):
    /// the default line's CNAME, or every address of the default region's pool; with the rule's
    /// TTL.
    pub fn default_rrsets(&self, rule: usize) -> (u32, Vec<&RRset>) {
        let r = &self.rules[rule];
        let sets = match &r.kind {
            RuleKind::Carrier(c) => vec![&c.lines[c.default].cname],
            RuleKind::Location(l) => {
                let p = &l.pools[l.default];
                [&p.a.rrset, &p.aaaa.rrset]
                    .into_iter()
                    .filter(|s| !s.rdatas.is_empty())
                    .collect()
            }
        };
        (r.ttl, sets)
    }

    /// The index of the rule answering `name` (presentation form, case-insensitive).
    pub fn rule_index(&self, name: &str) -> Option<usize> {
        let want = name.trim_end_matches('.');
        self.rules
            .iter()
            .position(|r| r.name.trim_end_matches('.').eq_ignore_ascii_case(want))
    }

    /// Decides the answer of rule `rule` for a client, with members' health from `health` and
    /// rotation and weighted picks from `chance`; `trace` receives the why.
    #[allow(clippy::too_many_arguments)]
    pub fn decide<'g>(
        &'g self,
        rule: usize,
        qtype: RecordType,
        client: &ClientAddr,
        info: &GeoInfo<'_>,
        health: &dyn HealthView,
        chance: &mut Chance,
        trace: Option<&mut Hop>,
    ) -> Decision<'g> {
        let r = &self.rules[rule];
        match &r.kind {
            RuleKind::Carrier(c) => self.decide_carrier(r, c, qtype, client, info, health, trace),
            RuleKind::Location(l) => {
                let (preferred, why, scope) = self.prefer(l, client, info);
                let on = Inputs {
                    health,
                    chance: Cell::from_mut(chance),
                };
                self.decide_from(r, l, qtype, preferred, scope, Some(why), on, trace)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_carrier<'g>(
        &'g self,
        rule: &Rule,
        c: &'g CarrierRule,
        qtype: RecordType,
        client: &ClientAddr,
        info: &GeoInfo<'_>,
        health: &dyn HealthView,
        trace: Option<&mut Hop>,
    ) -> Decision<'g> {
        let mut line = info
            .carrier
            .and_then(|id| c.by_carrier.get(id.0 as usize).copied().flatten());
        // A drained line sends its carrier's clients to the default line.
        let drained = line.and_then(|i| {
            health
                .overrides()
                .and_then(|a| a.line(&rule.name, &c.lines[i].label))
        });
        if drained.is_some() {
            line = None;
        }
        // The scope is the widest network over which the carrier is the same (found or not), so a
        // resolver may reuse the answer there (RFC 7871 7.2.1).
        let (idx, scope) = match line {
            Some(i) => (i, info.carrier_scope),
            None => (c.default, info.carrier_scope),
        };
        let scope = if client.ip.is_none() { 0 } else { scope };
        let line_ref = &c.lines[idx];
        if let Some(h) = trace {
            h.line = Some(line_ref.label.clone());
            h.decision = format!(
                "line {} -> CNAME {}",
                line_ref.label,
                crate::zone::name::display(line_ref.cname.rdatas[0].target().unwrap_or(b"\0"))
            );
            h.reason = match (info.carrier, line) {
                (Some(id), Some(_)) => {
                    let via = info.carrier_via.unwrap_or("geo");
                    let net = info
                        .carrier_by
                        .map(|(_, n)| n.to_string())
                        .unwrap_or_default();
                    format!(
                        "carrier {} ({}) by {via}, network {net}",
                        self.geo.carrier(id).id,
                        self.geo.carrier(id).name
                    )
                }
                (Some(id), None) if drained.is_some() => format!(
                    "carrier {}: its line is {}: default line",
                    self.geo.carrier(id).id,
                    drained.map(Override::note).unwrap_or_default()
                ),
                (Some(id), None) => format!(
                    "carrier {} has no line here: default line",
                    self.geo.carrier(id).id
                ),
                (None, _) if client.ip.is_none() => {
                    "client not located (ECS source prefix 0): default line".to_string()
                }
                (None, _) => "carrier unknown: default line".to_string(),
            };
            h.scope = scope;
            h.ttl = rule.ttl;
        }
        let step = if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
            Step::Data(&line_ref.cname, Select::All)
        } else {
            Step::Cname(&line_ref.cname)
        };
        Decision {
            step,
            scope,
            ttl: rule.ttl,
            label: Label::Line(&line_ref.label),
            hits: None,
        }
    }

    /// The preferred pool for the client, why, and the scope of that reason. Nothing is
    /// formatted here: the reason becomes text only for a trace (`Why::text`).
    fn prefer<'i>(
        &self,
        l: &LocationRule,
        client: &ClientAddr,
        info: &GeoInfo<'i>,
    ) -> (usize, Why<'i>, u8) {
        let loc_scope = info.location_scope;
        if client.ip.is_none() {
            return (l.default, Why::NotLocated, 0);
        }
        if l.select == SelectBy::Mapping {
            if let Some(p) = info.province {
                // A region lists provinces by name or as "CC-CODE" (ISO 3166-2).
                let code = info.country.zip(info.province_code);
                let is_code = |x: &str| {
                    code.is_some_and(|(c, s)| {
                        x.len() == c.len() + 1 + s.len()
                            && x.starts_with(c)
                            && x.as_bytes()[c.len()] == b'-'
                            && x.ends_with(s)
                    })
                };
                for (i, pool) in l.pools.iter().enumerate() {
                    let region = &self.regions[pool.region];
                    if region
                        .provinces
                        .iter()
                        .any(|x| x.eq_ignore_ascii_case(p) || is_code(x))
                    {
                        return (i, Why::Province(p, pool.region), loc_scope);
                    }
                }
            }
            if let Some(cc) = info.country {
                for (i, pool) in l.pools.iter().enumerate() {
                    let region = &self.regions[pool.region];
                    if region.countries.iter().any(|x| x.eq_ignore_ascii_case(cc)) {
                        return (i, Why::Country(cc, pool.region), loc_scope);
                    }
                }
            }
        }
        if let Some(here) = info.location {
            let (i, d) = l
                .pools
                .iter()
                .enumerate()
                .map(|(i, p)| (i, geo::distance_km(here, self.regions[p.region].location)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("a location rule has at least one pool");
            let whence = info.city.or(info.province).unwrap_or("the client");
            return (i, Why::Nearest(l.pools[i].region, d, whence), loc_scope);
        }
        (l.default, Why::Unknown, loc_scope)
    }

    /// The region a location rule prefers for a client and the ECS scope of that preference:
    /// what geo alone decides (no health). None for a carrier rule.
    pub fn preferred(
        &self,
        rule: usize,
        client: &ClientAddr,
        info: &GeoInfo<'_>,
    ) -> Option<(usize, u8)> {
        match &self.rules[rule].kind {
            RuleKind::Location(l) => {
                let (preferred, _, scope) = self.prefer(l, client, info);
                Some((preferred, scope))
            }
            RuleKind::Carrier(_) => None,
        }
    }

    /// `decide` for a location rule whose preferred pool and scope are known (`preferred`): the
    /// health-aware rest of the decision, as `decide` makes it. None for a carrier rule.
    pub fn decide_preferred(
        &self,
        rule: usize,
        qtype: RecordType,
        preferred: usize,
        scope: u8,
        health: &dyn HealthView,
        chance: &mut Chance,
    ) -> Option<Decision<'_>> {
        let r = &self.rules[rule];
        match &r.kind {
            RuleKind::Location(l) if preferred < l.pools.len() => {
                let on = Inputs {
                    health,
                    chance: Cell::from_mut(chance),
                };
                Some(self.decide_from(r, l, qtype, preferred, scope, None, on, None))
            }
            _ => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_from<'g>(
        &'g self,
        rule: &Rule,
        l: &'g LocationRule,
        qtype: RecordType,
        preferred: usize,
        scope: u8,
        why: Option<Why<'_>>,
        on: Inputs<'_>,
        mut trace: Option<&mut Hop>,
    ) -> Decision<'g> {
        let nodata = Decision {
            step: Step::NoData,
            scope,
            ttl: rule.ttl,
            label: Label::Region(&self.regions[l.pools[preferred].region]),
            hits: Some(&l.pools[preferred].hits[family_ix(qtype)]),
        };
        let family = |p: &'g Pool| match qtype {
            RecordType::AAAA => &p.aaaa,
            _ => &p.a,
        };
        if let Some(h) = trace.as_deref_mut() {
            h.reason = why.map(|w| w.text(self)).unwrap_or_default();
            h.scope = scope;
            h.ttl = rule.ttl;
        }
        // RFC 8482: ANY gets one RRset; the IPv4 one is the useful one.
        if !matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) {
            if let Some(h) = trace {
                h.region = Some(self.regions[l.pools[preferred].region].id.clone());
                h.decision = format!("no {qtype} records at a location rule: NODATA");
            }
            return nodata;
        }
        let ov = on.health.overrides();
        let region_id = |p: usize| self.regions[l.pools[p].region].id.as_str();
        let region_ov = |p: usize| ov.and_then(|a| a.region(&rule.name, region_id(p)));
        let effs = |p: usize, fam: &'g Family| {
            let rov = region_ov(p);
            fam.members
                .iter()
                .map(move |m| m.eff(on.health, self.unknown, &rule.name, region_id(p), rov))
        };
        // Weights between regions (`split`): which region this answer of the preferred region's
        // clients goes to.
        let split = &l.pools[preferred].split;
        let draw = |weights: &mut dyn Iterator<Item = (usize, u32)>, total: u64| {
            let mut c = on.chance.get();
            let mut r = c.rng.next_u64() % total.max(1);
            on.chance.set(c);
            let mut last = None;
            for (p, w) in weights {
                if r < u64::from(w) {
                    return Some(p);
                }
                r -= u64::from(w);
                last = Some(p);
            }
            last
        };
        // An operator's region weight replaces the configured one wherever regions are weighed
        // against each other: in `split` and in `spread`.
        let region_weight = |p: usize, configured: u32| {
            region_ov(p)
                .filter(|o| o.action == Action::Weight)
                .map_or(configured, |o| o.weight.unwrap_or(configured))
        };
        let weighed = || split.iter().map(|&(q, w)| (q, region_weight(q, w)));
        let total: u64 = weighed().map(|(_, w)| u64::from(w)).sum();
        let first = if split.is_empty() || total == 0 {
            preferred
        } else {
            let to = draw(&mut weighed(), total).unwrap_or(preferred);
            if let Some(h) = trace.as_deref_mut() {
                // The operators' weights the draw used, whichever region it chose.
                for &(q, _) in split {
                    if let Some(o) = region_ov(q).filter(|o| o.action == Action::Weight) {
                        h.failover
                            .push(format!("split: region {}: {}", region_id(q), o.note()));
                    }
                }
            }
            if let Some(h) = trace.as_deref_mut()
                && to != preferred
            {
                h.failover.push(format!(
                    "split: region {}'s clients go to region {} for this answer",
                    region_id(preferred),
                    region_id(to)
                ));
            }
            to
        };
        let weight_of = |p: usize| {
            region_weight(
                p,
                split.iter().find(|&&(q, _)| q == p).map_or(1, |&(_, w)| w),
            )
        };
        let order = std::iter::once(first).chain(l.pools[first].order.iter().copied());
        let mut chosen = None;
        // `spread`: the healthy regions after the first, with their weights.
        let mut spread = [(0usize, 0u32); 32];
        let mut spread_n = 0;
        for p in order {
            let fam = family(&l.pools[p]);
            if fam.members.is_empty() {
                continue;
            }
            let healthy = effs(p, fam).filter(|e| e.healthy && e.weight > 0).count();
            let need = l.min_healthy.min(fam.members.len()).max(1);
            if healthy >= need {
                if p == first || l.spill == Spill::Order {
                    chosen = Some((p, true));
                    break;
                }
                if spread_n < spread.len() && weight_of(p) > 0 {
                    spread[spread_n] = (p, weight_of(p));
                    spread_n += 1;
                }
                continue;
            }
            if let Some(h) = trace.as_deref_mut() {
                h.failover.push(match region_ov(p).filter(|o| o.removes()) {
                    Some(o) => format!("region {}: {}", region_id(p), o.note()),
                    None => format!(
                        "region {}: {healthy} of {} addresses healthy, {need} needed",
                        region_id(p),
                        fam.members.len()
                    ),
                });
            }
        }
        if chosen.is_none() && spread_n > 0 {
            let total = spread[..spread_n].iter().map(|&(_, w)| u64::from(w)).sum();
            let p = draw(&mut spread[..spread_n].iter().copied(), total).unwrap_or(spread[0].0);
            if let Some(h) = trace.as_deref_mut() {
                h.failover.push(format!(
                    "fallback = spread: over {spread_n} healthy region(s), region {} for this answer",
                    region_id(p)
                ));
            }
            chosen = Some((p, true));
        }
        let (p, health_aware) = match chosen {
            Some(c) => c,
            None => {
                // Regardless of the checks, but not of the operator: a region (or every member)
                // taken out by an override stays out while another can answer.
                let usable = |p: usize| {
                    let fam = family(&l.pools[p]);
                    !fam.members.is_empty() && effs(p, fam).any(|e| !e.removed)
                };
                let fallback = match l.all_down {
                    AllDown::All => {
                        let mut order = std::iter::once(preferred)
                            .chain(l.pools[preferred].order.iter().copied());
                        order
                            .clone()
                            .find(|&p| usable(p))
                            .or_else(|| order.find(|&p| !family(&l.pools[p]).members.is_empty()))
                    }
                    AllDown::Default => {
                        Some(l.default).filter(|&p| !family(&l.pools[p]).members.is_empty())
                    }
                };
                let Some(p) = fallback else {
                    if let Some(h) = trace {
                        h.decision = format!("no {qtype} addresses in any region: NODATA");
                    }
                    return nodata;
                };
                if let Some(h) = trace.as_deref_mut() {
                    h.failover.push(format!(
                        "every region is below its healthy minimum: all_down = {}",
                        match l.all_down {
                            AllDown::All => "all (answering as if all were up)",
                            AllDown::Default => "default (the default region, unchecked)",
                        }
                    ));
                }
                (p, false)
            }
        };
        let fam = family(&l.pools[p]);
        // Eligibility and weight of each member, on the stack.
        let mut weights = [0u32; MAX_POOL];
        let mut reweighted = false;
        let mut any_kept = false;
        // Degraded: not the region the split chose, or not every member of it answerable.
        let mut degraded = p != first || !health_aware;
        for (i, e) in effs(p, fam).enumerate() {
            let m = &fam.members[i];
            reweighted |= e.weight != m.weight;
            any_kept |= !e.removed;
            degraded |= !e.healthy || e.weight == 0;
            weights[i] = if health_aware {
                if e.healthy { e.weight } else { 0 }
            } else if e.removed {
                0
            } else {
                e.weight.max(1)
            };
        }
        if !health_aware && !any_kept {
            // Everything here was taken out by hand and nothing else can answer: all of it.
            for (w, m) in weights.iter_mut().zip(&fam.members) {
                *w = m.weight.max(1);
            }
        }
        let select = pick(
            &weights[..fam.members.len()],
            fam.equal_weights && !reweighted,
            l.answer,
            on.chance,
        );
        let ttl = if degraded { l.ttl_degraded } else { rule.ttl };
        if let Some(h) = trace {
            h.ttl = ttl;
            if degraded && ttl < rule.ttl {
                h.failover.push(format!(
                    "degraded: ttl_degraded {ttl} instead of {}",
                    rule.ttl
                ));
            }
            let region = &self.regions[l.pools[p].region];
            h.region = Some(region.id.clone());
            h.decision = format!(
                "region {} ({}): {} of {} {} addresses",
                region.id,
                region.name,
                select.count(fam.members.len()),
                fam.members.len(),
                fam.rrset.rtype
            );
            let picked: Vec<usize> = select.indices(fam.members.len()).collect();
            h.pool = effs(p, fam)
                .zip(&fam.members)
                .enumerate()
                .map(|(i, (e, m))| MemberView {
                    address: m.addr,
                    weight: e.weight,
                    healthy: e.healthy && e.weight > 0,
                    state: m.target.as_ref().map(|_| m.state(on.health)),
                    check: m.target.as_ref().map(|t| t.status()),
                    overridden: e.note.map(Override::note),
                    picked: picked.contains(&i),
                })
                .collect();
        }
        Decision {
            step: Step::Data(&fam.rrset, select),
            scope,
            ttl,
            label: Label::Region(&self.regions[l.pools[p].region]),
            hits: Some(&l.pools[p].hits[family_ix(qtype)]),
        }
    }
}

/// The health view and the chance of one decision.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    health: &'a dyn HealthView,
    chance: &'a Cell<Chance>,
}

/// Up to `n` of the members with a weight above 0 (`weights`, one per member: 0 = not
/// eligible); equal weights rotate round robin from `chance.round`, unequal weights are sampled
/// without replacement in proportion to their weight with `chance.rng`.
fn pick(weights: &[u32], equal: bool, n: usize, chance: &Cell<Chance>) -> Select {
    let mut elig = [0u16; MAX_POOL];
    let mut k = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0 {
            elig[k] = i as u16;
            k += 1;
        }
    }
    let want = n.min(k).min(MAX_PICK);
    let mut idx = [0u16; MAX_PICK];
    let mut c = chance.get();
    if equal {
        let start = c.round as usize % k.max(1);
        for (j, slot) in idx.iter_mut().take(want).enumerate() {
            *slot = elig[(start + j) % k];
        }
    } else {
        let mut total: u64 = elig[..k].iter().map(|&i| weights[i as usize] as u64).sum();
        for slot in idx.iter_mut().take(want) {
            let mut r = c.rng.next_u64() % total.max(1);
            let mut j = 0;
            while j + 1 < k {
                let w = weights[elig[j] as usize] as u64;
                if r < w {
                    break;
                }
                r -= w;
                j += 1;
            }
            *slot = elig[j];
            total -= weights[elig[j] as usize] as u64;
            k -= 1;
            elig[j] = elig[k];
        }
    }
    chance.set(c);
    Select::Pick {
        idx,
        len: want as u8,
    }
}

/// One pool member as the admin API lists it.
pub struct MemberInfo<'g> {
    pub rule: &'g str,
    pub region: &'g str,
    pub address: IpAddr,
    pub weight: u32,
    pub target: Option<&'g Arc<Target>>,
}

impl Gslb {
    /// Every member of every location rule's pools (A, then AAAA), in rule and region order.
    pub fn members(&self) -> impl Iterator<Item = MemberInfo<'_>> {
        self.rules.iter().flat_map(move |r| {
            let pools = match &r.kind {
                RuleKind::Location(l) => &l.pools[..],
                RuleKind::Carrier(_) => &[],
            };
            pools.iter().flat_map(move |p| {
                let region = self.regions[p.region].id.as_str();
                p.a.members
                    .iter()
                    .chain(&p.aaaa.members)
                    .map(move |m| MemberInfo {
                        rule: &r.name,
                        region,
                        address: m.addr,
                        weight: m.weight,
                        target: m.target.as_ref(),
                    })
            })
        })
    }

    /// The regions with a pool in each location rule: (rule, region ids).
    pub fn pools(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.rules.iter().filter_map(move |r| match &r.kind {
            RuleKind::Location(l) => Some((
                r.name.as_str(),
                l.pools
                    .iter()
                    .map(|p| self.regions[p.region].id.as_str())
                    .collect(),
            )),
            RuleKind::Carrier(_) => None,
        })
    }

    /// The carrier lines of each carrier rule (carrier ids; "default" is not one).
    pub fn lines(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.rules.iter().filter_map(|r| match &r.kind {
            RuleKind::Carrier(c) => Some((
                r.name.as_str(),
                c.lines
                    .iter()
                    .filter(|l| l.label != "default")
                    .map(|l| l.label.as_str())
                    .collect(),
            )),
            RuleKind::Location(_) => None,
        })
    }
}

/// One carrier line for `/admin/traffic`: its rule, label, and where its CNAME leads.
pub struct LineInfo<'g> {
    pub rule: &'g str,
    pub line: &'g str,
    /// The target name as `overrides::norm_rule` writes it (a location rule's name, usually).
    pub target: &'g str,
}

impl Gslb {
    /// Every line of every carrier rule, the default line included.
    pub fn line_targets(&self) -> impl Iterator<Item = LineInfo<'_>> {
        self.rules.iter().flat_map(|r| {
            let lines = match &r.kind {
                RuleKind::Carrier(c) => &c.lines[..],
                RuleKind::Location(_) => &[],
            };
            lines.iter().map(move |l| LineInfo {
                rule: &r.name,
                line: &l.label,
                target: &l.target,
            })
        })
    }
}

fn same_rule(name: &str, want: Option<&str>) -> bool {
    want.is_none_or(|w| crate::overrides::norm_rule(name) == w)
}

/// What an override may name: the serving configuration's rules, regions, members and lines.
impl crate::overrides::Catalog for Gslb {
    fn rule_kind(&self, rule: &str) -> Option<&'static str> {
        self.rules
            .iter()
            .find(|r| same_rule(&r.name, Some(rule)))
            .map(|r| match r.kind {
                RuleKind::Location(_) => "location",
                RuleKind::Carrier(_) => "carrier",
            })
    }

    fn has_region(&self, rule: Option<&str>, region: &str) -> bool {
        self.pools()
            .any(|(r, regions)| same_rule(r, rule) && regions.contains(&region))
    }

    fn has_member(&self, rule: Option<&str>, region: Option<&str>, addr: IpAddr) -> bool {
        self.members().any(|m| {
            m.address == addr && same_rule(m.rule, rule) && region.is_none_or(|g| g == m.region)
        })
    }

    fn has_line(&self, rule: Option<&str>, line: &str) -> bool {
        self.lines()
            .any(|(r, lines)| same_rule(r, rule) && lines.contains(&line))
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation: config -> tables, rule names attached to zone nodes.

/// A rule's name and index, to be attached to the zone that contains it.
pub struct Attachment {
    pub name: Name,
    pub rule: usize,
}

fn fqdn(s: &str) -> Result<Name, String> {
    let mut n = Name::from_ascii(s).map_err(|e| format!("\"{s}\" is not a domain name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

fn cname_rrset(target: &Name, ttl: u32) -> RRset {
    RRset {
        rtype: RecordType::CNAME,
        ttl,
        rdatas: vec![
            WireRdata::from_rdata(&RData::CNAME(CNAME(target.clone())))
                .expect("CNAME rdata always converts"),
        ],
    }
}

impl Gslb {
    /// Compiles the policy. Health targets are registered in `health` (existing state is kept).
    /// Problems are returned all at once, each naming the rule it is about.
    pub fn build(
        cfg: &GslbConfig,
        geo: Geo,
        health: &Health,
    ) -> Result<(Gslb, Vec<Attachment>), Vec<String>> {
        let mut problems = Vec::new();
        let mut regions = Vec::new();
        let mut region_ix = HashMap::new();
        for (id, rc) in &cfg.region {
            let [lat, lon] = rc.location;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                problems.push(format!(
                    "[gslb.region.{id}]: location [{lat}, {lon}] is not [latitude, longitude]"
                ));
            }
            region_ix.insert(id.clone(), regions.len());
            regions.push(Region {
                id: id.clone(),
                name: rc.name.clone().unwrap_or_else(|| id.clone()),
                location: (lat, lon),
                provinces: rc.provinces.clone(),
                countries: rc.countries.clone(),
                fallback: Vec::new(),
            });
        }
        for (id, rc) in &cfg.region {
            for f in &rc.fallback {
                match region_ix.get(f) {
                    Some(&i) => regions[region_ix[id]].fallback.push(i),
                    None => problems.push(format!(
                        "[gslb.region.{id}]: fallback \"{f}\" is not a [gslb.region]"
                    )),
                }
            }
        }
        let mut checks = HashMap::new();
        for (name, cc) in &cfg.health {
            match cc.spec() {
                Ok(spec) => {
                    checks.insert(name.clone(), (spec, cc.port));
                }
                Err(e) => problems.push(format!("[gslb.health.{name}]: {e}")),
            }
        }

        let mut rules = Vec::new();
        let mut attachments = Vec::new();
        let mut names = HashMap::new();
        let mut claim = |name: &Name, what: &str, problems: &mut Vec<String>| -> bool {
            let key = name.to_lowercase().to_string();
            if let Some(prev) = names.insert(key.clone(), what.to_string()) {
                problems.push(format!("{what}: {key} is already answered by {prev}"));
                return false;
            }
            true
        };

        for rc in &cfg.carrier {
            let what = format!("[[gslb.carrier]] {}", rc.name);
            let name = match fqdn(&rc.name) {
                Ok(n) => n,
                Err(e) => {
                    problems.push(format!("{what}: {e}"));
                    continue;
                }
            };
            let mut lines = Vec::new();
            let mut by_carrier = vec![None; geo.carriers().len()];
            let mut ok = true;
            for (carrier, target) in &rc.lines {
                let Some(id) = geo.carrier_id(carrier) else {
                    problems.push(format!(
                        "{what}: line \"{carrier}\" is not a carrier defined under [geo.carrier]"
                    ));
                    ok = false;
                    continue;
                };
                match fqdn(target) {
                    Ok(t) => {
                        by_carrier[id.0 as usize] = Some(lines.len());
                        lines.push(Line {
                            label: carrier.clone(),
                            cname: cname_rrset(&t, rc.ttl),
                            target: crate::overrides::norm_rule(target),
                        });
                    }
                    Err(e) => {
                        problems.push(format!("{what}: line {carrier}: {e}"));
                        ok = false;
                    }
                }
            }
            let default = lines.len();
            match fqdn(&rc.default) {
                Ok(t) => lines.push(Line {
                    label: "default".into(),
                    cname: cname_rrset(&t, rc.ttl),
                    target: crate::overrides::norm_rule(&rc.default),
                }),
                Err(e) => {
                    problems.push(format!("{what}: default: {e}"));
                    ok = false;
                }
            }
            if !ok || !claim(&name, &what, &mut problems) {
                continue;
            }
            attachments.push(Attachment {
                name: name.clone(),
                rule: rules.len(),
            });
            rules.push(Rule {
                name: name.to_string(),
                ttl: rc.ttl,
                kind: RuleKind::Carrier(CarrierRule {
                    by_carrier,
                    lines,
                    default,
                }),
            });
        }

        for rc in &cfg.location {
            let what = format!("[[gslb.location]] {}", rc.name);
            let before = problems.len();
            let name = fqdn(&rc.name).map_err(|e| problems.push(format!("{what}: {e}")));
            if rc.answer == 0 || rc.answer > MAX_PICK {
                problems.push(format!(
                    "{what}: answer = {}: must be 1 to {MAX_PICK}",
                    rc.answer
                ));
            }
            if rc.pools.is_empty() {
                problems.push(format!("{what}: no pools"));
            }
            if let Some(t) = rc.ttl_degraded
                && t > rc.ttl
            {
                problems.push(format!(
                    "{what}: ttl_degraded = {t} is longer than ttl = {}",
                    rc.ttl
                ));
            }
            let check = match &rc.health {
                None => None,
                Some(h) => match checks.get(h) {
                    Some(c) => Some(c.clone()),
                    None => {
                        problems.push(format!(
                            "{what}: health \"{h}\" is not a [gslb.health.{h}] check"
                        ));
                        None
                    }
                },
            };
            let mut pools = Vec::new();
            for (rid, members) in &rc.pools {
                let Some(&region) = region_ix.get(rid) else {
                    problems.push(format!(
                        "{what}: pool \"{rid}\" names no [gslb.region.{rid}]"
                    ));
                    continue;
                };
                let mut a = Vec::new();
                let mut aaaa = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for m in members {
                    let (addr, weight, check_at) = match m {
                        MemberConfig::Address(a) => (*a, 1, None),
                        MemberConfig::Full(t) => (t.address, t.weight, t.check),
                    };
                    if weight == 0 || weight > 1_000_000 {
                        problems.push(format!(
                            "{what}: pool {rid}: {addr} weight {weight}: must be 1 to 1000000"
                        ));
                    }
                    if !seen.insert(addr) {
                        problems.push(format!("{what}: pool {rid}: {addr} is listed twice"));
                    }
                    let target = check.as_ref().map(|(spec, port)| {
                        let at = check_at.unwrap_or(SocketAddr::new(addr, *port));
                        health.target(spec, at)
                    });
                    if check.is_none() && check_at.is_some() {
                        problems.push(format!(
                            "{what}: pool {rid}: {addr} has a check address but the rule has no health check"
                        ));
                    }
                    let member = Member {
                        addr,
                        weight,
                        target,
                    };
                    match addr {
                        IpAddr::V4(_) => a.push(member),
                        IpAddr::V6(_) => aaaa.push(member),
                    }
                }
                if a.len() >= MAX_POOL || aaaa.len() >= MAX_POOL {
                    problems.push(format!(
                        "{what}: pool {rid}: more than {} addresses of one family",
                        MAX_POOL - 1
                    ));
                    continue;
                }
                if a.is_empty() && aaaa.is_empty() {
                    problems.push(format!("{what}: pool {rid} has no addresses"));
                }
                pools.push(Pool {
                    region,
                    order: Vec::new(),
                    split: Vec::new(),
                    a: family(RecordType::A, rc.ttl, a),
                    aaaa: family(RecordType::AAAA, rc.ttl, aaaa),
                    hits: crate::metrics::pool_counter(&crate::overrides::norm_rule(&rc.name), rid),
                });
            }
            let default = match pools
                .iter()
                .position(|p| regions[p.region].id == rc.default)
            {
                Some(d) => d,
                None => {
                    problems.push(format!(
                        "{what}: default \"{}\" is not one of its pools",
                        rc.default
                    ));
                    0
                }
            };
            for (from, to) in &rc.split {
                let pool_of = |id: &str| pools.iter().position(|p| regions[p.region].id == id);
                let Some(i) = pool_of(from) else {
                    problems.push(format!(
                        "{what}: split.{from}: \"{from}\" is not one of its pools"
                    ));
                    continue;
                };
                let mut split = Vec::new();
                for (id, &w) in to {
                    match pool_of(id) {
                        Some(j) => split.push((j, w)),
                        None => problems.push(format!(
                            "{what}: split.{from}.{id}: \"{id}\" is not one of its pools"
                        )),
                    }
                }
                if split.iter().map(|&(_, w)| u64::from(w)).sum::<u64>() == 0 {
                    problems.push(format!("{what}: split.{from}: the weights add up to 0"));
                }
                pools[i].split = split;
            }
            // Failover order: the region's own fallback list, then the rest by distance from it.
            for i in 0..pools.len() {
                let here = &regions[pools[i].region];
                let mut order: Vec<usize> = here
                    .fallback
                    .iter()
                    .filter_map(|r| pools.iter().position(|p| p.region == *r))
                    .filter(|&j| j != i)
                    .collect();
                let mut rest: Vec<usize> = (0..pools.len())
                    .filter(|j| *j != i && !order.contains(j))
                    .collect();
                rest.sort_by(|&x, &y| {
                    let dx = geo::distance_km(here.location, regions[pools[x].region].location);
                    let dy = geo::distance_km(here.location, regions[pools[y].region].location);
                    dx.total_cmp(&dy)
                });
                order.extend(rest);
                pools[i].order = order;
            }
            let Ok(name) = name else { continue };
            if problems.len() > before || !claim(&name, &what, &mut problems) {
                continue;
            }
            attachments.push(Attachment {
                name: name.clone(),
                rule: rules.len(),
            });
            rules.push(Rule {
                name: name.to_string(),
                ttl: rc.ttl,
                kind: RuleKind::Location(LocationRule {
                    answer: rc.answer,
                    min_healthy: rc.min_healthy,
                    ttl_degraded: rc.ttl_degraded.unwrap_or(rc.ttl).min(rc.ttl),
                    spill: rc.fallback,
                    select: rc.select,
                    default,
                    all_down: rc.all_down,
                    pools,
                }),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok((
            Gslb {
                geo,
                regions,
                rules,
                unknown: cfg.unknown,
                health_state: None,
                overrides: health.overrides().clone(),
            },
            attachments,
        ))
    }
}

fn family(rtype: RecordType, ttl: u32, members: Vec<Member>) -> Family {
    let rdatas = members
        .iter()
        .map(|m| {
            let rd = match m.addr {
                IpAddr::V4(a) => RData::A(A(a)),
                IpAddr::V6(a) => RData::AAAA(AAAA(a)),
            };
            WireRdata::from_rdata(&rd).expect("address rdata always converts")
        })
        .collect();
    let equal_weights = members.windows(2).all(|w| w[0].weight == w[1].weight);
    Family {
        rrset: RRset { rtype, ttl, rdatas },
        members,
        equal_weights,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eligible members' weights, as `decide_from` hands them to `pick`.
    fn members(weights: &[u32]) -> Vec<u32> {
        weights.to_vec()
    }

    #[test]
    fn equal_weights_rotate_over_the_whole_pool() {
        let m = members(&[1; 8]);
        let mut firsts = std::collections::HashSet::new();
        for round in 0..64 {
            let s = pick(&m, true, 3, &Cell::new(Chance::new(round, 1)));
            let v: Vec<usize> = s.indices(8).collect();
            assert_eq!(v.len(), 3);
            // A window of consecutive members, wrapping.
            assert_eq!(v[1], (v[0] + 1) % 8);
            assert_eq!(v[2], (v[0] + 2) % 8);
            firsts.insert(v[0]);
        }
        assert_eq!(firsts.len(), 8, "every member leads some answer");
    }

    #[test]
    fn weighted_picks_are_distinct_and_proportional() {
        let m = members(&[1, 3]);
        let mut first = [0usize; 2];
        let chance = Cell::new(Chance::new(0, 42));
        for _ in 0..20_000 {
            let v: Vec<usize> = pick(&m, false, 1, &chance).indices(2).collect();
            first[v[0]] += 1;
            let both: Vec<usize> = pick(&m, false, 2, &chance).indices(2).collect();
            assert!(both == vec![0, 1] || both == vec![1, 0]);
        }
        let share = first[1] as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.02, "weight 3 of 4 got {share}");
    }

    #[test]
    fn the_same_chance_gives_the_same_pick() {
        let m = members(&[1, 2, 3, 4, 5]);
        let a = pick(&m, false, 3, &Cell::new(Chance::new(7, 99)));
        let b = pick(&m, false, 3, &Cell::new(Chance::new(7, 99)));
        assert_eq!(a, b, "a decision is a function of its inputs");
        let e = pick(&m[..4], true, 2, &Cell::new(Chance::new(5, 1)));
        assert_eq!(
            e.indices(4).collect::<Vec<_>>(),
            vec![1, 2],
            "round 5 of 4 starts at 1"
        );
    }

    #[test]
    fn only_members_with_weight_are_eligible() {
        // Weight 0 is how `decide_from` marks a member down, drained or weighted to nothing.
        for round in 0..8 {
            let s = pick(&[0, 1, 0, 1], true, 4, &Cell::new(Chance::new(round, 1)));
            let mut v: Vec<usize> = s.indices(4).collect();
            v.sort();
            assert_eq!(v, vec![1, 3], "only the members with a weight");
        }
        let s = pick(&[1, 1, 1, 1], true, 4, &Cell::new(Chance::new(0, 1)));
        assert_eq!(s.count(4), 4);
    }

    #[test]
    fn rotate_select_wraps() {
        let v: Vec<usize> = Select::Rotate(2).indices(4).collect();
        assert_eq!(v, vec![2, 3, 0, 1]);
    }
}
