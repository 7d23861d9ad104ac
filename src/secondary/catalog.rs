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
//! one (logged).
//!
//! A zone listed by two catalogs belongs to one (`owners`): the one that owned it in the serving
//! snapshot, else the first configured; the other's entry is ignored and logged (RFC 9432 5.4),
//! unless the owner's entry has a `coo` property naming the other catalog, which then takes the
//! zone over (4.4.1). A member whose unique label changed (a reset, 5.6), also one that moved
//! to a catalog listing it under another label (5.4), has its data dropped by `sync` before the
//! rebuild, so it is transferred anew. `group` properties (4.4.2) are shown, not acted on.
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
    /// Its unique label (`<unique>.zones.<catalog>`, lowercase): a new label for the same zone
    /// is a reset (RFC 9432 5.6: the zone's data is dropped and transferred anew).
    pub label: Vec<u8>,
    /// The `coo` property (RFC 9432 4.4.1): the lowercase key of the catalog this member may
    /// move to.
    pub coo: Option<Vec<u8>>,
    /// The `group` properties (RFC 9432 4.4.2), shown by `gslbd ctl zones`; no setting is tied
    /// to a group.
    pub groups: Vec<String>,
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
    // The coo and group properties by the member node they are below.
    let mut coo: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut groups: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for node in catalog.nodes.iter() {
        let key = &node.key[..];
        let Some(member) = parent(key) else { continue };
        if parent(member) != Some(&zones_key[..]) || node.rrsets.is_empty() {
            continue;
        }
        let label = &key[1..1 + key[0] as usize];
        if label == b"coo" {
            // RFC 9432 4.4.1: one PTR, the new owner catalog's name.
            match node.rrset(RecordType::PTR).map(|s| &s.rdatas[..]) {
                Some([one]) => {
                    if let Some(t) = one.target() {
                        coo.insert(member.to_vec(), crate::zone::name::key_of_wire(t).to_vec());
                    }
                }
                _ => notes.push(format!(
                    "catalog {}: {} is not one PTR: ignored",
                    catalog.origin,
                    display(key)
                )),
            }
        } else if label == b"group" {
            // RFC 9432 4.4.2: TXT records, each one character-string.
            for r in node
                .rrset(RecordType::TXT)
                .map_or(&[][..], |s| &s.rdatas[..])
            {
                let mut b = Vec::new();
                r.uncompressed(&mut b);
                if let Some((&n, rest)) = b.split_first()
                    && rest.len() == n as usize
                {
                    groups
                        .entry(member.to_vec())
                        .or_default()
                        .push(String::from_utf8_lossy(rest).into_owned());
                }
            }
        } else {
            properties += 1;
        }
    }
    // By name: a zone listed under two unique labels is taken once (the first label in order).
    let mut found: BTreeMap<Vec<u8>, (Vec<u8>, Member)> = BTreeMap::new();
    for node in catalog.nodes.iter() {
        let key = &node.key[..];
        if key.len() <= zones_key.len() || !is_at_or_below(key, &zones_key) {
            continue;
        }
        // `<unique>.zones.<catalog>` holds the member's PTR; names below it are properties.
        if parent(key) != Some(&zones_key[..]) {
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
            label: key[1..1 + key[0] as usize].to_vec(),
            coo: coo.get(key).cloned(),
            groups: groups.get(key).cloned().unwrap_or_default(),
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
            "catalog {}: {properties} member properties other than coo and group: not acted on",
            catalog.origin
        ));
    }
    Ok((found.into_values().map(|(_, m)| m).collect(), notes))
}

/// One catalog's claim on a member zone, in configuration order.
#[derive(Debug, Clone)]
pub struct Offer<T> {
    /// The catalog's lowercase key.
    pub catalog: Vec<u8>,
    pub member: Member,
    /// What the caller builds the member from (the catalog's `[[zone]]`).
    pub with: T,
}

/// Which catalog serves each member zone (RFC 9432 5.4): a zone offered by one catalog is
/// that catalog's; offered by several, it stays with `previous` owner (the catalog owning it in
/// the snapshot serving; none: the first offer), unless that owner's entry carries a `coo`
/// naming another catalog offering it, which takes it over. The offers not taken are named in
/// the notes. Pure: the caller gives the previous owners.
pub fn owners<T>(
    offers: Vec<Offer<T>>,
    previous: impl Fn(&Name) -> Option<Vec<u8>>,
) -> (Vec<Offer<T>>, Vec<String>) {
    let mut by_zone: BTreeMap<Vec<u8>, Vec<Offer<T>>> = BTreeMap::new();
    let mut order = Vec::new();
    for o in offers {
        let k = crate::zone::name::key_of(&o.member.name).to_vec();
        if !by_zone.contains_key(&k) {
            order.push(k.clone());
        }
        by_zone.entry(k).or_default().push(o);
    }
    let mut taken = Vec::new();
    let mut notes = Vec::new();
    for k in order {
        let mut all = by_zone.remove(&k).unwrap_or_default();
        let prev = previous(&all[0].member.name);
        let mut pick = prev
            .and_then(|p| all.iter().position(|o| o.catalog == p))
            .unwrap_or(0);
        if let Some(to) = &all[pick].member.coo
            && let Some(i) = all.iter().position(|o| &o.catalog == to)
            && i != pick
        {
            notes.push(format!(
                "member {}: moves from catalog {} to catalog {} (coo, RFC 9432 4.4.1)",
                all[0].member.name,
                display(&all[pick].catalog),
                display(to)
            ));
            pick = i;
        }
        let owner = all.swap_remove(pick);
        for o in &all {
            notes.push(format!(
                "catalog {}: member {} belongs to catalog {}: ignored here (RFC 9432 5.4)",
                display(&o.catalog),
                o.member.name,
                display(&owner.catalog)
            ));
        }
        taken.push(owner);
    }
    (taken, notes)
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
    // Members by zone, of every catalog: a member can leave this catalog for another (coo).
    let members = |s: &crate::snapshot::Snapshot| -> Vec<super::SecondaryZone> {
        s.secondaries
            .iter()
            .filter(|m| m.member_of.is_some())
            .cloned()
            .collect()
    };
    let (old, new) = (members(&before), members(&after));
    let mine = |m: &super::SecondaryZone| m.member_of.as_ref() == Some(&z.origin);
    for m in new.iter().filter(|m| mine(m)) {
        if !old.iter().any(|o| o.origin == m.origin && mine(o)) {
            tracing::info!(catalog = %z.origin, zone = %m.origin, "member zone added");
        }
    }
    for o in &old {
        match new.iter().find(|m| m.origin == o.origin) {
            None if mine(o) => {
                tracing::info!(catalog = %z.origin, zone = %o.origin, file = %o.file.display(), "member zone removed: no longer served, its file deleted")
            }
            Some(m) if m.member_of != o.member_of => tracing::info!(
                zone = %o.origin,
                from = ?o.member_of.as_ref().map(ToString::to_string),
                to = ?m.member_of.as_ref().map(ToString::to_string),
                "member zone moved to another catalog (coo, RFC 9432 4.4.1)"
            ),
            _ => {}
        }
        // A file no member of the new snapshot uses: removed, or moved to another catalog's
        // folder (whose first refresh transfers it).
        if !after.secondaries.iter().any(|m| m.file == o.file) {
            remove_files(&o.file);
        }
    }
    // RFC 9432 5.6 (and 5.4 for a move under another label): a new unique label resets the
    // zone: its data and state are dropped and it is transferred anew (the data already
    // loaded serves until the AXFR replaces it).
    for m in &new {
        if let Some(o) = old.iter().find(|o| o.origin == m.origin)
            && !o.catalog_label.is_empty()
            && o.catalog_label != m.catalog_label
        {
            tracing::info!(
                zone = %m.origin,
                from = %String::from_utf8_lossy(&o.catalog_label),
                to = %String::from_utf8_lossy(&m.catalog_label),
                "member zone reset (new unique label, RFC 9432 5.6): transferred anew"
            );
            m.control.reset();
            remove_files(&m.file);
            m.control.notify.notify_one();
        }
    }
}

/// A member's data file and the files a transfer of it leaves beside it.
fn remove_files(file: &Path) {
    for f in [
        file.to_path_buf(),
        file.with_extension("rejected"),
        file.with_extension("tmp-gslbd"),
    ] {
        let _ = std::fs::remove_file(f);
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
             e.zones PTR x.cat.invalid.\nf.zones PTR one.test.\nf.zones PTR two.test.\n\
             serial.a.zones TXT \"1\"\ngroup.b.zones TXT \"red\" \ngroup.b.zones TXT \"blue\"\n\
             coo.b.zones PTR Other.Invalid.\n",
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
            "1 member properties other than coo and group",
        ] {
            assert!(notes.contains(want), "{want}: {notes}");
        }
        let net = &m[0];
        assert_eq!(net.label, b"b");
        assert_eq!(net.coo.as_deref(), Some(&b"\x05other\x07invalid\x00"[..]));
        let mut groups = net.groups.clone();
        groups.sort();
        assert_eq!(groups, ["blue", "red"]);
        assert_eq!(
            (m[1].coo.as_ref(), &m[1].groups[..]),
            (None, &["g".to_string()][..])
        );
    }

    #[test]
    fn a_zone_in_two_catalogs_has_one_owner() {
        let key = |n: &str| crate::zone::name::key_of(&Name::from_ascii(n).unwrap()).to_vec();
        let offer = |cat: &str, coo: Option<&str>| Offer {
            catalog: key(cat),
            member: Member {
                name: Name::from_ascii("x.test.").unwrap(),
                file: PathBuf::from(format!("/{cat}/x.test.zone")),
                label: b"u".to_vec(),
                coo: coo.map(key),
                groups: Vec::new(),
            },
            with: cat.to_string(),
        };
        let owner = |offers: Vec<Offer<String>>, prev: Option<&str>| {
            let (taken, notes) = owners(offers, |_| prev.map(key));
            assert_eq!(taken.len(), 1);
            (taken[0].with.clone(), notes.join("\n"))
        };
        // First configured, unless it was another's: the other offer ignored (RFC 9432 5.4).
        let (o, notes) = owner(vec![offer("a.", None), offer("b.", None)], None);
        assert_eq!(o, "a.");
        assert!(
            notes.contains("catalog b.: member x.test. belongs to catalog a."),
            "{notes}"
        );
        assert_eq!(
            owner(vec![offer("a.", None), offer("b.", None)], Some("b.")).0,
            "b."
        );
        // The owner's coo names the other: it moves (4.4.1); a coo elsewhere changes nothing.
        let (o, notes) = owner(vec![offer("a.", Some("b.")), offer("b.", None)], Some("a."));
        assert_eq!(o, "b.");
        assert!(
            notes.contains("moves from catalog a. to catalog b."),
            "{notes}"
        );
        assert_eq!(
            owner(vec![offer("a.", Some("c.")), offer("b.", None)], Some("a.")).0,
            "a."
        );
        // A coo on the entry of the catalog that does not own it gives nothing away.
        assert_eq!(
            owner(vec![offer("a.", None), offer("b.", Some("a."))], Some("a.")).0,
            "a."
        );
        assert_eq!(owner(vec![offer("b.", None)], Some("a.")).0, "b.");
    }

    #[test]
    fn a_catalog_without_version_2_is_not_read() {
        for v in ["", "version TXT \"1\"\n", "version TXT \"2\" \"x\"\n"] {
            let z = catalog(&format!("{v}a.zones PTR example.org.\n"));
            assert!(members(&z, Path::new("/m")).is_err(), "{v}");
        }
    }
}
