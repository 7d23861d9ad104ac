//! DNSSEC signing of a zone's static data when the snapshot is built (RFC 4033-4035).
//!
//! Config (per `[[zone]]`): `dnssec = { keys = ["Kexample.com.+013+12345", ...],
//! validity_days = 14, refresh_days = 7, dnskey_ttl = 3600, cds = true }`. A key is a BIND pair
//! (`K<zone>+<alg>+<tag>` stem, or its `.key`/`.private` path; the role comes from the DNSKEY
//! flags: 257 = KSK when a 256 ZSK is configured beside it, else a CSK) or a PKCS#8 PEM file
//! given as `{ file = "k.pem", role = "ksk" | "zsk" | "csk" }`. Paths are relative to the config
//! file. Algorithms 13 (ECDSAP256SHA256) and 15 (ED25519).
//!
//! Failure modes (config errors naming the file and reason, `gslbd check` reports them, a reload
//! keeps the serving snapshot): a missing or unreadable key file, an unsupported algorithm, a
//! private key that does not match its public key, a key whose owner is another zone, a set of
//! keys where some algorithm has no key for the DNSKEY RRset or none for the rest (RFC 4035 2.2:
//! every algorithm in the DNSKEY RRset signs everything), validity not longer than the refresh.
//!
//! Validity (RFC 4034 3.1.5) on fixed steps of the clock, as PowerDNS does: inception = start of
//! the current refresh period (multiples of `refresh_days` since the epoch) minus an hour for
//! clock skew, expiration = inception + `validity_days`. Every node of a fleet that builds
//! within one period with the same keys and data writes the same RRSIG fields; with Ed25519
//! (deterministic, RFC 8032) the signature bytes are identical too, with ECDSA (randomized k)
//! only the fields are. The server rebuilds the snapshot at each period boundary
//! (`server`: the same path as SIGHUP), so signatures never get closer to expiring than
//! `validity_days - refresh_days`.
//!
//! No I/O except reading key files, which happens only at build (`compile`, through the build's
//! `ZoneFs`, as zone files are read).

pub mod keys;
pub mod sign;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use keys::{Algorithm, Key, Role};
pub use sign::{Stats, Window};

/// `dnssec = { ... }` of a `[[zone]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnssecConfig {
    pub keys: Vec<KeyRef>,
    #[serde(default = "default_validity")]
    pub validity_days: u32,
    #[serde(default = "default_refresh")]
    pub refresh_days: u32,
    /// TTL of DNSKEY, CDS and CDNSKEY (default: the SOA's TTL).
    #[serde(default)]
    pub dnskey_ttl: Option<u32>,
    /// Publish CDS and CDNSKEY for the KSK/CSK (RFC 7344, RFC 8078). Default true.
    #[serde(default = "yes")]
    pub cds: bool,
}

fn default_validity() -> u32 {
    14
}
fn default_refresh() -> u32 {
    7
}
fn yes() -> bool {
    true
}

/// One configured key: a BIND key path, or a PEM file with its role.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum KeyRef {
    Path(PathBuf),
    File {
        file: PathBuf,
        #[serde(default)]
        role: Option<RoleName>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Ksk,
    Zsk,
    Csk,
}

/// A zone's compiled signing settings: keys loaded, periods in seconds.
#[derive(Debug)]
pub struct ZoneSigner {
    pub keys: Vec<Key>,
    pub validity: u32,
    pub refresh: u32,
    pub dnskey_ttl: Option<u32>,
    pub cds: bool,
}

const DAY: u32 = 86_400;
/// Inception is set this far before the period starts, for validators whose clocks are behind.
const SKEW: u32 = 3_600;

impl ZoneSigner {
    /// Loads the keys of `zone` (absolute, any case) and checks them. Every problem is reported.
    pub fn compile(
        zone: &str,
        c: &DnssecConfig,
        base: &Path,
        fs: &dyn crate::zone::reader::ZoneFs,
    ) -> Result<ZoneSigner, Vec<String>> {
        let mut problems = Vec::new();
        if c.keys.is_empty() {
            problems.push(format!("zone {zone}: dnssec.keys is empty"));
        }
        if c.refresh_days == 0 || c.validity_days <= c.refresh_days {
            problems.push(format!(
                "zone {zone}: dnssec.validity_days ({}) must be longer than refresh_days ({}), \
                 which must be at least 1: signatures are renewed every refresh period",
                c.validity_days, c.refresh_days
            ));
        }
        let want_zone = {
            let z = zone.to_ascii_lowercase();
            if z.ends_with('.') { z } else { format!("{z}.") }
        };
        let mut keys = Vec::new();
        for k in &c.keys {
            let (path, role) = match k {
                KeyRef::Path(p) => (base.join(p), None),
                KeyRef::File { file, role } => (
                    base.join(file),
                    role.map(|r| match r {
                        RoleName::Ksk => Role::Ksk,
                        RoleName::Zsk => Role::Zsk,
                        RoleName::Csk => Role::Csk,
                    }),
                ),
            };
            match keys::load(fs, &path, role) {
                Ok(key) => {
                    if let Some(owner) = &key.zone
                        && *owner != want_zone
                    {
                        problems.push(format!(
                            "zone {zone}: key {}: the key is for zone {owner}, not {want_zone}",
                            path.display()
                        ));
                        continue;
                    }
                    if keys.iter().any(|o: &Key| o.public == key.public) {
                        problems.push(format!(
                            "zone {zone}: key {}: the same key is configured twice",
                            path.display()
                        ));
                        continue;
                    }
                    keys.push(key);
                }
                Err(e) => problems.push(format!("zone {zone}: dnssec key {e}")),
            }
        }
        // A 257 key read from a BIND file is a CSK unless the set has a ZSK of its algorithm:
        // then it is that ZSK's KSK (RFC 6781 3.1).
        let zsk_algs: Vec<Algorithm> = keys
            .iter()
            .filter(|k| k.role == Role::Zsk)
            .map(|k| k.algorithm)
            .collect();
        for k in keys.iter_mut() {
            if k.role == Role::Csk && zsk_algs.contains(&k.algorithm) {
                k.role = Role::Ksk;
            }
        }
        // RFC 4035 2.2: each algorithm in the DNSKEY RRset signs every RRset.
        let mut algs: Vec<Algorithm> = keys.iter().map(|k| k.algorithm).collect();
        algs.dedup();
        for a in algs {
            let of = |r: &[Role]| keys.iter().any(|k| k.algorithm == a && r.contains(&k.role));
            if !of(&[Role::Ksk, Role::Csk]) {
                problems.push(format!(
                    "zone {zone}: no KSK or CSK of algorithm {} signs the DNSKEY RRset",
                    a.number()
                ));
            }
            if !of(&[Role::Zsk, Role::Csk]) {
                problems.push(format!(
                    "zone {zone}: no ZSK or CSK of algorithm {} signs the zone's data",
                    a.number()
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ZoneSigner {
            keys,
            validity: c.validity_days.saturating_mul(DAY),
            refresh: c.refresh_days.saturating_mul(DAY),
            dnskey_ttl: c.dnskey_ttl,
            cds: c.cds,
        })
    }

    /// The validity window for a build at `now` (seconds since the epoch).
    pub fn window(&self, now: u64) -> Window {
        window(now, self.refresh, self.validity)
    }

    /// When the period of `now` ends: the next build must happen by then.
    pub fn next_refresh(&self, now: u64) -> u64 {
        let r = u64::from(self.refresh.max(1));
        (now / r + 1) * r
    }

    /// Signs `zone` in place for a build at `now`.
    pub fn sign(
        &self,
        zone: &mut crate::zone::Zone,
        previous: Option<&crate::zone::Zone>,
        now: u64,
        rule_types: &dyn Fn(u32) -> Vec<hickory_proto::rr::RecordType>,
    ) -> Result<Stats, String> {
        sign::sign_zone(
            zone,
            &sign::Signing {
                keys: &self.keys,
                window: self.window(now),
                dnskey_ttl: self.dnskey_ttl,
                cds: self.cds,
                previous,
            },
            rule_types,
        )
    }
}

/// Inception = start of the refresh period holding `now`, minus `SKEW`; expiration = inception
/// + validity. Only `now`'s period matters, so builds within one period agree.
pub fn window(now: u64, refresh: u32, validity: u32) -> Window {
    let r = u64::from(refresh.max(1));
    let start = now / r * r;
    let inception = start.saturating_sub(u64::from(SKEW)) as u32;
    Window {
        inception,
        expiration: inception.wrapping_add(validity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fixed_steps() {
        let week = 7 * DAY;
        let a = window(1_765_000_000, week, 14 * DAY);
        let b = window(1_765_000_000 + 3_600, week, 14 * DAY);
        assert_eq!(a, b);
        assert_eq!((u64::from(a.inception) + 3_600) % u64::from(week), 0);
        assert_eq!(a.expiration - a.inception, 14 * DAY);
        assert!(u64::from(a.inception) <= 1_765_000_000);
        let next = window(1_765_000_000 + u64::from(week), week, 14 * DAY);
        assert_eq!(next.inception, a.inception + week);
    }
}
