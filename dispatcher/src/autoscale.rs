//! The elastic pool's loop (`--autoscale POLICY --provision local`): on every reactor tick
//! it shows the scaler each function's queue, running tasks and instances (started by the
//! provisioner: starting, or registered and busy or idle), and carries out its decisions.
//! A start that fails — the binary is missing, the process exits before registering, or it
//! does not register in time — is counted and retried with backoff; the function's tasks
//! stay queued meanwhile. Hand-started workers serve as extra capacity and are never
//! retired by it.

use crate::core::{FunctionLoad, Now, SchedulerCore};
use crate::provision::{ProvisionError, Provisioner};
use crate::scaler::{Decision, FunctionView, Instance, InstanceId, PolicySpec, Scaler};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tracing::{info, warn};
use volley_proto::ids::WorkerId;

/// How long an instance may take from spawn to registration (beyond its `init`).
const REGISTER_DEADLINE: Duration = Duration::from_secs(30);
/// Backoff after a failed start: doubled per failure, up to the cap.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

#[derive(Debug)]
struct Pending {
    id: InstanceId,
    function: String,
    spawned_at: Instant,
}

#[derive(Debug, Default)]
struct FunctionState {
    failed_starts: u64,
    backoff_until: Option<Instant>,
    backoff: Duration,
}

/// The elastic pool.
#[derive(Debug)]
pub struct Autoscaler {
    scaler: Scaler,
    provisioner: Box<dyn Provisioner>,
    slots: u32,
    init: Duration,
    epoch: Instant,
    /// Started, not yet registered; by the name it will register under.
    starting: HashMap<String, Pending>,
    /// Registered instances.
    ready: HashMap<WorkerId, (InstanceId, String)>,
    functions: BTreeMap<String, FunctionState>,
}

impl Autoscaler {
    /// A pool run by `policy` through `provisioner`, instances of `slots` slots that take
    /// `init` to start.
    pub fn new(
        policy: &PolicySpec,
        max_instances: u32,
        provisioner: Box<dyn Provisioner>,
        slots: u32,
        init: Duration,
    ) -> Self {
        Self {
            scaler: Scaler::new(policy, max_instances),
            provisioner,
            slots,
            init,
            epoch: Instant::now(),
            starting: HashMap::new(),
            ready: HashMap::new(),
            functions: BTreeMap::new(),
        }
    }

    fn clock(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.epoch)
    }

    /// Tasks of `function` arrived (the hybrid policy learns idle times from these).
    pub fn arrival(&mut self, function: &str, now: Instant) {
        let at = self.clock(now);
        self.scaler.arrival(function, at);
    }

    /// A worker registered: if it is an instance we started, it is ready.
    pub fn registered(&mut self, name: &str, worker: WorkerId) {
        if let Some(p) = self.starting.remove(name) {
            info!(instance = p.id.0, function = %p.function, took_ms = p.spawned_at.elapsed().as_millis() as u64, "instance ready");
            if let Some(f) = self.functions.get_mut(&p.function) {
                f.backoff = Duration::ZERO;
            }
            self.ready.insert(worker, (p.id, p.function));
        }
    }

    /// A worker left the cluster.
    pub fn worker_gone(&mut self, worker: WorkerId) {
        self.ready.remove(&worker);
    }

    /// Adds what only the pool knows to `ClusterInfo`'s per-function rows.
    pub fn annotate(&self, loads: &mut Vec<FunctionLoad>) {
        let mut row = |function: &str| -> usize {
            match loads.iter().position(|l| l.function == function) {
                Some(i) => i,
                None => {
                    loads.push(FunctionLoad::empty(function));
                    loads.len() - 1
                }
            }
        };
        let mut at: Vec<(usize, u32, u64)> = Vec::new();
        for p in self.starting.values() {
            at.push((row(&p.function), 1, 0));
        }
        for (f, s) in &self.functions {
            if s.failed_starts > 0 {
                at.push((row(f), 0, s.failed_starts));
            }
        }
        for (i, starting, failed) in at {
            loads[i].starting += starting;
            loads[i].failed_starts = loads[i].failed_starts.max(failed);
        }
    }

    /// One round: reap, time out, then ask the scaler about every function in play.
    pub fn step(&mut self, core: &SchedulerCore, now: Now) {
        self.reap(now.instant);
        let loads = core.functions(now.instant);
        let mut names: BTreeSet<String> = loads.iter().map(|l| l.function.clone()).collect();
        names.extend(self.starting.values().map(|p| p.function.clone()));
        names.extend(self.ready.values().map(|(_, f)| f.clone()));
        names.extend(self.functions.keys().cloned());
        self.decide(core, now, &loads, names);
    }

    /// Tasks of `functions` were just submitted: the scaler is asked at once about those
    /// left waiting — no instance could take them — instead of at the next tick, as
    /// Knative's activator does from zero and a per-request platform (Lambda, Azure) does
    /// for every request beyond its warm instances. Tasks placed at once on warm instances
    /// cost nothing here; the policy decides what a wait calls for (the KPA, say, only
    /// scales from zero between its ticks). `client simulate` asks at the same moments.
    pub fn submitted(&mut self, core: &SchedulerCore, now: Now, functions: &[&str]) {
        let cold: BTreeSet<String> = functions
            .iter()
            .filter(|f| core.queued_of(f) > 0)
            .map(|f| (*f).to_owned())
            .collect();
        if cold.is_empty() {
            return;
        }
        // An instance retired since the last tick may have exited unreaped, and still
        // count against --max-instances.
        self.reap(now.instant);
        let loads = core.functions(now.instant);
        self.decide(core, now, &loads, cold);
    }

    fn decide(&mut self, core: &SchedulerCore, now: Now, loads: &[FunctionLoad], names: BTreeSet<String>) {
        let mut total = (self.starting.len() + self.ready.len()) as u32;
        for function in names {
            let load = loads.iter().find(|l| l.function == function);
            let mut instances: Vec<Instance> = core
                .bound_to(&function)
                .into_iter()
                .filter_map(|(wid, busy, idle_since)| {
                    self.ready.get(&wid).map(|(id, _)| Instance {
                        id: *id,
                        starting: false,
                        busy,
                        idle_since: self.clock(idle_since),
                    })
                })
                .collect();
            instances.extend(
                self.starting
                    .values()
                    .filter(|p| p.function == function)
                    .map(|p| Instance {
                        id: p.id,
                        starting: true,
                        busy: 0,
                        idle_since: self.clock(p.spawned_at),
                    }),
            );
            let view = FunctionView {
                function: &function,
                queued: load.map_or(0, |l| l.queued),
                in_flight: load.map_or(0, |l| l.running),
                slots: self.slots,
                instances: &instances,
            };
            let decisions = self.scaler.decide(self.clock(now.instant), &view, total);
            for d in decisions {
                match d {
                    Decision::Start { count, .. } => {
                        for _ in 0..count {
                            if !self.start(&function, now) {
                                break;
                            }
                            total += 1;
                        }
                    }
                    Decision::Retire { instance, .. } => {
                        if let Err(e) = self.provisioner.retire(instance) {
                            warn!(instance = instance.0, "cannot retire: {e}");
                        } else {
                            info!(instance = instance.0, %function, "retiring an idle instance");
                        }
                    }
                }
            }
        }
    }

    fn start(&mut self, function: &str, now: Now) -> bool {
        let state = self.functions.entry(function.to_owned()).or_default();
        if state.backoff_until.is_some_and(|until| now.instant < until) {
            return false;
        }
        match self.provisioner.start(function, now.unix_us) {
            Ok(started) => {
                info!(instance = started.id.0, %function, "starting an instance");
                self.starting.insert(
                    started.worker_name,
                    Pending {
                        id: started.id,
                        function: function.to_owned(),
                        spawned_at: started.spawned_at,
                    },
                );
                true
            }
            Err(ProvisionError::Full { .. }) => false,
            Err(e) => {
                self.failed_start(function, now.instant, &e.to_string());
                false
            }
        }
    }

    fn failed_start(&mut self, function: &str, now: Instant, why: &str) {
        let state = self.functions.entry(function.to_owned()).or_default();
        state.failed_starts += 1;
        state.backoff = (state.backoff * 2).clamp(BACKOFF.0, BACKOFF.1);
        state.backoff_until = Some(now + state.backoff);
        warn!(%function, failed = state.failed_starts, retry_in = ?state.backoff, "an instance failed to start: {why}");
    }

    fn reap(&mut self, now: Instant) {
        // Starts that never registered in time are given up.
        let late: Vec<(String, InstanceId, String)> = self
            .starting
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.spawned_at) > REGISTER_DEADLINE + self.init)
            .map(|(name, p)| (name.clone(), p.id, p.function.clone()))
            .collect();
        for (name, id, function) in late {
            self.starting.remove(&name);
            let _ = self.provisioner.retire(id);
            self.failed_start(&function, now, "it did not register in time");
        }
        for exited in self.provisioner.reap() {
            let was_starting = self
                .starting
                .iter()
                .find(|(_, p)| p.id == exited.id)
                .map(|(name, _)| name.clone());
            if let Some(name) = was_starting {
                self.starting.remove(&name);
                self.failed_start(
                    &exited.function,
                    now,
                    &format!("it exited before registering ({})", exited.how),
                );
            } else if !exited.retired {
                warn!(instance = exited.id.0, function = %exited.function, how = %exited.how, "an instance exited unasked");
            }
        }
    }
}
