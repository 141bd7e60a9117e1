//! A replay on an elastic pool (`client replay --autoscale POLICY`): the dispatcher it
//! starts runs instances per function under the policy, and the run's row says what the
//! policy cost — cold starts against idle instance-time — in the columns `client
//! simulate` writes, so a live replay and its simulation compare line by line.

use super::records::InvocationRow;
use crate::studies::replay::simulate::SimRow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use volley_client::Client;
use volley_proto::api;
use volley_proto::Mode;
use volley_testbed::cluster::ClusterSpec;

/// `client replay` flags for an elastic pool.
#[derive(Debug, Clone, clap::Args)]
pub struct ElasticArgs {
    /// Replay on a dispatcher this command starts with this scaling policy and no
    /// worker: instances of each function start and retire as the policy says
    /// (fixed:keepalive=10m, kpa:…, hybrid:…).
    #[arg(long, conflicts_with = "cluster")]
    pub autoscale: Option<String>,
    /// Instances at most, over all functions.
    #[arg(long, default_value_t = 64, requires = "autoscale")]
    pub max_instances: u32,
    /// Slots per instance (container concurrency).
    #[arg(long, default_value_t = 1, requires = "autoscale", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub instance_slots: u32,
    /// Emulated runtime start-up of every instance, ms.
    #[arg(long, default_value_t = 0, requires = "autoscale")]
    pub init_ms: u64,
    /// Append the policy's row (the columns of `client simulate`'s sim.csv) here.
    #[arg(long, requires = "autoscale")]
    pub policy_out: Option<PathBuf>,
}

impl ElasticArgs {
    /// The cluster to start: push mode, no worker, the pool's flags.
    pub fn cluster(&self, policy: &str) -> anyhow::Result<ClusterSpec> {
        let worker = volley_testbed::binaries::path("worker")?;
        Ok(ClusterSpec::new(Mode::Push, 0, self.instance_slots)
            .args(["--autoscale", policy, "--provision", "local"])
            .args(["--worker-bin".to_owned(), worker.display().to_string()])
            .args([
                "--max-instances".to_owned(),
                self.max_instances.to_string(),
                "--instance-slots".to_owned(),
                self.instance_slots.to_string(),
                "--init-ms".to_owned(),
                self.init_ms.to_string(),
            ])
            .label("replay-elastic")
            .log_level("warn"))
    }
}

/// One look at the pool: seconds since watching began, instances ready and starting,
/// tasks queued.
pub type PoolSample = (f64, u32, u32, u64);

/// Watches the pool while a run goes on: instances over time.
pub struct PoolWatch {
    samples: Arc<Mutex<Vec<PoolSample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PoolWatch {
    /// Polls `ClusterInfo` every `every`.
    pub fn start(client: Client, every: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let out = samples.clone();
        let began = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Ok(info) = client.clone().cluster_info(api::ClusterInfoRequest {}).await {
                    let info = info.into_inner();
                    let ready = info.functions.iter().map(|f| f.ready).sum();
                    let starting = info.functions.iter().map(|f| f.starting).sum();
                    let sample = (began.elapsed().as_secs_f64(), ready, starting, info.queued);
                    out.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
                }
            }
        });
        Self { samples, task }
    }

    /// Stops watching; what it saw.
    pub fn stop(self) -> Vec<PoolSample> {
        self.task.abort();
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The most instances (ready or starting) in `samples`.
    pub fn peak(samples: &[PoolSample]) -> u32 {
        samples.iter().map(|s| s.1 + s.2).max().unwrap_or(0)
    }
}

/// The live row: cold starts from the invocations' records, instance starts and idle
/// instance-time from the dispatcher's own accounting, busy instance-time as the union of
/// each instance's run intervals, waits as latency less run time.
pub fn live_row(
    policy: &str,
    invocations: &[InvocationRow],
    info: &api::ClusterInfoResponse,
    peak_instances: u32,
    wall: Duration,
) -> anyhow::Result<SimRow> {
    let spec: volley_dispatcher::scaler::PolicySpec = policy.parse().map_err(|e| anyhow::anyhow!("--autoscale {e}"))?;
    let done: Vec<&InvocationRow> = invocations.iter().filter(|i| i.state == "completed").collect();
    let mut per_function: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut runs: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    let mut waits: Vec<f64> = Vec::with_capacity(done.len());
    for i in &done {
        let e = per_function.entry(&i.function).or_default();
        e.0 += 1;
        e.1 += u64::from(i.cold);
        let (Some(end), Some(ms)) = (i.completed_us, i.actual_ms) else {
            continue;
        };
        let run = (ms * 1e3) as u64;
        runs.entry(&i.worker).or_default().push((end.saturating_sub(run), end));
        waits.push((end.saturating_sub(i.intended_us).saturating_sub(run)) as f64 / 1e3);
    }
    let busy_us: u64 = runs.into_values().map(union_us).sum();
    let mut pct: Vec<f64> = per_function
        .values()
        .map(|(n, cold)| *cold as f64 / *n as f64 * 100.0)
        .collect();
    pct.sort_by(f64::total_cmp);
    waits.sort_by(f64::total_cmp);
    let cold: u64 = per_function.values().map(|(_, c)| c).sum();
    let counters = info.counters.unwrap_or_default();
    Ok(SimRow {
        source: "live",
        policy: spec.label(),
        spec: policy.to_owned(),
        functions: per_function.len(),
        invocations: done.len() as u64,
        cold_starts: cold,
        cold_pct: cold as f64 / done.len().max(1) as f64 * 100.0,
        cold_pct_p50: crate::stats::percentile(&pct, 0.5).unwrap_or(0.0),
        cold_pct_p75: crate::stats::percentile(&pct, 0.75).unwrap_or(0.0),
        instance_starts: counters.workers_joined,
        idle_instance_s: info.functions.iter().map(|f| f.idle_instance_us).sum::<u64>() as f64 / 1e6,
        busy_instance_s: busy_us as f64 / 1e6,
        peak_instances,
        wait_p50_ms: crate::stats::percentile(&waits, 0.5).unwrap_or(0.0),
        wait_p99_ms: crate::stats::percentile(&waits, 0.99).unwrap_or(0.0),
        sim_seconds: wall.as_secs_f64(),
    })
}

/// The length of the union of intervals.
fn union_us(mut spans: Vec<(u64, u64)>) -> u64 {
    spans.sort_unstable();
    let mut total = 0;
    let mut open: Option<(u64, u64)> = None;
    for (a, b) in spans {
        open = match open {
            Some((s, e)) if a <= e => Some((s, e.max(b))),
            Some((s, e)) => {
                total += e - s;
                Some((a, b))
            }
            None => Some((a, b)),
        };
    }
    total + open.map_or(0, |(s, e)| e - s)
}

#[cfg(test)]
mod tests {
    use super::union_us;

    #[test]
    fn overlapping_runs_count_once() {
        assert_eq!(union_us(vec![(0, 10), (5, 15), (20, 25)]), 20);
        assert_eq!(union_us(vec![]), 0);
        assert_eq!(union_us(vec![(3, 4), (0, 1)]), 2);
    }
}
