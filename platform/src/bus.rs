//! The event bus: how events leave the store (relay) and reach consumers (projector, realtime).
//!
//! On the wire every event is one JSON [`EventEnvelope`] on the JetStream subject
//! `<stream lower-cased>.<aggregate_type>.<aggregate_id>`, with `Nats-Msg-Id` = event id so
//! JetStream drops a re-publish after a relay crash. Consumers decode with [`EventEnvelope`]
//! and interpret `data` through the domain's upcasters.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{decode_event, encode_event, EventMetadata, Position, StoredEvent};

/// One event as published and consumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub event_id: Uuid,
    pub position: Position,
    #[serde(rename = "type")]
    pub event_type: String,
    pub event_version: String,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    pub data: serde_json::Value,
    pub metadata: EventMetadata,
}

/// An event decoded (and upcast) into its domain type.
#[derive(Debug, Clone)]
pub enum Decoded {
    User(domain::UserEvent),
    Meeting(domain::MeetingEvent),
}

impl EventEnvelope {
    /// The event as the current code has it: upcast and decoded into its domain type. The
    /// reason when the aggregate type is unknown or the payload does not decode.
    pub fn decode(
        &self,
        upcasters: &[Box<dyn cqrs_es::persist::EventUpcaster>],
    ) -> Result<Decoded, String> {
        fn typed<E: cqrs_es::DomainEvent>(
            event: &EventEnvelope,
            upcasters: &[Box<dyn cqrs_es::persist::EventUpcaster>],
        ) -> Result<E, String> {
            decode_event(
                &event.event_type,
                &event.event_version,
                event.data.clone(),
                upcasters,
            )
        }
        match self.aggregate_type.as_str() {
            "user" => Ok(Decoded::User(typed(self, upcasters)?)),
            "meeting" => Ok(Decoded::Meeting(typed(self, upcasters)?)),
            other => Err(format!("unknown aggregate type `{other}`")),
        }
    }
}

impl Decoded {
    /// The payload as the current code encodes it: what `/v1/changes` and websocket frames
    /// carry, whichever version was stored.
    pub fn data(&self) -> Result<serde_json::Value, String> {
        let encoded = match self {
            Decoded::User(event) => encode_event(event),
            Decoded::Meeting(event) => encode_event(event),
        };
        encoded.map(|(_, _, data)| data).map_err(|e| e.to_string())
    }

    /// [`data`](Self::data) as JSON text, written straight from the event without a `Value`
    /// in between (a replay writes a million of them). The same JSON, its keys in the
    /// event's field order.
    pub fn data_json(&self) -> Result<String, String> {
        let text = match self {
            Decoded::User(event) => serde_json::to_string(event),
            Decoded::Meeting(event) => serde_json::to_string(event),
        }
        .map_err(|e| e.to_string())?;
        payload_json(text)
    }

    /// One line for an audit timeline (`meetings events history`).
    pub fn summary(&self) -> String {
        match self {
            Decoded::User(event) => event.summary(),
            Decoded::Meeting(event) => event.summary(),
        }
    }
}

/// The payload of an event serialized as JSON text: `{"Variant":<payload>}` gives
/// `<payload>`, a unit variant (`"Variant"`) an empty object, as
/// [`encode_event`](crate::store::encode_event) does with values.
fn payload_json(mut text: String) -> Result<String, String> {
    if text.starts_with('"') {
        return Ok("{}".to_owned());
    }
    // Variant names are identifiers: the first `":` ends the only key.
    let start = match text.strip_prefix("{\"").and_then(|rest| rest.find("\":")) {
        Some(end) if text.ends_with('}') => end + "{\"\":".len(),
        _ => return Err(format!("events must be enum variants, got {text}")),
    };
    text.pop();
    text.drain(..start);
    Ok(text)
}

impl From<StoredEvent> for EventEnvelope {
    /// Moves the payload and metadata instead of copying them (a replay of many events).
    fn from(event: StoredEvent) -> Self {
        Self {
            event_id: event.metadata.event_id,
            position: event.position,
            event_type: event.event_type,
            event_version: event.event_version,
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            recorded_at: event.recorded_at,
            data: event.payload,
            metadata: event.metadata,
        }
    }
}

impl From<&StoredEvent> for EventEnvelope {
    fn from(event: &StoredEvent) -> Self {
        Self {
            event_id: event.metadata.event_id,
            position: event.position,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            recorded_at: event.recorded_at,
            data: event.payload.clone(),
            metadata: event.metadata.clone(),
        }
    }
}

/// Header names carried with every published event, so one user action can be followed
/// across services without parsing payloads.
pub mod headers {
    pub const POSITION: &str = "Meetings-Position";
    pub const EVENT_TYPE: &str = "Meetings-Event-Type";
    pub const REQUEST_ID: &str = "Meetings-Request-Id";
    pub const CORRELATION_ID: &str = "Meetings-Correlation-Id";
    pub const CAUSATION_ID: &str = "Meetings-Causation-Id";
    /// W3C trace context, under the name its specification gives it.
    pub const TRACEPARENT: &str = "traceparent";
}

/// Publishes events and waits for the bus to have stored each one.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Starts a relay term: returns the position of the last event the bus holds, if any, so
    /// the relay resumes after it even when its own checkpoint lags (crash between ack and
    /// checkpoint).
    async fn begin_term(&self) -> Result<Option<Position>, BusError>;

    /// Publishes in order; returns how many leading events were acknowledged (all of them on
    /// success). Only acknowledged events may be checkpointed. After an error the relay must
    /// begin a new term.
    async fn publish(&self, events: &[StoredEvent]) -> (usize, Option<BusError>);
}

#[derive(Debug, thiserror::Error)]
#[error("event bus: {0}")]
pub struct BusError(pub String);

/// Where a reader of the event log (projector, websocket hub) gets its events: the JetStream
/// stream in distributed mode, or the event store itself when one process runs everything
/// without NATS (`meetings serve`).
#[derive(Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "a few values per process, made at start"
)]
pub enum EventSource {
    Stream(jetstream::Context, StreamName),
    Store(std::sync::Arc<dyn crate::store::EventStore>),
}

/// Name and subjects of the JetStream stream (docs/api.md `MEETINGS_STREAM`).
#[derive(Debug, Clone)]
pub struct StreamName(String);

impl StreamName {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "MEETINGS_STREAM must be letters, digits, '-' or '_' (got `{name}`)"
        );
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Subject prefix: the stream name lower-cased.
    pub fn prefix(&self) -> String {
        self.0.to_lowercase()
    }

    pub fn subject(&self, aggregate_type: &str, aggregate_id: Uuid) -> String {
        format!("{}.{aggregate_type}.{aggregate_id}", self.prefix())
    }

    /// The stream's settings; kept in line with `nats.conf` (file storage, 1 MiB messages).
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.0.clone(),
            subjects: vec![format!("{}.>", self.prefix())],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            // Long enough to cover any relay restart: a re-published event within it is dropped.
            duplicate_window: Duration::from_secs(120),
            max_message_size: 1024 * 1024,
            // The store is the source of truth; the stream keeps a bounded tail for resumes.
            max_bytes: 8 * 1024 * 1024 * 1024,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        }
    }
}

/// Connects to NATS with retries on reconnect and a name that shows up in monitoring. The URL
/// may carry the service's credentials (`nats://relay:secret@nats:4222`, see `nats.conf`).
pub async fn connect(url: &str, name: &str) -> anyhow::Result<async_nats::Client> {
    let (address, options) = options(url);
    options
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(&address)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot connect to NATS at {address} (MEETINGS_NATS_URL): {e}")
        })
}

/// The address of `url` without its credentials (safe to log) and the client options that
/// carry them: async-nats does not take them from the URL.
pub fn options(url: &str) -> (String, async_nats::ConnectOptions) {
    // A cluster is a comma-separated list of servers, each of which may carry them.
    let (addresses, credentials): (Vec<String>, Vec<_>) = url
        .split(',')
        .map(|server| split_credentials(server.trim()))
        .unzip();
    let address = addresses.join(",");
    let credentials = credentials.into_iter().flatten().next();
    let options = match credentials {
        Some((user, password)) => {
            async_nats::ConnectOptions::new().user_and_password(user, password)
        }
        None => async_nats::ConnectOptions::new(),
    };
    (address, options)
}

/// `scheme://user:password@host…` as (`scheme://host…`, the percent-decoded user and
/// password); a URL without them as it is.
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    (
        format!("{scheme}{host}{path}"),
        Some((decode(user), decode(password))),
    )
}

/// The messages of `stream` in stream order through an ordered consumer (ephemeral, no acks;
/// the client recreates it after a gap or a server restart), starting right after stream
/// sequence `after`, or where `otherwise` says when there is none.
pub async fn ordered_messages(
    stream: &stream::Stream,
    after: Option<u64>,
    otherwise: jetstream::consumer::DeliverPolicy,
) -> anyhow::Result<jetstream::consumer::pull::Ordered> {
    let deliver_policy = match after {
        Some(sequence) => jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: sequence + 1,
        },
        None => otherwise,
    };
    stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("ordered consumer: {e}"))?
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("pull: {e}"))
}

/// Creates the stream or brings its settings up to date; safe to call from every process.
pub async fn ensure_stream(
    js: &jetstream::Context,
    name: &StreamName,
) -> anyhow::Result<stream::Stream> {
    js.create_or_update_stream(name.config())
        .await
        .map_err(|e| anyhow::anyhow!("cannot create or update stream {}: {e}", name.as_str()))?;
    js.get_stream(name.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("cannot open stream {}: {e}", name.as_str()))
}

/// JetStream implementation of [`EventBus`].
///
/// Every message is published with `Nats-Expected-Last-Sequence`: the stream accepts it only
/// directly after the previous one. Without it, a message lost while the server restarts
/// could be followed by later ones the client had buffered, and the stream would hold events
/// out of order. With it, everything after a lost message is refused, and the next term
/// resumes from what the stream really holds.
pub struct JetStreamBus {
    js: jetstream::Context,
    stream: StreamName,
    /// Stream sequence the next message must follow.
    last_sequence: tokio::sync::Mutex<u64>,
}

impl JetStreamBus {
    pub fn new(js: jetstream::Context, stream: StreamName) -> Self {
        Self {
            js,
            stream,
            last_sequence: tokio::sync::Mutex::new(0),
        }
    }
}

#[async_trait]
impl EventBus for JetStreamBus {
    async fn begin_term(&self) -> Result<Option<Position>, BusError> {
        let mut stream = self
            .js
            .get_stream(self.stream.as_str())
            .await
            .map_err(|e| BusError(format!("stream {}: {e}", self.stream.as_str())))?;
        let last = stream
            .info()
            .await
            .map_err(|e| BusError(format!("stream info: {e}")))?
            .state
            .last_sequence;
        *self.last_sequence.lock().await = last;
        if last == 0 || stream.cached_info().state.messages == 0 {
            return Ok(None);
        }
        let message = match stream.get_raw_message(last).await {
            Ok(message) => message,
            // Purged: the sequence survives but the message does not.
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(BusError(format!("last message: {e}"))),
        };
        let envelope: EventEnvelope = serde_json::from_slice(&message.payload)
            .map_err(|e| BusError(format!("last message is not an event: {e}")))?;
        Ok(Some(envelope.position))
    }

    async fn publish(&self, events: &[StoredEvent]) -> (usize, Option<BusError>) {
        let mut last_sequence = self.last_sequence.lock().await;
        // Send all, then await the acks in order: pipelined, yet only a prefix of acknowledged
        // events is ever reported.
        let mut pending = Vec::with_capacity(events.len());
        let mut send_error = None;
        for event in events {
            let envelope = EventEnvelope::from(event);
            let payload = match serde_json::to_vec(&envelope) {
                Ok(payload) => payload,
                Err(e) => {
                    send_error = Some(BusError(format!("serialize: {e}")));
                    break;
                }
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(headers::POSITION, event.position.to_string().as_str());
            headers.insert(headers::EVENT_TYPE, event.event_type.as_str());
            headers.insert(headers::REQUEST_ID, event.metadata.request_id.as_str());
            headers.insert(
                headers::CORRELATION_ID,
                event.metadata.correlation_id.as_str(),
            );
            headers.insert(headers::CAUSATION_ID, event.metadata.causation_id.as_str());
            if let Some(traceparent) = &event.metadata.traceparent {
                headers.insert(headers::TRACEPARENT, traceparent.as_str());
            }
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .headers(headers)
                .message_id(event.metadata.event_id.to_string())
                .expected_last_sequence(*last_sequence + pending.len() as u64);
            match self
                .js
                .send_publish(
                    self.stream
                        .subject(&event.aggregate_type, event.aggregate_id),
                    message,
                )
                .await
            {
                Ok(ack) => pending.push(ack),
                Err(e) => {
                    send_error = Some(BusError(format!("publish: {e}")));
                    break;
                }
            }
        }
        let mut acknowledged = 0;
        for ack in pending {
            match ack.await {
                Ok(ack) => {
                    acknowledged += 1;
                    *last_sequence = ack.sequence;
                }
                Err(e) => return (acknowledged, Some(BusError(format!("ack: {e}")))),
            }
        }
        (acknowledged, send_error)
    }
}

#[cfg(test)]
mod data_tests {
    use super::*;
    use domain::{MeetingEvent, UserEvent};

    #[test]
    fn an_events_data_as_text_is_the_same_json_as_its_data() {
        let user = uuid::Uuid::now_v7();
        let events = [
            Decoded::User(UserEvent::PasswordChanged {}),
            Decoded::User(UserEvent::UserDeactivated { by: user }),
            Decoded::Meeting(MeetingEvent::MeetingCancelled {
                reason: Some("moved to \"next\" week: {\":}".to_owned()),
            }),
            Decoded::Meeting(MeetingEvent::AttendeeInvited {
                user_id: user,
                optional: true,
            }),
        ];
        for event in events {
            let text = event.data_json().unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed, event.data().unwrap(), "{text}");
        }
    }

    #[test]
    fn a_unit_variant_has_empty_data_and_anything_else_is_refused() {
        assert_eq!(payload_json("\"Ended\"".to_owned()).unwrap(), "{}");
        assert_eq!(
            payload_json("{\"A\":{\"b\":1}}".to_owned()).unwrap(),
            "{\"b\":1}"
        );
        assert!(payload_json("[1]".to_owned()).is_err());
        assert!(payload_json("{\"A\"".to_owned()).is_err());
    }
}

#[cfg(test)]
mod credential_tests {
    use super::split_credentials;

    #[test]
    fn credentials_leave_the_url_and_are_decoded() {
        assert_eq!(
            split_credentials("nats://relay:s%40cr%3At@nats:4222"),
            (
                "nats://nats:4222".to_owned(),
                Some(("relay".to_owned(), "s@cr:t".to_owned()))
            )
        );
        assert_eq!(
            split_credentials("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".to_owned(), None)
        );
        let (address, _) = super::options("nats://u:p@a:4222, nats://u:p@b:4222");
        assert_eq!(address, "nats://a:4222,nats://b:4222");
        assert_eq!(
            split_credentials("tls://u:p@host:4222/x@y"),
            (
                "tls://host:4222/x@y".to_owned(),
                Some(("u".to_owned(), "p".to_owned()))
            )
        );
    }
}
