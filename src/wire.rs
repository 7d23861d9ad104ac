//! DNS messages on the wire (RFC 1035 4.1): queries parsed in place, responses encoded from the
//! engine's sections with our own name compression, EDNS(0) (RFC 6891) and ECS (RFC 7871).
//!
//! This is where RCODEs are mapped, in `rcode_of` and in the parse errors' `rcode`; nothing else
//! in the crate writes an RCODE. No I/O: bytes in, bytes out.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;
use smallvec::SmallVec;

use crate::engine::{Answer, Outcome, Owner, RrsetRef};
use crate::zone::Part;

pub const HEADER_LEN: usize = 12;
/// RFC 1035 4.2.1: the answer limit of UDP without EDNS.
pub const CLASSIC_UDP: usize = 512;

pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    /// RFC 6672 2.2: a DNAME substitution overflowed the name length.
    pub const YXDOMAIN: u16 = 6;
    /// RFC 8945 5.2: TSIG with an unknown key (with TSIG error BADKEY).
    pub const NOTAUTH: u16 = 9;
    /// RFC 6891 6.1.3: 16, carried as extended RCODE 1 in OPT and 0 in the header.
    pub const BADVERS: u16 = 16;
    /// RFC 7873 8: a server cookie is required (or was wrong); the reply carries a fresh one.
    pub const BADCOOKIE: u16 = 23;
}

const OPT: u16 = 41;
/// RFC 1996 3: the NOTIFY opcode.
pub const OPCODE_NOTIFY: u16 = 4;
const TSIG: u16 = 250;
const IXFR: u16 = 251;
const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
/// RFC 5001: the name server identifier option.
const OPTION_NSID: u16 = 3;
const OPTION_ECS: u16 = 8;
/// RFC 7873 4: the COOKIE option.
const OPTION_COOKIE: u16 = 10;
/// RFC 8945 5.2: the TSIG error for a key the server does not know.
pub const TSIG_BADKEY: u16 = 17;

/// The RCODE's mnemonic (RFC 6895 2.3), for explain and JSON answers.
pub fn rcode_name(outcome: Outcome) -> &'static str {
    match rcode_of(outcome) {
        rcode::NOERROR => "NOERROR",
        rcode::NXDOMAIN => "NXDOMAIN",
        rcode::YXDOMAIN => "YXDOMAIN",
        rcode::SERVFAIL => "SERVFAIL",
        _ => "REFUSED",
    }
}

/// The one mapping from the engine's outcomes to RCODEs.
pub fn rcode_of(outcome: Outcome) -> u16 {
    match outcome {
        Outcome::NoError => rcode::NOERROR,
        Outcome::NxDomain => rcode::NXDOMAIN,
        Outcome::Refused => rcode::REFUSED,
        Outcome::YxDomain => rcode::YXDOMAIN,
        Outcome::ServFail => rcode::SERVFAIL,
    }
}

/// EDNS Client Subnet as sent by the client (RFC 7871 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    pub family: u16,
    pub source_prefix: u8,
    pub scope_prefix: u8,
    pub addr: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
    pub ecs: Option<ClientSubnet>,
    /// The client asked for our name server identifier (RFC 5001 2.3).
    pub nsid: bool,
    /// The COOKIE option as sent (RFC 7873 4: a client cookie, maybe a server cookie).
    pub cookie: Option<CookieOption>,
}

/// A COOKIE option's 8 to 40 octets, inline (no allocation per query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOption {
    len: u8,
    bytes: [u8; 40],
}

impl CookieOption {
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// A parsed query. The question is kept as the client wrote it, to be echoed byte for byte.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub id: u16,
    /// Header bytes 2..4 as received.
    pub flags: u16,
    /// QNAME + QTYPE + QCLASS exactly as received.
    pub question: &'a [u8],
    pub key: [u8; 255],
    pub key_len: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
}

impl Query<'_> {
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }
    /// The question name as the client wrote it (uncompressed wire form, its case kept).
    pub fn name(&self) -> &[u8] {
        &self.question[..self.key_len]
    }
    pub fn rtype(&self) -> RecordType {
        RecordType::from(self.qtype)
    }
}

/// A message that cannot be answered normally.
#[derive(Debug, Clone)]
pub enum Reject<'a> {
    /// No reply at all: too short to carry an ID, or a response (QR=1) (RFC 1035 4.1.1).
    Drop,
    /// A reply with this RCODE and whatever of the question and EDNS could be read; with a TSIG
    /// record to append when the query was signed with a key we do not know (RFC 8945 5.2).
    Error {
        id: u16,
        flags: u16,
        rcode: u16,
        question: Option<&'a [u8]>,
        edns: Option<Edns>,
        tsig: Option<Box<TsigError>>,
    },
}

/// The unsigned TSIG record of an error response (RFC 8945 5.3.2): the request's key name,
/// algorithm, time and fudge echoed, MAC empty, the error code set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigError {
    /// Key name and algorithm name, uncompressed wire form.
    pub key: Vec<u8>,
    pub algorithm: Vec<u8>,
    pub time_signed: [u8; 6],
    pub fudge: u16,
    pub original_id: u16,
    pub error: u16,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.buf.get(self.pos..self.pos + 2)?;
        self.pos += 2;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.buf.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(b)
    }
    /// Reads a possibly compressed name into its uncompressed wire form (RFC 1035 4.1.4),
    /// following pointers backwards only, so it ends.
    fn read_name(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(32);
        let mut at = self.pos;
        let mut jumped = false;
        loop {
            let len = *self.buf.get(at)?;
            match len {
                0 => {
                    out.push(0);
                    if !jumped {
                        self.pos = at + 1;
                    }
                    return (out.len() <= 255).then_some(out);
                }
                l if l & 0xc0 == 0xc0 => {
                    let target = (((l & 0x3f) as usize) << 8) | *self.buf.get(at + 1)? as usize;
                    if !jumped {
                        self.pos = at + 2;
                    }
                    if target >= at {
                        return None;
                    }
                    jumped = true;
                    at = target;
                }
                l if l & 0xc0 != 0 => return None,
                l => {
                    out.extend_from_slice(self.buf.get(at..at + 1 + l as usize)?);
                    if out.len() > 255 {
                        return None;
                    }
                    at += 1 + l as usize;
                }
            }
        }
    }

    /// Skips a possibly compressed name (in records after the question).
    fn skip_name(&mut self) -> Option<()> {
        loop {
            let len = self.u8()?;
            match len {
                0 => return Some(()),
                l if l & 0xc0 == 0xc0 => {
                    self.u8()?;
                    return Some(());
                }
                l if l & 0xc0 != 0 => return None,
                l => {
                    self.take(l as usize)?;
                }
            }
        }
    }
}

/// Parses a query. Garbage is dropped before any work (as NSD and Knot do); what can be answered
/// with an error is.
// Inlined into its callers (the UDP worker above all) so the Query, with its 255-byte key, is
// built where it is used instead of copied out of this frame.
#[inline]
pub fn parse_query(buf: &[u8]) -> Result<Query<'_>, Reject<'_>> {
    if buf.len() < HEADER_LEN {
        return Err(Reject::Drop);
    }
    let id = u16::from_be_bytes([buf[0], buf[1]]);
    let flags = u16::from_be_bytes([buf[2], buf[3]]);
    if flags & 0x8000 != 0 {
        return Err(Reject::Drop);
    }
    let qdcount = u16::from_be_bytes([buf[4], buf[5]]);
    let ancount = u16::from_be_bytes([buf[6], buf[7]]);
    let nscount = u16::from_be_bytes([buf[8], buf[9]]);
    let arcount = u16::from_be_bytes([buf[10], buf[11]]);
    let err = |rcode, question, edns| {
        Err(Reject::Error {
            id,
            flags,
            rcode,
            question,
            edns,
            tsig: None,
        })
    };

    let opcode = (flags >> 11) & 0xf;
    if qdcount != 1 {
        // RFC 1035 4.1.2 / RFC 9619: a QUERY carries exactly one question. The FORMERR carries
        // an OPT when the query had one (RFC 6891 7: a responder that sees EDNS answers with it).
        let rc = if opcode == 0 {
            rcode::FORMERR
        } else {
            rcode::NOTIMP
        };
        let edns = if opcode == 0 && qdcount == 0 {
            opt_without_question(buf, ancount, nscount, arcount)
        } else {
            None
        };
        return err(rc, None, edns);
    }

    // The question: an uncompressed name (a pointer here has nothing to point back to).
    let mut r = Reader {
        buf,
        pos: HEADER_LEN,
    };
    let mut key = [0u8; 255];
    let mut key_len = 0;
    loop {
        let Some(len) = r.u8() else {
            return err(rcode::FORMERR, None, None);
        };
        if len & 0xc0 != 0 || key_len + 1 + len as usize > 255 {
            return err(rcode::FORMERR, None, None);
        }
        key[key_len] = len;
        key_len += 1;
        if len == 0 {
            break;
        }
        let Some(label) = r.take(len as usize) else {
            return err(rcode::FORMERR, None, None);
        };
        for (d, s) in key[key_len..key_len + label.len()].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        key_len += label.len();
    }
    let (Some(qtype), Some(qclass)) = (r.u16(), r.u16()) else {
        return err(rcode::FORMERR, None, None);
    };
    let question = &buf[HEADER_LEN..r.pos];

    // RFC 1035 4.1.1: a query has no answer or authority records; except IXFR, which carries
    // the client's SOA in AUTHORITY (RFC 1995 3).
    if opcode == 0 && (ancount != 0 || (nscount != 0 && qtype != IXFR)) {
        return err(rcode::FORMERR, Some(question), None);
    }
    for _ in 0..(ancount as u32 + nscount as u32) {
        if skip_record(&mut r).is_none() {
            return err(rcode::FORMERR, Some(question), None);
        }
    }
    let mut edns = None;
    let mut tsig = None;
    for i in 0..arcount {
        let start = r.pos;
        let (Some(()), Some(rtype)) = (r.skip_name(), r.u16()) else {
            return err(rcode::FORMERR, Some(question), edns);
        };
        if rtype == TSIG {
            // RFC 8945 5.1: one TSIG, the last record, class ANY; else FORMERR.
            r.pos = start;
            match read_tsig(&mut r) {
                Some(t) if i + 1 == arcount => tsig = Some(Box::new(t)),
                _ => return err(rcode::FORMERR, Some(question), edns),
            }
            continue;
        }
        if rtype != OPT {
            r.pos = start;
            if skip_record(&mut r).is_none() {
                return err(rcode::FORMERR, Some(question), edns);
            }
            continue;
        }
        // RFC 6891 6.1.1: one OPT, owned by the root.
        if edns.is_some() || buf[start] != 0 || r.pos != start + 3 {
            return err(rcode::FORMERR, Some(question), None);
        }
        match parse_opt(&mut r) {
            Ok(e) => edns = Some(e),
            Err(e) => return err(rcode::FORMERR, Some(question), e),
        }
    }
    if r.pos != buf.len() {
        // Trailing bytes: the counts lie about the message.
        return err(rcode::FORMERR, Some(question), edns);
    }
    if let Some(e) = edns
        && e.version > 0
    {
        // RFC 6891 6.1.3.
        return err(rcode::BADVERS, Some(question), Some(e));
    }
    if tsig.is_some() {
        // RFC 8945 5.2: the parser knows no keys, so a signed query is a NOTAUTH here (BADKEY,
        // unsigned, 5.3.2) unless `query::parse` finds its key in the keyring and verifies it
        // (`tsig::verify_request`), rather than an unsigned answer the client would discard.
        return Err(Reject::Error {
            id,
            flags,
            rcode: rcode::NOTAUTH,
            question: Some(question),
            edns,
            tsig,
        });
    }
    // QUERY, and NOTIFY (RFC 1996), which `query` answers for secondary zones.
    if opcode != 0 && opcode != OPCODE_NOTIFY {
        return err(rcode::NOTIMP, Some(question), edns);
    }
    Ok(Query {
        id,
        flags,
        question,
        key,
        key_len,
        qtype,
        qclass,
        edns,
    })
}

/// The TSIG record at `r` (RFC 8945 4.2), for an error response to echo.
fn read_tsig(r: &mut Reader<'_>) -> Option<TsigError> {
    let key = r.read_name()?;
    let (_type, class, _ttl, rdlen) = (r.u16()?, r.u16()?, r.u32()?, r.u16()?);
    let rdata_end = r.pos + rdlen as usize;
    if class != CLASS_ANY {
        return None;
    }
    let algorithm = r.read_name()?;
    let time: [u8; 6] = r.take(6)?.try_into().ok()?;
    let fudge = r.u16()?;
    let mac_len = r.u16()?;
    r.take(mac_len as usize)?;
    let original_id = r.u16()?;
    let _error = r.u16()?;
    let other = r.u16()?;
    r.take(other as usize)?;
    if r.pos != rdata_end {
        return None;
    }
    Some(TsigError {
        key,
        algorithm,
        time_signed: time,
        fudge,
        original_id,
        error: TSIG_BADKEY,
    })
}

/// The OPT of a query without a question, when the rest of the message can be read.
fn opt_without_question(buf: &[u8], ancount: u16, nscount: u16, arcount: u16) -> Option<Edns> {
    let mut r = Reader {
        buf,
        pos: HEADER_LEN,
    };
    for _ in 0..(ancount as u32 + nscount as u32) {
        skip_record(&mut r)?;
    }
    let mut edns = None;
    for _ in 0..arcount {
        let start = r.pos;
        r.skip_name()?;
        if r.u16()? == OPT && buf.get(start) == Some(&0) {
            edns = parse_opt(&mut r).ok();
        } else {
            r.pos = start;
            skip_record(&mut r)?;
        }
    }
    edns
}

/// Where the last record of a message starts (the TSIG's place, RFC 8945 5.1), when every section
/// reads to the end of the message. None: no records, or the counts do not match the bytes.
pub fn last_record_start(msg: &[u8]) -> Option<usize> {
    let count = |i: usize| u16::from_be_bytes([msg[4 + 2 * i], msg[5 + 2 * i]]) as usize;
    if msg.len() < HEADER_LEN {
        return None;
    }
    let mut r = Reader {
        buf: msg,
        pos: HEADER_LEN,
    };
    for _ in 0..count(0) {
        r.skip_name()?;
        r.take(4)?;
    }
    let records = count(1) + count(2) + count(3);
    let mut last = None;
    for _ in 0..records {
        last = Some(r.pos);
        skip_record(&mut r)?;
    }
    (r.pos == msg.len()).then_some(last).flatten()
}

fn skip_record(r: &mut Reader<'_>) -> Option<()> {
    r.skip_name()?;
    r.take(8)?;
    let len = r.u16()?;
    r.take(len as usize)?;
    Some(())
}

/// The OPT RR after its owner and type. On error returns what EDNS could be read, so the FORMERR
/// still carries an OPT.
fn parse_opt(r: &mut Reader<'_>) -> Result<Edns, Option<Edns>> {
    let payload = r.u16().ok_or(None)?;
    let ttl = r.u32().ok_or(None)?;
    let rdlen = r.u16().ok_or(None)?;
    let rdata = r.take(rdlen as usize).ok_or(None)?;
    let mut edns = Edns {
        payload,
        version: (ttl >> 16) as u8,
        dnssec_ok: ttl & 0x8000 != 0,
        ecs: None,
        nsid: false,
        cookie: None,
    };
    let mut o = Reader { buf: rdata, pos: 0 };
    while o.pos < rdata.len() {
        let (Some(code), Some(len)) = (o.u16(), o.u16()) else {
            return Err(Some(edns));
        };
        let Some(data) = o.take(len as usize) else {
            return Err(Some(edns));
        };
        if code == OPTION_ECS {
            if edns.ecs.is_some() {
                return Err(Some(edns));
            }
            edns.ecs = Some(parse_ecs(data).ok_or(Some(edns))?);
        }
        // RFC 5001 2.3: the request carries an empty NSID option.
        if code == OPTION_NSID {
            edns.nsid = true;
        }
        // RFC 7873 5.2.2: a client cookie alone is 8 bytes, with a server cookie 16 to 40;
        // any other length is FORMERR.
        if code == OPTION_COOKIE {
            if !(data.len() == 8 || (16..=40).contains(&data.len())) {
                return Err(Some(edns));
            }
            // The first COOKIE counts; RFC 7873 does not say what a second means.
            if edns.cookie.is_none() {
                let mut bytes = [0u8; 40];
                bytes[..data.len()].copy_from_slice(data);
                edns.cookie = Some(CookieOption {
                    len: data.len() as u8,
                    bytes,
                });
            }
        }
        // Other options (padding, ...) are ignored: RFC 6891 6.1.2.
    }
    Ok(edns)
}

/// RFC 7871 6: FAMILY, SOURCE PREFIX, SCOPE PREFIX (0 in queries), ADDRESS cut to the prefix with
/// the bits past it zero. Anything else is FORMERR.
fn parse_ecs(data: &[u8]) -> Option<ClientSubnet> {
    if data.len() < 4 {
        return None;
    }
    let family = u16::from_be_bytes([data[0], data[1]]);
    let (source, scope, addr) = (data[2], data[3], &data[4..]);
    let max = match family {
        1 => 32,
        2 => 128,
        _ => return None,
    };
    if source > max || scope != 0 || addr.len() != source.div_ceil(8) as usize {
        return None;
    }
    if source % 8 != 0 {
        let mask = 0xffu8 >> (source % 8);
        if addr.last().is_some_and(|b| b & mask != 0) {
            return None;
        }
    }
    let ip = if family == 1 {
        let mut o = [0u8; 4];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::from(o)
    } else {
        let mut o = [0u8; 16];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::from(o)
    };
    Some(ClientSubnet {
        family,
        source_prefix: source,
        scope_prefix: 0,
        addr: ip,
    })
}

/// How large a response may be: TCP 65535; UDP the client's EDNS payload (at least 512, RFC 6891
/// 6.2.5) capped by ours, or 512 without EDNS.
pub fn max_size(edns: Option<&Edns>, tcp: bool, our_payload: u16) -> usize {
    if tcp {
        return u16::MAX as usize;
    }
    match edns {
        Some(e) => (e.payload.max(512)).min(our_payload.max(512)) as usize,
        None => CLASSIC_UDP,
    }
}

/// Writes names with compression (RFC 1035 4.1.4), comparing case-insensitively so that the
/// answer's owner names point at the question as the client wrote it.
struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    /// Offsets of names (and their suffixes) already written, usable as pointer targets, with
    /// the wire length of the name there. On the stack for every answer of ordinary size (no
    /// allocation per query).
    names: SmallVec<[(u16, u8); 64]>,
}

impl<'b> Writer<'b> {
    /// A writer appending to `buf`, which is cleared first.
    fn new(buf: &'b mut Vec<u8>) -> Self {
        buf.clear();
        Writer {
            buf,
            names: SmallVec::new(),
        }
    }

    fn name(&mut self, wire: &[u8], compress: bool) {
        // Wire length of the whole name (through its root label): a suffix can only match a
        // registered name of the same length, which spares most of the comparisons.
        let total = name_len(wire, 0);
        let mut off = 0;
        while off < wire.len() {
            let len = wire[off] as usize;
            if len == 0 {
                break;
            }
            if compress {
                let rest = (total - off) as u8;
                if let Some(ptr) = self.find(&wire[off..], rest) {
                    self.buf.extend_from_slice(&(0xc000 | ptr).to_be_bytes());
                    return;
                }
                if self.buf.len() < 0x3fff {
                    self.names.push((self.buf.len() as u16, rest));
                }
            }
            self.buf.extend_from_slice(&wire[off..off + 1 + len]);
            off += 1 + len;
        }
        self.buf.push(0);
    }

    fn find(&self, suffix: &[u8], len: u8) -> Option<u16> {
        self.names
            .iter()
            .find(|&&(at, l)| l == len && same_name(self.buf, at as usize, suffix))
            .map(|&(at, _)| at)
    }

    /// Registers every suffix of the name at `at` (the question) as a pointer target.
    fn register(&mut self, at: usize) {
        let total = at + name_len(self.buf, at);
        let mut off = at;
        while off < self.buf.len() && self.buf[off] != 0 && off < 0x3fff {
            self.names.push((off as u16, (total - off) as u8));
            off += 1 + self.buf[off] as usize;
        }
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
}

/// Wire length of the uncompressed name at `at` in `buf`, through its root label (at most 255:
/// names come from parsed questions and zone data).
fn name_len(buf: &[u8], at: usize) -> usize {
    let mut off = at;
    while let Some(&len) = buf.get(off) {
        off += 1 + len as usize;
        if len == 0 {
            break;
        }
    }
    (off - at).min(255)
}

/// Whether the (possibly compressed) name at `at` in `buf` equals `wire`, ignoring ASCII case.
pub(crate) fn same_name(buf: &[u8], mut at: usize, wire: &[u8]) -> bool {
    let mut w = 0;
    for _ in 0..128 {
        let Some(&len) = buf.get(at) else {
            return false;
        };
        if len & 0xc0 == 0xc0 {
            let Some(&lo) = buf.get(at + 1) else {
                return false;
            };
            at = (((len & 0x3f) as usize) << 8) | lo as usize;
            continue;
        }
        let len = len as usize;
        if wire.get(w) != Some(&(len as u8)) {
            return false;
        }
        if len == 0 {
            return true;
        }
        let (Some(a), Some(b)) = (buf.get(at + 1..at + 1 + len), wire.get(w + 1..w + 1 + len))
        else {
            return false;
        };
        if !a.eq_ignore_ascii_case(b) {
            return false;
        }
        at += 1 + len;
        w += 1 + len;
    }
    false
}

fn header(w: &mut Writer, id: u16, qflags: u16, aa: bool, rcode: u16) {
    header_ra(w, id, qflags, aa, false, rcode)
}

fn header_ra(w: &mut Writer, id: u16, qflags: u16, aa: bool, ra: bool, rcode: u16) {
    // QR=1, opcode/RD/CD copied, AA as decided, RA on the resolver's listeners only, TC/AD/Z clear
    // (RFC 1035 4.1.1, RFC 4035 3.1.6).
    let mut flags = 0x8000 | (qflags & 0x7800) | (qflags & 0x0100) | (qflags & 0x0010);
    if aa {
        flags |= 0x0400;
    }
    if ra {
        flags |= 0x0080;
    }
    flags |= rcode & 0xf;
    w.u16(id);
    w.u16(flags);
    w.buf.extend_from_slice(&[0; 8]);
}

fn set_count(buf: &mut [u8], index: usize, n: u16) {
    buf[4 + 2 * index..6 + 2 * index].copy_from_slice(&n.to_be_bytes());
}

fn set_tc(buf: &mut [u8]) {
    buf[2] |= 0x02;
}

/// Size of our OPT RR: root name, 10 bytes of fixed fields, plus ECS echo.
fn opt_len(edns: &Edns) -> usize {
    11 + edns
        .ecs
        .map_or(0, |e| 4 + 4 + e.source_prefix.div_ceil(8) as usize)
}

/// OPT with our payload; ECS echoed with the scope the answer used (RFC 7871 7.2.1).
fn write_opt(w: &mut Writer, edns: &Edns, rcode: u16, our_payload: u16, scope: u8) {
    w.buf.push(0);
    w.u16(OPT);
    w.u16(our_payload);
    let ext = ((rcode >> 4) as u32) << 24;
    let do_bit = if edns.dnssec_ok { 0x8000 } else { 0 };
    w.u32(ext | do_bit);
    match edns.ecs {
        Some(ecs) => {
            let alen = ecs.source_prefix.div_ceil(8) as usize;
            w.u16((4 + 4 + alen) as u16);
            w.u16(OPTION_ECS);
            w.u16((4 + alen) as u16);
            w.u16(ecs.family);
            w.buf.push(ecs.source_prefix);
            w.buf.push(scope);
            match ecs.addr {
                IpAddr::V4(a) => w.buf.extend_from_slice(&a.octets()[..alen]),
                IpAddr::V6(a) => w.buf.extend_from_slice(&a.octets()[..alen]),
            }
        }
        None => w.u16(0),
    }
}

fn write_rrset(w: &mut Writer, rr: &RrsetRef<'_>, names: &[Box<[u8]>], qname_at: usize) -> usize {
    if let Some(i) = rr.synth {
        // A CNAME synthesized from a DNAME (RFC 6672 3.1): one record, its target compressible
        // like any CNAME's.
        let Some(target) = names.get(i as usize) else {
            return 0;
        };
        write_owner(w, rr.owner, names, qname_at);
        w.u16(u16::from(RecordType::CNAME));
        w.u16(CLASS_IN);
        w.u32(rr.ttl);
        let len_at = w.buf.len();
        w.u16(0);
        w.name(target, true);
        let len = (w.buf.len() - len_at - 2) as u16;
        w.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
        return 1;
    }
    let rdatas = &rr.rrset.rdatas;
    let mut n = 0;
    // The owner of the RRset's later records: the pointer compression gives them anyway (the
    // first record's owner is the earliest match, see below), found without searching again.
    let mut owner_again: Option<[u8; 2]> = None;
    for i in rr.select.indices(rdatas.len()) {
        let Some(rdata) = rdatas.get(i) else {
            continue;
        };
        // Of a node's RRSIGs, those of the RRset they go with (RFC 4035 3.1.1).
        if let Some(t) = rr.covered
            && !crate::zone::covers(rdata, u16::from(t))
        {
            continue;
        }
        n += 1;
        match owner_again {
            Some(ptr) => w.buf.extend_from_slice(&ptr),
            None => owner_again = write_owner(w, rr.owner, names, qname_at),
        }
        w.u16(u16::from(rr.rrset.rtype));
        w.u16(CLASS_IN);
        // An RRSIG has its own TTL, that of the RRset it covers (RFC 4034 3).
        w.u32(rdata.ttl().map_or(rr.ttl, |t| t.min(rr.ttl)));
        let len_at = w.buf.len();
        w.u16(0);
        for part in rdata.parts() {
            match part {
                Part::Bytes(b) => w.buf.extend_from_slice(b),
                Part::Name { wire, compress } => w.name(wire, compress),
            }
        }
        let len = (w.buf.len() - len_at - 2) as u16;
        w.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    }
    n
}

/// Writes an RRset's owner name; returns the two bytes that write the same name again (a pointer),
/// when there are such.
fn write_owner(
    w: &mut Writer,
    owner: Owner<'_>,
    names: &[Box<[u8]>],
    qname_at: usize,
) -> Option<[u8; 2]> {
    let name: &[u8] = match owner {
        Owner::Qname => {
            let ptr = (0xc000 | qname_at as u16).to_be_bytes();
            w.buf.extend_from_slice(&ptr);
            return Some(ptr);
        }
        Owner::Wire(name) => name,
        Owner::Synth(i) => names.get(i as usize).map_or(&[0u8][..], |n| &n[..]),
    };
    let at = w.buf.len();
    w.name(name, true);
    if w.buf.len() == at + 2 && w.buf[at] & 0xc0 == 0xc0 {
        // Written as a pointer: the same pointer again.
        Some([w.buf[at], w.buf[at + 1]])
    } else if w.buf[at] != 0 && at < 0x3fff {
        // Its first label starts at `at`, registered there before any later name, so a search
        // for this name would stop at `at` first.
        Some((0xc000 | at as u16).to_be_bytes())
    } else {
        None
    }
}

/// Encodes the engine's answer to `q` into `out` (cleared first, so a serving loop reuses one
/// buffer), fitting it into `max` bytes: when ANSWER or AUTHORITY (or required glue) does not fit,
/// TC is set and the client retries over TCP (RFC 2181 9, RFC 9471); optional ADDITIONAL RRsets
/// that do not fit are left out without TC.
pub fn encode_answer_into(
    q: &Query<'_>,
    a: &Answer<'_>,
    max: usize,
    our_payload: u16,
    out: &mut Vec<u8>,
) {
    // RFC 7871 7.2.1: SCOPE PREFIX-LENGTH 0 when the answer does not depend on the client.
    let scope = a.scope.unwrap_or(0);
    let rc = rcode_of(a.outcome);
    let mut w = Writer::new(out);
    header(&mut w, q.id, q.flags, a.aa, rc);
    set_count(w.buf, 0, 1);
    w.buf.extend_from_slice(q.question);
    w.register(HEADER_LEN);
    let after_question = w.buf.len();
    let names_after_question = w.names.len();
    let limit = max.saturating_sub(q.edns.as_ref().map_or(0, opt_len));

    let mut truncated = false;
    let mut counts = [0u16; 3];
    'sections: for (i, section) in [&a.answer, &a.authority].into_iter().enumerate() {
        for rr in section {
            counts[i] += write_rrset(&mut w, rr, &a.names, HEADER_LEN) as u16;
            if w.buf.len() > limit {
                truncated = true;
                break 'sections;
            }
        }
    }
    if truncated {
        w.buf.truncate(after_question);
        w.names.truncate(names_after_question);
        counts = [0; 3];
    } else {
        for (n, rr) in a.additional.iter().enumerate() {
            let before = w.buf.len();
            let names_before = w.names.len();
            let added = write_rrset(&mut w, rr, &a.names, HEADER_LEN) as u16;
            if w.buf.len() > limit {
                w.buf.truncate(before);
                w.names.truncate(names_before);
                truncated = n < a.required_additional;
                break;
            }
            counts[2] += added;
        }
    }
    for (i, c) in counts.iter().enumerate() {
        set_count(w.buf, i + 1, *c);
    }
    if truncated {
        set_tc(w.buf);
    }
    if let Some(edns) = &q.edns {
        write_opt(&mut w, edns, rc, our_payload, scope);
        set_count(w.buf, 3, counts[2] + 1);
    }
}

/// The resolver's answer to `q` (RA set, AA clear): records from the cache or upstream, owner names
/// compressed, RDATA written uncompressed (always allowed; RFC 3597 4 forbids compressing new types).
/// When ANSWER or AUTHORITY does not fit in `max`, TC is set with empty sections (RFC 2181 9).
pub fn encode_records(
    q: &Query<'_>,
    rcode: u16,
    answer: &[hickory_proto::rr::Record],
    authority: &[hickory_proto::rr::Record],
    max: usize,
    our_payload: u16,
) -> Vec<u8> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
    let mut out = Vec::with_capacity(512);
    let mut w = Writer::new(&mut out);
    header_ra(&mut w, q.id, q.flags, false, true, rcode);
    set_count(w.buf, 0, 1);
    w.buf.extend_from_slice(q.question);
    w.register(HEADER_LEN);
    let after_question = w.buf.len();
    let limit = max.saturating_sub(q.edns.as_ref().map_or(0, opt_len));
    let mut counts = [0u16; 2];
    let mut truncated = false;
    let mut rdata = Vec::with_capacity(256);
    let mut owner = Vec::with_capacity(256);
    'sections: for (i, section) in [answer, authority].into_iter().enumerate() {
        for r in section {
            owner.clear();
            for label in r.name.iter() {
                owner.push(label.len() as u8);
                owner.extend_from_slice(label);
            }
            owner.push(0);
            rdata.clear();
            let mut enc = BinEncoder::new(&mut rdata);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            if r.data.emit(&mut enc).is_err() {
                continue;
            }
            w.name(&owner, true);
            w.u16(u16::from(r.record_type()));
            w.u16(CLASS_IN);
            w.u32(r.ttl);
            w.u16(rdata.len() as u16);
            w.buf.extend_from_slice(&rdata);
            counts[i] += 1;
            if w.buf.len() > limit {
                truncated = true;
                break 'sections;
            }
        }
    }
    if truncated {
        w.buf.truncate(after_question);
        counts = [0; 2];
        set_tc(w.buf);
    }
    set_count(w.buf, 1, counts[0]);
    set_count(w.buf, 2, counts[1]);
    if let Some(edns) = &q.edns {
        write_opt(&mut w, edns, rcode, our_payload, 0);
        set_count(w.buf, 3, 1);
    }
    out
}

/// An RRset of the resolver's cache in the form a cache hit sends it: each record's owner (a
/// pointer to the question at offset 12, which a direct hit's owner always equals), TYPE, CLASS,
/// a TTL written at send, RDLENGTH and RDATA (uncompressed, as `encode_records` writes it), so a
/// hit copies bytes and patches TTLs instead of cloning and encoding every record. The bytes are
/// exactly `encode_records`' for the same records and TTL.
#[derive(Debug)]
pub struct CachedRrset {
    body: Box<[u8]>,
    count: u16,
    /// Wire length of each record's owner: 2 (a pointer), or 1 for the root (`Writer` never
    /// points at a bare root label).
    owner_len: u8,
}

impl CachedRrset {
    /// Encodes `records` (one RRset: all share owner and type). Records whose RDATA hickory cannot
    /// encode are left out, as `encode_records` leaves them out. None for an empty set.
    pub fn encode(records: &[hickory_proto::rr::Record]) -> Option<CachedRrset> {
        use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
        let first = records.first()?;
        let owner: &[u8] = if first.name.is_root() {
            &[0]
        } else {
            &[0xc0, HEADER_LEN as u8]
        };
        let mut body = Vec::with_capacity(records.len() * (owner.len() + 14));
        let mut count = 0u16;
        let mut rdata = Vec::with_capacity(256);
        for r in records {
            rdata.clear();
            let mut enc = BinEncoder::new(&mut rdata);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            if r.data.emit(&mut enc).is_err() || rdata.len() > u16::MAX as usize {
                continue;
            }
            body.extend_from_slice(owner);
            body.extend_from_slice(&u16::from(r.record_type()).to_be_bytes());
            body.extend_from_slice(&CLASS_IN.to_be_bytes());
            body.extend_from_slice(&[0; 4]);
            body.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            body.extend_from_slice(&rdata);
            count = count.checked_add(1)?;
        }
        if count == 0 {
            return None;
        }
        Some(CachedRrset {
            body: body.into_boxed_slice(),
            count,
            owner_len: owner.len() as u8,
        })
    }

    /// Heap bytes held.
    pub fn size(&self) -> usize {
        self.body.len()
    }

    /// Writes the NOERROR response to `q` (whose QNAME is the RRset's owner) into `out`, cleared
    /// first, every record with `ttl`. When it does not fit in `max`, nothing of it is written and
    /// TC is set with empty sections (RFC 2181 9), as `encode_records` does; the size is known
    /// before any record is copied.
    pub fn write(&self, q: &Query<'_>, ttl: u32, max: usize, our_payload: u16, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        header_ra(&mut w, q.id, q.flags, false, true, rcode::NOERROR);
        set_count(w.buf, 0, 1);
        w.buf.extend_from_slice(q.question);
        let opt = q.edns.as_ref().map_or(0, opt_len);
        if w.buf.len() + self.body.len() + opt > max {
            set_tc(w.buf);
        } else {
            let start = w.buf.len();
            w.buf.extend_from_slice(&self.body);
            let ttl = ttl.to_be_bytes();
            let mut at = start;
            while at < w.buf.len() {
                // owner, TYPE, CLASS, then TTL and RDLENGTH.
                let t = at + self.owner_len as usize + 4;
                w.buf[t..t + 4].copy_from_slice(&ttl);
                let rdlen = u16::from_be_bytes([w.buf[t + 4], w.buf[t + 5]]) as usize;
                at = t + 6 + rdlen;
            }
            set_count(w.buf, 1, self.count);
        }
        if let Some(edns) = &q.edns {
            write_opt(&mut w, edns, rcode::NOERROR, our_payload, 0);
            set_count(w.buf, 3, 1);
        }
    }
}

/// `encode_error_into` as a new buffer.
pub fn encode_error_ra(
    id: u16,
    qflags: u16,
    rcode: u16,
    question: Option<&[u8]>,
    edns: Option<&Edns>,
    our_payload: u16,
    ra: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_error_into(id, qflags, rcode, question, edns, our_payload, ra, &mut out);
    out
}

/// A response carrying only an RCODE (and the question and OPT when they could be read), into
/// `out` (cleared first); RA on the resolver's listeners.
#[allow(clippy::too_many_arguments)]
pub fn encode_error_into(
    id: u16,
    qflags: u16,
    rcode: u16,
    question: Option<&[u8]>,
    edns: Option<&Edns>,
    our_payload: u16,
    ra: bool,
    out: &mut Vec<u8>,
) {
    let mut w = Writer::new(out);
    header_ra(&mut w, id, qflags, false, ra, rcode);
    if let Some(q) = question {
        set_count(w.buf, 0, 1);
        w.buf.extend_from_slice(q);
    }
    if let Some(e) = edns {
        write_opt(&mut w, e, rcode, our_payload, 0);
        set_count(w.buf, 3, 1);
    }
}

/// Appends the unsigned TSIG record of an error response (RFC 8945 5.3.2) to `out`, a response
/// just encoded: it goes last in ADDITIONAL, after the OPT (RFC 8945 5.1).
pub fn append_tsig_error(out: &mut Vec<u8>, t: &TsigError) {
    out.extend_from_slice(&t.key);
    out.extend_from_slice(&TSIG.to_be_bytes());
    out.extend_from_slice(&CLASS_ANY.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&t.algorithm);
    out.extend_from_slice(&t.time_signed);
    out.extend_from_slice(&t.fudge.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // MAC size: none
    out.extend_from_slice(&t.original_id.to_be_bytes());
    out.extend_from_slice(&t.error.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // other len
    let len = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
    let ar = u16::from_be_bytes([out[10], out[11]]) + 1;
    set_count(out, 3, ar);
}

/// Adds our NSID (RFC 5001 2.3) to the OPT that ends `out` (a response to a query that had EDNS
/// with an NSID option), when it fits in `max`; RFC 5001 leaves it out otherwise.
pub fn append_nsid(out: &mut Vec<u8>, q: &Query<'_>, nsid: &[u8], max: usize) {
    let Some(edns) = &q.edns else {
        return;
    };
    let opt = opt_len(edns);
    let add = 4 + nsid.len();
    if !edns.nsid || out.len() < HEADER_LEN + opt || out.len() + add > max || nsid.len() > 512 {
        return;
    }
    let rdlen_at = out.len() - opt + 9;
    let rdlen = u16::from_be_bytes([out[rdlen_at], out[rdlen_at + 1]]) + add as u16;
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    out.extend_from_slice(&OPTION_NSID.to_be_bytes());
    out.extend_from_slice(&(nsid.len() as u16).to_be_bytes());
    out.extend_from_slice(nsid);
}

/// Adds our COOKIE option (`cookie`: the client cookie and our server cookie, RFC 7873 5.2) to the
/// OPT of `out`, a response to `q` just encoded with OPT last in it; not when it would pass `max`
/// (the client then learns its cookie from a later answer).
pub fn append_cookie(out: &mut Vec<u8>, q: &Query<'_>, cookie: &[u8; 24], max: usize) {
    let Some(edns) = &q.edns else {
        return;
    };
    let opt = opt_len(edns);
    let add = 4 + cookie.len();
    if out.len() < HEADER_LEN + opt
        || out.len() + add > max
        || u16::from_be_bytes([out[10], out[11]]) == 0
    {
        return;
    }
    // The OPT written last may have grown by an NSID already: find its RDLENGTH from the start
    // of the OPT, which begins `opt` bytes before the end when nothing was added yet, else
    // search back for it (NSID is the only option appended before this one).
    let Some(rdlen_at) = opt_rdlen_at(out, opt) else {
        return;
    };
    let rdlen = u16::from_be_bytes([out[rdlen_at], out[rdlen_at + 1]]) + add as u16;
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    out.extend_from_slice(&OPTION_COOKIE.to_be_bytes());
    out.extend_from_slice(&(cookie.len() as u16).to_be_bytes());
    out.extend_from_slice(cookie);
}

/// Where the RDLENGTH of the OPT that ends `out` is: the OPT RR is owner 0, TYPE 41, CLASS, TTL,
/// RDLENGTH, then exactly RDLENGTH bytes to the end. Tried at the offset an OPT of `opt` bytes
/// would have and at the ones an added NSID would move it to.
fn opt_rdlen_at(out: &[u8], opt: usize) -> Option<usize> {
    let fits = |start: usize| {
        out.get(start) == Some(&0)
            && out.get(start + 1..start + 3) == Some(&OPT.to_be_bytes()[..])
            && out
                .get(start + 9..start + 11)
                .map(|l| start + 11 + u16::from_be_bytes([l[0], l[1]]) as usize == out.len())
                .unwrap_or(false)
    };
    let base = out.len().checked_sub(opt)?;
    (0..=base.min(4 + 512))
        .map(|extra| base - extra)
        .find(|&start| fits(start))
        .map(|start| start + 9)
}

/// The answer to a CHAOS-class TXT question about the server itself (`id.server.`,
/// `version.bind.` ...): one TXT record of class CH with `text`, TTL 0, AA set, as NSD and Knot
/// give it.
pub fn encode_chaos_txt(q: &Query<'_>, text: &[u8], our_payload: u16, out: &mut Vec<u8>) {
    let mut w = Writer::new(out);
    header(&mut w, q.id, q.flags, true, rcode::NOERROR);
    set_count(w.buf, 0, 1);
    w.buf.extend_from_slice(q.question);
    set_count(w.buf, 1, 1);
    w.u16(0xc000 | HEADER_LEN as u16);
    w.u16(16); // TXT
    w.u16(q.qclass);
    w.u32(0);
    // RFC 1035 3.3.14: character-strings of at most 255 bytes each.
    let chunks: Vec<&[u8]> = if text.is_empty() {
        vec![&[][..]]
    } else {
        text.chunks(255).collect()
    };
    w.u16(chunks.iter().map(|c| 1 + c.len()).sum::<usize>() as u16);
    for c in chunks {
        w.buf.push(c.len() as u8);
        w.buf.extend_from_slice(c);
    }
    if let Some(edns) = &q.edns {
        write_opt(&mut w, edns, rcode::NOERROR, our_payload, 0);
        set_count(w.buf, 3, 1);
    }
}

/// A response's bytes after the question, captured from `encode_answer_into` for answers that do not
/// depend on the client, to be sent again to any query for the same name and type. Compression
/// pointers in it point into the question at offset 12 (or into itself); a later question for
/// the same lowercase name has the same length and the same label boundaries, and `Writer`
/// matches names case-insensitively, so `write` produces exactly the bytes `encode_answer_into` would.
#[derive(Debug)]
pub struct Prebuilt {
    /// AA and RCODE bits of the header.
    flags: u16,
    /// ANCOUNT, NSCOUNT, ARCOUNT without OPT.
    counts: [u16; 3],
    /// ANSWER, AUTHORITY and ADDITIONAL, whole (never truncated).
    body: Box<[u8]>,
}

impl Prebuilt {
    /// Captures the answer `a` to `q`, using `scratch` as the encoding buffer. None when it needs
    /// TCP even at 65535 bytes.
    pub fn capture(
        q: &Query<'_>,
        a: &Answer<'_>,
        our_payload: u16,
        scratch: &mut Vec<u8>,
    ) -> Option<Prebuilt> {
        let bare = Query {
            edns: None,
            ..q.clone()
        };
        encode_answer_into(&bare, a, u16::MAX as usize, our_payload, scratch);
        let flags = u16::from_be_bytes([scratch[2], scratch[3]]);
        if flags & 0x0200 != 0 {
            return None;
        }
        let count = |i: usize| u16::from_be_bytes([scratch[4 + 2 * i], scratch[5 + 2 * i]]);
        Some(Prebuilt {
            flags: flags & 0x040f,
            counts: [count(1), count(2), count(3)],
            body: scratch[HEADER_LEN + q.question.len()..].into(),
        })
    }

    /// Heap bytes this answer holds.
    pub fn size(&self) -> usize {
        self.body.len()
    }

    /// The RCODE in the header (prebuilt answers have no extended RCODE).
    pub fn rcode(&self) -> u16 {
        self.flags & 0xf
    }

    /// Writes the response to `q` into `out` (cleared first), as `encode_answer_into` would for this
    /// answer. False, writing nothing, when it does not fit in `max` (the general path then
    /// truncates as RFC 2181 9 says).
    pub fn write(&self, q: &Query<'_>, max: usize, our_payload: u16, out: &mut Vec<u8>) -> bool {
        let opt = q.edns.as_ref().map_or(0, opt_len);
        if HEADER_LEN + q.question.len() + self.body.len() + opt > max {
            return false;
        }
        let mut w = Writer::new(out);
        header(
            &mut w,
            q.id,
            q.flags,
            self.flags & 0x0400 != 0,
            self.rcode(),
        );
        set_count(w.buf, 0, 1);
        for (i, c) in self.counts.iter().enumerate() {
            set_count(w.buf, i + 1, *c);
        }
        w.buf.extend_from_slice(q.question);
        w.buf.extend_from_slice(&self.body);
        if let Some(edns) = &q.edns {
            // Scope 0: the answer does not depend on the client (RFC 7871 7.2.1).
            write_opt(&mut w, edns, self.rcode(), our_payload, 0);
            set_count(w.buf, 3, self.counts[2] + 1);
        }
        true
    }
}

/// The fixed part of a GSLB answer for one name, type and client network: the ANSWER records
/// before the last hop's RRset (the CNAMEs of the chain, decided by geo alone), and how that
/// RRset's owner is written. The last hop (a region's pool: health, rotation, weights) is decided
/// per query and written after it by `write`. Captured from `encode_answer_into`'s output, like
/// [`Prebuilt`], so the bytes are the general path's.
#[derive(Debug)]
pub struct GslbPrefix {
    body: Box<[u8]>,
    count: u16,
    /// The compression pointer the general encoder writes for the last RRset's owner.
    owner: [u8; 2],
    /// The last hop: its rule, and the scope and TTL cap of the hops before it.
    last: crate::engine::LastHop,
    /// The last hop's preferred pool and its ECS scope (`Gslb::preferred`): geo's part of the
    /// decision, the same for every client of the network.
    preferred: (usize, u8),
}

impl GslbPrefix {
    /// None unless `a` is a plain GSLB answer: NOERROR, nothing but ANSWER, a last RRset that a
    /// GSLB hop chose (`a.last_hop`) of addresses, owner written as a pointer.
    pub fn capture(
        q: &Query<'_>,
        a: &Answer<'_>,
        preferred: (usize, u8),
        our_payload: u16,
        scratch: &mut Vec<u8>,
    ) -> Option<GslbPrefix> {
        let last = a.answer.last()?;
        if a.last_hop.is_none()
            || !a.aa
            || a.outcome != Outcome::NoError
            || !a.authority.is_empty()
            || !a.additional.is_empty()
            || !matches!(last.rrset.rtype, RecordType::A | RecordType::AAAA)
        {
            return None;
        }
        let bare = Query {
            edns: None,
            ..q.clone()
        };
        let mut head = a.clone();
        head.answer.pop();
        encode_answer_into(&bare, &head, u16::MAX as usize, our_payload, scratch);
        if scratch[2] & 0x02 != 0 {
            return None;
        }
        let count = u16::from_be_bytes([scratch[6], scratch[7]]);
        let body: Box<[u8]> = scratch[HEADER_LEN + q.question.len()..].into();
        let end = scratch.len();
        encode_answer_into(&bare, a, u16::MAX as usize, our_payload, scratch);
        let owner = [*scratch.get(end)?, *scratch.get(end + 1)?];
        if owner[0] & 0xc0 != 0xc0 || scratch[2] & 0x02 != 0 {
            return None;
        }
        Some(GslbPrefix {
            body,
            count,
            owner,
            last: a.last_hop?,
            preferred,
        })
    }

    pub fn size(&self) -> usize {
        self.body.len()
    }

    /// The rule that decides the last RRset.
    pub fn rule(&self) -> u32 {
        self.last.rule
    }

    /// The ECS scope of the hops before the last (None: the first hop is the last).
    pub fn scope(&self) -> Option<u8> {
        self.last.scope
    }

    /// The TTL cap of the hops before the last.
    pub fn ttl_cap(&self) -> u32 {
        self.last.ttl_cap
    }

    /// The last hop's preferred pool and the scope of that preference.
    pub fn preferred(&self) -> (usize, u8) {
        self.preferred
    }

    /// Writes the answer to `q` into `out` (cleared first): the prefix, then the records `select`
    /// picks from `rrset` with `ttl`, ECS scope `scope`, exactly as `encode_answer_into` would. False
    /// when it does not fit in `max` (the general path truncates) or the RRset holds names.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        q: &Query<'_>,
        rrset: &crate::zone::RRset,
        select: crate::gslb::Select,
        ttl: u32,
        scope: u8,
        max: usize,
        our_payload: u16,
        out: &mut Vec<u8>,
    ) -> bool {
        let limit = max.saturating_sub(q.edns.as_ref().map_or(0, opt_len));
        let mut w = Writer::new(out);
        header(&mut w, q.id, q.flags, true, rcode::NOERROR);
        set_count(w.buf, 0, 1);
        w.buf.extend_from_slice(q.question);
        w.buf.extend_from_slice(&self.body);
        let mut n = 0u16;
        for i in select.indices(rrset.rdatas.len()) {
            let Some(rdata) = rrset.rdatas.get(i) else {
                continue;
            };
            w.buf.extend_from_slice(&self.owner);
            w.u16(u16::from(rrset.rtype));
            w.u16(CLASS_IN);
            w.u32(ttl);
            let len_at = w.buf.len();
            w.u16(0);
            for part in rdata.parts() {
                match part {
                    Part::Bytes(b) => w.buf.extend_from_slice(b),
                    Part::Name { .. } => return false,
                }
            }
            let len = (w.buf.len() - len_at - 2) as u16;
            w.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
            n += 1;
        }
        if w.buf.len() > limit {
            return false;
        }
        set_count(w.buf, 1, self.count + n);
        if let Some(edns) = &q.edns {
            write_opt(&mut w, edns, rcode::NOERROR, our_payload, scope);
            set_count(w.buf, 3, 1);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name`/`qtype` with the given counts patched in and `tail` appended.
    fn query(name: &[u8], qtype: u16, tail: &[u8], counts: [u16; 3]) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1];
        for c in counts {
            b.extend_from_slice(&c.to_be_bytes());
        }
        b.extend_from_slice(name);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(tail);
        b
    }

    fn opt(options: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 0, 41, 0x10, 0x00, 0, 0, 0, 0];
        o.extend_from_slice(&(options.len() as u16).to_be_bytes());
        o.extend_from_slice(options);
        o
    }

    const NAME: &[u8] = b"\x03www\x07example\x03com\x00";

    /// A cache hit written from `CachedRrset` is byte for byte what `encode_records` writes for
    /// the same records and TTL: with and without EDNS, a question in another case, names in
    /// RDATA, the root as owner, and a set too big for UDP (TC, empty sections).
    #[test]
    fn cached_rrset_writes_what_encode_records_writes() {
        use hickory_proto::rr::{Name, RData, Record, rdata};
        let rec = |owner: &str, ttl: u32, data: RData| {
            Record::from_rdata(Name::from_ascii(owner).unwrap(), ttl, data)
        };
        let www = "www.example.com.";
        let many: Vec<Record> = (0..4000u32)
            .map(|i| {
                rec(
                    www,
                    300,
                    RData::A(rdata::A::new(10, 0, (i >> 8) as u8, i as u8)),
                )
            })
            .collect();
        let mx = vec![
            rec(
                www,
                60,
                RData::MX(rdata::MX::new(
                    10,
                    Name::from_ascii("mail.example.com.").unwrap(),
                )),
            ),
            rec(
                www,
                60,
                RData::MX(rdata::MX::new(20, Name::from_ascii("mx.other.").unwrap())),
            ),
        ];
        let txt = vec![rec(
            www,
            60,
            RData::TXT(rdata::TXT::new(vec!["hello".into(), "world".into()])),
        )];
        let root_ns = vec![rec(
            ".",
            60,
            RData::NS(rdata::NS(Name::from_ascii("a.root-servers.net.").unwrap())),
        )];
        let upper = b"\x03WwW\x07eXample\x03COM\x00";
        let cases: Vec<(&[u8], u16, &[Record])> = vec![
            (NAME, 1, &many[..3]),
            (upper, 1, &many[..3]),
            (NAME, 1, &many),
            (NAME, 15, &mx),
            (upper, 15, &mx),
            (NAME, 16, &txt),
            (b"\x00", 2, &root_ns),
        ];
        for (name, qtype, records) in cases {
            for tail in [vec![], opt(&[])] {
                let arcount = u16::from(!tail.is_empty());
                let packet = query(name, qtype, &tail, [0, 0, arcount]);
                let q = parse_query(&packet).unwrap();
                for (max, tcp) in [(512, false), (1232, false), (65535, true)] {
                    let max = max_size(q.edns.as_ref(), tcp, max as u16);
                    let mut timed = records.to_vec();
                    for r in &mut timed {
                        r.ttl = 42;
                    }
                    let want = encode_records(&q, rcode::NOERROR, &timed, &[], max, 1232);
                    let cached = CachedRrset::encode(records).unwrap();
                    let mut got = Vec::new();
                    cached.write(&q, 42, max, 1232, &mut got);
                    assert_eq!(
                        got,
                        want,
                        "{} records of type {qtype}, max {max}",
                        records.len()
                    );
                }
            }
        }
    }

    fn rcode_of_reject(r: Result<Query<'_>, Reject<'_>>) -> u16 {
        match r {
            Err(Reject::Error { rcode, .. }) => rcode,
            Err(Reject::Drop) => u16::MAX,
            Ok(_) => 0,
        }
    }

    #[test]
    fn rfc1995_3_ixfr_may_carry_an_soa_in_authority() {
        let soa = b"\xc0\x0c\x00\x06\x00\x01\x00\x00\x00\x00\x00\x16\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        let q = query(NAME, IXFR, soa, [0, 1, 0]);
        let parsed = parse_query(&q).expect("an IXFR query parses");
        assert_eq!(parsed.qtype, IXFR);
        // Any other type with the same AUTHORITY is malformed (RFC 1035 4.1.1).
        let q = query(NAME, 6, soa, [0, 1, 0]);
        assert_eq!(rcode_of_reject(parse_query(&q)), rcode::FORMERR);
    }

    #[test]
    fn rfc6891_7_no_question_keeps_the_opt() {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 1];
        b.extend_from_slice(&opt(&[]));
        match parse_query(&b) {
            Err(Reject::Error {
                rcode,
                edns,
                question,
                ..
            }) => {
                assert_eq!(rcode, rcode::FORMERR);
                assert!(question.is_none());
                assert_eq!(edns.map(|e| e.payload), Some(0x1000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc7873_cookie_lengths() {
        for (len, ok) in [
            (8, true),
            (16, true),
            (24, true),
            (40, true),
            (0, false),
            (7, false),
            (9, false),
            (15, false),
            (41, false),
        ] {
            let mut o = vec![0, 10];
            o.extend_from_slice(&(len as u16).to_be_bytes());
            o.extend(std::iter::repeat_n(1u8, len));
            let q = query(NAME, 1, &opt(&o), [0, 0, 1]);
            let rc = rcode_of_reject(parse_query(&q));
            assert_eq!(rc == 0, ok, "cookie of {len} bytes: rcode {rc}");
        }
    }

    fn tsig(key: &[u8], mac: usize) -> Vec<u8> {
        let mut r = key.to_vec();
        r.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
        let mut rd = b"\x0bhmac-sha256\x00".to_vec();
        rd.extend_from_slice(&[0, 0, 1, 2, 3, 4, 1, 44]);
        rd.extend_from_slice(&(mac as u16).to_be_bytes());
        rd.extend(std::iter::repeat_n(7u8, mac));
        rd.extend_from_slice(&[0x12, 0x34, 0, 0, 0, 0]);
        r.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        r.extend_from_slice(&rd);
        r
    }

    #[test]
    fn rfc8945_tsig_is_read_and_echoed_unsigned() {
        let q = query(NAME, 1, &tsig(b"\x03key\x00", 32), [0, 0, 1]);
        let Err(Reject::Error {
            rcode,
            tsig: Some(t),
            ..
        }) = parse_query(&q)
        else {
            panic!("a TSIG query is rejected with the TSIG to echo");
        };
        assert_eq!(rcode, rcode::NOTAUTH);
        assert_eq!(t.key, b"\x03key\x00");
        assert_eq!(t.algorithm, b"\x0bhmac-sha256\x00");
        assert_eq!(
            (t.time_signed, t.fudge, t.original_id, t.error),
            ([0, 0, 1, 2, 3, 4], 300, 0x1234, TSIG_BADKEY)
        );
        let mut out = vec![0x12, 0x34, 0x81, 0x09, 0, 1, 0, 0, 0, 0, 0, 0];
        append_tsig_error(&mut out, &t);
        assert_eq!(&out[10..12], &[0, 1]);
        assert_eq!(out.len(), 12 + 5 + 10 + 13 + 6 + 2 + 2 + 2 + 2 + 2);
        // A compressed key name is read through its pointer.
        let q = query(NAME, 1, &tsig(b"\xc0\x10", 0), [0, 0, 1]);
        let Err(Reject::Error { tsig: Some(t), .. }) = parse_query(&q) else {
            panic!("parsed");
        };
        assert_eq!(t.key, b"\x07example\x03com\x00");
        // TSIG before another record is FORMERR (RFC 8945 5.1).
        let mut tail = tsig(b"\x03key\x00", 0);
        tail.extend_from_slice(&opt(&[]));
        assert_eq!(
            rcode_of_reject(parse_query(&query(NAME, 1, &tail, [0, 0, 2]))),
            rcode::FORMERR
        );
    }

    #[test]
    fn rfc5001_nsid_goes_into_the_opt_when_asked_and_it_fits() {
        let q = query(NAME, 1, &opt(&[0, 3, 0, 0]), [0, 0, 1]);
        let parsed = parse_query(&q).unwrap();
        assert!(parsed.edns.unwrap().nsid);
        // A NOERROR reply with the question and our OPT, as the encoders end one.
        let reply = || {
            let mut out = Vec::new();
            let (id, flags, edns) = (parsed.id, parsed.flags, parsed.edns.as_ref());
            encode_error_into(
                id,
                flags,
                0,
                Some(parsed.question),
                edns,
                1232,
                false,
                &mut out,
            );
            out
        };
        let mut out = reply();
        let before = out.len();
        append_nsid(&mut out, &parsed, b"ns1", 512);
        assert_eq!(out.len(), before + 7);
        assert_eq!(
            &out[before - 2..before],
            &7u16.to_be_bytes(),
            "OPT RDLEN grew"
        );
        assert_eq!(&out[before..], b"\x00\x03\x00\x03ns1");
        // No room: left out (RFC 5001 2.3 lets the server omit it).
        let mut out2 = reply();
        append_nsid(&mut out2, &parsed, b"ns1", before + 3);
        assert_eq!(out2.len(), before);
    }

    #[test]
    fn chaos_txt_splits_long_text_into_strings() {
        let q = query(b"\x02id\x06server\x00", 16, &[], [0, 0, 0]);
        let parsed = parse_query(&q).unwrap();
        let mut out = Vec::new();
        let text = vec![b'a'; 300];
        encode_chaos_txt(&parsed, &text, 1232, &mut out);
        let m = hickory_proto::op::Message::from_vec(&out).unwrap();
        let hickory_proto::rr::RData::TXT(t) = &m.answers[0].data else {
            panic!("TXT");
        };
        let lens: Vec<usize> = t.txt_data.iter().map(|s| s.len()).collect();
        assert_eq!(lens, [255, 45]);
        assert!(m.metadata.authoritative);
    }
}
