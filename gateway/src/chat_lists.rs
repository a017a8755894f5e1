//! Users' chat lists for connections setting up, many users to a
//! statement ([`crate::batched`]): every connection loads its user's chats
//! before it reads a frame, and in a reconnect storm thousands do at once.

use std::sync::Arc;

use shared::model::ChatId;
use shared::store::{within, Store, StoreError};

use crate::batched::{each_or_all_failed, Batched};
use crate::node::STORE_DEADLINE;

/// Loaders reading at once: four of the database pool's sixteen
/// connections, as many for the sync pages' loaders and two for the sync
/// bounds' ([`crate::sync_pages`]), one for membership checks
/// ([`crate::member_checks`]), and the rest for the REST API, presence and
/// gap fills.
const LOADERS: usize = 4;
/// Users per statement, well under SQLite's limit on parameters.
const MOST_USERS: usize = 256;

/// A user's chats and each one's last event id.
pub type ChatList = Vec<(ChatId, i64)>;

type Answer = Result<ChatList, Arc<StoreError>>;

/// Loads chat lists; one per node.
pub struct ChatLists(Batched<String, Answer>);

impl ChatLists {
    pub fn start(store: Store) -> ChatLists {
        ChatLists(Batched::start(LOADERS, MOST_USERS, move |users| read(store.clone(), users)))
    }

    /// `user`'s chats, read with whichever other users' are waiting.
    pub async fn of(&self, user: &str) -> Answer {
        self.0.ask(user.to_owned()).await.unwrap_or(Err(Arc::new(StoreError::Stopped)))
    }
}

async fn read(store: Store, users: Vec<String>) -> Vec<Answer> {
    // A user asked for twice (two connections setting up at once) is read
    // once.
    let mut distinct: Vec<&str> = users.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let read = within(STORE_DEADLINE, store.chats_of_users(&distinct)).await;
    let lists = read.map(|lists| users.iter().map(|user| lists.get(user).cloned().unwrap_or_default()).collect());
    each_or_all_failed(users.len(), lists)
}

#[cfg(test)]
mod tests {
    use shared::store::NewChat;

    use super::*;

    /// Many connections setting up at once, some of the same user, each
    /// get their user's chats, however the loaders grouped them.
    #[tokio::test]
    async fn users_setting_up_together_each_get_their_own_chats() {
        let (_dir, store) = crate::test_store::sqlite_store().await;
        let mut expected: Vec<ChatList> = vec![Vec::new(); 41];
        for n in 0..40 {
            let chat = NewChat::group(format!("g{n}"), [format!("u{}", n + 1)]);
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
