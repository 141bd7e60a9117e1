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

/// A TCP port on 127.0.0.1 that was free a moment ago, for a process that must be told its
/// port before it binds (an `--ha` standby binds only when it takes over).
///
/// Drawn at random below the kernel's ephemeral range (`ip_local_port_range`): a port the
/// kernel handed out for `bind(0)` is free again the moment it is closed, and the next
/// outgoing connection of any test may take it before the process binds (a standby's
/// takeover failed so, "Address already in use"). Below the range only an explicit bind
/// can take it.
pub fn free_port() -> std::io::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    const LOWEST: u16 = 10_000;
    let ephemeral = ephemeral_low().unwrap_or(32_768);
    if ephemeral > LOWEST + 1_000 {
        let span = u64::from(ephemeral - LOWEST);
        let start = std::collections::hash_map::RandomState::new().build_hasher().finish();
        for i in 0..span.min(2_000) {
            let port = LOWEST + ((start.wrapping_add(i)) % span) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The lowest port the kernel hands out on its own.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Deletes every Redis key under `prefix`; best effort, for clean-up after a run. The
/// store's own purge, so the keys are named in one place.
pub async fn purge_redis(url: &str, prefix: &str) {
    if let Ok(store) = volley_dispatcher::store::redis::RedisStore::connect(url, prefix).await {
        let _ = store.purge().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_free_port_is_below_the_ephemeral_range_and_can_be_bound() {
        let port = super::free_port().expect("a port");
        if let Some(low) = super::ephemeral_low().filter(|low| *low > 11_000) {
            assert!((10_000..low).contains(&port), "{port} against {low}");
        }
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("still free");
    }
}
