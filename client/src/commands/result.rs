//! `client result`: one task's full record.

use super::{status_error, Target};
use crate::batch::state_name;
use anyhow::Context;
use serde_json::json;
use volley_proto::api;

/// A task's record as JSON: state, result or error, log, timings, cold-start stages.
pub fn task_json(t: &api::TaskInfo) -> serde_json::Value {
    json!({
        "task_id": t.task_id, "function_id": t.function_id, "state": state_name(t.state),
        "result": t.result, "error": t.error, "log": t.log, "attempts": t.attempts, "worker": t.worker,
        "submitted_us": t.submitted_us, "dispatched_us": t.dispatched_us, "completed_us": t.completed_us,
        "wait_us": t.wait_us, "run_us": t.run_us, "cold": t.cold,
        "cold_start": t.cold_start.as_ref().map(|s| json!({
            "decided_us": s.decided_us, "spawned_us": s.spawned_us, "process_us": s.process_us,
            "runtime_began_us": s.runtime_began_us, "runtime_up_us": s.runtime_up_us,
            "init_done_us": s.init_done_us, "registered_us": s.registered_us,
        })),
    })
}

/// Prints the task's state, result or error, attempts and timings.
pub async fn run(target: &Target, task_id: u64, as_json: bool) -> anyhow::Result<i32> {
    let mut client = target.connect().await?;
    let t = client
        .get_result(api::GetResultRequest { task_id })
        .await
        .map_err(|s| status_error("GetResult", s))?
        .into_inner()
        .task
        .context("the dispatcher sent an empty result")?;
    if as_json {
        println!("{}", task_json(&t));
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
        if !t.log.is_empty() {
            println!("log:\n{}", t.log.trim_end());
        }
        if let Some(marks) = t.cold_start_marks() {
            // Milliseconds from submission; a stage before it shows as negative.
            let [_, rest @ ..] = marks.map(|us| (us as f64 - t.submitted_us as f64) / 1e3);
            let [decided, spawned, main, rt_began, rt_up, init, registered, dispatched, completed] = rest;
            println!(
                "cold start (ms from submission): decided {decided:+.2}, spawned {spawned:+.2}, main {main:+.2}, runtime began {rt_began:+.2}, runtime up {rt_up:+.2}, init done {init:+.2}, registered {registered:+.2}, dispatched {dispatched:+.2}, completed {completed:+.2}"
            );
        }
    }
    Ok(0)
}
