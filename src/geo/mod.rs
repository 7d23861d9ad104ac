//! Geo lookup: client address -> carrier, ASN, organisation, country, province, city and
//! coordinates, each decision with the source that made it and the network it matched there.
//!
//! Sources, highest priority first (a field comes from the first source that has it):
//! 1. operator override files (`overrides`, our geo CSV format, longest prefix match per field);
//! 2. an ASN or ISP mmdb (`asn_db`): the ASN maps to a carrier through the ASN -> carrier tables
//!    (`asn_carriers` files and `[geo.carrier.X].asns`), and when the ASN is in no table, the
//!    organisation name is matched against the carriers' `org` substrings;
//! 3. a City mmdb (`city_db`): country, province, city and coordinates.
//!
//! Everything is read, parsed and checked in [`Geo::load`]; [`Geo::lookup`] does no I/O and does
//! not allocate (strings are borrowed from the mmdb buffers and the override table), because it
//! runs once per DNS query.
//!
//! `asn_db`/`city_db` may also name a `.csv` file in our geo CSV format: it is compiled into an
//! mmdb in memory at load ([`compile_csv`]) and then read with `maxminddb` exactly like a real
//! GeoLite2 file, so the lab exercises the same code path as production data.
//!
//! ECS (RFC 7871): an answer chosen from geo data may only be cached by a resolver for clients
//! whose lookup would give the same result. [`GeoInfo::carrier_scope`] and
//! [`GeoInfo::location_scope`] are those prefix lengths, found or not; the `*_by` networks say
//! where a value came from (for "explain").

mod csv;
mod mmdb;
mod trie;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::zone::reader::ZoneFs;

pub use csv::compile_csv;

/// The `[geo]` table of the config file. Every field is optional; the default is no geo data
/// (every lookup finds nothing).
///
/// ```toml
/// [geo]
/// overrides = ["../geo/lab-overrides.csv"]   # geo CSV files, highest priority
/// asn_db = "../geo/lab.csv"                   # .mmdb, or a geo CSV compiled at load
/// city_db = "../geo/lab.csv"                  # same
/// asn_carriers = ["../geo/asn-carriers.csv"]  # CSV: asn,carrier[,organisation]
///
/// [geo.carrier.mobile]
/// name = "China Mobile"
/// asns = [9808]
/// org = ["china mobile", "cmnet"]
/// ```
///
/// Paths are relative to the folder handed to [`Geo::load`] (the config file's folder).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// Geo CSV files whose non-empty columns override the databases for their networks.
    #[serde(default)]
    pub overrides: Vec<PathBuf>,
    /// ASN database: GeoLite2-ASN / GeoIP2-ISP / DB-IP ASN lite mmdb, or a geo CSV.
    #[serde(default)]
    pub asn_db: Option<PathBuf>,
    /// City database: GeoIP2/GeoLite2 City or Country, DB-IP city lite mmdb, or a geo CSV.
    #[serde(default)]
    pub city_db: Option<PathBuf>,
    /// ASN -> carrier tables (`asn,carrier[,organisation]`). Rows naming a carrier id that is not
    /// defined under `[geo.carrier]` are skipped, so one shared table serves configs that define
    /// only some carriers.
    #[serde(default)]
    pub asn_carriers: Vec<PathBuf>,
    /// Carrier ids (the table keys) as GSLB rules name them.
    #[serde(default)]
    pub carrier: BTreeMap<String, CarrierConfig>,
}

/// `[geo.carrier.<id>]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// Display name; defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// ASNs of this carrier, in addition to `asn_carriers` rows naming it. They win over the
    /// shared tables, so a config can move an ASN to another carrier without editing them.
    #[serde(default)]
    pub asns: Vec<u32>,
    /// Case-insensitive substrings of the ASN database's organisation (or ISP) name, used only
    /// when the ASN is in no table.
    #[serde(default)]
    pub org: Vec<String>,
}

/// A carrier id interned at load: an index into [`Geo::carriers`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct CarrierId(pub u16);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarrierDef {
    /// The config id (`mobile`), what GSLB rules name.
    pub id: String,
    /// The display name (`China Mobile`).
    pub name: String,
}

/// A network: `addr` has no bits set past `prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    /// The network of `prefix` bits containing `ip` (prefix clamped to the family's width).
    pub fn containing(ip: IpAddr, prefix: u8) -> Net {
        match ip {
            IpAddr::V4(a) => {
                let prefix = prefix.min(32);
                let bits = u32::from(a) & mask32(prefix);
                Net {
                    addr: IpAddr::V4(Ipv4Addr::from(bits)),
                    prefix,
                }
            }
            IpAddr::V6(a) => {
                let prefix = prefix.min(128);
                let bits = u128::from(a) & mask128(prefix);
                Net {
                    addr: IpAddr::V6(Ipv6Addr::from(bits)),
                    prefix,
                }
            }
        }
    }

    /// Whether `ip` (same family) is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Net::containing(ip, self.prefix) == *self
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    // checked_shl: a shift by 32 would overflow for prefix 0.
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeoSource {
    Override,
    AsnDb,
    CityDb,
}

impl fmt::Display for GeoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GeoSource::Override => "override",
            GeoSource::AsnDb => "asn db",
            GeoSource::CityDb => "city db",
        })
    }
}

/// What the geo data says about one address. Strings borrow from the [`Geo`].
#[derive(Clone, Debug, Default)]
pub struct GeoInfo<'a> {
    pub carrier: Option<CarrierId>,
    /// The source that decided the carrier and the network it matched there (for an override,
    /// the override's CIDR; for an mmdb, the network `maxminddb` reports for the lookup).
    pub carrier_by: Option<(GeoSource, Net)>,
    /// How the carrier was decided: `"override"`, `"asn table"` or `"organisation match"`.
    pub carrier_via: Option<&'static str>,
    /// ECS scope prefix length for a decision on the carrier, whether one was found or not: the
    /// longest network any source consulted for it matched, so every client inside
    /// `Net::containing(ip, carrier_scope)` gets the same carrier. At least the `carrier_by`
    /// prefix; longer when a higher-priority source has a more specific network nearby (an
    /// override /29 inside the ASN db's /25 narrows the /25's answer to the rest of its /29).
    pub carrier_scope: u8,
    pub asn: Option<u32>,
    pub organisation: Option<&'a str>,
    /// ISO 3166-1 alpha-2, e.g. "CN".
    pub country: Option<&'a str>,
    /// Subdivision name, e.g. "Beijing".
    pub province: Option<&'a str>,
    /// Subdivision ISO code when the city db has it (only with a province from that db).
    pub province_code: Option<&'a str>,
    pub city: Option<&'a str>,
    /// (latitude, longitude) in degrees.
    pub location: Option<(f64, f64)>,
    /// The source of the most specific location field present (coordinates, else province,
    /// else city, else country) and the network it matched there.
    pub location_by: Option<(GeoSource, Net)>,
    /// ECS scope prefix length for a decision on location fields (as `carrier_scope`).
    pub location_scope: u8,
}

/// Great-circle distance (haversine) on a sphere of radius 6371 km; points are (lat, lon) in
/// degrees.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    // min(1): rounding can push h a hair above 1 for antipodal points, and asin would be NaN.
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// One override network with every field resolved: its own non-empty columns, and for the
/// others the value of the most specific enclosing override network that has one. Each value
/// keeps the CIDR of the row that gave it.
#[derive(Debug, Clone, Default)]
struct OverrideRow {
    carrier: Option<(CarrierId, Net)>,
    asn: Option<(u32, Net)>,
    organisation: Option<(String, Net)>,
    country: Option<(String, Net)>,
    province: Option<(String, Net)>,
    city: Option<(String, Net)>,
    location: Option<((f64, f64), Net)>,
}

/// The loaded geo data: immutable, shared by every query of a snapshot.
pub struct Geo {
    /// Sorted by id, so ids are stable for a given config.
    carriers: Vec<CarrierDef>,
    /// ASN -> carrier, sorted by ASN (binary search: no hashing on the query path).
    asn_table: Vec<(u32, CarrierId)>,
    /// Lowercase organisation patterns, longest first: the most specific pattern wins.
    org_patterns: Vec<(String, CarrierId)>,
    overrides: trie::Trie<OverrideRow>,
    asn_db: Option<mmdb::Db>,
    city_db: Option<mmdb::Db>,
}

impl fmt::Debug for Geo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Geo")
            .field("carriers", &self.carriers)
            .field("asn_table_rows", &self.asn_table.len())
            .field("org_patterns", &self.org_patterns.len())
            .field("override_networks", &self.overrides.len())
            .field("asn_db", &self.asn_db.as_ref().map(|d| d.label()))
            .field("city_db", &self.city_db.as_ref().map(|d| d.label()))
            .finish()
    }
}

impl Default for Geo {
    fn default() -> Self {
        Geo::empty()
    }
}

/// The IPv4 address inside an IPv4-mapped IPv6 address, so `::ffff:a.b.c.d` finds the IPv4
/// data (dual-stack sockets report IPv4 clients that way).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// ASCII case-insensitive substring test; `needle` is already lowercase. Non-ASCII bytes compare
/// exactly (organisation names in the ASN databases are ASCII).
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len())
        .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// Carrier ids end up in GSLB rules and explain output: keep them plain.
fn valid_carrier_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Geo {
    /// No geo data: every lookup finds nothing (scopes 0: the answer is the same for everyone).
    pub fn empty() -> Geo {
        Geo {
            carriers: Vec::new(),
            asn_table: Vec::new(),
            org_patterns: Vec::new(),
            overrides: trie::Trie::new(),
            asn_db: None,
            city_db: None,
        }
    }

    /// The carriers `cfg` defines and no data: what the GSLB rules are checked against when the
    /// geo files do not load, so a broken file does not hide the rules' own problems.
    pub fn carriers_only(cfg: &GeoConfig) -> Geo {
        let mut geo = Geo::empty();
        geo.carriers = cfg
            .carrier
            .iter()
            .map(|(id, c)| CarrierDef {
                id: id.clone(),
                name: c.name.clone().unwrap_or_else(|| id.clone()),
            })
            .collect();
        geo
    }

    /// Reads and checks every file `cfg` names (relative to `base`) through `fs`. Returns every
    /// problem, one line each (`file:line: message` where there is a line).
    pub fn load(cfg: &GeoConfig, base: &Path, fs: &dyn ZoneFs) -> Result<Geo, Vec<String>> {
        let mut errors = Vec::new();
        let mut geo = Geo::empty();

        // Carriers first: every other table refers to them.
        if cfg.carrier.len() > usize::from(u16::MAX) {
            errors.push(format!(
                "geo.carrier: {} carriers, at most {} are supported",
                cfg.carrier.len(),
                u16::MAX
            ));
            return Err(errors);
        }
        let mut by_id: HashMap<&str, CarrierId> = HashMap::new();
        for (i, (id, c)) in cfg.carrier.iter().enumerate() {
            if !valid_carrier_id(id) {
                errors.push(format!(
                    "geo.carrier.{id}: a carrier id is letters, digits, '-' and '_'"
                ));
            }
            let cid = CarrierId(i as u16);
            by_id.insert(id, cid);
            geo.carriers.push(CarrierDef {
                id: id.clone(),
                name: c.name.clone().unwrap_or_else(|| id.clone()),
            });
        }

        // ASN table: config `asns` first (they win), then the shared tables.
        let mut asn_map: HashMap<u32, (CarrierId, String)> = HashMap::new();
        for (id, c) in &cfg.carrier {
            let cid = by_id[id.as_str()];
            for &asn in &c.asns {
                let here = format!("geo.carrier.{id}.asns");
                if let Some((other, where_)) = asn_map.get(&asn) {
                    if *other != cid {
                        errors.push(format!(
                            "{here}: AS{asn} is also listed for carrier {} ({where_})",
                            geo.carriers[usize::from(other.0)].id
                        ));
                    }
                } else {
                    asn_map.insert(asn, (cid, here));
                }
            }
        }
        let config_asns: HashSet<u32> = asn_map.keys().copied().collect();
        for rel in &cfg.asn_carriers {
            let path = base.join(rel);
            let label = path.display().to_string();
            let text = match fs.read(&path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(format!("{label}: cannot read ASN carrier table: {e}"));
                    continue;
                }
            };
            let rows = match csv::parse_asn_table(&text, &label) {
                Ok(rows) => rows,
                Err(mut es) => {
                    errors.append(&mut es);
                    continue;
                }
            };
            for row in rows {
                // Unknown ids are skipped on purpose (see GeoConfig::asn_carriers).
                let Some(&cid) = by_id.get(row.carrier.as_str()) else {
                    continue;
                };
                let here = format!("{label}:{}", row.line);
                match asn_map.get(&row.asn) {
                    // The config's own `asns` override the shared table.
                    Some(_) if config_asns.contains(&row.asn) => {}
                    Some((other, where_)) if *other != cid => errors.push(format!(
                        "{here}: AS{} is mapped to carrier {} here and to {} at {where_}",
                        row.asn,
                        row.carrier,
                        geo.carriers[usize::from(other.0)].id
                    )),
                    Some(_) => {}
                    None => {
                        asn_map.insert(row.asn, (cid, here));
                    }
                }
            }
        }
        geo.asn_table = asn_map.into_iter().map(|(a, (c, _))| (a, c)).collect();
        geo.asn_table.sort_unstable();

        // Organisation patterns.
        let mut seen_patterns: HashMap<String, &str> = HashMap::new();
        for (id, c) in &cfg.carrier {
            for p in &c.org {
                let lower = p.trim().to_ascii_lowercase();
                if lower.is_empty() {
                    errors.push(format!("geo.carrier.{id}.org: empty pattern"));
                    continue;
                }
                if let Some(other) = seen_patterns.get(&lower) {
                    if *other != id.as_str() {
                        errors.push(format!(
                            "geo.carrier.{id}.org: pattern {p:?} is also a pattern of carrier {other}"
                        ));
                    }
                    continue;
                }
                seen_patterns.insert(lower.clone(), id);
                geo.org_patterns.push((lower, by_id[id.as_str()]));
            }
        }
        // Longest first so "china mobile hk" beats "china mobile"; then by carrier for
        // determinism.
        geo.org_patterns
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));

        // Override files.
        let mut override_rows = Vec::new();
        let mut first_seen: HashMap<Net, String> = HashMap::new();
        for rel in &cfg.overrides {
            let path = base.join(rel);
            let label = path.display().to_string();
            let text = match fs.read(&path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(format!("{label}: cannot read override file: {e}"));
                    continue;
                }
            };
            let rows = match csv::parse_geo_csv(&text, &label) {
                Ok(rows) => rows,
                Err(mut es) => {
                    errors.append(&mut es);
                    continue;
                }
            };
            for row in rows {
                let here = format!("{label}:{}", row.line);
                if let Some(prev) = first_seen.get(&row.net) {
                    errors.push(format!(
                        "{here}: duplicate network {} (first at {prev})",
                        row.net
                    ));
                    continue;
                }
                first_seen.insert(row.net, here.clone());
                let carrier = match &row.carrier {
                    None => None,
                    Some(c) => match by_id.get(c.as_str()) {
                        Some(&cid) => Some(cid),
                        None => {
                            errors.push(format!(
                                "{here}: unknown carrier {c:?} (defined: {})",
                                if cfg.carrier.is_empty() {
                                    "none, add [geo.carrier.<id>]".to_string()
                                } else {
                                    cfg.carrier.keys().cloned().collect::<Vec<_>>().join(", ")
                                }
                            ));
                            continue;
                        }
                    },
                };
                override_rows.push((row, carrier));
            }
        }
        geo.overrides = build_override_trie(override_rows);

        // Databases. The lab names one CSV for both: compile it once.
        // A failed compile is remembered too, so its errors are reported once.
        let mut compiled: HashMap<PathBuf, Option<MmdbPair>> = HashMap::new();
        let mut open_db = |rel: &Path, role: mmdb::Role, errors: &mut Vec<String>| {
            let path = base.join(rel);
            let label = path.display().to_string();
            let bytes = if is_csv(&path) {
                let pair = compiled.entry(path.clone()).or_insert_with(|| {
                    let result = fs
                        .read(&path)
                        .map_err(|e| vec![format!("{label}: cannot read geo CSV: {e}")])
                        .and_then(|text| compile_csv(&text, &path));
                    result.map_err(|mut es| errors.append(&mut es)).ok()
                });
                let (asn, city) = pair.as_ref()?;
                match role {
                    mmdb::Role::Asn => asn.clone(),
                    mmdb::Role::City => city.clone(),
                }
            } else {
                match fs.read_bytes(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        errors.push(format!("{label}: cannot read database: {e}"));
                        return None;
                    }
                }
            };
            match mmdb::Db::open(bytes, label, role) {
                Ok(db) => Some(db),
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        };
        if let Some(rel) = &cfg.asn_db {
            geo.asn_db = open_db(rel, mmdb::Role::Asn, &mut errors);
        }
        if let Some(rel) = &cfg.city_db {
            geo.city_db = open_db(rel, mmdb::Role::City, &mut errors);
        }

        if errors.is_empty() {
            Ok(geo)
        } else {
            Err(errors)
        }
    }

    /// Whether there is no geo data at all.
    pub fn is_empty(&self) -> bool {
        self.overrides.len() == 0
            && self.asn_db.is_none()
            && self.city_db.is_none()
            && self.carriers.is_empty()
    }

    /// The interned id of a config carrier id.
    pub fn carrier_id(&self, id: &str) -> Option<CarrierId> {
        self.carriers
            .binary_search_by(|c| c.id.as_str().cmp(id))
            .ok()
            .map(|i| CarrierId(i as u16))
    }

    /// Panics on an id not made by this `Geo` (ids are only minted by `carrier_id`/`lookup`).
    pub fn carrier(&self, id: CarrierId) -> &CarrierDef {
        &self.carriers[usize::from(id.0)]
    }

    pub fn carriers(&self) -> &[CarrierDef] {
        &self.carriers
    }

    fn carrier_of_asn(&self, asn: u32) -> Option<CarrierId> {
        self.asn_table
            .binary_search_by_key(&asn, |&(a, _)| a)
            .ok()
            .map(|i| self.asn_table[i].1)
    }

    fn carrier_of_org(&self, org: &str) -> Option<CarrierId> {
        self.org_patterns
            .iter()
            .find(|(p, _)| contains_ignore_ascii_case(org, p))
            .map(|&(_, c)| c)
    }

    /// Everything the geo data says about `ip`. IPv4-mapped IPv6 addresses are looked up (and
    /// their networks reported) as IPv4. No I/O, no allocation.
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo<'_> {
        let ip = canonical(ip);
        let mut g = GeoInfo::default();
        // Sources of the location fields: coordinates, province, city, country.
        let mut loc_by: [Option<(GeoSource, Net)>; 4] = [None; 4];
        let mut asn_by = None;
        let mut org_by = None;

        let (row, region) = self.overrides.lookup(ip);
        g.carrier_scope = region;
        g.location_scope = region;
        if let Some(r) = row {
            if let Some((c, net)) = r.carrier {
                g.carrier = Some(c);
                g.carrier_by = Some((GeoSource::Override, net));
                g.carrier_via = Some("override");
            }
            if let Some((asn, net)) = r.asn {
                g.asn = Some(asn);
                asn_by = Some((GeoSource::Override, net));
            }
            if let Some((org, net)) = &r.organisation {
                g.organisation = Some(org);
                org_by = Some((GeoSource::Override, *net));
            }
            if let Some((loc, net)) = r.location {
                g.location = Some(loc);
                loc_by[0] = Some((GeoSource::Override, net));
            }
            if let Some((p, net)) = &r.province {
                g.province = Some(p);
                loc_by[1] = Some((GeoSource::Override, *net));
            }
            if let Some((c, net)) = &r.city {
                g.city = Some(c);
                loc_by[2] = Some((GeoSource::Override, *net));
            }
            if let Some((c, net)) = &r.country {
                g.country = Some(c);
                loc_by[3] = Some((GeoSource::Override, *net));
            }
        }

        // The ASN db is consulted unless the override settled everything it could give.
        let mut db_orgs: [Option<&str>; 3] = [None; 3];
        if let Some(db) = &self.asn_db
            && (g.carrier.is_none() || g.asn.is_none() || g.organisation.is_none())
        {
            let hit = db.lookup::<mmdb::AsnRecord<'_>>(ip);
            if g.carrier.is_none() {
                g.carrier_scope = g.carrier_scope.max(hit.net.prefix);
            }
            if let Some(rec) = hit.record {
                if g.asn.is_none()
                    && let Some(asn) = rec.autonomous_system_number
                {
                    g.asn = Some(asn);
                    asn_by = Some((GeoSource::AsnDb, hit.net));
                }
                // GeoLite2-ASN has only the AS organisation; GeoIP2-ISP adds isp and
                // organization, which name the operator more directly.
                db_orgs = [
                    rec.autonomous_system_organization,
                    rec.isp,
                    rec.organization,
                ];
                if g.organisation.is_none()
                    && let Some(org) = db_orgs.iter().flatten().next()
                {
                    g.organisation = Some(org);
                    org_by = Some((GeoSource::AsnDb, hit.net));
                }
            }
        }
        if g.carrier.is_none() {
            if let (Some(asn), Some(by)) = (g.asn, asn_by)
                && let Some(c) = self.carrier_of_asn(asn)
            {
                g.carrier = Some(c);
                g.carrier_by = Some(by);
                g.carrier_via = Some("asn table");
            } else if let Some(by) = org_by {
                // An override's organisation replaces the db's names; otherwise try every name
                // the db has for the network.
                let found = if by.0 == GeoSource::Override {
                    g.organisation.and_then(|o| self.carrier_of_org(o))
                } else {
                    db_orgs
                        .iter()
                        .flatten()
                        .find_map(|o| self.carrier_of_org(o))
                };
                if let Some(c) = found {
                    g.carrier = Some(c);
                    g.carrier_by = Some(by);
                    g.carrier_via = Some("organisation match");
                }
            }
        }

        if let Some(db) = &self.city_db
            && (g.location.is_none()
                || g.province.is_none()
                || g.city.is_none()
                || g.country.is_none())
        {
            let hit = db.lookup::<mmdb::CityRecord<'_>>(ip);
            g.location_scope = g.location_scope.max(hit.net.prefix);
            if let Some(rec) = hit.record {
                let by = Some((GeoSource::CityDb, hit.net));
                if g.location.is_none()
                    && let Some(loc) = rec.coordinates()
                {
                    g.location = Some(loc);
                    loc_by[0] = by;
                }
                if g.province.is_none()
                    && let Some((name, code)) = rec.province()
                {
                    // The code goes with the name: never pair an override's province with the
                    // db's code for another one.
                    g.province = name;
                    g.province_code = code;
                    if g.province.is_some() {
                        loc_by[1] = by;
                    }
                }
                if g.city.is_none()
                    && let Some(c) = rec.city()
                {
                    g.city = Some(c);
                    loc_by[2] = by;
                }
                if g.country.is_none()
                    && let Some(c) = rec.country()
                {
                    g.country = Some(c);
                    loc_by[3] = by;
                }
            }
        }
        g.location_by = loc_by.into_iter().flatten().next();
        g
    }
}

/// An ASN and a City mmdb compiled from one geo CSV.
type MmdbPair = (Vec<u8>, Vec<u8>);

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Inserts overrides shortest prefix first, so each row inherits the fields it leaves empty from
/// the most specific enclosing row already in the trie.
fn build_override_trie(mut rows: Vec<(csv::GeoRow, Option<CarrierId>)>) -> trie::Trie<OverrideRow> {
    rows.sort_by_key(|(r, _)| (r.net.addr.is_ipv6(), r.net.prefix));
    let mut t: trie::Trie<OverrideRow> = trie::Trie::new();
    for (row, carrier) in rows {
        let net = row.net;
        let mut resolved = t.parent_value(net).cloned().unwrap_or_default();
        if let Some(c) = carrier {
            resolved.carrier = Some((c, net));
        }
        if let Some(a) = row.asn {
            resolved.asn = Some((a, net));
        }
        if let Some(o) = row.organisation {
            resolved.organisation = Some((o, net));
        }
        if let Some(c) = row.country {
            resolved.country = Some((c, net));
        }
        if let Some(p) = row.province {
            resolved.province = Some((p, net));
        }
        if let Some(c) = row.city {
            resolved.city = Some((c, net));
        }
        if let Some(l) = row.location {
            resolved.location = Some((l, net));
        }
        t.insert(net, resolved);
    }
    t
}

/// Bytes a [`GeoCache`] made with `default()` may hold (the UDP threads give theirs a share of
/// `[limits] fast_path_memory` instead).
const GEO_CACHE_DEFAULT_BUDGET: usize = 16 << 20;

/// Geo answers remembered per client network, for one serving thread (design.md 5: "geo decisions
/// cached per matched network"). An entry is kept for the /24 (IPv4) or /56 (IPv6) around a
/// client only when the lookup's `carrier_scope` and `location_scope` are no longer than that:
/// then, by what those scopes mean, every address of the network gets the same carrier and
/// location, and the same scopes. Addresses in finer-grained data (an override /29, say) are
/// looked up every time. The cache belongs to one [`Geo`]: drop it with the snapshot.
///
/// Its memory is bounded in bytes, counted as the allocator holds them (`heap_size`: the table's
/// own allocation and every string's chunk): full, it starts over.
pub struct GeoCache {
    map: hashbrown::HashMap<(bool, u128), CachedInfo, rustc_hash::FxBuildHasher>,
    /// Bytes of the entries' strings.
    strings: usize,
    budget: usize,
}

impl Default for GeoCache {
    fn default() -> Self {
        GeoCache::with_budget(GEO_CACHE_DEFAULT_BUDGET)
    }
}

/// The bytes glibc's malloc takes for an allocation of `n` bytes: an 8-byte header, 16-byte
/// granules, 32 bytes at least. Budgets count this, not `n`, so that many small allocations are
/// not undercounted by half.
pub fn heap_size(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n + 8).div_ceil(16).max(2) * 16
    }
}

/// A `GeoInfo` that owns its strings.
struct CachedInfo {
    info: GeoInfo<'static>,
    organisation: Option<Box<str>>,
    country: Option<Box<str>>,
    province: Option<Box<str>>,
    province_code: Option<Box<str>>,
    city: Option<Box<str>>,
}

impl CachedInfo {
    /// Heap bytes of the strings it owns.
    fn strings(&self) -> usize {
        [
            &self.organisation,
            &self.country,
            &self.province,
            &self.province_code,
            &self.city,
        ]
        .iter()
        .map(|s| s.as_ref().map_or(0, |s| heap_size(s.len())))
        .sum()
    }

    fn new(g: &GeoInfo<'_>) -> Self {
        let own = |s: Option<&str>| s.map(Box::from);
        CachedInfo {
            info: GeoInfo {
                organisation: None,
                country: None,
                province: None,
                province_code: None,
                city: None,
                ..g.clone()
            },
            organisation: own(g.organisation),
            country: own(g.country),
            province: own(g.province),
            province_code: own(g.province_code),
            city: own(g.city),
        }
    }

    fn view(&self) -> GeoInfo<'_> {
        GeoInfo {
            organisation: self.organisation.as_deref(),
            country: self.country.as_deref(),
            province: self.province.as_deref(),
            province_code: self.province_code.as_deref(),
            city: self.city.as_deref(),
            ..self.info.clone()
        }
    }
}

impl GeoCache {
    /// A cache that holds at most `budget` bytes (table and strings).
    pub fn with_budget(budget: usize) -> Self {
        GeoCache {
            map: Default::default(),
            strings: 0,
            budget,
        }
    }

    /// What the cache holds now, in bytes as the allocator counts them.
    pub fn bytes(&self) -> usize {
        self.map.allocation_size() + self.strings
    }

    /// `geo.lookup(ip)`, from the cache when the client's network has been seen.
    pub fn lookup<'c>(&'c mut self, geo: &'c Geo, ip: IpAddr) -> GeoInfo<'c> {
        let ip = canonical(ip);
        let (key, widest) = Self::key(ip);
        if !self.map.contains_key(&key) {
            let info = geo.lookup(ip);
            if info.carrier_scope.max(info.location_scope) > widest {
                // Finer than the network: not the same for its other addresses.
                return info;
            }
            let entry = CachedInfo::new(&info);
            // A full table doubles when it grows: count the allocation it would move to.
            let table = if self.map.len() == self.map.capacity() {
                (self.map.allocation_size() * 2).max(1024)
            } else {
                self.map.allocation_size()
            };
            if table + self.strings + entry.strings() > self.budget {
                self.clear();
                if self.map.allocation_size() + entry.strings() > self.budget {
                    // Even the emptied table is over the budget (a tiny one): do without.
                    self.map = Default::default();
                    return info;
                }
            }
            self.strings += entry.strings();
            self.map.insert(key, entry);
        }
        self.map[&key].view()
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.strings = 0;
    }

    /// Whether the network around `ip` has an entry: every address in it has the same geo answer.
    pub fn holds(&self, ip: IpAddr) -> bool {
        self.map.contains_key(&Self::key(canonical(ip)).0)
    }

    /// The network an entry for `ip` is kept under: (IPv4?, address bits of the /24 or /56).
    pub fn network(ip: IpAddr) -> (bool, u128) {
        Self::key(canonical(ip)).0
    }

    /// The cache key of `ip` (canonical) and the widest scope an entry may have.
    fn key(ip: IpAddr) -> ((bool, u128), u8) {
        match ip {
            IpAddr::V4(a) => ((true, u128::from(u32::from(a) & 0xffff_ff00)), 24),
            IpAddr::V6(a) => ((false, u128::from(a) & !((1u128 << 72) - 1)), 56),
        }
    }
}
