//! gslbd: authoritative DNS, GSLB, HTTPDNS and an iterative resolver around one answer engine.
//!
//! Module map (ARCHITECTURE.md has the long form):
//! - `config`: the TOML file, parsed and shape-checked (no runtime data).
//! - `zone`: master files read with file/line (`zone::reader`), compiled into lookup tables.
//! - `snapshot`: config -> immutable runtime data; the one builder for serve, reload and check.
//! - `engine`: the answer engine, a pure function (zones, question) -> sections.
//! - `wire`: query parsing and response encoding; the one place RCODEs are mapped.
//! - `query`: one message in, one out (parse -> engine -> encode), shared by every transport.
//! - `server`: UDP/TCP sockets, reload (SIGHUP), shutdown.
//! - `reload`: reloads one at a time, newest request wins, outcome kept for monitoring.
//! - `encrypted`: DNS over TLS and over QUIC, into the same `query::respond` as TCP.
//! - `fast`: the UDP fast path (prebuilt answers, geo cache) in front of `query`.
//! - `udp`: the batched (recvmmsg/sendmmsg) UDP loop, one thread per socket.
//! - `resolver`: the iterative resolver (the carrier LDNS): walk, cache, upstream, trace.
//! - `lab`: the built-in lab world compiled from `zones/`.
//! - `secondary`: secondary zones: SOA checks, IXFR/AXFR in, NOTIFY, expiry.
//! - `dnssec`: signing keys, and signing a zone's static data at snapshot build (NSEC, RRSIG).
//! - `tsig`: TSIG keys (RFC 8945), request/reply signing and verification.
//! - `cli`: the command line (`serve`, `check`).

pub mod audit;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod conns;
pub mod cookie;
pub mod ctl;
pub mod dnssec;
pub mod encrypted;
pub mod engine;
pub mod fast;
pub mod geo;
pub mod gslb;
pub mod health;
pub mod http;
pub mod lab;
pub mod lookup;
pub mod metrics;
pub mod overrides;
pub mod query;
pub mod reload;
pub mod resolver;
pub mod rrl;
pub mod secondary;
pub mod server;
pub mod snapshot;
pub mod tsig;
pub mod udp;
pub mod wire;
pub mod xfr;
pub mod zone;
