//! The in-process bus of standalone mode: a bounded channel carries commands
//! to the embedded worker, and events go straight to the one local sink.

use std::future::{ready, Future};
use std::sync::{Arc, OnceLock};

use futures_util::future::Either;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::{BusError, CommandEnvelope, Event, EventSink};

/// The sending side of the command channel.
#[derive(Clone)]
pub struct MemoryCommands {
    tx: mpsc::Sender<CommandEnvelope>,
}

/// A bounded command channel. `capacity` commands may wait for the worker;
/// past that, submitting waits (back-pressure on the sending connections).
pub fn command_channel(capacity: usize) -> (MemoryCommands, mpsc::Receiver<CommandEnvelope>) {
    let (tx, rx) = mpsc::channel(capacity);
    (MemoryCommands { tx }, rx)
}

impl MemoryCommands {
    /// Queues at once while there is room; only a full queue makes the
    /// caller wait, in a boxed future. Every connection's task holds this
    /// future's state while it submits, so its size is the task's: an
    /// `async fn` around `send` stored the command three times over (the
    /// envelope in each layer and in `send`'s own state), 792 bytes against
    /// a pointer and a tag.
    ///
    /// `while_full` is called only when the caller must wait, and what it
    /// returns is held until the command is queued: the gateway pauses the
    /// connection's heartbeat with it, since its reader reads no ping
    /// meanwhile.
    pub fn submit<G: Send + 'static>(
        &self,
        envelope: CommandEnvelope,
        while_full: impl FnOnce() -> G,
    ) -> impl Future<Output = Result<(), BusError>> + '_ {
        match self.tx.try_send(envelope) {
            Ok(()) => Either::Left(ready(Ok(()))),
            Err(TrySendError::Closed(_)) => Either::Left(ready(Err(BusError::Closed))),
            Err(TrySendError::Full(envelope)) => {
                let waiting = while_full();
                Either::Right(Box::pin(async move {
                    let sent = self.tx.send(envelope).await.map_err(|_| BusError::Closed);
                    drop(waiting);
                    sent
                }))
            }
        }
    }
}

/// Delivers every event to the sink set with [`MemoryBroker::attach`].
#[derive(Clone, Default)]
pub struct MemoryBroker {
    sink: Arc<OnceLock<Arc<dyn EventSink>>>,
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Connects the node's hub. Events published before that have no one to
    /// go to and are dropped, as on a node with no subscribers.
    pub fn attach(&self, sink: Arc<dyn EventSink>) {
        let _ = self.sink.set(sink);
    }

    pub fn publish(&self, event: Event) {
        if let Some(sink) = self.sink.get() {
            sink.deliver(event);
        }
    }

    pub fn publish_all(&self, events: Vec<Event>) {
        if let Some(sink) = self.sink.get() {
            sink.deliver_all(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;
    use crate::bus::Origin;
    use crate::model::Command;

    fn envelope(id: &str) -> CommandEnvelope {
        CommandEnvelope {
            id: id.to_owned(),
            origin: Origin { node: "n".into(), connection: 1, sequence: 1 },
            user: "u".into(),
            reference: None,
            command: Command::Delete { chat_id: 1, message_id: 1 },
            received_at: 0,
        }
    }

    /// Room: queued at once. Full: the submit waits for room, then queues,
    /// behind what was there. Closed: refused.
    #[tokio::test]
    async fn a_full_queue_makes_the_submit_wait_and_keeps_the_order() {
        let (commands, mut worker) = command_channel(1);
        assert!(matches!(commands.submit(envelope("a"), || ()).now_or_never(), Some(Ok(()))));
        let mut waiting = Box::pin(commands.submit(envelope("b"), || ()));
        assert!((&mut waiting).now_or_never().is_none(), "a full queue queued at once");
        assert_eq!(worker.recv().await.map(|e| e.id), Some("a".into()));
        waiting.await.expect("queued once there was room");
        assert_eq!(worker.recv().await.map(|e| e.id), Some("b".into()));
        drop(worker);
        assert!(matches!(commands.submit(envelope("c"), || ()).await, Err(BusError::Closed)));
    }
}
