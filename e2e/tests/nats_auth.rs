//! The NATS configuration shipped for deployments (`nats.conf`), run by a real nats-server: no
//! anonymous client gets in, and each service's user can do what the service does and no
//! more — in particular no reader can publish a forged event.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use e2e::OwnNats;
use futures::StreamExt;
use platform::bus::{ensure_stream, ordered_messages, StreamName};

const PASSWORDS: [(&str, &str); 3] = [
    ("MEETINGS_NATS_RELAY_PASSWORD", "relay-secret"),
    ("MEETINGS_NATS_PROJECTOR_PASSWORD", "projector-secret"),
    ("MEETINGS_NATS_REALTIME_PASSWORD", "realtime-secret"),
];

fn url(nats: &OwnNats, user: &str, password: &str) -> String {
    format!("nats://{user}:{password}@127.0.0.1:{}", nats.port)
}

async fn client(nats: &OwnNats, user: &str, password: &str) -> async_nats::Client {
    platform::testing::connect_nats(&url(nats, user, password))
        .await
        .unwrap_or_else(|e| panic!("{user}: {e:#}"))
}

/// Publishes an event as `client` and waits for the stream's acknowledgement.
async fn append(client: &async_nats::Client, subject: String) -> anyhow::Result<u64> {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(2));
    let ack = js.publish(subject, "{}".into()).await?.await?;
    Ok(ack.sequence)
}

#[tokio::test]
async fn without_credentials_nothing_and_each_service_only_what_it_does() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nats.conf");
    let nats = OwnNats::with_config(config, &PASSWORDS).await;
    let stream = StreamName::new("EVENTS").unwrap();
    let subject = stream.subject("meeting", uuid::Uuid::now_v7());

    // No credentials, or wrong ones: the server refuses the connection itself.
    for address in [
        format!("nats://127.0.0.1:{}", nats.port),
        url(&nats, "relay", "guess"),
    ] {
        let (bare, options) = platform::bus::options(&address);
        let refused = options
            .connection_timeout(Duration::from_secs(2))
            .connect(bare)
            .await;
        assert!(refused.is_err(), "{address} got in");
    }

    // The relay creates the stream, appends, and reads back its newest message.
    let relay = client(&nats, "relay", "relay-secret").await;
    let js = jetstream::new(relay.clone());
    let events = ensure_stream(&js, &stream).await.unwrap();
    let sequence = append(&relay, subject.clone()).await.unwrap();
    assert_eq!(sequence, 1);
    events.get_raw_message(sequence).await.unwrap();

    for (user, password) in [
        ("projector", "projector-secret"),
        ("realtime", "realtime-secret"),
    ] {
        let reader = client(&nats, user, password).await;
        let mut js = jetstream::new(reader.clone());
        js.set_timeout(Duration::from_secs(2));
        // Reads the stream as the service does: an ordered consumer from the start.
        let events = js.get_stream("EVENTS").await.unwrap();
        let mut messages = ordered_messages(&events, None, DeliverPolicy::All)
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a message")
            .unwrap()
            .unwrap();
        assert_eq!(first.subject.as_str(), subject);
        // Cannot forge an event, nor delete the stream.
        assert!(
            append(&reader, subject.clone()).await.is_err(),
            "{user} appended"
        );
        assert!(
            js.delete_stream("EVENTS").await.is_err(),
            "{user} deleted the stream"
        );
    }
    assert_eq!(
        jetstream::new(relay.clone())
            .get_stream("EVENTS")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        1,
        "no forged event got in"
    );

    // Realtime gateways share presence; the relay cannot listen in.
    let gateway = client(&nats, "realtime", "realtime-secret").await;
    let mut presence = gateway.subscribe("events-presence").await.unwrap();
    gateway.flush().await.unwrap();
    gateway
        .publish("events-presence", "[]".into())
        .await
        .unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(5), presence.next())
        .await
        .expect("presence heard");
    assert!(heard.is_some());
    let mut eavesdrop = relay.subscribe("events-presence").await.unwrap();
    relay.flush().await.ok();
    gateway
        .publish("events-presence", "[]".into())
        .await
        .unwrap();
    let overheard = tokio::time::timeout(Duration::from_millis(500), eavesdrop.next()).await;
    assert!(
        !matches!(overheard, Ok(Some(_))),
        "the relay overheard presence"
    );
}
