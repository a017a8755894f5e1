//! History and receipts over REST.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Value};
use shared::error::Refusal;
use shared::protocol::native::outbound::{history_page, receipt_json};
use shared::store::{within, HistoryQuery};

use super::auth::{id, ApiError, Caller};
use super::pieces;
use crate::node::{Node, STORE_DEADLINE};

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
    Ok(pieces::answer(history_page(messages, pieces::PIECE_BYTES)))
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
