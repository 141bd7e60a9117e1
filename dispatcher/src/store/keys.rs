//! Every Redis key and hash field Volley uses, in one place. All keys live under one
//! prefix (`volley:` by default) so a deployment can share a Redis and tests can isolate
//! themselves. What each transition writes into a task's hash is defined once, in
//! [`super::transition`].

use volley_proto::function::CodeDigest;
use volley_proto::ids::{FunctionId, TaskId};

/// Builds the keys of one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (e.g. `volley:`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Counter that hands out function ids (INCR).
    pub fn function_seq(&self) -> String {
        format!("{}seq:function", self.prefix)
    }

    /// Counter that hands out blocks of task ids (INCRBY).
    pub fn task_seq(&self) -> String {
        format!("{}seq:task", self.prefix)
    }

    /// Hash of one function: [`FUNCTION_NAME`], [`FUNCTION_SPEC`].
    pub fn function(&self, id: FunctionId) -> String {
        format!("{}function:{}", self.prefix, id.0)
    }

    /// A user function's code, by its SHA-256: stored once whatever registers it.
    pub fn code(&self, digest: &CodeDigest) -> String {
        format!("{}code:{digest}", self.prefix)
    }

    /// What every function's key starts with: the key is this and the id.
    pub fn function_prefix(&self) -> String {
        format!("{}function:", self.prefix)
    }

    /// Hash of each function name's latest version number (HINCRBY).
    pub fn function_versions(&self) -> String {
        format!("{}function_versions", self.prefix)
    }

    /// One task's record ([`super::redis::layout`]; a hash with the fields of
    /// [`TaskField`] in the layout before).
    pub fn task(&self, id: TaskId) -> String {
        format!("{}task:{}", self.prefix, id.0)
    }

    /// Writes [`Keys::task`] into `out`, for batches that build thousands of keys.
    pub fn write_task(&self, out: &mut Vec<u8>, id: TaskId) {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}task:{}", self.prefix, id.0);
    }

    /// Set of ids of tasks not yet COMPLETED or FAILED: what a restart recovers.
    pub fn unfinished(&self) -> String {
        format!("{}unfinished", self.prefix)
    }

    /// The pattern matching every task hash of this prefix, for audits.
    pub fn all_tasks(&self) -> String {
        format!("{}task:*", self.prefix)
    }

    /// The task id in a key made by [`Keys::task`].
    pub fn task_id(&self, key: &str) -> Option<TaskId> {
        key.strip_prefix(&self.prefix)?
            .strip_prefix("task:")?
            .parse()
            .ok()
            .map(TaskId)
    }

    /// The pattern matching every key of this prefix, for clean-up.
    pub fn all(&self) -> String {
        format!("{}*", self.prefix)
    }
}

/// The name a function was registered under, in its hash.
pub const FUNCTION_NAME: &str = "name";
/// The function's kind and parameters as JSON, in its hash.
pub const FUNCTION_SPEC: &str = "spec";
/// The function's version under its name, in its hash.
pub const FUNCTION_VERSION: &str = "version";

/// The fields of a task's hash, in the layout before [`super::redis::layout`]: what is
/// read from old records, and what the memory store's records are set by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskField {
    /// Its function's id.
    FunctionId,
    /// Its arguments as given.
    Args,
    /// `queued`, `running`, `completed` or `failed`.
    State,
    /// The result JSON once completed.
    Result,
    /// The error once failed.
    Error,
    /// Attempts made.
    Attempts,
    /// Who runs or ran the last attempt.
    Worker,
    /// Submission time, µs since the epoch.
    SubmittedUs,
    /// Last dispatch time.
    DispatchedUs,
    /// Completion time.
    CompletedUs,
    /// Worker-side queueing of the last attempt.
    WaitUs,
    /// Execution time of the last attempt.
    RunUs,
    /// A cold start's stages: when the scaler decided to start the instance it waited for.
    ColdDecidedUs,
    /// When that instance's process was spawned.
    ColdSpawnedUs,
    /// When its `main` began.
    ColdProcessUs,
    /// When its user function's runtime was spawned (or given its code, prewarmed).
    ColdRuntimeBeganUs,
    /// When that runtime was up, ready for code.
    ColdRuntimeUpUs,
    /// When its initialisation ended.
    ColdInitDoneUs,
    /// When it registered.
    ColdRegisteredUs,
    /// What a runtime function printed during its last attempt.
    Log,
}

impl TaskField {
    /// Every field, in the order documented.
    pub const ALL: [TaskField; 20] = [
        TaskField::FunctionId,
        TaskField::Args,
        TaskField::State,
        TaskField::Result,
        TaskField::Error,
        TaskField::Attempts,
        TaskField::Worker,
        TaskField::SubmittedUs,
        TaskField::DispatchedUs,
        TaskField::CompletedUs,
        TaskField::WaitUs,
        TaskField::RunUs,
        TaskField::ColdDecidedUs,
        TaskField::ColdSpawnedUs,
        TaskField::ColdProcessUs,
        TaskField::ColdRuntimeBeganUs,
        TaskField::ColdRuntimeUpUs,
        TaskField::ColdInitDoneUs,
        TaskField::ColdRegisteredUs,
        TaskField::Log,
    ];

    /// The field's name in the hash.
    pub fn name(self) -> &'static str {
        match self {
            TaskField::FunctionId => "function_id",
            TaskField::Args => "args",
            TaskField::State => "state",
            TaskField::Result => "result",
            TaskField::Error => "error",
            TaskField::Attempts => "attempts",
            TaskField::Worker => "worker",
            TaskField::SubmittedUs => "submitted_us",
            TaskField::DispatchedUs => "dispatched_us",
            TaskField::CompletedUs => "completed_us",
            TaskField::WaitUs => "wait_us",
            TaskField::RunUs => "run_us",
            TaskField::ColdDecidedUs => "cold_decided_us",
            TaskField::ColdSpawnedUs => "cold_spawned_us",
            TaskField::ColdProcessUs => "cold_process_us",
            TaskField::ColdRuntimeBeganUs => "cold_runtime_began_us",
            TaskField::ColdRuntimeUpUs => "cold_runtime_up_us",
            TaskField::ColdInitDoneUs => "cold_init_done_us",
            TaskField::ColdRegisteredUs => "cold_registered_us",
            TaskField::Log => "log",
        }
    }

    /// The field a hash field name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_round_trip_and_task_keys_parse_back() {
        for f in TaskField::ALL {
            assert_eq!(TaskField::parse(f.name()), Some(f));
        }
        let keys = Keys::new("p:");
        assert_eq!(keys.task_id(&keys.task(TaskId(42))), Some(TaskId(42)));
        assert_eq!(keys.task_id("p:function:1"), None);
        assert_eq!(keys.task_id("q:task:1"), None);
    }
}
