//! Cold starts of user functions, per language and per way of starting: a fresh
//! interpreter in a new worker (forked from the worker template, or exec'd) or in a
//! worker started ahead (`--prewarm-workers`), a
//! prewarmed one (a stem cell, `dispatcher --prewarm`), or one forked from the fork
//! server (Python, `dispatcher --fork-server`); each with an empty handler and
//! one with a heavy import. Every trial is a scale from zero on an elastic pool of one
//! instance of one slot, and its cold task's record splits the wait into the language's
//! start, the user's init and the platform's share.

use super::languages::{Handler, Subject};
use super::{trials_of, Breakdown, Pool, Trial};
use std::path::Path;
use volley_proto::api;
use volley_proto::function::Language;
use volley_proto::Mode;

/// How an instance's runtime comes to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartWay {
    /// A new worker, forked from the dispatcher's worker template, starts a new
    /// interpreter (the dispatcher's default).
    Fresh,
    /// A new worker exec'd from its binary (`dispatcher --instance-start exec`) starts a
    /// new interpreter.
    FreshExec,
    /// A worker started ahead of any function (`dispatcher --prewarm-workers 1`) starts a
    /// fresh interpreter: the language's whole start, none of the worker's.
    ReadyWorker,
    /// A stem cell, its runtime up, is given the code (`dispatcher --prewarm LANG=1`).
    Prewarm,
    /// A new worker forks the runtime from the host's fork server (Python only).
    Fork,
}

impl StartWay {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            StartWay::Fresh => "fresh",
            StartWay::FreshExec => "fresh-exec",
            StartWay::Prewarm => "prewarm",
            StartWay::Fork => "fork",
            StartWay::ReadyWorker => "ready-worker",
        }
    }

    /// Whether `language` can start this way (native's runtime is its own executable:
    /// nothing to prewarm or fork; only Python has a fork server).
    pub fn applies_to(self, language: Language) -> bool {
        match self {
            StartWay::Fresh | StartWay::FreshExec | StartWay::ReadyWorker => true,
            StartWay::Prewarm => language != Language::Native,
            StartWay::Fork => language == Language::Python,
        }
    }
}

/// One configuration of the study.
#[derive(Debug, Clone)]
pub struct Case {
    /// The language and its interpreter.
    pub subject: Subject,
    /// How the runtime starts.
    pub start: StartWay,
    /// What the handler loads.
    pub handler: Handler,
}

impl Case {
    /// `python/fresh/empty`.
    pub fn label(&self) -> String {
        format!(
            "{}/{}/{}",
            self.subject.language,
            self.start.as_str(),
            self.handler.as_str()
        )
    }
}

/// A trial of a case.
#[derive(Debug, Clone)]
pub struct RuntimeTrial {
    /// The case's label.
    pub case: String,
    /// Its trial.
    pub trial: Trial,
}

/// Runs `trials` scale-from-zero trials of `case` on a fresh pool (one more first,
/// unmeasured: it warms the page cache and the JVM's class data, and gives a stem cell
/// time to come up). Every cold task must be cold and every warm one warm.
pub async fn run_case(
    case: &Case,
    mode: Mode,
    keepalive: std::time::Duration,
    trials: usize,
    scratch: &Path,
    progress: impl FnMut(&Trial),
) -> anyhow::Result<(Vec<RuntimeTrial>, Vec<api::TaskInfo>)> {
    let language = case.subject.language;
    let mut extra_args = Vec::new();
    match case.start {
        StartWay::Fresh => {}
        StartWay::FreshExec => extra_args.extend(["--instance-start".to_owned(), "exec".to_owned()]),
        StartWay::Prewarm => extra_args.extend(["--prewarm".to_owned(), format!("{}=1", language.name())]),
        StartWay::Fork => extra_args.push("--fork-server".to_owned()),
        StartWay::ReadyWorker => extra_args.extend(["--prewarm-workers".to_owned(), "1".to_owned()]),
    }
    let pool = Pool {
        mode,
        policy: format!("fixed:keepalive={}", humantime::format_duration(keepalive)),
        max_instances: 1,
        slots: 1,
        init_ms: 0,
        extra_args,
        env: case.subject.env().map(|(k, v)| (k.to_owned(), v)).into_iter().collect(),
    };
    let (code, handler, format) = case.subject.code(case.handler, scratch)?;
    let cluster = pool
        .start(&format!("coldstart-{}", case.label().replace('/', "-")))
        .await?;
    let result = async {
        let mut client = cluster.connect().await?;
        let runtime = api::Runtime {
            language: language.name().into(),
            handler,
            code_format: format.into(),
            timeout_ms: 60_000,
            ..Default::default()
        };
        let function = volley_client::commands::deploy::register_code(&mut client, "coldstart", runtime, code)
            .await
            .map_err(|s| anyhow::anyhow!("deploying the {} handler: {}", case.label(), s.message()))?
            .function_id;
        trials_of(&client, function, "", 1, None, |_| {}).await?;
        // One first, unmeasured, as the unmeasured trial: the page cache warm.
        case.subject.bare_start_us(scratch)?;
        let bare = || case.subject.bare_start_us(scratch);
        trials_of(&client, function, "", trials, Some(&bare), progress).await
    }
    .await;
    cluster.stop().await?;
    let (measured, tasks) = result?;
    let label = case.label();
    let rows = measured
        .into_iter()
        .map(|trial| RuntimeTrial {
            case: label.clone(),
            trial,
        })
        .collect();
    Ok((rows, tasks))
}

/// The medians of a case's trials, ms.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CaseSummary {
    /// `python/fresh/empty`.
    pub case: String,
    /// Trials.
    pub trials: usize,
    /// The bare interpreter's start, spawn to exit.
    pub bare_ms: f64,
    /// The runtime's spawn to READY: the language's start and the user's init.
    pub ready_ms: f64,
    /// ready / bare (the target: ≤ 1.2 for an empty handler, fresh).
    pub ready_ratio: f64,
    /// The interpreter's own start (spawn to up).
    pub runtime_ms: f64,
    /// The user's init (up to READY).
    pub init_ms: f64,
    /// Everything else before the task ran: decision, spawn, the worker's own start,
    /// registration, dispatch.
    pub platform_ms: f64,
    /// 99th percentile of the platform's share.
    pub platform_p99_ms: f64,
    /// The cold task's latency.
    pub cold_ms: f64,
    /// The warm task's.
    pub warm_ms: f64,
}

/// Medians over `trials` of one case, with the bare starts timed beside them.
pub fn summarise(case: &str, trials: &[&Trial]) -> CaseSummary {
    let pick = |p: f64, f: &dyn Fn(&Trial) -> u64| -> f64 {
        let mut v: Vec<f64> = trials.iter().map(|t| f(t) as f64 / 1e3).collect();
        v.sort_by(f64::total_cmp);
        crate::stats::percentile(&v, p).unwrap_or(0.0)
    };
    let mut bare: Vec<f64> = trials
        .iter()
        .filter_map(|t| t.reference_us)
        .map(|us| us as f64 / 1e3)
        .collect();
    bare.sort_by(f64::total_cmp);
    let bare_ms = crate::stats::percentile(&bare, 0.5).unwrap_or(0.0);
    let ready_ms = pick(0.5, &|t| ready_us(&t.stages));
    CaseSummary {
        case: case.to_owned(),
        trials: trials.len(),
        bare_ms,
        ready_ms,
        ready_ratio: if bare_ms > 0.0 { ready_ms / bare_ms } else { 0.0 },
        runtime_ms: pick(0.5, &|t| t.stages.runtime_us),
        init_ms: pick(0.5, &|t| t.stages.init_us),
        platform_ms: pick(0.5, &|t| t.stages.platform_us()),
        platform_p99_ms: pick(0.99, &|t| t.stages.platform_us()),
        cold_ms: pick(0.5, &|t| t.cold_us),
        warm_ms: pick(0.5, &|t| t.warm_us),
    }
}

/// The runtime's spawn to READY.
pub fn ready_us(b: &Breakdown) -> u64 {
    b.runtime_us + b.init_us
}
