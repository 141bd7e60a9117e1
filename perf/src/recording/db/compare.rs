//! `client runs` lists the runs in a results database; `client compare A B` sets two runs'
//! measures side by side with the relative change, and for sweeps compares every point's
//! throughput and latency across its repeats, flagging a change beyond their spread.

use super::ResultsDb;
use rusqlite::params;
use std::collections::BTreeMap;

/// One run as `client runs` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Its id.
    pub id: i64,
    /// sweep, load, …
    pub kind: String,
    /// RFC 3339 start.
    pub started_at: String,
    /// Seconds it took.
    pub seconds: f64,
    /// Revision it ran.
    pub revision: String,
    /// Host.
    pub host: String,
    /// PASS, FAIL or none.
    pub verdict: Option<String>,
    /// The command line.
    pub command: String,
}

/// Every run, oldest first.
pub fn runs(db: &ResultsDb) -> anyhow::Result<Vec<RunSummary>> {
    let mut q = db.conn().prepare(
        "SELECT id, kind, started_at, (ended_ms - started_ms) / 1000.0, revision, host, verdict, command FROM runs ORDER BY id",
    )?;
    let rows = q.query_map([], |r| {
        Ok(RunSummary {
            id: r.get(0)?,
            kind: r.get(1)?,
            started_at: r.get(2)?,
            seconds: r.get(3)?,
            revision: r.get(4)?,
            host: r.get(5)?,
            verdict: r.get(6)?,
            command: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One measure of two runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delta {
    /// What: a run measure, or `point/metric` for a sweep point.
    pub name: String,
    /// Run A's value (the mean over repeats for a point).
    pub a: Option<f64>,
    /// Run B's.
    pub b: Option<f64>,
    /// (b − a) / a.
    pub change: Option<f64>,
    /// The repeats' ranges do not overlap: the change is beyond their spread.
    pub beyond_spread: Option<bool>,
}

fn metrics(db: &ResultsDb, run: i64) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut q = db
        .conn()
        .prepare("SELECT name, value FROM run_metrics WHERE run_id = ?1")?;
    let rows = q.query_map(params![run], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Per sweep point (mode, optype, task ms, workers): the repeats' values of each figure.
fn points(db: &ResultsDb, run: i64) -> anyhow::Result<BTreeMap<String, Vec<f64>>> {
    let mut q = db.conn().prepare(
        "SELECT Mode, OpType, TaskMs, nWorkers, Throughput, LatencyP50Ms, LatencyP99Ms, Efficiency
         FROM points WHERE run_id = ?1",
    )?;
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut rows = q.query(params![run])?;
    while let Some(r) = rows.next()? {
        let (mode, op, ms, w): (String, String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let point = if ms > 0 {
            format!("{mode} {op}:{ms} ×{w}")
        } else {
            format!("{mode} {op} ×{w}")
        };
        for (i, figure) in ["throughput", "p50_ms", "p99_ms", "efficiency"].iter().enumerate() {
            if let Some(v) = r.get::<_, Option<f64>>(4 + i)? {
                out.entry(format!("{point} {figure}")).or_default().push(v);
            }
        }
    }
    Ok(out)
}

/// Run A against run B.
pub fn compare(db: &ResultsDb, a: i64, b: i64) -> anyhow::Result<Vec<Delta>> {
    for id in [a, b] {
        let exists: i64 = db
            .conn()
            .query_row("SELECT COUNT(*) FROM runs WHERE id = ?1", params![id], |r| r.get(0))?;
        if exists == 0 {
            anyhow::bail!(
                "no run {id} in {}; `client runs --db …` lists them",
                db.path().display()
            );
        }
    }
    let change = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) if x != 0.0 => Some((y - x) / x.abs()),
        _ => None,
    };
    let mut out = Vec::new();
    let (ma, mb) = (metrics(db, a)?, metrics(db, b)?);
    let names: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for name in names {
        let (x, y) = (ma.get(name).copied(), mb.get(name).copied());
        out.push(Delta {
            name: name.clone(),
            a: x,
            b: y,
            change: change(x, y),
            beyond_spread: None,
        });
    }
    let (pa, pb) = (points(db, a)?, points(db, b)?);
    for (name, xs) in &pa {
        let Some(ys) = pb.get(name) else { continue };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let range = |v: &[f64]| {
            (
                v.iter().copied().fold(f64::MAX, f64::min),
                v.iter().copied().fold(f64::MIN, f64::max),
            )
        };
        let ((alo, ahi), (blo, bhi)) = (range(xs), range(ys));
        let repeated = xs.len() > 1 && ys.len() > 1;
        out.push(Delta {
            name: name.clone(),
            a: Some(mean(xs)),
            b: Some(mean(ys)),
            change: change(Some(mean(xs)), Some(mean(ys))),
            beyond_spread: repeated.then_some(bhi < alo || blo > ahi),
        });
    }
    Ok(out)
}

/// A comparison as a table, each value in its measure's unit (sweep points in theirs).
pub fn render(a: i64, b: i64, deltas: &[Delta]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<44} {:>14} {:>14} {:>9}",
        "measure",
        format!("run {a}"),
        format!("run {b}"),
        "change"
    );
    for d in deltas {
        let show = |v: Option<f64>| {
            v.map_or_else(
                || "-".to_owned(),
                |v| {
                    if d.name.contains(' ') {
                        format!("{v:.3}")
                    } else {
                        crate::recording::verdict::shown(&d.name, v)
                    }
                },
            )
        };
        let flag = match d.beyond_spread {
            Some(true) => "  ← beyond the repeats' spread",
            _ => "",
        };
        let change = d
            .change
            .map_or_else(|| "-".to_owned(), |c| format!("{:+.1}%", c * 100.0));
        let _ = writeln!(
            out,
            "{:<44} {:>14} {:>14} {:>9}{flag}",
            d.name,
            show(d.a),
            show(d.b),
            change
        );
    }
    out
}
