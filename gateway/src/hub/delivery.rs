//! Each chat's events to its local members: in id order, once, with gaps
//! filled from the store first (`hub::gap_fill`).

use std::sync::Arc;

use shared::model::ChatEvent;
use shared::protocol::native::outbound as render;

use super::gap_fill::Waiting;
use super::{ChatEntry, Hub};
use crate::ordering::{classify, Next};
use crate::outbound::RenderedEvent;
use crate::write_through::FanOutBatch;

impl Hub {
    /// A persisted chat event arrived: deliver it in order, once, filling a
    /// gap from the store first if there is one.
    pub(super) fn chat_event(self: &Arc<Self>, event: Arc<ChatEvent>, batch: &mut FanOutBatch) {
        let chat = event.chat_id;
        let Some(mut entry) = self.chats.get_mut(&chat) else { return };
        if let Some(waiting) = entry.filling.as_mut() {
            waiting.hold(event);
            return;
        }
        match classify(entry.last_event_id, event.id) {
            Next::Duplicate => {}
            Next::Deliver => fan_out(&mut entry, &event, batch),
            Next::Gap { after, before } => {
                metrics::counter!("chat_event_gaps_total").increment(1);
                entry.filling = Some(Waiting::starting_with(event));
                drop(entry);
                self.spawn_fill(chat, after, before - 1);
            }
        }
    }
}

/// Writes `event` to every connection of every local member, rendered once
/// and shared.
pub(super) fn fan_out(entry: &mut ChatEntry, event: &ChatEvent, batch: &mut FanOutBatch) {
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
