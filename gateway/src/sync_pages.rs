//! The pages a `sync` replays, many clients' to a statement on PostgreSQL
//! ([`crate::batched`]): every client of a reconnect storm syncs at once.

use std::sync::Arc;

use shared::error::Refusal;
use shared::store::{within, Backend, PageRequest, Store, StoreError, StoreRefusal, SyncPage};

use crate::batched::Batched;
use crate::node::STORE_DEADLINE;

/// Events per page a `sync` replays.
const SYNC_PAGE: i64 = 500;
/// Loaders reading at once (see [`crate::chat_lists`]'s).
const LOADERS: usize = 4;
/// Pages per statement: each may hold up to a page of events, so fewer
/// than chat lists, lest one large backlog hold up many clients.
const MOST_PAGES: usize = 32;

type Answer = Result<Result<SyncPage, Refusal>, Arc<StoreError>>;

/// Reads sync pages; one per node.
pub struct SyncPages {
    store: Store,
    /// On PostgreSQL only. On SQLite each client reads its own pages: in
    /// process a statement is no round trip, and going through loaders made
    /// a standalone storm's slowest client sync in 10.9–13.9 s instead of
    /// 7.0–9.1 (docs/benchmarks-journal.md, fourteenth session).
    batched: Option<Batched<PageRequest, Answer>>,
}

impl SyncPages {
    pub fn start(store: Store) -> SyncPages {
        let batched = (store.backend() == Backend::Postgres).then(|| {
            let store = store.clone();
            Batched::start(LOADERS, MOST_PAGES, move |requests| read(store.clone(), requests))
        });
        SyncPages { store, batched }
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
    match within(STORE_DEADLINE, store.events_after_many(&requests, SYNC_PAGE)).await {
        Ok(pages) => pages.into_iter().map(Ok).collect(),
        Err(e) => {
            let e = Arc::new(e);
            requests.iter().map(|_| Err(Arc::clone(&e))).collect()
        }
    }
}
