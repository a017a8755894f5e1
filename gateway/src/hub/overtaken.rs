//! Membership changes heard around a user's first connection here, checked
//! against the store before they are followed.
//!
//! This node hears a user's `chats` events from the moment it subscribes
//! their channel, and loads their chats just after. Two changes of one
//! membership made through two gateways are published in no particular
//! order, and the version each carries orders only those heard here. So
//! the later change can go out before the channel was live (never heard,
//! but in the load) and the earlier one after. Applied as heard, a removal
//! would take away a chat the member had been added back to (they would
//! miss its messages), and an addition would follow a chat the user had
//! been removed from again (they would receive it).
//!
//! An announcement goes out within seconds of its change, or after the
//! half-minute of retries that a failed publish gets
//! (`rest::chats::announce_later`): the same bound the versions are
//! remembered for ([`crate::latest`]). So a change heard while the user's
//! chats load, or within that bound after, is checked when following it
//! would change what this node follows for the user. Their chats are read
//! again, with other connections' loads, and the change is applied only
//! if the store agrees with it. Any other change is applied as it comes.
//! A failed read applies it as heard, as before this check.

use std::sync::Arc;

use shared::model::{ChatAction, ChatId, EventId};
use shared::sync::lock;

use super::{Hub, LocalUser};
use crate::latest::WINDOW;
use crate::outbound::Framed;

impl LocalUser {
    /// Whether following `action` on `chat` now would change what this
    /// node follows for the user, while their chats load or within the
    /// bound after.
    pub(super) fn may_be_overtaken(&self, chat: ChatId, action: ChatAction) -> bool {
        let state = lock(&self.state);
        let recent = match state.loaded_at {
            Some(loaded_at) => loaded_at.elapsed() < WINDOW,
            None => state.left_while_loading.is_some(),
        };
        let followed = state.chats.contains(&chat);
        recent
            && match action {
                ChatAction::Created | ChatAction::Updated => !followed,
                // Left while loading, the chat is kept out of the load.
                ChatAction::Deleted => followed || state.left_while_loading.is_some(),
            }
    }
}

impl Hub {
    /// Reads `local`'s chats, and applies the change if it agrees with
    /// them (`hub::chat_list_changed`).
    pub(super) fn apply_if_stored(
        self: &Arc<Self>,
        local: Arc<LocalUser>,
        chat: (ChatId, EventId),
        action: ChatAction,
        version: i64,
        render: impl FnOnce(ChatAction) -> Framed + Send + 'static,
    ) {
        let hub = self.clone();
        tokio::spawn(async move {
            let member = match hub.chat_list(&local.id).await {
                Ok(chats) => Some(chats.iter().any(|(c, _)| *c == chat.0)),
                Err(e) => {
                    metrics::counter!("chat_database_errors_total").increment(1);
                    tracing::warn!(error = %e, user = local.id, "could not check a membership change; applied as heard");
                    None
                }
            };
            if member.is_some_and(|member| member != (action != ChatAction::Deleted)) {
                metrics::counter!("chat_membership_changes_overtaken_total").increment(1);
                tracing::info!(
                    user = local.id,
                    chat = chat.0,
                    ?action,
                    version,
                    "membership change overtaken; dropped"
                );
                return;
            }
            // A later change heard during the read was applied already.
            if hub.latest_membership.is_current(&(local.id.clone(), chat.0), version.max(0) as u64) {
                hub.apply_membership_change(&local.id, chat, action, render);
            }
        });
    }
}
