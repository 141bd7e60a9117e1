//! Volley's benchmark harness, the process launcher every end-to-end test shares, and
//! the `client` binary (operator commands from `volley-client`, benchmark commands here).
//!
//! - [`binaries`] — finds (and, under cargo, builds) the `dispatcher` and `worker` binaries.
//! - [`cluster`] — spawns a real dispatcher and workers on OS-chosen ports, each with its
//!   own log file; kills everything it started when dropped.
//! - [`cli`], [`commands`] — the `client` command line; one module per benchmark command.
//! - [`workload`] — the typed vocabulary of work ([`workload::OpType`]) and its spec strings.
//! - [`report`] — `performance_test.csv` rows and their definitions.
//! - [`harness`] — the `cargo test --test perf` harness: against a running cluster, or
//!   self-contained.
//! - [`load`] — open-loop load at a target rate, latency from intended send times.
//! - [`plot`] — PNG and SVG charts of the result files.
//! - [`observe`] — around every benchmark run: `--db`, `--assert`, process telemetry.
//! - [`results`] — the SQLite results database, `client runs` and `compare`.
//! - [`telemetry`] — CPU and RSS of every process of a run, sampled at 10 Hz.
//! - [`verdict`] — `--assert` expressions, judged at the end (exit 99).
//! - [`procstat`] — CPU time and resident memory of a process, from `/proc`.
//! - [`simulate`] — the scaler over a whole trace on a virtual clock (`client simulate`).
//! - [`sweep`] — closed-loop weak and strong scaling sweeps.
//! - [`chaos`] — the fault-injection scenario (workers, dispatcher and Redis killed
//!   mid-run) and its audit of every task in the store.
//! - [`replay`] — the Azure Functions trace: reading it, sampling it, its exact schedule.
//! - [`redis_server`] — a private `redis-server` on a free port, for tests and scenarios
//!   that restart or break Redis.

pub mod binaries;
pub mod chaos;
pub mod cli;
pub mod cluster;
pub mod coldstart;
pub mod commands;
pub mod harness;
pub mod load;
pub mod observe;
pub mod plot;
pub mod procstat;
pub mod redis_server;
pub mod replay;
pub mod report;
pub mod results;
pub mod simulate;
pub mod sweep;
pub mod telemetry;
pub mod verdict;
pub mod workload;

pub use cluster::{Cluster, ClusterSpec, ClusterTls};
pub use redis_server::RedisServer;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Deletes every Redis key under `prefix`; best effort, for clean-up after a run. The
/// store's own purge, so the keys are named in one place.
pub async fn purge_redis(url: &str, prefix: &str) {
    if let Ok(store) = volley_dispatcher::store::redis::RedisStore::connect(url, prefix).await {
        let _ = store.purge().await;
    }
}
