//! Volley's benchmark harness and the process launcher every end-to-end test shares.
//!
//! - [`binaries`] — finds (and, under cargo, builds) the `dispatcher` and `worker` binaries.
//! - [`cluster`] — spawns a real dispatcher and workers on OS-chosen ports, each with its
//!   own log file; kills everything it started when dropped.
//! - [`driver`] — connect, register, run a batch and collect every outcome.
//! - [`report`] — `performance_test.csv` rows and their definitions.
//! - [`harness`] — the `cargo test --test perf` harness: against a running cluster, or
//!   self-contained.
//! - [`load`] — open-loop load at a target rate, latency from intended send times.
//! - [`plot`] — PNG and SVG charts of the result files.
//! - [`sweep`] — closed-loop weak and strong scaling sweeps.
//! - [`chaos`] — the fault-injection scenario (workers, dispatcher and Redis killed
//!   mid-run) and its audit of every task in the store.
//! - [`redis_server`] — a private `redis-server` on a free port, for tests and scenarios
//!   that restart or break Redis.

pub mod binaries;
pub mod chaos;
pub mod cluster;
pub mod driver;
pub mod harness;
pub mod load;
pub mod plot;
pub mod redis_server;
pub mod report;
pub mod sweep;

pub use cluster::{Cluster, ClusterSpec, ClusterTls};
pub use redis_server::RedisServer;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Deletes every Redis key under `prefix`; best effort, for clean-up after a run.
pub async fn purge_redis(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else { return };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for chunk in keys.chunks(10_000) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}
