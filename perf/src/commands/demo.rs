//! `client demo`: a cluster per mode on the embedded store, a batch through each, a summary.

use crate::cluster::{Cluster, ClusterSpec};
use anyhow::Context;
use std::time::Duration;
use volley_client::commands::submit::print_outcome;
use volley_client::{connect, register_spec, run_batch};
use volley_proto::Mode;

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
}

/// Runs the demo; exits 1 if any task failed.
pub async fn run(a: &DemoArgs, as_json: bool) -> anyhow::Result<i32> {
    let (workers, slots, noop_tasks, sleep_tasks) = (a.workers as usize, a.slots, a.noop_tasks, a.sleep_tasks);
    let mut failed = 0;
    if !as_json {
        println!(
            "Volley demo: {workers} workers × {slots} slots per mode (local: a {}-slot pool), embedded memory store, 127.0.0.1\n",
            workers as u32 * slots
        );
    }
    for mode in [Mode::Local, Mode::Pull, Mode::Push] {
        // The local pool gets as many slots as the workers have together.
        let spec = if mode == Mode::Local {
            ClusterSpec::new(mode, 0, workers as u32 * slots)
        } else {
            ClusterSpec::new(mode, workers, slots)
        };
        let cluster = Cluster::start(spec.label(format!("demo-{mode}")).log_level("warn"))
            .await
            .with_context(|| format!("starting a {mode} cluster"))?;
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
            print_outcome(&format!("{:>5} {spec:<9}", mode.as_str()), &outcome, as_json);
        }
        cluster.stop().await?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
