//! The faults: when each strikes, and how a worker kill, a stall, a dispatcher restart
//! (or a leader kill under `--ha`) and a Redis restart are injected and timed.

use super::workload::{probe, Catalog};
use super::{ms_since, ChaosReport, ChaosSpec, FAULT_TIMEOUT};
use anyhow::bail;
use rand::rngs::SmallRng;
use rand::RngExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use volley_proto::api;
use volley_testbed::cluster::{Cluster, Signal};
use volley_testbed::redis_server::RedisServer;
/// When each fault happens, in order.
pub(super) fn schedule(spec: &ChaosSpec) -> Vec<(Duration, Fault)> {
    let at = |fraction: f64| spec.duration.mul_f64(fraction);
    let mut events = Vec::new();
    for k in 0..spec.worker_kills {
        let fraction = 0.08 + 0.8 * (k as f64 + 0.5) / spec.worker_kills as f64;
        events.push((at(fraction), Fault::KillWorker));
    }
    if spec.stall {
        events.push((at(0.2), Fault::StallWorker));
    }
    if spec.restart_dispatcher {
        let fault = if spec.ha {
            Fault::KillLeader
        } else {
            Fault::RestartDispatcher
        };
        events.push((at(0.45), fault));
    }
    if spec.restart_redis {
        events.push((at(0.7), Fault::RestartRedis));
    }
    events.sort_by_key(|(at, _)| *at);
    events
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Fault {
    KillWorker,
    StallWorker,
    RestartDispatcher,
    KillLeader,
    RestartRedis,
}

/// Counters summed over dispatcher incarnations (each restart starts from zero).
#[derive(Default)]
pub(super) struct Tally {
    pub(super) banked: api::Counters,
    pub(super) last: api::Counters,
}

impl Tally {
    pub(super) fn saw(&mut self, info: &api::ClusterInfoResponse) {
        if let Some(c) = info.counters {
            self.last = c;
        }
    }

    pub(super) fn bank(&mut self) {
        let (b, l) = (&mut self.banked, std::mem::take(&mut self.last));
        b.requeued += l.requeued;
        b.duplicate_results += l.duplicate_results;
    }

    pub(super) fn total(&self) -> api::Counters {
        api::Counters {
            requeued: self.banked.requeued + self.last.requeued,
            duplicate_results: self.banked.duplicate_results + self.last.duplicate_results,
            ..api::Counters::default()
        }
    }
}

pub(super) struct FaultContext<'a> {
    pub(super) cluster: &'a mut Cluster,
    pub(super) redis: &'a mut RedisServer,
    pub(super) catalog: &'a Catalog,
    pub(super) slots_of: &'a mut HashMap<usize, u32>,
    pub(super) tally: &'a mut Tally,
    pub(super) report: &'a mut ChaosReport,
    pub(super) rng: &'a mut SmallRng,
    pub(super) spec: &'a ChaosSpec,
}

impl FaultContext<'_> {
    pub(super) async fn inject(&mut self, fault: Fault) -> anyhow::Result<()> {
        eprintln!("chaos: {fault:?}");
        match fault {
            Fault::KillWorker => self.kill_worker().await,
            Fault::StallWorker => self.stall_worker().await,
            Fault::RestartDispatcher => self.restart_dispatcher().await,
            Fault::KillLeader => self.kill_leader().await,
            Fault::RestartRedis => self.restart_redis().await,
        }
    }

    pub(super) fn pick_worker(&mut self) -> anyhow::Result<usize> {
        let mut alive: Vec<usize> = self.slots_of.keys().copied().collect();
        alive.sort_unstable();
        anyhow::ensure!(!alive.is_empty(), "no worker left to break");
        Ok(alive[self.rng.random_range(0..alive.len())])
    }

    pub(super) async fn kill_worker(&mut self) -> anyhow::Result<()> {
        let victim = self.pick_worker()?;
        let slots = self.slots_of.remove(&victim).unwrap_or(self.spec.slots);
        let t0 = Instant::now();
        self.cluster.kill_worker(victim).await?;
        self.wait_registered(victim, false).await?;
        self.report.kill_detect_ms.push(ms_since(t0));
        self.report.workers_killed += 1;
        let fresh = self.cluster.add_worker(slots, &[]).await?;
        super::track(self.spec, self.cluster, self.redis);
        self.slots_of.insert(fresh, slots);
        self.wait_registered(fresh, true).await
    }

    pub(super) async fn stall_worker(&mut self) -> anyhow::Result<()> {
        let victim = self.pick_worker()?;
        let t0 = Instant::now();
        self.cluster.signal_worker(victim, Signal::SIGSTOP)?;
        let detected = self.wait_registered(victim, false).await;
        let stalled_for = t0.elapsed();
        // Resume it whatever happened, so nothing stays frozen.
        self.cluster.signal_worker(victim, Signal::SIGCONT)?;
        detected?;
        self.report.stall_detect_ms.push(stalled_for.as_secs_f64() * 1e3);
        let t1 = Instant::now();
        self.wait_registered(victim, true).await?;
        self.report.stall_rejoin_ms.push(ms_since(t1));
        self.report.workers_stalled += 1;
        Ok(())
    }

    pub(super) async fn restart_dispatcher(&mut self) -> anyhow::Result<()> {
        self.bank_counters().await;
        let t0 = Instant::now();
        self.cluster.kill_dispatcher().await?;
        self.cluster.restart_dispatcher().await?;
        super::track(self.spec, self.cluster, self.redis);
        self.report.dispatcher_ready_ms.push(ms_since(t0));
        self.recovered_since(t0).await?;
        self.report.dispatcher_restarts += 1;
        Ok(())
    }

    /// SIGKILLs the leader of the `--ha` pair; its standby takes over on the same ports,
    /// and a new standby is started beside it.
    pub(super) async fn kill_leader(&mut self) -> anyhow::Result<()> {
        self.bank_counters().await;
        let t0 = Instant::now();
        let took = self.cluster.kill_leader(FAULT_TIMEOUT).await?;
        self.report.takeover_ms.push(took.as_secs_f64() * 1e3);
        self.cluster.start_standby()?;
        super::track(self.spec, self.cluster, self.redis);
        self.recovered_since(t0).await?;
        self.report.leader_kills += 1;
        Ok(())
    }

    /// The last counters of a dispatcher about to go, kept.
    async fn bank_counters(&mut self) {
        if let Ok(info) = self.cluster.info().await {
            self.tally.saw(&info);
        }
        self.tally.bank();
    }

    /// After a dispatcher fault at `t0`: when every live worker was back, and when a new
    /// task's result came.
    async fn recovered_since(&mut self, t0: Instant) -> anyhow::Result<()> {
        let live = self.slots_of.len();
        let deadline = Instant::now() + FAULT_TIMEOUT;
        loop {
            if let Ok(info) = self.cluster.info().await {
                if info.workers.len() >= live {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("workers did not come back to the restarted dispatcher");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.report.dispatcher_workers_back_ms.push(ms_since(t0));
        probe(self.cluster, self.catalog.probe, &mut self.report.probe_ids).await?;
        self.report.dispatcher_recover_ms.push(ms_since(t0));
        Ok(())
    }

    pub(super) async fn restart_redis(&mut self) -> anyhow::Result<()> {
        self.redis.stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.redis.restart()?;
        super::track(self.spec, self.cluster, self.redis);
        let t0 = Instant::now();
        probe(self.cluster, self.catalog.probe, &mut self.report.probe_ids).await?;
        self.report.redis_recover_ms.push(ms_since(t0));
        self.report.redis_restarts += 1;
        if self.spec.ha {
            // Down longer than a lease: once Redis is back, the standby may take the
            // lease before the leader renews it, and the leader then exits deposed.
            tokio::time::sleep(Duration::from_millis(2 * self.spec.ha_lease_ms)).await;
            if self.cluster.replace_exited_leader(FAULT_TIMEOUT).await? {
                self.tally.bank();
                super::track(self.spec, self.cluster, self.redis);
                self.report.leaders_deposed += 1;
                probe(self.cluster, self.catalog.probe, &mut self.report.probe_ids).await?;
            }
        }
        Ok(())
    }

    /// Waits until worker `index` is (or is no longer) registered, keeping counters.
    pub(super) async fn wait_registered(&mut self, index: usize, registered: bool) -> anyhow::Result<()> {
        let name = format!("worker-{index}");
        let deadline = Instant::now() + FAULT_TIMEOUT;
        loop {
            if let Ok(info) = self.cluster.info().await {
                self.tally.saw(&info);
                if info.workers.iter().any(|w| w.name == name) == registered {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was {} registered after {FAULT_TIMEOUT:?}",
                    if registered { "not" } else { "still" }
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
