//! Events from the bus, each to what handles it here: chat events to
//! their delivery in order, presence, typing and `chats` changes to the
//! users held here, replies to the connection that sent the command.

use std::collections::HashSet;
use std::sync::Arc;

use shared::bus::{Event, EventSink};
use shared::model::{ChatId, UserId};
use shared::protocol::native::outbound as render;

use super::Hub;
use crate::handle::ClientHandle;
use crate::outbound::Framed;
use crate::write_through::FanOutBatch;

/// How the bus hands events to the hub. It holds an `Arc<Hub>` because
/// filling a gap spawns a task that outlives the call.
pub struct HubSink(pub Arc<Hub>);

impl EventSink for HubSink {
    fn deliver(&self, event: Event) {
        self.deliver_within(event, &mut FanOutBatch::new());
    }

    fn deliver_all(&self, events: Vec<Event>) {
        // Dropped at the end, which writes what it deferred.
        let mut batch = FanOutBatch::new();
        for event in events {
            self.deliver_within(event, &mut batch);
        }
    }

    fn presence_reread(&self, events: Vec<Event>) {
        let (chatless, carried): (Vec<Event>, Vec<Event>) =
            events.into_iter().partition(|event| matches!(event, Event::Presence { chats, .. } if chats.is_empty()));
        self.deliver_all(carried);
        if !chatless.is_empty() {
            self.0.deliver_with_chats_read(chatless);
        }
    }

    fn resync(&self, chats: Vec<ChatId>) {
        self.0.resync_chats(chats);
    }

    fn replies_may_be_lost(&self) {
        self.0.for_each_connection(ClientHandle::settle_all);
    }

    fn memberships_may_be_stale(&self) {
        self.0.repair_memberships();
    }
}

impl HubSink {
    /// Delivers `event` as part of `batch` (see `write_through`).
    fn deliver_within(&self, event: Event, batch: &mut FanOutBatch) {
        let hub = &self.0;
        match event {
            Event::Chat(event) => hub.chat_event(event, batch),
            Event::Typing { chat, user } => hub.typing(chat, &user),
            Event::Presence { user, online, last_seen, chats, seq } => {
                // Numbered ones (a cluster's) are ordered, and remembered,
                // only where someone hears them; standalone's are all news.
                let heard_here = || chats.iter().any(|chat| hub.chats.contains_key(chat));
                if seq != 0 && !heard_here() {
                    return;
                }
                // Checked and told in one step: announcements read again
                // whose chats were looked up (`hub::presence_reread`) are
                // delivered beside the listener's, and an older state
                // must not be told after a newer one.
                hub.latest_presence.apply_if_news(&user, seq, || {
                    let frame = Arc::new(if online {
                        Framed::new("online", render::online(&user))
                    } else {
                        Framed::new("offline", render::offline(&user, last_seen))
                    });
                    hub.to_co_members(&user, &chats, &frame);
                });
            }
            Event::ChatList { user, action, chat, version } => {
                let place = (chat.id, chat.last_event_id);
                let whole = move |shown| Framed::new("chats", render::chats(shown, &chat));
                hub.chat_list_changed(user, place, action, version, whole);
            }
            Event::ChatListToMany { untold, action, chat, version } => {
                // Most of a large group is held elsewhere: only those held
                // here get a summary made, and a version remembered. (A
                // user connecting later loads their chats from the store,
                // as a cluster's gateway does for a user whose channel it
                // did not hear; standalone remembered every member's.)
                // Their frames share the member list, rendered once.
                let untold: HashSet<&str> = untold.iter().map(String::as_str).collect();
                let told = |user: &&UserId| hub.users.contains_key(user.as_str()) && !untold.contains(user.as_str());
                let mut members = None;
                for user in chat.members().iter().filter(told) {
                    if let Some(summary) = chat.as_seen_by(user) {
                        let members = members.get_or_insert_with(|| render::chats_end(chat.members())).clone();
                        let place = (summary.id, summary.last_event_id);
                        let spliced =
                            move |shown| Framed::spliced("chats", render::chats_head(shown, &summary), members);
                        hub.chat_list_changed(user.clone(), place, action, version, spliced);
                    }
                }
            }
            Event::Reply { origin, reference, result, received_at } => {
                let Some(handle) = hub.connections.get(&origin.connection).map(|c| c.clone()) else { return };
                if !handle.reply_arrived(origin.sequence) {
                    metrics::counter!("chat_replies_repeated_total").increment(1);
                    return;
                }
                let (kind, frame) = match &result {
                    Ok(applied) => ("ack", render::ack(&reference, applied)),
                    Err(refusal) => ("error", render::error(&reference, refusal, None)),
                };
                let elapsed = shared::clock::now_ms() - received_at;
                metrics::histogram!("chat_command_duration_seconds").record(elapsed as f64 / 1000.0);
                handle.reply(kind, frame, batch);
            }
        }
    }
}
