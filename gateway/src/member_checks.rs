//! Whether users are members of chats, as the store has it now, many
//! pairs to a statement ([`crate::batched`]): the check of a membership
//! change that may have been overtaken (`hub::overtaken`). Apart from the
//! chat lists' loaders, so that a check does not wait behind a reconnect
//! storm's loads: a removal waiting to be checked leaves the removed
//! member receiving the chat.

use std::sync::Arc;

use shared::model::ChatId;
use shared::store::{within, Store, StoreError};

use crate::batched::{each_or_all_failed, Batched};
use crate::node::STORE_DEADLINE;

/// One loader: checks are rare, one statement answers 256, and the
/// database pool's connections are counted out in `chat_lists`.
const LOADERS: usize = 1;
/// Pairs per statement, well under SQLite's limit on parameters.
const MOST_PAIRS: usize = 256;

type Answer = Result<bool, Arc<StoreError>>;

/// Checks memberships; one per node.
pub struct MemberChecks(Batched<(ChatId, String), Answer>);

impl MemberChecks {
    pub fn start(store: Store) -> MemberChecks {
        MemberChecks(Batched::start(LOADERS, MOST_PAIRS, move |pairs| read(store.clone(), pairs)))
    }

    /// Whether `user` is a member of `chat`, read with whichever other
    /// checks are waiting.
    pub async fn is_member(&self, chat: ChatId, user: &str) -> Answer {
        self.0.ask((chat, user.to_owned())).await.unwrap_or(Err(Arc::new(StoreError::Stopped)))
    }
}

async fn read(store: Store, pairs: Vec<(ChatId, String)>) -> Vec<Answer> {
    let asked: Vec<(ChatId, &str)> = pairs.iter().map(|(chat, user)| (*chat, user.as_str())).collect();
    let found = within(STORE_DEADLINE, store.memberships_among(&asked)).await;
    let answers = found.map(|found| pairs.iter().map(|pair| found.contains(pair)).collect());
    each_or_all_failed(pairs.len(), answers)
}

#[cfg(test)]
mod tests {
    use shared::store::NewChat;

    use super::*;

    /// Checks asked together are each answered for their own pair.
    #[tokio::test]
    async fn checks_asked_together_each_get_their_own_answer() {
        let (_dir, store) = crate::test_store::sqlite_store().await;
        let chat = store.create_chat("ann", NewChat::group("g", ["bob"]), 1).await.map_err(|e| e.0).expect("chat");
        let chat = chat.chat_id;
        let checks = Arc::new(MemberChecks::start(store));
        let asks: Vec<_> = [(chat, "ann", true), (chat, "bob", true), (chat, "cat", false), (chat + 1, "ann", false)]
            .into_iter()
            .cycle()
            .take(40)
            .map(|(chat, user, member)| {
                let checks = Arc::clone(&checks);
                tokio::spawn(async move { (chat, user, member, checks.is_member(chat, user).await) })
            })
            .collect();
        for ask in asks {
            let (chat, user, member, answer) = ask.await.expect("joined");
            assert_eq!(answer.expect("read"), member, "{user} in {chat}");
        }
    }
}
