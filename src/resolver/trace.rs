//! What a walk did, step by step, for `gslbd resolve --trace` and `GET /trace`: the servers asked,
//! the referrals and answers they gave, and what came from the cache. Rendered like `dig +trace`.

use std::fmt::Write as _;

use hickory_proto::rr::Record;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The walk for a name starts at this delegation (from the cache or the root hints).
    Start {
        name: String,
        qtype: String,
        zone: String,
        servers: Vec<String>,
        from: &'static str,
    },
    /// Answered (or partly answered, for a CNAME) from the cache.
    Cache {
        name: String,
        qtype: String,
        result: String,
        records: Vec<String>,
    },
    /// One upstream query and what came of it.
    Query {
        server: String,
        server_name: String,
        zone: String,
        name: String,
        qtype: String,
        proto: super::upstream::Proto,
        /// The UDP reply was truncated, so this is the TCP retry's result.
        tc_retry: bool,
        rtt_ms: f64,
        result: String,
        records: Vec<String>,
    },
    /// A server that failed to answer usefully: timeout, refusal, lame delegation.
    Failed {
        server: String,
        server_name: String,
        zone: String,
        reason: String,
    },
    /// A delegation's servers came without addresses: resolving one of their names first.
    Glueless { zone: String, server_name: String },
    /// The answer continues at another name (a CNAME out of what that server answers for).
    Follow { from: String, to: String },
    /// The walk gave up.
    Fail { reason: String },
}

pub fn record_lines(records: &[Record]) -> Vec<String> {
    records.iter().map(presentation).collect()
}

/// `name TTL IN TYPE data`, as dig prints it.
pub fn presentation(r: &Record) -> String {
    format!("{}\t{}\tIN\t{}\t{}", r.name, r.ttl, r.record_type(), r.data)
}

/// The trace as text, like `dig +trace`: records as dig prints them and `;;` lines for the rest.
pub fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Start {
                name,
                qtype,
                zone,
                servers,
                from,
            } => {
                let _ = writeln!(
                    out,
                    ";; {name} {qtype}: start at {zone} ({} servers, from {from}): {}",
                    servers.len(),
                    servers.join(" ")
                );
            }
            Step::Cache {
                name,
                qtype,
                result,
                records,
            } => {
                for r in records {
                    let _ = writeln!(out, "{r}");
                }
                let _ = writeln!(out, ";; {name} {qtype}: {result} from cache");
            }
            Step::Query {
                server,
                server_name,
                zone,
                name,
                qtype,
                proto,
                tc_retry,
                rtt_ms,
                result,
                records,
            } => {
                for r in records {
                    let _ = writeln!(out, "{r}");
                }
                let tc = if *tc_retry {
                    ", truncated over UDP, retried"
                } else {
                    ""
                };
                let proto = match proto {
                    super::upstream::Proto::Udp => "UDP",
                    super::upstream::Proto::Tcp => "TCP",
                };
                let _ = writeln!(
                    out,
                    ";; {name} {qtype}: {result} from {server}({server_name}) for {zone} over {proto}{tc} in {rtt_ms:.1} ms\n"
                );
            }
            Step::Failed {
                server,
                server_name,
                zone,
                reason,
            } => {
                let _ = writeln!(
                    out,
                    ";; {server}({server_name}) for {zone}: {reason}; trying the next server"
                );
            }
            Step::Glueless { zone, server_name } => {
                let _ = writeln!(
                    out,
                    ";; {zone}: no address for server {server_name} (glueless): resolving it first"
                );
            }
            Step::Follow { from, to } => {
                let _ = writeln!(out, ";; {from} is an alias: continuing at {to}");
            }
            Step::Fail { reason } => {
                let _ = writeln!(out, ";; SERVFAIL: {reason}");
            }
        }
    }
    out
}

/// One resolution as `gslbd resolve --json` and `GET /trace` give it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    /// The resolver listener whose identity (source address, cache) was used.
    pub resolver: String,
    pub status: &'static str,
    pub answer: Vec<String>,
    pub authority: Vec<String>,
    /// Why the status is SERVFAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub upstream_queries: u32,
    pub trace: Vec<Step>,
}

impl Report {
    pub fn new(
        name: &str,
        qtype: hickory_proto::rr::RecordType,
        resolver: &str,
        res: &super::Resolution,
        trace: Vec<Step>,
    ) -> Report {
        Report {
            name: name.to_string(),
            qtype: qtype.to_string(),
            resolver: resolver.to_string(),
            status: status_name(res.rcode),
            answer: record_lines(&res.answer),
            authority: record_lines(&res.authority),
            reason: res.reason.clone(),
            upstream_queries: res.upstream_queries,
            trace,
        }
    }

    /// Text: the trace (when there is one), then the answer as dig prints it.
    pub fn render(&self) -> String {
        let mut out = render(&self.trace);
        let _ = writeln!(
            out,
            ";; {} {} via resolver {}: status {}, {} upstream queries",
            self.name, self.qtype, self.resolver, self.status, self.upstream_queries
        );
        if let Some(r) = &self.reason {
            let _ = writeln!(out, ";; reason: {r}");
        }
        for l in &self.answer {
            let _ = writeln!(out, "{l}");
        }
        if !self.authority.is_empty() {
            let _ = writeln!(out, ";; AUTHORITY");
            for l in &self.authority {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }
}

fn status_name(rc: u16) -> &'static str {
    match rc {
        crate::wire::rcode::NOERROR => "NOERROR",
        crate::wire::rcode::NXDOMAIN => "NXDOMAIN",
        crate::wire::rcode::REFUSED => "REFUSED",
        _ => "SERVFAIL",
    }
}
