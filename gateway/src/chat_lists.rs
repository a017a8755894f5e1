//! Users' chat lists for connections setting up, many users to a statement.
//!
//! Why: every connection loads its user's chats before it reads a frame,
//! and in a reconnect storm thousands do at once. Each load was a statement
//! of its own, a round trip to PostgreSQL with its pooled connection's
//! checks around it, and PostgreSQL's CPU per statement is mostly what a
//! statement costs whatever it reads (docs/benchmarks-journal.md,
//! fourteenth session). Here a few loaders take whatever requests are
//! waiting when they are free and read them in one statement. Idle, a
//! request goes alone at once: nothing waits for company.

use std::sync::Arc;

use shared::model::ChatId;
use shared::store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot, Mutex};

/// Loaders reading at once: a few of the database pool's connections,
/// leaving the rest to `sync` and the REST API.
const LOADERS: usize = 4;
/// Users per statement, well under SQLite's limit on parameters.
const MOST_USERS: usize = 256;

/// A user's chats and each one's last event id.
pub type ChatList = Vec<(ChatId, i64)>;

/// Hands users to the loaders; one per node.
pub struct ChatLists {
    requests: mpsc::UnboundedSender<Request>,
}

struct Request {
    user: String,
    reply: oneshot::Sender<Result<ChatList, Arc<StoreError>>>,
}

impl ChatLists {
    /// Starts the loaders; they stop once this is dropped.
    pub fn start(store: Store) -> ChatLists {
        // Unbounded: every request comes from a connection waiting for its
        // answer, so they are bounded by the connections setting up.
        let (requests, queue) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..LOADERS {
            tokio::spawn(load(store.clone(), Arc::clone(&queue)));
        }
        ChatLists { requests }
    }

    /// `user`'s chats, read with whichever other users' are waiting.
    pub async fn of(&self, user: &str) -> Result<ChatList, Arc<StoreError>> {
        let (reply, answer) = oneshot::channel();
        let request = Request { user: user.to_owned(), reply };
        if self.requests.send(request).is_err() {
            return Err(Arc::new(StoreError::Stopped));
        }
        answer.await.unwrap_or(Err(Arc::new(StoreError::Stopped)))
    }
}

async fn load(store: Store, queue: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
            while batch.len() < MOST_USERS {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
        }
        // A user asked for twice (two connections setting up at once)
        // is read once.
        let mut users: Vec<&str> = batch.iter().map(|r| r.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        match store.chats_of_users(&users).await {
            Ok(lists) => {
                for request in batch {
                    let list = lists.get(&request.user).cloned().unwrap_or_default();
                    let _ = request.reply.send(Ok(list));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for request in batch {
                    let _ = request.reply.send(Err(Arc::clone(&e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use shared::model::ChatKind;
    use shared::store::NewChat;

    use super::*;

    /// Many connections setting up at once, some of the same user, each
    /// get their user's chats, however the loaders grouped them.
    #[tokio::test]
    async fn users_setting_up_together_each_get_their_own_chats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display())).await.expect("store");
        let mut expected: Vec<ChatList> = vec![Vec::new(); 41];
        for n in 0..40 {
            let chat = NewChat {
                kind: ChatKind::Group,
                name: Some(format!("g{n}")),
                photo_url: None,
                members: vec![format!("u{}", n + 1)],
            };
            let created = store.create_chat(&format!("u{n}"), chat, 1).await.map_err(|e| e.0).expect("created");
            expected[n].push((created.chat_id, 0));
            expected[n + 1].push((created.chat_id, 0));
        }
        let lists = Arc::new(ChatLists::start(store));
        let asks: Vec<_> = (0..41)
            .chain(0..41)
            .chain([99])
            .map(|n| {
                let lists = Arc::clone(&lists);
                tokio::spawn(async move { (n, lists.of(&format!("u{n}")).await) })
            })
            .collect();
        for ask in asks {
            let (n, list) = ask.await.expect("joined");
            let mut list = list.expect("loaded");
            list.sort_unstable();
            assert_eq!(list, expected.get(n).cloned().unwrap_or_default(), "u{n}");
        }
    }
}
