//! The bodies of the fuzz targets, shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/*.rs`,
//! which `include!` this file) and the replay test on stable (`tests/fuzz_replay.rs`, which runs
//! every file of `fuzz/corpus/<target>/` through the same function). Each body feeds one input
//! from outside to the real code and checks what must hold whatever the input: no panic, and for
//! the DNS paths the properties a client relies on (a reply that parses, fits the client's limit
//! and echoes its ID; the UDP fast path byte for byte equal to the general path).
//!
//! Every body is a plain function of the input bytes; state built once (snapshots, a server for
//! the HTTP router) lives in `OnceLock`s, so a fuzzer's millions of runs pay for it once. Nothing
//! here sends a packet: the HTTP target binds its server on 127.0.0.1 port 0 only because the
//! router's state holds a server handle.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use gslbd::config::Source;
use gslbd::query::{self, Client, Transport};
use gslbd::snapshot::Snapshot;
use gslbd::udp::Answerer;
use gslbd::wire;

/// The built-in lab: every kind of answer (GSLB chains, rotation, delegations, wildcards).
fn lab() -> &'static Arc<Snapshot> {
    static LAB: OnceLock<Arc<Snapshot>> = OnceLock::new();
    LAB.get_or_init(|| Arc::new(Snapshot::build(&Source::lab()).expect("the lab builds")))
}

/// The battery's zones: no rotation and no GSLB, so two paths must give the same bytes.
fn battery() -> &'static Arc<Snapshot> {
    static BATTERY: OnceLock<Arc<Snapshot>> = OnceLock::new();
    BATTERY.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/battery/battery.toml")
            .canonicalize()
            .or_else(|_| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/data/battery/battery.toml")
                    .canonicalize()
            })
            .expect("tests/data/battery/battery.toml");
        Arc::new(Snapshot::build(&Source::file(path)).expect("the battery builds"))
    })
}

const CLIENTS: [&str; 5] = [
    "127.0.10.1:5300",
    "127.0.11.1:5300",
    "[::1]:5300",
    "[::ffff:203.0.113.9]:5300",
    "198.51.100.7:5300",
];

/// Checks what every reply to `packet` must be: a DNS message (hickory parses it) with QR set and
/// the query's ID, no larger than the client's limit over UDP.
fn check_reply(snap: &Snapshot, packet: &[u8], reply: &[u8], transport: Transport) {
    assert!(reply.len() >= 12, "a reply has a header");
    assert_eq!(&reply[..2], &packet[..2], "the ID is echoed");
    assert!(reply[2] & 0x80 != 0, "QR is set");
    if transport == Transport::Udp {
        let max = match wire::parse_query(packet) {
            Ok(q) => wire::max_size(q.edns.as_ref(), false, snap.limits.udp_payload),
            Err(_) => wire::CLASSIC_UDP.max(snap.limits.udp_payload as usize),
        };
        assert!(
            reply.len() <= max,
            "{} bytes over a {max}-byte limit",
            reply.len()
        );
    }
    if let Err(e) = hickory_proto::op::Message::from_vec(reply) {
        panic!("our reply does not parse: {e}: {reply:02x?}");
    }
}

/// The DNS query path, as UDP, TCP and DoH call it, from several kinds of client.
pub fn query(data: &[u8]) {
    let snap = lab();
    for (i, transport) in [Transport::Udp, Transport::Tcp, Transport::Https]
        .into_iter()
        .enumerate()
    {
        let addr: SocketAddr = CLIENTS[(data.len() + i) % CLIENTS.len()].parse().unwrap();
        let client = Client { addr, transport };
        for listener in 0..snap.listeners.len().min(3) {
            if let Some(reply) = query::respond(snap, listener, data, &client) {
                check_reply(snap, data, &reply, transport);
            }
        }
    }
}

/// The UDP fast path against the general path on the same bytes: the first ask (the worker's
/// general path, which fills its tables), the second (from the tables) and `query::respond_into`
/// must be the same bytes.
pub fn fast_path(data: &[u8]) {
    let snap = battery();
    let shared = Arc::new(arc_swap::ArcSwap::new(Arc::clone(snap)));
    let counter = || Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut worker = gslbd::fast::Worker::new(
        shared,
        0,
        counter(),
        counter(),
        64 << 20,
        std::sync::Arc::new(gslbd::rrl::Limiter::new(1)),
    );
    let peer: SocketAddr = "127.0.10.1:5300".parse().unwrap();
    let client = Client {
        addr: peer,
        transport: Transport::Udp,
    };
    let (mut first, mut again, mut general) = (Vec::new(), Vec::new(), Vec::new());
    // A fresh server cookie carries the second it was made in (RFC 9018 4.2): replies made on
    // both sides of a second's boundary may differ there, and only there.
    let second = gslbd::cookie::now();
    worker.begin();
    let a = worker.answer(data, peer, &mut first);
    let b = worker.answer(data, peer, &mut again);
    worker.end(usize::from(a) + usize::from(b));
    let g = query::respond_into(snap, 0, data, &client, &mut general, None).is_some();
    assert_eq!(a, g, "fast and general paths agree on whether to reply");
    assert_eq!(a, b, "the second ask replies as the first");
    if a && gslbd::cookie::now() == second {
        assert_eq!(first, general, "fast path (first ask) == general path");
        assert_eq!(
            again, general,
            "fast path (from its tables) == general path"
        );
    }
    if a {
        check_reply(snap, data, &general, Transport::Udp);
    }
}

/// The zone reader and compiler on any text (an `$INCLUDE` reads the same text again, up to the
/// nesting limit).
pub fn zone(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let origin = hickory_proto::rr::Name::from_ascii("example.com.").unwrap();
    match gslbd::zone::Zone::load(
        &origin,
        Path::new("fuzz.zone"),
        &gslbd::zone::reader::TextFs(text),
    ) {
        Ok(z) => assert!(
            z.node(&z.origin_key).is_some(),
            "a loaded zone has its apex"
        ),
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(!e.message.is_empty(), "every error says something");
            }
        }
    }
}

/// The configuration file (TOML) and the checks of a build that reads nothing else.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = gslbd::config::parse(&text, Path::new("fuzz.toml"));
}

/// The project's geo CSV, compiled to mmdb as at load.
pub fn geo_csv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok((asn, city)) = gslbd::geo::compile_csv(&text, Path::new("fuzz.csv")) {
        assert!(!asn.is_empty() && !city.is_empty());
    }
}

/// The resolver's reading of an upstream reply: classified and cached as a walk does; what is
/// then in the cache for the name must encode (records a client would be sent are well formed).
pub fn resolver_reply(data: &[u8]) {
    use gslbd::resolver::cache::{Cache, Limits};
    use hickory_proto::rr::{Name, RecordType};
    let cache = Cache::new(
        Arc::new(gslbd::resolver::SystemClock::default()),
        Limits {
            max_entries: 64,
            max_bytes: 1 << 20,
            min_ttl: 0,
            max_ttl: 86_400,
            negative_max_ttl: 3_600,
            serve_expired_ttl: 0,
        },
    );
    let zone = Name::from_ascii("yourcompany.com.").unwrap();
    let name = Name::from_ascii("www.yourcompany.com.").unwrap();
    for qtype in [RecordType::A, RecordType::CNAME, RecordType::MX] {
        if let Some(records) =
            gslbd::resolver::walk::classify_and_store(data, &zone, &name, qtype, &cache)
        {
            let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            q.extend_from_slice(b"\x03www\x0byourcompany\x03com\x00");
            q.extend_from_slice(&u16::from(qtype).to_be_bytes());
            q.extend_from_slice(&[0, 1]);
            let parsed = wire::parse_query(&q).unwrap();
            let reply = wire::encode_records(&parsed, 0, &records, &[], 65_535, 1232);
            check_reply(lab(), &q, &reply, Transport::Tcp);
        }
    }
}

/// The HTTP router: every route, any method, path, query string, headers and body, as one
/// request split from the input (method line, header lines, a blank line, the body).
pub fn http(data: &[u8]) {
    use tower::ServiceExt;
    struct State {
        rt: tokio::runtime::Runtime,
        router: axum::Router,
        _server: tokio::task::JoinHandle<()>,
    }
    static STATE: OnceLock<State> = OnceLock::new();
    let state = STATE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (router, server) = rt.block_on(async {
            let mut source = Source::lab();
            source.port = Some(0);
            let server = gslbd::server::Server::bind(source)
                .await
                .expect("the lab binds");
            let handle = server.handle();
            let task = tokio::spawn(async move {
                let _ = server.run(std::future::pending()).await;
            });
            (
                gslbd::http::router(gslbd::http::AppState::new(handle)),
                task,
            )
        });
        State {
            rt,
            router,
            _server: server,
        }
    });
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let first = lines.next().unwrap_or("GET /");
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    let mut req = axum::http::Request::builder()
        .method(axum::http::Method::from_bytes(method.as_bytes()).unwrap_or_default())
        .uri(target.trim());
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            req = req.header(k.trim(), v.trim());
        }
    }
    let Ok(mut req) = req.body(axum::body::Body::from(body.to_string())) else {
        return; // not a request hyper would have handed over
    };
    let peer: IpAddr = if data.len().is_multiple_of(2) {
        "127.0.0.1".parse().unwrap()
    } else {
        "127.0.0.2".parse().unwrap()
    };
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(gslbd::http::Peer(
            SocketAddr::new(peer, 40000),
        )));
    let router = state.router.clone();
    let status = state
        .rt
        .block_on(async move { router.oneshot(req).await.map(|r| r.status()) })
        .expect("the router is infallible");
    assert!(
        status != axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "no input is a server error"
    );
}
