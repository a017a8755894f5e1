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
/// the code maps to, or 503 for "not now, try again".
#[derive(Debug)]
pub struct ApiError {
    refusal: Refusal,
    /// Overrides the status the code maps to.
    status: Option<StatusCode>,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<&'static str>,
}

impl ApiError {
    pub fn unauthorized(message: &str) -> Self {
        ApiError::from(Refusal::new(ErrorCode::Unauthorized, message))
    }

    /// 503 with the `internal` code: the node cannot take this now (it is
    /// draining, or its database did not answer in time); retry, elsewhere
    /// if need be.
    pub fn unavailable(message: &str) -> Self {
        ApiError {
            refusal: Refusal::new(ErrorCode::Internal, message),
            status: Some(StatusCode::SERVICE_UNAVAILABLE),
            retry_after: None,
        }
    }

    /// 429: a call past the user's REST allowance, which refills at least
    /// one call a second (`REST_RATE` is a whole number), so one second is
    /// the honest least wait, and tells a client not to retry at once.
    pub fn past_allowance(message: &str) -> Self {
        ApiError { retry_after: Some("1"), ..ApiError::from(Refusal::new(ErrorCode::RateLimited, message)) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.refusal.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let body = Json(rest_error(&self.refusal));
        match self.retry_after {
            Some(seconds) => (status, [(header::RETRY_AFTER, seconds)], body).into_response(),
            None => (status, body).into_response(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError { refusal, status: None, retry_after: None }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error in a REST request");
        metrics::counter!("chat_database_errors_total").increment(1);
        match e {
            StoreError::Timeout(_) => ApiError::unavailable("the database did not answer in time; try again"),
            _ => ApiError::from(Refusal::new(ErrorCode::Internal, "internal error")),
        }
    }
}

impl From<StoreRefusal> for ApiError {
    fn from(e: StoreRefusal) -> Self {
        match e {
            StoreRefusal::Refused(r) => ApiError::from(r),
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
        let user = node.authenticate(bearer_token(&parts.headers))?.user;
        if !node.rest_allowance.take(&user, shared::clock::now_ms()) {
            metrics::counter!("chat_rest_rate_limited_total").increment(1);
            return Err(ApiError::past_allowance("too many requests; wait a moment, then retry"));
        }
        Ok(Caller(user))
    }
}

pub async fn not_found() -> ApiError {
    ApiError::from(Refusal::not_found("no such endpoint"))
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
        .ok_or_else(|| ApiError::from(Refusal::bad_request(format!("{what} must be a positive integer"))))
}
