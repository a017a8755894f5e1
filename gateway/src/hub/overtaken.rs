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
//! The same holds after the node's subscription reconnects, for every
//! user: the changes announced meanwhile are lost, the users' chats read
//! again (`hub::repair`), and an earlier change can be heard after, from
//! the reconnect on.
//!
//! An announcement goes out within some 40 s of its change: seconds, or
//! the half-minute of retries a failed publish gets
//! (`rest::chats::announce_later`). So a change heard while the user's
//! chats load, or within a minute after they were read (first or by a
//! repair, and from the reconnect that calls for one; the same minute the
//! versions are remembered for,
//! [`crate::latest`]), is checked when following it would change what this
//! node follows for the user: the membership is read from the store
//! ([`crate::member_checks`], apart from the loads), and the change is
//! applied only if the store agrees with it and no later change was
//! applied meanwhile. Any other change is applied as it comes. A failed
//! read applies it as heard, as before this check.
//!
//! The changes a check delays are a recent user's additions (they sync
//! from the chat's `created` frame) and removals: for the read's few
//! milliseconds, a removed member goes on receiving the chat here.

use std::sync::Arc;
use std::time::Instant;

use shared::model::{ChatAction, ChatId, EventId};
use shared::sync::lock;

use super::{Hub, LocalUser};
use crate::latest::WINDOW;
use crate::outbound::Framed;

impl LocalUser {
    /// Whether following `action` on `chat` now would change what this
    /// node follows for the user, while their chats load or within the
    /// bound after they were read.
    pub(super) fn may_be_overtaken(&self, chat: ChatId, action: ChatAction, now: Instant) -> bool {
        let state = lock(&self.state);
        let recent = match state.loaded_at {
            Some(loaded_at) => now.saturating_duration_since(loaded_at) < WINDOW,
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
    /// Checks `local`'s membership of the chat in the store, and applies the
    /// change if it agrees (`hub::chat_list_changed`).
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
            let member = match hub.member_checks.is_member(chat.0, &local.id).await {
                Ok(member) => Some(member),
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
            // Gone meanwhile, or gone and back: a new arrival's own read of
            // its chats follows this change.
            if !hub.user(&local.id).is_some_and(|current| Arc::ptr_eq(&current, &local)) {
                return;
            }
            // A later change heard during the check was applied already.
            if hub.latest_membership.is_current(&(local.id.clone(), chat.0), version.max(0) as u64) {
                hub.apply_membership_change(&local, chat, action, render);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use shared::bus::memory::MemoryBroker;
    use shared::bus::Broker;
    use shared::store::NewChat;

    use super::*;
    use crate::handle::ClientHandle;

    /// Which changes are checked: those that would change what the node
    /// follows, while the chats load and for the minute after each read of
    /// them, the first or a repair's.
    #[tokio::test]
    async fn changes_are_checked_around_each_read_of_a_users_chats() {
        let (_dir, store) = crate::test_store::sqlite_store().await;
        let chat = store.create_chat("bob", NewChat::group("g", ["alice"]), 1).await.map_err(|e| e.0).expect("chat");
        let (chat, other) = (chat.chat_id, chat.chat_id + 1);
        let hub = Hub::new(Broker::Memory(MemoryBroker::default()), store);
        let (alice, fresh) =
            hub.register(Arc::new(ClientHandle::new(1, "alice".into(), crate::outbound_queue::QueueLimits::items(64))));
        assert!(fresh);
        let checked_at =
            |action, now| (alice.may_be_overtaken(chat, action, now), alice.may_be_overtaken(other, action, now));
        let checked = |action| checked_at(action, Instant::now());

        assert_eq!(checked(ChatAction::Created), (true, true), "loading: every addition");
        assert_eq!(checked(ChatAction::Deleted), (true, true), "loading: every removal, kept out of the load");
        hub.chats_loaded(&alice, [(chat, 0)]);
        assert_eq!(checked(ChatAction::Updated), (false, true), "loaded: an update of a chat followed is not");
        assert_eq!(checked(ChatAction::Deleted), (true, false), "loaded: a removal of a chat not followed is not");

        let a_minute_on = Instant::now() + WINDOW + Duration::from_secs(1);
        assert_eq!(checked_at(ChatAction::Created, a_minute_on), (false, false), "a minute on: none");
        assert_eq!(checked_at(ChatAction::Deleted, a_minute_on), (false, false), "a minute on: none");

        let loaded_at = lock(&alice.state).loaded_at.expect("loaded");
        hub.repair_memberships();
        let reconnected_at = lock(&alice.state).loaded_at.expect("loaded");
        assert!(reconnected_at > loaded_at, "from the reconnect on, before the repair's read");
        hub.repair(vec![alice.clone()]).await;
        let repaired_at = lock(&alice.state).loaded_at.expect("loaded");
        assert!(repaired_at > reconnected_at, "a repair's read starts the minute again");
        let a_minute_on = repaired_at + WINDOW + Duration::from_secs(1);
        assert_eq!(checked_at(ChatAction::Created, a_minute_on), (false, false), "a minute after the repair: none");
    }
}
