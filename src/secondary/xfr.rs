//! Incoming zone transfers on the wire (no I/O): the SOA / IXFR / AXFR queries a secondary sends,
//! the records of the reply messages read with their RDATA names decompressed, the end of a
//! transfer recognised (RFC 5936 2.2: the SOA again; RFC 1995 4: the new SOA closing the last
//! difference sequence), an IXFR's differences applied to the records we hold, and the records
//! written as a master file in RFC 3597 generic form, which `Zone::load` reads back exactly (the
//! same loader and checks as any zone file).

use std::fmt::Write as _;

/// One resource record as transferred: owner and RDATA in uncompressed wire form, case kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub owner: Vec<u8>,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

pub const SOA: u16 = 6;
pub const AXFR: u16 = 252;
pub const IXFR: u16 = 251;
const CLASS_IN: u16 = 1;

impl Rr {
    /// The SOA serial (RDATA: two names, then the serial), if this is an SOA.
    pub fn serial(&self) -> Option<u32> {
        self.soa_field(0)
    }

    /// SOA field `i` after the two names: 0 serial, 1 refresh, 2 retry, 3 expire, 4 minimum.
    pub fn soa_field(&self, i: usize) -> Option<u32> {
        if self.rtype != SOA {
            return None;
        }
        let mut at = 0;
        for _ in 0..2 {
            at += name_len(&self.rdata[at..])?;
        }
        let b = self.rdata.get(at + 4 * i..at + 4 * i + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// RFC 1995 / 2136: RRs are equal when name (case-insensitive), type, class and RDATA are.
    fn same(&self, o: &Rr) -> bool {
        self.rtype == o.rtype
            && self.class == o.class
            && self.rdata == o.rdata
            && self.owner.eq_ignore_ascii_case(&o.owner)
    }
}

/// Length of the uncompressed name at the start of `b`.
fn name_len(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let l = *b.get(at)? as usize;
        at += 1 + l;
        if l == 0 {
            return Some(at);
        }
        if l > 63 {
            return None;
        }
    }
}

/// RFC 1982 serial number arithmetic: `a` is newer than `b`.
pub fn newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// A query for `qtype` at `origin` (wire form) with ID `id`; for IXFR our SOA goes in AUTHORITY
/// (RFC 1995 3).
pub fn query(id: u16, origin: &[u8], qtype: u16, ours: Option<&Rr>) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + origin.len() * 2);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    m.extend_from_slice(&(ours.is_some() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(origin);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    if let Some(soa) = ours {
        push_rr(&mut m, soa);
    }
    m
}

fn push_rr(m: &mut Vec<u8>, r: &Rr) {
    m.extend_from_slice(&r.owner);
    m.extend_from_slice(&r.rtype.to_be_bytes());
    m.extend_from_slice(&r.class.to_be_bytes());
    m.extend_from_slice(&r.ttl.to_be_bytes());
    m.extend_from_slice(&(r.rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(&r.rdata);
}

/// A reply message: its header fields and ANSWER records.
#[derive(Debug)]
pub struct Reply {
    pub id: u16,
    pub rcode: u16,
    pub answers: Vec<Rr>,
}

/// Reads a reply (header, question skipped, ANSWER records; AUTHORITY and ADDITIONAL are not
/// transfer data and are left, the TSIG being checked by `tsig`).
pub fn read_reply(msg: &[u8]) -> Result<Reply, String> {
    if msg.len() < 12 {
        return Err("short message".into());
    }
    let count = |i: usize| u16::from_be_bytes([msg[4 + 2 * i], msg[5 + 2 * i]]) as usize;
    if msg[2] & 0x80 == 0 {
        return Err("not a response".into());
    }
    let mut at = 12;
    for _ in 0..count(0) {
        let (_, n) = read_name(msg, at).ok_or("bad question name")?;
        at = n + 4;
    }
    let mut answers = Vec::with_capacity(count(1));
    for _ in 0..count(1) {
        let (rr, next) = read_rr(msg, at).ok_or("bad record")?;
        answers.push(rr);
        at = next;
    }
    Ok(Reply {
        id: u16::from_be_bytes([msg[0], msg[1]]),
        rcode: (msg[3] & 0x0f) as u16,
        answers,
    })
}

/// Reads a possibly compressed name at `at` into uncompressed wire form (RFC 1035 4.1.4),
/// following pointers backwards only; returns it and where the name's bytes end at `at`.
fn read_name(msg: &[u8], mut at: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::with_capacity(32);
    let mut end = None;
    loop {
        let l = *msg.get(at)? as usize;
        if l & 0xc0 == 0xc0 {
            let target = ((l & 0x3f) << 8) | *msg.get(at + 1)? as usize;
            end.get_or_insert(at + 2);
            if target >= at {
                return None;
            }
            at = target;
            continue;
        }
        if l > 63 {
            return None;
        }
        out.extend_from_slice(msg.get(at..at + 1 + l)?);
        at += 1 + l;
        if out.len() > 255 {
            return None;
        }
        if l == 0 {
            return Some((out, *end.get_or_insert(at)));
        }
    }
}

/// Where names sit in the RDATA of the types whose names may arrive compressed (RFC 1035 3.3,
/// RFC 3597 4: NS, MD, MF, CNAME, SOA, MB, MG, MR, PTR, MINFO, MX; and those some servers
/// compress: RP, AFSDB, RT, PX, SRV): a list of (fixed bytes before, names) steps.
fn name_layout(rtype: u16) -> Option<&'static [(usize, usize)]> {
    Some(match rtype {
        2 | 3 | 4 | 5 | 7 | 8 | 9 | 12 => &[(0, 1)],
        6 => &[(0, 2)],
        14 | 17 => &[(0, 2)],
        15 | 18 | 21 => &[(2, 1)],
        26 => &[(2, 2)],
        33 => &[(6, 1)],
        _ => return None,
    })
}

fn read_rr(msg: &[u8], at: usize) -> Option<(Rr, usize)> {
    let (owner, at) = read_name(msg, at)?;
    let f = msg.get(at..at + 10)?;
    let rtype = u16::from_be_bytes([f[0], f[1]]);
    let class = u16::from_be_bytes([f[2], f[3]]);
    let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
    let len = u16::from_be_bytes([f[8], f[9]]) as usize;
    let start = at + 10;
    let end = start + len;
    let raw = msg.get(start..end)?;
    let rdata = match name_layout(rtype) {
        None => raw.to_vec(),
        Some(steps) => {
            let mut out = Vec::with_capacity(len + 32);
            let mut p = start;
            for &(fixed, names) in steps {
                out.extend_from_slice(msg.get(p..p + fixed)?);
                p += fixed;
                for _ in 0..names {
                    let (n, next) = read_name(msg, p)?;
                    out.extend_from_slice(&n);
                    p = next;
                }
            }
            if p > end {
                return None;
            }
            out.extend_from_slice(&msg[p..end]);
            out
        }
    };
    Some((
        Rr {
            owner,
            rtype,
            class,
            ttl,
            rdata,
        },
        end,
    ))
}

/// What a complete transfer says.
#[derive(Debug)]
pub enum Outcome {
    /// RFC 1995 2: the primary's SOA alone: nothing newer than ours.
    UpToDate(Rr),
    /// The whole zone (AXFR, or an AXFR-style reply to IXFR, RFC 1995 4): SOA first.
    Full(Vec<Rr>),
    /// RFC 1995 4: difference sequences from our serial to the new one.
    Incremental { new_soa: Rr, diffs: Vec<Diff> },
}

#[derive(Debug, Default)]
pub struct Diff {
    pub deleted: Vec<Rr>,
    pub added: Vec<Rr>,
}

/// Records of a transfer collected message by message until the end is seen.
pub struct Collector {
    ixfr: bool,
    records: Vec<Rr>,
    done: bool,
    /// Incremental parse position: index of the SOA opening the current section, and whether
    /// that section holds additions.
    bytes: u64,
}

impl Collector {
    pub fn new(ixfr: bool) -> Collector {
        Collector {
            ixfr,
            records: Vec::new(),
            done: false,
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds one reply message's records; true when the transfer is complete.
    pub fn add(&mut self, reply: Reply, size: usize) -> Result<bool, String> {
        if self.done {
            return Err("records after the end of the transfer".into());
        }
        self.bytes += size as u64;
        if reply.rcode != 0 {
            return Err(format!("primary answered RCODE {}", reply.rcode));
        }
        if self.records.is_empty() && reply.answers.first().is_none_or(|r| r.rtype != SOA) {
            return Err("transfer does not start with the SOA (RFC 5936 2.2)".into());
        }
        self.records.extend(reply.answers);
        self.done = self.complete();
        Ok(self.done)
    }

    fn complete(&self) -> bool {
        let r = &self.records;
        let Some(first) = r.first().and_then(Rr::serial) else {
            return false;
        };
        if r.len() == 1 {
            // An IXFR answered with the SOA alone (RFC 1995 2) is complete; an AXFR is not yet.
            return false;
        }
        if !self.ixfr || r[1].rtype != SOA {
            // AXFR (or AXFR-style): ends with the SOA again.
            return r.len() >= 2 && r.last().is_some_and(|l| l.rtype == SOA);
        }
        // Incremental: sequences of SOA(old) deletions SOA(new) additions, then SOA(first).
        let mut i = 1;
        loop {
            // r[i] is the SOA opening a deletion section.
            let Some(j) = (i + 1..r.len()).find(|&k| r[k].rtype == SOA) else {
                return false;
            };
            let Some(k) = (j + 1..r.len()).find(|&k| r[k].rtype == SOA) else {
                return false;
            };
            if r[j].serial() == Some(first) && r[k].serial() == Some(first) {
                return k == r.len() - 1;
            }
            i = k;
        }
    }

    /// The transfer as a whole, once `add` said it is complete (or, for an IXFR answered with
    /// the SOA alone in one message, `finish_single`).
    pub fn finish(self) -> Result<Outcome, String> {
        let mut r = self.records;
        if r.len() == 1 {
            return Ok(Outcome::UpToDate(r.remove(0)));
        }
        if !self.done {
            return Err("transfer ended early".into());
        }
        if !self.ixfr || r[1].rtype != SOA {
            r.pop();
            return Ok(Outcome::Full(r));
        }
        let new_soa = r[0].clone();
        let mut diffs = Vec::new();
        let mut cur = Diff::default();
        let mut adding = false;
        let last = r.len() - 1;
        for rr in r.into_iter().take(last).skip(1) {
            if rr.rtype == SOA {
                if adding {
                    diffs.push(std::mem::take(&mut cur));
                    cur.deleted.push(rr);
                    adding = false;
                } else if cur.deleted.is_empty() {
                    cur.deleted.push(rr);
                } else {
                    cur.added.push(rr);
                    adding = true;
                }
                continue;
            }
            if adding {
                cur.added.push(rr);
            } else {
                cur.deleted.push(rr);
            }
        }
        diffs.push(cur);
        Ok(Outcome::Incremental { new_soa, diffs })
    }

    /// One message that is only the primary's SOA, in reply to IXFR: complete.
    pub fn single_soa(&self) -> bool {
        self.ixfr && self.records.len() == 1
    }
}

/// Applies IXFR differences to `base` (RFC 1995 4: each deleted RR must be there). Errors leave
/// `base` unspecified: the caller works on a copy and falls back to AXFR.
pub fn apply(base: &mut Vec<Rr>, diffs: Vec<Diff>) -> Result<(), String> {
    for d in diffs {
        for del in &d.deleted {
            match base.iter().position(|r| r.same(del)) {
                Some(i) => {
                    base.swap_remove(i);
                }
                None => return Err("IXFR deletes a record we do not have".into()),
            }
        }
        for add in d.added {
            if !base.iter().any(|r| r.same(&add)) {
                base.push(add);
            }
        }
    }
    // The SOA first, as a master file has it (RFC 1035 5.2).
    if let Some(i) = base.iter().position(|r| r.rtype == SOA) {
        base.swap(0, i);
    }
    Ok(())
}

/// Presentation form of a wire name (absolute), escaping what RFC 1035 5.1 requires.
pub fn name_text(wire: &[u8]) -> String {
    let mut s = String::with_capacity(wire.len() + 1);
    let mut at = 0;
    while let Some(&l) = wire.get(at) {
        if l == 0 {
            break;
        }
        for &c in &wire[at + 1..at + 1 + l as usize] {
            match c {
                b'.' | b'\\' | b'"' | b';' | b'(' | b')' | b'@' | b'$' => {
                    s.push('\\');
                    s.push(c as char);
                }
                0x21..=0x7e => s.push(c as char),
                _ => {
                    let _ = write!(s, "\\{c:03}");
                }
            }
        }
        s.push('.');
        at += 1 + l as usize;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// The records as a master file: every record in RFC 3597 generic form (`TYPEn \# len hex`),
/// which the reader turns back into the same RDATA whatever the type, SOA first.
pub fn zone_text(origin: &[u8], records: &[Rr]) -> String {
    let mut s = String::with_capacity(records.len() * 64);
    let _ = writeln!(
        s,
        "; transferred by gslbd; rewritten on every transfer\n$ORIGIN {}",
        name_text(origin)
    );
    for r in records {
        let _ = write!(
            s,
            "{} {} IN TYPE{} \\# {} ",
            name_text(&r.owner),
            r.ttl,
            r.rtype,
            r.rdata.len()
        );
        for b in &r.rdata {
            let _ = write!(s, "{b:02x}");
        }
        s.push('\n');
    }
    s
}

/// Reads back a file `zone_text` wrote (for IXFR after a restart). None: not in that form (an
/// operator's own file): the next transfer is then an AXFR.
pub fn parse_zone_text(text: &str) -> Option<Vec<Rr>> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with(';') || line.starts_with("$ORIGIN") || line.is_empty() {
            continue;
        }
        let mut f = line.split(' ');
        let owner = wire_of(f.next()?)?;
        let ttl = f.next()?.parse().ok()?;
        let class = (f.next()? == "IN").then_some(CLASS_IN)?;
        let rtype = f.next()?.strip_prefix("TYPE")?.parse().ok()?;
        if f.next()? != "\\#" {
            return None;
        }
        let len: usize = f.next()?.parse().ok()?;
        let hex = f.next().unwrap_or("");
        if hex.len() != len * 2 {
            return None;
        }
        let rdata = (0..len)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        out.push(Rr {
            owner,
            rtype,
            class,
            ttl,
            rdata,
        });
    }
    (!out.is_empty()).then_some(out)
}

/// Wire form of an absolute name in `name_text`'s form.
fn wire_of(text: &str) -> Option<Vec<u8>> {
    let n = hickory_proto::rr::Name::from_ascii(text).ok()?;
    let mut w = Vec::with_capacity(text.len() + 2);
    for l in n.iter() {
        w.push(l.len() as u8);
        w.extend_from_slice(l);
    }
    w.push(0);
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soa(serial: u32) -> Rr {
        let mut rdata = b"\x02ns\x07example\x00\x04host\x07example\x00".to_vec();
        for v in [serial, 3600, 600, 86400, 300] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        Rr {
            owner: b"\x07example\x00".to_vec(),
            rtype: SOA,
            class: 1,
            ttl: 300,
            rdata,
        }
    }

    fn a(owner: &[u8], last: u8) -> Rr {
        Rr {
            owner: owner.to_vec(),
            rtype: 1,
            class: 1,
            ttl: 60,
            rdata: vec![127, 0, 15, last],
        }
    }

    fn reply(answers: Vec<Rr>) -> Reply {
        Reply {
            id: 1,
            rcode: 0,
            answers,
        }
    }

    #[test]
    fn rfc1995_incremental_reply_applies() {
        let www = b"\x03www\x07example\x00";
        let mut c = Collector::new(true);
        // RFC 1995 7's example shape: two sequences, 1 -> 2 -> 3, split over two messages.
        assert!(
            !c.add(reply(vec![soa(3), soa(1), a(www, 1), soa(2)]), 100)
                .unwrap()
        );
        assert!(
            c.add(
                reply(vec![a(www, 2), soa(2), soa(3), a(www, 3), soa(3)]),
                100
            )
            .unwrap()
        );
        let Outcome::Incremental { new_soa, diffs } = c.finish().unwrap() else {
            panic!("incremental");
        };
        assert_eq!(new_soa.serial(), Some(3));
        let mut base = vec![soa(1), a(www, 1)];
        apply(&mut base, diffs).unwrap();
        assert_eq!(base, vec![soa(3), a(www, 2), a(www, 3)]);
    }

    #[test]
    fn axfr_style_reply_to_ixfr_and_up_to_date() {
        let www = b"\x03www\x07example\x00";
        let mut c = Collector::new(true);
        assert!(c.add(reply(vec![soa(5), a(www, 1), soa(5)]), 10).unwrap());
        assert!(matches!(c.finish().unwrap(), Outcome::Full(r) if r.len() == 2));
        let mut c = Collector::new(true);
        c.add(reply(vec![soa(5)]), 10).unwrap();
        assert!(c.single_soa());
        assert!(matches!(c.finish().unwrap(), Outcome::UpToDate(s) if s.serial() == Some(5)));
        // A deletion of a record we do not have: the caller falls back to AXFR.
        let mut base = vec![soa(1)];
        let d = Diff {
            deleted: vec![soa(1), a(www, 9)],
            added: vec![soa(2)],
        };
        assert!(apply(&mut base, vec![d]).is_err());
    }

    #[test]
    fn compressed_rdata_names_are_expanded_and_text_round_trips() {
        // example. SOA with both names compressed to the owner.
        let mut m = vec![0, 1, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x00\x00\x06\x00\x01\x00\x00\x01\x2c\x00\x1a");
        m.extend_from_slice(b"\x02ns\xc0\x0c\xc0\x0c");
        for v in [7u32, 1, 2, 3, 4] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        let r = read_reply(&m).unwrap();
        assert_eq!(r.answers[0].rdata[..12], *b"\x02ns\x07example\x00");
        assert_eq!(r.answers[0].serial(), Some(7));
        assert_eq!(r.answers[0].soa_field(3), Some(3));
        let text = zone_text(b"\x07example\x00", &r.answers);
        assert_eq!(parse_zone_text(&text).unwrap(), r.answers);
        assert!(newer(1, u32::MAX) && !newer(u32::MAX, 1) && !newer(5, 5));
    }
}
