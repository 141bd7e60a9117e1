//! The dispatcher's command line, compatible with the original
//! `task_dispatcher.py -m <mode> -p <port> -w <n> [-t <timeout>]`, and every flag also
//! readable from a `VOLLEY_*` variable.

use crate::config::{Config, TlsFiles};
use crate::core::Policy;
use clap::{Parser, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use volley_proto::auth::Token;
use volley_proto::Mode;

/// The Volley dispatcher: takes tasks over gRPC and hands them to workers.
#[derive(Debug, Parser)]
#[command(name = "dispatcher", version)]
pub struct Cli {
    /// Scheduling mode.
    #[arg(short, long, value_enum, env = "VOLLEY_MODE", default_value = "local")]
    pub mode: ModeArg,
    /// Port workers connect to (0: the OS picks; printed at start).
    #[arg(short = 'p', long = "port", env = "VOLLEY_PORT", default_value_t = 5555)]
    pub worker_port: u16,
    /// Address the worker port binds to. Anything but loopback exposes an
    /// unauthenticated, unencrypted port: see docs/security.md.
    #[arg(long, env = "VOLLEY_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Slots of the dispatcher's own pool in local mode.
    #[arg(short = 'w', long = "local-slots", env = "VOLLEY_LOCAL_SLOTS", default_value_t = 2)]
    pub local_slots: u32,
    /// Task timeout in seconds: the longest sleep/spin accepted and the longest a user
    /// function may run (its default timeout); an attempt's lease is this plus 5 s.
    #[arg(
        short = 't',
        long = "task-timeout",
        env = "VOLLEY_TASK_TIMEOUT",
        default_value_t = 300.0
    )]
    pub task_timeout_s: f64,
    /// gRPC address (port 0: the OS picks; printed at start).
    #[arg(long, env = "VOLLEY_GRPC", default_value = "127.0.0.1:50051")]
    pub grpc: SocketAddr,
    /// Task store: `memory` or `redis://host:port/db`.
    #[arg(long, env = "VOLLEY_STORE", default_value = "memory")]
    pub store: String,
    /// Prefix of every Redis key.
    #[arg(long, env = "VOLLEY_REDIS_PREFIX", default_value = "volley:")]
    pub redis_prefix: String,
    /// Stand in for other dispatchers on the same Redis store and prefix: lead while
    /// holding a lease there, wait as a standby otherwise (no port bound), and exit
    /// (code 3) if another takes over. Workers and clients take a list of addresses.
    #[arg(long, env = "VOLLEY_HA")]
    pub ha: bool,
    /// How long a leader's lease lasts unrenewed, in milliseconds: a dead or stalled
    /// leader is replaced within about this long.
    #[arg(long, env = "VOLLEY_HA_LEASE_MS", default_value_t = 1000)]
    pub ha_lease_ms: u64,
    /// Heartbeat interval in milliseconds, both ways.
    #[arg(long, env = "VOLLEY_HEARTBEAT_MS", default_value_t = 250)]
    pub heartbeat_ms: u64,
    /// Heartbeats a worker may miss before it is dead and its tasks requeued.
    #[arg(long, env = "VOLLEY_LIVENESS", default_value_t = 4)]
    pub liveness: u32,
    /// Attempts before a task whose workers keep dying is FAILED (worker_lost).
    #[arg(long, env = "VOLLEY_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// Unfinished tasks allowed before submissions get RESOURCE_EXHAUSTED.
    #[arg(long, env = "VOLLEY_MAX_QUEUED", default_value_t = 1_000_000)]
    pub max_queued: usize,
    /// Completion batches a WatchResults stream may fall behind before it loses the live
    /// feed: a watch by ids then catches up from the store, a watch of everything ends
    /// with DATA_LOSS. More costs memory while a watcher lags.
    #[arg(long, env = "VOLLEY_WATCH_BUFFER", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub watch_buffer: u64,
    /// Tasks a worker may hold beyond its slots (0 with pull: strict request/reply).
    #[arg(long, env = "VOLLEY_PREFETCH", default_value_t = 16)]
    pub prefetch: u32,
    /// How push mode (and pull, among workers asking) picks a worker.
    #[arg(long, value_enum, env = "VOLLEY_POLICY", default_value = "least-loaded")]
    pub policy: PolicyArg,
    /// Seed of the random policy.
    #[arg(long, env = "VOLLEY_SEED", default_value_t = 0x5eed)]
    pub seed: u64,
    /// Runtime threads for the dispatcher's own work (1: a single-threaded event loop,
    /// lowest latency; more: higher throughput on machines with cores to spare).
    #[arg(long, env = "VOLLEY_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Finished tasks the memory store keeps for GetStatus/GetResult/WatchResults, oldest
    /// forgotten first; bounds the dispatcher's memory. For Redis see --redis-finished-ttl.
    #[arg(long, env = "VOLLEY_RETAIN_FINISHED", default_value_t = 1_000_000)]
    pub retain_finished: usize,
    /// Seconds Redis keeps a finished task before forgetting it (0: for ever). Bounds
    /// Redis's memory the way --retain-finished bounds the dispatcher's.
    #[arg(long = "redis-finished-ttl", env = "VOLLEY_REDIS_FINISHED_TTL", default_value_t = 0)]
    pub redis_finished_ttl_s: u64,
    /// On a graceful stop, leave workers running (they reconnect to the next dispatcher)
    /// instead of telling them to exit.
    #[arg(long, env = "VOLLEY_KEEP_WORKERS")]
    pub keep_workers: bool,
    /// A shared token workers and gRPC clients must present (prefer the variable: a
    /// flag shows in `ps`). Never logged.
    #[arg(long, env = "VOLLEY_TOKEN", hide_env_values = true, value_parser = volley_proto::auth::TokenArg)]
    pub token: Option<Token>,
    /// PEM certificate chain: serve the gRPC API over TLS (needs --tls-key).
    #[arg(long, env = "VOLLEY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "VOLLEY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (read-only, no token); the flag
    /// alone means 127.0.0.1:9464.
    #[arg(long, env = "VOLLEY_METRICS", num_args = 0..=1, default_missing_value = volley_proto::exposition::DEFAULT_ADDR)]
    pub metrics: Option<SocketAddr>,
    /// Run an elastic pool with this policy: fixed:keepalive=10m, kpa:…, hybrid:… (needs
    /// --provision; pull or push mode).
    #[arg(long, env = "VOLLEY_AUTOSCALE", requires = "provision")]
    pub autoscale: Option<crate::scaler::PolicySpec>,
    /// Where instances run: `local` (worker processes on this host).
    #[arg(long, value_parser = ["local"], requires = "autoscale")]
    pub provision: Option<String>,
    /// Instances at most, over all functions (one retired and still exiting does not count).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_instances: u32,
    /// The worker binary instances run (default: `worker` beside this dispatcher).
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    /// Slots per instance (container concurrency).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub instance_slots: u32,
    /// Each instance's emulated runtime start-up, ms (`worker --init-ms`).
    #[arg(long, default_value_t = 0)]
    pub init_ms: u64,
    /// Keep this many instances per language started ahead of any function, their
    /// runtimes up (`python=2,node=1`): a cold start of a user function then takes one
    /// and pays only for loading its code. Not counted in --max-instances. In local
    /// mode: runtimes of the local pool started ahead, as `worker --prewarm`.
    #[arg(long, value_name = "LANG=N,...", value_parser = volley_worker::runtime::prewarm::parse)]
    pub prewarm: Option<volley_worker::runtime::prewarm::PrewarmSpec>,
    /// Fork every instance's Python runtimes from one fork server (a warm interpreter
    /// with the runtime loaded) on this host, instead of starting an interpreter each.
    /// In local mode: the local pool's, as `worker --fork-server`.
    #[arg(long)]
    pub fork_server: bool,
    /// Keep this many worker processes started ahead of any function with no runtime
    /// (stem cells of no language): a cold start of a user function in any language,
    /// native included, skips the worker's start and starts only its runtime. Not
    /// counted in --max-instances.
    #[arg(long, default_value_t = 0, requires = "autoscale", value_parser = clap::value_parser!(u32).range(0..=64))]
    pub prewarm_workers: u32,
    /// How a new instance's worker process starts: `fork`ed from a worker template (a
    /// worker started with the pool, holding no function, no runtime and no thread), which
    /// skips the exec, the loader and the worker's own start on every cold start; or a
    /// new `exec` of the worker binary. Either way the instance is this dispatcher's child,
    /// and its runtime a fresh process of its own.
    #[arg(long, value_enum, default_value_t = InstanceStartArg::Fork, requires = "autoscale")]
    pub instance_start: InstanceStartArg,
    /// Keep each instance's log as DIR/inst-<id>-<function>.log (default: discarded).
    #[arg(long, value_name = "DIR", requires = "autoscale")]
    pub instance_logs: Option<PathBuf>,
    /// Serve the course FaaS's REST API (register_function, execute_function, status,
    /// result, openapi.json) at ADDR beside gRPC, e.g. 127.0.0.1:8000. No token guards
    /// it: keep it on loopback or behind a proxy that authenticates.
    #[arg(long, value_name = "ADDR", env = "VOLLEY_HTTP")]
    pub http: Option<SocketAddr>,
    /// Seconds a task may wait for a worker before it fails (`no_worker`), so that every
    /// accepted task ends even with no worker able to take it: REST clients poll for
    /// ever. 0: wait for ever. Default: 300 with --http, else 0.
    #[arg(long = "max-queue-wait", value_name = "SECS", env = "VOLLEY_MAX_QUEUE_WAIT")]
    pub max_queue_wait_s: Option<f64>,
    /// When a task becomes RUNNING: `start`, once a slot begins it (a worker holding
    /// tasks beyond its slots reports each start: one small message per such task), or
    /// `dispatch`, as soon as it is sent (no message; RUNNING then includes the wait in
    /// the worker).
    #[arg(long, value_enum, env = "VOLLEY_RUNNING_FROM", default_value = "start")]
    pub running_from: RunningFromArg,
    /// The Python (MAJOR.MINOR) REST clients pickle their functions with: a runtime on
    /// another version refuses them clearly instead of crashing on them.
    #[arg(long, value_name = "X.Y", default_value = crate::rest::DEFAULT_CLIENT_PYTHON, value_parser = parse_python_version)]
    pub http_python: String,
    /// The Python interpreter that runs python functions here (local mode) and in
    /// instances (default: python3 on PATH).
    #[arg(long, env = "VOLLEY_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// A directory put first on python functions' `sys.path`; repeat for more (where
    /// functions pickled by reference are imported from: the clients' checkout root).
    #[arg(
        long = "python-path",
        value_name = "DIR",
        env = "VOLLEY_PYTHON_PATH",
        value_delimiter = ':'
    )]
    pub python_path: Vec<PathBuf>,
    /// Modules python runtimes started ahead of their code (--prewarm, --fork-server)
    /// import while they wait, e.g. `dill,requests`.
    #[arg(long = "python-preload", value_name = "MODULES", env = "VOLLEY_PYTHON_PRELOAD")]
    pub python_preload: Option<String>,
    /// Worker-port connections open at once; more are closed on accept.
    #[arg(long, env = "VOLLEY_MAX_WORKER_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_worker_connections: u64,
    /// gRPC connections open at once; more are closed on accept.
    #[arg(long, env = "VOLLEY_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Concurrent HTTP/2 streams one gRPC connection may open.
    #[arg(long, env = "VOLLEY_MAX_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_streams: u32,
    /// Milliseconds a new gRPC connection has to make its first call (TLS handshake,
    /// HTTP/2 preface, headers) before it is closed.
    #[arg(long, env = "VOLLEY_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub handshake_timeout_ms: u64,
    /// Microseconds an `ExecuteStream` call holds a request's acceptance back, waiting
    /// for its outcome, so both reach the client in one write and one wake-up. Outcomes
    /// are never held; only the acceptance of a task that takes longer waits this long.
    #[arg(long, env = "VOLLEY_STREAM_ACK_LINGER_US", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub stream_ack_linger_us: u64,
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// The dispatcher's own pool runs tasks.
    Local,
    /// Workers ask for tasks.
    Pull,
    /// The dispatcher sends tasks to workers it picks.
    Push,
}

/// `--instance-start` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InstanceStartArg {
    /// Forked from a worker template.
    Fork,
    /// An exec of the worker binary.
    Exec,
}

/// `--running-from` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RunningFromArg {
    /// A slot began the task.
    Start,
    /// The task was sent to a worker.
    Dispatch,
}

/// `--policy` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PolicyArg {
    /// Fewest in flight relative to slots.
    LeastLoaded,
    /// In turn.
    RoundRobin,
    /// At random.
    Random,
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Self {
        let elastic = cli.autoscale.is_some();
        Config {
            mode: match cli.mode {
                ModeArg::Local => Mode::Local,
                ModeArg::Pull => Mode::Pull,
                ModeArg::Push => Mode::Push,
            },
            local_slots: cli.local_slots.max(1),
            task_timeout: Duration::from_secs_f64(cli.task_timeout_s.clamp(0.001, 7.0 * 86_400.0)),
            store: cli.store,
            redis_prefix: cli.redis_prefix,
            leadership: None,
            heartbeat: Duration::from_millis(cli.heartbeat_ms.max(1)),
            liveness: cli.liveness.max(1),
            max_attempts: cli.max_attempts.max(1),
            max_queued: cli.max_queued.max(1),
            watch_buffer: cli.watch_buffer as usize,
            prefetch: cli.prefetch,
            policy: match cli.policy {
                PolicyArg::LeastLoaded => Policy::LeastLoaded,
                PolicyArg::RoundRobin => Policy::RoundRobin,
                PolicyArg::Random => Policy::Random,
            },
            seed: cli.seed,
            stop_workers_on_exit: !cli.keep_workers,
            retain_finished: cli.retain_finished,
            redis_finished_ttl: (cli.redis_finished_ttl_s > 0).then(|| Duration::from_secs(cli.redis_finished_ttl_s)),
            token: cli.token,
            tls: cli.tls_cert.zip(cli.tls_key).map(|(cert, key)| TlsFiles { cert, key }),
            autoscale: cli.autoscale.map(|policy| crate::config::AutoscaleConfig {
                policy,
                max_instances: cli.max_instances,
                worker_bin: cli.worker_bin.unwrap_or_else(default_worker_bin),
                slots: cli.instance_slots,
                init: Duration::from_millis(cli.init_ms),
                log_dir: cli.instance_logs,
                prewarm: cli.prewarm.clone().unwrap_or_default().0,
                fork_server: cli.fork_server,
                ready_workers: cli.prewarm_workers,
                fork_workers: cli.instance_start == InstanceStartArg::Fork,
            }),
            local_runtimes: volley_worker::runtime::StartOptions {
                prewarm: if !elastic {
                    cli.prewarm.clone().unwrap_or_default().0
                } else {
                    Vec::new()
                },
                fork_server: cli.fork_server && !elastic,
                ..Default::default()
            },
            max_queue_wait: match cli.max_queue_wait_s {
                Some(s) if s > 0.0 => Some(Duration::from_secs_f64(s.min(365.0 * 86_400.0))),
                Some(_) => None,
                None => cli.http.map(|_| DEFAULT_HTTP_QUEUE_WAIT),
            },
            running_from_start: matches!(cli.running_from, RunningFromArg::Start),
            rest: crate::rest::RestOptions {
                client_python: cli.http_python,
            },
            interpreters: volley_worker::runtime::Interpreters {
                python: cli.python,
                // Runtimes run in directories of their own: a relative path would name nothing.
                python_preload: cli
                    .python_preload
                    .as_deref()
                    .map(volley_worker::runtime::preload_list)
                    .unwrap_or_default(),
                python_path: cli
                    .python_path
                    .iter()
                    .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
                    .collect(),
                ..Default::default()
            },
            stream_ack_linger: Duration::from_micros(cli.stream_ack_linger_us),
            limits: crate::config::EdgeLimits {
                worker_connections: cli.max_worker_connections as usize,
                grpc_connections: cli.max_connections as usize,
                grpc_streams: cli.max_streams,
                handshake_timeout: Duration::from_millis(cli.handshake_timeout_ms),
                ..Default::default()
            },
        }
    }
}

/// How long a task may wait for a worker when the REST edge is on and no bound is given.
const DEFAULT_HTTP_QUEUE_WAIT: Duration = Duration::from_secs(300);

fn parse_python_version(s: &str) -> Result<String, String> {
    match s.trim().split_once('.') {
        Some((major, minor)) if major.parse::<u8>().is_ok() && minor.parse::<u8>().is_ok() => Ok(s.trim().to_owned()),
        _ => Err(format!("expected MAJOR.MINOR such as 3.11, not {s:?}")),
    }
}

/// `worker` beside this executable, else whatever `worker` the PATH finds.
fn default_worker_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("worker")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("worker"))
}
