//! The one task that owns the scheduler core. Everything else talks to it through
//! channels; it drains whatever is ready, feeds the core, then flushes the core's
//! decisions in batches: one `Tasks` frame per worker, one store write per turn.

use crate::autoscale::Autoscaler;
use crate::core::{Capacity, Comm, InstanceStart, LossReason, Now, SchedulerCore, Transition, WorkerSpec};
use crate::registration;
use crate::shared::{EdgeCounters, Shared};
use crate::worker_link::{self, Inbound, InboundReader, Outgoing};
use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use volley_proto::auth::Token;
use volley_proto::connection::PeerId;
use volley_proto::ids::WorkerId;
use volley_proto::text::escaped;
use volley_proto::wire::{FromWorker, TaskAssignment, TaskResult, ToWorker};
use volley_proto::Mode;
use volley_worker::executor::SlotPool;

pub use crate::registration::MAX_WORKER_SLOTS;
pub use inbox::{Command, Inbox, Snapshot};

mod inbox;
/// Messages handled per turn before the reactor flushes.
const DRAIN_LIMIT: usize = 1024;
/// Entries a buffer the reactor reuses keeps room for between turns: a burst's larger
/// buffer is given back, not held for the dispatcher's life (per worker, for assignments).
const KEPT_CAPACITY: usize = 1024;

/// Where the reactor's tasks run: its own pool, or workers over ZeroMQ.
pub enum Backend {
    /// Local mode.
    Local {
        /// The in-process slot pool.
        pool: SlotPool,
        /// Its results.
        results: mpsc::UnboundedReceiver<Vec<TaskResult>>,
        /// The tasks its slots began that were sent while all were taken.
        starts: mpsc::UnboundedReceiver<Vec<(volley_proto::ids::TaskId, u32)>>,
        /// Its slots.
        slots: u32,
    },
    /// Pull and push mode.
    Remote {
        /// Messages to workers, one queue each.
        outgoing: Outgoing,
        /// What workers say.
        inbound: InboundReader,
    },
}

/// The reactor's fixed parameters.
pub struct ReactorConfig {
    /// The dispatcher's mode.
    pub mode: Mode,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Heartbeats missed before death.
    pub liveness: u32,
    /// Extra tasks per worker.
    pub prefetch: u32,
    /// Tell workers to exit on a graceful stop.
    pub stop_workers_on_exit: bool,
    /// The token a worker's `Hello` must carry, if any.
    pub token: Option<Token>,
}

#[derive(Default)]
struct Outbox {
    assignments: HashMap<WorkerId, Vec<TaskAssignment>>,
    transitions: Vec<Transition>,
    removed: Vec<WorkerId>,
}

impl Comm for Outbox {
    fn assign(&mut self, worker: WorkerId, task: TaskAssignment) {
        self.assignments.entry(worker).or_default().push(task);
    }
    fn record(&mut self, transition: Transition) {
        self.transitions.push(transition);
    }
    fn worker_removed(&mut self, worker: WorkerId, _reason: LossReason) {
        self.removed.push(worker);
    }
}

struct Peers {
    by_peer: HashMap<PeerId, WorkerId>,
    by_worker: HashMap<WorkerId, PeerId>,
}

/// The reactor: the core plus its I/O adapters.
pub struct Reactor {
    core: SchedulerCore,
    config: ReactorConfig,
    outbox: Outbox,
    peers: Peers,
    to_store: mpsc::UnboundedSender<Vec<Transition>>,
    local_worker: Option<WorkerId>,
    shared: Arc<Shared>,
    autoscale: Option<Autoscaler>,
}

impl Reactor {
    /// A reactor around `core`, writing transitions to `to_store`.
    pub fn new(
        core: SchedulerCore,
        config: ReactorConfig,
        to_store: mpsc::UnboundedSender<Vec<Transition>>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            core,
            config,
            outbox: Outbox::default(),
            peers: Peers {
                by_peer: HashMap::default(),
                by_worker: HashMap::default(),
            },
            to_store,
            local_worker: None,
            shared,
            autoscale: None,
        }
    }

    /// Runs an elastic pool beside the core.
    pub fn set_autoscale(&mut self, autoscale: Autoscaler) {
        self.autoscale = Some(autoscale);
    }

    /// Runs until `shutdown`; then optionally tells workers to exit and returns.
    pub async fn run(
        mut self,
        mut backend: Backend,
        mut commands: mpsc::UnboundedReceiver<Command>,
        shutdown: CancellationToken,
    ) {
        if let Backend::Local { slots, .. } = &backend {
            let spec = WorkerSpec {
                name: "local".into(),
                host: "dispatcher".into(),
                pid: std::process::id(),
                slots: *slots,
                capacity: Capacity::Slots,
                monitored: false,
                function: None,
                start: None,
            };
            self.local_worker = Some(self.core.add_worker(spec, Now::current(), &mut self.outbox));
        }
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Made once: a fresh `cancelled()` each turn would join and leave the token's
        // waiter list, under its lock, every turn.
        let stopping = shutdown.cancelled();
        tokio::pin!(stopping);
        loop {
            match &mut backend {
                Backend::Local { results, starts, .. } => tokio::select! {
                    _ = &mut stopping => break,
                    Some(cmd) = commands.recv() => {
                        self.command(cmd);
                        self.drain_commands(&mut commands);
                    }
                    Some(began) = starts.recv() => if let Some(local) = self.local_worker {
                        self.core.started(local, &began, &mut self.outbox);
                    },
                    Some(mut batch) = results.recv() => {
                        while let Ok(more) = results.try_recv() {
                            batch.extend(more);
                        }
                        if let Some(local) = self.local_worker {
                            self.core.results(local, batch, Now::current(), &mut self.outbox);
                        }
                    }
                    _ = tick.tick() => self.core.tick(Now::current(), &mut self.outbox),
                },
                Backend::Remote { inbound, outgoing } => tokio::select! {
                    _ = &mut stopping => break,
                    Some(cmd) = commands.recv() => {
                        self.command(cmd);
                        self.drain_commands(&mut commands);
                    }
                    Some(first) = inbound.next() => {
                        let now = Now::current();
                        self.inbound(first, now, outgoing);
                        for _ in 0..DRAIN_LIMIT {
                            match inbound.try_next() {
                                Some(next) => self.inbound(next, now, outgoing),
                                None => break,
                            }
                        }
                    }
                    _ = tick.tick() => {
                        let now = Now::current();
                        self.core.tick(now, &mut self.outbox);
                        // Workers declared dead for silence: their connections close, so a
                        // zombie peer (or a frame it left half-sent) holds nothing here.
                        for id in &self.outbox.removed {
                            if let Some(peer) = self.peers.by_worker.get(id) {
                                outgoing.disconnect(peer);
                            }
                        }
                        if let Some(a) = &mut self.autoscale {
                            a.step(&self.core, now);
                        }
                        outgoing.heartbeat(self.peers.by_worker.values());
                    }
                },
            }
            self.flush(&mut backend);
        }
        self.flush(&mut backend);
        if let Backend::Remote { outgoing, .. } = &mut backend {
            if self.config.stop_workers_on_exit {
                self.broadcast(outgoing, &ToWorker::Shutdown);
            }
        }
    }

    fn drain_commands(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) {
        for _ in 0..DRAIN_LIMIT {
            match commands.try_recv() {
                Ok(cmd) => self.command(cmd),
                Err(_) => break,
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(tasks) => {
                let now = Now::current();
                let mut functions: Vec<Arc<str>> = Vec::new();
                if let Some(a) = &mut self.autoscale {
                    for t in &tasks {
                        if functions.last().is_none_or(|l| !Arc::ptr_eq(l, &t.function)) {
                            a.arrival(&t.function, now.instant);
                            functions.push(t.function.clone());
                        }
                    }
                }
                self.core.submit(tasks, now, &mut self.outbox);
                if let Some(a) = &mut self.autoscale {
                    let names: Vec<&str> = functions.iter().map(|f| &**f).collect();
                    a.submitted(&self.core, now, &names);
                }
            }
            Command::Snapshot(reply) => {
                let _ = reply.send(Snapshot {
                    workers: self.core.workers(),
                    queued: self.core.queued(),
                    running: self.core.running(),
                    counters: self.core.counters(),
                    functions: {
                        let mut loads = self.core.functions(Now::current().instant);
                        if let Some(a) = &self.autoscale {
                            a.annotate(&mut loads);
                        }
                        loads
                    },
                });
            }
        }
    }

    fn inbound(&mut self, event: Inbound, now: Now, outgoing: &mut Outgoing) {
        match event {
            Inbound::Disconnected(peer) => {
                if let Some(id) = self.peers.by_peer.get(&peer).copied() {
                    info!(worker_id = %id, "worker connection closed; requeueing its tasks");
                    self.core
                        .remove_worker(id, LossReason::Disconnected, now, &mut self.outbox);
                }
                outgoing.forget(&peer);
            }
            Inbound::WrongVersion(peer, got) => outgoing.send(&peer, &worker_link::version_reject(got)),
            Inbound::Message(peer, msg) => {
                let known = self.peers.by_peer.get(&peer).copied();
                match (msg, known) {
                    (hello @ FromWorker::Hello { .. }, _) => self.hello(peer, hello, now, outgoing),
                    (FromWorker::Ready { credits }, Some(id)) => self.core.ready(id, credits, now, &mut self.outbox),
                    (FromWorker::Results(mut results), Some(id)) => {
                        results.iter_mut().for_each(|r| r.outcome.bound());
                        self.core.results(id, results, now, &mut self.outbox)
                    }
                    (FromWorker::Started(tasks), Some(id)) => self.core.started(id, &tasks, &mut self.outbox),
                    (FromWorker::Heartbeat { .. }, Some(id)) => self.core.heard_from(id, now),
                    (FromWorker::Goodbye { reason }, Some(id)) => {
                        info!(worker_id = %id, %reason, "worker said goodbye; requeueing its tasks");
                        self.core.remove_worker(id, LossReason::Goodbye, now, &mut self.outbox);
                    }
                    (FromWorker::Results(results), None) => {
                        // A worker we declared dead, or a stranger: its results are stale.
                        self.core.results(WorkerId(0), results, now, &mut self.outbox);
                    }
                    // Unregistered peers' heartbeats, credits and goodbyes mean nothing; a
                    // live one stops hearing our heartbeats and registers again.
                    (_, None) => {}
                }
            }
        }
    }

    fn hello(&mut self, peer: PeerId, hello: FromWorker, now: Now, outgoing: &mut Outgoing) {
        let FromWorker::Hello {
            name,
            slots,
            pid,
            host,
            version,
            expect_mode,
            token,
            function,
            start,
        } = hello
        else {
            return;
        };
        if !self.config.token.as_ref().is_none_or(|t| t.admits(token.as_ref())) {
            // Sampled: a stranger repeating itself must not flood the log.
            if let Some(rejected) = EdgeCounters::bump_sampled(&self.shared.counters.rejected_workers) {
                warn!(worker = %escaped(&name, 64), host = %escaped(&host, 64), pid, rejected, "rejected a worker: missing or wrong token (logged at powers of two)");
            }
            let reason = "authentication failed: this dispatcher requires the shared token (--token / VOLLEY_TOKEN)";
            outgoing.send(&peer, &ToWorker::Reject { reason: reason.into() });
            return;
        }
        let mut spec = WorkerSpec {
            name,
            host,
            pid,
            slots,
            capacity: Capacity::Slots,
            monitored: true,
            function: function.map(Arc::from),
            start: start.as_deref().map(|s| InstanceStart::from_report(s, now.unix_us)),
        };
        let by_name = self
            .core
            .worker_named(&spec.name)
            .filter(|id| self.peers.by_peer.get(&peer) != Some(id));
        let holder = by_name.and_then(|id| self.core.worker_spec(id));
        let refusal = registration::refusal(&spec, &version, expect_mode, self.config.mode, holder);
        if let Some(reason) = refusal {
            EdgeCounters::bump(&self.shared.counters.rejected_workers);
            warn!(worker = %escaped(&spec.name, 64), "rejected a worker: {reason}");
            outgoing.send(&peer, &ToWorker::Reject { reason });
            return;
        }
        if version != volley_proto::VERSION {
            info!(worker = %spec.name, %version, "worker runs another release; the protocol matches");
        }
        // A reconnecting worker voids its old registration: requeue what it held at once.
        let old = self.peers.by_peer.get(&peer).copied().or(by_name);
        if let Some(old) = old {
            self.core
                .remove_worker(old, LossReason::Replaced, now, &mut self.outbox);
            self.forget_removed();
        }
        spec.capacity = if self.config.mode == Mode::Pull {
            Capacity::Credits
        } else {
            Capacity::Slots
        };
        let (name, slots) = (spec.name.clone(), spec.slots);
        // Assignments leave only at flush, so this Welcome precedes any Tasks frame.
        let id = self.core.add_worker(spec, now, &mut self.outbox);
        if let Some(a) = &mut self.autoscale {
            a.registered(&name, id);
        }
        let welcome = ToWorker::Welcome {
            worker_id: id,
            mode: self.config.mode,
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            liveness: self.config.liveness,
            prefetch: self.config.prefetch,
        };
        outgoing.send(&peer, &welcome);
        outgoing.admit(&peer);
        if let Some(digest) = start.and_then(|s| s.code) {
            outgoing.holds_code(&peer, digest);
        }
        self.peers.by_peer.insert(peer.clone(), id);
        self.peers.by_worker.insert(id, peer);
        info!(worker_id = %id, worker = %name, slots, "worker registered");
    }

    fn forget_removed(&mut self) {
        for id in self.outbox.removed.drain(..) {
            self.outbox.assignments.remove(&id);
            if let Some(a) = &mut self.autoscale {
                a.worker_gone(id);
            }
            if let Some(peer) = self.peers.by_worker.remove(&id) {
                if self.peers.by_peer.get(&peer) == Some(&id) {
                    self.peers.by_peer.remove(&peer);
                }
            }
        }
    }

    fn broadcast(&self, outgoing: &mut Outgoing, msg: &ToWorker) {
        outgoing.send_to_all(self.peers.by_worker.values(), msg);
    }

    fn flush(&mut self, backend: &mut Backend) {
        self.forget_removed();
        // Tasks leave before their transitions go to the store writer, whose turn would
        // otherwise come first. The writer never waited for them: durability rests on
        // the records written at submission and on leases, not on this order.
        // Each worker's buffer stays for its next batch: no allocation per turn.
        for (worker, tasks) in self.outbox.assignments.iter_mut().filter(|(_, t)| !t.is_empty()) {
            match backend {
                Backend::Local { pool, .. } => {
                    pool.submit_all(self.shared.code.given(&pool.runtimes().cache, std::mem::take(tasks)))
                }
                Backend::Remote { outgoing, .. } => {
                    if let Some(peer) = self.peers.by_worker.get(worker) {
                        outgoing.send_tasks(peer, tasks);
                    }
                    tasks.clear();
                    tasks.shrink_to(KEPT_CAPACITY);
                }
            }
        }
        if !self.outbox.transitions.is_empty() {
            if crate::persist::write_now(&self.shared, &mut self.outbox.transitions) {
                self.outbox.transitions.shrink_to(KEPT_CAPACITY);
            } else if self
                .to_store
                .send(std::mem::take(&mut self.outbox.transitions))
                .is_err()
            {
                warn!("store writer is gone; transitions not persisted");
            }
        }
    }
}
