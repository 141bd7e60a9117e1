//! `client demo`: a cluster per mode on the embedded store, a batch through each, a summary.

use crate::recording::db::RequestRow;
use crate::recording::observe::{ObserveArgs, Observed};
use crate::recording::verdict::{Kind, MetricDef};
use anyhow::Context;
use std::time::Duration;
use volley_client::commands::submit::print_outcome;
use volley_client::{connect, register_spec, run_batch};
use volley_proto::Mode;
use volley_testbed::cluster::{Cluster, ClusterSpec};

/// `client demo` flags.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Workers in pull and push mode (at least 1).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub workers: u64,
    /// Slots per worker, and of the local pool per worker (at least 1).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: u32,
    /// Noop tasks per mode.
    #[arg(long, default_value_t = 50_000)]
    pub noop_tasks: usize,
    /// Sleep tasks (100 ms) per mode.
    #[arg(long, default_value_t = 40)]
    pub sleep_tasks: usize,
    /// Results database, verdicts, telemetry.
    #[command(flatten)]
    pub observe: ObserveArgs,
}

const MODES: [Mode; 3] = [Mode::Local, Mode::Pull, Mode::Push];

/// What a demo can be judged on: per mode, noop throughput and sleep p99; in all, failures.
pub const METRICS: &[MetricDef] = &[
    MetricDef::new("failed", Kind::Number, "tasks FAILED in every mode"),
    MetricDef::new("local_noop_throughput", Kind::Number, "noop tasks/s in local mode"),
    MetricDef::new("pull_noop_throughput", Kind::Number, "noop tasks/s in pull mode"),
    MetricDef::new("push_noop_throughput", Kind::Number, "noop tasks/s in push mode"),
    MetricDef::new("local_sleep_p99", Kind::Time, "sleep:100 p99 in local mode"),
    MetricDef::new("pull_sleep_p99", Kind::Time, "sleep:100 p99 in pull mode"),
    MetricDef::new("push_sleep_p99", Kind::Time, "sleep:100 p99 in push mode"),
];

/// Runs the demo; exits 1 if any task failed, 99 if an assertion failed.
pub async fn run(a: &DemoArgs, as_json: bool) -> anyhow::Result<i32> {
    let mut observed = Observed::start("demo", &a.observe, METRICS, None)?;
    let mut tasks_run = 0u64;
    let (workers, slots, noop_tasks, sleep_tasks) = (a.workers as usize, a.slots, a.noop_tasks, a.sleep_tasks);
    let mut failed = 0;
    if !as_json {
        println!(
            "Volley demo: {workers} workers × {slots} slots per mode (local: a {}-slot pool), embedded memory store, 127.0.0.1\n",
            workers as u32 * slots
        );
    }
    for mode in MODES {
        // The local pool gets as many slots as the workers have together.
        let spec = if mode == Mode::Local {
            ClusterSpec::new(mode, 0, workers as u32 * slots)
        } else {
            ClusterSpec::new(mode, workers, slots)
        };
        let cluster = Cluster::start(spec.label(format!("demo-{mode}")).log_level("warn"))
            .await
            .with_context(|| format!("starting a {mode} cluster"))?;
        observed.sampler().track_cluster(&cluster);
        let mut client = connect(&cluster.grpc_url()).await?;
        for (spec, count) in [("noop", noop_tasks), ("sleep:100", sleep_tasks)] {
            if count == 0 {
                continue;
            }
            let (function_id, args) = register_spec(&mut client, spec).await?;
            let outcome = run_batch(
                &client,
                vec![(function_id, args); count],
                10_000,
                Duration::from_secs(600),
            )
            .await?;
            failed += outcome.failed;
            tasks_run += outcome.submitted as u64;
            print_outcome(&format!("{:>5} {spec:<9}", mode.as_str()), &outcome, as_json);
            let m = &mut observed.record.metrics;
            if spec == "noop" {
                m.insert(format!("{mode}_noop_throughput"), outcome.throughput());
            } else {
                let mut lat: Vec<f64> = outcome
                    .tasks
                    .iter()
                    .map(|t| t.completed_us.saturating_sub(t.submitted_us) as f64 / 1e6)
                    .collect();
                lat.sort_by(f64::total_cmp);
                if let Some(p99) = crate::stats::percentile(&lat, 0.99) {
                    m.insert(format!("{mode}_sleep_p99"), p99);
                }
            }
            let function = format!("{mode}:{spec}");
            observed
                .record
                .requests
                .extend(outcome.tasks.iter().map(|t| RequestRow::from_task(None, &function, t)));
        }
        cluster.stop().await?;
    }
    observed.record.metrics.insert("failed".into(), failed as f64);
    let verdict = observed.finish(tasks_run, as_json)?;
    Ok(crate::recording::observe::exit_code(
        if failed > 0 { 1 } else { 0 },
        verdict,
    ))
}
