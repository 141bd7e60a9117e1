//! The `/metrics` endpoint every Volley process serves when asked (`--metrics ADDR`): a
//! read-only HTTP page in the Prometheus text format (0.0.4), the one both `promtool` and
//! every Prometheus server read.

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Where Prometheus conventionally finds an exporter on this host.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// Renders the page on each scrape; may ask the process for fresh values first.
pub type Render = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {cause}{hint}")]
pub struct BindError {
    addr: SocketAddr,
    cause: std::io::Error,
    hint: &'static str,
}

/// Binds the metrics address, with an error that says what to change.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, BindError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|cause| BindError {
        addr,
        hint: if cause.kind() == std::io::ErrorKind::AddrInUse {
            " (another process holds the port; pick another with --metrics HOST:PORT)"
        } else {
            ""
        },
        cause,
    })
}

/// Encodes a registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> Result<String, String> {
    let mut page = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut page, registry)
        .map_err(|_| "encoding the metrics failed".to_owned())?;
    Ok(page)
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, render: Render, shutdown: CancellationToken) {
    serve_with(listener, render, shutdown, true).await
}

/// [`serve`], choosing whether scrapers may keep their connection: a page about to be
/// replaced on the same address (a standby's) closes each one after its answer.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    render: Render,
    shutdown: CancellationToken,
    keep_alive: bool,
) {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let page = move || {
        let render = render.clone();
        async move {
            match render().await {
                Ok(body) => (
                    StatusCode::OK,
                    [
                        (
                            header::CONTENT_TYPE,
                            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                        ),
                        (header::CONNECTION, connection),
                    ],
                    body,
                )
                    .into_response(),
                Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
            }
        }
    };
    let app = Router::new().route("/metrics", get(page));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::warn!("metrics endpoint stopped: {e}");
    }
}

/// A histogram of microsecond durations on doubling buckets (`first_us`, 2×, 4×, …),
/// filled a batch at a time: one lock per batch and integer bucket arithmetic per value,
/// so recording every task costs a few nanoseconds. Exposed in seconds.
#[derive(Debug, Clone)]
pub struct MicrosHistogram {
    first_us: u64,
    inner: Arc<parking_lot::Mutex<MicrosInner>>,
}

#[derive(Debug)]
struct MicrosInner {
    sum_us: u64,
    count: u64,
    /// Per bucket, not cumulative; the last is +Inf.
    counts: Vec<u64>,
}

impl MicrosHistogram {
    /// `buckets` doubling bounds from `first_us`, plus +Inf.
    pub fn new(first_us: u64, buckets: usize) -> Self {
        Self {
            first_us: first_us.max(1),
            inner: Arc::new(parking_lot::Mutex::new(MicrosInner {
                sum_us: 0,
                count: 0,
                counts: vec![0; buckets + 1],
            })),
        }
    }

    /// The bucket of `us`: the smallest `i` with `us <= first_us << i`.
    fn bucket(&self, us: u64, finite: usize) -> usize {
        let q = us.div_ceil(self.first_us);
        let i = if q <= 1 {
            0
        } else {
            (u64::BITS - (q - 1).leading_zeros()) as usize
        };
        i.min(finite)
    }

    /// Records every value of a batch.
    pub fn observe_all(&self, values_us: impl IntoIterator<Item = u64>) {
        let mut inner = self.inner.lock();
        let finite = inner.counts.len() - 1;
        for us in values_us {
            let b = self.bucket(us, finite);
            inner.counts[b] += 1;
            inner.sum_us = inner.sum_us.saturating_add(us);
            inner.count += 1;
        }
    }
}

impl prometheus_client::metrics::TypedMetric for MicrosHistogram {
    const TYPE: prometheus_client::metrics::MetricType = prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for MicrosHistogram {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = {
            let inner = self.inner.lock();
            let finite = inner.counts.len() - 1;
            let buckets: Vec<(f64, u64)> = inner
                .counts
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let bound = if i == finite {
                        f64::INFINITY
                    } else {
                        (self.first_us << i) as f64 / 1e6
                    };
                    (bound, *n)
                })
                .collect();
            (inner.sum_us as f64 / 1e6, inner.count, buckets)
        };
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_smallest_bound_that_holds_them() {
        let h = MicrosHistogram::new(50, 4); // 50, 100, 200, 400 µs, +Inf
        h.observe_all([0, 50, 51, 100, 101, 400, 401, 1_000_000]);
        let inner = h.inner.lock();
        assert_eq!(inner.counts, vec![2, 2, 1, 1, 2]);
        assert_eq!(inner.count, 8);
        assert_eq!(inner.sum_us, 1_001_103);
    }

    #[test]
    fn encodes_cumulative_buckets_in_seconds() {
        let h = MicrosHistogram::new(50, 2);
        h.observe_all([10, 80, 5_000]);
        let mut registry = Registry::default();
        registry.register("wait", "Waits", h);
        let page = encode(&registry).expect("encodes");
        assert!(page.contains("wait_bucket{le=\"5e-05\"} 1"), "{page}");
        assert!(page.contains("wait_bucket{le=\"0.0001\"} 2"), "{page}");
        assert!(page.contains("wait_bucket{le=\"+Inf\"} 3"), "{page}");
        assert!(page.contains("wait_count 3"), "{page}");
    }
}
