//! Structured answers for the HTTP side (HTTPDNS JSON forms): the same `engine::answer` the DNS
//! path runs, turned into records with presentation-format data, the ECS scope, the TTL to cache
//! for, and the GSLB's line/region labels. No I/O.

use hickory_proto::rr::RecordType;
use serde::Serialize;

use crate::engine::{self, Question};
use crate::gslb::ClientAddr;
use crate::gslb::explain::{self, ClientSource, ClientView, Explain, Trace};
use crate::snapshot::Snapshot;
use crate::wire;
use crate::zone::{name, rdata};

/// One record of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rec {
    /// Owner, absolute, as the zone (or the question) writes it.
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    /// RDATA in presentation format (RFC 1035 5.1), e.g. "192.0.2.1" or "10 mail.example.com.".
    pub data: String,
}

impl Rec {
    /// Presentation form, "owner TTL IN TYPE data" (RFC 1035 5.1).
    pub fn line(&self) -> String {
        format!(
            "{} {} IN {} {}",
            self.name,
            self.ttl,
            crate::zone::reader::type_name(RecordType::from(self.rtype)),
            self.data
        )
    }
}

#[derive(Debug, Clone)]
pub struct Lookup {
    /// The DNS RCODE (0 NOERROR, 3 NXDOMAIN, 5 REFUSED).
    pub status: u16,
    pub answer: Vec<Rec>,
    pub authority: Vec<Rec>,
    /// Set when a GSLB rule decided: the ECS scope (RFC 7871) of the answer.
    pub scope: Option<u8>,
    /// How long the answer may be cached: the lowest TTL of the answer section, or of the
    /// authority section (the negative TTL, RFC 2308) when there is no answer.
    pub ttl: u32,
    pub line: Option<String>,
    pub region: Option<String>,
    pub explain: Option<Explain>,
}

impl Lookup {
    /// Addresses of `rtype` (A or AAAA) in the answer section, in answer order.
    pub fn addresses(&self, rtype: RecordType) -> Vec<String> {
        let code = u16::from(rtype);
        self.answer
            .iter()
            .filter(|r| r.rtype == code)
            .map(|r| r.data.clone())
            .collect()
    }
}

/// Answers `qname`/`qtype` for `client` from listener `listener`'s view of `snap`, with the trace
/// (`gslbd explain`, `GET /explain`). It lives here, not beside the trace types in
/// `gslb::explain`, so that the policy does not depend on the engine that calls it.
pub fn explain(
    snap: &Snapshot,
    listener: usize,
    qname: &str,
    qtype: RecordType,
    client: ClientAddr,
    source: ClientSource,
) -> Result<Explain, String> {
    let l = lookup(snap, listener, qname, qtype, client, source, true)?;
    Ok(l.explain.expect("lookup with explain fills it"))
}

/// Answers `qname`/`qtype` for `client` from listener `view` of `snap`. `Err` when `qname` is
/// not a domain name.
pub fn lookup(
    snap: &Snapshot,
    view: usize,
    qname: &str,
    qtype: RecordType,
    client: ClientAddr,
    source: ClientSource,
    with_explain: bool,
) -> Result<Lookup, String> {
    let n = explain::parse_name(qname)?;
    let key = name::key_of(&n);
    let wire = rdata::wire_name(&n);
    let mut trace = Trace::default();
    let overrides = snap.gslb.overrides.active();
    let live = crate::gslb::LiveHealth {
        overrides: overrides.as_deref(),
    };
    let answer = engine::answer(
        snap.view(view),
        &snap.gslb,
        &Question {
            key: &key,
            name: &wire,
            qtype,
            client,
            // HTTPDNS answers carry no DNSSEC records (its clients do not validate).
            dnssec_ok: false,
        },
        snap.limits.cname_chain,
        &mut crate::query::env(&live, None),
        with_explain.then_some(&mut trace),
    );
    let qname = n.to_string();
    let recs = |sets: &[engine::RrsetRef<'_>]| -> Vec<Rec> {
        let mut out = Vec::new();
        for rr in sets {
            let owner = match answer.owner_wire(rr.owner) {
                None => qname.clone(),
                Some(w) => name::display(w),
            };
            if let Some(i) = rr.synth {
                // A CNAME synthesized from a DNAME (RFC 6672 3.1).
                out.push(Rec {
                    name: owner,
                    rtype: u16::from(RecordType::CNAME),
                    ttl: rr.ttl,
                    data: answer
                        .names
                        .get(i as usize)
                        .map(|t| name::display(t))
                        .unwrap_or_default(),
                });
                continue;
            }
            for i in rr.select.indices(rr.rrset.rdatas.len()) {
                out.push(Rec {
                    name: owner.clone(),
                    rtype: u16::from(rr.rrset.rtype),
                    // An RRSIG has its own TTL, that of the RRset it covers (RFC 4034 3).
                    ttl: rr.rrset.rdatas[i].ttl().map_or(rr.ttl, |t| t.min(rr.ttl)),
                    data: rdata::presentation(rr.rrset.rtype, &rr.rrset.rdatas[i]),
                });
            }
        }
        out
    };
    let answer_recs = recs(&answer.answer);
    let authority = recs(&answer.authority);
    let ttl = answer_recs
        .iter()
        .map(|r| r.ttl)
        .min()
        .or_else(|| authority.iter().map(|r| r.ttl).min())
        .unwrap_or(0);
    Ok(Lookup {
        status: wire::rcode_of(answer.outcome),
        scope: answer.scope,
        ttl,
        line: answer.line.map(str::to_string),
        region: answer.region.map(|r| r.id.clone()),
        explain: with_explain.then(|| Explain {
            rcode: wire::rcode_name(answer.outcome).to_string(),
            answer: answer_recs.iter().map(Rec::line).collect(),
            authority: authority.iter().map(Rec::line).collect(),
            scope: answer.scope,
            ttl: answer_recs.iter().map(|r| r.ttl).min(),
            qname: qname.clone(),
            qtype: qtype.to_string(),
            client: ClientView {
                address: client.ip,
                prefix: client.prefix,
                source,
            },
            geo: trace.geo,
            hops: trace.hops,
        }),
        answer: answer_recs,
        authority,
    })
}
