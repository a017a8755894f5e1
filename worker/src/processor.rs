//! Applying commands. A batch is everything waiting when the worker becomes
//! free (up to `max_batch`): under load one commit carries many commands,
//! idle it carries one, so latency does not wait for a batch to fill.
//!
//! Order: commands are applied in queue order, and for each command its
//! events are published (in id order) before its reply, after the commit.
//! The reply is therefore never an `ack` for something not stored.

use std::sync::Arc;

use shared::bus::{Broker, CommandEnvelope, Event};
use shared::clock::now_ms;
use shared::error::Refusal;
use shared::store::Store;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const DEFAULT_MAX_BATCH: usize = 256;

#[derive(Clone)]
pub struct Processor {
    store: Store,
    broker: Broker,
    max_batch: usize,
}

impl Processor {
    pub fn new(store: Store, broker: Broker) -> Self {
        Processor {
            store,
            broker,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }

    /// Consumes the in-process command channel until `stop` is cancelled;
    /// then applies whatever is still queued and returns, so that a normal
    /// shutdown loses nothing that was accepted.
    pub async fn run_memory(
        self,
        mut commands: mpsc::Receiver<CommandEnvelope>,
        stop: CancellationToken,
    ) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            tokio::select! {
                biased;
                received = commands.recv() => match received {
                    Some(first) => batch.push(first),
                    None => break,
                },
                _ = stop.cancelled() => break,
            }
            while batch.len() < self.max_batch {
                match commands.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            self.process(&mut batch).await;
        }
        // Drain: the gateway stopped reading from clients before stopping
        // us, so what is queued now is all there will be.
        while let Ok(more) = commands.try_recv() {
            batch.push(more);
            if batch.len() == self.max_batch {
                self.process(&mut batch).await;
            }
        }
        self.process(&mut batch).await;
    }

    /// Applies `batch` and publishes the outcome; leaves `batch` empty.
    pub async fn process(&self, batch: &mut Vec<CommandEnvelope>) {
        if batch.is_empty() {
            return;
        }
        let commands: Vec<(String, shared::model::Command)> = batch
            .iter()
            .map(|e| (e.user.clone(), e.command.clone()))
            .collect();
        metrics::histogram!("chat_worker_batch_size").record(batch.len() as f64);
        let results = match self.store.apply_batch(&commands, now_ms()).await {
            Ok(results) => results.into_iter().map(|r| r.map(Some)).collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!(error = %e, commands = batch.len(), "store failed; commands refused as internal");
                metrics::counter!("chat_worker_store_errors_total").increment(1);
                batch.iter().map(|_| Err(Refusal::internal())).collect()
            }
        };
        for (envelope, result) in batch.drain(..).zip(results) {
            let outcome = match result {
                Ok(Some(outcome)) => {
                    metrics::counter!("chat_worker_commands_total", "type" => envelope.command.label(), "outcome" => "applied").increment(1);
                    for event in outcome.events {
                        self.publish(Event::Chat(Arc::new(event))).await;
                    }
                    Ok(outcome.applied)
                }
                Ok(None) => continue,
                Err(refusal) => {
                    metrics::counter!("chat_worker_commands_total", "type" => envelope.command.label(), "outcome" => refusal.code.as_str()).increment(1);
                    Err(refusal)
                }
            };
            self.publish(Event::Reply {
                origin: envelope.origin,
                reference: envelope.reference,
                result: outcome,
                received_at: envelope.received_at,
            })
            .await;
        }
    }

    async fn publish(&self, event: Event) {
        if let Err(e) = self.broker.publish(event).await {
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }
}
