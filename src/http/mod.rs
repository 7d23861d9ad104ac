//! The HTTP side: HTTPDNS (Alibaba-compatible and Google-JSON-compatible), RFC 8484 DoH, and the
//! operations endpoints, on axum. Every answer comes from the same engine as DNS (`lookup` for the
//! JSON forms, `query::respond` for DoH), read from the snapshot current at the request.
//!
//! Module map: `config` (the `[http]` section), `error` (the one place HTTP statuses and JSON error
//! codes are decided), `client` (which address the answer is for), `limit` (rate limits),
//! `alibaba` (v1: `/d`, `/resolve`, signed forms), `alibaba_v2` (`/ss`, `/v2/d`), `dnspod`
//! (Tencent D+ `/d`, `/conf`), `crypto` (their ciphers), `google`, `doh`, `trace` (a resolver walk step by step), `ops` (`/healthz`, `/metrics`, `/admin/reload`,
//! `/openapi.json`).

pub mod alibaba;
pub mod alibaba_v2;
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
    ("GET", "/openapi.json"),
];

pub fn router(state: AppState) -> Router {
    let timeout = state
        .handle
        .snapshot()
        .http
        .as_ref()
        .map_or(5000, |h| h.request_timeout_ms);
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
        .route("/openapi.json", get(ops::openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), bounds))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(timeout),
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Bounded request targets and bodies (limits read from the current snapshot, so they reload).
async fn bounds(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (max_uri, max_body) = st
        .handle
        .snapshot()
        .http
        .as_ref()
        .map_or((2048, 4096), |h| (h.max_uri, h.max_body));
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
    next.run(req).await
}

/// Serves HTTP (HTTPS when the snapshot has `[http.tls]`) on `socket` until the task is dropped,
/// with at most `max_connections` open connections (further ones wait in the accept queue).
pub async fn serve(
    handle: Handle,
    socket: tokio::net::TcpListener,
    max_connections: usize,
) -> std::io::Result<()> {
    let app = router(AppState::new(handle.clone()));
    let local = socket.local_addr()?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    // TLS handshakes run in their own tasks, so a slow client cannot stall the accept loop.
    let acceptor = AbortOnDrop(tokio::spawn(accept_loop(handle, socket, slots, tx)));
    let listener = CappedListener { rx, local };
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>()).await;
    drop(acceptor);
    served
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(
    handle: Handle,
    socket: tokio::net::TcpListener,
    slots: Arc<tokio::sync::Semaphore>,
    tx: tokio::sync::mpsc::Sender<(CappedStream, std::net::SocketAddr)>,
) {
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (stream, addr) = match socket.accept().await {
            Ok(a) => a,
            // Per-connection errors (ECONNABORTED, EMFILE...): back off briefly, go on.
            Err(e) => {
                tracing::debug!("http accept: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let tls = handle.snapshot().http.as_ref().and_then(|h| h.tls.clone());
        match tls {
            None => {
                let conn = CappedStream {
                    conn: Conn::Plain(stream),
                    _permit: permit,
                };
                if tx.send((conn, addr)).await.is_err() {
                    return;
                }
            }
            Some(config) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let conn = CappedStream {
                                conn: Conn::Tls(Box::new(tls)),
                                _permit: permit,
                            };
                            let _ = tx.send((conn, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {addr}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {addr}: timed out"),
                    }
                });
            }
        }
    }
}

/// Connections the accept loop has made ready (TCP accepted, TLS handshaken).
struct CappedListener {
    rx: tokio::sync::mpsc::Receiver<(CappedStream, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

enum Conn {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

/// A connection and its permit; the permit is released when hyper drops the connection.
pub struct CappedStream {
    conn: Conn,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop is gone (shutting down): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The peer of an HTTP connection: handlers take `ConnectInfo<Peer>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, CappedListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, CappedListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl tokio::io::AsyncRead for CappedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.conn {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for CappedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.conn {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.conn {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.conn {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
