//! The rows a policy study writes, in the same columns whether the policy ran on the
//! virtual clock (`client simulate`) or live on an elastic pool (`client replay --autoscale`).

use serde::Serialize;

/// One policy's result over the whole trace (`sim.csv`).
#[derive(Debug, Clone, Serialize)]
pub struct SimRow {
    /// `simulated`, or `live` for a replay on an elastic pool (`client replay --autoscale`).
    pub source: &'static str,
    /// The policy's label.
    pub policy: String,
    /// The policy as given.
    pub spec: String,
    /// Functions simulated.
    pub functions: usize,
    /// Invocations.
    pub invocations: u64,
    /// Invocations that waited for an instance start.
    pub cold_starts: u64,
    /// cold_starts / invocations × 100.
    pub cold_pct: f64,
    /// The median over functions of each one's cold-start percentage.
    pub cold_pct_p50: f64,
    /// The 75th percentile of the same (the paper's y axis).
    pub cold_pct_p75: f64,
    /// Instances started.
    pub instance_starts: u64,
    /// Instance-seconds loaded and running nothing: wasted memory time.
    pub idle_instance_s: f64,
    /// Instance-seconds running at least one task.
    pub busy_instance_s: f64,
    /// Most instances at once.
    pub peak_instances: u32,
    /// Waiting before a slot, 50th percentile, ms.
    pub wait_p50_ms: f64,
    /// 99th percentile, ms.
    pub wait_p99_ms: f64,
    /// Wall time the simulation (or the live replay) took, s.
    pub sim_seconds: f64,
}

impl SimRow {
    /// The row in one line, for a terminal.
    pub fn line(&self) -> String {
        format!(
            "{:<12} cold {:>7} of {:>7} ({:>5.2} %; per function p50 {:>5.1} %, p75 {:>5.1} %), {:>6} starts, idle {:>9.1} instance-s, busy {:>8.1}, peak {:>4}, wait p99 {:>8.1} ms  [{:.1} s]",
            self.policy,
            self.cold_starts,
            self.invocations,
            self.cold_pct,
            self.cold_pct_p50,
            self.cold_pct_p75,
            self.instance_starts,
            self.idle_instance_s,
            self.busy_instance_s,
            self.peak_instances,
            self.wait_p99_ms,
            self.sim_seconds
        )
    }
}

/// One function's result (`--functions-out`).
#[derive(Debug, Clone, Serialize)]
pub struct SimFunctionRow {
    /// The policy's label.
    pub policy: String,
    /// The function's hash.
    pub function: String,
    /// Its invocations.
    pub invocations: u64,
    /// Of them, cold.
    pub cold_starts: u64,
    /// Its instance starts.
    pub instance_starts: u64,
    /// Its idle instance-seconds.
    pub idle_instance_s: f64,
}
