//! A replay's records: one row per invocation, one per count column, the summary, and
//! invitro's verdict on the measured minutes.

use super::run::{busy_slots, Planned, ReplaySpec, Replayed};
use super::trace::{Trace, TraceFunction};
use crate::studies::load::drive::Driven;
use crate::studies::load::ledger::Fate;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::ops::Range;
use std::time::Duration;

/// One invocation's record (`replay.csv`). Times in µs since the replay's start.
#[derive(Debug, Clone, Serialize)]
pub struct InvocationRow {
    /// The function's hash.
    pub function: String,
    /// The trace column (minute) it belongs to.
    pub minute: String,
    /// `warmup` or `measure`.
    pub phase: &'static str,
    /// Intended send time.
    pub intended_us: u64,
    /// Actual send time (empty if never sent).
    pub sent_us: Option<u64>,
    /// When the dispatcher finished it (empty if it did not).
    pub completed_us: Option<u64>,
    /// Requested duration, ms.
    pub requested_ms: u64,
    /// How long it ran on the worker, ms.
    pub actual_ms: Option<f64>,
    /// Memory touched, MiB.
    pub memory_mb: u64,
    /// The worker that ran it.
    pub worker: String,
    /// completed, failed, refused, unfinished or unknown.
    pub state: &'static str,
    /// The error, for failures and refusals.
    pub error: String,
    /// It waited for an instance to start (elastic pools).
    pub cold: bool,
}

/// One count column's record (`replay-minutes.csv`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MinuteRow {
    /// The trace column.
    pub minute: String,
    /// `warmup` or `measure`.
    pub phase: &'static str,
    /// Functions with at least one invocation in it.
    pub function_count: u64,
    /// Invocations the trace has.
    pub target: u64,
    /// Invocations sent during this minute (by actual send time).
    pub issued: u64,
    /// Of this minute's invocations, completed.
    pub completed: u64,
    /// Of this minute's invocations, failed, refused, unfinished or unknown.
    pub failed: u64,
    /// Sent more than 1 ms after their intended time.
    pub late: u64,
}

/// The run's summary (`--summary replay.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Invocations scheduled.
    pub scheduled: u64,
    /// Invocations sent.
    pub issued: u64,
    /// Completed.
    pub completed: u64,
    /// Failed with the dispatcher's error.
    pub failed: u64,
    /// Refused at submission.
    pub refused: u64,
    /// No result when the drain ended.
    pub unfinished: u64,
    /// Outcome not knowable.
    pub unknown: u64,
    /// Offered (scheduled) invocations per second over the measured columns.
    pub offered_rate: f64,
    /// Completed per second over the measured columns.
    pub achieved_rate: f64,
    /// Latency from intended send, measured invocations that completed, ms.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Latency / requested duration, median.
    pub slowdown_p50: f64,
    /// Latency / requested duration, 99th percentile.
    pub slowdown_p99: f64,
    /// (failed + refused + unfinished + unknown) / scheduled, measured columns.
    pub failure_rate: f64,
    /// Sends more than 1 ms late.
    pub late_sends: u64,
    /// Send lateness, 99th percentile, ms.
    pub lateness_p99_ms: f64,
    /// The generator's CPU time, s.
    pub generator_cpu_s: f64,
    /// Offered work in busy slots.
    pub busy_slots: f64,
    /// Completed invocations that waited for an instance to start (elastic pools).
    pub cold_starts: u64,
    /// Their share of the completed, %.
    pub cold_pct: f64,
    /// Warnings and failures of the verdict.
    pub verdict: Verdict,
}

/// invitro's thresholds, enforced: per measured minute, issued within 10 % of target
/// (warn) / 20 % (fail), failures under 30 % (warn) / 50 % (fail).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    /// Everything held.
    pub pass: bool,
    /// Beyond the warning thresholds.
    pub warnings: Vec<String>,
    /// Beyond the failure thresholds: the run's exit code is non-zero.
    pub failures: Vec<String>,
}

/// Judges the measured minutes.
pub fn judge(minutes: &[MinuteRow]) -> Verdict {
    let mut v = Verdict::default();
    for m in minutes.iter().filter(|m| m.phase == "measure" && m.target > 0) {
        let deviation = (m.issued as f64 - m.target as f64).abs() / m.target as f64;
        let failed = m.failed as f64 / m.target as f64;
        let issued = format!(
            "minute {}: issued {} of {} ({:+.1} %)",
            m.minute,
            m.issued,
            m.target,
            (m.issued as f64 / m.target as f64 - 1.0) * 100.0
        );
        if deviation > 0.20 {
            v.failures.push(issued);
        } else if deviation > 0.10 {
            v.warnings.push(issued);
        }
        let failures = format!(
            "minute {}: {:.1} % of invocations did not complete",
            m.minute,
            failed * 100.0
        );
        if failed > 0.50 {
            v.failures.push(failures);
        } else if failed > 0.30 {
            v.warnings.push(failures);
        }
    }
    v.pass = v.failures.is_empty();
    v
}

pub(super) fn collect(
    trace: &Trace,
    functions: &[&TraceFunction],
    spec: &ReplaySpec,
    planned: &[Planned],
    d: &Driven,
) -> Replayed {
    let window: Range<usize> = spec.schedule.window.clone();
    let warm_end = window.start + spec.warmup_columns;
    let phase = |column: usize| if column < warm_end { "warmup" } else { "measure" };
    let mut minutes: Vec<MinuteRow> = window
        .clone()
        .map(|c| MinuteRow {
            minute: trace.columns[c].clone(),
            phase: phase(c),
            function_count: functions.iter().filter(|f| f.counts[c] > 0).count() as u64,
            target: functions.iter().map(|f| f.counts[c]).sum(),
            ..MinuteRow::default()
        })
        .collect();
    let hist = || Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds");
    let (mut latency, mut slowdown, mut lateness) = (hist(), hist(), hist());
    let mut counts = [0u64; 6]; // issued, completed, failed, refused, unfinished, unknown
    let (mut measured, mut measured_bad, mut measured_completed, mut late) = (0u64, 0u64, 0u64, 0u64);
    let mut invocations = Vec::with_capacity(planned.len());
    // A count column's length after compression, s.
    let span = trace.granularity.seconds() as f64 / spec.schedule.compress;
    let mut cold_starts = 0u64;
    for (p, r) in planned.iter().zip(&d.ledger.requests) {
        let column = p.invocation.column as usize;
        let intended = Duration::from_micros(p.invocation.at_us);
        let measuring = column >= warm_end;
        if let Some(sent) = r.sent {
            counts[0] += 1;
            let lag = sent.saturating_sub(intended);
            if lag > crate::studies::load::LATE_AFTER {
                late += 1;
                minutes[column - window.start].late += 1;
            }
            lateness.saturating_record(lag.as_micros().max(1) as u64);
            // Issued counts where the send really happened: a send that slipped into the
            // next minute is missing from its own, as a replayed trace would see it.
            let sent_in = (sent.as_secs_f64() / span) as usize;
            if let Some(minute) = minutes.get_mut(sent_in) {
                minute.issued += 1;
            }
        }
        let m = &mut minutes[column - window.start];
        let (state, error, completed_us, actual_ms, worker) = match &r.fate {
            Fate::Finished(f) if f.completed => {
                counts[1] += 1;
                m.completed += 1;
                if measuring {
                    measured_completed += 1;
                    let us = f.at.saturating_sub(intended).as_micros().max(1) as u64;
                    latency.saturating_record(us);
                    // Slowdown ×1000, so the histogram keeps three decimals.
                    slowdown.saturating_record((us as f64 / (p.ms.max(1) as f64 * 1e3) * 1e3).max(1.0) as u64);
                }
                let done = f.done_at.as_micros() as u64;
                (
                    "completed",
                    String::new(),
                    Some(done),
                    Some(f.run_us as f64 / 1e3),
                    f.worker.clone(),
                )
            }
            Fate::Finished(f) => {
                counts[2] += 1;
                m.failed += 1;
                let done = f.done_at.as_micros() as u64;
                (
                    "failed",
                    f.error.clone(),
                    Some(done),
                    Some(f.run_us as f64 / 1e3),
                    f.worker.clone(),
                )
            }
            Fate::Refused(code, message) => {
                counts[3] += 1;
                m.failed += 1;
                ("refused", format!("{code:?}: {message}"), None, None, String::new())
            }
            Fate::Pending => {
                counts[4] += 1;
                m.failed += 1;
                ("unfinished", String::new(), None, None, String::new())
            }
            Fate::Unknown => {
                counts[5] += 1;
                m.failed += 1;
                ("unknown", String::new(), None, None, String::new())
            }
        };
        if measuring {
            measured += 1;
            measured_bad += u64::from(state != "completed");
        }
        let cold = matches!(&r.fate, Fate::Finished(f) if f.completed && f.cold);
        cold_starts += u64::from(cold);
        invocations.push(InvocationRow {
            function: functions[p.invocation.function as usize].key.2.clone(),
            minute: trace.columns[column].clone(),
            phase: phase(column),
            intended_us: p.invocation.at_us,
            sent_us: r.sent.map(|s| s.as_micros() as u64),
            completed_us,
            requested_ms: p.ms,
            actual_ms,
            memory_mb: p.mb,
            worker,
            state,
            error,
            cold,
        });
    }
    let seconds =
        (window.end.saturating_sub(warm_end)) as f64 * trace.granularity.seconds() as f64 / spec.schedule.compress;
    let q = |h: &Histogram<u64>, p: f64, scale: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(p) as f64 / scale
        }
    };
    let measured_planned: Vec<Planned> = planned
        .iter()
        .filter(|p| p.invocation.column as usize >= warm_end)
        .copied()
        .collect();
    let verdict = judge(&minutes);
    let summary = Summary {
        scheduled: planned.len() as u64,
        issued: counts[0],
        completed: counts[1],
        failed: counts[2],
        refused: counts[3],
        unfinished: counts[4],
        unknown: counts[5],
        offered_rate: measured as f64 / seconds.max(1e-9),
        achieved_rate: measured_completed as f64 / seconds.max(1e-9),
        p50_ms: q(&latency, 0.50, 1e3),
        p90_ms: q(&latency, 0.90, 1e3),
        p99_ms: q(&latency, 0.99, 1e3),
        p999_ms: q(&latency, 0.999, 1e3),
        slowdown_p50: q(&slowdown, 0.50, 1e3),
        slowdown_p99: q(&slowdown, 0.99, 1e3),
        failure_rate: if measured == 0 {
            0.0
        } else {
            measured_bad as f64 / measured as f64
        },
        late_sends: late,
        lateness_p99_ms: q(&lateness, 0.99, 1e3),
        generator_cpu_s: d.cpu.as_secs_f64(),
        busy_slots: busy_slots(
            &measured_planned,
            (window.end.saturating_sub(warm_end)) as f64 * trace.granularity.seconds() as f64,
            spec.schedule.compress,
        ),
        cold_starts,
        cold_pct: 100.0 * cold_starts as f64 / counts[1].max(1) as f64,
        verdict,
    };
    Replayed {
        start_unix_us: d.clock.start_unix_us,
        invocations,
        minutes,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(issued: u64, failed: u64) -> MinuteRow {
        MinuteRow {
            minute: "7".into(),
            phase: "measure",
            target: 100,
            issued,
            failed,
            ..MinuteRow::default()
        }
    }

    #[test]
    fn the_verdict_enforces_invitros_thresholds() {
        assert!(judge(&[minute(100, 0)]).pass);
        let warn = judge(&[minute(88, 35)]);
        assert!(warn.pass && warn.warnings.len() == 2, "{warn:?}");
        let fail = judge(&[minute(75, 60)]);
        assert!(!fail.pass && fail.failures.len() == 2, "{fail:?}");
        assert!(fail.failures[0].contains("minute 7"), "{fail:?}");
        let mut warmup = minute(0, 100);
        warmup.phase = "warmup";
        assert!(judge(&[warmup]).pass, "warm-up minutes are not judged");
    }
}
