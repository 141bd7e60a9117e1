//! The dispatcher's run-time configuration, independent of how it was given.

use crate::core::Policy;
use std::path::PathBuf;
use std::time::Duration;
use volley_proto::auth::Token;
use volley_proto::Mode;

/// What an attempt's lease adds to the task timeout: a user function's own timeout (at
/// most the task timeout, counted from when its runtime is handed the task) is then
/// reported by its worker, as `timeout: …`, before the lease gives the attempt up.
pub const LEASE_GRACE: Duration = Duration::from_secs(5);

/// Everything a dispatcher needs besides its listeners.
#[derive(Debug, Clone)]
pub struct Config {
    /// Local, pull or push.
    pub mode: Mode,
    /// Slots of the in-process pool in local mode.
    pub local_slots: u32,
    /// The longest a task attempt may take from dispatch to result; also the longest
    /// `sleep`/`spin` a client may ask for.
    pub task_timeout: Duration,
    /// `memory` or `redis://host:port/db`.
    pub store: String,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Heartbeat interval, both ways.
    pub heartbeat: Duration,
    /// Heartbeats a worker may miss before it is dead.
    pub liveness: u32,
    /// Attempts before a task whose workers keep dying is FAILED.
    pub max_attempts: u32,
    /// Unfinished tasks allowed before submissions get RESOURCE_EXHAUSTED.
    pub max_queued: usize,
    /// Completion batches a result watcher may fall behind.
    pub watch_buffer: usize,
    /// Tasks a worker may hold beyond its slots.
    pub prefetch: u32,
    /// How push mode picks a worker.
    pub policy: Policy,
    /// Seed of the random policy.
    pub seed: u64,
    /// Whether a graceful stop tells workers to exit too.
    pub stop_workers_on_exit: bool,
    /// Finished tasks the memory store keeps for status and result queries.
    pub retain_finished: usize,
    /// How long Redis keeps a finished task; `None`: for ever.
    pub redis_finished_ttl: Option<Duration>,
    /// The shared token workers and gRPC clients must present; `None` admits anyone
    /// who can reach the ports.
    pub token: Option<Token>,
    /// Certificate and key for TLS on the gRPC API; `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// The elastic pool, if on.
    pub autoscale: Option<AutoscaleConfig>,
    /// What peers may cost at the two ports.
    pub limits: EdgeLimits,
    /// The lease this dispatcher leads by (`--ha`): its store writes are fenced by it.
    pub leadership: Option<crate::ha::Leadership>,
    /// How long an `ExecuteStream` call holds a request's acceptance back for the
    /// request's outcome, so both leave in one write (zero: at once).
    pub stream_ack_linger: Duration,
    /// The longest a task may wait for a worker before it fails `no_worker` (`None`: for
    /// ever).
    pub max_queue_wait: Option<Duration>,
    /// RUNNING means a slot began the task (`--running-from start`, the default), not only
    /// that it was sent (`dispatch`).
    pub running_from_start: bool,
    /// The REST edge's settings (it is on when `Listeners::http` is given).
    pub rest: crate::rest::RestOptions,
    /// The interpreters the local pool, instances and the fork server run user code with.
    pub interpreters: volley_worker::runtime::Interpreters,
    /// How the local pool starts runtimes (`--prewarm`, `--fork-server` in local mode).
    pub local_runtimes: volley_worker::runtime::StartOptions,
}

/// What one peer, and all of them, may cost at the gRPC port and the worker port: every
/// resource a connection can hold has a bound here, checked before it is spent.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// Worker-port connections open at once.
    pub worker_connections: usize,
    /// gRPC connections open at once; more are closed as soon as they are accepted.
    pub grpc_connections: usize,
    /// Concurrent HTTP/2 streams on one gRPC connection (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    /// It also bounds what a client that never reads can hold: a response waits whole for
    /// window, so up to this many messages (1 MiB results, 4 MiB watch batches) per
    /// connection. Clients queue calls past it; they are not refused.
    pub grpc_streams: u32,
    /// A gRPC connection must have sent its first request within this (TLS handshake,
    /// HTTP/2 preface and headers).
    pub handshake_timeout: std::time::Duration,
    /// HTTP/2 keep-alive pings this often; a peer that does not answer one within
    /// `keepalive_timeout` is closed.
    pub keepalive_interval: std::time::Duration,
    /// See `keepalive_interval`.
    pub keepalive_timeout: std::time::Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            worker_connections: 10_000,
            grpc_connections: 10_000,
            grpc_streams: 128,
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// `--autoscale POLICY --provision local …`.
#[derive(Debug, Clone)]
pub struct AutoscaleConfig {
    /// The scaling policy.
    pub policy: crate::scaler::PolicySpec,
    /// Instances at most, over all functions.
    pub max_instances: u32,
    /// The worker binary instances run.
    pub worker_bin: PathBuf,
    /// Slots per instance.
    pub slots: u32,
    /// Emulated runtime start-up of each instance.
    pub init: Duration,
    /// Where instance logs go (`None`: discarded).
    pub log_dir: Option<PathBuf>,
    /// Stem cells to keep per language: instances started before their function is
    /// known, runtimes up (`--prewarm`).
    pub prewarm: Vec<(volley_proto::function::Language, u32)>,
    /// Fork every instance's Python runtimes from one fork server on this host.
    pub fork_server: bool,
    /// Stem cells with no runtime, for a user function of any language.
    pub ready_workers: u32,
    /// Fork instances' workers from a worker template, not an exec each.
    pub fork_workers: bool,
}

/// PEM files of the gRPC API's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Local,
            local_slots: 2,
            task_timeout: Duration::from_secs(300),
            store: "memory".into(),
            redis_prefix: "volley:".into(),
            heartbeat: Duration::from_millis(250),
            liveness: 4,
            max_attempts: 3,
            max_queued: 1_000_000,
            watch_buffer: 1024,
            prefetch: 16,
            policy: Policy::LeastLoaded,
            seed: 0x5eed,
            stop_workers_on_exit: true,
            retain_finished: 1_000_000,
            redis_finished_ttl: None,
            token: None,
            tls: None,
            autoscale: None,
            limits: EdgeLimits::default(),
            max_queue_wait: None,
            running_from_start: true,
            rest: crate::rest::RestOptions::default(),
            interpreters: volley_worker::runtime::Interpreters::default(),
            local_runtimes: Default::default(),
            leadership: None,
            stream_ack_linger: Duration::ZERO,
        }
    }
}
