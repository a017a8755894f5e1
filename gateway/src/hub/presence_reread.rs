//! Presence announcements read again from their log once the subscription
//! is back (`shared::bus::presence_log`). The log bounds its size by
//! naming no chats for a user in many: those announcements get their
//! user's chats from the store here, as they are now, which is who should
//! hear of the user.

use std::collections::HashMap;
use std::sync::Arc;

use shared::bus::{Event, EventSink};
use shared::model::{ChatId, UserId};
use shared::store::within;

use super::{Hub, HubSink};
use crate::node::STORE_DEADLINE;

/// Announcements whose users' chats one statement reads.
const PER_READ: usize = 256;

impl Hub {
    /// Reads the chats of the users `announcements` name, then delivers
    /// each user's latest with them: the earlier ones of a user, each
    /// telling every co-member, would only be overtaken (a user in 10,000
    /// chats coming and going made most of a log's page). One whose chats
    /// cannot be read is dropped, as an announcement lost on pub/sub was
    /// before the log: co-members learn of the user's state at its next
    /// change.
    pub(super) fn deliver_with_chats_read(self: &Arc<Self>, announcements: Vec<Event>) {
        let hub = self.clone();
        let announcements = latest_of_each_user(announcements);
        tokio::spawn(async move {
            for part in announcements.chunks(PER_READ) {
                let users: Vec<&str> = part.iter().filter_map(presence_user).collect();
                let read = match within(STORE_DEADLINE, hub.store.chat_ids_of_users(&users)).await {
                    Ok(read) => read,
                    Err(e) => {
                        metrics::counter!("chat_database_errors_total").increment(1);
                        tracing::warn!(error = %e, users = users.len(), "presence read again not told: chats unavailable");
                        continue;
                    }
                };
                let chats: HashMap<UserId, Arc<[ChatId]>> =
                    read.into_iter().map(|(user, chats)| (user, Arc::from(chats))).collect();
                let told = part.iter().filter_map(|announcement| match announcement {
                    Event::Presence { user, online, last_seen, seq, .. } => Some(Event::Presence {
                        user: user.clone(),
                        online: *online,
                        last_seen: *last_seen,
                        chats: chats.get(user)?.clone(),
                        seq: *seq,
                    }),
                    _ => None,
                });
                HubSink(hub.clone()).deliver_all(told.collect());
            }
        });
    }
}

/// Each user's announcement with the highest number, in the order of the
/// users' first.
fn latest_of_each_user(announcements: Vec<Event>) -> Vec<Event> {
    let mut at: HashMap<UserId, usize> = HashMap::new();
    let mut latest: Vec<Event> = Vec::with_capacity(announcements.len());
    for announcement in announcements {
        let Event::Presence { user, seq, .. } = &announcement else { continue };
        match at.get(user) {
            Some(&place) => {
                if matches!(&latest[place], Event::Presence { seq: kept, .. } if seq > kept) {
                    latest[place] = announcement;
                }
            }
            None => {
                at.insert(user.clone(), latest.len());
                latest.push(announcement);
            }
        }
    }
    latest
}

fn presence_user(event: &Event) -> Option<&str> {
    match event {
        Event::Presence { user, .. } => Some(user),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn went(user: &str, online: bool, seq: u64) -> Event {
        Event::Presence { user: user.into(), online, last_seen: 0, chats: Arc::from([]), seq }
    }

    #[test]
    fn only_each_user_s_latest_announcement_is_kept() {
        let read = vec![went("u", true, 3), went("v", false, 9), went("u", false, 5), went("u", true, 4)];
        let kept: Vec<(String, bool, u64)> = latest_of_each_user(read)
            .into_iter()
            .filter_map(|event| match event {
                Event::Presence { user, online, seq, .. } => Some((user, online, seq)),
                _ => None,
            })
            .collect();
        assert_eq!(kept, [("u".to_string(), false, 5), ("v".to_string(), false, 9)]);
    }
}
