//! `client report`: one stored run as a self-contained HTML page — metadata, verdicts,
//! measures, the cost per process role, points and minutes, and inline SVG charts of
//! latency, throughput, CPU and memory over time. No script, no network: it opens
//! anywhere, and mails as one file.

use crate::recording::db::ResultsDb;
use rusqlite::params;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The sections every report has, in order (their element ids).
pub const SECTIONS: [&str; 7] = ["run", "verdict", "measures", "processes", "points", "minutes", "charts"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The newest run, or `run` if given.
pub fn pick_run(db: &ResultsDb, run: Option<i64>) -> anyhow::Result<i64> {
    let id: Option<i64> = match run {
        Some(id) => db
            .conn()
            .query_row("SELECT id FROM runs WHERE id = ?1", params![id], |r| r.get(0))
            .ok(),
        None => db
            .conn()
            .query_row("SELECT MAX(id) FROM runs", [], |r| r.get(0))
            .ok()
            .flatten(),
    };
    id.ok_or_else(|| match run {
        Some(id) => anyhow::anyhow!("no run {id} in {}; `client runs` lists them", db.path().display()),
        None => anyhow::anyhow!("{} holds no runs yet", db.path().display()),
    })
}

/// A `runs` row.
struct RunRow {
    kind: String,
    command: String,
    revision: String,
    host: String,
    cores: i64,
    seed: Option<i64>,
    started_at: String,
    started_ms: i64,
    ended_ms: i64,
    verdict: Option<String>,
    version: String,
}

/// Renders run `id` as one HTML document.
pub fn render(db: &ResultsDb, id: i64) -> anyhow::Result<String> {
    let c = db.conn();
    let mut page = String::new();
    let RunRow {
        kind,
        command,
        revision,
        host,
        cores,
        seed,
        started_at,
        started_ms,
        ended_ms,
        verdict,
        version,
    } = c.query_row(
        "SELECT kind, command, revision, host, cores, seed, started_at, started_ms, ended_ms, verdict, volley_version
         FROM runs WHERE id = ?1",
        params![id],
        |r| {
            Ok(RunRow {
                kind: r.get(0)?,
                command: r.get(1)?,
                revision: r.get(2)?,
                host: r.get(3)?,
                cores: r.get(4)?,
                seed: r.get(5)?,
                started_at: r.get(6)?,
                started_ms: r.get(7)?,
                ended_ms: r.get(8)?,
                verdict: r.get(9)?,
                version: r.get(10)?,
            })
        },
    )?;
    let verdict_text = verdict.clone().unwrap_or_else(|| "no assertions".into());
    write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Volley run {id}: {kind}</title>\n<style>{STYLE}</style></head><body>\n\
         <h1>Volley run {id}: {kind} <span class=\"verdict {}\">{}</span></h1>\n",
        esc(&verdict_text.to_lowercase().replace(' ', "-")),
        esc(&verdict_text)
    )?;

    page.push_str("<section id=\"run\"><h2>Run</h2><table>\n");
    let seconds = (ended_ms - started_ms) as f64 / 1e3;
    for (k, v) in [
        ("command", command),
        ("started", started_at),
        ("duration", format!("{seconds:.1} s")),
        ("revision", revision),
        ("Volley", version),
        ("host", format!("{host} ({cores} cores)")),
        ("seed", seed.map_or("-".into(), |s| s.to_string())),
    ] {
        writeln!(page, "<tr><th>{k}</th><td><code>{}</code></td></tr>", esc(&v))?;
    }
    page.push_str("</table></section>\n");

    page.push_str("<section id=\"verdict\"><h2>Verdict</h2>\n");
    let mut q = c.prepare("SELECT expr, measured, passed FROM assertions WHERE run_id = ?1")?;
    let checks: Vec<(String, Option<f64>, bool)> = q
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    if checks.is_empty() {
        page.push_str("<p>The run was not judged (no <code>--assert</code>).</p>\n");
    } else {
        page.push_str("<table><tr><th>assertion</th><th>measured</th><th>result</th></tr>\n");
        for (expr, measured, passed) in checks {
            let (class, word) = if passed { ("pass", "PASS") } else { ("fail", "FAIL") };
            writeln!(
                page,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
                esc(&expr),
                measured.map_or("not measured".into(), |m| format!("{m:.6}"))
            )?;
        }
        page.push_str("</table>\n");
    }
    page.push_str("</section>\n");

    page.push_str("<section id=\"measures\"><h2>Measures</h2><table>\n");
    let mut q = c.prepare("SELECT name, value FROM run_metrics WHERE run_id = ?1 ORDER BY name")?;
    let measures: Vec<(String, f64)> = q
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (name, value) in &measures {
        writeln!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(name),
            esc(&crate::recording::verdict::shown(name, *value))
        )?;
    }
    page.push_str("</table></section>\n");

    processes(&mut page, db, id)?;
    table(
        &mut page,
        db,
        "points",
        "Points",
        "SELECT Mode, OpType, TaskMs, nWorkers, SlotsPerWorker, Repeat, nTasks, Throughput, LatencyP50Ms, LatencyP99Ms, OverheadMs, Efficiency, FailedTasks FROM points WHERE run_id = ?1 ORDER BY point",
        id,
    )?;
    table(
        &mut page,
        db,
        "minutes",
        "Minutes",
        "SELECT minute, target, issued, completed, failed, late FROM minutes WHERE run_id = ?1 ORDER BY minute",
        id,
    )?;
    // About 120 points across the run, never finer than the 10 Hz telemetry.
    let bucket_ms = ((ended_ms - started_ms) / 120).max(100);
    charts(&mut page, db, id, started_ms, bucket_ms)?;
    page.push_str("</body></html>\n");
    Ok(page)
}

fn processes(page: &mut String, db: &ResultsDb, id: i64) -> anyhow::Result<()> {
    page.push_str("<section id=\"processes\"><h2>Processes</h2>\n");
    let mut q = db.conn().prepare(
        "SELECT role, COUNT(DISTINCT pid), COUNT(*), MAX(rss_bytes) FROM process_samples WHERE run_id = ?1 GROUP BY role ORDER BY role",
    )?;
    let rows: Vec<(String, i64, i64, i64)> = q
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        page.push_str("<p>No process samples.</p></section>\n");
        return Ok(());
    }
    let cpu: BTreeMap<String, f64> = {
        let mut q = db.conn().prepare(
            "SELECT role, SUM(hi - lo) FROM (SELECT role, pid, MAX(cpu_ms) AS hi, MIN(cpu_ms) AS lo FROM process_samples WHERE run_id = ?1 GROUP BY role, pid) GROUP BY role",
        )?;
        let rows = q
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows
    };
    page.push_str("<table><tr><th>role</th><th>processes</th><th>samples</th><th>CPU while sampled (s)</th><th>peak RSS (MiB)</th></tr>\n");
    for (role, procs, samples, peak) in rows {
        writeln!(
            page,
            "<tr><td>{}</td><td>{procs}</td><td>{samples}</td><td>{:.3}</td><td>{:.1}</td></tr>",
            esc(&role),
            cpu.get(&role).copied().unwrap_or(0.0) / 1e3,
            peak as f64 / (1024.0 * 1024.0)
        )?;
    }
    page.push_str("</table></section>\n");
    Ok(())
}

/// A table of whatever `sql` returns, or a line saying there is none.
fn table(page: &mut String, db: &ResultsDb, id_attr: &str, title: &str, sql: &str, id: i64) -> anyhow::Result<()> {
    writeln!(page, "<section id=\"{id_attr}\"><h2>{title}</h2>")?;
    let mut q = db.conn().prepare(sql)?;
    let names: Vec<String> = q.column_names().map(|n| n.to_string()).collect();
    let mut rows = q.query(params![id])?;
    let mut body = String::new();
    while let Some(r) = rows.next()? {
        body.push_str("<tr>");
        for i in 0..names.len() {
            let cell = match r.get_ref(i)? {
                rusqlite::types::ValueRef::Null => "-".to_owned(),
                rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                rusqlite::types::ValueRef::Real(v) => format!("{v:.3}"),
                rusqlite::types::ValueRef::Text(t) => esc(&String::from_utf8_lossy(t)),
                rusqlite::types::ValueRef::Blob(_) => "(blob)".to_owned(),
            };
            write!(body, "<td>{cell}</td>")?;
        }
        body.push_str("</tr>\n");
    }
    if body.is_empty() {
        writeln!(page, "<p>None in this run.</p></section>")?;
    } else {
        page.push_str("<table><tr>");
        for n in &names {
            write!(page, "<th>{}</th>", esc(n))?;
        }
        writeln!(page, "</tr>\n{body}</table></section>")?;
    }
    Ok(())
}

fn charts(page: &mut String, db: &ResultsDb, id: i64, started_ms: i64, bucket_ms: i64) -> anyhow::Result<()> {
    page.push_str("<section id=\"charts\"><h2>Charts</h2>\n");
    let c = db.conn();
    let t0_us = started_ms * 1000;
    let x = |bucket: i64| (bucket * bucket_ms) as f64 / 1e3;
    // Per bucket of the run: completions, and the p50/p99 of their latency.
    let mut q = c.prepare(
        "SELECT (completed_us - ?2) / (?3 * 1000) AS s, latency_us FROM requests
         WHERE run_id = ?1 AND completed_us IS NOT NULL AND latency_us IS NOT NULL ORDER BY s, latency_us",
    )?;
    let mut per_second: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for row in q.query_map(params![id, t0_us, bucket_ms], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (s, lat) = row?;
        per_second.entry(s).or_default().push(lat as f64 / 1e3);
    }
    if per_second.is_empty() {
        page.push_str("<p>No request records: no latency or throughput charts.</p>\n");
    } else {
        let per_s = 1000.0 / bucket_ms as f64;
        let rate: Vec<(f64, f64)> = per_second
            .iter()
            .map(|(s, v)| (x(*s), v.len() as f64 * per_s))
            .collect();
        let pct = |p: f64| -> Vec<(f64, f64)> {
            per_second
                .iter()
                .filter_map(|(s, v)| crate::stats::percentile(v, p).map(|l| (x(*s), l)))
                .collect()
        };
        figure(
            page,
            &format!("Completions per second, in {bucket_ms} ms buckets"),
            crate::presentation::plot::lines_svg(
                "Throughput",
                "seconds into the run",
                "tasks completed per second",
                vec![("completed".into(), rate)],
            )?,
        );
        figure(
            page,
            &format!("Latency of the tasks completed in each {bucket_ms} ms"),
            crate::presentation::plot::lines_svg(
                "Latency",
                "seconds into the run",
                "ms",
                vec![("p50".into(), pct(0.5)), ("p99".into(), pct(0.99))],
            )?,
        );
    }
    let (cpu, rss) = telemetry_series(db, id, started_ms, bucket_ms)?;
    if cpu.is_empty() {
        page.push_str("<p>No process samples: no CPU or memory charts.</p>\n");
    } else {
        figure(
            page,
            "CPU per role, % of one core",
            crate::presentation::plot::lines_svg("CPU", "seconds into the run", "% of one core", cpu)?,
        );
        figure(
            page,
            "Resident memory per role (all its processes)",
            crate::presentation::plot::lines_svg("Memory", "seconds into the run", "MiB", rss)?,
        );
    }
    page.push_str("</section>\n");
    Ok(())
}

fn figure(page: &mut String, caption: &str, svg: String) {
    // The SVG's own XML declaration is not allowed inside HTML.
    let body = svg.find("<svg").map_or(svg.as_str(), |i| &svg[i..]);
    let _ = writeln!(page, "<figure>{body}<figcaption>{}</figcaption></figure>", esc(caption));
}

/// Named lines of (seconds into the run, value).
pub type Series = Vec<(String, Vec<(f64, f64)>)>;

/// The run's start and end, Unix ms.
pub fn run_span(db: &ResultsDb, id: i64) -> anyhow::Result<(i64, i64)> {
    Ok(db.conn().query_row(
        "SELECT started_ms, ended_ms FROM runs WHERE id = ?1",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// CPU (% of a core, from each process's consecutive readings) and RSS (MiB, summed over
/// a role's processes) per role, in buckets of `bucket_ms`.
pub fn telemetry_series(db: &ResultsDb, id: i64, started_ms: i64, bucket_ms: i64) -> anyhow::Result<(Series, Series)> {
    let mut q = db.conn().prepare(
        "SELECT role, pid, unix_ms, cpu_ms, rss_bytes FROM process_samples WHERE run_id = ?1 ORDER BY pid, unix_ms",
    )?;
    let mut cpu: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut rss: BTreeMap<String, BTreeMap<i64, BTreeMap<i64, f64>>> = BTreeMap::new();
    let mut last: Option<(i64, i64, f64)> = None;
    let mut rows = q.query(params![id])?;
    while let Some(r) = rows.next()? {
        let (role, pid, at, cpu_ms, bytes): (String, i64, i64, f64, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        let second = (at - started_ms).max(0) / bucket_ms;
        if let Some((p, t, c)) = last {
            if p == pid && at > t {
                // A thread's exit can take back a few ms of schedstat time: never negative.
                *cpu.entry(role.clone()).or_default().entry(second).or_default() += (cpu_ms - c).max(0.0);
            }
        }
        last = Some((pid, at, cpu_ms));
        // The last reading of each process in each second.
        rss.entry(role)
            .or_default()
            .entry(second)
            .or_default()
            .insert(pid, bytes as f64 / (1024.0 * 1024.0));
    }
    let cpu = cpu
        .into_iter()
        .map(|(role, s)| {
            let points = s
                .into_iter()
                .map(|(k, ms)| ((k * bucket_ms) as f64 / 1e3, ms / bucket_ms as f64 * 100.0))
                .collect();
            (role, points)
        })
        .collect();
    let rss = rss
        .into_iter()
        .map(|(role, s)| {
            let points = s
                .into_iter()
                .map(|(k, by_pid)| ((k * bucket_ms) as f64 / 1e3, by_pid.values().sum()))
                .collect();
            (role, points)
        })
        .collect();
    Ok((cpu, rss))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.9em}\
th{background:#f4f4f4}code{font-size:.9em;word-break:break-all}.pass{color:#176a2c;font-weight:bold}\
.fail{color:#b00020;font-weight:bold}.verdict{font-size:.7em;padding:.1em .5em;border-radius:.3em;background:#eee}\
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}svg{max-width:100%;height:auto}";
