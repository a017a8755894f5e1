//! The latest number applied per key, for announcements that may reach a
//! gateway out of order (presence, `gateway::presence::order`; membership
//! changes, `gateway::hub`): one below the last applied for its key is
//! dropped, and so is one equal to it where announcing again means nothing
//! new (presence).
//!
//! Numbers are remembered for one to two [`WINDOW`]s, two maps taking
//! turns, so the memory is that of the keys announced lately rather than
//! of every key ever heard of. An announcement goes out within seconds of
//! the change it announces (each step before it is bounded by the store's
//! deadline), far inside the window.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::sync::lock;

/// How long a map of numbers is written before it becomes the one only
/// read, and then how long it is kept.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

pub struct Latest<K> {
    generations: Mutex<Generations<K>>,
}

struct Generations<K> {
    current: HashMap<K, u64>,
    previous: HashMap<K, u64>,
    started: Instant,
}

impl<K: Hash + Eq> Latest<K> {
    pub fn new() -> Self {
        let generations = Generations { current: HashMap::new(), previous: HashMap::new(), started: Instant::now() };
        Latest { generations: Mutex::new(generations) }
    }

    /// Whether an announcement numbered `number` for `key` is no older
    /// than any applied here lately; if so, it is now the latest. The last
    /// applied number again applies again, unlike in
    /// [`Latest::apply_if_news`]: for announcements made again on purpose
    /// (a retried chat creation announces the chat anew, since the first
    /// attempt's announcement may be what was lost).
    pub fn is_current<Q>(&self, key: &Q, number: u64) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.applies_at(key, number, true, Instant::now())
    }

    /// Whether an announcement numbered `number` for `key` is newer than
    /// every one applied here lately; if so, it is now the latest, and
    /// `apply` runs before any other number is checked here: where
    /// announcements have more than one deliverer, none can apply an older
    /// one after a newer one it let through. (`apply` must take no lock
    /// that is held while checking.) 0 is always news and not remembered:
    /// it comes from where announcements are made in order (standalone's
    /// presence) or from a gateway older than the numbers.
    pub fn apply_if_news<Q>(&self, key: &Q, number: u64, apply: impl FnOnce()) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.apply_at(key, number, false, Instant::now(), apply)
    }

    fn applies_at<Q>(&self, key: &Q, number: u64, again: bool, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.apply_at(key, number, again, now, || ())
    }

    fn apply_at<Q>(&self, key: &Q, number: u64, again: bool, now: Instant, apply: impl FnOnce()) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if number == 0 {
            apply();
            return true;
        }
        let mut generations = lock(&self.generations);
        generations.turn_if_due(now);
        let latest = generations.current.get(key).or_else(|| generations.previous.get(key)).copied();
        match latest {
            Some(latest) if number < latest || (number == latest && !again) => false,
            _ => {
                generations.current.insert(key.to_owned(), number);
                apply();
                true
            }
        }
    }
}

impl<K: Hash + Eq> Default for Latest<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Generations<K> {
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
        let latest = Latest::<String>::new();
        let now = Instant::now();
        assert!(latest.applies_at("ann", 10, false, now));
        assert!(!latest.applies_at("ann", 9, false, now), "older");
        assert!(!latest.applies_at("ann", 10, false, now), "the same again");
        assert!(latest.applies_at("bob", 3, false, now), "each key apart");
        assert!(latest.applies_at("ann", 11, false, now));
        assert!(latest.applies_at("ann", 0, false, now), "unnumbered");
        assert!(latest.applies_at("ann", 0, false, now), "unnumbered, again");
        assert!(!latest.applies_at("ann", 11, false, now), "unnumbered ones are not remembered");
    }

    #[test]
    fn only_news_is_applied() {
        let latest = Latest::<String>::new();
        let mut applied = Vec::new();
        let mut news = Vec::new();
        for number in [2, 1, 2, 3, 0, 0] {
            news.push(latest.apply_if_news("ann", number, || applied.push(number)));
        }
        assert_eq!(news, [true, false, false, true, true, true]);
        assert_eq!(applied, [2, 3, 0, 0]);
    }

    #[test]
    fn the_current_number_again_applies_where_asked() {
        let latest = Latest::<(String, i64)>::new();
        let now = Instant::now();
        let key = ("ann".to_owned(), 7);
        assert!(latest.applies_at(&key, 3, true, now));
        assert!(latest.applies_at(&key, 3, true, now), "the same again");
        assert!(!latest.applies_at(&key, 2, true, now), "older");
        assert!(latest.applies_at(&key, 4, true, now));
        assert!(!latest.applies_at(&key, 3, true, now), "older than the last");
    }

    #[test]
    fn numbers_are_remembered_for_one_window_to_two() {
        let latest = Latest::<String>::new();
        let start = Instant::now();
        assert!(latest.applies_at("ann", 10, false, start));
        let later = start + WINDOW;
        assert!(!latest.applies_at("ann", 9, false, later), "kept a window after");
        assert!(latest.applies_at("bob", 1, false, later + WINDOW / 2));
        let much_later = later + WINDOW;
        assert!(latest.applies_at("ann", 9, false, much_later), "forgotten two windows after");
        assert!(!latest.applies_at("bob", 1, false, much_later), "a later one still kept");
    }
}
