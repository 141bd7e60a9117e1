//! Encode and decode of the batch messages that carry every task: `Tasks` out,
//! `Results` back, per batch size. Throughput is in tasks.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use volley_proto::function::Job;
use volley_proto::ids::TaskId;
use volley_proto::wire::{self, FromWorker, Outcome, TaskAssignment, TaskResult, ToWorker};

fn tasks(n: usize) -> ToWorker {
    ToWorker::Tasks(
        (0..n as u64)
            .map(|i| TaskAssignment {
                task_id: TaskId(1_000_000 + i),
                attempt: 1,
                job: if i % 2 == 0 { Job::Noop } else { Job::Sleep { ms: 100 } },
                report_start: false,
            })
            .collect(),
    )
}

fn results(n: usize) -> FromWorker {
    FromWorker::Results(
        (0..n as u64)
            .map(|i| TaskResult {
                task_id: TaskId(1_000_000 + i),
                attempt: 1,
                outcome: Outcome::Completed("null".into()),
                wait_us: 12,
                run_us: 3,
                log: String::new(),
            })
            .collect(),
    )
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for n in [1usize, 16, 256, 4096] {
        group.throughput(Throughput::Elements(n as u64));
        let out = tasks(n);
        let back = results(n);
        let out_frame = wire::encode(&out).expect("encode");
        let back_frame = wire::encode(&back).expect("encode");
        group.bench_with_input(BenchmarkId::new("encode_tasks", n), &out, |b, m| {
            b.iter(|| wire::encode(black_box(m)))
        });
        group.bench_with_input(BenchmarkId::new("decode_tasks", n), &out_frame, |b, f| {
            b.iter(|| wire::decode::<ToWorker>(black_box(f)))
        });
        group.bench_with_input(BenchmarkId::new("encode_results", n), &back, |b, m| {
            b.iter(|| wire::encode(black_box(m)))
        });
        group.bench_with_input(BenchmarkId::new("decode_results", n), &back_frame, |b, f| {
            b.iter(|| wire::decode::<FromWorker>(black_box(f)))
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
