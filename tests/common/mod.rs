//! Shared test harness: the real server started in-process on ephemeral loopback ports, and a
//! small DNS client that speaks raw UDP/TCP to it (so tests control every byte they send).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gslbd::config::Source;
use gslbd::server::{BoundAddr, Handle, Server};
use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const TIMEOUT: Duration = Duration::from_secs(2);

pub struct TestServer {
    pub addrs: Vec<BoundAddr>,
    pub handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// `raw` sends every UDP query twice and requires byte-identical replies: with the fast path
    /// on, the first is answered by the general path and the second from the prebuilt answer the
    /// first left behind. The server then runs one UDP thread (`start_on_path`), so the second ask
    /// reaches the tables the first filled, and `raw` requires this server's fast-path counter
    /// (`Handle::fast_answers`) to grow on the second ask unless the answer is one the fast path
    /// never keeps (`never_prebuilt`).
    pub repeat_udp: bool,
    /// Held across each repeated pair, so the counter's growth belongs to that pair alone.
    repeat_lock: tokio::sync::Mutex<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl TestServer {
    pub fn addr(&self, listener: &str, proto: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|a| a.listener == listener && a.proto == proto)
            .unwrap_or_else(|| panic!("no {proto} address for listener {listener}"))
            .addr
    }
}

/// Starts the server from `source` with every port replaced by one shared ephemeral port.
pub async fn start(source: Source) -> TestServer {
    start_with_clock(
        source,
        std::sync::Arc::new(gslbd::resolver::SystemClock::default()),
    )
    .await
}

/// `start` with the resolver cache's clock given (a `ManualClock` expires entries without sleeping).
pub async fn start_with_clock(
    mut source: Source,
    clock: std::sync::Arc<dyn gslbd::resolver::Clock>,
) -> TestServer {
    source.port = Some(0);
    let server = Server::bind_with_clock(source, clock)
        .await
        .expect("server starts");
    run(server)
}

/// Starts the server from `source` with every port replaced by `port` (a test that restarts the
/// server on the same addresses, or whose peers must know its port before it starts); retries
/// the bind for 5 s while a previous server of the test lets go of the port.
pub async fn start_at(mut source: Source, port: u16) -> TestServer {
    source.port = Some(port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Server::bind(source.clone()).await {
            Ok(server) => return run(server),
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("server does not start on port {port}: {e}"),
        }
    }
}

fn run(server: Server) -> TestServer {
    let addrs = server.addresses();
    let handle = server.handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestServer {
        addrs,
        handle,
        stop: Some(tx),
        repeat_udp: false,
        repeat_lock: tokio::sync::Mutex::new(()),
    }
}

/// Which way a UDP query is answered (`[limits] udp_fast_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Every query through parse -> engine -> encode.
    General,
    /// Prebuilt answers and the geo cache in front of the general path.
    Fast,
}

/// Starts the server of `source` with UDP answered by `path` (`Source::udp_fast_path`). On
/// `Fast` (the default setting) the server runs one UDP thread (with one per CPU, the default,
/// a repeated question mostly lands on another thread and is answered the general way again) and
/// every UDP query `raw` sends goes twice (see `repeat_udp`).
pub async fn start_on_path(mut source: Source, path: Path) -> TestServer {
    source.udp_fast_path = Some(path == Path::Fast);
    if path == Path::Fast {
        source.udp_workers = Some(1);
    }
    let mut s = start(source).await;
    s.repeat_udp = path == Path::Fast;
    s
}

pub async fn start_lab() -> TestServer {
    start(Source::lab()).await
}

/// The battery's own zones (edge cases the lab should not carry).
pub fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Udp,
    Tcp,
}

pub const BOTH: [Via; 2] = [Via::Udp, Via::Tcp];

/// A query built byte by byte.
#[derive(Debug, Clone)]
pub struct Q {
    pub id: u16,
    pub flags: u16,
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// EDNS payload size, version, DO and raw options; None = no OPT.
    pub edns: Option<(u16, u8, bool, Vec<u8>)>,
}

impl Q {
    pub fn new(name: &str, qtype: u16) -> Q {
        Q {
            id: 0x1234,
            flags: 0x0100,
            name: name.to_string(),
            qtype,
            qclass: 1,
            edns: Some((1232, 0, false, vec![])),
        }
    }
    pub fn no_edns(mut self) -> Q {
        self.edns = None;
        self
    }
    pub fn payload(mut self, p: u16) -> Q {
        if let Some(e) = &mut self.edns {
            e.0 = p;
        }
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, if self.edns.is_some() { 1 } else { 0 }]);
        b.extend_from_slice(&wire_name(&self.name));
        b.extend_from_slice(&self.qtype.to_be_bytes());
        b.extend_from_slice(&self.qclass.to_be_bytes());
        if let Some((payload, version, dnssec_ok, opts)) = &self.edns {
            b.push(0);
            b.extend_from_slice(&41u16.to_be_bytes());
            b.extend_from_slice(&payload.to_be_bytes());
            b.extend_from_slice(&[0, *version, if *dnssec_ok { 0x80 } else { 0 }, 0]);
            b.extend_from_slice(&(opts.len() as u16).to_be_bytes());
            b.extend_from_slice(opts);
        }
        b
    }
}

/// Presentation name (no escapes) to uncompressed wire form, keeping case.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Sends raw bytes over UDP and waits for one reply (None on timeout).
pub async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let local: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .unwrap();
    let sock = UdpSocket::bind(local).await.unwrap();
    sock.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Sends raw bytes as one TCP message and reads one reply (None on timeout or close).
pub async fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    tcp_send(&mut s, bytes).await;
    tcp_recv(&mut s).await
}

pub async fn tcp_send(s: &mut TcpStream, bytes: &[u8]) {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).await.unwrap();
}

pub async fn tcp_recv(s: &mut TcpStream) -> Option<Vec<u8>> {
    let fut = async {
        let len = s.read_u16().await.ok()? as usize;
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(TIMEOUT, fut).await.ok().flatten()
}

pub async fn raw(server: &TestServer, listener: &str, via: Via, bytes: &[u8]) -> Option<Vec<u8>> {
    match via {
        Via::Udp if server.repeat_udp => {
            let _pair = server.repeat_lock.lock().await;
            let (mut first, mut second, mut fast);
            // A fresh DNS cookie carries the second it was made in (RFC 9018 4.2): a pair of
            // asks on both sides of a second's boundary is asked again.
            loop {
                let second_before = gslbd::cookie::now();
                first = udp_raw(server.addr(listener, "udp"), bytes).await;
                let before = server.handle.fast_answers();
                second = udp_raw(server.addr(listener, "udp"), bytes).await;
                fast = server.handle.fast_answers() - before;
                if first == second || gslbd::cookie::now() == second_before {
                    break;
                }
            }
            assert_eq!(
                first, second,
                "the same UDP query answered differently the second time (fast path)"
            );
            if let Some(reply) = &second
                && fast == 0
                && never_prebuilt(server, listener, bytes, reply)
                    .await
                    .is_none()
            {
                panic!(
                    "the second ask of a UDP query was answered the general way, not from the \
                     prebuilt answer the first left (query {bytes:02x?}, reply {reply:02x?})"
                );
            }
            second
        }
        Via::Udp => udp_raw(server.addr(listener, "udp"), bytes).await,
        Via::Tcp => tcp_raw(server.addr(listener, "tcp"), bytes).await,
    }
}

/// Why the fast path may not answer `query` (whose UDP reply is `reply`) from its tables, or
/// None when it must: errors are never kept (FORMERR, NOTIMP, REFUSED; BADVERS, RFC 6891
/// 6.1.3), nor answers with TC, and a kept answer too big for the client's limit goes to the
/// general path, which leaves optional ADDITIONAL records out (RFC 2181 9): the TCP answer to
/// the same bytes is then longer than the UDP one.
pub async fn never_prebuilt(
    server: &TestServer,
    listener: &str,
    query: &[u8],
    reply: &[u8],
) -> Option<&'static str> {
    if reply.len() < 12 {
        return Some("no DNS header");
    }
    match reply[3] & 0x0f {
        1 => return Some("FORMERR"),
        4 => return Some("NOTIMP"),
        5 => return Some("REFUSED"),
        9 => return Some("NOTAUTH (TSIG with an unknown key, RFC 8945 5.2)"),
        _ => {}
    }
    if let Ok(m) = Message::from_vec(reply) {
        if u16::from(m.response_code) == 16 {
            return Some("BADVERS");
        }
        // CHAOS names are answered by the parser, before any table.
        if m.queries
            .first()
            .is_some_and(|q| u16::from(q.query_class) == 3)
        {
            return Some("CHAOS class");
        }
        // An NSID request is answered the general way, which adds the option (RFC 5001).
        if m.edns.as_ref().is_some_and(|e| {
            e.option(hickory_proto::rr::rdata::opt::EdnsCode::NSID)
                .is_some()
        }) {
            return Some("NSID");
        }
    }
    if reply[2] & 0x02 != 0 {
        return Some("TC");
    }
    let whole = tcp_raw(server.addr(listener, "tcp"), query).await?;
    (whole.len() > reply.len()).then_some("ADDITIONAL trimmed to fit")
}

/// Asks `q` and parses the reply; panics when there is none.
pub async fn ask(server: &TestServer, listener: &str, via: Via, q: &Q) -> Message {
    let bytes = raw(server, listener, via, &q.bytes())
        .await
        .unwrap_or_else(|| panic!("no reply to {q:?} over {via:?}"));
    Message::from_vec(&bytes).unwrap_or_else(|e| panic!("unparsable reply to {q:?}: {e}"))
}

/// Records of a section as "owner TTL TYPE rdata" lines, lowercased owner, sorted.
pub fn lines(records: &[hickory_proto::rr::Record]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.name.to_lowercase(),
                r.ttl,
                r.record_type(),
                r.data
            )
        })
        .collect();
    v.sort();
    v
}

/// Sends raw bytes over UDP from a chosen local address (any 127.x works on Linux) and waits for
/// one reply: the server sees that address as the client.
pub async fn udp_from(src: std::net::IpAddr, addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind(SocketAddr::new(src, 0)).await.unwrap();
    sock.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// The EDNS Client Subnet option (RFC 7871 6) for `ip/prefix`, address cut to the prefix.
pub fn ecs_option(ip: std::net::IpAddr, prefix: u8) -> Vec<u8> {
    let (family, octets): (u16, Vec<u8>) = match ip {
        std::net::IpAddr::V4(a) => (1, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => (2, a.octets().to_vec()),
    };
    let n = prefix.div_ceil(8) as usize;
    let mut addr = octets[..n].to_vec();
    if !prefix.is_multiple_of(8) {
        let last = addr.last_mut().unwrap();
        *last &= 0xffu8 << (8 - prefix % 8);
    }
    let mut o = Vec::new();
    o.extend_from_slice(&8u16.to_be_bytes());
    o.extend_from_slice(&((4 + n) as u16).to_be_bytes());
    o.extend_from_slice(&family.to_be_bytes());
    o.push(prefix);
    o.push(0);
    o.extend_from_slice(&addr);
    o
}

impl Q {
    pub fn ecs(mut self, ip: std::net::IpAddr, prefix: u8) -> Q {
        let opt = ecs_option(ip, prefix);
        match &mut self.edns {
            Some(e) => e.3 = opt,
            None => self.edns = Some((1232, 0, false, opt)),
        }
        self
    }
}

/// The ECS option of a response as (source prefix, scope prefix, address bytes), if any. The OPT
/// record is last in our responses and ECS is its only option.
pub fn ecs_of(resp: &[u8]) -> Option<(u8, u8, Vec<u8>)> {
    Message::from_vec(resp).ok()?;
    // Walk back from the end: ... OPTION-CODE(8) OPTION-LENGTH FAMILY SRC SCOPE ADDR
    for alen in 0..=16usize {
        if resp.len() < 8 + alen {
            break;
        }
        let at = resp.len() - alen - 8;
        let code = u16::from_be_bytes([resp[at], resp[at + 1]]);
        let len = u16::from_be_bytes([resp[at + 2], resp[at + 3]]) as usize;
        if code == 8 && len == 4 + alen {
            let src = resp[at + 6];
            if (src as usize).div_ceil(8) == alen {
                return Some((src, resp[at + 7], resp[at + 8..].to_vec()));
            }
        }
    }
    None
}

/// The SOA, NS and glue of the small `example.com.` zone tests write to disk.
pub const EXAMPLE_ZONE_HEAD: &str = "$ORIGIN example.com.\n$TTL 300\n@ SOA ns hostmaster 1 3600 900 604800 60\n@ NS ns\nns A 127.0.0.1\n";

/// Writes `dir/example.com.zone` (the head above plus `records`) and `dir/gslbd.toml` (that zone on
/// one listener "all" at 127.0.0.1:0, then `extra` TOML); returns the config's path.
pub fn write_example(dir: &std::path::Path, records: &str, extra: &str) -> PathBuf {
    std::fs::write(
        dir.join("example.com.zone"),
        format!("{EXAMPLE_ZONE_HEAD}{records}"),
    )
    .unwrap();
    let text = format!(
        r#"
[[zone]]
name = "example.com."
file = "example.com.zone"

[[listener]]
name = "all"
addresses = ["127.0.0.1:0"]
zones = ["*"]

{extra}
"#
    );
    let path = dir.join("gslbd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// External programs

/// The Debian package that installs each program a test runs (what `.ci/run` installs).
const TOOL_PACKAGES: &[(&str, &str)] = &[
    ("dig", "bind9-dnsutils"),
    ("delv", "bind9-dnsutils"),
    ("kdig", "knot-dnsutils"),
    ("knotd", "knot"),
    ("nsd", "nsd"),
    ("named", "bind9"),
    ("unbound", "unbound"),
    ("dnssec-keygen", "bind9-utils"),
    ("dnssec-signzone", "bind9-utils"),
    ("dnssec-verify", "bind9-utils"),
    ("dnssec-dsfromkey", "bind9-utils"),
    ("ldns-verify-zone", "ldnsutils"),
    ("curl", "curl"),
    ("openssl", "openssl"),
    ("kill", "procps"),
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("setpriv", "util-linux"),
    // tests/data/httpdns_sdk.py needs the `cryptography` package (python3-cryptography).
    ("python3", "python3-cryptography"),
    ("chromium", "chromium"),
    ("prlimit", "util-linux"),
];

/// Where `name` is: the first directory of `path` (a PATH value) that holds it, then the sbin
/// folders (daemons live there and a user's PATH often lacks them). The error is what to do.
pub fn find_tool(name: &str, path: &std::ffi::OsStr) -> Result<PathBuf, String> {
    std::env::split_paths(path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let package = TOOL_PACKAGES
                .iter()
                .find(|(tool, _)| *tool == name)
                .map_or(name, |(_, package)| package);
            format!(
                "{name} not found: run .ci/run (it installs what the tests need), \
                 or apt-get install {package}"
            )
        })
}

/// `find_tool` on this process's PATH; a missing program fails the test with the install hint
/// (tests never skip: a green run means every test ran).
pub fn tool_path(name: &str) -> PathBuf {
    find_tool(name, &std::env::var_os("PATH").unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"))
}

/// A `Command` for the external program `name` (see `tool_path`). Every test that runs a program
/// other than gslbd itself starts it through here.
pub fn tool(name: &str) -> std::process::Command {
    std::process::Command::new(tool_path(name))
}

/// A tiny deterministic generator (Knuth's MMIX LCG) for generated query sets: the same seed gives
/// the same queries on every run (no rand crate).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    pub fn one_in(&mut self, n: u32) -> bool {
        self.next().is_multiple_of(n)
    }
}

// ---------------------------------------------------------------------------------------------
// TLS and configs built around the lab

/// A self-signed P-256 certificate for `IP:127.0.0.1` made by openssl: `dir/cert.pem`,
/// `dir/key.pem`.
pub fn self_signed_cert(dir: &std::path::Path) {
    let out = tool("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=gslbd test",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            // An end-entity certificate (webpki refuses a CA certificate as a server's).
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lab world as a config file on disk (`dir/lab/gslbd.toml`, the zone files linked from
/// `zones/`, `dir/geo` linked to `geo/`), with `listener_extra` added to the "all" listener and
/// `tail` appended; a self-signed certificate sits beside it (`cert.pem`, `key.pem`).
pub fn lab_on_disk(dir: &std::path::Path, listener_extra: &str, tail: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lab = dir.join("lab");
    std::fs::create_dir_all(&lab).unwrap();
    std::os::unix::fs::symlink(root.join("geo"), dir.join("geo")).unwrap();
    for entry in std::fs::read_dir(root.join("zones")).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(entry.path(), lab.join(entry.file_name())).unwrap();
    }
    self_signed_cert(&lab);
    let text = std::fs::read_to_string(root.join("zones/lab.toml")).unwrap();
    let anchor = "name = \"all\"\naddresses = [\"127.0.0.1:1053\"]\n";
    assert!(
        text.contains(anchor),
        "zones/lab.toml's \"all\" listener moved"
    );
    let text = text.replacen(anchor, &format!("{anchor}{listener_extra}\n"), 1);
    let path = lab.join("gslbd.toml");
    std::fs::remove_file(&path).ok();
    std::fs::write(&path, format!("{text}\n{tail}\n")).unwrap();
    path
}

/// Client addresses across every network of the lab's geo data (geo/lab.csv and
/// lab-overrides.csv) and outside them: the parity tests' clients (the same mix for every form).
pub fn lab_clients(n: usize) -> Vec<std::net::IpAddr> {
    use std::net::IpAddr;
    let mut rng = Lcg(0x5eed);
    let mut out = Vec::new();
    while out.len() < n {
        let r = rng.next() as u64;
        let host = (r % 254 + 1) as u8;
        let ip: IpAddr = match out.len() % 10 {
            0 => [127, 0, 10 + (r % 6) as u8, host].into(),
            1 => [127, 0, 0, host].into(),
            2 => [192, 0, 2, (r % 256) as u8].into(),
            3 => [198, 51, 100, (r % 256) as u8].into(),
            4 => [203, 0, 113, host].into(),
            5 => format!(
                "2001:db8:{}::{:x}",
                ["a", "b", "c"][(r % 3) as usize],
                r % 65536
            )
            .parse()
            .unwrap(),
            6 => [10, (r % 256) as u8, (r >> 8) as u8 % 255, host].into(),
            7 => format!("2001:db8:ffff::{:x}", r % 65536).parse().unwrap(),
            8 => [127, 0, 13, host].into(),
            _ => [192, 0, 2, 248 + (r % 8) as u8].into(),
        };
        out.push(ip);
    }
    out
}

/// The CDN answers one address of an edge pair, weighted at random: compare the edge (the pair),
/// not the draw. Every other address stands for itself.
pub fn cdn_norm(addr: &str) -> String {
    match addr.strip_prefix("198.51.100.") {
        Some(last) => match last.parse::<u8>() {
            Ok(n) if (10..=51).contains(&n) => format!("cdn-edge-{}", n / 10),
            _ => addr.to_string(),
        },
        None => addr.to_string(),
    }
}

pub fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// BIND

/// A BIND `named` in the foreground (`-f`) with its own config and working directory in a temp
/// dir, killed on drop. BIND listens only on addresses its interface scan finds (127.0.0.1 here,
/// not the rest of 127.0.0.0/8), so it takes 127.0.0.1 and a free port; no control channel
/// (`controls { };`: no rndc on port 953), changes by SIGHUP (`reload`).
pub struct Named {
    child: std::process::Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on 127.0.0.1 for both TCP and UDP (for a peer that must be told its port).
pub fn free_port_on(ip: std::net::IpAddr) -> u16 {
    loop {
        let l = std::net::TcpListener::bind((ip, 0)).expect("bind a loopback port");
        let port = l.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

impl Named {
    /// Starts named with `body` (keys, zones; `{d}` stands for its directory) after options of
    /// an authoritative-only server, every log category to `named.log`, and `files` (name,
    /// text) written in its directory first; returns once it answers TCP.
    pub async fn start(body: &str, files: &[(&str, &str)]) -> Named {
        Named::start_on(free_port_on([127, 0, 0, 1].into()), body, files).await
    }

    /// `start` on a port chosen beforehand (a peer's config must name it first).
    pub async fn start_on(port: u16, body: &str, files: &[(&str, &str)]) -> Named {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let conf = dir.path().join("named.conf");
        std::fs::write(
            &conf,
            format!(
                "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
                 session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  \
                 listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  \
                 recursion no;\n  dnssec-validation no;\n  notify explicit;\n  \
                 max-ixfr-ratio unlimited;\n}};\ncontrols {{ }};\n\
                 logging {{\n  channel log {{ file \"{d}/named.log\"; severity info; print-time yes; \
                 print-category yes; }};\n  category default {{ log; }};\n  \
                 category xfer-in {{ log; }};\n  category xfer-out {{ log; }};\n  \
                 category notify {{ log; }};\n}};\n{}",
                body.replace("{d}", &d)
            ),
        )
        .unwrap();
        let child = tool("named")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("named runs");
        let named = Named {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if named.log().contains("running") && TcpStream::connect(named.addr).await.is_ok() {
                return named;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "named did not start:\n{}\n{}",
            named.log(),
            std::fs::read_to_string(named.dir.path().join("stderr")).unwrap_or_default()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Writes `text` to the file `name` of named's directory.
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    /// SIGHUP: named reads its config and changed zone files again (with
    /// `ixfr-from-differences yes` a primary zone's change goes to its journal, for IXFR).
    pub fn reload(&self) {
        let ok = tool("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP named");
    }
}

/// `delv`'s verdict on NAME TYPE asked of `addr`, trusting `anchor` (a trust-anchors file) for
/// the zone `root` (`+root=`): its first line "; ... validated" or "; unsigned ..." ("; fully
/// validated", "; negative response, fully validated", "; unsigned answer"), or all it printed.
pub fn delv(addr: SocketAddr, root: &str, anchor: &std::path::Path, name: &str, t: &str) -> String {
    let out = tool("delv")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .arg(format!("+root={root}"))
        .arg("-a")
        .arg(anchor)
        .args([name, t])
        .output()
        .expect("run delv");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| l.starts_with("; ") && (l.contains("validated") || l.contains("unsigned")))
        .map(|l| l.to_string())
        .unwrap_or(text)
}
