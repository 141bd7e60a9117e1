//! Verdicts: `--assert 'p99<250ms,failed==0,achieved_rate>=0.99,cpu_per_task<20us'`.
//! Parsed and checked against the command's metric names before the run starts; judged
//! at its end, printed PASS/FAIL with the measured value, stored with the run, and any
//! failure makes the command exit [`EXIT_FAILED`] (k6's convention).

use serde::Serialize;
use std::collections::BTreeMap;

/// The exit code of a run whose assertions failed.
pub const EXIT_FAILED: i32 = 99;

/// What a metric measures, which decides the units its threshold may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Seconds; thresholds take `ns`, `us`, `ms`, `s`, `m`.
    Time,
    /// A fraction; thresholds are `0.99` or `99%`.
    Fraction,
    /// A count or rate; plain numbers.
    Number,
    /// Bytes; thresholds take `KB`, `MB`, `GB` (powers of 1024) or none.
    Bytes,
}

/// A metric a command can be judged on.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Its name in `--assert` and in the database.
    pub name: &'static str,
    /// Its unit class.
    pub kind: Kind,
    /// One line for the error that lists what exists.
    pub help: &'static str,
}

impl MetricDef {
    /// A metric named `name`, of unit class `kind`, described by `help`.
    pub const fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Self { name, kind, help }
    }
}

/// The comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => (a - b).abs() <= 1e-12 * b.abs().max(1.0),
            Op::Ne => (a - b).abs() > 1e-12 * b.abs().max(1.0),
        }
    }
}

/// One parsed assertion.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// As typed.
    pub expr: String,
    /// The metric.
    pub metric: MetricDef,
    /// The comparison.
    pub op: Op,
    /// The threshold in the metric's base unit (seconds, fraction, bytes).
    pub threshold: f64,
}

/// An assertion judged.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// As typed.
    pub expr: String,
    /// The measured value, in the metric's base unit; `None` if the run produced none.
    pub measured: Option<f64>,
    /// Whether it held.
    pub passed: bool,
    /// The measured value for people (`212.4ms`).
    pub shown: String,
}

/// Parses `a<1ms,b==0` against the metrics a command offers. Errors name the problem and
/// list what exists, before anything runs.
pub fn parse(list: &str, offered: &[MetricDef]) -> Result<Vec<Assertion>, String> {
    let mut out = Vec::new();
    for expr in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        out.push(parse_one(expr, offered)?);
    }
    if out.is_empty() {
        return Err("--assert needs at least one expression, e.g. 'p99<250ms,failed==0'".into());
    }
    Ok(out)
}

fn parse_one(expr: &str, offered: &[MetricDef]) -> Result<Assertion, String> {
    let ops = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (at, token, op) = ops
        .iter()
        .filter_map(|(t, op)| expr.find(t).map(|i| (i, *t, *op)))
        .min_by_key(|(i, t, _)| (*i, std::cmp::Reverse(t.len())))
        .ok_or_else(|| format!("'{expr}': no comparison (use <, <=, >, >=, == or !=)"))?;
    let name = expr[..at].trim();
    let value = expr[at + token.len()..].trim();
    let metric = *offered.iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<&str> = offered.iter().map(|m| m.name).collect();
        format!(
            "'{expr}': unknown metric '{name}'; this command offers {}",
            names.join(", ")
        )
    })?;
    let threshold = parse_value(value, metric.kind).map_err(|why| format!("'{expr}': {why}"))?;
    Ok(Assertion {
        expr: expr.to_owned(),
        metric,
        op,
        threshold,
    })
}

fn parse_value(text: &str, kind: Kind) -> Result<f64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a number with an optional unit"))?;
    if !n.is_finite() {
        return Err(format!("'{text}' is not finite"));
    }
    let scale = match (kind, unit.trim()) {
        (Kind::Time, "ns") => 1e-9,
        (Kind::Time, "us" | "µs") => 1e-6,
        (Kind::Time, "ms") => 1e-3,
        (Kind::Time, "s") => 1.0,
        (Kind::Time, "m") => 60.0,
        (Kind::Time, "") => return Err("a time needs a unit: ns, us, ms, s or m".into()),
        (Kind::Fraction, "") => 1.0,
        (Kind::Fraction, "%") => 0.01,
        (Kind::Number, "") => 1.0,
        (Kind::Bytes, "") => 1.0,
        (Kind::Bytes, "KB" | "KiB") => 1024.0,
        (Kind::Bytes, "MB" | "MiB") => 1024.0 * 1024.0,
        (Kind::Bytes, "GB" | "GiB") => 1024.0 * 1024.0 * 1024.0,
        (_, u) => return Err(format!("unit '{u}' does not fit this metric")),
    };
    Ok(n * scale)
}

/// Shows a value in its metric's unit.
pub fn show(value: f64, kind: Kind) -> String {
    match kind {
        Kind::Time if value < 1e-3 => format!("{:.1}us", value * 1e6),
        Kind::Time if value < 1.0 => format!("{:.2}ms", value * 1e3),
        Kind::Time => format!("{value:.3}s"),
        Kind::Fraction => format!("{:.2}%", value * 100.0),
        Kind::Bytes => format!("{:.1}MB", value / (1024.0 * 1024.0)),
        Kind::Number if value.fract() == 0.0 => format!("{value:.0}"),
        Kind::Number => format!("{value:.3}"),
    }
}

/// Judges every assertion against the run's measures; a metric the run did not produce
/// fails its assertion.
pub fn check(assertions: &[Assertion], measures: &BTreeMap<String, f64>) -> Vec<Checked> {
    assertions
        .iter()
        .map(|a| {
            let measured = measures.get(a.metric.name).copied();
            Checked {
                expr: a.expr.clone(),
                measured,
                passed: measured.is_some_and(|m| a.op.holds(m, a.threshold)),
                shown: measured.map_or_else(|| "not measured".into(), |m| show(m, a.metric.kind)),
            }
        })
        .collect()
}

/// Prints one line per assertion and returns the exit code the run deserves.
pub fn report(checked: &[Checked]) -> Option<i32> {
    if checked.is_empty() {
        return None;
    }
    for c in checked {
        println!(
            "{} {:<28} measured {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.expr,
            c.shown
        );
    }
    let failed = checked.iter().filter(|c| !c.passed).count();
    if failed > 0 {
        println!("verdict: FAIL ({failed} of {} assertions)", checked.len());
        Some(EXIT_FAILED)
    } else {
        println!("verdict: PASS ({} assertions)", checked.len());
        None
    }
}

/// The metrics every run with telemetry offers: CPU per task by role and peak memory.
pub const TELEMETRY_METRICS: &[MetricDef] = &[
    MetricDef::new("cpu_per_task", Kind::Time, "CPU time of every tracked process per task"),
    MetricDef::new("dispatcher_cpu_per_task", Kind::Time, "the dispatcher's CPU per task"),
    MetricDef::new("worker_cpu_per_task", Kind::Time, "all workers' CPU per task"),
    MetricDef::new("client_cpu_per_task", Kind::Time, "the load generator's CPU per task"),
    MetricDef::new("redis_cpu_per_task", Kind::Time, "Redis's CPU per task"),
    MetricDef::new("peak_rss", Kind::Bytes, "the largest resident set of any process"),
    MetricDef::new(
        "dispatcher_peak_rss",
        Kind::Bytes,
        "the dispatcher's largest resident set",
    ),
    MetricDef::new(
        "sampler_cpu_share",
        Kind::Fraction,
        "the telemetry sampler's own CPU, of one core",
    ),
];

/// A measure in the unit its name implies.
pub(crate) fn shown(name: &str, value: f64) -> String {
    let time = ["p50", "p90", "p99", "p999", "max", "mean", "overhead", "send_p99"];
    let fraction = [
        "efficiency",
        "achieved_rate",
        "success",
        "failure_rate",
        "sampler_cpu_share",
    ];
    let kind = if name.ends_with("rss") {
        Kind::Bytes
    } else if time.contains(&name) || name.ends_with("_per_task") || name.ends_with("_p99") {
        Kind::Time
    } else if fraction.contains(&name) {
        Kind::Fraction
    } else {
        Kind::Number
    };
    show(value, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFERED: &[MetricDef] = &[
        MetricDef::new("p99", Kind::Time, ""),
        MetricDef::new("failed", Kind::Number, ""),
        MetricDef::new("achieved_rate", Kind::Fraction, ""),
        MetricDef::new("peak_rss", Kind::Bytes, ""),
    ];

    #[test]
    fn parses_units_and_operators() {
        let a = parse("p99<250ms, failed==0,achieved_rate>=99%,peak_rss<=64MB", OFFERED).expect("parses");
        assert_eq!(a.len(), 4);
        assert_eq!((a[0].op, a[0].threshold), (Op::Lt, 0.25));
        assert_eq!((a[1].op, a[1].threshold), (Op::Eq, 0.0));
        assert!((a[2].threshold - 0.99).abs() < 1e-12 && a[2].op == Op::Ge);
        assert_eq!(a[3].threshold, 64.0 * 1024.0 * 1024.0);
        assert!((parse("p99<=20us", OFFERED).expect("us")[0].threshold - 20e-6).abs() < 1e-15);
    }

    #[test]
    fn refuses_what_it_cannot_judge() {
        let err = |s| parse(s, OFFERED).expect_err(s);
        assert!(err("p98<1ms").contains("unknown metric 'p98'"));
        assert!(err("p98<1ms").contains("p99, failed"));
        assert!(err("p99<250").contains("needs a unit"));
        assert!(err("p99~1ms").contains("no comparison"));
        assert!(err("failed==zero").contains("not a number"));
        assert!(err("failed==3ms").contains("does not fit"));
        assert!(err(" , ").contains("at least one"));
    }

    #[test]
    fn judges_and_fails_on_a_missing_measure() {
        let a = parse("p99<250ms,failed==0,achieved_rate>=0.99", OFFERED).expect("parses");
        let mut m = BTreeMap::new();
        m.insert("p99".to_owned(), 0.3);
        m.insert("failed".to_owned(), 0.0);
        let c = check(&a, &m);
        assert_eq!(c.iter().map(|c| c.passed).collect::<Vec<_>>(), [false, true, false]);
        assert_eq!(c[0].shown, "300.00ms");
        assert_eq!(c[2].shown, "not measured");
        assert_eq!(report(&c), Some(EXIT_FAILED));
        assert_eq!(report(&c[1..2]), None);
    }
}
