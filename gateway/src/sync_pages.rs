//! What a `sync` reads, many clients' to a statement on PostgreSQL
//! ([`crate::batched`]): every client of a reconnect storm syncs at once.
//! First where each chat it names stands ([`shared::store::Bounds`]), all
//! in one read; then pages, only of chats with something to replay.

use std::sync::Arc;

use shared::error::Refusal;
use shared::store::{within, Backend, Bounds, BoundsRequest, PageRequest, Store, StoreError, StoreRefusal, SyncPage};

use crate::batched::{each_or_all_failed, Batched};
use crate::node::STORE_DEADLINE;

/// Events per page a `sync` replays.
const SYNC_PAGE: i64 = 500;
/// Loaders reading pages at once (see [`crate::chat_lists`]'s).
const LOADERS: usize = 4;
/// Loaders reading bounds: two, as one statement answers many clients
/// whole and the database pool is shared with pages, chat lists and REST.
const BOUNDS_LOADERS: usize = 2;
/// Clients per bounds statement (split further by the store, by chats).
const MOST_CLIENTS: usize = 64;
/// Pages per statement: each may hold up to a page of events, so fewer
/// than chat lists, lest one large backlog hold up many clients.
const MOST_PAGES: usize = 32;

type Answer = Result<Result<SyncPage, Refusal>, Arc<StoreError>>;
type BoundsAnswer = Result<Bounds, Arc<StoreError>>;

/// Reads sync pages; one per node.
pub struct SyncPages {
    store: Store,
    /// On PostgreSQL only. On SQLite each client reads its own pages: in
    /// process a statement is no round trip, and going through loaders made
    /// a standalone storm's slowest client sync in 10.9–13.9 s instead of
    /// 7.0–9.1 (docs/benchmarks-journal.md, fourteenth session).
    batched: Option<Batched<PageRequest, Answer>>,
    /// Likewise on PostgreSQL only.
    bounds: Option<Batched<BoundsRequest, BoundsAnswer>>,
}

impl SyncPages {
    pub fn start(store: Store) -> SyncPages {
        let batched = (store.backend() == Backend::Postgres).then(|| {
            let store = store.clone();
            Batched::start(LOADERS, MOST_PAGES, move |requests| read(store.clone(), requests))
        });
        let bounds = (store.backend() == Backend::Postgres).then(|| {
            let store = store.clone();
            Batched::start(BOUNDS_LOADERS, MOST_CLIENTS, move |requests| read_bounds(store.clone(), requests))
        });
        SyncPages { store, batched, bounds }
    }

    /// Where each chat of `request` stands, in its order.
    pub async fn bounds(&self, request: BoundsRequest) -> BoundsAnswer {
        let Some(bounds) = &self.bounds else {
            let read = within(STORE_DEADLINE, self.store.replay_bounds(std::slice::from_ref(&request))).await;
            return read.map(|mut all| all.pop().unwrap_or_default()).map_err(Arc::new);
        };
        bounds.ask(request).await.unwrap_or(Err(Arc::new(StoreError::Stopped)))
    }

    /// The page, or why the client gets none (a refusal), or the database's
    /// failure.
    pub async fn page(&self, request: PageRequest) -> Answer {
        let Some(batched) = &self.batched else {
            let read = self.store.events_after(request.chat, &request.user, request.since, SYNC_PAGE);
            return match within(STORE_DEADLINE, read).await {
                Ok(page) => Ok(Ok(page)),
                Err(StoreRefusal::Refused(refusal)) => Ok(Err(refusal)),
                Err(StoreRefusal::Failed(e)) => Err(Arc::new(e)),
            };
        };
        batched.ask(request).await.unwrap_or(Err(Arc::new(StoreError::Stopped)))
    }
}

async fn read(store: Store, requests: Vec<PageRequest>) -> Vec<Answer> {
    each_or_all_failed(requests.len(), within(STORE_DEADLINE, store.events_after_many(&requests, SYNC_PAGE)).await)
}

async fn read_bounds(store: Store, requests: Vec<BoundsRequest>) -> Vec<BoundsAnswer> {
    each_or_all_failed(requests.len(), within(STORE_DEADLINE, store.replay_bounds(&requests)).await)
}
