//! The hybrid histogram policy of "Serverless in the Wild" (Shahrad et al., ATC'20). Per
//! function it keeps a histogram of idle times — from the moment the function last ran
//! nothing to the next invocation — in `bin`-wide bins over `range`. When the histogram is
//! representative (at least `min-samples` idle times, bin counts with a coefficient of
//! variation of at least `cv`, most of them inside the range), the function's windows
//! come from it: pre-warm = the `head` percentile less the margin, keep-alive = the `tail`
//! percentile plus the margin, less the pre-warm. After the function's last execution
//! ends, its instances are unloaded for the pre-warm window, one is loaded again, and kept
//! for the keep-alive window. With no pre-warm window (a function invoked within the first
//! bin), and while it runs, each instance is kept the keep-alive window after it last ran.
//! The paper models one instance per application; a function that needs several at once
//! keeps them this way. Otherwise the policy falls back to a fixed keep-alive.

use super::fixed::keep_alive;
use super::{retire_down_to, start_up_to, Decision, FunctionView, Policy};
use std::collections::HashMap;
use std::time::Duration;

/// Hybrid histogram parameters (the paper's values).
#[derive(Debug, Clone, PartialEq)]
pub struct HybridParams {
    /// Idle times the histogram covers.
    pub range: Duration,
    /// Its bin width.
    pub bin: Duration,
    /// Percentile that sets the pre-warm window.
    pub head: f64,
    /// Percentile that sets the end of the keep-alive window.
    pub tail: f64,
    /// Safety margin: the head is lowered and the tail raised by this share.
    pub margin: f64,
    /// Smallest coefficient of variation of the bin counts that makes it representative.
    pub cv: f64,
    /// Fewest idle times before the histogram is trusted.
    pub min_samples: usize,
    /// The keep-alive used while the histogram is not representative.
    pub fallback: Duration,
}

impl Default for HybridParams {
    fn default() -> Self {
        Self {
            range: Duration::from_secs(4 * 3600),
            bin: Duration::from_secs(60),
            head: 5.0,
            tail: 99.0,
            margin: 0.1,
            cv: 2.0,
            min_samples: 10,
            fallback: Duration::from_secs(600),
        }
    }
}

/// The windows a representative histogram gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// How long after an execution the function stays unloaded.
    pub prewarm: Duration,
    /// How long it stays loaded after that.
    pub keepalive: Duration,
}

#[derive(Debug, Default)]
struct FunctionState {
    bins: Vec<u64>,
    out_of_range: u64,
    samples: u64,
    /// When the function last went from running something to running nothing.
    idle_since: Option<Duration>,
    busy: bool,
}

/// The hybrid policy.
#[derive(Debug)]
pub struct Hybrid {
    p: HybridParams,
    functions: HashMap<String, FunctionState>,
}

impl Hybrid {
    /// A hybrid policy with these parameters.
    pub fn new(p: HybridParams) -> Self {
        Self {
            p,
            functions: HashMap::new(),
        }
    }

    /// Records one idle time of `function` (also what [`Policy::arrival`] does).
    pub fn record_idle_time(&mut self, function: &str, idle: Duration) {
        let nbins = (self.p.range.as_secs_f64() / self.p.bin.as_secs_f64()).ceil().max(1.0) as usize;
        let f = self.functions.entry(function.to_owned()).or_default();
        if f.bins.is_empty() {
            f.bins = vec![0; nbins];
        }
        f.samples += 1;
        let bin = (idle.as_secs_f64() / self.p.bin.as_secs_f64()) as usize;
        match f.bins.get_mut(bin) {
            Some(count) => *count += 1,
            None => f.out_of_range += 1,
        }
    }

    /// The function's windows, or `None` while its histogram is not representative.
    pub fn windows(&self, function: &str) -> Option<Windows> {
        let f = self.functions.get(function)?;
        let inside: u64 = f.bins.iter().sum();
        if (f.samples as usize) < self.p.min_samples || inside * 2 < f.samples {
            return None;
        }
        let n = f.bins.len() as f64;
        let mean = inside as f64 / n;
        let var = f.bins.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / n;
        if mean <= 0.0 || var.sqrt() / mean < self.p.cv {
            return None;
        }
        let percentile = |p: f64| -> usize {
            let rank = ((p / 100.0) * inside as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, c) in f.bins.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return i;
                }
            }
            f.bins.len() - 1
        };
        let bin = self.p.bin.as_secs_f64();
        // The head percentile's bin start, lowered; the tail percentile's bin end, raised.
        let head = percentile(self.p.head) as f64 * bin * (1.0 - self.p.margin);
        let tail = (percentile(self.p.tail) + 1) as f64 * bin * (1.0 + self.p.margin);
        Some(Windows {
            prewarm: Duration::from_secs_f64(head),
            keepalive: Duration::from_secs_f64((tail - head).max(0.0)),
        })
    }
}

impl Policy for Hybrid {
    fn arrival(&mut self, function: &str, now: Duration) {
        let idle = self
            .functions
            .get(function)
            .filter(|f| !f.busy)
            .and_then(|f| f.idle_since)
            .map(|since| now.saturating_sub(since));
        if let Some(idle) = idle {
            self.record_idle_time(function, idle);
        }
        let f = self.functions.entry(function.to_owned()).or_default();
        f.busy = true;
        f.idle_since = None;
    }

    fn decide(&mut self, now: Duration, view: &FunctionView<'_>) -> Vec<Decision> {
        let busy = view.in_flight + view.queued > 0;
        {
            let f = self.functions.entry(view.function.to_owned()).or_default();
            if f.busy && !busy {
                f.idle_since = Some(now);
            }
            f.busy = busy;
        }
        let Some(w) = self.windows(view.function) else {
            return keep_alive(now, view, self.p.fallback);
        };
        // Running, or no pre-warm window: each instance is kept the keep-alive window
        // after it last ran (a busy function may need many, and keeps what it needs).
        if busy || w.prewarm.is_zero() {
            return keep_alive(now, view, w.keepalive);
        }
        let have = view.ready() + view.starting();
        let since = self
            .functions
            .get(view.function)
            .and_then(|f| f.idle_since)
            .unwrap_or(now);
        let idle_for = now.saturating_sub(since);
        if idle_for < w.prewarm {
            // Unloaded until the next invocation is likely.
            retire_down_to(view, 0)
        } else if idle_for < w.prewarm + w.keepalive {
            // Loaded (pre-warmed if it was unloaded) for the keep-alive window.
            match start_up_to(view.function, have, 1) {
                Some(start) => vec![start],
                None => retire_down_to(view, 1),
            }
        } else {
            retire_down_to(view, 0)
        }
    }
}
