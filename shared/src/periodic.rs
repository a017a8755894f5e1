//! Background chores that run at a fixed interval until stopped.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `chore` every `period` until `stop` is cancelled or it breaks. A
/// chore that overruns delays the next one instead of bunching them up.
pub async fn every<F, Fut>(period: Duration, stop: CancellationToken, mut chore: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        if chore().await.is_break() {
            return;
        }
    }
}
