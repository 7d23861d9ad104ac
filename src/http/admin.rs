//! The runtime-control endpoints (`gslbd ctl` talks to these): `/admin/health` (every pool
//! member's state), `/admin/overrides` (GET lists, POST adds, DELETE removes), `/admin/traffic`
//! (answers by region, rule, family and line), `/admin/audit` (the newest audit events),
//! `/admin/explain` (a GSLB decision hop by hop, overrides included) and `/admin/status` (what
//! the status page `/ui` draws: regions with coordinates, rules, pools, members).
//!
//! Every one needs `Authorization: Bearer <[http] admin_token>`, and the token is accepted only
//! over TLS or from a loopback peer unless `[admin] token_over_plain_http = true`: a bearer token
//! sent in clear over a network can be replayed by anyone on the path (RFC 6750 5.3). Requests
//! through `[admin] socket` (a Unix socket, `http::serve_socket`) need no token: the socket
//! file's mode and owner decide who may connect (`Caller`).

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::gslb::ClientAddr;
use crate::gslb::explain::ClientSource;
use crate::http::client::Params;
use crate::http::{ApiError, AppState, Peer};
use crate::overrides::{Override, Request, norm_rule};

/// Operational answers describe this instant: nothing in between may keep them.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

fn answer(v: Value) -> Response {
    let mut resp = Json(v).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, NO_STORE);
    resp
}

fn done(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => answer(v),
        Err(e) => e.into_response(),
    }
}

/// A request that came in through `[admin] socket`: the socket file's permissions were the check.
/// Holds the requester's name for the audit trail ("socket:uid=N").
#[derive(Clone, Debug)]
pub struct ViaSocket(pub String);

/// The authorized requester of an admin request, by name for the audit trail: through the admin
/// socket (no token: whoever can open the socket file may control the server, as with
/// nsd-control's and knotc's sockets), or by `authorize`. A refusal is the handler's answer, so
/// no admin handler runs, nor parses its arguments, for an unauthorized caller.
pub struct Caller(pub String);

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Caller, ApiError> {
        if let Some(ViaSocket(who)) = parts.extensions.get::<ViaSocket>() {
            return Ok(Caller(who.clone()));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .map(|c| c.0.0)
            .ok_or_else(|| ApiError::internal("no peer address".to_string()))?;
        authorize(st, peer, &parts.headers).map(Caller)
    }
}

/// Checks the admin token and where it came from; the requester's name for the audit trail.
pub fn authorize(st: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Result<String, ApiError> {
    let snap = st.handle.snapshot();
    let http = snap.http.as_ref();
    let Some(token) = http.and_then(|h| h.admin_token.as_deref()) else {
        return Err(ApiError::forbidden("no admin_token configured"));
    };
    let ip = crate::http::client::unmap(peer.ip());
    let tls = http.is_some_and(|h| h.tls.is_some());
    if !tls && !ip.is_loopback() && !snap.admin.token_over_plain_http {
        return Err(ApiError::forbidden(
            "the admin token is accepted over TLS or from loopback only \
             ([admin] token_over_plain_http allows it)",
        ));
    }
    if !super::ops::bearer(headers)
        .is_some_and(|given| super::ops::same_secret(given, token.as_bytes()))
    {
        return Err(ApiError::unauthorized());
    }
    Ok(format!("api:{ip}"))
}

/// `GET /admin/health[?rule=NAME]`: every pool member with its check and override.
pub async fn health(State(st): State<AppState>, _: Caller, RawQuery(query): RawQuery) -> Response {
    done((|| {
        let p = Params::parse(query.as_deref());
        let rule = text(&p, "rule")?.map(norm_rule);
        let snap = st.handle.snapshot();
        let active = snap.gslb.overrides.active();
        let mut members = Vec::new();
        for m in snap.gslb.members() {
            if rule.as_deref().is_some_and(|r| norm_rule(m.rule) != r) {
                continue;
            }
            members.push(member_json(&m, active.as_deref()));
        }
        if let Some(r) = &rule
            && members.is_empty()
            && !snap.gslb.pools().any(|(name, _)| norm_rule(name) == *r)
        {
            return Err(ApiError::invalid_argument(format!(
                "rule {r} is not a location rule of the serving configuration"
            )));
        }
        Ok(json!({ "members": members }))
    })())
}

/// One pool member as `/admin/health` and `/admin/status` show it: its check and the override in
/// force on it (its own, else its region's); `out` when that override takes it out of answers.
fn member_json(m: &crate::gslb::MemberInfo, active: Option<&crate::overrides::Active>) -> Value {
    let ov = active.and_then(|a| {
        a.member(m.rule, m.region, m.address)
            .or_else(|| a.region(m.rule, m.region))
    });
    let mut v = json!({
        "rule": m.rule, "region": m.region, "address": m.address, "weight": m.weight,
        "checked": m.target.is_some(),
    });
    if let Some(t) = m.target {
        let s = t.status();
        v["state"] = json!(s.state);
        v["check"] = json!(s.kind);
        v["checks"] = json!(s.checks);
        v["last_error"] = json!(s.last_error);
        v["flaps"] = json!(s.changes);
        v["since_secs"] = json!(s.secs_since_change);
        v["restored"] = json!(s.restored);
    } else {
        v["state"] = json!("up");
    }
    if let Some(o) = ov {
        v["override"] =
            json!({ "id": o.id, "action": o.action, "note": o.note(), "target": o.kind() });
        if o.address.is_some() && o.action == crate::overrides::Action::Weight {
            v["weight"] = json!(o.weight);
        }
    }
    v["out"] = json!(ov.is_some_and(|o| o.removes()));
    v
}

/// `GET /admin/status`: what the status page draws, in one answer: the regions (coordinates,
/// answers since start, a state summed over their pools), every rule (a location rule's pools
/// and members, a carrier rule's lines and where they lead), the overrides in force.
pub async fn status(State(st): State<AppState>, _: Caller) -> Response {
    let snap = st.handle.snapshot();
    let active = snap.gslb.overrides.active();
    let answers = crate::metrics::region_answers();
    // Per region: members, those up (checks and overrides), those taken out by an override.
    let mut tally: std::collections::HashMap<&str, [usize; 3]> = Default::default();
    let mut rules: Vec<Value> = Vec::new();
    let mut by_rule: std::collections::BTreeMap<&str, Vec<(&str, Vec<Value>)>> = Default::default();
    let mut order: Vec<&str> = Vec::new();
    for m in snap.gslb.members() {
        let v = member_json(&m, active.as_deref());
        let t = tally.entry(m.region).or_default();
        t[0] += 1;
        let out = v["out"] == json!(true);
        let up = v["state"] == "up" && !out;
        t[1] += usize::from(up);
        t[2] += usize::from(out);
        let pools = by_rule.entry(m.rule).or_insert_with(|| {
            order.push(m.rule);
            Vec::new()
        });
        match pools.last_mut() {
            Some((region, list)) if *region == m.region => list.push(v),
            _ => pools.push((m.region, vec![v])),
        }
    }
    for name in order {
        let pools: Vec<Value> = by_rule[name]
            .iter()
            .map(|(region, members)| json!({ "region": region, "members": members }))
            .collect();
        rules.push(json!({ "name": name, "kind": "location", "pools": pools }));
    }
    let mut carriers: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
    for l in snap.gslb.line_targets() {
        carriers
            .entry(l.rule)
            .or_default()
            .push(json!({ "line": l.line, "target": l.target }));
    }
    for (name, lines) in carriers {
        rules.push(json!({ "name": name, "kind": "carrier", "lines": lines }));
    }
    let regions: Vec<Value> = snap
        .gslb
        .regions
        .iter()
        .map(|r| {
            let [members, up, out] = tally.get(r.id.as_str()).copied().unwrap_or_default();
            let state = if members == 0 {
                "none"
            } else if out == members {
                "drained"
            } else if up == 0 {
                "down"
            } else if up < members {
                "degraded"
            } else {
                "up"
            };
            json!({
                "id": r.id, "name": r.name, "lat": r.location.0, "lon": r.location.1,
                "answers": answers.iter().find(|(id, _)| *id == r.id).map_or(0, |x| x.1),
                "members": members, "up": up, "out": out, "state": state,
            })
        })
        .collect();
    let list = st.handle.health().overrides().list();
    answer(json!({
        "regions": regions,
        "rules": rules,
        "overrides": list.iter().map(view).collect::<Vec<_>>(),
    }))
}

fn text<'p>(p: &'p Params, key: &str) -> Result<Option<&'p str>, ApiError> {
    p.text(key)
        .map_err(|_| ApiError::invalid_argument(format!("{key} is not UTF-8")))
}

/// `GET /admin/overrides`: the overrides in force.
pub async fn overrides(State(st): State<AppState>, _: Caller) -> Response {
    done(Ok({
        let list = st.handle.health().overrides().list();
        json!({ "overrides": list.iter().map(view).collect::<Vec<_>>() })
    }))
}

fn view(o: &Override) -> Value {
    let mut v = json!(o);
    v["target"] = json!(o.target_text());
    v["note"] = json!(o.note());
    v
}

/// `POST /admin/overrides` with a JSON `Request`: adds one (replacing one with the same target).
pub async fn add_override(
    State(st): State<AppState>,
    Caller(who): Caller,
    body: Bytes,
) -> Response {
    done((|| {
        let req: Request = serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid_argument(format!("body: {e}")))?;
        let snap = st.handle.snapshot();
        let (o, replaced) = st
            .handle
            .health()
            .overrides()
            .add(req, &who, &*snap.gslb)
            .map_err(ApiError::invalid_argument)?;
        tracing::info!(id = o.id, who = %o.who, "override: {} {}", o.target_text(), o.note());
        Ok(json!({ "override": view(&o), "replaced": replaced.map(|r| r.id) }))
    })())
}

/// `DELETE /admin/overrides?id=N` or `?address=&region=&line=&rule=` (every override with
/// exactly that target): removes them; 404 when none matched.
pub async fn remove_override(
    State(st): State<AppState>,
    Caller(who): Caller,
    RawQuery(query): RawQuery,
) -> Response {
    done((|| {
        let p = Params::parse(query.as_deref());
        let id = text(&p, "id")?
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::invalid_argument(format!("id {v:?} is not a number")))
            })
            .transpose()?;
        let address = text(&p, "address")?
            .map(|v| {
                v.parse::<IpAddr>()
                    .map_err(|_| ApiError::invalid_ip(format!("address {v:?} is not an IP")))
            })
            .transpose()?;
        let region = text(&p, "region")?.map(str::to_string);
        let line = text(&p, "line")?.map(str::to_string);
        let rule = text(&p, "rule")?.map(norm_rule);
        if id.is_none() && address.is_none() && region.is_none() && line.is_none() {
            return Err(ApiError::missing("id, or address / region / line"));
        }
        let gone = st.handle.health().overrides().remove(&who, |o| match id {
            Some(id) => o.id == id,
            None => o.address == address && o.region == region && o.line == line && o.rule == rule,
        });
        if gone.is_empty() {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "NoSuchOverride",
                "no override matches",
            ));
        }
        for o in &gone {
            tracing::info!(id = o.id, %who, "override removed: {}", o.target_text());
        }
        Ok(json!({ "removed": gone.iter().map(view).collect::<Vec<_>>() }))
    })())
}

/// `GET /admin/traffic`: GSLB answers since start (process-wide counters, kept across reloads)
/// by region, by location rule and region with the address family, by family, and by carrier
/// line. A line's figure is the DNS answers of the location rule its CNAME leads to (direct
/// queries for that name included; None when it leads elsewhere): a line has no counter of its
/// own, so an answer costs one atomic add however many hops it took.
pub async fn traffic(State(st): State<AppState>, _: Caller) -> Response {
    let snap = st.handle.snapshot();
    let pools = crate::metrics::pool_answers();
    let rules: std::collections::BTreeSet<String> =
        snap.gslb.pools().map(|(name, _)| norm_rule(name)).collect();
    let mut by_rule = serde_json::Map::new();
    let mut families = [0u64; 2];
    for (rule, region, n) in pools.iter().filter(|(r, _, _)| rules.contains(r)) {
        families[0] += n[0];
        families[1] += n[1];
        let e = by_rule.entry(rule.clone()).or_insert_with(|| json!({}));
        e[region] = json!({ "ipv4": n[0], "ipv6": n[1] });
    }
    let all = crate::metrics::region_answers();
    let regions: serde_json::Map<String, Value> = snap
        .gslb
        .regions
        .iter()
        .map(|r| {
            let n = all.iter().find(|(id, _)| *id == r.id).map_or(0, |x| x.1);
            (r.id.clone(), json!(n))
        })
        .collect();
    let mut lines = serde_json::Map::new();
    for l in snap.gslb.line_targets() {
        let answers = rules.contains(l.target).then(|| {
            pools
                .iter()
                .filter(|(r, _, _)| r == l.target)
                .map(|(_, _, n)| n[0] + n[1])
                .sum::<u64>()
        });
        let e = lines.entry(norm_rule(l.rule)).or_insert_with(|| json!({}));
        e[l.line] = json!({ "target": l.target, "answers": answers });
    }
    answer(json!({
        "served": st.handle.served(),
        "regions": regions,
        "rules": by_rule,
        "families": { "ipv4": families[0], "ipv6": families[1] },
        "lines": lines,
    }))
}

/// `GET /admin/zones`: every zone served, with its serial and records, and for a secondary zone
/// its transfer state (last transfer, next refresh, expiry, counters, last error): what the
/// offline `gslbd zone status` cannot know.
pub async fn zones(State(st): State<AppState>, _: Caller) -> Response {
    let snap = st.handle.snapshot_full();
    let mut secondaries: std::collections::HashMap<String, crate::secondary::ZoneStatus> =
        crate::secondary::status(&snap)
            .into_iter()
            .map(|z| (z.zone.clone(), z))
            .collect();
    let zones: Vec<Value> = snap
        .zones
        .iter()
        .map(|z| {
            let origin = z.origin.to_string();
            let secondary = secondaries.remove(&origin);
            json!({
                "zone": origin,
                "kind": if secondary.is_some() { "secondary" } else { "primary" },
                "serial": z.serial,
                "records": z.records,
                "file": z.file.display().to_string(),
                "secondary": secondary,
            })
        })
        .collect();
    done(Ok(json!({ "zones": zones })))
}

/// `GET /admin/audit[?limit=N]`: the newest events (default 100, at most 1000), oldest first.
pub async fn audit(State(st): State<AppState>, _: Caller, RawQuery(query): RawQuery) -> Response {
    done((|| {
        let p = Params::parse(query.as_deref());
        let limit = match text(&p, "limit")? {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_argument(format!("limit {v:?} is not between 1 and 1000"))
                })?,
        };
        Ok(json!({ "events": st.handle.health().audit().recent(limit) }))
    })())
}

/// `GET /admin/explain?name=&client=[&type=]`: the decision for a client address, hop by hop,
/// with the overrides in force.
pub async fn explain(State(st): State<AppState>, _: Caller, RawQuery(query): RawQuery) -> Response {
    done((|| {
        let p = Params::parse(query.as_deref());
        let name = text(&p, "name")?.ok_or_else(|| ApiError::missing("name"))?;
        let client = text(&p, "client")?.ok_or_else(|| ApiError::missing("client"))?;
        let ip: IpAddr = client
            .parse()
            .map_err(|_| ApiError::invalid_ip(format!("client {client:?} is not an IP")))?;
        let qtype = match text(&p, "type")? {
            None => RecordType::A,
            Some(t) => crate::zone::rtypes::type_code(&t.to_ascii_uppercase())
                .map(RecordType::from)
                .ok_or_else(|| ApiError::invalid_argument(format!("type {t:?} is unknown")))?,
        };
        let snap = st.handle.snapshot();
        let http = crate::http::client::settings(&snap)?;
        let addr = ClientAddr {
            ip: Some(ip),
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        };
        let e = crate::lookup::explain(&snap, http.view, name, qtype, addr, ClientSource::Given)
            .map_err(ApiError::invalid_host)?;
        let text = crate::gslb::explain::render(&e);
        let mut v = json!(e);
        v["text"] = json!(text);
        Ok(v)
    })())
}
