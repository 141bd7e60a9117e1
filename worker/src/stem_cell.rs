//! A stem cell: a worker a provisioner starts before it knows which function the
//! instance will serve (OpenWhisk's prewarmed containers). It starts its runtimes
//! (`--prewarm LANG=SLOTS`) and waits; the provisioner's [`Assignment`], one line of JSON
//! on its stdin, makes it an instance of a function, so that instance's cold start is
//! only the code's loading, registration and dispatch.

use crate::provisioned::ProcessStart;
use crate::session::WorkerConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;
use volley_proto::function::UserCode;

/// What a stem cell becomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The function it serves.
    pub function: String,
    /// The name it registers under.
    pub name: String,
    /// When the scaler decided to start the instance (µs since the epoch, the
    /// dispatcher's clock).
    pub decided_us: u64,
    /// When the provisioner handed this assignment over (same clock): the instance's
    /// "spawn".
    pub spawned_us: u64,
    /// The function's code file and the function, for a user function.
    pub code: Option<(PathBuf, UserCode)>,
}

impl Assignment {
    /// The line the provisioner writes.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// Makes `config` that of an instance of this function, started now.
    pub fn apply(self, config: &mut WorkerConfig) {
        let now = std::time::Instant::now();
        config.function = Some(self.function);
        config.name = self.name;
        config.instance_code = self.code.map(|(path, code)| (Arc::new(code), path));
        config.start = Some(ProcessStart {
            decided_us: self.decided_us,
            spawned_us: self.spawned_us,
            main: now,
            init_done: now,
            runtime: None,
            code: None,
        });
    }
}

/// Waits for the assignment on stdin; `None` when stdin closed first (the provisioner
/// is gone, or retired the cell).
pub async fn wait_for_assignment() -> Result<Option<Assignment>, String> {
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    match stdin.read_line(&mut line).await {
        Ok(0) => Ok(None),
        Ok(_) => serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| format!("the provisioner's assignment is not one: {e}")),
        Err(e) => Err(format!("cannot read the assignment: {e}")),
    }
}
