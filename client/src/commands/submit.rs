//! `client submit`: tasks of one spec, optionally waiting for every outcome.

use super::{status_error, Target};
use crate::batch::{register_spec, run_batch, BatchOutcome};
use serde_json::json;
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
    let outcome = run_batch(&client, tasks, 10_000, timeout).await?;
    print_outcome(spec, &outcome, as_json);
    Ok(if outcome.failed > 0 { 1 } else { 0 })
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
