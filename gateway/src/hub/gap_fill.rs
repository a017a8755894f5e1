//! Filling a gap in a chat's events from the store (see
//! [`crate::ordering`]): after a Redis reconnect, or a worker that died
//! between its commit and its publish.
//!
//! What a fill holds is bounded, however long the outage and busy the
//! chat: the store is read [`FILL_PAGE`] events at a time, each page
//! delivered before the next is read, and of the events that arrive
//! meanwhile only the first [`WAITING_MAX`] are kept. Later ones are let
//! go and read back from the store with the rest: a worker publishes only
//! what it committed, so the store holds every event that arrives.

use std::sync::Arc;
use std::time::Duration;

use shared::model::{ChatEvent, ChatId, EventId};
use shared::store::{within, Store};

use super::delivery::fan_out;
use super::Hub;
use crate::node::STORE_DEADLINE;
use crate::ordering::{classify, Next};
use crate::write_through::FanOutBatch;

/// Chats checked for missed events per statement (see
/// [`shared::store::Store::last_event_ids`]).
const RESYNC_BATCH: usize = 1_000;
/// Store reads tried before a gap is given up on.
const FILL_ATTEMPTS: u32 = 5;
/// Events read from the store per statement. A gap after a long Redis
/// outage in a busy chat may be many thousands of events, each up to a
/// frame's 64 KiB.
pub(super) const FILL_PAGE: usize = 200;
/// Events arriving while a gap is filled that are kept to be delivered
/// after it; past these they are let go and read from the store.
const WAITING_MAX: usize = 64;

/// Events that arrived while a chat's gap is filled from the store.
#[derive(Default)]
pub(super) struct Waiting {
    events: Vec<Arc<ChatEvent>>,
    /// The highest id let go past [`WAITING_MAX`], or found in the store by
    /// a resync while the fill ran (0 if none): the fill reads up to it.
    beyond: EventId,
}

impl Waiting {
    pub(super) fn starting_with(event: Arc<ChatEvent>) -> Box<Self> {
        Box::new(Self { events: vec![event], beyond: 0 })
    }

    pub(super) fn hold(&mut self, event: Arc<ChatEvent>) {
        if self.events.len() < WAITING_MAX {
            self.events.push(event);
        } else {
            self.beyond = self.beyond.max(event.id);
        }
    }
}

impl Hub {
    /// Checks the store for events of `chats` this node may have missed
    /// (after (re)subscribing) and delivers them.
    pub(super) fn resync_chats(self: &Arc<Self>, chats: Vec<ChatId>) {
        tokio::spawn(self.clone().resync(chats));
    }

    async fn resync(self: Arc<Self>, chats: Vec<ChatId>) {
        for part in chats.chunks(RESYNC_BATCH) {
            let stored = match within(STORE_DEADLINE, self.store.last_event_ids(part)).await {
                Ok(stored) => stored,
                Err(e) => {
                    metrics::counter!("chat_database_errors_total").increment(1);
                    tracing::warn!(error = %e, chats = part.len(), "could not check chats for missed events");
                    continue;
                }
            };
            for (chat, stored) in stored {
                let Some(mut entry) = self.chats.get_mut(&chat) else { continue };
                // What arrived since the read is delivered already, or
                // waits behind the fill and is deduplicated there.
                let last = entry.last_event_id;
                match entry.filling.as_mut() {
                    // A fill under way reads on to what the store holds now:
                    // events published past its end while the subscription
                    // was down would otherwise wait for the chat's next one.
                    Some(waiting) => waiting.beyond = waiting.beyond.max(stored),
                    None if stored > last => {
                        entry.filling = Some(Box::default());
                        drop(entry);
                        self.spawn_fill(chat, last, stored);
                    }
                    None => {}
                }
            }
        }
    }

    pub(super) fn spawn_fill(self: &Arc<Self>, chat: ChatId, after: EventId, upto: EventId) {
        let hub = self.clone();
        tokio::spawn(async move { hub.fill(chat, after, upto).await });
    }

    /// Reads events `(after, upto]` of `chat` from the store a page at a
    /// time and delivers them, then up to the last event let go meanwhile,
    /// then whatever waited, in order. Among what waited another hole may
    /// show past `upto` (events lost in a second drop of the
    /// subscription): it is filled the same way, each round reaching
    /// further. If the store stays unavailable, or lacks events it should
    /// hold (pruned), the gap is skipped rather than holding the chat
    /// forever; clients recover it with `sync`.
    async fn fill(self: &Arc<Self>, chat: ChatId, mut after: EventId, mut upto: EventId) {
        'read: loop {
            let page = read_page(&self.store, chat, after, upto).await;
            // Declared first, so dropped (and written) after the chat's lock.
            let mut batch = FanOutBatch::new();
            let Some(mut entry) = self.chats.get_mut(&chat) else { return };
            // No longer filled: every local member left, and the chat's
            // entry made anew for a later one starts from the store.
            let Some(mut waiting) = entry.filling.take() else { return };
            let Some(page) = page else {
                let mut events = std::mem::take(&mut waiting.events);
                events.sort_by_key(|e| e.id);
                for event in events {
                    if classify(entry.last_event_id, event.id) != Next::Duplicate {
                        fan_out(&mut entry, &event, &mut batch);
                    }
                }
                if waiting.beyond > entry.last_event_id {
                    tracing::warn!(
                        chat,
                        upto = waiting.beyond,
                        "events of a chat not delivered here: the store stayed unavailable"
                    );
                }
                return;
            };
            let complete = page.len() < FILL_PAGE;
            after = if complete { upto } else { page.last().map_or(upto, |e| e.id) };
            for event in page {
                // Past a hole in what the store holds, delivery resumes.
                if classify(entry.last_event_id, event.id) != Next::Duplicate {
                    fan_out(&mut entry, &event, &mut batch);
                }
            }
            if !complete {
                entry.filling = Some(waiting);
                continue;
            }
            let beyond = std::mem::take(&mut waiting.beyond);
            if beyond > upto {
                upto = beyond;
                entry.filling = Some(waiting);
                continue;
            }
            let mut events = std::mem::take(&mut waiting.events);
            events.sort_by_key(|e| e.id);
            let mut events = events.into_iter();
            while let Some(event) = events.next() {
                match classify(entry.last_event_id, event.id) {
                    Next::Duplicate => {}
                    Next::Deliver => fan_out(&mut entry, &event, &mut batch),
                    Next::Gap { after: last, before } if last >= upto => {
                        metrics::counter!("chat_event_gaps_total").increment(1);
                        waiting.events.push(event);
                        waiting.events.extend(events);
                        entry.filling = Some(waiting);
                        (after, upto) = (last, before - 1);
                        continue 'read;
                    }
                    // The store lacked events it should hold (pruned).
                    Next::Gap { .. } => fan_out(&mut entry, &event, &mut batch),
                }
            }
            return;
        }
    }
}

/// Up to [`FILL_PAGE`] events of `chat` in `(after, upto]`, or `None` if
/// the store stayed unavailable.
pub(super) async fn read_page(store: &Store, chat: ChatId, after: EventId, upto: EventId) -> Option<Vec<ChatEvent>> {
    for attempt in 0..FILL_ATTEMPTS {
        match within(STORE_DEADLINE, store.events_between(chat, after, upto, FILL_PAGE)).await {
            Ok(events) => return Some(events),
            Err(e) => {
                metrics::counter!("chat_database_errors_total").increment(1);
                tracing::warn!(error = %e, chat, attempt, "reading a chat's events from the store failed");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use shared::bus::memory::MemoryBroker;
    use shared::bus::{Broker, Event, EventSink};
    use shared::model::{Attachments, Command};
    use shared::store::{Delivery, NewChat, Submitted};

    use super::*;
    use crate::handle::ClientHandle;
    use crate::hub::HubSink;
    use crate::outbound::Outbound;
    use crate::outbound_queue::QueueLimits;

    /// A hub on a store holding `count` messages of one chat, whose one
    /// local connection (bob's) has delivered event 1; its events by id.
    async fn chat_with_events(
        count: usize,
    ) -> (tempfile::TempDir, Arc<Hub>, Arc<ClientHandle>, ChatId, Vec<ChatEvent>) {
        let (dir, store) = crate::test_store::sqlite_store().await;
        let request = NewChat::group("g", ["bob"]);
        let chat = store.create_chat("alice", request, 1).await.map_err(|e| e.0).expect("chat").chat_id;
        let commands: Vec<(String, Command)> = (1..=count)
            .map(|i| {
                let send = Command::Send {
                    chat_id: chat,
                    client_message_id: format!("m{i}"),
                    text: "hi".into(),
                    attachments: Attachments::none(),
                };
                (format!("c{i}"), send)
            })
            .collect();
        let submitted: Vec<Submitted> =
            commands.iter().map(|(id, command)| Submitted { id, user: "alice", command }).collect();
        let outcomes = store.apply_batch(&submitted, 10, Delivery::Repeat).await.expect("applied");
        let events: Vec<ChatEvent> = outcomes.into_iter().flat_map(|outcome| outcome.expect("sent").events).collect();
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), (1..=count as EventId).collect::<Vec<_>>());

        let hub = Hub::new(Broker::Memory(MemoryBroker::default()), store);
        let handle = Arc::new(ClientHandle::new(1, "bob".into(), QueueLimits::items(count as u32 + 8)));
        let (bob, fresh) = hub.register(handle.clone());
        assert!(fresh);
        // As after the client's first frame: live events are no longer
        // held, and with no writer running they wait in the queue.
        handle.write_state().cursors.release();
        hub.chats_loaded(&bob, [(chat, 1)]);
        (dir, hub, handle, chat, events)
    }

    /// The ids of the events `handle` is given, until it has `last`.
    async fn delivered_until(handle: &ClientHandle, last: EventId) -> Vec<EventId> {
        let mut delivered = Vec::new();
        while delivered.last() != Some(&last) {
            let items =
                tokio::time::timeout(Duration::from_secs(10), std::future::poll_fn(|cx| handle.poll_queued(cx)))
                    .await
                    .unwrap_or_else(|_| panic!("stopped at {:?}", delivered.last()));
            delivered.extend(items.into_iter().filter_map(|item| match item {
                Outbound::Event(event) => Some(event.id),
                _ => None,
            }));
        }
        delivered
    }

    /// Events lost in two drops of the subscription: 2–4 before event 5
    /// arrives, and 6–7 while the fill for the first gap runs, with 8
    /// waiting behind it. Both holes are filled from the store, and the
    /// connection gets 2 to 8 in order; the second hole was skipped.
    #[tokio::test]
    async fn a_second_gap_behind_a_fill_is_filled_too() {
        let (_dir, hub, handle, _chat, events) = chat_with_events(8).await;
        let sink = HubSink(hub.clone());
        let event = |id: EventId| Event::Chat(Arc::new(events[id as usize - 1].clone()));
        sink.deliver(event(5));
        sink.deliver(event(8));
        assert_eq!(delivered_until(&handle, 8).await, (2..=8).collect::<Vec<_>>());
    }

    /// Subscribed again while a fill runs (after a second drop), the store
    /// holds events past the fill's end: the fill is told to read on to
    /// them rather than leave them until the chat's next event.
    #[tokio::test]
    async fn a_resync_while_a_fill_runs_extends_it_to_the_store() {
        let (_dir, hub, _handle, chat, events) = chat_with_events(8).await;
        // As after event 5 revealed a gap, its fill not yet done.
        hub.chats.get_mut(&chat).expect("followed").filling = Some(Waiting::starting_with(Arc::new(events[4].clone())));
        hub.clone().resync(vec![chat]).await;
        let beyond = hub.chats.get(&chat).and_then(|entry| entry.filling.as_ref().map(|w| w.beyond));
        assert_eq!(beyond, Some(8));
    }

    /// A gap of several store pages, and more events arriving meanwhile
    /// than a fill keeps: what waits stays within its bound, and the
    /// connection still gets every event once, in order.
    #[tokio::test]
    async fn a_long_gap_is_read_in_pages_and_events_past_the_waiting_bound_from_the_store() {
        let last = (2 * FILL_PAGE + WAITING_MAX + 50) as EventId;
        let revealing = (2 * FILL_PAGE) as EventId;
        let (_dir, hub, handle, chat, events) = chat_with_events(last as usize).await;
        let sink = HubSink(hub.clone());
        // On this test's one thread, the fill cannot run before the test
        // awaits: every event below arrives while it is pending.
        for event in &events[revealing as usize - 1..] {
            sink.deliver(Event::Chat(Arc::new(event.clone())));
        }
        let waiting = hub.chats.get(&chat).and_then(|entry| entry.filling.as_ref().map(|w| (w.events.len(), w.beyond)));
        assert_eq!(waiting, Some((WAITING_MAX, last)));
        assert_eq!(delivered_until(&handle, last).await, (2..=last).collect::<Vec<_>>());
        assert!(hub.chats.get(&chat).is_some_and(|entry| entry.filling.is_none()));
    }
}
