//! How many chats one user may be in.
//!
//! Any member of a group may add anyone to it, so without a bound one user
//! could make another follow any number of chats, and every chat list,
//! `sync` and presence announcement of theirs would grow with it. The bound
//! is the number of chats one `sync` may name, so that a client can always
//! catch up on all its chats in one.

use sqlx::any::AnyArguments;
use sqlx::AnyConnection;

use super::batch_rows::{add, BatchRows};
use super::placeholders::Placeholders;
use super::{Backend, StoreRefusal};
use crate::error::Refusal;

/// The most chats one user may be in.
pub const MAX_CHATS_PER_USER: usize = 10_000;

/// The advisory locks' first key on PostgreSQL ("chat" in ASCII), apart
/// from any other use of advisory locks.
const LOCK_SPACE: i32 = 0x6368_6174;
/// Users' counts are locked by bucket of their name's hash, 256 buckets:
/// a lock per user made a creation of 10,000 members take 10,000 locks.
/// PostgreSQL's shared lock table is sized for 64 per connection by
/// default (one such creation fit on this machine's server, with its
/// slack), and a few at once would exhaust it: "out of shared memory".
const LOCK_BUCKETS_MASK: i32 = 0xff;

/// Refuses, before `users` all join one more chat, if any of them is in
/// [`MAX_CHATS_PER_USER`] chats already.
///
/// On PostgreSQL the users' counts stay locked until the transaction ends
/// (an advisory lock per bucket of users, taken in the buckets' order, so
/// that two joins each holding one can't wait for the other): two
/// transactions adding the same user to different chats would otherwise
/// both see room for one more. SQLite has one writer at a time.
pub(super) async fn require_room(conn: &mut AnyConnection, users: &[&str]) -> Result<(), StoreRefusal> {
    if users.is_empty() {
        return Ok(());
    }
    let backend = Backend::of(conn);
    if backend == Backend::Postgres {
        let rows = BatchRows::texts(backend, users);
        let table = rows.table(&mut Placeholders::for_backend(backend), "v");
        // The sorted subquery, kept apart by OFFSET 0, fixes the order the
        // locks are taken in.
        let sql = format!(
            "SELECT pg_advisory_xact_lock({LOCK_SPACE}, b.bucket) \
             FROM (SELECT DISTINCT hashtext(v.column1) & {LOCK_BUCKETS_MASK} AS bucket FROM {table} \
                   ORDER BY bucket OFFSET 0) AS b"
        );
        let mut args = AnyArguments::default();
        rows.add_to(&mut args)?;
        sqlx::query_with(&sql, args).execute(&mut *conn).await?;
    }
    let rows = BatchRows::texts(backend, users);
    let mut params = Placeholders::for_backend(backend);
    let table = rows.table(&mut params, "v");
    let (limit, bound) = (params.one(), params.one());
    // Counting stops at the bound: a user's count costs at most that many
    // index entries, however many chats they are in.
    let sql = format!(
        "SELECT v.column1 FROM {table} WHERE \
           (SELECT count(*) FROM (SELECT 1 FROM members WHERE user_id = v.column1 LIMIT {limit}) AS m) >= {bound} \
         LIMIT 1"
    );
    let mut args = AnyArguments::default();
    rows.add_to(&mut args)?;
    for _ in 0..2 {
        add(&mut args, MAX_CHATS_PER_USER as i64)?;
    }
    let full: Option<(String,)> = sqlx::query_as_with(&sql, args).fetch_optional(&mut *conn).await?;
    match full {
        Some((user,)) => Err(Refusal::conflict(format!(
            "{user} is in {MAX_CHATS_PER_USER} chats already, the most a user may be in"
        ))
        .into()),
        None => Ok(()),
    }
}
