//! Being written.
use crate::http::ApiError;
use axum::response::{IntoResponse, Response};
pub async fn get() -> Response {
    ApiError::not_found().into_response()
}
pub async fn post() -> Response {
    ApiError::not_found().into_response()
}
