//! The HTTP side: HTTPDNS (Alibaba-compatible and Google-JSON-compatible), RFC 8484 DoH, and the
//! operations endpoints, on axum. Every answer comes from the same engine as DNS (`lookup` for the
//! JSON forms, `query::respond` for DoH), read from the snapshot current at the request.
//!
//! Module map: `config` (the `[http]` section), `error` (the one place HTTP statuses and JSON error
//! codes are decided), `check` (request heads looked at before hyper: bare LF, Host, target
//! bytes), `client` (which address the answer is for), `limit` (rate limits), `alibaba` (v1:
//! `/d`, `/resolve`, signed forms), `alibaba_v2` (`/ss`, `/v2/d`), `dnspod` (Tencent D+ `/d`,
//! `/conf`), `crypto` (their ciphers), `google`, `doh`, `trace` (a resolver walk step by step),
//! `ops` (`/healthz`, `/metrics`, `/admin/reload`, `/openapi.json`), `admin` (runtime control:
//! `/admin/health`, `/admin/overrides`, `/admin/traffic`, `/admin/audit`, `/admin/explain`,
//! `/admin/status`), `ui` (the status page `/ui`, compiled in).

pub mod admin;
pub mod alibaba;
pub mod alibaba_v2;
pub mod check;
pub mod client;
pub mod config;
pub mod crypto;
pub mod dnspod;
pub mod doh;
pub mod error;
pub mod google;
pub mod limit;
pub mod ops;
pub mod trace;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::server::Handle;

pub use self::config::{HttpConfig, HttpSettings};
pub use self::error::ApiError;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub handle: Handle,
    pub limiter: Arc<limit::Limiter>,
}

impl AppState {
    pub fn new(handle: Handle) -> AppState {
        AppState {
            handle,
            limiter: Arc::new(limit::Limiter::default()),
        }
    }
}

/// Every route: (method, path). `/openapi.json` documents exactly these (a test checks both ways).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/{account_id}/d"),
    ("GET", "/{account_id}/resolve"),
    ("GET", "/{account_id}/sign_d"),
    ("GET", "/{account_id}/sign_resolve"),
    ("GET", "/{account_id}/ss"),
    ("GET", "/v2/d"),
    ("GET", "/d"),
    ("GET", "/conf"),
    ("GET", "/resolve"),
    ("GET", "/dns-query"),
    ("POST", "/dns-query"),
    ("GET", "/trace"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("POST", "/admin/reload"),
    ("GET", "/admin/health"),
    ("GET", "/admin/overrides"),
    ("POST", "/admin/overrides"),
    ("DELETE", "/admin/overrides"),
    ("GET", "/admin/traffic"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/explain"),
    ("GET", "/admin/status"),
    ("GET", "/admin/zones"),
    ("GET", "/ui"),
    ("GET", "/ui/app.js"),
    ("GET", "/ui/app.css"),
    ("GET", "/openapi.json"),
];

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/{account_id}/d", get(alibaba::d))
        .route("/{account_id}/resolve", get(alibaba::resolve))
        .route("/{account_id}/sign_d", get(alibaba::sign_d))
        .route("/{account_id}/sign_resolve", get(alibaba::sign_resolve))
        .route("/{account_id}/ss", get(alibaba_v2::ss))
        .route("/v2/d", get(alibaba_v2::d))
        .route("/d", get(dnspod::d))
        .route("/conf", get(dnspod::conf))
        .route("/resolve", get(google::resolve))
        .route("/dns-query", get(doh::get).post(doh::post))
        .route("/trace", get(trace::trace))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/admin/reload", post(ops::reload))
        .route("/admin/health", get(admin::health))
        .route(
            "/admin/overrides",
            get(admin::overrides)
                .post(admin::add_override)
                .delete(admin::remove_override),
        )
        .route("/admin/traffic", get(admin::traffic))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/explain", get(admin::explain))
        .route("/admin/status", get(admin::status))
        .route("/admin/zones", get(admin::zones))
        .route("/ui", get(ui::index))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/app.css", get(ui::app_css))
        .route("/openapi.json", get(ops::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), bounds))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Bounded request targets, bodies and time (limits read from the current snapshot, so they
/// reload).
async fn bounds(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (max_uri, max_body, timeout) = st
        .handle
        .snapshot()
        .http
        .as_ref()
        .map_or((2048, 4096, 5000), |h| {
            (h.max_uri, h.max_body, h.request_timeout_ms)
        });
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > max_uri {
        return ApiError::uri_too_long(max_uri).into_response();
    }
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return ApiError::body_too_large(max_body).into_response();
    }
    // Bodies without a length (chunked) are capped while read.
    let req = req.map(|b| axum::body::Body::new(http_body_util::Limited::new(b, max_body)));
    match tokio::time::timeout(Duration::from_millis(timeout), next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::request_timeout(timeout).into_response(),
    }
}

/// The connection layer's limits, read from the snapshot serving when a connection opens (so
/// they reload for new connections).
#[derive(Debug, Clone, Copy)]
struct ConnLimits {
    header_read: Duration,
    idle: Duration,
    max_requests: u64,
    request_timeout: Duration,
    max_head: usize,
}

impl ConnLimits {
    fn of(handle: &Handle) -> ConnLimits {
        let snap = handle.snapshot();
        let h = snap.http.as_ref();
        ConnLimits {
            header_read: Duration::from_millis(h.map_or(5000, |h| h.header_read_timeout_ms)),
            idle: Duration::from_millis(h.map_or(5000, |h| h.idle_timeout_ms)),
            max_requests: h.map_or(1000, |h| h.max_requests_per_connection),
            request_timeout: Duration::from_millis(h.map_or(5000, |h| h.request_timeout_ms)),
            max_head: HEAD_MIN.max(h.map_or(2048, |h| h.max_uri) + HEAD_MIN / 2),
        }
    }
}

/// The smallest bound on a request head (request line + header fields) the connection layer
/// holds: 32 KiB, nginx's `large_client_header_buffers` default; more when `max_uri` needs it.
pub const HEAD_MIN: usize = 32 * 1024;

/// How long a connection must have been idle before it may be closed for a newcomer: time for a
/// client that has just connected to send its request.
const HTTP_GRACE: Duration = Duration::from_millis(500);

/// Serves HTTP (HTTPS when the snapshot has `[http.tls]`) on `socket` until the task is dropped.
/// At `max_connections` (read from the snapshot at each accept, so it reloads) the connection idle
/// the longest (no request in progress) is closed for the newcomer; only when every connection is
/// busy does the newcomer wait.
pub async fn serve(handle: Handle, socket: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = router(AppState::new(handle.clone()));
    let table = Arc::new(crate::conns::ConnTable::default());
    let cap = || {
        handle
            .snapshot()
            .http
            .as_ref()
            .map_or(1024, |h| h.max_connections)
    };
    loop {
        let (stream, addr) = match socket.accept().await {
            Ok(a) => a,
            // Per-connection errors (ECONNABORTED, EMFILE...): back off briefly, go on.
            Err(e) => {
                tracing::debug!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        // A new connection counts as idle until its first request: one that never sends one (or
        // sends its head slowly) is the first to go when the cap is reached.
        // It may close one idle for HTTP_GRACE (or the header timeout, if shorter).
        let grace = HTTP_GRACE.min(ConnLimits::of(&handle).header_read);
        let slot = table.admit_wait(cap, true, grace).await;
        let guard = crate::conns::SlotGuard::new(table.clone(), slot);
        let _ = stream.set_nodelay(true);
        let tls = handle.snapshot().http.as_ref().and_then(|h| h.tls.clone());
        let limits = ConnLimits::of(&handle);
        let app = app.clone();
        tokio::spawn(async move {
            let conn = match tls {
                None => Conn::Plain(stream),
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    // The handshake is bounded like a request head, and the table may close it.
                    let handshake =
                        tokio::time::timeout(limits.header_read, acceptor.accept(stream));
                    tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(tls)) => Conn::Tls(Box::new(tls)),
                            Ok(Err(e)) => return tracing::debug!("TLS handshake with {addr}: {e}"),
                            Err(_) => return tracing::debug!("TLS handshake with {addr}: timed out"),
                        },
                        _ = guard.closed() => return,
                    }
                }
            };
            serve_conn(app, conn, addr, limits, guard).await;
        });
    }
}

/// Requests in progress on one connection and requests served, shared by the connection task and
/// the service hyper calls.
#[derive(Default)]
struct Activity {
    in_progress: std::sync::atomic::AtomicUsize,
    served: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
}

/// Marks a request in progress until dropped (the response has been produced, or hyper gave up).
struct InProgress(Arc<Activity>);

impl InProgress {
    fn new(a: &Arc<Activity>) -> InProgress {
        a.in_progress.fetch_add(1, Ordering::Relaxed);
        a.served.fetch_add(1, Ordering::Relaxed);
        a.changed.notify_one();
        InProgress(a.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_one();
    }
}

use std::sync::atomic::Ordering;

/// One connection through hyper (HTTP/1.1 with keep-alive, or HTTP/2), with its limits: hyper's
/// header-read timeout, the idle timeout (no request in progress), the request cap (then a graceful
/// close: HTTP/1 finishes the response in progress and closes, HTTP/2 sends GOAWAY), and the
/// table's request to close it while idle.
async fn serve_conn(
    app: Router,
    conn: Conn,
    addr: std::net::SocketAddr,
    limits: ConnLimits,
    guard: crate::conns::SlotGuard,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    // HTTP/1 or HTTP/2 is decided here, not by hyper's auto builder: its own look at the first
    // bytes would wait on `check`, which holds a head back until it is whole, and hyper's
    // header-read timeout only starts once its HTTP/1 side reads.
    let h2 = match &conn {
        Conn::Tls(t) => t.get_ref().1.alpn_protocol() == Some(b"h2"),
        Conn::Plain(s) => {
            let first = tokio::time::timeout(limits.header_read, starts_h2(s));
            tokio::select! {
                r = first => match r {
                    Ok(Some(h2)) => h2,
                    _ => return,
                },
                _ = guard.closed() => return,
            }
        }
    };
    let check = if h2 {
        check::HeadCheck::pass()
    } else {
        check::HeadCheck::new(limits.max_head)
    };
    let io = check::Checked::new(conn, check);
    let activity = Arc::new(Activity::default());
    let svc = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let busy = InProgress::new(&activity);
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(Peer(addr)));
            let app = app.clone();
            async move {
                let resp = app.oneshot(req.map(axum::body::Body::new)).await;
                drop(busy);
                resp
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        // The end of the stream `check` gives after a refused head must not cut off the answers
        // to the requests before it (nor a client's own half-close, RFC 9112 9.6).
        .half_close(true)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let served = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(served);
    let mut idle_since = tokio::time::Instant::now();
    // Set once the connection is closing gracefully: it gets this long to finish.
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let busy = activity.in_progress.load(Ordering::Relaxed) > 0;
        guard.set_idle(!busy);
        if busy {
            idle_since = tokio::time::Instant::now();
        }
        if closing.is_none() && activity.served.load(Ordering::Relaxed) >= limits.max_requests {
            served.as_mut().graceful_shutdown();
            closing =
                Some(tokio::time::Instant::now() + limits.request_timeout + limits.header_read);
        }
        let deadline = match closing {
            Some(t) => t,
            None if busy => tokio::time::Instant::now() + Duration::from_secs(86400),
            None => idle_since + limits.idle,
        };
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("http connection with {addr}: {e}");
                }
                return;
            }
            _ = activity.changed.notified() => {}
            // Closed by the table for a newcomer (only while idle), or idle too long, or out of
            // time to close gracefully: dropping the connection closes the socket.
            _ = guard.closed() => return,
            _ = tokio::time::sleep_until(deadline) => {
                if closing.is_some() || !busy {
                    return;
                }
            }
        }
    }
}

/// Connections the admin socket serves at once; more wait in the kernel's backlog. An operator's
/// `gslbd ctl` and a status page need a handful.
const SOCKET_CONNECTIONS: usize = 64;

/// Serves the whole router on `[admin] socket` (HTTP/1.1) until the task is dropped. Admin
/// requests need no token here (`admin::ViaSocket`): the socket file's mode and owner, set at
/// bind, are the check. Each connection gets the idle and header timeouts of `[http]` (or their
/// defaults) and the requests the `bounds` middleware's limits.
pub async fn serve_socket(handle: Handle, socket: tokio::net::UnixListener) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let app = router(AppState::new(handle.clone()));
    let slots = Arc::new(tokio::sync::Semaphore::new(SOCKET_CONNECTIONS));
    loop {
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let stream = match socket.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!("admin socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        // Who connected, for the audit trail (SO_PEERCRED).
        let who = match stream.peer_cred() {
            Ok(c) => format!("socket:uid={}", c.uid()),
            Err(_) => "socket".to_string(),
        };
        let limits = ConnLimits::of(&handle);
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    // Handlers that log a peer see loopback: the request came from this host.
                    req.extensions_mut().insert(axum::extract::ConnectInfo(Peer(
                        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    )));
                    req.extensions_mut().insert(admin::ViaSocket(who.clone()));
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read)
                .serve_connection(TokioIo::new(stream), svc);
            // Bounded: a connection that lingers past the idle timeout after its last request
            // started is closed (ctl sends one request per connection).
            let bound = limits.idle + limits.request_timeout;
            if let Ok(Err(e)) = tokio::time::timeout(bound, conn).await {
                tracing::debug!("admin socket connection: {e}");
            }
        });
    }
}

/// Whether a plain connection begins with the HTTP/2 preface (`PRI `, RFC 9113 3.4: h2c with
/// prior knowledge, as `dig +http-plain` speaks) rather than an HTTP/1 request line; None if it
/// closes first. Only looks (peek): the bytes stay for hyper.
async fn starts_h2(s: &tokio::net::TcpStream) -> Option<bool> {
    let mut first = [0u8; 2];
    loop {
        let n = s.peek(&mut first).await.ok()?;
        match n {
            0 => return None,
            _ if first[0] != b'P' => return Some(false),
            1 => tokio::time::sleep(Duration::from_millis(5)).await,
            _ => return Some(first[1] == b'R'),
        }
    }
}

/// The peer of an HTTP connection: handlers take `ConnectInfo<Peer>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

/// A connection's stream: plain TCP or TLS.
enum Conn {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl check::WriteNow for Conn {
    fn write_now(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.try_write(buf),
            Conn::Tls(_) => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut *self {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut *self {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut *self {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut *self {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
