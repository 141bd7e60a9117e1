//! What a standby shows while it waits: its own `/metrics` page (role, the leader's
//! epoch, whether Redis answers, how long it has stood by), served on the metrics
//! address it will keep once it leads.
//!
//! The page is answered with `Connection: close`, so no scraper keeps a connection to
//! the standby's page past the takeover: the next scrape reaches the leader's page on
//! the same address.

use super::{lead, HaConfig, Leadership};
use crate::store::StoreError;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use volley_proto::exposition::{self, Render};

/// What the waiting loop learns, read by the standby's page.
#[derive(Debug, Default)]
pub struct StandbyView {
    /// The epoch of the lease's holder (0 before Redis answered).
    pub leader_epoch: AtomicU64,
    /// Whether the last poll of Redis was answered.
    pub redis_up: AtomicBool,
}

impl StandbyView {
    /// Takes note of the lease's value, `NAME epoch=N`.
    pub fn saw_holder(&self, holder: &str) {
        self.redis_up.store(true, Ordering::Relaxed);
        if let Some(epoch) = holder.rsplit_once(" epoch=").and_then(|(_, e)| e.parse().ok()) {
            self.leader_epoch.store(epoch, Ordering::Relaxed);
        }
    }
}

/// Waits as a standby, serving the standby page on `metrics` meanwhile, and returns the
/// leadership with the metrics socket bound again on the same address for the leader.
pub async fn stand_by(
    config: &HaConfig,
    stop: CancellationToken,
    metrics: Option<TcpListener>,
) -> Result<(Leadership, Option<TcpListener>), StoreError> {
    let view = Arc::new(StandbyView::default());
    let page = match metrics {
        Some(listener) => {
            let addr = listener
                .local_addr()
                .map_err(|e| StoreError::Config(format!("the metrics socket: {e}")))?;
            let render = page(view.clone(), Instant::now());
            let served = tokio::spawn(exposition::serve_with(listener, render, stop.clone(), false));
            Some((addr, served))
        }
        None => None,
    };
    let leadership = lead(config, stop, &view).await;
    let Some((addr, served)) = page else {
        return leadership.map(|l| (l, None));
    };
    served.abort();
    let _ = served.await;
    let leadership = leadership?;
    let listener = exposition::bind(addr)
        .await
        .map_err(|e| StoreError::Config(format!("binding the metrics address again to lead: {e}")))?;
    Ok((leadership, Some(listener)))
}

/// The standby's page. Its names are the leader's, so one query covers every member.
fn page(view: Arc<StandbyView>, since: Instant) -> Render {
    let mut registry = Registry::with_prefix("volley");
    let gauge = |registry: &mut Registry, name: &str, help: &str| {
        let g = Gauge::<i64>::default();
        registry.register(name, help, g.clone());
        g
    };
    let leader = gauge(
        &mut registry,
        "ha_leader",
        "1 while this dispatcher leads (--ha), 0 while it stands by",
    );
    let epoch = gauge(
        &mut registry,
        "ha_epoch",
        "The lease epoch of the leader: this dispatcher's while it leads",
    );
    let up = gauge(
        &mut registry,
        "store_up",
        "1 while the store answers, 0 while it does not",
    );
    let waited = gauge(
        &mut registry,
        "ha_standby_seconds",
        "How long this dispatcher has stood by",
    );
    leader.set(0);
    let registry = Arc::new(registry);
    Arc::new(move || {
        epoch.set(view.leader_epoch.load(Ordering::Relaxed) as i64);
        up.set(i64::from(view.redis_up.load(Ordering::Relaxed)));
        waited.set(since.elapsed().as_secs() as i64);
        let page = exposition::encode(&registry);
        Box::pin(async move { page })
    })
}
