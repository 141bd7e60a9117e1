//! Finding the dispatcher to serve among a list of addresses (`--ha` pairs and trios):
//! only the leader binds its port, so the one that completes the handshake first leads.

use std::time::Duration;
use tracing::debug;
use volley_proto::connection::{ConnectionError, WorkerConnection};

/// Connects to the dispatcher of `endpoints` (comma-separated) that completes the
/// handshake first, each given `timeout`. A stalled old leader, whose kernel still
/// accepts connections, costs nothing when every address is tried at once. With one
/// address it is that one.
pub async fn connect_any(endpoints: &str, timeout: Duration) -> Result<WorkerConnection, ConnectionError> {
    let endpoints: Vec<&str> = endpoints.split(',').map(str::trim).collect();
    if let [only] = endpoints[..] {
        return WorkerConnection::connect(only, timeout).await;
    }
    let mut tries = tokio::task::JoinSet::new();
    for endpoint in endpoints {
        let endpoint = endpoint.to_owned();
        tries.spawn(async move {
            let tried = WorkerConnection::connect(&endpoint, timeout).await;
            (endpoint, tried)
        });
    }
    let mut last = None;
    // Dropping the set when one answered cancels the others.
    while let Some(joined) = tries.join_next().await {
        let Ok((endpoint, tried)) = joined else { continue };
        match tried {
            Ok(conn) => return Ok(conn),
            Err(e) => {
                debug!(%endpoint, "not reachable: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(ConnectionError::Closed))
}
