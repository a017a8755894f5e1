//! The channels a node wants to hear, and which of them Redis has
//! confirmed subscribed.
//!
//! Wanting is immediate (the hub's calls never wait on the network); a
//! single listener task reconciles Redis with it. Confirmation matters to a
//! caller that must not read the store before its channel is live: a
//! gateway loads a connecting user's chat list, and from then on follows
//! the `chats` events on the user's channel. Were the list read before
//! Redis confirmed the SUBSCRIBE, a membership change published in between
//! would be in neither: a removed member would go on receiving the chat on
//! that node, an added one would receive nothing.
//!
//! The confirmed channels are a second set, a copy of their names: a map
//! of each wanted channel to a flag, in one set under one lock, measured
//! 1 KiB more resident memory per connection in the cluster's `idle`
//! benchmark, reproducibly and for reasons not found
//! (docs/benchmarks-journal.md, thirty-fifth session).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::sync::lock;

pub struct Channels {
    wanted: Mutex<HashSet<String>>,
    /// Wanted channels whose SUBSCRIBE Redis confirmed. Taken only inside
    /// `wanted`'s lock when both are.
    live: Mutex<HashSet<String>>,
    /// Bumped whenever channels are confirmed.
    confirmed: watch::Sender<u64>,
    /// Whether the subscription is connected and has subscribed every
    /// channel wanted when it connected.
    listening: AtomicBool,
}

impl Default for Channels {
    fn default() -> Self {
        Channels {
            wanted: Mutex::new(HashSet::new()),
            live: Mutex::new(HashSet::new()),
            confirmed: watch::Sender::new(0),
            listening: AtomicBool::new(false),
        }
    }
}

impl Channels {
    /// Marks `channel` wanted or not; whether that changed anything. A
    /// channel wanted again after it was dropped counts as unconfirmed
    /// until its next SUBSCRIBE, even if its UNSUBSCRIBE never went out.
    pub fn want(&self, channel: &str, wanted: bool) -> bool {
        let mut channels = lock(&self.wanted);
        if wanted && channels.contains(channel) {
            return false;
        }
        lock(&self.live).remove(channel);
        match wanted {
            true => channels.insert(channel.to_owned()),
            false => channels.remove(channel),
        }
    }

    /// Every wanted channel, for a new subscription to subscribe.
    pub fn all(&self) -> Vec<String> {
        lock(&self.wanted).iter().cloned().collect()
    }

    /// Splits changed channels into those to subscribe and those to
    /// unsubscribe, as wanted now.
    pub fn partition(&self, changed: Vec<String>) -> (Vec<String>, Vec<String>) {
        let channels = lock(&self.wanted);
        changed.into_iter().partition(|c| channels.contains(c))
    }

    /// Redis answered a SUBSCRIBE of `subscribed`; those still wanted are
    /// live.
    pub fn confirm(&self, subscribed: &[String]) {
        let channels = lock(&self.wanted);
        let mut live = lock(&self.live);
        for channel in subscribed {
            if channels.contains(channel) {
                live.insert(channel.clone());
            }
        }
        drop(live);
        drop(channels);
        self.confirmed.send_modify(|n| *n += 1);
    }

    /// The subscription has subscribed every channel wanted when it
    /// connected.
    pub fn listening(&self) {
        self.listening.store(true, Ordering::Relaxed);
    }

    /// The subscription's connection is gone, and every channel with it.
    pub fn forget_all(&self) {
        self.listening.store(false, Ordering::Relaxed);
        lock(&self.live).clear();
    }

    fn is_live(&self, channel: &str) -> bool {
        lock(&self.live).contains(channel)
    }

    /// Whether the subscription is connected (see `listening`).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Waits until `channel` is confirmed, up to `limit`; whether it is.
    pub async fn wait(&self, channel: &str, limit: Duration) -> bool {
        // Watched before looking, so a confirmation in between is seen.
        let mut confirmed = self.confirmed.subscribe();
        let live = async {
            while !self.is_live(channel) {
                if confirmed.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, live).await.is_ok() && self.is_live(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_when_its_channel_is_confirmed_and_not_before() {
        let channels = std::sync::Arc::new(Channels::default());
        for channel in ["user:a", "user:b"] {
            assert!(channels.want(channel, true));
        }
        let waiting = tokio::spawn({
            let channels = channels.clone();
            async move { channels.wait("user:a", Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        channels.confirm(&["user:b".to_string()]);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "another channel's confirmation ends no wait for this one");
        channels.confirm(&["user:a".to_string()]);
        assert!(waiting.await.expect("the wait"));

        // Dropped and wanted again before the listener got to it: the
        // UNSUBSCRIBE may be on its way, so only a new SUBSCRIBE counts.
        assert!(channels.want("user:a", false));
        assert!(channels.want("user:a", true));
        assert!(!channels.wait("user:a", Duration::from_millis(10)).await);
        assert!(channels.wait("user:b", Duration::ZERO).await);
        channels.forget_all();
        assert!(!channels.wait("user:b", Duration::from_millis(10)).await);
        assert!(!channels.wait("user:c", Duration::ZERO).await, "never wanted");
        channels.confirm(&["user:c".to_string()]);
        assert!(!channels.wait("user:c", Duration::ZERO).await, "confirmed after it was dropped");
    }
}
