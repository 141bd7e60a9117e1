//! Every byte that crosses a Volley process boundary.
//!
//! - [`api`] — the gRPC client API (`volley.v1.Dispatcher`), generated from
//!   `volley/v1/dispatcher.proto`.
//! - [`auth`] — the shared token that admits workers and clients, never printed.
//! - [`ids`] — id newtypes shared by every crate.
//! - [`function`] — what a function is ([`function::FunctionKind`]), how execution
//!   arguments resolve it into a runnable [`function::Job`], and the `noop`/`sleep:<ms>`
//!   spec strings people type.
//! - [`wire`] — the dispatcher↔worker messages ([`wire::FromWorker`], [`wire::ToWorker`])
//!   and their versioned, size-limited postcard codec.
//! - [`zmtp`] — the ZMTP 3 transport (ROUTER/DEALER, NULL mechanism) with its limits
//!   built in: no frame is buffered past its peer's limit, no stranger holds much.
//! - [`connection`] — typed ZeroMQ connections: handlers see messages, never bytes.
//! - [`exposition`] — the `/metrics` endpoint (Prometheus text format) each process may serve.
//! - [`text`] — user input clipped for error messages.
//! - [`telemetry`] — the logging set-up every binary shares (here, so no role depends on
//!   another for it).

pub mod auth;
pub mod connection;
pub mod exposition;
pub mod function;
pub mod grpc_codec;
pub mod ids;
pub mod telemetry;
pub mod text;
pub mod wire;
pub mod zmtp;

/// The generated gRPC types, client and server.
#[allow(missing_docs, clippy::all)]
pub mod api {
    tonic::include_proto!("volley.v1");

    /// The encoded file descriptor set, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("volley_descriptor");

    impl TaskInfo {
        /// A cold task's trip in order, µs on the dispatcher's clock: submitted, the
        /// scaler's decision, spawn, the process's `main`, its runtime spawned, the
        /// runtime up, init done (code loaded, READY), registered, dispatched, completed.
        /// `None` for a warm task. The one place that order lives.
        pub fn cold_start_marks(&self) -> Option<[u64; 10]> {
            let s = self.cold_start.filter(|_| self.cold)?;
            Some([
                self.submitted_us,
                s.decided_us,
                s.spawned_us,
                s.process_us,
                s.runtime_began_us.max(s.process_us),
                s.runtime_up_us.max(s.runtime_began_us).max(s.process_us),
                s.init_done_us,
                s.registered_us,
                self.dispatched_us,
                self.completed_us,
            ])
        }
    }
}

/// The Volley release, reported by workers at registration and by `ClusterInfo`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The scheduling mode a dispatcher runs, chosen at start and told to workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// The dispatcher's own pool runs tasks; no workers connect.
    Local,
    /// Workers ask for work with credits.
    Pull,
    /// The dispatcher places work on workers it picks.
    Push,
}

impl Mode {
    /// The lower-case name used on command lines and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Pull => "pull",
            Mode::Push => "push",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "local" => Ok(Mode::Local),
            "pull" => Ok(Mode::Pull),
            "push" => Ok(Mode::Push),
            other => Err(format!("unknown mode '{other}': expected local, pull or push")),
        }
    }
}
