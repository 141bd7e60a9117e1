//! The rate × spin duration × arrival grid: a fresh cluster per cell, so an overloaded
//! cell cannot leak its queue into the next.

use super::{append, run, Arrival, LoadResult, LoadSpec};
use crate::workload::OpType;
use std::time::Duration;

/// The classic open-loop study: rate × spin duration × arrival process.
#[derive(Debug, Clone)]
pub struct GridSpec {
    /// Target rates, requests/s.
    pub rates: Vec<f64>,
    /// Spin durations, ms.
    pub spins: Vec<u64>,
    /// Arrival processes.
    pub arrivals: Vec<Arrival>,
    /// The cluster each cell runs on.
    pub shape: Shape,
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
    run_grid_observed(spec, out, None).await
}

/// [`run_grid`], with every cell's cluster followed by `tracker`.
pub async fn run_grid_observed(
    spec: &GridSpec,
    out: &std::path::Path,
    tracker: Option<&crate::recording::sampler::Tracker>,
) -> anyhow::Result<Vec<LoadResult>> {
    use indicatif::{ProgressBar, ProgressStyle};
    let meta = crate::recording::tables::RunMeta::collect();
    crate::recording::tables::write_meta(out, &meta, Some(spec.seed))?;
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
        let cell = LoadSpec {
            rate,
            arrival,
            optype: OpType::Spin,
            task_ms: spin,
            duration: spec.cell,
            warmup: spec.warmup,
            drain: spec.drain,
            seed: spec.seed.wrapping_add(i as u64),
            function: None,
            transport: Default::default(),
            follow: None,
        };
        let label = format!("grid-{}-{rate}-{spin}", arrival.as_str());
        let result = spec.shape.run_observed(&label, &cell, tracker).await?;
        append(out, std::slice::from_ref(&result))?;
        results.push(result);
        bar.inc(1);
    }
    bar.finish_with_message("done");
    Ok(results)
}

/// The cluster a fresh-cluster run starts: mode, workers and slots per worker (in local
/// mode, a pool of workers × slots).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Cluster mode.
    pub mode: volley_proto::Mode,
    /// Workers.
    pub workers: usize,
    /// Slots per worker.
    pub slots: u32,
}

impl Shape {
    /// Starts a cluster of this shape, runs `spec` on it, and stops it.
    pub async fn run(&self, label: &str, spec: &LoadSpec) -> anyhow::Result<LoadResult> {
        self.run_observed(label, spec, None).await
    }

    /// [`Shape::run`], with the cluster's processes followed by `sampler`.
    pub async fn run_observed(
        &self,
        label: &str,
        spec: &LoadSpec,
        sampler: Option<&crate::recording::sampler::Tracker>,
    ) -> anyhow::Result<LoadResult> {
        use volley_testbed::cluster::{Cluster, ClusterSpec};
        let (procs, slots) = if self.mode == volley_proto::Mode::Local {
            (0, self.workers as u32 * self.slots)
        } else {
            (self.workers, self.slots)
        };
        let cluster = Cluster::start(ClusterSpec::new(self.mode, procs, slots).label(label).log_level("warn")).await?;
        if let Some(s) = sampler {
            s.track_cluster(&cluster);
        }
        let client = volley_client::connect(&cluster.grpc_url()).await?;
        let result = run(&client, spec).await;
        cluster.stop().await?;
        result
    }
}
