//! The Volley dispatcher: takes tasks over gRPC, keeps their state in a store, and hands
//! them to workers in local, pull or push mode.
//!
//! - [`core`] — the scheduler state machine (no I/O): queue, leases, attempts, placement.
//! - [`provision`] — starting and retiring instances (`local`: worker processes here).
//! - [`scaler`] — the elastic pool's scaler (no I/O): fixed keep-alive, Knative's KPA, the
//!   hybrid histogram; also what `client simulate` runs on a virtual clock.
//! - [`reactor`] — the one task that owns the core and batches its decisions.
//! - [`worker_link`] — the ZeroMQ ROUTER endpoint workers connect to.
//! - [`registration`] — what a worker's `Hello` may say: every field bounded, names not
//!   taken over by another process.
//! - [`ha`] — dispatchers that stand in for each other: a lease in Redis, fenced writes.
//! - [`listeners`] — the sockets a dispatcher serves on, bound by its caller.
//! - [`persist`] — the store writer: transitions are stored before clients hear of them.
//! - [`store`] — the [`store::TaskStore`] trait with memory and Redis backends.
//! - [`autoscale`] — the elastic pool's loop: scaler decisions carried out by a provisioner.
//! - [`front`] — the front door both client edges share: submit, register, read back.
//! - [`api`] — its gRPC edge: the service, health and reflection.
//! - [`rest`] — its REST edge (`--http`): the course FaaS's four endpoints.
//! - [`metrics`] — what is recorded as tasks pass: tasks by function and state, latency.
//! - [`scrape`] — the Prometheus page (`--metrics`): those, and the core's queue and workers.
//! - [`grpc_edge`] — the gRPC port's bounds below tonic: accept back-off, connection cap,
//!   a deadline for a connection's first call.
//! - [`security`] — the token check on gRPC calls and the TLS identity.
//! - [`shared`] — admission control and counters shared without locks.
//! - [`config`], [`cli`] — configuration and the command line.

pub mod api;
pub mod autoscale;
pub mod cli;
pub mod config;
pub mod core;
pub mod front;
pub mod grpc_edge;
pub mod ha;
pub mod listeners;
pub mod metrics;
pub mod persist;
pub mod provision;
pub mod reactor;
pub mod registration;
pub mod rest;
pub mod scaler;
pub mod scrape;
pub mod security;
pub mod shared;
pub mod store;
pub mod worker_link;

use crate::core::{CoreConfig, NewTask, SchedulerCore};
use crate::reactor::{Backend, Reactor, ReactorConfig};
use crate::shared::Shared;
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tracing::{info, warn};
use volley_proto::api::dispatcher_server::DispatcherServer;
use volley_proto::wire::Outcome;
use volley_proto::Mode;

pub use config::Config;
pub use listeners::Listeners;

/// How long a stopping dispatcher lets in-flight gRPC calls finish.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Facts about a started dispatcher.
#[derive(Debug, Clone)]
pub struct Handle {
    /// Where the gRPC API listens.
    pub grpc_addr: SocketAddr,
    /// `http://…` or, with TLS, `https://…`.
    pub grpc_url: String,
    /// Where workers connect (`None` in local mode).
    pub worker_endpoint: Option<String>,
    /// The store in use.
    pub store: String,
    /// Tasks recovered from the store at start.
    pub recovered: usize,
    /// `http://…/metrics`, when metrics are on.
    pub metrics_url: Option<String>,
    /// `http://…` of the REST edge, when it is on.
    pub http_url: Option<String>,
}

/// Starts a dispatcher. Everything that can fail at start (store, recovery, binding the
/// worker socket) fails here; the returned future runs until `shutdown` and then drains.
pub async fn start(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<(Handle, impl Future<Output = anyhow::Result<()>>)> {
    let options = store::StoreOptions {
        redis_prefix: config.redis_prefix.clone(),
        retain_finished: config.retain_finished,
        redis_finished_ttl: config.redis_finished_ttl,
        fence: config.leadership.as_ref().map(|l| l.fence()),
    };
    let store = store::open(&config.store, &options)
        .await
        .with_context(|| format!("opening the task store '{}'", store::redact(&config.store)))?;
    let metrics = listeners.metrics.is_some().then(|| {
        Arc::new(scrape::Metrics::new(scrape::BuildFacts {
            mode: config.mode.to_string(),
            store: store.describe().split(':').next().unwrap_or("memory").to_owned(),
            policy: config.policy.as_str().to_owned(),
        }))
    });
    let mut shared = Shared::new(store.clone(), config.max_queued, config.watch_buffer);
    if let Some(m) = &metrics {
        shared = shared.with_metrics(m.tasks.clone());
    }
    shared.leadership = config.leadership.clone();
    let shared = Arc::new(shared);
    let max_job_ms = config.task_timeout.as_millis() as u64;

    let recovered = recover(&shared, max_job_ms)
        .await
        .context("recovering unfinished tasks")?;
    let recovered_count = recovered.len();
    if recovered_count > 0 {
        info!(tasks = recovered_count, "recovered unfinished tasks from the store");
    }
    shared.admission.force_admit(recovered_count);

    let tracker = TaskTracker::new();
    let grpc_addr = listeners.grpc.local_addr().context("reading the gRPC address")?;
    let local_starts = !config.local_runtimes.prewarm.is_empty() || config.local_runtimes.fork_server;
    if local_starts && config.mode != Mode::Local && config.autoscale.is_none() {
        anyhow::bail!("--prewarm and --fork-server start the runtimes of the local pool (local mode) or of an elastic pool's instances (--autoscale); pull and push workers take their own");
    }
    if config.autoscale.is_some() && config.mode == Mode::Local {
        anyhow::bail!("--autoscale needs workers: run in pull or push mode");
    }
    if let Some(dir) = config.autoscale.as_ref().and_then(|a| a.log_dir.as_ref()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("--instance-logs {}: {e}", dir.display()))?;
    }
    let (backend, worker_endpoint) = match config.mode {
        Mode::Local => {
            let (tx, rx) = mpsc::unbounded_channel();
            let runtimes = volley_worker::runtime::Runtimes::with_options(
                config.interpreters.clone(),
                config.local_runtimes.clone(),
            )
            .context("preparing the directory for user functions")?;
            runtimes.refill().await;
            runtimes.start_fork_server().await;
            let pool = volley_worker::executor::SlotPool::start(config.local_slots as usize, tx, Arc::new(runtimes))
                .context("starting the local pool")?;
            let (starts_tx, starts) = mpsc::unbounded_channel();
            pool.report_starts(starts_tx);
            let local = Backend::Local {
                pool,
                results: rx,
                starts,
                slots: config.local_slots,
            };
            (local, None)
        }
        Mode::Pull | Mode::Push => {
            let listener = listeners.workers.context("pull and push mode need a worker listener")?;
            let link = worker_link::start(
                listener,
                volley_proto::zmtp::RouterLimits {
                    max_peers: config.limits.worker_connections,
                    ..Default::default()
                },
                shared.clone(),
                &tracker,
                shutdown.clone(),
            )
            .context("binding the worker endpoint")?;
            let _ = shared.worker_socket.set(link.stats.clone());
            let remote = Backend::Remote {
                outgoing: link.outgoing,
                inbound: link.inbound,
            };
            (remote, Some(link.endpoint))
        }
    };

    let core = SchedulerCore::new(
        CoreConfig {
            max_attempts: config.max_attempts,
            prefetch: config.prefetch,
            policy: config.policy,
            lease: config.task_timeout + config::LEASE_GRACE,
            liveness: config.heartbeat * config.liveness,
            max_queue_wait: config.max_queue_wait,
            report_starts: config.running_from_start,
        },
        config.seed,
    );
    let (to_store, from_core) = mpsc::unbounded_channel();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let mut reactor = Reactor::new(
        core,
        ReactorConfig {
            mode: config.mode,
            heartbeat: config.heartbeat,
            liveness: config.liveness,
            prefetch: config.prefetch,
            stop_workers_on_exit: config.stop_workers_on_exit,
            token: config.token.clone(),
        },
        to_store,
        shared.clone(),
    );
    if let (Some(a), Some(endpoint)) = (&config.autoscale, &worker_endpoint) {
        let provisioner = provision::local::LocalProvisioner::new(provision::local::LocalConfig {
            worker_bin: a.worker_bin.clone(),
            endpoint: endpoint.clone(),
            slots: a.slots,
            init_ms: a.init.as_millis() as u64,
            max_instances: a.max_instances as usize,
            token: config.token.clone(),
            log_dir: a.log_dir.clone(),
            code: Some(provision::local::CodeSource(shared.clone())),
            prewarm: a.prewarm.clone(),
            fork_server: a.fork_server,
            ready_workers: a.ready_workers,
            interpreters: config.interpreters.clone(),
            fork_workers: a.fork_workers,
        });
        info!(policy = %a.policy.label(), max_instances = a.max_instances, worker_bin = %a.worker_bin.display(), "elastic pool on");
        reactor.set_autoscale(autoscale::Autoscaler::new(
            &a.policy,
            a.max_instances,
            Box::new(provisioner),
            a.slots,
            a.init,
        ));
    }
    if !recovered.is_empty() {
        commands_tx
            .send(reactor::Command::Submit(recovered))
            .context("queueing recovered tasks")?;
    }
    let metrics_url = match (listeners.metrics, &metrics) {
        (Some(listener), Some(m)) => {
            let addr = listener.local_addr().context("reading the metrics address")?;
            let render = m.render(shared.clone(), commands_tx.clone());
            tracker.spawn(volley_proto::exposition::serve(listener, render, shutdown.clone()));
            Some(format!("http://{addr}/metrics"))
        }
        _ => None,
    };
    tracker.spawn(persist::run(shared.clone(), from_core, shutdown.clone()));
    tracker.spawn(reactor.run(backend, commands_rx, shutdown.clone()));

    let front = front::Front::new(shared.clone(), commands_tx, max_job_ms, config.mode);
    let api = api::Api::new(
        front.clone(),
        api::ClusterFacts {
            mode: config.mode,
            worker_endpoint: worker_endpoint.clone().unwrap_or_default(),
            prefetch: config.prefetch,
            policy: config.policy.as_str(),
            ack_linger: config.stream_ack_linger,
        },
    );
    let http_url = match listeners.http {
        Some(listener) => {
            let addr = listener.local_addr().context("reading the REST address")?;
            let counters = shared.rest.clone();
            tracker.spawn(rest::serve(
                listener,
                front.clone(),
                config.rest.clone(),
                counters,
                shutdown.clone(),
            ));
            Some(format!("http://{addr}"))
        }
        None => None,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<DispatcherServer<api::Api>>().await;
    // Both reflection versions: grpcurl and grpcui speak v1, while grpcio-reflection,
    // Postman and older tools still ask v1alpha.
    let reflection_v1 = reflection_builder().build_v1().context("building gRPC reflection")?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .context("building gRPC reflection (v1alpha)")?;
    let connections = Arc::new(grpc_edge::Connections::default());
    let _ = shared.grpc_edge.set(connections.clone());
    let incoming = grpc_edge::incoming(listeners.grpc, config.limits.clone(), connections.clone());
    let limits = &config.limits;
    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.grpc_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .http2_max_pending_accept_reset_streams(Some(64))
        .tcp_keepalive(Some(std::time::Duration::from_secs(60)));
    if let Some(files) = &config.tls {
        builder = builder
            .tls_config(security::server_tls(files)?)
            .context("configuring TLS on the gRPC API")?;
    }
    // Health stays open (load balancers probe it); reflection only describes the schema.
    // Without a token the API is served with no interceptor at all.
    let service = DispatcherServer::new(api);
    let (guarded, open) = match config.token.clone() {
        Some(token) => {
            let check = security::RequireToken::new(token, shared.clone());
            (Some(InterceptedService::new(service, check)), None)
        }
        None => (None, Some(service)),
    };
    let mark_called = tonic::service::InterceptorLayer::new(move |request: tonic::Request<()>| {
        connections.called(request.remote_addr());
        Ok(request)
    });
    let server = builder
        .layer(mark_called)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_optional_service(guarded)
        .add_optional_service(open)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());

    let scheme = if config.tls.is_some() { "https" } else { "http" };
    let handle = Handle {
        grpc_addr,
        grpc_url: format!("{scheme}://{grpc_addr}"),
        worker_endpoint,
        store: store.describe(),
        recovered: recovered_count,
        metrics_url,
        http_url,
    };
    let run = async move {
        // In-flight calls get a grace period; long-lived watch streams and idle client
        // connections would otherwise hold the stop forever.
        let grace = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_GRACE).await;
        };
        let served = tokio::select! {
            served = server => served,
            _ = grace => {
                warn!("closing client connections still open {DRAIN_GRACE:?} after the stop");
                Ok(())
            }
        };
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
        served.context("gRPC server failed")
    };
    Ok((handle, run))
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(volley_proto::api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Reads every unfinished task back from the store and rebuilds its job.
async fn recover(shared: &Shared, max_job_ms: u64) -> anyhow::Result<Vec<NewTask>> {
    let records = shared.store.recover_unfinished().await?;
    let mut functions = std::collections::HashMap::new();
    let mut tasks = Vec::with_capacity(records.len());
    let mut unusable = Vec::new();
    for r in records {
        if let std::collections::hash_map::Entry::Vacant(slot) = functions.entry(r.function_id) {
            let mut record = shared.store.function(r.function_id).await?;
            if let Some(f) = &record {
                if !shared.hold_code(&f.kind).await? {
                    warn!(function = %f.name, "the store has no code for this function; its unfinished tasks fail");
                    record = None;
                }
            }
            if let (Some(m), Some(f)) = (&shared.metrics, &record) {
                m.name_function(f.id, &f.name);
            }
            slot.insert(record);
        }
        let job = functions
            .get(&r.function_id)
            .and_then(|f| f.as_ref())
            .and_then(|f| f.kind.resolve(&r.args, max_job_ms).ok());
        match job {
            Some(job) => tasks.push(NewTask {
                id: r.id,
                function_id: r.function_id,
                function: functions
                    .get(&r.function_id)
                    .and_then(|f| f.as_ref())
                    .map(|f| Arc::from(f.name.as_str()))
                    .unwrap_or_else(|| Arc::from("")),
                job,
                attempts: r.attempts,
                submitted_us: r.submitted_us,
            }),
            None => unusable.push(core::Transition::Finished(core::Finished {
                task: r.id,
                function_id: r.function_id,
                outcome: Outcome::Failed(
                    "unrecoverable: its function is missing or its args exceed this dispatcher's limits".into(),
                ),
                attempts: r.attempts,
                worker: None,
                submitted_us: r.submitted_us,
                dispatched_us: r.dispatched_us,
                completed_us: core::Now::current().unix_us,
                wait_us: 0,
                run_us: 0,
                cold: None,
                log: String::new(),
            })),
        }
    }
    if !unusable.is_empty() {
        warn!(
            count = unusable.len(),
            "unfinished tasks could not be rebuilt and were marked FAILED"
        );
        shared.store.record(&unusable).await?;
    }
    Ok(tasks)
}
