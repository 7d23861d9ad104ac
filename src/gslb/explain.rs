//! "Explain this answer": every GSLB hop of a chain with the client address used, the geo result,
//! the rule, the region or line and why, pool health, the records, scope and TTL. `gslbd explain`
//! prints it; the HTTP side serves the same structure as JSON.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

use crate::geo::{Geo, GeoInfo};
use crate::gslb::{Gslb, RuleKind};
use crate::health::{State, TargetStatus};

/// What the engine records while answering, when asked to.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Trace {
    pub geo: Option<GeoView>,
    pub hops: Vec<Hop>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Hop {
    pub name: String,
    /// "carrier" or "location".
    pub rule: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub decision: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pool: Vec<MemberView>,
    pub scope: u8,
    pub ttl: u32,
}

impl Hop {
    pub fn new(name: String, gslb: &Gslb, rule: u32) -> Hop {
        let rule = match gslb.rules[rule as usize].kind {
            RuleKind::Carrier(_) => "carrier",
            RuleKind::Location(_) => "location",
        };
        Hop {
            name,
            rule,
            ..Hop::default()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub address: IpAddr,
    pub weight: u32,
    /// Whether the decision counted this member as up (`[gslb] unknown` decides for "unknown").
    pub healthy: bool,
    /// "up", "down" or "unknown" (no check finished yet); None when the rule checks nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<crate::health::State>,
    /// None: the rule has no health check (the address counts as up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<TargetStatus>,
    /// The operator's override that decided this member's state or weight ("drained by ...").
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub overridden: Option<String>,
    pub picked: bool,
}

/// The geo result, owned, for output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GeoView {
    pub carrier: Option<String>,
    pub carrier_name: Option<String>,
    pub carrier_via: Option<String>,
    pub carrier_network: Option<String>,
    pub asn: Option<u32>,
    pub organisation: Option<String>,
    pub country: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub location_network: Option<String>,
}

impl GeoView {
    pub fn new(info: &GeoInfo<'_>, geo: &Geo) -> GeoView {
        let s = |v: Option<&str>| v.map(str::to_string);
        GeoView {
            carrier: info.carrier.map(|c| geo.carrier(c).id.clone()),
            carrier_name: info.carrier.map(|c| geo.carrier(c).name.clone()),
            carrier_via: info.carrier_via.map(str::to_string),
            carrier_network: info.carrier_by.map(|(_, n)| n.to_string()),
            asn: info.asn,
            organisation: s(info.organisation),
            country: s(info.country),
            province: s(info.province),
            city: s(info.city),
            latitude: info.location.map(|l| l.0),
            longitude: info.location.map(|l| l.1),
            location_network: info.location_by.map(|(_, n)| n.to_string()),
        }
    }
}

/// Where the address the GSLB used came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSource {
    /// The EDNS Client Subnet option of the query (RFC 7871).
    Ecs,
    /// The packet's source address.
    Packet,
    /// Given explicitly (command line, HTTPDNS `ip=`).
    Given,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    pub address: Option<IpAddr>,
    pub prefix: u8,
    pub source: ClientSource,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explain {
    pub qname: String,
    pub qtype: String,
    pub client: ClientView,
    pub geo: Option<GeoView>,
    pub hops: Vec<Hop>,
    pub rcode: String,
    /// The answer section, one record a line in presentation format.
    pub answer: Vec<String>,
    pub authority: Vec<String>,
    /// ECS scope of the answer; None when no GSLB rule took part (scope 0).
    pub scope: Option<u8>,
    /// Lowest TTL in the answer section.
    pub ttl: Option<u32>,
}

/// A query name as users type it (trailing dot optional), made absolute.
pub fn parse_name(qname: &str) -> Result<hickory_proto::rr::Name, String> {
    let mut n = hickory_proto::rr::Name::from_ascii(qname)
        .map_err(|e| format!("\"{qname}\" is not a domain name: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// The human form `gslbd explain` prints.
pub fn render(e: &Explain) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "query     {} {}", e.qname, e.qtype);
    let whence = match e.client.source {
        ClientSource::Ecs => "EDNS Client Subnet",
        ClientSource::Packet => "packet source address",
        ClientSource::Given => "given",
    };
    match e.client.address {
        Some(a) => {
            let _ = writeln!(s, "client    {a}/{} ({whence})", e.client.prefix);
        }
        None => {
            let _ = writeln!(s, "client    none ({whence}, source prefix 0: not located)");
        }
    }
    if let Some(g) = &e.geo {
        let carrier = match (&g.carrier, &g.carrier_name) {
            (Some(c), Some(n)) => format!(
                "{c} ({n}) by {}, network {}",
                g.carrier_via.as_deref().unwrap_or("geo"),
                g.carrier_network.as_deref().unwrap_or("?")
            ),
            _ => "unknown".into(),
        };
        let _ = writeln!(s, "carrier   {carrier}");
        if let Some(asn) = g.asn {
            let _ = writeln!(
                s,
                "asn       AS{asn} {}",
                g.organisation.as_deref().unwrap_or("")
            );
        }
        let place: Vec<&str> = [&g.country, &g.province, &g.city]
            .iter()
            .filter_map(|v| v.as_deref())
            .collect();
        if place.is_empty() && g.latitude.is_none() {
            let _ = writeln!(s, "location  unknown");
        } else {
            let coords = g
                .latitude
                .zip(g.longitude)
                .map(|(a, b)| format!(" ({a:.4}, {b:.4})"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "location  {}{coords}, network {}",
                place.join(" / "),
                g.location_network.as_deref().unwrap_or("?")
            );
        }
    }
    for (i, h) in e.hops.iter().enumerate() {
        let _ = writeln!(s, "hop {}     {} ({} rule)", i + 1, h.name, h.rule);
        let _ = writeln!(s, "          {}", h.decision);
        let _ = writeln!(s, "          why: {}", h.reason);
        for f in &h.failover {
            let _ = writeln!(s, "          failover: {f}");
        }
        for m in &h.pool {
            let counted = if m.healthy {
                "answered"
            } else {
                "not answered"
            };
            let state = match (&m.check, m.state) {
                (None, _) | (_, None) => "unchecked".to_string(),
                (Some(_), Some(State::Up)) => "up".to_string(),
                (Some(_), Some(State::Unknown)) => {
                    format!("unknown (no check finished yet: {counted})")
                }
                (Some(c), Some(State::Down)) => format!(
                    "DOWN{}",
                    c.last_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
            };
            let state = match &m.check {
                Some(c) if c.restored => format!("{state} (saved state, not checked yet)"),
                _ => state,
            };
            let state = match &m.overridden {
                Some(o) => format!("{state}; {o} ({counted})"),
                None => state,
            };
            let _ = writeln!(
                s,
                "          {} {:<20} weight {:<3} {state}",
                if m.picked { "*" } else { " " },
                m.address,
                m.weight
            );
        }
        let _ = writeln!(s, "          scope /{}, ttl {}", h.scope, h.ttl);
    }
    if e.hops.is_empty() {
        let _ = writeln!(s, "gslb      no GSLB rule on this name's chain");
    }
    let _ = writeln!(s, "rcode     {}", e.rcode);
    for r in &e.answer {
        let _ = writeln!(s, "answer    {r}");
    }
    for r in &e.authority {
        let _ = writeln!(s, "authority {r}");
    }
    let _ = writeln!(
        s,
        "scope     /{}{}",
        e.scope.unwrap_or(0),
        e.ttl.map(|t| format!(", ttl {t}")).unwrap_or_default()
    );
    s
}
