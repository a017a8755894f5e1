//! Authentication of REST requests and the one error type REST answers with.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use shared::error::{ErrorCode, Refusal};
use shared::protocol::native::outbound::rest_error;
use shared::store::{StoreError, StoreRefusal};

use crate::node::Node;

/// A REST error: the protocol's `{"code","message"}` body with the status
/// the code maps to.
#[derive(Debug)]
pub struct ApiError(pub Refusal);

impl ApiError {
    pub fn unauthorized(message: &str) -> Self {
        ApiError(Refusal::new(ErrorCode::Unauthorized, message))
    }
}

/// 503 with the `internal` code: the node is not taking this now (it is
/// draining); retry elsewhere.
pub fn unavailable(message: &str) -> Response {
    let refusal = Refusal::new(ErrorCode::Internal, message);
    (StatusCode::SERVICE_UNAVAILABLE, Json(rest_error(&refusal))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(rest_error(&self.0))).into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError(r)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error in a REST request");
        metrics::counter!("chat_database_errors_total").increment(1);
        ApiError(Refusal::new(ErrorCode::Internal, "internal error"))
    }
}

impl From<StoreRefusal> for ApiError {
    fn from(e: StoreRefusal) -> Self {
        match e {
            StoreRefusal::Refused(r) => ApiError(r),
            StoreRefusal::Failed(e) => e.into(),
        }
    }
}

/// The token of an `Authorization: Bearer` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The authenticated caller of a REST request.
pub struct Caller(pub String);

impl FromRequestParts<Arc<Node>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, Self::Rejection> {
        node.authenticate(bearer_token(&parts.headers)).map(Caller)
    }
}

pub async fn not_found() -> ApiError {
    ApiError(Refusal::not_found("no such endpoint"))
}

pub async fn method_not_allowed() -> Response {
    let refusal = Refusal::bad_request("method not allowed on this endpoint");
    (StatusCode::METHOD_NOT_ALLOWED, Json(rest_error(&refusal))).into_response()
}

/// Parses a path segment that must be a positive integer id.
pub fn id(segment: &str, what: &str) -> Result<i64, ApiError> {
    segment
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ApiError(Refusal::bad_request(format!("{what} must be a positive integer"))))
}
