//! The operator commands.

use crate::{connect, register_spec, run_batch, state_name, BatchOutcome};
use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use std::time::Duration;
use volley_perf::{Cluster, ClusterSpec};
use volley_proto::api;
use volley_proto::Mode;

/// Drives a Volley dispatcher.
#[derive(Debug, Parser)]
#[command(name = "client", version)]
pub struct Cli {
    /// The dispatcher's gRPC address.
    #[arg(
        long,
        global = true,
        env = "VOLLEY_DISPATCHER_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub dispatcher: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mode, store, workers, queue and counters of a running dispatcher.
    Info,
    /// Submits tasks: noop, sleep:<ms>, spin:<ms>, echo:<text> or fail:<message>.
    Submit {
        /// The function spec.
        spec: String,
        /// How many tasks.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Wait for every outcome and summarise; exit non-zero if any failed.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
    /// A task's state.
    Status {
        /// The task id.
        task_id: u64,
    },
    /// A task's full record: state, result or error, attempts, timings.
    Result {
        /// The task id.
        task_id: u64,
    },
    /// Starts a cluster per mode on the embedded store, runs a batch through each, and
    /// prints a summary.
    Demo {
        /// Workers in pull and push mode.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Slots per worker (and of the local pool).
        #[arg(long, default_value_t = 2)]
        slots: u32,
        /// Noop tasks per mode.
        #[arg(long, default_value_t = 50_000)]
        noop_tasks: usize,
        /// Sleep tasks (100 ms) per mode.
        #[arg(long, default_value_t = 40)]
        sleep_tasks: usize,
    },
}

/// Runs one command; the exit code is non-zero when tasks failed.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Info => info(&cli.dispatcher, cli.json).await,
        Command::Submit {
            spec,
            count,
            wait,
            timeout_s,
        } => {
            submit(
                &cli.dispatcher,
                &spec,
                count,
                wait,
                Duration::from_secs(timeout_s),
                cli.json,
            )
            .await
        }
        Command::Status { task_id } => status(&cli.dispatcher, task_id, cli.json).await,
        Command::Result { task_id } => result(&cli.dispatcher, task_id, cli.json).await,
        Command::Demo {
            workers,
            slots,
            noop_tasks,
            sleep_tasks,
        } => demo(workers, slots, noop_tasks, sleep_tasks, cli.json).await,
    }
}

fn status_error(what: &str, s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{what}: {} ({:?})", s.message(), s.code())
}

async fn info(url: &str, as_json: bool) -> anyhow::Result<i32> {
    let mut client = connect(url).await?;
    let i = client
        .cluster_info(api::ClusterInfoRequest {})
        .await
        .map_err(|s| status_error("ClusterInfo", s))?
        .into_inner();
    let c = i.counters.unwrap_or_default();
    if as_json {
        let workers: Vec<_> = i
            .workers
            .iter()
            .map(|w| json!({"id": w.id, "name": w.name, "host": w.host, "pid": w.pid, "slots": w.slots, "in_flight": w.in_flight}))
            .collect();
        println!(
            "{}",
            json!({
                "mode": i.mode, "store": i.store, "worker_endpoint": i.worker_endpoint, "version": i.version,
                "policy": i.policy, "prefetch": i.prefetch, "queued": i.queued, "running": i.running,
                "workers": workers,
                "counters": {
                    "submitted": c.submitted, "dispatched": c.dispatched, "completed": c.completed,
                    "failed": c.failed, "requeued": c.requeued, "duplicate_results": c.duplicate_results,
                    "dropped_frames": c.dropped_frames, "workers_joined": c.workers_joined,
                    "workers_lost": c.workers_lost, "rejected_submissions": c.rejected_submissions,
                }
            })
        );
    } else {
        println!(
            "mode {} · store {} · policy {} · prefetch {} · volley {}",
            i.mode, i.store, i.policy, i.prefetch, i.version
        );
        if !i.worker_endpoint.is_empty() {
            println!("workers connect to {}", i.worker_endpoint);
        }
        println!("queued {} · running {}", i.queued, i.running);
        println!("{} workers:", i.workers.len());
        for w in &i.workers {
            println!(
                "  #{:<4} {:<24} {:>4} slots {:>5} in flight  ({} pid {})",
                w.id, w.name, w.slots, w.in_flight, w.host, w.pid
            );
        }
        println!(
            "submitted {} · dispatched {} · completed {} · failed {} · requeued {} · duplicate results {} · dropped frames {} · workers joined {} lost {} · rejected submissions {}",
            c.submitted, c.dispatched, c.completed, c.failed, c.requeued, c.duplicate_results, c.dropped_frames, c.workers_joined, c.workers_lost, c.rejected_submissions
        );
    }
    Ok(0)
}

async fn submit(
    url: &str,
    spec: &str,
    count: usize,
    wait: bool,
    timeout: Duration,
    as_json: bool,
) -> anyhow::Result<i32> {
    anyhow::ensure!(count > 0, "--count must be at least 1");
    let mut client = connect(url).await?;
    let (function_id, args) = register_spec(&mut client, spec).await?;
    let tasks = vec![(function_id, args); count];
    if !wait {
        let ids = client
            .execute_batch(api::ExecuteBatchRequest {
                tasks: tasks
                    .into_iter()
                    .map(|(function_id, args)| api::ExecuteRequest { function_id, args })
                    .collect(),
            })
            .await
            .map_err(|s| status_error("ExecuteBatch", s))?
            .into_inner()
            .task_ids;
        if as_json {
            println!("{}", json!({ "submitted": ids.len(), "task_ids": ids }));
        } else {
            ids.iter().for_each(|id| println!("{id}"));
        }
        return Ok(0);
    }
    let outcome = run_batch(&client, tasks, 10_000, timeout).await?;
    print_outcome(spec, &outcome, as_json);
    Ok(if outcome.failed > 0 { 1 } else { 0 })
}

fn print_outcome(label: &str, o: &BatchOutcome, as_json: bool) {
    if as_json {
        let first_error = o
            .tasks
            .iter()
            .find(|t| t.state == api::TaskState::Failed as i32)
            .map(|t| t.error.clone());
        println!(
            "{}",
            json!({
                "spec": label, "submitted": o.submitted, "completed": o.completed, "failed": o.failed,
                "seconds": o.elapsed.as_secs_f64(), "tasks_per_second": o.throughput(), "first_error": first_error,
            })
        );
    } else {
        println!(
            "{label}: {} submitted, {} completed, {} failed in {:.3} s ({:.0} tasks/s)",
            o.submitted,
            o.completed,
            o.failed,
            o.elapsed.as_secs_f64(),
            o.throughput()
        );
        if let Some(t) = o.tasks.iter().find(|t| t.state == api::TaskState::Failed as i32) {
            println!("  first failure: task {}: {}", t.task_id, t.error);
        }
    }
}

async fn status(url: &str, task_id: u64, as_json: bool) -> anyhow::Result<i32> {
    let mut client = connect(url).await?;
    let s = client
        .get_status(api::GetStatusRequest { task_id })
        .await
        .map_err(|s| status_error("GetStatus", s))?
        .into_inner();
    if as_json {
        println!(
            "{}",
            json!({"task_id": s.task_id, "state": state_name(s.state), "attempts": s.attempts})
        );
    } else {
        println!("task {} {} (attempts {})", s.task_id, state_name(s.state), s.attempts);
    }
    Ok(0)
}

async fn result(url: &str, task_id: u64, as_json: bool) -> anyhow::Result<i32> {
    let mut client = connect(url).await?;
    let t = client
        .get_result(api::GetResultRequest { task_id })
        .await
        .map_err(|s| status_error("GetResult", s))?
        .into_inner()
        .task
        .context("the dispatcher sent an empty result")?;
    if as_json {
        println!(
            "{}",
            json!({
                "task_id": t.task_id, "function_id": t.function_id, "state": state_name(t.state),
                "result": t.result, "error": t.error, "attempts": t.attempts, "worker": t.worker,
                "submitted_us": t.submitted_us, "dispatched_us": t.dispatched_us, "completed_us": t.completed_us,
                "wait_us": t.wait_us, "run_us": t.run_us,
            })
        );
    } else {
        println!(
            "task {} {} after {} attempt(s) on {}",
            t.task_id,
            state_name(t.state),
            t.attempts,
            if t.worker.is_empty() { "-" } else { &t.worker }
        );
        if !t.result.is_empty() {
            println!("result: {}", t.result);
        }
        if !t.error.is_empty() {
            println!("error: {}", t.error);
        }
    }
    Ok(0)
}

async fn demo(workers: usize, slots: u32, noop_tasks: usize, sleep_tasks: usize, as_json: bool) -> anyhow::Result<i32> {
    let mut failed = 0;
    if !as_json {
        println!("Volley demo: {workers} workers × {slots} slots per mode, embedded memory store, 127.0.0.1\n");
    }
    for mode in [Mode::Local, Mode::Pull, Mode::Push] {
        let cluster = Cluster::start(
            ClusterSpec::new(mode, workers, slots)
                .label(format!("demo-{mode}"))
                .log_level("warn"),
        )
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
            print_outcome(&format!("{mode:>5} {spec:<9}"), &outcome, as_json);
        }
        cluster.stop().await?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
