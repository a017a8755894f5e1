//! `GET /v1/presence?users=a,b` (PROTOCOL.md 6).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};
use shared::error::Refusal;
use shared::protocol::native::outbound::presence_json;

use super::auth::{ApiError, Caller};
use crate::node::Node;
use crate::presence::ViewError;

/// Users one request may ask about.
const MAX_USERS: usize = 500;

pub async fn presence(
    State(node): State<Arc<Node>>,
    Caller(_): Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let users: Vec<String> = params
        .get("users")
        .map(|list| list.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    if users.is_empty() {
        return Err(Refusal::bad_request("users=a,b,... is required").into());
    }
    if users.len() > MAX_USERS {
        return Err(Refusal::bad_request(format!("at most {MAX_USERS} users per request")).into());
    }
    // No user has such an id, and PostgreSQL would refuse a U+0000 in one
    // with an error that reads as the server's.
    if let Some(invalid) = users.iter().find(|u| !shared::auth::valid_user_id(u)) {
        return Err(Refusal::bad_request(format!("{invalid:?} is not a valid user id")).into());
    }
    let views = match node.presence.view(&node.store, &users).await {
        Ok(views) => views,
        Err(ViewError::Store(e)) => return Err(e.into()),
        // Everyone offline would be an answer, and a wrong one.
        Err(ViewError::Counts(e)) => {
            metrics::counter!("chat_redis_errors_total", "op" => "presence").increment(1);
            tracing::warn!(error = %e, "presence counts unavailable for a REST request");
            return Err(ApiError::unavailable("presence is unavailable (Redis did not answer); try again"));
        }
    };
    Ok(Json(json!({ "users": views.iter().map(presence_json).collect::<Vec<Value>>() })))
}
