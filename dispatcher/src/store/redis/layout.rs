//! How a task is stored in Redis: one string per task, written once per durable
//! transition and read back only by recovery, audits and clients asking for a record.
//!
//! The string is a sequence of segments, each a tag byte and its fields (LEB128
//! numbers, length-prefixed text):
//! - `Q` queued: function id, submission time, attempts, arguments. Written by `MSET`
//!   when the task is submitted.
//! - `R` requeued: attempts. `APPEND`ed when a lost attempt sends it back to the queue.
//! - `F` finished: everything a client is told. It *replaces* the string (`MSET`): a
//!   finished task is never recovered, so its arguments, which only recovery reads, go.
//!
//! RUNNING is not written at all: a restarted dispatcher requeues every unfinished task
//! whatever it was doing, so it would be a write per task that nothing reads back. The
//! dispatcher that dispatched it knows, and says so to clients ([`super::running`]).
//!
//! Tasks stored by releases before this layout are hashes; [`from_hash`] reads them.

use crate::core::{Finished, InstanceStart};
use crate::store::keys::TaskField;
use crate::store::transition::Value;
use crate::store::{Submission, TaskRecord, TaskState};
use std::collections::HashMap;
use volley_proto::ids::{FunctionId, TaskId};
use volley_proto::wire::Outcome;

const QUEUED: u8 = b'Q';
const REQUEUED: u8 = b'R';
const FINISHED: u8 = b'F';

/// Appends a freshly queued task's string to `out`.
pub fn queued(out: &mut Vec<u8>, s: &Submission) {
    out.push(QUEUED);
    number(out, s.function_id.0);
    number(out, s.submitted_us);
    number(out, 0);
    text(out, &s.args);
}

/// Appends the segment a requeue adds to `out`.
pub fn requeued(out: &mut Vec<u8>, attempts: u32) {
    out.push(REQUEUED);
    number(out, u64::from(attempts));
}

/// Appends a finished task's string to `out`; `worker` is who ran its last attempt.
pub fn finished(out: &mut Vec<u8>, f: &Finished, worker: &str) {
    out.push(FINISHED);
    let (state, result, error) = match &f.outcome {
        Outcome::Completed(r) => (TaskState::Completed, r.as_str(), ""),
        Outcome::Failed(e) => (TaskState::Failed, "", e.as_str()),
        Outcome::Raised { error, value } => (TaskState::Failed, value.as_str(), error.as_str()),
    };
    out.push(u8::from(state == TaskState::Completed));
    text(out, result);
    text(out, error);
    text(out, worker);
    for n in [
        f.function_id.0,
        u64::from(f.attempts),
        f.submitted_us,
        f.dispatched_us,
        f.completed_us,
        f.wait_us,
        f.run_us,
    ] {
        number(out, n);
    }
    match &f.cold {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            for n in [
                s.decided_us,
                s.spawned_us,
                s.process_us,
                s.runtime_began_us,
                s.runtime_up_us,
                s.init_done_us,
                s.registered_us,
            ] {
                number(out, n);
            }
        }
    }
    text(out, &f.log);
}

/// Reads a task's string back.
pub fn parse(id: TaskId, mut bytes: &[u8]) -> Result<TaskRecord, String> {
    let mut r = TaskRecord::empty(id);
    if bytes.is_empty() {
        return Err("empty record".into());
    }
    while let Some((&tag, rest)) = bytes.split_first() {
        let mut c = Cursor(rest);
        match tag {
            QUEUED => {
                r.function_id = FunctionId(c.number()?);
                r.submitted_us = c.number()?;
                r.attempts = c.count()?;
                r.args = c.text()?.to_owned();
                r.state = TaskState::Queued;
            }
            REQUEUED => {
                let attempts = c.count()?;
                // Finished is final: a requeue segment after it (appended out of order
                // by releases before 2026-12-06) does not reopen the task.
                if !r.state.is_terminal() {
                    r.attempts = attempts;
                    r.state = TaskState::Queued;
                }
            }
            FINISHED => {
                r.state = if c.byte()? == 1 {
                    TaskState::Completed
                } else {
                    TaskState::Failed
                };
                r.result = c.text()?.to_owned();
                r.error = c.text()?.to_owned();
                r.worker = c.text()?.to_owned();
                r.function_id = FunctionId(c.number()?);
                r.attempts = c.count()?;
                r.submitted_us = c.number()?;
                r.dispatched_us = c.number()?;
                r.completed_us = c.number()?;
                r.wait_us = c.number()?;
                r.run_us = c.number()?;
                if c.byte()? == 1 {
                    r.cold = Some(Box::new(InstanceStart {
                        decided_us: c.number()?,
                        spawned_us: c.number()?,
                        process_us: c.number()?,
                        runtime_began_us: c.number()?,
                        runtime_up_us: c.number()?,
                        init_done_us: c.number()?,
                        registered_us: c.number()?,
                    }));
                }
                r.log = c.text()?.to_owned();
            }
            other => return Err(format!("unknown segment {other:#04x} (written by a newer release?)")),
        }
        bytes = c.0;
    }
    Ok(r)
}

/// Reads a task stored as a hash, the layout before this one; `None` when the hash is
/// empty (no such task).
pub fn from_hash(id: TaskId, h: &HashMap<String, String>) -> Result<Option<TaskRecord>, String> {
    if h.is_empty() {
        return Ok(None);
    }
    if !h.contains_key(TaskField::State.name()) {
        return Err("no valid state".into());
    }
    let mut record = TaskRecord::empty(id);
    for (name, value) in h {
        // Fields a newer release added are ignored; known ones must be readable.
        if let Some(field) = TaskField::parse(name) {
            record.set(field, Value::Text(value))?;
        }
    }
    Ok(Some(record))
}

fn number(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn text(out: &mut Vec<u8>, s: &str) {
    number(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let (&b, rest) = self.0.split_first().ok_or("record cut short")?;
        self.0 = rest;
        Ok(b)
    }

    fn number(&mut self) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("number too long".into())
    }

    fn count(&mut self) -> Result<u32, String> {
        u32::try_from(self.number()?).map_err(|_| "attempts out of range".to_owned())
    }

    fn text(&mut self) -> Result<&'a str, String> {
        let len = usize::try_from(self.number()?).map_err(|_| "text too long")?;
        if len > self.0.len() {
            return Err("record cut short".into());
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).map_err(|_| "text is not UTF-8".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish(outcome: Outcome, cold: Option<InstanceStart>) -> Finished {
        Finished {
            task: TaskId(9),
            function_id: FunctionId(3),
            outcome,
            attempts: 2,
            worker: None,
            submitted_us: 1_700_000_000_000_000,
            dispatched_us: 1_700_000_000_000_100,
            completed_us: 1_700_000_000_000_200,
            wait_us: 5,
            run_us: 300,
            cold: cold.map(Box::new),
            log: "printed\n".into(),
        }
    }

    #[test]
    fn a_task_reads_back_after_each_durable_transition() {
        let sub = Submission {
            function_id: FunctionId(3),
            args: "{\"ms\": 20, \"é\": 1}".into(),
            submitted_us: 1_700_000_000_000_000,
        };
        let mut s = Vec::new();
        queued(&mut s, &sub);
        let r = parse(TaskId(9), &s).unwrap();
        assert_eq!(
            (r.state, r.args.as_str(), r.attempts),
            (TaskState::Queued, sub.args.as_str(), 0)
        );
        requeued(&mut s, 1);
        requeued(&mut s, 2);
        let r = parse(TaskId(9), &s).unwrap();
        assert_eq!(
            (r.state, r.attempts, r.function_id),
            (TaskState::Queued, 2, FunctionId(3))
        );

        let start = InstanceStart {
            decided_us: 1,
            spawned_us: 2,
            process_us: 3,
            runtime_began_us: 4,
            runtime_up_us: 5,
            init_done_us: 6,
            registered_us: 7,
        };
        let f = finish(Outcome::Completed("null".into()), Some(start));
        let mut s = Vec::new();
        finished(&mut s, &f, "w-1");
        let r = parse(TaskId(9), &s).unwrap();
        assert_eq!(
            (r.state, r.result.as_str(), r.worker.as_str()),
            (TaskState::Completed, "null", "w-1")
        );
        assert_eq!((r.attempts, r.run_us, r.completed_us), (2, 300, f.completed_us));
        assert_eq!((r.cold.as_deref(), r.log.as_str()), (Some(&start), "printed\n"));
        // A requeue segment behind a finish (written out of order by earlier releases)
        // does not reopen the task.
        requeued(&mut s, 3);
        let r = parse(TaskId(9), &s).unwrap();
        assert_eq!((r.state, r.attempts), (TaskState::Completed, 2));

        let f = finish(
            Outcome::Raised {
                error: "boom".into(),
                value: "\"pickled\"".into(),
            },
            None,
        );
        let mut s = Vec::new();
        finished(&mut s, &f, "");
        let r = parse(TaskId(9), &s).unwrap();
        assert_eq!(
            (r.state, r.error.as_str(), r.result.as_str(), r.cold),
            (TaskState::Failed, "boom", "\"pickled\"", None)
        );
    }

    #[test]
    fn damaged_records_are_refused_never_misread() {
        let sub = Submission {
            function_id: FunctionId(1),
            args: "x".repeat(300),
            submitted_us: 5,
        };
        let mut s = Vec::new();
        queued(&mut s, &sub);
        for cut in 0..s.len() {
            assert!(parse(TaskId(1), &s[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse(TaskId(1), b"Zjunk").is_err());
        assert!(parse(TaskId(1), &[b'R', 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }
}
