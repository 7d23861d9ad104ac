//! The iterative resolver: the carrier LDNS of the story. It answers recursive queries on its own
//! listeners by walking root -> TLD -> authoritative (`walk`), with a cache (`cache`), upstream
//! UDP/TCP with spoofing defences (`upstream`), root hints (`hints`) and a step-by-step trace
//! (`trace`). `serve` turns client packets into answers.
//!
//! Runtime state (caches, server RTTs, queries in flight) lives in `Resolvers`, outside the config
//! snapshot, one `Instance` per resolver listener name: each listener is its own LDNS (the lab's
//! mobile, telecom and unicom resolvers ask from their own addresses and get different GSLB
//! answers, so they must not share a cache). Reloads keep instances by name.

pub mod cache;
pub mod config;
pub mod hints;
pub mod serve;
pub mod trace;
pub mod upstream;
pub mod walk;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::rr::{Name, RecordType};
use ipnet::IpNet;
use tokio::sync::watch;

pub use cache::{Clock, ManualClock, SystemClock};
pub use config::{ResolverConfig, ResolverListener, ResolverSettings};
pub use walk::{Env, Resolution, Walk};

use crate::zone::name::{Key, key_of};

/// Every resolver instance of the process, by listener name.
#[derive(Debug)]
pub struct Resolvers {
    clock: Arc<dyn Clock>,
    /// The port our own DNS listeners got (for `upstream_port = "listen"`); 0 until bound.
    listen_port: AtomicU16,
    instances: Mutex<HashMap<String, Arc<Instance>>>,
}

impl Default for Resolvers {
    fn default() -> Self {
        Resolvers::new(Arc::new(SystemClock::default()))
    }
}

impl Resolvers {
    pub fn new(clock: Arc<dyn Clock>) -> Resolvers {
        Resolvers {
            clock,
            listen_port: AtomicU16::new(0),
            instances: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_listen_port(&self, port: u16) {
        self.listen_port.store(port, Ordering::Relaxed);
    }

    /// The port servers are asked on.
    pub fn upstream_port(&self, settings: &ResolverSettings) -> u16 {
        settings
            .upstream_port
            .unwrap_or_else(|| match self.listen_port.load(Ordering::Relaxed) {
                0 => 53,
                p => p,
            })
    }

    /// The instance for a listener, made on first use with the settings' cache limits (`apply`
    /// updates them on reload).
    pub fn instance(&self, name: &str, settings: &ResolverSettings) -> Arc<Instance> {
        let mut m = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = m.get(name) {
            return i.clone();
        }
        let i = Arc::new(Instance {
            runtime: tokio::runtime::Handle::try_current().ok(),
            cache: cache::Cache::new(self.clock.clone(), settings.cache),
            infra: walk::Infra::new(self.clock.clone()),
            inflight: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        });
        m.insert(name.to_string(), i.clone());
        i
    }

    /// Reload: every instance takes the new cache limits.
    pub fn apply(&self, settings: &ResolverSettings) {
        for (_, i) in self.instances() {
            i.cache.set_limits(settings.cache);
        }
    }

    /// Prometheus text for every instance: counters and the cache size, labelled by listener.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        let instances = self.instances();
        let mut s = String::new();
        let series: [Series; 12] = [
            (
                "gslbd_resolver_cache_answers_total",
                "counter",
                "Client queries the resolver answered from its cache alone.",
                |i| Stats::get(&i.stats.cache_answers),
            ),
            (
                "gslbd_resolver_walks_total",
                "counter",
                "Client queries that needed a walk (led one or joined one in flight).",
                |i| Stats::get(&i.stats.walks),
            ),
            (
                "gslbd_resolver_coalesced_total",
                "counter",
                "Client queries that joined an identical walk already in flight.",
                |i| Stats::get(&i.stats.coalesced),
            ),
            (
                "gslbd_resolver_upstream_queries_total",
                "counter",
                "Queries the resolver sent to authoritative servers.",
                |i| Stats::get(&i.stats.upstream),
            ),
            (
                "gslbd_resolver_stale_answers_total",
                "counter",
                "Client queries answered with expired data because the walk failed (RFC 8767).",
                |i| Stats::get(&i.stats.stale),
            ),
            (
                "gslbd_resolver_prefetches_total",
                "counter",
                "Background refreshes started by a hit in the last 10 % of an answer's TTL.",
                |i| Stats::get(&i.stats.prefetches),
            ),
            (
                "gslbd_resolver_caps_mismatches_total",
                "counter",
                "Upstream replies refused because their question was not in the case sent (0x20).",
                |i| Stats::get(&i.stats.caps_mismatches),
            ),
            (
                "gslbd_resolver_walks_in_flight",
                "gauge",
                "Walks running now (identical queries share one).",
                |i| i.inflight.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
            ),
            (
                "gslbd_resolver_cache_entries",
                "gauge",
                "Entries (RRsets and negative answers) in the resolver's cache.",
                |i| i.cache.len() as u64,
            ),
            (
                "gslbd_resolver_cache_bytes",
                "gauge",
                "Bytes the resolver's cache holds (bounded by cache_memory).",
                |i| i.cache.bytes() as u64,
            ),
            (
                "gslbd_resolver_cache_evictions_total",
                "counter",
                "Live cache entries removed to keep within cache_entries and cache_memory.",
                |i| i.cache.evicted(),
            ),
            (
                "gslbd_resolver_servers_down",
                "gauge",
                "Authoritative server addresses skipped as down (timed out three times in a row).",
                |i| i.infra.snapshot().iter().filter(|s| s.3).count() as u64,
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
            for (listener, inst) in &instances {
                let _ = writeln!(s, "{name}{{resolver=\"{listener}\"}} {}", value(inst));
            }
        }
        // Process-wide: upstream sockets refused for want of file descriptors (RLIMIT_NOFILE).
        let name = "gslbd_resolver_socket_exhausted_total";
        let _ = writeln!(
            s,
            "# HELP {name} Upstream sockets not opened: no file descriptor left (EMFILE/ENFILE).\n\
             # TYPE {name} counter\n{name} {}",
            upstream::FDS_EXHAUSTED.load(std::sync::atomic::Ordering::Relaxed)
        );
        // Per server: only those that ever timed out (a busy resolver knows thousands of servers;
        // the ones that time out are what an operator looks for).
        let name = "gslbd_resolver_server_timeouts_total";
        let _ = writeln!(
            s,
            "# HELP {name} Upstream queries to this server address that got no reply in time."
        );
        let _ = writeln!(s, "# TYPE {name} counter");
        for (listener, inst) in &instances {
            for (ip, n) in inst.infra.timeouts() {
                let _ = writeln!(s, "{name}{{resolver=\"{listener}\",server=\"{ip}\"}} {n}");
            }
        }
        s
    }

    /// (listener name, instance) for every instance made so far, sorted by name.
    pub fn instances(&self) -> Vec<(String, Arc<Instance>)> {
        let m = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

type FlightKey = (Key, u16, Option<IpNet>);

/// One metric: name, Prometheus type, help text, and how to read it off an instance.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Instance) -> u64,
);

/// One LDNS's state.
#[derive(Debug)]
pub struct Instance {
    /// Where background walks (prefetch) run: the runtime the instance was made in (None outside
    /// one, as in benchmarks: no prefetch then).
    runtime: Option<tokio::runtime::Handle>,
    pub cache: cache::Cache,
    pub infra: walk::Infra,
    inflight: Mutex<HashMap<FlightKey, watch::Receiver<Option<Arc<Resolution>>>>>,
    pub stats: Stats,
}

/// Counters per instance (exported by `/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Client queries answered from the cache without a walk.
    pub cache_answers: AtomicU64,
    /// Client queries that needed a walk (or joined one).
    pub walks: AtomicU64,
    /// Client queries that waited for an identical walk already in flight.
    pub coalesced: AtomicU64,
    /// Queries sent upstream.
    pub upstream: AtomicU64,
    /// Client queries answered with expired data after a failed walk (RFC 8767).
    pub stale: AtomicU64,
    /// Background refreshes started by prefetch.
    pub prefetches: AtomicU64,
    /// Upstream replies whose question came back in another case than sent (0x20).
    pub caps_mismatches: AtomicU64,
}

impl Stats {
    pub fn upstream(&self, n: u64) {
        self.upstream.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Removes a flight from the table when its leader finishes or is cancelled, so a cancelled walk
/// never leaves followers waiting on nothing.
struct FlightGuard<'a> {
    instance: &'a Instance,
    key: FlightKey,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        self.instance
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// Resolves a client's question, joining an identical walk in flight instead of starting another
/// (the coalescing every production resolver does; it also blunts cache-miss floods).
pub async fn resolve(
    env: &Env<'_>,
    name: &Name,
    qtype: RecordType,
    client: Option<IpAddr>,
) -> Resolution {
    lead_or_join(env, name, qtype, client, false).await
}

/// The flight of a question: answers differ by client only where ECS is forwarded; those flights
/// are keyed by the client's /24 (/56) too.
fn flight_key(
    settings: &ResolverSettings,
    name: &Name,
    qtype: RecordType,
    client: Option<IpAddr>,
) -> FlightKey {
    let subnet = if settings.ecs_zones.is_empty() {
        None
    } else {
        client.and_then(|ip| {
            let (net, p) = crate::query::truncate(ip, if ip.is_ipv4() { 32 } else { 128 });
            IpNet::new(net, p).ok()
        })
    };
    (key_of(name), u16::from(qtype), subnet)
}

/// Prefetch (Unbound's `prefetch`): a hit on an answer in the last 10 % of its TTL, answered from
/// the cache, also starts one walk in the background that asks for the name again and stores the
/// fresh answer, so a name in use does not expire and no client waits for its walk. Nothing starts
/// while a walk for the same question is in flight (this prefetch's or a client's).
pub fn prefetch(
    instance: &Arc<Instance>,
    settings: &Arc<ResolverSettings>,
    listener: usize,
    port: u16,
    name: Name,
    qtype: RecordType,
    client: Option<IpAddr>,
) {
    let Some(runtime) = &instance.runtime else {
        return;
    };
    let key = flight_key(settings, &name, qtype, client);
    if instance
        .inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&key)
    {
        return;
    }
    instance.stats.prefetches.fetch_add(1, Ordering::Relaxed);
    let (instance, settings) = (instance.clone(), settings.clone());
    runtime.spawn(async move {
        let Some(l) = settings.listeners.get(listener) else {
            return;
        };
        let env = Env {
            settings: &settings,
            listener: l,
            instance: &instance,
            port,
        };
        let res = lead_or_join(&env, &name, qtype, client, true).await;
        if let Some(why) = res.reason {
            tracing::debug!(name = %name, qtype = %qtype, "prefetch failed: {why}");
        }
    });
}

/// `resolve`; with `refresh`, a walk that does not take the question's own answer from the cache
/// (prefetch: it is there, about to expire).
async fn lead_or_join(
    env: &Env<'_>,
    name: &Name,
    qtype: RecordType,
    client: Option<IpAddr>,
    refresh: bool,
) -> Resolution {
    let inst = env.instance;
    inst.stats.walks.fetch_add(1, Ordering::Relaxed);
    let key = flight_key(env.settings, name, qtype, client);
    loop {
        // Either join the walk in flight (Err: its receiver) or lead a new one (Ok: the sender).
        let role = {
            let mut m = inst.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match m.get(&key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    m.insert(key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        let tx = match role {
            Ok(tx) => tx,
            Err(mut rx) => {
                inst.stats.coalesced.fetch_add(1, Ordering::Relaxed);
                let joined = rx
                    .wait_for(Option::is_some)
                    .await
                    .map(|v| v.as_ref().expect("waited for Some").as_ref().clone());
                match joined {
                    Ok(r) => return r,
                    // The leader was cancelled before it finished: lead a walk ourselves.
                    Err(_) => continue,
                }
            }
        };
        let _guard = FlightGuard {
            instance: inst,
            key: key.clone(),
        };
        let mut walk = Walk::new(env, client, false);
        if refresh {
            walk.refresh = Some(key_of(name));
        }
        let mut res = walk.bounded(name, qtype).await;
        // RFC 8767 4: the walk failed (servers down, timed out, lame): data that expired less
        // than serve_expired_ttl ago beats a SERVFAIL. The followers get it too.
        if res.rcode == crate::wire::rcode::SERVFAIL
            && env.settings.cache.serve_expired_ttl > 0
            && let Some(mut stale) = cache_only(env, name, qtype, client, true)
        {
            tracing::debug!(name = %name, qtype = %qtype, "stale answer: {}",
                res.reason.as_deref().unwrap_or("walk failed"));
            inst.stats.stale.fetch_add(1, Ordering::Relaxed);
            stale.upstream_queries = res.upstream_queries;
            res = stale;
        }
        let _ = tx.send(Some(Arc::new(res.clone())));
        return res;
    }
}

/// A walk with its trace (never coalesced: the trace is this walk's own).
pub async fn resolve_traced(
    env: &Env<'_>,
    name: &Name,
    qtype: RecordType,
    client: Option<IpAddr>,
) -> (Resolution, Vec<trace::Step>) {
    let mut walk = Walk::new(env, client, true);
    let res = walk.bounded(name, qtype).await;
    (res, walk.trace.take().unwrap_or_default())
}

/// The answer the cache alone gives, if it gives a whole one, without waiting on anything.
pub fn from_cache(
    env: &Env<'_>,
    name: &Name,
    qtype: RecordType,
    client: Option<IpAddr>,
) -> Option<Resolution> {
    let r = cache_only(env, name, qtype, client, false)?;
    env.instance
        .stats
        .cache_answers
        .fetch_add(1, Ordering::Relaxed);
    Some(r)
}

/// The cache's whole answer, stale entries allowed or not.
fn cache_only(
    env: &Env<'_>,
    name: &Name,
    qtype: RecordType,
    client: Option<IpAddr>,
    stale: bool,
) -> Option<Resolution> {
    let mut walk = Walk::new(env, client, false);
    walk.stale = stale;
    // With cache_only the walk never awaits real I/O, so one poll finishes it; a Pending here would
    // mean a bug, and is treated as "not cached".
    let fut = walk.resolve(name, qtype, true);
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) if r.reason.is_none() => Some(r),
        _ => None,
    }
}

use std::future::Future as _;
