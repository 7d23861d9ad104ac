//! The catalog zone gslbd produces (RFC 9432, schema version 2): one PTR per member zone under
//! `zones.<catalog>`, so a Knot or BIND secondary configured with the catalog picks up new zones
//! and drops removed ones with no change to its own configuration. The catalog is a zone like
//! the others once built: served on every DNS listener, transferred to the catalog's ACL, with
//! NOTIFY on change. Its serial is the time of the first build that had its current members
//! (kept across reloads and, with a journal, restarts), so it only moves when membership does.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[catalog]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// The catalog zone's name (RFC 9432 4: any name; `catalog.invalid.` is a common choice).
    pub name: String,
    /// Member zones by name; default: every zone with a `transfer` ACL.
    #[serde(default)]
    pub members: Option<Vec<String>>,
    /// Who may transfer the catalog, as a zone's `transfer`.
    #[serde(default)]
    pub transfer: Vec<String>,
    /// Secondaries told of a change, as a zone's `notify`.
    #[serde(default)]
    pub notify: Vec<String>,
    /// The catalog's IXFR journal (optional: without one a restart gives it a new serial and
    /// secondaries transfer it whole once).
    #[serde(default)]
    pub journal: Option<PathBuf>,
}

impl CatalogConfig {
    /// The zone settings the catalog is compiled with (its data comes from `zone_text`).
    pub fn as_zone(&self) -> crate::config::ZoneConfig {
        crate::config::ZoneConfig {
            name: self.name.clone(),
            file: PathBuf::from(format!("<catalog {}>", self.name)),
            rotate: false,
            transfer: self.transfer.clone(),
            notify: self.notify.clone(),
            serial: super::SerialPolicy::Unixtime,
            journal: self.journal.clone(),
            journal_size: 1 << 20,
            kind: crate::config::ZoneKind::Primary,
            members_dir: None,
            primaries: Vec::new(),
            allow_notify: None,
            dnssec: None,
            refresh: None,
            retry: None,
            expire: None,
        }
    }
}

/// The member's label under `zones.` (RFC 9432 4.3.1: unique within the catalog, stable for
/// the member's lifetime): a digest of its lowercase name.
pub fn member_id(zone: &str) -> String {
    use std::hash::Hasher;
    let canon = zone.trim_end_matches('.').to_ascii_lowercase();
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x6361_7461, 0x6c6f_6721);
    h.write(canon.as_bytes());
    format!("{:016x}", h.finish())
}

/// The catalog zone's master-file text for `members` (fully qualified names), with `serial`.
/// RFC 9432 4.1: the apex has an SOA and an NS whose name is `invalid.`; 4.2: `version` TXT "2".
pub fn zone_text(name: &str, serial: u32, members: &[String]) -> String {
    let origin = format!("{}.", name.trim_end_matches('.'));
    let mut t = format!(
        "$ORIGIN {origin}\n$TTL 0\n@ SOA invalid. invalid. {serial} 3600 600 2147483646 0\n\
         @ NS invalid.\nversion TXT \"2\"\n"
    );
    let mut sorted: Vec<&String> = members.iter().collect();
    sorted.sort();
    for m in sorted {
        let m = format!("{}.", m.trim_end_matches('.'));
        t.push_str(&format!("{}.zones PTR {m}\n", member_id(&m)));
    }
    t
}

/// A `ZoneFs` holding the one catalog file in memory.
pub struct Text(pub String);

impl crate::zone::reader::ZoneFs for Text {
    fn read(&self, _: &Path) -> std::io::Result<String> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_get_stable_distinct_labels_and_version_2() {
        assert_eq!(member_id("Example.COM."), member_id("example.com"));
        assert_ne!(member_id("example.com"), member_id("example.net"));
        let t = zone_text("catalog.invalid", 7, &["b.test".into(), "a.test.".into()]);
        assert!(t.contains("@ SOA invalid. invalid. 7 "));
        assert!(t.contains("version TXT \"2\""));
        let a = t
            .find(&format!("{}.zones PTR a.test.", member_id("a.test")))
            .unwrap();
        let b = t
            .find(&format!("{}.zones PTR b.test.", member_id("b.test")))
            .unwrap();
        assert!(a < b, "sorted by member");
    }
}
