//! Signing keys: read from BIND's `K<zone>+<alg>+<tag>.key/.private` pairs or PKCS#8 PEM files,
//! written in BIND's format by `gslbd dnssec keygen`; DNSKEY RDATA, key tags and DS digests.
//!
//! The crypto is ring's (ECDSA P-256 with SHA-256, RFC 6605; Ed25519, RFC 8080): nothing here
//! computes a signature or a digest by hand. The key tag is RFC 4034 Appendix B's checksum.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;

use crate::zone::reader::ZoneFs;
use ring::signature::{self, KeyPair as _};

/// DNSSEC algorithm numbers this server signs with (RFC 8624 3.1: both MUST/RECOMMENDED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// 13: ECDSA P-256 with SHA-256 (RFC 6605).
    EcdsaP256Sha256,
    /// 15: Ed25519 (RFC 8080).
    Ed25519,
}

impl Algorithm {
    pub fn number(self) -> u8 {
        match self {
            Algorithm::EcdsaP256Sha256 => 13,
            Algorithm::Ed25519 => 15,
        }
    }

    pub fn from_number(n: u8) -> Result<Algorithm, String> {
        match n {
            13 => Ok(Algorithm::EcdsaP256Sha256),
            15 => Ok(Algorithm::Ed25519),
            other => Err(format!(
                "algorithm {other} is not supported (13 ECDSAP256SHA256 and 15 ED25519 are)"
            )),
        }
    }

    /// BIND's mnemonic, as written in `.private` files.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256Sha256 => "ECDSAP256SHA256",
            Algorithm::Ed25519 => "ED25519",
        }
    }
}

/// What a key signs (RFC 6781 3.1): a KSK the DNSKEY RRset (and CDS/CDNSKEY, RFC 7344 4.1), a
/// ZSK everything else, a CSK both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ksk,
    Zsk,
    Csk,
}

impl Role {
    /// DNSKEY flags: ZONE (256) always, SEP (1) for keys the parent's DS points at.
    pub fn flags(self) -> u16 {
        match self {
            Role::Zsk => 256,
            Role::Ksk | Role::Csk => 257,
        }
    }
}

enum Signer {
    Ecdsa(signature::EcdsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
}

/// A loaded signing key.
pub struct Key {
    /// The zone the key belongs to (lowercase, absolute, as text), from the `.key` file's owner.
    /// PEM files carry no owner: None.
    pub zone: Option<String>,
    pub algorithm: Algorithm,
    pub role: Role,
    /// The public key as DNSKEY carries it (RFC 6605 4: x | y; RFC 8080 3: the 32 bytes).
    pub public: Vec<u8>,
    pub file: PathBuf,
    signer: Signer,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("zone", &self.zone)
            .field("algorithm", &self.algorithm)
            .field("role", &self.role)
            .field("tag", &self.tag())
            .field("file", &self.file)
            .finish()
    }
}

impl Key {
    /// DNSKEY RDATA (RFC 4034 2.1): flags, protocol 3, algorithm, public key.
    pub fn dnskey_rdata(&self) -> Vec<u8> {
        dnskey_rdata(self.role.flags(), self.algorithm, &self.public)
    }

    pub fn tag(&self) -> u16 {
        key_tag(&self.dnskey_rdata())
    }

    /// Signs `data` (RFC 4034 3.1.8.1's signed data). ECDSA signatures are r | s, 64 bytes
    /// (RFC 6605 4); ring's ECDSA is randomized, so two signatures of the same data differ.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        match &self.signer {
            Signer::Ecdsa(k) => k
                .sign(&SystemRandom::new(), data)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "ECDSA signing failed".to_string()),
            Signer::Ed25519(k) => Ok(k.sign(data).as_ref().to_vec()),
        }
    }

    /// The DNSKEY record in presentation form, owner `zone`.
    pub fn dnskey_text(&self, zone: &str, ttl: Option<u32>) -> String {
        let ttl = ttl.map(|t| format!("{t} ")).unwrap_or_default();
        format!(
            "{zone} {ttl}IN DNSKEY {} 3 {} {}",
            self.role.flags(),
            self.algorithm.number(),
            B64.encode(&self.public)
        )
    }
}

pub fn dnskey_rdata(flags: u16, alg: Algorithm, public: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + public.len());
    v.extend_from_slice(&flags.to_be_bytes());
    v.push(3);
    v.push(alg.number());
    v.extend_from_slice(public);
    v
}

/// RFC 4034 Appendix B (every algorithm but the retired 1).
pub fn key_tag(dnskey_rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in dnskey_rdata.iter().enumerate() {
        ac += if i & 1 == 1 {
            u32::from(*b)
        } else {
            u32::from(*b) << 8
        };
    }
    ac += (ac >> 16) & 0xffff;
    (ac & 0xffff) as u16
}

/// DS RDATA (RFC 4034 5.1.4, digest type 2 = SHA-256 per RFC 4509, 4 = SHA-384 per RFC 6605):
/// key tag, algorithm, digest type, digest(owner | DNSKEY RDATA). `owner_wire` is the zone's
/// name in canonical (lowercase) wire form.
pub fn ds_rdata(owner_wire: &[u8], dnskey: &[u8], digest: u8) -> Result<Vec<u8>, String> {
    let alg = match digest {
        2 => &ring::digest::SHA256,
        4 => &ring::digest::SHA384,
        other => {
            return Err(format!(
                "digest type {other} is not supported (2 and 4 are)"
            ));
        }
    };
    let mut ctx = ring::digest::Context::new(alg);
    ctx.update(owner_wire);
    ctx.update(dnskey);
    let d = ctx.finish();
    let mut v = Vec::with_capacity(4 + d.as_ref().len());
    v.extend_from_slice(&key_tag(dnskey).to_be_bytes());
    v.push(dnskey[3]);
    v.push(digest);
    v.extend_from_slice(d.as_ref());
    Ok(v)
}

/// DS in presentation form, as `dnssec-dsfromkey` prints it.
pub fn ds_text(zone: &str, owner_wire: &[u8], dnskey: &[u8], digest: u8) -> Result<String, String> {
    let ds = ds_rdata(owner_wire, dnskey, digest)?;
    let hex: String = ds[4..].iter().map(|b| format!("{b:02X}")).collect();
    Ok(format!(
        "{zone} IN DS {} {} {} {hex}",
        u16::from_be_bytes([ds[0], ds[1]]),
        ds[2],
        ds[3]
    ))
}

/// The two files of a BIND key, from any of: the `.key` path, the `.private` path, or the
/// common stem `K<zone>+<alg>+<tag>`.
fn bind_pair(path: &Path) -> (PathBuf, PathBuf) {
    let s = path.to_string_lossy();
    let stem = s
        .strip_suffix(".private")
        .or_else(|| s.strip_suffix(".key"))
        .unwrap_or(&s);
    (
        PathBuf::from(format!("{stem}.key")),
        PathBuf::from(format!("{stem}.private")),
    )
}

fn read(fs: &dyn ZoneFs, path: &Path) -> Result<String, String> {
    fs.read(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Loads a key: a PEM file (PKCS#8, `role` required since PEM carries no flags) or a BIND pair.
/// Errors name the file and the reason. Files are read through `fs` (the build's bounded reads).
pub fn load(fs: &dyn ZoneFs, path: &Path, role: Option<Role>) -> Result<Key, String> {
    if path.extension().is_some_and(|e| e == "pem") {
        let text = read(fs, path)?;
        return from_pem(&text, role.unwrap_or(Role::Csk), path)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    let (key_path, private_path) = bind_pair(path);
    let key_text = read(fs, &key_path)?;
    let private_text = read(fs, &private_path)?;
    let (zone, flags, alg, public) =
        parse_dnskey_file(&key_text).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let mut key = from_bind_private(&private_text, alg, &public, &private_path)
        .map_err(|e| format!("{}: {e}", private_path.display()))?;
    key.zone = Some(zone);
    key.role = match (role, flags) {
        (Some(r), _) => r,
        (None, 257) => Role::Csk,
        (None, 256) => Role::Zsk,
        (None, f) => {
            return Err(format!(
                "{}: DNSKEY flags {f}: a zone signing key has 256 or 257 (RFC 4034 2.1.1)",
                key_path.display()
            ));
        }
    };
    key.file = private_path;
    Ok(key)
}

/// The DNSKEY of a BIND `.key` file: (owner lowercased, flags, algorithm, public key).
fn parse_dnskey_file(text: &str) -> Result<(String, u16, Algorithm, Vec<u8>), String> {
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = fields.iter().position(|f| f.eq_ignore_ascii_case("DNSKEY")) else {
            return Err(format!("not a DNSKEY record: {line}"));
        };
        let owner = fields[0].to_ascii_lowercase();
        let owner = if owner.ends_with('.') {
            owner
        } else {
            format!("{owner}.")
        };
        let rest = &fields[at + 1..];
        if rest.len() < 4 {
            return Err("DNSKEY record with fewer than 4 fields".into());
        }
        let flags: u16 = rest[0]
            .parse()
            .map_err(|_| format!("DNSKEY flags \"{}\" is not a number", rest[0]))?;
        if rest[1] != "3" {
            return Err(format!(
                "DNSKEY protocol {} is not 3 (RFC 4034 2.1.2)",
                rest[1]
            ));
        }
        let n: u8 = rest[2]
            .parse()
            .map_err(|_| format!("DNSKEY algorithm \"{}\" is not a number", rest[2]))?;
        let alg = Algorithm::from_number(n)?;
        let public = B64
            .decode(rest[3..].concat())
            .map_err(|e| format!("DNSKEY public key: {e}"))?;
        return Ok((owner, flags, alg, public));
    }
    Err("no DNSKEY record in the file".into())
}

/// A BIND `.private` file (`Private-key-format: v1.x`, `Algorithm:`, `PrivateKey:`).
fn from_bind_private(
    text: &str,
    alg: Algorithm,
    public: &[u8],
    file: &Path,
) -> Result<Key, String> {
    let mut format = None;
    let mut algorithm = None;
    let mut private = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "Private-key-format" => format = Some(v.to_string()),
            "Algorithm" => {
                let n = v.split_whitespace().next().unwrap_or("");
                algorithm = Some(
                    n.parse::<u8>()
                        .map_err(|_| format!("Algorithm \"{v}\" is not a number"))?,
                );
            }
            "PrivateKey" => {
                private = Some(B64.decode(v).map_err(|e| format!("PrivateKey: {e}"))?);
            }
            _ => {}
        }
    }
    if !format.as_deref().is_some_and(|f| f.starts_with("v1.")) {
        return Err("not a BIND private key file (no \"Private-key-format: v1.x\")".into());
    }
    let n = algorithm.ok_or("no Algorithm line")?;
    let file_alg = Algorithm::from_number(n)?;
    if file_alg != alg {
        return Err(format!(
            "algorithm {n} differs from the .key file's {}",
            alg.number()
        ));
    }
    let private = private.ok_or("no PrivateKey line")?;
    from_parts(alg, &private, public, file)
}

/// A key from its private scalar (ECDSA, 32 bytes) or seed (Ed25519, 32 bytes) and the public
/// key DNSKEY carries; the two must belong together.
fn from_parts(alg: Algorithm, private: &[u8], public: &[u8], file: &Path) -> Result<Key, String> {
    let signer = match alg {
        Algorithm::EcdsaP256Sha256 => {
            if private.len() != 32 || public.len() != 64 {
                return Err(
                    "an ECDSA P-256 key has a 32-byte private key and a 64-byte public key".into(),
                );
            }
            let mut uncompressed = Vec::with_capacity(65);
            uncompressed.push(4);
            uncompressed.extend_from_slice(public);
            Signer::Ecdsa(
                signature::EcdsaKeyPair::from_private_key_and_public_key(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    private,
                    &uncompressed,
                    &SystemRandom::new(),
                )
                .map_err(|e| format!("the private key does not match the public key ({e})"))?,
            )
        }
        Algorithm::Ed25519 => Signer::Ed25519(
            signature::Ed25519KeyPair::from_seed_and_public_key(private, public)
                .map_err(|e| format!("the private key does not match the public key ({e})"))?,
        ),
    };
    Ok(Key {
        zone: None,
        algorithm: alg,
        role: Role::Csk,
        public: public.to_vec(),
        file: file.to_path_buf(),
        signer,
    })
}

/// A PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`): an EC P-256 or Ed25519 key.
fn from_pem(text: &str, role: Role, file: &Path) -> Result<Key, String> {
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        return Err("no \"-----BEGIN PRIVATE KEY-----\" block (PKCS#8 PEM)".into());
    }
    let der = B64.decode(body).map_err(|e| format!("PEM body: {e}"))?;
    let (alg, signer, public) = if let Ok(k) = signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der,
        &SystemRandom::new(),
    ) {
        // Uncompressed point 04 | x | y; DNSKEY carries x | y (RFC 6605 4).
        let public = k.public_key().as_ref()[1..].to_vec();
        (Algorithm::EcdsaP256Sha256, Signer::Ecdsa(k), public)
    } else {
        match signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            Ok(k) => {
                let public = k.public_key().as_ref().to_vec();
                (Algorithm::Ed25519, Signer::Ed25519(k), public)
            }
            Err(_) => {
                return Err(
                    "not an ECDSA P-256 or Ed25519 PKCS#8 key (algorithms 13 and 15 are supported)"
                        .into(),
                );
            }
        }
    };
    Ok(Key {
        zone: None,
        algorithm: alg,
        role,
        public,
        file: file.to_path_buf(),
        signer,
    })
}

/// A new key pair: (private scalar or seed, public key as DNSKEY carries it).
pub fn generate(alg: Algorithm) -> Result<(Vec<u8>, Vec<u8>), String> {
    let rng = SystemRandom::new();
    match alg {
        Algorithm::EcdsaP256Sha256 => {
            let doc = signature::EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &rng,
            )
            .map_err(|_| "key generation failed".to_string())?;
            let der = doc.as_ref();
            // ring's PKCS#8 wraps an RFC 5915 ECPrivateKey: version INTEGER 1 (02 01 01), then
            // the private key OCTET STRING of 32 bytes (04 20).
            let at = der
                .windows(5)
                .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
                .ok_or("unexpected PKCS#8 layout")?
                + 5;
            let private = der[at..at + 32].to_vec();
            let pair = signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
                &rng,
            )
            .map_err(|e| format!("generated key rejected: {e}"))?;
            Ok((private, pair.public_key().as_ref()[1..].to_vec()))
        }
        Algorithm::Ed25519 => {
            let mut seed = [0u8; 32];
            ring::rand::SecureRandom::fill(&rng, &mut seed)
                .map_err(|_| "no randomness".to_string())?;
            let pair = signature::Ed25519KeyPair::from_seed_unchecked(&seed)
                .map_err(|e| format!("generated key rejected: {e}"))?;
            Ok((seed.to_vec(), pair.public_key().as_ref().to_vec()))
        }
    }
}

/// Writes `K<zone>+<alg>+<tag>.key` and `.private` (BIND's v1.3 format, the private file mode
/// 0600) into `dir`; returns the stem path and the DNSKEY line.
pub fn write_bind_pair(
    dir: &Path,
    zone: &str,
    alg: Algorithm,
    role: Role,
    private: &[u8],
    public: &[u8],
) -> Result<(PathBuf, String), String> {
    let rdata = dnskey_rdata(role.flags(), alg, public);
    let tag = key_tag(&rdata);
    let stem = dir.join(format!("K{zone}+{:03}+{tag:05}", alg.number()));
    let kind = match role {
        Role::Zsk => "zone-signing",
        Role::Ksk => "key-signing",
        Role::Csk => "combined signing",
    };
    let dnskey = format!(
        "{zone} IN DNSKEY {} 3 {} {}",
        role.flags(),
        alg.number(),
        B64.encode(public)
    );
    let key_text = format!("; This is a {kind} key, keyid {tag}, for {zone}\n{dnskey}\n");
    let private_text = format!(
        "Private-key-format: v1.3\nAlgorithm: {} ({})\nPrivateKey: {}\n",
        alg.number(),
        alg.mnemonic(),
        B64.encode(private)
    );
    let key_path = PathBuf::from(format!("{}.key", stem.display()));
    let private_path = PathBuf::from(format!("{}.private", stem.display()));
    std::fs::write(&key_path, key_text).map_err(|e| format!("{}: {e}", key_path.display()))?;
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&private_path)
            .map_err(|e| format!("{}: {e}", private_path.display()))?;
        f.write_all(private_text.as_bytes())
            .map_err(|e| format!("{}: {e}", private_path.display()))?;
    }
    Ok((stem, dnskey))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_tag_of_rfc4034_example() {
        // RFC 4034 5.4: the DNSKEY of dskey.example.com. has key tag 60485.
        let public = B64
            .decode(
                "AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==",
            )
            .unwrap();
        let mut rdata = vec![1, 0, 3, 5];
        rdata.extend_from_slice(&public);
        assert_eq!(key_tag(&rdata), 60485);
    }

    #[test]
    fn pkcs8_pem_keys_load_with_their_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let rng = SystemRandom::new();
        let ecdsa = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let ed = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        for (der, alg) in [
            (ecdsa.as_ref(), Algorithm::EcdsaP256Sha256),
            (ed.as_ref(), Algorithm::Ed25519),
        ] {
            let path = dir.path().join(format!("k{}.pem", alg.number()));
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                B64.encode(der)
            );
            std::fs::write(&path, pem).unwrap();
            let k = load(&crate::zone::reader::DiskFs, &path, Some(Role::Ksk)).unwrap();
            assert_eq!(k.algorithm, alg);
            assert_eq!(k.role, Role::Ksk);
            assert_eq!(k.zone, None);
        }
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let e = load(&crate::zone::reader::DiskFs, &bad, None).unwrap_err();
        assert!(e.contains("bad.pem") && e.contains("PKCS#8"), "{e}");
    }

    #[test]
    fn generated_keys_round_trip_through_bind_files() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let (private, public) = generate(alg).unwrap();
            let (stem, _) = write_bind_pair(
                dir.path(),
                "example.com.",
                alg,
                Role::Ksk,
                &private,
                &public,
            )
            .unwrap();
            let k = load(&crate::zone::reader::DiskFs, &stem, None).unwrap();
            assert_eq!(k.public, public);
            assert_eq!(k.role, Role::Csk);
            assert_eq!(k.zone.as_deref(), Some("example.com."));
            assert_eq!(k.sign(b"x").unwrap().len(), 64);
        }
    }
}
