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
use shared::store::{within, Delivery, Outcome, Store, StoreError, Submitted};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Commands per batch read from a stream shard. Not raised with the
/// in-process limit below: the cluster was not measured with more.
pub const STREAM_MAX_BATCH: usize = 256;
/// Commands per batch from the in-process queue (standalone). Larger than
/// a stream's because a commit's cost there is mostly pages, not commands:
/// SQLite logs every index page a batch touched, and a batch's `new`s
/// spread over hundreds of chats touch an index page per chat in each
/// index led by the chat whether the batch holds 256 of them or 4,096. Below
/// saturation a batch is what is queued and stays small; once a burst had
/// queued more than 256, it was worked off at small batches' cost: at
/// 100,000 deliveries/s offered (groups of 10), 86-95k delivered with a
/// cap of 256, 97-99k with 4,096 (docs/benchmarks-journal.md, fifth session).
/// Statements stay per run, so no statement's parameters grow with the
/// batch.
pub const MEMORY_MAX_BATCH: usize = 4096;
/// A batch that takes longer than this counts as failed (and is retried):
/// a database that stopped answering must not hang a shard forever.
pub const APPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub type Results = Vec<Result<Outcome, Refusal>>;

#[derive(Clone)]
pub struct Processor {
    store: Store,
    max_batch: usize,
    /// Whether the queue may deliver a command twice (see [`Delivery`]).
    redelivery: bool,
}

impl Processor {
    /// A processor for the in-process queue, which delivers each command
    /// once.
    pub fn new(store: Store) -> Self {
        Processor { store, max_batch: MEMORY_MAX_BATCH, redelivery: false }
    }

    /// A processor for Redis Streams, which redeliver what was not
    /// acknowledged. Its shard consumers publish the outcomes themselves,
    /// with their acknowledgement ([`Processor::outcome_events`]).
    pub fn with_redelivery(store: Store) -> Self {
        Processor { redelivery: true, max_batch: STREAM_MAX_BATCH, ..Self::new(store) }
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Consumes the in-process command channel until `stop` is cancelled,
    /// publishing each batch's outcomes on `broker`; then applies whatever
    /// is still queued and returns, so that a normal shutdown loses nothing
    /// that was accepted.
    pub async fn run_memory(
        self,
        broker: Broker,
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
            // Readers that are ready to run queue their commands first: at
            // 2,000 msg/s this took batches from 2 commands to 3 on average
            // (a third fewer commits) for a wait of microseconds.
            tokio::task::yield_now().await;
            while batch.len() < self.max_batch {
                match commands.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
            self.apply_or_refuse(&broker, &mut batch).await;
        }
        // Drain: the gateway stopped reading from clients before stopping
        // us, so what is queued now is all there will be.
        while let Ok(more) = commands.try_recv() {
            batch.push(more);
            if batch.len() == self.max_batch {
                self.apply_or_refuse(&broker, &mut batch).await;
            }
        }
        self.apply_or_refuse(&broker, &mut batch).await;
    }

    /// In-process mode has no redelivery: when the store fails, the batch
    /// is refused as `internal` (never acknowledged) and the clients retry.
    async fn apply_or_refuse(&self, broker: &Broker, batch: &mut Vec<CommandEnvelope>) {
        if batch.is_empty() {
            return;
        }
        let results = match self.apply(batch, false).await {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(error = %e, commands = batch.len(), "store failed; commands refused as internal");
                let refusal = Self::refusal_for(&e);
                batch.iter().map(|_| Err(refusal.clone())).collect()
            }
        };
        if let Err(e) = broker.publish_all(Self::outcome_events(batch, results)).await {
            metrics::counter!("chat_redis_errors_total", "op" => "publish").increment(1);
            tracing::warn!(error = %e, "publishing events failed");
        }
        batch.clear();
    }

    /// What the clients of a batch the store failed are told: "not
    /// applied" would be false for one that may have committed all the
    /// same. Either way a resend is safe.
    fn refusal_for(error: &StoreError) -> Refusal {
        if error.may_have_committed() {
            Refusal::outcome_unknown()
        } else {
            Refusal::internal()
        }
    }

    /// Applies `batch` in one transaction. `seen_before`: the queue may
    /// have handed out these commands before, or an earlier attempt may
    /// have committed them.
    pub async fn apply(&self, batch: &[CommandEnvelope], seen_before: bool) -> Result<Results, StoreError> {
        self.apply_together(&[batch], seen_before).await
    }

    /// Applies `batch` as [`Processor::apply`] does; but if the database
    /// refuses the data of a command in it ([`StoreError::refuses_the_data`]),
    /// applies the commands one at a time and answers each refused one with
    /// `internal`. Without this a command that no retry can store would be
    /// retried forever and hold up every chat of its shard; it can only come
    /// from something that wrote to the stream without the gateway's
    /// checks (another version, another tool), so it is logged.
    pub async fn apply_isolating(&self, batch: &[CommandEnvelope], seen_before: bool) -> Result<Results, StoreError> {
        match self.apply(batch, seen_before).await {
            Err(e) if e.refuses_the_data() => {
                tracing::warn!(error = %e, commands = batch.len(), "the database refuses a command; applying them one by one");
            }
            other => return other,
        }
        let mut results = Vec::with_capacity(batch.len());
        for envelope in batch {
            // The batch's transaction was rolled back, but an earlier
            // attempt may have committed (its answer lost): applied as seen.
            match self.apply(std::slice::from_ref(envelope), true).await {
                Ok(mut own) => results.append(&mut own),
                Err(e) if e.refuses_the_data() => {
                    tracing::error!(error = %e, command = %envelope.id, user = %envelope.user, "the database refuses this command; answered internal");
                    results.push(Err(Refusal::internal()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }

    /// Applies `batches` one after the other in one transaction
    /// ([`crate::group_commit`]); the results are in the same order.
    pub async fn apply_together(
        &self,
        batches: &[&[CommandEnvelope]],
        seen_before: bool,
    ) -> Result<Results, StoreError> {
        let submitted: Vec<Submitted> = batches
            .iter()
            .flat_map(|batch| batch.iter())
            .map(|e| Submitted { id: &e.id, user: &e.user, command: &e.command })
            .collect();
        metrics::histogram!("chat_worker_batch_size").record(submitted.len() as f64);
        let delivery = match (self.redelivery, seen_before) {
            (false, _) => Delivery::Once,
            (true, false) => Delivery::First,
            (true, true) => Delivery::Repeat,
        };
        let result = within(APPLY_TIMEOUT, self.store.apply_batch(&submitted, now_ms(), delivery)).await;
        if result.is_err() {
            metrics::counter!("chat_database_errors_total").increment(1);
        }
        result
    }

    /// Each command's events, then its reply, in batch order: what is
    /// published after a batch (in process at once; by a stream consumer
    /// with its acknowledgement and next read).
    pub fn outcome_events(batch: &[CommandEnvelope], results: Results) -> Vec<Event> {
        Self::outcome_events_among(batch, results, Vec::new())
    }

    /// [`Processor::outcome_events`], with the replies to entries of the
    /// batch that could not be read, each given with the number of readable
    /// commands before it: every reply keeps its command's place, since a
    /// connection's replies come in the order it sent the commands.
    pub fn outcome_events_among(
        batch: &[CommandEnvelope],
        results: Results,
        unreadable: Vec<(usize, Event)>,
    ) -> Vec<Event> {
        let mut events = Vec::with_capacity(batch.len() * 2 + unreadable.len());
        let mut unreadable = unreadable.into_iter().peekable();
        for (index, (envelope, result)) in batch.iter().zip(results).enumerate() {
            while let Some((_, reply)) = unreadable.next_if(|(before, _)| *before <= index) {
                events.push(reply);
            }
            let label = envelope.command.label();
            let outcome = match result {
                Ok(outcome) => {
                    metrics::counter!("chat_worker_commands_total", "type" => label, "outcome" => "applied")
                        .increment(1);
                    events.extend(outcome.events.into_iter().map(|event| Event::Chat(Arc::new(event))));
                    Ok(outcome.applied)
                }
                Err(refusal) => {
                    metrics::counter!("chat_worker_commands_total", "type" => label, "outcome" => refusal.code.as_str())
                        .increment(1);
                    Err(refusal)
                }
            };
            events.push(Event::Reply {
                origin: envelope.origin.clone(),
                reference: envelope.reference.clone(),
                result: outcome,
                received_at: envelope.received_at,
            });
        }
        events.extend(unreadable.map(|(_, reply)| reply));
        events
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use shared::bus::{Origin, ReplyAddress};
    use shared::model::Command;

    use super::*;

    fn envelope(reference: &str) -> CommandEnvelope {
        CommandEnvelope {
            id: reference.into(),
            origin: Origin { node: "gw".into(), connection: 1, sequence: 1 },
            user: "alice".into(),
            reference: Some(json!(reference)),
            command: Command::Delete { chat_id: 1, message_id: 1 },
            received_at: 0,
        }
    }

    fn unreadable(reference: &str) -> Event {
        let address = json!({"origin": {"node": "gw", "connection": 1}, "reference": reference, "received_at": 0});
        serde_json::from_value::<ReplyAddress>(address).expect("an address").unreadable()
    }

    fn references(events: &[Event]) -> Vec<Value> {
        events
            .iter()
            .map(|e| match e {
                Event::Reply { reference, .. } => reference.clone().unwrap_or_default(),
                other => panic!("not a reply: {other:?}"),
            })
            .collect()
    }

    /// A batch the store did not answer in time may have been committed;
    /// its clients are not told it was not applied.
    #[test]
    fn a_batch_past_its_deadline_is_answered_as_maybe_applied() {
        let timed_out = Processor::refusal_for(&StoreError::Timeout(APPLY_TIMEOUT));
        assert_eq!(timed_out, Refusal::outcome_unknown());
        assert!(timed_out.message.contains("may have been applied"), "{}", timed_out.message);
        let failed = Processor::refusal_for(&StoreError::Stopped);
        assert_eq!(failed, Refusal::internal());
    }

    /// Each unreadable entry's reply keeps its place among the batch's.
    #[test]
    fn replies_to_unreadable_entries_keep_their_place() {
        let batch = [envelope("b"), envelope("d")];
        let results = vec![Err(Refusal::internal()), Err(Refusal::internal())];
        let among = vec![(0, unreadable("a")), (1, unreadable("c")), (2, unreadable("e"))];
        let events = Processor::outcome_events_among(&batch, results, among);
        assert_eq!(references(&events), ["a", "b", "c", "d", "e"].map(|r| json!(r)));
    }
}
