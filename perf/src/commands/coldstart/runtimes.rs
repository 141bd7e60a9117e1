//! The runtimes and warm scenarios of `client coldstart`: per language, the bare
//! interpreter's start and cold starts of an empty and a heavy handler, fresh, prewarmed
//! and forked (`coldstart-runtimes.csv`, the results database, a table, a chart); and
//! warm latency at set rates, one slot per instance or many (`coldstart-warm.csv`).

use super::records::record_tasks;
use super::ColdstartArgs;
use crate::recording::observe::Observed;
use crate::studies::coldstart::languages::{Handler, Subject, HEAVY};
use crate::studies::coldstart::runtimes::{self, ready_us, Case, CaseSummary, RuntimeTrial};
use crate::studies::coldstart::Trial;
use std::collections::BTreeMap;
use std::path::PathBuf;
use volley_proto::function::Language;

/// `coldstart-runtimes.csv`: one trial, every stage in µs.
#[derive(serde::Serialize)]
struct Row {
    runtime: String,
    interpreter: String,
    version: String,
    start: &'static str,
    handler: &'static str,
    trial: usize,
    task_id: u64,
    cold_us: u64,
    warm_us: u64,
    queued_us: u64,
    decide_us: u64,
    spawn_us: u64,
    worker_us: u64,
    runtime_us: u64,
    init_us: u64,
    register_us: u64,
    dispatch_us: u64,
    finish_us: u64,
    ready_us: u64,
    platform_us: u64,
    bare_us: u64,
    bare_p50_us: u64,
}

impl Row {
    fn new(case: &Case, t: &Trial, bare_p50_us: u64) -> Self {
        let s = &t.stages;
        Self {
            runtime: case.subject.language.name().to_owned(),
            interpreter: case.subject.interpreter.display().to_string(),
            version: case.subject.version.clone(),
            start: case.start.as_str(),
            handler: case.handler.as_str(),
            trial: t.trial,
            task_id: t.task_id,
            cold_us: t.cold_us,
            warm_us: t.warm_us,
            queued_us: s.queued_us,
            decide_us: s.decide_us,
            spawn_us: s.spawn_us,
            worker_us: s.worker_us,
            runtime_us: s.runtime_us,
            init_us: s.init_us,
            register_us: s.register_us,
            dispatch_us: s.dispatch_us,
            finish_us: s.finish_us,
            ready_us: ready_us(s),
            platform_us: s.platform_us(),
            bare_us: t.reference_us.unwrap_or(0),
            bare_p50_us,
        }
    }
}

/// Runs the scenario; returns the tasks it ran.
pub(super) async fn run(
    a: &ColdstartArgs,
    observed: &mut Observed,
    measures: &mut BTreeMap<String, f64>,
    written: &mut Vec<PathBuf>,
    as_json: bool,
) -> anyhow::Result<u64> {
    let scratch = volley_testbed::fixtures::temp_dir("coldstart-runtimes");
    let result = cases(a, observed, measures, &scratch, as_json).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let (rows, summaries, tasks) = result?;
    crate::recording::tables::write_rows(&a.runtimes_out, &rows)?;
    written.push(a.runtimes_out.clone());
    if !as_json {
        print_table(&summaries);
    }
    if let Some(dir) = &a.plot {
        plot(dir, &summaries, &rows)?;
    }
    Ok(tasks)
}

async fn cases(
    a: &ColdstartArgs,
    observed: &mut Observed,
    measures: &mut BTreeMap<String, f64>,
    scratch: &std::path::Path,
    as_json: bool,
) -> anyhow::Result<(Vec<Row>, Vec<CaseSummary>, u64)> {
    let mut rows = Vec::new();
    let mut summaries = Vec::new();
    let mut tasks = 0;
    let mut starts = a.starts.clone();
    starts.sort();
    starts.dedup();
    let mut handlers = a.handlers.clone();
    handlers.sort();
    handlers.dedup();
    for &language in &a.runtimes {
        let subject = Subject::resolve(language)?;
        eprintln!(
            "{language}: {} ({}); {} trials per case, each beside a bare start",
            subject.interpreter.display(),
            subject.version,
            a.trials
        );
        for &start in starts.iter().filter(|s| s.applies_to(language)) {
            for &handler in &handlers {
                if handler == Handler::Heavy && language == Language::Native {
                    continue;
                }
                let case = Case {
                    subject: subject.clone(),
                    start,
                    handler,
                };
                let label = case.label();
                let (trials, infos) = runtimes::run_case(&case, a.mode, a.keepalive, a.trials as usize, scratch, |t| {
                    if !as_json {
                        let s = &t.stages;
                        println!(
                            "{label} trial {:>3}: cold {:>7.2} ms = runtime {:.2} + init {:.2} + platform {:.2} + run {:.2} ms",
                            t.trial,
                            t.cold_us as f64 / 1e3,
                            s.runtime_us as f64 / 1e3,
                            s.init_us as f64 / 1e3,
                            s.platform_us() as f64 / 1e3,
                            s.finish_us as f64 / 1e3
                        );
                    }
                })
                .await?;
                tasks += infos.len() as u64;
                record_tasks(observed, &infos, Some(&label));
                let of_case: Vec<&Trial> = trials.iter().map(|t: &RuntimeTrial| &t.trial).collect();
                let summary = runtimes::summarise(&label, &of_case);
                let bare_p50 = (summary.bare_ms * 1e3).round() as u64;
                if as_json {
                    println!("{}", serde_json::to_string(&summary)?);
                }
                rows.extend(of_case.iter().map(|t| Row::new(&case, t, bare_p50)));
                summaries.push(summary);
            }
        }
    }
    let largest = |f: &dyn Fn(&CaseSummary) -> Option<f64>| summaries.iter().filter_map(f).fold(0.0_f64, f64::max);
    measures.insert("platform_p50".into(), largest(&|s| Some(s.platform_ms / 1e3)));
    measures.insert(
        "ready_ratio".into(),
        largest(&|s| s.case.ends_with("/fresh/empty").then_some(s.ready_ratio)),
    );
    Ok((rows, summaries, tasks))
}

fn print_table(summaries: &[CaseSummary]) {
    println!("\ncold starts per runtime, medians (ms); ready = the runtime's spawn to READY = runtime + init");
    println!("| case | trials | bare | ready | ready ÷ bare | runtime | init | platform (p99) | cold | warm |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in summaries {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} ({:.2}) | {:.2} | {:.2} |",
            s.case,
            s.trials,
            s.bare_ms,
            s.ready_ms,
            s.ready_ratio,
            s.runtime_ms,
            s.init_ms,
            s.platform_ms,
            s.platform_p99_ms,
            s.cold_ms,
            s.warm_ms
        );
    }
    for (language, imports) in HEAVY {
        println!("heavy {language}: {imports}");
    }
}

/// A bar per case, stacked: the platform before the runtime, the language's start,
/// the user's init, the platform after, the run (medians, ms).
fn plot(dir: &std::path::Path, summaries: &[CaseSummary], rows: &[Row]) -> anyhow::Result<()> {
    let median = |case: &str, f: &dyn Fn(&Row) -> u64| -> f64 {
        let mut v: Vec<f64> = rows
            .iter()
            .filter(|r| format!("{}/{}/{}", r.runtime, r.start, r.handler) == case)
            .map(|r| f(r) as f64 / 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        crate::stats::percentile(&v, 0.5).unwrap_or(0.0)
    };
    let bars = summaries
        .iter()
        .map(|s| {
            let c = s.case.as_str();
            (
                c.to_owned(),
                vec![
                    median(c, &|r| r.queued_us + r.decide_us + r.spawn_us + r.worker_us),
                    median(c, &|r| r.runtime_us),
                    median(c, &|r| r.init_us),
                    median(c, &|r| r.register_us + r.dispatch_us),
                    median(c, &|r| r.finish_us),
                ],
            )
        })
        .collect();
    let stages = [
        "platform: decision, spawn, worker start",
        "language: interpreter start",
        "user: code loading",
        "platform: register, dispatch",
        "run and reply",
    ];
    let mut written = Vec::new();
    crate::presentation::plot::plot_stacked(
        dir,
        "coldstart-runtimes",
        ("A user function's cold start, stage by stage (medians)", "ms"),
        stages.iter().map(|s| (*s).to_owned()).collect(),
        bars,
        &mut written,
    )
}

/// Runs the warm scenario on `sides` (slots per instance, policy); returns the tasks
/// it completed and those it lost.
pub(super) async fn run_warm(
    a: &ColdstartArgs,
    sides: &[(u32, String)],
    written: &mut Vec<PathBuf>,
    as_json: bool,
) -> anyhow::Result<(u64, u64)> {
    use crate::studies::coldstart::warm::{self, WarmSpec};
    let scratch = volley_testbed::fixtures::temp_dir("coldstart-warm");
    let mut rows = Vec::new();
    for &language in &a.runtimes {
        let subject = Subject::resolve(language)?;
        for (slots, policy) in sides {
            let spec = WarmSpec {
                mode: a.mode,
                policy: policy.clone(),
                max_instances: a.max_instances,
                slots: *slots,
                rates: a.warm_rates.clone(),
                window: a.warm_for,
                warmup: (a.warm_for / 4).max(std::time::Duration::from_secs(1)),
            };
            eprintln!(
                "warm {language}: {slots} slot(s) per instance, {policy}, rates {:?}/s",
                a.warm_rates
            );
            let measured = warm::measure(&subject, &spec, &scratch).await;
            for r in measured.as_deref().unwrap_or_default() {
                if as_json {
                    println!("{}", serde_json::to_string(r)?);
                }
            }
            rows.extend(measured?);
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    crate::recording::tables::write_rows(&a.warm_out, &rows)?;
    written.push(a.warm_out.clone());
    if !as_json {
        println!("\nwarm latency per runtime, open loop (Poisson), from the intended send");
        println!(
            "| runtime | slots per instance | rate /s | sent | lost | cold | p50 ms | p99 ms | instances started |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &rows {
            println!(
                "| {} {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
                r.runtime, r.version, r.slots, r.rate, r.sent, r.lost, r.cold, r.p50_ms, r.p99_ms, r.instance_starts
            );
        }
    }
    if let Some(dir) = &a.plot {
        let mut series = Vec::new();
        for (slots, _) in sides {
            for &language in &a.runtimes {
                for (what, pick) in [
                    ("p50", (|r: &warm::WarmRow| r.p50_ms) as fn(&warm::WarmRow) -> f64),
                    ("p99", |r| r.p99_ms),
                ] {
                    let points: Vec<(f64, f64)> = rows
                        .iter()
                        .filter(|r| r.slots == *slots && r.runtime == language.name())
                        .map(|r| (r.rate, pick(r)))
                        .collect();
                    series.push((format!("{language} {slots} slot(s) {what}"), points));
                }
            }
        }
        let mut charts = Vec::new();
        crate::presentation::plot::plot_lines(
            dir,
            "coldstart-warm",
            (
                "Warm latency per runtime against offered rate",
                "tasks/s",
                "ms from the intended send",
            ),
            series,
            &mut charts,
        )?;
    }
    let completed = rows.iter().map(|r| r.completed).sum();
    let lost = rows.iter().map(|r| r.lost).sum();
    Ok((completed, lost))
}
