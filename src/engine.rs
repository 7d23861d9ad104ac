//! The answer engine: a pure function of (zones, GSLB tables, question, client, `Env`) ->
//! response sections, where `Env` carries everything else an answer may vary by (the health
//! view, the round-robin position and random source, a geo cache that only memoizes geo
//! lookups). No I/O, no clock, no global state, and no allocation for an answer of ordinary size
//! (the sections are inline; a DNAME's synthesized name and an explain trace allocate); every
//! transport (UDP, TCP, DoH and HTTPDNS) calls it, so they cannot disagree. At a name a GSLB rule answers, the rule's decision
//! (a CNAME to chase, or a selection of a prebuilt pool) takes the place of zone data; the chain
//! goes on from there.
//!
//! It follows RFC 1034 4.3.2 (the algorithm), RFC 4592 (wildcards), RFC 2308 (negative answers),
//! RFC 6604 (RCODE of a CNAME chain = that of its last name), RFC 8482 (minimal ANY), RFC 6672
//! (DNAME: the DNAME and a synthesized CNAME, YXDOMAIN when the new name is too long), and chases
//! CNAMEs across every zone the listener serves, keeping the whole chain in ANSWER.

use hickory_proto::rr::RecordType;
use smallvec::SmallVec;

use crate::geo::{GeoCache, GeoInfo};
use crate::gslb::explain::{GeoView, Hop, Trace};
use crate::gslb::{self, ClientAddr, Gslb, HealthView, Label, Select, Step};
use crate::zone::denial::Denial;
use crate::zone::name;
use crate::zone::{Node, RRset, Zone, ZoneSet, covers};

/// What the engine decided; `wire::rcode_of` maps it to an RCODE (the one place that does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    NoError,
    NxDomain,
    /// No zone served here contains the name (we are not an open resolver).
    Refused,
    /// RFC 6672 2.2: a DNAME substitution made a name longer than 255 octets.
    YxDomain,
    /// A secondary zone without data (not yet transferred, or expired: RFC 1035 4.3.5).
    ServFail,
}

/// The owner name of an RRset in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'z> {
    /// The question name as the client wrote it (encoded as a pointer to offset 12).
    Qname,
    /// A name from zone data, uncompressed wire form.
    Wire(&'z [u8]),
    /// A name a DNAME substitution made: `Answer::names[i]`.
    Synth(u8),
}

/// A CNAME synthesized from a DNAME has no RRset in the zone: its `RrsetRef` points here, and
/// its one RDATA is the name `RrsetRef::synth` names.
pub static SYNTH_CNAME: RRset = RRset {
    rtype: RecordType::CNAME,
    ttl: 0,
    rdatas: Vec::new(),
};

#[derive(Debug, Clone, Copy)]
pub struct RrsetRef<'z> {
    pub owner: Owner<'z>,
    pub rrset: &'z RRset,
    pub ttl: u32,
    /// Which of the RRset's records are sent (all of them, except for GSLB pools and rotation).
    pub select: Select,
    /// Some(i): a CNAME synthesized from a DNAME (RFC 6672 3.1) whose one RDATA is
    /// `Answer::names[i]`; `rrset` is then `SYNTH_CNAME`.
    pub synth: Option<u8>,
    /// Some(t): `rrset` is a node's RRSIG RRset and only the signatures covering type `t` are
    /// sent (RFC 4035 3.1.1: the RRSIGs of an RRset go with it).
    pub covered: Option<RecordType>,
}

impl<'z> RrsetRef<'z> {
    fn all(owner: Owner<'z>, rrset: &'z RRset, ttl: u32) -> Self {
        RrsetRef {
            owner,
            rrset,
            ttl,
            select: Select::All,
            synth: None,
            covered: None,
        }
    }
}

/// One section's RRsets: inline up to the size of the lab's longest chain (object -> vip ->
/// line -> pool), so an ordinary answer costs no allocation.
pub type Section<'z> = SmallVec<[RrsetRef<'z>; 4]>;

#[derive(Debug, Clone)]
pub struct Answer<'z> {
    pub outcome: Outcome,
    pub aa: bool,
    pub answer: Section<'z>,
    pub authority: Section<'z>,
    pub additional: Section<'z>,
    /// The first `required_additional` additional RRsets are in-domain glue of a referral: if they
    /// do not fit, the response must be truncated (RFC 9471 section 3).
    pub required_additional: usize,
    /// Set when a GSLB rule decided part of the answer: the ECS scope to return (RFC 7871 7.2.1),
    /// the most specific prefix any hop of the chain used.
    pub scope: Option<u8>,
    /// The last carrier line and region GSLB hops chose (labels for HTTPDNS and metrics).
    pub line: Option<&'z str>,
    pub region: Option<&'z gslb::Region>,
    /// The answer counter of the pool and family the last location hop chose (`Decision::hits`).
    pub hits: Option<&'z std::sync::atomic::AtomicU64>,
    /// Set when the last ANSWER RRset is a GSLB rule's data: that rule, and the scope and TTL cap
    /// of the hops before it. With the geo answer unchanged, only that hop can differ for another
    /// client of the network (health, rotation), so the UDP fast path re-decides just that hop.
    pub last_hop: Option<LastHop>,
    /// Names made by DNAME substitution (uncompressed wire form, case as synthesized), for
    /// `Owner::Synth` and `RrsetRef::synth`. Empty (no allocation) unless a DNAME applied.
    pub names: Vec<Box<[u8]>>,
}

#[derive(Debug, Clone, Copy)]
pub struct LastHop {
    pub rule: u32,
    pub scope: Option<u8>,
    pub ttl_cap: u32,
}

impl<'z> Answer<'z> {
    fn new(outcome: Outcome) -> Self {
        Answer {
            outcome,
            aa: false,
            answer: Section::new(),
            authority: Section::new(),
            additional: Section::new(),
            required_additional: 0,
            scope: None,
            line: None,
            region: None,
            hits: None,
            last_hop: None,
            names: Vec::new(),
        }
    }

    /// The wire form of an owner name of this answer (None: the question name).
    pub fn owner_wire<'a>(&'a self, owner: Owner<'a>) -> Option<&'a [u8]> {
        match owner {
            Owner::Qname => None,
            Owner::Wire(w) => Some(w),
            Owner::Synth(i) => self.names.get(i as usize).map(|n| &n[..]),
        }
    }
}

pub struct Question<'q> {
    /// Lowercase wire-form name.
    pub key: &'q [u8],
    /// The same name as the client wrote it (its case is kept in names a DNAME synthesizes).
    pub name: &'q [u8],
    pub qtype: RecordType,
    /// Who asks: the ECS subnet or the packet's source (RFC 7871 7.1.1), for GSLB names.
    pub client: ClientAddr,
    /// The query's EDNS DO bit (RFC 3225): answers from a zone holding DNSSEC data then carry
    /// RRSIGs and denial proofs (RFC 4035 3.1).
    pub dnssec_ok: bool,
}

/// What the engine reads besides the snapshot and the question: every input an answer may vary by
/// for the same question and client. The caller owns them (transports keep the live health view,
/// a round-robin counter and a random generator per thread), so the engine stays a function of
/// its arguments and tests can pin each one.
pub struct Env<'a> {
    pub health: &'a dyn HealthView,
    pub chance: gslb::Chance,
    /// A serving thread's geo cache (it memoizes `Geo::lookup`, so it does not change answers).
    pub geo_cache: Option<&'a mut GeoCache>,
}

impl<'a> Env<'a> {
    pub fn new(health: &'a dyn HealthView, chance: gslb::Chance) -> Env<'a> {
        Env {
            health,
            chance,
            geo_cache: None,
        }
    }
}

/// Result of looking one name up in one zone.
enum Lookup<'z> {
    Data(&'z RRset),
    Cname(&'z RRset),
    /// RFC 6672 3.2: a DNAME at an ancestor of the name; its owner's key is the last `usize`
    /// bytes of the name's key.
    Dname(&'z Node, &'z RRset, usize),
    NoData,
    NxDomain,
    Referral(&'z Node),
    /// A GSLB rule answers this name.
    Rule(u32),
}

/// Longest name in wire form (RFC 1035 3.1).
const MAX_NAME: usize = 255;

/// Answers `q` from `zones`, asking `gslb` at names a rule answers, with health, rotation and
/// weighted picks from `env`. `trace`, when given, receives every GSLB hop's decision and reasons
/// (for `explain`); without it nothing is formatted.
pub fn answer<'z>(
    zones: &'z ZoneSet,
    gslb: &'z Gslb,
    q: &Question<'_>,
    max_chain: usize,
    env: &mut Env<'_>,
    mut trace: Option<&mut Trace>,
) -> Answer<'z> {
    let Some(mut zone) = zones.find(q.key) else {
        return Answer::new(Outcome::Refused);
    };
    if zone.expired {
        return Answer::new(Outcome::ServFail);
    }
    // RFC 4035 3.1.4.1: DS lives in the parent; answer from it when we serve it too.
    if q.qtype == RecordType::DS
        && q.key == &*zone.origin_key
        && let Some(parent) = name::parent(q.key).and_then(|p| zones.find(p))
    {
        zone = parent;
    }

    let mut out = Answer::new(Outcome::NoError);
    out.aa = true;
    let mut owner = Owner::Qname;
    let mut key_buf = [0u8; MAX_NAME];
    let mut key_len = q.key.len().min(MAX_NAME);
    key_buf[..key_len].copy_from_slice(&q.key[..key_len]);
    // Names already visited in this chain, for loop detection (the question is the first).
    let mut seen: SmallVec<[&'z [u8]; 12]> = SmallVec::new();
    // CNAMEs in ANSWER so far (zone data and synthesized), against `max_chain`.
    let mut hops = 0usize;
    // Geo is looked up once, at the first GSLB name of the chain.
    let mut located: Option<GeoInfo<'_>> = None;
    // Records after a GSLB hop depend on the client: they live no longer than the shortest hop.
    let mut ttl_cap = u32::MAX;

    loop {
        let key = &key_buf[..key_len];
        // RFC 4035 3.1: DNSSEC records only for a DO query, and only from a zone that has them
        // (decided per zone: a chain may cross from a signed zone into an unsigned one).
        let dnssec = q.dnssec_ok && zone.dnssec.is_some();
        let (found, place) = lookup(zone, key, q.qtype);
        let (cname, from) = match found {
            Lookup::Data(set) => {
                let select = if zone.rotate
                    && set.rdatas.len() > 1
                    && matches!(set.rtype, RecordType::A | RecordType::AAAA)
                {
                    Select::Rotate((env.chance.round as usize % set.rdatas.len()) as u16)
                } else {
                    Select::All
                };
                let ttl = set.ttl.min(ttl_cap);
                out.answer.push(RrsetRef {
                    owner,
                    rrset: set,
                    ttl,
                    select,
                    synth: None,
                    covered: None,
                });
                if dnssec {
                    push_sigs(&mut out.answer, place.node, owner, set.rtype, ttl);
                    wildcard_proof(zone, key, &place, &mut out);
                }
                break;
            }
            Lookup::Cname(set) => (set, Some(place)),
            Lookup::Dname(node, dname, owner_len) => {
                // RFC 6672 3.1/3.2: the DNAME, then a CNAME from the name to the name with the
                // DNAME's owner replaced by its target, with the DNAME's TTL; then go on as for a
                // CNAME.
                let ttl = dname.ttl.min(ttl_cap);
                out.answer
                    .push(RrsetRef::all(Owner::Wire(node.owner()), dname, ttl));
                if dnssec {
                    // The synthesized CNAME has no signature: validators rebuild it from the
                    // signed DNAME (RFC 6672 5.3.1).
                    let o = Owner::Wire(node.owner());
                    push_sigs(&mut out.answer, Some(node), o, RecordType::DNAME, ttl);
                }
                let Some(target) = dname.rdatas.first().and_then(|r| r.target()) else {
                    break;
                };
                let current = out.owner_wire(owner).unwrap_or(q.name);
                let prefix = &current[..current.len().saturating_sub(owner_len)];
                if prefix.len() + target.len() > MAX_NAME {
                    // RFC 6672 2.2: no CNAME; the DNAME alone with YXDOMAIN.
                    out.outcome = Outcome::YxDomain;
                    break;
                }
                let mut synthesized = Vec::with_capacity(prefix.len() + target.len());
                synthesized.extend_from_slice(prefix);
                synthesized.extend_from_slice(target);
                let i = out.names.len() as u8;
                out.names.push(synthesized.into_boxed_slice());
                out.answer.push(RrsetRef {
                    owner,
                    rrset: &SYNTH_CNAME,
                    ttl,
                    select: Select::All,
                    synth: Some(i),
                    covered: None,
                });
                hops += 1;
                // QTYPE=CNAME: the synthesized CNAME is the answer, not followed (RFC 1034 4.3.2
                // step 3a follows a CNAME only when QTYPE is not CNAME), as NSD and Knot answer.
                if hops >= max_chain
                    || q.qtype == RecordType::CNAME
                    || out.names.len() > u8::MAX as usize
                {
                    break;
                }
                let next = &out.names[i as usize];
                key_len = lower(&mut key_buf, next).len();
                let Some(next_zone) = zones.find(&key_buf[..key_len]) else {
                    // The new name is elsewhere; the client's resolver follows it.
                    break;
                };
                if next_zone.expired {
                    return Answer::new(Outcome::ServFail);
                }
                zone = next_zone;
                owner = Owner::Synth(i);
                continue;
            }
            Lookup::Rule(rule) => {
                let info = located.get_or_insert_with(|| {
                    let info = match (q.client.ip, env.geo_cache.take()) {
                        (Some(ip), Some(cache)) => cache.lookup(&gslb.geo, ip),
                        (Some(ip), None) => gslb.geo.lookup(ip),
                        (None, _) => GeoInfo::default(),
                    };
                    if let Some(t) = trace.as_deref_mut() {
                        t.geo = Some(GeoView::new(&info, &gslb.geo));
                    }
                    info
                });
                let mut hop = trace
                    .is_some()
                    .then(|| Hop::new(name::display(key), gslb, rule));
                let d = gslb.decide(
                    rule as usize,
                    q.qtype,
                    &q.client,
                    info,
                    env.health,
                    &mut env.chance,
                    hop.as_mut(),
                );
                if let (Some(t), Some(h)) = (trace.as_deref_mut(), hop) {
                    t.hops.push(h);
                }
                let before = LastHop {
                    rule,
                    scope: out.scope,
                    ttl_cap,
                };
                out.scope = Some(out.scope.unwrap_or(0).max(d.scope));
                ttl_cap = ttl_cap.min(d.ttl);
                match d.label {
                    Label::Line(l) => out.line = Some(l),
                    Label::Region(r) => out.region = Some(r),
                    Label::None => {}
                }
                if d.hits.is_some() {
                    out.hits = d.hits;
                }
                // GSLB answers are not signed here (online signing of them is separate work):
                // as without DO.
                match d.step {
                    Step::Cname(set) => (set, None),
                    Step::Data(set, select) => {
                        out.answer.push(RrsetRef {
                            owner,
                            rrset: set,
                            ttl: set.ttl.min(ttl_cap),
                            select,
                            synth: None,
                            covered: None,
                        });
                        out.last_hop = Some(before);
                        break;
                    }
                    Step::NoData => {
                        out.authority.push(soa_of(zone, ttl_cap));
                        break;
                    }
                }
            }
            Lookup::NoData => {
                negative(zone, ttl_cap, dnssec, &mut out);
                if dnssec {
                    // RFC 4035 3.1.3.1/3.1.3.4, RFC 5155 7.2.3-7.2.5.
                    let what = match place.ce {
                        Some(ce) if place.wildcard => Denial::WildcardNoData { ce: &key[ce..] },
                        _ => Denial::NoData,
                    };
                    push_proof(zone, key, what, &mut out);
                }
                break;
            }
            Lookup::NxDomain => {
                // RFC 6604 section 3: the RCODE is that of the last name in the chain.
                out.outcome = Outcome::NxDomain;
                negative(zone, ttl_cap, dnssec, &mut out);
                if dnssec {
                    // RFC 4035 3.1.3.2, RFC 5155 7.2.2.
                    let ce = &key[place.ce.unwrap_or(0)..];
                    push_proof(zone, key, Denial::NxDomain { ce }, &mut out);
                }
                break;
            }
            Lookup::Referral(cut) => {
                // RFC 1034 4.3.2 step 3b. AA stays set when the chain before it was authoritative.
                if out.answer.is_empty() {
                    out.aa = false;
                }
                referral(zone, cut, dnssec, &mut out);
                break;
            }
        };
        let ttl = cname.ttl.min(ttl_cap);
        out.answer.push(RrsetRef::all(owner, cname, ttl));
        if dnssec && let Some(place) = from {
            push_sigs(&mut out.answer, place.node, owner, RecordType::CNAME, ttl);
            wildcard_proof(zone, key, &place, &mut out);
        }
        hops += 1;
        let Some(target) = cname.rdatas.first().and_then(|r| r.target()) else {
            break;
        };
        let looped = target.eq_ignore_ascii_case(q.key)
            || seen.iter().any(|s| s.eq_ignore_ascii_case(target));
        if looped || hops >= max_chain {
            break;
        }
        seen.push(target);
        key_len = lower(&mut key_buf, target).len();
        let Some(next_zone) = zones.find(&key_buf[..key_len]) else {
            // The target is elsewhere; the client's resolver follows it (RFC 1034 4.3.2).
            break;
        };
        // A chain into a secondary zone without data: what the target holds is unknown, so
        // the answer is SERVFAIL (RFC 1035 4.3.5), not the placeholder's NXDOMAIN.
        if next_zone.expired {
            return Answer::new(Outcome::ServFail);
        }
        zone = next_zone;
        owner = Owner::Wire(target);
    }
    additional_addresses(zones, q.dnssec_ok, &mut out);
    out
}

fn soa_of(zone: &Zone, ttl_cap: u32) -> RrsetRef<'_> {
    RrsetRef::all(
        Owner::Wire(zone.apex().owner()),
        zone.soa(),
        zone.negative_ttl.min(ttl_cap),
    )
}

/// The SOA of a negative answer (RFC 2308 3), with its RRSIGs when `dnssec` (RFC 4035 3.1.3).
fn negative<'z>(zone: &'z Zone, ttl_cap: u32, dnssec: bool, out: &mut Answer<'z>) {
    let soa = soa_of(zone, ttl_cap);
    out.authority.push(soa);
    if dnssec {
        let apex = Some(zone.apex());
        push_sigs(
            &mut out.authority,
            apex,
            soa.owner,
            RecordType::SOA,
            soa.ttl,
        );
    }
}

/// RFC 4035 3.1.1: the RRSIGs at `node` covering `rtype`, after the RRset they sign, with its
/// owner and TTL (a signature never outlives its RRset, RFC 4034 3).
fn push_sigs<'z>(
    section: &mut Section<'z>,
    node: Option<&'z Node>,
    owner: Owner<'z>,
    rtype: RecordType,
    ttl: u32,
) {
    let code = u16::from(rtype);
    if let Some(sigs) = node.and_then(|n| n.rrset(RecordType::RRSIG))
        && sigs.rdatas.iter().any(|r| covers(r, code))
    {
        section.push(RrsetRef {
            owner,
            rrset: sigs,
            ttl,
            select: Select::All,
            synth: None,
            covered: Some(rtype),
        });
    }
}

/// RFC 4035 3.1.3.3, RFC 5155 7.2.6: an answer a wildcard synthesized carries the proof that the
/// name asked for does not exist (its RRSIG's Labels field, as signed, tells the validator it was
/// expanded).
fn wildcard_proof<'z>(zone: &'z Zone, key: &[u8], place: &Place<'z>, out: &mut Answer<'z>) {
    if let (true, Some(ce)) = (place.wildcard, place.ce) {
        push_proof(zone, key, Denial::WildcardAnswer { ce: &key[ce..] }, out);
    }
}

/// The NSEC/NSEC3 records (and their RRSIGs) proving `what` about `key`, in AUTHORITY, each once.
fn push_proof<'z>(zone: &'z Zone, key: &[u8], what: Denial<'_>, out: &mut Answer<'z>) {
    let Some(index) = zone.dnssec.as_deref() else {
        return;
    };
    let proof = index.proof(&zone.nodes, &zone.nsec3, key, what);
    let Some(rtype) = proof.rtype else {
        return;
    };
    for node in proof.nodes {
        let Some(set) = node.rrset(rtype) else {
            continue;
        };
        if out.authority.iter().any(|r| std::ptr::eq(r.rrset, set)) {
            continue;
        }
        let owner = Owner::Wire(node.owner());
        out.authority.push(RrsetRef::all(owner, set, set.ttl));
        push_sigs(&mut out.authority, Some(node), owner, rtype, set.ttl);
    }
}

/// Where a lookup ended, for the DNSSEC records of the answer.
#[derive(Debug, Clone, Copy, Default)]
struct Place<'z> {
    /// The node whose data answers (the wildcard's when one was expanded), the delegation point
    /// of a referral, the name of a NODATA answer.
    node: Option<&'z Node>,
    /// The name does not exist: its closest encloser is the key's suffix from this offset.
    ce: Option<usize>,
    /// A wildcard answered (RFC 4592 3.3.1).
    wildcard: bool,
}

impl<'z> Place<'z> {
    fn at(node: &'z Node) -> Self {
        Place {
            node: Some(node),
            ..Place::default()
        }
    }
}

/// Offsets of each suffix of `key`: [0] is the whole name, the last is the root.
fn suffix_offsets(key: &[u8], out: &mut [u8; 128]) -> usize {
    let mut n = 0;
    let mut off = 0usize;
    while off < key.len() && n < out.len() {
        out[n] = off as u8;
        n += 1;
        let len = key[off] as usize;
        if len == 0 {
            break;
        }
        off += 1 + len;
    }
    n
}

/// RFC 1034 4.3.2 step 3 within one zone, with RFC 4592 wildcard synthesis.
fn lookup<'z>(zone: &'z Zone, key: &[u8], qtype: RecordType) -> (Lookup<'z>, Place<'z>) {
    let mut offs = [0u8; 128];
    let n = suffix_offsets(key, &mut offs);
    let zone_labels = name::label_count(&zone.origin_key);
    let below = (n - 1).saturating_sub(zone_labels); // labels of key below the apex
    // RFC 6672 3.2: a DNAME at the apex redirects every name below it.
    if zone.dname
        && below > 0
        && let Some(d) = zone.apex().rrset(RecordType::DNAME)
    {
        return (
            Lookup::Dname(zone.apex(), d, zone.origin_key.len()),
            Place::at(zone.apex()),
        );
    }
    // Walk down from the apex: the first missing name ends the walk at its closest encloser, the
    // first zone cut on the way is a referral (except DS at the cut itself, which is the parent's),
    // the first DNAME above the name redirects it (RFC 6672 3.2; a cut comes first, RFC 1034
    // 4.3.2 step 3b).
    for i in (0..below).rev() {
        let suffix = &key[offs[i] as usize..];
        match zone.node(suffix) {
            None => return wildcard(zone, key, offs[i + 1] as usize, qtype),
            Some(node) if node.cut && !(i == 0 && qtype == RecordType::DS) => {
                return (Lookup::Referral(node), Place::at(node));
            }
            Some(node) if i > 0 && zone.dname => {
                if let Some(d) = node.rrset(RecordType::DNAME) {
                    return (Lookup::Dname(node, d, suffix.len()), Place::at(node));
                }
            }
            Some(_) => {}
        }
    }
    match zone.node(key) {
        Some(node) => (at_node(node, qtype), Place::at(node)),
        None => (Lookup::NxDomain, Place::default()),
    }
}

fn at_node(node: &Node, qtype: RecordType) -> Lookup<'_> {
    if let Some(rule) = node.rule {
        return Lookup::Rule(rule);
    }
    if qtype == RecordType::ANY {
        // RFC 8482 section 4.2: answer with one RRset rather than all of them.
        return match node.rrsets.first() {
            Some(set) => Lookup::Data(set),
            None => Lookup::NoData,
        };
    }
    if let Some(set) = node.rrset(qtype) {
        return Lookup::Data(set);
    }
    match node.rrset(RecordType::CNAME) {
        Some(set) => Lookup::Cname(set),
        None => Lookup::NoData,
    }
}

/// RFC 4592 3.3.1: the source of synthesis is `*.<closest encloser>`, the closest encloser being
/// `key`'s suffix from offset `ce`; without one, NXDOMAIN.
fn wildcard<'z>(
    zone: &'z Zone,
    key: &[u8],
    ce: usize,
    qtype: RecordType,
) -> (Lookup<'z>, Place<'z>) {
    let encloser = &key[ce..];
    let missing = Place {
        node: None,
        ce: Some(ce),
        wildcard: false,
    };
    let mut buf = [0u8; MAX_NAME + 2];
    if encloser.len() + 2 > MAX_NAME {
        return (Lookup::NxDomain, missing);
    }
    buf[0] = 1;
    buf[1] = b'*';
    buf[2..2 + encloser.len()].copy_from_slice(encloser);
    match zone.node(&buf[..2 + encloser.len()]) {
        Some(node) => (
            at_node(node, qtype),
            Place {
                node: Some(node),
                ce: Some(ce),
                wildcard: true,
            },
        ),
        None => (Lookup::NxDomain, missing),
    }
}

/// NS of the cut in AUTHORITY and the addresses of its targets in ADDITIONAL: in-domain glue
/// first (required), then sibling glue elsewhere in the zone (optional).
/// With `dnssec`, the cut's DS RRset and its RRSIGs, or the proof that it has none (RFC 4035
/// 3.1.4, RFC 5155 7.2.7: under opt-out, the closest provable encloser's).
fn referral<'z>(zone: &'z Zone, cut: &'z Node, dnssec: bool, out: &mut Answer<'z>) {
    let Some(ns) = cut.rrset(RecordType::NS) else {
        return;
    };
    let owner = Owner::Wire(cut.owner());
    out.authority.push(RrsetRef::all(owner, ns, ns.ttl));
    if dnssec {
        match cut.rrset(RecordType::DS) {
            Some(ds) => {
                out.authority.push(RrsetRef::all(owner, ds, ds.ttl));
                push_sigs(&mut out.authority, Some(cut), owner, RecordType::DS, ds.ttl);
            }
            None => push_proof(zone, &cut.key, Denial::NoDs, out),
        }
    }
    let (mut cut_buf, mut tbuf) = ([0u8; MAX_NAME], [0u8; MAX_NAME]);
    let cut_key = lower(&mut cut_buf, cut.owner());
    let mut sibling = Section::new();
    for rdata in &ns.rdatas {
        let Some(target) = rdata.target() else {
            continue;
        };
        let tkey = lower(&mut tbuf, target);
        let Some(node) = zone.node(tkey) else {
            continue;
        };
        let dest = if name::is_at_or_below(tkey, cut_key) {
            &mut out.additional
        } else {
            &mut sibling
        };
        for t in [RecordType::A, RecordType::AAAA] {
            if let Some(set) = node.rrset(t) {
                dest.push(RrsetRef::all(Owner::Wire(target), set, set.ttl));
            }
        }
    }
    out.required_additional = out.additional.len();
    out.additional.extend(sibling);
}

/// RFC 1035 3.3.9/3.3.11, RFC 2782 and RFC 9460 4.2: addresses of NS, MX, SRV and SVCB/HTTPS
/// targets in ADDITIONAL, when
/// they are authoritative data of a zone served here.
/// With `dnssec_ok`, each with its RRSIGs from a signed zone (RFC 4035 3.1.1).
fn additional_addresses<'z>(zones: &'z ZoneSet, dnssec_ok: bool, out: &mut Answer<'z>) {
    let mut done: SmallVec<[&[u8]; 8]> = SmallVec::new();
    let mut tbuf = [0u8; MAX_NAME];
    for rr in &out.answer {
        // RFC 9460 4.2: the addresses of SVCB/HTTPS TargetNames too.
        if !matches!(
            rr.rrset.rtype,
            RecordType::NS
                | RecordType::MX
                | RecordType::SRV
                | RecordType::SVCB
                | RecordType::HTTPS
        ) {
            continue;
        }
        for rdata in &rr.rrset.rdatas {
            let Some(target) = rdata.additional_target() else {
                continue;
            };
            if done.iter().any(|d| d.eq_ignore_ascii_case(target)) {
                continue;
            }
            let tkey = lower(&mut tbuf, target);
            let Some(zone) = zones.find(tkey) else {
                continue;
            };
            let Some(node) = authoritative_node(zone, tkey) else {
                continue;
            };
            done.push(target);
            let signed = dnssec_ok && zone.dnssec.is_some();
            for t in [RecordType::A, RecordType::AAAA] {
                if let Some(set) = node.rrset(t) {
                    let o = Owner::Wire(target);
                    out.additional.push(RrsetRef::all(o, set, set.ttl));
                    if signed {
                        push_sigs(&mut out.additional, Some(node), o, t, set.ttl);
                    }
                }
            }
        }
    }
}

/// The lookup key of a wire name from zone data, in a caller's buffer (no allocation).
fn lower<'b>(buf: &'b mut [u8; MAX_NAME], wire: &[u8]) -> &'b [u8] {
    let n = wire.len().min(MAX_NAME);
    for (d, s) in buf[..n].iter_mut().zip(wire) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..n]
}

/// The node at `key` if it exists and no zone cut lies between it and the apex.
fn authoritative_node<'z>(zone: &'z Zone, key: &[u8]) -> Option<&'z Node> {
    let mut k = key;
    let node = zone.node(key)?;
    while k.len() > zone.origin_key.len() {
        if zone.node(k).is_some_and(|n| n.cut) {
            return None;
        }
        k = name::parent(k)?;
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use hickory_proto::rr::Name;

    use super::*;
    use crate::gslb::{AllUp, Chance};
    use crate::zone::name::key_of;
    use crate::zone::reader::TextFs;

    fn zones(files: &[(&str, &str, bool)]) -> ZoneSet {
        let mut set = ZoneSet::default();
        for (origin, text, rotate) in files {
            let name = Name::from_ascii(origin).unwrap();
            let mut z = Zone::load(&name, Path::new("t.zone"), &TextFs(text.to_string())).unwrap();
            z.rotate = *rotate;
            set.insert(Arc::new(z));
        }
        set
    }

    const COM: &str = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns h 1 1 1 1 60\n@ NS ns\nns A 192.0.2.1\n\
        www A 192.0.2.10\nwww A 192.0.2.11\nwww A 192.0.2.12\nold 120 DNAME example.net.\n\
        long DNAME lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.example.net.\n\
        c1 CNAME c2\nc2 CNAME c3\nc3 CNAME www\n";
    const NET: &str = "$ORIGIN example.net.\n$TTL 300\n@ SOA ns h 1 1 1 1 30\n@ NS ns\nns A 192.0.2.2\nhost A 192.0.2.20\n";

    fn ask<'z>(
        set: &'z ZoneSet,
        gslb: &'z Gslb,
        name: &str,
        qtype: RecordType,
        round: u32,
        max_chain: usize,
    ) -> Answer<'z> {
        let n = Name::from_ascii(name).unwrap();
        let key = key_of(&n);
        let wire = crate::zone::rdata::wire_name(&n);
        let q = Question {
            key: &key,
            name: &wire,
            qtype,
            client: ClientAddr {
                ip: None,
                prefix: 0,
            },
            dnssec_ok: false,
        };
        let mut env = Env::new(&AllUp, Chance::new(round, 1));
        // The answer borrows only the zones and the GSLB, not the question.
        answer(set, gslb, &q, max_chain, &mut env, None)
    }

    #[test]
    fn rfc6672_dname_synthesizes_a_cname_owned_by_the_question_and_chases_it() {
        let set = zones(&[("example.com.", COM, false), ("example.net.", NET, false)]);
        let gslb = Gslb::empty();
        let a = ask(&set, &gslb, "host.OLD.example.com.", RecordType::A, 0, 12);
        assert_eq!(a.outcome, Outcome::NoError);
        assert_eq!(a.answer.len(), 3);
        assert_eq!(a.answer[0].rrset.rtype, RecordType::DNAME);
        assert_eq!(a.answer[0].ttl, 120);
        // The CNAME: owned by the question, its target the substituted name with the
        // question's case, the DNAME's TTL.
        assert_eq!(a.answer[1].owner, Owner::Qname);
        assert_eq!(a.answer[1].synth, Some(0));
        assert_eq!(a.answer[1].ttl, 120);
        assert_eq!(&*a.names[0], &b"\x04host\x07example\x03net\x00"[..]);
        // The target's data, owned by the synthesized name.
        assert_eq!(a.answer[2].owner, Owner::Synth(0));
        assert_eq!(a.answer[2].rrset.rtype, RecordType::A);
        // The owner itself answers its own data.
        let a = ask(&set, &gslb, "old.example.com.", RecordType::DNAME, 0, 12);
        assert_eq!(a.answer.len(), 1);
        assert!(a.names.is_empty());
    }

    #[test]
    fn rfc6672_2_2_overflow_is_yxdomain_with_the_dname_alone() {
        let set = zones(&[("example.com.", COM, false), ("example.net.", NET, false)]);
        let gslb = Gslb::empty();
        let long_label = format!("{}.long.example.com.", "x".repeat(60));
        let a = ask(&set, &gslb, &long_label, RecordType::A, 0, 12);
        assert_eq!(a.outcome, Outcome::YxDomain);
        assert_eq!(a.answer.len(), 1);
        assert_eq!(a.answer[0].rrset.rtype, RecordType::DNAME);
    }

    #[test]
    fn the_chain_limit_counts_every_cname() {
        let set = zones(&[("example.com.", COM, false)]);
        let gslb = Gslb::empty();
        assert_eq!(
            ask(&set, &gslb, "c1.example.com.", RecordType::A, 0, 12)
                .answer
                .len(),
            4
        );
        // Two hops allowed: c1 -> c2 and c2 -> c3, then the chain stops.
        assert_eq!(
            ask(&set, &gslb, "c1.example.com.", RecordType::A, 0, 2)
                .answer
                .len(),
            2
        );
    }

    #[test]
    fn rotation_comes_from_the_inputs() {
        let set = zones(&[("example.com.", COM, true)]);
        let gslb = Gslb::empty();
        for round in 0..6u32 {
            let a = ask(&set, &gslb, "www.example.com.", RecordType::A, round, 12);
            assert_eq!(a.answer[0].select, Select::Rotate((round % 3) as u16));
        }
        // Not a rotating zone: all, in order.
        let set = zones(&[("example.com.", COM, false)]);
        let a = ask(&set, &gslb, "www.example.com.", RecordType::A, 5, 12);
        assert_eq!(a.answer[0].select, Select::All);
    }

    #[test]
    fn negative_answers_and_refusals() {
        let set = zones(&[("example.com.", COM, false)]);
        let gslb = Gslb::empty();
        let a = ask(&set, &gslb, "nope.example.com.", RecordType::A, 0, 12);
        assert_eq!(a.outcome, Outcome::NxDomain);
        assert_eq!(a.authority[0].rrset.rtype, RecordType::SOA);
        assert_eq!(a.authority[0].ttl, 60, "min(SOA TTL, MINIMUM), RFC 2308 3");
        let a = ask(&set, &gslb, "www.example.com.", RecordType::MX, 0, 12);
        assert_eq!((a.outcome, a.answer.len()), (Outcome::NoError, 0));
        let a = ask(&set, &gslb, "www.example.org.", RecordType::A, 0, 12);
        assert_eq!(a.outcome, Outcome::Refused);
        assert!(!a.aa);
    }
}
