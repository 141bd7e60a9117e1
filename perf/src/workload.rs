//! The benchmark's vocabulary of work: which built-in a point runs, and the one place
//! that turns it into the spec string a dispatcher registers.

use std::fmt;
use std::str::FromStr;

/// The kind of task a benchmark point runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpType {
    /// Does nothing: pure runtime overhead.
    Noop,
    /// Sleeps for the task duration.
    Sleep,
    /// Busy-loops a core for the task duration.
    Spin,
}

impl OpType {
    /// Every kind, in the order they are documented.
    pub const ALL: [OpType; 3] = [OpType::Noop, OpType::Sleep, OpType::Spin];

    /// The lower-case name used on command lines and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Noop => "noop",
            OpType::Sleep => "sleep",
            OpType::Spin => "spin",
        }
    }

    /// The spec string a dispatcher registers: `noop`, `sleep:<ms>`, `spin:<ms>`.
    pub fn spec(self, task_ms: u64) -> String {
        match self {
            OpType::Noop => "noop".into(),
            other => format!("{}:{task_ms}", other.as_str()),
        }
    }

    /// The task duration a point of this kind really has (a noop has none).
    pub fn task_ms(self, task_ms: u64) -> u64 {
        if self == OpType::Noop {
            0
        } else {
            task_ms
        }
    }

    /// Whether the task has a duration, so slowdown against it means something.
    pub fn has_duration(self) -> bool {
        self != OpType::Noop
    }
}

impl fmt::Display for OpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OpType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OpType::ALL.into_iter().find(|o| o.as_str() == s).ok_or_else(|| {
            format!(
                "unknown optype '{}': expected noop, sleep or spin",
                volley_proto::text::quote(s)
            )
        })
    }
}

/// Weak scaling grows the work with the workers; strong scaling keeps it fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// `tasks_per_worker × workers` tasks.
    Weak,
    /// `strong_tasks` tasks whatever the worker count.
    Strong,
}

impl Scaling {
    /// The lower-case name used on command lines and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Scaling::Weak => "weak",
            Scaling::Strong => "strong",
        }
    }
}

impl std::str::FromStr for Scaling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "weak" => Ok(Scaling::Weak),
            "strong" => Ok(Scaling::Strong),
            other => Err(format!(
                "unknown scaling '{}': expected weak or strong",
                volley_proto::text::quote(other)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_strings_and_names_round_trip() {
        assert_eq!(OpType::Noop.spec(100), "noop");
        assert_eq!(OpType::Sleep.spec(100), "sleep:100");
        assert_eq!(OpType::Spin.spec(5), "spin:5");
        for o in OpType::ALL {
            assert_eq!(o.as_str().parse::<OpType>(), Ok(o));
        }
        assert!("dance".parse::<OpType>().is_err());
        assert_eq!(OpType::Noop.task_ms(100), 0);
    }
}
