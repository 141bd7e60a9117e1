//! The scheduler core alone: a batch of tasks submitted, placed on workers, and completed.
//! The core records two transitions per task (running, then finished); throughput is in
//! tasks, so transitions/s is twice the figure.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use volley_dispatcher::core::{
    Capacity, Comm, CoreConfig, LossReason, NewTask, Now, Policy, SchedulerCore, Transition, WorkerSpec,
};
use volley_proto::function::Job;
use volley_proto::ids::{FunctionId, TaskId, WorkerId};
use volley_proto::wire::{Outcome, TaskAssignment, TaskResult};

#[derive(Default)]
struct Sink {
    assigned: Vec<(WorkerId, TaskAssignment)>,
    transitions: usize,
}

impl Comm for Sink {
    fn assign(&mut self, worker: WorkerId, task: TaskAssignment) {
        self.assigned.push((worker, task));
    }
    fn record(&mut self, _t: Transition) {
        self.transitions += 1;
    }
    fn worker_removed(&mut self, _w: WorkerId, _r: LossReason) {}
}

fn run(batch: usize, policy: Policy, capacity: Capacity) -> usize {
    let config = CoreConfig {
        max_attempts: 3,
        prefetch: 64,
        policy,
        lease: Duration::from_secs(300),
        liveness: Duration::from_secs(1),
        max_queue_wait: None,
        report_starts: true,
    };
    let mut core = SchedulerCore::new(config, 1);
    let mut sink = Sink::default();
    let now = Now::current();
    let workers: Vec<WorkerId> = (0..4)
        .map(|i| {
            let spec = WorkerSpec {
                name: format!("w{i}"),
                host: "h".into(),
                pid: 1,
                slots: 2,
                capacity,
                monitored: true,
                function: None,
                start: None,
            };
            let id = core.add_worker(spec, now, &mut sink);
            if capacity == Capacity::Credits {
                core.ready(id, 2, now, &mut sink);
            }
            id
        })
        .collect();
    let function: std::sync::Arc<str> = "noop".into();
    let tasks = (0..batch as u64)
        .map(|i| NewTask {
            id: TaskId(i + 1),
            function_id: FunctionId(1),
            function: function.clone(),
            job: Job::Noop,
            attempts: 0,
            submitted_us: 0,
        })
        .collect();
    core.submit(tasks, now, &mut sink);
    // Workers answer whatever they were sent until everything is done.
    while !sink.assigned.is_empty() {
        let sent = std::mem::take(&mut sink.assigned);
        for w in &workers {
            let results: Vec<TaskResult> = sent
                .iter()
                .filter(|(x, _)| x == w)
                .map(|(_, t)| TaskResult {
                    task_id: t.task_id,
                    attempt: t.attempt,
                    outcome: Outcome::Completed("null".into()),
                    wait_us: 0,
                    run_us: 0,
                    log: String::new(),
                })
                .collect();
            let n = results.len() as u32;
            core.results(*w, results, now, &mut sink);
            if capacity == Capacity::Credits {
                core.ready(*w, n, now, &mut sink);
            }
        }
    }
    assert_eq!(core.queued() + core.running(), 0);
    sink.transitions
}

fn core(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    for batch in [1_000usize, 10_000, 100_000] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("push_least_loaded", batch), &batch, |b, &n| {
            b.iter(|| run(n, Policy::LeastLoaded, Capacity::Slots))
        });
        group.bench_with_input(BenchmarkId::new("push_round_robin", batch), &batch, |b, &n| {
            b.iter(|| run(n, Policy::RoundRobin, Capacity::Slots))
        });
        group.bench_with_input(BenchmarkId::new("pull_credits", batch), &batch, |b, &n| {
            b.iter(|| run(n, Policy::LeastLoaded, Capacity::Credits))
        });
    }
    group.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
