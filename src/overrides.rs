//! Runtime overrides: an operator's drains, forced states and weights, applied above health checks
//! and configuration without a reload (gdnsd's `admin_state`, NS1's force up/down).
//!
//! ```toml
//! [admin]
//! overrides_state = "overrides.json"  # kept here (atomic write), read back at start
//! ```
//!
//! An override is plain data (`Override`: an id, what it applies to, an action, who, why, when,
//! an optional expiry), so that a fleet can later share the list; the list lives outside the
//! snapshot in [`Overrides`] (one per server, owned by the health registry, which every snapshot
//! build is given), and survives reloads. What it applies to:
//! - an **address** (everywhere, in one rule, or in one pool: rule + region): `drain` (not
//!   answered, still checked), `up` / `down` (forced, whatever the checks say), `weight` (replaces
//!   the configured weight; 0 = drained but checked);
//! - a **region** (for every location rule, or one): `drain` / `down` (the region fails over as if
//!   none of its members were healthy), `up` (its members count as healthy), `weight` (replaces
//!   the region's weight where regions are weighed against each other: the rule's `split` and
//!   `fallback = "spread"`; 0 = drained);
//! - a **carrier line** (for every carrier rule, or one): `drain` (that carrier's clients get the
//!   rule's default line).
//!
//! The query path reads a compiled [`Active`] list through one `ArcSwapOption` load (None while
//! there are no overrides), and the GSLB sees it only through `gslb::HealthView::overrides`, so
//! the engine stays a function of its inputs. Expired overrides are removed by a task that sleeps
//! until the next expiry (second resolution); every change is saved and written to the audit log.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::audit::Audit;

/// Most overrides kept: far more than an operator manages by hand, and a bound on what a
/// misbehaving script can make the query path scan.
pub const MAX_OVERRIDES: usize = 1000;
/// Longest `reason`/`who` text kept.
const MAX_TEXT: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Not answered; checks go on.
    Drain,
    /// Counted as healthy whatever the checks say.
    Up,
    /// Counted as down whatever the checks say.
    Down,
    /// The member's weight is `weight` (0: drained but checked).
    Weight,
}

impl Action {
    /// The name the API and the metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Action::Drain => "drain",
            Action::Up => "up",
            Action::Down => "down",
            Action::Weight => "weight",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Drain => "drained",
            Action::Up => "forced up",
            Action::Down => "forced down",
            Action::Weight => "weighted",
        }
    }
}

/// One override, as stored, listed and shared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// The rule it is limited to (its name, lowercase, no final dot); None: every rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(default)]
    pub reason: String,
    pub who: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; None: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

/// What a client asks for (`POST /admin/overrides`): an override without id and times.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default)]
    pub address: Option<IpAddr>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub line: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    pub action: Action,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Who asks (the CLI sends the user name); the server appends where the request came from.
    #[serde(default)]
    pub who: Option<String>,
    /// Seconds from now until the override ends by itself.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// The names a request refers to must exist in the serving configuration; the caller checks them
/// against the snapshot through this.
pub trait Catalog {
    /// Whether `rule` is a rule of this kind ("location" or "carrier").
    fn rule_kind(&self, rule: &str) -> Option<&'static str>;
    fn has_region(&self, rule: Option<&str>, region: &str) -> bool;
    fn has_member(&self, rule: Option<&str>, region: Option<&str>, addr: IpAddr) -> bool;
    fn has_line(&self, rule: Option<&str>, line: &str) -> bool;
}

/// A rule name as overrides compare it.
pub fn norm_rule(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Override {
    /// Same target (what it applies to), whatever the action.
    pub fn same_target(&self, o: &Override) -> bool {
        self.address == o.address
            && self.region == o.region
            && self.line == o.line
            && self.rule == o.rule
    }

    /// "address 192.0.2.1 in www.gslb.lab/bj" and the like.
    pub fn target_text(&self) -> String {
        let scope = match (&self.rule, &self.region, self.address) {
            (Some(r), Some(g), Some(_)) => format!(" in {r}/{g}"),
            (Some(r), _, _) => format!(" in {r}"),
            (None, Some(g), Some(_)) => format!(" in region {g}"),
            _ => String::new(),
        };
        if let Some(a) = self.address {
            format!("address {a}{scope}")
        } else if let Some(l) = &self.line {
            format!("line {l}{scope}")
        } else {
            format!("region {}{scope}", self.region.as_deref().unwrap_or("?"))
        }
    }

    /// What explain says: "drained by alice@127.0.0.1: maintenance, until 2026-12-03T18:00:00Z".
    pub fn note(&self) -> String {
        let mut s = format!("{} by {}", self.action.verb(), self.who);
        if self.action == Action::Weight {
            s = format!("weight {} set by {}", self.weight.unwrap_or(0), self.who);
        }
        if !self.reason.is_empty() {
            s.push_str(": ");
            s.push_str(&self.reason);
        }
        match self.until {
            Some(t) => s.push_str(&format!(", until {}", rfc3339(t))),
            None => s.push_str(", until removed"),
        }
        s
    }

    /// What it applies to: "address", "line" or "region".
    pub fn kind(&self) -> &'static str {
        if self.address.is_some() {
            "address"
        } else if self.line.is_some() {
            "line"
        } else {
            "region"
        }
    }

    /// Whether this override takes the member out of the answers.
    pub fn removes(&self) -> bool {
        match self.action {
            Action::Drain | Action::Down => true,
            Action::Weight => self.weight == Some(0),
            Action::Up => false,
        }
    }
}

/// The overrides in force, as the query path reads them.
#[derive(Debug, Default)]
pub struct Active {
    list: Vec<Override>,
    /// Whether any override is about a carrier line (the UDP fast path caches carrier hops).
    pub lines: bool,
}

fn rule_matches(o: &Override, rule: &str) -> bool {
    o.rule.as_deref().is_none_or(|r| {
        r.len() == rule.trim_end_matches('.').len()
            && rule.trim_end_matches('.').eq_ignore_ascii_case(r)
    })
}

impl Active {
    /// The override of a pool member: the most specific (pool > rule > everywhere), the newest
    /// among equals.
    pub fn member(&self, rule: &str, region: &str, addr: IpAddr) -> Option<&Override> {
        self.list
            .iter()
            .filter(|o| o.address == Some(addr))
            .filter(|o| rule_matches(o, rule))
            .filter(|o| o.region.as_deref().is_none_or(|g| g == region))
            .max_by_key(|o| (o.rule.is_some() as u8 + o.region.is_some() as u8, o.id))
    }

    /// The override of a region of a location rule.
    pub fn region(&self, rule: &str, region: &str) -> Option<&Override> {
        self.list
            .iter()
            .filter(|o| o.address.is_none() && o.line.is_none())
            .filter(|o| o.region.as_deref() == Some(region) && rule_matches(o, rule))
            .max_by_key(|o| (o.rule.is_some(), o.id))
    }

    /// The override of a carrier line of a carrier rule.
    pub fn line(&self, rule: &str, line: &str) -> Option<&Override> {
        self.list
            .iter()
            .filter(|o| o.line.as_deref() == Some(line) && rule_matches(o, rule))
            .max_by_key(|o| (o.rule.is_some(), o.id))
    }

    pub fn list(&self) -> &[Override] {
        &self.list
    }
}

/// A local change, as a fleet shares it (src/cluster/etcd.rs applies it to etcd's list).
#[derive(Clone, Debug)]
pub enum SharedOp {
    Add(Override),
    Remove(Vec<Override>),
    /// The whole list and the next id (seeding an empty etcd).
    Replace(Vec<Override>, u64),
}

/// The overrides of one server.
#[derive(Debug, Default)]
pub struct Overrides {
    active: ArcSwapOption<Active>,
    store: Mutex<Store>,
    /// Bumped at every change of line overrides: the UDP fast path drops its carrier prefixes.
    line_epoch: AtomicU64,
    /// Wakes the expiry task.
    changed: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Store {
    list: Vec<Override>,
    next_id: u64,
    /// `[admin] overrides_state`.
    path: Option<PathBuf>,
    /// The file `list` was read from (a reload naming the same file does not read it again).
    read_from: Option<PathBuf>,
    expiry_task: bool,
    audit: Option<Arc<Audit>>,
    /// In a fleet: where local changes go to be shared.
    mirror: Option<tokio::sync::mpsc::UnboundedSender<SharedOp>>,
}

/// The state file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFile {
    version: u32,
    next_id: u64,
    overrides: Vec<Override>,
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Overrides {
    fn store(&self) -> MutexGuard<'_, Store> {
        // Every critical section leaves the list whole (push, retain, replace).
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The overrides in force now (None: there are none); one atomic load.
    pub fn active(&self) -> arc_swap::Guard<Option<Arc<Active>>> {
        self.active.load()
    }

    pub fn line_epoch(&self) -> u64 {
        self.line_epoch.load(Ordering::Acquire)
    }

    pub fn list(&self) -> Vec<Override> {
        self.store().list.clone()
    }

    /// The list with the next id, as a fleet seeds etcd with it.
    pub fn snapshot_list(&self) -> (Vec<Override>, u64) {
        let s = self.store();
        (s.list.clone(), s.next_id)
    }

    /// From now on local changes are also sent to `tx` (a fleet's agent).
    pub fn set_mirror(&self, tx: tokio::sync::mpsc::UnboundedSender<SharedOp>) {
        self.store().mirror = Some(tx);
    }

    /// Makes the list the fleet's (etcd's), without sharing it back or auditing it again (the
    /// node where the change was made audited it); saved to the state file, so a node started
    /// with etcd down keeps the fleet's last overrides.
    pub fn replace_all(&self, list: Vec<Override>, next_id: u64) {
        let mut s = self.store();
        if s.list == list {
            return;
        }
        s.list = list;
        s.list.truncate(MAX_OVERRIDES);
        s.next_id = s.next_id.max(next_id);
        self.publish(&s);
        self.save(&s);
    }

    fn publish(&self, s: &Store) {
        let lines = s.list.iter().any(|o| o.line.is_some());
        let old_lines = self.active.load().as_ref().is_some_and(|a| a.lines);
        if lines || old_lines {
            self.line_epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.active.store((!s.list.is_empty()).then(|| {
            Arc::new(Active {
                list: s.list.clone(),
                lines,
            })
        }));
        self.changed.notify_one();
    }

    /// Uses `path` as the state file from now on; reads it when it was not read before (start,
    /// or a reload naming another file). A missing file is a first start; a malformed one is
    /// logged and left alone (it is not overwritten until the next change).
    pub fn open(self: &Arc<Self>, path: Option<&Path>, audit: &Arc<Audit>) {
        let mut s = self.store();
        s.audit = Some(audit.clone());
        s.path = path.map(Path::to_path_buf);
        if s.read_from.as_deref() != path
            && let Some(p) = path
        {
            s.read_from = Some(p.to_path_buf());
            match crate::zone::reader::read_file(p) {
                Ok(bytes) => match serde_json::from_slice::<SavedFile>(&bytes) {
                    Ok(f) if f.version == 1 => {
                        tracing::info!(
                            file = %p.display(),
                            overrides = f.overrides.len(),
                            "overrides: loaded"
                        );
                        s.next_id = f
                            .next_id
                            .max(f.overrides.iter().map(|o| o.id).max().unwrap_or(0));
                        s.list = f.overrides;
                        s.list.truncate(MAX_OVERRIDES);
                    }
                    Ok(f) => tracing::warn!(
                        "overrides file {}: version {} (this gslbd writes 1); ignored",
                        p.display(),
                        f.version
                    ),
                    Err(e) => tracing::warn!("overrides file {}: {e}; ignored", p.display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("overrides file {}: {e}; ignored", p.display()),
            }
            self.publish(&s);
        }
        if !s.expiry_task && tokio::runtime::Handle::try_current().is_ok() {
            s.expiry_task = true;
            tokio::spawn(expire(Arc::downgrade(self), self.changed.clone()));
        }
    }

    /// Adds an override (replacing one with the same target), checked against `catalog`.
    /// `origin` (where the request came from) is appended to the requester's name.
    pub fn add(
        &self,
        req: Request,
        origin: &str,
        catalog: &dyn Catalog,
    ) -> Result<(Override, Option<Override>), String> {
        let o = validate(req, origin, catalog)?;
        let mut s = self.store();
        let old = s
            .list
            .iter()
            .position(|x| x.same_target(&o))
            .map(|i| s.list.remove(i));
        if s.list.len() >= MAX_OVERRIDES {
            return Err(format!("at most {MAX_OVERRIDES} overrides"));
        }
        s.next_id += 1;
        let o = Override { id: s.next_id, ..o };
        s.list.push(o.clone());
        self.publish(&s);
        self.save(&s);
        if let Some(m) = &s.mirror {
            let _ = m.send(SharedOp::Add(o.clone()));
        }
        if let Some(a) = &s.audit {
            a.record(crate::audit::Event::Override {
                op: "add",
                who: o.who.clone(),
                item: o.clone(),
                replaced: old.as_ref().map(|x| x.id),
            });
        }
        Ok((o, old))
    }

    /// Removes the overrides `pick` selects; returns them.
    pub fn remove(&self, who: &str, pick: impl Fn(&Override) -> bool) -> Vec<Override> {
        let mut s = self.store();
        let (gone, kept): (Vec<_>, Vec<_>) = s.list.drain(..).partition(|o| pick(o));
        s.list = kept;
        if !gone.is_empty() {
            self.publish(&s);
            self.save(&s);
            if let Some(m) = &s.mirror {
                let _ = m.send(SharedOp::Remove(gone.clone()));
            }
            if let Some(a) = &s.audit {
                for o in &gone {
                    a.record(crate::audit::Event::Override {
                        op: "remove",
                        who: who.to_string(),
                        item: o.clone(),
                        replaced: None,
                    });
                }
            }
        }
        gone
    }

    fn save(&self, s: &Store) {
        let Some(path) = &s.path else { return };
        let file = SavedFile {
            version: 1,
            next_id: s.next_id,
            overrides: s.list.clone(),
        };
        let text = serde_json::to_string_pretty(&file).expect("overrides serialize") + "\n";
        if let Err(e) = crate::health::write_atomically(path, &text) {
            tracing::error!("overrides file {}: {e}", path.display());
        }
    }

    /// Removes what has expired at `now`; returns the soonest expiry left.
    fn expire_at(&self, now: u64) -> Option<u64> {
        let gone = self.remove("expiry", |o| o.until.is_some_and(|t| t <= now));
        for o in gone {
            tracing::info!(id = o.id, "override expired: {}", o.target_text());
        }
        self.store().list.iter().filter_map(|o| o.until).min()
    }
}

/// Removes overrides when they expire. Holds only a `Weak`: ends with the server.
async fn expire(ov: Weak<Overrides>, changed: Arc<Notify>) {
    loop {
        let next = match ov.upgrade() {
            Some(o) => o.expire_at(now_secs()),
            None => return,
        };
        // Wake at the next expiry (the clock may jump: at most a minute at a time), or on a change.
        let wait = next.map_or(Duration::from_secs(60), |t| {
            Duration::from_secs(t.saturating_sub(now_secs()).clamp(1, 60))
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = changed.notified() => {}
        }
    }
}

fn text(field: &str, v: Option<String>) -> Result<String, String> {
    let v = v.unwrap_or_default();
    if v.chars().count() > MAX_TEXT || v.chars().any(char::is_control) {
        return Err(format!(
            "{field} must be at most {MAX_TEXT} characters without control characters"
        ));
    }
    Ok(v)
}

fn validate(req: Request, origin: &str, catalog: &dyn Catalog) -> Result<Override, String> {
    let rule = req.rule.as_deref().map(norm_rule);
    let rule_kind =
        match &rule {
            Some(r) => Some(catalog.rule_kind(r).ok_or_else(|| {
                format!("rule {r} is not a GSLB rule of the serving configuration")
            })?),
            None => None,
        };
    if req.weight.is_some() != (req.action == Action::Weight) {
        return Err("weight goes with action \"weight\", and only with it".into());
    }
    if let Some(w) = req.weight
        && w > 1_000_000
    {
        return Err(format!("weight must be between 0 and 1000000, not {w}"));
    }
    let (address, region, line) = (req.address, req.region.clone(), req.line.clone());
    match (address, &region, &line) {
        (Some(a), _, None) => {
            if rule_kind == Some("carrier") {
                return Err("an address override applies to a location rule".into());
            }
            if !catalog.has_member(rule.as_deref(), region.as_deref(), a) {
                return Err(format!(
                    "{a} is not a member of {} in the serving configuration",
                    match (&rule, &region) {
                        (Some(r), Some(g)) => format!("pool {r}/{g}"),
                        (Some(r), None) => format!("rule {r}"),
                        (None, Some(g)) => format!("region {g}"),
                        (None, None) => "any pool".into(),
                    }
                ));
            }
        }
        (None, Some(g), None) => {
            if rule_kind == Some("carrier") {
                return Err("a region override applies to a location rule".into());
            }
            if !catalog.has_region(rule.as_deref(), g) {
                return Err(format!(
                    "region {g} has no pool in the serving configuration"
                ));
            }
        }
        (None, None, Some(l)) => {
            if rule_kind == Some("location") {
                return Err("a line override applies to a carrier rule".into());
            }
            if !catalog.has_line(rule.as_deref(), l) {
                return Err(format!(
                    "line {l} is not a carrier line of the serving configuration"
                ));
            }
            if req.action != Action::Drain {
                return Err("a line takes drain only (its clients get the default line)".into());
            }
        }
        _ => {
            return Err(
                "name one target: address (with optional region and rule), region, or line".into(),
            );
        }
    }
    let who = text("who", req.who)?;
    let who = if who.is_empty() {
        origin.to_string()
    } else {
        format!("{who}@{origin}")
    };
    let now = now_secs();
    Ok(Override {
        id: 0,
        address,
        region,
        line,
        rule,
        action: req.action,
        weight: req.weight,
        reason: text("reason", req.reason)?,
        who,
        created: now,
        until: req.expires_in.map(|s| now.saturating_add(s.max(1))),
    })
}

/// Unix seconds as RFC 3339 UTC ("2026-12-03T18:00:00Z"), by the proleptic Gregorian calendar's
/// days-from-civil inverse.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era's years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lab;
    impl Catalog for Lab {
        fn rule_kind(&self, rule: &str) -> Option<&'static str> {
            match rule {
                "www.example" => Some("location"),
                "cdn.example" => Some("carrier"),
                _ => None,
            }
        }
        fn has_region(&self, _rule: Option<&str>, region: &str) -> bool {
            matches!(region, "bj" | "sh")
        }
        fn has_member(&self, _: Option<&str>, region: Option<&str>, addr: IpAddr) -> bool {
            region.is_none_or(|g| g == "bj") && addr == "192.0.2.1".parse::<IpAddr>().unwrap()
        }
        fn has_line(&self, _: Option<&str>, line: &str) -> bool {
            line == "telecom"
        }
    }

    fn req(json: &str) -> Request {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_300_000), "2026-12-03T12:13:20Z"); // GNU date -u -d @1796300000
    }

    #[test]
    fn specific_wins_and_replaces() {
        let ov = Overrides::default();
        let a = |j| ov.add(req(j), "127.0.0.1", &Lab);
        a(r#"{"address":"192.0.2.1","action":"drain","reason":"disk"}"#).unwrap();
        a(r#"{"address":"192.0.2.1","region":"bj","rule":"WWW.example.","action":"up"}"#).unwrap();
        let act = ov.active();
        let act = act.as_ref().unwrap();
        let ip = "192.0.2.1".parse().unwrap();
        assert_eq!(
            act.member("www.example.", "bj", ip).unwrap().action,
            Action::Up
        );
        assert_eq!(
            act.member("other.example", "bj", ip).unwrap().action,
            Action::Drain
        );
        // Same target again: replaced, not doubled.
        let (o, old) = a(r#"{"address":"192.0.2.1","action":"weight","weight":0}"#).unwrap();
        assert_eq!(old.unwrap().id, 1);
        assert_eq!(o.id, 3);
        assert_eq!(ov.list().len(), 2);
        assert!(ov.remove("t", |o| o.id == 2).len() == 1);
        assert!(
            ov.active()
                .as_ref()
                .unwrap()
                .member("x", "sh", ip)
                .unwrap()
                .removes()
        );
        ov.remove("t", |_| true);
        assert!(ov.active().is_none());
    }

    #[test]
    fn requests_are_checked() {
        let ov = Overrides::default();
        for (j, want) in [
            (
                r#"{"address":"192.0.2.9","action":"drain"}"#,
                "not a member",
            ),
            (
                r#"{"region":"xx","action":"drain"}"#,
                "region xx has no pool",
            ),
            (
                r#"{"region":"bj","action":"weight","weight":2000000}"#,
                "between 0 and 1000000",
            ),
            (
                r#"{"line":"telecom","action":"weight","weight":3}"#,
                "drain only",
            ),
            (
                r#"{"line":"mobile","action":"drain"}"#,
                "not a carrier line",
            ),
            (r#"{"line":"telecom","action":"up"}"#, "drain only"),
            (r#"{"action":"drain"}"#, "name one target"),
            (
                r#"{"region":"bj","rule":"nope.example","action":"drain"}"#,
                "not a GSLB rule",
            ),
            (
                r#"{"region":"bj","rule":"cdn.example","action":"drain"}"#,
                "location rule",
            ),
            (
                r#"{"address":"192.0.2.1","action":"drain","weight":1}"#,
                "weight goes with",
            ),
            (
                r#"{"region":"bj","action":"drain","reason":"a\nb"}"#,
                "control characters",
            ),
        ] {
            let e = ov.add(req(j), "t", &Lab).unwrap_err();
            assert!(e.contains(want), "{j}: {e}");
        }
        assert!(ov.list().is_empty());
    }

    #[test]
    fn state_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ov.json");
        let audit = Arc::new(Audit::default());
        let first = Arc::new(Overrides::default());
        first.store().path = Some(path.clone());
        first
            .add(
                req(r#"{"region":"bj","action":"drain","who":"ann","reason":"move"}"#),
                "cli",
                &Lab,
            )
            .unwrap();
        first
            .add(
                req(r#"{"line":"telecom","action":"drain","expires_in":5}"#),
                "cli",
                &Lab,
            )
            .unwrap();
        let second = Arc::new(Overrides::default());
        second.open(Some(&path), &audit);
        assert_eq!(second.list(), first.list());
        assert_eq!(second.list()[0].who, "ann@cli");
        // Ids go on from the file, and expiry removes the line drain.
        let until = second.list()[1].until.unwrap();
        assert_eq!(second.expire_at(until), None);
        assert_eq!(second.list().len(), 1);
        let (o, _) = second
            .add(req(r#"{"region":"sh","action":"down"}"#), "x", &Lab)
            .unwrap();
        assert_eq!(o.id, 3);
    }
}
