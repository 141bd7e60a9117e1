//! Open-loop load: requests leave at a target rate whatever the dispatcher does, and every
//! latency is measured from the request's *intended* send time, so a stalled dispatcher
//! shows up as the latency it really caused (no coordinated omission).
//!
//! Arrivals are uniform (equal gaps) or Poisson (exponential gaps), from a seeded RNG. A
//! cell runs for `duration`; requests intended during the first `warmup` are sent but not
//! counted. Latencies go into HDR histograms (µs, 3 significant digits).

use crate::workload::OpType;
use anyhow::{bail, Context};
use futures::StreamExt;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use volley_client::{register_spec, Client};
use volley_proto::api;

/// How requests are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Every gap is exactly 1 / rate.
    Uniform,
    /// Gaps are exponential with mean 1 / rate (a Poisson process).
    Poisson,
}

impl Arrival {
    /// The name used on command lines and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Arrival::Uniform => "uniform",
            Arrival::Poisson => "poisson",
        }
    }
}

impl std::str::FromStr for Arrival {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uniform" => Ok(Arrival::Uniform),
            "poisson" => Ok(Arrival::Poisson),
            other => Err(format!(
                "unknown arrival process '{other}': expected uniform or poisson"
            )),
        }
    }
}

/// Seeded gaps between consecutive requests.
pub struct Arrivals {
    kind: Arrival,
    mean: f64,
    exp: Option<Exp<f64>>,
    rng: SmallRng,
}

impl Arrivals {
    /// Gaps for `rate` requests per second.
    pub fn new(kind: Arrival, rate: f64, seed: u64) -> anyhow::Result<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("the rate must be a positive number of requests per second, not {rate}");
        }
        let exp = match kind {
            Arrival::Poisson => Some(Exp::new(rate).context("exponential distribution")?),
            Arrival::Uniform => None,
        };
        Ok(Self {
            kind,
            mean: 1.0 / rate,
            exp,
            rng: SmallRng::seed_from_u64(seed),
        })
    }

    /// The next gap, in seconds.
    pub fn next_gap(&mut self) -> f64 {
        match (&self.kind, &self.exp) {
            (Arrival::Poisson, Some(exp)) => exp.sample(&mut self.rng),
            _ => self.mean,
        }
    }

    /// Intended send offsets from the start, for `duration`.
    pub fn schedule(&mut self, duration: Duration) -> Vec<Duration> {
        let end = duration.as_secs_f64();
        let mut t = 0.0;
        let mut out = Vec::new();
        for k in 1u64.. {
            // Uniform offsets are k × gap: summing gaps would drift by rounding.
            t = match self.kind {
                Arrival::Uniform => k as f64 * self.mean,
                Arrival::Poisson => t + self.next_gap(),
            };
            if t >= end {
                break;
            }
            out.push(Duration::from_secs_f64(t));
        }
        out
    }
}

/// One open-loop cell.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Target requests per second.
    pub rate: f64,
    /// Spacing of requests.
    pub arrival: Arrival,
    /// `noop`, `sleep` or `spin`.
    pub optype: OpType,
    /// Task duration for sleep and spin.
    pub task_ms: u64,
    /// How long requests are sent.
    pub duration: Duration,
    /// Requests intended before this are not counted.
    pub warmup: Duration,
    /// How long to wait for stragglers after the last send; unfinished ones count as failures.
    pub drain: Duration,
    /// RNG seed of the arrivals.
    pub seed: u64,
}

/// What one cell measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    /// `uniform` or `poisson`.
    pub arrival: String,
    /// The optype.
    pub optype: String,
    /// Task duration, ms.
    pub task_ms: u64,
    /// Target rate, requests/s.
    pub target_rate: f64,
    /// Counted requests per second actually sent.
    pub achieved_rate: f64,
    /// Counted requests (after warm-up).
    pub requests: u64,
    /// Of those, COMPLETED in time.
    pub completed: u64,
    /// completed / requests.
    pub success_rate: f64,
    /// Latency from intended send to result, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Median latency / task duration (empty for noop).
    pub slowdown_p50: Option<f64>,
    /// 99th percentile latency / task duration.
    pub slowdown_p99: Option<f64>,
    /// Whether the achieved rate is within 20 % of the target; if not, the cell measured
    /// the client, not the dispatcher.
    pub rate_ok: bool,
    /// The arrivals' seed.
    pub seed: u64,
}

/// Runs one cell against a dispatcher. Sends are spawned at their intended times, so a
/// slow answer never delays the next request.
pub async fn run(client: &Client, spec: &LoadSpec) -> anyhow::Result<LoadResult> {
    let task = spec.optype.spec(spec.task_ms);
    let (function_id, args) = register_spec(&mut client.clone(), &task).await?;
    let schedule = Arrivals::new(spec.arrival, spec.rate, spec.seed)?.schedule(spec.duration);

    // Completions, keyed by task id, stamped when they reach us.
    let finished: Arc<Mutex<HashMap<u64, (Instant, bool)>>> = Arc::default();
    let mut watch = client
        .clone()
        .watch_results(api::WatchResultsRequest { task_ids: vec![] })
        .await
        .map_err(|s| anyhow::anyhow!("WatchResults: {}", s.message()))?
        .into_inner();
    let sink = finished.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(msg)) = watch.next().await {
            let now = Instant::now();
            let mut map = sink.lock().await;
            for t in msg.tasks {
                map.insert(t.task_id, (now, t.state == api::TaskState::Completed as i32));
            }
        }
    });

    let start = Instant::now() + Duration::from_millis(50);
    let mut sends = Vec::with_capacity(schedule.len());
    for offset in &schedule {
        let intended = start + *offset;
        tokio::time::sleep_until(intended).await;
        let mut c = client.clone();
        let request = api::ExecuteRequest {
            function_id,
            args: args.clone(),
        };
        sends.push((
            intended,
            *offset >= spec.warmup,
            tokio::spawn(async move { c.execute(request).await }),
        ));
    }
    let sent_until = Instant::now();
    let mut submitted = Vec::with_capacity(sends.len());
    for (intended, counted, handle) in sends {
        let id = match handle.await {
            Ok(Ok(r)) => Some(r.into_inner().task_id),
            _ => None,
        };
        submitted.push((intended, counted, id));
    }
    let deadline = sent_until + spec.drain;
    loop {
        let done = {
            let map = finished.lock().await;
            submitted
                .iter()
                .all(|(_, _, id)| id.is_none_or(|id| map.contains_key(&id)))
        };
        if done || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.abort();

    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).context("histogram")?;
    let (mut requests, mut completed) = (0u64, 0u64);
    let map = finished.lock().await;
    for (intended, counted, id) in &submitted {
        if !counted {
            continue;
        }
        requests += 1;
        if let Some((at, true)) = id.and_then(|id| map.get(&id)) {
            completed += 1;
            let us = at.saturating_duration_since(*intended).as_micros().max(1) as u64;
            hist.saturating_record(us);
        }
    }
    let window = (spec.duration.saturating_sub(spec.warmup)).as_secs_f64().max(1e-9);
    let achieved = requests as f64 / window;
    let ms = |q: f64| {
        if hist.is_empty() {
            0.0
        } else {
            hist.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let slow = |v: f64| (spec.optype.has_duration() && spec.task_ms > 0).then(|| v / spec.task_ms as f64);
    Ok(LoadResult {
        arrival: spec.arrival.as_str().into(),
        optype: spec.optype.to_string(),
        task_ms: spec.task_ms,
        target_rate: spec.rate,
        achieved_rate: achieved,
        requests,
        completed,
        success_rate: if requests == 0 {
            0.0
        } else {
            completed as f64 / requests as f64
        },
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: ms(0.99),
        max_ms: if hist.is_empty() {
            0.0
        } else {
            hist.max() as f64 / 1000.0
        },
        mean_ms: if hist.is_empty() { 0.0 } else { hist.mean() / 1000.0 },
        slowdown_p50: slow(ms(0.50)),
        slowdown_p99: slow(ms(0.99)),
        rate_ok: (achieved - spec.rate).abs() <= 0.2 * spec.rate,
        seed: spec.seed,
    })
}

/// Appends load results to a CSV, with a header when the file is new.
pub fn append(path: &std::path::Path, rows: &[LoadResult]) -> anyhow::Result<()> {
    crate::report::append_rows(path, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(kind: Arrival, rate: f64) -> (f64, f64) {
        let mut a = Arrivals::new(kind, rate, 42).unwrap();
        let gaps: Vec<f64> = (0..100_000).map(|_| a.next_gap()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn poisson_gaps_have_mean_one_over_rate_and_cv_one() {
        let (mean, cv) = stats(Arrival::Poisson, 50.0);
        assert!((mean - 0.02).abs() < 0.02 * 0.02, "mean {mean}");
        assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
    }

    #[test]
    fn uniform_gaps_are_exact() {
        let (mean, cv) = stats(Arrival::Uniform, 50.0);
        assert!((mean - 0.02).abs() < 1e-12, "mean {mean}");
        assert!(cv < 1e-9, "cv {cv}");
    }

    #[test]
    fn schedules_are_seeded_and_fill_the_duration() {
        let a = Arrivals::new(Arrival::Poisson, 100.0, 7)
            .unwrap()
            .schedule(Duration::from_secs(10));
        let b = Arrivals::new(Arrival::Poisson, 100.0, 7)
            .unwrap()
            .schedule(Duration::from_secs(10));
        assert_eq!(a, b);
        assert!((900..1100).contains(&a.len()), "{}", a.len());
        let u = Arrivals::new(Arrival::Uniform, 10.0, 7)
            .unwrap()
            .schedule(Duration::from_secs(1));
        assert_eq!(u.len(), 9);
        assert!(Arrivals::new(Arrival::Uniform, 0.0, 1).is_err());
    }
}

/// The classic open-loop study: rate × spin duration × arrival process, a fresh cluster
/// per cell so an overloaded cell cannot leak its queue into the next.
#[derive(Debug, Clone)]
pub struct GridSpec {
    /// Target rates, requests/s.
    pub rates: Vec<f64>,
    /// Spin durations, ms.
    pub spins: Vec<u64>,
    /// Arrival processes.
    pub arrivals: Vec<Arrival>,
    /// Cluster mode.
    pub mode: volley_proto::Mode,
    /// Workers (local: pool slots = workers × slots).
    pub workers: usize,
    /// Slots per worker.
    pub slots: u32,
    /// Per cell: sending time, warm-up, and the wait for stragglers.
    pub cell: Duration,
    /// Per-cell warm-up.
    pub warmup: Duration,
    /// Per-cell drain.
    pub drain: Duration,
    /// Base seed; each cell derives its own.
    pub seed: u64,
}

/// Runs every cell and appends its row to `out` as soon as it is measured.
pub async fn run_grid(spec: &GridSpec, out: &std::path::Path) -> anyhow::Result<Vec<LoadResult>> {
    use crate::cluster::{Cluster, ClusterSpec};
    use indicatif::{ProgressBar, ProgressStyle};
    let meta = crate::report::RunMeta::collect();
    crate::report::write_meta(out, &meta, Some(spec.seed))?;
    let cells: Vec<(Arrival, u64, f64)> = spec
        .arrivals
        .iter()
        .flat_map(|a| {
            spec.spins
                .iter()
                .flat_map(move |s| spec.rates.iter().map(move |r| (*a, *s, *r)))
        })
        .collect();
    let bar = ProgressBar::new(cells.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} cells, eta {eta} · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut results = Vec::with_capacity(cells.len());
    for (i, (arrival, spin, rate)) in cells.into_iter().enumerate() {
        bar.set_message(format!("{} {rate}/s spin {spin} ms", arrival.as_str()));
        let (procs, slots) = if spec.mode == volley_proto::Mode::Local {
            (0, spec.workers as u32 * spec.slots)
        } else {
            (spec.workers, spec.slots)
        };
        let cluster = Cluster::start(
            ClusterSpec::new(spec.mode, procs, slots)
                .label(format!("grid-{}-{rate}-{spin}", arrival.as_str()))
                .log_level("warn"),
        )
        .await?;
        let client = volley_client::connect(&cluster.grpc_url()).await?;
        let cell = LoadSpec {
            rate,
            arrival,
            optype: OpType::Spin,
            task_ms: spin,
            duration: spec.cell,
            warmup: spec.warmup,
            drain: spec.drain,
            seed: spec.seed.wrapping_add(i as u64),
        };
        let result = run(&client, &cell).await?;
        cluster.stop().await?;
        append(out, std::slice::from_ref(&result))?;
        results.push(result);
        bar.inc(1);
    }
    bar.finish_with_message("done");
    Ok(results)
}
