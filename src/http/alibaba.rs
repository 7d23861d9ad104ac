//! Being written.
use crate::http::ApiError;
use axum::response::IntoResponse;
use axum::response::Response;
pub async fn d() -> Response {
    ApiError::not_found().into_response()
}
pub async fn resolve() -> Response {
    ApiError::not_found().into_response()
}
pub async fn sign_d() -> Response {
    ApiError::not_found().into_response()
}
pub async fn sign_resolve() -> Response {
    ApiError::not_found().into_response()
}
