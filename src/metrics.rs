//! Process-wide counters, outside the snapshot (they survive reloads): queries by transport and
//! RCODE, answers by GSLB region, and latency histograms per transport. Rendered as Prometheus
//! text (exposition format 0.0.4) by `/metrics`. Counting is a few relaxed atomic adds per query.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// Where a query came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Udp = 0,
    Tcp = 1,
    /// RFC 8484 DNS over HTTP(S).
    Doh = 2,
    /// The Alibaba-compatible HTTPDNS API.
    HttpdnsAlibaba = 3,
    /// The Google-compatible JSON API.
    HttpdnsJson = 4,
    /// Recursive queries to the resolver's listeners (UDP and TCP).
    Recursive = 5,
    /// DNS over TLS (RFC 7858).
    Dot = 6,
    /// DNS over QUIC (RFC 9250).
    Doq = 7,
    /// The Tencent-DNSPod-compatible HTTPDNS API (`/d` with `id` and `alg`).
    HttpdnsTencent = 8,
}

const VIAS: [&str; 9] = [
    "udp",
    "tcp",
    "doh",
    "httpdns_alibaba",
    "httpdns_json",
    "recursive",
    "dot",
    "doq",
    "httpdns_tencent",
];
/// RCODE labels 0..=23 (RFC 6895 2.3); anything else counts as "other".
const RCODES: usize = 24;
/// Latency bucket upper bounds in seconds.
const BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 1.0,
];

struct Histogram {
    /// Per bucket (not cumulative); the last slot is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

pub struct Metrics {
    queries: [[AtomicU64; RCODES + 1]; VIAS.len()],
    latency: [Histogram; VIAS.len()],
    regions: RwLock<HashMap<String, Arc<AtomicU64>>>,
    http_errors: RwLock<HashMap<(u16, String), Arc<AtomicU64>>>,
    /// `POST /admin/reload` outcomes: [succeeded, refused].
    admin_reloads: [AtomicU64; 2],
    /// UDP answers written by the fast path, by table (`Fast`).
    fast: [AtomicU64; 2],
    /// Bytes the UDP threads' fast-path tables hold (a gauge, moved by deltas).
    fast_bytes: AtomicI64,
    /// Rate-limited UDP responses by kind (`rrl::Kind`) and `RrlAction`.
    rrl: [[AtomicU64; 3]; crate::rrl::KINDS.len()],
}

/// What happened to a rate-limited response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RrlAction {
    Dropped = 0,
    /// Sent as TC=1 (or BADCOOKIE).
    Slipped = 1,
    /// Would have been limited; sent (`dry_run`).
    DryRun = 2,
}

const RRL_ACTIONS: [&str; 3] = ["dropped", "slipped", "dry_run"];

/// Counts one rate-limited response.
pub fn count_rrl(kind: crate::rrl::Kind, action: RrlAction) {
    metrics().rrl[kind as usize][action as usize].fetch_add(1, Ordering::Relaxed);
}

/// Moves the fast-path memory gauge by `delta` bytes.
pub fn fast_path_bytes(delta: i64) {
    metrics().fast_bytes.fetch_add(delta, Ordering::Relaxed);
}

/// Which table of a UDP thread's fast path wrote an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// A prebuilt answer (client-independent).
    Prebuilt = 0,
    /// A GSLB prefix with the last hop decided for the query.
    Gslb = 1,
}

/// Counts an answer the fast path wrote (also counted in `gslbd_queries_total` by `count`).
pub fn count_fast(table: Fast) {
    metrics().fast[table as usize].fetch_add(1, Ordering::Relaxed);
}

/// Answers the fast path has written from `table` so far (tests read deltas).
pub fn fast_answers(table: Fast) -> u64 {
    metrics().fast[table as usize].load(Ordering::Relaxed)
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        queries: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        latency: std::array::from_fn(|_| Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }),
        regions: RwLock::new(HashMap::new()),
        http_errors: RwLock::new(HashMap::new()),
        admin_reloads: std::array::from_fn(|_| AtomicU64::new(0)),
        fast: std::array::from_fn(|_| AtomicU64::new(0)),
        fast_bytes: AtomicI64::new(0),
        rrl: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
    })
}

/// Counts one `POST /admin/reload` that got as far as building (SIGHUP reloads are not seen here).
pub fn record_admin_reload(ok: bool) {
    metrics().admin_reloads[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
}

/// Values of the moment, read at scrape time from the serving snapshot and the health registry.
/// They belong to whichever snapshot is current, so they are passed in rather than kept here.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gauges {
    pub zones: usize,
    pub records: usize,
    pub listeners: usize,
    pub health_up: usize,
    pub health_down: usize,
    /// Checked addresses whose first check has not finished (and no saved state said otherwise).
    pub health_unknown: usize,
    /// Snapshots swapped in since start (1 = the initial load).
    pub config_generation: u64,
    /// Unix time of the serving snapshot's swap (the initial load counts as a success).
    pub reload_last_success: f64,
    /// Reloads refused since start (SIGHUP and `POST /admin/reload`).
    pub reload_failures: u64,
    /// Whether the latest reload failed (the files on disk are not what is served).
    pub reload_degraded: bool,
}

/// The whole `/metrics` page: every counter (`render`), then `gauges`.
pub fn render_with(gauges: &Gauges) -> String {
    let mut s = render();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, usize)]| {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(s, "{name}{labels} {v}");
        }
    };
    gauge(
        "gslbd_zones",
        "Zones in the serving snapshot.",
        &[("", gauges.zones)],
    );
    gauge(
        "gslbd_records",
        "Resource records in the serving snapshot's zones.",
        &[("", gauges.records)],
    );
    gauge(
        "gslbd_listeners",
        "DNS listeners in the serving snapshot.",
        &[("", gauges.listeners)],
    );
    gauge(
        "gslbd_health_targets",
        "Health-checked addresses the serving configuration uses, by state.",
        &[
            ("{state=\"up\"}", gauges.health_up),
            ("{state=\"down\"}", gauges.health_down),
            ("{state=\"unknown\"}", gauges.health_unknown),
        ],
    );
    gauge(
        "gslbd_config_generation",
        "Configurations swapped in since start (1 = the initial load; +1 per successful reload).",
        &[("", gauges.config_generation as usize)],
    );
    gauge(
        "gslbd_reload_degraded",
        "1 when the latest reload failed and older data is serving, else 0.",
        &[("", usize::from(gauges.reload_degraded))],
    );
    let _ = writeln!(
        s,
        "# HELP gslbd_reload_last_success_timestamp_seconds Unix time the serving configuration \
         was swapped in (the initial load counts).\n\
         # TYPE gslbd_reload_last_success_timestamp_seconds gauge\n\
         gslbd_reload_last_success_timestamp_seconds {:.3}",
        gauges.reload_last_success
    );
    let _ = writeln!(
        s,
        "# HELP gslbd_reload_failures_total Reloads refused (SIGHUP and POST /admin/reload); the \
         previous data kept serving.\n\
         # TYPE gslbd_reload_failures_total counter\n\
         gslbd_reload_failures_total {}",
        gauges.reload_failures
    );
    s
}

/// Counts one answered query (HTTP paths, which know the region by name).
pub fn record(via: Via, rcode: u16, region: Option<&str>, elapsed: Duration) {
    let m = metrics();
    count(via, rcode, None);
    observe(via, elapsed, 1);
    if let Some(r) = region {
        count_in(&m.regions, r);
    }
}

/// Counts one answered query; `region` is the counter of the GSLB region that answered it
/// (`region_counter`, resolved when the snapshot was built, so no lookup by name here).
pub fn count(via: Via, rcode: u16, region: Option<&AtomicU64>) {
    let rc = (rcode as usize).min(RCODES);
    metrics().queries[via as usize][rc].fetch_add(1, Ordering::Relaxed);
    if let Some(r) = region {
        r.fetch_add(1, Ordering::Relaxed);
    }
}

/// Adds `n` observations of `elapsed` to the latency histogram of `via`. The UDP loop times a
/// whole batch (receive to answers ready, one pair of clock reads) and records it for each of its
/// queries: that is the time each of them spent in the server.
pub fn observe(via: Via, elapsed: Duration, n: u64) {
    if n == 0 {
        return;
    }
    let h = &metrics().latency[via as usize];
    let secs = elapsed.as_secs_f64();
    let slot = BUCKETS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(BUCKETS.len());
    h.counts[slot].fetch_add(n, Ordering::Relaxed);
    h.sum_ns
        .fetch_add(elapsed.as_nanos() as u64 * n, Ordering::Relaxed);
}

/// The answer counter of GSLB region `name` (the same one `record` counts by name).
pub fn region_counter(name: &str) -> Arc<AtomicU64> {
    let m = metrics();
    if let Some(c) = m.regions.read().expect("metrics lock").get(name) {
        return c.clone();
    }
    m.regions
        .write()
        .expect("metrics lock")
        .entry(name.to_string())
        .or_default()
        .clone()
}

/// Counts an HTTP error response by status and error code (e.g. 403 InvalidSignature).
pub fn record_http_error(status: u16, code: &str) {
    let m = metrics();
    let key = (status, code.to_string());
    if let Some(c) = m.http_errors.read().expect("metrics lock").get(&key) {
        c.fetch_add(1, Ordering::Relaxed);
        return;
    }
    m.http_errors
        .write()
        .expect("metrics lock")
        .entry(key)
        .or_default()
        .fetch_add(1, Ordering::Relaxed);
}

fn count_in(map: &RwLock<HashMap<String, Arc<AtomicU64>>>, key: &str) {
    if let Some(c) = map.read().expect("metrics lock").get(key) {
        c.fetch_add(1, Ordering::Relaxed);
        return;
    }
    map.write()
        .expect("metrics lock")
        .entry(key.to_string())
        .or_default()
        .fetch_add(1, Ordering::Relaxed);
}

/// Queries counted so far for `via` and `rcode` (tests read deltas).
pub fn queries(via: Via, rcode: u16) -> u64 {
    metrics().queries[via as usize][(rcode as usize).min(RCODES)].load(Ordering::Relaxed)
}

/// The Prometheus text exposition of every counter.
pub fn render() -> String {
    let m = metrics();
    let mut s = String::new();
    s.push_str("# HELP gslbd_queries_total Queries answered, by transport and RCODE.\n");
    s.push_str("# TYPE gslbd_queries_total counter\n");
    for (v, name) in VIAS.iter().enumerate() {
        for rc in 0..=RCODES {
            let n = m.queries[v][rc].load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let rcode = if rc == RCODES {
                "other".to_string()
            } else {
                rcode_label(rc as u16)
            };
            let _ = writeln!(
                s,
                "gslbd_queries_total{{transport=\"{name}\",rcode=\"{rcode}\"}} {n}"
            );
        }
    }
    s.push_str(
        "# HELP gslbd_gslb_answers_total Answers a GSLB location rule decided, by region.\n",
    );
    s.push_str("# TYPE gslbd_gslb_answers_total counter\n");
    let mut regions: Vec<(String, u64)> = m
        .regions
        .read()
        .expect("metrics lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
        .collect();
    regions.sort();
    for (r, n) in regions {
        let _ = writeln!(
            s,
            "gslbd_gslb_answers_total{{region=\"{}\"}} {n}",
            escape(&r)
        );
    }
    s.push_str(
        "# HELP gslbd_udp_fast_path_answers_total UDP answers written from a thread's prebuilt \
         answers or GSLB prefixes (the rest ran the general path).\n",
    );
    s.push_str("# TYPE gslbd_udp_fast_path_answers_total counter\n");
    for (i, table) in ["prebuilt", "gslb"].iter().enumerate() {
        let n = m.fast[i].load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "gslbd_udp_fast_path_answers_total{{table=\"{table}\"}} {n}"
        );
    }
    s.push_str(
        "# HELP gslbd_udp_fast_path_memory_bytes Bytes the UDP fast path's tables hold (answers, \
         GSLB prefixes, geo caches), within [limits] fast_path_memory.\n",
    );
    s.push_str("# TYPE gslbd_udp_fast_path_memory_bytes gauge\n");
    let _ = writeln!(
        s,
        "gslbd_udp_fast_path_memory_bytes {}",
        m.fast_bytes.load(Ordering::Relaxed).max(0)
    );
    s.push_str(
        "# HELP gslbd_rrl_limited_total UDP responses over the rate limit, by response kind and \
         what was done (dropped, slipped as TC=1 or BADCOOKIE, or sent in dry_run).\n",
    );
    s.push_str("# TYPE gslbd_rrl_limited_total counter\n");
    for (k, kind) in crate::rrl::KINDS.iter().enumerate() {
        for (a, action) in RRL_ACTIONS.iter().enumerate() {
            let n = m.rrl[k][a].load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "gslbd_rrl_limited_total{{kind=\"{kind}\",action=\"{action}\"}} {n}"
            );
        }
    }
    crate::xfr::render_metrics(&mut s);
    crate::cluster::render_metrics(&mut s);
    s.push_str("# HELP gslbd_query_duration_seconds Time from a query's arrival to its answer.\n");
    s.push_str("# TYPE gslbd_query_duration_seconds histogram\n");
    for (v, name) in VIAS.iter().enumerate() {
        let h = &m.latency[v];
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += h.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "gslbd_query_duration_seconds_bucket{{transport=\"{name}\",le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += h.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "gslbd_query_duration_seconds_bucket{{transport=\"{name}\",le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            s,
            "gslbd_query_duration_seconds_sum{{transport=\"{name}\"}} {}",
            h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(
            s,
            "gslbd_query_duration_seconds_count{{transport=\"{name}\"}} {cumulative}"
        );
    }
    s.push_str("# HELP gslbd_admin_reloads_total POST /admin/reload rebuilds, by outcome.\n");
    s.push_str("# TYPE gslbd_admin_reloads_total counter\n");
    for (i, result) in ["ok", "failed"].iter().enumerate() {
        let n = m.admin_reloads[i].load(Ordering::Relaxed);
        let _ = writeln!(s, "gslbd_admin_reloads_total{{result=\"{result}\"}} {n}");
    }
    s.push_str("# HELP gslbd_http_errors_total HTTP error responses, by status and error code.\n");
    s.push_str("# TYPE gslbd_http_errors_total counter\n");
    let mut errors: Vec<((u16, String), u64)> = m
        .http_errors
        .read()
        .expect("metrics lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
        .collect();
    errors.sort();
    for ((status, code), n) in errors {
        let _ = writeln!(
            s,
            "gslbd_http_errors_total{{status=\"{status}\",code=\"{}\"}} {n}",
            escape(&code)
        );
    }
    s
}

fn rcode_label(rc: u16) -> String {
    match rc {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        n => n.to_string(),
    }
}

/// Label values escape backslash, quote and newline (exposition format).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
