//! Being written.
use crate::http::ApiError;
use axum::response::{IntoResponse, Response};
pub async fn resolve() -> Response {
    ApiError::not_found().into_response()
}
