//! Warm latency per language: a deployed empty handler driven open loop (Poisson
//! arrivals) at a set rate on an elastic pool, latency from the intended send, after a
//! warm-up at the same rate so the measured window sees the instances that rate needs;
//! with one slot per instance or many (Knative's container-concurrency scenario).

use super::languages::{Handler, Subject};
use super::Pool;
use crate::studies::load::ledger::Fate;
use crate::studies::load::{drive, Arrival, Arrivals};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use volley_client::Client;
use volley_proto::api;
use volley_proto::Mode;

/// One measured window.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WarmRow {
    /// The language.
    pub runtime: String,
    /// Its version.
    pub version: String,
    /// Slots per instance.
    pub slots: u32,
    /// Offered rate, tasks/s.
    pub rate: f64,
    /// Requests sent in the window.
    pub sent: u64,
    /// Completed.
    pub completed: u64,
    /// Sent and not completed.
    pub lost: u64,
    /// Completed tasks that waited for an instance start.
    pub cold: u64,
    /// Latency from the intended send, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Instances started by the end of the window, warm-ups included.
    pub instance_starts: u64,
}

/// How the warm study runs.
#[derive(Debug, Clone)]
pub struct WarmSpec {
    /// The dispatcher's mode.
    pub mode: Mode,
    /// The pool's policy for `slots` (its KPA target set to them).
    pub policy: String,
    /// Instances at most.
    pub max_instances: u32,
    /// Slots per instance.
    pub slots: u32,
    /// Rates, tasks/s, each measured for `window` after a warm-up of `warmup`.
    pub rates: Vec<f64>,
    /// The measured window.
    pub window: Duration,
    /// The warm-up before each window.
    pub warmup: Duration,
}

/// Measures `subject`'s empty handler at every rate of `spec` on one pool.
pub async fn measure(subject: &Subject, spec: &WarmSpec, scratch: &Path) -> anyhow::Result<Vec<WarmRow>> {
    let pool = Pool {
        mode: spec.mode,
        policy: spec.policy.clone(),
        max_instances: spec.max_instances,
        slots: spec.slots,
        init_ms: 0,
        extra_args: Vec::new(),
        env: subject.env().map(|(k, v)| (k.to_owned(), v)).into_iter().collect(),
    };
    let (code, handler, format) = subject.code(Handler::Empty, scratch)?;
    let cluster = pool.start(&format!("warm-{}-{}", subject.language, spec.slots)).await?;
    let result = async {
        let mut client = cluster.connect().await?;
        let runtime = api::Runtime {
            language: subject.language.name().into(),
            handler,
            code_format: format.into(),
            timeout_ms: 60_000,
            ..Default::default()
        };
        let function = volley_client::commands::deploy::register_code(&mut client, "warm", runtime, code)
            .await
            .map_err(|s| anyhow::anyhow!("deploying the {} handler: {}", subject.language, s.message()))?
            .function_id;
        let mut rows = Vec::new();
        for &rate in &spec.rates {
            window(&client, function, rate, spec.warmup).await?;
            let mut row = window(&client, function, rate, spec.window).await?;
            row.runtime = subject.language.name().to_owned();
            row.version = subject.version.clone();
            row.slots = spec.slots;
            row.instance_starts = client
                .clone()
                .cluster_info(api::ClusterInfoRequest {})
                .await?
                .into_inner()
                .counters
                .map_or(0, |c| c.workers_joined);
            rows.push(row);
        }
        anyhow::Ok(rows)
    }
    .await;
    cluster.stop().await?;
    result
}

/// One open-loop window at `rate` for `length`.
async fn window(client: &Client, function: u64, rate: f64, length: Duration) -> anyhow::Result<WarmRow> {
    let schedule = Arc::new(Arrivals::new(Arrival::Poisson, rate, 7)?.schedule(length));
    let requests = |_: usize| api::ExecuteRequest {
        function_id: function,
        args: String::new(),
    };
    let driven = drive::drive(
        client,
        None,
        Default::default(),
        schedule.clone(),
        requests,
        length + Duration::from_secs(10),
    )
    .await?;
    let mut row = WarmRow {
        rate,
        ..Default::default()
    };
    let mut latencies = Vec::new();
    for (intended, req) in schedule.iter().zip(&driven.ledger.requests) {
        row.sent += u64::from(req.sent.is_some());
        if let Fate::Finished(f) = &req.fate {
            if f.completed {
                row.completed += 1;
                row.cold += u64::from(f.cold);
                latencies.push(f.at.saturating_sub(*intended).as_secs_f64() * 1e3);
            }
        }
    }
    row.lost = row.sent - row.completed;
    latencies.sort_by(f64::total_cmp);
    row.p50_ms = crate::stats::percentile(&latencies, 0.5).unwrap_or(0.0);
    row.p99_ms = crate::stats::percentile(&latencies, 0.99).unwrap_or(0.0);
    Ok(row)
}
