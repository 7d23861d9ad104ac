//! Encrypted DNS transports: DNS over TLS (RFC 7858) and DNS over QUIC (RFC 9250), each message
//! handed to `query::respond`, the function the TCP path calls, so an encrypted answer is the TCP
//! answer byte for byte (ECS and GSLB included), plus EDNS padding when the client asked for it.
//!
//! Config (per `[[listener]]`): `dot = "addr:853"` / `doq = "addr:853"` (one address or a list)
//! and `tls = { cert, key }` (absent: `[http] tls`'s files). Limits: `[limits]
//! tcp_idle_timeout_ms` closes idle connections (RFC 7766 6.2.3, RFC 9250 5.5) and
//! `tcp_max_connections` caps open encrypted connections (all DoT and DoQ listeners together; a
//! connection over the cap is closed at once, as RFC 7766 6.2.2 allows).
//!
//! The transports come from hickory-server's stack: DoQ is `hickory_server::net::quic::QuicServer`
//! (quinn), DoT the same tokio-rustls acceptor its TLS listener uses. hickory-server's `Server`
//! with a `RequestHandler` is not used: its response path accepts only a `MessageResponse` that
//! hickory re-encodes (our bytes could not be sent as they are, so DoT could not equal TCP), it
//! parses every message with its own decoder first (answering FORMERR where `wire` decides
//! otherwise), it has no connection cap, and it logs every request at info level.
//!
//! Certificates are read from the snapshot at each handshake (`CertFromSnapshot`), so SIGHUP (a
//! snapshot rebuild) renews them for new connections. ALPN: `dot` (the IANA ALPN registry's id
//! for DNS over TLS; RFC 7858 clients need not send one) and `doq` (RFC 9250 4.1.1, required).
//!
//! Known limit: `QuicServer::next` completes each QUIC handshake before accepting the next
//! connection (hickory-net does so, with a 5 s timeout), so one slow handshake delays others.
//!
//! Failure modes: a handshake that fails or takes longer than the idle timeout, a message longer
//! than its length prefix promises, or a DoQ query with a non-zero Message ID (RFC 9250 4.2.1:
//! a protocol error, the stream is reset) ends that connection or stream only.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::net::quic::{DoqErrorCode, QuicServer, QuicStreams};
use rustls::server::{ClientHello, ResolvesServerCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::debug;

use crate::query::{self, Client, Transport};
use crate::snapshot::Snapshot;

/// The IANA ALPN id of DNS over TLS.
pub const ALPN_DOT: &[u8] = b"dot";
/// RFC 9250 4.1.1.
pub const ALPN_DOQ: &[u8] = b"doq";

/// RFC 8467 4.1: responders pad responses to a multiple of 468 octets.
pub const RESPONSE_BLOCK: usize = 468;

/// Streams a DoQ connection may have answered at once; more wait for QUIC flow control.
const STREAMS_PER_CONNECTION: usize = 100;

/// The certificate of listener `listener` in the current snapshot, chosen at each handshake.
#[derive(Debug)]
pub struct CertFromSnapshot {
    snap: Arc<ArcSwap<Snapshot>>,
    listener: usize,
}

impl ResolvesServerCert for CertFromSnapshot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.snap.load().certs.get(self.listener).cloned().flatten()
    }
}

/// The rustls config of a DoT (TLS 1.2 and 1.3, RFC 7858 3.2 / RFC 8310) or DoQ (TLS 1.3 only,
/// RFC 9001 4.2) listener.
pub fn tls_config(
    snap: Arc<ArcSwap<Snapshot>>,
    listener: usize,
    alpn: &[u8],
) -> io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider);
    let builder = if alpn == ALPN_DOQ {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .map_err(io::Error::other)?;
    let mut config = builder
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CertFromSnapshot { snap, listener }));
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// Answers one message as `query::respond` does for TCP, then pads it (RFC 7830) when the query
/// carried a Padding option.
fn answer(
    snap: &ArcSwap<Snapshot>,
    listener: usize,
    packet: &[u8],
    peer: SocketAddr,
    transport: Transport,
) -> Option<Vec<u8>> {
    let snapshot = snap.load();
    let client = Client {
        addr: peer,
        transport,
    };
    let mut resp = query::respond(&snapshot, listener, packet, &client)?;
    if wants_padding(packet) {
        pad(&mut resp, RESPONSE_BLOCK);
    }
    Some(resp)
}

/// Serves DoT on `socket` until the task is dropped.
pub async fn serve_dot(
    snap: Arc<ArcSwap<Snapshot>>,
    listener: usize,
    socket: TcpListener,
    slots: Arc<Semaphore>,
    idle: Duration,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(snap.clone(), listener, ALPN_DOT)?);
    loop {
        let (stream, peer) = match socket.accept().await {
            Ok(s) => s,
            Err(e) => {
                debug!("dot accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let (acceptor, snap) = (acceptor.clone(), snap.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let tls = match tokio::time::timeout(idle, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return debug!("dot handshake with {peer}: {e}"),
                Err(_) => return debug!("dot handshake with {peer}: timed out"),
            };
            let _ = dot_connection(&snap, listener, tls, peer, idle).await;
        });
    }
}

/// RFC 7858 3.3: the TCP framing (RFC 1035 4.2.2 length prefix) inside TLS; queries answered in
/// order, several per connection (RFC 7766 6.2.1.1 pipelining).
async fn dot_connection(
    snap: &ArcSwap<Snapshot>,
    listener: usize,
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    peer: SocketAddr,
    idle: Duration,
) -> io::Result<()> {
    let mut buf = vec![0u8; 65535];
    loop {
        let len = match tokio::time::timeout(idle, tls.read_u16()).await {
            Ok(Ok(l)) => l as usize,
            _ => return Ok(()),
        };
        match tokio::time::timeout(idle, tls.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(resp) = answer(snap, listener, &buf[..len], peer, Transport::Tls) else {
            continue;
        };
        let mut out = Vec::with_capacity(resp.len() + 2);
        out.extend_from_slice(&(resp.len() as u16).to_be_bytes());
        out.extend_from_slice(&resp);
        tls.write_all(&out).await?;
        tls.flush().await?;
    }
}

/// Serves DoQ on `socket` until the task is dropped.
pub async fn serve_doq(
    snap: Arc<ArcSwap<Snapshot>>,
    listener: usize,
    socket: std::net::UdpSocket,
    slots: Arc<Semaphore>,
    idle: Duration,
) -> io::Result<()> {
    let config = tls_config(snap.clone(), listener, ALPN_DOQ)?;
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    let mut server =
        QuicServer::with_socket_and_tls_config(socket, config).map_err(io::Error::other)?;
    loop {
        let (streams, peer) = match server.next().await {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(()),
            Err(e) => {
                debug!("doq handshake: {e}");
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Dropping the connection closes it (quinn sends CONNECTION_CLOSE).
            drop(streams);
            continue;
        };
        let snap = snap.clone();
        tokio::spawn(async move {
            let _permit = permit;
            doq_connection(snap, listener, streams, peer, idle).await;
        });
    }
}

/// RFC 9250 4.2: one query per client-initiated bidirectional stream, answered on that stream
/// (2-octet length prefix, then FIN); streams of one connection are answered concurrently.
async fn doq_connection(
    snap: Arc<ArcSwap<Snapshot>>,
    listener: usize,
    mut streams: QuicStreams,
    peer: SocketAddr,
    idle: Duration,
) {
    let in_flight = Arc::new(Semaphore::new(STREAMS_PER_CONNECTION));
    loop {
        let mut stream = match tokio::time::timeout(idle, streams.next()).await {
            Ok(Some(Ok(s))) => s,
            // Idle (RFC 9250 5.5), closed by the peer, or a connection error.
            _ => return,
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let snap = snap.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(query)) = tokio::time::timeout(idle, stream.receive_bytes()).await else {
                return;
            };
            // RFC 9250 4.2.1: the Message ID MUST be 0; anything else is a protocol error.
            if query.len() >= 2 && (query[0], query[1]) != (0, 0) {
                let _ = stream.reset(DoqErrorCode::ProtocolError);
                return;
            }
            match answer(&snap, listener, &query, peer, Transport::Quic) {
                Some(resp) => {
                    if stream.send_bytes(resp.into()).await.is_ok() {
                        let _ = stream.finish().await;
                    }
                }
                // Nothing to send (not a query): end the stream without an answer.
                None => {
                    let _ = stream.reset(DoqErrorCode::NoError);
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// EDNS(0) padding (RFC 7830, RFC 8467). Done on the finished message, outside `wire`'s encoder:
// only encrypted transports pad, and only when asked.

/// EDNS option code of Padding (RFC 7830 4).
const OPT_PADDING: u16 = 12;
const TYPE_OPT: u16 = 41;

/// Where the OPT record of `msg` is: (offset of its RDLENGTH, end of its RDATA).
fn find_opt(msg: &[u8]) -> Option<(usize, usize)> {
    if msg.len() < 12 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]) as usize;
    let (qd, rrs) = (count(4), count(6) + count(8) + count(10));
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    for _ in 0..rrs {
        let name_end = skip_name(msg, at)?;
        let fixed = msg.get(name_end..name_end + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let end = name_end + 10 + rdlen;
        if end > msg.len() {
            return None;
        }
        if rtype == TYPE_OPT {
            return Some((name_end + 8, end));
        }
        at = end;
    }
    None
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0xc0 => return Some(at + 2),
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + len as usize,
            _ => return None,
        }
    }
}

/// Whether the query's OPT record carries a Padding option (RFC 7830 3: a responder pads only
/// then).
pub fn wants_padding(query: &[u8]) -> bool {
    let Some((rdlen_at, end)) = find_opt(query) else {
        return false;
    };
    let mut at = rdlen_at + 2;
    while at + 4 <= end {
        let code = u16::from_be_bytes([query[at], query[at + 1]]);
        let len = u16::from_be_bytes([query[at + 2], query[at + 3]]) as usize;
        if code == OPT_PADDING {
            return true;
        }
        at += 4 + len;
    }
    false
}

/// Appends a Padding option to the response's OPT record so its length is a multiple of
/// `block` (RFC 8467 4.1). Only when the OPT record is the last record (a TSIG after it would
/// cover the unpadded message) and the result fits a DNS message; otherwise unchanged.
pub fn pad(resp: &mut Vec<u8>, block: usize) {
    let Some((rdlen_at, end)) = find_opt(resp) else {
        return;
    };
    if end != resp.len() {
        return;
    }
    let fill = (block - (resp.len() + 4) % block) % block;
    let rdlen = u16::from_be_bytes([resp[rdlen_at], resp[rdlen_at + 1]]) as usize + 4 + fill;
    if resp.len() + 4 + fill > 65535 || rdlen > 65535 {
        return;
    }
    resp[rdlen_at..rdlen_at + 2].copy_from_slice(&(rdlen as u16).to_be_bytes());
    resp.extend_from_slice(&OPT_PADDING.to_be_bytes());
    resp.extend_from_slice(&(fill as u16).to_be_bytes());
    // RFC 7830 4: the padding octets SHOULD be 0x00.
    resp.resize(resp.len() + fill, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `www.example.` A with an OPT record carrying `opts`.
    fn query(opts: &[u8]) -> Vec<u8> {
        let mut q = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        q.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0]);
        q.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        q.extend_from_slice(opts);
        q
    }

    #[test]
    fn padding_asked_only_with_the_option() {
        assert!(wants_padding(&query(&[0, 12, 0, 2, 0, 0])));
        assert!(wants_padding(&query(&[
            0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 12, 0, 0
        ])));
        assert!(!wants_padding(&query(&[
            0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8
        ])));
        assert!(!wants_padding(&query(&[])));
        assert!(!wants_padding(&query(&[0, 12])[..20]));
    }

    #[test]
    fn pads_to_the_block_and_stays_parseable() {
        let mut r = query(&[]);
        r[2] |= 0x80;
        let before = r.len();
        pad(&mut r, RESPONSE_BLOCK);
        assert_eq!(r.len(), RESPONSE_BLOCK);
        assert!(r.len() > before);
        let m = hickory_proto::op::Message::from_vec(&r).expect("parses");
        let opt = m.edns.expect("OPT kept");
        assert!(
            opt.option(hickory_proto::rr::rdata::opt::EdnsCode::Padding)
                .is_some()
        );
        // Without an OPT record there is nothing to pad (RFC 7830 needs EDNS).
        let mut plain = r[..12 + 17].to_vec();
        plain[11] = 0;
        let copy = plain.clone();
        pad(&mut plain, RESPONSE_BLOCK);
        assert_eq!(plain, copy);
    }
}
