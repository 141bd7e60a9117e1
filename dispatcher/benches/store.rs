//! Store operations per task, by batch size: enqueue, mark running, finish. Memory always;
//! Redis too when `REDIS_URL` is set (keys under a private prefix, deleted afterwards).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;
use volley_dispatcher::core::{Finished, Transition};
use volley_dispatcher::store::{self, Submission, TaskStore};
use volley_proto::ids::FunctionId;
use volley_proto::wire::Outcome;

fn lifecycle(rt: &tokio::runtime::Runtime, store: &Arc<dyn TaskStore>, n: usize) {
    rt.block_on(async {
        let subs = vec![
            Submission {
                function_id: FunctionId(1),
                args: String::new(),
                submitted_us: 1,
            };
            n
        ];
        let ids = store.enqueue(&subs).await.expect("enqueue");
        let worker: Arc<str> = "w#1".into();
        let running: Vec<Transition> = ids
            .iter()
            .map(|id| Transition::Running {
                task: *id,
                attempt: 1,
                worker: worker.clone(),
                at_us: 2,
            })
            .collect();
        store.record(&running).await.expect("running");
        let finished: Vec<Transition> = ids
            .iter()
            .map(|id| {
                Transition::Finished(Finished {
                    task: *id,
                    function_id: FunctionId(1),
                    outcome: Outcome::Completed("null".into()),
                    attempts: 1,
                    worker: Some(worker.clone()),
                    submitted_us: 1,
                    dispatched_us: 2,
                    completed_us: 3,
                    wait_us: 0,
                    run_us: 0,
                    cold: None,
                    log: String::new(),
                })
            })
            .collect();
        store.record(&finished).await.expect("finished");
    });
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let prefix = format!("volley-bench-store:{}:", std::process::id());
    let mut backends: Vec<(&str, Arc<dyn TaskStore>)> = vec![(
        "memory",
        rt.block_on(store::open("memory", &store::StoreOptions::default()))
            .expect("memory"),
    )];
    let redis_url = std::env::var("REDIS_URL").ok();
    if let Some(url) = &redis_url {
        backends.push((
            "redis",
            rt.block_on(store::open(
                url,
                &store::StoreOptions {
                    redis_prefix: prefix.clone(),
                    ..Default::default()
                },
            ))
            .expect("redis"),
        ));
    }
    let mut group = c.benchmark_group("store_lifecycle");
    for (name, store) in &backends {
        for n in [1usize, 100, 1000] {
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(*name, n), &n, |b, &n| {
                b.iter(|| lifecycle(&rt, store, n))
            });
        }
    }
    group.finish();
    if let Some(url) = &redis_url {
        rt.block_on(async {
            if let Ok(store) = store::redis::RedisStore::connect(url, &prefix).await {
                let _ = store.purge().await;
            }
        });
    }
}

criterion_group!(benches, stores);
criterion_main!(benches);
