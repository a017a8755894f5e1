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
        // Stop first: after an overrun the next tick is due at once, and an
        // unbiased `select!` picks among ready branches at random, so a
        // stopping process would start another round half the time, and
        // then maybe another (a health check that waited 2 s on a silent
        // database held a gateway's exit for 6 s this way).
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let flow = if abandon_on_stop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                flow = chore() => flow,
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

    /// A chore that overran its period and stopped the loop leaves the next
    /// tick due and the stop cancelled at once: no round may follow it.
    /// Repeated, since an unbiased choice between the two would pass by
    /// chance half the time.
    #[tokio::test(start_paused = true)]
    async fn no_round_starts_once_stopped_even_with_a_tick_due() {
        for abandon_on_stop in [false, true] {
            for _ in 0..32 {
                let stop = CancellationToken::new();
                let rounds = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let chore = {
                    let (stop, rounds) = (stop.clone(), rounds.clone());
                    move || {
                        rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let stop = stop.clone();
                        async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            stop.cancel();
                            ControlFlow::Continue(())
                        }
                    }
                };
                run(Duration::from_millis(10), stop, chore, abandon_on_stop).await;
                assert_eq!(rounds.load(std::sync::atomic::Ordering::Relaxed), 1, "abandon_on_stop: {abandon_on_stop}");
            }
        }
    }
}
