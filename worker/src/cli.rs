//! The worker's command line: `worker <slots> <dispatcher-url> [--mode pull|push]`.

use crate::session::WorkerConfig;
use clap::Parser;
use std::time::Duration;
use volley_proto::auth::Token;
use volley_proto::Mode;

/// A Volley worker: runs the tasks a dispatcher hands it.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
pub struct Cli {
    /// Tasks run at once (execution slots, one thread each).
    #[arg(env = "VOLLEY_SLOTS")]
    pub slots: u32,
    /// The dispatcher's worker endpoint, e.g. tcp://127.0.0.1:5555; several separated by
    /// commas for dispatchers under --ha (the worker follows whichever leads).
    #[arg(env = "VOLLEY_DISPATCHER")]
    pub dispatcher: String,
    /// The mode this worker expects the dispatcher to run; refused if it differs.
    #[arg(short, long, env = "VOLLEY_MODE", value_parser = parse_worker_mode)]
    pub mode: Option<Mode>,
    /// A name shown in ClusterInfo (default: host-pid).
    #[arg(long, env = "VOLLEY_WORKER_NAME")]
    pub name: Option<String>,
    /// Longest pause between reconnection attempts, in milliseconds.
    #[arg(long, env = "VOLLEY_MAX_BACKOFF_MS", default_value_t = 2000)]
    pub max_backoff_ms: u64,
    /// The shared token the dispatcher was started with (prefer the variable: a flag
    /// shows in `ps`).
    #[arg(long, env = "VOLLEY_TOKEN", hide_env_values = true, value_parser = volley_proto::auth::TokenArg)]
    pub token: Option<Token>,
    /// Serve only this function (by its registered name): the worker is an instance of
    /// it, and the dispatcher routes it nothing else. Without it, every function.
    #[arg(long, env = "VOLLEY_FUNCTION")]
    pub function: Option<String>,
    /// Emulated runtime start-up: wait this long before connecting, as a container or
    /// language runtime would (the cold start's "init" component).
    #[arg(long, env = "VOLLEY_INIT_MS", default_value_t = 0)]
    pub init_ms: u64,
    /// Set by the dispatcher's provisioner: when it decided to start this instance and
    /// when it spawned it (µs since the epoch, its clock), echoed back in the first
    /// registration so the dispatcher can explain cold starts.
    #[arg(long, value_name = "DECIDED_US,SPAWNED_US", value_parser = parse_provisioned, hide = true)]
    pub provisioned: Option<(u64, u64)>,
    /// Exit (saying goodbye) when the parent process goes away: what a provisioner's
    /// instances use so that a killed dispatcher leaves no orphan.
    #[arg(long)]
    pub exit_with_parent: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (read-only); the flag alone means
    /// 127.0.0.1:9465, one port above the dispatcher's default.
    #[arg(long, env = "VOLLEY_METRICS", num_args = 0..=1, default_missing_value = DEFAULT_METRICS)]
    pub metrics: Option<std::net::SocketAddr>,
    /// The Python interpreter that runs python functions (default: python3 on PATH).
    #[arg(long, env = "VOLLEY_PYTHON", default_value = "python3")]
    pub python: std::path::PathBuf,
    /// A directory put first on python functions' `sys.path`; repeat for more. Where
    /// functions pickled by reference (the course FaaS's clients) are imported from: the
    /// client's checkout root.
    #[arg(
        long = "python-path",
        value_name = "DIR",
        env = "VOLLEY_PYTHON_PATH",
        value_delimiter = ':'
    )]
    pub python_path: Vec<std::path::PathBuf>,
    /// Modules python runtimes started ahead of their code (--prewarm, --fork-server)
    /// import while they wait, e.g. `dill,requests`: a function that imports them then
    /// finds them loaded.
    #[arg(long = "python-preload", value_name = "MODULES", env = "VOLLEY_PYTHON_PRELOAD")]
    pub python_preload: Option<String>,
    /// The Node.js that runs node functions (default: node on PATH).
    #[arg(long, env = "VOLLEY_NODE", default_value = "node")]
    pub node: std::path::PathBuf,
    /// The `java` that runs java functions; its `javac` is looked for beside it
    /// (default: java on PATH).
    #[arg(long, env = "VOLLEY_JAVA", default_value = "java")]
    pub java: std::path::PathBuf,
    /// Runtimes to start before any code is known, per language (`python=2,node=1`): a
    /// function's first task then pays only for loading its code. Refilled after use.
    #[arg(long, env = "VOLLEY_PREWARM", value_name = "LANG=N,...", value_parser = crate::runtime::prewarm::parse)]
    pub prewarm: Option<crate::runtime::prewarm::PrewarmSpec>,
    /// Fork Python runtimes from one warm interpreter (a fork server) instead of starting
    /// an interpreter for each: a Python cold start skips the interpreter's start.
    #[arg(long, env = "VOLLEY_FORK_SERVER")]
    pub fork_server: bool,
    /// Set by the dispatcher's provisioner: fork Python runtimes from the fork server
    /// listening at this socket (one for every instance on the host).
    #[arg(long, value_name = "PATH", hide = true)]
    pub fork_server_socket: Option<std::path::PathBuf>,
    /// Set by the dispatcher's provisioner: start the runtimes `--prewarm` asks for,
    /// then wait for the function to serve, one line of JSON on stdin.
    #[arg(long, hide = true)]
    pub stem_cell: bool,
    /// Set by the dispatcher's provisioner for an instance of a user function: the code's
    /// file and the function (JSON), so every slot's runtime is READY before registering.
    #[arg(long, value_name = "PATH", requires = "code_spec", hide = true)]
    pub code: Option<std::path::PathBuf>,
    /// See `--code`.
    #[arg(long, value_name = "JSON", requires = "code", hide = true)]
    pub code_spec: Option<String>,
}

/// Where `--metrics` without an address serves a worker's page.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9465";

fn parse_provisioned(s: &str) -> Result<(u64, u64), String> {
    let parse = |v: &str| v.trim().parse::<u64>().map_err(|e| format!("{v:?}: {e}"));
    match s.split_once(',') {
        Some((d, sp)) => Ok((parse(d)?, parse(sp)?)),
        None => Err("expected DECIDED_US,SPAWNED_US".into()),
    }
}

fn parse_worker_mode(s: &str) -> Result<Mode, String> {
    match s.parse::<Mode>()? {
        Mode::Local => Err("workers run in pull or push mode; local mode takes no workers".into()),
        m => Ok(m),
    }
}

impl From<Cli> for WorkerConfig {
    fn from(cli: Cli) -> Self {
        let mut config = WorkerConfig::new(cli.slots, normalize_endpoint(&cli.dispatcher));
        config.expect_mode = cli.mode;
        if let Some(name) = cli.name {
            config.name = name;
        }
        config.max_backoff = Duration::from_millis(cli.max_backoff_ms.max(10));
        config.token = cli.token;
        config.function = cli.function.filter(|f| !f.trim().is_empty());
        config.interpreters = crate::runtime::Interpreters {
            python: cli.python,
            // Runtimes run in directories of their own: a relative path would name nothing.
            python_path: cli
                .python_path
                .iter()
                .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
                .collect(),
            python_preload: cli
                .python_preload
                .as_deref()
                .map(crate::runtime::preload_list)
                .unwrap_or_default(),
            node: cli.node,
            java: cli.java,
        };
        config.start_options = crate::runtime::StartOptions {
            prewarm: cli.prewarm.unwrap_or_default().0,
            fork_server: cli.fork_server,
            fork_server_socket: cli.fork_server_socket,
            counts: Default::default(),
        };
        config.stem_cell = cli.stem_cell;
        if cli.metrics.is_some() {
            config.metrics = Some(crate::metrics::WorkerMetrics::with_runtime_starts(
                &config.name,
                config.slots,
                &config.start_options.counts,
            ));
        }
        config
    }
}

/// Accepts `host:port` as shorthand for `tcp://host:port`.
fn normalize_endpoint(url: &str) -> String {
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("tcp://{url}")
    }
}
