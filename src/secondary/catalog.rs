//! Catalog zones consumed (RFC 9432, schema version 2): a `[[zone]]` of `kind = "catalog"` is a
//! secondary zone (transferred, refreshed, NOTIFY-driven and expired like any other) whose members
//! become secondary zones of this server, with the catalog's primaries and `allow_notify`, their
//! files `<members_dir>/<zone>.zone`.
//!
//! ```toml
//! [[zone]]
//! name = "catalog.invalid"
//! kind = "catalog"
//! file = "/var/lib/gslbd/catalog.zone"
//! members_dir = "/var/lib/gslbd/members"
//! primaries = [{ address = "192.0.2.1:53", key = "xfr-key" }]
//! ```
//!
//! The member list is read from the catalog's data by every snapshot build (`members`, called by
//! `snapshot::from_config`, so a restart or a reload serves the members of the catalog file on
//! disk); when a transfer brings a catalog version other than the one the serving members were
//! read from, the catalog's task rebuilds the snapshot (`sync`, the same build as a reload, under
//! the reload lock, audited as "catalog"), which starts the new members' tasks (their first
//! refresh transfers them) and drops the removed members: their names are REFUSED from then on,
//! as any name outside our zones, and their files are deleted (RFC 9432 5.3: the consumer
//! removes the member zone). A member that is also a configured `[[zone]]` stays the configured
//! one (logged). The group and coo properties (4.4.1, 4.4.2) are not acted on (logged once per
//! build); a change of a member's unique label (a reset, 5.6) is not noticed.
//!
//! Nothing here but `sync` does I/O (it deletes the removed members' files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RecordType};

use crate::zone::Zone;
use crate::zone::name::{display, is_at_or_below, parent};

/// One member zone of a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: Name,
    /// Where its transferred data is kept (`<members_dir>/<zone>.zone`).
    pub file: PathBuf,
}

/// The member zones `catalog` lists, each with its file under `dir`. Err: the catalog is not
/// one this server can use (RFC 9432 4.2: a schema version other than "2" must not be
/// processed). Members that cannot be used are left out and named in the notes.
pub fn members(catalog: &Zone, dir: &Path) -> Result<(Vec<Member>, Vec<String>), String> {
    let origin = &catalog.origin_key;
    let version_key: Vec<u8> = [&[7u8][..], b"version", origin].concat();
    let version = catalog
        .node(&version_key)
        .and_then(|n| n.rrset(RecordType::TXT))
        .map(|s| {
            s.rdatas
                .iter()
                .map(|r| {
                    let mut b = Vec::new();
                    r.uncompressed(&mut b);
                    b
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    // TXT "2": one character-string of one byte.
    if version != [vec![1, b'2']] {
        return Err(format!(
            "catalog {}: no version TXT \"2\" (RFC 9432 4.2): its members are not read",
            catalog.origin
        ));
    }
    let zones_key: Vec<u8> = [&[5u8][..], b"zones", origin].concat();
    let mut notes = Vec::new();
    let mut properties = 0;
    // By name: a zone listed under two unique labels is taken once (the first label in order).
    let mut found: BTreeMap<Vec<u8>, (Vec<u8>, Member)> = BTreeMap::new();
    for node in catalog.nodes.iter() {
        let key = &node.key[..];
        if key.len() <= zones_key.len() || !is_at_or_below(key, &zones_key) {
            continue;
        }
        // `<unique>.zones.<catalog>` holds the member's PTR; names below it are properties.
        if parent(key) != Some(&zones_key[..]) {
            if !node.rrsets.is_empty() {
                properties += 1;
            }
            continue;
        }
        let Some(ptr) = node.rrset(RecordType::PTR) else {
            continue;
        };
        // RFC 9432 4.3.1: exactly one PTR at a member node.
        if ptr.rdatas.len() != 1 {
            notes.push(format!(
                "catalog {}: {} has {} PTR records: ignored",
                catalog.origin,
                display(key),
                ptr.rdatas.len()
            ));
            continue;
        }
        let Some(target) = ptr.rdatas[0].target() else {
            continue;
        };
        let target = crate::zone::name::key_of_wire(target);
        let Some(file) = file_name(&target) else {
            notes.push(format!(
                "catalog {}: member {} has characters gslbd does not put in a file name: ignored",
                catalog.origin,
                display(&target)
            ));
            continue;
        };
        if is_at_or_below(&target, origin) {
            notes.push(format!(
                "catalog {}: member {} is inside the catalog: ignored",
                catalog.origin,
                display(&target)
            ));
            continue;
        }
        let Ok(name) = Name::from_ascii(display(&target)) else {
            continue;
        };
        let member = Member {
            name,
            file: dir.join(file),
        };
        match found.get(&target[..]) {
            Some((label, _)) if label[..] <= *key => notes.push(format!(
                "catalog {}: member {} is listed twice: {} ignored",
                catalog.origin,
                display(&target),
                display(key)
            )),
            _ => {
                found.insert(target.to_vec(), (key.to_vec(), member));
            }
        }
    }
    if properties > 0 {
        notes.push(format!(
            "catalog {}: {properties} member properties (group, coo, ...) not acted on",
            catalog.origin
        ));
    }
    Ok((found.into_values().map(|(_, m)| m).collect(), notes))
}

/// `<zone>.zone` for a lowercase key whose labels are letters, digits, '-' and '_' only (so a
/// name from the network never makes a path that leaves the directory); None otherwise.
fn file_name(key: &[u8]) -> Option<String> {
    let text = display(key);
    let bare = text.trim_end_matches('.');
    let ok = !bare.is_empty()
        && bare.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
    ok.then(|| format!("{bare}.zone"))
}

/// After a refresh of catalog `z`: when the serving catalog data is not the version the serving
/// members were read from, rebuild the snapshot (as a reload) and delete the removed members'
/// files. A failed build is retried after the next refresh.
pub async fn sync(handle: &crate::server::Handle, z: &super::SecondaryZone) {
    let before = handle.snapshot_full();
    let Some(serving) = before
        .zones
        .iter()
        .find(|c| c.origin_key[..] == z.origin_key[..])
    else {
        return;
    };
    if serving.expired || z.members_from == Some(serving.serial) {
        return;
    }
    let h = handle.clone();
    let who = format!("catalog {}", z.origin);
    let built = tokio::task::spawn_blocking(move || h.reload_as(&who)).await;
    let after = match built {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(catalog = %z.origin, "the catalog changed but the rebuild failed (retried after the next refresh):\n{e}");
            return;
        }
        Err(e) => {
            tracing::warn!(catalog = %z.origin, "catalog rebuild task failed: {e}");
            return;
        }
    };
    let of = |s: &crate::snapshot::Snapshot| -> Vec<(Name, PathBuf)> {
        s.secondaries
            .iter()
            .filter(|m| m.member_of.as_ref() == Some(&z.origin))
            .map(|m| (m.origin.clone(), m.file.clone()))
            .collect()
    };
    let (old, new) = (of(&before), of(&after));
    for (name, _) in &new {
        if !old.iter().any(|(n, _)| n == name) {
            tracing::info!(catalog = %z.origin, zone = %name, "member zone added");
        }
    }
    for (name, file) in old.iter().filter(|o| !new.contains(o)) {
        tracing::info!(catalog = %z.origin, zone = %name, file = %file.display(), "member zone removed: no longer served, its file deleted");
        for f in [
            file.clone(),
            file.with_extension("rejected"),
            file.with_extension("tmp-gslbd"),
        ] {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(text: &str) -> Zone {
        struct F(String);
        impl crate::zone::reader::ZoneFs for F {
            fn read(&self, _: &Path) -> std::io::Result<String> {
                Ok(self.0.clone())
            }
        }
        let origin = Name::from_ascii("cat.invalid.").unwrap();
        Zone::load(
            &origin,
            Path::new("cat"),
            &F(format!(
                "$ORIGIN cat.invalid.\n$TTL 0\n@ SOA invalid. invalid. 1 3600 600 2147483646 0\n\
                 @ NS invalid.\n{text}"
            )),
        )
        .unwrap()
    }

    #[test]
    fn members_of_a_version_2_catalog() {
        let z = catalog(
            "version TXT \"2\"\nb.zones PTR Example.NET.\na.zones PTR example.org.\n\
             group.a.zones TXT \"g\"\nc.zones PTR example.org.\nd.zones PTR a\\047b.test.\n\
             e.zones PTR x.cat.invalid.\nf.zones PTR one.test.\nf.zones PTR two.test.\n",
        );
        let (m, notes) = members(&z, Path::new("/m")).unwrap();
        let got: Vec<(String, PathBuf)> = m
            .iter()
            .map(|m| (m.name.to_string(), m.file.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "example.net.".to_string(),
                    PathBuf::from("/m/example.net.zone")
                ),
                (
                    "example.org.".to_string(),
                    PathBuf::from("/m/example.org.zone")
                ),
            ]
        );
        let notes = notes.join("\n");
        for want in [
            "listed twice: c.zones.cat.invalid. ignored",
            "file name",
            "inside the catalog",
            "2 PTR records",
            "1 member properties",
        ] {
            assert!(notes.contains(want), "{want}: {notes}");
        }
    }

    #[test]
    fn a_catalog_without_version_2_is_not_read() {
        for v in ["", "version TXT \"1\"\n", "version TXT \"2\" \"x\"\n"] {
            let z = catalog(&format!("{v}a.zones PTR example.org.\n"));
            assert!(members(&z, Path::new("/m")).is_err(), "{v}");
        }
    }
}
