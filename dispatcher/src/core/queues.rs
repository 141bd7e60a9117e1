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

    /// A fresh task, behind everything waiting.
    pub(super) fn push_back(&mut self, function: &Arc<str>, task: TaskId) {
        let seq = self.next_back;
        self.next_back += 1;
        self.queue(function).push_back((seq, task));
        self.len += 1;
    }

    /// A requeued task, ahead of everything waiting.
    pub(super) fn push_front(&mut self, function: &Arc<str>, task: TaskId) {
        self.next_front -= 1;
        let seq = self.next_front;
        self.queue(function).push_front((seq, task));
        self.len += 1;
    }

    /// The head of `function`'s queue and its sequence number.
    pub(super) fn front(&self, function: &str) -> Option<(i64, TaskId)> {
        self.by_function.get(function).and_then(|q| q.front().copied())
    }

    /// Removes the head of `function`'s queue.
    pub(super) fn pop_front(&mut self, function: &str) {
        if let Some(q) = self.by_function.get_mut(function) {
            if q.pop_front().is_some() {
                self.len -= 1;
            }
            if q.is_empty() {
                self.by_function.remove(function);
            }
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

    /// Tasks waiting per function.
    pub(super) fn lengths(&self) -> impl Iterator<Item = (&Arc<str>, usize)> {
        self.by_function.iter().map(|(f, q)| (f, q.len()))
    }
}
