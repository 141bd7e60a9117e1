//! A scheduling pass: waiting tasks onto workers with room, one function's queue at a
//! time, the longest-waiting first across functions.

use super::{Capacity, Comm, Now, SchedulerCore, TaskAssignment, TaskEntry, TaskState, Transition};
use std::sync::Arc;
use volley_proto::ids::{TaskId, WorkerId};

impl SchedulerCore {
    /// Tasks a worker began that were sent while its slots were taken: RUNNING now, with
    /// the time they were dispatched. A start of another attempt, or from another worker,
    /// is stale and ignored.
    pub fn started(&mut self, worker: WorkerId, tasks: &[(TaskId, u32)], comm: &mut impl Comm) {
        let Some(w) = self.workers.get(&worker) else { return };
        for &(task, attempt) in tasks {
            if let Some(TaskEntry {
                attempts,
                state:
                    TaskState::Assigned {
                        worker: holder,
                        dispatched_us,
                        ..
                    },
                ..
            }) = self.tasks.get(&task)
            {
                if *holder == worker && *attempts == attempt {
                    comm.record(Transition::Running {
                        task,
                        attempt,
                        worker: w.label.clone(),
                        at_us: *dispatched_us,
                    });
                }
            }
        }
    }

    /// Places waiting tasks on workers with room, the longest-waiting first across
    /// functions; a function none of whose workers has room sits this pass out.
    pub(super) fn schedule(&mut self, now: Now, comm: &mut impl Comm) {
        if self.queues.len() == 0 {
            return;
        }
        let prefetch = self.config.prefetch;
        // Buffers kept between passes: a pass allocates nothing of its own.
        let mut heads = std::mem::take(&mut self.pass_heads);
        let mut rounds = std::mem::take(&mut self.pass_rounds);
        heads.extend(self.queues.heads().map(|(seq, f)| std::cmp::Reverse((seq, f.clone()))));
        while let Some(std::cmp::Reverse((_, function))) = heads.pop() {
            let round = match rounds.iter().position(|(f, _)| Arc::ptr_eq(f, &function)) {
                Some(i) => &mut rounds[i].1,
                None => {
                    // A second function in this pass: every round's heap may go stale.
                    if !rounds.is_empty() {
                        rounds.iter_mut().for_each(|(_, r)| r.share());
                    }
                    let mut fresh = self.spare_rounds.pop().unwrap_or_default();
                    if !rounds.is_empty() {
                        fresh.share();
                    }
                    rounds.push((function.clone(), fresh));
                    &mut rounds.last_mut().expect("just pushed").1
                }
            };
            // This function's tasks go while they are the longest-waiting of all.
            let next_other = heads.peek().map(|std::cmp::Reverse((seq, _))| *seq);
            let Some(queue) = self.queues.of(&function) else {
                continue;
            };
            let mut taken = 0;
            while let Some(&(seq, task)) = queue.front() {
                if next_other.is_some_and(|other| other < seq) {
                    heads.push(std::cmp::Reverse((seq, function.clone())));
                    break;
                }
                let Some(entry) = self.tasks.get_mut(&task) else {
                    queue.pop_front();
                    taken += 1;
                    continue;
                };
                let instant = entry.job.finishes_at_once();
                let Some(wid) = self.placement.pick(&self.workers, prefetch, instant, &function, round) else {
                    break;
                };
                queue.pop_front();
                taken += 1;
                let Some(w) = self.workers.get_mut(&wid) else { break };
                entry.attempts += 1;
                // The lease covers the wait in the worker's queue as well as the run: a
                // task with `ahead` slow tasks before it (run FIFO on `slots` slots, each
                // within its own lease) starts within `ahead / slots` leases, so a deep
                // prefetch queue never expires correct work. Queue-scaled, not started-at,
                // so it costs no message per task.
                let ahead = w.in_flight.len().saturating_sub(w.instant as usize) as u32;
                let waits = ahead / w.spec.slots.max(1);
                entry.state = TaskState::Assigned {
                    worker: wid,
                    deadline: now.instant + self.config.lease * (1 + waits),
                    dispatched_us: now.unix_us,
                };
                if w.in_flight.is_empty() {
                    w.idle_us += now.instant.saturating_duration_since(w.idle_since).as_micros() as u64;
                }
                // A slot-bound task starts on arrival if the worker has a slot free (fewer
                // such tasks in flight than slots: its busy slots are among them). One sent
                // beyond that waits in the worker, and is RUNNING only once the worker
                // says it began: RUNNING means executing.
                let executes = !self.config.report_starts
                    || instant
                    || w.in_flight.len() - (w.instant as usize) < w.spec.slots as usize;
                w.in_flight.insert(task);
                w.bytes += entry.job.wire_weight();
                if instant {
                    w.instant += 1;
                } else if w.spec.capacity == Capacity::Credits {
                    w.credits = w.credits.saturating_sub(1);
                }
                self.counters.dispatched += 1;
                if executes {
                    comm.record(Transition::Running {
                        task,
                        attempt: entry.attempts,
                        worker: w.label.clone(),
                        at_us: now.unix_us,
                    });
                }
                comm.assign(
                    wid,
                    TaskAssignment {
                        task_id: task,
                        attempt: entry.attempts,
                        job: entry.job.clone(),
                        report_start: !executes,
                    },
                );
            }
            self.queues.took(&function, taken);
        }
        self.spare_rounds.extend(rounds.drain(..).map(|(_, mut round)| {
            round.reset();
            round
        }));
        self.pass_heads = heads;
        self.pass_rounds = rounds;
    }
}
