//! One worker's life: connect, register, run what the dispatcher sends, report results,
//! and start over when the dispatcher goes silent.

use crate::executor::SlotPool;
use crate::metrics::WorkerMetrics;
use crate::provisioned::ProcessStart;
use std::sync::Arc;
use std::time::Duration;
// tokio's clock: the system's, except in tests that pause it to exercise silence handling.
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use volley_proto::auth::Token;
use volley_proto::connection::{ConnectionError, WorkerConnection};
use volley_proto::ids::WorkerId;
use volley_proto::wire::{FromWorker, TaskResult, ToWorker};
use volley_proto::Mode;

/// How a worker runs; built from the CLI or directly by tests.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks run at once.
    pub slots: u32,
    /// The dispatcher's worker endpoint, e.g. `tcp://127.0.0.1:5555`, or several
    /// separated by commas (dispatchers under `--ha`): the first that answers is used.
    pub dispatcher: String,
    /// The mode this worker expects; the dispatcher rejects a mismatch.
    pub expect_mode: Option<Mode>,
    /// A name stable across reconnects, shown by `ClusterInfo`.
    pub name: String,
    /// How long one TCP connection attempt may take before it is retried.
    pub connect_timeout: Duration,
    /// How long the dispatcher may take to answer `Hello`.
    pub welcome_timeout: Duration,
    /// The longest pause between reconnection attempts.
    pub max_backoff: Duration,
    /// The shared token presented in `Hello`, if the dispatcher requires one.
    pub token: Option<Token>,
    /// Prometheus counters, when `--metrics` is on.
    pub metrics: Option<WorkerMetrics>,
    /// The one function this worker serves, by its registered name (an instance of it);
    /// `None`: every function.
    pub function: Option<String>,
    /// How this process started, when a provisioner started it: reported with the first
    /// registration for the cold-start breakdown.
    pub start: Option<ProcessStart>,
    /// The interpreters that run user functions.
    pub interpreters: crate::runtime::Interpreters,
    /// Prewarming and the fork server.
    pub start_options: crate::runtime::StartOptions,
    /// Wait for the function to serve on stdin before registering ([`crate::stem_cell`]).
    pub stem_cell: bool,
    /// Code to start a runtime for in every slot before registering (a provisioned
    /// instance of a user function): the function, and the code's file.
    pub instance_code: Option<(Arc<volley_proto::function::UserCode>, std::path::PathBuf)>,
}

impl WorkerConfig {
    /// A config with defaults for everything but slots and endpoint.
    pub fn new(slots: u32, dispatcher: impl Into<String>) -> Self {
        let host = host_name();
        Self {
            slots,
            dispatcher: dispatcher.into(),
            expect_mode: None,
            name: format!("{host}-{}", std::process::id()),
            connect_timeout: Duration::from_millis(500),
            welcome_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(2),
            token: None,
            metrics: None,
            function: None,
            start: None,
            interpreters: crate::runtime::Interpreters::default(),
            start_options: crate::runtime::StartOptions::default(),
            stem_cell: false,
            instance_code: None,
        }
    }
}

fn host_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Why a worker stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The dispatcher refused this worker (wrong mode, wrong version, bad config).
    #[error("the dispatcher rejected this worker: {0}")]
    Rejected(String),
    /// The slot pool could not start.
    #[error("cannot start {slots} slot threads: {source}")]
    Slots {
        /// Slots asked for.
        slots: u32,
        /// Why threads could not be spawned.
        source: std::io::Error,
    },
    /// The directory for user code and runtimes could not be made.
    #[error("cannot prepare the directory for user functions' code: {0}")]
    Runtimes(std::io::Error),
    /// A stem cell's assignment could not be read.
    #[error("{0}")]
    Assignment(String),
    /// Zero slots makes a worker that can never run anything.
    #[error("a worker needs at least one slot")]
    NoSlots,
}

/// How a worker's run ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// Stopped by a signal or the caller's token.
    Cancelled,
    /// The dispatcher asked the worker to exit.
    DispatcherShutdown,
}

enum SessionEnd {
    Cancelled,
    DispatcherShutdown,
    Lost(String),
    Rejected(String),
}

struct Session {
    conn: WorkerConnection,
    worker_id: WorkerId,
    mode: Mode,
    heartbeat: Duration,
    liveness: u32,
}

/// Runs a worker until `shutdown` fires, the dispatcher says `Shutdown`, or it rejects us.
/// Loses of the dispatcher (killed, restarted, unreachable) are retried forever with backoff.
pub async fn run(mut config: WorkerConfig, shutdown: CancellationToken) -> Result<WorkerExit, WorkerError> {
    if config.slots == 0 {
        return Err(WorkerError::NoSlots);
    }
    let (results_tx, mut results_rx) = mpsc::unbounded_channel();
    let (starts_tx, mut starts_rx) = mpsc::unbounded_channel();
    let runtimes = crate::runtime::Runtimes::with_options(config.interpreters.clone(), config.start_options.clone())
        .map_err(WorkerError::Runtimes)?;
    runtimes.refill().await;
    runtimes.start_fork_server().await;
    let pool = SlotPool::start(config.slots as usize, results_tx, std::sync::Arc::new(runtimes)).map_err(|source| {
        WorkerError::Slots {
            slots: config.slots,
            source,
        }
    })?;
    pool.report_starts(starts_tx);
    if config.stem_cell {
        info!(
            prewarmed = pool.runtimes().pids().len(),
            "a stem cell: waiting for the function to serve"
        );
        let assignment = tokio::select! {
            _ = shutdown.cancelled() => return Ok(WorkerExit::Cancelled),
            a = crate::stem_cell::wait_for_assignment() => a.map_err(WorkerError::Assignment)?,
        };
        let Some(assignment) = assignment else {
            info!("the provisioner left before assigning a function");
            return Ok(WorkerExit::Cancelled);
        };
        info!(function = %assignment.function, name = %assignment.name, "assigned");
        assignment.apply(&mut config);
    }
    let mut in_flight: u32 = 0;
    let mut backoff = Duration::from_millis(50);
    // Only the process's first registration was a cold start.
    let mut start = config.start;
    // An instance connects while its runtimes start, and says hello once they are READY.
    let mut early = None;
    if let Some((code, path)) = &config.instance_code {
        let (runtime, conn) = tokio::join!(
            crate::provisioned::load_code(&pool, code.clone(), path),
            crate::leader::connect_any(&config.dispatcher, config.connect_timeout)
        );
        early = conn.ok();
        let runtime = runtime?;
        if let Some(s) = &mut start {
            s.init_done = std::time::Instant::now();
            s.runtime = runtime;
            s.code = Some(code.digest);
        }
    }
    loop {
        let session = tokio::select! {
            _ = shutdown.cancelled() => return Ok(WorkerExit::Cancelled),
            s = register(&config, start.as_ref(), early.take()) => s,
        };
        let session = match session {
            Ok(s) => s,
            Err(RegisterError::Rejected(reason)) => return Err(WorkerError::Rejected(reason)),
            Err(RegisterError::Unreachable(why)) => {
                warn!(dispatcher = %config.dispatcher, retry_in = ?backoff, "dispatcher not reachable: {why}; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(WorkerExit::Cancelled),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(config.max_backoff);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        start = None;
        if let Some(m) = &config.metrics {
            m.registered();
        }
        info!(worker_id = %session.worker_id, mode = %session.mode, slots = config.slots, "registered with the dispatcher");
        match serve(
            session,
            &config,
            &pool,
            &mut results_rx,
            &mut starts_rx,
            &mut in_flight,
            &shutdown,
        )
        .await
        {
            SessionEnd::Cancelled => return Ok(WorkerExit::Cancelled),
            SessionEnd::DispatcherShutdown => {
                info!("dispatcher asked this worker to shut down");
                return Ok(WorkerExit::DispatcherShutdown);
            }
            SessionEnd::Rejected(reason) => return Err(WorkerError::Rejected(reason)),
            SessionEnd::Lost(why) => {
                if let Some(m) = &config.metrics {
                    m.lost();
                }
                warn!("lost the dispatcher ({why}); reconnecting")
            }
        }
    }
}

enum RegisterError {
    Unreachable(String),
    Rejected(String),
}

/// Registers on `conn`, or on a new connection.
async fn register(
    config: &WorkerConfig,
    start: Option<&ProcessStart>,
    conn: Option<WorkerConnection>,
) -> Result<Session, RegisterError> {
    let unreachable = |e: ConnectionError| RegisterError::Unreachable(e.to_string());
    let mut conn = match conn {
        Some(c) => c,
        None => crate::leader::connect_any(&config.dispatcher, config.connect_timeout)
            .await
            .map_err(unreachable)?,
    };
    conn.send(&FromWorker::Hello {
        name: config.name.clone(),
        slots: config.slots,
        pid: std::process::id(),
        host: host_name(),
        version: volley_proto::VERSION.to_owned(),
        expect_mode: config.expect_mode,
        token: config.token.clone(),
        function: config.function.clone(),
        start: start.map(|s| Box::new(s.report())),
    })
    .await
    .map_err(unreachable)?;
    let deadline = Instant::now() + config.welcome_timeout;
    loop {
        let reply = tokio::time::timeout_at(deadline, conn.recv())
            .await
            .map_err(|_| RegisterError::Unreachable(format!("no welcome within {:?}", config.welcome_timeout)))?;
        match reply {
            Ok(ToWorker::Welcome {
                worker_id,
                mode,
                heartbeat_ms,
                liveness,
                prefetch: _,
            }) => {
                return Ok(Session {
                    conn,
                    worker_id,
                    mode,
                    heartbeat: Duration::from_millis(heartbeat_ms.max(1)),
                    liveness: liveness.max(1),
                })
            }
            Ok(ToWorker::Reject { reason }) => return Err(RegisterError::Rejected(reason)),
            // Anything else belongs to an earlier registration of this socket; skip it.
            Ok(other) => debug!(?other, "ignored before welcome"),
            Err(ConnectionError::Codec(e)) => warn!("undecodable frame from the dispatcher: {e}"),
            Err(e) => return Err(unreachable(e)),
        }
    }
}

async fn serve(
    mut s: Session,
    config: &WorkerConfig,
    pool: &SlotPool,
    results: &mut mpsc::UnboundedReceiver<Vec<TaskResult>>,
    starts: &mut mpsc::UnboundedReceiver<Vec<(volley_proto::ids::TaskId, u32)>>,
    in_flight: &mut u32,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let pull = s.mode == Mode::Pull;
    let lost = |e: ConnectionError| SessionEnd::Lost(e.to_string());
    if pull {
        // Credits are additive: what we can hold now; each finished task returns one.
        // The prefetch allowance is the dispatcher's to add, as it knows it.
        let credits = config.slots.saturating_sub(*in_flight);
        if credits > 0 {
            if let Err(e) = s.conn.send(&FromWorker::Ready { credits }).await {
                return lost(e);
            }
        }
    }
    let mut heartbeat = tokio::time::interval(s.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Kept in heartbeat intervals, not clock readings: a task's frames set a flag, and
    // only the tick reads a clock. The dispatcher is lost after `liveness` whole intervals
    // with nothing heard; any frame sent proves this worker alive, so a heartbeat goes
    // only after an interval with nothing sent.
    let mut heard = true;
    let mut silent_intervals: u32 = 0;
    let mut sent = true;
    let mut bad_frames: u64 = 0;
    // One waiter on `shutdown` for the session, not one joined and left per message.
    let stopping = shutdown.cancelled();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopping => {
                let mut done = Vec::new();
                while let Ok(batch) = results.try_recv() {
                    done.extend(batch);
                }
                if !done.is_empty() {
                    let _ = s.conn.send(&FromWorker::Results(done)).await;
                }
                let _ = s.conn.send(&FromWorker::Goodbye { reason: "worker stopped by signal".into() }).await;
                return SessionEnd::Cancelled;
            }
            // In pull mode each result also returns its slot's credit: one frame, not two.
            Some(mut done) = results.recv() => {
                while let Ok(more) = results.try_recv() {
                    done.extend(more);
                }
                if let Err(e) = report(&mut s.conn, done, in_flight, config).await {
                    return lost(e);
                }
                sent = true;
            }
            Some(mut began) = starts.recv() => {
                while let Ok(more) = starts.try_recv() {
                    began.extend(more);
                }
                if let Err(e) = s.conn.send(&FromWorker::Started(began)).await {
                    return lost(e);
                }
                sent = true;
            }
            msg = s.conn.recv() => {
                match msg {
                    Ok(ToWorker::Tasks(tasks)) => {
                        heard = true;
                        *in_flight += tasks.len() as u32;
                        if let Some(m) = &config.metrics {
                            m.received(tasks.len(), *in_flight);
                        }
                        let done = pool.run_or_queue(tasks);
                        if !done.is_empty() {
                            if let Err(e) = report(&mut s.conn, done, in_flight, config).await {
                                return lost(e);
                            }
                            sent = true;
                        }
                    }
                    Ok(ToWorker::Code { digest, total, offset, data }) => {
                        heard = true;
                        match pool.runtimes().cache.piece(digest, total, offset, &data) {
                            Ok(Some(path)) => debug!(%digest, bytes = total, path = %path.display(), "code received"),
                            Ok(None) => {}
                            Err(e) => {
                                if let Some(m) = &config.metrics {
                                    m.dropped_frame();
                                }
                                warn!("dropped code from the dispatcher: {e}");
                            }
                        }
                    }
                    Ok(ToWorker::Heartbeat) | Ok(ToWorker::Welcome { .. }) => heard = true,
                    Ok(ToWorker::Shutdown) => return SessionEnd::DispatcherShutdown,
                    Ok(ToWorker::Reject { reason }) => return SessionEnd::Rejected(reason),
                    Err(e @ (ConnectionError::Codec(_) | ConnectionError::Frames(_))) => {
                        bad_frames += 1;
                        if let Some(m) = &config.metrics {
                            m.dropped_frame();
                        }
                        if bad_frames == 1 {
                            warn!("dropped an undecodable frame from the dispatcher: {e}");
                        }
                    }
                    Err(e) => return lost(e),
                }
            }
            _ = heartbeat.tick() => {
                silent_intervals = if std::mem::take(&mut heard) { 0 } else { silent_intervals + 1 };
                if silent_intervals >= s.liveness {
                    return SessionEnd::Lost(format!(
                        "nothing heard for {silent_intervals} heartbeat intervals ({:?})",
                        s.heartbeat * silent_intervals
                    ));
                }
                if std::mem::take(&mut sent) {
                    continue;
                }
                if let Err(e) = s.conn.send(&FromWorker::Heartbeat { in_flight: *in_flight }).await {
                    return lost(e);
                }
            }
        }
    }
}

/// Sends finished tasks' results in one frame, and counts them out of `in_flight`.
async fn report(
    conn: &mut WorkerConnection,
    done: Vec<TaskResult>,
    in_flight: &mut u32,
    config: &WorkerConfig,
) -> Result<(), ConnectionError> {
    *in_flight = in_flight.saturating_sub(done.len() as u32);
    if let Some(m) = &config.metrics {
        m.finished(&done, *in_flight);
    }
    conn.send(&FromWorker::Results(done)).await
}
