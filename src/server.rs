//! Sockets: UDP and TCP listeners that hand each message to `query::respond` with the snapshot
//! current at that moment, and reload, which swaps in a new snapshot.
//!
//! `Server::bind` binds everything first (so the caller learns the addresses, and tests can use
//! port 0), then `Server::run` serves until the shutdown future resolves. TCP follows RFC 7766:
//! two-byte length prefix, several queries per connection, an idle timeout, a cap on connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::UdpSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Source;
use crate::conns::{ConnTable, SlotGuard};
use crate::health::Health;
use crate::query::{self, Client, Transport};
use crate::reload::{ReloadStatus, Reloads};
use crate::resolver::{self, Clock, Resolvers, SystemClock};
use crate::snapshot::{BuildError, Snapshot};
use crate::{fast, udp};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("cannot bind {addr} ({proto}): {source}{}", bind_hint(*addr, source))]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: io::Error,
    },
    #[error("[admin] socket {}: {source}", path.display())]
    Socket {
        path: std::path::PathBuf,
        source: io::Error,
    },
}

/// What to do about a bind error an operator meets: ports below 1024 are privileged on Linux
/// (`net.ipv4.ip_unprivileged_port_start`, 1024 by default), and an address in use is held by
/// another server.
fn bind_hint(addr: SocketAddr, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            ": port {} needs root or the CAP_NET_BIND_SERVICE capability: run as root, give the \
             binary the capability (setcap cap_net_bind_service=+ep $(command -v gslbd)), or \
             start it from systemd with AmbientCapabilities=CAP_NET_BIND_SERVICE as \
             deploy/gslbd.service does",
            addr.port()
        ),
        io::ErrorKind::AddrInUse => format!(
            ": another program holds it (ss -lnptu 'sport = :{}' shows which)",
            addr.port()
        ),
        io::ErrorKind::AddrNotAvailable => {
            ": this machine has no such address (ip addr shows the ones it has)".into()
        }
        _ => String::new(),
    }
}

/// What a running server can be asked to do from outside its sockets.
#[derive(Clone)]
pub struct Handle {
    snapshot: Arc<ArcSwap<Snapshot>>,
    source: Arc<Source>,
    /// Health state of GSLB pool addresses: outside the snapshot, so it survives reloads.
    health: Arc<Health>,
    /// Resolver caches and server RTTs: outside the snapshot, so they survive reloads.
    resolvers: Arc<Resolvers>,
    /// Queries answered by the authoritative listeners (UDP and TCP) of this server; tests count
    /// a resolver's upstream traffic with it.
    served: Arc<AtomicU64>,
    /// UDP answers of this server written by the fast path (the process-wide
    /// `gslbd_udp_fast_path_answers_total` mixes every server of a test binary).
    fast: Arc<AtomicU64>,
    /// Serializes reloads and keeps their outcome for monitoring.
    reloads: Arc<Reloads>,
    /// The HTTP listen addresses as bound (ports chosen), for Alibaba's `/{account}/ss`.
    http_bound: Arc<Vec<SocketAddr>>,
    /// The secondary zones' refresh/transfer tasks (`secondary`).
    secondaries: Arc<crate::secondary::Secondaries>,
}

impl Handle {
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// The current snapshot as an owned `Arc`, for work that awaits (a guard must not be held long).
    pub fn snapshot_full(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Rebuilds the snapshot from the configuration source and swaps it in. On any error the
    /// running snapshot stays. Listener sets cannot change without a restart (sockets are bound
    /// once), so a config that changes them is refused. Reloads run one at a time, and the
    /// outcome returned is that of a build that began after this call did (`reload::Reloads`):
    /// SIGHUP and `POST /admin/reload` cannot leave older files serving than the last one asked
    /// for. Blocking (reads files): call it off the async workers.
    pub fn reload(&self) -> Result<Arc<Snapshot>, BuildError> {
        self.reload_as("api")
    }

    /// `reload` with who asked for it ("signal", "api:127.0.0.1"), for the audit trail.
    pub fn reload_as(&self, who: &str) -> Result<Arc<Snapshot>, BuildError> {
        self.reloads.run(|| {
            let before = self.snapshot_full();
            let outcome = self.build_and_swap();
            let (after, changes, result) = match &outcome {
                Ok(new) => (new.admin.config_hash.clone(), changes(&before, new), Ok(())),
                Err(e) => (
                    String::new(),
                    serde_json::json!({}),
                    Err(e.problems.clone()),
                ),
            };
            self.health.audit().record(crate::audit::Event::Reload {
                who: who.to_string(),
                before: before.admin.config_hash.clone(),
                after,
                changes,
                result,
            });
            outcome
        })
    }

    /// What monitoring reports about reloads: generation, last success, failures, last error.
    pub fn reload_status(&self) -> ReloadStatus {
        self.reloads.status()
    }

    fn build_and_swap(&self) -> Result<Arc<Snapshot>, BuildError> {
        let old = self.snapshot.load_full();
        let mut new = Snapshot::build_after(&self.source, &self.health, Some(&old))?;
        let http_listen = |s: &Snapshot| s.http.as_ref().map(|h| h.listen.clone());
        let resolver_listen = |s: &Snapshot| s.resolver.as_ref().map(|r| r.listeners.clone());
        if new.listeners.len() != old.listeners.len()
            || new.listeners.iter().zip(&old.listeners).any(|(a, b)| {
                a.name != b.name || a.addresses != b.addresses || a.dot != b.dot || a.doq != b.doq
            })
            || http_listen(&new) != http_listen(&old)
            || resolver_listen(&new).map(|l| addrs_of(&l))
                != resolver_listen(&old).map(|l| addrs_of(&l))
        {
            return Err(BuildError {
                problems: vec![
                    "listeners (names or addresses) changed: restart gslbd to apply that".into(),
                ],
            });
        }
        if new.admin.socket != old.admin.socket {
            return Err(BuildError {
                problems: vec![
                    "[admin] socket (path or mode) changed: restart gslbd to apply that".into(),
                ],
            });
        }
        crate::xfr::commit(&std::mem::take(&mut new.xfr_pending));
        let new = Arc::new(new);
        if let Some(r) = &new.resolver {
            self.resolvers.apply(r);
        }
        self.snapshot.store(new.clone());
        if tokio::runtime::Handle::try_current().is_ok() {
            crate::xfr::notify::after_swap(Some(&old), &new);
        }
        drop(old);
        self.start_health();
        self.secondaries.sync(self);
        Ok(new)
    }

    /// Serves `zone` (a secondary's newly transferred data, or its SERVFAIL placeholder) in
    /// place of the zone with its origin: a copy of the serving snapshot sharing everything
    /// else, swapped in under the reload lock, so a reload that read the older file cannot
    /// store its snapshot after this one (the file is written before this is called).
    pub fn swap_zone(&self, zone: Arc<crate::zone::Zone>) {
        self.reloads.exclusive(|| {
            let cur = self.snapshot.load_full();
            self.snapshot.store(Arc::new(cur.with_zone(zone)));
        });
    }

    /// Starts checks for addresses the current snapshot added (and lets go of those it dropped);
    /// points the audit trail and the overrides at the files the snapshot names.
    fn start_health(&self) {
        let snap = self.snapshot.load();
        self.health.audit().configure(snap.admin.audit.clone());
        self.health
            .overrides()
            .open(snap.admin.overrides_state.as_deref(), self.health.audit());
        if tokio::runtime::Handle::try_current().is_ok() {
            let file = self.snapshot.load().gslb.health_state.clone();
            self.health.start(file.as_deref());
        }
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub fn resolvers(&self) -> &Arc<Resolvers> {
        &self.resolvers
    }

    /// The HTTP addresses this server listens on, as bound.
    pub fn http_addresses(&self) -> &[SocketAddr] {
        &self.http_bound
    }

    /// Queries the authoritative listeners have answered since start.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// UDP answers the fast path (prebuilt answers and GSLB prefixes) has written since start.
    pub fn fast_answers(&self) -> u64 {
        self.fast.load(Ordering::Relaxed)
    }

    /// `reload` off the query path, with the outcome logged.
    pub async fn reload_logged(&self) -> bool {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.reload_as("signal")).await {
            Ok(Ok(s)) => {
                let records: usize = s.zones.iter().map(|z| z.records).sum();
                info!(zones = s.zones.len(), records, "reloaded");
                true
            }
            Ok(Err(e)) => {
                warn!("reload failed, still serving the previous data:\n{e}");
                false
            }
            Err(e) => {
                warn!("reload task failed: {e}");
                false
            }
        }
    }
}

/// What a reload changed, for the audit trail: zones added, removed or changed (serial or
/// record count), GSLB rules added or removed.
fn changes(old: &Snapshot, new: &Snapshot) -> serde_json::Value {
    use std::collections::BTreeMap;
    let zones = |s: &Snapshot| -> BTreeMap<String, (u32, usize)> {
        s.zones
            .iter()
            .map(|z| (z.origin.to_string(), (z.serial, z.records)))
            .collect()
    };
    let rules = |s: &Snapshot| -> BTreeMap<String, ()> {
        s.gslb.rules.iter().map(|r| (r.name.clone(), ())).collect()
    };
    fn diff<V: PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> serde_json::Value {
        let added: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
        let removed: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
        let changed: Vec<&String> = a
            .iter()
            .filter(|(k, v)| b.get(*k).is_some_and(|w| w != *v))
            .map(|(k, _)| k)
            .collect();
        serde_json::json!({ "added": added, "removed": removed, "changed": changed })
    }
    serde_json::json!({
        "zones": diff(&zones(old), &zones(new)),
        "rules": diff(&rules(old), &rules(new)),
    })
}

/// Installs the SIGHUP handler. Call it before the first load: SIGHUP's default action ends the
/// process (exit 129), and loading large zones takes seconds, during which a SIGHUP (a config
/// management run, a log rotation) must not kill it. A SIGHUP that arrives before
/// `reload_on_sighup` runs is kept by the handler and reloads once serving.
pub fn sighup() -> io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// The task that reloads on each SIGHUP `hup` (from `sighup`) receives. SIGHUPs that arrive
/// while a reload runs are one pending notification: they cost one more reload, not one each.
pub async fn reload_on_sighup(handle: Handle, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        info!("SIGHUP: reloading");
        handle.reload_logged().await;
    }
}

/// Renews the signatures of signed zones (`dnssec`): when the serving snapshot's refresh period
/// has ended, the snapshot is rebuilt as SIGHUP rebuilds it (new validity window, every zone
/// signed again). Looks once a minute; a failed build is tried again a minute later while the
/// old signatures, valid `validity_days - refresh_days` longer, keep serving. Never returns.
async fn resign_when_due(handle: Handle) -> io::Result<()> {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let Some(due) = handle.snapshot().dnssec_refresh else {
            continue;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now >= due {
            info!("DNSSEC refresh period ended: rebuilding to renew signatures");
            handle.reload_logged().await;
        }
    }
}

/// Resolver listeners are identified by name and addresses; their other settings reload.
fn addrs_of(l: &[crate::resolver::ResolverListener]) -> Vec<(String, Vec<SocketAddr>, bool, bool)> {
    l.iter()
        .map(|l| (l.name.clone(), l.addresses.clone(), l.udp, l.tcp))
        .collect()
}

/// One bound socket and the listener it belongs to.
enum Bound {
    Udp {
        listener: usize,
        socket: UdpSocket,
    },
    Tcp {
        listener: usize,
        socket: TcpListener,
    },
    /// HTTPDNS / DoH (src/http).
    Http {
        socket: TcpListener,
    },
    /// The resolver's listeners (src/resolver), by index in `[[resolver.listener]]`.
    ResolverUdp {
        listener: usize,
        socket: UdpSocket,
    },
    ResolverTcp {
        listener: usize,
        socket: TcpListener,
    },
    /// DNS over TLS (src/encrypted.rs).
    Dot {
        listener: usize,
        socket: TcpListener,
    },
    /// DNS over QUIC (src/encrypted.rs).
    Doq {
        listener: usize,
        socket: UdpSocket,
    },
}

pub struct Server {
    handle: Handle,
    bound: Vec<Bound>,
    /// `[admin] socket`, bound at start.
    admin_socket: Option<tokio::net::UnixListener>,
}

/// A bound address, as reported to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundAddr {
    pub listener: String,
    pub proto: &'static str,
    pub addr: SocketAddr,
}

impl Server {
    /// Builds the first snapshot and binds every listener address.
    pub async fn bind(source: Source) -> Result<Server, StartError> {
        Server::bind_with_clock(source, Arc::new(SystemClock::default())).await
    }

    /// `bind` with the resolver cache's clock given (tests move it by hand to expire entries).
    pub async fn bind_with_clock(
        source: Source,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, StartError> {
        let health = Health::new();
        let mut snapshot = Snapshot::build_with(&source, &health)?;
        let (mut bound, dns_port) = bind_all(&snapshot)?;
        crate::xfr::commit(&std::mem::take(&mut snapshot.xfr_pending));
        let resolvers = Arc::new(Resolvers::new(clock));
        resolvers.set_listen_port(dns_port);
        let mut http_bound = Vec::new();
        for &addr in snapshot.http.iter().flat_map(|h| &h.listen) {
            let socket = tcp_socket(addr).map_err(|source| StartError::Bind {
                addr,
                proto: "http",
                source,
            })?;
            http_bound.extend(socket.local_addr().ok());
            bound.push(Bound::Http { socket });
        }
        // Encrypted listeners bind like HTTP: their own port (port 0 = an ephemeral one each).
        for (listener, l) in snapshot.listeners.iter().enumerate() {
            for &addr in &l.dot {
                let socket = tcp_socket(addr).map_err(|source| StartError::Bind {
                    addr,
                    proto: "dot",
                    source,
                })?;
                bound.push(Bound::Dot { listener, socket });
            }
            for &addr in &l.doq {
                let socket = udp_socket(addr, false).map_err(|source| StartError::Bind {
                    addr,
                    proto: "doq",
                    source,
                })?;
                bound.push(Bound::Doq { listener, socket });
            }
        }
        let admin_socket = match &snapshot.admin.socket {
            Some((path, mode)) => {
                Some(bind_unix(path, *mode).map_err(|source| StartError::Socket {
                    path: path.clone(),
                    source,
                })?)
            }
            None => None,
        };
        let handle = Handle {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            source: Arc::new(source),
            health,
            resolvers,
            served: Arc::new(AtomicU64::new(0)),
            fast: Arc::new(AtomicU64::new(0)),
            reloads: Arc::new(Reloads::default()),
            http_bound: Arc::new(http_bound),
            secondaries: Arc::default(),
        };
        handle.start_health();
        handle.secondaries.sync(&handle);
        Ok(Server {
            handle,
            bound,
            admin_socket,
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    pub fn addresses(&self) -> Vec<BoundAddr> {
        let snap = self.handle.snapshot();
        self.bound
            .iter()
            .map(|b| match b {
                Bound::Udp { listener, socket } => BoundAddr {
                    listener: snap.listeners[*listener].name.clone(),
                    proto: "udp",
                    addr: socket.local_addr().expect("bound socket has an address"),
                },
                Bound::Tcp { listener, socket } => BoundAddr {
                    listener: snap.listeners[*listener].name.clone(),
                    proto: "tcp",
                    addr: socket.local_addr().expect("bound socket has an address"),
                },
                Bound::Http { socket } => BoundAddr {
                    listener: "http".to_string(),
                    proto: "http",
                    addr: socket.local_addr().expect("bound socket has an address"),
                },
                Bound::ResolverUdp { listener, socket } => BoundAddr {
                    listener: resolver_name(&snap, *listener),
                    proto: "udp",
                    addr: socket.local_addr().expect("bound socket has an address"),
                },
                Bound::ResolverTcp { listener, socket } => BoundAddr {
                    listener: resolver_name(&snap, *listener),
                    proto: "tcp",
                    addr: socket.local_addr().expect("bound socket has an address"),
                },
                Bound::Dot { listener, socket } => BoundAddr {
                    listener: snap.listeners[*listener].name.clone(),
                    proto: "dot",
                    addr: socket.local_addr().expect("bound socket has an address"),
                },
                Bound::Doq { listener, socket } => BoundAddr {
                    listener: snap.listeners[*listener].name.clone(),
                    proto: "doq",
                    addr: socket.local_addr().expect("bound socket has an address"),
                },
            })
            .fold(Vec::new(), |mut v, a| {
                // Several worker sockets on one address are one address to the caller.
                if !v.contains(&a) {
                    v.push(a);
                }
                v
            })
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let mut tasks = JoinSet::new();
        if let Some(socket) = self.admin_socket {
            tasks.spawn(crate::http::serve_socket(self.handle.clone(), socket));
        }
        tasks.spawn(resign_when_due(self.handle.clone()));
        let limits = self.handle.snapshot().limits.clone();
        // One fast-path budget for the process, shared evenly by the authoritative UDP threads;
        // one rate limiter for all of them (a flood spread over threads is still one flood).
        let udp_threads = self
            .bound
            .iter()
            .filter(|b| matches!(b, Bound::Udp { .. }))
            .count();
        let share = limits.fast_path_memory / udp_threads.max(1);
        let rrl = Arc::new(crate::rrl::Limiter::new(
            self.handle.snapshot().rrl.table_size,
        ));
        // One connection table per TCP listener (authoritative and resolver), shared by its
        // addresses.
        let mut tables: std::collections::HashMap<(bool, usize), Arc<ConnTable>> =
            Default::default();
        let mut table = |resolver: bool, listener: usize| {
            tables.entry((resolver, listener)).or_default().clone()
        };
        let idle = Duration::from_millis(limits.tcp_idle_timeout_ms);
        // DoT and DoQ connections have a cap of their own, of the same size as TCP's.
        let encrypted_slots = Arc::new(Semaphore::new(limits.tcp_max_connections));
        for b in self.bound {
            let snap = self.handle.snapshot.clone();
            match b {
                Bound::Udp { listener, socket } => {
                    tasks.spawn(serve_udp(
                        snap,
                        listener,
                        socket,
                        self.handle.served.clone(),
                        self.handle.fast.clone(),
                        (share, rrl.clone()),
                    ));
                }
                Bound::Tcp { listener, socket } => {
                    let conn = Conn {
                        snap,
                        listener,
                        served: self.handle.served.clone(),
                        resolvers: None,
                    };
                    tasks.spawn(serve_tcp(conn, socket, table(false, listener)));
                }
                Bound::ResolverUdp { listener, socket } => {
                    tasks.spawn(serve_resolver_udp(
                        snap,
                        self.handle.resolvers.clone(),
                        listener,
                        socket,
                    ));
                }
                Bound::ResolverTcp { listener, socket } => {
                    let conn = Conn {
                        snap,
                        listener,
                        served: self.handle.served.clone(),
                        resolvers: Some(self.handle.resolvers.clone()),
                    };
                    tasks.spawn(serve_tcp(conn, socket, table(true, listener)));
                }
                Bound::Http { socket } => {
                    tasks.spawn(crate::http::serve(self.handle.clone(), socket));
                }
                Bound::Dot { listener, socket } => {
                    tasks.spawn(crate::encrypted::serve_dot(
                        snap,
                        listener,
                        socket,
                        encrypted_slots.clone(),
                        idle,
                    ));
                }
                Bound::Doq { listener, socket } => {
                    tasks.spawn(crate::encrypted::serve_doq(
                        snap,
                        listener,
                        socket,
                        encrypted_slots.clone(),
                        idle,
                    ));
                }
            }
        }
        tokio::select! {
            _ = shutdown => Ok(()),
            Some(res) = tasks.join_next() => match res {
                Ok(r) => r,
                Err(e) => Err(io::Error::other(e)),
            },
        }
        // Dropping the JoinSet aborts every listener task.
    }
}

/// Binds the admin socket at `path` with `mode`. The socket is made under a temporary name, given
/// its mode, then renamed into place, so it is never reachable at `path` with the umask's looser
/// mode. A socket file left by an earlier process is replaced when nothing answers on it; one
/// that answers belongs to a running server and is an error, as is any other kind of file.
fn bind_unix(path: &std::path::Path, mode: u32) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another server answers on it",
            ));
        }
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let listener = tokio::net::UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// Binds every DNS address (authoritative and resolver); returns the sockets and the port of the
/// authoritative listeners (the first one's), which `upstream_port = "listen"` means.
fn bind_all(snap: &Snapshot) -> Result<(Vec<Bound>, u16), StartError> {
    // Port 0 asks for one ephemeral port shared by every port-0 address: glue carries addresses,
    // not ports, so a hierarchy of nameservers must share one. Retry if another process holds the
    // chosen port on one of the addresses.
    let mut last_err = None;
    for _ in 0..20 {
        match try_bind_all(snap) {
            Ok(b) => return Ok(b),
            Err(e @ StartError::Bind { .. }) if is_addr_in_use(&e) && uses_port_zero(snap) => {
                last_err = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.expect("loop ran"))
}

fn is_addr_in_use(e: &StartError) -> bool {
    matches!(e, StartError::Bind { source, .. } if source.kind() == io::ErrorKind::AddrInUse)
}

fn uses_port_zero(snap: &Snapshot) -> bool {
    snap.listeners
        .iter()
        .flat_map(|l| &l.addresses)
        .chain(
            snap.resolver
                .iter()
                .flat_map(|r| &r.listeners)
                .flat_map(|l| &l.addresses),
        )
        .any(|a| a.port() == 0)
}

fn resolver_name(snap: &Snapshot, i: usize) -> String {
    snap.resolver
        .as_ref()
        .and_then(|r| r.listeners.get(i))
        .map_or_else(|| format!("resolver {i}"), |l| l.name.clone())
}

fn try_bind_all(snap: &Snapshot) -> Result<(Vec<Bound>, u16), StartError> {
    let mut shared_port = 0u16;
    let mut first_port = None;
    let mut out = Vec::new();
    let workers = snap.limits.udp_workers();
    let resolver_listeners = snap.resolver.iter().flat_map(|r| r.listeners.iter());
    // Authoritative listeners first, then the resolver's: (index, is resolver, addresses, udp, tcp).
    let all: Vec<(usize, bool, &Vec<SocketAddr>, bool, bool)> = snap
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i, false, &l.addresses, l.udp, l.tcp))
        .chain(
            resolver_listeners
                .enumerate()
                .map(|(i, l)| (i, true, &l.addresses, l.udp, l.tcp)),
        )
        .collect();
    for (i, resolver, addresses, udp, tcp) in all {
        for &configured in addresses {
            let mut addr = configured;
            if addr.port() == 0 {
                addr.set_port(shared_port);
            }
            if udp {
                // Fixed ports get one SO_REUSEPORT socket per worker (the kernel spreads clients
                // over them). A port-0 address shares one socket among its workers instead: with
                // SO_REUSEPORT a second process of ours could join a port it merely guessed free.
                let reuse = configured.port() != 0 && workers > 1;
                if reuse {
                    // SO_REUSEPORT lets any socket of the same user with the option set join the
                    // port, so a second gslbd (other data, `tcp = false` so no TCP bind fails)
                    // would silently get half the queries. A bind without the option fails when
                    // anyone holds the address and port: refuse to start then. (The probe is
                    // closed before the workers bind; a process starting in that instant could
                    // still slip in, which a restart race cannot avoid without the option.)
                    probe_udp(addr).map_err(|source| StartError::Bind {
                        addr,
                        proto: "udp",
                        source,
                    })?;
                }
                let socket = udp_socket(addr, reuse).map_err(|source| StartError::Bind {
                    addr,
                    proto: "udp",
                    source,
                })?;
                if configured.port() == 0 && shared_port == 0 {
                    shared_port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
                    addr.set_port(shared_port);
                }
                let mut sockets = vec![socket];
                for _ in 1..workers {
                    let extra = if reuse {
                        udp_socket(addr, true)
                    } else {
                        sockets[0].try_clone()
                    };
                    sockets.push(extra.map_err(|source| StartError::Bind {
                        addr,
                        proto: "udp",
                        source,
                    })?);
                }
                for socket in sockets {
                    out.push(if resolver {
                        Bound::ResolverUdp {
                            listener: i,
                            socket,
                        }
                    } else {
                        Bound::Udp {
                            listener: i,
                            socket,
                        }
                    });
                }
            }
            if tcp {
                let socket = tcp_socket(addr).map_err(|source| StartError::Bind {
                    addr,
                    proto: "tcp",
                    source,
                })?;
                if configured.port() == 0 && shared_port == 0 {
                    shared_port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
                    addr.set_port(shared_port);
                }
                out.push(if resolver {
                    Bound::ResolverTcp {
                        listener: i,
                        socket,
                    }
                } else {
                    Bound::Tcp {
                        listener: i,
                        socket,
                    }
                });
            }
            if !resolver && first_port.is_none() {
                first_port = Some(addr.port());
            }
        }
    }
    Ok((out, first_port.unwrap_or(0)))
}

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, ty, Some(proto))?;
    if addr.ip().is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let s = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    if reuse_port {
        #[cfg(unix)]
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Binds `addr` without SO_REUSEPORT and closes it again: Err(AddrInUse) when any socket holds it.
fn probe_udp(addr: SocketAddr) -> io::Result<()> {
    udp_socket(addr, false).map(drop)
}

fn tcp_socket(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    // Restarting must not wait for old connections in TIME_WAIT.
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Runs `serve` on a thread of its own; the returned future ends with the thread's error, and
/// dropping it (server shutdown) stops the thread within `udp::POLL`.
async fn on_thread(
    name: String,
    serve: impl FnOnce(&AtomicBool) -> io::Result<()> + Send + 'static,
) -> io::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = udp::StopOnDrop(stop.clone());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<io::Result<()>>();
    std::thread::Builder::new().name(name).spawn(move || {
        let _ = done_tx.send(serve(&stop));
    })?;
    match done_rx.await {
        Ok(Err(e)) => Err(e),
        // Ended without an error (only after a stop, which this future outlives by definition).
        _ => std::future::pending().await,
    }
}

/// An authoritative UDP socket: batches in, `query::respond` per packet, batches out.
async fn serve_udp(
    snap: Arc<ArcSwap<Snapshot>>,
    listener: usize,
    socket: UdpSocket,
    served: Arc<AtomicU64>,
    fast: Arc<AtomicU64>,
    (share, rrl): (usize, Arc<crate::rrl::Limiter>),
) -> io::Result<()> {
    on_thread(format!("udp-{listener}"), move |stop| {
        udp::serve(
            &socket,
            stop,
            fast::Worker::new(snap, listener, served, fast, share, rrl),
        )
    })
    .await
}

/// Client queries a resolver listener may have walking at once; beyond this new ones that need a
/// walk are dropped (as Unbound drops past num-queries-per-thread) and the client retries.
const RESOLVER_WALKS: usize = 4096;

/// A resolver UDP socket on the same receive thread loop as the authoritative ones: cache hits
/// are answered in place (no task wake-ups); walks, which wait on the network, run as tokio tasks
/// (at most `RESOLVER_WALKS`) and send their reply themselves.
async fn serve_resolver_udp(
    snap: Arc<ArcSwap<Snapshot>>,
    resolvers: Arc<Resolvers>,
    listener: usize,
    socket: UdpSocket,
) -> io::Result<()> {
    // The listener's name cannot change without a restart, so its instance is fetched once.
    let Some(instance) = instance_of(&snap.load(), &resolvers, listener) else {
        return Ok(());
    };
    let runtime = tokio::runtime::Handle::current();
    let socket = Arc::new(socket);
    on_thread(format!("resolver-udp-{listener}"), move |stop| {
        let walks = Arc::new(Semaphore::new(RESOLVER_WALKS));
        let replies = socket.clone();
        udp::serve(
            &socket,
            stop,
            udp::Replies(|packet: &[u8], peer| {
                let snapshot = snap.load();
                let settings = snapshot.resolver.clone()?;
                let payload = snapshot.limits.udp_payload;
                let port = resolvers.upstream_port(&settings);
                match resolver::serve::answer_now(
                    &instance, port, &settings, listener, payload, packet, peer, false,
                ) {
                    resolver::serve::Step::Done(r) => r,
                    resolver::serve::Step::Walk => {
                        // Too many walks: drop, the client retries.
                        let permit = walks.clone().try_acquire_owned().ok()?;
                        let packet = packet.to_vec();
                        let socket = replies.clone();
                        let instance = instance.clone();
                        runtime.spawn(async move {
                            let _permit = permit;
                            let resp = resolver::serve::walk(
                                instance, port, settings, listener, payload, packet, peer, false,
                            )
                            .await;
                            // A UDP send does not block for long (room in the socket buffer, or the
                            // datagram is dropped), so it is done in place.
                            if let Some(resp) = resp
                                && let Err(e) = socket.send_to(&resp, peer)
                            {
                                tracing::debug!("udp send to {peer}: {e}");
                            }
                        });
                        None
                    }
                }
            }),
        )
    })
    .await
}

/// The resolver instance (cache, RTTs) of resolver listener `i`.
fn instance_of(
    snap: &Snapshot,
    resolvers: &Resolvers,
    i: usize,
) -> Option<Arc<resolver::Instance>> {
    let settings = snap.resolver.as_ref()?;
    let l = settings.listeners.get(i)?;
    Some(resolvers.instance(&l.name, settings))
}

/// What a TCP connection serves: an authoritative listener or (with `resolvers`) a resolver one.
#[derive(Clone)]
struct Conn {
    snap: Arc<ArcSwap<Snapshot>>,
    listener: usize,
    served: Arc<AtomicU64>,
    resolvers: Option<Arc<Resolvers>>,
}

/// A query's reply: ready now, or a resolver walk to wait for.
enum Reply {
    Now(Option<Vec<u8>>),
    /// A zone transfer (AXFR/IXFR), written one message at a time.
    Transfer(Box<crate::xfr::Outgoing>),
    Walk(std::pin::Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>),
}

impl Conn {
    fn answer(&self, packet: &[u8], peer: SocketAddr) -> Reply {
        let snapshot = self.snap.load_full();
        let Some(resolvers) = &self.resolvers else {
            self.served.fetch_add(1, Ordering::Relaxed);
            match crate::xfr::answer_tcp(&snapshot, self.listener, packet, peer) {
                crate::xfr::TcpAnswer::NotTransfer => {}
                crate::xfr::TcpAnswer::One(r) => return Reply::Now(Some(r)),
                crate::xfr::TcpAnswer::Stream(t) => return Reply::Transfer(t),
            }
            let client = Client {
                addr: peer,
                transport: Transport::Tcp,
            };
            return Reply::Now(query::respond(&snapshot, self.listener, packet, &client));
        };
        let Some(settings) = snapshot.resolver.clone() else {
            return Reply::Now(None);
        };
        let payload = snapshot.limits.udp_payload;
        let Some(instance) = instance_of(&snapshot, resolvers, self.listener) else {
            return Reply::Now(None);
        };
        let port = resolvers.upstream_port(&settings);
        match resolver::serve::answer_now(
            &instance,
            port,
            &settings,
            self.listener,
            payload,
            packet,
            peer,
            true,
        ) {
            resolver::serve::Step::Done(r) => Reply::Now(r),
            resolver::serve::Step::Walk => Reply::Walk(Box::pin(resolver::serve::walk(
                instance,
                port,
                settings,
                self.listener,
                payload,
                packet.to_vec(),
                peer,
                true,
            ))),
        }
    }

    /// The TCP limits of the snapshot serving now (they reload; a connection keeps the ones it
    /// started with).
    fn tcp_limits(&self) -> TcpLimits {
        let l = &self.snap.load().limits;
        TcpLimits {
            idle: Duration::from_millis(l.tcp_idle_timeout_ms),
            io: Duration::from_millis(l.tcp_io_timeout_ms),
            max_connections: l.tcp_max_connections,
            max_outstanding: l.tcp_max_outstanding,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct TcpLimits {
    idle: Duration,
    io: Duration,
    max_connections: usize,
    max_outstanding: usize,
}

async fn serve_tcp(conn: Conn, socket: TcpListener, table: Arc<ConnTable>) -> io::Result<()> {
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                warn!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Every slot busy (reading, answering or writing, each bounded by tcp_io_timeout_ms or
        // the resolver's own limits): this client waits, the next ones in the accept queue.
        // An idle connection is closed for a newcomer once it has been idle tcp_io_timeout_ms
        // (the time a client is given to send a message anyway).
        let grace = conn.tcp_limits().io;
        let slot = table
            .admit_wait(|| conn.tcp_limits().max_connections, false, grace)
            .await;
        let conn = conn.clone();
        let guard = SlotGuard::new(table.clone(), slot);
        tokio::spawn(async move {
            let _ = serve_conn(conn, stream, peer, &guard).await;
        });
    }
}

/// The largest DNS message plus its length prefix.
const TCP_MESSAGE_MAX: usize = 2 + 65535;

/// One RFC 7766 connection: queries are read as they come (pipelining, 6.2.1.1) and answered at
/// once, resolver walks concurrently, replies written in the order they are ready (7: clients
/// match them by ID). Deadlines: a message's remaining bytes within `io` of its first, each reply
/// written within `io`, and `idle` with nothing outstanding (6.2.3).
async fn serve_conn(
    conn: Conn,
    mut stream: TcpStream,
    peer: SocketAddr,
    guard: &SlotGuard,
) -> io::Result<()> {
    use tokio::time::Instant;
    stream.set_nodelay(true)?;
    let limits = conn.tcp_limits();
    let (mut rd, mut wr) = stream.split();
    let mut inbuf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 4096];
    // When the first byte of the incomplete message in `inbuf` came.
    let mut message_since: Option<Instant> = None;
    let mut walks: JoinSet<Option<Vec<u8>>> = JoinSet::new();
    let mut replies: std::collections::VecDeque<Vec<u8>> = Default::default();
    // A zone transfer in progress: its next message is made when the previous one is written,
    // so a large zone is never queued whole; later queries wait behind it.
    let mut transfer: Option<Box<crate::xfr::Outgoing>> = None;
    let mut written = 0usize;
    let mut write_since: Option<Instant> = None;
    let mut idle_since = Instant::now();
    let mut read_closed = false;
    loop {
        // Answer the whole messages already read, up to the outstanding cap.
        while transfer.is_none()
            && walks.len() + replies.len() < limits.max_outstanding
            && inbuf.len() >= 2
        {
            let len = u16::from_be_bytes([inbuf[0], inbuf[1]]) as usize;
            if inbuf.len() < 2 + len {
                break;
            }
            match conn.answer(&inbuf[2..2 + len], peer) {
                Reply::Now(Some(resp)) => replies.push_back(framed(resp)),
                Reply::Now(None) => {}
                Reply::Walk(w) => {
                    walks.spawn(w);
                }
                Reply::Transfer(t) => transfer = Some(t),
            }
            inbuf.drain(..2 + len);
        }
        if replies.is_empty()
            && let Some(t) = &mut transfer
        {
            match t.next_message() {
                Some(m) => replies.push_back(framed(m)),
                None => {
                    // Done: the queries read meanwhile are answered now.
                    transfer = None;
                    continue;
                }
            }
        }
        let outstanding = walks.len() + replies.len() + usize::from(transfer.is_some());
        if write_since.is_none() && !replies.is_empty() {
            write_since = Some(Instant::now());
        }
        // Only an incomplete message runs against the I/O deadline; whole ones wait for the cap.
        let partial = !inbuf.is_empty()
            && (inbuf.len() < 2
                || inbuf.len() < 2 + u16::from_be_bytes([inbuf[0], inbuf[1]]) as usize);
        if !partial {
            message_since = None;
        } else if message_since.is_none() {
            message_since = Some(Instant::now());
        }
        let idle = outstanding == 0 && inbuf.is_empty();
        if idle && read_closed {
            return Ok(());
        }
        if !idle {
            idle_since = Instant::now();
        }
        guard.set_idle(idle);
        let deadline = [
            write_since.map(|t| t + limits.io),
            message_since.map(|t| t + limits.io),
            idle.then_some(idle_since + limits.idle),
        ]
        .into_iter()
        .flatten()
        .min();
        let can_read = !read_closed && outstanding < limits.max_outstanding && !whole(&inbuf);
        tokio::select! {
            _ = guard.closed() => return Ok(()),
            _ = sleep_until_some(deadline) => return Ok(()),
            r = wr.write(replies.front().map_or(&[][..], |r| &r[written..])), if !replies.is_empty() => {
                let n = r?;
                if n == 0 {
                    return Ok(());
                }
                written += n;
                if written == replies[0].len() {
                    replies.pop_front();
                    written = 0;
                    // The next reply's write starts now.
                    write_since = None;
                }
            }
            Some(done) = walks.join_next(), if !walks.is_empty() => {
                if let Ok(Some(resp)) = done {
                    replies.push_back(framed(resp));
                }
            }
            r = rd.read(&mut chunk), if can_read => {
                let n = r?;
                if n == 0 {
                    // The client half-closed: what it asked is still answered (RFC 7766 6.2.4).
                    read_closed = true;
                    inbuf.clear();
                } else {
                    inbuf.extend_from_slice(&chunk[..n]);
                    debug_assert!(inbuf.len() <= TCP_MESSAGE_MAX + chunk.len());
                }
            }
        }
    }
}

/// Whether `buf` starts with a whole message (then it is answered before more is read, which
/// bounds the buffer at one message plus one read).
fn whole(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf.len() >= 2 + u16::from_be_bytes([buf[0], buf[1]]) as usize
}

fn framed(resp: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(resp.len() + 2);
    out.extend_from_slice(&(resp.len() as u16).to_be_bytes());
    out.extend_from_slice(&resp);
    out
}

async fn sleep_until_some(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Raises the soft limit on open files to the hard one, as NSD and Unbound do at start: every
/// TCP client, upstream query and transfer is a descriptor, and a service manager's default soft
/// limit (1024) runs out under a flood of slow upstreams long before memory or CPU do. Returns
/// (soft, hard) as they are afterwards; None where getrlimit fails.
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    Some((lim.rlim_cur, lim.rlim_max))
}
