//! The event subscription against a real Redis: once the broker says a
//! user's channel is subscribed, what is published to it arrives. A
//! gateway reads a connecting user's chats only then (gateway/src/client.rs);
//! earlier, a membership change published between the read and Redis's
//! SUBSCRIBE was lost.

use std::sync::Arc;
use std::time::Duration;

use shared::bus::keys::Keys;
use shared::bus::redis::{connect, RedisBroker};
use shared::bus::{Broker, Event, EventSink};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Collect(mpsc::UnboundedSender<Event>);

impl EventSink for Collect {
    fn deliver(&self, event: Event) {
        let _ = self.0.send(event);
    }
}

/// Twenty users in turn: each is subscribed, the broker waited for, and
/// an event published to the user's channel at once from another
/// connection. Every one arrives. Trusting the subscription before Redis
/// confirmed it lost most of them.
#[tokio::test]
async fn an_event_published_once_the_user_s_channel_is_confirmed_arrives() {
    let url = std::env::var("TEST_REDIS_URL").expect("TEST_REDIS_URL (run ./scripts/test)");
    let keys = Keys::new(&format!("{}:", testkit::unique("sub")), 1);
    let redis = RedisBroker::new(&url, connect(&url).await.expect("redis"), keys.clone());
    let broker = Broker::Redis(redis.clone());
    let (sink, mut arrived) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let listening = tokio::spawn(redis.clone().listen(Arc::new(Collect(sink)), stop.clone()));
    let mut publisher = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("a second connection");

    assert!(!broker.user_subscribed("nobody", Duration::from_millis(50)).await, "never subscribed");
    for n in 0..20 {
        let user = format!("u{n}");
        broker.subscribe_user(&user);
        // Eventually: the listener may still be connecting, when
        // `user_subscribed` says no at once.
        assert!(broker.user_subscribed_eventually(&user, Duration::from_secs(10)).await, "{user} not confirmed");
        let event = Event::Typing { chat: n, user: user.clone() };
        let payload = serde_json::to_string(&event).expect("json");
        let _: i64 =
            redis::AsyncCommands::publish(&mut publisher, keys.user_channel(&user), payload).await.expect("PUBLISH");
        let got = tokio::time::timeout(Duration::from_secs(5), arrived.recv()).await;
        assert!(matches!(got, Ok(Some(Event::Typing { chat, .. })) if chat == n), "{user}: {got:?}");
    }
    broker.unsubscribe_user("u0");
    broker.subscribe_user("u1000");
    assert!(broker.user_subscribed("u1000", Duration::from_secs(10)).await);
    // Dropped from the wanted channels, so no longer counted as live
    // (whether the UNSUBSCRIBE reached Redis yet is not seen here).
    assert!(!broker.user_subscribed("u0", Duration::ZERO).await, "u0 was unsubscribed");
    stop.cancel();
    listening.await.expect("the listener");
}
