//! The presence log against a real Redis: announcements published through
//! the broker are read back, in order and across pages, when a listener
//! subscribes (shared/src/bus/presence_log.rs).

use std::sync::Arc;
use std::time::Duration;

use shared::bus::keys::Keys;
use shared::bus::presence_log::{Reread, CHATS_LOGGED_MAX};
use shared::bus::redis::{connect, RedisBroker};
use shared::bus::{Event, EventSink};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Collect(mpsc::UnboundedSender<Event>);

impl EventSink for Collect {
    fn deliver(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

fn announcement(n: u64) -> Event {
    Event::Presence {
        user: format!("p{n}"),
        online: n.is_multiple_of(2),
        last_seen: 0,
        chats: Arc::from(vec![1]),
        seq: n,
    }
}

/// 2,500 announcements (three pages of the re-read) and a typing event,
/// published before anyone listened: a listener that subscribes to the
/// presence channel gets every announcement from the log, once and in
/// order, and nothing that is not one.
#[tokio::test]
async fn a_subscribing_listener_reads_back_every_announcement_in_order() {
    const ANNOUNCED: u64 = 2_500;
    let url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (run ./scripts/test)");
    let keys = Keys::new(&format!("{}:", testkit::unique("plog")), 1);
    let redis = RedisBroker::new(&url, connect(&url).await.expect("redis"), keys.clone());
    let announcements: Vec<Event> = (1..=ANNOUNCED).map(announcement).collect();
    redis.publish_presence(&announcements[..1_000]).await.expect("published");
    redis.publish_all(&[Event::Typing { chat: 1, user: "t".into() }]).await.expect("published");
    redis.publish_presence(&announcements[1_000..]).await.expect("published");

    let (sink, mut arrived) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    redis.want(keys.presence_channel(), true);
    let listening = tokio::spawn(redis.clone().listen(Arc::new(Collect(sink)), stop.clone()));
    for expected in 1..=ANNOUNCED {
        let got = tokio::time::timeout(Duration::from_secs(10), arrived.recv()).await;
        match got {
            Ok(Some(Event::Presence { seq, user, .. })) => assert_eq!((seq, user), (expected, format!("p{expected}"))),
            other => panic!("announcement {expected}: {other:?}"),
        }
    }
    stop.cancel();
    listening.await.expect("listener");
    assert!(arrived.try_recv().is_err(), "nothing but the announcements");
}

/// The re-read warns that it could not reach back the whole window only
/// when Redis trimmed entries off the log inside it, not for a log that
/// was never trimmed, however long, nor for one not made yet.
#[tokio::test]
async fn a_re_read_is_cut_short_only_by_a_log_trimmed_inside_the_window() {
    let url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (run ./scripts/test)");
    let keys = Keys::new(&format!("{}:", testkit::unique("plogcut")), 1);
    let connection = connect(&url).await.expect("redis");
    let redis = RedisBroker::new(&url, connection.clone(), keys.clone());
    let (sink, _arrived) = mpsc::unbounded_channel();
    let sink = Collect(sink);
    let reread = || async {
        let mut reread = Reread::default();
        while !reread.step(&connection, &keys, &sink).await.expect("step") {}
        (reread.read, reread.cut_short)
    };
    assert_eq!(reread().await, (0, false), "no log yet");

    let announcements: Vec<Event> = (1..=3).map(announcement).collect();
    redis.publish_presence(&announcements).await.expect("published");
    assert_eq!(reread().await, (3, false), "never trimmed");

    let mut trimming = connection.clone();
    let trimmed: usize = redis::cmd("XTRIM")
        .arg(keys.presence_log())
        .arg("MAXLEN")
        .arg(1)
        .query_async(&mut trimming)
        .await
        .expect("xtrim");
    assert_eq!(trimmed, 2);
    assert_eq!(reread().await, (1, true), "its two oldest trimmed");
}

/// The log names the chats of a user in up to `CHATS_LOGGED_MAX` of them,
/// and none of a user in more: the size of an entry, the most Redis holds
/// per announcement, does not grow with the user's chats.
#[tokio::test]
async fn the_log_names_no_chats_of_a_user_in_many() {
    let url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (run ./scripts/test)");
    let keys = Keys::new(&format!("{}:", testkit::unique("plogmany")), 1);
    let connection = connect(&url).await.expect("redis");
    let redis = RedisBroker::new(&url, connection.clone(), keys.clone());
    let in_chats = |user: &str, count: i64| Event::Presence {
        user: user.into(),
        online: true,
        last_seen: 0,
        chats: (1..=count).collect::<Vec<_>>().into(),
        seq: 1,
    };
    redis.publish_presence(&[in_chats("many", 10_000)]).await.expect("published");
    let mut measuring = connection.clone();
    let bytes: usize =
        redis::cmd("MEMORY").arg("USAGE").arg(keys.presence_log()).query_async(&mut measuring).await.expect("usage");
    // A stream of one small entry takes some 4.7 KB; naming the 10,000
    // chats took it to some 50 KB.
    assert!(bytes < 8_192, "the log holds {bytes} bytes for one announcement");
    redis.publish_presence(&[in_chats("few", CHATS_LOGGED_MAX as i64)]).await.expect("published");

    let (sink, mut arrived) = mpsc::unbounded_channel();
    let mut reread = Reread::default();
    while !reread.step(&connection, &keys, &Collect(sink.clone())).await.expect("step") {}
    let mut logged = Vec::new();
    while let Ok(Event::Presence { user, chats, .. }) = arrived.try_recv() {
        logged.push((user, chats.len()));
    }
    assert_eq!(logged, [("many".to_string(), 0), ("few".to_string(), CHATS_LOGGED_MAX)]);
}
