//! Reads that many connections ask for at the same moment, answered many to
//! a statement: the chat lists of connections setting up
//! ([`crate::chat_lists`]) and the pages of their `sync`
//! ([`crate::sync_pages`]).
//!
//! Why: in a reconnect storm thousands of connections each read the
//! database at once, and on PostgreSQL a statement's fixed cost (its round
//! trip, the pooled connection's checks around it, the backend's wake-up)
//! is most of what such a small read costs (docs/benchmarks-journal.md,
//! fourteenth session). A few loaders take whatever requests are waiting
//! when they are free and answer them together. Idle, a request goes alone
//! at once: nothing waits for company.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

/// Hands requests to the loaders; cheap to share, one per kind of read.
pub struct Batched<Ask, Answer> {
    requests: mpsc::UnboundedSender<(Ask, oneshot::Sender<Answer>)>,
}

type Queue<Ask, Answer> = Arc<Mutex<mpsc::UnboundedReceiver<(Ask, oneshot::Sender<Answer>)>>>;

impl<Ask: Send + 'static, Answer: Send + 'static> Batched<Ask, Answer> {
    /// Starts `loaders` loaders, each answering up to `most` requests with
    /// one call of `read`, which returns one answer per request in their
    /// order. They stop once this is dropped.
    pub fn start<Read, Reading>(loaders: usize, most: usize, read: Read) -> Self
    where
        Read: Fn(Vec<Ask>) -> Reading + Send + Sync + 'static,
        Reading: Future<Output = Vec<Answer>> + Send + 'static,
    {
        // Unbounded: every request comes from a connection waiting for its
        // answer, so they are bounded by the connections asking.
        let (requests, queue) = mpsc::unbounded_channel();
        let queue: Queue<Ask, Answer> = Arc::new(Mutex::new(queue));
        let read = Arc::new(read);
        for _ in 0..loaders {
            tokio::spawn(load(Arc::clone(&queue), Arc::clone(&read), most));
        }
        Batched { requests }
    }

    /// The answer to `ask`, read with whichever other requests are
    /// waiting; `None` once the loaders are gone.
    pub async fn ask(&self, ask: Ask) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        self.requests.send((ask, reply)).ok()?;
        answer.await.ok()
    }
}

/// One answer per request from a read that answered them together: its
/// answers, in the requests' order, or its failure, shared by every one.
pub fn each_or_all_failed<T, E>(requests: usize, read: Result<Vec<T>, E>) -> Vec<Result<T, Arc<E>>> {
    match read {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(e) => {
            let e = Arc::new(e);
            (0..requests).map(|_| Err(Arc::clone(&e))).collect()
        }
    }
}

async fn load<Ask, Answer, Read, Reading>(queue: Queue<Ask, Answer>, read: Arc<Read>, most: usize)
where
    Read: Fn(Vec<Ask>) -> Reading,
    Reading: Future<Output = Vec<Answer>>,
{
    loop {
        let (mut asks, mut replies) = (Vec::new(), Vec::new());
        {
            let mut queue = queue.lock().await;
            let Some((ask, reply)) = queue.recv().await else { return };
            asks.push(ask);
            replies.push(reply);
            while asks.len() < most {
                let Ok((ask, reply)) = queue.try_recv() else { break };
                asks.push(ask);
                replies.push(reply);
            }
        }
        // A reply whose asker is gone (its connection closed) is dropped.
        for (reply, answer) in replies.into_iter().zip(read(asks).await) {
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests made together are answered together, each with its own
    /// answer, and no call takes more than `most`.
    #[tokio::test]
    async fn each_request_gets_its_own_answer_in_calls_of_at_most_most() {
        let largest = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = Arc::clone(&largest);
        let doubler = Arc::new(Batched::start(2, 8, move |asks: Vec<u64>| {
            seen.fetch_max(asks.len(), std::sync::atomic::Ordering::Relaxed);
            async move { asks.into_iter().map(|n| n * 2).collect::<Vec<u64>>() }
        }));
        let asks: Vec<_> = (0..100u64)
            .map(|n| {
                let doubler = Arc::clone(&doubler);
                tokio::spawn(async move { (n, doubler.ask(n).await) })
            })
            .collect();
        for ask in asks {
            let (n, answer) = ask.await.expect("joined");
            assert_eq!(answer, Some(n * 2));
        }
        let largest = largest.load(std::sync::atomic::Ordering::Relaxed);
        assert!((1..=8).contains(&largest), "largest call {largest}");
    }
}
