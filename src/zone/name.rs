//! Lookup keys: a name's lowercase, uncompressed wire form (RFC 1035 3.1), root = `[0]`.
//!
//! Every ancestor of a name is a suffix of its key, so walking up the tree is slicing, and a query
//! name read off the wire becomes a key without building a `Name`.

use hickory_proto::rr::Name;

pub type Key = Box<[u8]>;

pub fn key_of(name: &Name) -> Key {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

/// The key of the parent name, or None for the root.
pub fn parent(key: &[u8]) -> Option<&[u8]> {
    let len = *key.first()? as usize;
    if len == 0 { None } else { key.get(1 + len..) }
}

/// Whether `key` equals `ancestor` or lies below it. Keys are whole labels, so a suffix match that
/// starts on a label boundary is the test; walking parents keeps to boundaries.
pub fn is_at_or_below(key: &[u8], ancestor: &[u8]) -> bool {
    let mut k = key;
    loop {
        if k.len() == ancestor.len() {
            return k == ancestor;
        }
        if k.len() < ancestor.len() {
            return false;
        }
        match parent(k) {
            Some(p) => k = p,
            None => return false,
        }
    }
}

/// The key of a wire-form name (no compression pointers): the same bytes, lowercased.
pub fn key_of_wire(wire: &[u8]) -> Key {
    wire.to_ascii_lowercase().into_boxed_slice()
}

/// Presentation form of a key or wire name, for messages (RFC 1035 5.1 escapes).
pub fn display(key: &[u8]) -> String {
    if key == [0] {
        return ".".to_string();
    }
    let mut out = String::new();
    let mut k = key;
    while let Some(p) = parent(k) {
        for &b in &k[1..1 + k[0] as usize] {
            match b {
                b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                    out.push('\\');
                    out.push(b as char);
                }
                0x21..=0x7e => out.push(b as char),
                _ => out.push_str(&format!("\\{b:03}")),
            }
        }
        out.push('.');
        k = p;
    }
    out
}

/// Number of labels in a key (root has 0).
pub fn label_count(key: &[u8]) -> usize {
    let mut n = 0;
    let mut k = key;
    while let Some(p) = parent(k) {
        n += 1;
        k = p;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        key_of(&Name::from_ascii(s).unwrap())
    }

    #[test]
    fn keys_are_lowercase_wire() {
        assert_eq!(&*k("WwW.Ex.com."), b"\x03www\x02ex\x03com\x00");
        assert_eq!(&*k("."), b"\x00");
    }

    #[test]
    fn ancestors_are_suffixes() {
        let key = k("a.b.example.com.");
        assert_eq!(parent(&key), Some(&*k("b.example.com.")));
        assert!(is_at_or_below(&key, &k("example.com.")));
        assert!(is_at_or_below(&key, &k(".")));
        assert!(!is_at_or_below(&k("example.com."), &key));
        // "xample.com" is a byte suffix of "example.com" but not an ancestor.
        assert!(!is_at_or_below(&k("example.com."), &k("xample.com.")));
        assert_eq!(label_count(&key), 4);
    }
}
