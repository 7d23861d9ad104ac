//! Being written.
use crate::http::ApiError;
use axum::response::{IntoResponse, Response};
pub async fn healthz() -> Response {
    ApiError::not_found().into_response()
}
pub async fn metrics() -> Response {
    ApiError::not_found().into_response()
}
pub async fn reload() -> Response {
    ApiError::not_found().into_response()
}
pub async fn openapi() -> Response {
    ApiError::not_found().into_response()
}
