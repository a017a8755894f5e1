//! History and receipts over REST.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use serde_json::{json, Value};
use shared::error::Refusal;
use shared::protocol::native::outbound::{history_page, receipt_json};
use shared::store::{within, HistoryQuery};

use super::auth::{id, ApiError, Caller};
use crate::node::{Node, STORE_DEADLINE};

/// A history page goes out in pieces of about this much JSON, each written
/// when the connection is ready for more: a slow reader holds the page's rows,
/// not its rendering.
const PAGE_PIECE_BYTES: usize = 64 * 1024;

pub async fn history(
    State(node): State<Arc<Node>>,
    Caller(user): Caller,
    Path(chat): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let chat = id(&chat, "chatId")?;
    let number = |name: &str| -> Result<Option<i64>, ApiError> {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<i64>().map_err(|_| ApiError::from(Refusal::bad_request(format!("{name} must be an integer"))))
            })
            .transpose()
    };
    let query = HistoryQuery { before: number("before")?, after: number("after")?, limit: number("limit")? };
    let messages = within(STORE_DEADLINE, node.store.messages(chat, &user, query)).await?;
    let pieces = history_page(messages, PAGE_PIECE_BYTES).map(Ok::<_, Infallible>);
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream::iter(pieces))).into_response())
}

pub async fn receipts(
    State(node): State<Arc<Node>>,
    Caller(user): Caller,
    Path((chat, message)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let chat = id(&chat, "chatId")?;
    let message = id(&message, "messageId")?;
    let receipts: Vec<Value> =
        within(STORE_DEADLINE, node.store.receipts(chat, &user, message)).await?.iter().map(receipt_json).collect();
    Ok(Json(json!({ "receipts": receipts })))
}
