//! DNS cookies (RFC 7873) with the interoperable server cookie of RFC 9018: a client that shows a
//! server cookie we made for its address is not spoofing it, so it is exempt from response rate
//! limiting (`rrl`), and a spoofed query cannot get one.
//!
//! Server cookie (RFC 9018 4): version 1 | 3 reserved octets | timestamp (seconds, serial number
//! arithmetic) | SipHash-2-4 over client cookie | version | reserved | timestamp | client IP, keyed
//! by a 128-bit secret. Given the same secret, NSD, Knot, BIND and gslbd make and accept the same
//! cookies, so a fleet behind one address shares a secret; a `staging_secret` is accepted too,
//! so secrets roll without a flag day (configure the new one as staging everywhere, then swap).
//! No I/O.

use std::hash::Hasher;
use std::net::IpAddr;

use serde::Deserialize;
use siphasher::sip::SipHasher24;

/// `[cookies]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieConfig {
    /// Answer COOKIE options (as BIND's `answer-cookie`); false ignores them (RFC 7873 5.2.1).
    pub enabled: bool,
    /// The server secret, 32 hex digits (NSD `cookie-secret`, Knot mod-cookies `secret`). None:
    /// a random one made at start, which is fine for one server and wrong for a fleet behind one
    /// address.
    pub secret: Option<String>,
    /// A second secret whose cookies are also accepted (and replaced by the primary's).
    pub staging_secret: Option<String>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            enabled: true,
            secret: None,
            staging_secret: None,
        }
    }
}

/// `[cookies]` compiled.
#[derive(Clone)]
pub struct CookieSettings {
    pub enabled: bool,
    primary: [u8; 16],
    staging: Option<[u8; 16]>,
}

impl std::fmt::Debug for CookieSettings {
    // The secrets stay out of logs and `check` output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSettings")
            .field("enabled", &self.enabled)
            .field("staging", &self.staging.is_some())
            .finish_non_exhaustive()
    }
}

/// The secret of a configuration that names none: one per process, so that reloads keep it.
fn process_secret() -> [u8; 16] {
    static SECRET: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    *SECRET.get_or_init(rand::random)
}

fn parse_secret(field: &str, hex: &str) -> Result<[u8; 16], String> {
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .map_err(|_| format!("[cookies] {field}: not hex digits"))?;
    bytes
        .try_into()
        .map_err(|_| format!("[cookies] {field}: 32 hex digits (128 bits, RFC 9018 4.1)"))
}

impl CookieSettings {
    pub fn compile(c: &CookieConfig) -> Result<CookieSettings, Vec<String>> {
        let primary = c
            .secret
            .as_deref()
            .map(|s| parse_secret("secret", s))
            .transpose();
        let staging = c
            .staging_secret
            .as_deref()
            .map(|s| parse_secret("staging_secret", s))
            .transpose();
        match (primary, staging) {
            (Ok(p), Ok(staging)) => Ok(CookieSettings {
                enabled: c.enabled,
                primary: p.unwrap_or_else(process_secret),
                staging,
            }),
            (p, s) => Err([p.err(), s.err()].into_iter().flatten().collect()),
        }
    }
}

/// What a query's COOKIE option was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No option (or cookies are off).
    None,
    /// A client cookie alone (RFC 7873 5.2.3).
    ClientOnly,
    /// A server cookie we did not make for this client, or too old (5.2.4).
    Invalid,
    /// A server cookie of ours for this client (5.2.5).
    Valid,
}

/// The outcome for one query: its status, and the COOKIE option to answer with (client cookie
/// and server cookie, 24 octets).
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub status: Status,
    pub reply: Option<[u8; 24]>,
}

impl Outcome {
    pub const NONE: Outcome = Outcome {
        status: Status::None,
        reply: None,
    };
}

/// A server cookie is good for an hour and may come from a clock up to five minutes ahead (RFC
/// 9018 4.3); one older than half an hour is replaced in the answer.
const LIFETIME: i64 = 3600;
const SKEW: i64 = 300;
const RENEW: i64 = 1800;

/// The 8-octet hash of RFC 9018 4.4 over the cookie as sent (`head` = version, reserved and
/// timestamp octets: reserved octets a client changed are hashed as they came, Appendix A.3).
fn hash(secret: &[u8; 16], client: &[u8], head: &[u8], ip: IpAddr) -> [u8; 8] {
    let mut h = SipHasher24::new_with_key(secret);
    h.write(client);
    h.write(head);
    match ip {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
    // SipHash's 64-bit result is its state read as a little-endian word (the reference
    // implementation writes it out that way; the Appendix A vectors hold us to it).
    h.finish().to_le_bytes()
}

/// A fresh server cookie for `client` at time `now` (seconds since the epoch, mod 2^32).
pub fn server_cookie(secret: &[u8; 16], client: &[u8], ip: IpAddr, now: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 1;
    c[4..8].copy_from_slice(&now.to_be_bytes());
    let h = hash(secret, client, &c[..8], ip);
    c[8..].copy_from_slice(&h);
    c
}

/// The address a cookie is made for: IPv4 clients on a dual-stack socket as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Judges the COOKIE option `opt` (8 to 40 octets, lengths already checked by the parser) from
/// `ip` at `now`.
pub fn check(s: &CookieSettings, opt: &[u8], ip: IpAddr, now: u32) -> Outcome {
    if !s.enabled || opt.len() < 8 {
        return Outcome::NONE;
    }
    let ip = canonical(ip);
    let client = &opt[..8];
    let mut reply = [0u8; 24];
    reply[..8].copy_from_slice(client);
    let server = &opt[8..];
    let status = if server.is_empty() {
        Status::ClientOnly
    } else if server.len() == 16 && server[0] == 1 {
        let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        // Serial number arithmetic (RFC 1982): the age across the 2^32 wrap.
        let age = i64::from(now.wrapping_sub(stamp) as i32);
        let ours = |secret: &[u8; 16]| hash(secret, client, &server[..8], ip) == server[8..];
        if !(-SKEW..=LIFETIME).contains(&age) {
            Status::Invalid
        } else if ours(&s.primary) {
            if age <= RENEW {
                reply[8..].copy_from_slice(server);
                return Outcome {
                    status: Status::Valid,
                    reply: Some(reply),
                };
            }
            Status::Valid
        } else if s.staging.as_ref().is_some_and(ours) {
            // Valid, and renewed under the primary secret so the client moves over.
            Status::Valid
        } else {
            Status::Invalid
        }
    } else {
        // Another server's format (or version): not ours to judge valid.
        Status::Invalid
    };
    reply[8..].copy_from_slice(&server_cookie(&s.primary, client, ip, now));
    Outcome {
        status,
        reply: Some(reply),
    }
}

/// Seconds since the epoch, mod 2^32, as RFC 9018's timestamp counts them.
pub fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .unwrap()
    }

    fn settings(secret: &str, staging: Option<&str>) -> CookieSettings {
        CookieSettings::compile(&CookieConfig {
            enabled: true,
            secret: Some(secret.into()),
            staging_secret: staging.map(Into::into),
        })
        .unwrap()
    }

    /// RFC 9018 Appendix A, every example.
    #[test]
    fn rfc9018_appendix_a() {
        let s = settings("e5e973e5a6b2a43f48e7dc849e37bfcf", None);
        let v4: IpAddr = "198.51.100.100".parse().unwrap();
        // A.1: a client cookie alone gets a fresh server cookie.
        let o = check(&s, &hex("2464c4abcf10c957"), v4, 1559731985);
        assert_eq!(o.status, Status::ClientOnly);
        assert_eq!(
            o.reply.unwrap().to_vec(),
            hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480")
        );
        // A.2: 40 minutes later the cookie is valid, and renewed (older than half an hour).
        let o = check(
            &s,
            &hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480"),
            v4,
            1559734385,
        );
        assert_eq!(o.status, Status::Valid);
        assert_eq!(
            o.reply.unwrap().to_vec(),
            hex("2464c4abcf10c957010000005cf7a871d4a564a1442aca77")
        );
        // A.3: another client, whose cookie's reserved octets were set by its server; the hash
        // covers them as sent. It is 1h52m old at the reply: expired here (one hour, 4.3), so a
        // fresh one is made, the one the example shows.
        let c3: IpAddr = "203.0.113.203".parse().unwrap();
        let sent = hex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5");
        assert_eq!(
            hash(
                &parse_secret("s", "e5e973e5a6b2a43f48e7dc849e37bfcf").unwrap(),
                &sent[..8],
                &sent[8..16],
                c3
            )
            .to_vec(),
            sent[16..].to_vec(),
            "the hash over the reserved octets as sent"
        );
        let o = check(&s, &sent, c3, 1559734700);
        assert_eq!(o.status, Status::Invalid);
        assert_eq!(
            o.reply.unwrap().to_vec(),
            hex("fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e")
        );
        // A.4: an IPv6 client whose cookie the old secret made, after the secrets rolled: valid
        // under the staging secret, renewed under the new primary.
        let v6: IpAddr = "2001:db8:220:1:59de:d0f4:8769:82b8".parse().unwrap();
        let sent = hex("22681ab97d52c298010000005cf7c57926556bd0934c72f8");
        let rolled = settings(
            "445536bcd2513298075a5d379663c962",
            Some("dd3bdf9344b678b185a6f5cb60fca715"),
        );
        let o = check(&rolled, &sent, v6, 1559741961);
        assert_eq!(o.status, Status::Valid);
        assert_eq!(
            o.reply.unwrap().to_vec(),
            hex("22681ab97d52c298010000005cf7c609a6bb79d16625507a"),
        );
        // Without the old secret it is not ours.
        let o = check(
            &settings("445536bcd2513298075a5d379663c962", None),
            &sent,
            v6,
            1559741961,
        );
        assert_eq!(o.status, Status::Invalid);
    }

    #[test]
    fn a_young_cookie_is_echoed_and_others_are_not_ours() {
        let s = settings("000102030405060708090a0b0c0d0e0f", None);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let first = check(&s, b"abcdefgh", ip, 1_000_000).reply.unwrap();
        // Ten minutes later: valid and sent back unchanged.
        let o = check(&s, &first, ip, 1_000_600);
        assert_eq!((o.status, o.reply.unwrap()), (Status::Valid, first));
        // From another address, with another client cookie, expired, from the future: invalid.
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(check(&s, &first, other, 1_000_600).status, Status::Invalid);
        let mut changed = first;
        changed[0] ^= 1;
        assert_eq!(check(&s, &changed, ip, 1_000_600).status, Status::Invalid);
        assert_eq!(check(&s, &first, ip, 1_003_601).status, Status::Invalid);
        assert_eq!(check(&s, &first, ip, 999_699).status, Status::Invalid);
        assert_eq!(check(&s, &first, ip, 999_700).status, Status::Valid);
        // An IPv4 client seen through a dual-stack socket is the same client.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(check(&s, &first, mapped, 1_000_600).status, Status::Valid);
        // Off: nothing is answered.
        let off = CookieSettings {
            enabled: false,
            ..s
        };
        assert_eq!(check(&off, &first, ip, 1_000_600).status, Status::None);
    }

    #[test]
    fn secrets_are_checked() {
        let bad = |secret: &str| {
            CookieSettings::compile(&CookieConfig {
                secret: Some(secret.into()),
                ..Default::default()
            })
            .unwrap_err()
        };
        assert!(bad("00ff")[0].contains("32 hex digits"));
        assert!(bad("zz")[0].contains("not hex"));
    }
}
