//! The fleet's etcd side: `cluster push` writes a revision, every node's agent watches for new
//! ones, builds them with the reload builder and swaps them in (keeping the old snapshot when a
//! build fails), keeps a member key under a lease, and shares overrides and audit entries.
//!
//! Keys, under `[cluster] prefix` (default `/gslbd/`):
//! - `config/current`: the revision number nodes serve;
//! - `config/rev/<N>/meta`: the revision's file list (paths, sizes, SHA-256), who pushed it;
//! - `config/rev/<N>/file/<i>/<chunk>`: file `i`'s bytes in 512 KiB chunks (an etcd request is
//!   1.5 MiB at most by default);
//! - `members/<node>`: a node's state (JSON), attached to its lease, gone `lease_ttl` seconds
//!   after the node stops;
//! - `overrides`: the overrides in force (the runtime-control JSON list), changed by
//!   compare-and-swap on its mod revision;
//! - `audit/<unix ns>-<node>`: one audit line each, the newest 1,000 kept;
//! - `health/<endpoint id>/<node>`: a prober's observation of an endpoint (`{"ok":..,"error":..}`),
//!   written when it changes, attached to the prober's lease.
//!
//! The revision pointer moves in one transaction with the meta, and only if nobody else moved it
//! since the push read it: two pushes at once cannot both win.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::sync::Arc;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    Txn, TxnOp, WatchOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{ClusterConfig, FileMeta, Meta};
use crate::overrides::{Override, SharedOp};
use crate::server::Handle;

const CHUNK: usize = 512 * 1024;
/// Revisions kept in etcd (older ones are deleted by the push that passes them).
const KEEP_REVISIONS: u64 = 10;
/// Audit entries kept in etcd.
const AUDIT_KEEP: i64 = 1000;

struct Keys(String);

impl Keys {
    fn current(&self) -> String {
        format!("{}config/current", self.0)
    }
    fn rev(&self, n: u64) -> String {
        format!("{}config/rev/{n:012}/", self.0)
    }
    fn meta(&self, n: u64) -> String {
        format!("{}meta", self.rev(n))
    }
    fn chunk(&self, n: u64, file: usize, chunk: u32) -> String {
        format!("{}file/{file:05}/{chunk:06}", self.rev(n))
    }
    fn member(&self, node: &str) -> String {
        format!("{}members/{node}", self.0)
    }
    fn members(&self) -> String {
        format!("{}members/", self.0)
    }
    fn overrides(&self) -> String {
        format!("{}overrides", self.0)
    }
    fn audit(&self) -> String {
        format!("{}audit/", self.0)
    }
    fn health(&self) -> String {
        format!("{}health/", self.0)
    }
}

fn err(what: &str) -> impl Fn(etcd_client::Error) -> String + '_ {
    move |e| format!("etcd {what}: {e}")
}

/// Connects within the configured timeout (etcd-client connects lazily on some errors; the first
/// request is what proves the connection).
pub async fn connect(cfg: &ClusterConfig) -> Result<Client, String> {
    let t = Duration::from_millis(cfg.timeout_ms);
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(t)
        .with_timeout(t)
        .with_keep_alive(Duration::from_secs(2), t);
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        opts = opts.with_user(u.clone(), p.clone());
    }
    if let Some(t) = &cfg.tls {
        let read = |p: &Path| {
            let p = cfg.base.join(p);
            std::fs::read(&p).map_err(|e| format!("cluster.tls: {}: {e}", p.display()))
        };
        let mut tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&t.ca)?));
        if let (Some(c), Some(k)) = (&t.cert, &t.key) {
            tls = tls.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
        }
        opts = opts.with_tls(tls);
    }
    let eps = cfg.endpoints.clone();
    let mut client = tokio::time::timeout(t, Client::connect(eps, Some(opts)))
        .await
        .map_err(|_| format!("etcd {:?}: no answer in {t:?}", cfg.endpoints))?
        .map_err(err("connect"))?;
    tokio::time::timeout(
        t,
        client.get("/", Some(GetOptions::new().with_count_only())),
    )
    .await
    .map_err(|_| format!("etcd {:?}: no answer in {t:?}", cfg.endpoints))?
    .map_err(err("status"))?;
    Ok(client)
}

/// `gslbd cluster push`: checks `config_path` as `gslbd check` does, writes it and every file it
/// names as the next revision, and moves `config/current` to it. Returns the revision.
pub async fn push(cfg: &ClusterConfig, config_path: &Path, who: &str) -> Result<u64, String> {
    let path = config_path.to_path_buf();
    let max = cfg.max_revision_bytes;
    let collected = tokio::task::spawn_blocking(move || super::collect(&path, max))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|p| {
            format!(
                "{}\nrefused: the configuration does not check",
                p.join("\n")
            )
        })?;
    let keys = Keys(cfg.prefix.clone());
    let mut c = connect(cfg).await?;
    let cur = c.get(keys.current(), None).await.map_err(err("get"))?;
    let (old, guard) = match cur.kvs().first() {
        Some(kv) => (
            String::from_utf8_lossy(kv.value())
                .trim()
                .parse::<u64>()
                .ok(),
            Compare::mod_revision(keys.current(), CompareOp::Equal, kv.mod_revision()),
        ),
        None => (None, Compare::version(keys.current(), CompareOp::Equal, 0)),
    };
    let n = old.unwrap_or(0) + 1;
    // Leftovers of a push that failed before its transaction.
    c.delete(keys.rev(n), Some(DeleteOptions::new().with_prefix()))
        .await
        .map_err(err("delete"))?;
    let mut files = Vec::new();
    for (i, (p, bytes)) in collected.files.iter().enumerate() {
        let mut chunks = 0u32;
        for piece in bytes.chunks(CHUNK) {
            c.put(keys.chunk(n, i, chunks), piece.to_vec(), None)
                .await
                .map_err(err("put"))?;
            chunks += 1;
        }
        files.push(FileMeta {
            path: p.clone(),
            size: bytes.len() as u64,
            sha256: super::sha256_hex(bytes),
            chunks,
        });
    }
    let meta = Meta {
        revision: n,
        config: collected.config,
        files,
        who: who.to_string(),
        at: crate::overrides::now_secs(),
    };
    let txn = Txn::new().when([guard]).and_then([
        TxnOp::put(
            keys.meta(n),
            serde_json::to_vec(&meta).expect("meta serializes"),
            None,
        ),
        TxnOp::put(keys.current(), n.to_string(), None),
    ]);
    if !c.txn(txn).await.map_err(err("txn"))?.succeeded() {
        return Err("another push moved the revision meanwhile: push again".into());
    }
    if n > KEEP_REVISIONS {
        let from = format!("{}config/rev/", cfg.prefix);
        c.delete(
            from,
            Some(DeleteOptions::new().with_range(keys.rev(n - KEEP_REVISIONS))),
        )
        .await
        .map_err(err("delete"))?;
    }
    Ok(n)
}

/// Reads revision `n` whole and checks every file against its meta.
async fn fetch(c: &mut Client, keys: &Keys, n: u64) -> Result<(Meta, Vec<Vec<u8>>), String> {
    let r = c.get(keys.meta(n), None).await.map_err(err("get"))?;
    let kv = r
        .kvs()
        .first()
        .ok_or_else(|| format!("revision {n}: no meta in etcd"))?;
    let meta: Meta =
        serde_json::from_slice(kv.value()).map_err(|e| format!("revision {n}: meta: {e}"))?;
    let mut files = Vec::with_capacity(meta.files.len());
    for (i, f) in meta.files.iter().enumerate() {
        let mut bytes = Vec::with_capacity(f.size as usize);
        for k in 0..f.chunks {
            let r = c.get(keys.chunk(n, i, k), None).await.map_err(err("get"))?;
            let kv = r
                .kvs()
                .first()
                .ok_or_else(|| format!("revision {n}: {}: chunk {k} missing", f.path))?;
            bytes.extend_from_slice(kv.value());
        }
        if bytes.len() as u64 != f.size || super::sha256_hex(&bytes) != f.sha256 {
            return Err(format!(
                "revision {n}: {}: size or SHA-256 differs from the meta",
                f.path
            ));
        }
        files.push(bytes);
    }
    Ok((meta, files))
}

/// The overrides as kept in etcd.
#[derive(Serialize, Deserialize, Default)]
struct Shared {
    next_id: u64,
    overrides: Vec<Override>,
}

/// What `cluster status` shows.
pub async fn status(cfg: &ClusterConfig) -> Result<Value, String> {
    let keys = Keys(cfg.prefix.clone());
    let mut c = connect(cfg).await?;
    let cur = c.get(keys.current(), None).await.map_err(err("get"))?;
    let current = cur.kvs().first().and_then(|kv| {
        String::from_utf8_lossy(kv.value())
            .trim()
            .parse::<u64>()
            .ok()
    });
    let meta = match current {
        Some(n) => c
            .get(keys.meta(n), None)
            .await
            .map_err(err("get"))?
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<Meta>(kv.value()).ok()),
        None => None,
    };
    let r = c
        .get(keys.members(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(err("get"))?;
    let members: Vec<Value> = r
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect();
    Ok(json!({
        "revision": current,
        "pushed_by": meta.as_ref().map(|m| m.who.clone()),
        "pushed_at": meta.as_ref().map(|m| crate::overrides::rfc3339(m.at)),
        "members": members,
        "problems": divergence(current, &members),
    }))
}

/// What `cluster status` flags: nodes on another revision, failed builds, different geo data.
pub fn divergence(current: Option<u64>, members: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for m in members {
        let node = m["node"].as_str().unwrap_or("?");
        if m["revision"].as_u64() != current {
            out.push(format!(
                "{node}: serves revision {} (current {})",
                m["revision"],
                current.map_or("none".into(), |n| n.to_string())
            ));
        }
        if m["state"] != "ok" {
            out.push(format!(
                "{node}: {}: {}",
                m["state"].as_str().unwrap_or("?"),
                m["error"].as_str().unwrap_or("")
            ));
        }
    }
    let geos: Vec<&Value> = members.iter().map(|m| &m["geo"]).collect();
    if geos.windows(2).any(|w| w[0] != w[1]) {
        out.push("geo databases differ between nodes (see each member's geo)".into());
    }
    out
}

/// A node's view, written to its member key.
struct NodeState {
    serving: Option<u64>,
    wanted: Option<u64>,
    /// A revision whose build failed: not tried again until another is pushed.
    failed: Option<u64>,
    state: &'static str,
    error: Option<String>,
}

struct Agent {
    handle: Handle,
    probes: Arc<super::FleetProbes>,
    cfg: ClusterConfig,
    keys: Keys,
    cache: PathBuf,
    node: String,
    addresses: Vec<String>,
    started: u64,
}

/// Starts a node's agent: runs until the process ends, reconnecting to etcd with backoff. While
/// etcd is unreachable the node serves what it has (revision, overrides) and reports degraded.
pub fn spawn(handle: Handle, bootstrap: &Path, cfg: ClusterConfig, addresses: Vec<String>) {
    let (ops_tx, ops_rx) = mpsc::unbounded_channel();
    handle.health().overrides().set_mirror(ops_tx);
    let (audit_tx, audit_rx) = mpsc::channel(1024);
    handle.health().audit().set_mirror(audit_tx);
    let node = cfg.node_name();
    let _ = super::NODE.set(node.clone());
    let (obs_tx, obs_rx) = mpsc::unbounded_channel();
    let probes = Arc::new(super::FleetProbes::new(
        node,
        cfg.probe_replicas,
        cfg.health_policy,
        obs_tx,
    ));
    handle.health().set_share(probes.clone());
    let agent = Agent {
        probes,
        cache: super::cache_dir(&cfg, bootstrap),
        keys: Keys(cfg.prefix.clone()),
        node: cfg.node_name(),
        cfg,
        handle,
        addresses,
        started: crate::overrides::now_secs(),
    };
    super::ACTIVE.store(true, Ordering::Relaxed);
    tokio::spawn(run(agent, ops_rx, audit_rx, obs_rx));
}

type Observation = (String, bool, Option<String>);

async fn run(
    a: Agent,
    mut ops: mpsc::UnboundedReceiver<SharedOp>,
    mut audit: mpsc::Receiver<String>,
    mut obs: mpsc::UnboundedReceiver<Observation>,
) {
    let mut st = NodeState {
        serving: super::current(&a.cache),
        wanted: None,
        failed: None,
        state: "ok",
        error: None,
    };
    super::REVISION.store(st.serving.unwrap_or(0), Ordering::Relaxed);
    let mut pending: Vec<SharedOp> = Vec::new();
    let mut backoff = Duration::from_millis(500);
    loop {
        let ended = session(&a, &mut st, &mut ops, &mut audit, &mut obs, &mut pending).await;
        // Degraded: every node probes its pools itself until it is back.
        a.probes.connected.store(false, Ordering::Relaxed);
        match ended {
            Ok(()) => return,
            Err(e) => {
                if super::CONNECTED.swap(false, Ordering::Relaxed) {
                    super::DISCONNECTS.fetch_add(1, Ordering::Relaxed);
                }
                warn!("cluster: {e}; serving what this node has (degraded)");
            }
        }
        // Local override changes made meanwhile wait for the next session.
        let deadline = tokio::time::sleep(backoff);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                op = ops.recv() => match op { Some(op) => pending.push(op), None => return },
                _ = audit.recv() => {}
                _ = obs.recv() => {}
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn session(
    a: &Agent,
    st: &mut NodeState,
    ops: &mut mpsc::UnboundedReceiver<SharedOp>,
    audit: &mut mpsc::Receiver<String>,
    obs: &mut mpsc::UnboundedReceiver<Observation>,
    pending: &mut Vec<SharedOp>,
) -> Result<(), String> {
    let mut c = connect(&a.cfg).await?;
    let lease = c
        .lease_grant(a.cfg.lease_ttl as i64, None)
        .await
        .map_err(err("lease"))?
        .id();
    let (mut keeper, mut alive) = c.lease_keep_alive(lease).await.map_err(err("lease"))?;
    // Changes made while etcd was away go first: they are newer than what etcd holds.
    while let Some(op) = pending.first().cloned() {
        apply_op(&mut c, &a.keys, &op).await?;
        pending.remove(0);
    }
    let mut cur_watch = c
        .watch(a.keys.current(), None)
        .await
        .map_err(err("watch"))?;
    let mut ov_watch = c
        .watch(a.keys.overrides(), None)
        .await
        .map_err(err("watch"))?;
    let prefix = Some(WatchOptions::new().with_prefix());
    let mut members_watch = c
        .watch(a.keys.members(), prefix.clone())
        .await
        .map_err(err("watch"))?;
    let mut health_watch = c
        .watch(a.keys.health(), prefix)
        .await
        .map_err(err("watch"))?;
    sync_overrides(&mut c, a).await?;
    sync_revision(&mut c, a, st).await?;
    put_member(&mut c, a, st, lease).await?;
    load_members(&mut c, a).await?;
    load_observations(&mut c, a).await?;
    a.probes.resend();
    a.probes.connected.store(true, Ordering::Relaxed);
    super::CONNECTED.store(true, Ordering::Relaxed);
    info!(node = %a.node, "cluster: joined");
    let mut tick = tokio::time::interval(Duration::from_millis(a.cfg.lease_ttl * 1000 / 3));
    let mut audits = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                keeper.keep_alive().await.map_err(err("keep-alive"))?;
            }
            m = alive.message() => {
                let m = m.map_err(err("keep-alive"))?.ok_or("etcd ended the lease stream")?;
                if m.ttl() <= 0 {
                    return Err("the member lease expired".into());
                }
            }
            m = cur_watch.message() => {
                m.map_err(err("watch"))?.ok_or("etcd ended the watch")?;
                sync_revision(&mut c, a, st).await?;
                put_member(&mut c, a, st, lease).await?;
            }
            m = ov_watch.message() => {
                m.map_err(err("watch"))?.ok_or("etcd ended the watch")?;
                sync_overrides(&mut c, a).await?;
            }
            m = members_watch.message() => {
                m.map_err(err("watch"))?.ok_or("etcd ended the watch")?;
                load_members(&mut c, a).await?;
            }
            m = health_watch.message() => {
                let m = m.map_err(err("watch"))?.ok_or("etcd ended the watch")?;
                for e in m.events() {
                    if let Some(kv) = e.kv() {
                        note_observation(a, kv.key(), (e.event_type() == EventType::Put).then(|| kv.value()));
                    }
                }
            }
            o = obs.recv() => {
                let Some((id, ok, error)) = o else { return Ok(()) };
                let key = format!("{}{id}/{}", a.keys.health(), a.node);
                let v = json!({"ok": ok, "error": error});
                c.put(key, v.to_string(), Some(PutOptions::new().with_lease(lease)))
                    .await
                    .map_err(err("put"))?;
            }
            op = ops.recv() => {
                let Some(op) = op else { return Ok(()) };
                if let Err(e) = apply_op(&mut c, &a.keys, &op).await {
                    pending.push(op);
                    return Err(e);
                }
            }
            line = audit.recv() => {
                let Some(line) = line else { return Ok(()) };
                let key = format!("{}{:020}-{}", a.keys.audit(), now_nanos(), a.node);
                c.put(key, line, None).await.map_err(err("put"))?;
                audits += 1;
                if audits % 50 == 1 {
                    prune_audit(&mut c, &a.keys).await?;
                }
            }
        }
    }
}

/// The live members (keys under `members/`), for the probe sharing.
async fn load_members(c: &mut Client, a: &Agent) -> Result<(), String> {
    let r = c
        .get(
            a.keys.members(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .map_err(err("get"))?;
    let strip = a.keys.members();
    let mut names: Vec<String> = r
        .kvs()
        .iter()
        .filter_map(|kv| Some(kv.key_str().ok()?.strip_prefix(&strip)?.to_string()))
        .collect();
    names.sort();
    *a.probes
        .members
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = names;
    Ok(())
}

async fn load_observations(c: &mut Client, a: &Agent) -> Result<(), String> {
    let r = c
        .get(a.keys.health(), Some(GetOptions::new().with_prefix()))
        .await
        .map_err(err("get"))?;
    a.probes
        .observations
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    for kv in r.kvs() {
        note_observation(a, kv.key(), Some(kv.value()));
    }
    Ok(())
}

/// One `health/<id>/<node>` key put (Some(value)) or deleted.
fn note_observation(a: &Agent, key: &[u8], value: Option<&[u8]>) {
    let Some(rest) = std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix(&a.keys.health()))
    else {
        return;
    };
    let Some((id, node)) = rest.split_once('/') else {
        return;
    };
    let mut obs = a
        .probes
        .observations
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match value.and_then(|v| serde_json::from_slice::<Value>(v).ok()) {
        Some(v) => {
            obs.entry(id.to_string()).or_default().insert(
                node.to_string(),
                (
                    v["ok"].as_bool().unwrap_or(false),
                    v["error"].as_str().map(str::to_string),
                ),
            );
        }
        None => {
            if let Some(m) = obs.get_mut(id) {
                m.remove(node);
            }
        }
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

async fn prune_audit(c: &mut Client, keys: &Keys) -> Result<(), String> {
    let n = c
        .get(
            keys.audit(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .map_err(err("get"))?
        .count();
    if n <= AUDIT_KEEP {
        return Ok(());
    }
    // Keys sort by time: the first n - AUDIT_KEEP are the oldest.
    let r = c
        .get(
            keys.audit(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(n - AUDIT_KEEP),
            ),
        )
        .await
        .map_err(err("get"))?;
    if let Some(last) = r.kvs().last() {
        let mut end = last.key().to_vec();
        end.push(0);
        c.delete(keys.audit(), Some(DeleteOptions::new().with_range(end)))
            .await
            .map_err(err("delete"))?;
    }
    Ok(())
}

async fn put_member(c: &mut Client, a: &Agent, st: &NodeState, lease: i64) -> Result<(), String> {
    let snap = a.handle.snapshot();
    let v = json!({
        "node": a.node,
        "addresses": a.addresses,
        "version": env!("CARGO_PKG_VERSION"),
        "revision": st.serving,
        "wanted": st.wanted,
        "state": st.state,
        "error": st.error,
        "config_hash": snap.admin.config_hash,
        "geo": super::local_files(),
        "started": crate::overrides::rfc3339(a.started),
        "updated": crate::overrides::rfc3339(crate::overrides::now_secs()),
    });
    c.put(
        a.keys.member(&a.node),
        v.to_string(),
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .map_err(err("put"))?;
    Ok(())
}

/// Serves the revision `config/current` names, if it is new: fetched into the cache, built by the
/// reload path, swapped in; on a failed build the previous one stays and `current` points back.
async fn sync_revision(c: &mut Client, a: &Agent, st: &mut NodeState) -> Result<(), String> {
    let r = c.get(a.keys.current(), None).await.map_err(err("get"))?;
    let Some(n) = r.kvs().first().and_then(|kv| {
        String::from_utf8_lossy(kv.value())
            .trim()
            .parse::<u64>()
            .ok()
    }) else {
        return Ok(());
    };
    st.wanted = Some(n);
    if st.serving == Some(n) || st.failed == Some(n) {
        return Ok(());
    }
    let (meta, files) = match fetch(c, &a.keys, n).await {
        Ok(x) => x,
        Err(e) => {
            st.state = "fetch-failed";
            st.error = Some(e.clone());
            warn!("cluster: {e}");
            return Ok(());
        }
    };
    let cache = a.cache.clone();
    let handle = a.handle.clone();
    let prev = super::current(&cache);
    let outcome = tokio::task::spawn_blocking(move || -> Result<(), String> {
        std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
        super::install(&cache, &meta, &files).map_err(|e| format!("{}: {e}", cache.display()))?;
        super::set_current(&cache, n).map_err(|e| e.to_string())?;
        match handle.reload_as(&format!("cluster revision {n}")) {
            Ok(_) => {
                super::prune(&cache, 3);
                Ok(())
            }
            Err(e) => {
                // Back to what serves, so a restart or SIGHUP builds the good one again.
                let _ = match prev {
                    Some(p) => super::set_current(&cache, p),
                    None => std::fs::remove_file(cache.join("current")),
                };
                Err(e.problems.join("\n"))
            }
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    match outcome {
        Ok(()) => {
            info!(revision = n, "cluster: serving revision");
            st.serving = Some(n);
            st.failed = None;
            st.state = "ok";
            st.error = None;
            super::REVISION.store(n, Ordering::Relaxed);
        }
        Err(e) => {
            warn!(
                revision = n,
                "cluster: revision refused, still serving the previous:\n{e}"
            );
            super::FAILURES.fetch_add(1, Ordering::Relaxed);
            st.failed = Some(n);
            st.state = "build-failed";
            let mut e = e;
            e.truncate(2000);
            st.error = Some(e);
        }
    }
    Ok(())
}

async fn read_shared(c: &mut Client, keys: &Keys) -> Result<(Shared, Compare), String> {
    let r = c.get(keys.overrides(), None).await.map_err(err("get"))?;
    Ok(match r.kvs().first() {
        Some(kv) => (
            serde_json::from_slice(kv.value()).unwrap_or_default(),
            Compare::mod_revision(keys.overrides(), CompareOp::Equal, kv.mod_revision()),
        ),
        None => (
            Shared::default(),
            Compare::version(keys.overrides(), CompareOp::Equal, 0),
        ),
    })
}

/// Applies one local change to the shared list (compare-and-swap, retried when another node
/// changed it meanwhile).
async fn apply_op(c: &mut Client, keys: &Keys, op: &SharedOp) -> Result<(), String> {
    for _ in 0..20 {
        let (mut shared, guard) = read_shared(c, keys).await?;
        match op {
            SharedOp::Add(o) => {
                shared.overrides.retain(|x| !x.same_target(o));
                let mut o = o.clone();
                // Ids are the fleet's: one taken elsewhere gets the next free one.
                if o.id <= shared.next_id && shared.overrides.iter().any(|x| x.id == o.id) {
                    o.id = shared.next_id + 1;
                }
                shared.next_id = shared.next_id.max(o.id);
                shared.overrides.push(o);
            }
            SharedOp::Remove(gone) => {
                shared
                    .overrides
                    .retain(|x| !gone.iter().any(|g| g.same_target(x)));
            }
            SharedOp::Replace(list, next_id) => {
                shared.overrides = list.clone();
                shared.next_id = shared.next_id.max(*next_id);
            }
        }
        let txn = Txn::new().when([guard]).and_then([TxnOp::put(
            keys.overrides(),
            serde_json::to_vec(&shared).expect("overrides serialize"),
            None,
        )]);
        if c.txn(txn).await.map_err(err("txn"))?.succeeded() {
            return Ok(());
        }
    }
    Err("overrides: too many concurrent changes".into())
}

/// Makes the local overrides those of etcd; an empty etcd is seeded with this node's list.
async fn sync_overrides(c: &mut Client, a: &Agent) -> Result<(), String> {
    let r = c.get(a.keys.overrides(), None).await.map_err(err("get"))?;
    let ov = a.handle.health().overrides();
    match r.kvs().first() {
        Some(kv) => {
            let shared: Shared = serde_json::from_slice(kv.value())
                .map_err(|e| format!("{}: {e}", a.keys.overrides()))?;
            ov.replace_all(shared.overrides, shared.next_id);
        }
        None => {
            let (list, next) = ov.snapshot_list();
            apply_op(c, &a.keys, &SharedOp::Replace(list, next)).await?;
        }
    }
    Ok(())
}
