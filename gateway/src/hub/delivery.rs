//! Each chat's events to its local members: in id order, once, with gaps
//! filled from the store (see [`crate::ordering`]) after a Redis reconnect
//! or a worker that died between its commit and its publish.

use std::sync::Arc;
use std::time::Duration;

use shared::model::{ChatEvent, ChatId, EventId};
use shared::protocol::native::outbound as render;
use shared::store::within;

use super::{ChatEntry, Hub};
use crate::node::STORE_DEADLINE;
use crate::ordering::{classify, Next};
use crate::outbound::RenderedEvent;
use crate::write_through::FanOutBatch;

/// Chats checked for missed events per statement (see
/// [`shared::store::Store::last_event_ids`]).
const RESYNC_BATCH: usize = 1_000;
/// Store reads tried before a gap is given up on.
const FILL_ATTEMPTS: u32 = 5;

impl Hub {
    /// A persisted chat event arrived: deliver it in order, once, filling a
    /// gap from the store first if there is one.
    pub(super) fn chat_event(self: &Arc<Self>, event: Arc<ChatEvent>, batch: &mut FanOutBatch) {
        let chat = event.chat_id;
        let Some(mut entry) = self.chats.get_mut(&chat) else { return };
        if let Some(waiting) = entry.filling.as_mut() {
            waiting.push(event);
            return;
        }
        match classify(entry.last_event_id, event.id) {
            Next::Duplicate => {}
            Next::Deliver => fan_out(&mut entry, &event, batch),
            Next::Gap { after, before } => {
                metrics::counter!("chat_event_gaps_total").increment(1);
                entry.filling = Some(Box::new(vec![event]));
                drop(entry);
                self.spawn_fill(chat, after, before - 1);
            }
        }
    }

    /// Checks the store for events of `chats` this node may have missed
    /// (after (re)subscribing) and delivers them.
    pub(super) fn resync_chats(self: &Arc<Self>, chats: Vec<ChatId>) {
        let hub = self.clone();
        tokio::spawn(async move {
            for part in chats.chunks(RESYNC_BATCH) {
                let stored = match within(STORE_DEADLINE, hub.store.last_event_ids(part)).await {
                    Ok(stored) => stored,
                    Err(e) => {
                        metrics::counter!("chat_database_errors_total").increment(1);
                        tracing::warn!(error = %e, chats = part.len(), "could not check chats for missed events");
                        continue;
                    }
                };
                for (chat, stored) in stored {
                    let Some(mut entry) = hub.chats.get_mut(&chat) else { continue };
                    // What arrived since the read is delivered already, or
                    // waits behind the fill and is deduplicated there.
                    let last = entry.last_event_id;
                    if entry.filling.is_none() && stored > last {
                        entry.filling = Some(Box::default());
                        drop(entry);
                        hub.spawn_fill(chat, last, stored);
                    }
                }
            }
        });
    }

    fn spawn_fill(self: &Arc<Self>, chat: ChatId, after: EventId, upto: EventId) {
        let hub = self.clone();
        tokio::spawn(async move { hub.fill(chat, after, upto).await });
    }

    /// Reads events `(after, upto]` of `chat` from the store, then delivers
    /// them and whatever arrived meanwhile, in order. Past `upto` another
    /// hole may show among what arrived meanwhile (events lost in a second
    /// drop of the subscription): it is filled the same way, each fill
    /// reaching further. If the store stays unavailable, or lacks events
    /// it should hold (pruned), the gap is skipped rather than holding the
    /// chat forever; clients recover it with `sync`.
    async fn fill(self: &Arc<Self>, chat: ChatId, after: EventId, upto: EventId) {
        let mut read = None;
        for attempt in 0..FILL_ATTEMPTS {
            match within(STORE_DEADLINE, self.store.events_between(chat, after, upto)).await {
                Ok(events) => {
                    read = Some(events);
                    break;
                }
                Err(e) => {
                    metrics::counter!("chat_database_errors_total").increment(1);
                    tracing::warn!(error = %e, chat, attempt, "filling a gap from the store failed");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        let filled = read.is_some();
        // Declared first, so dropped (and written) after the chat's lock.
        let mut batch = FanOutBatch::new();
        let Some(mut entry) = self.chats.get_mut(&chat) else { return };
        let mut events: Vec<Arc<ChatEvent>> = read.unwrap_or_default().into_iter().map(Arc::new).collect();
        events.append(&mut entry.filling.take().map(|waiting| *waiting).unwrap_or_default());
        events.sort_by_key(|e| e.id);
        let mut events = events.into_iter();
        while let Some(event) = events.next() {
            match classify(entry.last_event_id, event.id) {
                Next::Duplicate => {}
                Next::Deliver => fan_out(&mut entry, &event, &mut batch),
                Next::Gap { after, before } if filled && after >= upto => {
                    metrics::counter!("chat_event_gaps_total").increment(1);
                    let mut waiting = vec![event];
                    waiting.extend(events);
                    entry.filling = Some(Box::new(waiting));
                    drop(entry);
                    self.spawn_fill(chat, after, before - 1);
                    return;
                }
                // Past a gap the store could not fill, delivery resumes.
                Next::Gap { .. } => fan_out(&mut entry, &event, &mut batch),
            }
        }
    }
}

/// Writes `event` to every connection of every local member, rendered once
/// and shared.
fn fan_out(entry: &mut ChatEntry, event: &ChatEvent, batch: &mut FanOutBatch) {
    entry.last_event_id = event.id;
    let rendered = Arc::new(render_event(event));
    let mut delivered = 0u64;
    for user in &entry.users {
        user.each_connection(|c| {
            if c.deliver(&rendered, batch).is_ok() {
                delivered += 1;
            }
        });
    }
    metrics::counter!("chat_fanout_deliveries_total").increment(delivered);
}

/// Renders a chat event once, with what the writers need to know about it.
pub fn render_event(event: &ChatEvent) -> RenderedEvent {
    RenderedEvent {
        chat: event.chat_id,
        id: event.id,
        kind: render::chat_event_type(&event.kind),
        stored_at: event.timestamp,
        frame: render::chat_event(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events lost in two drops of the subscription: 2–4 before event 5
    /// arrives, and 6–7 while the fill for the first gap runs, with 8
    /// waiting behind it. Both holes are filled from the store, and the
    /// connection gets 2 to 8 in order; the second hole was skipped.
    #[tokio::test]
    async fn a_second_gap_behind_a_fill_is_filled_too() {
        use shared::bus::memory::MemoryBroker;
        use shared::bus::{Broker, Event, EventSink};
        use shared::model::Command;
        use shared::store::{Delivery, NewChat, Submitted};

        use crate::handle::ClientHandle;
        use crate::hub::HubSink;
        use crate::outbound::Outbound;

        let (_dir, store) = crate::test_store::sqlite_store().await;
        let request = NewChat::group("g", ["bob"]);
        let chat = store.create_chat("alice", request, 1).await.map_err(|e| e.0).expect("chat").chat_id;
        let mut events = Vec::new();
        for i in 1..=8 {
            let command = Command::Send {
                chat_id: chat,
                client_message_id: format!("m{i}"),
                text: "hi".into(),
                attachments: shared::model::Attachments::none(),
            };
            let id = format!("c{i}");
            let submitted = [Submitted { id: &id, user: "alice", command: &command }];
            let outcome = store.apply_batch(&submitted, 10, Delivery::Repeat).await.expect("applied");
            events.extend(outcome.into_iter().next().expect("one").expect("sent").events);
        }
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), (1..=8).collect::<Vec<_>>());

        let hub = Hub::new(Broker::Memory(MemoryBroker::default()), store);
        let handle = Arc::new(ClientHandle::new(1, "bob".into(), crate::outbound_queue::QueueLimits::items(64)));
        let (bob, fresh) = hub.register(handle.clone());
        assert!(fresh);
        // As after the client's first frame: live events are no longer
        // held, and with no writer running they wait in the queue.
        handle.write_state().cursors.release();
        hub.chats_loaded(&bob, [(chat, 1)]);
        let sink = HubSink(hub.clone());
        let event = |id: EventId| Event::Chat(Arc::new(events[id as usize - 1].clone()));
        sink.deliver(event(5));
        sink.deliver(event(8));

        let mut delivered = Vec::new();
        while delivered.last() != Some(&8) {
            let items =
                tokio::time::timeout(Duration::from_secs(10), std::future::poll_fn(|cx| handle.poll_queued(cx)))
                    .await
                    .unwrap_or_else(|_| panic!("stopped at {delivered:?}"));
            delivered.extend(items.into_iter().filter_map(|item| match item {
                Outbound::Event(event) => Some(event.id),
                _ => None,
            }));
        }
        assert_eq!(delivered, (2..=8).collect::<Vec<_>>());
    }
}
