//! `sync`: replays what a reconnecting client missed, page by page, while
//! the writer holds the chats' live events back (PROTOCOL.md 4).

use std::sync::Arc;

use shared::error::Refusal;
use shared::model::{ChatId, EventId};
use shared::protocol::native::inbound::Ref;
use shared::store::{BoundsRequest, PageRequest};

use crate::outbound::{Outbound, ReplayPage, SyncEnd};

use super::Reader;

impl Reader<'_> {
    /// Replays what the client missed (PROTOCOL.md 4). The writer holds live
    /// events of these chats from `SyncBegin` to `SyncEnd`, then drops what
    /// the replay already covered, so the client sees each event once, in
    /// order.
    pub(super) async fn sync(&self, reference: Ref, since: Vec<(ChatId, EventId)>) {
        self.reply(Outbound::SyncBegin(since.iter().map(|(chat, _)| *chat).collect())).await;
        // In a storm of users in 20 chats the reads queued for over 20 s:
        // counted, that closed clients that pinged.
        let bounds = {
            let _store_wait = self.handle.deadline_paused();
            self.node
                .sync_pages
                .bounds(BoundsRequest { user: self.handle.user.to_string(), since: since.clone() })
                .await
        };
        let bounds = bounds.unwrap_or_else(|e| {
            metrics::counter!("chat_database_errors_total").increment(1);
            tracing::warn!(error = %e, "sync read failed");
            vec![Err(Refusal::internal()); since.len()]
        });
        let mut synced = Vec::with_capacity(since.len());
        for (&(chat, from), bound) in since.iter().zip(bounds) {
            // Replay up to where the log stood when the bounds were read;
            // live delivery carries on from there.
            match bound {
                Ok(end) if end == from => synced.push((chat, from)),
                Ok(end) => {
                    if self.replay(&reference, chat, from, end).await {
                        synced.push((chat, from));
                    }
                }
                Err(refusal) => self.refuse(&reference, &refusal, Some(chat)).await,
            }
        }
        let all = since.into_iter().map(|(chat, _)| chat).collect();
        self.reply(Outbound::SyncEnd(Box::new(SyncEnd { reference, synced, all }))).await;
    }

    /// Replays `chat`'s events in `(from, end]`, page by page; false (and
    /// the client told why) if a page could not be read, or (untold) if
    /// the connection closed meanwhile.
    async fn replay(&self, reference: &Ref, chat: ChatId, from: EventId, end: EventId) -> bool {
        let mut cursor = from;
        let mut previous: Option<tokio::sync::oneshot::Receiver<()>> = None;
        loop {
            // The next page is read once the writer has taken the one
            // before (`ReplayPage`): a client that does not read stops the
            // replay here, with two pages at most held for it.
            if let Some(taken) = previous.take() {
                let _ = taken.await;
                if self.handle.is_closed() {
                    return false;
                }
            }
            // What this connection already wrote is not read again: a
            // second sync of a chat (or a sync after live events) costs
            // only what is new, not the whole log with nothing written.
            cursor = self.handle.write_state().cursors.written_through(chat, cursor);
            if cursor >= end {
                return true;
            }
            let request = PageRequest { chat, user: self.handle.user.to_string(), since: cursor };
            let read = {
                let _store_wait = self.handle.deadline_paused();
                self.node.sync_pages.page(request).await
            };
            let page = match read {
                Ok(Ok(page)) => page,
                Ok(Err(refusal)) => {
                    self.refuse(reference, &refusal, Some(chat)).await;
                    return false;
                }
                Err(e) => {
                    metrics::counter!("chat_database_errors_total").increment(1);
                    tracing::warn!(error = %e, "sync read failed");
                    self.refuse(reference, &Refusal::internal(), Some(chat)).await;
                    return false;
                }
            };
            let Some(last) = page.events.last().map(|e| e.id) else { return true };
            let frames =
                page.events.iter().filter(|e| e.id <= end).map(|e| Arc::new(crate::hub::render_event(e))).collect();
            let (taken, is_taken) = tokio::sync::oneshot::channel();
            self.reply(Outbound::Replay(Box::new(ReplayPage { events: frames, taken }))).await;
            previous = Some(is_taken);
            cursor = last;
            if cursor >= end {
                return true;
            }
        }
    }
}
