//! A command that reaches its chat's row lock just behind a membership
//! change is judged by the membership that change left: a member removed
//! is refused, a member who stays is not refused because someone else
//! joined, and a command in a chat deleted meanwhile is refused as for
//! no chat. PostgreSQL only: read committed gives each statement the
//! snapshot it took before it waited, and SQLite's one writer orders the
//! two anyway.
//!
//! Every way a command is applied is taken: a lone `new` and a batch of
//! them on the first delivery (one statement each, `first_sends.rs`), and
//! on a repeat a `new`, a run of them, an edit, a delete, a mark and a run
//! of marks; the batches also with commands in a second chat, which
//! must be applied whatever becomes of the first's.

use super::*;

/// A membership change as the store makes one, held open: the chat's row
/// locked by counting the change, the rows changed, not committed.
enum Change {
    Remove(&'static str),
    Add(&'static str),
    DeleteChat,
}

impl Change {
    /// The statements after the count, of `$1` the chat and, where given,
    /// `$2` the user.
    fn statements(&self) -> Vec<(&'static str, Option<&'static str>)> {
        match self {
            Change::Remove(user) => vec![("DELETE FROM members WHERE chat_id = $1 AND user_id = $2", Some(user))],
            Change::Add(user) => {
                vec![("INSERT INTO members (chat_id, user_id, joined_at) VALUES ($1, $2, 1)", Some(user))]
            }
            Change::DeleteChat => {
                vec![("DELETE FROM members WHERE chat_id = $1", None), ("DELETE FROM chats WHERE id = $1", None)]
            }
        }
    }
}

/// bob's commands of each case, in `chat`, whose membership changes, and
/// in `other`, which stays as it is; in each, message 1 is alice's and 2
/// is bob's.
fn cases(chat: i64, other: i64) -> Vec<(&'static str, Delivery, Vec<Command>)> {
    let edit = Command::Edit {
        chat_id: chat,
        message_id: 2,
        text: "changed".into(),
        attachments: shared::model::Attachments::none(),
    };
    let delete = Command::Delete { chat_id: chat, message_id: 2 };
    let news = |chats: &[i64]| -> Vec<Command> {
        chats.iter().enumerate().map(|(i, &chat)| send(chat, &format!("n{i}"), "late")).collect()
    };
    vec![
        ("a lone new, first delivery", Delivery::First, news(&[chat])),
        ("two news, first delivery", Delivery::First, news(&[chat, chat])),
        ("news to two chats, first delivery", Delivery::First, news(&[other, chat, other])),
        ("a lone new", Delivery::Repeat, news(&[chat])),
        ("a run of news", Delivery::Repeat, news(&[chat, chat, chat])),
        ("a run of news to two chats", Delivery::Repeat, news(&[other, chat, other, chat])),
        ("an edit", Delivery::Repeat, vec![edit]),
        ("a delete", Delivery::Repeat, vec![delete]),
        ("a mark", Delivery::Repeat, vec![mark(chat, 1, MarkKind::Delivered)]),
        ("a run of marks", Delivery::Repeat, vec![mark(chat, 1, MarkKind::Delivered), mark(chat, 1, MarkKind::Read)]),
        (
            "a run of marks in two chats",
            Delivery::Repeat,
            vec![
                mark(other, 1, MarkKind::Delivered),
                mark(chat, 1, MarkKind::Delivered),
                mark(other, 1, MarkKind::Read),
            ],
        ),
    ]
}

#[tokio::test]
async fn a_member_removed_while_their_command_waited_is_refused() {
    for_each_case(Change::Remove("bob"), |name, result| {
        let refusal = result.expect_err(name);
        assert_eq!(refusal.code, ErrorCode::Forbidden, "{name}: {refusal:?}");
    })
    .await;
}

#[tokio::test]
async fn a_command_in_a_chat_deleted_while_it_waited_is_refused_as_for_no_chat() {
    for_each_case(Change::DeleteChat, |name, result| {
        let refusal = result.expect_err(name);
        assert_eq!(refusal.code, ErrorCode::NotFound, "{name}: {refusal:?}");
    })
    .await;
}

#[tokio::test]
async fn a_member_whose_chat_gained_someone_while_their_command_waited_is_not_refused() {
    for_each_case(Change::Add("carol"), |name, result| {
        result.unwrap_or_else(|refusal| panic!("{name}: refused {refusal:?}"));
    })
    .await;
}

/// Runs each case behind `change` held open, and hands `check` the result
/// of each command in the changed chat; those in the other chat must
/// stand.
async fn for_each_case(change: Change, check: impl Fn(&str, Result<Outcome, shared::error::Refusal>)) {
    let Some((store, _dir, url)) = postgres_store().await else { return };
    let mut underneath = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
    let mut watcher = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.expect("connected underneath");
    for index in 0..cases(0, 0).len() {
        let (chat, other) = (group(&store, "alice", &["bob"]).await, group(&store, "alice", &["bob"]).await);
        for in_chat in [chat, other] {
            store.apply_pairs(&[("alice".to_string(), send(in_chat, "a1", "first"))], 10).await.expect("sent");
            store.apply_pairs(&[("bob".to_string(), send(in_chat, "b1", "second"))], 11).await.expect("sent");
        }
        let (name, delivery, commands) = cases(chat, other).swap_remove(index);
        let before = stored_state(&mut underneath, chat).await;

        sqlx::query("BEGIN").execute(&mut underneath).await.expect("begin");
        sqlx::query("UPDATE chats SET membership_version = membership_version + 1 WHERE id = $1")
            .bind(chat)
            .execute(&mut underneath)
            .await
            .expect("the chat locked");
        for (statement, user) in change.statements() {
            let query = sqlx::query(statement).bind(chat);
            let query = match user {
                Some(user) => query.bind(user),
                None => query,
            };
            query.execute(&mut underneath).await.expect("changed");
        }

        let ids: Vec<String> = (0..commands.len()).map(|i| format!("{name}-{i}")).collect();
        let batch: Vec<Submitted> =
            commands.iter().zip(&ids).map(|(command, id)| Submitted { id, user: "bob", command }).collect();
        let applying = store.apply_batch(&batch, 20, delivery);
        tokio::pin!(applying);
        until_it_waits_for_a_lock(&mut watcher, applying.as_mut(), name).await;
        sqlx::query("COMMIT").execute(&mut underneath).await.expect("commit");
        let results = applying.await.unwrap_or_else(|error| panic!("{name}: failed: {error}"));
        for (command, result) in commands.iter().zip(results) {
            if command.chat_id() == chat {
                check(name, result);
            } else {
                result.unwrap_or_else(|refusal| panic!("{name}: refused in the other chat: {refusal:?}"));
            }
        }
        match change {
            Change::Remove(_) => {
                assert_eq!(stored_state(&mut underneath, chat).await, before, "{name}: nothing stored")
            }
            Change::DeleteChat => {
                assert_eq!(
                    stored_state(&mut underneath, chat).await.1,
                    before.1,
                    "{name}: no message stored or changed"
                )
            }
            Change::Add(_) => {}
        }
    }
}

/// The chat's last event id, and its messages with their content.
async fn stored_state(conn: &mut sqlx::AnyConnection, chat: i64) -> (Option<i64>, String) {
    let last_event_id: Option<i64> = sqlx::query_scalar("SELECT last_event_id FROM chats WHERE id = $1")
        .bind(chat)
        .fetch_optional(&mut *conn)
        .await
        .expect("chat");
    let messages: Vec<(i64, String, Option<i64>)> =
        sqlx::query_as("SELECT message_id, body, deleted_at FROM messages WHERE chat_id = $1 ORDER BY message_id")
            .bind(chat)
            .fetch_all(&mut *conn)
            .await
            .expect("messages");
    (last_event_id, format!("{messages:?}"))
}
