//! RFC 1035 section 5 master-file reader that keeps file and line for every record.
//!
//! hickory's own zone parser returns record sets without line numbers, so this module has its
//! own lexer and builds every record type itself: the RFC 1035 ones and CAA here, all the others
//! NSD and Knot load in `rtypes.rs` (hickory's text parser refuses DNSSEC records and knows few
//! of the rest).
//!
//! Supported syntax:
//!
//! * comments (`;` to the end of the line), `( ... )` spanning lines (the record's line is the
//!   line it starts on), quoted strings with `\X` and `\DDD` escapes;
//! * a line starting with a blank repeats the previous owner, `@` is the current origin, names
//!   without a trailing dot are relative to the current origin;
//! * `$ORIGIN name`, `$TTL ttl` (units like `1h`, `2d`, `1w` allowed), and
//!   `$INCLUDE file [origin]` (relative paths resolve against the including file's directory;
//!   the origin and current owner revert after the included file, per RFC 1035; nesting is
//!   limited to [`MAX_INCLUDE_DEPTH`]);
//! * `[owner] [ttl] [class] type rdata` with TTL and class in either order, class `IN` only;
//! * TTL: the explicit one, else `$TTL`, else the last explicit TTL, else (SOA only) the SOA
//!   MINIMUM, which then also serves as the last TTL (like BIND);
//! * RDATA built here for A, AAAA, NS, CNAME, PTR, DNAME, MX, SRV, SOA, TXT, CAA, in `rtypes.rs`
//!   for DS, CDS, DNSKEY, CDNSKEY, RRSIG, NSEC, NSEC3, NSEC3PARAM, SVCB, HTTPS, URI, RP, LOC,
//!   AFSDB, ZONEMD, SPF, EUI48, EUI64, APL, KX, DHCID, IPSECKEY, L32, L64, NID, LP, CSYNC,
//!   OPENPGPKEY, SMIMEA, TLSA, SSHFP, HIP, CERT, HINFO and NAPTR, and the RFC 3597 generic form
//!   `\# len hex` for any type (also `TYPEnnn` mnemonics). A type with a mnemonic but no text
//!   format here (WKS, KEY, ...) needs `\#`. DNAME and the `rtypes.rs` types become
//!   `RData::Unknown { code, .. }` holding their uncompressed wire form, served as read.
//!
//! Names keep their case and are read as raw octets (`\DDD` is decimal, as in RFC 1035); no
//! IDNA conversion happens.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, NULL, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};

use super::rtypes;
use hickory_proto::serialize::txt::parse_ttl;

/// One text for every path: a zone given in memory (unit tests, the fuzz targets); an
/// `$INCLUDE` reads the same text again, up to the nesting limit.
pub struct TextFs(pub String);

impl ZoneFs for TextFs {
    fn read(&self, _path: &Path) -> io::Result<String> {
        Ok(self.0.clone())
    }
}

/// Where zone text comes from: the disk, or files compiled into the binary (the lab world).
pub trait ZoneFs: Send + Sync {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Whether the file exists (a secondary zone's file is absent until its first transfer).
    fn exists(&self, _path: &Path) -> bool {
        true
    }
    /// Binary files (mmdb databases).
    fn read_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.read(path).map(String::into_bytes)
    }
    /// The size of a file in bytes, when it is cheap to know (a capacity hint, never required).
    fn size(&self, _path: &Path) -> Option<u64> {
        None
    }
}

/// Reads from the real file system, every read bounded ([`read_file`]).
pub struct DiskFs;

impl ZoneFs for DiskFs {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn read(&self, path: &Path) -> io::Result<String> {
        String::from_utf8(read_file(path)?).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            )
        })
    }
    fn read_bytes(&self, path: &Path) -> io::Result<Vec<u8>> {
        read_file(path)
    }
    fn size(&self, path: &Path) -> Option<u64> {
        std::fs::metadata(path).ok().map(|m| m.len())
    }
}

/// The longest one file read may take. A build holds the reload lock, so a read that never ends
/// (a path on a hung network mount) would wedge every later reload; past this the read is given
/// up (its thread is left to the kernel) and the build fails naming the file.
pub const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Reads a whole file the way every configured path is read (config, zones, geo, hints, TLS,
/// the health state file): only regular files (a FIFO or a device would block or never end: it
/// is refused, and the error says what it is), opened with `O_NONBLOCK` so opening a FIFO does
/// not wait for a writer, on a thread of its own so [`READ_DEADLINE`] bounds it.
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let owned = path.to_path_buf();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("gslbd-read".into())
        .spawn(move || {
            let _ = tx.send(read_regular(&owned));
        })?;
    match rx.recv_timeout(READ_DEADLINE) {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "not read within {} s (a hung mount?); giving up",
                READ_DEADLINE.as_secs()
            ),
        )),
    }
}

fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading blocks until a writer appears; non-blocking, it returns at
        // once and the type check below refuses it. On a regular file the flag changes nothing.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let mut file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "not a regular file ({}): refusing to read it",
                file_kind(&meta)
            ),
        ));
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut buf)?;
    Ok(buf)
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a file"
    }
}

/// One resource record as read, with where it was written.
#[derive(Debug, Clone)]
pub struct SourcedRecord {
    pub record: Record,
    /// Shared by every record of the file (one allocation per file, not per record).
    pub file: std::sync::Arc<Path>,
    pub line: usize,
}

/// A syntax error, with the file and the 1-based line it is on.
///
/// `line` is 0 when the error concerns the file as a whole (it cannot be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ReadError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// How deeply `$INCLUDE` may nest (the top-level file is depth 0).
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// Largest TTL accepted (RFC 2181 section 8).
const MAX_TTL: u32 = i32::MAX as u32;

/// Record errors reported from one master file before the reader gives up on it (a file that is
/// not a zone at all would otherwise give one per line).
pub const MAX_ERRORS: usize = 50;

/// Reads the master file at `path` whose initial origin is `origin`; the first error.
pub fn read_zone(
    origin: &Name,
    path: &Path,
    fs: &dyn ZoneFs,
) -> Result<Vec<SourcedRecord>, ReadError> {
    let mut out = Vec::new();
    read_zone_each(origin, path, fs, &mut |r| out.push(r)).map_err(|mut e| e.swap_remove(0))?;
    Ok(out)
}

/// `read_zone`, handing each record to `each` as it is read (a large zone is never held twice:
/// once as parsed records and once compiled), and reporting every error in one pass: a record
/// that does not parse is reported and reading goes on with the next entry (the lexer's entries
/// do not depend on it). Errors that make the rest unreliable stop the file: the lexer's
/// (unbalanced parentheses, quotes), a directive's ($ORIGIN, $TTL, $INCLUDE change what follows).
/// Entries that only fail because of an earlier error (blank-owner lines after an invalid owner)
/// are not reported again.
pub fn read_zone_each(
    origin: &Name,
    path: &Path,
    fs: &dyn ZoneFs,
    each: &mut dyn FnMut(SourcedRecord),
) -> Result<(), Vec<ReadError>> {
    let text = fs.read(path).map_err(|e| {
        vec![ReadError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read zone file: {e}"),
        }]
    })?;
    let mut origin = origin.clone();
    origin.set_fqdn(true);
    let mut reader = Reader {
        fs,
        out: each,
        default_ttl: None,
        last_ttl: None,
        buf: Vec::new(),
        ends: Vec::new(),
        errors: Vec::new(),
    };
    let fatal = reader.read_text(path, &text, origin, None, 0).err();
    let mut errors = reader.errors;
    errors.extend(fatal);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors with a line, before the file is attached.

pub(super) struct LineErr {
    pub(super) line: usize,
    pub(super) message: String,
}

impl LineErr {
    fn into_read(self, file: &Path) -> ReadError {
        ReadError {
            file: file.to_path_buf(),
            line: self.line,
            message: self.message,
        }
    }
}

pub(super) fn lerr<T>(line: usize, message: impl Into<String>) -> Result<T, LineErr> {
    Err(LineErr {
        line,
        message: message.into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Lexer

/// One token: the raw text (escapes kept; without the quotes for a quoted string).
#[derive(Debug, Clone, Copy)]
pub(super) struct Tok<'a> {
    pub(super) text: &'a str,
    pub(super) quoted: bool,
    pub(super) line: usize,
}

impl Tok<'_> {
    /// True for a bare (unquoted) token equal to `s`.
    fn is_bare(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }
}

/// One logical line (a record or a directive).
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The line the entry starts on.
    line: usize,
    /// The physical line began with a blank: no owner name, use the previous one.
    blank: bool,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        // Skip a UTF-8 byte order mark.
        let pos = if src.starts_with('\u{feff}') { 3 } else { 0 };
        Lexer { src, pos, line: 1 }
    }

    /// Reads the tokens of the next non-empty logical line into `toks`.
    fn next_entry(&mut self, toks: &mut Vec<Tok<'a>>) -> Result<Option<Entry>, LineErr> {
        toks.clear();
        let b = self.src.as_bytes();
        loop {
            if self.pos >= b.len() {
                return Ok(None);
            }
            let start_line = self.line;
            let blank = matches!(b[self.pos], b' ' | b'\t');
            let mut depth = 0usize;
            let mut paren_line = 0usize;
            while self.pos < b.len() {
                match b[self.pos] {
                    b' ' | b'\t' | b'\r' => self.pos += 1,
                    b'\n' => {
                        self.pos += 1;
                        self.line += 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b';' => {
                        while self.pos < b.len() && b[self.pos] != b'\n' {
                            self.pos += 1;
                        }
                    }
                    b'(' => {
                        if depth == 0 {
                            paren_line = self.line;
                        }
                        depth += 1;
                        self.pos += 1;
                    }
                    b')' => {
                        if depth == 0 {
                            return lerr(self.line, "unbalanced parenthesis (')' without '(')");
                        }
                        depth -= 1;
                        self.pos += 1;
                    }
                    b'"' => {
                        let open = self.line;
                        self.pos += 1;
                        let start = self.pos;
                        loop {
                            match b.get(self.pos) {
                                None | Some(b'\n') => {
                                    return lerr(open, "unterminated quoted string");
                                }
                                Some(b'"') => break,
                                Some(b'\\') => {
                                    if matches!(b.get(self.pos + 1), None | Some(b'\n')) {
                                        return lerr(open, "unterminated quoted string");
                                    }
                                    self.pos += 2;
                                }
                                Some(_) => self.pos += 1,
                            }
                        }
                        toks.push(Tok {
                            text: &self.src[start..self.pos],
                            quoted: true,
                            line: self.line,
                        });
                        self.pos += 1;
                    }
                    _ => {
                        let start = self.pos;
                        while self.pos < b.len() {
                            match b[self.pos] {
                                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                                b'\\' => {
                                    if matches!(
                                        b.get(self.pos + 1),
                                        None | Some(b'\n') | Some(b'\r')
                                    ) {
                                        return lerr(self.line, "backslash at end of line");
                                    }
                                    self.pos += 2;
                                }
                                _ => self.pos += 1,
                            }
                        }
                        // The escape skip may land inside a multi-byte character; move on to
                        // the next boundary (continuation bytes are never delimiters).
                        while !self.src.is_char_boundary(self.pos) {
                            self.pos += 1;
                        }
                        toks.push(Tok {
                            text: &self.src[start..self.pos],
                            quoted: false,
                            line: self.line,
                        });
                    }
                }
            }
            if depth > 0 {
                return lerr(
                    paren_line,
                    format!("unbalanced parenthesis (opened on line {paren_line})"),
                );
            }
            if !toks.is_empty() {
                return Ok(Some(Entry {
                    line: start_line,
                    blank,
                }));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Text helpers

/// Decodes the escape starting at `b[i] == b'\\'`; returns the byte and the index after it.
pub(super) fn unescape(b: &[u8], i: usize) -> Result<(u8, usize), String> {
    match b.get(i + 1) {
        None => Err("backslash at end of text".into()),
        Some(d) if d.is_ascii_digit() => {
            let digits = b
                .get(i + 1..i + 4)
                .filter(|d| d.iter().all(u8::is_ascii_digit));
            let Some(d) = digits else {
                return Err("\\DDD escape needs three decimal digits".into());
            };
            let v =
                u32::from(d[0] - b'0') * 100 + u32::from(d[1] - b'0') * 10 + u32::from(d[2] - b'0');
            if v > 255 {
                return Err(format!("\\{v} escape is larger than 255"));
            }
            Ok((v as u8, i + 4))
        }
        Some(&c) => Ok((c, i + 2)),
    }
}

/// Parses a domain name in master-file syntax (escapes allowed), relative to `origin` unless it
/// ends in an unescaped dot. `@` is the origin. Case is kept; octets are taken as they are.
pub(super) fn parse_name(text: &str, origin: &Name) -> Result<Name, String> {
    match text {
        "@" => return Ok(origin.clone()),
        "." => return Ok(Name::root()),
        "" => return Err("empty name".into()),
        _ => {}
    }
    let b = text.as_bytes();
    let mut name = Name::new();
    let mut label = [0u8; 63];
    let mut len = 0usize;
    let mut i = 0usize;
    let mut absolute = false;
    while i < b.len() {
        let c = b[i];
        if c == b'.' {
            if len == 0 {
                return Err("empty label".into());
            }
            name = name
                .append_label(&label[..len])
                .map_err(|e| e.to_string())?;
            len = 0;
            i += 1;
            if i == b.len() {
                absolute = true;
            }
            continue;
        }
        let byte = if c == b'\\' {
            let (v, next) = unescape(b, i)?;
            i = next;
            v
        } else {
            i += 1;
            c
        };
        if len == label.len() {
            return Err("label longer than 63 bytes".into());
        }
        label[len] = byte;
        len += 1;
    }
    if len > 0 {
        name = name
            .append_label(&label[..len])
            .map_err(|e| e.to_string())?;
    }
    if absolute {
        name.set_fqdn(true);
        Ok(name)
    } else {
        name.append_domain(origin).map_err(|e| e.to_string())
    }
}

/// Decodes a character-string's escapes, appending the bytes to `out`.
pub(super) fn decode_string(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let b = text.as_bytes();
    if !b.contains(&b'\\') {
        out.extend_from_slice(b);
        return Ok(());
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let (v, next) = unescape(b, i)?;
            out.push(v);
            i = next;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(())
}

fn parse_ttl_value(text: &str) -> Result<u32, String> {
    match parse_ttl(text) {
        Ok(v) if v <= MAX_TTL => Ok(v),
        Ok(_) => Err(format!("TTL \"{text}\" is larger than {MAX_TTL}")),
        Err(_) => Err(format!("invalid TTL \"{text}\"")),
    }
}

/// The number in `CLASSnnn` / `TYPEnnn` (prefix matched case-insensitively).
fn numbered(text: &str, prefix: &str) -> Option<u16> {
    let b = text.as_bytes();
    if b.len() > prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()) {
        text.get(prefix.len()..)?.parse().ok()
    } else {
        None
    }
}

/// The class named by `text`, if `text` is a class mnemonic (`Ok(true)` for IN).
fn class_token(text: &str) -> Option<bool> {
    const OTHERS: [&str; 7] = ["CH", "CHAOS", "HS", "HESIOD", "CS", "NONE", "ANY"];
    if text.eq_ignore_ascii_case("IN") {
        return Some(true);
    }
    if OTHERS.iter().any(|c| text.eq_ignore_ascii_case(c)) {
        return Some(false);
    }
    if let Some(n) = numbered(text, "CLASS") {
        return Some(n == 1);
    }
    None
}

fn parse_type(text: &str) -> Option<RecordType> {
    // The common ones without allocating.
    const COMMON: [(&str, RecordType); 9] = [
        ("A", RecordType::A),
        ("AAAA", RecordType::AAAA),
        ("NS", RecordType::NS),
        ("CNAME", RecordType::CNAME),
        ("TXT", RecordType::TXT),
        ("MX", RecordType::MX),
        ("SOA", RecordType::SOA),
        ("PTR", RecordType::PTR),
        ("SRV", RecordType::SRV),
    ];
    for (name, t) in COMMON {
        if text.eq_ignore_ascii_case(name) {
            return Some(t);
        }
    }
    rtypes::type_code(text).map(RecordType::from)
}

/// The mnemonic of a type, `TYPEnnn` when hickory has none.
pub fn type_name(t: RecordType) -> String {
    let code = u16::from(t);
    match rtypes::mnemonic(code) {
        Some(m) => m.to_string(),
        None => format!("TYPE{code}"),
    }
}

/// The uncompressed wire form of a name.
fn name_wire(name: &Name) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        v.push(label.len() as u8);
        v.extend_from_slice(label);
    }
    v.push(0);
    v
}

/// RDATA kept as the wire bytes we built (`NULL::with` refuses empty data, which APL may be).
fn opaque(rtype: RecordType, wire: Vec<u8>) -> RData {
    RData::Unknown {
        code: rtype,
        rdata: {
            let mut null = NULL::new();
            null.anything = wire;
            null
        },
    }
}

pub(crate) fn decode_wire(rtype: RecordType, wire: &[u8]) -> Result<RData, String> {
    let len = u16::try_from(wire.len()).map_err(|_| "RDATA longer than 65535 bytes".to_string())?;
    let mut decoder = BinDecoder::new(wire);
    let rdata = RData::read(&mut decoder, rtype, Restrict::new(len)).map_err(|e| e.to_string())?;
    if decoder.index() != wire.len() {
        return Err(format!("{} bytes left over", wire.len() - decoder.index()));
    }
    Ok(rdata)
}

// ---------------------------------------------------------------------------------------------
// RDATA token cursor

pub(super) struct Rd<'t, 'a> {
    pub(super) toks: &'t [Tok<'a>],
    pub(super) i: usize,
    pub(super) rtype: RecordType,
    /// The line of the type token, for "missing ..." errors when there is no RDATA at all.
    type_line: usize,
}

impl<'t, 'a> Rd<'t, 'a> {
    pub(super) fn last_line(&self) -> usize {
        if self.i == 0 {
            self.type_line
        } else {
            self.toks[self.i - 1].line
        }
    }

    pub(super) fn next(&mut self, what: &str) -> Result<&'t Tok<'a>, LineErr> {
        match self.toks.get(self.i) {
            Some(t) => {
                self.i += 1;
                Ok(t)
            }
            None => lerr(
                self.last_line(),
                format!("missing {what} in {} record", type_name(self.rtype)),
            ),
        }
    }

    fn end(&self) -> Result<(), LineErr> {
        match self.toks.get(self.i) {
            Some(t) => lerr(
                t.line,
                format!(
                    "unexpected extra data \"{}\" in {} record",
                    t.text,
                    type_name(self.rtype)
                ),
            ),
            None => Ok(()),
        }
    }

    pub(super) fn name(&mut self, what: &str, origin: &Name) -> Result<Name, LineErr> {
        let t = self.next(what)?;
        parse_name(t.text, origin).map_err(|m| LineErr {
            line: t.line,
            message: format!("invalid {what} \"{}\": {m}", t.text),
        })
    }

    pub(super) fn u16(&mut self, what: &str) -> Result<u16, LineErr> {
        let t = self.next(what)?;
        t.text.parse::<u16>().map_err(|_| LineErr {
            line: t.line,
            message: format!("invalid {what} \"{}\"", t.text),
        })
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32, LineErr> {
        let t = self.next(what)?;
        t.text.parse::<u32>().map_err(|_| LineErr {
            line: t.line,
            message: format!("invalid {what} \"{}\"", t.text),
        })
    }

    /// A time value: seconds, or with units (`1h`, `2d`, ...).
    fn time(&mut self, what: &str) -> Result<u32, LineErr> {
        let t = self.next(what)?;
        parse_ttl(t.text).map_err(|_| LineErr {
            line: t.line,
            message: format!("invalid {what} \"{}\"", t.text),
        })
    }

    fn time_i32(&mut self, what: &str) -> Result<i32, LineErr> {
        let v = self.time(what)?;
        i32::try_from(v).map_err(|_| LineErr {
            line: self.last_line(),
            message: format!("{what} {v} is larger than {}", i32::MAX),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reader

struct Reader<'f> {
    fs: &'f dyn ZoneFs,
    out: &'f mut dyn FnMut(SourcedRecord),
    /// `$TTL`.
    default_ttl: Option<u32>,
    /// The last explicit TTL (or the SOA MINIMUM used for lack of one).
    last_ttl: Option<u32>,
    /// Scratch for character-strings.
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Record errors so far (the reader goes on after them, up to `MAX_ERRORS`).
    errors: Vec<ReadError>,
}

/// Per-file state: reverts when an `$INCLUDE` ends.
struct FileState<'a> {
    origin: Name,
    owner: Option<Name>,
    /// The source text the current owner was parsed from, to skip re-parsing a repeated owner.
    owner_src: Option<&'a str>,
    /// The last owner written did not parse: lines inheriting it are skipped, not reported.
    owner_bad: bool,
}

impl Reader<'_> {
    fn read_text(
        &mut self,
        path: &Path,
        text: &str,
        origin: Name,
        owner: Option<Name>,
        depth: usize,
    ) -> Result<(), ReadError> {
        let file: std::sync::Arc<Path> = std::sync::Arc::from(path);
        let mut st = FileState {
            origin,
            owner,
            owner_src: None,
            owner_bad: false,
        };
        let mut lexer = Lexer::new(text);
        let mut toks: Vec<Tok<'_>> = Vec::with_capacity(16);
        loop {
            let entry = match lexer.next_entry(&mut toks) {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.into_read(&file)),
            };
            let first = toks[0];
            if !entry.blank && !first.quoted && first.text.starts_with('$') {
                self.directive(&file, &toks, &mut st, depth)?;
            } else if entry.blank && st.owner_bad {
                // Its owner is the invalid one reported above.
            } else {
                match self.record(&toks, entry, &mut st) {
                    Ok(record) => (self.out)(SourcedRecord {
                        record,
                        file: file.clone(),
                        line: entry.line,
                    }),
                    Err(e) => {
                        self.errors.push(e.into_read(&file));
                        if self.errors.len() >= MAX_ERRORS {
                            return Err(ReadError {
                                file: file.to_path_buf(),
                                line: entry.line,
                                message: format!(
                                    "{MAX_ERRORS} errors, not reading further: is this a \
                                     master file (RFC 1035 section 5)?"
                                ),
                            });
                        }
                    }
                }
            }
        }
    }

    fn directive<'a>(
        &mut self,
        file: &Path,
        toks: &[Tok<'a>],
        st: &mut FileState<'a>,
        depth: usize,
    ) -> Result<(), ReadError> {
        let d = toks[0];
        let fail = |line: usize, message: String| ReadError {
            file: file.to_path_buf(),
            line,
            message,
        };
        let arg = |i: usize, what: &str| {
            toks.get(i)
                .ok_or_else(|| fail(d.line, format!("{} needs {what}", d.text)))
        };
        let max_args = |n: usize| match toks.get(n + 1) {
            Some(t) => Err(fail(
                t.line,
                format!("unexpected extra data \"{}\" after {}", t.text, d.text),
            )),
            None => Ok(()),
        };
        if d.text.eq_ignore_ascii_case("$ORIGIN") {
            let t = arg(1, "a domain name")?;
            max_args(1)?;
            st.origin = parse_name(t.text, &st.origin)
                .map_err(|m| fail(t.line, format!("invalid $ORIGIN \"{}\": {m}", t.text)))?;
            st.owner_src = None;
        } else if d.text.eq_ignore_ascii_case("$TTL") {
            let t = arg(1, "a TTL")?;
            max_args(1)?;
            self.default_ttl = Some(parse_ttl_value(t.text).map_err(|m| fail(t.line, m))?);
        } else if d.text.eq_ignore_ascii_case("$INCLUDE") {
            let t = arg(1, "a file name")?;
            max_args(2)?;
            let mut raw = Vec::new();
            decode_string(t.text, &mut raw)
                .map_err(|m| fail(t.line, format!("invalid file name: {m}")))?;
            let name = String::from_utf8(raw)
                .map_err(|_| fail(t.line, "file name is not UTF-8".into()))?;
            let origin = match toks.get(2) {
                Some(o) => parse_name(o.text, &st.origin).map_err(|m| {
                    fail(
                        o.line,
                        format!("invalid $INCLUDE origin \"{}\": {m}", o.text),
                    )
                })?,
                None => st.origin.clone(),
            };
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(fail(
                    d.line,
                    format!("$INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep"),
                ));
            }
            let inc = Path::new(&name);
            let inc = if inc.is_absolute() {
                inc.to_path_buf()
            } else {
                file.parent()
                    .map_or_else(|| inc.to_path_buf(), |dir| dir.join(inc))
            };
            let text = self.fs.read(&inc).map_err(|e| {
                fail(
                    t.line,
                    format!("cannot read included file \"{}\": {e}", inc.display()),
                )
            })?;
            self.read_text(&inc, &text, origin, st.owner.clone(), depth + 1)?;
        } else {
            return Err(fail(d.line, format!("unknown directive {}", d.text)));
        }
        Ok(())
    }

    fn record<'a>(
        &mut self,
        toks: &[Tok<'a>],
        entry: Entry,
        st: &mut FileState<'a>,
    ) -> Result<Record, LineErr> {
        let mut i = 0;
        let owner = if entry.blank {
            match &st.owner {
                Some(o) => o.clone(),
                None => {
                    return lerr(
                        entry.line,
                        "no owner name (the line starts with a blank and there is no previous record)",
                    );
                }
            }
        } else {
            let t = toks[0];
            i = 1;
            st.owner_bad = false;
            match &st.owner {
                Some(o) if !t.quoted && st.owner_src == Some(t.text) => o.clone(),
                _ => {
                    let n = parse_name(t.text, &st.origin).map_err(|m| {
                        st.owner_bad = true;
                        LineErr {
                            line: t.line,
                            message: format!("invalid owner name \"{}\": {m}", t.text),
                        }
                    })?;
                    st.owner = Some(n.clone());
                    st.owner_src = if t.quoted { None } else { Some(t.text) };
                    n
                }
            }
        };

        let mut ttl = None;
        let mut class_seen = false;
        let (rtype, type_line) = loop {
            let Some(t) = toks.get(i) else {
                let line = toks.last().map_or(entry.line, |t| t.line);
                return lerr(line, "missing record type");
            };
            i += 1;
            if t.text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                if ttl.is_some() {
                    return lerr(t.line, format!("second TTL \"{}\"", t.text));
                }
                ttl = Some(parse_ttl_value(t.text).map_err(|m| LineErr {
                    line: t.line,
                    message: m,
                })?);
                continue;
            }
            if let Some(is_in) = class_token(t.text) {
                if !is_in {
                    return lerr(
                        t.line,
                        format!("only class IN is supported, not \"{}\"", t.text),
                    );
                }
                if class_seen {
                    return lerr(t.line, "second class");
                }
                class_seen = true;
                continue;
            }
            match parse_type(t.text) {
                Some(rt) => break (rt, t.line),
                None => return lerr(t.line, format!("unknown record type \"{}\"", t.text)),
            }
        };

        // Before the RDATA: a record whose RDATA is wrong still sets the TTL later lines inherit,
        // so they are not reported for the lack of one.
        if let Some(t) = ttl {
            self.last_ttl = Some(t);
        }
        let rdata = self.rdata(rtype, &toks[i..], type_line, &st.origin)?;

        let ttl = match ttl {
            Some(t) => t,
            None => match self.default_ttl.or(self.last_ttl) {
                Some(t) => t,
                None => match &rdata {
                    RData::SOA(soa) => {
                        self.last_ttl = Some(soa.minimum);
                        soa.minimum
                    }
                    _ => return lerr(entry.line, "no TTL (give one on the record or with $TTL)"),
                },
            },
        };

        Ok(Record::from_rdata(owner, ttl, rdata))
    }

    fn rdata(
        &mut self,
        rtype: RecordType,
        toks: &[Tok<'_>],
        type_line: usize,
        origin: &Name,
    ) -> Result<RData, LineErr> {
        if toks.first().is_some_and(|t| t.is_bare("\\#")) {
            return generic(rtype, toks, type_line);
        }
        let mut rd = Rd {
            toks,
            i: 0,
            rtype,
            type_line,
        };
        let code = u16::from(rtype);
        if rtypes::has_parser(code) {
            let wire = rtypes::parse(code, &mut rd, origin)?;
            rd.end()?;
            return Ok(opaque(rtype, wire));
        }
        let rdata = match rtype {
            RecordType::A => {
                let t = rd.next("address")?;
                let a = Ipv4Addr::from_str(t.text).map_err(|_| LineErr {
                    line: t.line,
                    message: format!("invalid IPv4 address \"{}\"", t.text),
                })?;
                RData::A(A(a))
            }
            RecordType::AAAA => {
                let t = rd.next("address")?;
                let a = Ipv6Addr::from_str(t.text).map_err(|_| LineErr {
                    line: t.line,
                    message: format!("invalid IPv6 address \"{}\"", t.text),
                })?;
                RData::AAAA(AAAA(a))
            }
            RecordType::NS => RData::NS(NS(rd.name("name server", origin)?)),
            RecordType::CNAME => RData::CNAME(CNAME(rd.name("target", origin)?)),
            RecordType::PTR => RData::PTR(PTR(rd.name("target", origin)?)),
            RecordType::DNAME => {
                let target = rd.name("target", origin)?;
                RData::Unknown {
                    code: RecordType::DNAME,
                    rdata: NULL::with(name_wire(&target)),
                }
            }
            RecordType::MX => {
                let pref = rd.u16("preference")?;
                RData::MX(MX::new(pref, rd.name("exchange", origin)?))
            }
            RecordType::SRV => {
                let priority = rd.u16("priority")?;
                let weight = rd.u16("weight")?;
                let port = rd.u16("port")?;
                RData::SRV(SRV::new(priority, weight, port, rd.name("target", origin)?))
            }
            RecordType::SOA => {
                let mname = rd.name("MNAME", origin)?;
                let rname = rd.name("RNAME", origin)?;
                let serial = rd.u32("serial")?;
                let refresh = rd.time_i32("refresh")?;
                let retry = rd.time_i32("retry")?;
                let expire = rd.time_i32("expire")?;
                let minimum = rd.time("minimum")?;
                RData::SOA(SOA::new(
                    mname, rname, serial, refresh, retry, expire, minimum,
                ))
            }
            RecordType::TXT => {
                if toks.is_empty() {
                    rd.next("text")?;
                }
                self.buf.clear();
                self.ends.clear();
                for t in toks {
                    let start = self.buf.len();
                    decode_string(t.text, &mut self.buf).map_err(|m| LineErr {
                        line: t.line,
                        message: format!("invalid TXT string: {m}"),
                    })?;
                    if self.buf.len() - start > 255 {
                        return lerr(t.line, "TXT character-string longer than 255 bytes");
                    }
                    self.ends.push(self.buf.len());
                }
                rd.i = toks.len();
                let mut parts = Vec::with_capacity(self.ends.len());
                let mut start = 0;
                for &end in &self.ends {
                    parts.push(&self.buf[start..end]);
                    start = end;
                }
                RData::TXT(TXT::from_bytes(parts))
            }
            RecordType::CAA => {
                let flags = rd.next("flags")?;
                let flags_v = flags.text.parse::<u8>().map_err(|_| LineErr {
                    line: flags.line,
                    message: format!("invalid CAA flags \"{}\"", flags.text),
                })?;
                let tag = rd.next("tag")?;
                if tag.text.is_empty()
                    || tag.text.len() > 15
                    || !tag.text.bytes().all(|c| c.is_ascii_alphanumeric())
                {
                    return lerr(
                        tag.line,
                        format!(
                            "invalid CAA tag \"{}\" (1 to 15 letters and digits)",
                            tag.text
                        ),
                    );
                }
                let value = rd.next("value")?;
                let mut wire = Vec::with_capacity(2 + tag.text.len() + value.text.len());
                wire.push(flags_v);
                wire.push(tag.text.len() as u8);
                wire.extend_from_slice(tag.text.as_bytes());
                decode_string(value.text, &mut wire).map_err(|m| LineErr {
                    line: value.line,
                    message: format!("invalid CAA value: {m}"),
                })?;
                decode_wire(RecordType::CAA, &wire).map_err(|m| LineErr {
                    line: value.line,
                    message: format!("invalid CAA record: {m}"),
                })?
            }
            _ => {
                return lerr(
                    type_line,
                    format!(
                        "record type {} has no known text format; use the RFC 3597 \\# syntax",
                        type_name(rtype)
                    ),
                );
            }
        };
        rd.end()?;
        Ok(rdata)
    }
}

/// RFC 3597 `\# length hex...`.
fn generic(rtype: RecordType, toks: &[Tok<'_>], type_line: usize) -> Result<RData, LineErr> {
    let line = toks[0].line;
    let Some(len_tok) = toks.get(1) else {
        return lerr(line, "missing RDATA length after \\#");
    };
    let len = len_tok.text.parse::<u16>().map_err(|_| LineErr {
        line: len_tok.line,
        message: format!("invalid \\# RDATA length \"{}\"", len_tok.text),
    })?;
    let mut wire = Vec::with_capacity(usize::from(len));
    let mut high: Option<u8> = None;
    for t in &toks[2..] {
        for c in t.text.bytes() {
            let v = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => {
                    return lerr(
                        t.line,
                        format!("invalid hex data \"{}\" in \\# RDATA", t.text),
                    );
                }
            };
            match high.take() {
                Some(h) => wire.push(h << 4 | v),
                None => high = Some(v),
            }
        }
    }
    let last_line = toks.last().map_or(type_line, |t| t.line);
    if high.is_some() {
        return lerr(last_line, "odd number of hex digits in \\# RDATA");
    }
    if wire.len() != usize::from(len) {
        return lerr(
            last_line,
            format!(
                "\\# RDATA length is {len} but {} bytes of data follow",
                wire.len()
            ),
        );
    }
    // Types with a parser of our own are kept as opaque bytes however they were written, so
    // `\#` and the type's own syntax give the same record.
    if rtypes::has_parser(u16::from(rtype)) {
        return Ok(opaque(rtype, wire));
    }
    decode_wire(rtype, &wire).map_err(|m| LineErr {
        line,
        message: format!("invalid {} RDATA: {m}", type_name(rtype)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct MemFs(HashMap<PathBuf, String>);

    impl MemFs {
        fn new(files: &[(&str, &str)]) -> Self {
            MemFs(
                files
                    .iter()
                    .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                    .collect(),
            )
        }
    }

    impl ZoneFs for MemFs {
        fn read(&self, path: &Path) -> io::Result<String> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
        }
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn read(text: &str) -> Result<Vec<SourcedRecord>, ReadError> {
        let fs = MemFs::new(&[("zones/example.com.zone", text)]);
        read_zone(
            &name("example.com."),
            Path::new("zones/example.com.zone"),
            &fs,
        )
    }

    fn read_ok(text: &str) -> Vec<SourcedRecord> {
        match read(text) {
            Ok(r) => r,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn read_err(text: &str) -> String {
        match read(text) {
            Ok(r) => panic!("expected an error, got {} records", r.len()),
            Err(e) => e.to_string(),
        }
    }

    fn owners(rs: &[SourcedRecord]) -> Vec<String> {
        rs.iter().map(|r| r.record.name.to_string()).collect()
    }

    #[test]
    fn directives_origin_and_ttl() {
        let rs = read_ok(
            "$TTL 1h\n\
             www A 192.0.2.1\n\
             $ORIGIN sub\n\
             host A 192.0.2.2\n\
             $ORIGIN other.test.\n\
             host A 192.0.2.3\n\
             $ttl 2d\n\
             x A 192.0.2.4\n",
        );
        assert_eq!(
            owners(&rs),
            [
                "www.example.com.",
                "host.sub.example.com.",
                "host.other.test.",
                "x.other.test."
            ]
        );
        assert_eq!(rs[0].record.ttl, 3600);
        assert_eq!(rs[3].record.ttl, 2 * 86400);
        assert_eq!(rs.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4, 6, 8]);
        assert!(
            rs.iter()
                .all(|r| r.record.dns_class == hickory_proto::rr::DNSClass::IN)
        );
        assert!(
            rs.iter()
                .all(|r| &*r.file == Path::new("zones/example.com.zone"))
        );
    }

    #[test]
    fn unknown_directive_is_an_error() {
        assert_eq!(
            read_err("$TTL 60\n$GENERATE 1-2 a$ A 1.2.3.$\n"),
            "zones/example.com.zone:2: unknown directive $GENERATE"
        );
    }

    #[test]
    fn relative_and_absolute_names() {
        let rs = read_ok(
            "$TTL 60\n\
             rel CNAME target\n\
             abs.example.net. CNAME target.example.org.\n\
             a\\.b CNAME x\\065y.\n",
        );
        assert_eq!(
            owners(&rs),
            ["rel.example.com.", "abs.example.net.", "a\\.b.example.com."]
        );
        assert!(rs.iter().all(|r| r.record.name.is_fqdn()));
        let RData::CNAME(c) = &rs[0].record.data else {
            panic!()
        };
        assert_eq!(c.0.to_string(), "target.example.com.");
        let RData::CNAME(c) = &rs[1].record.data else {
            panic!()
        };
        assert_eq!(c.0.to_string(), "target.example.org.");
        let RData::CNAME(c) = &rs[2].record.data else {
            panic!()
        };
        assert_eq!(c.0.iter().next().unwrap(), b"xAy");
        assert_eq!(rs[2].record.name.iter().next().unwrap(), b"a.b");
    }

    #[test]
    fn owner_case_is_kept() {
        let rs = read_ok("$TTL 60\nWwW.Example.COM. A 192.0.2.1\nMail A 192.0.2.2\n");
        assert_eq!(owners(&rs), ["WwW.Example.COM.", "Mail.example.com."]);
    }

    #[test]
    fn at_is_the_current_origin() {
        let rs = read_ok("$TTL 60\n@ NS ns1\n$ORIGIN sub.example.com.\n@ MX 10 @\n");
        assert_eq!(owners(&rs), ["example.com.", "sub.example.com."]);
        let RData::NS(ns) = &rs[0].record.data else {
            panic!()
        };
        assert_eq!(ns.0.to_string(), "ns1.example.com.");
        let RData::MX(mx) = &rs[1].record.data else {
            panic!()
        };
        assert_eq!(
            (mx.preference, mx.exchange.to_string().as_str()),
            (10, "sub.example.com.")
        );
    }

    #[test]
    fn blank_leading_line_inherits_owner() {
        let rs = read_ok(
            "$TTL 60\nwww A 192.0.2.1\n      A 192.0.2.2\n\t AAAA 2001:db8::1\n\nmail A 192.0.2.3\n  TXT x\n",
        );
        assert_eq!(
            owners(&rs),
            [
                "www.example.com.",
                "www.example.com.",
                "www.example.com.",
                "mail.example.com.",
                "mail.example.com."
            ]
        );
        assert_eq!(
            rs.iter().map(|r| r.line).collect::<Vec<_>>(),
            [2, 3, 4, 6, 7]
        );
    }

    #[test]
    fn blank_leading_first_record_is_an_error() {
        assert_eq!(
            read_err("$TTL 60\n   A 192.0.2.1\n"),
            "zones/example.com.zone:2: no owner name (the line starts with a blank and there is no previous record)"
        );
    }

    #[test]
    fn ttl_rules_explicit_default_last_and_soa_minimum() {
        // No $TTL: SOA takes its MINIMUM, which then carries on.
        let rs = read_ok(
            "@ SOA ns1 host 1 2h 1h 1w 300\nns1 A 192.0.2.1\nns2 120 A 192.0.2.2\nns3 A 192.0.2.3\n",
        );
        assert_eq!(
            rs.iter().map(|r| r.record.ttl).collect::<Vec<_>>(),
            [300, 300, 120, 120]
        );
        // $TTL wins over the last explicit TTL.
        let rs = read_ok("$TTL 100\na 5 A 192.0.2.1\nb A 192.0.2.2\n@ SOA ns host 1 2 3 4 5\n");
        assert_eq!(
            rs.iter().map(|r| r.record.ttl).collect::<Vec<_>>(),
            [5, 100, 100]
        );
        // TTL and class in either order, units allowed.
        let rs = read_ok(
            "a IN 1h A 192.0.2.1\nb 1d IN A 192.0.2.2\nc 1w2d A 192.0.2.3\nd in a 192.0.2.4\n",
        );
        assert_eq!(
            rs.iter().map(|r| r.record.ttl).collect::<Vec<_>>(),
            [3600, 86400, 9 * 86400, 9 * 86400]
        );
    }

    #[test]
    fn no_ttl_is_an_error() {
        assert_eq!(
            read_err("www A 192.0.2.1\n"),
            "zones/example.com.zone:1: no TTL (give one on the record or with $TTL)"
        );
    }

    #[test]
    fn parentheses_record_line_is_where_it_starts() {
        let rs = read_ok(
            "$TTL 60\n\
             ; comment line\n\
             @ IN SOA ns1 hostmaster ( ; comment\n\
             \t2026112201 ; serial\n\
             \t1h 15m ; refresh retry\n\
             \t2w\n\
             \t5m )\n\
             www A 192.0.2.1\n",
        );
        assert_eq!(rs[0].line, 3);
        assert_eq!(rs[1].line, 8);
        let RData::SOA(soa) = &rs[0].record.data else {
            panic!()
        };
        assert_eq!(soa.serial, 2026112201);
        assert_eq!(
            (soa.refresh, soa.retry, soa.expire, soa.minimum),
            (3600, 900, 14 * 86400, 300)
        );
        assert_eq!(soa.mname.to_string(), "ns1.example.com.");
        assert_eq!(soa.rname.to_string(), "hostmaster.example.com.");
    }

    #[test]
    fn unbalanced_parenthesis_names_the_opening_line() {
        assert_eq!(
            read_err("$TTL 60\nwww A 192.0.2.1\n@ SOA ns1 host ( 1 2 3 4 5\nfoo A 192.0.2.2\n"),
            "zones/example.com.zone:3: unbalanced parenthesis (opened on line 3)"
        );
        assert_eq!(
            read_err("$TTL 60\nwww A 192.0.2.1 )\n"),
            "zones/example.com.zone:2: unbalanced parenthesis (')' without '(')"
        );
    }

    #[test]
    fn txt_quoted_strings_escapes_and_multiple_strings() {
        let rs = read_ok(
            "$TTL 60\n\
             a TXT \"hello world\" \"say \\\"hi\\\"\" plain \"semi;colon\" \"\\065\\066\\\\\"\n\
             b TXT ( \"one\"\n  \"two\" )\n\
             c TXT \"\"\n\
             d TXT \"caf\u{e9}\"\n",
        );
        let RData::TXT(t) = &rs[0].record.data else {
            panic!()
        };
        let got: Vec<&[u8]> = t.txt_data.iter().map(|s| &s[..]).collect();
        assert_eq!(
            got,
            [
                &b"hello world"[..],
                b"say \"hi\"",
                b"plain",
                b"semi;colon",
                b"AB\\"
            ]
        );
        let RData::TXT(t) = &rs[1].record.data else {
            panic!()
        };
        assert_eq!(t.txt_data.len(), 2);
        assert_eq!(rs[1].line, 3);
        let RData::TXT(t) = &rs[2].record.data else {
            panic!()
        };
        assert_eq!(&t.txt_data[0][..], b"");
        let RData::TXT(t) = &rs[3].record.data else {
            panic!()
        };
        assert_eq!(&t.txt_data[0][..], "caf\u{e9}".as_bytes());
    }

    #[test]
    fn txt_string_longer_than_255_is_an_error() {
        let long = "x".repeat(256);
        let ok = "y".repeat(255);
        assert_eq!(
            read_err(&format!(
                "$TTL 60\na TXT \"{ok}\"\nb TXT (\n \"short\"\n \"{long}\" )\n"
            )),
            "zones/example.com.zone:5: TXT character-string longer than 255 bytes"
        );
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        assert_eq!(
            read_err("$TTL 60\n\na TXT \"abc\n"),
            "zones/example.com.zone:3: unterminated quoted string"
        );
    }

    #[test]
    fn mx_srv_caa_dname_records() {
        let rs = read_ok(
            "$TTL 60\n\
             @ MX 10 mail\n\
             _sip._udp SRV 0 5 5060 sip.example.net.\n\
             @ CAA 0 issue \"letsencrypt.org\"\n\
             @ CAA 128 iodef \"mailto:sec@example.com\"\n\
             old DNAME new\n",
        );
        let RData::SRV(srv) = &rs[1].record.data else {
            panic!()
        };
        assert_eq!((srv.priority, srv.weight, srv.port), (0, 5, 5060));
        assert_eq!(srv.target.to_string(), "sip.example.net.");
        assert_eq!(rs[1].record.name.to_string(), "_sip._udp.example.com.");
        let RData::CAA(caa) = &rs[2].record.data else {
            panic!()
        };
        assert_eq!(
            (caa.flags(), caa.tag.as_str(), &caa.value[..]),
            (0, "issue", &b"letsencrypt.org"[..])
        );
        let RData::CAA(caa) = &rs[3].record.data else {
            panic!()
        };
        assert!(caa.issuer_critical);
        assert_eq!(rs[4].record.record_type(), RecordType::DNAME);
        let RData::Unknown { rdata, .. } = &rs[4].record.data else {
            panic!()
        };
        assert_eq!(&rdata.anything[..], b"\x03new\x07example\x03com\x00");
    }

    #[test]
    fn generic_rfc3597_syntax() {
        let rs = read_ok(
            "$TTL 60\n\
             a TYPE65280 \\# 4 0a0B ( 0c\n 0d )\n\
             b A \\# 4 C0000201\n\
             c TYPE1 192.0.2.2\n\
             d TYPE731 \\# 0\n\
             e type16 \\# 4 03616263\n",
        );
        assert_eq!(rs[0].record.record_type(), RecordType::Unknown(65280));
        let RData::Unknown { rdata, .. } = &rs[0].record.data else {
            panic!()
        };
        assert_eq!(&rdata.anything[..], [0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(rs[1].record.data, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))));
        assert_eq!(rs[2].record.data, RData::A(A(Ipv4Addr::new(192, 0, 2, 2))));
        assert_eq!(rs[3].record.record_type(), RecordType::Unknown(731));
        let RData::TXT(t) = &rs[4].record.data else {
            panic!()
        };
        assert_eq!(&t.txt_data[0][..], b"abc");
    }

    #[test]
    fn generic_syntax_errors() {
        assert_eq!(
            read_err("$TTL 60\na TYPE65280 \\# 3 0a0b\n"),
            "zones/example.com.zone:2: \\# RDATA length is 3 but 2 bytes of data follow"
        );
        assert_eq!(
            read_err("$TTL 60\na TYPE65280 \\# 1 zz\n"),
            "zones/example.com.zone:2: invalid hex data \"zz\" in \\# RDATA"
        );
        assert_eq!(
            read_err("$TTL 60\na TYPE65280 1 2 3\n"),
            "zones/example.com.zone:2: record type TYPE65280 has no known text format; use the RFC 3597 \\# syntax"
        );
    }

    #[test]
    fn other_types_are_kept_as_wire_bytes_with_their_lines() {
        let rs = read_ok(
            "$TTL 60\n\
             h HINFO \"PC Intel\" \"Linux\"\n\
             s SSHFP 1 1 ( 123456789abcdef67890123456789abcdef67890 )\n\
             n NAPTR 100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:info@example.com!\" .\n\
             t TLSA 3 1 1 0123456789abcdef\n",
        );
        assert_eq!(
            rs.iter()
                .map(|r| r.record.record_type())
                .collect::<Vec<_>>(),
            [
                RecordType::HINFO,
                RecordType::SSHFP,
                RecordType::NAPTR,
                RecordType::TLSA
            ]
        );
        let RData::Unknown { rdata, .. } = &rs[0].record.data else {
            panic!()
        };
        assert_eq!(&rdata.anything[..], b"\x08PC Intel\x05Linux");
        assert_eq!(rs.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3, 4, 5]);
        assert_eq!(owners(&rs)[1], "s.example.com.");
        assert_eq!(
            read_err("$TTL 60\n\nh HINFO\n"),
            "zones/example.com.zone:3: missing CPU in HINFO record"
        );
        // A type with a mnemonic but no text format of ours.
        assert_eq!(
            read_err("$TTL 60\nw WKS 192.0.2.1 6 25\n"),
            "zones/example.com.zone:2: record type WKS has no known text format; use the RFC 3597 \\# syntax"
        );
    }

    #[test]
    fn include_expands_in_place_with_its_own_origin() {
        let fs = MemFs::new(&[
            (
                "zones/main.zone",
                "$TTL 60\na A 192.0.2.1\n$INCLUDE inc/part.zone sub\nb A 192.0.2.2\n  A 192.0.2.3\n",
            ),
            (
                "zones/inc/part.zone",
                "x A 192.0.2.10\n$ORIGIN elsewhere.test.\ny A 192.0.2.11\n$INCLUDE deeper.zone\n",
            ),
            ("zones/inc/deeper.zone", "  A 192.0.2.12\nz A 192.0.2.13\n"),
        ]);
        let rs = read_zone(&name("example.com."), Path::new("zones/main.zone"), &fs).unwrap();
        assert_eq!(
            owners(&rs),
            [
                "a.example.com.",
                "x.sub.example.com.",
                "y.elsewhere.test.",
                "y.elsewhere.test.",
                "z.elsewhere.test.",
                "b.example.com.",
                "b.example.com.",
            ]
        );
        let where_: Vec<(String, usize)> = rs
            .iter()
            .map(|r| (r.file.display().to_string(), r.line))
            .collect();
        assert_eq!(
            where_,
            [
                ("zones/main.zone".to_string(), 2),
                ("zones/inc/part.zone".to_string(), 1),
                ("zones/inc/part.zone".to_string(), 3),
                ("zones/inc/deeper.zone".to_string(), 1),
                ("zones/inc/deeper.zone".to_string(), 2),
                ("zones/main.zone".to_string(), 4),
                ("zones/main.zone".to_string(), 5),
            ]
        );
    }

    #[test]
    fn include_errors_name_the_right_file_and_line() {
        let fs = MemFs::new(&[
            (
                "zones/main.zone",
                "$TTL 60\na A 192.0.2.1\n$INCLUDE part.zone\n",
            ),
            ("zones/part.zone", "; part\nx A 192.0.2.10\ny A 1.2.3\n"),
        ]);
        let e = read_zone(&name("example.com."), Path::new("zones/main.zone"), &fs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "zones/part.zone:3: invalid IPv4 address \"1.2.3\""
        );

        let fs = MemFs::new(&[("zones/main.zone", "$TTL 60\n\n$INCLUDE missing.zone\n")]);
        let e = read_zone(&name("example.com."), Path::new("zones/main.zone"), &fs).unwrap_err();
        assert_eq!(
            (e.file.as_path(), e.line),
            (Path::new("zones/main.zone"), 3)
        );
        assert!(
            e.message
                .starts_with("cannot read included file \"zones/missing.zone\""),
            "{e}"
        );

        let fs = MemFs::new(&[("zones/loop.zone", "$TTL 60\n\n$INCLUDE loop.zone\n")]);
        let e = read_zone(&name("example.com."), Path::new("zones/loop.zone"), &fs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "zones/loop.zone:3: $INCLUDE nested more than 16 deep"
        );

        let e = read_zone(&name("example.com."), Path::new("zones/none.zone"), &fs).unwrap_err();
        assert_eq!(
            (e.file.as_path(), e.line),
            (Path::new("zones/none.zone"), 0)
        );
    }

    #[test]
    fn error_messages_carry_file_and_line() {
        let cases: &[(&str, &str)] = &[
            (
                "$TTL 60\n\nwww A 1.2.3\n",
                "zones/example.com.zone:3: invalid IPv4 address \"1.2.3\"",
            ),
            (
                "$TTL 60\nwww AAA ::1\n",
                "zones/example.com.zone:2: unknown record type \"AAA\"",
            ),
            (
                "$TTL 60\nwww CH A 192.0.2.1\n",
                "zones/example.com.zone:2: only class IN is supported, not \"CH\"",
            ),
            (
                "$TTL 60\nwww AAAA 2001:db8::zz\n",
                "zones/example.com.zone:2: invalid IPv6 address \"2001:db8::zz\"",
            ),
            (
                "$TTL 60\nwww A 192.0.2.1 192.0.2.2\n",
                "zones/example.com.zone:2: unexpected extra data \"192.0.2.2\" in A record",
            ),
            (
                "$TTL 60\n@ MX ( 10\n )\n",
                "zones/example.com.zone:2: missing exchange in MX record",
            ),
            (
                "$TTL 60\n@ MX 70000 mail\n",
                "zones/example.com.zone:2: invalid preference \"70000\"",
            ),
            (
                "$TTL 60\nwww\n",
                "zones/example.com.zone:2: missing record type",
            ),
            ("$TTL 1x\n", "zones/example.com.zone:1: invalid TTL \"1x\""),
            (
                "$TTL 60\nwww 10 20 A 192.0.2.1\n",
                "zones/example.com.zone:2: second TTL \"20\"",
            ),
            (
                "$TTL 60\na..b A 192.0.2.1\n",
                "zones/example.com.zone:2: invalid owner name \"a..b\": empty label",
            ),
            (
                "$TTL 60\n@ SOA ns host ( 1 2 3\n 4 five )\n",
                "zones/example.com.zone:3: invalid minimum \"five\"",
            ),
            (
                "$ORIGIN\n",
                "zones/example.com.zone:1: $ORIGIN needs a domain name",
            ),
            (
                "$TTL 60\n@ CAA 0 is-sue \"x\"\n",
                "zones/example.com.zone:2: invalid CAA tag \"is-sue\" (1 to 15 letters and digits)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&read_err(text), want, "for {text:?}");
        }
    }

    #[test]
    fn label_longer_than_63_is_an_error() {
        let long = "a".repeat(64);
        let e = read_err(&format!("$TTL 60\n{long} A 192.0.2.1\n"));
        assert!(
            e.starts_with("zones/example.com.zone:2: invalid owner name"),
            "{e}"
        );
        assert!(e.ends_with("label longer than 63 bytes"), "{e}");
    }

    #[test]
    fn crlf_line_endings_and_no_final_newline() {
        let rs = read_ok("$TTL 60\r\nwww A 192.0.2.1\r\n  A 192.0.2.2");
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[1].line, 3);
    }
}
