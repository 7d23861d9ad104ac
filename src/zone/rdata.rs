//! RDATA prepared at load time in wire form (RFC 1035 3.3), split where names may be compressed.
//!
//! RFC 3597 section 4: only the RDATA names of the well-known RFC 1035 types (NS, CNAME, SOA, PTR,
//! MX) may be compressed; every other type is kept as opaque bytes (SRV's target among them, which
//! RFC 2782 forbids compressing, is still kept as a name so additional-section processing can find it).

use hickory_proto::rr::{Name, RData};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Bytes(Box<[u8]>),
    /// A domain name in uncompressed wire form, original case.
    Name {
        wire: Box<[u8]>,
        compress: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRdata {
    pub parts: Box<[Part]>,
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

fn name(n: &Name, compress: bool) -> Part {
    Part::Name {
        wire: wire_name(n),
        compress,
    }
}

fn bytes(b: &[u8]) -> Part {
    Part::Bytes(b.into())
}

impl WireRdata {
    pub fn from_rdata(rdata: &RData) -> Result<WireRdata, String> {
        let parts = match rdata {
            RData::A(a) => vec![bytes(&a.0.octets())],
            RData::AAAA(a) => vec![bytes(&a.0.octets())],
            RData::NS(n) => vec![name(&n.0, true)],
            RData::CNAME(n) => vec![name(&n.0, true)],
            RData::PTR(n) => vec![name(&n.0, true)],
            RData::MX(mx) => vec![
                bytes(&mx.preference.to_be_bytes()),
                name(&mx.exchange, true),
            ],
            RData::SRV(srv) => {
                let mut head = Vec::with_capacity(6);
                head.extend_from_slice(&srv.priority.to_be_bytes());
                head.extend_from_slice(&srv.weight.to_be_bytes());
                head.extend_from_slice(&srv.port.to_be_bytes());
                vec![bytes(&head), name(&srv.target, false)]
            }
            RData::SOA(soa) => {
                let mut tail = Vec::with_capacity(20);
                tail.extend_from_slice(&soa.serial.to_be_bytes());
                tail.extend_from_slice(&soa.refresh.to_be_bytes());
                tail.extend_from_slice(&soa.retry.to_be_bytes());
                tail.extend_from_slice(&soa.expire.to_be_bytes());
                tail.extend_from_slice(&soa.minimum.to_be_bytes());
                vec![name(&soa.mname, true), name(&soa.rname, true), bytes(&tail)]
            }
            other => {
                let mut buf = Vec::new();
                let mut enc = BinEncoder::new(&mut buf);
                enc.set_name_encoding(NameEncoding::Uncompressed);
                other
                    .emit(&mut enc)
                    .map_err(|e| format!("cannot encode {}: {e}", other.record_type()))?;
                vec![Part::Bytes(buf.into_boxed_slice())]
            }
        };
        let out = WireRdata {
            parts: parts.into_boxed_slice(),
        };
        if out.len() > u16::MAX as usize {
            return Err("RDATA longer than 65535 bytes".into());
        }
        Ok(out)
    }

    /// Uncompressed length.
    pub fn len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Bytes(b) => b.len(),
                Part::Name { wire, .. } => wire.len(),
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The domain name this record points at (CNAME, NS, PTR, MX exchange, SRV target).
    pub fn target(&self) -> Option<&[u8]> {
        match self.parts.last()? {
            Part::Name { wire, .. } => Some(wire),
            Part::Bytes(_) => None,
        }
    }

    /// (serial, minimum) of an SOA record.
    pub fn soa_serial_minimum(&self) -> Option<(u32, u32)> {
        match &*self.parts {
            [Part::Name { .. }, Part::Name { .. }, Part::Bytes(t)] if t.len() == 20 => Some((
                u32::from_be_bytes(t[0..4].try_into().ok()?),
                u32::from_be_bytes(t[16..20].try_into().ok()?),
            )),
            _ => None,
        }
    }
}

/// Presentation form of prepared RDATA (RFC 1035 5.1), for explain and JSON answers.
pub fn presentation(rtype: hickory_proto::rr::RecordType, rdata: &WireRdata) -> String {
    let mut wire = Vec::new();
    for part in rdata.parts.iter() {
        match part {
            Part::Bytes(b) => wire.extend_from_slice(b),
            Part::Name { wire: w, .. } => wire.extend_from_slice(w),
        }
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
