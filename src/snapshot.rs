//! The immutable runtime data every query reads: zones compiled for lookup, the zone set of each
//! listener, and limits. This is where configuration becomes runtime data; `serve`, SIGHUP reload
//! and `gslbd check` all go through `build`, so a config that checks is a config that serves.
//!
//! A snapshot is never changed: reload builds a new one off the query path and swaps it in with
//! arc-swap; a failed build leaves the old one serving.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::Name;

use crate::config::{Config, Limits, ListenerConfig, Source};
use crate::geo::Geo;
use crate::gslb::Gslb;
use crate::health::Health;
use crate::http::HttpSettings;
use crate::resolver::ResolverSettings;
use crate::zone::reader::ZoneFs;
use crate::zone::{Zone, ZoneSet};

// Clone: a transfer swaps in a copy sharing everything but its zone (`with_zone`).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub limits: Limits,
    /// `[server]`: the identity and version the CHAOS names and NSID give.
    pub server: crate::config::ServerInfo,
    /// The configuration's listeners, in order; `views[i]` is what `listeners[i]` serves.
    pub listeners: Vec<ListenerConfig>,
    pub views: Vec<ZoneSet>,
    pub zones: Vec<Arc<Zone>>,
    /// Geo data and GSLB rules; rules are attached to zone nodes by index.
    pub gslb: Arc<Gslb>,
    /// The `[http]` section compiled (None: no HTTP listener).
    pub http: Option<HttpSettings>,
    /// The `[resolver]` section compiled (None: no resolver).
    pub resolver: Option<Arc<ResolverSettings>>,
    /// `[rrl]` compiled: response rate limiting on the authoritative UDP listeners.
    pub rrl: crate::rrl::RrlSettings,
    /// `[cookies]` compiled: DNS cookies (RFC 7873, RFC 9018).
    pub cookies: crate::cookie::CookieSettings,
    /// Per listener, the certificate its DoT/DoQ addresses present (None: it has none). Read at
    /// every handshake (`encrypted::CertFromSnapshot`), so a reload renews it for new connections.
    pub certs: Vec<Option<Arc<rustls::sign::CertifiedKey>>>,
    /// Per zone (same index as `zones`): its transfer ACL, NOTIFY targets, serial policy and
    /// IXFR journal (`xfr`).
    pub xfr: Vec<crate::xfr::ZoneXfr>,
    /// Journals this build changed, to be written (`xfr::commit`) once it serves.
    pub xfr_pending: Vec<crate::xfr::Pending>,
    /// `[admin]` compiled, and what the audit trail says about this configuration.
    pub admin: AdminSettings,
    /// `[[key]]` compiled: the TSIG keys (RFC 8945) requests and transfers are verified with.
    pub keys: crate::tsig::Keyring,
    /// The secondary zones (`kind = "secondary"`): primaries, timers, and their `Control`.
    pub secondaries: Vec<crate::secondary::SecondaryZone>,
    /// `[cluster]`: the fleet this node belongs to (src/cluster); None: a single server.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// When the earliest signed zone's refresh period ends (seconds since the epoch): the server
    /// rebuilds then, so signatures are renewed (`dnssec`). None: no zone is signed.
    pub dnssec_refresh: Option<u64>,
}

/// `[admin]` with paths resolved against the config file's folder.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub overrides_state: Option<std::path::PathBuf>,
    pub audit: Option<crate::audit::AuditSettings>,
    pub token_over_plain_http: bool,
    /// `[admin] socket` (resolved) and its mode.
    pub socket: Option<(std::path::PathBuf, u32)>,
    /// SHA-256 (first 16 hex digits) of the parsed configuration: the audit trail's "config
    /// before/after" (comments and formatting do not change it).
    pub config_hash: String,
}

/// Everything wrong with a configuration, one problem a line (zone errors as `file:line: ...`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct BuildError {
    pub problems: Vec<String>,
}

impl BuildError {
    fn one(p: impl ToString) -> Self {
        BuildError {
            problems: vec![p.to_string()],
        }
    }
}

/// Hands the memory a build freed (parsed records, temporary tables: for a large zone more than
/// the zone itself) back to the system. glibc keeps freed chunks in the middle of the heap resident;
/// `malloc_trim` releases their pages (glibc >= 2.8 trims inside the heap, not just its top).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `[gslb] health_state`, relative to the config file's folder.
/// The `[[zone]]` a catalog's member is compiled from: a secondary zone with the catalog's
/// primaries, NOTIFY sources and timers, its data in the member's file.
fn member_config(
    catalog: &crate::config::ZoneConfig,
    m: &crate::secondary::catalog::Member,
) -> crate::config::ZoneConfig {
    crate::config::ZoneConfig {
        name: m.name.to_string(),
        file: m.file.clone(),
        kind: crate::config::ZoneKind::Secondary,
        members_dir: None,
        transfer: Vec::new(),
        notify: Vec::new(),
        journal: None,
        ..catalog.clone()
    }
}

fn health_state_path(config: &Config, base: &Path) -> Option<std::path::PathBuf> {
    config.gslb.health_state.as_ref().map(|p| base.join(p))
}

impl Snapshot {
    /// Builds with a registry of its own: health state starts fresh (`check`, `explain`, tests).
    pub fn build(source: &Source) -> Result<Snapshot, BuildError> {
        Snapshot::build_with(source, &Health::default())
    }

    /// Builds against the server's health registry, so checked addresses keep their state.
    pub fn build_with(source: &Source, health: &Health) -> Result<Snapshot, BuildError> {
        Snapshot::build_after(source, health, None)
    }

    /// `build_with` for a reload: the zones of `previous` (the snapshot serving) are what the
    /// serial policy and the IXFR journal compare the new ones with (`xfr::reconcile`).
    pub fn build_after(
        source: &Source,
        health: &Health,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, BuildError> {
        let (config, fs, base) = source.load().map_err(BuildError::one)?;
        // Saved check states must be known before the targets are made (`from_config` does no
        // I/O); a reload that keeps the file does not read it again (the running states are newer).
        health.load_saved(health_state_path(&config, &base).as_deref());
        let built = Snapshot::from_config(
            config,
            fs.as_ref(),
            &base,
            &source.describe(),
            health,
            previous,
        );
        release_free_memory();
        built
    }

    /// `label` names the configuration in problems that are not about a zone file.
    pub fn from_config(
        config: Config,
        fs: &dyn ZoneFs,
        base: &Path,
        label: &str,
        health: &Health,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, BuildError> {
        let mut problems = Vec::new();
        // Zone problems carry their own file:line; the others name the configuration.
        let mut config_problems = Vec::new();
        let config_hash = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(format!("{config:?}").as_bytes());
            digest[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        if let Some(c) = &config.cluster {
            config_problems.extend(c.problems());
            if !cfg!(feature = "cluster") {
                config_problems.push(
                    "[cluster]: this gslbd was built without the cluster feature \
                     (cargo build --release --features cluster; it needs protoc)"
                        .to_string(),
                );
            }
        }
        if config.admin.audit_max_bytes < 4096 {
            config_problems.push(format!(
                "admin.audit_max_bytes = {}: must be at least 4096",
                config.admin.audit_max_bytes
            ));
        }
        if config.admin.socket_mode & !0o777 != 0 || config.admin.socket_mode & 0o200 == 0 {
            config_problems.push(format!(
                "admin.socket_mode = 0o{:o}: permission bits only (0o600, 0o660, ...), and the \
                 owner must be able to write",
                config.admin.socket_mode
            ));
        }
        let admin = AdminSettings {
            socket: config
                .admin
                .socket
                .as_ref()
                .map(|p| (base.join(p), config.admin.socket_mode)),
            overrides_state: config.admin.overrides_state.as_ref().map(|p| base.join(p)),
            audit: config
                .admin
                .audit_log
                .as_ref()
                .map(|p| crate::audit::AuditSettings {
                    path: base.join(p),
                    max_bytes: config.admin.audit_max_bytes,
                    keep: config.admin.audit_keep,
                }),
            token_over_plain_http: config.admin.token_over_plain_http,
            config_hash,
        };
        let mut loaded: Vec<(String, Zone)> = Vec::new();
        // Origins of the zones that did not load: what they would have held is unknown, so
        // problems that follow from their absence are not reported (their own problems are).
        let mut failed: Vec<crate::zone::name::Key> = Vec::new();
        // Key files name themselves (file:line); the other key problems name the configuration.
        let read = |p: &Path| fs.read(p).map_err(|e| format!("{}: {e}", p.display()));
        let keys =
            crate::tsig::Keyring::build(&config.keys, &read, base, label).unwrap_or_else(|errs| {
                problems.extend(errs);
                crate::tsig::Keyring::default()
            });
        let mut secondaries: Vec<crate::secondary::SecondaryZone> = Vec::new();
        // The configured zones, then the members of catalog zones (appended as each catalog
        // loads; the catalog's name with each).
        type Member = crate::secondary::catalog::Member;
        let mut queue: Vec<(crate::config::ZoneConfig, Option<(Name, Member)>)> =
            config.zones.iter().map(|zc| (zc.clone(), None)).collect();
        // Member zones' canonical names by catalog, for listeners that name the catalog.
        let mut members_of: HashMap<String, Vec<String>> = HashMap::new();
        // The catalogs' members, queued once every configured zone is in, when it is known
        // which catalog owns a zone two of them list (RFC 9432 5.4).
        let mut offers = Vec::new();
        let configured = queue.len();
        let mut next = 0;
        loop {
            if next == configured && !offers.is_empty() {
                let previous_owner = |n: &Name| {
                    previous?
                        .secondaries
                        .iter()
                        .find(|z| z.origin == *n)
                        .and_then(|z| z.member_of.as_ref())
                        .map(|c| crate::zone::name::key_of(c).to_vec())
                };
                let (taken, notes) =
                    crate::secondary::catalog::owners(std::mem::take(&mut offers), previous_owner);
                for n in notes {
                    tracing::warn!("{n}");
                }
                for o in taken {
                    let (cat_zc, cat): (crate::config::ZoneConfig, Name) = o.with;
                    members_of
                        .entry(cat.to_lowercase().to_string())
                        .or_default()
                        .push(o.member.name.to_lowercase().to_string());
                    queue.push((member_config(&cat_zc, &o.member), Some((cat, o.member))));
                }
            }
            if next >= queue.len() {
                break;
            }
            let (zc, member_of) = queue[next].clone();
            next += 1;
            let zc = &zc;
            let origin = match Name::from_ascii(&zc.name) {
                Ok(mut n) => {
                    n.set_fqdn(true);
                    n
                }
                Err(e) => {
                    config_problems.push(format!("zone \"{}\": invalid name: {e}", zc.name));
                    continue;
                }
            };
            let canon = origin.to_lowercase().to_string();
            if loaded.iter().any(|(c, _)| *c == canon) {
                match &member_of {
                    // RFC 9432 5: a zone the consumer already serves is not taken over.
                    Some((cat, _)) => tracing::warn!(
                        "catalog {cat}: member {canon} is a configured zone here: the configured one is served"
                    ),
                    None => config_problems.push(format!("zone {canon} is configured twice")),
                }
                continue;
            }
            let path = base.join(&zc.file);
            if zc.kind == crate::config::ZoneKind::Primary {
                if !zc.primaries.is_empty() || zc.allow_notify.is_some() || zc.members_dir.is_some()
                {
                    config_problems.push(format!(
                        "zone {canon}: primaries, allow_notify and members_dir are for kind = \"secondary\" or \"catalog\""
                    ));
                }
            } else {
                match crate::secondary::SecondaryZone::compile(
                    zc,
                    &origin,
                    path.clone(),
                    base,
                    &keys,
                ) {
                    Ok(mut sz) => {
                        if let Some((cat, m)) = &member_of {
                            sz.member_of = Some(cat.clone());
                            sz.catalog_label = m.label.clone();
                            sz.groups = m.groups.clone();
                        }
                        let exists = fs.exists(&path);
                        let mut catalog_zone = None;
                        // A catalog's members come from its file, also past EXPIRE (they
                        // have their own timers).
                        if let (Some(dir), true) = (&sz.members_dir, exists) {
                            match Zone::load(&origin, &path, fs) {
                                Ok(cat) => {
                                    match crate::secondary::catalog::members(&cat, dir) {
                                        Ok((members, notes)) => {
                                            for n in notes {
                                                tracing::info!("{n}");
                                            }
                                            members_of.entry(canon.clone()).or_default();
                                            for m in members {
                                                offers.push(crate::secondary::catalog::Offer {
                                                    catalog: crate::zone::name::key_of(&origin)
                                                        .to_vec(),
                                                    member: m,
                                                    with: (zc.clone(), origin.clone()),
                                                });
                                            }
                                        }
                                        // Only a hand-edited file gets here (transfers
                                        // of such a catalog are refused): an error, so a
                                        // reload keeps the members being served.
                                        Err(e) => problems.push(format!("{}: {e}", path.display())),
                                    }
                                    sz.members_from = Some(cat.serial);
                                    catalog_zone = Some(cat);
                                }
                                Err(errs) => {
                                    problems.extend(errs.iter().map(ToString::to_string));
                                    failed.push(crate::zone::name::key_of(&origin));
                                    continue;
                                }
                            }
                        }
                        // No file before the first transfer, or past EXPIRE: SERVFAIL until
                        // a transfer brings data (not a build error).
                        if sz.control.expired() || !exists {
                            loaded.push((canon, sz.placeholder()));
                            secondaries.push(sz);
                            continue;
                        }
                        secondaries.push(sz);
                        if let Some(mut z) = catalog_zone {
                            z.rotate = zc.rotate;
                            loaded.push((canon, z));
                            continue;
                        }
                    }
                    Err(errs) => {
                        config_problems.extend(errs);
                        failed.push(crate::zone::name::key_of(&origin));
                        continue;
                    }
                }
            }
            match Zone::load(&origin, &path, fs) {
                Ok(mut z) => {
                    z.rotate = zc.rotate;
                    loaded.push((canon, z));
                }
                Err(errs) => {
                    problems.extend(errs.iter().map(ToString::to_string));
                    failed.push(crate::zone::name::key_of(&origin));
                }
            }
        }

        // The catalog zone (RFC 9432) of the zones loaded, built from text like any zone.
        let catalog_zc = config.catalog.as_ref().map(|c| c.as_zone());
        let mut catalog_canon = None;
        if let (Some(cat), Some(czc)) = (&config.catalog, &catalog_zc) {
            let members: Vec<String> = match &cat.members {
                Some(m) => m.clone(),
                None => config
                    .zones
                    .iter()
                    .filter(|zc| !zc.transfer.is_empty())
                    .map(|zc| zc.name.clone())
                    .collect(),
            };
            for m in &members {
                let known = config.zones.iter().any(|zc| {
                    zc.name
                        .trim_end_matches('.')
                        .eq_ignore_ascii_case(m.trim_end_matches('.'))
                });
                if !known {
                    config_problems.push(format!(
                        "catalog {}: member \"{m}\" is not a [[zone]] of this server",
                        cat.name
                    ));
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs() as u32);
            let text = crate::xfr::catalog::zone_text(&cat.name, now, &members);
            match Name::from_ascii(&cat.name) {
                Ok(mut origin) => {
                    origin.set_fqdn(true);
                    let canon = origin.to_lowercase().to_string();
                    if loaded.iter().any(|(c, _)| *c == canon) {
                        config_problems.push(format!(
                            "catalog {}: a [[zone]] has that name already",
                            cat.name
                        ));
                    } else {
                        match Zone::load(&origin, &czc.file, &crate::xfr::catalog::Text(text)) {
                            Ok(z) => {
                                catalog_canon = Some(canon.clone());
                                loaded.push((canon, z));
                            }
                            Err(errs) => problems.extend(errs.iter().map(ToString::to_string)),
                        }
                    }
                }
                Err(e) => {
                    config_problems.push(format!("catalog \"{}\": invalid name: {e}", cat.name))
                }
            }
        }

        // Geo data, then the GSLB rules, each attached to the most specific zone holding its name.
        // When the geo data does not load, the rules are still compiled and attached against
        // the configured carriers alone, so their own problems come in the same round.
        let (geo, geo_ok) = match Geo::load(&config.geo, base, fs) {
            Ok(geo) => (geo, true),
            Err(errs) => {
                // Geo problems name their file (and line) themselves.
                problems.extend(errs);
                (Geo::carriers_only(&config.geo), false)
            }
        };
        let health_state = health_state_path(&config, base);
        let gslb = match Gslb::build(&config.gslb, geo, health) {
            Ok((gslb, attachments)) => {
                for at in attachments {
                    let key = crate::zone::name::key_of(&at.name);
                    let zone = loaded
                        .iter_mut()
                        .filter(|(_, z)| crate::zone::name::is_at_or_below(&key, &z.origin_key))
                        .max_by_key(|(_, z)| z.origin_key.len());
                    let rule = &gslb.rules[at.rule].name;
                    // The name's own zone did not load: whether the rule fits it is unknown.
                    let deeper_failed = failed.iter().any(|f| {
                        crate::zone::name::is_at_or_below(&key, f)
                            && zone
                                .as_ref()
                                .is_none_or(|(_, z)| f.len() > z.origin_key.len())
                    });
                    if deeper_failed {
                        continue;
                    }
                    match zone {
                        Some((_, z)) => {
                            if let Err(e) = z.attach_rule(&at.name, at.rule as u32) {
                                config_problems.push(format!("GSLB rule {rule}: {e}"));
                            } else if let Some(sz) = secondaries
                                .iter_mut()
                                .find(|s| *s.origin_key == *z.origin_key)
                            {
                                // Attached again to every transferred version of the zone.
                                sz.rules.push((at.name.clone(), at.rule as u32));
                            }
                        }
                        None => config_problems
                            .push(format!("GSLB rule {rule}: no [[zone]] contains this name")),
                    }
                }
                if geo_ok {
                    Gslb {
                        health_state,
                        ..gslb
                    }
                } else {
                    Gslb::empty()
                }
            }
            Err(errs) => {
                config_problems.extend(errs);
                Gslb::empty()
            }
        };
        // DNSSEC (src/dnssec): zones with `dnssec` are signed here, after the GSLB rules are
        // attached (their names get NSEC records listing what the rule answers) and before the
        // serial policy compares them with the version serving (new signatures are new data).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut signers: HashMap<String, crate::dnssec::ZoneSigner> = HashMap::new();
        let mut dnssec_refresh: Option<u64> = None;
        for (canon, z) in &mut loaded {
            let Some(zc) = config.zones.iter().find(|zc| {
                zc.name
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(canon.trim_end_matches('.'))
            }) else {
                continue;
            };
            let Some(dc) = &zc.dnssec else {
                continue;
            };
            if zc.kind != crate::config::ZoneKind::Primary {
                config_problems.push(format!(
                    "zone {canon}: dnssec is for primary zones (a secondary serves what its primary signed)"
                ));
                continue;
            }
            match crate::dnssec::ZoneSigner::compile(canon, dc, base, fs) {
                Ok(signer) => {
                    // GSLB answers are not signed per answer yet (issue 18 item 2's dynamic
                    // half): a validator finds them bogus. Said at every build, `check` included.
                    let dynamic = z.nodes.iter().filter(|n| n.rule.is_some()).count();
                    if dynamic > 0 {
                        tracing::warn!(
                            "zone {canon}: signed, but its {dynamic} GSLB names are answered \
                             without signatures (validators will call them bogus): keep GSLB \
                             names in an unsigned zone until their answers are signed"
                        );
                    }
                    let started = std::time::Instant::now();
                    let types = |rule: u32| {
                        gslb.rules
                            .get(rule as usize)
                            .map(|r| r.answer_types())
                            .unwrap_or_default()
                    };
                    let before = previous.and_then(|p| {
                        p.zones
                            .iter()
                            .find(|o| o.origin_key == z.origin_key)
                            .map(|o| &**o)
                    });
                    match signer.sign(z, before, now, &types) {
                        Ok(stats) => {
                            tracing::info!(
                                zone = %canon,
                                nsec = stats.nsec,
                                rrsigs = stats.rrsigs,
                                ms = started.elapsed().as_millis() as u64,
                                "signed"
                            );
                            let due = signer.next_refresh(now);
                            dnssec_refresh = Some(dnssec_refresh.map_or(due, |d| d.min(due)));
                            signers.insert(canon.clone(), signer);
                        }
                        Err(e) => config_problems.push(format!("zone {canon}: signing: {e}")),
                    }
                }
                Err(errs) => config_problems.extend(errs),
            }
        }
        // Transfer settings, and for transferable zones the serial policy and the journal
        // against the version served before (the zones are still owned here: a policy may
        // rewrite the SOA serial).
        let mut xfr = Vec::with_capacity(loaded.len());
        let mut xfr_pending = Vec::new();
        for (canon, z) in &mut loaded {
            let catalog = catalog_canon.as_ref() == Some(&*canon);
            let zc = if catalog {
                catalog_zc.as_ref()
            } else {
                config.zones.iter().find(|zc| {
                    zc.name
                        .trim_end_matches('.')
                        .eq_ignore_ascii_case(canon.trim_end_matches('.'))
                })
            };
            let Some(zc) = zc else {
                xfr.push(crate::xfr::ZoneXfr::default());
                continue;
            };
            let mut x = match crate::xfr::compile(zc, base) {
                Ok(x) => x,
                Err(errs) => {
                    config_problems.extend(errs);
                    crate::xfr::ZoneXfr::default()
                }
            };
            // Key names in `transfer` and `notify` must be keys of `[[key]]`.
            let named = x
                .acl
                .iter()
                .filter_map(|e| e.key.as_deref())
                .chain(x.notify.iter().filter_map(|t| t.key.as_deref()));
            for k in named {
                if keys.get(k).is_none() {
                    config_problems.push(format!(
                        "zone {canon}: TSIG key \"{k}\" is not defined by a [[key]]"
                    ));
                }
            }
            x.synthesized = catalog;
            // Signatures are renewed every refresh period without the zone file changing, so a
            // signed zone's serial follows them (as Knot's serial-policy does): "keep" would
            // make every re-signing reload fail.
            if signers.contains_key(canon.as_str()) && x.policy == crate::xfr::SerialPolicy::Keep {
                x.policy = crate::xfr::SerialPolicy::Increment;
            }
            if x.transferable() {
                let before = previous.and_then(|p| {
                    let i = p.zones.iter().position(|o| o.origin_key == z.origin_key)?;
                    Some(crate::xfr::Previous::Served {
                        zone: &p.zones[i],
                        gslb: &p.gslb,
                        journal: p.xfr.get(i).and_then(|x| x.journal.clone()),
                    })
                });
                let before = match before {
                    Some(b) => b,
                    None => match x.journal_path.as_deref().map(crate::xfr::Journal::read) {
                        Some(Ok(Some(j))) => crate::xfr::Previous::Journal(j),
                        Some(Err(e)) => {
                            tracing::warn!("IXFR journal not usable, starting a new one: {e}");
                            crate::xfr::Previous::None
                        }
                        _ => crate::xfr::Previous::None,
                    },
                };
                // The serial policy rewrites the SOA of a signed zone: its signature is made
                // again before the difference is taken.
                let mut resign = |z: &mut Zone| {
                    let served = previous.and_then(|p| {
                        p.zones
                            .iter()
                            .find(|o| o.origin_key == z.origin_key)
                            .map(|o| &**o)
                    });
                    if let Some(signer) = signers.get(canon.as_str())
                        && let Err(e) = crate::dnssec::sign::resign_soa(
                            z,
                            &signer.keys,
                            signer.window(now),
                            served,
                        )
                    {
                        tracing::warn!("zone {canon}: signing the SOA: {e}");
                    }
                };
                let reconciled =
                    crate::xfr::reconcile(canon, z, &gslb, &mut x, before, &mut resign);
                match reconciled {
                    Ok((pending, note)) => {
                        xfr_pending.extend(pending);
                        if let Some(n) = note {
                            tracing::info!("{n}");
                        }
                    }
                    Err(e) => config_problems.push(e),
                }
            }
            xfr.push(x);
        }
        let mut zones: HashMap<String, Arc<Zone>> = HashMap::new();
        let mut ordered = Vec::new();
        for (canon, mut z) in loaded {
            // A zone signed here got its DNSKEY, NSEC chain and RRSIGs after it loaded: the
            // denial index the DO answers use is built now, on the final records (the SOA's
            // signature included).
            if signers.contains_key(canon.as_str()) {
                z.index_dnssec();
            }
            let z = Arc::new(z);
            ordered.push(z.clone());
            zones.insert(canon, z);
        }

        let mut views = Vec::new();
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for l in &config.listeners {
            if !names.insert(l.name.clone()) {
                config_problems.push(format!("listener \"{}\" is configured twice", l.name));
            }
            if l.addresses.is_empty() {
                config_problems.push(format!("listener \"{}\" has no addresses", l.name));
            }
            for a in &l.addresses {
                if a.port() != 0 && !addrs.insert(*a) {
                    config_problems.push(format!("address {a} is used by two listeners"));
                }
            }
            let mut set = ZoneSet::default();
            // The catalog is on every DNS listener: secondaries ask the address they know.
            if let Some(c) = catalog_canon.as_ref().and_then(|c| zones.get(c)) {
                set.insert(c.clone());
            }
            for zname in &l.zones {
                if zname == "*" {
                    ordered.iter().for_each(|z| set.insert(z.clone()));
                    continue;
                }
                let canon = match Name::from_ascii(zname) {
                    Ok(mut n) => {
                        n.set_fqdn(true);
                        n.to_lowercase().to_string()
                    }
                    Err(_) => zname.clone(),
                };
                match zones.get(&canon) {
                    Some(z) => {
                        set.insert(z.clone());
                        // A catalog's members are served where the catalog is.
                        for m in members_of.get(&canon).into_iter().flatten() {
                            if let Some(mz) = zones.get(m) {
                                set.insert(mz.clone());
                            }
                        }
                    }
                    // A zone that failed to load was reported above already.
                    None if config
                        .zones
                        .iter()
                        .any(|zc| zc.name.eq_ignore_ascii_case(zname)) => {}
                    None => config_problems.push(format!(
                        "listener \"{}\" serves zone \"{zname}\", which no [[zone]] defines",
                        l.name
                    )),
                }
            }
            views.push(set);
        }
        let listener_names: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
        let http = match config
            .http
            .as_ref()
            .map(|h| h.compile(&listener_names, base, fs))
        {
            None => None,
            Some(Ok(h)) => Some(h),
            Some(Err(errs)) => {
                config_problems.extend(errs);
                None
            }
        };
        let resolver = match &config.resolver {
            None => None,
            Some(rc) => {
                for l in &rc.listeners {
                    for a in &l.addresses {
                        if a.port() != 0 && !addrs.insert(*a) {
                            config_problems.push(format!("address {a} is used by two listeners"));
                        }
                    }
                }
                if rc.upstream_port == crate::resolver::config::UpstreamPort::Named("listen".into())
                    && config.listeners.is_empty()
                {
                    config_problems.push(
                        "resolver upstream_port = \"listen\" needs a DNS [[listener]] of ours"
                            .into(),
                    );
                }
                let hints = ResolverSettings::hints(rc, base, fs).unwrap_or_else(|e| {
                    // Names the hints file and line itself, like zone problems.
                    problems.push(e);
                    crate::resolver::hints::Hints::iana()
                });
                match ResolverSettings::build(rc, hints, config.limits.cname_chain) {
                    Ok(r) => Some(Arc::new(r)),
                    Err(errs) => {
                        config_problems.extend(errs);
                        None
                    }
                }
            }
        };
        let mut certs = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            if l.dot.is_empty() && l.doq.is_empty() {
                certs.push(None);
                continue;
            }
            let tls = l
                .tls
                .as_ref()
                .or_else(|| config.http.as_ref().and_then(|h| h.tls.as_ref()));
            match tls {
                None => {
                    config_problems.push(format!(
                        "listener \"{}\": dot/doq need a certificate: tls = {{ cert = \"...\", key = \"...\" }} (or [http] tls)",
                        l.name
                    ));
                    certs.push(None);
                }
                Some(t) => match crate::http::config::load_certified_key(t, base, fs) {
                    Ok(k) => certs.push(Some(k)),
                    Err(e) => {
                        config_problems.push(e);
                        certs.push(None);
                    }
                },
            }
        }
        let resolver_listeners = config.resolver.as_ref().map_or(0, |r| r.listeners.len());
        if config.listeners.is_empty() && resolver_listeners == 0 {
            config_problems.push(
                "no [[listener]] or [[resolver.listener]] configured: nothing would be served"
                    .into(),
            );
        }
        if config.limits.udp_payload < 512 {
            config_problems.push(format!(
                "limits.udp_payload = {}: must be at least 512 (RFC 6891 6.2.5)",
                config.limits.udp_payload
            ));
        }
        if config.limits.cname_chain == 0 {
            config_problems.push("limits.cname_chain must be at least 1".into());
        }
        for (what, v) in [
            ("tcp_idle_timeout_ms", config.limits.tcp_idle_timeout_ms),
            ("tcp_io_timeout_ms", config.limits.tcp_io_timeout_ms),
            (
                "tcp_max_connections",
                config.limits.tcp_max_connections as u64,
            ),
            (
                "tcp_max_outstanding",
                config.limits.tcp_max_outstanding as u64,
            ),
        ] {
            if v == 0 {
                config_problems.push(format!("limits.{what} must be at least 1"));
            }
        }
        let rrl = crate::rrl::RrlSettings::compile(&config.rrl).unwrap_or_else(|errs| {
            config_problems.extend(errs);
            crate::rrl::RrlSettings::off()
        });
        let cookies =
            crate::cookie::CookieSettings::compile(&config.cookies).unwrap_or_else(|errs| {
                config_problems.extend(errs);
                crate::cookie::CookieSettings::compile(&Default::default())
                    .expect("defaults compile")
            });
        problems.extend(config_problems.into_iter().map(|p| format!("{label}: {p}")));
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }
        Ok(Snapshot {
            limits: config.limits,
            server: config.server,
            listeners: config.listeners,
            views,
            zones: ordered,
            gslb: Arc::new(gslb),
            http,
            resolver,
            rrl,
            cookies,
            certs,
            xfr,
            xfr_pending,
            admin,
            keys,
            secondaries,
            cluster: config.cluster,
            dnssec_refresh,
        })
    }

    /// A copy serving `zone` in place of the zone with the same origin (a transfer's new data):
    /// everything else is shared (`Arc`s) or small.
    pub fn with_zone(&self, zone: Arc<Zone>) -> Snapshot {
        let mut s = self.clone();
        let key = zone.origin_key.clone();
        for z in s.zones.iter_mut().filter(|z| z.origin_key == key) {
            *z = zone.clone();
        }
        for v in s.views.iter_mut().filter(|v| v.contains(&key)) {
            v.insert(zone.clone());
        }
        s
    }

    pub fn view(&self, listener: usize) -> &ZoneSet {
        &self.views[listener]
    }
}
