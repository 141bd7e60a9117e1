//! Waiting tasks: one FIFO queue per function, so a function whose instances are all busy
//! (or that has none yet) never holds up another's. Across functions, the task that has
//! waited longest goes first: every entry carries a sequence number, and requeued tasks
//! get numbers below every fresh one.

use std::collections::VecDeque;
use std::sync::Arc;
use volley_proto::ids::TaskId;

#[derive(Default)]
pub(super) struct Queues {
    by_function: foldhash::HashMap<Arc<str>, VecDeque<(i64, TaskId)>>,
    next_back: i64,
    next_front: i64,
    len: usize,
}

impl Queues {
    fn queue(&mut self, function: &Arc<str>) -> &mut VecDeque<(i64, TaskId)> {
        // Cloning the key only when the function is new keeps the hot path to one lookup.
        if !self.by_function.contains_key(function) {
            self.by_function.insert(function.clone(), VecDeque::new());
        }
        self.by_function.get_mut(function).expect("inserted above")
    }

    /// Fresh tasks of one function, behind everything waiting: one lookup for the run.
    pub(super) fn extend_back(&mut self, function: &Arc<str>, tasks: &[TaskId]) {
        let first = self.next_back;
        self.next_back += tasks.len() as i64;
        self.queue(function)
            .extend(tasks.iter().enumerate().map(|(i, t)| (first + i as i64, *t)));
        self.len += tasks.len();
    }

    /// A requeued task, ahead of everything waiting.
    pub(super) fn push_front(&mut self, function: &Arc<str>, task: TaskId) {
        self.next_front -= 1;
        let seq = self.next_front;
        self.queue(function).push_front((seq, task));
        self.len += 1;
    }

    /// `function`'s queue, to take tasks from its front; say how many with [`Self::took`].
    pub(super) fn of(&mut self, function: &str) -> Option<&mut VecDeque<(i64, TaskId)>> {
        self.by_function.get_mut(function)
    }

    /// `n` tasks were taken from `function`'s queue through [`Self::of`].
    pub(super) fn took(&mut self, function: &str, n: usize) {
        self.len -= n;
        if self.by_function.get(function).is_some_and(VecDeque::is_empty) {
            self.by_function.remove(function);
        }
    }

    /// Every non-empty queue's function and head sequence number.
    pub(super) fn heads(&self) -> impl Iterator<Item = (i64, &Arc<str>)> {
        self.by_function
            .iter()
            .filter_map(|(f, q)| q.front().map(|(seq, _)| (*seq, f)))
    }

    /// Tasks waiting in all.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Tasks of `function` waiting.
    pub(super) fn len_of(&self, function: &str) -> usize {
        self.by_function.get(function).map_or(0, VecDeque::len)
    }

    /// Tasks waiting per function.
    pub(super) fn lengths(&self) -> impl Iterator<Item = (&Arc<str>, usize)> {
        self.by_function.iter().map(|(f, q)| (f, q.len()))
    }
}
