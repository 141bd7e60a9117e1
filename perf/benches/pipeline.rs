//! An in-process dispatcher and worker (pull mode, real gRPC and ZeroMQ on 127.0.0.1, one
//! process): noop tasks per second through `ExecuteBatch` + `WatchResults`, by batch size.
//! The cluster benchmark (`--bench cluster`) measures the same across real processes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use volley_client::{connect, register_spec, run_batch};
use volley_dispatcher::{Config, Listeners};
use volley_proto::Mode;

fn pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = CancellationToken::new();
    let (client, noop, args) = rt.block_on(async {
        let config = Config {
            mode: Mode::Pull,
            ..Config::default()
        };
        let listeners = Listeners::loopback().await.expect("bind");
        let (handle, run) = volley_dispatcher::start(config, listeners, shutdown.clone())
            .await
            .expect("dispatcher");
        tokio::spawn(run);
        let endpoint = handle.worker_endpoint.clone().expect("endpoint");
        for _ in 0..2 {
            let config = volley_worker::WorkerConfig::new(1, endpoint.clone());
            tokio::spawn(volley_worker::run(config, shutdown.clone()));
        }
        let url = format!("http://{}", handle.grpc_addr);
        let mut client = connect(&url).await.expect("connect");
        let (noop, args) = register_spec(&mut client, "noop").await.expect("register");
        // Wait until both workers run tasks.
        run_batch(&client, vec![(noop, args.clone()); 1000], 1000, Duration::from_secs(30))
            .await
            .expect("warm-up");
        (client, noop, args)
    });
    let mut group = c.benchmark_group("pipeline_pull_2_workers");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("noop", n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(run_batch(
                    &client,
                    vec![(noop, args.clone()); n],
                    10_000,
                    Duration::from_secs(60),
                ))
                .expect("batch")
            })
        });
    }
    group.finish();
    shutdown.cancel();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
