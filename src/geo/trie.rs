//! A binary trie of networks for the override files: longest prefix match plus the prefix length
//! of the region around the address in which the match cannot change (the ECS scope), which is
//! what an mmdb search tree gives for free and a sorted list of CIDRs would not.

use std::net::IpAddr;

use super::Net;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    child: [u32; 2],
    value: u32,
}

const EMPTY: Node = Node {
    child: [NONE, NONE],
    value: NONE,
};

/// Two roots: node 0 for IPv4, node 1 for IPv6. An IPv6 network never matches an IPv4 address.
#[derive(Debug, Clone)]
pub(crate) struct Trie<T> {
    nodes: Vec<Node>,
    values: Vec<T>,
}

/// The root, the address as the top bits of a u128, and the family's width.
fn key(ip: IpAddr) -> (usize, u128, u8) {
    match ip {
        IpAddr::V4(a) => (0, u128::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (1, u128::from(a), 128),
    }
}

fn bit(key: u128, depth: u8) -> usize {
    ((key >> (127 - u32::from(depth))) & 1) as usize
}

impl<T> Trie<T> {
    pub(crate) fn new() -> Trie<T> {
        Trie {
            nodes: vec![EMPTY, EMPTY],
            values: Vec::new(),
        }
    }

    /// Number of networks.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Sets the value of `net`, replacing any value it had.
    pub(crate) fn insert(&mut self, net: Net, value: T) {
        let (mut node, k, _) = key(net.addr);
        for depth in 0..net.prefix {
            let b = bit(k, depth);
            let next = self.nodes[node].child[b];
            node = if next == NONE {
                let id = self.nodes.len();
                self.nodes.push(EMPTY);
                self.nodes[node].child[b] = id as u32;
                id
            } else {
                next as usize
            };
        }
        if self.nodes[node].value == NONE {
            self.nodes[node].value = self.values.len() as u32;
            self.values.push(value);
        } else {
            self.values[self.nodes[node].value as usize] = value;
        }
    }

    /// The value of the most specific network strictly containing `net` (its parent in the
    /// override hierarchy).
    pub(crate) fn parent_value(&self, net: Net) -> Option<&T> {
        let (mut node, k, _) = key(net.addr);
        let mut found = None;
        for depth in 0..net.prefix {
            if self.nodes[node].value != NONE {
                found = Some(self.nodes[node].value);
            }
            let next = self.nodes[node].child[bit(k, depth)];
            if next == NONE {
                break;
            }
            node = next as usize;
        }
        found.map(|v| &self.values[v as usize])
    }

    /// The value of the longest network containing `ip`, and the prefix length of the largest
    /// block around `ip` inside which every address gets the same answer: where the walk stops
    /// at a leaf, the leaf's depth; where it stops because the trie branches only the other way,
    /// one bit deeper (that half holds no network).
    pub(crate) fn lookup(&self, ip: IpAddr) -> (Option<&T>, u8) {
        let (mut node, k, width) = key(ip);
        let mut found = None;
        let mut depth = 0u8;
        loop {
            let n = &self.nodes[node];
            if n.value != NONE {
                found = Some(n.value);
            }
            if n.child == [NONE, NONE] || depth == width {
                break;
            }
            let next = n.child[bit(k, depth)];
            if next == NONE {
                depth += 1;
                break;
            }
            node = next as usize;
            depth += 1;
        }
        (found.map(|v| &self.values[v as usize]), depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        let (a, p) = s.split_once('/').unwrap();
        Net {
            addr: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
        }
    }

    #[test]
    fn regions() {
        let mut t = Trie::new();
        t.insert(net("10.0.0.0/8"), 8);
        t.insert(net("10.1.0.0/16"), 16);
        t.insert(net("2001:db8::/32"), 32);
        let look = |s: &str| {
            let (v, d) = t.lookup(s.parse().unwrap());
            (v.copied(), d)
        };
        // Inside the /16: a leaf.
        assert_eq!(look("10.1.2.3"), (Some(16), 16));
        // Inside the /8 but next to the /16: the answer holds for 10.0.0.0/16 only.
        assert_eq!(look("10.0.2.3"), (Some(8), 16));
        assert_eq!(look("10.128.0.1"), (Some(8), 9));
        // Outside: the first half of the space not leading to 10/8.
        assert_eq!(look("192.0.2.1"), (None, 1));
        assert_eq!(look("11.0.0.1"), (None, 8));
        assert_eq!(look("2001:db8::1"), (Some(32), 32));
        // The IPv4 root is not the IPv6 one: ::1 is only near 2001:db8::/32 (0010...).
        assert_eq!(look("::1"), (None, 3));
        assert_eq!(t.parent_value(net("10.1.0.0/16")), Some(&8));
        assert_eq!(t.parent_value(net("10.0.0.0/8")), None);
        assert_eq!(t.len(), 3);
        let empty: Trie<u8> = Trie::new();
        assert_eq!(empty.lookup("1.2.3.4".parse().unwrap()), (None, 0));
    }

    #[test]
    fn full_length_networks() {
        let mut t = Trie::new();
        t.insert(net("192.0.2.1/32"), 1);
        t.insert(net("::1/128"), 2);
        assert_eq!(t.lookup("192.0.2.1".parse().unwrap()), (Some(&1), 32));
        assert_eq!(t.lookup("192.0.2.0".parse().unwrap()), (None, 32));
        assert_eq!(t.lookup("::1".parse().unwrap()), (Some(&2), 128));
    }
}
