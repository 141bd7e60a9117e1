//! `client submit`: tasks of one spec, optionally waiting for every outcome.

use super::{status_error, Target};
use crate::batch::{register_spec, run_batch, BatchOutcome};
use serde_json::json;
use std::io::IsTerminal;
use std::time::Duration;
use volley_proto::api;

/// `client submit` flags.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The function spec: noop, sleep:<ms>, spin:<ms>, echo:<text> or fail:<message>.
    pub spec: String,
    /// How many tasks.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Wait for every outcome and summarise; exit non-zero if any failed.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

/// Submits the tasks; with `--wait`, exits 1 if any failed.
pub async fn run(target: &Target, a: &SubmitArgs, as_json: bool) -> anyhow::Result<i32> {
    let (spec, count) = (a.spec.as_str(), a.count);
    anyhow::ensure!(count > 0, "--count must be at least 1");
    let timeout = Duration::from_secs(a.timeout_s);
    let mut client = target.connect().await?;
    let (function_id, args) = register_spec(&mut client, spec).await?;
    let tasks = vec![(function_id, args); count];
    if !a.wait {
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
    let progress = tokio::spawn(show_progress(client.clone(), count));
    let outcome = run_batch(&client, tasks, 10_000, timeout).await;
    progress.abort();
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
    let outcome = outcome?;
    print_outcome(spec, &outcome, as_json);
    Ok(if outcome.failed > 0 { 1 } else { 0 })
}

/// How often the wait shows where it stands.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// While `submit --wait` waits: on a terminal, one updating line of what the dispatcher
/// has finished, queued and running, and how many workers it has; anywhere, one warning
/// when no worker is connected to run the tasks, saying how to start one.
async fn show_progress(mut client: crate::Client, count: usize) {
    let info = |c: &mut crate::Client| {
        let mut c = c.clone();
        async move {
            c.cluster_info(api::ClusterInfoRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        }
    };
    let finished = |i: &api::ClusterInfoResponse| i.counters.as_ref().map_or(0, |c| c.completed + c.failed);
    let failed = |i: &api::ClusterInfoResponse| i.counters.as_ref().map_or(0, |c| c.failed);
    let Some(first) = info(&mut client).await else { return };
    let (base_done, base_failed) = (finished(&first), failed(&first));
    let terminal = std::io::stderr().is_terminal();
    let mut warned = false;
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let Some(i) = info(&mut client).await else { continue };
        let workers = if i.mode == "local" { 1 } else { i.workers.len() };
        if workers == 0 && !warned {
            warned = true;
            eprintln!(
                "{}no worker is connected to this {} dispatcher, so the tasks wait in its queue; start one in another terminal with:\n  worker 1 {}",
                if terminal { "\r\x1b[2K" } else { "" },
                i.mode,
                i.worker_endpoint
            );
        }
        if terminal {
            let done = finished(&i).saturating_sub(base_done);
            eprint!(
                "\r\x1b[2K{done}/{count} finished ({} failed) · {} queued, {} running · {workers} worker(s)",
                failed(&i).saturating_sub(base_failed),
                i.queued,
                i.running
            );
        }
    }
}

/// One line (or JSON object) summarising a batch.
pub fn print_outcome(label: &str, o: &BatchOutcome, as_json: bool) {
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
