//! What a cluster is made of: mode, workers, slots, store, flags, token and TLS.

use std::path::PathBuf;
use volley_proto::auth::Token;
use volley_proto::Mode;

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The dispatcher's mode.
    pub mode: Mode,
    /// Workers to start (ignored in local mode).
    pub workers: usize,
    /// Slots per worker, or of the local pool in local mode.
    pub slots: u32,
    /// `memory` or a Redis URL.
    pub store: String,
    /// Further dispatcher flags.
    pub dispatcher_args: Vec<String>,
    /// Names the log directory.
    pub label: String,
    /// `RUST_LOG` for every process.
    pub log_level: String,
    /// The worker port (0: the OS picks).
    pub worker_port: u16,
    /// The shared token the dispatcher requires and the cluster's workers and clients
    /// present (passed in the environment, never on a command line).
    pub token: Option<Token>,
    /// TLS on the gRPC API.
    pub tls: Option<ClusterTls>,
    /// Environment variables for the dispatcher (and so its instances) and the cluster's
    /// workers, e.g. the interpreters user functions run on (`VOLLEY_PYTHON`).
    pub env: Vec<(String, String)>,
}

/// The dispatcher's TLS identity and the CA clients trust.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// PEM certificate chain file.
    pub cert: PathBuf,
    /// PEM private key file.
    pub key: PathBuf,
    /// PEM of the CA that signed `cert`.
    pub ca_pem: Vec<u8>,
}

impl ClusterSpec {
    /// A memory-store cluster of `workers` workers with `slots` slots each.
    pub fn new(mode: Mode, workers: usize, slots: u32) -> Self {
        Self {
            mode,
            workers,
            slots,
            store: "memory".into(),
            dispatcher_args: Vec::new(),
            label: format!("{mode}"),
            log_level: "info".into(),
            worker_port: 0,
            token: None,
            tls: None,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for the dispatcher, the processes it starts and the
    /// cluster's workers.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Requires this token of workers and clients.
    pub fn token(mut self, token: Token) -> Self {
        self.token = Some(token);
        self
    }

    /// Serves the gRPC API over TLS.
    pub fn tls(mut self, tls: ClusterTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Uses this store.
    pub fn store(mut self, store: impl Into<String>) -> Self {
        self.store = store.into();
        self
    }

    /// Adds dispatcher flags.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.dispatcher_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Names the log directory.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Binds the worker endpoint on this port instead of one the OS picks.
    pub fn worker_port(mut self, port: u16) -> Self {
        self.worker_port = port;
        self
    }

    /// Sets `RUST_LOG` for every process.
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }
}
