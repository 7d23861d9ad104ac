//! MaxMind DB files: opened and schema-probed at load, looked up per query with records decoded
//! into borrowed structs (only the fields we use; strings point into the file's buffer).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};

use super::Net;

/// What a database is loaded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Asn,
    City,
}

/// The schemas we tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schema {
    /// GeoLite2-ASN, DB-IP ASN lite: `autonomous_system_number`, `autonomous_system_organization`.
    Asn,
    /// GeoIP2-ISP: the ASN fields plus `isp`, `organization`.
    Isp,
    /// GeoIP2/GeoLite2 City, DB-IP city lite, GeoIP2 Enterprise: `country`, `subdivisions`,
    /// `city`, `location`; or ip-location-db's flat city layout: `country_code`, `state1`,
    /// `city` (a string), `latitude`, `longitude`.
    City,
    /// GeoIP2/GeoLite2/DB-IP Country: the City layout with only `country`; or ip-location-db's
    /// country files (whatever their source, e.g. "GeoLite2-Country"): `country_code` only.
    Country,
}

impl Schema {
    fn describe(self) -> &'static str {
        match self {
            Schema::Asn => "ASN",
            Schema::Isp => "ISP",
            Schema::City => "City",
            Schema::Country => "Country",
        }
    }

    fn fits(self, role: Role) -> bool {
        match role {
            Role::Asn => matches!(self, Schema::Asn | Schema::Isp),
            // A Country database is the City layout with fewer fields: country-level routing.
            Role::City => matches!(self, Schema::City | Schema::Country),
        }
    }
}

/// From the metadata's `database_type` (`GeoLite2-City`, `GeoIP2-ISP`, `DBIP-City-Lite`,
/// `DBIP-ASN-Lite (compat=GeoLite2-ASN)`, our `gslbd-ASN` ...). None: look at records.
fn schema_from_type(database_type: &str) -> Option<Schema> {
    let t = database_type.to_ascii_lowercase();
    if t.contains("asn") {
        Some(Schema::Asn)
    } else if t.contains("isp") {
        Some(Schema::Isp)
    } else if t.contains("city") || t.contains("enterprise") {
        Some(Schema::City)
    } else if t.contains("country") {
        Some(Schema::Country)
    } else {
        None
    }
}

/// From the top-level keys of a record.
fn schema_from_keys(keys: &BTreeMap<String, IgnoredAny>) -> Option<Schema> {
    if keys.contains_key("isp") {
        Some(Schema::Isp)
    } else if keys.contains_key("autonomous_system_number") {
        Some(Schema::Asn)
    } else if ["location", "subdivisions", "city", "state1", "latitude"]
        .iter()
        .any(|k| keys.contains_key(*k))
    {
        Some(Schema::City)
    } else if keys.contains_key("country") || keys.contains_key("country_code") {
        Some(Schema::Country)
    } else {
        None
    }
}

/// The fields of an ASN or ISP record we use.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct AsnRecord<'a> {
    #[serde(default)]
    pub autonomous_system_number: Option<u32>,
    #[serde(default, borrow)]
    pub autonomous_system_organization: Option<&'a str>,
    #[serde(default, borrow)]
    pub isp: Option<&'a str>,
    #[serde(default, borrow)]
    pub organization: Option<&'a str>,
}

/// The fields of a City (or Country) record we use, in either layout: MaxMind's (also DB-IP's
/// own files: `country.iso_code`, `subdivisions[0]`, `city.names.en`, `location`) or the flat one
/// of ip-location-db's files (`country_code`, `state1`, `city` as a string, `latitude`,
/// `longitude`). Read through the accessors, which take whichever is present.
#[derive(Deserialize, Debug, Default)]
pub(crate) struct CityRecord<'a> {
    #[serde(default, borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(default, borrow)]
    subdivisions: First<Subdivision<'a>>,
    #[serde(default, borrow)]
    city: Option<CityName<'a>>,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default, borrow)]
    country_code: Option<&'a str>,
    #[serde(default, borrow)]
    state1: Option<&'a str>,
    #[serde(default)]
    latitude: Option<Coordinate>,
    #[serde(default)]
    longitude: Option<Coordinate>,
}

impl<'a> CityRecord<'a> {
    /// ISO 3166-1 alpha-2 code.
    pub(crate) fn country(&self) -> Option<&'a str> {
        self.country
            .as_ref()
            .and_then(|c| c.iso_code)
            .or(self.country_code)
            .filter(|c| !c.is_empty())
    }

    /// The province (largest subdivision) when the record has one: its English name and its
    /// ISO code, each when the database has it.
    pub(crate) fn province(&self) -> Option<(Option<&'a str>, Option<&'a str>)> {
        match &self.subdivisions.0 {
            Some(sub) => Some((sub.names.as_ref().and_then(|n| n.en), sub.iso_code)),
            None => Some((Some(self.state1.filter(|s| !s.is_empty())?), None)),
        }
    }

    pub(crate) fn city(&self) -> Option<&'a str> {
        match self.city.as_ref()? {
            CityName::Plain(s) => Some(*s).filter(|s| !s.is_empty()),
            CityName::Names(n) => n.en,
        }
    }

    pub(crate) fn coordinates(&self) -> Option<(f64, f64)> {
        match &self.location {
            Some(l) => l.coordinates(),
            None => Some((self.latitude?.0, self.longitude?.0)),
        }
    }

    /// Whether the record says anything gslbd uses.
    fn is_useful(&self) -> bool {
        self.country().is_some()
            || self
                .province()
                .is_some_and(|(name, code)| name.or(code).is_some())
            || self.city().is_some()
            || self.coordinates().is_some()
    }
}

/// `city`: a map with `names` (MaxMind, DB-IP) or a plain string (ip-location-db).
#[derive(Debug)]
enum CityName<'a> {
    Names(Names<'a>),
    Plain(&'a str),
}

impl<'de: 'a, 'a> Deserialize<'de> for CityName<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CityName<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a city: a map with names, or a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(CityName::Plain(s))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut names = Names::default();
                while let Some(key) = map.next_key::<&'de str>()? {
                    if key == "names" {
                        names = map.next_value()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(CityName::Names(names))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A latitude or longitude stored as a double, a float or an integer (layouts differ).
#[derive(Debug, Clone, Copy)]
struct Coordinate(f64);

impl<'de> Deserialize<'de> for Coordinate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Coordinate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Coordinate, E> {
                Ok(Coordinate(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Coordinate, E> {
                Ok(Coordinate(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Coordinate, E> {
                Ok(Coordinate(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields of an ASN or ISP record we use: whether it says anything gslbd uses.
impl AsnRecord<'_> {
    fn is_useful(&self) -> bool {
        self.autonomous_system_number.is_some()
            || self.autonomous_system_organization.is_some()
            || self.isp.is_some()
            || self.organization.is_some()
    }
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct IsoCode<'a> {
    #[serde(default, borrow)]
    pub iso_code: Option<&'a str>,
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct Names<'a> {
    #[serde(default, borrow)]
    pub en: Option<&'a str>,
}

#[derive(Deserialize, Debug, Default)]
pub(crate) struct Subdivision<'a> {
    #[serde(default, borrow)]
    pub iso_code: Option<&'a str>,
    #[serde(default, borrow)]
    pub names: Option<Names<'a>>,
}

#[derive(Deserialize, Debug, Default, Clone, Copy)]
pub(crate) struct Location {
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
}

impl Location {
    pub(crate) fn coordinates(&self) -> Option<(f64, f64)> {
        Some((self.latitude?, self.longitude?))
    }
}

/// The first element of an array, the rest skipped: `subdivisions[0]` (the largest
/// subdivision, the province) without allocating a Vec per query.
#[derive(Debug)]
pub(crate) struct First<T>(pub Option<T>);

impl<T> Default for First<T> {
    fn default() -> Self {
        First(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = First<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<First<T>, A::Error> {
                let first = seq.next_element::<T>()?;
                // Consume the rest so the decoder stands after the array.
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// A lookup's record (None: no data) and the network the database matched for the address,
/// data or not (an empty network is still the region where the answer is "nothing").
pub(crate) struct Hit<T> {
    pub record: Option<T>,
    pub net: Net,
}

pub(crate) struct Db {
    label: String,
    reader: Reader<Vec<u8>>,
}

impl Db {
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Opens `bytes` as a MaxMind DB and checks it has the schema `role` needs: by the
    /// metadata's database type when it names one, and in every case by decoding a sample of
    /// records into our structs, so a schema mismatch fails the load rather than every query.
    pub(crate) fn open(bytes: Vec<u8>, label: String, role: Role) -> Result<Db, String> {
        let reader = Reader::from_source(bytes)
            .map_err(|e| format!("{label}: not a readable MaxMind DB (.mmdb) file: {e}"))?;
        let database_type = reader.metadata().database_type.clone();
        let mut schema = schema_from_type(&database_type);
        let from_type = schema.is_some();
        let needs = match role {
            Role::Asn => {
                "asn_db needs an ASN or ISP database (GeoLite2-ASN, GeoIP2-ISP, DB-IP ASN)"
            }
            Role::City => {
                "city_db needs a City or Country database (GeoLite2-City, GeoIP2-City, DB-IP City)"
            }
        };
        if let Some(s) = schema
            && !s.fits(role)
        {
            return Err(format!("{label}: is a {database_type} database, {needs}"));
        }
        let db = Db { label, reader };
        // A few records from the start of the tree: enough to tell the schema, cheap on a
        // 60 MB file.
        const SAMPLE: usize = 16;
        let mut sampled = 0;
        let mut useful = 0;
        let mut seen_keys: Vec<String> = Vec::new();
        let networks = db
            .reader
            .networks(WithinOptions::default())
            .map_err(|e| format!("{}: cannot walk the database: {e}", db.label))?;
        for item in networks.take(SAMPLE) {
            let found = item.map_err(|e| format!("{}: corrupt database: {e}", db.label))?;
            let keys: BTreeMap<String, IgnoredAny> = match found.decode() {
                Ok(Some(k)) => k,
                Ok(None) => continue,
                Err(e) => {
                    return Err(format!(
                        "{}: a record is not a map as GeoIP2 records are: {e}",
                        db.label
                    ));
                }
            };
            sampled += 1;
            if seen_keys.is_empty() {
                seen_keys = keys.keys().cloned().collect();
            }
            if schema.is_none() {
                schema = schema_from_keys(&keys);
            }
            let where_ = found
                .network()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".to_string());
            let checked = match role {
                Role::Asn => found
                    .decode::<AsnRecord<'_>>()
                    .map(|r| r.is_some_and(|r| r.is_useful())),
                Role::City => found
                    .decode::<CityRecord<'_>>()
                    .map(|r| r.is_some_and(|r| r.is_useful())),
            };
            match checked {
                Ok(true) => useful += 1,
                Ok(false) => {}
                Err(e) => {
                    return Err(format!(
                        "{}: the record for {where_} does not decode as an {} record ({e}); \
                         {needs}",
                        db.label,
                        if role == Role::Asn { "ASN" } else { "City" },
                    ));
                }
            }
        }
        // A database whose type looks right but whose records hold none of the fields we read
        // would pass and then answer nothing for every address: refuse it, saying what it has.
        if schema.is_some_and(|s| s.fits(role)) && sampled > 0 && useful == 0 {
            let reads = match role {
                Role::Asn => {
                    "autonomous_system_number, autonomous_system_organization, isp, organization"
                }
                Role::City => {
                    "country.iso_code, subdivisions, city, location (GeoIP2, DB-IP) or \
                     country_code, state1, city, latitude, longitude (ip-location-db)"
                }
            };
            return Err(format!(
                "{}: {database_type:?} database whose records have none of the fields gslbd \
                 reads ({reads}); its records have: {}",
                db.label,
                seen_keys.join(", ")
            ));
        }
        match schema {
            Some(s) if s.fits(role) => Ok(db),
            Some(s) => Err(format!(
                "{}: is a {database_type:?} database whose records look like {} records, {needs}",
                db.label,
                s.describe()
            )),
            // An empty database of an unknown type says nothing about any address; accepting
            // it would hide a wrong path, so ask for a typed or non-empty file.
            None if sampled == 0 && !from_type => Err(format!(
                "{}: database type {database_type:?} is unknown and the database has no \
                 records to check, {needs}",
                db.label
            )),
            None => Err(format!(
                "{}: database type {database_type:?} is unknown and its records have none of \
                 the fields of an ASN, ISP, City or Country database, {needs}",
                db.label
            )),
        }
    }

    /// Looks `ip` up (already canonical: IPv4-mapped addresses are IPv4). Never fails: a
    /// record that does not decode counts as no data.
    pub(crate) fn lookup<'a, T: Deserialize<'a>>(&'a self, ip: IpAddr) -> Hit<T> {
        if ip.is_ipv6() && self.reader.metadata().ip_version == 4 {
            // An IPv4-only database has nothing to say about IPv6: the same for all of it.
            return Hit {
                record: None,
                net: Net {
                    addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    prefix: 0,
                },
            };
        }
        let full = if ip.is_ipv4() { 32 } else { 128 };
        let Ok(found) = self.reader.lookup(ip) else {
            // Only a corrupt tree gets here: claim nothing beyond this one address.
            return Hit {
                record: None,
                net: Net::containing(ip, full),
            };
        };
        let net = match found.network() {
            Ok(n) => match (ip, n.network()) {
                (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => Net {
                    addr: n.network(),
                    prefix: n.prefix(),
                },
                // An IPv4 address matched above the tree's IPv4 subtree (`::/96`): the record
                // covers all of IPv4.
                (IpAddr::V4(_), IpAddr::V6(_)) => Net {
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    prefix: 0,
                },
                (IpAddr::V6(_), IpAddr::V4(_)) => Net::containing(ip, full),
            },
            Err(_) => Net::containing(ip, full),
        };
        Hit {
            record: found.decode::<T>().ok().flatten(),
            net,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for (t, s) in [
            ("GeoLite2-ASN", Some(Schema::Asn)),
            ("GeoIP2-ISP", Some(Schema::Isp)),
            ("DBIP-ASN-Lite (compat=GeoLite2-ASN)", Some(Schema::Asn)),
            ("GeoLite2-City", Some(Schema::City)),
            ("DBIP-City-Lite", Some(Schema::City)),
            ("GeoIP2-Enterprise", Some(Schema::City)),
            ("GeoLite2-Country", Some(Schema::Country)),
            ("gslbd-ASN", Some(Schema::Asn)),
            ("gslbd-City", Some(Schema::City)),
            ("My-Data", None),
        ] {
            assert_eq!(schema_from_type(t), s, "{t}");
        }
    }
}
