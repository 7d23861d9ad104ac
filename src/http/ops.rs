//! The operations endpoints: `/healthz` (liveness plus what is loaded, "degraded" with the error
//! while the latest reload failed), `/metrics` (Prometheus text, reload status included),
//! `/admin/reload` (rebuild and swap the snapshot, bearer token; serialized with SIGHUP reloads by
//! `Handle::reload`) and `/openapi.json` (the API description, built from `http::ROUTES` so the
//! two cannot drift apart).

use std::sync::OnceLock;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::http::{ApiError, AppState, ROUTES};
use crate::snapshot::Snapshot;

/// Operational answers describe this instant: nothing in between may keep them.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
/// Prometheus text exposition format 0.0.4.
const EXPOSITION: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

fn records(snap: &Snapshot) -> usize {
    snap.zones.iter().map(|z| z.records).sum()
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::CACHE_CONTROL, NO_STORE);
    resp
}

/// `GET /healthz`: 200 whenever the process answers HTTP; the body says what it serves, and
/// `"status": "degraded"` with the problems when the latest reload failed (older data is serving
/// than the files on disk say: a load balancer should keep sending traffic, an operator should
/// look). The config generation tells which configuration is serving.
pub async fn healthz(State(st): State<AppState>) -> Response {
    let snap = st.handle.snapshot();
    let counts = st.handle.health().counts();
    let reload = st.handle.reload_status();
    let mut reload_json = json!({
        "generation": reload.generation,
        "last_success": crate::reload::unix_secs(reload.last_success).floor() as u64,
        "failures": reload.failures,
    });
    if let (Some(err), Some(at)) = (&reload.last_error, reload.last_failure) {
        reload_json["last_error"] = json!(err);
        reload_json["last_failure"] = json!(crate::reload::unix_secs(at).floor() as u64);
    }
    no_store(
        Json(json!({
            "status": if reload.degraded() { "degraded" } else { "ok" },
            "zones": snap.zones.len(),
            "records": records(&snap),
            "listeners": snap.listeners.len(),
            "health": {
                "targets": counts.up + counts.down + counts.unknown,
                "down": counts.down,
                "unknown": counts.unknown,
            },
            "reload": reload_json,
        }))
        .into_response(),
    )
}

/// `GET /metrics`: the process-wide counters plus gauges of the serving snapshot.
pub async fn metrics(State(st): State<AppState>) -> Response {
    let snap = st.handle.snapshot();
    let counts = st.handle.health().counts();
    let reload = st.handle.reload_status();
    let text = crate::metrics::render_with(&crate::metrics::Gauges {
        zones: snap.zones.len(),
        records: records(&snap),
        listeners: snap.listeners.len(),
        health_up: counts.up,
        health_down: counts.down,
        health_unknown: counts.unknown,
        config_generation: reload.generation,
        reload_last_success: crate::reload::unix_secs(reload.last_success),
        reload_failures: reload.failures,
        reload_degraded: reload.degraded(),
    }) + &st.handle.resolvers().render_metrics();
    let mut text = text;
    members(&snap, &st.handle, &mut text);
    // Incoming transfers per secondary zone (counters kept by each zone's `Control`).
    crate::secondary::render_metrics(&snap, &mut text);
    let mut resp = no_store(text.into_response());
    resp.headers_mut().insert(header::CONTENT_TYPE, EXPOSITION);
    resp
}

/// Per pool member its state, weight and override; the overrides in force by kind.
fn members(snap: &Snapshot, handle: &crate::server::Handle, text: &mut String) {
    let active = snap.gslb.overrides.active();
    let states: Vec<_> = snap
        .gslb
        .members()
        .map(|m| {
            let ov = active.as_ref().and_then(|a| {
                a.member(m.rule, m.region, m.address)
                    .or_else(|| a.region(m.rule, m.region))
            });
            let state = m
                .target
                .map_or(crate::health::State::Up, |t| t.status().state);
            let weight = match ov {
                Some(o) if o.removes() => 0,
                Some(o) if o.address.is_some() && o.action == crate::overrides::Action::Weight => {
                    o.weight.unwrap_or(m.weight)
                }
                _ => m.weight,
            };
            (m, state, weight, ov.map(|o| o.action.name()))
        })
        .collect();
    let gauges: Vec<crate::metrics::MemberGauge> = states
        .iter()
        .map(
            |(m, state, weight, overridden)| crate::metrics::MemberGauge {
                rule: m.rule,
                region: m.region,
                address: m.address,
                state: match state {
                    crate::health::State::Up => "up",
                    crate::health::State::Down => "down",
                    crate::health::State::Unknown => "unknown",
                },
                weight: *weight,
                overridden: *overridden,
            },
        )
        .collect();
    let list = handle.health().overrides().list();
    let kinds: Vec<(&str, &str)> = list.iter().map(|o| (o.kind(), o.action.name())).collect();
    crate::metrics::render_members(text, &gauges, &kinds);
}

/// Whether `given` equals `expected`, taking the same time wherever they first differ: the loop
/// runs over `expected` (the server's secret, which a client cannot vary) whatever `given` is.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        // black_box keeps the optimiser from turning the accumulation into an early exit.
        diff |= std::hint::black_box(usize::from(g ^ e));
    }
    diff == 0
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive,
/// RFC 9110 11.1).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// `POST /admin/reload`: rebuilds the snapshot from the configuration source (the same as
/// SIGHUP) and reports the outcome; a refused build leaves the previous data serving.
pub async fn reload(
    State(st): State<AppState>,
    crate::http::admin::Caller(who): crate::http::admin::Caller,
) -> Response {
    // `Handle::reload` serializes this with SIGHUP reloads and answers with a build that began
    // after this request arrived.
    let handle = st.handle.clone();
    // Building reads files and compiles zones: off the async workers, like SIGHUP.
    let outcome = match tokio::task::spawn_blocking(move || handle.reload_as(&who)).await {
        Ok(outcome) => outcome,
        Err(e) => return ApiError::internal(format!("reload task failed: {e}")).into_response(),
    };
    crate::metrics::record_admin_reload(outcome.is_ok());
    match outcome {
        Ok(snap) => {
            let (zones, records) = (snap.zones.len(), records(&snap));
            tracing::info!(zones, records, "reloaded (POST /admin/reload)");
            no_store(
                Json(json!({ "reloaded": true, "zones": zones, "records": records }))
                    .into_response(),
            )
        }
        Err(e) => {
            tracing::warn!(
                "reload (POST /admin/reload) refused, still serving the previous data:\n{e}"
            );
            // One line per entry, whatever a problem's text contains.
            let problems: Vec<&str> = e
                .problems
                .iter()
                .flat_map(|p| p.lines())
                .filter(|l| !l.trim().is_empty())
                .collect();
            let err = ApiError::reload_failed(e.problems.len());
            let body = json!({ "code": err.code, "message": err.message, "problems": problems });
            // Status, code, headers and the error counter come from ApiError; only the body grows.
            let mut resp = err.into_response();
            resp.headers_mut().remove(header::CONTENT_LENGTH);
            *resp.body_mut() = Body::from(body.to_string());
            resp
        }
    }
}

/// `GET /openapi.json`. The document is the same for the life of the process: built once.
pub async fn openapi() -> Response {
    static DOC: OnceLock<Result<String, String>> = OnceLock::new();
    match DOC.get_or_init(|| document().map(|d| d.to_string())) {
        Ok(text) => {
            let mut resp = text.clone().into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(why) => ApiError::internal(why.clone()).into_response(),
    }
}

/// One documented operation: the OpenAPI Operation Object of (method, path).
type Describe = fn() -> Value;

/// Every operation's description, keyed like `ROUTES`. `document` refuses a route missing here
/// (and an entry that is not a route), so a new route cannot go out undocumented.
const OPERATIONS: &[(&str, &str, Describe)] = &[
    ("GET", "/{account_id}/d", alibaba_d),
    ("GET", "/{account_id}/resolve", alibaba_resolve),
    ("GET", "/{account_id}/sign_d", alibaba_sign_d),
    ("GET", "/{account_id}/sign_resolve", alibaba_sign_resolve),
    ("GET", "/{account_id}/ss", alibaba_ss),
    ("GET", "/v2/d", alibaba_v2_d),
    ("GET", "/d", dnspod_d),
    ("GET", "/conf", dnspod_conf),
    ("GET", "/resolve", google_resolve),
    ("GET", "/dns-query", doh_get),
    ("POST", "/dns-query", doh_post),
    ("GET", "/trace", trace_op),
    ("GET", "/healthz", healthz_op),
    ("GET", "/metrics", metrics_op),
    ("POST", "/admin/reload", reload_op),
    ("GET", "/admin/health", admin_health_op),
    ("GET", "/admin/overrides", admin_overrides_op),
    ("POST", "/admin/overrides", admin_add_op),
    ("DELETE", "/admin/overrides", admin_remove_op),
    ("GET", "/admin/traffic", admin_traffic_op),
    ("GET", "/admin/audit", admin_audit_op),
    ("GET", "/admin/explain", admin_explain_op),
    ("GET", "/admin/status", admin_status_op),
    ("GET", "/admin/zones", admin_zones_op),
    ("GET", "/ui", ui_op),
    ("GET", "/ui/app.js", ui_js_op),
    ("GET", "/ui/app.css", ui_css_op),
    ("GET", "/openapi.json", openapi_op),
];

/// The OpenAPI 3.1 document of every route in `ROUTES`, or what does not match between `ROUTES`
/// and `OPERATIONS`.
pub fn document() -> Result<Value, String> {
    let mut problems = Vec::new();
    let mut paths = Map::new();
    for &(method, path) in ROUTES {
        let Some((_, _, describe)) = OPERATIONS
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
        else {
            problems.push(format!(
                "{method} {path} is routed but not described in http::ops::OPERATIONS"
            ));
            continue;
        };
        let item = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        item.as_object_mut()
            .expect("path items are objects")
            .insert(method.to_ascii_lowercase(), describe());
    }
    for &(method, path, _) in OPERATIONS {
        if !ROUTES.contains(&(method, path)) {
            problems.push(format!(
                "{method} {path} is described in http::ops::OPERATIONS but not routed"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gslbd HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "HTTPDNS (Alibaba-compatible and Google-JSON-compatible), RFC 8484 DNS \
                over HTTPS, and operations. Every answer comes from the same engine and snapshot \
                as DNS over UDP/TCP, GSLB decisions included.",
        },
        "tags": [
            { "name": "httpdns-alibaba", "description": "Alibaba Cloud HTTPDNS compatible API" },
            { "name": "httpdns-json", "description": "Google Public DNS JSON compatible API" },
            { "name": "httpdns-dnspod", "description": "Tencent Cloud DNSPod D+ compatible API" },
            { "name": "doh", "description": "DNS over HTTPS, RFC 8484" },
            { "name": "resolver", "description": "The iterative resolver, step by step" },
            { "name": "ops", "description": "Health, metrics, reload, this document" },
            { "name": "admin", "description": "Runtime control: overrides, pool health, \
                traffic, the audit trail (gslbd ctl)" },
        ],
        "paths": paths,
        "components": components(),
    }))
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn param_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

fn response_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/responses/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": json_content(schema_ref("Error")) })
}

/// Responses of the HTTPDNS and DoH operations: `answer` for 200, `errors` (status, which codes),
/// and the ones every request to them can get (the rate limit, the request-target bound).
fn api_responses(answer: Value, errors: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    m.insert("200".into(), answer);
    for (status, why) in errors {
        m.insert(status.to_string(), error_response(why));
    }
    m.insert("414".into(), response_ref("UriTooLong"));
    m.insert("429".into(), response_ref("LimitExceeded"));
    Value::Object(m)
}

fn alibaba_op(id: &str, summary: &str, description: &str, signed: bool, batch: bool) -> Value {
    let mut params = vec![
        param_ref("AccountId"),
        param_ref(if batch { "Hosts" } else { "Host" }),
        param_ref("ClientIp"),
        param_ref("QueryFamilies"),
    ];
    if signed {
        params.push(param_ref("SignExpiry"));
        params.push(param_ref("Signature"));
    }
    params.push(param_ref("Explain"));
    let answer = schema_ref(if batch {
        "AlibabaBatch"
    } else {
        "AlibabaAnswer"
    });
    let mut forbidden = String::from("InvalidAccount, UnsignedInterfaceDisabled");
    if signed {
        forbidden.push_str(", SignatureExpired, InvalidSignature, InvalidDuration");
    }
    forbidden.push_str("; Forbidden when `ip` is given and [http] allow_client_ip is off");
    let bad = if signed {
        "MissingArgument (host, t, s), InvalidHost, InvalidIP, InvalidArgument (query, t)"
    } else {
        "MissingArgument (host), InvalidHost, InvalidIP, InvalidArgument (query)"
    };
    let mut responses = api_responses(
        json!({ "description": "The answer", "content": json_content(answer) }),
        &[("400", bad), ("403", &forbidden)],
    );
    // The vendor's SDKs read `code`: these endpoints document its values.
    for status in ["400", "403"] {
        responses[status]["content"] = json_content(schema_ref("AlibabaError"));
    }
    json!({
        "tags": ["httpdns-alibaba"],
        "operationId": id,
        "summary": summary,
        "description": description,
        "parameters": params,
        "responses": responses,
    })
}

/// An operation whose parameters are query strings described inline (`(name, description,
/// required)`), plus `path` parameters by reference.
fn query_op(
    tag: &str,
    id: &str,
    summary: &str,
    description: &str,
    path: &[&str],
    query: &[(&str, &str, bool)],
    errors: &[(&str, &str)],
) -> Value {
    let mut params: Vec<Value> = path.iter().map(|p| param_ref(p)).collect();
    params.extend(query.iter().map(|(name, what, required)| {
        json!({ "name": name, "in": "query", "required": required, "description": what,
                "schema": { "type": "string" } })
    }));
    json!({
        "tags": [tag],
        "operationId": id,
        "summary": summary,
        "description": description,
        "parameters": params,
        "responses": api_responses(json!({ "description": "The answer" }), errors),
    })
}

fn alibaba_ss() -> Value {
    query_op(
        "httpdns-alibaba",
        "alibabaSs",
        "The service's addresses (what the SDKs ask first)",
        "`{service_status, service_ip, service_ipv6, service_ip_port, service_ipv6_port}`: \
         `[http] schedule`, else the HTTP listen addresses as bound.",
        &["AccountId"],
        &[],
        &[("403", "InvalidAccount")],
    )
}

fn alibaba_v2_d() -> Value {
    query_op(
        "httpdns-alibaba",
        "alibabaV2D",
        "Resolve as the current Alibaba SDKs ask (v2, optional AES and HMAC-SHA256)",
        "Answers `{code: \"success\", mode, data}`; `data` is the JSON text `{cip, answers: [{dn, \
         v4: {ips, ttl}, v6: {ips, ttl}}]}`, for m=1/2 base64 of IV + AES ciphertext.",
        &[],
        &[
            ("id", "account id", true),
            ("m", "0 plain, 1 AES-CBC, 2 AES-GCM", false),
            ("dn", "host(s), comma separated (m=0)", false),
            ("q", "4, 6 or 4,6", false),
            ("cip", "the client's address (m=0)", false),
            (
                "enc",
                "hex of IV + ciphertext of {dn, q, cip} (m=1, 2)",
                false,
            ),
            ("v", "protocol version (signed)", false),
            ("exp", "signature expiry, unix seconds", false),
            ("s", "hex HMAC-SHA256 of the sorted parameters", false),
        ],
        &[
            (
                "400",
                "MissingArgument, InvalidHost, InvalidIP, InvalidArgument",
            ),
            (
                "403",
                "InvalidAccount, UnsignedInterfaceDisabled, SignatureExpired, InvalidSignature, InvalidDuration",
            ),
        ],
    )
}

fn dnspod_d() -> Value {
    query_op(
        "httpdns-dnspod",
        "dnspodD",
        "Resolve as Tencent DNSPod D+ SDKs ask (encrypted or token form)",
        "Plain-text answer `ip;ip,ttl|clientip` (batch: `host.:ips,ttl` lines; type=addrs: \
         `v4s,ttl-v6s,ttl`), encrypted whole (hex) like the request with alg=aes|des.",
        &[],
        &[
            (
                "dn",
                "host(s), comma separated; hex ciphertext with alg",
                true,
            ),
            ("id", "account id (encrypted form)", false),
            ("alg", "aes or des", false),
            ("token", "account token (HTTPS form)", false),
            ("ip", "the client's address (encrypted with alg)", false),
            ("type", "aaaa or addrs", false),
            ("ttl", "1: add the TTL", false),
            ("clientip", "1: add the client address", false),
        ],
        &[
            ("400", "bad request (plain text)"),
            ("403", "unknown account, key or alg"),
        ],
    )
}

fn dnspod_conf() -> Value {
    query_op(
        "httpdns-dnspod",
        "dnspodConf",
        "SDK configuration",
        "The switches a DNSPod SDK reads at start (`{\"code\": 0, ...}`).",
        &[],
        &[("id", "account id", false)],
        &[],
    )
}

fn alibaba_d() -> Value {
    alibaba_op(
        "alibabaD",
        "Resolve one host (unsigned)",
        "The addresses of `host` for the client (`ip`, else the connection's address, or \
         X-Forwarded-For / X-Real-IP from a trusted proxy), GSLB decision included. With \
         `query=4,6` the TTL is the smaller of the two lookups'.",
        false,
        false,
    )
}

fn alibaba_resolve() -> Value {
    alibaba_op(
        "alibabaResolve",
        "Resolve several hosts (unsigned)",
        "Batch form of `/d`: one entry per host and per address family asked for (AAAA entries \
         carry their addresses in `ips`, with `type` 28).",
        false,
        true,
    )
}

fn alibaba_sign_d() -> Value {
    alibaba_op(
        "alibabaSignD",
        "Resolve one host (signed)",
        "`/d` for accounts with a secret: `s` = md5 hex of `host-secret-t`, valid until `t`.",
        true,
        false,
    )
}

fn alibaba_sign_resolve() -> Value {
    alibaba_op(
        "alibabaSignResolve",
        "Resolve several hosts (signed)",
        "`/resolve` for accounts with a secret: `s` = md5 hex of `host-secret-t`, `host` being \
         the comma-separated list exactly as sent.",
        true,
        true,
    )
}

fn google_resolve() -> Value {
    json!({
        "tags": ["httpdns-json"],
        "operationId": "jsonResolve",
        "summary": "DNS question as JSON (Google Public DNS compatible)",
        "parameters": [
            { "name": "name", "in": "query", "required": true,
              "description": "Domain name", "schema": { "type": "string" } },
            { "name": "type", "in": "query", "required": false,
              "description": "RR type as a number or mnemonic",
              "schema": { "type": "string", "default": "A" } },
            { "name": "edns_client_subnet", "in": "query", "required": false,
              "description": "The client's address or subnet (address/prefix); the answer is \
                  for it, cut to /24 or /56 like an ECS option",
              "schema": { "type": "string" } },
            { "name": "cd", "in": "query", "required": false,
              "description": "Checking Disabled, echoed in CD", "schema": param_flag() },
            { "name": "do", "in": "query", "required": false,
              "description": "DNSSEC OK (accepted; no zone here is signed)",
              "schema": param_flag() },
            param_ref("Explain"),
        ],
        "responses": api_responses(
            json!({ "description": "The DNS response (any RCODE, in Status) as JSON",
                    "content": json_content(schema_ref("JsonAnswer")) }),
            &[
                ("400", "MissingArgument (name), InvalidHost, InvalidIP, InvalidArgument (type, cd, do)"),
                ("403", "Forbidden: edns_client_subnet given and [http] allow_client_ip is off"),
            ],
        ),
    })
}

/// Yes/no query parameters: `1`/`true` = yes; absent, empty, `0`, `false` = no.
fn param_flag() -> Value {
    json!({ "type": "string", "enum": ["0", "1", "false", "true"], "default": "0" })
}

fn dns_message() -> Value {
    json!({ "application/dns-message": {
        "schema": { "type": "string", "contentMediaType": "application/dns-message" },
    } })
}

fn dns_message_response() -> Value {
    json!({
        "description": "The DNS response (any RCODE, RFC 8484 4.2.1)",
        "content": dns_message(),
    })
}

fn doh_get() -> Value {
    json!({
        "tags": ["doh"],
        "operationId": "dohGet",
        "summary": "DNS over HTTPS, GET (RFC 8484 4.1)",
        "parameters": [
            { "name": "dns", "in": "query", "required": true,
              "description": "The DNS query message, base64url (RFC 4648 5) without padding",
              "schema": { "type": "string", "contentEncoding": "base64url" } },
        ],
        "responses": api_responses(
            dns_message_response(),
            &[("400", "MissingArgument (dns), InvalidArgument (not base64url, not a DNS query)")],
        ),
    })
}

fn doh_post() -> Value {
    json!({
        "tags": ["doh"],
        "operationId": "dohPost",
        "summary": "DNS over HTTPS, POST (RFC 8484 4.1)",
        "requestBody": { "required": true, "content": dns_message() },
        "responses": api_responses(
            dns_message_response(),
            &[
                ("400", "InvalidArgument: not a DNS query message"),
                ("413", "BodyTooLarge: more than [http] max_body bytes"),
                ("415", "UnsupportedMediaType: Content-Type is not application/dns-message"),
            ],
        ),
    })
}

fn trace_op() -> Value {
    json!({
        "tags": ["resolver"],
        "operationId": "trace",
        "summary": "Resolve iteratively and show every step (like dig +trace)",
        "description": "Walks from the root hints (or the closest delegation cached) as the named \
            resolver listener: its source address, its cache. Every server asked, referral, \
            answer and cache hit is a step. The requester must be in that listener's allow list.",
        "parameters": [
            { "name": "name", "in": "query", "required": true,
              "description": "Domain name to resolve", "schema": { "type": "string" } },
            { "name": "type", "in": "query", "required": false,
              "description": "Record type, mnemonic or number",
              "schema": { "type": "string", "default": "A" } },
            { "name": "resolver", "in": "query", "required": false,
              "description": "A [[resolver.listener]] name (default: the first)",
              "schema": { "type": "string" } },
        ],
        "responses": api_responses(
            json!({ "description": "The walk", "content": json_content(schema_ref("Trace")) }),
            &[
                ("400", "MissingArgument (name), InvalidHost, InvalidArgument (type, resolver)"),
                ("403", "Forbidden: the requester is outside the resolver's allow list"),
                ("404", "NoResolver: the configuration has no [resolver]"),
            ],
        ),
    })
}

fn healthz_op() -> Value {
    json!({
        "tags": ["ops"],
        "operationId": "healthz",
        "summary": "Liveness, and what the serving snapshot holds",
        "responses": {
            "200": { "description": "Serving", "content": json_content(schema_ref("Health")) },
        },
    })
}

fn metrics_op() -> Value {
    json!({
        "tags": ["ops"],
        "operationId": "metrics",
        "summary": "Prometheus metrics",
        "description": "Queries by transport and RCODE, GSLB answers by region, latency \
            histograms per transport, HTTP errors by status and code, admin reloads, \
            reload failures, the config generation and the time of the last good reload, \
            gauges of the serving snapshot and of health-checked addresses, and per resolver \
            listener: cache answers, walks, coalesced queries, upstream queries, cache entries.",
        "responses": {
            "200": {
                "description": "Text exposition format 0.0.4",
                "content": { "text/plain; version=0.0.4": { "schema": { "type": "string" } } },
            },
        },
    })
}

fn reload_op() -> Value {
    json!({
        "tags": ["ops"],
        "operationId": "reload",
        "summary": "Rebuild the snapshot from the configuration (like SIGHUP)",
        "description": "Reads the configuration and every file it names again, checks it, and \
            swaps it in. When anything is wrong nothing changes: the previous data keeps \
            serving. Changed listener addresses need a restart and are refused.",
        "security": [{ "adminToken": [] }],
        "responses": {
            "200": { "description": "Reloaded", "content": json_content(schema_ref("Reloaded")) },
            "401": error_response("Unauthorized: missing or wrong bearer token"),
            "403": error_response("Forbidden: no [http] admin_token configured"),
            "422": { "description": "ReloadFailed: the configuration was refused",
                     "content": json_content(schema_ref("ReloadFailed")) },
        },
    })
}

/// An admin operation: bearer token, JSON answer, the usual refusals.
fn admin_op(id: &str, summary: &str, params: &[(&str, &str, bool)], extra: Value) -> Value {
    let mut op = json!({
        "tags": ["admin"],
        "operationId": id,
        "summary": summary,
        "security": [{ "adminToken": [] }],
        "parameters": params.iter().map(|(name, description, required)| json!({
            "name": name, "in": "query", "required": required, "description": description,
            "schema": { "type": "string" },
        })).collect::<Vec<_>>(),
        "responses": {
            "200": { "description": "OK", "content": json_content(json!({ "type": "object" })) },
            "400": error_response("InvalidArgument / MissingArgument / InvalidIP"),
            "401": error_response("Unauthorized: missing or wrong bearer token"),
            "403": error_response(
                "Forbidden: no [http] admin_token configured, or the token came over plain \
                 HTTP from a non-loopback peer"
            ),
        },
    });
    if let (Some(o), Some(e)) = (op.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    op
}

fn admin_health_op() -> Value {
    admin_op(
        "adminHealth",
        "Every pool member: check state, last error, flaps, since, override",
        &[("rule", "only this location rule", false)],
        json!({}),
    )
}

fn admin_overrides_op() -> Value {
    admin_op("adminOverrides", "The overrides in force", &[], json!({}))
}

fn admin_add_op() -> Value {
    admin_op(
        "adminAddOverride",
        "Drain, force up/down or weigh an address, a region or a carrier line",
        &[],
        json!({
            "description": "Takes effect for the next query, is saved to [admin] \
                overrides_state and written to the audit trail. An override with the same \
                target (address/region/line/rule) is replaced.",
            "requestBody": { "required": true, "content": json_content(json!({
                "type": "object",
                "required": ["action"],
                "properties": {
                    "address": { "type": "string" },
                    "region": { "type": "string" },
                    "line": { "type": "string" },
                    "rule": { "type": "string" },
                    "action": { "enum": ["drain", "up", "down", "weight"] },
                    "weight": { "type": "integer", "minimum": 0 },
                    "reason": { "type": "string" },
                    "who": { "type": "string" },
                    "expires_in": { "type": "integer", "minimum": 1,
                                    "description": "seconds from now" },
                },
            })) },
        }),
    )
}

fn admin_remove_op() -> Value {
    let mut op = admin_op(
        "adminRemoveOverride",
        "Remove overrides by id or by target",
        &[
            ("id", "the override's id", false),
            ("address", "target address", false),
            ("region", "target region", false),
            ("line", "target carrier line", false),
            ("rule", "target rule", false),
        ],
        json!({}),
    );
    op["responses"]["404"] = error_response("NoSuchOverride: nothing matched");
    op
}

fn admin_traffic_op() -> Value {
    admin_op(
        "adminTraffic",
        "GSLB answers by region, by rule/region/family, by family and by carrier line; queries \
         served",
        &[],
        json!({}),
    )
}

fn admin_audit_op() -> Value {
    admin_op(
        "adminAudit",
        "The newest audit events (reloads, overrides, health transitions)",
        &[("limit", "events, 1-1000 (default 100)", false)],
        json!({}),
    )
}

fn admin_explain_op() -> Value {
    admin_op(
        "adminExplain",
        "A GSLB decision hop by hop for a client address, overrides included",
        &[
            ("name", "the name asked", true),
            ("client", "the client address", true),
            ("type", "the record type (default A)", false),
        ],
        json!({}),
    )
}

fn admin_zones_op() -> Value {
    admin_op(
        "adminZones",
        "Every zone served (serial, records), and each secondary zone's transfer state: last \
         transfer, next refresh, expiry, counters, last error",
        &[],
        json!({}),
    )
}

fn admin_status_op() -> Value {
    admin_op(
        "adminStatus",
        "What the status page draws: regions (coordinates, answers, state), rules with their \
         pools and members or lines, the overrides in force",
        &[],
        json!({}),
    )
}

/// A static part of the status page.
fn ui_asset(id: &str, summary: &str, media: &str) -> Value {
    json!({
        "tags": ["ops"],
        "operationId": id,
        "summary": summary,
        "responses": {
            "200": { "description": "Compiled into the binary; Content-Security-Policy: this \
                origin only, nothing inline",
                     "content": { media: { "schema": { "type": "string" } } } },
        },
    })
}

fn ui_op() -> Value {
    ui_asset(
        "ui",
        "The status page (reads the admin endpoints with the token typed in)",
        "text/html",
    )
}

fn ui_js_op() -> Value {
    ui_asset("uiScript", "The status page's script", "text/javascript")
}

fn ui_css_op() -> Value {
    ui_asset("uiStyle", "The status page's style sheet", "text/css")
}

fn openapi_op() -> Value {
    json!({
        "tags": ["ops"],
        "operationId": "openapi",
        "summary": "This document",
        "responses": {
            "200": { "description": "OpenAPI 3.1",
                     "content": json_content(json!({ "type": "object" })) },
        },
    })
}

fn components() -> Value {
    let ips =
        |format: &str| json!({ "type": "array", "items": { "type": "string", "format": format } });
    let uint = || json!({ "type": "integer", "minimum": 0 });
    // Beside the vendor's fields: the ECS scope, and the GSLB's choice when a rule decided.
    let gslb_fields = json!({
        "scope": { "type": "integer", "minimum": 0, "maximum": 128,
                   "description": "ECS scope prefix: the answer holds for every client in the \
                       same network of this length (0: the same for everyone)" },
        "line": { "type": "string",
                  "description": "Carrier line a GSLB rule chose (absent when none decided)" },
        "region": { "type": "string",
                    "description": "Region a GSLB rule chose (absent when none decided)" },
        "explain": schema_ref("Explain"),
    });
    let with_gslb = |mut props: Value| {
        let m = props.as_object_mut().expect("object literal");
        for (k, v) in gslb_fields.as_object().expect("object literal") {
            m.insert(k.clone(), v.clone());
        }
        props
    };
    let answer = with_gslb(json!({
        "host": { "type": "string" },
        "ips": ips("ipv4"),
        "ipsv6": ips("ipv6"),
        "ttl": uint(),
        "origin_ttl": uint(),
        "client_ip": { "type": "string", "description": "The address the answer is for" },
    }));
    let entry = with_gslb(json!({
        "host": { "type": "string" },
        "client_ip": { "type": "string" },
        "ips": { "type": "array", "items": { "type": "string" } },
        "type": { "type": "integer", "enum": [1, 28],
                  "description": "1: A (ips are IPv4), 28: AAAA (ips are IPv6)" },
        "ttl": uint(),
        "origin_ttl": uint(),
    }));
    let json_answer = with_gslb(json!({
        "Status": { "type": "integer", "description": "RCODE" },
        "TC": { "type": "boolean" },
        "RD": { "type": "boolean" },
        "RA": { "type": "boolean" },
        "AD": { "type": "boolean" },
        "CD": { "type": "boolean" },
        "Question": { "type": "array", "items": {
            "type": "object",
            "properties": { "name": { "type": "string" }, "type": { "type": "integer" } },
        } },
        "Answer": { "type": "array", "items": schema_ref("JsonRecord") },
        "Authority": { "type": "array", "items": schema_ref("JsonRecord") },
        "edns_client_subnet": { "type": "string",
            "description": "The subnet the answer is for and its scope, when one was given" },
    }));
    json!({
        "securitySchemes": {
            "adminToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "[http] admin_token of the configuration",
            },
        },
        "parameters": {
            "AccountId": { "name": "account_id", "in": "path", "required": true,
                "description": "An [[http.account]] id", "schema": { "type": "string" } },
            "Host": { "name": "host", "in": "query", "required": true,
                "description": "Domain name to resolve", "schema": { "type": "string" } },
            "Hosts": { "name": "host", "in": "query", "required": true,
                "description": "Comma-separated domain names, at most [http] max_batch",
                "schema": { "type": "string" } },
            "ClientIp": { "name": "ip", "in": "query", "required": false,
                "description": "Answer for this client address (or subnet) instead of the \
                    requester's ([http] allow_client_ip)",
                "schema": { "type": "string" } },
            "QueryFamilies": { "name": "query", "in": "query", "required": false,
                "description": "Address families: 4 (A), 6 (AAAA) or 4,6 (both)",
                "schema": { "type": "string", "enum": ["4", "6", "4,6", "6,4"], "default": "4" } },
            "SignExpiry": { "name": "t", "in": "query", "required": true,
                "description": "Expiry of the signature, Unix seconds, at most \
                    [http] max_sign_duration_s ahead",
                "schema": { "type": "integer", "minimum": 0 } },
            "Signature": { "name": "s", "in": "query", "required": true,
                "description": "md5 hex of `host-secret-t`",
                "schema": { "type": "string", "pattern": "^[0-9a-fA-F]{32}$" } },
            "Explain": { "name": "explain", "in": "query", "required": false,
                "description": "Add the GSLB decision, hop by hop (gslbd extension)",
                "schema": param_flag() },
        },
        "responses": {
            "LimitExceeded": {
                "description": "LimitExceeded: the per-address or per-account rate was exceeded",
                "headers": { "Retry-After": {
                    "description": "Seconds to wait",
                    "schema": { "type": "integer", "minimum": 1 },
                } },
                "content": json_content(schema_ref("Error")),
            },
            "UriTooLong": error_response("UriTooLong: request target over [http] max_uri bytes"),
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string" },
                    "message": { "type": "string" },
                },
            },
            "AlibabaError": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string", "enum": [
                        "MissingArgument", "InvalidHost", "InvalidIP", "InvalidArgument",
                        "InvalidAccount", "UnsignedInterfaceDisabled", "SignatureExpired",
                        "InvalidSignature", "InvalidDuration", "Forbidden", "LimitExceeded",
                        "MethodNotAllowed",
                    ] },
                    "message": { "type": "string" },
                },
            },
            "Explain": {
                "type": "object",
                "description": "The GSLB decision hop by hop, as `gslbd explain --json` prints it",
            },
            "AlibabaAnswer": {
                "type": "object",
                "required": ["host", "ips", "ipsv6", "ttl", "origin_ttl", "client_ip", "scope"],
                "properties": answer,
            },
            "AlibabaBatch": {
                "type": "object",
                "required": ["dns"],
                "properties": {
                    "dns": { "type": "array", "items": {
                        "type": "object",
                        "required": ["host", "client_ip", "ips", "type", "ttl", "origin_ttl", "scope"],
                        "properties": entry,
                    } },
                },
            },
            "JsonRecord": {
                "type": "object",
                "required": ["name", "type", "TTL", "data"],
                "properties": {
                    "name": { "type": "string" },
                    "type": { "type": "integer" },
                    "TTL": { "type": "integer" },
                    "data": { "type": "string", "description": "RDATA in presentation format" },
                },
            },
            "JsonAnswer": {
                "type": "object",
                "required": ["Status", "TC", "RD", "RA", "AD", "CD", "Question", "scope"],
                "properties": json_answer,
            },
            "Trace": {
                "type": "object",
                "required": ["name", "type", "resolver", "status", "answer", "authority",
                             "upstream_queries", "trace"],
                "properties": {
                    "name": { "type": "string" },
                    "type": { "type": "string" },
                    "resolver": { "type": "string", "description": "The resolver listener used" },
                    "status": { "type": "string", "enum": ["NOERROR", "NXDOMAIN", "SERVFAIL"] },
                    "answer": { "type": "array", "items": { "type": "string" },
                                "description": "Records as dig prints them" },
                    "authority": { "type": "array", "items": { "type": "string" } },
                    "reason": { "type": "string", "description": "Why SERVFAIL" },
                    "upstream_queries": uint(),
                    "trace": { "type": "array", "items": {
                        "type": "object",
                        "required": ["step"],
                        "description": "One step; `step` is start, cache, query, failed, \
                            glueless, follow or fail, with that step's fields",
                        "properties": {
                            "step": { "type": "string", "enum": ["start", "cache", "query",
                                "failed", "glueless", "follow", "fail"] },
                        },
                        "additionalProperties": true,
                    } },
                },
            },
            "Health": {
                "type": "object",
                "required": ["status", "zones", "records", "listeners", "health", "reload"],
                "properties": {
                    "status": { "type": "string", "enum": ["ok", "degraded"],
                        "description": "degraded: the latest reload failed and the previous \
                            data is serving (reload.last_error says why)" },
                    "zones": uint(),
                    "records": uint(),
                    "listeners": { "type": "integer", "minimum": 0, "description": "DNS listeners" },
                    "health": {
                        "type": "object",
                        "required": ["targets", "down", "unknown"],
                        "properties": {
                            "targets": { "type": "integer", "minimum": 0,
                                         "description": "Health-checked endpoints in use" },
                            "down": uint(),
                            "unknown": { "type": "integer", "minimum": 0,
                                         "description": "No check finished yet" },
                        },
                    },
                    "reload": {
                        "type": "object",
                        "required": ["generation", "last_success", "failures"],
                        "properties": {
                            "generation": { "type": "integer", "minimum": 1,
                                "description": "Configurations swapped in since start" },
                            "last_success": { "type": "integer",
                                "description": "Unix time the serving configuration was swapped in" },
                            "failures": uint(),
                            "last_error": { "type": "string",
                                "description": "The latest reload's problems, while it is the latest" },
                            "last_failure": { "type": "integer",
                                "description": "Unix time of that failed reload" },
                        },
                    },
                },
            },
            "Reloaded": {
                "type": "object",
                "required": ["reloaded", "zones", "records"],
                "properties": {
                    "reloaded": { "type": "boolean", "const": true },
                    "zones": uint(),
                    "records": uint(),
                },
            },
            "ReloadFailed": {
                "type": "object",
                "required": ["code", "message", "problems"],
                "properties": {
                    "code": { "type": "string", "const": "ReloadFailed" },
                    "message": { "type": "string" },
                    "problems": { "type": "array", "items": { "type": "string" },
                        "description": "One problem a line; zone problems as file:line: message" },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_and_nothing_else() {
        let doc = document().expect("ROUTES and OPERATIONS agree");
        let paths = doc["paths"].as_object().unwrap();
        let ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(ops, ROUTES.len());
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let pointer = r.strip_prefix('#').expect("local reference");
                        assert!(doc.pointer(pointer).is_some(), "dangling {r}");
                    }
                    m.values().for_each(|x| walk(x, doc));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        let doc = document().unwrap();
        walk(&doc, &doc);
    }

    #[test]
    fn bearer_and_secret_comparison() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(bearer(&h("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&h("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&h("Basic abc")), None);
        assert_eq!(bearer(&h("Bearer ")), None);
        assert_eq!(bearer(&h("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
        assert!(same_secret(b"lab-admin-token", b"lab-admin-token"));
        assert!(!same_secret(b"lab-admin-toke", b"lab-admin-token"));
        assert!(!same_secret(b"lab-admin-tokenn", b"lab-admin-token"));
        assert!(!same_secret(b"Lab-admin-token", b"lab-admin-token"));
        assert!(!same_secret(b"", b"lab-admin-token"));
    }
}
