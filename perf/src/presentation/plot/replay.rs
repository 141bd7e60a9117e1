//! Charts of a replay's `replay.csv`: the trace's invocations per minute against those
//! replayed, latency CDFs per function class, slowdown against requested duration, and
//! the requested against the emulated durations with their Wasserstein distance.

use super::draw::*;
use anyhow::Context;
use plotters::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row of `replay.csv`, as read back.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplayRecord {
    /// The trace column.
    pub minute: String,
    /// Intended send, µs.
    pub intended_us: u64,
    /// Finished at, µs (empty if it did not).
    pub completed_us: Option<u64>,
    /// Requested duration, ms.
    pub requested_ms: u64,
    /// Run time on the worker, ms.
    pub actual_ms: Option<f64>,
    /// Final state.
    pub state: String,
}

/// Function classes by requested duration, as serverless studies group them.
const CLASSES: [(&str, u64, u64); 4] = [
    ("under 10 ms", 0, 10),
    ("10–100 ms", 10, 100),
    ("100 ms–1 s", 100, 1_000),
    ("1 s and over", 1_000, u64::MAX),
];

/// The 1-Wasserstein (earth mover's) distance between two samples of equal size: the mean
/// gap between their sorted values.
pub fn wasserstein(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let sorted = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s
    };
    let (a, b) = (sorted(a), sorted(b));
    Some(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64)
}

fn cdf(mut v: Vec<f64>) -> Vec<(f64, f64)> {
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let step = (v.len() / 400).max(1);
    v.iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == v.len())
        .map(|(i, &x)| (x, (i + 1) as f64 / n * 100.0))
        .collect()
}

/// Draws the replay charts from `path` into `out`.
pub fn plot_replay(path: &Path, out: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let rows: Vec<ReplayRecord> = read_csv(path)?;
    anyhow::ensure!(!rows.is_empty(), "{} holds no invocations", path.display());
    let done: Vec<&ReplayRecord> = rows.iter().filter(|r| r.state == "completed").collect();
    let latency_ms = |r: &ReplayRecord| r.completed_us.map(|c| c.saturating_sub(r.intended_us) as f64 / 1e3);

    // Invocations per minute: every scheduled one has a row.
    let mut per_minute: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for r in &rows {
        let e = per_minute.entry(r.minute.clone()).or_default();
        e.0 += 1.0;
        if r.state == "completed" {
            e.1 += 1.0;
        }
    }
    let x = |m: &str, i: usize| m.parse::<f64>().unwrap_or(i as f64);
    let mut minutes: Vec<(f64, f64, f64)> = per_minute
        .iter()
        .enumerate()
        .map(|(i, (m, (t, c)))| (x(m, i), *t, *c))
        .collect();
    minutes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let c = Lines {
        title: "Replay: invocations per trace minute".into(),
        x_label: "trace minute".into(),
        y_label: "invocations".into(),
        series: vec![
            ("trace".into(), minutes.iter().map(|m| (m.0, m.1)).collect()),
            (
                "replayed (completed)".into(),
                minutes.iter().map(|m| (m.0, m.2)).collect(),
            ),
        ],
        x_scale: XScale::Linear,
        y_range: None,
        reference: None,
    };
    render!(out, "replay-minutes", draw_lines, &c, written);

    // Latency CDF per class.
    let series: Vec<(String, Vec<(f64, f64)>)> = CLASSES
        .iter()
        .filter_map(|(name, lo, hi)| {
            let v: Vec<f64> = done
                .iter()
                .filter(|r| r.requested_ms >= *lo && r.requested_ms < *hi)
                .filter_map(|r| latency_ms(r))
                .collect();
            (!v.is_empty()).then(|| (format!("{name} ({})", v.len()), cdf(v)))
        })
        .collect();
    if !series.is_empty() {
        let c = Lines {
            title: "Replay: latency from intended send, by requested duration".into(),
            x_label: "latency (ms)".into(),
            y_label: "invocations at or below (%)".into(),
            series,
            x_scale: XScale::Linear,
            y_range: None,
            reference: None,
        };
        render!(out, "replay-latency-cdf", draw_lines, &c, written);
    }

    // Slowdown against requested duration, in log-spaced bins.
    let mut bins: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in &done {
        if let Some(l) = latency_ms(r) {
            let req = r.requested_ms.max(1) as f64;
            bins.entry((req.log10() * 4.0).floor() as i64)
                .or_default()
                .push(l / req);
        }
    }
    let pick = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
    };
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for (bin, mut v) in bins {
        let xv = bin as f64 / 4.0;
        p50.push((xv, pick(&mut v, 0.50)));
        p99.push((xv, pick(&mut v, 0.99)));
    }
    if !p50.is_empty() {
        let c = Lines {
            title: "Replay: slowdown (latency / requested duration)".into(),
            x_label: "log10 requested duration (ms)".into(),
            y_label: "slowdown".into(),
            series: vec![("p50".into(), p50), ("p99".into(), p99)],
            x_scale: XScale::Linear,
            y_range: None,
            reference: None,
        };
        render!(out, "replay-slowdown", draw_lines, &c, written);
    }

    // Requested against emulated durations.
    let pairs: Vec<(f64, f64)> = done
        .iter()
        .filter_map(|r| r.actual_ms.map(|a| (r.requested_ms as f64, a)))
        .collect();
    if !pairs.is_empty() {
        let (requested, actual): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        let w = wasserstein(&requested, &actual).context("durations")?;
        let histogram = |v: &[f64]| {
            let mut h: BTreeMap<i64, f64> = BTreeMap::new();
            for x in v {
                *h.entry((x.max(0.1).log10() * 8.0).floor() as i64).or_default() += 1.0;
            }
            h.into_iter().map(|(b, n)| (b as f64 / 8.0, n)).collect::<Vec<_>>()
        };
        let c = Lines {
            title: format!("Replay: requested vs emulated durations (Wasserstein distance {w:.2} ms)"),
            x_label: "log10 duration (ms)".into(),
            y_label: "invocations".into(),
            series: vec![
                ("requested (trace)".into(), histogram(&requested)),
                ("emulated (worker)".into(), histogram(&actual)),
            ],
            x_scale: XScale::Linear,
            y_range: None,
            reference: None,
        };
        render!(out, "replay-durations", draw_lines, &c, written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasserstein_is_the_mean_gap_of_sorted_samples() {
        assert_eq!(wasserstein(&[1.0, 2.0, 3.0], &[3.0, 1.0, 2.0]), Some(0.0));
        assert_eq!(wasserstein(&[1.0, 2.0], &[2.0, 4.0]), Some(1.5));
        assert_eq!(wasserstein(&[1.0], &[]), None);
    }
}
