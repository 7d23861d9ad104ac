//! gslbd's geo CSV format (override files and the CSV -> mmdb compiler) and the ASN -> carrier
//! table format.
//!
//! Geo CSV: `#` comment lines and blank lines anywhere; the first other line is the header
//! `network,carrier,asn,organisation,country,province,city,latitude,longitude`; then one network
//! per line (CIDR, IPv4 or IPv6; a bare address is a host route), every column after `network`
//! possibly empty. Fields may be double-quoted (RFC 4180, `""` for a quote) to hold commas, as
//! real organisation names do. The ASN column accepts `9808` or `AS9808`.
//!
//! ASN table: `asn,carrier[,organisation]`, an optional header line starting with `asn`, `#`
//! comments. The organisation is informational: everything after the second comma.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use mmdb_writer::{Value, Writer};

/// 2026-01-01T00:00:00Z, the build time written into compiled databases.
pub const BUILD_EPOCH: u64 = 1_767_225_600;

use super::Net;

pub(crate) const HEADER: [&str; 9] = [
    "network",
    "carrier",
    "asn",
    "organisation",
    "country",
    "province",
    "city",
    "latitude",
    "longitude",
];

/// One data line of a geo CSV file, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GeoRow {
    pub line: usize,
    pub net: Net,
    pub carrier: Option<String>,
    pub asn: Option<u32>,
    pub organisation: Option<String>,
    pub country: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub location: Option<(f64, f64)>,
}

/// One line of an ASN -> carrier table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AsnRow {
    pub line: usize,
    pub asn: u32,
    pub carrier: String,
}

/// Splits one line into fields: commas separate, a field may be double-quoted, unquoted fields
/// are trimmed.
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start();
        if let Some(quoted) = trimmed.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let after = loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".to_string()),
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break &quoted[i + 1..];
                        }
                    }
                    Some((_, c)) => value.push(c),
                }
            };
            fields.push(value);
            let after = after.trim_start();
            match after.strip_prefix(',') {
                Some(next) => rest = next,
                None if after.is_empty() => return Ok(fields),
                None => return Err("text after a closing quote".to_string()),
            }
        } else {
            match rest.split_once(',') {
                Some((field, next)) => {
                    fields.push(field.trim().to_string());
                    rest = next;
                }
                None => {
                    fields.push(rest.trim().to_string());
                    return Ok(fields);
                }
            }
        }
    }
}

/// Lines that carry data: (1-based line number, text), skipping blank and `#` lines.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#')
        })
}

/// `a.b.c.d/n`, `x::/n` or a bare address; host bits must be clear.
pub(crate) fn parse_net(s: &str) -> Result<Net, String> {
    let (addr_text, prefix_text) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| format!("bad network {s:?}: not an IPv4 or IPv6 address"))?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => width,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= width => n,
            _ => {
                return Err(format!(
                    "bad network {s:?}: prefix length must be 0 to {width}"
                ));
            }
        },
    };
    if let IpAddr::V6(v6) = addr
        && v6.to_ipv4_mapped().is_some()
        && prefix >= 96
    {
        return Err(format!(
            "bad network {s:?}: write IPv4 networks as IPv4 (a.b.c.d/n); IPv4-mapped clients \
             are looked up as IPv4"
        ));
    }
    let net = Net::containing(addr, prefix);
    if net.addr != addr {
        return Err(format!("host bits set in {s} (the network is {net})"));
    }
    Ok(net)
}

fn parse_asn(s: &str) -> Result<u32, String> {
    let digits = s
        .strip_prefix("AS")
        .or_else(|| s.strip_prefix("as"))
        .unwrap_or(s);
    digits
        .parse::<u32>()
        .map_err(|_| format!("bad ASN {s:?}: expected a number from 0 to 4294967295"))
}

fn parse_coordinate(s: &str, what: &str, limit: f64) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (-limit..=limit).contains(&v) => Ok(v),
        Ok(_) => Err(format!("{what} {s} out of range (-{limit} to {limit})")),
        Err(_) => Err(format!("bad {what} {s:?}: not a number")),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Parses a geo CSV file. Every problem is reported as `label:line: message`; duplicate networks
/// are an error.
pub(crate) fn parse_geo_csv(text: &str, label: &str) -> Result<Vec<GeoRow>, Vec<String>> {
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut seen: HashMap<Net, usize> = HashMap::new();
    let mut lines = data_lines(text);
    match lines.next() {
        None => {
            errors.push(format!(
                "{label}: empty file: expected the header line {}",
                HEADER.join(",")
            ));
            return Err(errors);
        }
        Some((n, line)) => {
            let ok = split_fields(line).is_ok_and(|f| {
                f.len() == HEADER.len()
                    && f.iter().zip(HEADER).all(|(a, b)| a.eq_ignore_ascii_case(b))
            });
            if !ok {
                errors.push(format!(
                    "{label}:{n}: expected the header line {}",
                    HEADER.join(",")
                ));
                return Err(errors);
            }
        }
    }
    for (n, line) in lines {
        match parse_geo_row(line, n) {
            Ok(row) => {
                if let Some(first) = seen.get(&row.net) {
                    errors.push(format!(
                        "{label}:{n}: duplicate network {} (first at line {first})",
                        row.net
                    ));
                } else {
                    seen.insert(row.net, n);
                    rows.push(row);
                }
            }
            Err(e) => errors.push(format!("{label}:{n}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

fn parse_geo_row(line: &str, n: usize) -> Result<GeoRow, String> {
    let f = split_fields(line)?;
    if f.len() != HEADER.len() {
        return Err(format!(
            "expected {} columns ({}), found {}",
            HEADER.len(),
            HEADER.join(","),
            f.len()
        ));
    }
    let net = parse_net(&f[0])?;
    let asn = if f[2].is_empty() {
        None
    } else {
        Some(parse_asn(&f[2])?)
    };
    let country = if f[4].is_empty() {
        None
    } else if f[4].len() == 2 && f[4].bytes().all(|b| b.is_ascii_alphabetic()) {
        Some(f[4].to_ascii_uppercase())
    } else {
        return Err(format!(
            "bad country {:?}: expected an ISO 3166-1 alpha-2 code such as CN",
            f[4]
        ));
    };
    let location = match (f[7].is_empty(), f[8].is_empty()) {
        (true, true) => None,
        (false, false) => Some((
            parse_coordinate(&f[7], "latitude", 90.0)?,
            parse_coordinate(&f[8], "longitude", 180.0)?,
        )),
        _ => return Err("latitude and longitude go together: give both or neither".to_string()),
    };
    Ok(GeoRow {
        line: n,
        net,
        carrier: non_empty(&f[1]),
        asn,
        organisation: non_empty(&f[3]),
        country,
        province: non_empty(&f[5]),
        city: non_empty(&f[6]),
        location,
    })
}

/// Parses an ASN -> carrier table. Carrier ids are returned as written; the caller skips the ones
/// its config does not define.
pub(crate) fn parse_asn_table(text: &str, label: &str) -> Result<Vec<AsnRow>, Vec<String>> {
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut seen: HashMap<u32, (usize, String)> = HashMap::new();
    for (i, (n, line)) in data_lines(text).enumerate() {
        let mut parts = line.splitn(3, ',');
        let asn_text = parts.next().unwrap_or("").trim();
        if i == 0 && asn_text.eq_ignore_ascii_case("asn") {
            continue;
        }
        let carrier = parts.next().map(str::trim).unwrap_or("");
        let asn = match parse_asn(asn_text) {
            Ok(a) => a,
            Err(e) => {
                errors.push(format!("{label}:{n}: {e}"));
                continue;
            }
        };
        if carrier.is_empty() {
            errors.push(format!(
                "{label}:{n}: expected asn,carrier[,organisation]: no carrier"
            ));
            continue;
        }
        match seen.get(&asn) {
            Some((first, c)) if c != carrier => errors.push(format!(
                "{label}:{n}: AS{asn} is mapped to {carrier} here and to {c} at line {first}"
            )),
            Some(_) => {}
            None => {
                seen.insert(asn, (n, carrier.to_string()));
                rows.push(AsnRow {
                    line: n,
                    asn,
                    carrier: carrier.to_string(),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(errors)
    }
}

fn ip_net(net: Net) -> IpNet {
    IpNet::new(net.addr, net.prefix).expect("prefix checked by parse_net")
}

/// Compiles a geo CSV file into two MaxMind DB files: an ASN-schema database
/// (`autonomous_system_number`, `autonomous_system_organization`) and a City-schema one
/// (`country.iso_code`, `subdivisions[0].names.en`, `city.names.en`, `location.latitude` /
/// `longitude`). The carrier column is not written: the ASN table maps ASNs to carriers.
///
/// Both are IPv6 trees with IPv4 at `::/96` (and the usual IPv4-mapped alias), as GeoLite2 files
/// are. As in real databases, a more specific row replaces the record of a covering one
/// entirely. The build time in the metadata is fixed (2026-01-01T00:00:00Z), so the same CSV
/// always gives the same bytes; not 0, which libmaxminddb (mmdblookup, PowerDNS's geoip backend)
/// rejects as invalid metadata.
pub fn compile_csv(text: &str, file_label: &Path) -> Result<(Vec<u8>, Vec<u8>), Vec<String>> {
    let label = file_label.display().to_string();
    let mut rows = parse_geo_csv(text, &label)?;
    // Covering networks first, so the more specific rows overwrite them.
    rows.sort_by_key(|r| (r.net.addr.is_ipv6(), r.net.prefix));

    let writer = |kind: &str| {
        Writer::builder(format!("gslbd-{kind}"))
            .description(&[(
                "en",
                &format!("gslbd {kind} database compiled from {label}")[..],
            )])
            .build_epoch(std::time::UNIX_EPOCH + std::time::Duration::from_secs(BUILD_EPOCH))
            .build()
    };
    let mut asn_writer = writer("ASN");
    let mut city_writer = writer("City");
    let mut errors = Vec::new();
    for row in &rows {
        let mut asn = Vec::new();
        if let Some(a) = row.asn {
            asn.push(("autonomous_system_number", Value::from(a)));
        }
        if let Some(o) = &row.organisation {
            asn.push(("autonomous_system_organization", Value::from(o.as_str())));
        }
        if !asn.is_empty()
            && let Err(e) = asn_writer.insert_value(ip_net(row.net), Value::map(asn))
        {
            errors.push(format!("{label}:{}: {e}", row.line));
        }

        let names = |s: &str| Value::map([("names", Value::map([("en", s)]))]);
        let mut city = Vec::new();
        if let Some(c) = &row.country {
            city.push(("country", Value::map([("iso_code", c.as_str())])));
        }
        if let Some(p) = &row.province {
            city.push(("subdivisions", Value::array([names(p)])));
        }
        if let Some(c) = &row.city {
            city.push(("city", names(c)));
        }
        if let Some((lat, lon)) = row.location {
            city.push((
                "location",
                Value::map([("latitude", lat), ("longitude", lon)]),
            ));
        }
        if !city.is_empty()
            && let Err(e) = city_writer.insert_value(ip_net(row.net), Value::map(city))
        {
            errors.push(format!("{label}:{}: {e}", row.line));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let asn_bytes = asn_writer
        .to_bytes()
        .map_err(|e| vec![format!("{label}: cannot build the ASN database: {e}")])?;
    let city_bytes = city_writer
        .to_bytes()
        .map_err(|e| vec![format!("{label}: cannot build the City database: {e}")])?;
    Ok((asn_bytes, city_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        assert_eq!(split_fields("a, b ,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split_fields(r#"1,"Acme, Inc.","say ""hi""",,"#).unwrap(),
            ["1", "Acme, Inc.", r#"say "hi""#, "", ""]
        );
        assert!(split_fields(r#"1,"open"#).is_err());
        assert!(split_fields(r#"1,"a"b"#).is_err());
    }

    #[test]
    fn networks() {
        assert_eq!(
            parse_net("192.0.2.0/24").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(parse_net("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(
            parse_net("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        let e = parse_net("192.0.2.1/24").unwrap_err();
        assert!(
            e.contains("host bits set") && e.contains("192.0.2.0/24"),
            "{e}"
        );
        assert!(
            parse_net("192.0.2.0/33")
                .unwrap_err()
                .contains("prefix length")
        );
        assert!(parse_net("192.0.2/24").unwrap_err().contains("bad network"));
        assert!(
            parse_net("::ffff:192.0.2.0/120")
                .unwrap_err()
                .contains("as IPv4")
        );
    }

    #[test]
    fn asn_table() {
        let text = "# comment\nasn,carrier,organisation\n9808,mobile,China Mobile, Ltd.\n\
                    AS4134 , telecom\n9808,mobile,again\n";
        let rows = parse_asn_table(text, "t.csv").unwrap();
        assert_eq!(
            rows,
            [
                AsnRow {
                    line: 3,
                    asn: 9808,
                    carrier: "mobile".into()
                },
                AsnRow {
                    line: 4,
                    asn: 4134,
                    carrier: "telecom".into()
                },
            ]
        );
        let errs = parse_asn_table("x,mobile\n9808\n9808,a\n9808,b\n", "t.csv").unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("t.csv:1: bad ASN"), "{errs:?}");
        assert!(
            errs[1].starts_with("t.csv:2: expected asn,carrier"),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("t.csv:4: AS9808 is mapped to b here and to a at line 3"),
            "{errs:?}"
        );
    }
}
