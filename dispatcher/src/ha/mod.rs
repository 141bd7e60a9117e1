//! Dispatchers that stand in for each other (`--ha`): one holds a lease in Redis and
//! serves; the others wait, connected, and take over when it lapses.
//!
//! - The lease is one key, `SET … PX`, holding the leader's name and epoch; the epoch is
//!   a counter that each new leader raises. Taking the lease, raising the epoch and
//!   setting the fence key to the leader's token (epoch and a random nonce) is one
//!   script, so two standbys never both lead.
//! - Every store write of a leader is fenced by its epoch ([`crate::store::redis::writes`]):
//!   a leader that stalled past its lease (a long pause, `SIGSTOP`) and woke up after a
//!   standby took over writes nothing; its first refused write or renewal deposes it.
//! - A deposed leader exits at once (code [`DEPOSED_EXIT`]) without draining: nothing
//!   it would do is valid any more. Its workers and clients find the new leader through
//!   their address lists. Run dispatchers under a supervisor that restarts them; they
//!   come back as standbys.
//! - Standbys bind no gRPC or worker port until they lead, so a worker or client that
//!   tries the addresses in its list in turn reaches the leader and nothing else. With
//!   `--metrics` a standby serves its own page there ([`standby`]).
//!
//! No consensus of our own: Redis is the one authority, and an HA pair is as available
//! as the Redis it shares.

mod standby;

pub use standby::{stand_by, StandbyView};

use crate::store::redis::Fence;
use crate::store::{redact, StoreError};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The exit code of a dispatcher that lost its lease.
pub const DEPOSED_EXIT: i32 = 3;

/// Takes the lease if nobody holds it: raises the epoch, sets the fence key to
/// `EPOCH:NONCE` and returns the epoch; or 0 and the holder's value.
const ACQUIRE: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder} end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' epoch=' .. epoch, 'PX', ARGV[2])
redis.call('SET', KEYS[3], epoch .. ':' .. ARGV[3])
return {epoch, ''}
"#;

/// Extends the lease if it is still ours, or takes it back if it lapsed and nobody took
/// over (the fence still holds our token: a Redis that lost its data does not give it
/// back); 0 when another leads.
const RENEW: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"#;

/// How a dispatcher takes part.
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// The Redis every member shares.
    pub redis_url: String,
    /// The key prefix of the deployment.
    pub prefix: String,
    /// How long a lease lasts without renewal: the bound on a failover's detection.
    pub lease: Duration,
    /// What this member tells the others about itself (its addresses), for logs and
    /// for clients asking a standby.
    pub name: String,
}

/// This dispatcher's leadership, once won.
#[derive(Debug, Clone)]
pub struct Leadership {
    /// The epoch it leads.
    pub epoch: u64,
    /// The fence key every write of this leader checks.
    pub fence_key: String,
    /// What it set there: `EPOCH:NONCE`, its alone.
    pub token: String,
    /// Cancelled when the lease is lost or a write was fenced: the process must stop.
    pub deposed: CancellationToken,
    /// Store writes Redis refused because another epoch leads.
    pub fenced_writes: Arc<AtomicU64>,
    /// How long it stood by before leading.
    pub waited: Duration,
}

impl Leadership {
    /// The fence its store writes carry.
    pub fn fence(&self) -> Fence {
        Fence {
            key: self.fence_key.clone(),
            token: self.token.clone(),
            epoch: self.epoch,
        }
    }

    /// Takes note of a write Redis refused, and stands down.
    pub fn fenced(&self) {
        self.fenced_writes.fetch_add(1, Ordering::Relaxed);
        self.deposed.cancel();
    }

    /// Leaders before this one: every takeover, and every restart, raised the epoch.
    pub fn takeovers(&self) -> u64 {
        self.epoch.saturating_sub(1)
    }
}

fn lease_key(prefix: &str) -> String {
    format!("{prefix}leader")
}

fn epoch_key(prefix: &str) -> String {
    format!("{prefix}leader:epoch")
}

fn fence_key(prefix: &str) -> String {
    format!("{prefix}leader:fence")
}

/// Waits as a standby until this dispatcher holds the lease, then keeps renewing it in
/// the background until `stop` or until it is lost. What it sees meanwhile goes to `view`.
pub async fn lead(config: &HaConfig, stop: CancellationToken, view: &StandbyView) -> Result<Leadership, StoreError> {
    let shown = redact(&config.redis_url);
    let client =
        redis::Client::open(config.redis_url.as_str()).map_err(|e| StoreError::Config(format!("{shown}: {e}")))?;
    let mut conn = ConnectionManager::new(client)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot reach Redis at {shown}: {e}")))?;
    let (lease, epochs, fences) = (
        lease_key(&config.prefix),
        epoch_key(&config.prefix),
        fence_key(&config.prefix),
    );
    // Random, so no other leader's token is ever this one's, even from a Redis that lost
    // its data and counts epochs from 1 again.
    let nonce = format!("{:016x}", rand::random::<u64>());
    let ttl_ms = config.lease.as_millis().max(1) as u64;
    // A standby polls ten times a lease: a lapsed lease is taken within a tenth of it.
    let poll = (config.lease / 10).max(Duration::from_millis(10));
    let began = std::time::Instant::now();
    let mut last_holder = String::new();
    let epoch = loop {
        if stop.is_cancelled() {
            return Err(StoreError::Unavailable("stopped while standing by".into()));
        }
        let answer: Result<(u64, String), _> = redis::cmd("EVAL")
            .arg(ACQUIRE)
            .arg(3)
            .arg(&lease)
            .arg(&epochs)
            .arg(&fences)
            .arg(&config.name)
            .arg(ttl_ms)
            .arg(&nonce)
            .query_async(&mut conn)
            .await;
        match answer {
            Ok((0, holder)) => {
                view.saw_holder(&holder);
                if holder != last_holder {
                    info!(leader = %holder, "standing by");
                    last_holder = holder;
                }
            }
            Ok((epoch, _)) => break epoch,
            Err(e) => {
                view.redis_up.store(false, Ordering::Relaxed);
                warn!("standing by, Redis unreachable: {e}");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    };
    let value = format!("{} epoch={epoch}", config.name);
    info!(epoch, waited_ms = began.elapsed().as_millis() as u64, "leading");
    let token = format!("{epoch}:{nonce}");
    let leadership = Leadership {
        epoch,
        fence_key: fences.clone(),
        token: token.clone(),
        deposed: CancellationToken::new(),
        fenced_writes: Arc::default(),
        waited: began.elapsed(),
    };
    let deposed = leadership.deposed.clone();
    tokio::spawn(async move {
        // Renew three times a lease, so one late renewal does not lose it.
        let every = (Duration::from_millis(ttl_ms) / 3).max(Duration::from_millis(5));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = deposed.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let renewed: Result<u64, _> = redis::cmd("EVAL")
                .arg(RENEW)
                .arg(2)
                .arg(&lease)
                .arg(&fences)
                .arg(&value)
                .arg(ttl_ms)
                .arg(&token)
                .query_async(&mut conn)
                .await;
            match renewed {
                Ok(1) => {}
                Ok(_) => {
                    error!(epoch, "lost the lease: another dispatcher leads");
                    deposed.cancel();
                    return;
                }
                // Unreachable Redis: nothing can be written either way, and if another
                // takes over meanwhile, the fence refuses what this one still sends.
                Err(e) => warn!(epoch, "cannot renew the lease: {e}"),
            }
        }
    });
    Ok(leadership)
}
