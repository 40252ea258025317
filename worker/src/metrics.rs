//! Prometheus metrics (prometheus-client, OpenMetrics text) served over HTTP at `/metrics`
//! (axum): the agent's own figures here, and [`serve`] for the coordinator's too.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The media type of the metrics page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the metrics text at scrape time (so gauges can be read fresh).
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Render,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move { ([(CONTENT_TYPE, self::CONTENT_TYPE)], render()) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Encodes a registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut s, registry);
    s
}

/// The outcome label of a finished trial.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// finished, stopped, failed or released.
    pub outcome: String,
}

/// The agent's metrics.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    /// Trials training now.
    pub trials_running: Gauge,
    /// Epochs trained (reported).
    pub epochs: Counter,
    /// Training samples per second of the most recent epoch on this worker.
    pub samples_per_second: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Trials ended, by outcome.
    pub trials_completed: Family<OutcomeLabel, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sweep_worker");
        let m = AgentMetrics {
            registry: Registry::default(),
            trials_running: Gauge::default(),
            epochs: Counter::default(),
            samples_per_second: Gauge::default(),
            trials_completed: Family::default(),
        };
        registry.register(
            "trials_running",
            "Trials training now",
            m.trials_running.clone(),
        );
        registry.register("epochs", "Epochs trained and reported", m.epochs.clone());
        registry.register(
            "samples_per_second",
            "Training samples per second of the most recent epoch on this worker",
            m.samples_per_second.clone(),
        );
        registry.register(
            "trials_completed",
            "Trials ended on this worker, by outcome",
            m.trials_completed.clone(),
        );
        AgentMetrics { registry, ..m }
    }
}

impl AgentMetrics {
    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        encode(&self.registry)
    }
}
