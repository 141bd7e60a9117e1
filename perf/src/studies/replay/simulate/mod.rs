//! The scaler at trace scale, on a virtual clock: every invocation of a trace arrives at its
//! scheduled time and runs for its drawn duration on instances that the dispatcher's own
//! scaler core ([`volley_dispatcher::scaler`]) starts and retires. No process runs; the
//! 250-function, 150-minute Azure sample takes seconds. An invocation is **cold** when it
//! waited for an instance start: the instance that ran it became ready after it arrived.
//! Idle instance-seconds (loaded, running nothing) are the paper's wasted memory time.

mod rows;

pub use rows::{SimFunctionRow, SimRow};

use crate::studies::replay::run::Planned;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;
use volley_dispatcher::scaler::{Decision, FunctionView, Instance, InstanceId, PolicySpec, Scaler};

/// What the simulated platform is like.
#[derive(Debug, Clone)]
pub struct Platform {
    /// Tasks one instance runs at once (container concurrency).
    pub slots: u32,
    /// From the decision to start an instance to its first task.
    pub cold_start: Duration,
    /// Instances in all, at most.
    pub max_instances: u32,
    /// How often the scaler is asked with nothing happening (its clock tick).
    pub tick: Duration,
    /// The end of the trace window (idle time is counted up to here).
    pub end: Duration,
}

#[derive(Debug)]
struct SimInstance {
    id: u64,
    ready_at: u64,
    starting: bool,
    busy: u32,
    since: u64,
}

#[derive(Debug, Default)]
struct Fun {
    queue: VecDeque<(u64, u64)>,
    instances: Vec<SimInstance>,
    in_flight: u32,
    invocations: u64,
    cold: u64,
    starts: u64,
    idle_us: u64,
    busy_us: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Ready { function: usize, instance: u64 },
    Finish { function: usize, instance: u64 },
}

struct Sim<'a> {
    platform: &'a Platform,
    names: &'a [String],
    funs: Vec<Fun>,
    scaler: Scaler,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    next_id: u64,
    instances: u32,
    peak: u32,
    waits_us: Vec<u64>,
}

impl Sim<'_> {
    fn push(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, e)));
    }

    /// Gives waiting tasks free slots, oldest first.
    fn dispatch(&mut self, f: usize, now: u64) {
        let slots = self.platform.slots;
        while let Some(&(arrived, dur)) = self.funs[f].queue.front() {
            let fun = &mut self.funs[f];
            let Some(inst) = fun
                .instances
                .iter_mut()
                .filter(|i| !i.starting && i.busy < slots)
                .max_by_key(|i| (i.busy, Reverse(i.id)))
            else {
                break;
            };
            fun.queue.pop_front();
            if inst.busy == 0 {
                fun.idle_us += now - inst.since;
                inst.since = now;
            }
            inst.busy += 1;
            fun.in_flight += 1;
            if inst.ready_at > arrived {
                fun.cold += 1;
            }
            let id = inst.id;
            self.waits_us.push(now - arrived);
            self.push(
                now + dur,
                Event::Finish {
                    function: f,
                    instance: id,
                },
            );
        }
    }

    fn decide(&mut self, f: usize, now: u64) {
        let fun = &self.funs[f];
        let views: Vec<Instance> = fun
            .instances
            .iter()
            .map(|i| Instance {
                id: InstanceId(i.id),
                starting: i.starting,
                busy: i.busy,
                idle_since: Duration::from_micros(i.since),
            })
            .collect();
        let view = FunctionView {
            function: &self.names[f],
            queued: fun.queue.len() as u32,
            in_flight: fun.in_flight,
            slots: self.platform.slots,
            instances: &views,
        };
        let decisions = self.scaler.decide(Duration::from_micros(now), &view, self.instances);
        for d in decisions {
            match d {
                Decision::Start { count, .. } => {
                    for _ in 0..count {
                        self.next_id += 1;
                        let id = self.next_id;
                        let ready_at = now + self.platform.cold_start.as_micros() as u64;
                        self.funs[f].instances.push(SimInstance {
                            id,
                            ready_at,
                            starting: true,
                            busy: 0,
                            since: ready_at,
                        });
                        self.funs[f].starts += 1;
                        self.instances += 1;
                        self.peak = self.peak.max(self.instances);
                        self.push(
                            ready_at,
                            Event::Ready {
                                function: f,
                                instance: id,
                            },
                        );
                    }
                }
                Decision::Retire { instance, .. } => {
                    let fun = &mut self.funs[f];
                    if let Some(pos) = fun
                        .instances
                        .iter()
                        .position(|i| i.id == instance.0 && !i.starting && i.busy == 0)
                    {
                        let gone = fun.instances.swap_remove(pos);
                        fun.idle_us += now - gone.since;
                        self.instances -= 1;
                    }
                }
            }
        }
    }

    fn event(&mut self, now: u64, e: Event) {
        let f = match e {
            Event::Ready { function, instance } => {
                if let Some(i) = self.funs[function].instances.iter_mut().find(|i| i.id == instance) {
                    i.starting = false;
                    i.since = now;
                }
                function
            }
            Event::Finish { function, instance } => {
                let fun = &mut self.funs[function];
                fun.in_flight -= 1;
                if let Some(i) = fun.instances.iter_mut().find(|i| i.id == instance) {
                    i.busy -= 1;
                    if i.busy == 0 {
                        fun.busy_us += now - i.since;
                        i.since = now;
                    }
                }
                function
            }
        };
        self.dispatch(f, now);
    }
}

/// Simulates `planned` (sorted by arrival, each naming its function by index into
/// `names`) under one policy.
pub fn simulate(
    spec: &PolicySpec,
    given: &str,
    names: &[String],
    planned: &[Planned],
    platform: &Platform,
) -> (SimRow, Vec<SimFunctionRow>) {
    let started = std::time::Instant::now();
    let mut sim = Sim {
        platform,
        names,
        funs: (0..names.len()).map(|_| Fun::default()).collect(),
        scaler: Scaler::new(spec, platform.max_instances),
        events: BinaryHeap::new(),
        seq: 0,
        next_id: 0,
        instances: 0,
        peak: 0,
        waits_us: Vec::with_capacity(planned.len()),
    };
    let tick = platform.tick.as_micros().max(1) as u64;
    let end = platform.end.as_micros() as u64;
    let mut next_tick = tick;
    let mut arrivals = planned.iter().peekable();
    loop {
        let next_arrival = arrivals.peek().map(|p| p.invocation.at_us);
        let next_event = sim.events.peek().map(|Reverse((t, _, _))| *t);
        let now = [next_arrival, next_event, Some(next_tick)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end);
        if now > end && next_arrival.is_none() && next_event.is_none() {
            break;
        }
        if next_event == Some(now) {
            if let Some(Reverse((_, _, e))) = sim.events.pop() {
                sim.event(now, e);
            }
        } else if next_arrival == Some(now) {
            if let Some(p) = arrivals.next() {
                let f = p.invocation.function as usize;
                sim.scaler.arrival(&names[f], Duration::from_micros(now));
                sim.funs[f].invocations += 1;
                sim.funs[f].queue.push_back((now, p.ms * 1000));
                sim.dispatch(f, now);
                // As the live pool: the scaler is asked between ticks only about arrivals
                // no instance could take.
                if !sim.funs[f].queue.is_empty() {
                    sim.decide(f, now);
                }
            }
        } else {
            next_tick += tick;
            if now <= end {
                for f in 0..names.len() {
                    sim.decide(f, now);
                }
            }
        }
    }
    // Whatever is still loaded at the end of the window was idle until then.
    let close = end.max(next_tick.saturating_sub(tick));
    for fun in &mut sim.funs {
        for i in fun.instances.iter().filter(|i| !i.starting && i.busy == 0) {
            fun.idle_us += close.saturating_sub(i.since);
        }
    }
    let label = spec.label();
    let functions: Vec<SimFunctionRow> = sim
        .funs
        .iter()
        .zip(names)
        .filter(|(f, _)| f.invocations > 0)
        .map(|(f, name)| SimFunctionRow {
            policy: label.clone(),
            function: name.clone(),
            invocations: f.invocations,
            cold_starts: f.cold,
            instance_starts: f.starts,
            idle_instance_s: f.idle_us as f64 / 1e6,
        })
        .collect();
    let mut per_function: Vec<f64> = functions
        .iter()
        .map(|f| f.cold_starts as f64 / f.invocations as f64 * 100.0)
        .collect();
    per_function.sort_by(f64::total_cmp);
    sim.waits_us.sort_unstable();
    let wait = |p: f64| {
        crate::stats::percentile(&sim.waits_us.iter().map(|&w| w as f64 / 1e3).collect::<Vec<_>>(), p).unwrap_or(0.0)
    };
    let invocations: u64 = sim.funs.iter().map(|f| f.invocations).sum();
    let cold: u64 = sim.funs.iter().map(|f| f.cold).sum();
    let row = SimRow {
        source: "simulated",
        policy: label,
        spec: given.to_owned(),
        functions: functions.len(),
        invocations,
        cold_starts: cold,
        cold_pct: cold as f64 / invocations.max(1) as f64 * 100.0,
        cold_pct_p50: crate::stats::percentile(&per_function, 0.5).unwrap_or(0.0),
        cold_pct_p75: crate::stats::percentile(&per_function, 0.75).unwrap_or(0.0),
        instance_starts: sim.funs.iter().map(|f| f.starts).sum(),
        idle_instance_s: sim.funs.iter().map(|f| f.idle_us).sum::<u64>() as f64 / 1e6,
        busy_instance_s: sim.funs.iter().map(|f| f.busy_us).sum::<u64>() as f64 / 1e6,
        peak_instances: sim.peak,
        wait_p50_ms: wait(0.5),
        wait_p99_ms: wait(0.99),
        sim_seconds: started.elapsed().as_secs_f64(),
    };
    (row, functions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::studies::replay::{fixture, run, select, Granularity, Iat, ScheduleSpec, Trace};

    fn planned(dir: &std::path::Path) -> (Vec<String>, Vec<Planned>, Duration) {
        fixture::write(dir, 8, 6, 5).expect("fixture");
        let trace = Trace::read(dir, Granularity::Minute).expect("trace");
        let window = select::window(&trace, None).expect("window");
        let functions = select::sample(&trace, window.clone(), None, 1);
        let spec = run::ReplaySpec {
            schedule: ScheduleSpec {
                window: window.clone(),
                iat: Iat::Exponential,
                shift: false,
                compress: 1.0,
                seed: 9,
            },
            spin: false,
            max_memory_mb: 0,
            warmup_columns: 0,
            drain: Duration::ZERO,
            function: None,
        };
        let mut planned = run::prepare(&trace, &functions, &spec).expect("plan");
        planned.sort_by_key(|p| p.invocation.at_us);
        let names = functions.iter().map(|f| f.key.2.clone()).collect();
        (names, planned, Duration::from_secs(60 * window.len() as u64))
    }

    fn with(keepalive: u64, names: &[String], planned: &[Planned], end: Duration) -> SimRow {
        let platform = Platform {
            slots: 1,
            cold_start: Duration::from_millis(250),
            max_instances: 100_000,
            tick: Duration::from_secs(1),
            end,
        };
        let spec = PolicySpec::Fixed {
            keepalive: Duration::from_secs(keepalive),
        };
        simulate(&spec, "fixed", names, planned, &platform).0
    }

    #[test]
    fn longer_keepalive_trades_idle_time_for_fewer_cold_starts() {
        let dir = fixture::temp_dir("simulate");
        let (names, planned, end) = planned(&dir);
        let (none, minute, hour) = (
            with(0, &names, &planned, end),
            with(60, &names, &planned, end),
            with(3600, &names, &planned, end),
        );
        for r in [&none, &minute, &hour] {
            assert_eq!(r.invocations, planned.len() as u64);
            // Fixed keep-alive starts only for demand: never more instances than invocations.
            // (A cold invocation may share a start: it arrived while the instance was
            // starting for another, and ran after it.)
            assert!(
                r.cold_starts <= r.invocations && r.instance_starts <= r.invocations,
                "{r:?}"
            );
        }
        assert!(none.cold_starts >= minute.cold_starts && minute.cold_starts >= hour.cold_starts);
        assert!(none.idle_instance_s <= minute.idle_instance_s && minute.idle_instance_s <= hour.idle_instance_s);
        // Retired at the first tick after it idles (as the live pool does): each idle span
        // ends within one 1 s tick, in a task or a retirement.
        let spans = (none.invocations + none.instance_starts) as f64;
        assert!(none.idle_instance_s <= spans * 1.0, "{none:?}");
        // Kept for longer than the trace: each function starts only what its peak needs.
        assert!(hour.instance_starts < none.instance_starts);
        assert!(hour.cold_starts < none.cold_starts / 2, "{hour:?} against {none:?}");
        // The same inputs, the same result.
        assert_eq!(with(60, &names, &planned, end).cold_starts, minute.cold_starts);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
