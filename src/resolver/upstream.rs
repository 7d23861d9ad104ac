//! Asking one server one question (RFC 1035 4.2, RFC 5452 on spoofing resistance).
//!
//! UDP from a random source port with a random ID; the socket is connected, so the kernel drops
//! datagrams from any other address or port, and a reply counts only when its ID and question
//! match ours (anything else is dropped and we keep waiting). TC=1 -> the same question over TCP
//! (RFC 7766 5). EDNS(0) with a 1232-byte payload (RFC 6891, DNS flag day 2020) and, when asked,
//! ECS with the client's subnet (RFC 7871 6). With `caps` (0x20, draft-vixie-dnsext-dns0x20), the
//! name is sent with its letters in random case and a reply must echo it exactly: a reply whose
//! question differs only in case is `CaseMismatch` (a forger must now guess the case too; a
//! server that does not echo it is asked again without, by the walk).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

pub const EDNS_PAYLOAD: u16 = 1232;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Udp,
    Tcp,
}

#[derive(Debug)]
pub struct Reply {
    pub message: Message,
    pub proto: Proto,
    pub rtt: Duration,
    /// The UDP reply had TC set, so this one came over TCP.
    pub truncated_udp: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("timed out")]
    Timeout,
    #[error("connection refused")]
    Refused,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("the reply's question is not in the case asked (0x20)")]
    CaseMismatch,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub name: &'a Name,
    pub qtype: RecordType,
    pub server: SocketAddr,
    /// Source address for the query (None: the system picks).
    pub source: Option<IpAddr>,
    /// ECS to send: (subnet address already cut to `prefix` bits, prefix).
    pub ecs: Option<(IpAddr, u8)>,
    /// How long to wait for the UDP reply (the server's retransmission timeout).
    pub timeout: Duration,
    /// The TCP retry's own budget, connect to whole reply: a truncated reply says the server is
    /// alive, and TCP needs at least one more round trip (two with the handshake, RFC 7766 5), so
    /// what is left of the UDP timeout is not enough for any server farther than a few ms.
    pub tcp_timeout: Duration,
    /// 0x20: the name in random case, echoed exactly or the reply is refused.
    pub caps: bool,
}

pub async fn exchange(ask: &Ask<'_>) -> Result<Reply, UpstreamError> {
    let start = Instant::now();
    let id: u16 = rand::random();
    let query = encode_query(id, ask);
    // The name as sent: with 0x20, its case is part of what a reply must match.
    let sent = &query[12..12 + wire_len(ask.name)];
    let reply = udp(ask, id, &query, sent).await?;
    if reply.metadata.truncation {
        let message = tcp(ask, id, &query, sent, ask.tcp_timeout).await?;
        return Ok(Reply {
            message,
            proto: Proto::Tcp,
            rtt: start.elapsed(),
            truncated_udp: true,
        });
    }
    Ok(Reply {
        message: reply,
        proto: Proto::Udp,
        rtt: start.elapsed(),
        truncated_udp: false,
    })
}

/// The query in wire form: RD clear (we iterate), one question, OPT with our payload.
pub fn encode_query(id: u16, ask: &Ask<'_>) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in ask.name.iter() {
        b.push(label.len() as u8);
        b.extend_from_slice(label);
    }
    b.push(0);
    if ask.caps {
        random_case(&mut b[12..]);
    }
    b.extend_from_slice(&u16::from(ask.qtype).to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    // OPT (RFC 6891 6.1.2): root owner, TYPE 41, CLASS = payload, TTL = ext-rcode/version/flags.
    b.push(0);
    b.extend_from_slice(&41u16.to_be_bytes());
    b.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    match ask.ecs {
        Some((addr, prefix)) => {
            let (family, octets): (u16, Vec<u8>) = match addr {
                IpAddr::V4(a) => (1, a.octets().to_vec()),
                IpAddr::V6(a) => (2, a.octets().to_vec()),
            };
            let alen = prefix.div_ceil(8) as usize;
            let opt_len = 4 + alen;
            b.extend_from_slice(&((4 + opt_len) as u16).to_be_bytes());
            b.extend_from_slice(&8u16.to_be_bytes()); // OPTION-CODE 8: ECS
            b.extend_from_slice(&(opt_len as u16).to_be_bytes());
            b.extend_from_slice(&family.to_be_bytes());
            b.push(prefix);
            b.push(0); // SCOPE PREFIX-LENGTH is 0 in queries (RFC 7871 6)
            b.extend_from_slice(&octets[..alen]);
        }
        None => b.extend_from_slice(&[0, 0]),
    }
    b
}

/// Wire length of an uncompressed name.
fn wire_len(name: &Name) -> usize {
    name.iter().map(|l| 1 + l.len()).sum::<usize>() + 1
}

/// Every letter of a wire-form name (from its first length byte through the root label) upper or
/// lower case at random; at least one upper, so a server that lowercases is always found out.
fn random_case(wire: &mut [u8]) {
    let mut at = 0;
    let mut upper = false;
    while let Some(&len) = wire.get(at) {
        if len == 0 {
            break;
        }
        for b in wire.iter_mut().skip(at + 1).take(len as usize) {
            if b.is_ascii_alphabetic() {
                if rand::random::<bool>() {
                    b.make_ascii_uppercase();
                    upper = true;
                } else {
                    b.make_ascii_lowercase();
                }
            }
        }
        at += 1 + len as usize;
    }
    // Length bytes are below 64, never letters, so the first lowercase byte is a letter.
    if !upper && let Some(i) = wire.iter().position(u8::is_ascii_lowercase) {
        wire[i].make_ascii_uppercase();
    }
}

/// How a message relates to our query.
enum Match {
    Ours,
    /// Someone else's (another ID, question, or not a response): ignored (RFC 5452 9.1).
    NotOurs,
    /// Our question in another case, with 0x20 on.
    WrongCase,
}

/// Whether `m` answers our query: a response, our ID, our question (names case-insensitively,
/// and with 0x20 exactly as `sent`).
fn matches(m: &Message, id: u16, ask: &Ask<'_>, sent: &[u8]) -> Match {
    let ours = m.metadata.id == id
        && m.metadata.message_type == hickory_proto::op::MessageType::Response
        && m.queries.len() == 1
        && m.queries[0].query_type() == ask.qtype
        && crate::zone::name::key_of(m.queries[0].name()) == crate::zone::name::key_of(ask.name);
    if !ours {
        return Match::NotOurs;
    }
    if ask.caps {
        let mut got = Vec::with_capacity(sent.len());
        for label in m.queries[0].name().iter() {
            got.push(label.len() as u8);
            got.extend_from_slice(label);
        }
        got.push(0);
        if got != sent {
            return Match::WrongCase;
        }
    }
    Match::Ours
}

fn unspecified(server: &SocketAddr) -> IpAddr {
    if server.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    }
}

/// Upstream sockets that could not be made for want of file descriptors (EMFILE/ENFILE), since
/// start: `gslbd_resolver_socket_exhausted_total`.
pub static FDS_EXHAUSTED: AtomicU64 = AtomicU64::new(0);
/// Unix seconds of the last warning about it (one a minute at most: a flood makes thousands).
static FDS_WARNED: AtomicU64 = AtomicU64::new(0);

/// Counts and (at most once a minute) logs a socket that could not be opened because the
/// process or the system is out of file descriptors; other errors pass through untouched.
fn note_socket_error(e: io::Error) -> io::Error {
    if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
        let n = FDS_EXHAUSTED.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = FDS_WARNED.load(Ordering::Relaxed);
        if now >= last + 60
            && FDS_WARNED
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                exhausted = n,
                "resolver: no file descriptor for an upstream socket ({e}); raise LimitNOFILE \
                 or lower the walks in flight"
            );
        }
    }
    e
}

/// A UDP socket on `ip` at a random port in 1024..=65535 (RFC 5452 10: the port is part of the
/// unpredictability), falling back to a kernel-chosen one after a few collisions.
fn random_port_socket(ip: IpAddr) -> io::Result<std::net::UdpSocket> {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let mut last = None;
    for attempt in 0..8 {
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(note_socket_error)?;
        s.set_nonblocking(true)?;
        let port = if attempt < 7 {
            rand::random_range(1024..=65535u16)
        } else {
            0
        };
        match s.bind(&SocketAddr::new(ip, port).into()) {
            Ok(()) => return Ok(s.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port")))
}

async fn udp(ask: &Ask<'_>, id: u16, query: &[u8], sent: &[u8]) -> Result<Message, UpstreamError> {
    let source = ask.source.unwrap_or_else(|| unspecified(&ask.server));
    let socket = UdpSocket::from_std(random_port_socket(source)?)?;
    socket.connect(ask.server).await?;
    socket.send(query).await.map_err(refused)?;
    let deadline = tokio::time::Instant::now() + ask.timeout;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(r) => r.map_err(refused)?,
        };
        // Garbage, someone else's ID or question: not our reply (RFC 5452 9.1); keep listening.
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        match matches(&m, id, ask, sent) {
            Match::Ours => return Ok(m),
            Match::WrongCase => return Err(UpstreamError::CaseMismatch),
            Match::NotOurs => {}
        }
    }
}

async fn tcp(
    ask: &Ask<'_>,
    id: u16,
    query: &[u8],
    sent: &[u8],
    timeout: Duration,
) -> Result<Message, UpstreamError> {
    let work = async {
        let socket = if ask.server.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(note_socket_error)?;
        if let Some(src) = ask.source {
            socket.bind(SocketAddr::new(src, 0))?;
        }
        let mut stream = socket.connect(ask.server).await.map_err(refused)?;
        let mut out = Vec::with_capacity(query.len() + 2);
        out.extend_from_slice(&(query.len() as u16).to_be_bytes());
        out.extend_from_slice(query);
        stream.write_all(&out).await?;
        loop {
            let len = stream.read_u16().await? as usize;
            let mut buf = vec![0u8; len];
            stream.read_exact(&mut buf).await?;
            let m = Message::from_vec(&buf).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
            match matches(&m, id, ask, sent) {
                Match::Ours => return Ok(m),
                Match::WrongCase => return Err(UpstreamError::CaseMismatch),
                Match::NotOurs => {}
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Timeout),
    }
}

fn refused(e: io::Error) -> UpstreamError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        UpstreamError::Refused
    } else {
        UpstreamError::Io(e)
    }
}
