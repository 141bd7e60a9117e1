//! The CPU curve: what one task costs each role — generator, dispatcher, workers — as
//! the offered rate rises, beside the latency at that rate. Serverless traffic comes one
//! invocation at a time, and a platform's cost per invocation is the figure an operator
//! pays for; a batch benchmark hides it.
//!
//! One cluster per mode and shape, kept across its rates (a rate's cost is read as the
//! difference of each process's CPU time before and after it, so starting the cluster is
//! not charged to anyone); one open-loop run per rate. Each rate's [floor](crate::studies::floor)
//! is measured first, in the same run, so each point also says how many times the
//! machine's bare cost of carrying an invocation each role spends.
//!
//! After the listed rates, each cluster is searched for the highest rate it sustains: the
//! highest that meets an SLO, bisected between the highest listed rate that met it and
//! the lowest above that did not (or the search's ceiling). That point is the curve's
//! last, with its own floor: what an invocation costs when the system runs flat out.

mod highest;
pub use highest::{bracket, HighestSearch};

use super::transport::Transport;
use super::{run, Arrival, LoadSpec};
use crate::studies::floor::FloorPoint;
use crate::workload::OpType;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use volley_client::Client;
use volley_proto::Mode;
use volley_testbed::procstat::MachineTimes;

/// The search's resolution: it stops when the lowest failing rate is within 10 % of the
/// highest passing one.
const RESOLUTION: f64 = 1.10;

/// Steal from this share (percent) up is printed beside a point.
const STEAL_WORTH_SAYING: f64 = 1.0;

/// What to measure.
#[derive(Debug, Clone)]
pub struct CurveSpec {
    /// Offered rates, requests/s, ascending.
    pub rates: Vec<f64>,
    /// Scheduling modes.
    pub modes: Vec<Mode>,
    /// Cluster shapes: (worker processes, slots each).
    pub shapes: Vec<(usize, u32)>,
    /// Sending time per rate.
    pub duration: Duration,
    /// Warm-up per rate (not in the latency).
    pub warmup: Duration,
    /// Wait for stragglers per rate.
    pub drain: Duration,
    /// Arrival process.
    pub arrival: Arrival,
    /// How requests travel.
    pub transport: Transport,
    /// Arrivals' seed.
    pub seed: u64,
    /// The search for the highest sustained rate, if any.
    pub highest: Option<HighestSearch>,
}

/// One point of the curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Scheduling mode.
    pub mode: String,
    /// Worker processes.
    pub workers: usize,
    /// Slots per worker.
    pub slots: u32,
    /// `stream` or `unary`.
    pub transport: String,
    /// Target rate, requests/s.
    pub target_rate: f64,
    /// Requests sent per second in the measured window.
    pub offered_rate: f64,
    /// Results completed per second in the measured window.
    pub completed_rate: f64,
    /// Whether the offered rate came within 20 % of the target.
    pub rate_ok: bool,
    /// Requests sent, warm-up included: what the CPU is divided by.
    pub sent: u64,
    /// Of those, completed.
    pub completed: u64,
    /// Latency from the intended send, median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// The generator's CPU per request, µs (its whole process while it drove the run).
    pub generator_us: f64,
    /// The dispatcher's CPU per request, µs.
    pub dispatcher_us: f64,
    /// Every worker process's CPU per request, together, µs.
    pub worker_us: f64,
    /// The floor's generator at this rate, µs per message (measured in the same run).
    pub floor_generator_us: f64,
    /// The floor's relay (the dispatcher's floor), µs per message.
    pub floor_relay_us: f64,
    /// The floor's echo (the worker's floor), µs per message.
    pub floor_echo_us: f64,
    /// The floor's round trip from the intended send, median, ms.
    pub floor_p50_ms: f64,
    /// `listed` (one of the study's rates), `highest` (the highest rate found to meet the
    /// SLO) or `highest-capped` (the search's ceiling met it: the true maximum may be
    /// higher). Files from before the search have no such column: their rows are listed.
    #[serde(default = "listed")]
    pub point: String,
    /// The SLO's verdict on this point (`pass` or `fail: …`); empty without a search.
    #[serde(default)]
    pub verdict: String,
    /// The share of the machine's CPU time the hypervisor took elsewhere during the run
    /// (steal), percent: a point's latency and CPU are the VM's as much as the code's
    /// when it is high. Not in files from before it was recorded.
    #[serde(default)]
    pub steal_pct: f64,
}

fn listed() -> String {
    "listed".into()
}

impl CurvePoint {
    /// Each role's CPU as a multiple of its floor: generator, dispatcher, workers.
    pub fn over_floor(&self) -> (f64, f64, f64) {
        (
            self.generator_us / self.floor_generator_us,
            self.dispatcher_us / self.floor_relay_us,
            self.worker_us / self.floor_echo_us,
        )
    }

    /// Whether the point met the search's SLO.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    fn set_floor(&mut self, floor: &FloorPoint) {
        self.floor_generator_us = floor.generator_us;
        self.floor_relay_us = floor.relay_us;
        self.floor_echo_us = floor.echo_us;
        self.floor_p50_ms = floor.p50_ms;
    }
}

/// CPU time of each of `pids`, summed (a process that is gone counts nothing).
fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter()
        .filter_map(|p| volley_testbed::procstat::cpu_time(*p).ok())
        .sum()
}

/// The floor at `rate`, measured on a thread of its own (it blocks).
async fn floor_at(spec: &CurveSpec, rate: f64, seed: u64) -> anyhow::Result<FloorPoint> {
    let (arrival, duration) = (spec.arrival, spec.duration);
    let floor =
        tokio::task::spawn_blocking(move || crate::studies::floor::measure(rate, arrival, duration, seed)).await??;
    println!("{}", crate::commands::floor::describe(&floor));
    Ok(floor)
}

/// One cluster of the study, and what measures it.
struct Rig<'a> {
    spec: &'a CurveSpec,
    label: String,
    mode: Mode,
    workers: usize,
    slots: u32,
    client: Client,
    dispatcher: Vec<u32>,
    worker_pids: Vec<u32>,
}

impl Rig<'_> {
    /// One open-loop run at `rate`, each role's CPU read around it; no floor yet.
    async fn measure(&self, rate: f64, seed: u64) -> anyhow::Result<CurvePoint> {
        let spec = self.spec;
        let load = LoadSpec {
            rate,
            arrival: spec.arrival,
            optype: OpType::Noop,
            task_ms: 0,
            duration: spec.duration,
            warmup: spec.warmup,
            drain: spec.drain,
            seed,
            function: None,
            transport: spec.transport,
            follow: None,
        };
        let (d0, w0, m0) = (
            cpu_of(&self.dispatcher),
            cpu_of(&self.worker_pids),
            MachineTimes::now()?,
        );
        let r = run(&self.client, &load).await?;
        let (d1, w1, m1) = (
            cpu_of(&self.dispatcher),
            cpu_of(&self.worker_pids),
            MachineTimes::now()?,
        );
        anyhow::ensure!(
            r.adds_up(),
            "{} at {rate}/s: the outcomes do not add up to the requests sent: {} sent, {} completed, {} failed, {} refused, {} unfinished, {} unknown",
            self.label,
            r.sent,
            r.completed,
            r.failed,
            r.refused,
            r.unfinished,
            r.unknown
        );
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / r.sent.max(1) as f64;
        Ok(CurvePoint {
            mode: self.mode.to_string(),
            workers: self.workers,
            slots: self.slots,
            transport: spec.transport.as_str().to_owned(),
            target_rate: rate,
            offered_rate: r.offered_rate,
            completed_rate: r.completed_rate,
            rate_ok: r.rate_ok,
            sent: r.sent,
            completed: r.completed,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
            generator_us: r.generator_cpu_ms * 1e3 / r.sent.max(1) as f64,
            dispatcher_us: per(d1.saturating_sub(d0)),
            worker_us: per(w1.saturating_sub(w0)),
            floor_generator_us: 0.0,
            floor_relay_us: 0.0,
            floor_echo_us: 0.0,
            floor_p50_ms: 0.0,
            point: listed(),
            verdict: spec
                .highest
                .as_ref()
                .map(|h| h.slo.judge(&r).label())
                .unwrap_or_default(),
            steal_pct: m0.steal_pct_until(&m1),
        })
    }
}

/// Prints a point's line.
fn report(p: &CurvePoint) {
    let (g, d, w) = p.over_floor();
    let what = match p.point.as_str() {
        "listed" => String::new(),
        other => format!("  [{other}]"),
    };
    println!(
        "{:<5} {}x{} {:>8.0}/s offered {:>8.0}/s  p50 {:>6.2} ms p99 {:>7.2} ms  CPU µs/task: generator {:>5.1} dispatcher {:>5.1} worker {:>5.1}  (× floor {g:.1} · {d:.1} · {w:.1}){}{what}",
        p.mode,
        p.workers,
        p.slots,
        p.target_rate,
        p.offered_rate,
        p.p50_ms,
        p.p99_ms,
        p.generator_us,
        p.dispatcher_us,
        p.worker_us,
        if p.rate_ok { "" } else { "  (the generator fell short of the rate)" }
    );
    if p.steal_pct >= STEAL_WORTH_SAYING {
        println!(
            "      the hypervisor took {:.1} % of the machine's CPU time meanwhile (steal)",
            p.steal_pct
        );
    }
}

/// Runs every mode × shape × rate, then each cluster's search for its highest sustained
/// rate, and appends each point to `out` as it is measured.
pub async fn run_curve(spec: &CurveSpec, out: &Path) -> anyhow::Result<Vec<CurvePoint>> {
    use volley_testbed::cluster::{Cluster, ClusterSpec};
    let mut floors = Vec::new();
    for (i, &rate) in spec.rates.iter().enumerate() {
        floors.push(floor_at(spec, rate, spec.seed.wrapping_add(i as u64)).await?);
    }
    let mut points = Vec::new();
    let keep = |p: CurvePoint, points: &mut Vec<CurvePoint>| -> anyhow::Result<()> {
        report(&p);
        crate::recording::tables::append_rows(out, std::slice::from_ref(&p))?;
        points.push(p);
        Ok(())
    };
    for &mode in &spec.modes {
        for &(workers, slots) in &spec.shapes {
            let (procs, slots_each) = match mode {
                Mode::Local => (0, workers as u32 * slots),
                _ => (workers, slots),
            };
            let label = format!("curve-{mode}-{workers}x{slots}");
            let cluster = Cluster::start(
                ClusterSpec::new(mode, procs, slots_each)
                    .label(&label)
                    .log_level("warn"),
            )
            .await?;
            let rig = Rig {
                spec,
                label,
                mode,
                workers,
                slots,
                client: volley_client::connect(&cluster.grpc_url()).await?,
                dispatcher: cluster.dispatcher_pid().into_iter().collect(),
                worker_pids: cluster.worker_pids(),
            };
            let mut listed = Vec::new();
            for (i, &rate) in spec.rates.iter().enumerate() {
                let mut point = rig.measure(rate, spec.seed.wrapping_add(i as u64)).await?;
                point.set_floor(&floors[i]);
                listed.push(point.clone());
                keep(point, &mut points)?;
                // Let the last run's stragglers and timers settle before the next rate.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let highest = match &spec.highest {
                Some(search) => rig.highest(search, &listed).await?,
                None => None,
            };
            cluster.stop().await?;
            if let Some(mut best) = highest {
                // A probe's floor is measured now, with the cluster gone, like the others.
                if let Some(i) = spec.rates.iter().position(|r| *r == best.target_rate) {
                    best.set_floor(&floors[i]);
                } else {
                    let seed = spec.seed.wrapping_add(spec.rates.len() as u64);
                    best.set_floor(&floor_at(spec, best.target_rate, seed).await?);
                }
                keep(best, &mut points)?;
            }
        }
    }
    Ok(points)
}

/// Parses `1x2,2x1` into (workers, slots) pairs.
pub fn parse_shapes(text: &str) -> anyhow::Result<Vec<(usize, u32)>> {
    text.split(',')
        .map(|s| {
            let (w, k) = s
                .trim()
                .split_once('x')
                .ok_or_else(|| anyhow::anyhow!("'{s}' is not WORKERSxSLOTS (e.g. 1x2)"))?;
            let (w, k): (usize, u32) = (
                w.parse().map_err(|_| anyhow::anyhow!("'{w}' is not a worker count"))?,
                k.parse().map_err(|_| anyhow::anyhow!("'{k}' is not a slot count"))?,
            );
            anyhow::ensure!(w >= 1 && k >= 1, "'{s}': at least one worker of one slot");
            Ok((w, k))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_bad_ones_say_why() {
        assert_eq!(parse_shapes("1x2, 2x1").expect("shapes"), vec![(1, 2), (2, 1)]);
        assert!(parse_shapes("2").unwrap_err().to_string().contains("WORKERSxSLOTS"));
        assert!(parse_shapes("0x1").is_err());
        assert!(parse_shapes("1xa").unwrap_err().to_string().contains("slot count"));
    }
}
