//! Presentation-format parsers for the record types beyond RFC 1035's, each producing the
//! record's RDATA in wire form (names uncompressed, case kept: RFC 3597 section 4 forbids
//! compressing names in these types, and RFC 6840 section 5.1 forbids changing their case).
//!
//! The reader (`reader.rs`) hands over the RDATA tokens of one record; what is built here is
//! stored as opaque bytes (`RData::Unknown { code, .. }`), so every type behaves the same way:
//! served exactly as written, shown by hickory's formatter where it knows the type and in the
//! RFC 3597 generic form where it does not.
//!
//! The formats, as NSD and Knot read them:
//!
//! * DNSSEC: DS, CDS (RFC 4034 5.3, RFC 7344), DNSKEY, CDNSKEY (RFC 4034 2.2), RRSIG (RFC 4034
//!   3.2, times as `YYYYMMDDHHmmSS` or integer seconds), NSEC (RFC 4034 4.2, type bitmap 4.1.2),
//!   NSEC3 and NSEC3PARAM (RFC 5155 3.3 and 4.3, salt `-` for none, next owner in base32hex),
//!   algorithm mnemonics (RFC 4034 A.1, RFC 8624), `TYPEnnn` in bitmaps (RFC 3597 5);
//! * hex fields (digests, fingerprints, salts) and base64 fields (keys, signatures) that end the
//!   RDATA may be split over several tokens, inside parentheses over several lines;
//! * URI (RFC 7553), RP and AFSDB (RFC 1183), LOC (RFC 1876, with its defaults 1m 10000m 10m),
//!   ZONEMD (RFC 8976), SPF (RFC 7208 3.1, as TXT), EUI48/EUI64 (RFC 7043), APL (RFC 3123),
//!   KX (RFC 2230), DHCID (RFC 4701), IPSECKEY (RFC 4025), L32/L64/NID/LP (RFC 6742), CSYNC
//!   (RFC 7477), OPENPGPKEY (RFC 7929), SMIMEA (RFC 8162), TLSA (RFC 6698), SSHFP (RFC 4255),
//!   HIP (RFC 8005), CERT (RFC 4398, type and algorithm mnemonics), HINFO (RFC 1035 3.3.2),
//!   NAPTR (RFC 3403);
//! * SVCB and HTTPS (RFC 9460, `dohpath` from RFC 9461, `ohttp` from RFC 9540).
//!
//! Errors say what is wrong with which field (`invalid DS digest: odd number of hex digits`);
//! the reader adds file and line.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use data_encoding::{BASE32HEX_NOPAD, BASE64, DecodeKind, HEXUPPER_PERMISSIVE};
use hickory_proto::rr::Name;

use super::reader::{LineErr, Rd, Tok, decode_string, type_name};

/// Type mnemonics (IANA's DNS parameters registry): for zone files, bitmaps and display.
const TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("MD", 3),
    ("MF", 4),
    ("CNAME", 5),
    ("SOA", 6),
    ("MB", 7),
    ("MG", 8),
    ("MR", 9),
    ("NULL", 10),
    ("WKS", 11),
    ("PTR", 12),
    ("HINFO", 13),
    ("MINFO", 14),
    ("MX", 15),
    ("TXT", 16),
    ("RP", 17),
    ("AFSDB", 18),
    ("X25", 19),
    ("ISDN", 20),
    ("RT", 21),
    ("NSAP", 22),
    ("NSAP-PTR", 23),
    ("SIG", 24),
    ("KEY", 25),
    ("PX", 26),
    ("GPOS", 27),
    ("AAAA", 28),
    ("LOC", 29),
    ("NXT", 30),
    ("EID", 31),
    ("NIMLOC", 32),
    ("SRV", 33),
    ("ATMA", 34),
    ("NAPTR", 35),
    ("KX", 36),
    ("CERT", 37),
    ("A6", 38),
    ("DNAME", 39),
    ("SINK", 40),
    ("OPT", 41),
    ("APL", 42),
    ("DS", 43),
    ("SSHFP", 44),
    ("IPSECKEY", 45),
    ("RRSIG", 46),
    ("NSEC", 47),
    ("DNSKEY", 48),
    ("DHCID", 49),
    ("NSEC3", 50),
    ("NSEC3PARAM", 51),
    ("TLSA", 52),
    ("SMIMEA", 53),
    ("HIP", 55),
    ("NINFO", 56),
    ("RKEY", 57),
    ("TALINK", 58),
    ("CDS", 59),
    ("CDNSKEY", 60),
    ("OPENPGPKEY", 61),
    ("CSYNC", 62),
    ("ZONEMD", 63),
    ("SVCB", 64),
    ("HTTPS", 65),
    ("DSYNC", 66),
    ("SPF", 99),
    ("UINFO", 100),
    ("UID", 101),
    ("GID", 102),
    ("UNSPEC", 103),
    ("NID", 104),
    ("L32", 105),
    ("L64", 106),
    ("LP", 107),
    ("EUI48", 108),
    ("EUI64", 109),
    ("TKEY", 249),
    ("TSIG", 250),
    ("IXFR", 251),
    ("AXFR", 252),
    ("MAILB", 253),
    ("MAILA", 254),
    ("ANY", 255),
    ("URI", 256),
    ("CAA", 257),
    ("AVC", 258),
    ("DOA", 259),
    ("AMTRELAY", 260),
    ("TA", 32768),
    ("DLV", 32769),
];

/// The mnemonic of type `code`, if it has one.
pub fn mnemonic(code: u16) -> Option<&'static str> {
    TYPES.iter().find(|(_, c)| *c == code).map(|(n, _)| *n)
}

/// The code of a type mnemonic (any case) or of `TYPEnnn` (RFC 3597 section 5).
pub fn type_code(text: &str) -> Option<u16> {
    if let Some(&(_, c)) = TYPES.iter().find(|(n, _)| n.eq_ignore_ascii_case(text)) {
        return Some(c);
    }
    let b = text.as_bytes();
    if b.len() > 4 && b[..4].eq_ignore_ascii_case(b"TYPE") && b[4].is_ascii_digit() {
        return text[4..].parse().ok();
    }
    None
}

/// Types whose presentation format this module reads.
pub fn has_parser(code: u16) -> bool {
    matches!(
        code,
        13 | 17
            | 18
            | 29
            | 35
            | 36
            | 37
            | 42..=53
            | 55
            | 59..=65
            | 99
            | 104..=109
            | 256
    )
}

/// DNSSEC algorithm numbers (RFC 4034 A.1, RFC 5155, RFC 5702, RFC 6605, RFC 8080, RFC 8624).
const ALGORITHMS: &[(&str, u8)] = &[
    ("RSAMD5", 1),
    ("DH", 2),
    ("DSA", 3),
    ("RSASHA1", 5),
    ("DSA-NSEC3-SHA1", 6),
    ("RSASHA1-NSEC3-SHA1", 7),
    ("RSASHA256", 8),
    ("RSASHA512", 10),
    ("ECC-GOST", 12),
    ("ECDSAP256SHA256", 13),
    ("ECDSAP384SHA384", 14),
    ("ED25519", 15),
    ("ED448", 16),
    ("INDIRECT", 252),
    ("PRIVATEDNS", 253),
    ("PRIVATEOID", 254),
];

/// CERT types (RFC 4398 2.1).
const CERT_TYPES: &[(&str, u16)] = &[
    ("PKIX", 1),
    ("SPKI", 2),
    ("PGP", 3),
    ("IPKIX", 4),
    ("ISPKI", 5),
    ("IPGP", 6),
    ("ACPKIX", 7),
    ("IACPKIX", 8),
    ("URI", 253),
    ("OID", 254),
];

fn bad<T>(t: &Tok<'_>, message: String) -> Result<T, LineErr> {
    Err(LineErr {
        line: t.line,
        message,
    })
}

/// What a hex or base64 decoder said, in words.
fn decode_problem(kind: DecodeKind, hex: bool) -> &'static str {
    match (kind, hex) {
        (DecodeKind::Length, true) => "odd number of hex digits",
        (DecodeKind::Symbol, true) => "not a hex digit",
        (DecodeKind::Length, false) => "length is not a multiple of 4",
        (DecodeKind::Symbol, false) => "not a base64 character",
        (DecodeKind::Padding, _) => "misplaced padding",
        (DecodeKind::Trailing, _) => "non-zero trailing bits",
    }
}

impl<'t, 'a> Rd<'t, 'a> {
    fn what(&self, field: &str) -> String {
        format!("{} {field}", type_name(self.rtype))
    }

    fn u8(&mut self, field: &str) -> Result<u8, LineErr> {
        let t = self.next(field)?;
        t.text.parse::<u8>().or_else(|_| {
            let what = self.what(field);
            bad(t, format!("invalid {what} \"{}\" (0 to 255)", t.text))
        })
    }

    /// A number or one of `names` (case-insensitive).
    fn u8_or(&mut self, field: &str, names: &[(&str, u8)]) -> Result<u8, LineErr> {
        let t = self.next(field)?;
        if let Ok(v) = t.text.parse::<u8>() {
            return Ok(v);
        }
        match names.iter().find(|(n, _)| n.eq_ignore_ascii_case(t.text)) {
            Some(&(_, v)) => Ok(v),
            None => {
                let what = self.what(field);
                bad(t, format!("invalid {what} \"{}\"", t.text))
            }
        }
    }

    fn algorithm(&mut self) -> Result<u8, LineErr> {
        self.u8_or("algorithm", ALGORITHMS)
    }

    fn rest(&mut self) -> &'t [Tok<'a>] {
        let r = &self.toks[self.i..];
        self.i = self.toks.len();
        r
    }

    /// The remaining tokens joined (hex and base64 may be split by blanks and line breaks).
    fn joined(&mut self, field: &str, may_be_empty: bool) -> Result<(String, usize), LineErr> {
        let line = self.toks.get(self.i).map(|t| t.line);
        let rest = self.rest();
        if let Some(q) = rest.iter().find(|t| t.quoted) {
            let what = self.what(field);
            return bad(q, format!("invalid {what}: quoted text \"{}\"", q.text));
        }
        let text: String = rest.iter().map(|t| t.text).collect();
        match line {
            Some(l) => Ok((text, l)),
            None if may_be_empty => Ok((text, self.last_line())),
            None => {
                self.next(field)?;
                unreachable!("next fails at the end")
            }
        }
    }

    /// Hex digits from here to the end of the RDATA.
    fn hex_rest(&mut self, field: &str) -> Result<Vec<u8>, LineErr> {
        let (text, line) = self.joined(field, false)?;
        hex(&text).map_err(|m| LineErr {
            line,
            message: format!("invalid {}: {m}", self.what(field)),
        })
    }

    /// Base64 from here to the end of the RDATA.
    fn base64_rest(&mut self, field: &str, may_be_empty: bool) -> Result<Vec<u8>, LineErr> {
        let (text, line) = self.joined(field, may_be_empty)?;
        BASE64.decode(text.as_bytes()).map_err(|e| LineErr {
            line,
            message: format!(
                "invalid {}: {}",
                self.what(field),
                decode_problem(e.kind, false)
            ),
        })
    }

    /// One character-string (RFC 1035 3.3), length-prefixed into `out`.
    fn string(&mut self, field: &str, out: &mut Vec<u8>) -> Result<(), LineErr> {
        let t = self.next(field)?;
        let at = out.len();
        out.push(0);
        decode_string(t.text, out)
            .or_else(|m| bad(t, format!("invalid {}: {m}", self.what(field))))?;
        let len = out.len() - at - 1;
        if len > 255 {
            return bad(t, format!("{} longer than 255 bytes", self.what(field)));
        }
        out[at] = len as u8;
        Ok(())
    }

    fn wire_name(&mut self, field: &str, origin: &Name, out: &mut Vec<u8>) -> Result<(), LineErr> {
        let n = self.name(field, origin)?;
        push_name(out, &n);
        Ok(())
    }

    /// The type bitmap of NSEC, NSEC3 and CSYNC (RFC 4034 4.1.2) from the remaining tokens.
    fn bitmap(&mut self, out: &mut Vec<u8>) -> Result<(), LineErr> {
        let mut types = Vec::new();
        for t in self.rest() {
            match type_code(t.text) {
                Some(c) if !t.quoted => types.push(c),
                _ => {
                    return bad(
                        t,
                        format!(
                            "invalid {} type bitmap: unknown type \"{}\"",
                            type_name(self.rtype),
                            t.text
                        ),
                    );
                }
            }
        }
        out.extend_from_slice(&type_bitmap(&types));
        Ok(())
    }
}

fn hex(text: &str) -> Result<Vec<u8>, &'static str> {
    HEXUPPER_PERMISSIVE
        .decode(text.as_bytes())
        .map_err(|e| decode_problem(e.kind, true))
}

fn push_name(out: &mut Vec<u8>, n: &Name) {
    for label in n.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// Parses the RDATA of `code` (one of `has_parser`) into wire form.
pub(super) fn parse(code: u16, rd: &mut Rd<'_, '_>, origin: &Name) -> Result<Vec<u8>, LineErr> {
    let mut w = Vec::with_capacity(64);
    match code {
        // DS, CDS: key tag, algorithm, digest type, digest (RFC 4034 5.3). CDS 0 0 0 00 is
        // RFC 8078's "delete" form.
        43 | 59 => {
            w.extend_from_slice(&rd.u16("key tag")?.to_be_bytes());
            w.push(rd.algorithm()?);
            w.push(rd.u8("digest type")?);
            w.extend(rd.hex_rest("digest")?);
        }
        // DNSKEY, CDNSKEY: flags, protocol, algorithm, key (RFC 4034 2.2).
        48 | 60 => {
            w.extend_from_slice(&rd.u16("flags")?.to_be_bytes());
            w.push(rd.u8("protocol")?);
            w.push(rd.algorithm()?);
            w.extend(rd.base64_rest("public key", false)?);
        }
        // RRSIG (RFC 4034 3.2).
        46 => {
            let t = rd.next("type covered")?;
            let covered = match type_code(t.text) {
                Some(c) => c,
                None => return bad(t, format!("invalid RRSIG type covered \"{}\"", t.text)),
            };
            w.extend_from_slice(&covered.to_be_bytes());
            w.push(rd.algorithm()?);
            w.push(rd.u8("labels")?);
            w.extend_from_slice(&rd.u32("original TTL")?.to_be_bytes());
            for field in ["signature expiration", "signature inception"] {
                let t = rd.next(field)?;
                let v = sig_time(t.text)
                    .or_else(|m| bad(t, format!("invalid RRSIG {field} \"{}\": {m}", t.text)))?;
                w.extend_from_slice(&v.to_be_bytes());
            }
            w.extend_from_slice(&rd.u16("key tag")?.to_be_bytes());
            rd.wire_name("signer name", origin, &mut w)?;
            w.extend(rd.base64_rest("signature", false)?);
        }
        // NSEC: next owner, type bitmap (RFC 4034 4.2).
        47 => {
            rd.wire_name("next domain name", origin, &mut w)?;
            rd.bitmap(&mut w)?;
        }
        // NSEC3: hash algorithm, flags, iterations, salt, next hashed owner, bitmap (RFC 5155
        // 3.3); NSEC3PARAM: the first four (RFC 5155 4.3).
        50 | 51 => {
            w.push(rd.u8("hash algorithm")?);
            w.push(rd.u8("flags")?);
            w.extend_from_slice(&rd.u16("iterations")?.to_be_bytes());
            let t = rd.next("salt")?;
            let salt = if t.text == "-" {
                Vec::new()
            } else {
                hex(t.text).or_else(|m| bad(t, format!("invalid {}: {m}", rd.what("salt"))))?
            };
            if salt.len() > 255 {
                return bad(t, format!("{} longer than 255 bytes", rd.what("salt")));
            }
            w.push(salt.len() as u8);
            w.extend(salt);
            if code == 50 {
                let t = rd.next("next hashed owner name")?;
                let next = BASE32HEX_NOPAD
                    .decode(t.text.to_ascii_uppercase().as_bytes())
                    .or_else(|e| {
                        bad(
                            t,
                            format!(
                                "invalid NSEC3 next hashed owner name \"{}\": not base32hex ({})",
                                t.text, e.kind
                            ),
                        )
                    })?;
                if next.is_empty() || next.len() > 255 {
                    return bad(
                        t,
                        "invalid NSEC3 next hashed owner name: 1 to 255 bytes".into(),
                    );
                }
                w.push(next.len() as u8);
                w.extend(next);
                rd.bitmap(&mut w)?;
            }
        }
        // CSYNC: SOA serial, flags, type bitmap (RFC 7477 2.1).
        62 => {
            w.extend_from_slice(&rd.u32("SOA serial")?.to_be_bytes());
            w.extend_from_slice(&rd.u16("flags")?.to_be_bytes());
            rd.bitmap(&mut w)?;
        }
        // SSHFP: algorithm, fingerprint type, fingerprint (RFC 4255 3.2).
        44 => {
            w.push(rd.u8("algorithm")?);
            w.push(rd.u8("fingerprint type")?);
            w.extend(rd.hex_rest("fingerprint")?);
        }
        // TLSA, SMIMEA: usage, selector, matching type, data (RFC 6698 2.2, RFC 8162 2).
        52 | 53 => {
            w.push(rd.u8("certificate usage")?);
            w.push(rd.u8("selector")?);
            w.push(rd.u8("matching type")?);
            w.extend(rd.hex_rest("certificate association data")?);
        }
        // OPENPGPKEY (RFC 7929 2.3), DHCID (RFC 4701 3.6): base64 only.
        61 => w.extend(rd.base64_rest("key", false)?),
        49 => w.extend(rd.base64_rest("data", false)?),
        // HINFO (RFC 1035 3.3.2).
        13 => {
            rd.string("CPU", &mut w)?;
            rd.string("OS", &mut w)?;
        }
        // SPF: as TXT (RFC 7208 3.1; RFC 4408 3.1.1).
        99 => {
            rd.next("text")?;
            rd.i -= 1;
            while rd.i < rd.toks.len() {
                rd.string("text", &mut w)?;
            }
        }
        // NAPTR: order, preference, flags, services, regexp, replacement (RFC 3403 4.1).
        35 => {
            w.extend_from_slice(&rd.u16("order")?.to_be_bytes());
            w.extend_from_slice(&rd.u16("preference")?.to_be_bytes());
            rd.string("flags", &mut w)?;
            rd.string("services", &mut w)?;
            rd.string("regexp", &mut w)?;
            rd.wire_name("replacement", origin, &mut w)?;
        }
        // RP: mailbox, TXT owner (RFC 1183 2.2).
        17 => {
            rd.wire_name("mailbox", origin, &mut w)?;
            rd.wire_name("TXT name", origin, &mut w)?;
        }
        // AFSDB: subtype, hostname (RFC 1183 1); KX: preference, exchanger (RFC 2230 3);
        // LP: preference, FQDN (RFC 6742 2.4).
        18 | 36 | 107 => {
            let first = if code == 18 { "subtype" } else { "preference" };
            w.extend_from_slice(&rd.u16(first)?.to_be_bytes());
            rd.wire_name(
                if code == 18 { "hostname" } else { "target" },
                origin,
                &mut w,
            )?;
        }
        // L32: preference, locator as an IPv4 address (RFC 6742 2.2).
        105 => {
            w.extend_from_slice(&rd.u16("preference")?.to_be_bytes());
            let t = rd.next("locator")?;
            let a = Ipv4Addr::from_str(t.text)
                .or_else(|_| bad(t, format!("invalid L32 locator \"{}\"", t.text)))?;
            w.extend_from_slice(&a.octets());
        }
        // NID, L64: preference, 64 bits as four groups of hex (RFC 6742 2.1, 2.3).
        104 | 106 => {
            w.extend_from_slice(&rd.u16("preference")?.to_be_bytes());
            let field = if code == 104 { "node ID" } else { "locator" };
            let t = rd.next(field)?;
            let groups: Vec<&str> = t.text.split(':').collect();
            let ok = groups.len() == 4
                && groups.iter().all(|g| {
                    (1..=4).contains(&g.len()) && g.bytes().all(|c| c.is_ascii_hexdigit())
                });
            if !ok {
                return bad(
                    t,
                    format!(
                        "invalid {} \"{}\" (four groups of 1 to 4 hex digits, e.g. 14:4fff:ff20:ee64)",
                        rd.what(field),
                        t.text
                    ),
                );
            }
            for g in groups {
                let v = u16::from_str_radix(g, 16).expect("checked hex");
                w.extend_from_slice(&v.to_be_bytes());
            }
        }
        // EUI48, EUI64: hex pairs joined by hyphens (RFC 7043 3.2, 4.2).
        108 | 109 => {
            let n = if code == 108 { 6 } else { 8 };
            let t = rd.next("address")?;
            let parts: Vec<&str> = t.text.split('-').collect();
            let ok = parts.len() == n
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()));
            if !ok {
                return bad(
                    t,
                    format!(
                        "invalid {} address \"{}\" ({n} hex pairs joined by '-')",
                        type_name(rd.rtype),
                        t.text
                    ),
                );
            }
            for p in parts {
                w.push(u8::from_str_radix(p, 16).expect("checked hex"));
            }
        }
        // URI: priority, weight, target (RFC 7553 4.4).
        256 => {
            w.extend_from_slice(&rd.u16("priority")?.to_be_bytes());
            w.extend_from_slice(&rd.u16("weight")?.to_be_bytes());
            let t = rd.next("target")?;
            let at = w.len();
            decode_string(t.text, &mut w)
                .or_else(|m| bad(t, format!("invalid URI target: {m}")))?;
            if w.len() == at {
                return bad(t, "invalid URI target: empty".into());
            }
        }
        // ZONEMD: serial, scheme, hash algorithm, digest (RFC 8976 2.3); the digest is at least
        // 12 octets (RFC 8976 2.2.4).
        63 => {
            w.extend_from_slice(&rd.u32("serial")?.to_be_bytes());
            w.push(rd.u8("scheme")?);
            w.push(rd.u8("hash algorithm")?);
            let line = rd.toks.get(rd.i).map_or(rd.last_line(), |t| t.line);
            let digest = rd.hex_rest("digest")?;
            if digest.len() < 12 {
                return Err(LineErr {
                    line,
                    message: format!(
                        "invalid ZONEMD digest: {} octets, at least 12 (RFC 8976 2.2.4)",
                        digest.len()
                    ),
                });
            }
            w.extend(digest);
        }
        // CERT: type, key tag, algorithm, certificate (RFC 4398 2.2).
        37 => {
            let t = rd.next("type")?;
            let ty = t.text.parse::<u16>().ok().or_else(|| {
                CERT_TYPES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(t.text))
                    .map(|&(_, v)| v)
            });
            let Some(ty) = ty else {
                return bad(t, format!("invalid CERT type \"{}\"", t.text));
            };
            w.extend_from_slice(&ty.to_be_bytes());
            w.extend_from_slice(&rd.u16("key tag")?.to_be_bytes());
            w.push(rd.algorithm()?);
            w.extend(rd.base64_rest("certificate", false)?);
        }
        // IPSECKEY: precedence, gateway type, algorithm, gateway, public key (RFC 4025 3.1).
        45 => {
            w.push(rd.u8("precedence")?);
            let gt = rd.next("gateway type")?;
            let kind = match gt.text.parse::<u8>() {
                Ok(k @ 0..=3) => k,
                _ => {
                    return bad(
                        gt,
                        format!("invalid IPSECKEY gateway type \"{}\" (0 to 3)", gt.text),
                    );
                }
            };
            w.push(kind);
            w.push(rd.u8("algorithm")?);
            let g = rd.next("gateway")?;
            match kind {
                0 if g.text == "." => {}
                0 => {
                    return bad(
                        g,
                        format!("IPSECKEY gateway type 0 needs \".\", not \"{}\"", g.text),
                    );
                }
                1 => match Ipv4Addr::from_str(g.text) {
                    Ok(a) => w.extend_from_slice(&a.octets()),
                    Err(_) => {
                        return bad(
                            g,
                            format!("invalid IPSECKEY gateway IPv4 address \"{}\"", g.text),
                        );
                    }
                },
                2 => match Ipv6Addr::from_str(g.text) {
                    Ok(a) => w.extend_from_slice(&a.octets()),
                    Err(_) => {
                        return bad(
                            g,
                            format!("invalid IPSECKEY gateway IPv6 address \"{}\"", g.text),
                        );
                    }
                },
                _ => {
                    rd.i -= 1;
                    rd.wire_name("gateway", origin, &mut w)?;
                }
            }
            w.extend(rd.base64_rest("public key", true)?);
        }
        // HIP: algorithm, HIT (hex), public key (base64), rendezvous servers (RFC 8005 3).
        55 => {
            let alg = rd.u8("PK algorithm")?;
            let t = rd.next("HIT")?;
            let hit = hex(t.text).or_else(|m| bad(t, format!("invalid HIP HIT: {m}")))?;
            if hit.is_empty() || hit.len() > 255 {
                return bad(t, "invalid HIP HIT: 1 to 255 bytes".into());
            }
            let t = rd.next("public key")?;
            let pk = BASE64.decode(t.text.as_bytes()).or_else(|e| {
                bad(
                    t,
                    format!("invalid HIP public key: {}", decode_problem(e.kind, false)),
                )
            })?;
            if pk.len() > usize::from(u16::MAX) {
                return bad(t, "invalid HIP public key: longer than 65535 bytes".into());
            }
            w.push(hit.len() as u8);
            w.push(alg);
            w.extend_from_slice(&(pk.len() as u16).to_be_bytes());
            w.extend(hit);
            w.extend(pk);
            while rd.i < rd.toks.len() {
                rd.wire_name("rendezvous server", origin, &mut w)?;
            }
        }
        // APL: [!]family:address/prefix items (RFC 3123 5).
        42 => {
            for t in rd.rest() {
                apl_item(t, &mut w)?;
            }
        }
        // LOC (RFC 1876 3).
        29 => loc(rd, &mut w)?,
        // SVCB, HTTPS (RFC 9460 2.1).
        64 | 65 => svcb(rd, origin, &mut w)?,
        _ => unreachable!("has_parser({code}) is false"),
    }
    Ok(w)
}

/// RRSIG times (RFC 4034 3.2): `YYYYMMDDHHmmSS` in UTC, or seconds since the epoch; on the wire
/// modulo 2^32 (serial number arithmetic, RFC 4034 3.1.5).
fn sig_time(text: &str) -> Result<u32, String> {
    if !text.bytes().all(|c| c.is_ascii_digit()) || text.is_empty() {
        return Err("not YYYYMMDDHHmmSS or a number of seconds".into());
    }
    if text.len() != 14 {
        return text
            .parse::<u32>()
            .map_err(|_| "more seconds than 32 bits hold".to_string());
    }
    let n = |a: usize, b: usize| text[a..b].parse::<i64>().expect("digits");
    let (y, mo, d, h, mi, s) = (n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if y < 1970 || !(1..=12).contains(&mo) || d < 1 || d > days_in[(mo - 1) as usize] {
        return Err("no such date (from 1970 on)".into());
    }
    if h > 23 || mi > 59 || s > 59 {
        return Err("no such time of day".into());
    }
    // Days since 1970-01-01 of a proleptic Gregorian date.
    let mut days = 0i64;
    for year in 1970..y {
        let l = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        days += if l { 366 } else { 365 };
    }
    days += days_in[..(mo - 1) as usize].iter().sum::<i64>() + d - 1;
    let secs = days * 86400 + h * 3600 + mi * 60 + s;
    Ok((secs % (1i64 << 32)) as u32)
}

/// One APL item: `[!]afi:address/prefix`; AFDPART without its trailing zero octets (RFC 3123 4).
fn apl_item(t: &Tok<'_>, w: &mut Vec<u8>) -> Result<(), LineErr> {
    let fail = |why: &str| bad(t, format!("invalid APL item \"{}\": {why}", t.text));
    let (neg, body) = match t.text.strip_prefix('!') {
        Some(b) => (true, b),
        None => (false, t.text),
    };
    let Some((afi, rest)) = body.split_once(':') else {
        return fail("not [!]family:address/prefix");
    };
    let Some((addr, prefix)) = rest.rsplit_once('/') else {
        return fail("no /prefix");
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return fail("invalid prefix length");
    };
    let (family, mut bytes, max): (u16, Vec<u8>, u8) = match afi {
        "1" => match Ipv4Addr::from_str(addr) {
            Ok(a) => (1, a.octets().to_vec(), 32),
            Err(_) => return fail("invalid IPv4 address"),
        },
        "2" => match Ipv6Addr::from_str(addr) {
            Ok(a) => (2, a.octets().to_vec(), 128),
            Err(_) => return fail("invalid IPv6 address"),
        },
        _ => return fail("address family is 1 (IPv4) or 2 (IPv6)"),
    };
    if prefix > max {
        return fail(&format!("prefix longer than {max}"));
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    w.extend_from_slice(&family.to_be_bytes());
    w.push(prefix);
    w.push(u8::from(neg) << 7 | bytes.len() as u8);
    w.extend(bytes);
    Ok(())
}

/// A decimal with at most `places` fractional digits, scaled by 10^places; optional sign and
/// (`unit`) trailing `m`.
fn decimal(text: &str, places: u32, unit: bool) -> Option<i64> {
    let t = if unit {
        text.strip_suffix(['m', 'M']).unwrap_or(text)
    } else {
        text
    };
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty()
        || frac.len() > places as usize
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
        || int.len() > 12
    {
        return None;
    }
    let mut v = int.parse::<i64>().ok()? * 10i64.pow(places);
    if !frac.is_empty() {
        v += frac.parse::<i64>().ok()? * 10i64.pow(places - frac.len() as u32);
    }
    Some(if neg { -v } else { v })
}

/// RFC 1876 size/precision: centimetres as mantissa (high nibble) and power of ten (low).
fn loc_precision(cm: i64) -> u8 {
    let mut e = 0u32;
    while e < 9 && cm >= 10i64.pow(e + 1) {
        e += 1;
    }
    ((cm / 10i64.pow(e)) as u8) << 4 | e as u8
}

/// LOC: `d1 [m1 [s1]] N|S d2 [m2 [s2]] E|W alt[m] [siz[m] [hp[m] [vp[m]]]]` (RFC 1876 3).
fn loc(rd: &mut Rd<'_, '_>, w: &mut Vec<u8>) -> Result<(), LineErr> {
    fn coord(rd: &mut Rd<'_, '_>, max_deg: i64, hemis: [&str; 2]) -> Result<u32, LineErr> {
        let field = if max_deg == 90 {
            "latitude"
        } else {
            "longitude"
        };
        let mut parts = Vec::new();
        loop {
            let t = rd.next(field)?;
            if let Some(i) = hemis.iter().position(|h| h.eq_ignore_ascii_case(t.text)) {
                if parts.is_empty() {
                    return bad(t, format!("invalid LOC {field}: degrees missing"));
                }
                let (d, m, s): (i64, i64, i64) = (
                    parts[0],
                    parts.get(1).copied().unwrap_or(0),
                    parts.get(2).copied().unwrap_or(0),
                );
                let thousandths = ((d * 60 + m) * 60) * 1000 + s;
                if thousandths > max_deg * 3_600_000 {
                    return bad(
                        t,
                        format!("invalid LOC {field}: more than {max_deg} degrees"),
                    );
                }
                let base = 1i64 << 31;
                let v = if i == 0 {
                    base + thousandths
                } else {
                    base - thousandths
                };
                return Ok(v as u32);
            }
            let (v, ok) = match parts.len() {
                0 => {
                    let v = t.text.parse::<i64>().unwrap_or(-1);
                    (
                        v,
                        (0..=max_deg).contains(&v) && !t.text.starts_with(['+', '-']),
                    )
                }
                1 => {
                    let v = t.text.parse::<i64>().unwrap_or(-1);
                    (v, (0..60).contains(&v) && !t.text.starts_with(['+', '-']))
                }
                2 => {
                    let v = decimal(t.text, 3, false).unwrap_or(-1);
                    (v, (0..60_000).contains(&v))
                }
                _ => (0, false),
            };
            if !ok {
                return bad(
                    t,
                    format!(
                        "invalid LOC {field} \"{}\" (degrees, minutes, seconds, then {} or {})",
                        t.text, hemis[0], hemis[1]
                    ),
                );
            }
            parts.push(v);
        }
    }
    let lat = coord(rd, 90, ["N", "S"])?;
    let lon = coord(rd, 180, ["E", "W"])?;
    let t = rd.next("altitude")?;
    let alt = decimal(t.text, 2, true)
        .filter(|v| (-10_000_000..=4_284_967_295).contains(v))
        .ok_or(())
        .or_else(|_| {
            bad(
                t,
                format!(
                    "invalid LOC altitude \"{}\" (-100000.00m to 42849672.95m)",
                    t.text
                ),
            )
        })?;
    // RFC 1876 3: defaults 1m, 10000m, 10m.
    let mut sizes = [100i64, 1_000_000, 1_000];
    for (i, field) in ["size", "horizontal precision", "vertical precision"]
        .iter()
        .enumerate()
    {
        let Some(t) = rd.toks.get(rd.i) else { break };
        rd.i += 1;
        sizes[i] = decimal(t.text, 2, true)
            .filter(|v| (0..=9_000_000_000).contains(v))
            .ok_or(())
            .or_else(|_| {
                bad(
                    t,
                    format!("invalid LOC {field} \"{}\" (0 to 90000000.00m)", t.text),
                )
            })?;
    }
    w.push(0); // version
    for s in sizes {
        w.push(loc_precision(s));
    }
    w.extend_from_slice(&lat.to_be_bytes());
    w.extend_from_slice(&lon.to_be_bytes());
    w.extend_from_slice(&((alt + 10_000_000) as u32).to_be_bytes());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SVCB and HTTPS (RFC 9460)

/// SvcParamKeys with names (RFC 9460 14.3.2, RFC 9461 5, RFC 9540 4).
const SVC_KEYS: &[(&str, u16)] = &[
    ("mandatory", 0),
    ("alpn", 1),
    ("no-default-alpn", 2),
    ("port", 3),
    ("ipv4hint", 4),
    ("ech", 5),
    ("ipv6hint", 6),
    ("dohpath", 7),
    ("ohttp", 8),
];

/// A key by name or as `keyNNNNN` (RFC 9460 2.1); 65535 is reserved (RFC 9460 14.3.2).
fn svc_key(text: &str) -> Option<u16> {
    if let Some(&(_, k)) = SVC_KEYS.iter().find(|(n, _)| *n == text) {
        return Some(k);
    }
    let digits = text.strip_prefix("key")?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) || digits.len() > 5 {
        return None;
    }
    digits.parse::<u16>().ok().filter(|&k| k != 65535)
}

fn svc_key_name(k: u16) -> String {
    match SVC_KEYS.iter().find(|(_, c)| *c == k) {
        Some((n, _)) => n.to_string(),
        None => format!("key{k}"),
    }
}

/// Splits a value list at unescaped commas, undoing `\,` and `\\` (RFC 9460 A.1; applied after
/// the character-string escapes were decoded).
fn comma_list(v: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut items = vec![Vec::new()];
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\\' => match v.get(i + 1) {
                Some(&c @ (b',' | b'\\')) => {
                    items.last_mut().expect("one item").push(c);
                    i += 2;
                }
                _ => return Err("a backslash in a list item escapes only ',' or '\\'".into()),
            },
            b',' => {
                items.push(Vec::new());
                i += 1;
            }
            c => {
                items.last_mut().expect("one item").push(c);
                i += 1;
            }
        }
    }
    if items.iter().any(Vec::is_empty) {
        return Err("empty item in the list".into());
    }
    Ok(items)
}

fn svcb(rd: &mut Rd<'_, '_>, origin: &Name, w: &mut Vec<u8>) -> Result<(), LineErr> {
    let priority = rd.u16("priority")?;
    w.extend_from_slice(&priority.to_be_bytes());
    // RFC 9460 2.2: the TargetName is never compressed.
    rd.wire_name("target name", origin, w)?;
    let ty = type_name(rd.rtype);
    let mut params: Vec<(u16, Vec<u8>, usize)> = Vec::new();
    while rd.i < rd.toks.len() {
        let toks = rd.toks;
        let t = &toks[rd.i];
        rd.i += 1;
        if t.quoted {
            return bad(
                t,
                format!(
                    "invalid {ty} SvcParam: quoted text \"{}\" without a key",
                    t.text
                ),
            );
        }
        // `key=value`, `key="value"` (the lexer gives the quoted part as the next token) or `key`.
        let (key_text, value): (&str, Option<Vec<u8>>) = match t.text.split_once('=') {
            None => (t.text, None),
            Some((k, "")) => match rd.toks.get(rd.i) {
                Some(q) if q.quoted => {
                    rd.i += 1;
                    let mut v = Vec::new();
                    decode_string(q.text, &mut v)
                        .or_else(|m| bad(q, format!("invalid {ty} {k} value: {m}")))?;
                    (k, Some(v))
                }
                _ => (k, Some(Vec::new())),
            },
            Some((k, raw)) => {
                let mut v = Vec::new();
                decode_string(raw, &mut v)
                    .or_else(|m| bad(t, format!("invalid {ty} {k} value: {m}")))?;
                (k, Some(v))
            }
        };
        let Some(key) = svc_key(key_text) else {
            return bad(t, format!("invalid {ty} SvcParamKey \"{key_text}\""));
        };
        if params.iter().any(|(k, ..)| *k == key) {
            return bad(
                t,
                format!("{ty} SvcParamKey {key_text} given twice (RFC 9460 2.2)"),
            );
        }
        let fail = |why: String| LineErr {
            line: t.line,
            message: format!("invalid {ty} {key_text}: {why}"),
        };
        let wire = match (key, value) {
            // RFC 9460 7.1.1: no-default-alpn has no value; so does ohttp (RFC 9540 4).
            (2 | 8, None) => Vec::new(),
            (2 | 8, Some(v)) if v.is_empty() => Vec::new(),
            (2 | 8, Some(_)) => return Err(fail("takes no value".into())),
            (0 | 1 | 3 | 4 | 5 | 6 | 7, None) => return Err(fail("needs a value".into())),
            (_, None) => Vec::new(),
            (0, Some(v)) => {
                let mut keys = Vec::new();
                for item in comma_list(&v).map_err(fail)? {
                    let name = String::from_utf8_lossy(&item).into_owned();
                    let Some(k) = svc_key(&name) else {
                        return Err(fail(format!("unknown key \"{name}\"")));
                    };
                    if k == 0 {
                        return Err(fail("mandatory must not list itself (RFC 9460 8)".into()));
                    }
                    if keys.contains(&k) {
                        return Err(fail(format!("{name} listed twice (RFC 9460 8)")));
                    }
                    keys.push(k);
                }
                keys.sort_unstable();
                keys.iter().flat_map(|k| k.to_be_bytes()).collect()
            }
            (1, Some(v)) => {
                let mut out = Vec::new();
                for id in comma_list(&v).map_err(fail)? {
                    if id.len() > 255 {
                        return Err(fail("an ALPN id is longer than 255 bytes".into()));
                    }
                    out.push(id.len() as u8);
                    out.extend(id);
                }
                out
            }
            (3, Some(v)) => match std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
            {
                Some(p) => p.to_be_bytes().to_vec(),
                None => return Err(fail("not a port number (0 to 65535)".into())),
            },
            (4, Some(v)) => {
                let mut out = Vec::new();
                for a in comma_list(&v).map_err(fail)? {
                    match std::str::from_utf8(&a)
                        .ok()
                        .and_then(|s| Ipv4Addr::from_str(s).ok())
                    {
                        Some(ip) => out.extend_from_slice(&ip.octets()),
                        None => {
                            return Err(fail(format!(
                                "invalid IPv4 address \"{}\"",
                                String::from_utf8_lossy(&a)
                            )));
                        }
                    }
                }
                out
            }
            (6, Some(v)) => {
                let mut out = Vec::new();
                for a in comma_list(&v).map_err(fail)? {
                    match std::str::from_utf8(&a)
                        .ok()
                        .and_then(|s| Ipv6Addr::from_str(s).ok())
                    {
                        Some(ip) => out.extend_from_slice(&ip.octets()),
                        None => {
                            return Err(fail(format!(
                                "invalid IPv6 address \"{}\"",
                                String::from_utf8_lossy(&a)
                            )));
                        }
                    }
                }
                out
            }
            // RFC 9460 9: ECHConfigList in base64.
            (5, Some(v)) => match BASE64.decode(&v) {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => return Err(fail("empty".into())),
                Err(e) => {
                    return Err(fail(format!(
                        "not base64 ({})",
                        decode_problem(e.kind, false)
                    )));
                }
            },
            // RFC 9461 5: a relative URI template, UTF-8.
            (7, Some(v)) => {
                if v.is_empty() || std::str::from_utf8(&v).is_err() {
                    return Err(fail("a non-empty UTF-8 URI template".into()));
                }
                v
            }
            (_, Some(v)) => v,
        };
        if wire.len() > usize::from(u16::MAX) {
            return Err(fail("value longer than 65535 bytes".into()));
        }
        params.push((key, wire, t.line));
    }
    // RFC 9460 8: every key listed in mandatory is present.
    if let Some((_, m, line)) = params.iter().find(|(k, ..)| *k == 0) {
        for k in m.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])) {
            if !params.iter().any(|(p, ..)| *p == k) {
                return Err(LineErr {
                    line: *line,
                    message: format!(
                        "invalid {ty} mandatory: {} is listed but not present (RFC 9460 8)",
                        svc_key_name(k)
                    ),
                });
            }
        }
    }
    // RFC 9460 2.2: SvcParams in strictly increasing key order on the wire.
    params.sort_by_key(|(k, ..)| *k);
    for (k, v, _) in params {
        w.extend_from_slice(&k.to_be_bytes());
        w.extend_from_slice(&(v.len() as u16).to_be_bytes());
        w.extend(v);
    }
    Ok(())
}

/// RFC 4034 4.1.2 type bitmap (NSEC, NSEC3, CSYNC): windows of 256 types, each bitmap as long as
/// its highest type; `types` in any order, repeats ignored.
pub fn type_bitmap(types: &[u16]) -> Vec<u8> {
    let mut types = types.to_vec();
    types.sort_unstable();
    types.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < types.len() {
        let window = (types[i] >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while i < types.len() && (types[i] >> 8) as u8 == window {
            let low = (types[i] & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            len = low / 8 + 1;
            i += 1;
        }
        out.push(window);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use data_encoding::HEXLOWER_PERMISSIVE;
    use hickory_proto::rr::{Name, RData, RecordType};

    use super::super::reader::{TextFs, read_zone};

    fn read(records: &str) -> Result<Vec<(RecordType, Vec<u8>)>, String> {
        let fs = TextFs(format!("$TTL 60\n{records}\n"));
        let origin = Name::from_ascii("example.com.").unwrap();
        let rs = read_zone(&origin, Path::new("z"), &fs).map_err(|e| e.to_string())?;
        Ok(rs
            .into_iter()
            .map(|r| match &r.record.data {
                RData::Unknown { code, rdata } => (*code, rdata.anything.clone()),
                other => panic!("not kept as wire bytes: {other:?}"),
            })
            .collect())
    }

    /// The RDATA of the one record `line` (owner, type, RDATA) in wire form.
    fn wire(line: &str) -> Vec<u8> {
        let rs = read(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(rs.len(), 1);
        rs[0].1.clone()
    }

    fn err(line: &str) -> String {
        match read(line) {
            Ok(r) => panic!("{line:?} was accepted: {r:?}"),
            Err(e) => e,
        }
    }

    /// Hex with blanks and `|` separators (for readability) removed.
    fn h(text: &str) -> Vec<u8> {
        let t: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '|')
            .collect();
        HEXLOWER_PERMISSIVE.decode(t.as_bytes()).unwrap()
    }

    /// Uncompressed wire form of a plain name.
    fn n(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
        {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn ds_rfc4034_5_4_with_split_digest_and_mnemonic() {
        let want = h("ec45 05 01 2bb183af5f22588179a53b0a98631fad1a292118");
        assert_eq!(
            wire("dskey DS 60485 5 1 ( 2BB183AF5F22588179A53B0A98631FAD1A292118 )"),
            want
        );
        assert_eq!(
            wire("dskey DS 60485 RSASHA1 1 2BB183AF5F2258817 9A53B0A98631FAD1A292118"),
            want
        );
        assert_eq!(
            wire("dskey CDS 60485 rsasha1 1 (\n 2bb183af5f22588179a53b0a\n 98631fad1a292118 )"),
            want
        );
        // RFC 8078 4: the CDS "delete" form.
        assert_eq!(wire("@ CDS 0 0 0 00"), h("0000 00 00 00"));
        assert_eq!(
            err("dskey DS 60485 5 1 2BB183AF5F2"),
            "z:2: invalid DS digest: odd number of hex digits"
        );
        assert_eq!(
            err("dskey DS 60485 5 1"),
            "z:2: missing digest in DS record"
        );
        assert_eq!(
            err("dskey DS 60485 RSASHA9 1 00"),
            "z:2: invalid DS algorithm \"RSASHA9\""
        );
        assert_eq!(
            err("dskey DS 60485 5 1 zz"),
            "z:2: invalid DS digest: not a hex digit"
        );
    }

    const RFC4034_KEY: &str = "AQPSKmynfzW4kyBv015MUG2DeIQ3 Cbl+BBZH4b/0PY1kxkmvHjcZc8no \
        kfzj31GajIQKY+5CptLr3buXA10h WqTkF7H6RfoRqXQeogmMHfpftf6z Mv1LyBUgia7za6ZEzOJBOztyvhjL \
        742iU/TpPSEDhm2SNKLijfUppn1U aNvv4w==";

    #[test]
    fn dnskey_rfc4034_2_3_over_lines() {
        let key = BASE64
            .decode(RFC4034_KEY.replace(' ', "").as_bytes())
            .unwrap();
        let want = cat(&[&h("0100 03 05"), &key]);
        let split = RFC4034_KEY.replace(' ', "\n  ");
        assert_eq!(wire(&format!("@ DNSKEY 256 3 5 ( {split} )")), want);
        assert_eq!(
            wire(&format!("@ CDNSKEY 256 3 RSASHA1 {RFC4034_KEY}")),
            want
        );
        // RFC 8078 4: the CDNSKEY "delete" form.
        assert_eq!(wire("@ CDNSKEY 0 3 0 AA=="), h("0000 03 00 00"));
        assert_eq!(
            err("@ DNSKEY 256 3 5 AQPSK*yn"),
            "z:2: invalid DNSKEY public key: not a base64 character"
        );
        assert_eq!(
            err("@ DNSKEY 256 3 5 AQPSKmy"),
            "z:2: invalid DNSKEY public key: length is not a multiple of 4"
        );
    }

    use data_encoding::BASE64;

    #[test]
    fn rrsig_rfc4034_3_3_dates_and_seconds() {
        let sig = "oJB1W6WNGv+ldvQ3WDG0MQkg5IEhjRip8WTr PYGv07h108dUKGMeDPKijVCHX3DDKdfb+v6o \
            B9wfuh3DTJXUAfI/M0zmO/zz8bW0Rznl8O3t GNazPwQKkRN20XPXV6nwwfoXmJQbsLNrLfkG \
            J5D6fwFm8nN+6pBzeDQfsS3Ap3o=";
        let sig_bytes = BASE64.decode(sig.replace(' ', "").as_bytes()).unwrap();
        // RFC 4034 3.3: 20030322173103 is 1048354263 seconds.
        let want = cat(&[
            &h("0001 05 03 00015180 3e7c9dd7 3e5510d7 0a52"),
            &n("example.com."),
            &sig_bytes,
        ]);
        assert_eq!(
            wire(&format!(
                "host RRSIG A 5 3 86400 20030322173103 ( 20030220173103 2642 example.com. {sig} )"
            )),
            want
        );
        assert_eq!(
            wire(&format!(
                "host RRSIG a RSASHA1 3 86400 1048354263 1045762263 2642 example.com. {sig}"
            )),
            want
        );
        // Times past 2106 wrap (serial number arithmetic, RFC 4034 3.1.5).
        let w = wire(&format!(
            "host RRSIG TYPE1 5 3 86400 21060207062816 0 2642 example.com. {sig}"
        ));
        assert_eq!(w[8..12], [0, 0, 0, 0]);
        assert_eq!(
            err(&format!(
                "host RRSIG A 5 3 86400 20030230173103 0 1 example.com. {sig}"
            )),
            "z:2: invalid RRSIG signature expiration \"20030230173103\": no such date (from 1970 on)"
        );
        assert_eq!(
            err(&format!(
                "host RRSIG BOGUS 5 3 86400 0 0 1 example.com. {sig}"
            )),
            "z:2: invalid RRSIG type covered \"BOGUS\""
        );
    }

    #[test]
    fn nsec_rfc4034_4_3_bitmap() {
        // The RFC's own wire form of this record.
        let want = cat(&[
            &n("host.example.com."),
            &h("0006 40 01 00 00 00 03"),
            &h("041b 00000000 00000000 00000000 00000000 00000000 00000000 0000 20"),
        ]);
        assert_eq!(
            wire("alfa NSEC host.example.com. ( A MX RRSIG NSEC TYPE1234 )"),
            want
        );
        assert_eq!(wire("alfa NSEC host TYPE1234 nsec rrsig mx a A"), want);
        assert_eq!(
            err("alfa NSEC host A FOO"),
            "z:2: invalid NSEC type bitmap: unknown type \"FOO\""
        );
    }

    #[test]
    fn nsec3_and_nsec3param_rfc5155_appendix_a() {
        let next = h("174eb2409fe28bcb4887a1836f957f0a8425e27b");
        let want = cat(&[
            &h("01 01 000c 04 aabbccdd 14"),
            &next,
            // NS SOA MX RRSIG DNSKEY NSEC3PARAM
            &h("00 07 22 01 00 00 00 02 90"),
        ]);
        assert_eq!(
            wire(
                "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom NSEC3 1 1 12 aabbccdd ( \
                 2t7b4g4vsa5smi47k61mv5bv1a22bojr MX DNSKEY NS SOA NSEC3PARAM RRSIG )"
            ),
            want
        );
        assert_eq!(
            wire(
                "0P9MHAVEQVM6T7VBL5LOP2U3T2RP3TOM NSEC3 1 1 12 AABBCCDD \
                 2T7B4G4VSA5SMI47K61MV5BV1A22BOJR TYPE2 TYPE6 TYPE15 TYPE46 TYPE48 TYPE51"
            ),
            want
        );
        // No salt, empty bitmap (an empty non-terminal's NSEC3).
        assert_eq!(
            wire("x NSEC3 1 0 0 - 2t7b4g4vsa5smi47k61mv5bv1a22bojr"),
            cat(&[&h("01 00 0000 00 14"), &next])
        );
        assert_eq!(
            wire("@ NSEC3PARAM 1 0 12 aabbccdd"),
            h("01 00 000c 04 aabbccdd")
        );
        assert_eq!(wire("@ NSEC3PARAM 1 0 0 -"), h("01 00 0000 00"));
        assert!(
            err("x NSEC3 1 0 0 - 2t7b4g4vsa5smi47k61mv5bv1a22boj! A")
                .starts_with("z:2: invalid NSEC3 next hashed owner name"),
        );
        assert_eq!(
            err("@ NSEC3PARAM 1 0 0 abc"),
            "z:2: invalid NSEC3PARAM salt: odd number of hex digits"
        );
    }

    #[test]
    fn uri_rp_afsdb_kx_lp_names_uncompressed_case_kept() {
        let target = b"ftp://ftp1.example.com/public";
        assert_eq!(
            wire("_ftp._tcp URI 10 1 \"ftp://ftp1.example.com/public\""),
            cat(&[&h("000a 0001"), target])
        );
        assert_eq!(
            err("_ftp._tcp URI 10 1 \"\""),
            "z:2: invalid URI target: empty"
        );
        assert_eq!(
            wire("@ RP Mbox.Example.com. txt"),
            cat(&[&n("Mbox.Example.com."), &n("txt.example.com.")])
        );
        assert_eq!(
            wire("@ AFSDB 1 afs-server"),
            cat(&[&h("0001"), &n("afs-server.example.com.")])
        );
        assert_eq!(
            wire("@ KX 10 kx.example."),
            cat(&[&h("000a"), &n("kx.example.")])
        );
        assert_eq!(
            wire("@ LP 10 l64-subnet1.example.com."),
            cat(&[&h("000a"), &n("l64-subnet1.example.com.")])
        );
    }

    #[test]
    fn loc_rfc1876_with_defaults() {
        // RFC 1876 4's example, checked by hand: 42 21 54 N = 2^31 + 152514000 thousandths.
        assert_eq!(
            wire("@ LOC 42 21 54 N 71 06 18 W -24m 30m"),
            h("00 33 16 13 89172dd0 70be15f0 00988d20")
        );
        assert_eq!(
            wire("@ LOC 42 21 54.000 N 71 6 18 W -24.00 30 10000m 10m"),
            h("00 33 16 13 89172dd0 70be15f0 00988d20")
        );
        // Degrees only; 0m altitude; the defaults 1m 10000m 10m.
        assert_eq!(
            wire("@ LOC 52 N 4 E 0"),
            cat(&[
                &h("00 12 16 13"),
                &(0x8000_0000u32 + 52 * 3_600_000).to_be_bytes(),
                &(0x8000_0000u32 + 4 * 3_600_000).to_be_bytes(),
                &10_000_000u32.to_be_bytes()
            ])
        );
        assert_eq!(
            err("@ LOC 91 N 4 E 0"),
            "z:2: invalid LOC latitude \"91\" (degrees, minutes, seconds, then N or S)"
        );
        assert_eq!(
            err("@ LOC 52 N 4 X 0"),
            "z:2: invalid LOC longitude \"X\" (degrees, minutes, seconds, then E or W)"
        );
    }

    #[test]
    fn zonemd_spf_eui_l32_l64_nid_csync() {
        let digest = "c68090d90a7aed71 6bc459f9340e3d7c 1370d4d24b7e2fc3 \
                      a1ddc0b9a87153b9 a9713b3c9ae5cc27 777f98b8e730044c";
        // RFC 8976 A.1.
        assert_eq!(
            wire(&format!("@ ZONEMD 2018031900 1 1 ( {digest} )")),
            cat(&[&h("7848b91c 01 01"), &h(digest)])
        );
        assert_eq!(
            err("@ ZONEMD 2018031900 1 1 c68090d90a7aed71"),
            "z:2: invalid ZONEMD digest: 8 octets, at least 12 (RFC 8976 2.2.4)"
        );
        assert_eq!(wire("@ SPF \"v=spf1 -all\""), cat(&[&[11], b"v=spf1 -all"]));
        // RFC 7043 3.2 and 4.2.
        assert_eq!(wire("@ EUI48 00-00-5e-00-53-2a"), h("00005e00532a"));
        assert_eq!(
            wire("@ EUI64 00-00-5e-ef-10-00-00-2a"),
            h("00005eef1000002a")
        );
        assert_eq!(
            err("@ EUI48 00-00-5e-00-53"),
            "z:2: invalid EUI48 address \"00-00-5e-00-53\" (6 hex pairs joined by '-')"
        );
        // RFC 6742 3.
        assert_eq!(wire("@ L32 10 10.1.2.0"), h("000a 0a010200"));
        assert_eq!(
            wire("@ L64 10 2001:0DB8:1140:1000"),
            h("000a 20010db811401000")
        );
        assert_eq!(
            wire("@ NID 10 14:4fff:ff20:ee64"),
            h("000a 0014 4fff ff20 ee64")
        );
        assert!(err("@ NID 10 14:4fff:ff20").starts_with("z:2: invalid NID node ID"));
        // RFC 7477 2.2: the example's wire form.
        assert_eq!(
            wire("@ CSYNC 66 3 A NS AAAA"),
            h("00000042 0003 0004 60000008")
        );
    }

    #[test]
    fn apl_rfc3123_negation_families_and_trimming() {
        assert_eq!(
            wire("@ APL 1:192.168.32.0/21 !1:192.168.38.0/28"),
            h("0001 15 03 c0a820 | 0001 1c 83 c0a826")
        );
        assert_eq!(
            wire("@ APL 1:224.0.0.0/4 2:FF00:0:0:0:0:0:0:0/8"),
            h("0001 04 01 e0 | 0002 08 01 ff")
        );
        assert_eq!(wire("@ APL 1:0.0.0.0/0"), h("0001 00 00"));
        // RFC 3123 4: an empty APL is allowed.
        assert_eq!(wire("@ APL"), Vec::<u8>::new());
        assert_eq!(
            err("@ APL 1:192.168.32.0/33"),
            "z:2: invalid APL item \"1:192.168.32.0/33\": prefix longer than 32"
        );
        assert_eq!(
            err("@ APL 3:1.2.3.4/8"),
            "z:2: invalid APL item \"3:1.2.3.4/8\": address family is 1 (IPv4) or 2 (IPv6)"
        );
    }

    #[test]
    fn ipseckey_rfc4025_gateway_types() {
        let key = "AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==";
        let k = BASE64.decode(key.as_bytes()).unwrap();
        assert_eq!(
            wire(&format!("@ IPSECKEY ( 10 1 2 192.0.2.38 {key} )")),
            cat(&[&h("0a 01 02 c0000226"), &k])
        );
        assert_eq!(
            wire(&format!("@ IPSECKEY ( 10 0 2 . {key} )")),
            cat(&[&h("0a 00 02"), &k])
        );
        assert_eq!(
            wire(&format!(
                "@ IPSECKEY ( 10 2 2 2001:0DB8:0:8002::2000:1 {key} )"
            )),
            cat(&[&h("0a 02 02 20010db8000080020000000020000001"), &k])
        );
        assert_eq!(
            wire(&format!(
                "@ IPSECKEY ( 10 3 2 mygateway.example.com. {key} )"
            )),
            cat(&[&h("0a 03 02"), &n("mygateway.example.com."), &k])
        );
        // No key at all.
        assert_eq!(wire("@ IPSECKEY 10 0 0 ."), h("0a 00 00"));
        assert_eq!(
            err("@ IPSECKEY 10 4 2 . AA=="),
            "z:2: invalid IPSECKEY gateway type \"4\" (0 to 3)"
        );
        assert_eq!(
            err("@ IPSECKEY 10 0 2 192.0.2.1 AA=="),
            "z:2: IPSECKEY gateway type 0 needs \".\", not \"192.0.2.1\""
        );
    }

    #[test]
    fn dhcid_openpgpkey_sshfp_tlsa_smimea_cert() {
        // RFC 4701 3.6.
        let d = "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=";
        assert_eq!(
            wire(&format!("@ DHCID ( {d} )")),
            BASE64.decode(d.as_bytes()).unwrap()
        );
        assert_eq!(wire("@ OPENPGPKEY ( AQID BAUG )"), h("010203040506"));
        // RFC 4255 3.3, the fingerprint split over fields.
        let fp = "123456789abcdef67890123456789abcdef67890";
        let want = cat(&[&h("02 01"), &h(fp)]);
        assert_eq!(wire(&format!("@ SSHFP 2 1 {fp}")), want);
        assert_eq!(
            wire("@ SSHFP 2 1 123456789abcdef6 7890123456789abc ( def67890 )"),
            want
        );
        // RFC 6698 2.3.
        let tl = "d2abde240d7cd3ee6b4b28c54df034b9 7983a1d16e8a410e4561cb106618e971";
        assert_eq!(
            wire(&format!("_443._tcp TLSA ( 0 0 1 {tl} )")),
            cat(&[&h("00 00 01"), &h(tl)])
        );
        assert_eq!(
            wire(&format!("_443._tcp SMIMEA 3 1 1 {tl}")),
            cat(&[&h("03 01 01"), &h(tl)])
        );
        // RFC 4398 2.1/2.2: mnemonics and numbers give the same record.
        let want = cat(&[&h("0003 0000 08"), &h("000000")]);
        assert_eq!(wire("@ CERT PGP 0 RSASHA256 AAAA"), want);
        assert_eq!(wire("@ CERT 3 0 8 AAAA"), want);
        assert_eq!(
            err("@ CERT PKIY 0 8 AAAA"),
            "z:2: invalid CERT type \"PKIY\""
        );
    }

    #[test]
    fn hip_rfc8005() {
        let pk = "AwEAAbdxyhNuSutc5EMzxTs9LBPCIkOFH8cIvM4p9+LrV4e19WzK00+CI6zBCQTdtWsuxKbWIy87UOoJTwkUs7lBu+Upr1gsNrut79ryra+bSRGQb1slImA8YVJyuIDsj7kwzG7jnERNqnWxZ48AWkskmdHaVDP4BcelrTI3rMXdXF5D";
        let pkb = BASE64.decode(pk.as_bytes()).unwrap();
        let hit = "200100107B1A74DF365639CC39F1D578";
        assert_eq!(
            wire(&format!(
                "www HIP ( 2 {hit}\n {pk}\n rvs.example.com. rvs2 )"
            )),
            cat(&[
                &[16, 2],
                &(pkb.len() as u16).to_be_bytes(),
                &h(hit),
                &pkb,
                &n("rvs.example.com."),
                &n("rvs2.example.com.")
            ])
        );
        assert_eq!(
            wire(&format!("www HIP 2 {hit} {pk}")).len(),
            4 + 16 + pkb.len()
        );
    }

    #[test]
    fn hinfo_naptr_strings() {
        assert_eq!(
            wire("@ HINFO \"PC Intel\" Linux"),
            cat(&[&[8], b"PC Intel", &[5], b"Linux"])
        );
        assert_eq!(err("@ HINFO PC"), "z:2: missing OS in HINFO record");
        // RFC 3403 6.2.
        assert_eq!(
            wire(r#"@ NAPTR 100 10 "" "" "!^urn:cid:.+@([^\\.]+\\.)(.*)$!\\2!i" ."#),
            cat(&[
                &h("0064 000a 00 00"),
                &[33],
                br"!^urn:cid:.+@([^\.]+\.)(.*)$!\2!i",
                &[0]
            ])
        );
        assert_eq!(
            wire("@ NAPTR 100 10 \"s\" \"SIP+D2U\" \"\" _sip._udp"),
            cat(&[
                &h("0064 000a"),
                &[1],
                b"s",
                &[7],
                b"SIP+D2U",
                &[0],
                &n("_sip._udp.example.com.")
            ])
        );
    }

    #[test]
    fn generic_form_gives_the_same_bytes() {
        assert_eq!(wire("@ DS \\# 4 ec450501"), h("ec450501"));
        assert_eq!(
            read("@ TYPE43 \\# 4 ec450501").unwrap()[0].0,
            RecordType::DS
        );
        assert_eq!(
            read("@ type256 10 1 \"x\"").unwrap()[0].0,
            RecordType::Unknown(256)
        );
        assert_eq!(read("@ SPF x").unwrap()[0].0, RecordType::Unknown(99));
    }

    // -----------------------------------------------------------------------------------------
    // RFC 9460 Appendix D.

    fn svcb(rdata: &str) -> Vec<u8> {
        wire(&format!("@ SVCB {rdata}"))
    }

    #[test]
    fn svcb_d1_alias_form() {
        assert_eq!(
            wire("@ HTTPS 0 foo.example.com."),
            cat(&[&h("0000"), &n("foo.example.com.")])
        );
    }

    #[test]
    fn svcb_d2_service_form() {
        assert_eq!(svcb("1 ."), h("0001 00"));
        assert_eq!(
            svcb("16 foo.example.com. port=53"),
            cat(&[&h("0010"), &n("foo.example.com."), &h("0003 0002 0035")])
        );
        assert_eq!(
            svcb("1 foo.example.com. key667=hello"),
            cat(&[
                &h("0001"),
                &n("foo.example.com."),
                &h("029b 0005 68656c6c6f")
            ])
        );
        assert_eq!(
            svcb(r#"1 foo.example.com. key667="hello\210qoo""#),
            cat(&[
                &h("0001"),
                &n("foo.example.com."),
                &h("029b 0009 68656c6c6fd2716f6f")
            ])
        );
        assert_eq!(
            svcb(r#"1 foo.example.com. ( ipv6hint="2001:db8::1,2001:db8::53:1" )"#),
            cat(&[
                &h("0001"),
                &n("foo.example.com."),
                &h("0006 0020 20010db8000000000000000000000001 20010db8000000000000000000530001")
            ])
        );
        assert_eq!(
            svcb(r#"1 example.com. ( ipv6hint="2001:db8:ffff:ffff:ffff:ffff:198.51.100.100" )"#),
            cat(&[
                &h("0001"),
                &n("example.com."),
                &h("0006 0010 20010db8ffffffffffffffffc6336464")
            ])
        );
        // Neither the params nor the mandatory keys sorted in presentation; sorted on the wire.
        assert_eq!(
            svcb(
                "16 foo.example.org. ( alpn=h2,h3-19 mandatory=ipv4hint,alpn ipv4hint=192.0.2.1 )"
            ),
            cat(&[
                &h("0010"),
                &n("foo.example.org."),
                &h("0000 0004 0001 0004 | 0001 0009 02 6832 05 68332d3139 | 0004 0004 c0000201")
            ])
        );
        // The two levels of escaping in alpn: "f\oo,bar" and "h2".
        let want = cat(&[
            &h("0010"),
            &n("foo.example.org."),
            &h("0001 000c 08 665c6f6f2c626172 02 6832"),
        ]);
        assert_eq!(svcb(r#"16 foo.example.org. alpn="f\\\\oo\\,bar,h2""#), want);
        assert_eq!(
            svcb(r#"16 foo.example.org. alpn=f\\\092oo\092,bar,h2"#),
            want
        );
    }

    #[test]
    fn svcb_d3_failure_cases_are_refused() {
        let cases = [
            (
                "1 foo.example.com. ( key123=abc key123=def )",
                "given twice",
            ),
            ("1 foo.example.com. mandatory", "needs a value"),
            ("1 foo.example.com. alpn", "needs a value"),
            ("1 foo.example.com. port", "needs a value"),
            ("1 foo.example.com. ipv4hint", "needs a value"),
            ("1 foo.example.com. ipv6hint", "needs a value"),
            ("1 foo.example.com. no-default-alpn=abc", "takes no value"),
            (
                "1 foo.example.com. mandatory=key123",
                "key123 is listed but not present",
            ),
            (
                "1 foo.example.com. mandatory=mandatory",
                "must not list itself",
            ),
            (
                "1 foo.example.com. ( mandatory=key123,key123 key123=abc )",
                "key123 listed twice",
            ),
        ];
        for (rdata, why) in cases {
            for ty in ["SVCB", "HTTPS"] {
                let e = err(&format!("@ {ty} {rdata}"));
                assert!(
                    e.starts_with("z:2: ") && e.contains(why),
                    "{ty} {rdata}: {e}"
                );
            }
        }
    }

    #[test]
    fn svcb_other_keys_and_forms() {
        // `alpn=h2\,h3` is two ALPN ids: the character-string escape `\,` leaves a plain comma,
        // which then separates items (RFC 9460 A.1); one id "h2,h3" needs `\\,`.
        let two = cat(&[&h("0001"), &[0], &h("0001 0006 026832 026833")]);
        assert_eq!(svcb(r"1 . alpn=h2\,h3"), two);
        assert_eq!(svcb(r#"1 . alpn="h2,h3""#), two);
        assert_eq!(
            svcb(r"1 . alpn=h2\\,h3"),
            cat(&[&h("0001"), &[0], &h("0001 0006 05 68322c6833")])
        );
        // no-default-alpn, ech, dohpath (RFC 9461), private keys, quoted port.
        assert_eq!(
            svcb(
                r#"1 . dohpath=/dns-query{?dns} alpn=h2 no-default-alpn ech="AAEC" port="8443" key65280="""#
            ),
            cat(&[
                &h("0001"),
                &[0],
                &h("0001 0003 026832 | 0002 0000 | 0003 0002 20fb | 0005 0003 000102"),
                &h("0007 0010"),
                b"/dns-query{?dns}",
                &h("ff00 0000"),
            ])
        );
        assert!(err("@ SVCB 1 . key65535=x").contains("invalid SVCB SvcParamKey \"key65535\""));
        assert!(err("@ SVCB 1 . foo=x").contains("invalid SVCB SvcParamKey \"foo\""));
        assert!(err("@ SVCB 1 . port=99999").contains("not a port number"));
        assert!(err("@ SVCB 1 . ipv4hint=192.0.2.1,::1").contains("invalid IPv4 address \"::1\""));
        assert!(err("@ SVCB 1 . alpn=h2,,h3").contains("empty item"));
        assert!(err("@ SVCB 1 . ech=!!!").contains("not base64"));
    }
}
