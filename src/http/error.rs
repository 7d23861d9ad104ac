//! HTTP statuses and JSON error codes, decided here and nowhere else. Alibaba-compatible endpoints
//! answer `{"code": "...", "message": "..."}` with the vendor's codes (its SDKs read `code` to
//! decide whether to retry); the other endpoints use the same shape.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn missing(arg: &str) -> ApiError {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingArgument",
            format!("missing argument: {arg}"),
        )
    }
    pub fn invalid_host(why: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "InvalidHost", why)
    }
    pub fn invalid_ip(why: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "InvalidIP", why)
    }
    pub fn invalid_argument(why: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgument", why)
    }
    /// `/trace` on a server whose configuration has no `[resolver]`.
    pub fn no_resolver() -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoResolver",
            "this configuration has no [resolver] section",
        )
    }
    pub fn invalid_account(id: &str) -> ApiError {
        Self::new(
            StatusCode::FORBIDDEN,
            "InvalidAccount",
            format!("account {id} does not exist"),
        )
    }
    pub fn unsigned_disabled() -> ApiError {
        Self::new(
            StatusCode::FORBIDDEN,
            "UnsignedInterfaceDisabled",
            "this account only accepts signed requests (sign_d, sign_resolve)",
        )
    }
    pub fn signature_expired() -> ApiError {
        Self::new(
            StatusCode::FORBIDDEN,
            "SignatureExpired",
            "t is in the past",
        )
    }
    pub fn invalid_signature() -> ApiError {
        Self::new(
            StatusCode::FORBIDDEN,
            "InvalidSignature",
            "s is not md5(host-secret-t)",
        )
    }
    pub fn invalid_duration(max: u64) -> ApiError {
        Self::new(
            StatusCode::FORBIDDEN,
            "InvalidDuration",
            format!("t is more than {max} s in the future"),
        )
    }
    pub fn limit_exceeded(retry_after: u64, what: &str) -> ApiError {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "LimitExceeded",
                format!("rate limit of {what} exceeded"),
            )
        }
    }
    pub fn method_not_allowed() -> ApiError {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "method not allowed on this path",
        )
    }
    pub fn not_found() -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "NotFound", "no such endpoint")
    }
    pub fn uri_too_long(max: usize) -> ApiError {
        Self::new(
            StatusCode::URI_TOO_LONG,
            "UriTooLong",
            format!("request target longer than {max} bytes"),
        )
    }
    pub fn body_too_large(max: usize) -> ApiError {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BodyTooLarge",
            format!("body larger than {max} bytes"),
        )
    }
    pub fn unauthorized() -> ApiError {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Authorization: Bearer <admin_token> required",
        )
    }
    pub fn forbidden(why: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", why)
    }
    pub fn unsupported_media_type() -> ApiError {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "Content-Type must be application/dns-message (RFC 8484 4.1)",
        )
    }
    /// A rebuild refused: `/admin/reload` puts the problems themselves beside code and message.
    pub fn reload_failed(problems: usize) -> ApiError {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ReloadFailed",
            format!("{problems} problem(s) in the configuration; the previous data keeps serving"),
        )
    }
    /// The handler did not finish within `request_timeout_ms`.
    pub fn request_timeout(ms: u64) -> ApiError {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            format!("the request took longer than {ms} ms"),
        )
    }
    /// A request malformed below the API: RFC 9112 3.2 (HTTP/1.1 without exactly one Host), 2.2
    /// (a bare LF ending a line of the head), 3.2 (request target bytes outside visible ASCII).
    pub fn bad_request(why: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", why)
    }
    /// A request head larger than the connection layer buffers (`http::HEAD_MAX`).
    pub fn header_too_large(max: usize) -> ApiError {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "HeaderTooLarge",
            format!("request head larger than {max} bytes"),
        )
    }
    pub fn internal(why: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", why)
    }
}

impl ApiError {
    fn body(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.code, "message": self.message })
    }

    /// The same response as `into_response`, as HTTP/1.1 bytes with `Connection: close`, for the
    /// connection layer (`http::check`), which refuses a request before hyper and the router see
    /// it. Counted like every other error.
    pub fn to_http1(&self) -> Vec<u8> {
        crate::metrics::record_http_error(self.status.as_u16(), self.code);
        let body = self.body().to_string();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncache-control: no-store\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::metrics::record_http_error(self.status.as_u16(), self.code);
        let mut resp = (self.status, Json(self.body())).into_response();
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&s.to_string()).expect("digits are a header value"),
            );
        }
        resp
    }
}
