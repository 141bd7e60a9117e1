//! Macro benchmark of real clusters: noop throughput through `ExecuteBatch` +
//! `WatchResults`, and single-task submit→result latency on an idle cluster, for every
//! mode on the memory store and on Redis, all measured in one run so the figures compare.
//! Beside each throughput: the CPU time per task each role spent on the measured batch
//! (dispatcher, all workers, this client; from `/proc` and `getrusage`), the figure that
//! barely moves with the machine's neighbours.
//!
//! `cargo bench -p volley-perf --bench cluster` (env: `VOLLEY_BENCH_TASKS`,
//! `VOLLEY_BENCH_LATENCY_SAMPLES`, `REDIS_URL`; `VOLLEY_BENCH_SKIP_REDIS=1` skips Redis;
//! `VOLLEY_BENCH_MODES=pull,push` measures only those modes).

use anyhow::Context;
use futures::StreamExt;
use std::time::{Duration, Instant};
use volley_client::{connect, register_spec, run_batch};
use volley_proto::api;
use volley_proto::Mode;
use volley_testbed::{Cluster, ClusterSpec};

const WORKERS: usize = 2;
const SLOTS: u32 = 1;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Row {
    mode: Mode,
    store: &'static str,
    tasks: usize,
    throughput: f64,
    p50_us: f64,
    p99_us: f64,
    rpc_p50_us: f64,
    /// Median of each stage of a single task's trip, µs: client send → dispatcher stamps it
    /// submitted → dispatched → completed (result back in the core) → the client reads it.
    stages_us: [f64; 4],
    /// CPU µs per task of the measured batch: dispatcher, all workers, this client.
    cpu_us: [f64; 3],
    /// Submit→result p50 and p99, µs, one task at a time on one `ExecuteStream` call, and
    /// the CPU µs per task of each role there; `None` against a dispatcher without it.
    stream: Option<([f64; 2], [f64; 3])>,
    /// CPU µs per task of the single-task runs, same roles: what one request costs
    /// when nothing is batched.
    single_cpu_us: [f64; 3],
}

/// CPU time of the dispatcher, of all workers together, and of this process.
fn cpu_by_role(cluster: &Cluster) -> anyhow::Result<[Duration; 3]> {
    use volley_testbed::procstat::cpu_time;
    let dispatcher = cpu_time(cluster.dispatcher_pid().context("no dispatcher")?)?;
    let mut workers = Duration::ZERO;
    for pid in cluster.worker_pids() {
        workers += cpu_time(pid)?;
    }
    Ok([dispatcher, workers, volley_perf::studies::load::process_cpu()])
}

async fn measure(
    mode: Mode,
    store: &'static str,
    store_url: &str,
    tasks: usize,
    samples: usize,
) -> anyhow::Result<Row> {
    let prefix = format!("volley-bench:{}:{mode}:", std::process::id());
    // The local pool gets as many slots as the workers have together.
    let (workers, slots) = if mode == Mode::Local {
        (0, WORKERS as u32 * SLOTS)
    } else {
        (WORKERS, SLOTS)
    };
    let mut spec = ClusterSpec::new(mode, workers, slots)
        .store(store_url)
        .label(format!("bench-{mode}-{store}"))
        .log_level("warn");
    if store == "redis" {
        spec = spec.args(["--redis-prefix", prefix.as_str()]);
    }
    let cluster = Cluster::start(spec).await?;
    let mut client = connect(&cluster.grpc_url()).await?;
    let (noop, args) = register_spec(&mut client, "noop").await?;

    // Warm-up, then the measured batch.
    run_batch(
        &client,
        vec![(noop, args.clone()); tasks / 10],
        10_000,
        Duration::from_secs(120),
    )
    .await?;
    let cpu_before = cpu_by_role(&cluster)?;
    let outcome = run_batch(
        &client,
        vec![(noop, args.clone()); tasks],
        10_000,
        Duration::from_secs(300),
    )
    .await?;
    anyhow::ensure!(outcome.completed == tasks, "{} of {tasks} completed", outcome.completed);
    let cpu_after = cpu_by_role(&cluster)?;
    let cpu_us: [f64; 3] = std::array::from_fn(|i| (cpu_after[i] - cpu_before[i]).as_secs_f64() * 1e6 / tasks as f64);

    // Latency: one task at a time, result read from an open WatchResults stream.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut watch = client
        .clone()
        .watch_results(api::WatchResultsRequest { task_ids: vec![] })
        .await?
        .into_inner();
    let mut lat = Vec::with_capacity(samples);
    let mut rpc = Vec::with_capacity(samples);
    let mut stages: [Vec<f64>; 4] = Default::default();
    let single_before = cpu_by_role(&cluster)?;
    for i in 0..samples + samples / 10 {
        let t0 = Instant::now();
        let sent_us = unix_us();
        let id = client
            .execute(api::ExecuteRequest {
                function_id: noop,
                args: args.clone(),
            })
            .await?
            .into_inner()
            .task_id;
        let submitted = t0.elapsed().as_secs_f64() * 1e6;
        let info = 'wait: loop {
            let msg = watch.next().await.ok_or_else(|| anyhow::anyhow!("watch ended"))??;
            if let Some(info) = msg.tasks.into_iter().find(|t| t.task_id == id) {
                break 'wait info;
            }
        };
        let received_us = unix_us();
        if i >= samples / 10 {
            lat.push(t0.elapsed().as_secs_f64() * 1e6);
            rpc.push(submitted);
            // One clock: the client and the dispatcher share this host.
            let marks = [
                sent_us,
                info.submitted_us,
                info.dispatched_us,
                info.completed_us,
                received_us,
            ];
            for (k, stage) in stages.iter_mut().enumerate() {
                stage.push(marks[k + 1].saturating_sub(marks[k]) as f64);
            }
        }
    }
    let single_after = cpu_by_role(&cluster)?;
    let runs = (samples + samples / 10) as f64;
    let single_cpu_us: [f64; 3] =
        std::array::from_fn(|i| (single_after[i] - single_before[i]).as_secs_f64() * 1e6 / runs);
    lat.sort_by(|a, b| a.total_cmp(b));
    rpc.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let stream_before = cpu_by_role(&cluster)?;
    let stream = match stream_latency(&client, noop, &args, samples).await? {
        Some(lat) => {
            let after = cpu_by_role(&cluster)?;
            let cpu: [f64; 3] = std::array::from_fn(|i| (after[i] - stream_before[i]).as_secs_f64() * 1e6 / runs);
            Some((lat, cpu))
        }
        None => None,
    };
    let stages_us = stages.map(|mut v| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    });
    let row = Row {
        mode,
        store,
        tasks,
        throughput: outcome.throughput(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        rpc_p50_us: rpc[rpc.len() / 2],
        stages_us,
        stream,
        cpu_us,
        single_cpu_us,
    };
    cluster.stop().await?;
    if store == "redis" {
        volley_testbed::purge_redis(store_url, &prefix).await;
    }
    Ok(row)
}

/// Submit→result p50 and p99 in µs, one task at a time on one `ExecuteStream` call:
/// the request is one DATA frame on an open stream, the outcome another.
async fn stream_latency(
    client: &volley_client::Client,
    function_id: u64,
    args: &str,
    samples: usize,
) -> anyhow::Result<Option<[f64; 2]>> {
    use volley_proto::api::execute_stream_response::Event;
    let (tx, rx) = tokio::sync::mpsc::channel::<api::ExecuteBatchRequest>(4);
    let requests = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut events = match client.clone().execute_stream(requests).await {
        Ok(events) => events.into_inner(),
        // An older dispatcher (an A/B run against earlier binaries).
        Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(None),
        Err(status) => return Err(status.into()),
    };
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let t0 = Instant::now();
        tx.send(api::ExecuteBatchRequest {
            tasks: vec![api::ExecuteRequest {
                function_id,
                args: args.to_owned(),
            }],
        })
        .await?;
        loop {
            match events.message().await?.and_then(|e| e.event) {
                Some(Event::Finished(_)) => break,
                Some(Event::Refused(r)) => anyhow::bail!("refused: {}", r.message),
                Some(Event::Accepted(_)) => {}
                None => anyhow::bail!("the ExecuteStream call ended early"),
            }
        }
        if i >= samples / 10 {
            lat.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(tx);
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Ok(Some([pct(0.50), pct(0.99)]))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let tasks = env_usize("VOLLEY_BENCH_TASKS", 200_000);
    let samples = env_usize("VOLLEY_BENCH_LATENCY_SAMPLES", 2_000);
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let mut stores = vec![("memory", "memory".to_owned())];
    if std::env::var("VOLLEY_BENCH_SKIP_REDIS").is_err() {
        stores.push(("redis", redis_url));
    }
    let modes: Vec<Mode> = match std::env::var("VOLLEY_BENCH_MODES") {
        Ok(list) => list
            .split(',')
            .map(|m| m.trim().parse().map_err(|e| anyhow::anyhow!("VOLLEY_BENCH_MODES: {e}")))
            .collect::<anyhow::Result<_>>()?,
        Err(_) => vec![Mode::Local, Mode::Pull, Mode::Push],
    };
    let host = hostname();
    println!(
        "# Volley cluster benchmark: {WORKERS} workers × {SLOTS} slot (local: a {}-slot pool), noop tasks",
        WORKERS as u32 * SLOTS
    );
    println!(
        "# host {host}, {} cores, {tasks} tasks per throughput run, {samples} latency samples\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("| mode | store | tasks | tasks/s | submit→result p50 | p99 | Execute RPC alone p50 | CPU µs/task: dispatcher | workers | client | total |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for (store, url) in &stores {
        for &mode in &modes {
            let n = if *store == "redis" { tasks / 2 } else { tasks };
            let r = measure(mode, store, url, n, samples).await?;
            let [d, w, c] = r.cpu_us;
            println!(
                "| {} | {} | {} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {d:.2} | {w:.2} | {c:.2} | {:.2} |",
                r.mode,
                r.store,
                r.tasks,
                r.throughput,
                r.p50_us,
                r.p99_us,
                r.rpc_p50_us,
                d + w + c
            );
            rows.push(r);
        }
    }
    println!("\nWhere a single task's time goes (medians, µs; one clock, the client's host):\n");
    println!("| mode | store | client send → submitted | → dispatched | → completed in core | → client has result | CPU µs per single task: dispatcher | workers | client |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let [a, b, c, d] = r.stages_us;
        let [cd, cw, cc] = r.single_cpu_us;
        println!(
            "| {} | {} | {a:.0} | {b:.0} | {c:.0} | {d:.0} | {cd:.0} | {cw:.0} | {cc:.0} |",
            r.mode, r.store
        );
    }
    println!("\nOne task at a time on one `ExecuteStream` call (a DATA frame each way, no headers per task):\n");
    println!("| mode | store | submit→result p50 | p99 | CPU µs per task: dispatcher | workers | client |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        match r.stream {
            Some(([s50, s99], [cd, cw, cc])) => println!(
                "| {} | {} | {s50:.0} µs | {s99:.0} µs | {cd:.0} | {cw:.0} | {cc:.0} |",
                r.mode, r.store
            ),
            None => println!(
                "| {} | {} | – (the dispatcher has no ExecuteStream) | | | | |",
                r.mode, r.store
            ),
        }
    }
    Ok(())
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
