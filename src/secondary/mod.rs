//! Secondary zones: zones whose data comes by zone transfer from primaries (RFC 1034 4.3.5,
//! RFC 1995 IXFR, RFC 5936 AXFR, RFC 1996 NOTIFY), signed with TSIG when a key is configured.
//!
//! ```toml
//! [[zone]]
//! name = "example.net"
//! kind = "secondary"                      # "primary" (default: from `file`) | "secondary"
//! file = "/var/lib/gslbd/example.net.zone" # transferred data, written atomically, read at start
//! primaries = [{ address = "127.0.15.1:53", key = "xfr-key" }]   # key: a [[key]] name, optional
//! allow_notify = ["127.0.15.0/24"]        # optional; default: the primaries' addresses
//! refresh = 3600                          # optional overrides of the SOA timers (seconds)
//! retry = 600
//! expire = 604800
//! ```
//!
//! Per zone, one task (`run_zone`) waits for the refresh timer or a NOTIFY, asks the primaries
//! for the SOA over TCP, and when the serial is newer (RFC 1982) transfers: IXFR with our SOA
//! when we hold the records (an AXFR-style reply is taken as well), else or after a failed IXFR
//! AXFR. The records are written as a master file (RFC 3597 generic form) and loaded with
//! `Zone::load`, the same loader and checks as any zone file, with the zone's GSLB rules attached;
//! a transfer that fails them keeps the old data (logged, counted). The file is then replaced
//! atomically (temp file, fsync, rename) and the zone swapped into the serving snapshot
//! (`server::Handle::swap_zone`: a copy of the snapshot sharing everything but that zone, stored
//! under the reload lock so a reload and a transfer cannot undo each other). Refresh failures
//! retry every `retry`; after `expire` without a successful check the zone answers SERVFAIL
//! (RFC 1035 4.3.5) until a transfer succeeds.
//!
//! State that must survive reloads (records, serial, timers, counters) lives in a `Control`
//! per (zone, file), outside the snapshot; the snapshot holds an `Arc` to it, which the query
//! path uses to wake the task on NOTIFY.

pub mod catalog;
pub mod xfr;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use self::xfr::{Collector, Outcome, Rr};
use crate::tsig::{self, Key};

/// `primaries = [{ address = "..", key = ".." }]` of a secondary `[[zone]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrimaryConfig {
    pub address: SocketAddr,
    /// A `[[key]]` name: SOA queries and transfers are signed with it and replies must be.
    pub key: Option<String>,
}

/// One primary, its key resolved.
#[derive(Debug, Clone)]
pub struct Primary {
    pub address: SocketAddr,
    pub key: Option<Arc<Key>>,
}

/// SOA timer overrides (RFC 1035 3.3.13); None: the SOA's own value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timers {
    pub refresh: Option<u32>,
    pub retry: Option<u32>,
    pub expire: Option<u32>,
}

/// A secondary zone as the snapshot holds it.
#[derive(Debug, Clone)]
pub struct SecondaryZone {
    pub origin: Name,
    /// Lowercase wire form (the NOTIFY lookup key).
    pub origin_key: Vec<u8>,
    pub file: PathBuf,
    pub primaries: Vec<Primary>,
    pub allow_notify: Vec<IpNet>,
    pub timers: Timers,
    pub rotate: bool,
    /// GSLB rules attached to names of this zone (name, rule index), attached again to every
    /// transferred version.
    pub rules: Vec<(Name, u32)>,
    pub control: Arc<Control>,
    /// A catalog zone (`kind = "catalog"`): where its members' files go.
    pub members_dir: Option<PathBuf>,
    /// A catalog's serial its members in this snapshot were read from (None: none read).
    pub members_from: Option<u32>,
    /// The catalog this zone is a member of.
    pub member_of: Option<Name>,
    /// A member's unique label in its catalog (RFC 9432 4.1; empty: not a member).
    pub catalog_label: Vec<u8>,
    /// A member's `group` properties (RFC 9432 4.4.2).
    pub groups: Vec<String>,
}

/// What lives across reloads for one secondary zone.
#[derive(Debug, Default)]
pub struct Control {
    /// Woken by an accepted NOTIFY (RFC 1996 4.7: check the SOA now).
    pub notify: tokio::sync::Notify,
    state: Mutex<State>,
    pub axfr: AtomicU64,
    pub ixfr: AtomicU64,
    pub failures: AtomicU64,
    pub bytes: AtomicU64,
    /// Unix seconds of the last successful transfer (0: none).
    pub last_success: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// The records we serve, when known (IXFR needs them; a file we did not write leaves this
    /// None and the next transfer is an AXFR).
    records: Option<Vec<Rr>>,
    soa: Option<Rr>,
    last_transfer: Option<SystemTime>,
    last_kind: Option<&'static str>,
    next_refresh: Option<SystemTime>,
    expires: Option<SystemTime>,
    expired: bool,
    last_error: Option<String>,
    started: bool,
}

impl Control {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the zone has expired (answers SERVFAIL); read by snapshot builds.
    pub fn expired(&self) -> bool {
        self.state().expired
    }

    /// Forgets the zone's data and transfer history (a catalog member reset, RFC 9432 5.6):
    /// the next refresh transfers it by AXFR whatever the primary's serial.
    pub fn reset(&self) {
        let mut s = self.state();
        s.records = None;
        s.soa = None;
        s.last_transfer = None;
        s.last_kind = None;
    }
}

/// Controls by (origin, file), so a reload gets the same one (weak: a control no snapshot
/// references is dropped with its task).
static CONTROLS: Mutex<Vec<(String, PathBuf, Weak<Control>)>> = Mutex::new(Vec::new());

/// The control of a secondary zone, the same across reloads.
pub fn control(origin: &Name, file: &Path) -> Arc<Control> {
    let key = origin.to_lowercase().to_string();
    let mut all = CONTROLS.lock().unwrap_or_else(PoisonError::into_inner);
    all.retain(|(_, _, w)| w.strong_count() > 0);
    if let Some(c) = all
        .iter()
        .find(|(o, f, _)| *o == key && f == file)
        .and_then(|(_, _, w)| w.upgrade())
    {
        return c;
    }
    let c = Arc::new(Control::default());
    all.push((key, file.to_path_buf(), Arc::downgrade(&c)));
    c
}

impl SecondaryZone {
    /// Compiles the secondary part of a `[[zone]]`; problems name the zone.
    pub fn compile(
        zc: &crate::config::ZoneConfig,
        origin: &Name,
        file: PathBuf,
        base: &Path,
        keys: &tsig::Keyring,
    ) -> Result<SecondaryZone, Vec<String>> {
        let mut problems = Vec::new();
        let kind = match zc.kind {
            crate::config::ZoneKind::Catalog => "catalog",
            _ => "secondary",
        };
        if zc.primaries.is_empty() {
            problems.push(format!(
                "zone {origin}: kind = \"{kind}\" needs primaries = [{{ address = \"IP:PORT\" }}]"
            ));
        }
        let members_dir = zc.members_dir.as_ref().map(|d| base.join(d));
        match (zc.kind, &members_dir) {
            (crate::config::ZoneKind::Catalog, None) => problems.push(format!(
                "zone {origin}: kind = \"catalog\" needs members_dir (where member zones' files go)"
            )),
            (crate::config::ZoneKind::Secondary, Some(_)) => problems.push(format!(
                "zone {origin}: members_dir is for kind = \"catalog\""
            )),
            _ => {}
        }
        let mut primaries = Vec::new();
        for p in &zc.primaries {
            let key = match &p.key {
                None => None,
                Some(k) => match keys.get(k) {
                    Some(k) => Some(k.clone()),
                    None => {
                        problems.push(format!(
                            "zone {origin}: primary {}: key {k:?} is not a [[key]]",
                            p.address
                        ));
                        None
                    }
                },
            };
            primaries.push(Primary {
                address: p.address,
                key,
            });
        }
        for (what, v) in [
            ("refresh", zc.refresh),
            ("retry", zc.retry),
            ("expire", zc.expire),
        ] {
            if v == Some(0) {
                problems.push(format!("zone {origin}: {what} must be at least 1 second"));
            }
        }
        let allow_notify = match &zc.allow_notify {
            Some(nets) => nets.clone(),
            // RFC 1996 3.10: NOTIFY is accepted from the zone's masters.
            None => zc
                .primaries
                .iter()
                .map(|p| IpNet::from(p.address.ip()))
                .collect(),
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(SecondaryZone {
            origin: origin.clone(),
            origin_key: crate::zone::name::key_of(origin)[..].to_vec(),
            control: control(origin, &file),
            file,
            primaries,
            allow_notify,
            timers: Timers {
                refresh: zc.refresh,
                retry: zc.retry,
                expire: zc.expire,
            },
            rotate: zc.rotate,
            rules: Vec::new(),
            members_dir,
            members_from: None,
            member_of: None,
            catalog_label: Vec::new(),
            groups: Vec::new(),
        })
    }

    /// The zone to serve while there is no data (no file yet, or expired): an SOA and NS of our
    /// own making, marked expired, so every name in it is SERVFAIL (RFC 1035 4.3.5).
    pub fn placeholder(&self) -> crate::zone::Zone {
        use hickory_proto::rr::rdata::{NS, SOA};
        use hickory_proto::rr::{RData, Record};
        let file: Arc<Path> = Arc::from(self.file.as_path());
        let rec = |data: RData| crate::zone::reader::SourcedRecord {
            record: Record::from_rdata(self.origin.clone(), 0, data),
            file: file.clone(),
            line: 0,
        };
        let soa = SOA::new(self.origin.clone(), self.origin.clone(), 0, 0, 0, 0, 0);
        let records = vec![
            rec(RData::SOA(soa)),
            // RFC 6761 6.4: "invalid." is never a real server (and needs no glue here).
            rec(RData::NS(NS(Name::from_ascii("invalid.").expect("a name")))),
        ];
        let mut z = crate::zone::Zone::build(&self.origin, &self.file, records)
            .expect("an SOA and an NS make a zone");
        z.expired = true;
        z
    }
}

/// The answer to a NOTIFY (RFC 1996) for `q` from `from`: NOERROR (and the zone's task woken)
/// when the zone is one of our secondaries and the source is allowed, else REFUSED.
pub fn notify(snap: &crate::snapshot::Snapshot, qkey: &[u8], qtype: u16, from: IpAddr) -> u16 {
    use crate::wire::rcode;
    // RFC 1996 3.7: the question names the zone, QTYPE SOA.
    let Some(z) = snap.secondaries.iter().find(|z| z.origin_key == qkey) else {
        tracing::info!(from = %from, "NOTIFY for a zone that is not a secondary here: REFUSED");
        return rcode::REFUSED;
    };
    let from = match from {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(from, IpAddr::V4),
        v4 => v4,
    };
    if qtype != 6 || !z.allow_notify.iter().any(|n| n.contains(&from)) {
        tracing::info!(zone = %z.origin, from = %from, "NOTIFY refused (allow_notify)");
        return rcode::REFUSED;
    }
    tracing::info!(zone = %z.origin, from = %from, "NOTIFY accepted: checking the primaries' SOA");
    z.control.notify.notify_one();
    rcode::NOERROR
}

/// The secondary zones' part of `gslbd zone status`.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneStatus {
    pub zone: String,
    pub serial: Option<u32>,
    /// Unix seconds.
    pub last_transfer: Option<u64>,
    pub last_kind: Option<&'static str>,
    pub next_refresh: Option<u64>,
    pub expires: Option<u64>,
    pub expired: bool,
    pub transfers_axfr: u64,
    pub transfers_ixfr: u64,
    pub failures: u64,
    pub bytes: u64,
    pub last_error: Option<String>,
    /// The catalog a member zone belongs to (RFC 9432), its unique label and group properties.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_label: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

fn unix(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// The status of every secondary zone of `snap`.
pub fn status(snap: &crate::snapshot::Snapshot) -> Vec<ZoneStatus> {
    snap.secondaries
        .iter()
        .map(|z| {
            let c = &z.control;
            let s = c.state();
            ZoneStatus {
                zone: z.origin.to_string(),
                serial: s.soa.as_ref().and_then(Rr::serial),
                last_transfer: unix(s.last_transfer),
                last_kind: s.last_kind,
                next_refresh: unix(s.next_refresh),
                expires: unix(s.expires),
                expired: s.expired,
                transfers_axfr: c.axfr.load(Ordering::Relaxed),
                transfers_ixfr: c.ixfr.load(Ordering::Relaxed),
                failures: c.failures.load(Ordering::Relaxed),
                bytes: c.bytes.load(Ordering::Relaxed),
                last_error: s.last_error.clone(),
                catalog: z.member_of.as_ref().map(ToString::to_string),
                catalog_label: (!z.catalog_label.is_empty())
                    .then(|| String::from_utf8_lossy(&z.catalog_label).into_owned()),
                groups: z.groups.clone(),
            }
        })
        .collect()
}

/// Prometheus text of the transfer counters (appended to `/metrics`).
pub fn render_metrics(snap: &crate::snapshot::Snapshot, out: &mut String) {
    use std::fmt::Write as _;
    if snap.secondaries.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP gslbd_xfr_in_total Incoming zone transfers by zone and kind."
    );
    let _ = writeln!(out, "# TYPE gslbd_xfr_in_total counter");
    for z in &snap.secondaries {
        for (kind, n) in [("axfr", &z.control.axfr), ("ixfr", &z.control.ixfr)] {
            let _ = writeln!(
                out,
                "gslbd_xfr_in_total{{zone=\"{}\",kind=\"{kind}\"}} {}",
                z.origin,
                n.load(Ordering::Relaxed)
            );
        }
    }
    for (name, kind, f, help) in [
        (
            "gslbd_xfr_in_failures_total",
            "counter",
            0,
            "Failed incoming transfers (old data kept).",
        ),
        (
            "gslbd_xfr_in_bytes_total",
            "counter",
            1,
            "Bytes of incoming transfers.",
        ),
        (
            "gslbd_xfr_in_last_success_timestamp_seconds",
            "gauge",
            2,
            "When the zone last transferred successfully.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for z in &snap.secondaries {
            let c = &z.control;
            let v = [&c.failures, &c.bytes, &c.last_success][f].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{zone=\"{}\"}} {v}", z.origin);
        }
    }
}

/// The secondary zones' tasks of one server (in `server::Handle`).
#[derive(Default)]
pub struct Secondaries {
    tasks: Mutex<HashMap<(Vec<u8>, PathBuf), tokio::task::AbortHandle>>,
}

impl Drop for Secondaries {
    fn drop(&mut self) {
        for (_, t) in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            t.abort();
        }
    }
}

impl Secondaries {
    /// Starts a task for each secondary zone of the serving snapshot without one and ends those
    /// of zones it no longer has. Called after every swap (start, reload).
    pub fn sync(&self, handle: &crate::server::Handle) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let snap = handle.snapshot_full();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted: Vec<(Vec<u8>, PathBuf)> = snap
            .secondaries
            .iter()
            .map(|z| (z.origin_key.clone(), z.file.clone()))
            .collect();
        tasks.retain(|k, t| {
            let keep = wanted.contains(k) && !t.is_finished();
            if !keep {
                t.abort();
            }
            keep
        });
        for k in wanted {
            if !tasks.contains_key(&k) {
                let h = handle.clone();
                let key = k.clone();
                let t = tokio::spawn(async move { run_zone(h, key).await });
                tasks.insert(k, t.abort_handle());
            }
        }
    }
}

/// A TCP exchange's deadlines: connecting, and each message of the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn find(snap: &crate::snapshot::Snapshot, key: &(Vec<u8>, PathBuf)) -> Option<SecondaryZone> {
    snap.secondaries
        .iter()
        .find(|z| z.origin_key == key.0 && z.file == key.1)
        .cloned()
}

/// Timer values: the override, else the SOA's field, else RFC 1912 2.2-ish defaults.
fn timer(z: &SecondaryZone, soa: Option<&Rr>, which: usize) -> u32 {
    let over = [z.timers.refresh, z.timers.retry, z.timers.expire][which - 1];
    over.or_else(|| soa.and_then(|s| s.soa_field(which)))
        .unwrap_or([3600, 600, 604_800][which - 1])
        .max(1)
}

/// One secondary zone's life: refresh timer or NOTIFY -> SOA check -> transfer -> swap.
async fn run_zone(handle: crate::server::Handle, key: (Vec<u8>, PathBuf)) {
    let Some(z) = find(&handle.snapshot_full(), &key) else {
        return;
    };
    let control = z.control.clone();
    init_from_file(&z).await;
    loop {
        let wait = {
            let s = control.state();
            s.next_refresh
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::ZERO)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = control.notify.notified() => {}
        }
        // The config may have changed (a reload): use the zone as the serving snapshot has it.
        let Some(z) = find(&handle.snapshot_full(), &key) else {
            return;
        };
        let result = refresh(&handle, &z).await;
        if result.is_ok() && z.members_dir.is_some() {
            catalog::sync(&handle, &z).await;
        }
        let now = SystemTime::now();
        let mut s = control.state();
        let soa = s.soa.clone();
        match result {
            Ok(()) => {
                s.next_refresh = Some(now + Duration::from_secs(timer(&z, soa.as_ref(), 1) as u64));
                s.expires = Some(now + Duration::from_secs(timer(&z, soa.as_ref(), 3) as u64));
                s.last_error = None;
            }
            Err(e) => {
                control.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(zone = %z.origin, "refresh failed: {e}");
                s.last_error = Some(e);
                s.next_refresh = Some(now + Duration::from_secs(timer(&z, soa.as_ref(), 2) as u64));
                let expired = s.expires.is_none_or(|t| t <= now);
                if expired && !s.expired && s.soa.is_some() {
                    // RFC 1035 4.3.5: data older than EXPIRE is no longer authoritative.
                    s.expired = true;
                    drop(s);
                    tracing::error!(zone = %z.origin, "expired: answering SERVFAIL until a transfer succeeds");
                    handle.swap_zone(Arc::new(z.placeholder()));
                }
            }
        }
    }
}

/// At the first start of a zone's task: the records of a file we wrote, for IXFR, and the
/// expiry counted from the file's time.
async fn init_from_file(z: &SecondaryZone) {
    let c = z.control.clone();
    if std::mem::replace(&mut c.state().started, true) {
        return;
    }
    let file = z.file.clone();
    let read = tokio::task::spawn_blocking(move || {
        let text = crate::zone::reader::read_file(&file).ok()?;
        let mtime = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
        Some((
            xfr::parse_zone_text(std::str::from_utf8(&text).ok()?),
            mtime,
        ))
    })
    .await
    .ok()
    .flatten();
    let mut s = c.state();
    if let Some((records, mtime)) = read {
        let soa = records
            .as_ref()
            .and_then(|r| r.iter().find(|r| r.rtype == xfr::SOA).cloned());
        if let (Some(soa), Some(t)) = (&soa, mtime) {
            s.expires = Some(t + Duration::from_secs(timer(z, Some(soa), 3) as u64));
        }
        s.soa = soa;
        s.records = records;
    }
}

/// Checks the primaries in order until one answers: transfer when it has a newer serial.
async fn refresh(handle: &crate::server::Handle, z: &SecondaryZone) -> Result<(), String> {
    let mut errors = Vec::new();
    for p in &z.primaries {
        match refresh_from(handle, z, p).await {
            Ok(()) => return Ok(()),
            Err(e) => errors.push(format!("{}: {e}", p.address)),
        }
    }
    Err(errors.join("; "))
}

async fn refresh_from(
    handle: &crate::server::Handle,
    z: &SecondaryZone,
    p: &Primary,
) -> Result<(), String> {
    let ours = z.control.state().soa.clone();
    let expired = z.control.expired();
    let theirs = soa_query(z, p).await?;
    let serial = theirs.serial().ok_or("SOA reply without a serial")?;
    if let Some(o) = ours.as_ref().and_then(Rr::serial)
        && !xfr::newer(serial, o)
        && !expired
    {
        tracing::debug!(zone = %z.origin, serial, "up to date");
        return Ok(());
    }
    let have_records = z.control.state().records.is_some();
    // IXFR first when we hold the records (RFC 1995), AXFR otherwise or when IXFR fails.
    if have_records && let Some(o) = &ours {
        match transfer(z, p, Some(o)).await {
            Ok((outcome, bytes)) => match install(handle, z, outcome, bytes) {
                Ok(()) => return Ok(()),
                Err(e) if e.starts_with("rejected") => return Err(e),
                Err(e) => tracing::info!(zone = %z.origin, "IXFR not usable ({e}): AXFR"),
            },
            Err(e) => tracing::info!(zone = %z.origin, "IXFR failed ({e}): AXFR"),
        }
    }
    let (outcome, bytes) = transfer(z, p, None).await?;
    install(handle, z, outcome, bytes)
}

/// Sends `query` (signed with the primary's key) over TCP and feeds every reply message to
/// `each` until it says the reply is complete.
async fn exchange(
    p: &Primary,
    mut query: Vec<u8>,
    mut each: impl FnMut(&[u8]) -> Result<bool, String>,
) -> Result<(), String> {
    let mut verifier = p
        .key
        .as_ref()
        .map(|k| tsig::sign_request(&mut query, k, tsig::now()));
    let mut s = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(p.address))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    s.write_all(&framed).await.map_err(|e| e.to_string())?;
    let id = [query[0], query[1]];
    loop {
        let msg = tokio::time::timeout(IO_TIMEOUT, async {
            let len = s.read_u16().await?;
            let mut buf = vec![0; len as usize];
            s.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        })
        .await
        .map_err(|_| "reply timed out".to_string())?
        .map_err(|e| format!("reading the reply: {e}"))?;
        if msg.len() < 12 || msg[..2] != id {
            return Err("reply with another ID".into());
        }
        if let Some(v) = &mut verifier {
            v.verify(&msg, tsig::now())
                .map_err(|e| format!("TSIG: {e}"))?;
        }
        if each(&msg)? {
            if let Some(v) = &verifier {
                v.finish().map_err(|e| format!("TSIG: {e}"))?;
            }
            return Ok(());
        }
    }
}

fn query_id() -> u16 {
    rand::random()
}

async fn soa_query(z: &SecondaryZone, p: &Primary) -> Result<Rr, String> {
    let q = xfr::query(query_id(), &z.origin_key, xfr::SOA, None);
    let mut soa = None;
    exchange(p, q, |msg| {
        let r = xfr::read_reply(msg)?;
        if r.rcode != 0 {
            return Err(format!("SOA query answered RCODE {}", r.rcode));
        }
        soa = r.answers.into_iter().find(|a| a.rtype == xfr::SOA);
        Ok(true)
    })
    .await?;
    soa.ok_or_else(|| "no SOA in the reply (not authoritative for the zone?)".into())
}

async fn transfer(
    z: &SecondaryZone,
    p: &Primary,
    ours: Option<&Rr>,
) -> Result<(Outcome, u64), String> {
    let qtype = if ours.is_some() { xfr::IXFR } else { xfr::AXFR };
    let q = xfr::query(query_id(), &z.origin_key, qtype, ours);
    let mut c = Collector::new(ours.is_some());
    exchange(p, q, |msg| {
        let r = xfr::read_reply(msg)?;
        let done = c.add(r, msg.len())?;
        // RFC 1995 2: a reply of the SOA alone in one message means "nothing newer".
        Ok(done || c.single_soa())
    })
    .await?;
    let bytes = c.bytes();
    Ok((c.finish()?, bytes))
}

/// In-memory file system holding the transferred zone, so it is checked before it is written.
struct OneFile(String);

impl crate::zone::reader::ZoneFs for OneFile {
    fn read(&self, _: &Path) -> std::io::Result<String> {
        Ok(self.0.clone())
    }
}

/// Turns a finished transfer into the served zone: records, checks, file, swap.
fn install(
    handle: &crate::server::Handle,
    z: &SecondaryZone,
    outcome: Outcome,
    bytes: u64,
) -> Result<(), String> {
    let c = &z.control;
    let (records, kind) = match outcome {
        Outcome::UpToDate(_) if !c.expired() => return Ok(()),
        Outcome::UpToDate(_) => return Err("expired, and the primary offers nothing newer".into()),
        Outcome::Full(r) => (r, "axfr"),
        Outcome::Incremental { diffs, .. } => {
            let mut base = c
                .state()
                .records
                .clone()
                .ok_or("no records to apply IXFR to")?;
            xfr::apply(&mut base, diffs)?;
            (base, "ixfr")
        }
    };
    let text = xfr::zone_text(&z.origin_key, &records);
    let mut zone = match crate::zone::Zone::load(&z.origin, &z.file, &OneFile(text.clone())) {
        Ok(zone) => zone,
        Err(errs) => {
            c.failures.fetch_add(1, Ordering::Relaxed);
            // The rejected data goes beside the file, so the errors' line numbers can be read.
            let bad = z.file.with_extension("rejected");
            let _ = std::fs::write(&bad, &text);
            let list: Vec<String> = errs
                .iter()
                .take(5)
                .map(|e| format!("{}:{}: {}", bad.display(), e.line, e.message))
                .collect();
            tracing::error!(zone = %z.origin, kind, "transfer rejected, old data kept: {}", list.join("; "));
            return Err(format!("rejected {kind}: {}", list.join("; ")));
        }
    };
    // A catalog whose members cannot be read would drop every member at the rebuild: refused
    // like a broken zone, the old catalog keeps its members (RFC 9432 4.2).
    if let Some(dir) = &z.members_dir
        && let Err(e) = catalog::members(&zone, dir)
    {
        c.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(zone = %z.origin, kind, "transfer rejected, old data kept: {e}");
        return Err(format!("rejected {kind}: {e}"));
    }
    zone.rotate = z.rotate;
    for (name, rule) in &z.rules {
        if let Err(e) = zone.attach_rule(name, *rule) {
            c.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(zone = %z.origin, "transfer rejected, old data kept: GSLB rule at {name}: {e}");
            return Err(format!("rejected {kind}: GSLB rule at {name}: {e}"));
        }
    }
    write_atomically(&z.file, text.as_bytes())
        .map_err(|e| format!("writing {}: {e}", z.file.display()))?;
    let serial = zone.serial;
    handle.swap_zone(Arc::new(zone));
    let now = SystemTime::now();
    match kind {
        "ixfr" => c.ixfr.fetch_add(1, Ordering::Relaxed),
        _ => c.axfr.fetch_add(1, Ordering::Relaxed),
    };
    c.bytes.fetch_add(bytes, Ordering::Relaxed);
    c.last_success
        .store(unix(Some(now)).unwrap_or(0), Ordering::Relaxed);
    let mut s = c.state();
    s.soa = records.iter().find(|r| r.rtype == xfr::SOA).cloned();
    s.records = Some(records);
    s.last_transfer = Some(now);
    s.last_kind = Some(kind);
    s.expired = false;
    tracing::info!(zone = %z.origin, serial, kind, bytes, "transfer done, serving the new data");
    Ok(())
}

/// Temp file in the same folder, fsync, rename: a crash leaves the old file or the new one.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // A catalog's members_dir is made with its first member.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp-gslbd");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
