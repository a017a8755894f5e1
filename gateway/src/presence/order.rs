//! Which presence announcements are news. In a cluster a user's
//! transitions are decided one at a time in Redis, but each is announced
//! by the gateway that made it, after that gateway's own work (an
//! `offline` first records the last-seen time in the database). A user
//! moving from one gateway to another (a drain, a rolling update) could
//! have the new gateway's `online` published before the old one's
//! `offline`, and co-members would go on seeing them offline while they
//! are connected. So each announcement carries the number Redis gave its
//! transition, and a gateway drops one not above the last it applied for
//! that user.
//!
//! Numbers are remembered for one to two [`WINDOW`]s, two maps taking
//! turns, so the memory is that of the users announced lately rather than
//! of every user ever heard of. An announcement goes out within seconds of
//! its transition (each of the announcer's steps is bounded by the store's
//! deadline), far inside the window.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::sync::lock;

/// How long a map of numbers is written before it becomes the one only
/// read, and then how long it is kept.
const WINDOW: Duration = Duration::from_secs(60);

pub struct LatestPresence {
    generations: Mutex<Generations>,
}

struct Generations {
    current: HashMap<String, u64>,
    previous: HashMap<String, u64>,
    started: Instant,
}

impl LatestPresence {
    pub fn new() -> Self {
        let generations = Generations { current: HashMap::new(), previous: HashMap::new(), started: Instant::now() };
        LatestPresence { generations: Mutex::new(generations) }
    }

    /// Whether an announcement numbered `seq` for `user` is newer than every
    /// one applied here lately; if so, it is now the latest. 0 is always
    /// news and not remembered: standalone's one announcer makes its
    /// announcements in order, and a gateway older than the numbers sends
    /// none.
    pub fn is_news(&self, user: &str, seq: u64) -> bool {
        self.is_news_at(user, seq, Instant::now())
    }

    fn is_news_at(&self, user: &str, seq: u64, now: Instant) -> bool {
        if seq == 0 {
            return true;
        }
        let mut generations = lock(&self.generations);
        generations.turn_if_due(now);
        let latest = generations.current.get(user).or_else(|| generations.previous.get(user)).copied();
        if latest.is_some_and(|latest| seq <= latest) {
            return false;
        }
        generations.current.insert(user.to_owned(), seq);
        true
    }
}

impl Default for LatestPresence {
    fn default() -> Self {
        Self::new()
    }
}

impl Generations {
    fn turn_if_due(&mut self, now: Instant) {
        if now.duration_since(self.started) >= WINDOW {
            self.previous = std::mem::take(&mut self.current);
            self.started = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_higher_number_than_the_last_applied_is_news() {
        let latest = LatestPresence::new();
        let now = Instant::now();
        assert!(latest.is_news_at("ann", 10, now));
        assert!(!latest.is_news_at("ann", 9, now), "older");
        assert!(!latest.is_news_at("ann", 10, now), "the same again");
        assert!(latest.is_news_at("bob", 3, now), "each user apart");
        assert!(latest.is_news_at("ann", 11, now));
        assert!(latest.is_news_at("ann", 0, now), "unnumbered");
        assert!(latest.is_news_at("ann", 0, now), "unnumbered, again");
        assert!(!latest.is_news_at("ann", 11, now), "unnumbered ones are not remembered");
    }

    #[test]
    fn numbers_are_remembered_for_one_window_to_two() {
        let latest = LatestPresence::new();
        let start = Instant::now();
        assert!(latest.is_news_at("ann", 10, start));
        let later = start + WINDOW;
        assert!(!latest.is_news_at("ann", 9, later), "kept a window after");
        assert!(latest.is_news_at("bob", 1, later + WINDOW / 2));
        let much_later = later + WINDOW;
        assert!(latest.is_news_at("ann", 9, much_later), "forgotten two windows after");
        assert!(!latest.is_news_at("bob", 1, much_later), "a later one still kept");
    }
}
