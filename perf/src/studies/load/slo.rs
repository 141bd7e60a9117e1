//! Service-level objectives a run is judged by: `p99<50ms,success>=0.999`.
//!
//! A clause is a metric, a comparison and a bound. Latency metrics (`p50`, `p90`, `p99`,
//! `max`, `mean`, from intended send) take a duration (`50ms`, `0.2s`, `800us`) and
//! `<` or `<=`; `success` (completed share of the measured requests) takes a fraction or a
//! percentage and `>=` or `>`. A run whose offered rate missed its target, or whose
//! results could not all be known, fails whatever its figures.

use super::LoadResult;
use anyhow::{bail, Context};
use std::time::Duration;

/// What a clause looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A latency percentile (0–100) from intended send.
    Percentile(u8),
    /// The largest latency.
    Max,
    /// The mean latency.
    Mean,
    /// Completed share of the measured requests.
    Success,
}

/// One comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clause {
    /// The metric.
    pub metric: Metric,
    /// `true` for `<` / `>`, `false` for `<=` / `>=`.
    pub strict: bool,
    /// Milliseconds for latency, a fraction for success.
    pub bound: f64,
}

/// Every clause must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// The clauses, as given.
    pub clauses: Vec<Clause>,
    text: String,
}

impl std::fmt::Display for Slo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn duration_ms(text: &str) -> anyhow::Result<f64> {
    let d: Duration = humantime::parse_duration(text.trim())
        .with_context(|| format!("'{text}' is not a duration (e.g. 50ms, 0.2s)"))
        .or_else(|e| {
            // humantime takes no fractions: accept "0.2s" and "1.5ms" by hand.
            let t = text.trim();
            let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
            let n: f64 = num.parse().map_err(|_| e)?;
            let ms = match unit {
                "s" => n * 1e3,
                "ms" => n,
                "us" | "µs" => n / 1e3,
                _ => bail!("'{text}': the unit must be s, ms or us"),
            };
            Ok(Duration::from_secs_f64(ms / 1e3))
        })?;
    Ok(d.as_secs_f64() * 1e3)
}

impl std::str::FromStr for Slo {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut clauses = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let at = raw
                .find(['<', '>'])
                .with_context(|| format!("SLO clause '{raw}' has no < or >"))?;
            let (name, rest) = raw.split_at(at);
            let (op, value) = match rest.strip_prefix("<=").or_else(|| rest.strip_prefix(">=")) {
                Some(v) => (&rest[..2], v),
                None => (&rest[..1], &rest[1..]),
            };
            let metric = match name.trim() {
                "max" => Metric::Max,
                "mean" => Metric::Mean,
                "success" => Metric::Success,
                p => match p.strip_prefix('p').and_then(|n| n.parse::<u8>().ok()) {
                    Some(n) if (1..=99).contains(&n) => Metric::Percentile(n),
                    _ => bail!("unknown SLO metric '{p}': use p50, p90, p99, max, mean or success"),
                },
            };
            let upper = op.starts_with('<');
            let bound = if metric == Metric::Success {
                anyhow::ensure!(!upper, "'{raw}': success is bounded from below (success>=0.999)");
                let v = value.trim();
                let f = match v.strip_suffix('%') {
                    Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                    None => v.parse::<f64>(),
                }
                .with_context(|| format!("'{raw}': {v} is not a fraction or percentage"))?;
                anyhow::ensure!((0.0..=1.0).contains(&f), "'{raw}': success must lie between 0 and 1");
                f
            } else {
                anyhow::ensure!(upper, "'{raw}': latency is bounded from above ({name}<50ms)");
                duration_ms(value)?
            };
            clauses.push(Clause {
                metric,
                strict: op.len() == 1,
                bound,
            });
        }
        anyhow::ensure!(
            !clauses.is_empty(),
            "an SLO needs at least one clause, e.g. 'p99<50ms,success>=0.999'"
        );
        Ok(Slo {
            clauses,
            text: s.trim().to_owned(),
        })
    }
}

/// Whether a run met its SLO, and if not, every reason why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Every clause held and the run was valid.
    pub pass: bool,
    /// Why not, one entry per broken clause.
    pub reasons: Vec<String>,
}

impl Verdict {
    /// `pass`, or `fail: …` with the reasons.
    pub fn label(&self) -> String {
        if self.pass {
            "pass".into()
        } else {
            format!("fail: {}", self.reasons.join("; "))
        }
    }
}

/// Tolerance of share comparisons.
const EPSILON: f64 = 1e-9;

fn percentile(r: &LoadResult, p: u8) -> Option<f64> {
    match p {
        50 => Some(r.p50_ms),
        90 => Some(r.p90_ms),
        99 => Some(r.p99_ms),
        _ => None,
    }
}

impl Slo {
    /// Judges one run.
    pub fn judge(&self, r: &LoadResult) -> Verdict {
        let mut reasons = Vec::new();
        if !r.rate_ok {
            reasons.push(format!(
                "offered {:.0}/s of the {:.0}/s asked (the generator could not keep up)",
                r.offered_rate, r.target_rate
            ));
        }
        if r.unknown > 0 {
            reasons.push(format!("{} results could not be known", r.unknown));
        }
        for c in &self.clauses {
            let (value, name) = match c.metric {
                Metric::Percentile(p) => match percentile(r, p) {
                    Some(v) => (v, format!("p{p}")),
                    None => {
                        reasons.push(format!("p{p} is not measured (p50, p90 and p99 are)"));
                        continue;
                    }
                },
                Metric::Max => (r.max_ms, "max".into()),
                Metric::Mean => (r.mean_ms, "mean".into()),
                Metric::Success => (r.success_rate, "success".into()),
            };
            let (holds, unit) = match c.metric {
                // A percentage's bound is a float near the intended one (99.9 % is
                // 0.9990000000000001): compare to within a hair, so 999 of 1,000 passes.
                Metric::Success => (
                    if c.strict {
                        value > c.bound + EPSILON
                    } else {
                        value >= c.bound - EPSILON
                    },
                    "",
                ),
                _ => (
                    // No completed request means no latency: that never meets a bound.
                    r.completed > 0 && if c.strict { value < c.bound } else { value <= c.bound },
                    " ms",
                ),
            };
            if !holds {
                let op = match (c.metric, c.strict) {
                    (Metric::Success, true) => ">",
                    (Metric::Success, false) => ">=",
                    (_, true) => "<",
                    (_, false) => "<=",
                };
                reasons.push(format!("{name} {value:.4}{unit}, not {op} {}{unit}", c.bound));
            }
        }
        Verdict {
            pass: reasons.is_empty(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p99: f64, success: f64) -> LoadResult {
        LoadResult {
            p99_ms: p99,
            success_rate: success,
            completed: 10,
            rate_ok: true,
            offered_rate: 100.0,
            target_rate: 100.0,
            ..LoadResult::default()
        }
    }

    #[test]
    fn clauses_parse_with_units_and_percentages() {
        let s: Slo = "p99<50ms, success>=99.9%".parse().expect("slo");
        assert!((s.clauses[1].bound - 0.999).abs() < 1e-12);
        assert!(s.judge(&run(1.0, 0.999)).pass, "999 of 1,000 meets 99.9 %");
        let s: Slo = "p99<50ms, success>=0.999".parse().expect("slo");
        assert_eq!(
            s.clauses,
            vec![
                Clause {
                    metric: Metric::Percentile(99),
                    strict: true,
                    bound: 50.0
                },
                Clause {
                    metric: Metric::Success,
                    strict: false,
                    bound: 0.999
                },
            ]
        );
        let s: Slo = "p50<=0.2s,max<1500us".parse().expect("slo");
        assert_eq!(s.clauses[0].bound, 200.0);
        assert!(!s.clauses[0].strict);
        assert!((s.clauses[1].bound - 1.5).abs() < 1e-9);
        for bad in [
            "",
            "p99",
            "p99>5ms",
            "success<0.9",
            "p100<1ms",
            "success>=2",
            "latency<5ms",
            "p99<fast",
        ] {
            assert!(bad.parse::<Slo>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_run_passes_only_when_every_clause_holds_and_it_is_valid() {
        let s: Slo = "p99<50ms,success>=0.999".parse().expect("slo");
        assert!(s.judge(&run(49.0, 1.0)).pass);
        let v = s.judge(&run(50.0, 0.99));
        assert!(!v.pass);
        assert_eq!(v.reasons.len(), 2, "{v:?}");
        let mut off = run(1.0, 1.0);
        off.rate_ok = false;
        assert!(!s.judge(&off).pass);
        let mut nothing = run(0.0, 0.0);
        nothing.completed = 0;
        assert!(!"p99<50ms".parse::<Slo>().expect("slo").judge(&nothing).pass);
    }
}
