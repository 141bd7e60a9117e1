//! The replay schedule, built in full before the first send: for every function and count
//! column, the trace's count n becomes exactly n timestamps inside that column.
//!
//! - equidistant: n equal gaps from the column's start;
//! - uniform: n independent uniform times;
//! - exponential: n exponential gaps rescaled so they fill the column exactly (invitro's
//!   rule), so the count is exact and the column's boundaries are kept.
//!
//! `shift` moves each function's times by a random phase within the column (wrapping
//! round), so functions with equal counts do not all fire at the column's start.
//! `compress` divides every time by X. The generator is `XorShift`, seeded per function
//! from the run's seed: the same seed gives the same schedule byte for byte, on any
//! machine, whatever else is selected.

use super::trace::{Granularity, TraceFunction};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp1};
use rand_xorshift::XorShiftRng;
use std::ops::Range;

/// How invocations are spread inside a count column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iat {
    /// Equal gaps.
    Equidistant,
    /// Independent uniform times.
    Uniform,
    /// Exponential gaps rescaled to fill the column.
    Exponential,
}

impl std::str::FromStr for Iat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "equidistant" => Ok(Self::Equidistant),
            "uniform" => Ok(Self::Uniform),
            "exponential" => Ok(Self::Exponential),
            other => Err(format!(
                "unknown inter-arrival kind '{other}': expected equidistant, uniform or exponential"
            )),
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    /// Count columns to replay (indices into the trace's columns).
    pub window: Range<usize>,
    /// Spacing inside a column.
    pub iat: Iat,
    /// A random phase per function.
    pub shift: bool,
    /// Every time is divided by this (≥ 1 speeds the replay up).
    pub compress: f64,
    /// The seed.
    pub seed: u64,
}

/// One scheduled invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Invocation {
    /// Intended time, µs from the replay's start (after compression).
    pub at_us: u64,
    /// The function: an index into the functions the schedule was built from.
    pub function: u32,
    /// The count column it belongs to (an index into the trace's columns).
    pub column: u32,
}

/// The schedule of `functions` over `spec.window`, sorted by time (then function, column).
pub fn build(
    functions: &[&TraceFunction],
    granularity: Granularity,
    spec: &ScheduleSpec,
) -> anyhow::Result<Vec<Invocation>> {
    anyhow::ensure!(
        spec.compress.is_finite() && spec.compress > 0.0,
        "--compress must be a positive number, not {}",
        spec.compress
    );
    let span = granularity.seconds() as f64;
    let mut out = Vec::new();
    let mut times = Vec::new();
    for (index, f) in functions.iter().enumerate() {
        anyhow::ensure!(
            spec.window.end <= f.counts.len(),
            "the window ends at column {} but the trace has {}",
            spec.window.end,
            f.counts.len()
        );
        let mut rng = XorShiftRng::seed_from_u64(spec.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let phase = if spec.shift { rng.random_range(0.0..span) } else { 0.0 };
        for (offset, column) in spec.window.clone().enumerate() {
            let n = f.counts[column] as usize;
            if n == 0 {
                continue;
            }
            times.clear();
            spread(n, span, spec.iat, &mut rng, &mut times);
            let start = offset as f64 * span;
            for t in &times {
                let within = if spec.shift { (t + phase) % span } else { *t };
                let at = (start + within) / spec.compress;
                out.push(Invocation {
                    at_us: (at * 1e6) as u64,
                    function: index as u32,
                    column: column as u32,
                });
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// `n` times in `[0, span)` seconds.
fn spread(n: usize, span: f64, iat: Iat, rng: &mut XorShiftRng, out: &mut Vec<f64>) {
    match iat {
        Iat::Equidistant => out.extend((0..n).map(|k| k as f64 * span / n as f64)),
        Iat::Uniform => out.extend((0..n).map(|_| rng.random_range(0.0..span))),
        Iat::Exponential => {
            let gaps: Vec<f64> = (0..n).map(|_| Exp1.sample(rng)).collect();
            let total: f64 = gaps.iter().sum();
            let mut t = 0.0;
            for g in gaps {
                out.push(t / total * span);
                t += g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::studies::replay::percentiles::Percentiles;
    use proptest::prelude::*;

    fn function(counts: Vec<u64>) -> TraceFunction {
        let flat = Percentiles::new(vec![(0.0, 10.0), (100.0, 10.0)]).expect("valid");
        TraceFunction {
            key: ("o".into(), "a".into(), "f".into()),
            trigger: "http".into(),
            counts,
            duration_ms: flat.clone(),
            memory_mb: flat,
        }
    }

    fn spec(window: Range<usize>, iat: Iat, shift: bool, seed: u64) -> ScheduleSpec {
        ScheduleSpec {
            window,
            iat,
            shift,
            compress: 1.0,
            seed,
        }
    }

    fn iat() -> impl Strategy<Value = Iat> {
        prop_oneof![Just(Iat::Equidistant), Just(Iat::Uniform), Just(Iat::Exponential)]
    }

    proptest! {
        #[test]
        fn every_column_gets_exactly_its_count_inside_it(
            counts in proptest::collection::vec(proptest::collection::vec(0u64..400, 4), 1..5),
            kind in iat(),
            shift in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let fs: Vec<TraceFunction> = counts.iter().cloned().map(function).collect();
            let refs: Vec<&TraceFunction> = fs.iter().collect();
            let s = spec(1..4, kind, shift, seed);
            let sched = build(&refs, Granularity::Minute, &s).expect("schedule");
            for (i, f) in fs.iter().enumerate() {
                for (offset, column) in (1..4).enumerate() {
                    let mine: Vec<&Invocation> = sched
                        .iter()
                        .filter(|v| v.function == i as u32 && v.column == column as u32)
                        .collect();
                    prop_assert_eq!(mine.len() as u64, f.counts[column]);
                    let (lo, hi) = (offset as u64 * 60_000_000, (offset as u64 + 1) * 60_000_000);
                    prop_assert!(mine.iter().all(|v| (lo..hi).contains(&v.at_us)));
                }
            }
            prop_assert!(sched.windows(2).all(|w| w[0].at_us <= w[1].at_us));
            prop_assert_eq!(build(&refs, Granularity::Minute, &s).expect("again"), sched);
        }
    }

    #[test]
    fn compression_divides_times_and_a_bad_factor_is_refused() {
        let f = function(vec![6]);
        let mut s = spec(0..1, Iat::Equidistant, false, 1);
        s.compress = 10.0;
        let sched = build(&[&f], Granularity::Minute, &s).expect("schedule");
        let times: Vec<u64> = sched.iter().map(|v| v.at_us).collect();
        assert_eq!(times, vec![0, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 5_000_000]);
        s.compress = 0.0;
        assert!(build(&[&f], Granularity::Minute, &s).is_err());
        let s = spec(0..2, Iat::Uniform, false, 1);
        assert!(build(&[&f], Granularity::Minute, &s).is_err(), "window past the trace");
    }

    #[test]
    fn exponential_gaps_pass_a_kolmogorov_smirnov_test() {
        let n = 20_000;
        let f = function(vec![n]);
        let sched = build(&[&f], Granularity::Minute, &spec(0..1, Iat::Exponential, false, 99)).expect("schedule");
        let mean = 60.0 / n as f64;
        let mut gaps: Vec<f64> = sched
            .windows(2)
            .map(|w| (w[1].at_us - w[0].at_us) as f64 / 1e6 / mean)
            .collect();
        gaps.sort_by(f64::total_cmp);
        let m = gaps.len() as f64;
        let d = gaps
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let cdf = 1.0 - (-x).exp();
                (cdf - i as f64 / m).abs().max(((i + 1) as f64 / m - cdf).abs())
            })
            .fold(0.0, f64::max);
        // Critical value at p = 0.01: 1.628 / √n.
        assert!(d < 1.628 / m.sqrt(), "KS statistic {d} over {m} gaps");
    }
}
