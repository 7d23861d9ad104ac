//! The IXFR journal of a zone (RFC 1995): the differences between the versions a reload served,
//! oldest first, bounded in bytes, kept in memory in the snapshot and on disk so that IXFR
//! survives a restart. The file is rewritten whole (a temporary file renamed over it) at each
//! change, so a crash leaves the previous journal or the new one, never half of one.
//!
//! Format (all integers big-endian): the magic `GSLBDJ1\n`, the state of the last version served
//! (serial u32, the fingerprint of its records u128, its SOA record), then the differences, each a
//! u32 length and: from u32, to u32, the SOA of `from`, the SOA of `to`, removed records (u32
//! count, records), added records (u32 count, records). A record is: owner length u8, owner
//! (uncompressed wire form), type u16, TTL u32, RDATA length u16, RDATA (uncompressed).

use std::io;
use std::path::Path;

const MAGIC: &[u8] = b"GSLBDJ1\n";

/// One record as a transfer carries it: owner and RDATA in uncompressed wire form, original case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rec {
    pub owner: Box<[u8]>,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Box<[u8]>,
}

/// The change from one serial to the next (RFC 1995 4: what an IXFR reply carries between the two
/// SOA records of a difference sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub from: u32,
    pub to: u32,
    pub soa_from: Rec,
    pub soa_to: Rec,
    pub removed: Vec<Rec>,
    pub added: Vec<Rec>,
}

impl Diff {
    /// Bytes the difference takes in the file (and about as much in memory).
    pub fn size(&self) -> u64 {
        let recs = |v: &[Rec]| v.iter().map(rec_size).sum::<usize>();
        (4 + 8 + rec_size(&self.soa_from) + rec_size(&self.soa_to) + 8) as u64
            + (recs(&self.removed) + recs(&self.added)) as u64
    }
}

fn rec_size(r: &Rec) -> usize {
    1 + r.owner.len() + 2 + 4 + 2 + r.rdata.len()
}

/// A zone's journal: the last version served and the differences that lead to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    /// Serial of the last version served.
    pub serial: u32,
    /// `super::fingerprint` of that version's records (its SOA aside).
    pub fingerprint: u128,
    /// That version's SOA record.
    pub soa: Rec,
    /// Oldest first; each `to` is the next one's `from`, the last `to` is `serial`.
    pub diffs: Vec<Diff>,
}

impl Journal {
    /// A journal that starts at a version (no differences yet).
    pub fn start(serial: u32, fingerprint: u128, soa: Rec) -> Journal {
        Journal {
            serial,
            fingerprint,
            soa,
            diffs: Vec::new(),
        }
    }

    /// Adds the difference to the next version and drops the oldest ones past `max_bytes`.
    pub fn push(&mut self, diff: Diff, fingerprint: u128, max_bytes: u64) {
        self.serial = diff.to;
        self.soa = diff.soa_to.clone();
        self.fingerprint = fingerprint;
        self.diffs.push(diff);
        let mut total: u64 = self.diffs.iter().map(Diff::size).sum();
        let mut drop = 0;
        while total > max_bytes && drop < self.diffs.len() {
            total -= self.diffs[drop].size();
            drop += 1;
        }
        self.diffs.drain(..drop);
    }

    /// The differences from `serial` to the current version, when the journal reaches back to it
    /// (None: the client needs the whole zone).
    pub fn since(&self, serial: u32) -> Option<&[Diff]> {
        let i = self.diffs.iter().position(|d| d.from == serial)?;
        let chain = &self.diffs[i..];
        let linked = chain.windows(2).all(|w| w[0].to == w[1].from);
        (linked && chain.last().map(|d| d.to) == Some(self.serial)).then_some(chain)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(64 + self.diffs.iter().map(Diff::size).sum::<u64>() as usize);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.serial.to_be_bytes());
        out.extend_from_slice(&self.fingerprint.to_be_bytes());
        put_rec(&mut out, &self.soa);
        for d in &self.diffs {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&d.from.to_be_bytes());
            out.extend_from_slice(&d.to.to_be_bytes());
            put_rec(&mut out, &d.soa_from);
            put_rec(&mut out, &d.soa_to);
            for list in [&d.removed, &d.added] {
                out.extend_from_slice(&(list.len() as u32).to_be_bytes());
                for r in list {
                    put_rec(&mut out, r);
                }
            }
            let len = (out.len() - at - 4) as u32;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Journal, String> {
        let mut r = Cursor { buf, pos: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err("not a gslbd journal (bad magic)".into());
        }
        let serial = r.u32()?;
        let fingerprint = u128::from_be_bytes(r.take(16)?.try_into().expect("16 bytes"));
        let soa = r.rec()?;
        let mut diffs = Vec::new();
        while r.pos < buf.len() {
            let len = r.u32()? as usize;
            let end = r.pos + len;
            let from = r.u32()?;
            let to = r.u32()?;
            let soa_from = r.rec()?;
            let soa_to = r.rec()?;
            let mut lists = [Vec::new(), Vec::new()];
            for list in &mut lists {
                let n = r.u32()?;
                for _ in 0..n {
                    list.push(r.rec()?);
                }
            }
            if r.pos != end {
                return Err(format!("difference {from} -> {to}: length mismatch"));
            }
            let [removed, added] = lists;
            diffs.push(Diff {
                from,
                to,
                soa_from,
                soa_to,
                removed,
                added,
            });
        }
        Ok(Journal {
            serial,
            fingerprint,
            soa,
            diffs,
        })
    }

    /// Reads `path`; Ok(None) when there is no file.
    pub fn read(path: &Path) -> Result<Option<Journal>, String> {
        match std::fs::read(path) {
            Ok(b) => Journal::decode(&b)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes the journal to `path` atomically (a temporary file beside it, renamed over it).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension(format!(
            "{}.tmp",
            path.extension()
                .and_then(|e| e.to_str())
                .unwrap_or("journal")
        ));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&self.encode())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

fn put_rec(out: &mut Vec<u8>, r: &Rec) {
    out.push(r.owner.len() as u8);
    out.extend_from_slice(&r.owner);
    out.extend_from_slice(&r.rtype.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    out.extend_from_slice(&(r.rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&r.rdata);
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let b = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        self.pos += n;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn rec(&mut self) -> Result<Rec, String> {
        let n = self.take(1)?[0] as usize;
        let owner = self.take(n)?.into();
        let rtype = self.u16()?;
        let ttl = self.u32()?;
        let len = self.u16()? as usize;
        let rdata = self.take(len)?.into();
        Ok(Rec {
            owner,
            rtype,
            ttl,
            rdata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(owner: &[u8], rtype: u16, rdata: &[u8]) -> Rec {
        Rec {
            owner: owner.into(),
            rtype,
            ttl: 300,
            rdata: rdata.into(),
        }
    }

    fn diff(from: u32, to: u32, n: usize) -> Diff {
        Diff {
            from,
            to,
            soa_from: rec(b"\0", 6, &from.to_be_bytes()),
            soa_to: rec(b"\0", 6, &to.to_be_bytes()),
            removed: vec![rec(b"\x01a\0", 1, &[10, 0, 0, 1]); n],
            added: vec![rec(b"\x01b\0", 1, &[10, 0, 0, 2])],
        }
    }

    #[test]
    fn round_trips_and_finds_the_chain_from_a_serial() {
        let mut j = Journal::start(1, 7, rec(b"\0", 6, &[1]));
        j.push(diff(1, 2, 1), 8, 1 << 20);
        j.push(diff(2, 5, 2), 9, 1 << 20);
        let back = Journal::decode(&j.encode()).unwrap();
        assert_eq!(back, j);
        assert_eq!(back.serial, 5);
        assert_eq!(back.fingerprint, 9);
        assert_eq!(back.since(1).map(|d| d.len()), Some(2));
        assert_eq!(back.since(2).map(|d| d.len()), Some(1));
        assert!(back.since(3).is_none());
        assert!(Journal::decode(&j.encode()[..40]).is_err());
    }

    #[test]
    fn the_oldest_differences_go_past_the_size_bound() {
        let mut j = Journal::start(1, 0, rec(b"\0", 6, &[1]));
        let one = diff(1, 2, 10).size();
        for s in 1..10u32 {
            j.push(diff(s, s + 1, 10), 0, one * 3);
        }
        assert_eq!(j.diffs.len(), 3);
        assert_eq!(j.diffs[0].from, 7);
        assert!(j.since(6).is_none());
        assert_eq!(j.since(7).map(|d| d.len()), Some(3));
    }
}
