//! Knative's pod autoscaler (KPA). On a fixed grid of ticks it samples each function's
//! concurrency (tasks running and waiting) averaged over the tick, as Knative's
//! queue-proxies report it — not one instant's count, which would depend on when the
//! scaler happened to be asked — and wants `ceil(average / (target × utilization))`
//! instances: averaged over the stable window normally; over the panic window when that
//! estimate reaches `panic-threshold` × the ready instances, and then never scales down
//! until the panic condition has been absent for a whole stable window. It goes to zero
//! only after a stable window with no traffic and the grace period after it. Like
//! Knative's activator, a task that arrives to no instance at all starts one at once.

use super::{retire_down_to, start_up_to, Decision, FunctionView, Policy};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// KPA parameters (Knative's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct KpaParams {
    /// Concurrent tasks per instance it aims for (`container-concurrency-target`).
    pub target: f64,
    /// Share of the target to aim for (`target-utilization-percentage` / 100).
    pub utilization: f64,
    /// The stable window.
    pub stable: Duration,
    /// The panic window.
    pub panic: Duration,
    /// Panic when the panic-window estimate reaches this × ready instances.
    pub panic_threshold: f64,
    /// How long after the stable window of no traffic the last instance stays.
    pub grace: Duration,
    /// Instances per function at most; 0: no bound (Knative's default).
    pub max_scale: u32,
    /// How often concurrency is sampled.
    pub tick: Duration,
}

impl Default for KpaParams {
    fn default() -> Self {
        Self {
            target: 1.0,
            utilization: 0.7,
            stable: Duration::from_secs(60),
            panic: Duration::from_secs(6),
            panic_threshold: 2.0,
            grace: Duration::from_secs(30),
            max_scale: 0,
            tick: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Default)]
struct FunctionState {
    /// (when, concurrency) once a tick, the stable window's worth.
    samples: VecDeque<(Duration, f64)>,
    /// The grid point of the next sample (`None`: the function is new).
    next_sample: Option<Duration>,
    /// Concurrency × time since the last sample, and since when.
    area: f64,
    area_since: Duration,
    /// The concurrency last seen, and when: it holds until the next look.
    seen: (Duration, f64),
    /// Since when the panic condition holds (or last held, while panicking).
    panic_since: Option<Duration>,
    /// The highest desired count while panicking: never lowered until panic ends.
    panic_floor: u32,
    /// The last time any concurrency was seen.
    last_traffic: Option<Duration>,
}

/// The KPA policy.
#[derive(Debug)]
pub struct Kpa {
    p: KpaParams,
    functions: HashMap<String, FunctionState>,
}

impl Kpa {
    /// A KPA with these parameters.
    pub fn new(p: KpaParams) -> Self {
        Self {
            p,
            functions: HashMap::new(),
        }
    }

    /// Desired instances for an average concurrency.
    pub fn desired_for(&self, concurrency: f64) -> u32 {
        desired(&self.p, concurrency)
    }

    /// Whether `function` is in panic mode.
    pub fn panicking(&self, function: &str) -> bool {
        self.functions.get(function).is_some_and(|f| f.panic_since.is_some())
    }
}

/// `ceil(concurrency / (target × utilization))`, tolerant of float noise at exact ratios.
fn desired(p: &KpaParams, concurrency: f64) -> u32 {
    (concurrency / (p.target * p.utilization) - 1e-9).ceil().max(0.0) as u32
}

fn average(samples: &VecDeque<(Duration, f64)>, since: Duration) -> f64 {
    let (sum, n) = samples
        .iter()
        .filter(|(t, _)| *t >= since)
        .fold((0.0, 0usize), |(s, n), (_, c)| (s + c, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

impl Policy for Kpa {
    /// Every request is traffic, even one that comes and goes between two samples.
    fn arrival(&mut self, function: &str, now: Duration) {
        self.functions.entry(function.to_owned()).or_default().last_traffic = Some(now);
    }

    fn decide(&mut self, now: Duration, view: &FunctionView<'_>) -> Vec<Decision> {
        let p = &self.p;
        let desired_for = |c: f64| desired(p, c);
        let f = self.functions.entry(view.function.to_owned()).or_default();
        let concurrency = f64::from(view.in_flight + view.queued);
        if concurrency > 0.0 {
            f.last_traffic = Some(now);
        }
        let tick = p.tick.max(Duration::from_millis(1));
        let next_grid = |now: Duration| {
            let step = tick.as_nanos();
            Duration::from_nanos(((now.as_nanos() / step + 1) * step).min(u128::from(u64::MAX)) as u64)
        };
        if f.next_sample.is_none() {
            f.next_sample = Some(next_grid(now));
            f.area_since = now;
            f.seen = (now, concurrency);
        }
        let (at, held) = f.seen;
        f.area += held * now.saturating_sub(at).as_secs_f64();
        f.seen = (now, concurrency);
        let have = view.ready() + view.starting();
        // The activator: work waiting and nothing to run it starts one instance at once.
        if have == 0 && view.queued > 0 {
            return start_up_to(view.function, 0, 1).into_iter().collect();
        }
        if f.next_sample.is_some_and(|next| now < next) {
            return Vec::new();
        }
        f.next_sample = Some(next_grid(now));
        let span = now.saturating_sub(f.area_since).as_secs_f64();
        let mean = if span > 0.0 { f.area / span } else { concurrency };
        (f.area, f.area_since) = (0.0, now);
        f.samples.push_back((now, mean));
        while f
            .samples
            .front()
            .is_some_and(|(t, _)| now.saturating_sub(*t) >= p.stable)
        {
            f.samples.pop_front();
        }
        let stable_window_start = now.saturating_sub(p.stable);
        let panic_window_start = now.saturating_sub(p.panic);
        let stable = desired_for(average(&f.samples, stable_window_start));
        let panic = desired_for(average(&f.samples, panic_window_start));
        let ready = view.ready();

        let condition = f64::from(panic) >= p.panic_threshold * f64::from(ready.max(1)) && panic > ready;
        if condition {
            f.panic_since = Some(now);
        } else if f.panic_since.is_some_and(|since| now.saturating_sub(since) >= p.stable) {
            f.panic_since = None;
            f.panic_floor = 0;
        }
        let mut desired = if f.panic_since.is_some() {
            f.panic_floor = f.panic_floor.max(panic).max(have);
            f.panic_floor
        } else {
            stable
        };
        // To zero only after a stable window without traffic and the grace period.
        if desired == 0 && have > 0 {
            let quiet_for = f.last_traffic.map_or(now, |t| now.saturating_sub(t));
            if quiet_for < p.stable + p.grace {
                desired = 1;
            }
        }
        let desired = if p.max_scale > 0 {
            desired.min(p.max_scale)
        } else {
            desired
        };
        match start_up_to(view.function, have, desired) {
            Some(start) => vec![start],
            None if f.panic_since.is_some() => Vec::new(),
            None => retire_down_to(view, desired),
        }
    }
}
