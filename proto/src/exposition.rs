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
    let page = move || {
        let render = render.clone();
        async move {
            match render().await {
                Ok(body) => (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    )],
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
