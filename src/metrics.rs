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

/// A pool's answers, [A, AAAA].
type PoolCounter = Arc<[AtomicU64; 2]>;

pub struct Metrics {
    queries: [[AtomicU64; RCODES + 1]; VIAS.len()],
    latency: [Histogram; VIAS.len()],
    /// HTTPDNS JSON lookups by GSLB region (they know the region by name).
    regions: RwLock<HashMap<String, Arc<AtomicU64>>>,
    /// DNS answers (UDP, TCP, DoH, DoT, DoQ) by location rule and region, per family (A, AAAA):
    /// each pool holds its counter (`pool_counter`), so an answer is one relaxed add.
    pools: RwLock<HashMap<(String, String), PoolCounter>>,
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
        pools: RwLock::new(HashMap::new()),
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

/// The whole `/metrics` page: every counter (`render`), the build and the process (`process`),
/// then `gauges`.
pub fn render_with(gauges: &Gauges) -> String {
    let mut s = render();
    build_info(&mut s);
    process(&mut s, &ProcessStats::read());
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
/// (`pool_counter`, resolved when the snapshot was built, so no lookup by name here).
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

/// The answer counters (A, AAAA) of the pool of `region` in location rule `rule`, kept across
/// reloads (the same rule and region get the same counters).
pub fn pool_counter(rule: &str, region: &str) -> Arc<[AtomicU64; 2]> {
    let m = metrics();
    let key = (rule.to_string(), region.to_string());
    if let Some(c) = m.pools.read().expect("metrics lock").get(&key) {
        return c.clone();
    }
    m.pools
        .write()
        .expect("metrics lock")
        .entry(key)
        .or_insert_with(|| Arc::new([AtomicU64::new(0), AtomicU64::new(0)]))
        .clone()
}

/// DNS answers per (rule, region) as [A, AAAA] (NODATA of other types counts with A), sorted.
pub fn pool_answers() -> Vec<(String, String, [u64; 2])> {
    let mut v: Vec<_> = metrics()
        .pools
        .read()
        .expect("metrics lock")
        .iter()
        .map(|((rule, region), c)| {
            (
                rule.clone(),
                region.clone(),
                [c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed)],
            )
        })
        .collect();
    v.sort();
    v
}

/// GSLB answers by region: HTTPDNS JSON lookups plus DNS answers of every rule's pool there.
pub fn region_answers() -> Vec<(String, u64)> {
    let mut by: std::collections::BTreeMap<String, u64> = metrics()
        .regions
        .read()
        .expect("metrics lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
        .collect();
    for (_, region, n) in pool_answers() {
        *by.entry(region).or_default() += n[0] + n[1];
    }
    by.into_iter().collect()
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
    for (r, n) in region_answers() {
        let _ = writeln!(
            s,
            "gslbd_gslb_answers_total{{region=\"{}\"}} {n}",
            escape(&r)
        );
    }
    s.push_str(
        "# HELP gslbd_gslb_pool_answers_total DNS answers a GSLB location rule gave from a \
         region's pool, by rule, region and address family (HTTPDNS JSON lookups not included).\n",
    );
    s.push_str("# TYPE gslbd_gslb_pool_answers_total counter\n");
    for (rule, region, n) in pool_answers() {
        for (fam, v) in ["ipv4", "ipv6"].iter().zip(n) {
            let _ = writeln!(
                s,
                "gslbd_gslb_pool_answers_total{{rule=\"{}\",region=\"{}\",family=\"{fam}\"}} {v}",
                escape(&rule),
                escape(&region)
            );
        }
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

/// `gslbd_build_info`: always 1; the labels say what is running (the usual Prometheus idiom, so a
/// dashboard can show the version and a rollout can be followed across a fleet).
fn build_info(s: &mut String) {
    let _ = writeln!(
        s,
        "# HELP gslbd_build_info The running gslbd's version and target (always 1).\n\
         # TYPE gslbd_build_info gauge\n\
         gslbd_build_info{{version=\"{}\",os=\"{}\",arch=\"{}\",profile=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
}

/// What `/proc/self` says about this process (Linux; all None elsewhere or when unreadable).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
    /// Unix time the process started.
    pub start_time: Option<f64>,
}

impl ProcessStats {
    /// Reads /proc/self/stat (CPU ticks, threads, start), /proc/self/statm (memory), the entries
    /// of /proc/self/fd and the soft RLIMIT_NOFILE. A few small procfs reads per scrape: no
    /// crate, nothing kept between scrapes.
    pub fn read() -> ProcessStats {
        let mut p = ProcessStats::default();
        // SAFETY: sysconf only reads a constant of the C library.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // proc(5): "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so the
            // fields are counted from the last ')'. After it, field 3 (state) is index 0:
            // utime (14) = 11, stime (15) = 12, num_threads (20) = 17, starttime (22) = 19.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            if tick > 0 {
                if let (Some(u), Some(s)) = (num(11), num(12)) {
                    p.cpu_seconds = Some((u + s) as f64 / tick as f64);
                }
                if let (Some(start), Some(boot)) = (num(19), boot_time()) {
                    p.start_time = Some(boot as f64 + start as f64 / tick as f64);
                }
            }
            p.threads = num(17);
        }
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && page > 0
        {
            let mut it = statm.split_whitespace().map(|f| f.parse::<u64>().ok());
            p.virtual_bytes = it.next().flatten().map(|n| n * page as u64);
            p.resident_bytes = it.next().flatten().map(|n| n * page as u64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries while it is read.
            p.open_fds = Some((dir.count() as u64).saturating_sub(1));
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            p.max_fds = Some(lim.rlim_cur);
        }
        p
    }
}

/// The boot time, Unix seconds (/proc/stat's btime).
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The process metrics under the names Prometheus' client libraries use (`process_*`), so the
/// usual dashboards and alerts work unchanged; `process_threads` is the one addition.
fn process(s: &mut String, p: &ProcessStats) {
    let mut one = |name: &str, kind: &str, help: &str, v: Option<String>| {
        if let Some(v) = v {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    };
    one(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, seconds.",
        p.cpu_seconds.map(|v| format!("{v:.2}")),
    );
    one(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size, bytes.",
        p.resident_bytes.map(|v| v.to_string()),
    );
    one(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size, bytes.",
        p.virtual_bytes.map(|v| v.to_string()),
    );
    one(
        "process_open_fds",
        "gauge",
        "Open file descriptors (sockets included).",
        p.open_fds.map(|v| v.to_string()),
    );
    one(
        "process_max_fds",
        "gauge",
        "The soft limit on open file descriptors.",
        p.max_fds.map(|v| v.to_string()),
    );
    one(
        "process_threads",
        "gauge",
        "Threads of the process (tokio workers, UDP threads, blocking pool).",
        p.threads.map(|v| v.to_string()),
    );
    one(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process, Unix seconds.",
        p.start_time.map(|v| format!("{v:.2}")),
    );
}

/// One pool member for `gslbd_member_state` / `gslbd_member_weight`.
pub struct MemberGauge<'a> {
    pub rule: &'a str,
    pub region: &'a str,
    pub address: std::net::IpAddr,
    /// "up", "down" or "unknown" (an unchecked member is "up").
    pub state: &'a str,
    /// The weight answers use: the configured one, or an override's.
    pub weight: u32,
    /// The action of the override in force on it (its own or its region's), if any.
    pub overridden: Option<&'a str>,
}

/// Per pool member: its check state as a state set (one series per state, 1 for the current
/// one, the idiom that lets `sum by (state)` count them), the weight answers use, and whether
/// an override is in force on it; then the overrides in force by kind of target and action.
pub fn render_members(s: &mut String, members: &[MemberGauge], overrides: &[(&str, &str)]) {
    s.push_str(
        "# HELP gslbd_member_state A pool member's health-check state (1 for the current \
         state; unchecked members are up).\n# TYPE gslbd_member_state gauge\n",
    );
    for m in members {
        for state in ["up", "down", "unknown"] {
            let _ = writeln!(
                s,
                "gslbd_member_state{{rule=\"{}\",region=\"{}\",address=\"{}\",state=\"{state}\"}} {}",
                escape(m.rule),
                escape(m.region),
                m.address,
                u8::from(m.state == state)
            );
        }
    }
    s.push_str(
        "# HELP gslbd_member_weight A pool member's weight as answers use it (an override's when \
         one is in force; 0 = drained).\n# TYPE gslbd_member_weight gauge\n",
    );
    for m in members {
        let _ = writeln!(
            s,
            "gslbd_member_weight{{rule=\"{}\",region=\"{}\",address=\"{}\"}} {}",
            escape(m.rule),
            escape(m.region),
            m.address,
            m.weight
        );
    }
    s.push_str(
        "# HELP gslbd_member_overridden 1 when an operator's override (the member's own or its \
         region's) is in force on a pool member, by action.\n\
         # TYPE gslbd_member_overridden gauge\n",
    );
    for m in members {
        if let Some(action) = m.overridden {
            let _ = writeln!(
                s,
                "gslbd_member_overridden{{rule=\"{}\",region=\"{}\",address=\"{}\",action=\"{action}\"}} 1",
                escape(m.rule),
                escape(m.region),
                m.address,
            );
        }
    }
    s.push_str(
        "# HELP gslbd_overrides Operators' overrides in force, by target (address, region, line) \
         and action.\n# TYPE gslbd_overrides gauge\n",
    );
    let mut counts: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    for kind in ["address", "region", "line"] {
        for action in ["drain", "up", "down", "weight"] {
            counts.insert((kind, action), 0);
        }
    }
    for &(kind, action) in overrides {
        *counts.entry((kind, action)).or_default() += 1;
    }
    for ((kind, action), n) in counts {
        let _ = writeln!(
            s,
            "gslbd_overrides{{target=\"{kind}\",action=\"{action}\"}} {n}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_come_from_proc() {
        let p = ProcessStats::read();
        if cfg!(target_os = "linux") {
            // This test's own process: some CPU spent, a few MB resident, stdin/out/err open,
            // the test harness's threads, started before now.
            assert!(p.cpu_seconds.is_some_and(|c| c >= 0.0), "{p:?}");
            assert!(p.resident_bytes.is_some_and(|r| r > 1 << 20), "{p:?}");
            assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
            assert!(p.threads.is_some_and(|n| n >= 1), "{p:?}");
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            assert!(
                p.start_time
                    .is_some_and(|t| t <= now + 1.0 && t > now - 86_400.0 * 365.0),
                "{p:?}"
            );
        }
    }
}
