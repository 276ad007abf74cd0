//! An error answer: a status and its reason, as JSON (`{"error": ...}`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

pub fn bad(why: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, why.into())
}

pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

pub fn no_run(run_id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no run {run_id:?}"))
}
