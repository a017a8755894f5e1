//! The protocol's error codes (PROTOCOL.md section 2) and the one error type a
//! refused command carries. Both the WebSocket `error` frame and the REST JSON
//! error are built from [`Refusal`], so a code maps to one HTTP status here
//! and nowhere else.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    RateLimited,
    TooLarge,
    SyncGap,
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::TooLarge => 413,
            ErrorCode::SyncGap => 410,
            ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::SyncGap => "sync_gap",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A command or request the server refused, with a message meant for the
/// client developer. Never carries internal details such as SQL errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code:?}: {message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; the command was not applied")
    }
    /// A write whose outcome is unknown: the store's answer was lost (it
    /// did not come in time, or the connection failed).
    pub fn outcome_unknown() -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal error; the database's answer was lost and the command may have been applied; resending it is safe",
        )
    }
    pub fn not_member() -> Self {
        Self::forbidden("you are not a member of this chat")
    }
    pub fn no_chat() -> Self {
        Self::not_found("no such chat")
    }
}
