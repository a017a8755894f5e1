//! The REST API (PROTOCOL.md 7) and the operational endpoints. Every error,
//! including unknown routes and malformed bodies, is the JSON
//! `{"code","message"}` shape.

pub mod allowance;
pub mod auth;
mod chat_list;
mod chats;
pub mod framework_errors;
mod health;
mod messages;
mod pieces;
mod presence;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::node::Node;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/chats", post(chats::create).get(chat_list::list))
        .route("/v1/chats/{chat_id}", delete(chats::delete))
        .route("/v1/chats/{chat_id}/members", post(chats::add_member))
        .route("/v1/chats/{chat_id}/members/{user_id}", delete(chats::remove_member))
        .route("/v1/chats/{chat_id}/messages", get(messages::history))
        .route("/v1/chats/{chat_id}/messages/{message_id}/receipts", get(messages::receipts))
        .route("/v1/presence", get(presence::presence))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(auth::not_found)
        .method_not_allowed_fallback(auth::method_not_allowed)
}
