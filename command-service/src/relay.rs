//! The relay: reads the event store in global order and publishes every event to the bus,
//! checkpointing only what the bus acknowledged (docs/architecture.md, "Guarantees").
//!
//! Several command-service replicas may run a relay; exactly one is active. It holds a
//! PostgreSQL advisory lock on a dedicated connection and writes its checkpoint through that
//! same connection, so losing the connection loses both the lock and the ability to move the
//! checkpoint. Standbys try to take the lock every `standby_interval`.

use std::ops::ControlFlow;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use platform::bus::{EventBus, JetStreamBus, StreamName};
use platform::metrics::{seconds_histogram, size_histogram};
use platform::store::tail::{StoreTail, IDLE_POLL};
use platform::store::{EventStore, PgEventStore, Position};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

/// Tuning of the relay loop.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Events read and published per round.
    pub batch: i64,
    /// Pause when caught up. Polling (rather than NOTIFY) keeps the write path free of the
    /// global notification lock that would serialize commits.
    pub idle_poll: Duration,
    /// How often a standby tries to become active.
    pub standby_interval: Duration,
    /// Longest time the checkpoint trails the acknowledged position while events keep
    /// coming; when caught up it is written at once. The checkpoint is a record for operators
    /// (`relay_checkpoints`), not where a new term resumes (that is what the bus holds), so
    /// writing it once per round would only add a durable commit to every round.
    pub checkpoint_interval: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch: 500,
            idle_poll: IDLE_POLL,
            standby_interval: platform::leader::RETRY_DELAY,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// Metrics of the relay.
#[derive(Clone)]
pub struct RelayMetrics {
    pub published: Counter,
    pub terms: Counter,
    /// 1 while this process holds the relay lock.
    pub active: Gauge,
    /// Time of one round that found events: read, publish, await acks (and, at most once per
    /// `checkpoint_interval`, the checkpoint).
    pub round_seconds: Histogram,
    /// Events per such round.
    pub round_events: Histogram,
    /// Age of the oldest event not yet published when the last round began: 0 when it found
    /// nothing to publish, and on a standby.
    pub lag_seconds: Gauge<f64, AtomicU64>,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        Self {
            published: Counter::default(),
            terms: Counter::default(),
            active: Gauge::default(),
            round_seconds: seconds_histogram(),
            round_events: size_histogram(),
            lag_seconds: Gauge::default(),
        }
    }
}

impl RelayMetrics {
    pub fn register(&self, metrics: &platform::metrics::Metrics) {
        metrics.register(|registry| {
            registry.register(
                "relay_events_published",
                "Events acknowledged by the bus",
                self.published.clone(),
            );
            registry.register(
                "relay_terms",
                "Times this relay became active",
                self.terms.clone(),
            );
            registry.register(
                "relay_active",
                "1 while this process is the active relay",
                self.active.clone(),
            );
            registry.register(
                "relay_round_seconds",
                "Time of one round that found events: read, publish, await acks (the checkpoint at most once per checkpoint interval)",
                self.round_seconds.clone(),
            );
            registry.register(
                "relay_round_events",
                "Events per round that found events",
                self.round_events.clone(),
            );
            registry.register(
                "relay_lag_seconds",
                "Age of the oldest event not yet published when the active relay's last round began (0: caught up, or standby)",
                self.lag_seconds.clone(),
            );
        });
    }
}

/// Observable state, for readiness and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    Standby,
    Active,
}

pub struct Relay {
    pool: PgPool,
    store: Arc<dyn EventStore>,
    bus: Arc<dyn EventBus>,
    stream: StreamName,
    settings: RelaySettings,
    state: watch::Sender<RelayState>,
    metrics: RelayMetrics,
    /// The NATS connection the bus publishes on, when it is JetStream (its state is exported).
    nats: Option<async_nats::Client>,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        store: Arc<dyn EventStore>,
        bus: Arc<dyn EventBus>,
        stream: StreamName,
        settings: RelaySettings,
    ) -> Self {
        Self {
            pool,
            store,
            bus,
            stream,
            settings,
            state: watch::channel(RelayState::Standby).0,
            metrics: RelayMetrics::default(),
            nats: None,
        }
    }

    /// Reports into the process's metrics registry (and the state of its NATS connection).
    pub fn with_metrics(self, metrics: &platform::metrics::Metrics) -> Self {
        self.metrics.register(metrics);
        if let Some(client) = &self.nats {
            metrics.observe_nats("meetings-relay", client);
        }
        self
    }

    /// The usual relay: the PostgreSQL event store of `pool` to the JetStream `stream`.
    pub fn over_jetstream(
        pool: PgPool,
        js: async_nats::jetstream::Context,
        stream: StreamName,
        settings: RelaySettings,
    ) -> Self {
        let client = js.client();
        Self {
            nats: Some(client),
            ..Self::new(
                pool.clone(),
                Arc::new(PgEventStore::new(pool)),
                Arc::new(JetStreamBus::new(js, stream.clone())),
                stream,
                settings,
            )
        }
    }

    pub fn state(&self) -> watch::Receiver<RelayState> {
        self.state.subscribe()
    }

    /// Runs until `shutdown` resolves: standby, take the lock, publish, and back to standby
    /// whenever the lock connection or the bus fails.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let term = || async {
            let outcome = self.lead_once().await;
            self.state.send_replace(RelayState::Standby);
            self.metrics.active.set(0);
            self.metrics.lag_seconds.set(0.0);
            if let Err(error) = outcome {
                tracing::warn!(error = format!("{error:#}"), "relay stepped down");
            }
            ControlFlow::<()>::Continue(())
        };
        platform::leader::run_terms(shutdown, self.settings.standby_interval, term).await;
        self.state.send_replace(RelayState::Standby);
    }

    /// One term: returns `Ok` when another relay holds the lock, `Err` when the term ended.
    async fn lead_once(&self) -> anyhow::Result<()> {
        let key = format!("meetings-relay:{}", self.stream.as_str());
        let Some(mut lock) = platform::leader::try_lead(&self.pool, &key).await? else {
            return Ok(());
        };
        self.state.send_replace(RelayState::Active);
        self.metrics.active.set(1);
        self.metrics.terms.inc();
        tracing::info!(stream = self.stream.as_str(), "relay active");
        let outcome = self.publish_loop(&mut lock).await;
        // Closing the session releases the advisory lock.
        lock.close().await.ok();
        outcome
    }

    async fn publish_loop(&self, lock: &mut PgConnection) -> anyhow::Result<()> {
        let checkpoint = self.checkpoint(lock).await?;
        // Resume after what the bus really holds: more than the checkpoint after a crash
        // between ack and checkpoint (nothing is published twice), less if the bus lost
        // acknowledged messages (they are published again; the checkpoint is only a record).
        let mut position = match self.bus.begin_term().await? {
            Some(published) => published,
            None => {
                if checkpoint > Position::START {
                    tracing::error!(%checkpoint, "the stream is empty but events were relayed \
                        before: it was recreated or purged; publishing everything again");
                }
                Position::START
            }
        };
        if position != checkpoint {
            self.save_checkpoint(lock, position).await?;
        }
        tracing::info!(%checkpoint, resume_after = %position, "relay term begins");
        let mut idle_rounds = 0u32;
        let (mut saved, mut saved_at) = (position, std::time::Instant::now());
        let mut tail = StoreTail::new(self.store.as_ref(), position, self.settings.batch)
            .idle_poll(self.settings.idle_poll);
        loop {
            let started = std::time::Instant::now();
            let events = tail.read().await?;
            self.metrics
                .lag_seconds
                .set(events.first().map_or(0.0, |oldest| {
                    (chrono::Utc::now() - oldest.recorded_at)
                        .to_std()
                        .map_or(0.0, |age| age.as_secs_f64())
                }));
            if events.is_empty() {
                if saved != position {
                    self.save_checkpoint(lock, position).await?;
                    (saved, saved_at) = (position, std::time::Instant::now());
                }
                idle_rounds += 1;
                // Prove now and then that the lock session is alive even with nothing to do.
                if idle_rounds.is_multiple_of(200) {
                    sqlx::query("SELECT 1").execute(&mut *lock).await?;
                }
                tail.pause().await;
                continue;
            }
            idle_rounds = 0;
            let (acknowledged, error) = self.bus.publish(&events).await;
            if acknowledged > 0 {
                self.metrics.published.inc_by(acknowledged as u64);
                position = events[acknowledged - 1].position;
                if saved_at.elapsed() >= self.settings.checkpoint_interval {
                    self.save_checkpoint(lock, position).await?;
                    (saved, saved_at) = (position, std::time::Instant::now());
                }
                self.metrics
                    .round_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.round_events.observe(acknowledged as f64);
                for event in &events[..acknowledged] {
                    event
                        .metadata
                        .log_stage("published", &event.event_type, event.position);
                }
            }
            // Continue after what the bus acknowledged, which may be less than was read.
            tail.seek(position);
            if let Some(error) = error {
                anyhow::bail!("{error}");
            }
        }
    }

    async fn checkpoint(&self, lock: &mut PgConnection) -> anyhow::Result<Position> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT position FROM relay_checkpoints WHERE stream = $1")
                .bind(self.stream.as_str())
                .fetch_optional(&mut *lock)
                .await?;
        match stored {
            Some(text) => Ok(text
                .parse()
                .map_err(|_| anyhow::anyhow!("corrupt relay checkpoint `{text}`"))?),
            None => Ok(Position::START),
        }
    }

    async fn save_checkpoint(
        &self,
        lock: &mut PgConnection,
        position: Position,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO relay_checkpoints (stream, position) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
        )
        .bind(self.stream.as_str())
        .bind(position.to_string())
        .execute(lock)
        .await?;
        Ok(())
    }
}
