//! What each transition changes in a stored task: the one definition both backends
//! apply. The memory store sets these fields on its record; the Redis store writes the
//! same fields into the task's hash. Neither decides anything of its own.

use super::keys::TaskField;
use super::{Submission, TaskRecord, TaskState};
use crate::core::Transition;
use volley_proto::ids::TaskId;
use volley_proto::wire::Outcome;

/// A stored value: text, a whole number, or a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Text as given.
    Text(&'a str),
    /// A count or a time in µs.
    Number(u64),
    /// A task state (stored as its name).
    State(TaskState),
}

/// One field set to one value.
pub type Change<'a> = (TaskField, Value<'a>);

/// The most fields one transition sets.
const MAX_CHANGES: usize = 9;

/// The changes of one transition, held inline: the memory store applies them on the hot
/// path of every task, where a heap allocation per transition shows in the throughput.
#[derive(Debug, Clone, Copy)]
pub struct Changes<'a> {
    items: [Change<'a>; MAX_CHANGES],
    len: usize,
}

impl<'a> Changes<'a> {
    fn of(list: &[Change<'a>]) -> Self {
        let mut items = [(TaskField::State, Value::Number(0)); MAX_CHANGES];
        items[..list.len()].copy_from_slice(list);
        Self { items, len: list.len() }
    }

    fn push(&mut self, change: Change<'a>) {
        self.items[self.len] = change;
        self.len += 1;
    }
}

impl<'a> std::ops::Deref for Changes<'a> {
    type Target = [Change<'a>];
    fn deref(&self) -> &Self::Target {
        &self.items[..self.len]
    }
}

/// The task a transition is about.
pub fn task_of(t: &Transition) -> TaskId {
    match t {
        Transition::Running { task, .. } | Transition::Requeued { task, .. } => *task,
        Transition::Finished(f) => f.task,
    }
}

/// The fields a freshly queued task is stored with.
pub fn queued(s: &Submission) -> Changes<'_> {
    Changes::of(&[
        (TaskField::FunctionId, Value::Number(s.function_id.0)),
        (TaskField::Args, Value::Text(&s.args)),
        (TaskField::State, Value::State(TaskState::Queued)),
        (TaskField::Attempts, Value::Number(0)),
        (TaskField::SubmittedUs, Value::Number(s.submitted_us)),
    ])
}

/// The fields a transition sets. A `Finished` without a worker (a task lost before any
/// worker ran it) leaves the stored worker as it was.
pub fn changes(t: &Transition) -> Changes<'_> {
    use Value::{Number, State, Text};
    match t {
        Transition::Running {
            attempt, worker, at_us, ..
        } => Changes::of(&[
            (TaskField::State, State(TaskState::Running)),
            (TaskField::Attempts, Number(u64::from(*attempt))),
            (TaskField::Worker, Text(worker)),
            (TaskField::DispatchedUs, Number(*at_us)),
        ]),
        Transition::Requeued { attempts, .. } => Changes::of(&[
            (TaskField::State, State(TaskState::Queued)),
            (TaskField::Attempts, Number(u64::from(*attempts))),
        ]),
        Transition::Finished(f) => {
            let (state, outcome) = match &f.outcome {
                Outcome::Completed(r) => (TaskState::Completed, (TaskField::Result, Text(r))),
                Outcome::Failed(e) | Outcome::Raised { error: e, .. } => {
                    (TaskState::Failed, (TaskField::Error, Text(e)))
                }
            };
            let mut c = Changes::of(&[
                (TaskField::State, State(state)),
                outcome,
                (TaskField::Attempts, Number(u64::from(f.attempts))),
                (TaskField::DispatchedUs, Number(f.dispatched_us)),
                (TaskField::CompletedUs, Number(f.completed_us)),
                (TaskField::WaitUs, Number(f.wait_us)),
                (TaskField::RunUs, Number(f.run_us)),
            ]);
            if let Some(w) = &f.worker {
                c.push((TaskField::Worker, Text(w)));
            }
            if let Outcome::Raised { value, .. } = &f.outcome {
                c.push((TaskField::Result, Text(value)));
            }
            c
        }
    }
}

/// The fields only some finishes set besides [`changes`]: a cold task's instance start,
/// a runtime function's log. Apart, so the changes every task makes stay small enough to
/// copy cheaply.
pub fn rare_changes(t: &Transition) -> Option<Changes<'_>> {
    let Transition::Finished(f) = t else {
        return None;
    };
    if f.cold.is_none() && f.log.is_empty() {
        return None;
    }
    let mut c = Changes::of(&[]);
    if let Some(s) = &f.cold {
        for change in [
            (TaskField::ColdDecidedUs, Value::Number(s.decided_us)),
            (TaskField::ColdSpawnedUs, Value::Number(s.spawned_us)),
            (TaskField::ColdProcessUs, Value::Number(s.process_us)),
            (TaskField::ColdRuntimeBeganUs, Value::Number(s.runtime_began_us)),
            (TaskField::ColdRuntimeUpUs, Value::Number(s.runtime_up_us)),
            (TaskField::ColdInitDoneUs, Value::Number(s.init_done_us)),
            (TaskField::ColdRegisteredUs, Value::Number(s.registered_us)),
        ] {
            c.push(change);
        }
    }
    if !f.log.is_empty() {
        c.push((TaskField::Log, Value::Text(&f.log)));
    }
    Some(c)
}

impl TaskRecord {
    /// An empty record of `id`, to be filled by [`TaskRecord::set`].
    pub fn empty(id: TaskId) -> Self {
        Self {
            id,
            function_id: volley_proto::ids::FunctionId(0),
            args: String::new(),
            state: TaskState::Queued,
            result: String::new(),
            error: String::new(),
            attempts: 0,
            worker: String::new(),
            submitted_us: 0,
            dispatched_us: 0,
            completed_us: 0,
            wait_us: 0,
            run_us: 0,
            cold: None,
            log: String::new(),
        }
    }

    /// A freshly queued task.
    pub fn queued(id: TaskId, s: &Submission) -> Self {
        let mut r = Self::empty(id);
        r.apply_changes(&queued(s));
        r
    }

    /// Applies one transition, as [`changes`] defines it.
    pub fn apply(&mut self, t: &Transition) {
        self.apply_changes(&changes(t));
        if let Some(rare) = rare_changes(t) {
            self.apply_changes(&rare);
        }
    }

    fn apply_changes(&mut self, changes: &[Change<'_>]) {
        for (field, value) in changes {
            // Values built by this module always fit their field.
            let _ = self.set(*field, *value);
        }
    }

    /// Sets one field; a value that does not fit the field is refused with the reason.
    pub fn set(&mut self, field: TaskField, value: Value<'_>) -> Result<(), String> {
        let number = |v: Value<'_>| match v {
            Value::Number(n) => Ok(n),
            Value::Text(t) => t
                .parse::<u64>()
                .map_err(|_| format!("{} is not a number", field.name())),
            Value::State(_) => Err(format!("{} is not a number", field.name())),
        };
        // Text fields keep their buffers: no allocation when the new value fits.
        let text = |into: &mut String, v: Value<'_>| {
            into.clear();
            match v {
                Value::Text(t) => into.push_str(t),
                Value::Number(n) => into.push_str(&n.to_string()),
                Value::State(s) => into.push_str(s.as_str()),
            }
        };
        match field {
            TaskField::FunctionId => self.function_id = volley_proto::ids::FunctionId(number(value)?),
            TaskField::Args => text(&mut self.args, value),
            TaskField::State => {
                self.state = match value {
                    Value::State(s) => s,
                    Value::Text(t) => TaskState::parse(t).ok_or_else(|| "state is not a task state".to_owned())?,
                    Value::Number(_) => return Err("state is not a task state".to_owned()),
                }
            }
            TaskField::Result => text(&mut self.result, value),
            TaskField::Error => text(&mut self.error, value),
            TaskField::Attempts => {
                self.attempts = u32::try_from(number(value)?).map_err(|_| "attempts out of range".to_owned())?
            }
            TaskField::Worker => text(&mut self.worker, value),
            TaskField::SubmittedUs => self.submitted_us = number(value)?,
            TaskField::DispatchedUs => self.dispatched_us = number(value)?,
            TaskField::CompletedUs => self.completed_us = number(value)?,
            TaskField::WaitUs => self.wait_us = number(value)?,
            TaskField::RunUs => self.run_us = number(value)?,
            TaskField::ColdDecidedUs => self.cold.get_or_insert_default().decided_us = number(value)?,
            TaskField::ColdSpawnedUs => self.cold.get_or_insert_default().spawned_us = number(value)?,
            TaskField::ColdProcessUs => self.cold.get_or_insert_default().process_us = number(value)?,
            TaskField::ColdRuntimeBeganUs => self.cold.get_or_insert_default().runtime_began_us = number(value)?,
            TaskField::ColdRuntimeUpUs => self.cold.get_or_insert_default().runtime_up_us = number(value)?,
            TaskField::ColdInitDoneUs => self.cold.get_or_insert_default().init_done_us = number(value)?,
            TaskField::ColdRegisteredUs => self.cold.get_or_insert_default().registered_us = number(value)?,
            TaskField::Log => text(&mut self.log, value),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Finished;
    use volley_proto::ids::FunctionId;

    #[test]
    fn a_finish_without_a_worker_keeps_the_worker_that_ran_it() {
        let sub = Submission {
            function_id: FunctionId(3),
            args: "{}".into(),
            submitted_us: 7,
        };
        let mut r = TaskRecord::queued(TaskId(1), &sub);
        r.apply(&Transition::Running {
            task: TaskId(1),
            attempt: 1,
            worker: "w1".into(),
            at_us: 10,
        });
        r.apply(&Transition::Finished(Finished {
            task: TaskId(1),
            function_id: FunctionId(3),
            outcome: Outcome::Failed("worker_lost".into()),
            attempts: 1,
            worker: None,
            submitted_us: 7,
            dispatched_us: 10,
            completed_us: 20,
            wait_us: 0,
            run_us: 0,
            cold: None,
            log: String::new(),
        }));
        assert_eq!(r.state, TaskState::Failed);
        assert_eq!(r.worker, "w1");
        assert_eq!(
            (r.function_id, r.args.as_str(), r.submitted_us),
            (FunctionId(3), "{}", 7)
        );
        assert_eq!((r.error.as_str(), r.completed_us), ("worker_lost", 20));
    }

    #[test]
    fn a_cold_finish_stores_its_start_stages() {
        let start = crate::core::InstanceStart {
            decided_us: 1,
            spawned_us: 2,
            process_us: 3,
            runtime_began_us: 3,
            runtime_up_us: 4,
            init_done_us: 4,
            registered_us: 5,
        };
        let mut r = TaskRecord::empty(TaskId(1));
        r.apply(&Transition::Finished(Finished {
            task: TaskId(1),
            function_id: FunctionId(3),
            outcome: Outcome::Completed("null".into()),
            attempts: 1,
            worker: Some("inst-1".into()),
            submitted_us: 0,
            dispatched_us: 6,
            completed_us: 7,
            wait_us: 0,
            run_us: 0,
            cold: Some(Box::new(start)),
            log: "printed\n".into(),
        }));
        assert_eq!(r.cold.as_deref(), Some(&start));
        assert_eq!(r.log, "printed\n");
    }

    #[test]
    fn malformed_stored_values_are_refused() {
        let mut r = TaskRecord::empty(TaskId(1));
        assert!(r.set(TaskField::State, Value::Text("exploded")).is_err());
        assert!(r.set(TaskField::Attempts, Value::Text("many")).is_err());
        assert!(r.set(TaskField::RunUs, Value::Text("12")).is_ok());
        assert_eq!(r.run_us, 12);
    }
}
