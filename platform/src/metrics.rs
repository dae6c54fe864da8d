//! Prometheus metrics (prometheus-client): one registry per process, HTTP metrics labelled by
//! route template (never the raw URI, which would explode cardinality), and the state of the
//! process's connections (database pool, NATS), read at each scrape.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// The NATS connection a sample is about: the name it was opened with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NatsLabels {
    pub client: String,
}

/// The process's registry and the metrics every service shares.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    connections: Arc<Connections>,
}

/// The connections whose state is exported, read when scraped (no task keeps them current).
#[derive(Debug, Default)]
struct Connections {
    pool: Mutex<Option<Arc<dyn PoolSizes>>>,
    nats: Mutex<Vec<(&'static str, async_nats::Client)>>,
}

/// A pool's (open, idle, most) connections, whatever its database.
trait PoolSizes: Send + Sync + std::fmt::Debug {
    fn sizes(&self) -> (i64, i64, i64);
}

impl<DB: sqlx::Database> PoolSizes for sqlx::Pool<DB> {
    fn sizes(&self) -> (i64, i64, i64) {
        (
            i64::from(self.size()),
            i64::try_from(self.num_idle()).unwrap_or(i64::MAX),
            i64::from(self.options().get_max_connections()),
        )
    }
}

/// Writes [`Connections`] at each scrape: one family per metric, however many NATS
/// connections a process has (`meetings serve` has three). Help texts end with a period, as
/// the registry writes those of registered metrics.
#[derive(Debug)]
struct ConnectionsCollector(Arc<Connections>);

impl Collector for ConnectionsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pool = self
            .0
            .pool
            .lock()
            .expect("BUG: metrics pool poisoned")
            .clone();
        if let Some(pool) = pool {
            let (size, idle, max) = pool.sizes();
            for (name, help, value) in [
                (
                    "db_pool_connections",
                    "Open connections of the database pool, in use or idle.",
                    size,
                ),
                (
                    "db_pool_idle_connections",
                    "Open connections of the database pool that are idle.",
                    idle,
                ),
                (
                    "db_pool_max_connections",
                    "Most connections the database pool opens \
                     (MEETINGS_DATABASE_MAX_CONNECTIONS).",
                    max,
                ),
            ] {
                let gauge = ConstGauge::new(value);
                let family =
                    encoder.encode_descriptor(name, help, None, ConstGauge::<i64>::TYPE)?;
                gauge.encode(family)?;
            }
        }
        let nats = self
            .0
            .nats
            .lock()
            .expect("BUG: metrics NATS clients poisoned")
            .clone();
        if nats.is_empty() {
            return Ok(());
        }
        let labels: Vec<NatsLabels> = nats
            .iter()
            .map(|(name, _)| NatsLabels {
                client: (*name).to_string(),
            })
            .collect();
        let mut family = encoder.encode_descriptor(
            "nats_connected",
            "1 while the NATS connection is established, 0 while it is (re)connecting.",
            None,
            ConstGauge::<i64>::TYPE,
        )?;
        for ((_, client), labels) in nats.iter().zip(&labels) {
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            ConstGauge::new(i64::from(connected)).encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "nats_connects",
            "Times the NATS connection was established, the first time included.",
            None,
            ConstCounter::<u64>::TYPE,
        )?;
        for ((_, client), labels) in nats.iter().zip(&labels) {
            let connects = client
                .statistics()
                .connects
                .load(std::sync::atomic::Ordering::Relaxed);
            ConstCounter::new(connects).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A histogram of durations in seconds: 0.5 ms to ~4 s, doubling.
pub fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// A histogram of batch sizes: 1 to 512, doubling.
pub fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("meetings");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status",
            http_requests.clone(),
        );
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route template",
            http_duration.clone(),
        );
        let connections = Arc::new(Connections::default());
        registry.register_collector(Box::new(ConnectionsCollector(connections.clone())));
        Self {
            registry: Arc::new(Mutex::new(registry)),
            http_requests,
            http_duration,
            connections,
        }
    }

    /// Exports the size of `pool` (`meetings_db_pool_connections`, `…_idle_connections`,
    /// `…_max_connections`), read at each scrape: PostgreSQL's pool, or in embedded mode the
    /// readers of the event log. A process has one pool; a second call replaces the first.
    pub fn observe_pool<DB: sqlx::Database>(&self, pool: &sqlx::Pool<DB>) {
        *self
            .connections
            .pool
            .lock()
            .expect("BUG: metrics pool poisoned") = Some(Arc::new(pool.clone()));
    }

    /// Exports the state of the NATS connection `client` (`meetings_nats_connected`,
    /// `meetings_nats_connects_total`) labelled `client="<name>"`, read at each scrape.
    pub fn observe_nats(&self, name: &'static str, client: &async_nats::Client) {
        self.connections
            .nats
            .lock()
            .expect("BUG: metrics NATS clients poisoned")
            .push((name, client.clone()));
    }

    /// Lets a component register its own metrics in the process registry.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self
            .registry
            .lock()
            .expect("BUG: metrics registry poisoned"));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .expect("BUG: metrics registry poisoned");
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("BUG: writing to a String cannot fail");
        text
    }
}

/// The method as a label: the standard ones by name, any other token as `other`, so a
/// client cannot create new time series by inventing methods.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware recording request count and latency per route template.
pub async fn track_http(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics
        .http_duration
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of `text` that start with `name` (labels included).
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|line| !line.starts_with('#') && line.starts_with(name))
            .collect()
    }

    #[tokio::test]
    async fn the_pool_is_read_when_scraped() {
        let metrics = Metrics::new();
        assert!(samples(&metrics.encode(), "meetings_db_pool").is_empty());
        // A lazy pool opens no connection: its size is 0 of the configured 7.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(7)
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        metrics.observe_pool(&pool);
        let text = metrics.encode();
        assert_eq!(
            samples(&text, "meetings_db_pool_connections"),
            ["meetings_db_pool_connections 0"]
        );
        assert_eq!(
            samples(&text, "meetings_db_pool_idle_connections"),
            ["meetings_db_pool_idle_connections 0"]
        );
        assert_eq!(
            samples(&text, "meetings_db_pool_max_connections"),
            ["meetings_db_pool_max_connections 7"]
        );
        assert!(
            text.contains("# HELP meetings_db_pool_connections "),
            "{text}"
        );
        assert!(
            text.contains("# TYPE meetings_db_pool_max_connections gauge"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn nats_connections_share_one_family_each() {
        let metrics = Metrics::new();
        // Nothing listens on port 1: the clients keep trying, never connected.
        let connect = || {
            async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect("nats://127.0.0.1:1")
        };
        let (relay, projector) = (connect().await.unwrap(), connect().await.unwrap());
        metrics.observe_nats("meetings-relay", &relay);
        metrics.observe_nats("meetings-projector", &projector);
        let text = metrics.encode();
        assert_eq!(
            samples(&text, "meetings_nats_connected"),
            [
                "meetings_nats_connected{client=\"meetings-relay\"} 0",
                "meetings_nats_connected{client=\"meetings-projector\"} 0"
            ],
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE meetings_nats_connected gauge").count(),
            1,
            "{text}"
        );
        assert_eq!(
            samples(&text, "meetings_nats_connects_total").len(),
            2,
            "{text}"
        );
        assert!(
            text.contains("# TYPE meetings_nats_connects counter"),
            "{text}"
        );
    }

    #[test]
    fn invented_methods_share_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(
            method_label(&Method::from_bytes(b"XYZZY").unwrap()),
            "other"
        );
        assert_eq!(method_label(&Method::TRACE), "other");
    }
}
