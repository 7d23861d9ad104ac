//! Root hints (RFC 8109): where a walk starts when the cache knows no closer delegation.
//!
//! The built-in set is IANA's root servers (the `named.root` file published by InterNIC, the same
//! data Debian ships in dns-root-data). A hints file uses master-file lines, `NAME [TTL] [IN] TYPE
//! DATA`, with NS records at the root and A/AAAA records for their targets; `;` starts a comment.

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::Name;

/// The root's name servers and their addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hints {
    pub servers: Vec<(Name, Vec<IpAddr>)>,
}

/// IANA's root servers, letter by letter (https://www.internic.net/domain/named.root).
const IANA: &[(&str, &str, &str)] = &[
    ("a", "198.41.0.4", "2001:503:ba3e::2:30"),
    ("b", "170.247.170.2", "2801:1b8:10::b"),
    ("c", "192.33.4.12", "2001:500:2::c"),
    ("d", "199.7.91.13", "2001:500:2d::d"),
    ("e", "192.203.230.10", "2001:500:a8::e"),
    ("f", "192.5.5.241", "2001:500:2f::f"),
    ("g", "192.112.36.4", "2001:500:12::d0d"),
    ("h", "198.97.190.53", "2001:500:1::53"),
    ("i", "192.36.148.17", "2001:7fe::53"),
    ("j", "192.58.128.30", "2001:503:c27::2:30"),
    ("k", "193.0.14.129", "2001:7fd::1"),
    ("l", "199.7.83.42", "2001:500:9f::42"),
    ("m", "202.12.27.33", "2001:dc3::35"),
];

impl Hints {
    pub fn iana() -> Hints {
        Hints {
            servers: IANA
                .iter()
                .map(|(letter, v4, v6)| {
                    let name = Name::from_ascii(format!("{letter}.root-servers.net."))
                        .expect("valid name");
                    let addrs = [v4, v6]
                        .iter()
                        .map(|a| a.parse().expect("valid address"))
                        .collect();
                    (name, addrs)
                })
                .collect(),
        }
    }

    /// Parses a hints file; errors are `path:line: message`.
    pub fn parse(text: &str, path: &Path) -> Result<Hints, String> {
        let at = |line: usize, msg: String| format!("{}:{line}: {msg}", path.display());
        let mut ns: Vec<Name> = Vec::new();
        let mut addrs: Vec<(Name, IpAddr)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let text = raw.split(';').next().unwrap_or("");
            let tokens: Vec<&str> = text.split_whitespace().collect();
            if tokens.is_empty() {
                continue;
            }
            // NAME [TTL] [IN] TYPE DATA, TTL and class in either order (RFC 1035 5.1).
            let mut rest = &tokens[1..];
            while let Some(t) = rest.first() {
                if t.eq_ignore_ascii_case("IN") || t.parse::<u32>().is_ok() {
                    rest = &rest[1..];
                } else {
                    break;
                }
            }
            let [rtype, data] = rest else {
                return Err(at(
                    line,
                    format!("expected NAME [TTL] [IN] TYPE DATA: {raw}"),
                ));
            };
            let name = Name::from_str(tokens[0])
                .map_err(|e| at(line, format!("bad name {}: {e}", tokens[0])))?;
            if !name.is_fqdn() {
                return Err(at(line, format!("{} must end with a dot", tokens[0])));
            }
            match rtype.to_ascii_uppercase().as_str() {
                "NS" => {
                    if !name.is_root() {
                        return Err(at(
                            line,
                            format!("NS records must be at the root, not {name}"),
                        ));
                    }
                    let target = Name::from_str(data)
                        .ok()
                        .filter(Name::is_fqdn)
                        .ok_or_else(|| at(line, format!("bad NS target {data}")))?;
                    ns.push(target);
                }
                "A" | "AAAA" => {
                    let ip: IpAddr = data
                        .parse()
                        .map_err(|_| at(line, format!("bad address {data}")))?;
                    if ip.is_ipv4() != rtype.eq_ignore_ascii_case("A") {
                        return Err(at(line, format!("{data} is not an {rtype} address")));
                    }
                    addrs.push((name, ip));
                }
                other => return Err(at(line, format!("unexpected type {other} in root hints"))),
            }
        }
        if ns.is_empty() {
            return Err(format!("{}: no NS records for the root", path.display()));
        }
        let mut servers = Vec::new();
        for n in ns {
            let ips: Vec<IpAddr> = addrs
                .iter()
                .filter(|(a, _)| crate::zone::name::key_of(a) == crate::zone::name::key_of(&n))
                .map(|(_, ip)| *ip)
                .collect();
            if ips.is_empty() {
                return Err(format!(
                    "{}: no address for root server {n}",
                    path.display()
                ));
            }
            servers.push((n, ips));
        }
        Ok(Hints { servers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_has_thirteen_dual_stack_servers() {
        let h = Hints::iana();
        assert_eq!(h.servers.len(), 13);
        assert!(h.servers.iter().all(|(_, a)| a.len() == 2));
        assert_eq!(h.servers[0].1[0], "198.41.0.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn parses_named_root_format() {
        let text = "; comment\n.  3600000  NS  A.ROOT-SERVERS.NET.\n\
                    A.ROOT-SERVERS.NET. 3600000 A 127.0.1.1\n\
                    a.root-servers.net. 3600000 IN AAAA ::1\n";
        let h = Hints::parse(text, Path::new("h")).unwrap();
        assert_eq!(h.servers.len(), 1);
        assert_eq!(h.servers[0].1.len(), 2);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (". NS a.root.\na.root. A 300.1.1.1\n", "h:2: bad address"),
            (
                ". NS a.root.\na.root. AAAA 127.0.0.1\n",
                "h:2: 127.0.0.1 is not an AAAA",
            ),
            (". NS a.root.\n", "no address for root server a.root."),
            ("a.root. A 127.0.0.1\n", "no NS records"),
            ("com. NS a.root.\n", "h:1: NS records must be at the root"),
            (". NS a.root.\na.root. MX 10 x.\n", "h:2: expected NAME"),
            (". NS a.root.\na.root. TXT x\n", "h:2: unexpected type TXT"),
        ];
        for (text, want) in cases {
            let err = Hints::parse(text, Path::new("h")).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
