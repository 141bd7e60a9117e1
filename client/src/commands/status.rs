//! `client status`: one task's state.

use super::{status_error, Target};
use crate::batch::state_name;
use serde_json::json;
use volley_proto::api;

/// Prints the task's state and attempts.
pub async fn run(target: &Target, task_id: u64, as_json: bool) -> anyhow::Result<i32> {
    let mut client = target.connect().await?;
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
