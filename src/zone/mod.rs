//! Zones compiled for lookup: one `Zone` per served zone, built from the records the reader returns.
//!
//! Names are keyed by their lowercase uncompressed wire form (`name::key`), so every ancestor of a
//! name is a suffix slice of its key and finding the closest encloser needs no allocation.
//!
//! Load-time checks (each error names file and line): data outside the zone, SOA missing, not at the
//! apex or repeated, NS missing at the apex, CNAME beside other data (RFC 1034 3.6.2, RFC 2181 10.1;
//! its RRSIG and NSEC are allowed, RFC 4035 2.5),
//! more than one CNAME at a name, and NS targets inside the zone with no address (they could never
//! be reached: RFC 1034 4.2.2 glue). Empty non-terminals get a node of their own so that they answer
//! NODATA and stop wildcard matching (RFC 4592 2.2.2).
//!
//! No I/O happens here beyond what the `ZoneFs` given to `load` does.

pub mod denial;
pub mod name;
pub mod rdata;
pub mod reader;
pub mod rtypes;

use std::collections::HashMap;

/// Zone tables hash with Fx: keys come from zone files, not from clients (nobody can flood a table
/// with colliding keys), and SipHash was a fifth of a large zone's load time.
type FxMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RecordType};

use self::name::{Key, key_of};
use self::reader::{SourcedRecord, ZoneFs};

pub use self::rdata::{Part, WireRdata};

/// One RRset: records of one type at one owner, with one TTL (RFC 2181 5.2). RDATA is kept in
/// wire form, prepared at load so answering only copies bytes and compresses names.
#[derive(Debug, Clone)]
pub struct RRset {
    pub rtype: RecordType,
    pub ttl: u32,
    pub rdatas: Vec<WireRdata>,
}

/// All the data at one owner name. An empty non-terminal has no RRsets.
#[derive(Debug, Clone)]
pub struct Node {
    /// The owner's lookup key (lowercase wire form).
    pub key: Key,
    /// The owner as written in the zone, kept only when its case differs from `key`.
    owner_case: Option<Box<[u8]>>,
    /// Sorted by type code, so ANY picks deterministically.
    pub rrsets: Vec<RRset>,
    /// A delegation point: NS here and not the apex (RFC 1034 4.2.1).
    pub cut: bool,
    /// A GSLB rule answers this name (index into `gslb::Gslb::rules`); such a node has no RRsets.
    pub rule: Option<u32>,
}

impl Node {
    /// An empty node for `owner` (uncompressed wire form, any case).
    pub fn new(owner: &[u8]) -> Node {
        let key = name::key_of_wire(owner);
        let owner_case = (*key != *owner).then(|| owner.into());
        Node {
            key,
            owner_case,
            rrsets: Vec::new(),
            cut: false,
            rule: None,
        }
    }

    /// The owner in wire form as written in the zone (original case).
    pub fn owner(&self) -> &[u8] {
        self.owner_case.as_deref().unwrap_or(&self.key)
    }

    pub fn rrset(&self, rtype: RecordType) -> Option<&RRset> {
        self.rrsets.iter().find(|s| s.rtype == rtype)
    }
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: Name,
    pub origin_key: Key,
    pub file: PathBuf,
    pub nodes: NodeTable,
    /// NSEC3 records and their RRSIGs by hashed owner name, outside the tree queries walk: a
    /// query for a hashed owner name is answered as if it did not exist (RFC 5155 7.2.8), as NSD
    /// and Knot do; kept for DNSSEC answers.
    pub nsec3: NodeTable,
    /// TTL of negative answers: min(SOA TTL, SOA MINIMUM) (RFC 2308 section 3).
    pub negative_ttl: u32,
    pub serial: u32,
    pub records: usize,
    /// Rotate multi-address RRsets round robin (`rotate = true` on the zone's config).
    pub rotate: bool,
    /// Whether any name holds a DNAME: the engine looks for one on the way down only then.
    pub dname: bool,
    /// A secondary zone with no data yet or past EXPIRE (RFC 1035 4.3.5): every name in it is
    /// answered SERVFAIL (`secondary`).
    pub expired: bool,
    /// The DNSSEC lookup tables (`denial::Index`), built at load when the apex holds a DNSKEY
    /// RRset; None: the zone answers DO queries exactly as others (no RRSIGs, no proofs).
    pub dnssec: Option<Box<denial::Index>>,
}

/// A zone's nodes: a vector, and a hash table of indices into it keyed by each node's own `key`
/// (4 bytes a bucket instead of a key and a node: a million-name zone's index is 8 MB, not 150).
#[derive(Debug, Clone, Default)]
pub struct NodeTable {
    nodes: Vec<Node>,
    index: hashbrown::HashTable<u32>,
}

fn hash_key(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(key)
}

impl NodeTable {
    pub fn with_capacity(n: usize) -> NodeTable {
        NodeTable {
            nodes: Vec::with_capacity(n),
            index: hashbrown::HashTable::with_capacity(n),
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&Node> {
        self.index_of(key).map(|i| &self.nodes[i])
    }

    /// The node at position `i` (the order `iter` gives; nodes are only ever appended).
    pub fn at(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    fn index_of(&self, key: &[u8]) -> Option<usize> {
        self.index
            .find(hash_key(key), |&i| *self.nodes[i as usize].key == *key)
            .map(|&i| i as usize)
    }

    /// Adds a node whose key is not in the table yet.
    fn insert(&mut self, node: Node) -> &mut Node {
        let i = self.nodes.len() as u32;
        let h = hash_key(&node.key);
        self.nodes.push(node);
        let nodes = &self.nodes;
        self.index
            .insert_unique(h, i, |&j| hash_key(&nodes[j as usize].key));
        &mut self.nodes[i as usize]
    }

    /// The node at `key`, made with `make` if there is none.
    pub fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> Node) -> &mut Node {
        match self.index_of(key) {
            Some(i) => &mut self.nodes[i],
            None => self.insert(make()),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        self.nodes.iter_mut()
    }

    /// The nodes in table order (`dnssec::sign` indexes them while it builds the chain).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The nodes, to change their RRsets (keys stay as they are: the index hashes them).
    pub(crate) fn nodes_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }

    pub(crate) fn get_mut(&mut self, key: &[u8]) -> Option<&mut Node> {
        self.index_of(key).map(|i| &mut self.nodes[i])
    }
}

/// A problem found while loading a zone, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), at_line(*line))]
pub struct ZoneError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// `:line`, or nothing for a problem of the file as a whole (line 0).
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

impl From<reader::ReadError> for ZoneError {
    fn from(e: reader::ReadError) -> Self {
        ZoneError {
            file: e.file,
            line: e.line,
            message: e.message,
        }
    }
}

impl Zone {
    /// Reads the master file and compiles it, reporting every problem found. Records are compiled
    /// as they are read, so a large zone is never held twice.
    pub fn load(origin: &Name, path: &Path, fs: &dyn ZoneFs) -> Result<Zone, Vec<ZoneError>> {
        let mut b = Builder::new(origin);
        // At most one name per 24 bytes of master file (short generated lines; real zones have
        // longer ones, so this errs on the large side): growing the table while loading a large
        // zone cost a sixth of the load time.
        if let Some(size) = fs.size(path) {
            b.nodes = NodeTable::with_capacity((size / 24) as usize);
        }
        if let Err(read) = reader::read_zone_each(origin, path, fs, &mut |r| b.add(r)) {
            // Lines that did not parse leave the zone incomplete: the zone-wide checks of
            // `finish` (SOA, apex NS, glue, CNAME beside data) could only report consequences of
            // them, so the record-by-record problems are all that is reported.
            let mut errors: Vec<ZoneError> = read.into_iter().map(ZoneError::from).collect();
            errors.append(&mut b.errors);
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(errors);
        }
        b.finish(origin, path)
    }

    /// Compiles records into a zone. Pure: the unit the checks are tested on.
    pub fn build(
        origin: &Name,
        path: &Path,
        records: Vec<SourcedRecord>,
    ) -> Result<Zone, Vec<ZoneError>> {
        let mut b = Builder::new(origin);
        b.nodes = NodeTable::with_capacity(records.len());
        for r in records {
            b.add(r);
        }
        b.finish(origin, path)
    }
}

/// A zone being compiled, one record at a time.
struct Builder {
    origin_key: Key,
    errors: Vec<ZoneError>,
    /// Where the first CNAME / NS of each owner was written: the only lines the checks in
    /// `finish` report (a map entry per RRset was a tenth of a large zone's load time).
    first_line: FxMap<(Key, RecordType), (std::sync::Arc<Path>, usize)>,
    nodes: NodeTable,
    /// NSEC3 records and the RRSIGs covering them (RFC 5155 7.2.8).
    nsec3: NodeTable,
    count: usize,
    /// Where the zone's first record was written: a missing SOA or apex NS is reported there
    /// (RFC 1035 5.2: the SOA comes first), not at a line 0 nobody can find.
    first_record: Option<(std::sync::Arc<Path>, usize)>,
}

/// Whether an RRSIG's prepared RDATA covers type `code` (its first two bytes, RFC 4034 3.1).
pub fn covers(rdata: &WireRdata, code: u16) -> bool {
    matches!(rdata.parts().next(), Some(Part::Bytes(b)) if b.len() >= 2 && u16::from_be_bytes([b[0], b[1]]) == code)
}

/// Room for one more element, exactly, while a vector is small (most names have one RRset of one
/// record): a Vec's first push reserves four, and shrinking later leaves holes in the heap, a
/// hundred megabytes of them in a million-name zone. Larger vectors grow as usual.
fn grow_exact<T>(v: &mut Vec<T>) {
    if v.len() < 8 {
        v.reserve_exact(1);
    }
}

fn record_error(r: &SourcedRecord, message: String) -> ZoneError {
    ZoneError {
        file: r.file.to_path_buf(),
        line: r.line,
        message,
    }
}

impl Builder {
    fn new(origin: &Name) -> Builder {
        Builder {
            origin_key: key_of(origin),
            errors: Vec::new(),
            first_line: FxMap::default(),
            nodes: NodeTable::default(),
            nsec3: NodeTable::default(),
            count: 0,
            first_record: None,
        }
    }

    fn add(&mut self, r: SourcedRecord) {
        let err = record_error;
        if self.first_record.is_none() {
            self.first_record = Some((r.file.clone(), r.line));
        }
        let owner = &r.record.name;
        let key = key_of(owner);
        if !name::is_at_or_below(&key, &self.origin_key) {
            let origin = name::display(&self.origin_key);
            self.errors
                .push(err(&r, format!("{owner} is outside the zone {origin}")));
            return;
        }
        let rtype = r.record.record_type();
        if rtype == RecordType::SOA && key != self.origin_key {
            let origin = name::display(&self.origin_key);
            self.errors.push(err(
                &r,
                format!("SOA record at {owner}, which is not the zone apex {origin}"),
            ));
            return;
        }
        if matches!(
            rtype,
            RecordType::CNAME | RecordType::NS | RecordType::DNAME
        ) {
            self.first_line
                .entry((key.clone(), rtype))
                .or_insert_with(|| (r.file.clone(), r.line));
        }
        let is_rrsig = rtype == RecordType::RRSIG;
        let made = if is_rrsig {
            WireRdata::with_ttl(&r.record.data, r.record.ttl)
        } else {
            WireRdata::from_rdata(&r.record.data)
        };
        let rdata = match made {
            Ok(w) => w,
            Err(message) => {
                self.errors.push(err(&r, message));
                return;
            }
        };
        // NSEC3 records and their signatures live apart from the zone's names (RFC 5155 7.2.8:
        // a hashed owner name with nothing else does not exist for queries).
        let table = if rtype == RecordType::NSEC3 || (is_rrsig && covers(&rdata, 50)) {
            &mut self.nsec3
        } else {
            &mut self.nodes
        };
        let node = match table.index_of(&key) {
            Some(i) => &mut table.nodes[i],
            None => {
                // The key is moved into the node; the owner's case is kept only if it differs.
                let owner_case = (!owner.iter().flatten().all(|b| !b.is_ascii_uppercase()))
                    .then(|| rdata::wire_name(owner));
                table.insert(Node {
                    key,
                    owner_case,
                    rrsets: Vec::new(),
                    cut: false,
                    rule: None,
                })
            }
        };
        match node.rrsets.iter_mut().find(|s| s.rtype == rtype) {
            Some(set) => {
                if rtype == RecordType::SOA {
                    self.errors
                        .push(err(&r, "a second SOA record at the apex".into()));
                    return;
                }
                if rtype == RecordType::CNAME {
                    self.errors.push(err(
                        &r,
                        format!("a second CNAME at {owner} (RFC 2181 10.1)"),
                    ));
                    return;
                }
                if rtype == RecordType::DNAME && !set.rdatas.contains(&rdata) {
                    self.errors
                        .push(err(&r, format!("a second DNAME at {owner} (RFC 6672 2.4)")));
                    return;
                }
                // RFC 2181 5.2: one TTL per RRset; the lowest is the safe one to serve. RRSIGs
                // keep their own (RFC 4034 3), capped by the largest.
                set.ttl = if is_rrsig {
                    set.ttl.max(r.record.ttl)
                } else {
                    set.ttl.min(r.record.ttl)
                };
                // RFC 2181 5: duplicate records are one record.
                if !set.rdatas.iter().any(|d| d.same_data(&rdata)) {
                    grow_exact(&mut set.rdatas);
                    set.rdatas.push(rdata);
                    self.count += 1;
                }
            }
            None => {
                grow_exact(&mut node.rrsets);
                node.rrsets.push(RRset {
                    rtype,
                    ttl: r.record.ttl,
                    rdatas: vec![rdata],
                });
                self.count += 1;
            }
        }
    }

    fn finish(self, origin: &Name, path: &Path) -> Result<Zone, Vec<ZoneError>> {
        let Builder {
            origin_key,
            mut errors,
            first_line,
            mut nodes,
            mut nsec3,
            count,
            first_record,
        } = self;
        for node in nsec3.iter_mut() {
            node.rrsets.sort_by_key(|s| u16::from(s.rtype));
        }
        let line_of = |key: &Key, rtype: RecordType| -> (PathBuf, usize) {
            first_line
                .get(&(key.clone(), rtype))
                .map(|(f, l)| (f.to_path_buf(), *l))
                .unwrap_or((path.to_path_buf(), 0))
        };
        let (apex_file, apex_line) = first_record
            .as_ref()
            .map_or((path.to_path_buf(), 0), |(f, l)| (f.to_path_buf(), *l));
        let apex_err = |message: String| ZoneError {
            file: apex_file.clone(),
            line: apex_line,
            message,
        };

        let (negative_ttl, serial) = match nodes
            .get(&origin_key)
            .and_then(|n| n.rrset(RecordType::SOA))
        {
            Some(set) => {
                let (serial, minimum) = set.rdatas[0].soa_serial_minimum().unwrap_or((0, 0));
                (set.ttl.min(minimum), serial)
            }
            None => {
                errors.push(apex_err(format!("no SOA record at the apex {origin}")));
                (0, 0)
            }
        };
        if nodes
            .get(&origin_key)
            .and_then(|n| n.rrset(RecordType::NS))
            .is_none()
        {
            errors.push(apex_err(format!("no NS records at the apex {origin}")));
        }

        for node in nodes.iter_mut() {
            let key = &node.key;
            node.rrsets.sort_by_key(|s| u16::from(s.rtype));
            // A Vec's first push reserves room for four; most names have one RRset of one record.
            node.rrsets.shrink_to_fit();
            for set in &mut node.rrsets {
                set.rdatas.shrink_to_fit();
            }
            node.cut = *key != origin_key && node.rrset(RecordType::NS).is_some();
            // RFC 2181 10.1 and RFC 4035 2.5: a CNAME may have its RRSIG and NSEC beside it.
            let beside_cname = |t: RecordType| {
                !matches!(t, RecordType::CNAME | RecordType::RRSIG | RecordType::NSEC)
            };
            if node.rrset(RecordType::CNAME).is_some()
                && node.rrsets.iter().any(|s| beside_cname(s.rtype))
            {
                let (file, line) = line_of(key, RecordType::CNAME);
                let others: Vec<String> = node
                    .rrsets
                    .iter()
                    .filter(|s| beside_cname(s.rtype))
                    .map(|s| reader::type_name(s.rtype))
                    .collect();
                errors.push(ZoneError {
                    file,
                    line,
                    message: format!(
                        "CNAME at {} beside other data ({}) (RFC 1034 3.6.2)",
                        name::display(key),
                        others.join(", ")
                    ),
                });
            }
        }

        // RFC 6672 2.3: no data below a DNAME (it would never be reached); NSD and Knot refuse
        // such a zone too. Checked before empty non-terminals exist, so every node has records.
        let dnames: rustc_hash::FxHashSet<Key> = nodes
            .iter()
            .filter(|n| n.rrset(RecordType::DNAME).is_some())
            .map(|n| n.key.clone())
            .collect();
        if !dnames.is_empty() {
            let mut below: Vec<(Key, Key)> = Vec::new();
            for node in nodes.iter() {
                let mut suffix: &[u8] = &node.key;
                while let Some(parent) = name::parent(suffix) {
                    if parent.len() < origin_key.len() {
                        break;
                    }
                    if dnames.contains(parent) {
                        below.push((parent.into(), node.key.clone()));
                        break;
                    }
                    suffix = parent;
                }
            }
            below.sort();
            for (dname, key) in below {
                let (file, line) = line_of(&dname, RecordType::DNAME);
                errors.push(ZoneError {
                    file,
                    line,
                    message: format!(
                        "{} has data below the DNAME at {} (RFC 6672 2.3)",
                        name::display(&key),
                        name::display(&dname)
                    ),
                });
            }
        }

        // NS targets inside the zone must have an address in it, or nobody can reach them.
        for node in nodes.iter() {
            let key = &node.key;
            let Some(ns) = node.rrset(RecordType::NS) else {
                continue;
            };
            for rdata in &ns.rdatas {
                let Some(target) = rdata.target() else {
                    continue;
                };
                let tkey = name::key_of_wire(target);
                if !name::is_at_or_below(&tkey, &origin_key) {
                    continue;
                }
                let has_addr = nodes.get(&tkey).is_some_and(|n| {
                    n.rrset(RecordType::A).is_some() || n.rrset(RecordType::AAAA).is_some()
                });
                if !has_addr {
                    let (file, line) = line_of(key, RecordType::NS);
                    errors.push(ZoneError {
                        file,
                        line,
                        message: format!(
                            "NS target {} of {} is inside the zone but has no A or AAAA record",
                            name::display(&tkey),
                            name::display(key)
                        ),
                    });
                }
            }
        }

        // Empty non-terminals (RFC 4592 2.2.2): every ancestor between a name and the apex exists.
        for i in 0..nodes.len() {
            let key = nodes.nodes[i].key.clone();
            let mut suffix: &[u8] = &key;
            while let Some(parent) = name::parent(suffix) {
                if parent.len() < origin_key.len() || nodes.get(parent).is_some() {
                    break;
                }
                nodes.get_or_insert_with(parent, || Node::new(parent));
                suffix = parent;
            }
        }
        nodes.nodes.shrink_to_fit();

        if !errors.is_empty() {
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(errors);
        }
        let mut zone = Zone {
            origin: origin.clone(),
            origin_key,
            file: path.to_path_buf(),
            nodes,
            nsec3,
            negative_ttl,
            serial,
            records: count,
            rotate: false,
            dname: !dnames.is_empty(),
            expired: false,
            dnssec: None,
        };
        zone.index_dnssec();
        Ok(zone)
    }
}

impl Zone {
    /// (Re)builds the DNSSEC tables from the zone's records (the work at load time): loading
    /// does it; code that adds signatures or NSEC/NSEC3 records to a loaded zone (online
    /// signing) calls it again afterwards.
    pub fn index_dnssec(&mut self) {
        self.dnssec =
            denial::Index::build(&self.origin_key, &self.nodes, &self.nsec3).map(Box::new);
    }

    /// Puts GSLB rule `rule` at `owner` (a name below the apex, with no records of its own and not
    /// at or below a delegation), creating the empty non-terminals above it.
    pub fn attach_rule(&mut self, owner: &Name, rule: u32) -> Result<(), String> {
        let key = key_of(owner);
        if key == self.origin_key {
            return Err(format!("{owner} is the apex of zone {}", self.origin));
        }
        if !name::is_at_or_below(&key, &self.origin_key) {
            return Err(format!("{owner} is not in zone {}", self.origin));
        }
        let mut k: &[u8] = &key;
        while k.len() >= self.origin_key.len() {
            let node = self.nodes.get(k);
            if k.len() > self.origin_key.len() && node.is_some_and(|n| n.cut) {
                return Err(format!(
                    "{owner} is at or below the delegation {} in {}",
                    name::display(k),
                    self.file.display()
                ));
            }
            // RFC 6672 2.3: a name below a DNAME is never reached.
            if k.len() < key.len() && node.is_some_and(|n| n.rrset(RecordType::DNAME).is_some()) {
                return Err(format!(
                    "{owner} is below the DNAME at {} in {}",
                    name::display(k),
                    self.file.display()
                ));
            }
            match name::parent(k) {
                Some(p) => k = p,
                None => break,
            }
        }
        if let Some(node) = self.nodes.get(&key) {
            if !node.rrsets.is_empty() {
                let types: Vec<String> = node.rrsets.iter().map(|s| s.rtype.to_string()).collect();
                return Err(format!(
                    "{owner} also has records in {} ({}); a GSLB name has only the rule's answers",
                    self.file.display(),
                    types.join(", ")
                ));
            }
            if node.rule.is_some() {
                return Err(format!("{owner} already has a GSLB rule"));
            }
        }
        let wire = rdata::wire_name(owner);
        let node = self.nodes.get_or_insert_with(&key, || Node::new(&wire));
        node.rule = Some(rule);
        let mut suffix: &[u8] = &key;
        while let Some(parent) = name::parent(suffix) {
            if parent.len() <= self.origin_key.len() {
                break;
            }
            self.nodes.get_or_insert_with(parent, || Node::new(parent));
            suffix = parent;
        }
        Ok(())
    }

    pub fn node(&self, key: &[u8]) -> Option<&Node> {
        self.nodes.get(key)
    }

    pub fn apex(&self) -> &Node {
        // build() guarantees the apex exists (it holds the SOA).
        self.nodes
            .get(&self.origin_key)
            .expect("a built zone has its apex")
    }

    pub fn soa(&self) -> &RRset {
        self.apex()
            .rrset(RecordType::SOA)
            .expect("zone without SOA cannot be built")
    }
}

/// The zones one listener serves, found by longest match of the query name.
#[derive(Debug, Clone, Default)]
pub struct ZoneSet {
    zones: FxMap<Key, std::sync::Arc<Zone>>,
}

impl ZoneSet {
    pub fn insert(&mut self, zone: std::sync::Arc<Zone>) {
        self.zones.insert(zone.origin_key.clone(), zone);
    }

    /// The most specific zone at or above `key` (RFC 1034 4.3.2 step 2).
    /// Whether the zone with this origin key is in the set.
    pub fn contains(&self, origin_key: &[u8]) -> bool {
        self.zones.contains_key(origin_key)
    }

    pub fn find(&self, key: &[u8]) -> Option<&Zone> {
        let mut k = key;
        loop {
            if let Some(z) = self.zones.get(k) {
                return Some(z);
            }
            k = name::parent(k)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneFile(&'static str);
    impl ZoneFs for OneFile {
        fn read(&self, _: &Path) -> std::io::Result<String> {
            Ok(self.0.to_string())
        }
    }

    fn load(text: &'static str) -> Result<Zone, Vec<ZoneError>> {
        Zone::load(
            &Name::from_ascii("example.com.").unwrap(),
            Path::new("z.zone"),
            &OneFile(text),
        )
    }

    const HEAD: &str =
        "$ORIGIN example.com.\n$TTL 60\n@ SOA ns1 h 7 1 1 1 30\n@ NS ns1\nns1 A 192.0.2.1\n";

    fn with(tail: &str) -> &'static str {
        Box::leak(format!("{HEAD}{tail}").into_boxed_str())
    }

    fn messages(r: Result<Zone, Vec<ZoneError>>) -> Vec<String> {
        r.expect_err("load fails")
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn good_zone_has_empty_non_terminals_and_negative_ttl() {
        let z = load(with(
            "a.b.c A 192.0.2.9\nchild NS ns.child\nns.child A 192.0.2.2\n",
        ))
        .unwrap();
        assert_eq!(z.negative_ttl, 30);
        assert_eq!(z.serial, 7);
        let key = |s: &str| name::key_of(&Name::from_ascii(s).unwrap());
        assert!(z.node(&key("b.c.example.com.")).unwrap().rrsets.is_empty());
        assert!(z.node(&key("c.example.com.")).unwrap().rrsets.is_empty());
        assert!(z.node(&key("child.example.com.")).unwrap().cut);
        assert!(!z.apex().cut);
    }

    #[test]
    fn duplicate_records_merge_and_rrset_ttl_is_the_lowest() {
        let z = load(with(
            "w 100 A 192.0.2.5\nw 50 A 192.0.2.5\nw 70 A 192.0.2.6\n",
        ))
        .unwrap();
        let key = name::key_of(&Name::from_ascii("w.example.com.").unwrap());
        let set = z.node(&key).unwrap().rrset(RecordType::A).unwrap();
        assert_eq!((set.ttl, set.rdatas.len()), (50, 2));
    }

    #[test]
    fn cname_beside_data_names_the_cname_line() {
        let m = messages(load(with("w A 192.0.2.5\nw CNAME other\n")));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with("z.zone:7: CNAME at w.example.com. beside other data (A)"),
            "{m:?}"
        );
    }

    #[test]
    fn out_of_zone_data_and_glueless_in_zone_ns_are_errors() {
        let m = messages(load(with(
            "www.example.org. A 192.0.2.5\nchild NS ns.child\n",
        )));
        assert!(
            m[0].starts_with("z.zone:6: www.example.org. is outside the zone"),
            "{m:?}"
        );
        assert!(
            m[1].starts_with("z.zone:7: NS target ns.child.example.com. of child.example.com."),
            "{m:?}"
        );
    }

    #[test]
    fn missing_soa_and_ns_are_reported_together() {
        let m = messages(load("$ORIGIN example.com.\n$TTL 60\nwww A 192.0.2.1\n"));
        assert!(
            m.iter().any(|e| e.contains("no SOA record at the apex")),
            "{m:?}"
        );
        assert!(
            m.iter().any(|e| e.contains("no NS records at the apex")),
            "{m:?}"
        );
        // Both at the zone's first record (line 3), never at a line 0.
        assert!(
            m.contains(&"z.zone:3: no SOA record at the apex example.com.".to_string()),
            "{m:?}"
        );
        // A zone with no record at all: the file, no line.
        let m = messages(load("$ORIGIN example.com.\n"));
        assert!(
            m.contains(&"z.zone: no SOA record at the apex example.com.".to_string()),
            "{m:?}"
        );
    }

    #[test]
    fn presigned_data_loads_rrsig_nsec_beside_cname_and_ds_at_a_cut() {
        let z = load(with(
            "c CNAME a\n\
             c RRSIG CNAME 13 3 60 20300101000000 20200101000000 1 example.com. AAAA\n\
             c NSEC d CNAME RRSIG NSEC\n\
             child NS ns.other.\n\
             child DS 1 13 2 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\
             child RRSIG DS 13 3 60 20300101000000 20200101000000 1 example.com. AAAA\n\
             child NSEC d NS DS RRSIG NSEC\n",
        ))
        .unwrap();
        let node = z
            .node(&name::key_of(
                &Name::from_ascii("child.example.com.").unwrap(),
            ))
            .unwrap();
        assert!(node.cut);
        assert_eq!(node.rrsets.len(), 4);
        // Other data beside a CNAME is still refused, and the message names it.
        let m = messages(load(with(
            "c CNAME a\nc NSEC d CNAME NSEC\nc DS 1 13 2 0011\n",
        )));
        assert!(
            m[0].contains("CNAME at c.example.com. beside other data (DS)"),
            "{m:?}"
        );
    }

    #[test]
    fn rrsigs_keep_their_ttls_and_nsec3_names_stay_out_of_the_tree() {
        let z = load(with(
            "@ 300 RRSIG NSEC 13 2 300 20300101000000 20200101000000 1 example.com. AAAA\n\
             @ 60 RRSIG SOA 13 2 60 20300101000000 20200101000000 1 example.com. AAAA\n\
             @ 90 RRSIG SOA 13 2 60 20300101000000 20200101000000 1 example.com. AAAA\n\
             0p9mhaveqvm6t7vbl5lop2u3t2rp3tom 30 NSEC3 1 0 0 - 2t7b4g4vsa5smi47k61mv5bv1a22bojr A\n\
             0p9mhaveqvm6t7vbl5lop2u3t2rp3tom 30 RRSIG NSEC3 13 3 30 20300101000000 20200101000000 1 example.com. AAAA\n",
        ))
        .unwrap();
        let sigs = z.apex().rrset(RecordType::RRSIG).unwrap();
        // The duplicate (same RDATA, TTL 90) is one record; the RRset's TTL is the largest.
        assert_eq!(sigs.ttl, 300);
        let ttls: Vec<Option<u32>> = sigs.rdatas.iter().map(WireRdata::ttl).collect();
        assert_eq!(ttls, [Some(300), Some(60)]);
        let hashed = name::key_of(
            &Name::from_ascii("0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example.com.").unwrap(),
        );
        assert!(z.node(&hashed).is_none());
        let n3 = z.nsec3.get(&hashed).unwrap();
        let types: Vec<RecordType> = n3.rrsets.iter().map(|s| s.rtype).collect();
        assert_eq!(types, [RecordType::RRSIG, RecordType::NSEC3]);
    }

    #[test]
    fn second_soa_and_second_cname_are_errors() {
        let m = messages(load(with("@ SOA ns1 h 8 1 1 1 30\nc CNAME a\nc CNAME b\n")));
        assert!(m[0].contains(":6: a second SOA"), "{m:?}");
        assert!(m[1].contains(":8: a second CNAME"), "{m:?}");
    }

    #[test]
    fn rfc6672_2_3_data_below_a_dname_is_refused_at_the_dname_line() {
        let mut m = messages(load(with(
            "old DNAME new.example.net.\nwww.old A 192.0.2.7\nx.y.old TXT hi\n",
        )));
        m.sort();
        assert_eq!(
            m,
            [
                "z.zone:6: www.old.example.com. has data below the DNAME at old.example.com. (RFC 6672 2.3)",
                "z.zone:6: x.y.old.example.com. has data below the DNAME at old.example.com. (RFC 6672 2.3)",
            ]
        );
        // Data at the owner itself is fine, and so is a DNAME at the apex with nothing below.
        let z = load(with("old DNAME new.example.net.\nold A 192.0.2.7\n")).unwrap();
        assert!(z.dname);
        assert!(!load(with("a A 192.0.2.7\n")).unwrap().dname);
    }

    #[test]
    fn rfc6672_2_4_one_dname_per_owner() {
        let m = messages(load(with(
            "d DNAME a.example.net.\nd DNAME b.example.net.\n",
        )));
        assert_eq!(
            m,
            ["z.zone:7: a second DNAME at d.example.com. (RFC 6672 2.4)"]
        );
        // The same record twice is one record (RFC 2181 5).
        load(with("d DNAME a.example.net.\nd DNAME a.example.net.\n")).unwrap();
    }

    #[test]
    fn a_gslb_rule_below_a_dname_is_refused() {
        let mut z = load(with("old DNAME new.example.net.\n")).unwrap();
        let err = z
            .attach_rule(&Name::from_ascii("www.old.example.com.").unwrap(), 0)
            .unwrap_err();
        assert!(err.contains("below the DNAME at old.example.com."), "{err}");
        // Beside it is fine.
        z.attach_rule(&Name::from_ascii("www.example.com.").unwrap(), 0)
            .unwrap();
    }
}
