//! TSIG, secret key transaction authentication (RFC 8945): the keyring compiled from `[[key]]`,
//! the server side (verify a request, sign one reply or a stream of replies, the error replies of
//! 5.2) and the client side (sign a request, verify a reply or a stream of replies).
//!
//! ```toml
//! [[key]]                        # also accepted as [[keys]]
//! name = "xfr-key"               # a domain name (trailing dot optional)
//! algorithm = "hmac-sha256"      # hmac-sha256 | hmac-sha512 | hmac-sha384 | hmac-sha224 | hmac-sha1
//! secret = "base64=="            # BIND's base64 form
//! # or instead of algorithm + secret: file = "xfr.key" (tsig-keygen output, relative to the config)
//! ```
//!
//! The message layout and the TSIG record are hickory-proto's types (`TSIG`, `TsigAlgorithm`,
//! `TSIG::emit_tsig_for_mac` for the digested TSIG variables of RFC 8945 4.3.3) and SHA-256/384/512
//! MACs are hickory's (`TsigAlgorithm::mac_data` / `verify_mac`, ring). What hickory does not
//! cover is written here on top of those types: HMAC-SHA1 and HMAC-SHA224 (RustCrypto `hmac`),
//! the digest of a reply chained on the request MAC for bytes we encoded ourselves (4.3.1), and
//! the multi-message stream of 5.3.1 (a MAC over the previous MAC, any unsigned messages since
//! and this one, with only the timers as variables).
//!
//! Time: a request is accepted when |now - time signed| <= fudge (5.2.3); replies carry fudge
//! 300 s. No I/O here: the caller gives the time (`now`), so tests pin it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError};
use hickory_proto::rr::{RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hmac::{Hmac, Mac};
use serde::Deserialize;

/// RFC 8945 5.2.3 / 10: 300 seconds is the recommended fudge.
pub const FUDGE: u16 = 300;
const TYPE_TSIG: u16 = 250;
const CLASS_ANY: u16 = 255;
/// RFC 8945 5.2: NOTAUTH is the RCODE of every TSIG error reply.
const NOTAUTH: u16 = 9;
/// RFC 8945 5.3.1: a stream may leave up to 99 messages unsigned between two signed ones.
const MAX_UNSIGNED: usize = 99;

/// The algorithms accepted in `[[key]]` (RFC 8945 6: SHA-256 mandatory, SHA-1 for old peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "hmac-sha1")]
    HmacSha1,
    #[serde(rename = "hmac-sha224")]
    HmacSha224,
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Algorithm> {
        Some(
            match s.trim_end_matches('.').to_ascii_lowercase().as_str() {
                "hmac-sha1" => Algorithm::HmacSha1,
                "hmac-sha224" => Algorithm::HmacSha224,
                "hmac-sha256" => Algorithm::HmacSha256,
                "hmac-sha384" => Algorithm::HmacSha384,
                "hmac-sha512" => Algorithm::HmacSha512,
                _ => return None,
            },
        )
    }

    pub fn hickory(self) -> TsigAlgorithm {
        match self {
            Algorithm::HmacSha1 => TsigAlgorithm::HmacSha1,
            Algorithm::HmacSha224 => TsigAlgorithm::HmacSha224,
            Algorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
            Algorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
            Algorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }

    fn of(a: &TsigAlgorithm) -> Option<Algorithm> {
        Algorithm::parse(&a.to_name().to_ascii())
    }

    /// The full MAC length; shorter (truncated, RFC 8945 5.2.2.1) MACs are not accepted.
    fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha224 => 28,
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha384 => 48,
            Algorithm::HmacSha512 => 64,
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::HmacSha1 => hmac_sha1(key, data),
            Algorithm::HmacSha224 => hmac_sha224(key, data),
            // ring through hickory; it cannot fail for these three.
            _ => self
                .hickory()
                .mac_data(key, data)
                .expect("hickory computes HMAC-SHA256/384/512"),
        }
    }

    /// Constant-time comparison (hickory's `verify_mac` / RustCrypto's `verify_slice`).
    fn verify(self, key: &[u8], data: &[u8], tag: &[u8]) -> bool {
        match self {
            Algorithm::HmacSha1 => {
                let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.verify_slice(tag).is_ok()
            }
            Algorithm::HmacSha224 => {
                let mut m = Hmac::<sha2::Sha224>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.verify_slice(tag).is_ok()
            }
            _ => self.hickory().verify_mac(key, data, tag).is_ok(),
        }
    }
}

macro_rules! rust_crypto_hmac {
    ($name:ident, $digest:ty) => {
        fn $name(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = Hmac::<$digest>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    };
}
rust_crypto_hmac!(hmac_sha1, sha1::Sha1);
rust_crypto_hmac!(hmac_sha224, sha2::Sha224);

/// One shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// Lowercase, fully qualified (names compare case-insensitively, RFC 8945 4.2).
    pub name: Name,
    pub algorithm: Algorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Key {
    // The secret stays out of logs and debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} {:?})", self.name, self.algorithm)
    }
}

impl Key {
    pub fn new(name: &str, algorithm: Algorithm, secret: Vec<u8>) -> Result<Key, String> {
        let mut n =
            Name::from_ascii(name).map_err(|e| format!("invalid key name {name:?}: {e}"))?;
        n.set_fqdn(true);
        Ok(Key {
            name: n.to_lowercase(),
            algorithm,
            secret,
        })
    }
}

fn name_wire(n: &Name) -> Vec<u8> {
    // Uncompressed and lowercase: the canonical form RFC 8945 4.3.3 digests, and what we send.
    let mut buf = Vec::with_capacity(64);
    for label in n.to_lowercase().iter() {
        buf.push(label.len() as u8);
        buf.extend_from_slice(label);
    }
    buf.push(0);
    buf
}

/// `[[key]]` as written in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub name: toml::Spanned<String>,
    pub algorithm: Option<Algorithm>,
    #[serde(default, deserialize_with = "base64_secret")]
    pub secret: Option<Vec<u8>>,
    /// A `tsig-keygen` / `keymgr -t` file: `key "name" { algorithm ..; secret ".."; };`.
    pub file: Option<std::path::PathBuf>,
}

/// The secret in BIND's form (RFC 4648 base64, padding required); an error carries the line.
fn base64_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let s = String::deserialize(d)?;
    decode_secret(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn decode_secret(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    match base64::engine::general_purpose::STANDARD.decode(clean) {
        Ok(v) if !v.is_empty() => Ok(v),
        Ok(_) => Err("secret is empty".into()),
        Err(e) => Err(format!("secret is not base64: {e}")),
    }
}

/// Reads the `key "name" { algorithm NAME; secret "BASE64"; };` clause BIND's `tsig-keygen` and
/// Knot's `keymgr -t` (in its BIND form) write. Errors carry `file:line`.
pub fn parse_key_file(text: &str, path: &Path) -> Result<Key, String> {
    let at = |line: usize, m: &str| format!("{}:{line}: {m}", path.display());
    let mut name = None;
    let mut alg = None;
    let mut secret = None;
    // Tokens: words, quoted strings, braces and semicolons; `#` and `//` comments to line end.
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let code = line.split('#').next().unwrap_or("");
        let code = code.split("//").next().unwrap_or("");
        let mut words = Vec::new();
        let mut rest = code;
        while let Some(c) = rest.chars().next() {
            if c.is_whitespace() || c == '{' || c == '}' || c == ';' {
                rest = &rest[c.len_utf8()..];
            } else if c == '"' {
                let Some(end) = rest[1..].find('"') else {
                    return Err(at(line_no, "unterminated string"));
                };
                words.push(&rest[1..1 + end]);
                rest = &rest[end + 2..];
            } else {
                let end = rest
                    .find(|c: char| c.is_whitespace() || "{};\"".contains(c))
                    .unwrap_or(rest.len());
                words.push(&rest[..end]);
                rest = &rest[end..];
            }
        }
        let mut w = words.into_iter();
        while let Some(word) = w.next() {
            let value = w.next();
            match (word, value) {
                ("key", Some(v)) => name = Some((v.to_string(), line_no)),
                ("algorithm", Some(v)) => match Algorithm::parse(v) {
                    Some(a) => alg = Some(a),
                    None => return Err(at(line_no, &format!("unknown TSIG algorithm {v:?}"))),
                },
                ("secret", Some(v)) => {
                    secret = Some(decode_secret(v).map_err(|e| at(line_no, &e))?);
                }
                (other, _) => {
                    return Err(at(line_no, &format!("unexpected {other:?} in a key file")));
                }
            }
        }
    }
    let (Some((name, line)), Some(alg), Some(secret)) = (name, alg, secret) else {
        return Err(format!(
            "{}: not a key file: needs key \"NAME\" {{ algorithm ALG; secret \"BASE64\"; }};",
            path.display()
        ));
    };
    Key::new(&name, alg, secret).map_err(|e| at(line, &e))
}

/// The configured keys, by name.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: HashMap<Name, Arc<Key>>,
}

impl Keyring {
    /// Compiles `[[key]]`; `read` reads a key file (relative paths already joined by the caller's
    /// file system). Errors are the config's problems (`file:line: ...` for key files).
    pub fn build(
        configs: &[KeyConfig],
        read: &dyn Fn(&Path) -> Result<String, String>,
        base: &Path,
        label: &str,
    ) -> Result<Keyring, Vec<String>> {
        let mut ring = Keyring::default();
        let mut problems = Vec::new();
        for kc in configs {
            let name = kc.name.get_ref();
            let key = match (&kc.file, kc.algorithm, &kc.secret) {
                (Some(f), None, None) => {
                    let path = base.join(f);
                    read(&path).and_then(|text| {
                        let k = parse_key_file(&text, &path)?;
                        // The file's own name must be the one configured: a key is known to
                        // peers by name, so a mismatch would sign as the wrong key.
                        let want = Key::new(name, k.algorithm, Vec::new())?.name;
                        if k.name != want {
                            return Err(format!(
                                "{}: holds key {}, not {}",
                                path.display(),
                                k.name,
                                want
                            ));
                        }
                        Ok(k)
                    })
                }
                (None, Some(a), Some(s)) => {
                    Key::new(name, a, s.clone()).map_err(|e| format!("{label}: {e}"))
                }
                _ => Err(format!(
                    "{label}: key {name:?}: give algorithm and secret, or file (not both)"
                )),
            };
            match key {
                Ok(k) => {
                    if ring.keys.contains_key(&k.name) {
                        problems.push(format!("{label}: key {} is configured twice", k.name));
                    } else {
                        ring.keys.insert(k.name.clone(), Arc::new(k));
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(ring)
        } else {
            Err(problems)
        }
    }

    pub fn from_keys(keys: impl IntoIterator<Item = Key>) -> Keyring {
        Keyring {
            keys: keys
                .into_iter()
                .map(|k| (k.name.clone(), Arc::new(k)))
                .collect(),
        }
    }

    /// The key called `name` (any case, with or without the trailing dot).
    pub fn get(&self, name: &str) -> Option<&Arc<Key>> {
        let mut n = Name::from_ascii(name).ok()?;
        n.set_fqdn(true);
        self.keys.get(&n.to_lowercase())
    }

    fn get_name(&self, name: &Name) -> Option<&Arc<Key>> {
        let mut n = name.to_lowercase();
        n.set_fqdn(true);
        self.keys.get(&n)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The TSIG record that ends a message, and where it starts.
struct Located {
    start: usize,
    key_name: Name,
    tsig: TSIG,
}

/// Finds the TSIG record, which RFC 8945 5.1 puts last in ADDITIONAL. None: the message has no
/// TSIG (or cannot be read).
fn locate(msg: &[u8]) -> Option<Located> {
    let arcount = u16::from_be_bytes([*msg.get(10)?, *msg.get(11)?]);
    if arcount == 0 {
        return None;
    }
    let start = crate::wire::last_record_start(msg)?;
    let mut d = BinDecoder::new(msg);
    d.read_slice(start).ok()?;
    let record = Record::<RData>::read(&mut d).ok()?;
    if !d.is_empty() || u16::from(record.dns_class) != CLASS_ANY {
        return None;
    }
    let key_name = record.name;
    let RData::TSIG(tsig) = record.data else {
        return None;
    };
    Some(Located {
        start,
        key_name,
        tsig,
    })
}

/// The message as it was before its TSIG was added (RFC 8945 4.3.2): ARCOUNT one less and the
/// ID restored to the original ID.
fn unsigned_part(msg: &[u8], l: &Located, out: &mut Vec<u8>) {
    out.extend_from_slice(&l.tsig.oid.to_be_bytes());
    out.extend_from_slice(&msg[2..10]);
    let ar = u16::from_be_bytes([msg[10], msg[11]]) - 1;
    out.extend_from_slice(&ar.to_be_bytes());
    out.extend_from_slice(&msg[12..l.start]);
}

/// The digest of the timers only (RFC 8945 4.3.1 for later messages of a stream).
fn emit_timers(out: &mut Vec<u8>, time: u64, fudge: u16) {
    out.extend_from_slice(&((time >> 32) as u16).to_be_bytes());
    out.extend_from_slice(&(time as u32).to_be_bytes());
    out.extend_from_slice(&fudge.to_be_bytes());
}

fn emit_vars(out: &mut Vec<u8>, tsig: &TSIG, key_name: &Name) {
    // A BinEncoder writes from offset 0 of its buffer: give it one of its own.
    let mut vars = Vec::with_capacity(64);
    let mut e = BinEncoder::new(&mut vars);
    tsig.emit_tsig_for_mac(&mut e, key_name)
        .expect("TSIG variables encode");
    out.extend_from_slice(&vars);
}

fn prior(out: &mut Vec<u8>, mac: &[u8]) {
    out.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    out.extend_from_slice(mac);
}

/// Appends a TSIG record (uncompressed names) to `msg` and counts it in ARCOUNT.
fn append(msg: &mut Vec<u8>, key_name: &Name, tsig: &TSIG) {
    msg.extend_from_slice(&name_wire(key_name));
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    let len_at = msg.len();
    msg.extend_from_slice(&[0, 0]);
    msg.extend_from_slice(&name_wire(&tsig.algorithm.to_name()));
    emit_timers(msg, tsig.time, tsig.fudge);
    msg.extend_from_slice(&(tsig.mac.len() as u16).to_be_bytes());
    msg.extend_from_slice(&tsig.mac);
    msg.extend_from_slice(&tsig.oid.to_be_bytes());
    msg.extend_from_slice(&tsig.error.map_or(0, u16::from).to_be_bytes());
    msg.extend_from_slice(&(tsig.other.len() as u16).to_be_bytes());
    msg.extend_from_slice(&tsig.other);
    let len = (msg.len() - len_at - 2) as u16;
    msg[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    let ar = u16::from_be_bytes([msg[10], msg[11]]) + 1;
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Signs `msg` (a whole message without TSIG) with `key`: the digest is `prior` (the request MAC
/// for a reply, none for a request, 4.3.1/4.3.2), the message and the TSIG variables (or only the
/// timers when `timers_only`, later messages of a stream). Returns the MAC.
fn sign_with(
    msg: &mut Vec<u8>,
    key: &Key,
    prior_mac: Option<&[u8]>,
    timers_only: bool,
    now: u64,
    error: Option<TsigError>,
    other: Vec<u8>,
) -> Vec<u8> {
    let oid = u16::from_be_bytes([msg[0], msg[1]]);
    let stub = TSIG::new(
        key.algorithm.hickory(),
        now,
        FUDGE,
        Vec::new(),
        oid,
        error,
        other,
    );
    let mut tbs = Vec::with_capacity(msg.len() + 200);
    if let Some(p) = prior_mac {
        prior(&mut tbs, p);
    }
    tbs.extend_from_slice(msg);
    if timers_only {
        emit_timers(&mut tbs, now, FUDGE);
    } else {
        emit_vars(&mut tbs, &stub, &key.name);
    }
    let mac = key.algorithm.mac(&key.secret, &tbs);
    append(msg, &key.name, &stub.set_mac(mac.clone()));
    mac
}

// ---------------------------------------------------------------------------------------------
// Server side

/// A request whose TSIG verified (RFC 8945 5.2): reply with `sign_reply` / `ReplySigner`.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: Arc<Key>,
    /// The request's MAC, which the reply's digest starts with (4.3.1).
    pub mac: Vec<u8>,
    /// Where the TSIG record starts: `&request[..tsig_start]` with ARCOUNT one less is the
    /// request without it.
    pub tsig_start: usize,
}

impl Verified {
    /// The bytes the reply's TSIG record takes (RFC 8945 5.3: a UDP reply must fit the
    /// client's limit with it, so the answer is truncated that much earlier): measured by
    /// signing an empty message, as the length depends on the key name, algorithm and MAC.
    pub fn reply_overhead(&self) -> usize {
        let mut m = vec![0u8; 12];
        sign_with(
            &mut m,
            &self.key,
            Some(&self.mac),
            false,
            0,
            None,
            Vec::new(),
        );
        m.len() - 12
    }

    /// The request without its TSIG (ARCOUNT one less), to answer as an unsigned one.
    pub fn stripped(&self, request: &[u8]) -> Vec<u8> {
        let mut m = request[..self.tsig_start].to_vec();
        let ar = u16::from_be_bytes([m[10], m[11]]) - 1;
        m[10..12].copy_from_slice(&ar.to_be_bytes());
        m
    }
}

/// Why a signed request is refused (RFC 8945 5.2), with what its reply must carry.
#[derive(Debug, Clone)]
pub enum Refused {
    /// 5.2.1: unknown key or algorithm; unsigned reply, TSIG error BADKEY.
    BadKey { key_name: Name, tsig: TSIG },
    /// 5.2.2: the MAC does not verify; unsigned reply, TSIG error BADSIG.
    BadSig { key_name: Name, tsig: TSIG },
    /// 5.2.3: time signed outside the fudge; the reply is signed (with the request MAC) and
    /// carries our time in Other Data.
    BadTime { key: Arc<Key>, request_mac: Vec<u8> },
}

impl Refused {
    /// The TSIG error code (16 BADSIG, 17 BADKEY, 18 BADTIME).
    pub fn error(&self) -> u16 {
        match self {
            Refused::BadSig { .. } => 16,
            Refused::BadKey { .. } => 17,
            Refused::BadTime { .. } => 18,
        }
    }

    /// Finishes an error reply already encoded in `reply` (header + question + OPT, RCODE set to
    /// NOTAUTH by this call) with the TSIG record 5.3.2 asks for. `now` is our clock.
    pub fn finish(&self, reply: &mut Vec<u8>, now: u64) {
        set_rcode(reply, NOTAUTH);
        match self {
            Refused::BadKey { key_name, tsig } | Refused::BadSig { key_name, tsig } => {
                // Unsigned: the request's key name, algorithm, time and fudge echoed, no MAC.
                let t = TSIG::new(
                    tsig.algorithm.clone(),
                    tsig.time,
                    tsig.fudge,
                    Vec::new(),
                    u16::from_be_bytes([reply[0], reply[1]]),
                    Some(TsigError::from(self.error())),
                    Vec::new(),
                );
                append(reply, key_name, &t);
            }
            Refused::BadTime { key, request_mac } => {
                // 5.2.3: signed, and Other Data is our current time (48 bits).
                let other = now.to_be_bytes()[2..].to_vec();
                sign_with(
                    reply,
                    key,
                    Some(request_mac),
                    false,
                    now,
                    Some(TsigError::BadTime),
                    other,
                );
            }
        }
    }
}

fn set_rcode(msg: &mut [u8], rcode: u16) {
    msg[3] = (msg[3] & 0xf0) | (rcode as u8 & 0x0f);
}

/// Verifies a request's TSIG (RFC 8945 5.2: key, then MAC, then time). None: the message carries
/// no TSIG. `now` is seconds since the epoch.
pub fn verify_request(ring: &Keyring, msg: &[u8], now: u64) -> Option<Result<Verified, Refused>> {
    let l = locate(msg)?;
    let Some(key) = ring
        .get_name(&l.key_name)
        .filter(|k| Algorithm::of(&l.tsig.algorithm) == Some(k.algorithm))
    else {
        return Some(Err(Refused::BadKey {
            key_name: l.key_name,
            tsig: l.tsig,
        }));
    };
    let mut tbv = Vec::with_capacity(msg.len() + 100);
    unsigned_part(msg, &l, &mut tbv);
    emit_vars(&mut tbv, &l.tsig, &l.key_name);
    // 5.2.2.1: we do not accept truncated MACs (RFC 8945 6 lets local policy require the full
    // length), so any other length is a bad signature.
    if l.tsig.mac.len() != key.algorithm.mac_len()
        || !key.algorithm.verify(&key.secret, &tbv, &l.tsig.mac)
    {
        return Some(Err(Refused::BadSig {
            key_name: l.key_name,
            tsig: l.tsig,
        }));
    }
    if now.abs_diff(l.tsig.time) > l.tsig.fudge as u64 {
        return Some(Err(Refused::BadTime {
            key: key.clone(),
            request_mac: l.tsig.mac,
        }));
    }
    Some(Ok(Verified {
        key: key.clone(),
        mac: l.tsig.mac,
        tsig_start: l.start,
    }))
}

/// Signs the one reply to a verified request (RFC 8945 4.3.1: request MAC, reply, variables).
pub fn sign_reply(reply: &mut Vec<u8>, v: &Verified, now: u64) {
    ReplySigner::new(v).sign(reply, now);
}

/// Signs the messages of a multi-message reply (AXFR/IXFR over TCP, RFC 8945 5.3.1): the first
/// chained on the request MAC with every variable, each later one on the previous MAC with only
/// the timers. Every message is signed (the RFC allows gaps; signing all is always valid).
pub struct ReplySigner {
    key: Arc<Key>,
    prev: Vec<u8>,
    first: bool,
}

impl ReplySigner {
    pub fn new(v: &Verified) -> ReplySigner {
        ReplySigner {
            key: v.key.clone(),
            prev: v.mac.clone(),
            first: true,
        }
    }

    pub fn sign(&mut self, msg: &mut Vec<u8>, now: u64) {
        let mac = sign_with(
            msg,
            &self.key,
            Some(&self.prev),
            !self.first,
            now,
            None,
            Vec::new(),
        );
        self.prev = mac;
        self.first = false;
    }
}

// ---------------------------------------------------------------------------------------------
// Client side

/// Signs a request (RFC 8945 4.3.2: the message and every variable) and returns the verifier of
/// its reply or replies.
pub fn sign_request(msg: &mut Vec<u8>, key: &Arc<Key>, now: u64) -> ReplyVerifier {
    let mac = sign_with(msg, key, None, false, now, None, Vec::new());
    ReplyVerifier {
        key: key.clone(),
        prev: mac,
        first: true,
        pending: Vec::new(),
        unsigned: 0,
    }
}

/// Why a reply to our signed request is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// RFC 8945 5.3.1: the first message (and the last) must be signed; at most 99 unsigned
    /// in between.
    #[error("reply is not signed")]
    Unsigned,
    #[error("reply is signed with another key ({0})")]
    OtherKey(String),
    #[error("reply MAC does not verify")]
    BadMac,
    /// The server refused our request: its TSIG error (BADKEY, BADSIG, BADTIME).
    #[error("server answered TSIG error {0}")]
    Server(&'static str),
    #[error("reply signed at {signed}, outside {fudge} s of our time")]
    BadTime { signed: u64, fudge: u16 },
}

fn error_name(e: TsigError) -> &'static str {
    match e {
        TsigError::BadSig => "BADSIG",
        TsigError::BadKey => "BADKEY",
        TsigError::BadTime => "BADTIME",
        TsigError::BadTrunc => "BADTRUNC",
        TsigError::Unknown(_) => "unknown",
    }
}

/// Verifies the reply, or the stream of replies, to one signed request (RFC 8945 5.3.1, 5.4).
pub struct ReplyVerifier {
    key: Arc<Key>,
    prev: Vec<u8>,
    first: bool,
    /// Unsigned messages since the last signed one: the next MAC covers them.
    pending: Vec<u8>,
    unsigned: usize,
}

impl ReplyVerifier {
    /// Checks one message of the reply. An unsigned message in the middle of a stream is
    /// accepted (its bytes go into the next MAC); `finish` then requires the last one signed.
    pub fn verify(&mut self, msg: &[u8], now: u64) -> Result<(), ReplyError> {
        let Some(l) = locate(msg) else {
            if self.first || self.unsigned == MAX_UNSIGNED {
                return Err(ReplyError::Unsigned);
            }
            self.pending.extend_from_slice(msg);
            self.unsigned += 1;
            return Ok(());
        };
        if l.key_name.to_lowercase() != self.key.name
            || Algorithm::of(&l.tsig.algorithm) != Some(self.key.algorithm)
        {
            return Err(ReplyError::OtherKey(l.key_name.to_string()));
        }
        if let Some(e) = l.tsig.error
            && l.tsig.mac.is_empty()
        {
            // BADKEY / BADSIG replies are unsigned (5.3.2).
            return Err(ReplyError::Server(error_name(e)));
        }
        let mut tbv = Vec::with_capacity(msg.len() + self.pending.len() + 100);
        prior(&mut tbv, &self.prev);
        tbv.extend_from_slice(&self.pending);
        unsigned_part(msg, &l, &mut tbv);
        if self.first {
            emit_vars(&mut tbv, &l.tsig, &l.key_name);
        } else {
            emit_timers(&mut tbv, l.tsig.time, l.tsig.fudge);
        }
        if l.tsig.mac.len() != self.key.algorithm.mac_len()
            || !self
                .key
                .algorithm
                .verify(&self.key.secret, &tbv, &l.tsig.mac)
        {
            return Err(ReplyError::BadMac);
        }
        if let Some(e) = l.tsig.error {
            return Err(ReplyError::Server(error_name(e)));
        }
        if now.abs_diff(l.tsig.time) > l.tsig.fudge as u64 {
            return Err(ReplyError::BadTime {
                signed: l.tsig.time,
                fudge: l.tsig.fudge,
            });
        }
        self.prev = l.tsig.mac;
        self.first = false;
        self.pending.clear();
        self.unsigned = 0;
        Ok(())
    }

    /// The stream ended: its last message must have been signed (5.3.1).
    pub fn finish(&self) -> Result<(), ReplyError> {
        if self.first || self.unsigned > 0 {
            return Err(ReplyError::Unsigned);
        }
        Ok(())
    }
}

/// Seconds since the epoch, for `now`.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    //! Vectors made by real peers (tests/data/tsig/README.md has the recipe): kdig 3.x signed the
    //! requests (`kdig -y ALG:NAME:SECRET example.net SOA +tcp`) and knotd signed the replies, with
    //! the secret `gslbd-tsig-test-vector-secret-32` (base64 below).
    use super::*;

    const SECRET: &str = "Z3NsYmQtdHNpZy10ZXN0LXZlY3Rvci1zZWNyZXQtMzI=";
    /// kdig, hmac-sha256, key xfr-key, signed at 1796316008.
    const Q256: &str = "ac3f01200001000000000001076578616d706c65036e65740000060001077866722d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b119b68012c00207a7887dff6adb631bc503a753719304ad30450c558f56264cf19a9972d5da379ac3f00000000";
    /// knotd's signed reply to it.
    const R256: &str = "ac3f85000001000100000001076578616d706c65036e65740000060001c00c000600010000012c0021036e7331c00c04686f7374c00c0000000100000e1000000258000151800000012c077866722d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b119b68012c00201150f229a0eae5fa09610ea39e8b5126b7c07181d4e22c75d2bc9c30eb1ff3beac3f00000000";
    /// kdig, hmac-sha1, key old-key, signed at 1796316013, and knotd's reply.
    const Q1: &str = "232d01200001000000000001076578616d706c65036e65740000060001076f6c642d6b65790000fa00ff00000000002f09686d61632d736861310000006b119b6d012c00143db8068d1e63aebfe55a790b98899085ca81cec2232d00000000";
    const R1: &str = "232d85000001000100000001076578616d706c65036e65740000060001c00c000600010000012c0021036e7331c00c04686f7374c00c0000000100000e1000000258000151800000012c076f6c642d6b65790000fa00ff00000000002f09686d61632d736861310000006b119b6d012c0014d092b7ca0924ca9ebc40895f40dbbad8f44b844d232d00000000";
    /// kdig with another secret for xfr-key, and knotd's unsigned BADSIG reply (RFC 8945 5.2.2).
    const QBAD: &str = "241901200001000000000001076578616d706c65036e65740000060001077866722d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b119b71012c0020f653b5215d7fb761fe66ee76571dbfc5313b900e70d22fcb2943cfc0e133ac07241900000000";
    const RBAD: &str = "241981090001000000000001076578616d706c65036e65740000060001077866722d6b65790000fa00ff00000000001d0b686d61632d7368613235360000006b119b71012c0000241900100000";
    const T256: u64 = 1796316008;
    const T1: u64 = 1796316013;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ring() -> Keyring {
        let secret = decode_secret(SECRET).unwrap();
        Keyring::from_keys([
            Key::new("xfr-key", Algorithm::HmacSha256, secret.clone()).unwrap(),
            Key::new("old-key.", Algorithm::HmacSha1, secret).unwrap(),
        ])
    }

    /// The message with its last record (the TSIG) removed.
    fn strip(msg: &[u8]) -> Vec<u8> {
        let at = crate::wire::last_record_start(msg).unwrap();
        let mut m = msg[..at].to_vec();
        m[11] -= 1;
        m
    }

    #[test]
    fn rfc8945_5_2_kdig_requests_verify() {
        for (q, t) in [(Q256, T256), (Q1, T1)] {
            let q = hex(q);
            let v = verify_request(&ring(), &q, t).unwrap().unwrap();
            assert_eq!(v.stripped(&q), strip(&q));
            // The fudge (300 s) either way is still in time.
            assert!(verify_request(&ring(), &q, t + 300).unwrap().is_ok());
            assert!(verify_request(&ring(), &q, t - 300).unwrap().is_ok());
        }
        // An unsigned message is not a TSIG matter.
        assert!(verify_request(&ring(), &strip(&hex(Q256)), T256).is_none());
    }

    #[test]
    fn rfc8945_5_2_errors_in_order_key_sig_time() {
        let q = hex(Q256);
        // 5.2.1: unknown key.
        let other =
            Keyring::from_keys([Key::new("other", Algorithm::HmacSha256, vec![1; 32]).unwrap()]);
        let Some(Err(r @ Refused::BadKey { .. })) = verify_request(&other, &q, T256) else {
            panic!("unknown key is BADKEY");
        };
        assert_eq!(r.error(), 17);
        // 5.2.1: a known name with another algorithm is an unknown key too.
        let wrong_alg = Keyring::from_keys([Key::new(
            "xfr-key",
            Algorithm::HmacSha512,
            decode_secret(SECRET).unwrap(),
        )
        .unwrap()]);
        assert!(matches!(
            verify_request(&wrong_alg, &q, T256),
            Some(Err(Refused::BadKey { .. }))
        ));
        // 5.2.2: another secret.
        assert!(matches!(
            verify_request(&ring(), &hex(QBAD), T256),
            Some(Err(Refused::BadSig { .. }))
        ));
        // One flipped bit in the question.
        let mut flipped = q.clone();
        flipped[14] ^= 0x20;
        assert!(matches!(
            verify_request(&ring(), &flipped, T256),
            Some(Err(Refused::BadSig { .. }))
        ));
        // 5.2.3: outside the fudge, checked after the MAC.
        assert!(matches!(
            verify_request(&ring(), &q, T256 + 301),
            Some(Err(Refused::BadTime { .. }))
        ));
        assert!(matches!(
            verify_request(&ring(), &flipped, T256 + 301),
            Some(Err(Refused::BadSig { .. }))
        ));
    }

    #[test]
    fn rfc8945_5_3_2_badsig_reply_equals_knots() {
        let q = hex(QBAD);
        let Some(Err(refused)) = verify_request(&ring(), &q, T256) else {
            panic!("BADSIG");
        };
        // The reply as the error encoder writes it: header (QR, RD kept), question, nothing else.
        let mut reply = strip(&q);
        reply[2] |= 0x80;
        reply[3] = 0;
        reply[10..12].copy_from_slice(&[0, 0]);
        refused.finish(&mut reply, T256 + 5);
        assert_eq!(reply, hex(RBAD));
    }

    #[test]
    fn signing_a_request_gives_kdigs_bytes() {
        for (q, t, name) in [(Q256, T256, "xfr-key"), (Q1, T1, "old-key")] {
            let q = hex(q);
            let mut m = strip(&q);
            sign_request(&mut m, ring().get(name).unwrap(), t);
            assert_eq!(m, q, "{name}");
        }
    }

    #[test]
    fn signing_a_reply_gives_knots_bytes() {
        for (q, r, t) in [(Q256, R256, T256), (Q1, R1, T1)] {
            let (q, r) = (hex(q), hex(r));
            let v = verify_request(&ring(), &q, t).unwrap().unwrap();
            let mut reply = strip(&r);
            sign_reply(&mut reply, &v, t);
            assert_eq!(reply, r);
        }
    }

    #[test]
    fn knots_replies_verify_and_tampering_does_not() {
        for (q, r, t, name) in [(Q256, R256, T256, "xfr-key"), (Q1, R1, T1, "old-key")] {
            let mut m = strip(&hex(q));
            let mut v = sign_request(&mut m, ring().get(name).unwrap(), t);
            v.verify(&hex(r), t + 1).unwrap();
            v.finish().unwrap();

            let mut m = strip(&hex(q));
            let mut v = sign_request(&mut m, ring().get(name).unwrap(), t);
            let mut bad = hex(r);
            bad[50] ^= 1;
            assert_eq!(v.verify(&bad, t), Err(ReplyError::BadMac));
            let mut v = sign_request(&mut strip(&hex(q)), ring().get(name).unwrap(), t);
            assert_eq!(v.verify(&strip(&hex(r)), t), Err(ReplyError::Unsigned));
            let mut v = sign_request(&mut strip(&hex(q)), ring().get(name).unwrap(), t);
            assert!(matches!(
                v.verify(&hex(r), t + 301),
                Err(ReplyError::BadTime { .. })
            ));
        }
        let mut m = strip(&hex(QBAD));
        let mut v = sign_request(&mut m, ring().get("xfr-key").unwrap(), T256);
        assert_eq!(
            v.verify(&hex(RBAD), T256),
            Err(ReplyError::Server("BADSIG"))
        );
    }

    #[test]
    fn a_stream_chains_each_mac_on_the_previous_one() {
        // Our signer against our verifier, with an unsigned message in between (RFC 8945 5.3.1
        // allows up to 99); the live AXFRs from Knot (tests/xfr_secondary.rs) check the verifier
        // against a peer.
        let key = ring().get("xfr-key").unwrap().clone();
        let mut req = strip(&hex(Q256));
        let client = || sign_request(&mut strip(&hex(Q256)), &key, T256);
        sign_request(&mut req, &key, T256);
        let v = verify_request(&ring(), &req, T256).unwrap().unwrap();
        let mut server = ReplySigner::new(&v);
        let base = strip(&hex(R256));
        let msg = |i: u8| {
            let mut m = base.clone();
            m[1] = i;
            m
        };
        let (mut m0, mut m1, m2, mut m3) = (msg(0), msg(1), msg(2), msg(3));
        server.sign(&mut m0, T256);
        server.sign(&mut m1, T256 + 1);
        // m2 unsigned; m3's MAC covers m2 and m3 after m1's MAC, with the timers only.
        let mut tbs = Vec::new();
        prior(&mut tbs, &server.prev);
        tbs.extend_from_slice(&m2);
        tbs.extend_from_slice(&m3);
        emit_timers(&mut tbs, T256 + 2, FUDGE);
        let mac = key.algorithm.mac(&key.secret, &tbs);
        let oid = u16::from_be_bytes([m3[0], m3[1]]);
        let stub = TSIG::new(
            key.algorithm.hickory(),
            T256 + 2,
            FUDGE,
            mac,
            oid,
            None,
            vec![],
        );
        append(&mut m3, &key.name, &stub);

        let mut c = client();
        for m in [&m0, &m1, &m2, &m3] {
            c.verify(m, T256).unwrap();
        }
        c.finish().unwrap();
        // Out of order: the chain breaks.
        let mut c = client();
        c.verify(&m0, T256).unwrap();
        assert_eq!(c.verify(&m3, T256), Err(ReplyError::BadMac));
        // The first message must be signed; a stream that ends unsigned is not complete.
        assert_eq!(client().verify(&m2, T256), Err(ReplyError::Unsigned));
        let mut c = client();
        c.verify(&m0, T256).unwrap();
        c.verify(&m1, T256).unwrap();
        c.verify(&m2, T256).unwrap();
        assert_eq!(c.finish(), Err(ReplyError::Unsigned));
    }

    #[test]
    fn badtime_reply_is_signed_and_carries_our_time() {
        let q = hex(Q256);
        let now = T256 + 1000;
        let Some(Err(refused)) = verify_request(&ring(), &q, now) else {
            panic!("BADTIME");
        };
        let mut reply = strip(&q);
        reply[2] |= 0x80;
        reply[10..12].copy_from_slice(&[0, 0]);
        refused.finish(&mut reply, now);
        assert_eq!(reply[3] & 0x0f, 9, "NOTAUTH");
        let l = locate(&reply).unwrap();
        assert_eq!(l.tsig.error, Some(TsigError::BadTime));
        assert_eq!(l.tsig.other, now.to_be_bytes()[2..].to_vec());
        // The client sees the server's BADTIME through a valid MAC (5.2.3: signed).
        let mut client = sign_request(&mut strip(&q), ring().get("xfr-key").unwrap(), T256);
        assert_eq!(
            client.verify(&reply, now),
            Err(ReplyError::Server("BADTIME"))
        );
    }

    #[test]
    fn key_files_and_secrets() {
        let p = Path::new("xfr.key");
        let text =
            format!("key \"xfr-key\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET}\";\n}};\n");
        let k = parse_key_file(&text, p).unwrap();
        assert_eq!(&k, ring().get("XFR-KEY.").unwrap().as_ref());
        let e = parse_key_file("key \"k\" {\n algorithm hmac-md5;\n};\n", p).unwrap_err();
        assert_eq!(e, "xfr.key:2: unknown TSIG algorithm \"hmac-md5\"");
        let e = parse_key_file("key \"k\" {\n algorithm hmac-sha1;\n secret \"@@\";\n};", p)
            .unwrap_err();
        assert!(e.starts_with("xfr.key:3: secret is not base64"), "{e}");
        assert!(decode_secret("").is_err());
    }
}
