//! Arrival processes: uniform (equal gaps) or Poisson (exponential gaps), from a seeded
//! RNG, turned into a schedule of intended send offsets before the first send.

use anyhow::{bail, Context};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use std::time::Duration;

/// How requests are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Every gap is exactly 1 / rate.
    Uniform,
    /// Gaps are exponential with mean 1 / rate (a Poisson process).
    Poisson,
}

impl Arrival {
    /// The name used on command lines and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Arrival::Uniform => "uniform",
            Arrival::Poisson => "poisson",
        }
    }
}

impl std::str::FromStr for Arrival {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uniform" => Ok(Arrival::Uniform),
            "poisson" => Ok(Arrival::Poisson),
            other => Err(format!(
                "unknown arrival process '{other}': expected uniform or poisson"
            )),
        }
    }
}

/// Seeded gaps between consecutive requests.
pub struct Arrivals {
    kind: Arrival,
    mean: f64,
    exp: Option<Exp<f64>>,
    rng: SmallRng,
}

impl Arrivals {
    /// Gaps for `rate` requests per second.
    pub fn new(kind: Arrival, rate: f64, seed: u64) -> anyhow::Result<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("the rate must be a positive number of requests per second, not {rate}");
        }
        let exp = match kind {
            Arrival::Poisson => Some(Exp::new(rate).context("exponential distribution")?),
            Arrival::Uniform => None,
        };
        Ok(Self {
            kind,
            mean: 1.0 / rate,
            exp,
            rng: SmallRng::seed_from_u64(seed),
        })
    }

    /// The next gap, in seconds.
    pub fn next_gap(&mut self) -> f64 {
        match (&self.kind, &self.exp) {
            (Arrival::Poisson, Some(exp)) => exp.sample(&mut self.rng),
            _ => self.mean,
        }
    }

    /// Intended send offsets from the start, for `duration`.
    pub fn schedule(&mut self, duration: Duration) -> Vec<Duration> {
        let end = duration.as_secs_f64();
        let mut t = 0.0;
        let mut out = Vec::new();
        for k in 1u64.. {
            // Uniform offsets are k × gap: summing gaps would drift by rounding.
            t = match self.kind {
                Arrival::Uniform => k as f64 * self.mean,
                Arrival::Poisson => t + self.next_gap(),
            };
            if t >= end {
                break;
            }
            out.push(Duration::from_secs_f64(t));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(kind: Arrival, rate: f64) -> (f64, f64) {
        let mut a = Arrivals::new(kind, rate, 42).unwrap();
        let gaps: Vec<f64> = (0..100_000).map(|_| a.next_gap()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        (mean, var.sqrt() / mean)
    }

    #[test]
    fn poisson_gaps_have_mean_one_over_rate_and_cv_one() {
        let (mean, cv) = stats(Arrival::Poisson, 50.0);
        assert!((mean - 0.02).abs() < 0.02 * 0.02, "mean {mean}");
        assert!((cv - 1.0).abs() < 0.02, "cv {cv}");
    }

    #[test]
    fn uniform_gaps_are_exact() {
        let (mean, cv) = stats(Arrival::Uniform, 50.0);
        assert!((mean - 0.02).abs() < 1e-12, "mean {mean}");
        assert!(cv < 1e-9, "cv {cv}");
    }

    #[test]
    fn schedules_are_seeded_and_fill_the_duration() {
        let a = Arrivals::new(Arrival::Poisson, 100.0, 7)
            .unwrap()
            .schedule(Duration::from_secs(10));
        let b = Arrivals::new(Arrival::Poisson, 100.0, 7)
            .unwrap()
            .schedule(Duration::from_secs(10));
        assert_eq!(a, b);
        assert!((900..1100).contains(&a.len()), "{}", a.len());
        let u = Arrivals::new(Arrival::Uniform, 10.0, 7)
            .unwrap()
            .schedule(Duration::from_secs(1));
        assert_eq!(u.len(), 9);
        assert!(Arrivals::new(Arrival::Uniform, 0.0, 1).is_err());
    }
}
