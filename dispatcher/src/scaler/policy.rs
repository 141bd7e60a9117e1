//! Policy specs as people type them: `fixed:keepalive=10m`,
//! `kpa:target=1,utilization=0.7,stable=60s,panic=6s,panic-threshold=2.0,grace=30s,max-scale=16`,
//! `hybrid:range=4h,bin=1m,head=5,tail=99,margin=0.1,cv=2,min-samples=10,fallback=10m`.
//! Every parameter has a default; an unknown name or a value out of range is an error
//! that says which and what is allowed.

use super::fixed::Fixed;
use super::hybrid::{Hybrid, HybridParams};
use super::kpa::{Kpa, KpaParams};
use super::Policy;
use std::str::FromStr;
use std::time::Duration;

/// A parsed policy.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicySpec {
    /// Keep an idle instance this long.
    Fixed {
        /// The keep-alive window.
        keepalive: Duration,
    },
    /// Knative's KPA.
    Kpa(KpaParams),
    /// The hybrid histogram.
    Hybrid(HybridParams),
}

impl PolicySpec {
    /// The policy, fresh.
    pub fn build(&self) -> Box<dyn Policy> {
        match self {
            PolicySpec::Fixed { keepalive } => Box::new(Fixed::new(*keepalive)),
            PolicySpec::Kpa(p) => Box::new(Kpa::new(p.clone())),
            PolicySpec::Hybrid(p) => Box::new(Hybrid::new(p.clone())),
        }
    }

    /// A short name for tables: `fixed-10m`, `kpa`, `hybrid`.
    pub fn label(&self) -> String {
        match self {
            PolicySpec::Fixed { keepalive } => format!("fixed-{}", humantime::format_duration(*keepalive)),
            PolicySpec::Kpa(_) => "kpa".into(),
            PolicySpec::Hybrid(_) => "hybrid".into(),
        }
    }
}

/// Why a policy spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy '{spec}': {why}")]
pub struct PolicyError {
    spec: String,
    why: String,
}

struct Params<'a> {
    spec: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Params<'a> {
    fn err(&self, why: impl Into<String>) -> PolicyError {
        PolicyError {
            spec: self.spec.to_owned(),
            why: why.into(),
        }
    }

    fn check_known(&self, known: &[&str]) -> Result<(), PolicyError> {
        for (k, _) in &self.pairs {
            if !known.contains(k) {
                return Err(self.err(format!("unknown parameter '{k}'; it takes {}", known.join(", "))));
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn duration(&self, key: &str, default: Duration, min: Duration) -> Result<Duration, PolicyError> {
        let Some(text) = self.get(key) else { return Ok(default) };
        let d = humantime::parse_duration(text).map_err(|e| self.err(format!("{key}={text}: {e} (e.g. 30s, 10m)")))?;
        if d < min {
            return Err(self.err(format!(
                "{key}={text} is below the minimum of {}",
                humantime::format_duration(min)
            )));
        }
        Ok(d)
    }

    fn number(&self, key: &str, default: f64, range: (f64, f64)) -> Result<f64, PolicyError> {
        let Some(text) = self.get(key) else { return Ok(default) };
        let v: f64 = text
            .parse()
            .map_err(|_| self.err(format!("{key}={text} is not a number")))?;
        if !(v >= range.0 && v <= range.1) {
            return Err(self.err(format!("{key}={text} is outside {}..={}", range.0, range.1)));
        }
        Ok(v)
    }
}

impl FromStr for PolicySpec {
    type Err = PolicyError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec = spec.trim();
        let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let mut pairs = Vec::new();
        let p = Params {
            spec,
            pairs: Vec::new(),
        };
        for item in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| p.err(format!("'{item}' is not name=value")))?;
            pairs.push((k.trim(), v.trim()));
        }
        let p = Params { spec, pairs };
        let second = Duration::from_secs(1);
        match name {
            "fixed" => {
                p.check_known(&["keepalive"])?;
                Ok(PolicySpec::Fixed {
                    keepalive: p.duration("keepalive", Duration::from_secs(600), Duration::ZERO)?,
                })
            }
            "kpa" => {
                p.check_known(&[
                    "target",
                    "utilization",
                    "stable",
                    "panic",
                    "panic-threshold",
                    "grace",
                    "max-scale",
                    "tick",
                ])?;
                let d = KpaParams::default();
                let params = KpaParams {
                    target: p.number("target", d.target, (0.01, 1e6))?,
                    utilization: p.number("utilization", d.utilization, (0.01, 1.0))?,
                    stable: p.duration("stable", d.stable, second)?,
                    panic: p.duration("panic", d.panic, second)?,
                    panic_threshold: p.number("panic-threshold", d.panic_threshold, (1.0, 1000.0))?,
                    grace: p.duration("grace", d.grace, Duration::ZERO)?,
                    max_scale: p.number("max-scale", f64::from(d.max_scale), (0.0, 100_000.0))? as u32,
                    tick: p.duration("tick", d.tick, Duration::from_millis(10))?,
                };
                if params.panic > params.stable {
                    return Err(p.err("the panic window must not be longer than the stable window"));
                }
                Ok(PolicySpec::Kpa(params))
            }
            "hybrid" => {
                p.check_known(&[
                    "range",
                    "bin",
                    "head",
                    "tail",
                    "margin",
                    "cv",
                    "min-samples",
                    "fallback",
                ])?;
                let d = HybridParams::default();
                let params = HybridParams {
                    range: p.duration("range", d.range, second)?,
                    bin: p.duration("bin", d.bin, second)?,
                    head: p.number("head", d.head, (0.0, 50.0))?,
                    tail: p.number("tail", d.tail, (50.0, 100.0))?,
                    margin: p.number("margin", d.margin, (0.0, 1.0))?,
                    cv: p.number("cv", d.cv, (0.0, 1000.0))?,
                    min_samples: p.number("min-samples", d.min_samples as f64, (1.0, 1e6))? as usize,
                    fallback: p.duration("fallback", d.fallback, Duration::ZERO)?,
                };
                if params.bin > params.range {
                    return Err(p.err("the bin must not be wider than the range"));
                }
                Ok(PolicySpec::Hybrid(params))
            }
            other => Err(p.err(format!("unknown policy '{other}'; use fixed, kpa or hybrid"))),
        }
    }
}
