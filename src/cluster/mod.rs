//! A fleet of gslbd nodes sharing one configuration through etcd (README "Running more than one
//! node"). This part is always compiled: the `[cluster]` settings, the local cache of
//! configuration revisions a node serves from, and the `ZoneFs` a revision is read through. The
//! etcd side (pushing revisions, watching them, membership, shared overrides and audit) is in
//! `etcd.rs`, built with the `cluster` feature (its gRPC code generation needs `protoc`).
//!
//! A node's own file (the *bootstrap*) holds `[cluster]` and what belongs to the machine: its
//! listeners, `[http]`, `[admin]`, `[server]`, `[resolver]`. A *revision* is a whole configuration
//! with the files it names (zones, CSVs), pushed by `gslbd cluster push`; a node serves the
//! revision with its own sections put over the revision's. Revisions are written under
//! `cache_dir/<N>/` and `cache_dir/current` names the one to serve, so a node restarts on its
//! last good revision with etcd down, and a reload (SIGHUP) reads the same files again.
//!
//! No sockets here: reading the cache is file I/O during a build, like reading zone files.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};
use crate::zone::reader::{DiskFs, ZoneFs};

#[cfg(feature = "cluster")]
pub mod etcd;

use std::sync::atomic::{AtomicBool, AtomicU64};

/// This process's node name in a fleet (health probes name it in their User-Agent).
pub static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A cluster agent runs in this process (the metrics below are exported only then).
pub static ACTIVE: AtomicBool = AtomicBool::new(false);
/// etcd answers the agent now; false: degraded (serving what the node has).
pub static CONNECTED: AtomicBool = AtomicBool::new(false);
/// The revision served (0: none, the node's own file).
pub static REVISION: AtomicU64 = AtomicU64::new(0);
/// Revisions that failed to build here.
pub static FAILURES: AtomicU64 = AtomicU64::new(0);
/// Sessions with etcd lost.
pub static DISCONNECTS: AtomicU64 = AtomicU64::new(0);

/// The cluster's lines of /metrics (none without a cluster).
pub fn render_metrics(out: &mut String) {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    if !ACTIVE.load(Relaxed) {
        return;
    }
    let _ = write!(
        out,
        "# HELP gslbd_cluster_connected 1 while etcd answers this node; 0: degraded, serving what it has.\n\
         # TYPE gslbd_cluster_connected gauge\n\
         gslbd_cluster_connected {}\n\
         # HELP gslbd_cluster_revision The cluster configuration revision served (0: the node's own file).\n\
         # TYPE gslbd_cluster_revision gauge\n\
         gslbd_cluster_revision {}\n\
         # HELP gslbd_cluster_revision_failures_total Revisions that failed to build on this node.\n\
         # TYPE gslbd_cluster_revision_failures_total counter\n\
         gslbd_cluster_revision_failures_total {}\n\
         # HELP gslbd_cluster_disconnects_total Sessions with etcd lost.\n\
         # TYPE gslbd_cluster_disconnects_total counter\n\
         gslbd_cluster_disconnects_total {}\n",
        u8::from(CONNECTED.load(Relaxed)),
        REVISION.load(Relaxed),
        FAILURES.load(Relaxed),
        DISCONNECTS.load(Relaxed),
    );
}

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd client URLs, e.g. `["http://10.0.0.1:2379", ...]`.
    pub endpoints: Vec<String>,
    /// Every key gslbd writes starts with this.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// This node's name in the member list (default: the host name).
    #[serde(default)]
    pub node: Option<String>,
    /// Seconds a node's member key outlives the node (etcd lease TTL).
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: u64,
    /// Where revisions are kept (relative to the bootstrap file's folder).
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Each etcd request's deadline, milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// TLS to etcd (`https://` endpoints): the CA that signed etcd's certificate, and a client
    /// certificate when etcd asks for one (`--client-cert-auth`). Paths are relative to the file.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// The folder of the file this section came from (relative paths resolve against it).
    #[serde(skip)]
    pub base: PathBuf,
    /// etcd authentication (optional).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The largest revision `cluster push` writes (the TOML and every file it names). Big zones
    /// belong in zone transfers, not in etcd (whose requests are 1.5 MiB by default).
    #[serde(default = "default_max_revision_bytes")]
    pub max_revision_bytes: u64,
    /// How many nodes probe each health-checked endpoint (rendezvous hashing over live members).
    #[serde(default = "default_probe_replicas")]
    pub probe_replicas: usize,
    /// How the probers' observations decide: "quorum" (down when most of them fail), "any" (up
    /// while any succeeds), "all" (down when any fails).
    #[serde(default)]
    pub health_policy: Policy,
}

/// `[cluster] tls`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca: PathBuf,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    #[default]
    Quorum,
    Any,
    All,
}

fn default_probe_replicas() -> usize {
    2
}

fn default_prefix() -> String {
    "/gslbd/".into()
}
fn default_lease_ttl() -> u64 {
    5
}
fn default_cache_dir() -> PathBuf {
    PathBuf::from("cluster-cache")
}
fn default_timeout_ms() -> u64 {
    3000
}
fn default_max_revision_bytes() -> u64 {
    32 << 20
}

impl ClusterConfig {
    /// The problems `check` reports about the section itself.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.endpoints.is_empty() {
            p.push("cluster.endpoints: at least one etcd endpoint".to_string());
        }
        for e in &self.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) && e.contains("://") {
                p.push(format!("cluster.endpoints: {e}: http:// or host:port"));
            }
        }
        if !self.prefix.starts_with('/') || !self.prefix.ends_with('/') {
            p.push(format!(
                "cluster.prefix = {:?}: must start and end with /",
                self.prefix
            ));
        }
        if !(1..=300).contains(&self.lease_ttl) {
            p.push(format!(
                "cluster.lease_ttl = {}: 1 to 300 seconds",
                self.lease_ttl
            ));
        }
        if !(1..=16).contains(&self.probe_replicas) {
            p.push(format!(
                "cluster.probe_replicas = {}: 1 to 16",
                self.probe_replicas
            ));
        }
        if let Some(t) = &self.tls {
            if t.cert.is_some() != t.key.is_some() {
                p.push("cluster.tls: cert and key go together".to_string());
            }
            if let Some(e) = self.endpoints.iter().find(|e| !e.starts_with("https://")) {
                p.push(format!(
                    "cluster.endpoints: {e}: with cluster.tls, https://"
                ));
            }
        }
        if self.user.is_some() != self.password.is_some() {
            p.push("cluster.user and cluster.password go together".to_string());
        }
        if let Some(n) = &self.node
            && (n.is_empty() || n.contains('/') || n.len() > 64)
        {
            p.push(format!("cluster.node = {n:?}: 1 to 64 characters, no /"));
        }
        p
    }

    /// The node name: `node`, else the host name.
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(hostname)
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "gslbd".into())
}

/// The top-level sections a node's own file keeps for itself over a revision's.
pub const NODE_LOCAL: &[&str] = &["cluster", "listener", "http", "admin", "server", "resolver"];

/// What `cluster push` stores with a revision, and the node keeps beside the files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub revision: u64,
    /// The configuration file, relative to the revision's tree.
    pub config: String,
    pub files: Vec<FileMeta>,
    pub who: String,
    /// Unix seconds.
    pub at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileMeta {
    /// Relative to the revision's tree; no `..`.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub chunks: u32,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A revision's tree path is plain: relative, no `..`, no empty or `.` parts.
pub fn plain_relative(p: &str) -> bool {
    // By the string's own parts: `Path::components` drops a `.` in the middle and repeated `/`.
    !p.is_empty() && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// The cache folder of a bootstrap config.
pub fn cache_dir(cfg: &ClusterConfig, bootstrap: &Path) -> PathBuf {
    bootstrap
        .parent()
        .unwrap_or(Path::new(""))
        .join(&cfg.cache_dir)
}

/// The revision `cache/current` names, if any.
pub fn current(cache: &Path) -> Option<u64> {
    std::fs::read_to_string(cache.join("current"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Points `cache/current` at revision `n` (atomically: the file is replaced whole).
pub fn set_current(cache: &Path, n: u64) -> io::Result<()> {
    crate::health::write_atomically(&cache.join("current"), &format!("{n}\n"))
}

/// The meta of a cached revision.
pub fn cached_meta(cache: &Path, n: u64) -> Option<Meta> {
    let bytes = std::fs::read(cache.join(n.to_string()).join("meta.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes revision `meta` with its files' contents into `cache/<N>/` (a temporary folder renamed
/// into place, so a folder that exists is whole). Does not move `current`.
pub fn install(cache: &Path, meta: &Meta, files: &[Vec<u8>]) -> io::Result<PathBuf> {
    let dir = cache.join(meta.revision.to_string());
    if cached_meta(cache, meta.revision).as_ref() == Some(meta) {
        return Ok(dir);
    }
    let tmp = cache.join(format!(".{}.tmp", meta.revision));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("tree"))?;
    for (f, bytes) in meta.files.iter().zip(files) {
        if !plain_relative(&f.path) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("revision {}: file path {:?}", meta.revision, f.path),
            ));
        }
        let p = tmp.join("tree").join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, bytes)?;
    }
    std::fs::write(
        tmp.join("meta.json"),
        serde_json::to_vec_pretty(meta).expect("meta serializes"),
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir)?;
    Ok(dir)
}

/// Removes cached revisions other than the newest `keep` and `current`.
pub fn prune(cache: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return;
    };
    let mut revs: Vec<u64> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    revs.sort_unstable();
    let cur = current(cache);
    let old = revs.len().saturating_sub(keep);
    for n in &revs[..old] {
        if Some(*n) != cur {
            let _ = std::fs::remove_dir_all(cache.join(n.to_string()));
        }
    }
}

/// Files read from the node's own folder rather than the revision (geo databases stay per node,
/// as `geoipupdate` keeps them): path -> sha256, for the member key. Process-wide: one node per
/// process.
static LOCAL_FILES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

pub fn local_files() -> BTreeMap<String, String> {
    LOCAL_FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Reads a revision: a file the revision has comes from its tree; one it lacks (a geo database
/// left out of the push) from the same relative place beside the bootstrap file.
struct RevisionFs {
    tree: PathBuf,
    local: PathBuf,
    /// The node file's folder: local files are named relative to it in the member key, so nodes
    /// laid out alike compare equal.
    boot: PathBuf,
}

impl RevisionFs {
    fn pick(&self, path: &Path) -> PathBuf {
        if path.exists() {
            return path.to_path_buf();
        }
        match path.strip_prefix(&self.tree) {
            Ok(rel) => self.local.join(rel),
            Err(_) => path.to_path_buf(),
        }
    }

    fn note_local(&self, asked: &Path, used: &Path, bytes: &[u8]) {
        if asked != used || !used.starts_with(&self.tree) {
            let name = used.strip_prefix(&self.boot).unwrap_or(used);
            LOCAL_FILES
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(name.display().to_string(), sha256_hex(bytes));
        }
    }
}

impl ZoneFs for RevisionFs {
    fn exists(&self, path: &Path) -> bool {
        self.pick(path).exists()
    }
    fn read(&self, path: &Path) -> io::Result<String> {
        let used = self.pick(path);
        let text = DiskFs.read(&used)?;
        self.note_local(path, &used, text.as_bytes());
        Ok(text)
    }
    fn read_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        let used = self.pick(path);
        let bytes = DiskFs.read_bytes(&used)?;
        self.note_local(path, &used, &bytes);
        Ok(bytes)
    }
    fn size(&self, path: &Path) -> Option<u64> {
        DiskFs.size(&self.pick(path))
    }
}

/// Loads what a cluster node serves: the cached revision `current` names with the bootstrap's
/// node-local sections over it, or the bootstrap file alone before any revision arrived.
pub fn load(bootstrap: &Path) -> Result<(Config, Box<dyn ZoneFs>, PathBuf), ConfigError> {
    let read = |p: &Path| {
        DiskFs.read(p).map_err(|source| ConfigError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let boot_text = read(bootstrap)?;
    let boot = crate::config::parse(&boot_text, bootstrap)?;
    let boot_dir = bootstrap.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut boot = boot;
    if let Some(c) = &mut boot.cluster {
        c.base = boot_dir.clone();
    }
    let Some(cluster) = boot.cluster.clone() else {
        return Err(ConfigError::Parse {
            path: bootstrap.to_path_buf(),
            message: " a cluster node's file needs a [cluster] section".into(),
        });
    };
    let cache = cache_dir(&cluster, bootstrap);
    let Some((n, meta)) = current(&cache).and_then(|n| Some((n, cached_meta(&cache, n)?))) else {
        // No revision yet: the node's own file alone. Its listeners name the fleet's zones,
        // which it does not have: they serve nothing (REFUSED) until the first revision.
        if boot.zones.is_empty() {
            boot.listeners.iter_mut().for_each(|l| l.zones.clear());
        }
        return Ok((boot, Box::new(DiskFs), boot_dir));
    };
    let tree = cache.join(n.to_string()).join("tree");
    let path = tree.join(&meta.config);
    let mut config = crate::config::parse(&read(&path)?, &path)?;
    // Which node-local sections the bootstrap file has: present ones replace the revision's.
    let present: toml::Table = toml::from_str(&boot_text).unwrap_or_default();
    let has = |k: &str| present.contains_key(k);
    config.cluster = boot.cluster;
    if has("listener") {
        config.listeners = boot.listeners;
    }
    if has("http") {
        config.http = boot.http;
    }
    if has("admin") {
        config.admin = boot.admin;
    }
    if has("server") {
        config.server = boot.server;
    }
    if has("resolver") {
        config.resolver = boot.resolver;
    }
    let base = path.parent().unwrap_or(&tree).to_path_buf();
    let local = boot_dir.join(base.strip_prefix(&tree).unwrap_or(Path::new("")));
    Ok((
        config,
        Box::new(RevisionFs {
            tree: base.clone(),
            local,
            boot: boot_dir,
        }),
        base,
    ))
}

/// The fleet's share of health probing (`health::ProbeShare`): every endpoint is probed by the
/// `replicas` live members that rank highest for it by rendezvous hashing (so a member joining
/// or leaving moves only its own endpoints), and every node decides from those probers'
/// observations by `policy`. Observations come from etcd (`etcd.rs` fills `observations` and
/// `members` from its watches); this node's own go out through `tx` when they change. No I/O.
#[derive(Debug)]
pub struct FleetProbes {
    pub node: String,
    pub replicas: usize,
    pub policy: Policy,
    /// etcd answers now; while false every node probes everything itself (degraded).
    pub connected: AtomicBool,
    /// Live members (their lease-bound keys), sorted.
    pub members: Mutex<Vec<String>>,
    /// Endpoint id -> node -> its observation.
    pub observations: Mutex<BTreeMap<String, BTreeMap<String, Observed>>>,
    /// What this node last sent per endpoint (an observation is written when it changes).
    sent: Mutex<BTreeMap<String, bool>>,
    tx: tokio::sync::mpsc::UnboundedSender<(String, bool, Option<String>)>,
}

/// One prober's observation of an endpoint: up, and the error when not.
pub type Observed = (bool, Option<String>);

/// The etcd key part for an endpoint key (keys hold addresses and paths).
pub fn endpoint_id(key: &str) -> String {
    sha256_hex(key.as_bytes())[..24].to_string()
}

fn rendezvous(node: &str, key: &str) -> u64 {
    use std::hash::Hasher as _;
    // Fixed keys: every node must rank the same way.
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x6773_6c62_6421, 0x7072_6f62_6573);
    h.write(node.as_bytes());
    h.write_u8(0);
    h.write(key.as_bytes());
    h.finish()
}

impl FleetProbes {
    pub fn new(
        node: String,
        replicas: usize,
        policy: Policy,
        tx: tokio::sync::mpsc::UnboundedSender<(String, bool, Option<String>)>,
    ) -> FleetProbes {
        FleetProbes {
            node,
            replicas,
            policy,
            connected: AtomicBool::new(false),
            members: Mutex::new(Vec::new()),
            observations: Mutex::new(BTreeMap::new()),
            sent: Mutex::new(BTreeMap::new()),
            tx,
        }
    }

    /// The members that probe `key` (None: this node is not among the live members yet, or
    /// etcd is away: it probes everything itself).
    pub fn probers(&self, key: &str) -> Option<Vec<String>> {
        if !self.connected.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let members = self
            .members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !members.contains(&self.node) {
            return None;
        }
        let mut ranked: Vec<(u64, &String)> =
            members.iter().map(|m| (rendezvous(m, key), m)).collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        Some(
            ranked
                .into_iter()
                .take(self.replicas)
                .map(|(_, m)| m.clone())
                .collect(),
        )
    }

    /// Forgets what was sent (a new etcd session: the old lease took the keys with it).
    pub fn resend(&self) {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

impl crate::health::ProbeShare for FleetProbes {
    fn probes(&self, key: &str) -> bool {
        match self.probers(key) {
            None => true,
            Some(p) => {
                let mine = p.contains(&self.node);
                if !mine {
                    // Ownership moved away: when it comes back, report afresh.
                    self.sent
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(key);
                }
                mine
            }
        }
    }

    fn observed(&self, key: &str, outcome: &Result<(), String>) {
        let ok = outcome.is_ok();
        let id = endpoint_id(key);
        self.observations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.clone())
            .or_default()
            .insert(self.node.clone(), (ok, outcome.clone().err()));
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sent.get(key) != Some(&ok) {
            sent.insert(key.to_string(), ok);
            let _ = self.tx.send((id, ok, outcome.clone().err()));
        }
    }

    fn verdict(&self, key: &str) -> Option<Result<(), String>> {
        let probers = self.probers(key)?;
        let obs = self
            .observations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let of_key = obs.get(&endpoint_id(key))?;
        // Only the current probers' observations count: a node that stopped probing this
        // endpoint may have left an old one behind under its live lease.
        let fresh: Vec<&(bool, Option<String>)> =
            probers.iter().filter_map(|p| of_key.get(p)).collect();
        if fresh.is_empty() {
            return None;
        }
        let failed = fresh.iter().filter(|(ok, _)| !ok).count();
        let down = match self.policy {
            Policy::Quorum => failed * 2 > fresh.len(),
            Policy::Any => failed == fresh.len(),
            Policy::All => failed > 0,
        };
        if down {
            let why = fresh
                .iter()
                .find_map(|(_, e)| e.clone())
                .unwrap_or_else(|| "failed".into());
            Some(Err(format!(
                "{failed} of {} probing nodes: {why}",
                fresh.len()
            )))
        } else {
            Some(Ok(()))
        }
    }
}

/// What a push collects: every file a build of `config_path` reads, as paths relative to one
/// tree (the deepest folder holding them all), except geo databases (`.mmdb`), which stay per node.
#[derive(Debug)]
pub struct Collected {
    pub config: String,
    pub files: Vec<(String, Vec<u8>)>,
    pub local: Vec<PathBuf>,
}

/// A `ZoneFs` that records what a build reads.
#[derive(Default)]
pub struct Recording {
    pub seen: Mutex<Vec<PathBuf>>,
}

impl ZoneFs for Recording {
    fn exists(&self, path: &Path) -> bool {
        DiskFs.exists(path)
    }
    fn read(&self, path: &Path) -> io::Result<String> {
        let r = DiskFs.read(path)?;
        self.seen
            .lock()
            .expect("recording")
            .push(path.to_path_buf());
        Ok(r)
    }
    fn read_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        let r = DiskFs.read_bytes(path)?;
        self.seen
            .lock()
            .expect("recording")
            .push(path.to_path_buf());
        Ok(r)
    }
    fn size(&self, path: &Path) -> Option<u64> {
        DiskFs.size(path)
    }
}

/// Lexically resolves `.` and `..` (the files need not exist under these names).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Builds `config_path` as `gslbd check` does, and collects the files of its revision. Errors
/// are the build's problems, or a file outside any tree a revision can carry.
pub fn collect(config_path: &Path, max_bytes: u64) -> Result<Collected, Vec<String>> {
    let text = DiskFs
        .read(config_path)
        .map_err(|e| vec![format!("{}: {e}", config_path.display())])?;
    let config = crate::config::parse(&text, config_path).map_err(|e| vec![e.to_string()])?;
    let base = config_path.parent().unwrap_or(Path::new("")).to_path_buf();
    let rec = Recording::default();
    crate::snapshot::Snapshot::from_config(
        config,
        &rec,
        &base,
        &config_path.display().to_string(),
        &crate::health::Health::default(),
        None,
    )
    .map_err(|e| e.problems)?;
    let abs = |p: &Path| {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        normalize(&p)
    };
    let mut seen: Vec<PathBuf> = rec.seen.into_inner().expect("recording");
    seen.sort();
    seen.dedup();
    let (local, shared): (Vec<PathBuf>, Vec<PathBuf>) = seen
        .into_iter()
        .partition(|p| p.extension().is_some_and(|e| e == "mmdb"));
    let cfg_abs = abs(config_path);
    let mut all: Vec<PathBuf> = shared.iter().map(|p| abs(p)).collect();
    all.push(cfg_abs.clone());
    // The tree: the deepest folder that holds the config and every file it names.
    let mut root = cfg_abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    while !all.iter().all(|p| p.starts_with(&root)) {
        if !root.pop() {
            break;
        }
    }
    let rel = |p: &Path| p.strip_prefix(&root).map(|r| r.display().to_string());
    let mut total = 0u64;
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for (asked, p) in shared.iter().zip(all.iter()) {
        match (rel(p), std::fs::read(p)) {
            (Ok(r), Ok(bytes)) => {
                total += bytes.len() as u64;
                files.push((r, bytes));
            }
            (_, Err(e)) => problems.push(format!("{}: {e}", asked.display())),
            (Err(_), _) => problems.push(format!("{}: outside the tree", asked.display())),
        }
    }
    let config = rel(&cfg_abs).map_err(|_| vec!["config outside its tree".to_string()])?;
    files.push((config.clone(), text.into_bytes()));
    total += files.last().map_or(0, |f| f.1.len() as u64);
    if total > max_bytes {
        problems.push(format!(
            "the revision would be {total} bytes, over cluster.max_revision_bytes ({max_bytes}): \
             serve big zones by zone transfer (kind = \"secondary\") instead"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Collected {
        config,
        files,
        local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_plain_paths() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert!(plain_relative("zones/a.zone"));
        assert!(!plain_relative("../a"));
        assert!(!plain_relative("/etc/passwd"));
        assert!(!plain_relative("a/./b"));
        assert!(!plain_relative(""));
    }

    #[test]
    fn install_then_current_then_prune() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        for n in 1..=4u64 {
            let meta = Meta {
                revision: n,
                config: "c.toml".into(),
                files: vec![FileMeta {
                    path: "c.toml".into(),
                    size: 1,
                    sha256: String::new(),
                    chunks: 1,
                }],
                who: "t".into(),
                at: 0,
            };
            install(cache, &meta, &[b"x".to_vec()]).unwrap();
        }
        set_current(cache, 1).unwrap();
        prune(cache, 2);
        assert_eq!(current(cache), Some(1));
        // The current one is kept even when old; the two newest are kept.
        assert!(cached_meta(cache, 1).is_some());
        assert!(cached_meta(cache, 2).is_none());
        assert!(cached_meta(cache, 4).is_some());
        // A bad path in a meta is refused.
        let bad = Meta {
            revision: 9,
            config: "c".into(),
            files: vec![FileMeta {
                path: "../x".into(),
                size: 1,
                sha256: String::new(),
                chunks: 1,
            }],
            who: "t".into(),
            at: 0,
        };
        assert!(install(cache, &bad, &[b"x".to_vec()]).is_err());
    }
}
