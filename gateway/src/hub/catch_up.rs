//! Catching up a member the node began following a chat for late.
//!
//! A member added to a chat is told `chats` `created` with the chat as it
//! stood when the change was read (`lastEventId` L), and the node follows
//! the chat for them once that frame reaches it. The chat's events travel
//! apart from the frame (in a cluster, on another channel), so events
//! committed after L may already have been delivered to the chat's other
//! local members by then (up to E, the node's last of the chat). Those
//! were committed after the member joined, and the contract owes them to
//! every connection of every member: without this, the first one or more
//! could go missing on the new member's open connections (found by two
//! protocol audits, standalone and in a cluster: a `new` sent right after
//! the add's answer, or into a busy chat).
//!
//! So the member's connections hold the chat's live events from the
//! moment they are added to the chat's entry, events `(L, E]` are read
//! from the store and written, and the held ones follow: each event once,
//! in order. A connection opening does not come here: its client `sync`s
//! from what it holds, which covers the same ground (section 4).

use std::sync::Arc;

use shared::model::{ChatId, EventId};
use shared::store::Store;

use super::delivery::render_event;
use super::gap_fill::{read_page, FILL_PAGE};
use crate::handle::ClientHandle;
use crate::outbound::{Outbound, ReplayPage};

/// Replays `chat`'s events in `(after, upto]` to `connections`, which
/// began holding the chat's live events (under the chat's lock, before
/// the first could be fanned out to them), then releases what they held.
/// A page is read once every connection's writer has taken the one
/// before, so a client that does not read holds up only its own
/// catch-up, with a page at most waiting for it. If the store stays
/// unavailable, the rest is passed over: the client sees the hole in the
/// ids and recovers it with `sync`, as after a gap fill given up.
pub(super) async fn catch_up(
    store: Store,
    connections: Vec<Arc<ClientHandle>>,
    chat: ChatId,
    mut after: EventId,
    upto: EventId,
) {
    while after < upto {
        let Some(page) = read_page(&store, chat, after, upto).await else { break };
        // Fewer than a page: the range is read to its end (events pruned
        // meanwhile are missing from it, and stay a hole).
        after = match page.last() {
            Some(last) if page.len() == FILL_PAGE => last.id,
            _ => upto,
        };
        let events: Vec<_> = page.iter().map(|event| Arc::new(render_event(event))).collect();
        let mut taken = Vec::with_capacity(connections.len());
        for connection in &connections {
            let (tell, told) = tokio::sync::oneshot::channel();
            let page = ReplayPage { events: events.clone(), taken: tell };
            if connection.push_wait(Outbound::Replay(Box::new(page))).await.is_ok() {
                taken.push(told);
            }
        }
        if taken.is_empty() {
            return;
        }
        for told in taken {
            let _ = told.await;
        }
    }
    for connection in &connections {
        let _ = connection.push_wait(Outbound::CatchUpEnd(chat)).await;
    }
}
