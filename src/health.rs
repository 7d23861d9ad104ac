//! Health checks for GSLB pool addresses.
//!
//! ```toml
//! [gslb.health.web]
//! kind = "http"        # "tcp" (connect succeeds) or "http" (GET, expected status)
//! port = 80            # checked on each pool address (an entry with its own "ip:port" overrides)
//! path = "/health"     # http only, default "/"
//! host = "www.example" # http only, Host header, default: the address
//! expect = 200         # http only, expected status code, default 200
//! interval_ms = 2000   # default 2000, at least 50
//! timeout_ms = 1000    # default 1000, at most interval_ms
//! up = 2               # consecutive successes to come back up, default 2
//! down = 3             # consecutive failures to go down, default 3
//!
//! [gslb]
//! unknown = "down"     # a member with no finished check: "down" (default, not answered) or "up"
//! health_state = "health.json"  # save states here, read them back at start; default: not saved
//! ```
//!
//! Health state is runtime state, so it lives outside the immutable snapshot: the snapshot builder
//! asks the shared [`Health`] registry for a [`Target`] per (check spec, address) and keeps the
//! `Arc`. Asking again for the same key while the old snapshot still holds it returns the same
//! `Target`, which is how state survives a reload. The state itself belongs to the endpoint
//! (check kind with path/host/expect, and address), shared by every target checking it: a reload
//! that changes only a check's timing (interval, timeout, up, down) gets a new target with the
//! old state. [`Health::start`] spawns one task per target; the task holds only a `Weak`, so a
//! target no snapshot references any more stops being checked and its task ends on its next round.
//!
//! An endpoint starts [`State::Unknown`] (the GSLB's `[gslb] unknown` policy says whether such a
//! member is answered; by default it is not) and its first check result decides it; after that
//! `up` successes or `down` failures in a row flip it. With `[gslb] health_state = "file"` the
//! up/down states are saved after every change (JSON, temp file + rename) and read back at start,
//! so a restart does not forget a dead member.
//!
//! The query path reads [`Target::state`], one atomic load. Everything else (counters, last error)
//! sits behind a mutex that only the checking task and `explain` take.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

/// Below this, checks would mostly measure the scheduler and load the checked servers for nothing.
const MIN_INTERVAL_MS: u64 = 50;
/// Above a day the setting is almost certainly a typo, and huge periods risk `Instant` overflow.
const MAX_INTERVAL_MS: u64 = 86_400_000;
/// The status line is all we need; a bounded buffer keeps a misbehaving server from feeding us
/// an endless body.
const STATUS_LINE_MAX: usize = 1024;

/// `[gslb.health.<name>]` as written in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    pub kind: CheckKindConfig,
    /// Port checked on each pool address that does not carry its own port.
    pub port: u16,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect: Option<u16>,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_up")]
    pub up: u32,
    #[serde(default = "default_down")]
    pub down: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKindConfig {
    Tcp,
    Http,
}

fn default_interval_ms() -> u64 {
    2000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_up() -> u32 {
    2
}
fn default_down() -> u32 {
    3
}

impl CheckConfig {
    /// Validates the ranges and returns the runtime form; the message names the offending key so
    /// the snapshot builder can prefix it with `gslb.health.<name>`.
    pub fn spec(&self) -> Result<CheckSpec, String> {
        if self.port == 0 {
            return Err("port must be between 1 and 65535".into());
        }
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(format!(
                "interval_ms must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}, not {}",
                self.interval_ms
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            return Err(format!(
                "timeout_ms must be between 1 and interval_ms ({}), not {}",
                self.interval_ms, self.timeout_ms
            ));
        }
        if self.up == 0 {
            return Err("up must be at least 1 (consecutive successes to come back up)".into());
        }
        if self.down == 0 {
            return Err("down must be at least 1 (consecutive failures to go down)".into());
        }
        let kind = match self.kind {
            CheckKindConfig::Tcp => {
                // Silently ignoring them would hide a forgotten `kind = "http"`.
                for (key, set) in [
                    ("path", self.path.is_some()),
                    ("host", self.host.is_some()),
                    ("expect", self.expect.is_some()),
                ] {
                    if set {
                        return Err(format!(
                            "{key} applies to http checks only (kind = \"tcp\")"
                        ));
                    }
                }
                CheckKind::Tcp
            }
            CheckKindConfig::Http => {
                let path = self.path.clone().unwrap_or_else(|| "/".into());
                // The path and host go verbatim into the request; anything but visible ASCII could
                // break the request line or smuggle headers.
                if !path.starts_with('/') || !is_visible_ascii(&path) {
                    return Err(format!(
                        "path must start with '/' and contain only visible ASCII \
                         (percent-encode the rest), not {path:?}"
                    ));
                }
                if let Some(host) = &self.host
                    && (host.is_empty() || !is_visible_ascii(host))
                {
                    return Err(format!(
                        "host must be a non-empty name of visible ASCII characters, not {host:?}"
                    ));
                }
                let expect = self.expect.unwrap_or(200);
                if !(100..=599).contains(&expect) {
                    return Err(format!(
                        "expect must be an HTTP status code (100-599), not {expect}"
                    ));
                }
                CheckKind::Http {
                    path,
                    host: self.host.clone(),
                    expect,
                }
            }
        };
        Ok(CheckSpec {
            kind,
            interval: Duration::from_millis(self.interval_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            up: self.up,
            down: self.down,
        })
    }
}

fn is_visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// How one target is checked; with the address, the registry key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckSpec {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub up: u32,
    pub down: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    Tcp,
    Http {
        path: String,
        host: Option<String>,
        expect: u16,
    },
}

impl CheckKind {
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http { .. } => "http",
        }
    }
}

/// What the checks say about an endpoint. `Unknown` until its first check finishes (or a saved
/// state is loaded): serving a member nobody has checked yet is how a dead one got answered for
/// `down x interval` after every restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Unknown,
    Up,
    Down,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Up,
            2 => State::Down,
            _ => State::Unknown,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            State::Unknown => 0,
            State::Up => 1,
            State::Down => 2,
        }
    }
}

/// A fleet's share of the probing (src/cluster): each endpoint is probed by a few nodes, and the
/// others take the fleet's verdict from their observations. `key` names an endpoint the same way
/// on every node of a version.
pub trait ProbeShare: Send + Sync + std::fmt::Debug {
    /// Whether this node probes the endpoint now (false: other nodes do, and `verdict` counts).
    fn probes(&self, key: &str) -> bool;
    /// This node's result for the endpoint, to be shared.
    fn observed(&self, key: &str, outcome: &Result<(), String>);
    /// The fleet's verdict from the current probers' observations; None when there is none to go
    /// by (the caller probes itself then).
    fn verdict(&self, key: &str) -> Option<Result<(), String>>;
}

/// Where a fleet's [`ProbeShare`] plugs in; empty on a single server.
pub type ShareSlot = Mutex<Option<Arc<dyn ProbeShare>>>;

/// What is checked where: the identity of a health state. Two checks that differ only in timing
/// (interval, timeout, up/down thresholds) share it, so a reload that retunes a check keeps what
/// it knew.
type Endpoint = (CheckKind, SocketAddr);

/// The state of one endpoint, shared by every [`Target`] with that kind and address.
#[derive(Debug)]
struct Shared {
    /// Written only under `detail`'s lock so counters and state agree; read lock-free by the
    /// query path.
    state: AtomicU8,
    detail: Mutex<Detail>,
    /// Wakes the state-file writer when `state` changes.
    changed: Arc<Notify>,
    /// Where transitions are recorded.
    audit: Arc<crate::audit::Audit>,
    /// The fleet's probe sharing, if any.
    share: Arc<ShareSlot>,
}

impl Shared {
    fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn lock(&self) -> MutexGuard<'_, Detail> {
        // The critical sections only assign counters, so a panic elsewhere cannot leave them torn.
        self.detail.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One checked endpoint with its timing. Shared between the snapshots that reference it (strong)
/// and its checking task (weak).
#[derive(Debug)]
pub struct Target {
    spec: CheckSpec,
    addr: SocketAddr,
    /// Whether a checking task owns this target; lets `Health::start` be called after every reload
    /// without doubling tasks.
    checking: AtomicBool,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Detail {
    successes: u32,
    failures: u32,
    checks: u64,
    changes: u64,
    last_error: Option<String>,
    last_change: Instant,
    /// The state came from the state file and no check has run since.
    restored: bool,
}

/// A target's state for `explain` and logs.
#[derive(Clone, Debug, Serialize)]
pub struct TargetStatus {
    pub addr: SocketAddr,
    pub kind: &'static str,
    /// "up", "down", or "unknown" (no check finished yet and no saved state).
    pub state: State,
    pub up: bool,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    /// Checks completed since the target was created.
    pub checks: u64,
    /// State changes since the target was created.
    pub changes: u64,
    /// The most recent failure, kept after recovery so `explain` can say why a target went down.
    pub last_error: Option<String>,
    /// Whole seconds since the last change, or since creation if it never changed.
    pub secs_since_change: u64,
    /// Whether a checking task is running; false means `Health::start` has not been called since
    /// this target was created, so its state is the initial one.
    pub checking: bool,
    /// The state was loaded from the health state file and no check has confirmed it yet.
    pub restored: bool,
}

impl Target {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn spec(&self) -> &CheckSpec {
        &self.spec
    }

    /// The query path's question: one atomic load. Relaxed is enough: nothing else is read on
    /// the strength of it.
    pub fn state(&self) -> State {
        self.shared.state()
    }

    pub fn is_up(&self) -> bool {
        self.state() == State::Up
    }

    pub fn status(&self) -> TargetStatus {
        let d = self.shared.lock();
        let state = self.shared.state();
        TargetStatus {
            addr: self.addr,
            kind: self.spec.kind.name(),
            state,
            up: state == State::Up,
            consecutive_successes: d.successes,
            consecutive_failures: d.failures,
            checks: d.checks,
            changes: d.changes,
            last_error: d.last_error.clone(),
            secs_since_change: d.last_change.elapsed().as_secs(),
            checking: self.checking.load(Ordering::Relaxed),
            restored: d.restored,
        }
    }

    /// Pins the state (tests that start from a known state).
    #[cfg(test)]
    fn set_state(&self, state: State) {
        self.shared.state.store(state.as_u8(), Ordering::Relaxed);
    }

    /// Applies one check result. The first result of an unknown endpoint decides at once (there
    /// is nothing to hold on to); after that a change needs `up` successes or `down` failures in
    /// a row (this target's thresholds).
    fn record(&self, outcome: Result<(), String>) {
        let sh = &self.shared;
        let mut d = sh.lock();
        d.checks += 1;
        d.restored = false;
        let state = sh.state();
        let ok = outcome.is_ok();
        if ok {
            d.successes = d.successes.saturating_add(1);
            d.failures = 0;
        } else {
            d.failures = d.failures.saturating_add(1);
            d.successes = 0;
        }
        let next = match state {
            State::Unknown if ok => State::Up,
            State::Unknown => State::Down,
            State::Down if ok && d.successes >= self.spec.up => State::Up,
            State::Up if !ok && d.failures >= self.spec.down => State::Down,
            s => s,
        };
        let reason = outcome.err();
        if next != state {
            sh.state.store(next.as_u8(), Ordering::Relaxed);
            // `changes` counts flips; the first result of an unknown endpoint is none.
            if state != State::Unknown {
                d.changes += 1;
            }
            d.last_change = Instant::now();
            sh.changed.notify_one();
            sh.audit.record(crate::audit::Event::Health {
                addr: self.addr,
                check: self.spec.kind.name(),
                old: state,
                new: next,
                why: reason.clone(),
            });
            match next {
                State::Up => tracing::info!(
                    addr = %self.addr,
                    kind = self.spec.kind.name(),
                    successes = d.successes,
                    "health: target up"
                ),
                _ => tracing::warn!(
                    addr = %self.addr,
                    kind = self.spec.kind.name(),
                    failures = d.failures,
                    reason = reason.as_deref().unwrap_or(""),
                    "health: target down"
                ),
            }
        } else if let Some(r) = &reason {
            tracing::debug!(
                addr = %self.addr,
                kind = self.spec.kind.name(),
                failures = d.failures,
                reason = %r,
                "health: check failed"
            );
        }
        if let Some(r) = reason {
            d.last_error = Some(r);
        }
    }
}

type Key = (CheckSpec, SocketAddr);

/// Live targets by state, for `/healthz` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub up: usize,
    pub down: usize,
    pub unknown: usize,
}

/// The registry of targets, shared by every snapshot as `Arc<Health>`.
#[derive(Debug, Default)]
pub struct Health {
    targets: Mutex<HashMap<Key, Weak<Target>>>,
    /// The state of each endpoint, whatever the timing of the targets checking it.
    shared: Mutex<HashMap<Endpoint, Weak<Shared>>>,
    /// Running checking tasks; shared with the tasks so they can count themselves out.
    tasks: Arc<AtomicUsize>,
    /// The health state file: where states are saved, and what it held at start.
    persist: Mutex<Persist>,
    /// Notified on every state change (the writer of the state file waits on it).
    changed: Arc<Notify>,
    /// Runtime overrides (drains, forced states, weights): runtime state like the checks', handed
    /// to every snapshot build with this registry.
    overrides: Arc<crate::overrides::Overrides>,
    /// The audit trail health transitions, overrides and reloads are written to.
    audit: Arc<crate::audit::Audit>,
    /// A fleet's probe sharing (src/cluster); None on a single server.
    share: Arc<ShareSlot>,
}

#[derive(Debug, Default)]
struct Persist {
    /// Where the serving configuration saves states (`[gslb] health_state`).
    path: Option<PathBuf>,
    /// The file `seeds` were read from.
    seeded_from: Option<PathBuf>,
    /// Saved states, given to endpoints created before the next `start`.
    seeds: HashMap<Endpoint, State>,
    /// Whether the writer task runs.
    writer: bool,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    pub fn overrides(&self) -> &Arc<crate::overrides::Overrides> {
        &self.overrides
    }

    pub fn audit(&self) -> &Arc<crate::audit::Audit> {
        &self.audit
    }

    /// Shares probing with a fleet from now on (every target's next round asks `share`).
    pub fn set_share(&self, share: Arc<dyn ProbeShare>) {
        *self.share.lock().unwrap_or_else(PoisonError::into_inner) = Some(share);
    }

    /// Every live target's status (`/admin/health`), by address.
    pub fn statuses(&self) -> Vec<TargetStatus> {
        let mut v: Vec<TargetStatus> = self
            .map()
            .values()
            .filter_map(Weak::upgrade)
            .map(|t| t.status())
            .collect();
        v.sort_by(|a, b| (a.addr, a.kind).cmp(&(b.addr, b.kind)));
        v
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Key, Weak<Target>>> {
        // Only inserts and removals happen under this lock; the map stays consistent on a panic.
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn endpoints(&self) -> MutexGuard<'_, HashMap<Endpoint, Weak<Shared>>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn persist(&self) -> MutexGuard<'_, Persist> {
        self.persist.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live target with this key (its state carried over), else a new one sharing the state
    /// of its endpoint when a target with other timing has it, else starting from the state file
    /// or `Unknown`.
    pub fn target(&self, spec: &CheckSpec, addr: SocketAddr) -> Arc<Target> {
        let mut map = self.map();
        let key = (spec.clone(), addr);
        if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let shared = self.shared_for(&spec.kind, addr);
        let target = Arc::new(Target {
            spec: spec.clone(),
            addr,
            checking: AtomicBool::new(false),
            shared,
        });
        map.insert(key, Arc::downgrade(&target));
        target
    }

    fn shared_for(&self, kind: &CheckKind, addr: SocketAddr) -> Arc<Shared> {
        let endpoint = (kind.clone(), addr);
        let mut endpoints = self.endpoints();
        if let Some(s) = endpoints.get(&endpoint).and_then(Weak::upgrade) {
            return s;
        }
        let seed = self.persist().seeds.get(&endpoint).copied();
        let shared = Arc::new(Shared {
            state: AtomicU8::new(seed.unwrap_or(State::Unknown).as_u8()),
            detail: Mutex::new(Detail {
                successes: 0,
                failures: 0,
                checks: 0,
                changes: 0,
                last_error: None,
                last_change: Instant::now(),
                restored: seed.is_some(),
            }),
            changed: self.changed.clone(),
            audit: self.audit.clone(),
            share: self.share.clone(),
        });
        endpoints.insert(endpoint, Arc::downgrade(&shared));
        shared
    }

    /// Reads the saved states of `path` for the endpoints the next build creates, unless they
    /// were read from that file already (the running states are newer than the file then). A
    /// missing file is a first start; an unreadable or malformed one is logged and ignored:
    /// health starts `Unknown`, which is safe.
    pub fn load_saved(&self, path: Option<&Path>) {
        let mut p = self.persist();
        if p.seeded_from.as_deref() == path {
            return;
        }
        p.seeded_from = path.map(Path::to_path_buf);
        p.seeds.clear();
        let Some(path) = path else { return };
        match crate::zone::reader::read_file(path) {
            Ok(bytes) => match parse_saved(&bytes) {
                Ok(seeds) => {
                    tracing::info!(
                        file = %path.display(),
                        targets = seeds.len(),
                        "health: loaded saved states"
                    );
                    p.seeds = seeds;
                }
                Err(e) => tracing::warn!(
                    "health state file {}: {e}; starting every check as unknown",
                    path.display()
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "health state file {}: {e}; starting every check as unknown",
                path.display()
            ),
        }
    }

    /// Spawns a checking task for every live target that has none, and forgets dead targets;
    /// saves states to `state_file` from now on (None: not saved). Call it after swapping in each
    /// snapshot (it is idempotent). Panics outside a tokio runtime.
    pub fn start(self: &Arc<Self>, state_file: Option<&Path>) {
        {
            let mut p = self.persist();
            // Saved states are for the endpoints of the snapshot just started; later ones start
            // unknown rather than from a file that old.
            p.seeds.clear();
            p.path = state_file.map(Path::to_path_buf);
            if p.path.is_some() && !p.writer {
                p.writer = true;
                tokio::spawn(write_states(Arc::downgrade(self), self.changed.clone()));
                // The set of endpoints may have changed: save it now.
                self.changed.notify_one();
            }
        }
        self.endpoints().retain(|_, weak| weak.strong_count() > 0);
        let mut map = self.map();
        map.retain(|_, weak| weak.strong_count() > 0);
        for weak in map.values() {
            let Some(target) = weak.upgrade() else {
                continue;
            };
            if target.checking.swap(true, Ordering::AcqRel) {
                continue;
            }
            let guard = TaskGuard::new(weak.clone(), self.tasks.clone());
            tokio::spawn(check_loop(guard));
        }
    }

    /// Targets still referenced by some snapshot (or, for an instant, by their task's round).
    pub fn live_targets(&self) -> usize {
        self.map()
            .values()
            .filter(|weak| weak.strong_count() > 0)
            .count()
    }

    /// Live endpoints by state, for `/healthz` and `/metrics`. The `Arc`s are upgraded and
    /// dropped one at a time, so this never keeps a dead endpoint alive past the call.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in self.endpoints().values().filter_map(Weak::upgrade) {
            match s.state() {
                State::Up => c.up += 1,
                State::Down => c.down += 1,
                State::Unknown => c.unknown += 1,
            }
        }
        c
    }

    /// Checking tasks still running; falls behind `live_targets` by at most one interval after a
    /// target dies, because a task notices only on its next round.
    pub fn running_checks(&self) -> usize {
        self.tasks.load(Ordering::Acquire)
    }

    /// The state file's path and text now, or None when states are not saved.
    fn saved_text(&self) -> Option<(PathBuf, String)> {
        let path = self.persist().path.clone()?;
        let mut targets: Vec<Saved> = self
            .endpoints()
            .iter()
            .filter_map(|((kind, addr), weak)| {
                let state = weak.upgrade()?.state();
                (state != State::Unknown).then(|| Saved::new(kind, *addr, state))
            })
            .collect();
        targets.sort_by(|a, b| (a.address, &a.check).cmp(&(b.address, &b.check)));
        let file = SavedFile {
            version: 1,
            targets,
        };
        let text = serde_json::to_string_pretty(&file).expect("states serialize");
        Some((path, text + "\n"))
    }
}

/// The health state file: what each endpoint was when last saved. JSON, so an operator can read
/// (and delete) it; only `up` and `down` are saved.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFile {
    version: u32,
    targets: Vec<Saved>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    /// "tcp" or "http".
    check: String,
    address: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect: Option<u16>,
    state: State,
}

impl Saved {
    fn new(kind: &CheckKind, address: SocketAddr, state: State) -> Saved {
        let (path, host, expect) = match kind {
            CheckKind::Tcp => (None, None, None),
            CheckKind::Http { path, host, expect } => {
                (Some(path.clone()), host.clone(), Some(*expect))
            }
        };
        Saved {
            check: kind.name().into(),
            address,
            path,
            host,
            expect,
            state,
        }
    }

    fn endpoint(&self) -> Result<Endpoint, String> {
        let kind = match self.check.as_str() {
            "tcp" => CheckKind::Tcp,
            "http" => CheckKind::Http {
                path: self.path.clone().unwrap_or_else(|| "/".into()),
                host: self.host.clone(),
                expect: self.expect.unwrap_or(200),
            },
            other => return Err(format!("unknown check kind {other:?}")),
        };
        Ok((kind, self.address))
    }
}

fn parse_saved(bytes: &[u8]) -> Result<HashMap<Endpoint, State>, String> {
    let file: SavedFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.version != 1 {
        return Err(format!("version {} (this gslbd writes 1)", file.version));
    }
    file.targets
        .iter()
        .filter(|t| t.state != State::Unknown)
        .map(|t| Ok((t.endpoint()?, t.state)))
        .collect()
}

/// Replaces `path` in one step: a crash mid-write leaves the old file or the new one, never half
/// of one (temp file in the same folder, fsync, rename).
pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "health-state".into());
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Saves the states after every change (a burst of changes, like a whole pool going down, is one
/// write). Ends when the registry is gone.
async fn write_states(health: Weak<Health>, changed: Arc<Notify>) {
    loop {
        changed.notified().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(text) = health.upgrade().and_then(|h| h.saved_text()) else {
            if health.strong_count() == 0 {
                return;
            }
            continue;
        };
        let (path, text) = text;
        let shown = path.display().to_string();
        match tokio::task::spawn_blocking(move || write_atomically(&path, &text)).await {
            Ok(Ok(())) => tracing::debug!(file = %shown, "health: states saved"),
            Ok(Err(e)) => tracing::warn!("health state file {shown}: cannot save: {e}"),
            Err(e) => tracing::warn!("health state file {shown}: save task failed: {e}"),
        }
    }
}

/// Owned by a checking task: counts it in and out, and clears the target's `checking` flag when
/// the task ends for any reason (including its runtime shutting down), so a later `start` can
/// hand the target to a new task.
struct TaskGuard {
    target: Weak<Target>,
    tasks: Arc<AtomicUsize>,
}

impl TaskGuard {
    fn new(target: Weak<Target>, tasks: Arc<AtomicUsize>) -> TaskGuard {
        tasks.fetch_add(1, Ordering::AcqRel);
        TaskGuard { target, tasks }
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(target) = self.target.upgrade() {
            target.checking.store(false, Ordering::Release);
        }
        self.tasks.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn check_loop(guard: TaskGuard) {
    let (spec, addr) = match guard.target.upgrade() {
        Some(target) => (target.spec.clone(), target.addr),
        None => return,
    };
    let mut ticker = tokio::time::interval(spec.interval);
    // After a stall, space checks a full interval apart again instead of firing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // The first tick completes at once: a new target is checked as soon as its task starts.
        ticker.tick().await;
        // Don't probe a server on behalf of a target nobody references any more.
        if guard.target.strong_count() == 0 {
            return;
        }
        // The probe runs without a strong reference, so a dropped snapshot frees its targets
        // without waiting for slow probes.
        let share = match guard.target.upgrade() {
            Some(t) => t
                .shared
                .share
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            None => return,
        };
        let outcome = match share {
            None => probe(&spec, addr).await,
            Some(share) => {
                let key = format!("{:?} {addr}", spec.kind);
                if share.probes(&key) {
                    let mine = probe(&spec, addr).await;
                    share.observed(&key, &mine);
                    share.verdict(&key).unwrap_or(mine)
                } else {
                    match share.verdict(&key) {
                        Some(v) => v,
                        // Nobody's observation to go by (the probers have not reported yet).
                        None => probe(&spec, addr).await,
                    }
                }
            }
        };
        let Some(target) = guard.target.upgrade() else {
            return;
        };
        target.record(outcome);
    }
}

/// One check; `Err` carries the text shown as `last_error`.
async fn probe(spec: &CheckSpec, addr: SocketAddr) -> Result<(), String> {
    // One deadline for the whole exchange, so `timeout` bounds a check however it stalls, while
    // the error still says which step stalled.
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let ms = spec.timeout.as_millis();
    let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err(format!("connect: no answer within {ms} ms")),
    };
    let CheckKind::Http { path, host, expect } = &spec.kind else {
        // TCP check: the handshake was the whole test; dropping the stream closes it.
        return Ok(());
    };
    let request = http_request(path, host.as_deref(), addr);
    match tokio::time::timeout_at(deadline, stream.write_all(request.as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("http: sending request: {e}")),
        Err(_) => return Err(format!("http: request not sent within {ms} ms")),
    }
    let mut buf = [0u8; STATUS_LINE_MAX];
    let mut len = 0;
    loop {
        if buf[..len].contains(&b'\n') {
            break;
        }
        if len == buf.len() {
            return Err(format!(
                "http: no status line in the first {STATUS_LINE_MAX} bytes"
            ));
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[len..])).await {
            Ok(Ok(0)) if len == 0 => {
                return Err("http: connection closed before a status line".into());
            }
            // A server that closes right after an unterminated status line still told us its code.
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => len += n,
            Ok(Err(e)) => return Err(format!("http: reading response: {e}")),
            Err(_) => return Err(format!("http: no status line within {ms} ms")),
        }
    }
    let line = buf[..len].split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match parse_status_code(line) {
        Some(code) if code == *expect => Ok(()),
        Some(code) => Err(format!("http: status {code}, expected {expect}")),
        None => Err(format!(
            "http: malformed status line \"{}\"",
            printable(line)
        )),
    }
}

fn http_request(path: &str, host: Option<&str>, addr: SocketAddr) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: ");
    match host {
        Some(host) => request.push_str(host),
        None => push_host_of(&mut request, addr),
    }
    // In a fleet the node is named, so a backend's log shows who probes it.
    match crate::cluster::NODE.get() {
        Some(node) => {
            request.push_str("\r\nUser-Agent: gslbd-health (");
            request.push_str(node);
            request.push(')');
        }
        None => request.push_str("\r\nUser-Agent: gslbd-health"),
    }
    request.push_str("\r\nConnection: close\r\n\r\n");
    request
}

/// The Host header for a bare address (RFC 9110 7.2): brackets around IPv6, port unless 80.
fn push_host_of(out: &mut String, addr: SocketAddr) {
    let _ = match addr {
        SocketAddr::V4(a) => write!(out, "{}", a.ip()),
        SocketAddr::V6(a) => write!(out, "[{}]", a.ip()),
    };
    if addr.port() != 80 {
        let _ = write!(out, ":{}", addr.port());
    }
}

/// `HTTP/1.1 200 OK` -> 200 (RFC 9112 4: version, SP, three digits, then SP or end of line).
fn parse_status_code(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let version = &rest[..space];
    if version.is_empty() || !version.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let after = &rest[space + 1..];
    let (code, tail) = after.split_at_checked(3)?;
    if !code.iter().all(u8::is_ascii_digit) || !(tail.is_empty() || tail[0] == b' ') {
        return None;
    }
    code.iter()
        .try_fold(0u16, |n, &d| Some(n * 10 + u16::from(d - b'0')))
}

/// The start of a bad line for an error message: escaped, and short enough for a log line.
fn printable(line: &[u8]) -> String {
    let shown = &line[..line.len().min(60)];
    let mut text: String = String::from_utf8_lossy(shown).escape_debug().collect();
    if shown.len() < line.len() {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::AtomicU32;
    use tokio::net::{TcpListener, TcpSocket};
    use tokio::task::JoinHandle;

    /// Every test finishes well inside this, or fails instead of hanging.
    const TEST_LIMIT: Duration = Duration::from_secs(15);
    /// Generous bound for a state change that should take a few intervals.
    const SETTLE: Duration = Duration::from_secs(10);

    async fn bounded<F: Future<Output = ()>>(test: F) {
        tokio::time::timeout(TEST_LIMIT, test)
            .await
            .expect("test exceeded its time limit");
    }

    /// Polls `cond` until it holds; panics with `what` after `SETTLE`.
    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        while !cond() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Each test gets its own loopback address, so parallel tests never share a port space and
    /// the checker (sourcing from 127.0.0.1) can never connect to itself.
    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    /// A listener that can be rebound to the same address right after closing (the accepted
    /// connections we closed leave TIME_WAIT entries on that port).
    fn listen(addr: SocketAddr) -> TcpListener {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).unwrap();
        socket.listen(64).unwrap()
    }

    /// Accepts and immediately closes connections until aborted.
    fn tcp_server(listener: TcpListener) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        })
    }

    fn spec(kind: CheckKind, interval_ms: u64, up: u32, down: u32) -> CheckSpec {
        CheckSpec {
            kind,
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(interval_ms),
            up,
            down,
        }
    }

    /// For tests that count script entries: a timeout far above the loopback round trip, so a
    /// busy machine cannot turn a scripted success into a timeout and shift the script.
    fn patient(mut spec: CheckSpec) -> CheckSpec {
        spec.timeout = Duration::from_secs(3);
        spec
    }

    fn http(path: &str, host: Option<&str>, expect: u16) -> CheckKind {
        CheckKind::Http {
            path: path.into(),
            host: host.map(Into::into),
            expect,
        }
    }

    /// What the hand-written HTTP responder does with a request.
    #[derive(Clone, Copy, Debug)]
    enum Reply {
        Status(u16),
        /// Accept, read the request, never answer.
        Silent,
        Garbage,
    }

    /// A tiny HTTP/1.1 responder. `script[i]` answers request `i`; the last entry repeats. The
    /// script is shared, so a test can replace it to change behaviour mid-test.
    struct Responder {
        addr: SocketAddr,
        script: Arc<Mutex<Vec<Reply>>>,
        requests: Arc<AtomicU32>,
        last_request: Arc<Mutex<String>>,
        task: JoinHandle<()>,
    }

    impl Responder {
        async fn start(ip: IpAddr, script: Vec<Reply>) -> Responder {
            let listener = TcpListener::bind((ip, 0)).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let script = Arc::new(Mutex::new(script));
            let requests = Arc::new(AtomicU32::new(0));
            let last_request = Arc::new(Mutex::new(String::new()));
            let (s, r, l) = (script.clone(), requests.clone(), last_request.clone());
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (s, r, l) = (s.clone(), r.clone(), l.clone());
                    tokio::spawn(serve_one(stream, s, r, l));
                }
            });
            Responder {
                addr,
                script,
                requests,
                last_request,
                task,
            }
        }

        fn set(&self, script: Vec<Reply>) {
            *self.script.lock().unwrap() = script;
            self.requests.store(0, Ordering::SeqCst);
        }
    }

    impl Drop for Responder {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve_one(
        mut stream: TcpStream,
        script: Arc<Mutex<Vec<Reply>>>,
        requests: Arc<AtomicU32>,
        last_request: Arc<Mutex<String>>,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        *last_request.lock().unwrap() = String::from_utf8_lossy(&buf).into_owned();
        let index = requests.fetch_add(1, Ordering::SeqCst) as usize;
        let reply = {
            let script = script.lock().unwrap();
            script[index.min(script.len() - 1)]
        };
        let response = match reply {
            Reply::Status(code) => {
                format!(
                    "HTTP/1.1 {code} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            }
            Reply::Garbage => "SSH-2.0-OpenSSH_9.6\r\n".to_string(),
            Reply::Silent => {
                // Hold the connection open past any check timeout used in these tests.
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
        };
        let _ = stream.write_all(response.as_bytes()).await;
    }

    #[tokio::test]
    async fn tcp_follows_listener() {
        bounded(async {
            let listener = listen(SocketAddr::new(ip(11), 0));
            let addr = listener.local_addr().unwrap();
            let server = tcp_server(listener);
            let health = Health::new();
            let target = health.target(&spec(CheckKind::Tcp, 50, 2, 3), addr);
            health.start(None);

            wait_for("a few successful checks", || target.status().checks >= 3).await;
            let s = target.status();
            assert!(target.is_up() && s.up && s.checking);
            assert_eq!(
                (s.consecutive_failures, s.changes, s.last_error),
                (0, 0, None)
            );

            // Stop listening: connects are refused.
            server.abort();
            let _ = server.await;
            wait_for("down after refused connects", || {
                target.state() == State::Down
            })
            .await;
            let s = target.status();
            assert!(s.consecutive_failures >= 3, "{s:?}");
            assert_eq!(s.changes, 1);
            assert!(
                s.last_error.as_deref().unwrap().starts_with("connect: "),
                "{s:?}"
            );

            // Listen again on the same address and port.
            let server = tcp_server(listen(addr));
            wait_for("back up", || target.is_up()).await;
            let s = target.status();
            assert!(s.consecutive_successes >= 2, "{s:?}");
            assert_eq!(s.changes, 2);
            server.abort();
        })
        .await;
    }

    #[tokio::test]
    async fn tcp_on_ipv6_loopback() {
        bounded(async {
            // Hosts without ::1 cannot run this one; everything else is covered on IPv4.
            let Ok(listener) = TcpListener::bind("[::1]:0").await else {
                return;
            };
            let addr = listener.local_addr().unwrap();
            let health = Health::new();
            let target = health.target(&spec(CheckKind::Tcp, 50, 1, 1), addr);
            let server = tcp_server(listener);
            health.start(None);
            wait_for("a successful check", || target.status().checks >= 2).await;
            assert!(target.is_up());
            assert_eq!(target.status().consecutive_failures, 0);
            server.abort();
        })
        .await;
    }

    #[tokio::test]
    async fn http_follows_status() {
        bounded(async {
            let web = Responder::start(ip(12), vec![Reply::Status(200)]).await;
            let health = Health::new();
            let kind = http("/health?x=1", Some("object.example"), 200);
            let target = health.target(&spec(kind, 100, 2, 3), web.addr);
            health.start(None);

            wait_for("a few good checks", || {
                target.status().consecutive_successes >= 2
            })
            .await;
            assert!(target.is_up());
            assert_eq!(
                *web.last_request.lock().unwrap(),
                "GET /health?x=1 HTTP/1.1\r\nHost: object.example\r\n\
                 User-Agent: gslbd-health\r\nConnection: close\r\n\r\n"
            );

            web.set(vec![Reply::Status(503)]);
            wait_for("down on 503", || target.state() == State::Down).await;
            let s = target.status();
            assert_eq!(
                s.last_error.as_deref(),
                Some("http: status 503, expected 200")
            );
            assert!(s.consecutive_failures >= 3, "{s:?}");

            web.set(vec![Reply::Status(200)]);
            wait_for("up again on 200", || target.is_up()).await;
            assert_eq!(target.status().changes, 2);
        })
        .await;
    }

    #[tokio::test]
    async fn http_unexpected_status_is_failure() {
        bounded(async {
            // A 200 is a failure when the check expects 204; a 204 is then a success.
            let web = Responder::start(ip(13), vec![Reply::Status(200)]).await;
            let health = Health::new();
            let target = health.target(&spec(http("/", None, 204), 100, 1, 1), web.addr);
            health.start(None);
            wait_for("down on 200", || target.state() == State::Down).await;
            assert_eq!(
                target.status().last_error.as_deref(),
                Some("http: status 200, expected 204")
            );
            // Without a configured host, the Host header is the address with its port.
            let expected_host = format!("Host: 127.0.0.13:{}\r\n", web.addr.port());
            assert!(web.last_request.lock().unwrap().contains(&expected_host));

            web.set(vec![Reply::Status(204)]);
            wait_for("up on 204", || target.is_up()).await;
        })
        .await;
    }

    #[tokio::test]
    async fn http_silent_server_times_out() {
        bounded(async {
            let web = Responder::start(ip(14), vec![Reply::Silent]).await;
            let health = Health::new();
            let target = health.target(&spec(http("/", None, 200), 100, 1, 2), web.addr);
            health.start(None);
            wait_for("down on timeouts", || target.state() == State::Down).await;
            assert_eq!(
                target.status().last_error.as_deref(),
                Some("http: no status line within 100 ms")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn http_garbage_is_failure_with_text() {
        bounded(async {
            let web = Responder::start(ip(15), vec![Reply::Garbage]).await;
            let health = Health::new();
            let target = health.target(&spec(http("/", None, 200), 100, 1, 1), web.addr);
            health.start(None);
            wait_for("down on garbage", || target.state() == State::Down).await;
            assert_eq!(
                target.status().last_error.as_deref(),
                Some("http: malformed status line \"SSH-2.0-OpenSSH_9.6\"")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn single_failure_does_not_flap() {
        bounded(async {
            use Reply::Status;
            // Request 1 (the second check) fails, every other one succeeds.
            let web = Responder::start(ip(16), vec![Status(200), Status(503), Status(200)]).await;
            let health = Health::new();
            let target = health.target(&patient(spec(http("/", None, 200), 100, 2, 3)), web.addr);
            health.start(None);

            let (mut max_failures, mut ever_down) = (0, false);
            wait_for("several checks after the failure", || {
                let s = target.status();
                max_failures = max_failures.max(s.consecutive_failures);
                ever_down |= target.state() == State::Down;
                s.checks >= 5
            })
            .await;
            let s = target.status();
            assert!(!ever_down, "went down on a single failure: {s:?}");
            assert_eq!(max_failures, 1, "{s:?}");
            assert_eq!(s.changes, 0, "{s:?}");
            assert_eq!(s.consecutive_failures, 0);
            assert_eq!(
                s.last_error.as_deref(),
                Some("http: status 503, expected 200")
            );
        })
        .await;
    }

    #[tokio::test]
    async fn thresholds_count_consecutive_results() {
        bounded(async {
            use Reply::Status;
            const OK: Reply = Status(200);
            const BAD: Reply = Status(503);
            // Interrupted runs must not add up: 2 failures, then 2 again, do not reach down = 3;
            // once down, 1 success then a failure does not reach up = 2.
            let script = vec![
                BAD, BAD, OK, BAD, BAD, OK, // up throughout
                BAD, BAD, BAD, // down (flip 1)
                OK, BAD, OK, // still down
                OK, // up (flip 2)
                OK,
            ];
            let rounds = script.len() as u64;
            let web = Responder::start(ip(17), script).await;
            let health = Health::new();
            let target = health.target(&patient(spec(http("/", None, 200), 100, 2, 3)), web.addr);
            // Known up (as after a first success): the first failures must not take it down.
            target.set_state(State::Up);
            health.start(None);
            wait_for("the whole script", || target.status().checks >= rounds).await;
            let s = target.status();
            assert!(s.up, "{s:?}");
            assert_eq!(s.changes, 2, "{s:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn registry_keeps_state_across_reload() {
        bounded(async {
            // Nothing listens on this port: the target goes down and must stay down across the
            // "reload".
            let closed = listen(SocketAddr::new(ip(18), 0));
            let addr = closed.local_addr().unwrap();
            drop(closed);
            let health = Health::new();
            let tcp = spec(CheckKind::Tcp, 50, 2, 1);

            let old = health.target(&tcp, addr);
            health.start(None);
            wait_for("down", || old.state() == State::Down).await;

            // Reload: the new snapshot asks for the same key before the old one is dropped.
            let new = health.target(&tcp, addr);
            assert!(Arc::ptr_eq(&old, &new));
            health.start(None);
            drop(old);
            assert!(!new.is_up());
            assert_eq!(health.live_targets(), 1);
            assert_eq!(health.running_checks(), 1, "start must not double tasks");

            // Other timing, same endpoint: another target (its own task and thresholds) that
            // shares the endpoint's state, so retuning a check does not forget it.
            let other_spec = health.target(&spec(CheckKind::Tcp, 60, 2, 1), addr);
            assert!(!Arc::ptr_eq(&new, &other_spec));
            assert_eq!(other_spec.state(), State::Down);
            // Another kind of check is another endpoint: unknown until checked.
            let web = health.target(&spec(http("/", None, 200), 50, 2, 1), addr);
            assert_eq!(web.state(), State::Unknown);
            drop(web);
            let other_addr = health.target(&tcp, SocketAddr::new(ip(18), 1));
            assert!(!Arc::ptr_eq(&new, &other_addr));
            assert_eq!(health.live_targets(), 3);
            health.start(None);
            health.start(None);
            assert_eq!(health.running_checks(), 3);

            // The old snapshot is gone and the new one too: every task ends.
            let before = new.status().checks;
            let weak = Arc::downgrade(&new);
            drop((new, other_spec, other_addr));
            wait_for("tasks end", || health.running_checks() == 0).await;
            assert_eq!(health.live_targets(), 0);
            assert!(weak.upgrade().is_none());
            health.start(None);
            assert_eq!(health.map().len(), 0, "start prunes dead entries");

            // The same key later gets a fresh target, unknown again.
            let fresh = health.target(&tcp, addr);
            assert_eq!(fresh.state(), State::Unknown);
            let s = fresh.status();
            assert_eq!((s.checks, s.checking), (0, false));
            assert!(before >= 1);
        })
        .await;
    }

    #[tokio::test]
    async fn saved_states_come_back_in_a_new_registry() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("health.json");
        let a = SocketAddr::new(ip(20), 80);
        let b = SocketAddr::new(ip(21), 80);
        let web = spec(http("/h", Some("x.example"), 204), 100, 2, 3);
        let tcp = spec(CheckKind::Tcp, 100, 2, 3);

        let first = Health::new();
        first.load_saved(Some(&file));
        let (ta, tb, tc) = (
            first.target(&web, a),
            first.target(&tcp, b),
            first.target(&tcp, a),
        );
        ta.set_state(State::Down);
        tb.set_state(State::Up);
        let (path, text) = first
            .saved_text()
            .map_or((None, String::new()), |(p, t)| (Some(p), t));
        assert_eq!(path, None, "nothing is saved before start names the file");
        first.persist().path = Some(file.clone());
        let (_, text2) = first.saved_text().unwrap();
        assert!(text.is_empty());
        // Unknown endpoints (tc) are not saved.
        assert_eq!(text2.matches("\"state\"").count(), 2, "{text2}");
        write_atomically(&file, &text2).unwrap();
        drop((ta, tb, tc));

        let second = Health::new();
        second.load_saved(Some(&file));
        assert_eq!(second.target(&web, a).state(), State::Down);
        assert!(second.target(&web, a).status().restored);
        // Other timing, same endpoint: the saved state applies.
        assert_eq!(
            second.target(&spec(CheckKind::Tcp, 500, 1, 1), b).state(),
            State::Up
        );
        assert_eq!(second.target(&tcp, a).state(), State::Unknown);
        // Other path: another endpoint.
        let other = spec(http("/other", Some("x.example"), 204), 100, 2, 3);
        assert_eq!(second.target(&other, a).state(), State::Unknown);

        // A malformed file is ignored (every check starts unknown), never fatal.
        std::fs::write(&file, "{ not json").unwrap();
        let third = Health::new();
        third.load_saved(Some(&file));
        assert_eq!(third.target(&web, a).state(), State::Unknown);
    }

    fn parse(toml_text: &str) -> Result<CheckSpec, String> {
        let config: CheckConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        config.spec()
    }

    #[test]
    fn config_defaults() {
        let tcp = parse("kind = \"tcp\"\nport = 443").unwrap();
        assert_eq!(
            tcp,
            CheckSpec {
                kind: CheckKind::Tcp,
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                up: 2,
                down: 3,
            }
        );
        let web = parse("kind = \"http\"\nport = 80").unwrap();
        assert_eq!(web.kind, http("/", None, 200));
        let full = parse(
            "kind = \"http\"\nport = 8080\npath = \"/health\"\nhost = \"object.example\"\n\
             expect = 204\ninterval_ms = 50\ntimeout_ms = 50\nup = 1\ndown = 5",
        )
        .unwrap();
        assert_eq!(
            full,
            spec(http("/health", Some("object.example"), 204), 50, 1, 5)
        );
    }

    #[test]
    fn config_errors() {
        let cases = [
            (
                "kind = \"tcp\"\nport = 0",
                "port must be between 1 and 65535",
            ),
            (
                "kind = \"tcp\"\nport = 1\ninterval_ms = 49",
                "interval_ms must be between 50",
            ),
            (
                "kind = \"tcp\"\nport = 1\ninterval_ms = 86400001",
                "interval_ms must be between",
            ),
            (
                "kind = \"tcp\"\nport = 1\ntimeout_ms = 0",
                "timeout_ms must be between 1",
            ),
            (
                "kind = \"tcp\"\nport = 1\ninterval_ms = 500\ntimeout_ms = 501",
                "timeout_ms must be between 1 and interval_ms (500), not 501",
            ),
            ("kind = \"tcp\"\nport = 1\nup = 0", "up must be at least 1"),
            (
                "kind = \"tcp\"\nport = 1\ndown = 0",
                "down must be at least 1",
            ),
            (
                "kind = \"tcp\"\nport = 1\npath = \"/\"",
                "path applies to http checks only",
            ),
            (
                "kind = \"tcp\"\nport = 1\nexpect = 200",
                "expect applies to http checks only",
            ),
            (
                "kind = \"http\"\nport = 1\npath = \"health\"",
                "path must start with '/'",
            ),
            (
                "kind = \"http\"\nport = 1\npath = \"/a b\"",
                "visible ASCII",
            ),
            (
                "kind = \"http\"\nport = 1\nhost = \"a\\r\\nX: y\"",
                "host must be",
            ),
            ("kind = \"http\"\nport = 1\nhost = \"\"", "host must be"),
            (
                "kind = \"http\"\nport = 1\nexpect = 99",
                "expect must be an HTTP status code",
            ),
            (
                "kind = \"http\"\nport = 1\nexpect = 600",
                "expect must be an HTTP status code",
            ),
            // Shape errors come from serde.
            ("kind = \"icmp\"\nport = 1", "unknown variant"),
            ("kind = \"tcp\"\nport = 1\ninterval = 5", "unknown field"),
            ("kind = \"tcp\"", "missing field `port`"),
        ];
        for (text, expected) in cases {
            let err = parse(text).expect_err(text);
            assert!(
                err.contains(expected),
                "{text:?}: {err:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(parse_status_code(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_code(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_code(b"HTTP/2 204 "), Some(204));
        assert_eq!(parse_status_code(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_code(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_code(b"HTTP/1.1 2x0 OK"), None);
        assert_eq!(parse_status_code(b"HTTP/ 200 OK"), None);
        assert_eq!(parse_status_code(b"ICY 200 OK"), None);
        assert_eq!(parse_status_code(b""), None);
        assert_eq!(printable(b"\x00bad"), "\\0bad");
        assert_eq!(printable(&[b'a'; 70]), format!("{}...", "a".repeat(60)));
    }

    #[test]
    fn host_header_defaults_to_address() {
        let host = |addr: &str| {
            let mut s = String::new();
            push_host_of(&mut s, addr.parse().unwrap());
            s
        };
        assert_eq!(host("192.0.2.1:80"), "192.0.2.1");
        assert_eq!(host("192.0.2.1:8080"), "192.0.2.1:8080");
        assert_eq!(host("[2001:db8::1]:80"), "[2001:db8::1]");
        assert_eq!(host("[2001:db8::1]:8443"), "[2001:db8::1]:8443");
    }
}
