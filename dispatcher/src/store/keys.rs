//! Every Redis key Volley uses, in one place. All live under one prefix (`volley:` by
//! default) so a deployment can share a Redis and tests can isolate themselves.

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

    /// Hash of one function: `name`, `spec` (JSON).
    pub fn function(&self, id: FunctionId) -> String {
        format!("{}function:{}", self.prefix, id.0)
    }

    /// Hash of one task; fields are listed in `store::redis`.
    pub fn task(&self, id: TaskId) -> String {
        format!("{}task:{}", self.prefix, id.0)
    }

    /// Set of ids of tasks not yet COMPLETED or FAILED: what a restart recovers.
    pub fn unfinished(&self) -> String {
        format!("{}unfinished", self.prefix)
    }

    /// The pattern matching every key of this prefix, for clean-up.
    pub fn all(&self) -> String {
        format!("{}*", self.prefix)
    }
}
