//! The store against real databases: a temporary SQLite file always, and
//! PostgreSQL too when `TEST_DATABASE_URL` names one (the test command sets
//! it up; each test gets its own schema-free database by name prefix).

use serde_json::json;
use shared::error::ErrorCode;
use shared::model::{ChatEvent, Command, DeliveryStatus, EventKind, MarkKind};
use shared::store::{
    BoundsRequest, Checkpointed, Delivery, HistoryQuery, MembershipChange, NewChat, Outcome, PageRequest,
    PresenceChange, Retention, Store, StoreRefusal, Submitted, CREATED_MEMBERSHIP_VERSION, MAX_MEMBERS,
};

mod chat_quota;
mod chats;
mod edits;
mod marks;
mod member_counts;
mod membership_race;
mod purge;
mod redelivery;
mod retention;
mod schema;
mod sends;
mod sync;
mod unread;

/// A fresh SQLite store, and a fresh PostgreSQL one when `TEST_DATABASE_URL`
/// names a server: every store test runs against both.
async fn stores() -> Vec<(Store, tempfile::TempDir)> {
    stores_with_urls().await.into_iter().map(|(store, dir, _)| (store, dir)).collect()
}

/// [`stores`] with each one's URL, for a test that also looks underneath.
async fn stores_with_urls() -> Vec<(Store, tempfile::TempDir, String)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/t.db", dir.path().display());
    let mut stores = vec![(Store::connect(&url).await.expect("sqlite store"), dir, url)];
    if let Ok(admin) = std::env::var("TEST_DATABASE_URL") {
        let url = testkit::services::fresh_database(&admin).await.expect("a fresh database");
        let store = Store::connect(&url).await.expect("postgres store");
        assert_eq!(store.backend(), shared::store::Backend::Postgres);
        stores.push((store, tempfile::tempdir().expect("tempdir"), url));
    }
    stores
}

/// The PostgreSQL store of [`stores_with_urls`], for a test of what only
/// PostgreSQL's concurrent writers can do; `None` without a server.
async fn postgres_store() -> Option<(Store, tempfile::TempDir, String)> {
    stores_with_urls().await.into_iter().find(|(s, _, _)| s.backend() == shared::store::Backend::Postgres)
}

/// The tests name commands as (user, command) pairs; each gets a fresh
/// command id here.
trait ApplyPairs {
    async fn apply_pairs(
        &self,
        batch: &[(String, Command)],
        now: i64,
    ) -> Result<Vec<Result<Outcome, shared::error::Refusal>>, shared::store::StoreError>;
}

impl ApplyPairs for Store {
    async fn apply_pairs(
        &self,
        batch: &[(String, Command)],
        now: i64,
    ) -> Result<Vec<Result<Outcome, shared::error::Refusal>>, shared::store::StoreError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let ids: Vec<String> =
            batch.iter().map(|_| format!("cmd-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))).collect();
        let submitted: Vec<Submitted> =
            batch.iter().zip(&ids).map(|((user, command), id)| Submitted { id, user, command }).collect();
        self.apply_batch(&submitted, now, Delivery::Repeat).await
    }
}

/// Writes a delivered range of `user`'s straight into `mark_ranges`, as a
/// worker's transaction would, for tests of what such a row meets.
async fn write_delivered_range(conn: &mut sqlx::AnyConnection, chat: i64, user: &str, last: i64, at: i64) {
    sqlx::query(
        "INSERT INTO mark_ranges (chat_id, user_id, kind, first_message_id, last_message_id, at) \
         VALUES ($1, $2, 'dlvrd', 1, $3, $4)",
    )
    .bind(chat)
    .bind(user)
    .bind(last)
    .bind(at)
    .execute(conn)
    .await
    .expect("a range");
}

fn send(chat: i64, cid: &str, text: &str) -> Command {
    Command::Send {
        chat_id: chat,
        client_message_id: cid.into(),
        text: text.into(),
        attachments: shared::model::Attachments::none(),
    }
}

fn mark(chat: i64, m: i64, mark: MarkKind) -> Command {
    Command::Mark { chat_id: chat, message_id: m, mark }
}

async fn group(store: &Store, creator: &str, others: &[&str]) -> i64 {
    store
        .create_chat(creator, NewChat::group("g", others.iter().copied()), 1)
        .await
        .map_err(|e| e.0)
        .expect("created")
        .chat_id
}

/// Polls `work` until a statement of this database waits for a lock, and
/// fails if `work` finishes first: it was to wait for a transaction the
/// test holds open underneath. The caller finishes `work` once it lets
/// that transaction go.
async fn until_it_waits_for_a_lock<T: std::fmt::Debug>(
    watcher: &mut sqlx::AnyConnection,
    work: std::pin::Pin<&mut impl std::future::Future<Output = T>>,
    what: &str,
) {
    tokio::select! {
        done = work => panic!("{what} did not wait for the transaction in flight: {done:?}"),
        () = a_lock_waiter(watcher) => {}
    }
}

/// Waits until a statement of this database waits for a row lock. Lock
/// waits have nothing to await; the waiting backend shows one.
async fn a_lock_waiter(watcher: &mut sqlx::AnyConnection) {
    loop {
        let (waiters,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *watcher)
        .await
        .expect("pg_stat_activity");
        if waiters > 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
}
