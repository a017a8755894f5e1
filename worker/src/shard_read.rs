//! One read of a shard's command stream, fenced by the shard's lease.
//!
//! A worker stalled past its lease (frozen, starved of CPU) could otherwise
//! take new entries from the shard after its successor took over: both read
//! through the shard's consumer group, each would apply entries the other
//! never saw, and one chat's commands could be applied out of the order
//! sent. So the read runs in a transaction that WATCHes the lease and a
//! fence key, after a check ([`CHECK_BEFORE_READ`]) that writes the fence
//! key when the lease is not this worker's. A successor that took the lease
//! before the check fails it; one that takes it after the check touches
//! the lease. Either way the transaction does not run and nothing is handed
//! out. The check fails to run when Redis is out of memory (then the
//! queued `XREADGROUP` is refused too) or busy with another client's
//! script past its time limit (then a successor cannot take the lease
//! either). One gap is left: a request that Redis reads in two parts just
//! as such a script ends could have its `WATCH` and check refused and its
//! transaction run. The read's reply is then an error, so this worker
//! applies nothing, but what it was handed waits, pending, until the
//! shard's owner reads its backlog again, two of its lease rounds later at
//! most ([`crate::stray_entries`]). It takes a foreign script of over 5 s
//! ending at a lease handover.
//!
//! Not a script that checks and reads: Redis copies every entry a script
//! reads into Lua and back, about 2.4 µs an entry on this machine, three
//! times the read itself. And neither a script nor a transaction can
//! block, so a read that may have to wait comes after a plain `XREAD
//! BLOCK` from the last id handed out: it hands nothing out, and holds the
//! connection until an entry comes.

use redis::{Pipeline, Value};
use shared::bus::group_info::workers_group;
use shared::bus::keys::{Keys, GROUP};

use crate::lease::CHECK_BEFORE_READ;
use shared::bus::stream_entries::{entries_of, Entry, COMMAND_FIELD};

/// How long a wait for new entries lasts before the consumer checks
/// whether it should stop.
const BLOCK_MS: u64 = 1_000;

pub struct ShardRead {
    stream: String,
    consumer: String,
    lease: String,
    fence: String,
    worker: String,
    count: usize,
}

/// What a read found.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// Entries handed out; none when the backlog was read and is empty.
    Entries(Vec<Entry>),
    /// Nothing new; the group's last delivered id when it was asked for.
    NothingNew(Option<String>),
    /// The lease was touched between the check and the read (by this
    /// worker's own renewal, or a successor taking it): nothing was read.
    Interrupted,
    /// Another worker, or none, holds the lease.
    LeaseLost,
}

impl ShardRead {
    /// Reads of `shard` by `worker`, at most `count` entries each.
    pub fn new(keys: &Keys, shard: u32, worker: &str, count: usize) -> ShardRead {
        ShardRead {
            stream: keys.command_stream(shard),
            consumer: keys.shard_consumer(shard),
            lease: keys.shard_lease(shard),
            fence: keys.shard_read_fence(shard),
            worker: worker.to_owned(),
            count,
        }
    }

    /// Adds a read to `request`: of the entries handed out to the shard's
    /// consumer and not acknowledged (`backlog`), or else of new ones;
    /// first waiting for an entry after `wait_after`, if given; with the
    /// group's last delivered id if `ask_position`. The request's reply
    /// ends with two values for [`ShardRead::outcome`]: the check's and the
    /// transaction's.
    pub fn add_to(&self, request: &mut Pipeline, backlog: bool, wait_after: Option<&str>, ask_position: bool) {
        if let Some(after) = wait_after {
            request.cmd("XREAD").arg("BLOCK").arg(BLOCK_MS).arg("COUNT").arg(1).arg("STREAMS").arg(&self.stream);
            request.arg(after).ignore();
        }
        request.cmd("WATCH").arg(&self.lease).arg(&self.fence).ignore();
        // EVAL, not EVALSHA: a script missing from Redis's cache (after a
        // restart, a SCRIPT FLUSH) would fail the check and leave the
        // transaction after it to run.
        request.cmd("EVAL").arg(CHECK_BEFORE_READ).arg(2).arg(&self.lease).arg(&self.fence).arg(&self.worker);
        request.cmd("MULTI").ignore();
        request.cmd("XREADGROUP").arg("GROUP").arg(GROUP).arg(&self.consumer).arg("COUNT").arg(self.count);
        request.arg("STREAMS").arg(&self.stream).arg(if backlog { "0" } else { ">" }).ignore();
        if ask_position {
            request.cmd("XINFO").arg("GROUPS").arg(&self.stream).ignore();
        }
        request.cmd("EXEC");
    }

    /// The read's outcome from the check's and the transaction's values.
    pub fn outcome((owned, transaction): (i64, Value)) -> Read {
        if owned != 1 {
            return Read::LeaseLost;
        }
        let Value::Array(results) = transaction else { return Read::Interrupted };
        let mut results = results.into_iter();
        match results.next() {
            Some(Value::Nil) | None => Read::NothingNew(results.next().and_then(last_delivered)),
            Some(read) => Read::Entries(entries_of(read, COMMAND_FIELD)),
        }
    }
}

/// The `last-delivered-id` of our group in an XINFO GROUPS reply.
fn last_delivered(groups: Value) -> Option<String> {
    workers_group(&groups)?.text("last-delivered-id")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_check_that_failed_means_the_lease_is_lost_whatever_the_transaction_did() {
        assert_eq!(ShardRead::outcome((0, Value::Nil)), Read::LeaseLost);
    }

    #[test]
    fn an_aborted_transaction_read_nothing() {
        assert_eq!(ShardRead::outcome((1, Value::Nil)), Read::Interrupted);
    }

    #[test]
    fn nothing_new_comes_with_the_position_when_asked() {
        let group = |name: &str, last: &str| {
            Value::Array(vec![
                bulk("name"),
                bulk(name),
                bulk("pending"),
                Value::Int(0),
                bulk("last-delivered-id"),
                bulk(last),
            ])
        };
        let groups = Value::Array(vec![group("other", "9-9"), group(GROUP, "5-1")]);
        assert_eq!(
            ShardRead::outcome((1, Value::Array(vec![Value::Nil, groups]))),
            Read::NothingNew(Some("5-1".into()))
        );
        assert_eq!(ShardRead::outcome((1, Value::Array(vec![Value::Nil]))), Read::NothingNew(None));
    }
}
