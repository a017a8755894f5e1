//! Which channels the event subscription has confirmed, for a caller that
//! must not read the store before its channel is live.
//!
//! Why: a gateway loads a connecting user's chat list from the store and
//! from then on follows the `chats` events on the user's channel. Were the
//! list read before Redis confirmed the SUBSCRIBE, a membership change
//! published in between would be in neither: a removed member would go on
//! receiving the chat on that node, an added one would receive nothing.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::sync::lock;

pub struct Subscribed {
    channels: Mutex<HashSet<String>>,
    /// Bumped whenever channels are confirmed.
    confirmed: watch::Sender<u64>,
}

impl Default for Subscribed {
    fn default() -> Self {
        Subscribed { channels: Mutex::new(HashSet::new()), confirmed: watch::Sender::new(0) }
    }
}

impl Subscribed {
    /// Redis answered a SUBSCRIBE of `channels`.
    pub fn confirm<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        lock(&self.channels).extend(channels.into_iter().cloned());
        self.confirmed.send_modify(|n| *n += 1);
    }

    /// `channels` are about to be unsubscribed. Forgotten before the
    /// UNSUBSCRIBE goes out, so that a caller wanting one of them again
    /// meanwhile waits for its next SUBSCRIBE rather than trusting this one.
    pub fn forget<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        let mut confirmed = lock(&self.channels);
        for channel in channels {
            confirmed.remove(channel);
        }
    }

    /// The subscription's connection is gone, and every channel with it.
    pub fn forget_all(&self) {
        lock(&self.channels).clear();
    }

    /// Waits until `channel` is confirmed, up to `limit`; whether it is.
    pub async fn wait(&self, channel: &str, limit: Duration) -> bool {
        // Watched before looking, so a confirmation in between is seen.
        let mut confirmed = self.confirmed.subscribe();
        let live = async {
            while !lock(&self.channels).contains(channel) {
                if confirmed.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, live).await.is_ok() && lock(&self.channels).contains(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_when_its_channel_is_confirmed_and_not_before() {
        let subscribed = std::sync::Arc::new(Subscribed::default());
        let waiting = tokio::spawn({
            let subscribed = subscribed.clone();
            async move { subscribed.wait("user:a", Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        subscribed.confirm(&["user:b".to_string()]);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "another channel's confirmation ends no wait for this one");
        subscribed.confirm(&["user:a".to_string()]);
        assert!(waiting.await.expect("the wait"));

        subscribed.forget(&["user:a".to_string()]);
        assert!(!subscribed.wait("user:a", Duration::from_millis(10)).await, "forgotten, and not confirmed again");
        assert!(subscribed.wait("user:b", Duration::ZERO).await);
        subscribed.forget_all();
        assert!(!subscribed.wait("user:b", Duration::from_millis(10)).await);
    }
}
