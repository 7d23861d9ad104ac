//! Signing a zone's static data (RFC 4035 2): DNSKEY/CDS/CDNSKEY at the apex, an NSEC chain
//! (RFC 4034 4) and an RRSIG over every authoritative RRset, written into the zone exactly as a
//! pre-signed zone read from a file holds them (`zone::Builder`: RRSIGs one RRset per node, each
//! record with the TTL of the RRset it covers).
//!
//! What is signed (RFC 4035 2.2): every RRset of every authoritative name; at a delegation point
//! only DS and NSEC (the NS RRset and glue belong to the child); nothing below a cut (glue).
//! What the chain holds (RFC 4035 2.3): every authoritative name and every delegation point;
//! not empty non-terminals, not glue. A GSLB name (no RRsets, a rule) gets an NSEC whose type
//! bitmap lists what its rule can answer, so a denial never contradicts the dynamic answer.
//!
//! Canonical form (RFC 4034 6, RFC 6840 5.1): owner lowercase; names in RDATA lowercase for the
//! types of RFC 4034 6.2 (not SVCB/HTTPS, RFC 9460 2.2, and not NSEC); records of an RRset
//! sorted by their canonical RDATA as unsigned byte strings, duplicates dropped (6.3).

use hickory_proto::rr::RecordType;

use super::keys::{Key, Role};
use crate::zone::name;
use crate::zone::{Node, Part, RRset, WireRdata, Zone};

/// Inception and expiration (RFC 4034 3.1.5), seconds since the epoch (serial arithmetic is
/// RFC 1982's, but until 2106 these are plain numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub inception: u32,
    pub expiration: u32,
}

/// How a zone is signed.
#[derive(Debug)]
pub struct Signing<'a> {
    pub keys: &'a [Key],
    pub window: Window,
    /// TTL of DNSKEY, CDS and CDNSKEY; None: the SOA's.
    pub dnskey_ttl: Option<u32>,
    /// Publish CDS and CDNSKEY for the KSK/CSK (RFC 7344, RFC 8078).
    pub cds: bool,
    /// The version of the zone serving now: a signature of it over the same RRset, key and
    /// window is kept rather than made again (ECDSA signatures differ each time they are made,
    /// and a reload of unchanged data must not look like a change to the serial policy).
    pub previous: Option<&'a Zone>,
}

/// What signing did, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub nsec: usize,
    pub rrsigs: usize,
}

const CLASS_IN: [u8; 2] = [0, 1];

/// Types whose RDATA names are lowercased in canonical form (RFC 4034 6.2 item 3, RFC 6840 5.1
/// without NSEC; RRSIG is never signed here).
fn lowercases_names(code: u16) -> bool {
    matches!(
        code,
        2 | 3
            | 4
            | 5
            | 6
            | 7
            | 8
            | 9
            | 12
            | 14
            | 15
            | 17
            | 18
            | 21
            | 24
            | 26
            | 30
            | 33
            | 35
            | 36
            | 38
            | 39
    )
}

/// Lowercases the wire name starting at `at` in `b` (ASCII only, RFC 4034 6.1); returns the
/// offset after it, or None when there is no whole name there.
fn lower_name(b: &mut [u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)? as usize;
        if len > 63 {
            return None;
        }
        if len == 0 {
            return Some(at + 1);
        }
        b.get_mut(at + 1..at + 1 + len)?.make_ascii_lowercase();
        at += 1 + len;
    }
}

/// Names inside the opaque bytes of the listed types that are kept as one byte run (RP, AFSDB,
/// NAPTR, ...): lowercased in place per each type's RDATA layout. A layout that does not parse
/// is left as it is (it was accepted by the reader, so this does not happen).
fn lower_embedded(code: u16, b: &mut [u8]) {
    let _ = (|| -> Option<()> {
        match code {
            // MD, MF, MB, MG, MR: one name.
            3 | 4 | 7 | 8 | 9 => {
                lower_name(b, 0)?;
            }
            // MINFO, RP: two names.
            14 | 17 => {
                let at = lower_name(b, 0)?;
                lower_name(b, at)?;
            }
            // AFSDB, RT, KX: 16-bit value, name.
            18 | 21 | 36 => {
                lower_name(b, 2)?;
            }
            // PX: preference, MAP822, MAPX400.
            26 => {
                let at = lower_name(b, 2)?;
                lower_name(b, at)?;
            }
            // NAPTR: order, preference, three character strings, replacement.
            35 => {
                let mut at = 4;
                for _ in 0..3 {
                    at += 1 + *b.get(at)? as usize;
                }
                lower_name(b, at)?;
            }
            // SIG: 18 fixed bytes, the signer's name.
            24 => {
                lower_name(b, 18)?;
            }
            // NXT: next name, bitmap.
            30 => {
                lower_name(b, 0)?;
            }
            // A6: prefix length, address suffix, prefix name when the length is not 0.
            38 => {
                let plen = *b.first()? as usize;
                if plen > 0 && plen <= 128 {
                    lower_name(b, 1 + (128 - plen).div_ceil(8))?;
                }
            }
            _ => {}
        }
        Some(())
    })();
}

/// The canonical wire form of one record's RDATA (RFC 4034 6.2).
pub fn canonical_rdata(rtype: RecordType, rd: &WireRdata, out: &mut Vec<u8>) {
    let code = u16::from(rtype);
    let lower = lowercases_names(code);
    for p in rd.parts() {
        let start = out.len();
        match p {
            Part::Bytes(b) => {
                out.extend_from_slice(b);
                if lower {
                    lower_embedded(code, &mut out[start..]);
                }
            }
            Part::Name { wire, .. } => {
                out.extend_from_slice(wire);
                if lower {
                    out[start..].make_ascii_lowercase();
                }
            }
        }
    }
}

/// RFC 4034 6.1 canonical order of names: by labels from the root down, each compared as
/// lowercase bytes (keys are lowercase already), a shorter name before its descendants.
fn canonical_labels(key: &[u8]) -> Vec<&[u8]> {
    let mut labels = Vec::with_capacity(8);
    let mut k = key;
    while let Some(p) = name::parent(k) {
        labels.push(&k[1..1 + k[0] as usize]);
        k = p;
    }
    labels.reverse();
    labels
}

/// Whether a key signs RRsets of `rtype` (RFC 6781 3.1; CDS/CDNSKEY by a key the DS set
/// points at as well, RFC 7344 4.1).
fn signs(key: &Key, rtype: RecordType) -> bool {
    match key.role {
        Role::Csk => true,
        Role::Ksk => matches!(
            rtype,
            RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY
        ),
        Role::Zsk => rtype != RecordType::DNSKEY,
    }
}

/// The RRSIG RDATA fields before the signature (RFC 4034 3.1): type covered, algorithm,
/// labels, original TTL, expiration, inception, key tag, signer's name.
fn rrsig_head(owner: &[u8], set: &RRset, key: &Key, signer: &[u8], window: Window) -> Vec<u8> {
    // RFC 4034 3.1.3: labels of the owner without the root and a leading wildcard.
    let mut labels = name::label_count(owner);
    if owner.starts_with(b"\x01*") {
        labels -= 1;
    }
    let mut head = Vec::with_capacity(18 + signer.len() + 64);
    head.extend_from_slice(&u16::from(set.rtype).to_be_bytes());
    head.push(key.algorithm.number());
    head.push(labels as u8);
    head.extend_from_slice(&set.ttl.to_be_bytes());
    head.extend_from_slice(&window.expiration.to_be_bytes());
    head.extend_from_slice(&window.inception.to_be_bytes());
    head.extend_from_slice(&key.tag().to_be_bytes());
    head.extend_from_slice(signer);
    head
}

/// RRSIG RDATA over one RRset (RFC 4034 3.1.8.1): signed data = RRSIG RDATA without the
/// signature | each record in canonical form, sorted by canonical RDATA.
pub fn rrsig(
    owner: &[u8],
    set: &RRset,
    key: &Key,
    signer: &[u8],
    window: Window,
) -> Result<Vec<u8>, String> {
    let mut head = rrsig_head(owner, set, key, signer, window);
    let mut rdatas: Vec<Vec<u8>> = set
        .rdatas
        .iter()
        .map(|rd| {
            let mut v = Vec::with_capacity(rd.len());
            canonical_rdata(set.rtype, rd, &mut v);
            v
        })
        .collect();
    rdatas.sort();
    rdatas.dedup();
    let mut data = head.clone();
    for rd in &rdatas {
        data.extend_from_slice(owner);
        data.extend_from_slice(&u16::from(set.rtype).to_be_bytes());
        data.extend_from_slice(&CLASS_IN);
        data.extend_from_slice(&set.ttl.to_be_bytes());
        data.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        data.extend_from_slice(rd);
    }
    let sig = key.sign(&data)?;
    head.extend_from_slice(&sig);
    Ok(head)
}

/// The signature `previous` holds at `owner` over the same RRset with the same fields, if any.
fn reuse(previous: Option<&Zone>, owner: &[u8], set: &RRset, head: &[u8]) -> Option<WireRdata> {
    let node = previous?.nodes.get(owner)?;
    let old = node.rrset(set.rtype)?;
    if old.ttl != set.ttl || old.rdatas != set.rdatas {
        return None;
    }
    node.rrset(RecordType::RRSIG)?.rdatas.iter().find_map(|rd| {
        let mut bytes = Vec::with_capacity(rd.len());
        rd.uncompressed(&mut bytes);
        (bytes.len() > head.len() && bytes.starts_with(head))
            .then(|| WireRdata::opaque_with_ttl(&bytes, set.ttl))
    })
}

/// A signature over `set` at `owner`: the previous version's when it still fits, else new.
fn signature(
    previous: Option<&Zone>,
    owner: &[u8],
    set: &RRset,
    key: &Key,
    signer: &[u8],
    window: Window,
) -> Result<WireRdata, String> {
    let head = rrsig_head(owner, set, key, signer, window);
    if let Some(old) = reuse(previous, owner, set, &head) {
        return Ok(old);
    }
    Ok(WireRdata::opaque_with_ttl(
        &rrsig(owner, set, key, signer, window)?,
        set.ttl,
    ))
}

/// Puts `set` into the node's RRsets, kept sorted by type (replacing one of the same type).
fn put(node: &mut Node, set: RRset) {
    match node
        .rrsets
        .binary_search_by_key(&u16::from(set.rtype), |s| u16::from(s.rtype))
    {
        Ok(i) => node.rrsets[i] = set,
        Err(i) => node.rrsets.insert(i, set),
    }
}

/// Signs `zone` in place. `rule_types` gives the types a GSLB rule can answer (by rule index).
/// Signatures, NSEC/NSEC3 records and CDS/CDNSKEY already in the zone are replaced; DNSKEYs
/// written in the zone file stay published beside the configured keys.
pub fn sign_zone(
    zone: &mut Zone,
    s: &Signing<'_>,
    rule_types: &dyn Fn(u32) -> Vec<RecordType>,
) -> Result<Stats, String> {
    let origin = zone.origin_key.clone();
    let negative_ttl = zone.negative_ttl;
    zone.nsec3 = Default::default();
    let mut removed = 0;
    for node in zone.nodes.nodes_mut() {
        let before = node.rrsets.iter().map(|s| s.rdatas.len()).sum::<usize>();
        node.rrsets.retain(|set| {
            !matches!(
                set.rtype,
                RecordType::RRSIG
                    | RecordType::NSEC
                    | RecordType::NSEC3
                    | RecordType::NSEC3PARAM
                    | RecordType::CDS
                    | RecordType::CDNSKEY
            )
        });
        removed += before - node.rrsets.iter().map(|s| s.rdatas.len()).sum::<usize>();
    }

    // The apex: DNSKEY (the zone file's and the configured keys), CDS and CDNSKEY.
    let soa_ttl = zone.soa().ttl;
    let key_ttl = s.dnskey_ttl.unwrap_or(soa_ttl);
    let mut added: isize = 0;
    {
        let apex = zone.nodes.get_mut(&origin).ok_or("the zone has no apex")?;
        let mut dnskeys: Vec<WireRdata> = apex
            .rrset(RecordType::DNSKEY)
            .map(|set| set.rdatas.clone())
            .unwrap_or_default();
        let mut cds = Vec::new();
        let mut cdnskey = Vec::new();
        for k in s.keys {
            let rd = WireRdata::opaque(&k.dnskey_rdata());
            if !dnskeys.iter().any(|d| d.same_data(&rd)) {
                dnskeys.push(rd);
            }
            if s.cds && k.role != Role::Zsk {
                cds.push(WireRdata::opaque(&super::keys::ds_rdata(
                    &origin,
                    &k.dnskey_rdata(),
                    2,
                )?));
                cdnskey.push(WireRdata::opaque(&k.dnskey_rdata()));
            }
        }
        let had = apex.rrset(RecordType::DNSKEY).map_or(0, |s| s.rdatas.len());
        added -= had as isize;
        for (rtype, rdatas) in [
            (RecordType::DNSKEY, dnskeys),
            (RecordType::CDS, cds),
            (RecordType::CDNSKEY, cdnskey),
        ] {
            if !rdatas.is_empty() {
                added += rdatas.len() as isize;
                put(
                    apex,
                    RRset {
                        rtype,
                        ttl: key_ttl,
                        rdatas,
                    },
                );
            }
        }
    }

    // Which names the chain holds: not below a cut (glue), not empty non-terminals.
    let occluded = |key: &[u8]| -> bool {
        let mut k = name::parent(key);
        while let Some(p) = k {
            if p.len() <= origin.len() {
                return false;
            }
            if zone.nodes.get(p).is_some_and(|n| n.cut) {
                return true;
            }
            k = name::parent(p);
        }
        false
    };
    let mut chain: Vec<(Vec<&[u8]>, usize)> = zone
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| (!n.rrsets.is_empty() || n.rule.is_some()) && !occluded(&n.key))
        .map(|(i, n)| (canonical_labels(&n.key), i))
        .collect();
    chain.sort_unstable();
    let order: Vec<usize> = chain.into_iter().map(|(_, i)| i).collect();
    if order.is_empty() {
        return Err("nothing to sign".into());
    }

    // The NSEC records (RFC 4034 4.1.1: the next name in canonical order, the last pointing back
    // at the apex; TTL the negative TTL, RFC 9077 3).
    let mut nsecs = Vec::with_capacity(order.len());
    for (at, &i) in order.iter().enumerate() {
        let node = &zone.nodes.nodes()[i];
        // The next owner as written (RFC 6840 5.1: NSEC RDATA names are not lowercased for
        // signing), as BIND's dnssec-signzone writes it.
        let next = zone.nodes.nodes()[order[(at + 1) % order.len()]].owner();
        let mut types: Vec<u16> = vec![u16::from(RecordType::RRSIG), u16::from(RecordType::NSEC)];
        if node.cut {
            // RFC 4035 2.3: at a delegation point NS, DS if present, RRSIG and NSEC.
            types.extend(
                node.rrsets
                    .iter()
                    .filter(|s| matches!(s.rtype, RecordType::NS | RecordType::DS))
                    .map(|s| u16::from(s.rtype)),
            );
        } else {
            types.extend(node.rrsets.iter().map(|s| u16::from(s.rtype)));
        }
        if let Some(rule) = node.rule {
            types.extend(rule_types(rule).into_iter().map(u16::from));
        }
        let mut rdata = next.to_vec();
        rdata.extend_from_slice(&crate::zone::rtypes::type_bitmap(&types));
        nsecs.push((i, rdata));
    }
    let nsec_count = nsecs.len();
    for (i, rdata) in nsecs {
        put(
            &mut zone.nodes.nodes_mut()[i],
            RRset {
                rtype: RecordType::NSEC,
                ttl: negative_ttl,
                rdatas: vec![WireRdata::opaque(&rdata)],
            },
        );
    }

    // The signatures, spread over the CPUs: signing is nearly all of the work.
    let nodes = zone.nodes.nodes();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(order.len().div_ceil(256))
        .max(1);
    let chunk = order.len().div_ceil(threads);
    let results: Vec<Result<Vec<(usize, RRset)>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = order
            .chunks(chunk)
            .map(|part| {
                let origin = &origin;
                scope.spawn(move || -> Result<Vec<(usize, RRset)>, String> {
                    let mut out = Vec::with_capacity(part.len());
                    for &i in part {
                        let node = &nodes[i];
                        let mut sigs = Vec::new();
                        let mut max_ttl = 0;
                        for set in &node.rrsets {
                            if node.cut && !matches!(set.rtype, RecordType::DS | RecordType::NSEC) {
                                continue;
                            }
                            for k in s.keys.iter().filter(|k| signs(k, set.rtype)) {
                                sigs.push(signature(
                                    s.previous, &node.key, set, k, origin, s.window,
                                )?);
                                max_ttl = max_ttl.max(set.ttl);
                            }
                        }
                        if !sigs.is_empty() {
                            out.push((
                                i,
                                RRset {
                                    rtype: RecordType::RRSIG,
                                    ttl: max_ttl,
                                    rdatas: sigs,
                                },
                            ));
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a signing thread panicked".into()))
            })
            .collect()
    });
    let mut rrsigs = 0;
    for r in results {
        for (i, set) in r? {
            rrsigs += set.rdatas.len();
            put(&mut zone.nodes.nodes_mut()[i], set);
        }
    }
    zone.records = (zone.records as isize + added) as usize + nsec_count + rrsigs - removed;
    Ok(Stats {
        nsec: nsec_count,
        rrsigs,
    })
}

/// Signs the SOA again (after the serial policy rewrote it during the build); `previous`'s
/// signature is kept when it covers the same SOA.
pub fn resign_soa(
    zone: &mut Zone,
    keys: &[Key],
    window: Window,
    previous: Option<&Zone>,
) -> Result<(), String> {
    let origin = zone.origin_key.clone();
    let soa = zone.soa().clone();
    let mut fresh = Vec::new();
    for k in keys.iter().filter(|k| signs(k, RecordType::SOA)) {
        fresh.push(signature(previous, &origin, &soa, k, &origin, window)?);
    }
    let apex = zone.nodes.get_mut(&origin).ok_or("the zone has no apex")?;
    let Some(set) = apex
        .rrsets
        .iter_mut()
        .find(|s| s.rtype == RecordType::RRSIG)
    else {
        return Ok(());
    };
    let soa_code = u16::from(RecordType::SOA);
    set.rdatas.retain(|rd| {
        !matches!(rd.parts().next(), Some(Part::Bytes(b)) if b.len() >= 2 && u16::from_be_bytes([b[0], b[1]]) == soa_code)
    });
    set.rdatas.extend(fresh);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_matches_rfc4034_example() {
        // RFC 4034 4.3: A MX RRSIG NSEC TYPE1234.
        let got = crate::zone::rtypes::type_bitmap(&[1, 15, 46, 47, 1234]);
        let mut want: Vec<u8> = vec![0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b];
        want.extend([0u8; 26]);
        want.push(0x20);
        assert_eq!(got, want);
    }

    #[test]
    fn canonical_order_is_rfc4034_6_1() {
        // RFC 4034 6.1's example, in order.
        let labels: [&[&[u8]]; 9] = [
            &[b"example"],
            &[b"a", b"example"],
            &[b"yljkjljk", b"a", b"example"],
            &[b"z", b"a", b"example"],
            &[b"zabc", b"a", b"example"],
            &[b"z", b"example"],
            &[b"\x01", b"z", b"example"],
            &[b"*", b"z", b"example"],
            &[b"\xc8", b"z", b"example"],
        ];
        // Keys are lowercase wire names (`name::key_of`).
        let keys: Vec<name::Key> = labels
            .iter()
            .map(|ls| {
                let mut k = Vec::new();
                for l in *ls {
                    k.push(l.len() as u8);
                    k.extend_from_slice(l);
                }
                k.push(0);
                k.into_boxed_slice()
            })
            .collect();
        let mut sorted: Vec<&name::Key> = keys.iter().rev().collect();
        sorted.sort_by(|a, b| canonical_labels(a).cmp(&canonical_labels(b)));
        let want: Vec<&name::Key> = keys.iter().collect();
        assert_eq!(sorted, want);
    }

    #[test]
    fn rp_names_are_lowercased_in_canonical_form() {
        let mut b = b"\x02Ab\x00\x03CdE\x00".to_vec();
        lower_embedded(17, &mut b);
        assert_eq!(b, b"\x02ab\x00\x03cde\x00");
    }
}
