//! The in-process bus of standalone mode: a bounded channel carries commands
//! to the embedded worker, and events go straight to the one local sink.

use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

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
    pub async fn submit(&self, envelope: CommandEnvelope) -> Result<(), BusError> {
        self.tx.send(envelope).await.map_err(|_| BusError::Closed)
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
