//! Background chores that run at a fixed interval until stopped.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `chore` every `period` until `stop` is cancelled or it breaks. A
/// chore that overruns delays the next one instead of bunching them up.
/// A chore running when `stop` comes is finished first.
pub async fn every<F, Fut>(period: Duration, stop: CancellationToken, chore: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    run(period, stop, chore, false).await
}

/// As [`every`], but a chore running when `stop` comes is dropped: for
/// chores that may wait on the database without a bound of their own
/// (pruning, checkpoints) and whose work is safe to cut, since an
/// unfinished transaction rolls back. Otherwise a database gone silent
/// holds the process past its grace period at shutdown.
pub async fn every_until_stopped<F, Fut>(period: Duration, stop: CancellationToken, chore: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ControlFlow<()>>,
{
    run(period, stop, chore, true).await
}

async fn run<F, Fut>(period: Duration, stop: CancellationToken, mut chore: F, abandon_on_stop: bool)
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
        let flow = if abandon_on_stop {
            tokio::select! {
                flow = chore() => flow,
                _ = stop.cancelled() => return,
            }
        } else {
            chore().await
        };
        if flow.is_break() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chore that never finishes (a statement sent to a silent database)
    /// is dropped when `stop` comes; under [`every`] it is waited for.
    #[tokio::test]
    async fn a_stuck_chore_is_dropped_at_stop_only_when_asked() {
        let started = std::sync::Arc::new(tokio::sync::Notify::new());
        let stuck = |started: std::sync::Arc<tokio::sync::Notify>| {
            move || {
                let started = started.clone();
                async move {
                    started.notify_one();
                    std::future::pending::<ControlFlow<()>>().await
                }
            }
        };

        let stop = CancellationToken::new();
        let running = tokio::spawn(every_until_stopped(Duration::from_secs(60), stop.clone(), stuck(started.clone())));
        started.notified().await;
        stop.cancel();
        // Bounded, so that a chore still awaited fails the test rather than
        // hanging it.
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("every_until_stopped returned once stopped")
            .expect("no panic");

        let stop = CancellationToken::new();
        let mut waiting = Box::pin(every(Duration::from_secs(60), stop.clone(), stuck(started.clone())));
        tokio::select! {
            () = &mut waiting => panic!("a stuck chore cannot end"),
            () = started.notified() => {}
        }
        stop.cancel();
        assert!(futures_util::FutureExt::now_or_never(&mut waiting).is_none(), "every waits for the chore");
    }
}
