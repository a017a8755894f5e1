//! The metrics the writer records for every frame, through handles kept
//! per thread.
//!
//! Why: `counter!(name, labels)` and `histogram!(name)` build the metric's
//! key, hash it and look it up in the recorder's registry on every call.
//! Per delivery that was two lookups, about a tenth of the user-space
//! instructions a delivery costs on the connection's side
//! (`bench/instructions.sh`, docs/benchmarks-journal.md). A handle records to the
//! same metric without the lookup.
//!
//! Handles are taken on a thread's first frame, after the node installed
//! its recorder (`shared::telemetry`); the recorder is process-global and
//! never replaced, so a handle stays valid.

use std::cell::RefCell;

use metrics::{Counter, Histogram};

thread_local! {
    /// `chat_frames_out_total` by frame type: a dozen types, so a short
    /// list searched in order beats hashing.
    static FRAMES_OUT: RefCell<Vec<(&'static str, Counter)>> = const { RefCell::new(Vec::new()) };
    static DELIVERY_DURATION: Histogram = metrics::histogram!("chat_delivery_duration_seconds");
}

/// Counts one frame of type `kind` written to a client.
pub fn frame_out(kind: &'static str) {
    FRAMES_OUT.with_borrow_mut(|counters| match counters.iter().find(|(k, _)| *k == kind) {
        Some((_, counter)) => counter.increment(1),
        None => {
            let counter = metrics::counter!("chat_frames_out_total", "type" => kind);
            counter.increment(1);
            counters.push((kind, counter));
        }
    });
}

/// Records how long after it was stored a live event reached a client.
pub fn delivered_after(millis: i64) {
    DELIVERY_DURATION.with(|histogram| histogram.record(millis as f64 / 1000.0));
}
