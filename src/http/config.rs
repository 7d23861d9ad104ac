//! The `[http]` section: HTTPDNS/DoH listener, accounts, trusted proxies, limits. Parsed by serde
//! with the rest of the config; compiled into `HttpSettings` (part of the snapshot, so accounts,
//! secrets and limits hot-reload; listen addresses need a restart, like DNS listeners).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::zone::reader::ZoneFs;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Addresses to serve HTTP on (plain HTTP, or HTTPS when `tls` is set).
    pub listen: Vec<SocketAddr>,
    /// The DNS listener whose zones HTTP answers from (default: the first).
    #[serde(default)]
    pub view: Option<String>,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` are believed (CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Accept `ip=` / `edns_client_subnet=` naming the client explicitly.
    #[serde(default = "yes")]
    pub allow_client_ip: bool,
    /// Bearer token for `POST /admin/reload`; no token = the endpoint answers 403.
    #[serde(default)]
    pub admin_token: Option<String>,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A request taking longer gets 408 RequestTimeout.
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    /// An HTTP/1 request head (request line and header fields) must be whole within this from
    /// when the server starts waiting for it (connection open or previous response sent); also
    /// bounds a TLS handshake. Slower clients are disconnected without a response.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_ms: u64,
    /// A connection with no request in progress is closed after this long (keep-alive).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// Requests served on one connection before it is closed (HTTP/2: GOAWAY).
    #[serde(default = "default_max_requests")]
    pub max_requests_per_connection: u64,
    /// Longest accepted request target (path + query string), bytes.
    #[serde(default = "default_max_uri")]
    pub max_uri: usize,
    /// Largest accepted request body (DoH POST), bytes.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Hosts per `/resolve` batch (the vendor allows 5).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Longest a signature may stay valid: `t` further in the future is InvalidDuration.
    #[serde(default = "default_max_sign")]
    pub max_sign_duration_s: u64,
    /// What Alibaba's `/{account}/ss` tells SDKs to use ("ip:port", v4 and v6); absent: the
    /// `listen` addresses as bound (unspecified ones left out).
    #[serde(default)]
    pub schedule: Vec<SocketAddr>,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default, rename = "account")]
    pub accounts: Vec<AccountConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second per client address (0 = no limit).
    pub per_ip: f64,
    /// Requests per second per account (0 = no limit).
    pub per_account: f64,
    /// Bucket size, in seconds of the rate (a burst allowance).
    pub burst_seconds: f64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_ip: 200.0,
            per_account: 5000.0,
            burst_seconds: 2.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub id: String,
    /// Signing secret for `/sign_d` and `/sign_resolve`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Whether the unsigned `/d` and `/resolve` may be used (needs no secret).
    #[serde(default = "yes")]
    pub unsigned: bool,
    /// Alibaba `/v2/d`: the SDK's `aesSecretKey`, hex (16 or 32 octets), for `m=1` (AES-CBC) and
    /// `m=2` (AES-GCM). The v2 signature uses `secret` (hex-decoded, as the SDK's SignService
    /// does; a secret that is not hex is used as its bytes).
    #[serde(default)]
    pub aes_secret: Option<String>,
    /// Tencent DNSPod D+ (`/d?id=&alg=`): the SDK's `dnsKey`, used as the AES or DES key.
    #[serde(default)]
    pub dnspod_key: Option<String>,
    /// Allow Tencent's `alg=des` (DES-ECB: weak, for old SDKs only).
    #[serde(default)]
    pub dnspod_des: bool,
    /// Tencent's HTTPS token form (`/d?dn=&token=`).
    #[serde(default)]
    pub dnspod_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn yes() -> bool {
    true
}
fn default_max_connections() -> usize {
    1024
}
fn default_timeout() -> u64 {
    5000
}
fn default_header_read_timeout() -> u64 {
    5000
}
fn default_idle_timeout() -> u64 {
    5000
}
fn default_max_requests() -> u64 {
    1000
}
fn default_max_uri() -> usize {
    2048
}
fn default_max_body() -> usize {
    4096
}
fn default_max_batch() -> usize {
    5
}
fn default_max_sign() -> u64 {
    86400
}

#[derive(Debug, Clone, Default)]
pub struct Account {
    pub secret: Option<String>,
    pub unsigned: bool,
    /// `aes_secret` decoded.
    pub aes_key: Option<Vec<u8>>,
    pub dnspod_key: Option<String>,
    pub dnspod_des: bool,
    pub dnspod_token: Option<String>,
}

/// `[http]` compiled: what handlers read from the snapshot on every request.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: Vec<SocketAddr>,
    /// Index of the DNS listener whose zones HTTP answers from.
    pub view: usize,
    pub trusted: Vec<(IpAddr, u8)>,
    pub allow_client_ip: bool,
    pub admin_token: Option<String>,
    pub max_connections: usize,
    pub request_timeout_ms: u64,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_requests_per_connection: u64,
    pub max_uri: usize,
    pub max_body: usize,
    pub max_batch: usize,
    pub max_sign_duration_s: u64,
    pub schedule: Vec<SocketAddr>,
    pub rate_limit: RateLimitConfig,
    pub accounts: HashMap<String, Account>,
    /// The certificate and key, loaded and checked at build (so `check` catches bad files and
    /// SIGHUP picks up renewed certificates for new connections).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl HttpSettings {
    /// Whether `ip` is inside one of the trusted proxy networks.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|(net, p)| in_net(ip, *net, *p))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - prefix as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `a.b.c.d/n`, `x::/n` or a bare address.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s.split_once('/').unwrap_or((s, ""));
    let ip: IpAddr = a
        .parse()
        .map_err(|_| format!("\"{s}\" is not an address or network"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = if p.is_empty() {
        max
    } else {
        p.parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("\"{s}\": prefix length must be 0 to {max}"))?
    };
    Ok((ip, prefix))
}

/// The certificate chain and private key of `tls`, read through `fs` relative to `base` and
/// checked to fit each other. HTTPS and the encrypted DNS listeners (`src/encrypted.rs`) share
/// this, so a file problem reads the same wherever it is configured.
pub fn load_certified_key(
    tls: &TlsConfig,
    base: &Path,
    fs: &dyn ZoneFs,
) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (cert_path, key_path) = (base.join(&tls.cert), base.join(&tls.key));
    let read = |p: &Path| {
        fs.read_bytes(p)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let cert_pem = read(&cert_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key_path.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key, &provider)
        .map(Arc::new)
        .map_err(|e| {
            format!(
                "{} / {}: the key does not fit the certificate: {e}",
                cert_path.display(),
                key_path.display()
            )
        })
}

/// A rustls server config from PEM files: the certificate chain and its private key. ALPN offers
/// h2 and http/1.1 (RFC 8484 5.2 recommends HTTP/2 for DoH; kdig +https speaks only h2).
fn load_tls(
    tls: &TlsConfig,
    base: &Path,
    fs: &dyn ZoneFs,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let key = load_certified_key(tls, base, fs)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("[http.tls]: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl HttpConfig {
    /// Checks and compiles; `listeners` are the DNS listener names, in order; TLS files are read
    /// relative to `base` through `fs`.
    pub fn compile(
        &self,
        listeners: &[String],
        base: &Path,
        fs: &dyn ZoneFs,
    ) -> Result<HttpSettings, Vec<String>> {
        let mut problems = Vec::new();
        let tls = match &self.tls {
            None => None,
            Some(t) => match load_tls(t, base, fs) {
                Ok(c) => Some(c),
                Err(e) => {
                    problems.push(e);
                    None
                }
            },
        };
        if self.listen.is_empty() {
            problems.push("[http] listen: no addresses".to_string());
        }
        let view = match &self.view {
            None => 0,
            Some(v) => listeners.iter().position(|l| l == v).unwrap_or_else(|| {
                problems.push(format!("[http] view \"{v}\" is not a [[listener]]"));
                0
            }),
        };
        let mut trusted = Vec::new();
        for t in &self.trusted_proxies {
            match parse_cidr(t) {
                Ok(n) => trusted.push(n),
                Err(e) => problems.push(format!("[http] trusted_proxies: {e}")),
            }
        }
        for (what, v) in [
            ("max_connections", self.max_connections as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            (
                "max_requests_per_connection",
                self.max_requests_per_connection,
            ),
            ("max_uri", self.max_uri as u64),
            ("max_body", self.max_body as u64),
            ("max_batch", self.max_batch as u64),
        ] {
            if v == 0 {
                problems.push(format!("[http] {what} must be at least 1"));
            }
        }
        let r = &self.rate_limit;
        if !(r.per_ip >= 0.0 && r.per_account >= 0.0 && r.burst_seconds > 0.0) {
            problems.push(
                "[http.rate_limit]: per_ip and per_account must be >= 0 (0 = off), burst_seconds > 0"
                    .into(),
            );
        }
        let mut accounts = HashMap::new();
        for a in &self.accounts {
            if a.id.is_empty()
                || !a
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                problems.push(format!(
                    "[[http.account]] \"{}\": ids are letters, digits, - and _",
                    a.id
                ));
            }
            if a.secret.as_deref() == Some("") {
                problems.push(format!("[[http.account]] {}: empty secret", a.id));
            }
            if !a.unsigned && a.secret.is_none() {
                problems.push(format!(
                    "[[http.account]] {}: unsigned = false needs a secret, or nothing could be used",
                    a.id
                ));
            }
            let aes_key = match &a.aes_secret {
                None => None,
                Some(hex) => match data_encoding::HEXLOWER_PERMISSIVE.decode(hex.as_bytes()) {
                    Ok(k) if k.len() == 16 || k.len() == 32 => Some(k),
                    _ => {
                        problems.push(format!(
                            "[[http.account]] {}: aes_secret must be 32 or 64 hex digits (AES-128 or AES-256)",
                            a.id
                        ));
                        None
                    }
                },
            };
            if a.dnspod_key.as_deref() == Some("") || a.dnspod_token.as_deref() == Some("") {
                problems.push(format!(
                    "[[http.account]] {}: empty dnspod_key or dnspod_token",
                    a.id
                ));
            }
            let acc = Account {
                secret: a.secret.clone(),
                unsigned: a.unsigned,
                aes_key,
                dnspod_key: a.dnspod_key.clone(),
                dnspod_des: a.dnspod_des,
                dnspod_token: a.dnspod_token.clone(),
            };
            if accounts.insert(a.id.clone(), acc).is_some() {
                problems.push(format!("[[http.account]] {} is configured twice", a.id));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(HttpSettings {
            listen: self.listen.clone(),
            view,
            trusted,
            allow_client_ip: self.allow_client_ip,
            admin_token: self.admin_token.clone(),
            max_connections: self.max_connections,
            request_timeout_ms: self.request_timeout_ms,
            header_read_timeout_ms: self.header_read_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            max_requests_per_connection: self.max_requests_per_connection,
            max_uri: self.max_uri,
            max_body: self.max_body,
            max_batch: self.max_batch,
            max_sign_duration_s: self.max_sign_duration_s,
            schedule: self.schedule.clone(),
            rate_limit: self.rate_limit.clone(),
            accounts,
            tls,
        })
    }
}
