//! Commands delivered more than once (a stream's redelivery, a client's
//! resend) are applied once and answered from their record.

use super::*;

/// A `new` and its edit: a batch whose second application would show if
/// it were applied again, the edit then changing nothing and answered
/// without its event.
fn send_and_fix(chat: i64) -> [Command; 2] {
    let edit = Command::Edit {
        chat_id: chat,
        message_id: 1,
        text: "fixed".into(),
        attachments: shared::model::Attachments::none(),
    };
    [send(chat, "c1", "typo"), edit]
}

/// `commands` sent by alice under the command ids `ids`.
fn by_alice<'a>(commands: &'a [Command; 2], ids: [&'a str; 2]) -> Vec<Submitted<'a>> {
    commands.iter().zip(ids).map(|(command, id)| Submitted { id, user: "alice", command }).collect()
}

#[tokio::test]
async fn a_redelivered_command_is_answered_from_its_record() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let commands = send_and_fix(chat);
        let batch = by_alice(&commands, ["redeliver-1", "redeliver-2"]);
        let first = store.apply_batch(&batch, 10, Delivery::Repeat).await.expect("applied");
        let again = store.apply_batch(&batch, 20, Delivery::Repeat).await.expect("applied again");
        assert_eq!(first, again, "same replies, same events (to publish again)");
        let page = store.events_after(chat, "alice", 0, 100).await.expect("log");
        assert_eq!(page.events.len(), 2, "applied once");
        assert_eq!(page.last_event_id, 2);
    }
}

/// A first delivery skips the look-up but is recorded, so that its
/// redelivery is still answered from the record.
#[tokio::test]
async fn a_first_delivery_is_recorded_for_its_redelivery() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let commands = send_and_fix(chat);
        let batch = by_alice(&commands, ["first-1", "first-2"]);
        let first = store.apply_batch(&batch, 10, Delivery::First).await.expect("applied");
        let again = store.apply_batch(&batch, 20, Delivery::Repeat).await.expect("applied again");
        assert_eq!(first, again, "same replies, same events (to publish again)");
        let page = store.events_after(chat, "alice", 0, 100).await.expect("log");
        assert_eq!(page.events.len(), 2, "applied once: {:?}", page.events);
    }
}

/// Should a command taken for a first delivery have been applied before,
/// its record's key refuses the batch (nothing of it is committed), and the
/// batch retried as a redelivery is answered from the record.
#[tokio::test]
async fn a_recorded_command_taken_for_new_fails_the_batch_instead_of_applying_twice() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let commands = send_and_fix(chat);
        let batch = by_alice(&commands, ["twice-1", "twice-2"]);
        let first = store.apply_batch(&batch, 10, Delivery::First).await.expect("applied");
        let refused = store.apply_batch(&batch, 20, Delivery::First).await;
        assert!(refused.is_err(), "the record's key refuses it: {refused:?}");
        let page = store.events_after(chat, "alice", 0, 100).await.expect("log");
        assert_eq!(page.events.len(), 2, "nothing of the refused batch stays: {:?}", page.events);
        let retried = store.apply_batch(&batch, 30, Delivery::Repeat).await.expect("retried");
        assert_eq!(first, retried);
    }
}

#[tokio::test]
async fn a_command_queued_twice_in_one_batch_is_applied_once() {
    for (store, _dir) in stores().await {
        let chat = group(&store, "alice", &["bob"]).await;
        let commands = [send(chat, "c1", "hello")];
        let edit = Command::Edit {
            chat_id: chat,
            message_id: 1,
            text: "edited".into(),
            attachments: shared::model::Attachments::none(),
        };
        let batch = [
            Submitted { id: "twin-send", user: "alice", command: &commands[0] },
            Submitted { id: "twin-edit", user: "alice", command: &edit },
            Submitted { id: "twin-edit", user: "alice", command: &edit },
        ];
        let results = store.apply_batch(&batch, 10, Delivery::Repeat).await.expect("applied");
        assert_eq!(results[1], results[2], "the twin is answered like the first");
        let page = store.events_after(chat, "alice", 0, 100).await.expect("log");
        assert_eq!(page.events.len(), 2, "one new, one edit: {:?}", page.events);
    }
}
