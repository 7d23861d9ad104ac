//! DNSSEC denial of existence for a signed zone: which NSEC or NSEC3 records prove that a name or
//! a type does not exist (RFC 4035 3.1.3, RFC 5155 7.2), found in indexes built once at load.
//!
//! A zone "holds DNSSEC data" when its apex has a DNSKEY RRset; only then is an [`Index`] built
//! (`Zone::dnssec`), and only then does the engine add RRSIGs and proofs to answers for a query
//! with DO set. The zone representation is the loader's: NSEC records and every RRSIG at the
//! nodes of `Zone::nodes`, NSEC3 records and their RRSIGs in `Zone::nsec3`; a zone signed when
//! the snapshot is built looks the same and gets its index from `Zone::index_dnssec`.
//!
//! The index holds
//! - the nodes that own an NSEC RRset in canonical order (RFC 4034 6.1), so the NSEC matching or
//!   covering a name is a binary search;
//! - the NSEC3 owners' hashed labels (base32hex, lowercase: that alphabet sorts as the hashes
//!   do) sorted, and the NSEC3PARAM the zone hashes names with (RFC 5155 4, 7.2).
//!
//! Per query only the names a proof is about are hashed (with hickory-proto's NSEC3 hash: SHA-1,
//! iterated, RFC 5155 5). This module decides which records prove what; the engine writes them.
//! No I/O, no allocation beyond an NSEC3 name's hash.

use std::cmp::Ordering;

use hickory_proto::dnssec::Nsec3HashAlgorithm;
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use smallvec::SmallVec;

use super::{Node, NodeTable, name};

/// The DNSSEC lookup tables of a signed zone.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Indices into `Zone::nodes` of the nodes owning an NSEC RRset, in canonical order.
    nsec: Vec<u32>,
    /// (hashed owner label, lowercase base32hex; index into `Zone::nsec3`), sorted by label.
    nsec3: Vec<(Box<[u8]>, u32)>,
    /// How the zone hashes names for NSEC3: from its NSEC3PARAM (RFC 5155 4), or else from its
    /// first NSEC3 record.
    param: Option<Param>,
}

#[derive(Debug, Clone)]
struct Param {
    salt: Box<[u8]>,
    iterations: u16,
}

/// What a negative (or wildcard) answer has to prove, and the names it is about. `ce` is the
/// closest encloser's key (a suffix of the question's key), where the name does not exist.
#[derive(Debug, Clone, Copy)]
pub enum Denial<'k> {
    /// RFC 4035 3.1.3.2, RFC 5155 7.2.2: the name and the wildcard at its closest encloser do
    /// not exist.
    NxDomain { ce: &'k [u8] },
    /// RFC 4035 3.1.3.1, RFC 5155 7.2.3/7.2.4: the name exists (or is an empty non-terminal)
    /// without the type.
    NoData,
    /// RFC 4035 3.1.4, RFC 5155 7.2.7: a referral to an unsigned delegation, about the cut's name:
    /// the cut's own NSEC (never a covering one: the cut exists), or its NSEC3 or, under
    /// opt-out, the closest provable encloser proof.
    NoDs,
    /// RFC 4035 3.1.3.4, RFC 5155 7.2.5: the name does not exist and the wildcard that would
    /// answer it has no data of the type.
    WildcardNoData { ce: &'k [u8] },
    /// RFC 4035 3.1.3.3, RFC 5155 7.2.6: the name a wildcard answered does not exist itself.
    WildcardAnswer { ce: &'k [u8] },
}

/// The owners of the NSEC (or NSEC3) records a proof needs, each once; the engine answers with
/// the RRset of `rtype` at each and its RRSIGs.
#[derive(Debug, Default)]
pub struct Proof<'z> {
    pub rtype: Option<RecordType>,
    pub nodes: SmallVec<[&'z Node; 3]>,
}

impl<'z> Proof<'z> {
    fn add(&mut self, node: Option<&'z Node>) {
        if let Some(n) = node
            && !self.nodes.iter().any(|m| std::ptr::eq(*m, n))
        {
            self.nodes.push(n);
        }
    }
}

/// RFC 4034 6.1: canonical order of two keys (lowercase wire names): label by label from the
/// root, each label compared as an octet string where a shorter prefix sorts first.
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut la, mut lb) = ([0u8; 128], [0u8; 128]);
    let (na, nb) = (label_starts(a, &mut la), label_starts(b, &mut lb));
    for k in 1..=na.min(nb) {
        let (x, y) = (label(a, la[na - k]), label(b, lb[nb - k]));
        match x.cmp(y) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    na.cmp(&nb)
}

/// Offsets of the non-root labels of `key`, leftmost first; returns how many.
fn label_starts(key: &[u8], out: &mut [u8; 128]) -> usize {
    let (mut n, mut off) = (0, 0usize);
    while let Some(&len) = key.get(off) {
        if len == 0 || n == out.len() {
            break;
        }
        out[n] = off as u8;
        n += 1;
        off += 1 + len as usize;
    }
    n
}

fn label(key: &[u8], at: u8) -> &[u8] {
    let at = at as usize;
    let len = key[at] as usize;
    key.get(at + 1..at + 1 + len).unwrap_or(&[])
}

/// `*.<ce>` in `buf`; None when it would be longer than a name may be.
fn wildcard_of<'b>(ce: &[u8], buf: &'b mut [u8; 257]) -> Option<&'b [u8]> {
    if ce.len() + 2 > 255 {
        return None;
    }
    buf[0] = 1;
    buf[1] = b'*';
    buf[2..2 + ce.len()].copy_from_slice(ce);
    Some(&buf[..2 + ce.len()])
}

/// RFC 5155 1.3: the name one label longer than the closest encloser `ce` on the way to `key`.
fn next_closer<'k>(key: &'k [u8], ce: &[u8]) -> &'k [u8] {
    let mut k = key;
    while let Some(p) = name::parent(k) {
        if p.len() <= ce.len() {
            break;
        }
        k = p;
    }
    k
}

fn rdata_bytes(node: &Node, rtype: RecordType) -> Option<Vec<u8>> {
    let set = node.rrset(rtype)?;
    let mut out = Vec::new();
    set.rdatas.first()?.uncompressed(&mut out);
    Some(out)
}

/// (hash algorithm, iterations, salt) of NSEC3PARAM or NSEC3 RDATA (RFC 5155 3.2, 4.2).
fn param_of(rdata: &[u8]) -> Option<Param> {
    let (&alg, rest) = rdata.split_first()?;
    if alg != 1 {
        return None;
    }
    let iterations = u16::from_be_bytes([*rest.get(1)?, *rest.get(2)?]);
    let salt_len = *rest.get(3)? as usize;
    let salt = rest.get(4..4 + salt_len)?;
    Some(Param {
        salt: salt.into(),
        iterations,
    })
}

impl Index {
    /// The index of a zone whose apex at `origin_key` holds a DNSKEY RRset; None for a zone
    /// without DNSSEC data (it answers as if DO were never set).
    pub fn build(origin_key: &[u8], nodes: &NodeTable, nsec3: &NodeTable) -> Option<Index> {
        let apex = nodes.get(origin_key)?;
        apex.rrset(RecordType::DNSKEY)?;
        let mut nsec: Vec<u32> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.rrset(RecordType::NSEC).is_some())
            .map(|(i, _)| i as u32)
            .collect();
        nsec.sort_by(|&a, &b| canonical_cmp(&nodes.at(a).key, &nodes.at(b).key));
        let mut hashed: Vec<(Box<[u8]>, u32)> = nsec3
            .iter()
            .enumerate()
            .filter(|(_, n)| n.rrset(RecordType::NSEC3).is_some())
            .map(|(i, n)| (label(&n.key, 0).into(), i as u32))
            .collect();
        hashed.sort();
        let param = rdata_bytes(apex, RecordType::NSEC3PARAM)
            .or_else(|| {
                let (_, first) = hashed.first()?;
                rdata_bytes(nsec3.at(*first), RecordType::NSEC3)
            })
            .and_then(|r| param_of(&r));
        Some(Index {
            nsec,
            nsec3: hashed,
            param,
        })
    }

    /// The proof of `what` about `key` (the question's name, or a delegation's for `NoData` of a
    /// referral) in the zone with tables `nodes` and `nsec3`: NSEC when the zone has an NSEC
    /// chain, else NSEC3, else nothing.
    pub fn proof<'z>(
        &self,
        nodes: &'z NodeTable,
        nsec3: &'z NodeTable,
        key: &[u8],
        what: Denial<'_>,
    ) -> Proof<'z> {
        let mut p = Proof::default();
        let mut wbuf = [0u8; 257];
        if !self.nsec.is_empty() {
            p.rtype = Some(RecordType::NSEC);
            if let Denial::NoDs = what {
                p.add(
                    nodes
                        .get(key)
                        .filter(|n| n.rrset(RecordType::NSEC).is_some()),
                );
                return p;
            }
            // RFC 4035 3.1.3: the NSEC matching or covering each name the answer is about
            // (for an empty non-terminal the one covering it, whose next name is below it).
            p.add(self.nsec_at_or_before(nodes, key));
            match what {
                Denial::NxDomain { ce } | Denial::WildcardNoData { ce } => {
                    if let Some(w) = wildcard_of(ce, &mut wbuf) {
                        p.add(self.nsec_at_or_before(nodes, w));
                    }
                }
                Denial::NoData | Denial::NoDs | Denial::WildcardAnswer { .. } => {}
            }
            return p;
        }
        if self.nsec3.is_empty() || self.param.is_none() {
            return p;
        }
        p.rtype = Some(RecordType::NSEC3);
        match what {
            Denial::NxDomain { ce } => {
                // RFC 5155 7.2.2: closest encloser proof and the wildcard at it.
                p.add(self.nsec3_matching(nsec3, ce));
                p.add(self.nsec3_covering(nsec3, next_closer(key, ce)));
                if let Some(w) = wildcard_of(ce, &mut wbuf) {
                    p.add(self.nsec3_covering(nsec3, w));
                }
            }
            Denial::NoData | Denial::NoDs => match self.nsec3_matching(nsec3, key) {
                // RFC 5155 7.2.3 (and an empty non-terminal: NSEC3 chains hold them).
                Some(n) => p.add(Some(n)),
                // RFC 5155 7.2.4 / 7.2.7: no NSEC3 for the name (a DS question or a delegation
                // under opt-out): the closest provable encloser proof, the next closer name's
                // covering NSEC3 carrying the opt-out flag.
                None => {
                    let mut ce = key;
                    while let Some(parent) = name::parent(ce) {
                        ce = parent;
                        if let Some(n) = self.nsec3_matching(nsec3, ce) {
                            p.add(Some(n));
                            p.add(self.nsec3_covering(nsec3, next_closer(key, ce)));
                            break;
                        }
                    }
                }
            },
            Denial::WildcardNoData { ce } => {
                // RFC 5155 7.2.5: closest encloser proof and the wildcard's own NSEC3.
                p.add(self.nsec3_matching(nsec3, ce));
                p.add(self.nsec3_covering(nsec3, next_closer(key, ce)));
                if let Some(w) = wildcard_of(ce, &mut wbuf) {
                    p.add(self.nsec3_matching(nsec3, w));
                }
            }
            Denial::WildcardAnswer { ce } => {
                // RFC 5155 7.2.6: the next closer name does not exist.
                p.add(self.nsec3_covering(nsec3, next_closer(key, ce)));
            }
        }
        p
    }

    /// The NSEC owned by `key` or, when there is none, the one covering it (the last owner
    /// before it in canonical order; the apex's chain wraps around, RFC 4034 4.1.1).
    fn nsec_at_or_before<'z>(&self, nodes: &'z NodeTable, key: &[u8]) -> Option<&'z Node> {
        let after = self
            .nsec
            .partition_point(|&i| canonical_cmp(&nodes.at(i).key, key) != Ordering::Greater);
        let i = if after == 0 { self.nsec.len() } else { after };
        self.nsec.get(i.checked_sub(1)?).map(|&i| nodes.at(i))
    }

    /// The hashed owner label of `key` (lowercase base32hex), RFC 5155 5.
    fn hash(&self, key: &[u8]) -> Option<String> {
        let param = self.param.as_ref()?;
        let name = Name::from_bytes(key).ok()?;
        let digest = Nsec3HashAlgorithm::SHA1
            .hash(&param.salt, &name, param.iterations)
            .ok()?;
        Some(
            data_encoding::BASE32HEX_NOPAD
                .encode(digest.as_ref())
                .to_ascii_lowercase(),
        )
    }

    /// Position of the hashed label `h`: Ok(i) when an NSEC3 owns it, Err(i) where it would go.
    fn position(&self, h: &str) -> Result<usize, usize> {
        self.nsec3
            .binary_search_by(|(l, _)| l.as_ref().cmp(h.as_bytes()))
    }

    fn nsec3_matching<'z>(&self, nsec3: &'z NodeTable, key: &[u8]) -> Option<&'z Node> {
        let h = self.hash(key)?;
        let i = self.position(&h).ok()?;
        Some(nsec3.at(self.nsec3[i].1))
    }

    /// The NSEC3 whose hashed owner precedes `key`'s hash (the last one covers the hashes
    /// before the first, RFC 5155 3.1.7); None when one matches it.
    fn nsec3_covering<'z>(&self, nsec3: &'z NodeTable, key: &[u8]) -> Option<&'z Node> {
        let h = self.hash(key)?;
        let i = self.position(&h).err()?;
        let i = if i == 0 { self.nsec3.len() } else { i };
        Some(nsec3.at(self.nsec3[i - 1].1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in s.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    /// RFC 4034 6.1's own example, in order.
    #[test]
    fn rfc4034_6_1_canonical_order() {
        let names = [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "z.a.example.",
            "zabc.a.example.",
            "z.example.",
            "\u{1}.z.example.",
            "*.z.example.",
            "\u{80}.z.example.",
        ];
        let mut keys: Vec<Vec<u8>> = names.iter().map(|n| k(n)).collect();
        // "\u{80}" is two UTF-8 bytes; use the single octet 0x80 as RFC 4034 does.
        let last = keys.len() - 1;
        keys[last] = [&[1u8, 0x80][..], &k("z.example.")].concat();
        for w in keys.windows(2) {
            assert_eq!(canonical_cmp(&w[0], &w[1]), Ordering::Less, "{w:?}");
            assert_eq!(canonical_cmp(&w[1], &w[0]), Ordering::Greater);
        }
        assert_eq!(canonical_cmp(&keys[3], &keys[3]), Ordering::Equal);
    }

    #[test]
    fn next_closer_is_one_label_below_the_encloser() {
        let key = k("a.b.c.example.");
        assert_eq!(next_closer(&key, &k("example.")), &k("c.example.")[..]);
        assert_eq!(next_closer(&key, &k("b.c.example.")), &key[..]);
    }
}
