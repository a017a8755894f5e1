//! `GET /v1/chats`, read and written a part at a time. Every item names
//! its chat's members: read whole before the first byte went out, the
//! rows of a user in a hundred groups of 10,000 (a million members, each
//! with their marks) were some 60 MB of a gateway's memory per request,
//! and a user may make 200 requests at once (`REST_BURST`). Now the heads
//! of the caller's chats are read first (one user has at most 10,000
//! chats; a head holds no member and no text), then the members and last
//! messages' texts of some at a time, each part once the client has taken
//! the one before. (The texts alone, up to `MAX_MESSAGE_BYTES` each, were
//! up to 160 MB for a user in 10,000 chats.)
//!
//! The list is therefore not one snapshot: a part's members are as they
//! are when it is read. A chat the caller left meanwhile is left out; a
//! change to another chat's members shows as if made before the list was
//! asked for. A part that cannot be read ends the answer cut short (the
//! status was sent with the first): the client sees an incomplete body.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use shared::model::ChatSummary;
use shared::protocol::native::outbound::ChatListParts;
use shared::store::{in_parts, within, ChatHead, PartBounds, StoreError};

use super::auth::{ApiError, Caller};
use super::pieces;
use crate::node::{Node, STORE_DEADLINE};

/// What one part reads at most (a chat above a bound is a part of its
/// own): the marks of 5,000 members, about 0.5 MB of rows and 75 KB of
/// JSON; a million characters of last messages' texts (counted by the
/// databases' `LENGTH`, up to 4 MB of UTF-8; each text is at most
/// `MAX_MESSAGE_BYTES`); and 500 chats, which bounds the statements'
/// lists of ids.
const PART: PartBounds = PartBounds { members: 5_000, text_bytes: 1 << 20, chats: 500 };

pub async fn list(State(node): State<Arc<Node>>, Caller(user): Caller) -> Result<Response, ApiError> {
    let heads = within(STORE_DEADLINE, node.store.chat_heads(&user)).await?;
    let mut parts = in_parts(heads, PART).into_iter();
    // The first part is read before the answer starts, so that a store
    // failing now is answered with an error rather than a cut list.
    let first = match parts.next() {
        Some(part) => within(STORE_DEADLINE, node.store.summaries_of(&user, part)).await?,
        None => Vec::new(),
    };
    let mut list = ChatListParts::default();
    let opening = [Bytes::from_static(ChatListParts::START), list.part(&first)];
    drop(first);
    let rest = stream::iter(parts)
        .then(move |part| read_part(node.clone(), user.clone(), part))
        .map(move |read| read.map(|chats| list.part(&chats)));
    let body = stream::iter(opening.map(Ok))
        .chain(rest)
        .chain(stream::once(async { Ok(Bytes::from_static(ChatListParts::END)) }));
    Ok(pieces::streamed(body))
}

async fn read_part(node: Arc<Node>, user: String, part: Vec<ChatHead>) -> Result<Vec<ChatSummary>, StoreError> {
    within(STORE_DEADLINE, node.store.summaries_of(&user, part)).await.inspect_err(|e| {
        metrics::counter!("chat_database_errors_total").increment(1);
        tracing::warn!(error = %e, "a chat list was cut short: a part of it could not be read");
    })
}
