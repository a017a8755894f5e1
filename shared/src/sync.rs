//! Locking the std mutexes the gateway and the bus share state behind.

use std::sync::{Mutex, MutexGuard};

/// A std mutex, not a Tokio one: nothing awaits while it is held. A panic
/// elsewhere while holding it leaves data that is still consistent (every
/// critical section is a few inserts or removes), so poisoning is ignored.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
