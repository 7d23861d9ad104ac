//! `GET /trace?name=&type=[&resolver=]`: a resolver walk with every step, as JSON — what
//! `gslbd resolve --json` prints. It uses the named resolver listener's identity (source address)
//! and cache, so cache hits show up as steps. The requester must be inside that listener's `allow`
//! networks, exactly as for a DNS query to it (a trace makes upstream queries: no open resolver).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::http::client::{self, Params};
use crate::http::{ApiError, AppState, Peer};
use crate::resolver::{self, trace::Report};

pub async fn trace(
    State(st): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match answer(&st, peer, query.as_deref(), &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn answer(
    st: &AppState,
    peer: SocketAddr,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let snap = st.handle.snapshot_full();
    let http = client::settings(&snap)?;
    let origin = client::origin(http, peer, headers)?;
    st.limiter.client(origin, &http.rate_limit)?;
    let settings = snap.resolver.clone().ok_or_else(ApiError::no_resolver)?;

    let p = Params::parse(query);
    let (name, qname) = client::qname(&p)?;
    let qtype = crate::http::google::qtype(&p)?;
    let wanted = p
        .text("resolver")
        .map_err(|_| ApiError::invalid_argument("resolver is not UTF-8"))?;
    let listener = match wanted {
        None => settings.listeners.first(),
        Some(w) => settings.listeners.iter().find(|l| l.name == w),
    }
    .ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "no resolver listener named {}",
            wanted.unwrap_or("(none configured)")
        ))
    })?;
    if !listener.allows(origin) {
        return Err(ApiError::forbidden(format!(
            "{origin} is not in the allow list of resolver {}",
            listener.name
        )));
    }
    let resolvers = st.handle.resolvers();
    let instance = resolvers.instance(&listener.name, &settings);
    let env = resolver::Env {
        settings: &settings,
        listener,
        instance: &instance,
        port: resolvers.upstream_port(&settings),
    };
    let (res, steps) = resolver::resolve_traced(&env, &qname, qtype, Some(origin)).await;
    let report = Report::new(name, qtype, &listener.name, &res, steps);
    let mut resp = axum::Json(report).into_response();
    // A trace is a one-off diagnosis, never something to reuse.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
