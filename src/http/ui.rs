//! The status page, `/ui`: one static HTML page, its script and its style sheet, compiled into the
//! binary (`include_str!`: no build step, no files to install, no outside assets). The page reads
//! the admin JSON endpoints (`/admin/status`, `/admin/audit`, `/admin/explain`) with the admin
//! token the operator types in (kept in the tab's sessionStorage; `#token=...` in the address is
//! taken from there and removed), and drains or undrains members and regions through
//! `/admin/overrides`. Without the token it shows `/healthz` only.
//!
//! Every response carries a Content-Security-Policy that allows this origin only and no inline
//! script or style (CSP Level 3: `default-src 'none'`, then `'self'` for scripts, styles, images
//! and fetches), so a value in the data (a region's name, an error text) cannot run as code even
//! if it were inserted as HTML (the script inserts text nodes only), and the page cannot be
//! framed (`frame-ancestors 'none'`).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// Only this origin; nothing inline; no plugins, frames, forms to elsewhere or base changes.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The page changes with the binary only; revalidating costs little and a new version shows.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /ui`: the page.
pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /ui/app.js`: its script.
pub async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

/// `GET /ui/app.css`: its style sheet.
pub async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}
