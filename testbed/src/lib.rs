//! Real Volley clusters on this machine: what the system's end-to-end tests and the
//! benchmark's studies share. Nothing here is mocked; every process is the real binary.
//!
//! - [`binaries`] — finds (and, under cargo, builds) the `dispatcher`, `worker` and
//!   `client` binaries.
//! - [`cluster`] — spawns a real dispatcher and workers on OS-chosen ports, each with its
//!   own log file; kills everything it started when dropped.
//! - [`redis_server`] — a private `redis-server` on a free port, for tests and scenarios
//!   that restart or break Redis.
//! - [`procstat`] — CPU time, resident memory and children of a process, from `/proc`.
//! - [`fixtures`] — what tests assert with: the mixed batch and its expected outcomes,
//!   waiting on cluster state, a bare HTTP GET, key prefixes of their own on the shared Redis.

pub mod binaries;
pub mod cluster;
pub mod fixtures;
pub mod ha_member;
pub mod procstat;
pub mod redis_server;

pub use cluster::{Cluster, ClusterSpec, ClusterTls};
pub use ha_member::HaMember;
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
