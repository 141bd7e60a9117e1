//! `client invoke`: tasks of a deployed function by name, waiting for their outcomes.

use super::result::task_json;
use super::submit::print_outcome;
use super::Target;
use crate::batch::run_batch;
use std::time::Duration;
use volley_proto::api;

/// `client invoke` flags.
#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// The function's name (its latest version runs).
    pub name: String,
    /// The event, a JSON text (default: null).
    #[arg(long, default_value = "")]
    pub args: String,
    /// How many tasks; more than one prints the summary `submit --wait` prints.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,
}

/// Invokes and waits: with one task prints its result (exit 0) or its error (exit 1).
pub async fn run(target: &Target, a: &InvokeArgs, as_json: bool) -> anyhow::Result<i32> {
    anyhow::ensure!(a.count > 0, "--count must be at least 1");
    if !a.args.trim().is_empty() {
        serde_json::from_str::<serde_json::Value>(&a.args).map_err(|e| anyhow::anyhow!("--args is not JSON: {e}"))?;
    }
    let mut client = target.connect().await?;
    let function = super::functions::latest(&mut client, &a.name).await?;
    let tasks = vec![(function.function_id, a.args.clone()); a.count];
    let outcome = run_batch(&client, tasks, 10_000, Duration::from_secs(a.timeout_s)).await?;
    if a.count > 1 {
        print_outcome(&a.name, &outcome, as_json);
        return Ok(if outcome.failed > 0 { 1 } else { 0 });
    }
    let task = outcome
        .tasks
        .first()
        .ok_or_else(|| anyhow::anyhow!("the dispatcher reported no outcome"))?;
    let failed = task.state == api::TaskState::Failed as i32;
    if as_json {
        println!("{}", task_json(task));
    } else {
        if !task.log.is_empty() {
            eprint!("{}", task.log);
        }
        if failed {
            println!("{}", task.error);
        } else {
            println!("{}", task.result);
        }
    }
    Ok(if failed { 1 } else { 0 })
}
