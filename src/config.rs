//! The configuration file: one TOML document (serde, `deny_unknown_fields`).
//!
//! ```toml
//! [limits]                    # all optional
//! udp_payload = 1232          # EDNS payload we advertise and the cap on UDP answers (RFC 6891 6.2.5)
//! cname_chain = 12            # CNAME hops followed in one answer
//! tcp_idle_timeout_ms = 10000 # RFC 7766 6.2.3: close idle connections
//! tcp_io_timeout_ms = 500     # a whole message read (from its first byte), a whole reply written
//! tcp_max_connections = 512   # open TCP connections per listener (idle ones closed first when full)
//! tcp_max_outstanding = 16    # queries read on one connection whose replies are not yet written
//! udp_workers = 0             # UDP threads per address (0 = one per CPU; SO_REUSEPORT sockets)
//! udp_fast_path = true        # prebuilt answers + geo cache per UDP thread (false: general path)
//!
//! [server]                    # all optional: what the server says about itself
//! identity = "ns1.example"    # CHAOS TXT id.server / hostname.bind and NSID (RFC 5001); absent: REFUSED, no NSID
//! version = "gslbd"           # CHAOS TXT version.bind / version.server; absent (the default): hidden, REFUSED
//!
//! [[zone]]
//! name = "example.com."
//! file = "example.com.zone"   # relative to the config file's folder
//!
//! [[listener]]
//! name = "all"
//! addresses = ["127.0.0.1:1053", "[::1]:1053"]
//! zones = ["*"]               # "*" = every zone; else zone names
//! dot = "127.0.0.1:853"       # optional: DNS over TLS (RFC 7858) on these addresses (one or a list)
//! doq = "127.0.0.1:853"       # optional: DNS over QUIC (RFC 9250), UDP
//! tls = { cert = "cert.pem", key = "key.pem" }  # for dot/doq; absent: [http] tls's files
//! ```
//!
//! Port 0 in every address of every listener asks for one ephemeral port shared by all of them (glue
//! records carry addresses, not ports, so a lab hierarchy must sit on one port).
//!
//! This module only parses and checks shape; turning the config into runtime data (zones loaded,
//! tables compiled) is `snapshot::build`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::zone::reader::ZoneFs;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub server: ServerInfo,
    #[serde(default, rename = "zone")]
    pub zones: Vec<ZoneConfig>,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// Geo databases and carriers (src/geo).
    #[serde(default)]
    pub geo: crate::geo::GeoConfig,
    /// GSLB regions, health checks and rules (src/gslb).
    #[serde(default)]
    pub gslb: crate::gslb::GslbConfig,
    /// HTTPDNS / DoH (src/http); absent = no HTTP listener.
    #[serde(default)]
    pub http: Option<crate::http::HttpConfig>,
    /// The iterative resolver (src/resolver); absent = none.
    #[serde(default)]
    pub resolver: Option<crate::resolver::ResolverConfig>,
    /// Response rate limiting on the authoritative UDP listeners (src/rrl.rs); off by default.
    #[serde(default)]
    pub rrl: crate::rrl::RrlConfig,
    /// DNS cookies (src/cookie.rs); answered by default.
    #[serde(default)]
    pub cookies: crate::cookie::CookieConfig,
    /// A catalog zone (RFC 9432) of the zones served here, for secondaries to follow.
    #[serde(default)]
    pub catalog: Option<crate::xfr::catalog::CatalogConfig>,
    /// Runtime control: the overrides state file, the audit log, admin token policy.
    #[serde(default)]
    pub admin: AdminConfig,
    /// TSIG keys (src/tsig.rs), `[[key]]` (`[[keys]]` accepted).
    #[serde(default, rename = "key", alias = "keys")]
    pub keys: Vec<crate::tsig::KeyConfig>,
    /// A fleet sharing configuration, overrides and audit through etcd (src/cluster).
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// `[admin]`: where runtime control keeps its state (src/overrides.rs, src/audit.rs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Overrides are saved here after every change and read back at start (relative to the config
    /// file's folder); None: they last until the process ends.
    pub overrides_state: Option<PathBuf>,
    /// The audit trail (JSON lines); None: kept in memory only (`/admin/audit`).
    pub audit_log: Option<PathBuf>,
    /// The audit file is rotated before it would pass this many bytes.
    pub audit_max_bytes: u64,
    /// Rotated audit files kept (audit.jsonl.1 ... .N).
    pub audit_keep: u32,
    /// Accept the admin token over plain HTTP from non-loopback peers (by default it is accepted
    /// only over TLS or from loopback, where it cannot be sniffed on the way).
    pub token_over_plain_http: bool,
    /// A Unix socket serving the same routes as `[http]`, admin ones without the token: the
    /// file's mode and owner are the check (relative to the config file's folder). Bound at
    /// start; a change needs a restart.
    pub socket: Option<PathBuf>,
    /// The socket file's mode (TOML octal, e.g. `0o660` to let a group in).
    pub socket_mode: u32,
}

impl Default for AdminConfig {
    fn default() -> AdminConfig {
        AdminConfig {
            overrides_state: None,
            audit_log: None,
            audit_max_bytes: 10 * 1024 * 1024,
            audit_keep: 3,
            token_over_plain_http: false,
            socket: None,
            socket_mode: 0o600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub udp_payload: u16,
    pub cname_chain: usize,
    /// RFC 7766 6.2.3: a connection with nothing outstanding is closed after this long.
    pub tcp_idle_timeout_ms: u64,
    /// Once the first byte of a message has arrived the rest must arrive within this, and a reply
    /// must be written within it (Knot's `tcp-io-timeout`): a client that sends slowly or does
    /// not read cannot hold a connection.
    pub tcp_io_timeout_ms: u64,
    /// Open TCP connections per listener (each `[[listener]]` and `[[resolver.listener]]` has its
    /// own); at the cap the longest-idle connection is closed for a new one (RFC 7766 6.2.3).
    pub tcp_max_connections: usize,
    /// Queries read on one connection whose replies are not yet written; at the cap the
    /// connection is not read until a reply goes out (RFC 7766 6.2.1.1 pipelining, bounded).
    pub tcp_max_outstanding: usize,
    /// UDP worker threads per address (0 = one per CPU).
    pub udp_workers: usize,
    /// Serve repeated UDP questions from prebuilt answers and cache geo per client network
    /// (`fast`); false sends every UDP query through the general path (to compare or rule it out).
    pub udp_fast_path: bool,
    /// Bytes the UDP fast path's tables (answers, GSLB prefixes, geo caches) may hold in all, for
    /// the whole process; a restart applies a change.
    pub fast_path_memory: usize,
}

impl Limits {
    /// The number of UDP worker threads per address: `udp_workers`, or one per CPU when 0.
    pub fn udp_workers(&self) -> usize {
        match self.udp_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // RFC 9715 / DNS flag day 2020: 1232 avoids IP fragmentation on common paths.
            udp_payload: 1232,
            cname_chain: 12,
            tcp_idle_timeout_ms: 10_000,
            // Knot's tcp-io-timeout default.
            tcp_io_timeout_ms: 500,
            tcp_max_connections: 512,
            tcp_max_outstanding: 16,
            udp_workers: 0,
            udp_fast_path: true,
            fast_path_memory: 64 << 20,
        }
    }
}

/// What the server tells about itself (`[server]`). Both are hidden unless configured, as an
/// operator who does not want to advertise a version expects (NSD `hide-version`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerInfo {
    /// Answered to CHAOS TXT `id.server.` and `hostname.bind.` (RFC 4892) and as NSID (RFC 5001).
    pub identity: Option<String>,
    /// Answered to CHAOS TXT `version.bind.` and `version.server.`.
    pub version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub name: String,
    pub file: PathBuf,
    /// Rotate multi-address RRsets round robin in answers (like BIND's `rrset-order cyclic`).
    #[serde(default)]
    pub rotate: bool,
    // Outgoing transfers (this server as the zone's primary): `xfr::ZoneXfr` compiles these.
    /// Who may transfer the zone (AXFR/IXFR): entries "NETWORK", "key NAME" or "NETWORK key NAME".
    /// Empty: nobody (REFUSED), as NSD and Knot without an ACL.
    #[serde(default)]
    pub transfer: Vec<String>,
    /// Secondaries sent a NOTIFY when a reload changes the zone's serial: "ADDRESS[:PORT]", with
    /// " key NAME" to sign it.
    #[serde(default)]
    pub notify: Vec<String>,
    /// What a reload does when the zone's data changed and its serial did not increase.
    #[serde(default)]
    pub serial: crate::xfr::SerialPolicy,
    /// The IXFR journal of this zone (default: the zone file's path + ".journal" when the zone
    /// is transferable and the file is on disk).
    #[serde(default)]
    pub journal: Option<PathBuf>,
    /// Largest journal in bytes: the oldest changes are dropped past it.
    #[serde(default = "default_journal_size")]
    pub journal_size: u64,
    // Secondary zones (src/secondary): the data comes by transfer and is kept in `file`.
    /// "primary" (the default: `file` is the zone), "secondary", or "catalog" (a secondary
    /// zone that is a catalog, RFC 9432: its members become secondary zones).
    #[serde(default)]
    pub kind: ZoneKind,
    /// A catalog's member zone files go here, one `<zone>.zone` each (kind = "catalog").
    #[serde(default)]
    pub members_dir: Option<PathBuf>,
    /// Where a secondary transfers from, in order of preference.
    #[serde(default)]
    pub primaries: Vec<crate::secondary::PrimaryConfig>,
    /// Sources a NOTIFY is accepted from (default: the primaries' addresses, RFC 1996 3.10).
    #[serde(default)]
    pub allow_notify: Option<Vec<ipnet::IpNet>>,
    /// Overrides of the SOA's REFRESH, RETRY and EXPIRE (RFC 1035 3.3.13), seconds.
    #[serde(default)]
    pub refresh: Option<u32>,
    #[serde(default)]
    pub retry: Option<u32>,
    #[serde(default)]
    pub expire: Option<u32>,
    /// Sign the zone when the snapshot is built (`dnssec`): keys, validity and refresh.
    #[serde(default)]
    pub dnssec: Option<crate::dnssec::DnssecConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneKind {
    #[default]
    Primary,
    Secondary,
    /// A catalog zone consumed (`secondary::catalog`).
    Catalog,
}

fn default_journal_size() -> u64 {
    16 << 20
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub addresses: Vec<SocketAddr>,
    pub zones: Vec<String>,
    #[serde(default = "yes")]
    pub udp: bool,
    #[serde(default = "yes")]
    pub tcp: bool,
    /// DNS over TLS (RFC 7858) addresses (`src/encrypted.rs`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub dot: Vec<SocketAddr>,
    /// DNS over QUIC (RFC 9250) addresses (`src/encrypted.rs`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub doq: Vec<SocketAddr>,
    /// The certificate and key of `dot` and `doq`; absent: those of `[http] tls`.
    #[serde(default)]
    pub tls: Option<crate::http::config::TlsConfig>,
}

fn yes() -> bool {
    true
}

/// `"addr:port"` or `["addr:port", ...]`: one encrypted listener is the common case.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(SocketAddr),
        Many(Vec<SocketAddr>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(v) => v,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `message` starts with the line number when the parser knows it.
    #[error("{}:{message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// Where a configuration and the files it names come from.
#[derive(Debug, Clone)]
pub struct Source {
    pub origin: Origin,
    /// Replaces the port of every listener address (`--port`), e.g. 0 to run the lab beside another.
    pub port: Option<u16>,
    /// Replaces `[limits] udp_fast_path`: the tests run one config on both UDP paths with it.
    pub udp_fast_path: Option<bool>,
    /// Replaces `[limits] udp_workers`: the fast-path tests run one UDP thread, so a repeated
    /// question reaches the thread whose tables the first ask filled.
    pub udp_workers: Option<usize>,
}

#[derive(Debug, Clone)]
pub enum Origin {
    /// A config file on disk; zone paths are relative to its folder.
    File(PathBuf),
    /// The lab world compiled into the binary.
    Lab,
    /// A fleet node's own file (with `[cluster]`): serves the cached revision the cluster pushed,
    /// with the file's node-local sections over it (src/cluster).
    Cluster(PathBuf),
}

impl Source {
    pub fn file(path: impl Into<PathBuf>) -> Source {
        Source {
            origin: Origin::File(path.into()),
            port: None,
            udp_fast_path: None,
            udp_workers: None,
        }
    }

    pub fn lab() -> Source {
        Source {
            origin: Origin::Lab,
            port: None,
            udp_fast_path: None,
            udp_workers: None,
        }
    }

    /// Reads and parses the config, returning it with the file system its zone paths resolve in.
    pub fn load(&self) -> Result<(Config, Box<dyn ZoneFs>, PathBuf), ConfigError> {
        let (mut config, fs, base) = self.load_unchanged()?;
        if let Some(fast) = self.udp_fast_path {
            config.limits.udp_fast_path = fast;
        }
        if let Some(workers) = self.udp_workers {
            config.limits.udp_workers = workers;
        }
        if let Some(port) = self.port {
            config
                .listeners
                .iter_mut()
                .flat_map(|l| l.addresses.iter_mut())
                .for_each(|a| a.set_port(port));
            config
                .resolver
                .iter_mut()
                .flat_map(|r| r.listeners.iter_mut())
                .flat_map(|l| l.addresses.iter_mut())
                .for_each(|a| a.set_port(port));
            // HTTP cannot share the DNS port on the same address (both are TCP): only "any free
            // port" (0) carries over, so tests and side-by-side labs get their own ephemeral one.
            if port == 0
                && let Some(h) = &mut config.http
            {
                h.listen.iter_mut().for_each(|a| a.set_port(0));
            }
            // DoT shares TCP with plain DNS, DoQ UDP: the same rule as HTTP, an ephemeral port
            // of their own.
            if port == 0 {
                config
                    .listeners
                    .iter_mut()
                    .flat_map(|l| l.dot.iter_mut().chain(l.doq.iter_mut()))
                    .for_each(|a| a.set_port(0));
            }
        }
        Ok((config, fs, base))
    }

    fn load_unchanged(&self) -> Result<(Config, Box<dyn ZoneFs>, PathBuf), ConfigError> {
        match &self.origin {
            Origin::File(path) => {
                // Bounded like every configured file: a FIFO or a hung mount as the config path
                // must fail the reload, not hold the reload lock forever.
                let text =
                    crate::zone::reader::DiskFs
                        .read(path)
                        .map_err(|source| ConfigError::Read {
                            path: path.clone(),
                            source,
                        })?;
                let config = parse(&text, path)?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                Ok((config, Box::new(crate::zone::reader::DiskFs), base))
            }
            Origin::Cluster(path) => crate::cluster::load(path),
            Origin::Lab => {
                let path = PathBuf::from(crate::lab::CONFIG_NAME);
                let config = parse(crate::lab::CONFIG, &path)?;
                Ok((
                    config,
                    Box::new(crate::lab::EmbeddedFs),
                    PathBuf::from("zones"),
                ))
            }
        }
    }

    pub fn describe(&self) -> String {
        match &self.origin {
            Origin::File(p) => p.display().to_string(),
            Origin::Lab => "the built-in lab world".to_string(),
            Origin::Cluster(p) => match crate::config::parse_cluster_current(p) {
                Some(n) => format!("{} (cluster revision {n})", p.display()),
                None => format!("{} (no cluster revision yet)", p.display()),
            },
        }
    }
}

/// The cluster revision a node's file currently points at (for messages).
pub fn parse_cluster_current(bootstrap: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(bootstrap).ok()?;
    let c = parse(&text, bootstrap).ok()?.cluster?;
    crate::cluster::current(&crate::cluster::cache_dir(&c, bootstrap))
}

/// Parses config text; an error is one line, `path:LINE: message`, like zone errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let message = e.message().trim_end().replace('\n', "; ");
        ConfigError::Parse {
            path: path.to_path_buf(),
            message: match line {
                Some(l) => format!("{l}: {message}"),
                None => format!(" {message}"),
            },
        }
    })?;
    // Two [[key]]s with one name: the second is an error at its own line (a peer knows a key
    // by name only, so which secret would be meant is unknowable).
    let mut seen = std::collections::HashSet::new();
    for k in &config.keys {
        let canon = k.name.get_ref().trim_end_matches('.').to_ascii_lowercase();
        if !seen.insert(canon) {
            let line = text[..k.name.span().start.min(text.len())]
                .matches('\n')
                .count()
                + 1;
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("{line}: key {:?} is configured twice", k.name.get_ref()),
            });
        }
    }
    Ok(config)
}
