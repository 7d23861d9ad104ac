//! RDATA prepared at load time in wire form (RFC 1035 3.3), split where names may be compressed.
//!
//! RFC 3597 section 4: only the RDATA names of the well-known RFC 1035 types (NS, CNAME, SOA, PTR,
//! MX) may be compressed; every other type is kept as opaque bytes (SRV's target among them, which
//! RFC 2782 forbids compressing, is still kept as a name so additional-section processing can find it).

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

/// One piece of prepared RDATA, borrowed from its `WireRdata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    Bytes(&'a [u8]),
    /// A domain name in uncompressed wire form, original case.
    Name {
        wire: &'a [u8],
        compress: bool,
    },
}

/// Prepared RDATA in one allocation: a sequence of segments, each a tag byte then either a
/// two-byte length and that many bytes (`BYTES`) or an uncompressed wire name, self-delimited by
/// its root label (`NAME`, `NAME_NO_COMPRESS`). An A record is 7 bytes; a million-record zone
/// keeps one small block per record instead of three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRdata {
    data: Box<[u8]>,
}

const BYTES: u8 = 0;
const NAME: u8 = 1;
const NAME_NO_COMPRESS: u8 = 2;
/// A record's own TTL (4 bytes), first in the encoding; not part of the RDATA. Only RRSIG
/// records carry one: each has the TTL of the RRset it covers (RFC 4034 3, the exception RFC 2181
/// 5.2 makes to one TTL per RRset), so the RRSIGs at one name differ.
const TTL: u8 = 3;

/// Builds the segment encoding.
struct Builder(Vec<u8>);

impl Builder {
    fn bytes(mut self, b: &[u8]) -> Builder {
        self.0.push(BYTES);
        self.0.extend_from_slice(&(b.len() as u16).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn name(mut self, n: &Name, compress: bool) -> Builder {
        self.0.push(if compress { NAME } else { NAME_NO_COMPRESS });
        for label in n.iter() {
            self.0.push(label.len() as u8);
            self.0.extend_from_slice(label);
        }
        self.0.push(0);
        self
    }
    /// An uncompressed wire name given as bytes; None unless it is one whole valid name.
    fn wire_name(mut self, w: &[u8]) -> Option<Builder> {
        let mut at = 0;
        loop {
            let len = *w.get(at)? as usize;
            if len > 63 {
                return None;
            }
            at += 1 + len;
            if len == 0 {
                break;
            }
        }
        if at != w.len() || at > 255 {
            return None;
        }
        self.0.push(NAME_NO_COMPRESS);
        self.0.extend_from_slice(w);
        Some(self)
    }
    fn done(self) -> WireRdata {
        // An exact allocation (the scratch vector is freed, and its block reused by the next
        // record): shrinking in place would leave a sliver of free heap behind every record.
        WireRdata {
            data: self.0.as_slice().into(),
        }
    }
}

fn new() -> Builder {
    Builder(Vec::with_capacity(32))
}

/// The segments of `data`, in order.
pub struct Parts<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for Parts<'a> {
    type Item = Part<'a>;
    fn next(&mut self) -> Option<Part<'a>> {
        let (&tag, mut rest) = self.data.split_first()?;
        if tag == TTL {
            let (&tag2, after) = rest[4..].split_first()?;
            self.data = &rest[4..];
            rest = after;
            return self.part(tag2, rest);
        }
        self.part(tag, rest)
    }
}

impl<'a> Parts<'a> {
    fn part(&mut self, tag: u8, rest: &'a [u8]) -> Option<Part<'a>> {
        if tag == BYTES {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let (b, rest) = rest[2..].split_at(len);
            self.data = rest;
            return Some(Part::Bytes(b));
        }
        // A wire name: labels until the root label (lengths < 64, checked when it was built).
        let mut end = 0;
        while rest[end] != 0 {
            end += 1 + rest[end] as usize;
        }
        let (wire, rest) = rest.split_at(end + 1);
        self.data = rest;
        Some(Part::Name {
            wire,
            compress: tag == NAME,
        })
    }
}

/// A name in uncompressed wire form, keeping its case.
pub fn wire_name(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out.into_boxed_slice()
}

impl WireRdata {
    /// `from_rdata` for a record that keeps its own TTL (an RRSIG, see `TTL`).
    pub fn with_ttl(rdata: &RData, ttl: u32) -> Result<WireRdata, String> {
        let inner = WireRdata::from_rdata(rdata)?;
        let mut data = Vec::with_capacity(inner.data.len() + 5);
        data.push(TTL);
        data.extend_from_slice(&ttl.to_be_bytes());
        data.extend_from_slice(&inner.data);
        Ok(WireRdata { data: data.into() })
    }

    /// RDATA kept as one opaque byte run (DNSSEC records made at build: DNSKEY, NSEC, DS, ...),
    /// as the reader keeps the same types read from a file.
    pub fn opaque(b: &[u8]) -> WireRdata {
        new().bytes(b).done()
    }

    /// `opaque` with the record's own TTL (an RRSIG made at build, see `TTL`).
    pub fn opaque_with_ttl(b: &[u8], ttl: u32) -> WireRdata {
        let mut data = Vec::with_capacity(b.len() + 8);
        data.push(TTL);
        data.extend_from_slice(&ttl.to_be_bytes());
        data.push(BYTES);
        data.extend_from_slice(&(b.len() as u16).to_be_bytes());
        data.extend_from_slice(b);
        WireRdata { data: data.into() }
    }

    /// The record's own TTL, when it has one (RRSIG); the RRset's TTL applies otherwise.
    pub fn ttl(&self) -> Option<u32> {
        (self.data.first() == Some(&TTL))
            .then(|| u32::from_be_bytes(self.data[1..5].try_into().expect("4 bytes")))
    }

    /// Equal RDATA, whatever the records' own TTLs (RFC 2181 5: duplicates are one record).
    /// Byte for byte the same record (an RRSIG's own TTL included).
    pub fn identical(&self, other: &WireRdata) -> bool {
        self.data == other.data
    }

    pub fn same_data(&self, other: &WireRdata) -> bool {
        let skip = |w: &WireRdata| if w.ttl().is_some() { 5 } else { 0 };
        self.data[skip(self)..] == other.data[skip(other)..]
    }

    pub fn from_rdata(rdata: &RData) -> Result<WireRdata, String> {
        let out = match rdata {
            RData::A(a) => new().bytes(&a.0.octets()).done(),
            RData::AAAA(a) => new().bytes(&a.0.octets()).done(),
            RData::NS(n) => new().name(&n.0, true).done(),
            RData::CNAME(n) => new().name(&n.0, true).done(),
            RData::PTR(n) => new().name(&n.0, true).done(),
            RData::MX(mx) => new()
                .bytes(&mx.preference.to_be_bytes())
                .name(&mx.exchange, true)
                .done(),
            RData::SRV(srv) => {
                let mut head = Vec::with_capacity(6);
                head.extend_from_slice(&srv.priority.to_be_bytes());
                head.extend_from_slice(&srv.weight.to_be_bytes());
                head.extend_from_slice(&srv.port.to_be_bytes());
                new().bytes(&head).name(&srv.target, false).done()
            }
            RData::SOA(soa) => {
                let mut tail = Vec::with_capacity(20);
                tail.extend_from_slice(&soa.serial.to_be_bytes());
                tail.extend_from_slice(&soa.refresh.to_be_bytes());
                tail.extend_from_slice(&soa.retry.to_be_bytes());
                tail.extend_from_slice(&soa.expire.to_be_bytes());
                tail.extend_from_slice(&soa.minimum.to_be_bytes());
                new()
                    .name(&soa.mname, true)
                    .name(&soa.rname, true)
                    .bytes(&tail)
                    .done()
            }
            // SVCB/HTTPS (RFC 9460 2.2): the TargetName kept as a name (never compressed) so
            // additional section processing finds it (RFC 9460 4.2).
            RData::Unknown { code, rdata }
                if matches!(*code, RecordType::SVCB | RecordType::HTTPS) =>
            {
                let w = &rdata.anything;
                let mut end = 2;
                while end < w.len() && w[end] != 0 {
                    end += 1 + w[end] as usize;
                }
                if end >= w.len() {
                    return Err(format!("{code} RDATA without a target name"));
                }
                match new().bytes(&w[..2]).wire_name(&w[2..=end]) {
                    Some(b) => b.bytes(&w[end + 1..]).done(),
                    None => new().bytes(w).done(),
                }
            }
            // RFC 6672 2.5: the target is never compressed; kept as a name so that the engine
            // can substitute it (`target`).
            RData::Unknown {
                code: hickory_proto::rr::RecordType::DNAME,
                rdata,
            } => match new().wire_name(&rdata.anything) {
                Some(b) => b.done(),
                None => new().bytes(&rdata.anything).done(),
            },
            other => {
                let mut buf = Vec::new();
                let mut enc = BinEncoder::new(&mut buf);
                enc.set_name_encoding(NameEncoding::Uncompressed);
                other
                    .emit(&mut enc)
                    .map_err(|e| format!("cannot encode {}: {e}", other.record_type()))?;
                if buf.len() > u16::MAX as usize {
                    return Err("RDATA longer than 65535 bytes".into());
                }
                new().bytes(&buf).done()
            }
        };
        if out.len() > u16::MAX as usize {
            return Err("RDATA longer than 65535 bytes".into());
        }
        Ok(out)
    }

    pub fn parts(&self) -> Parts<'_> {
        Parts { data: &self.data }
    }

    /// Uncompressed length.
    pub fn len(&self) -> usize {
        self.parts()
            .map(|p| match p {
                Part::Bytes(b) => b.len(),
                Part::Name { wire, .. } => wire.len(),
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The domain name this record points at (CNAME, NS, PTR, MX exchange, SRV target, DNAME).
    pub fn target(&self) -> Option<&[u8]> {
        match self.parts().last()? {
            Part::Name { wire, .. } => Some(wire),
            Part::Bytes(_) => None,
        }
    }

    /// The name whose addresses go to ADDITIONAL: the one name in NS, MX, SRV and SVCB/HTTPS
    /// RDATA, unless it is the root (a null MX, RFC 7505; SVCB's "." is the owner, RFC 9460 2.5).
    pub fn additional_target(&self) -> Option<&[u8]> {
        self.parts().find_map(|p| match p {
            Part::Name { wire, .. } if wire != [0] => Some(wire),
            _ => None,
        })
    }

    /// An SOA record with its serial replaced (a reload's serial policy, `xfr::SerialPolicy`).
    /// None: not an SOA.
    pub fn with_soa_serial(&self, serial: u32) -> Option<WireRdata> {
        self.soa_serial_minimum()?;
        // The SOA's fixed fields are the last 20 bytes, serial first (RFC 1035 3.3.13).
        let mut data = self.data.to_vec();
        let at = data.len() - 20;
        data[at..at + 4].copy_from_slice(&serial.to_be_bytes());
        Some(WireRdata { data: data.into() })
    }

    /// The RDATA in uncompressed wire form (names written whole, original case), as a transfer
    /// or a journal carries it.
    pub fn uncompressed(&self, out: &mut Vec<u8>) {
        for p in self.parts() {
            match p {
                Part::Bytes(b) => out.extend_from_slice(b),
                Part::Name { wire, .. } => out.extend_from_slice(wire),
            }
        }
    }

    /// (serial, minimum) of an SOA record.
    pub fn soa_serial_minimum(&self) -> Option<(u32, u32)> {
        let parts: Vec<Part<'_>> = self.parts().collect();
        match parts[..] {
            [Part::Name { .. }, Part::Name { .. }, Part::Bytes(t)] if t.len() == 20 => Some((
                u32::from_be_bytes(t[0..4].try_into().ok()?),
                u32::from_be_bytes(t[16..20].try_into().ok()?),
            )),
            _ => None,
        }
    }
}

/// Presentation form of prepared RDATA (RFC 1035 5.1), for explain and JSON answers.
pub fn presentation(rtype: RecordType, rdata: &WireRdata) -> String {
    let mut wire = Vec::new();
    for part in rdata.parts() {
        match part {
            Part::Bytes(b) => wire.extend_from_slice(b),
            Part::Name { wire: w, .. } => wire.extend_from_slice(w),
        }
    }
    if rtype == hickory_proto::rr::RecordType::DNAME
        && let Some(target) = rdata.target()
    {
        return super::name::display(target);
    }
    match super::reader::decode_wire(rtype, &wire) {
        Ok(rd) => rd.to_string(),
        // RFC 3597 section 5: the generic form for what cannot be shown otherwise.
        Err(_) => {
            let hex: String = wire.iter().map(|b| format!("{b:02x}")).collect();
            format!("\\# {} {hex}", wire.len())
        }
    }
}
