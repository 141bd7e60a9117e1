//! The results database (`--db results.sqlite`): every benchmark run in one SQLite file —
//! the run and its verdict, its points, each request, replay minutes and process samples —
//! keyed by run id, so runs can be listed, compared and joined without hand-merging CSVs.
//!
//! A run is written in one transaction when it ends: a database never holds half a run.
//! The file is checked when the run starts (is it SQLite, writable, a schema this build
//! reads), so a bad `--db` costs nothing. WAL and a busy timeout let two runs share a file.
//!
//! - [`compare`] — `client runs` and `client compare`.
//!
//! `client report` renders a stored run as HTML: [`crate::presentation::html`].

pub mod compare;

use crate::recording::sampler::ProcessSample;
use crate::recording::tables::{PerfRow, RunMeta};
use crate::recording::verdict::Checked;
use anyhow::{bail, Context};
use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema this build writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;
/// What turns an older schema into this one, by the version it starts from.
const MIGRATIONS: [(i64, &str); 1] = [(
    1,
    "ALTER TABLE coldstarts ADD COLUMN variant TEXT; \
     ALTER TABLE coldstarts ADD COLUMN runtime_began_us INTEGER; \
     ALTER TABLE coldstarts ADD COLUMN runtime_up_us INTEGER;",
)];
const SCHEMA: &str = include_str!("schema.sql");
/// How long a writer waits for another run holding the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// One task or invocation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestRow {
    /// The sweep point it belongs to.
    pub point: Option<usize>,
    /// Its task id, once the dispatcher gave one.
    pub task_id: Option<u64>,
    /// What it ran.
    pub function: String,
    /// completed, failed, refused or unfinished.
    pub state: &'static str,
    /// Open loop: when it was due to leave (Unix µs).
    pub intended_us: Option<u64>,
    /// Submitted (Unix µs).
    pub submitted_us: Option<u64>,
    /// Sent to a worker.
    pub dispatched_us: Option<u64>,
    /// Outcome accepted.
    pub completed_us: Option<u64>,
    /// The latency the run reports for it.
    pub latency_us: Option<u64>,
    /// Worker-side queueing.
    pub wait_us: Option<u64>,
    /// Execution.
    pub run_us: Option<u64>,
    /// Who ran it.
    pub worker: Option<String>,
    /// Attempts.
    pub attempts: Option<u32>,
    /// Its error, if it failed or was refused.
    pub error: Option<String>,
}

impl RequestRow {
    /// A closed-loop task's record, latency from submission.
    pub fn from_task(point: Option<usize>, function: &str, t: &volley_proto::api::TaskInfo) -> Self {
        let some = |v: u64| (v > 0).then_some(v);
        Self {
            point,
            task_id: Some(t.task_id),
            function: function.to_owned(),
            state: if t.state == volley_proto::api::TaskState::Completed as i32 {
                "completed"
            } else if t.state == volley_proto::api::TaskState::Failed as i32 {
                "failed"
            } else {
                "unfinished"
            },
            intended_us: None,
            submitted_us: some(t.submitted_us),
            dispatched_us: some(t.dispatched_us),
            completed_us: some(t.completed_us),
            latency_us: (t.completed_us > 0).then(|| t.completed_us.saturating_sub(t.submitted_us)),
            wait_us: Some(t.wait_us),
            run_us: Some(t.run_us),
            worker: (!t.worker.is_empty()).then(|| t.worker.clone()),
            attempts: Some(t.attempts),
            error: (!t.error.is_empty()).then(|| t.error.clone()),
        }
    }
}

/// One replay minute.
#[derive(Debug, Clone, Default)]
pub struct MinuteRow {
    /// Minute of the trace.
    pub minute: i64,
    /// Invocations the trace asks for.
    pub target: u64,
    /// Sent.
    pub issued: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Sent late.
    pub late: u64,
}

/// Everything one run leaves in the database.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// sweep, load, replay, chaos or demo.
    pub kind: &'static str,
    /// Revision, host, cores, start time.
    pub meta: RunMeta,
    /// Its seed, if it has one.
    pub seed: Option<u64>,
    /// Start and end, Unix ms.
    pub started_ms: u64,
    /// End, Unix ms.
    pub ended_ms: u64,
    /// Named measures (seconds, fractions, counts).
    pub metrics: BTreeMap<String, f64>,
    /// `--assert` results; empty without it.
    pub assertions: Vec<Checked>,
    /// Points, as in performance_test.csv.
    pub points: Vec<PerfRow>,
    /// Per request.
    pub requests: Vec<RequestRow>,
    /// Replay minutes.
    pub minutes: Vec<MinuteRow>,
    /// Telemetry.
    pub samples: Vec<ProcessSample>,
    /// Cold starts explained, one per cold task (its submission is in `requests`).
    pub coldstarts: Vec<ColdStartRow>,
}

/// One cold task's start stages (Unix µs, the dispatcher's clock), as `TaskInfo.cold_start`
/// and the task's own times give them.
#[derive(Debug, Clone, Default)]
pub struct ColdStartRow {
    /// The task.
    pub task_id: u64,
    /// Its function.
    pub function: String,
    /// The scaler decided to start the instance.
    pub decision_us: u64,
    /// Its process was spawned.
    pub spawn_us: u64,
    /// The runtimes scenario's case (`python/fresh/empty`).
    pub case: Option<String>,
    /// Its `main` began.
    pub ready_us: u64,
    /// Its user function's runtime began (= `ready_us` for a built-in).
    pub runtime_began_us: u64,
    /// That runtime was up.
    pub runtime_up_us: u64,
    /// Its initialisation ended.
    pub init_us: u64,
    /// It registered.
    pub registered_us: u64,
    /// The task was sent to it.
    pub dispatched_us: u64,
    /// The task finished.
    pub finished_us: u64,
}

impl RunRecord {
    /// An empty record of a `kind` run that started now.
    pub fn new(kind: &'static str, meta: RunMeta, seed: Option<u64>) -> Self {
        Self {
            kind,
            meta,
            seed,
            started_ms: unix_ms(),
            ended_ms: 0,
            metrics: BTreeMap::new(),
            assertions: Vec::new(),
            points: Vec::new(),
            requests: Vec::new(),
            minutes: Vec::new(),
            samples: Vec::new(),
            coldstarts: Vec::new(),
        }
    }

    /// PASS, FAIL, or `None` without assertions.
    pub fn verdict(&self) -> Option<&'static str> {
        (!self.assertions.is_empty()).then(|| {
            if self.assertions.iter().all(|a| a.passed) {
                "PASS"
            } else {
                "FAIL"
            }
        })
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An open, checked results database.
#[derive(Debug)]
pub struct ResultsDb {
    conn: Connection,
    path: PathBuf,
}

impl ResultsDb {
    /// Opens (creating if absent) and checks `path`: an existing file must be SQLite,
    /// writable, and of a schema this build reads.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_with(path, true)
    }

    /// Opens an existing database for reading (`client runs`, `compare`, `report`).
    pub fn open_read_only(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            bail!("{} does not exist; write runs into it with --db", path.display());
        }
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, write: bool) -> anyhow::Result<Self> {
        let shown = path.display();
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.len() > 0 {
                let mut head = [0u8; 16];
                use std::io::Read;
                let read = std::fs::File::open(path)
                    .and_then(|mut f| f.read_exact(&mut head))
                    .is_ok();
                if !read || &head != b"SQLite format 3\0" {
                    bail!("{shown} is not a SQLite database; give --db a new file or a results database");
                }
            }
            if write && meta.permissions().readonly() {
                bail!("{shown} is read-only; a run could not be stored in it");
            }
        }
        let flags = if write {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let conn = Connection::open_with_flags(path, flags).with_context(|| format!("opening {shown}"))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .with_context(|| format!("{shown} is not a readable SQLite database"))?;
        if version > SCHEMA_VERSION {
            bail!("{shown} has results schema {version}, newer than this build reads ({SCHEMA_VERSION}); use a newer client or another file");
        }
        if write {
            // WAL lets a reader and another run's writer work beside this one.
            conn.pragma_update(None, "journal_mode", "WAL")
                .with_context(|| format!("{shown}: cannot switch to WAL (is the directory writable?)"))?;
            let migrations: String = MIGRATIONS
                .iter()
                .filter(|(from, _)| *from >= version && version > 0)
                .map(|(_, sql)| *sql)
                .collect();
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {migrations} {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .with_context(|| format!("creating the results schema in {shown}"))?;
        } else if version == 0 {
            bail!("{shown} holds no Volley results");
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Stores a finished run in one transaction; returns its id.
    pub fn record(&mut self, run: &RunRecord) -> anyhow::Result<i64> {
        let command: Vec<String> = std::env::args().collect();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO runs (kind, command, revision, host, cores, seed, started_ms, ended_ms, started_at, verdict, volley_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                run.kind,
                command.join(" "),
                run.meta.git_revision,
                run.meta.host,
                run.meta.cores as i64,
                run.seed.map(|s| s as i64),
                run.started_ms as i64,
                run.ended_ms as i64,
                run.meta.timestamp,
                run.verdict(),
                volley_proto::VERSION,
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut m = tx.prepare("INSERT INTO run_metrics (run_id, name, value) VALUES (?1, ?2, ?3)")?;
            for (name, value) in &run.metrics {
                m.execute(params![id, name, value])?;
            }
            let mut a =
                tx.prepare("INSERT INTO assertions (run_id, expr, measured, passed) VALUES (?1, ?2, ?3, ?4)")?;
            for c in &run.assertions {
                a.execute(params![id, c.expr, c.measured, c.passed])?;
            }
            insert_points(&tx, id, &run.points)?;
            let mut r = tx.prepare(
                "INSERT INTO requests (run_id, point, task_id, function, state, intended_us, submitted_us, dispatched_us,
                 completed_us, latency_us, wait_us, run_us, worker, attempts, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            let int = |v: Option<u64>| v.map(|v| v as i64);
            for q in &run.requests {
                r.execute(params![
                    id,
                    q.point.map(|p| p as i64),
                    int(q.task_id),
                    q.function,
                    q.state,
                    int(q.intended_us),
                    int(q.submitted_us),
                    int(q.dispatched_us),
                    int(q.completed_us),
                    int(q.latency_us),
                    int(q.wait_us),
                    int(q.run_us),
                    q.worker,
                    q.attempts,
                    q.error,
                ])?;
            }
            let mut cs = tx.prepare(
                "INSERT INTO coldstarts (run_id, task_id, function, decision_us, spawn_us, ready_us, init_us,
                 registered_us, dispatched_us, finished_us, variant, runtime_began_us, runtime_up_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for c in &run.coldstarts {
                cs.execute(params![
                    id,
                    c.task_id as i64,
                    c.function,
                    c.decision_us as i64,
                    c.spawn_us as i64,
                    c.ready_us as i64,
                    c.init_us as i64,
                    c.registered_us as i64,
                    c.dispatched_us as i64,
                    c.finished_us as i64,
                    c.case,
                    c.runtime_began_us as i64,
                    c.runtime_up_us as i64,
                ])?;
            }
            let mut mi = tx.prepare(
                "INSERT INTO minutes (run_id, minute, target, issued, completed, failed, late) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for m in &run.minutes {
                mi.execute(params![
                    id,
                    m.minute,
                    m.target as i64,
                    m.issued as i64,
                    m.completed as i64,
                    m.failed as i64,
                    m.late as i64
                ])?;
            }
            let mut s = tx.prepare(
                "INSERT INTO process_samples (run_id, unix_ms, role, pid, cpu_ms, rss_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for p in &run.samples {
                s.execute(params![
                    id,
                    p.unix_ms as i64,
                    p.role,
                    p.pid,
                    p.cpu_ms,
                    p.rss_bytes as i64
                ])?;
            }
        }
        tx.commit()
            .with_context(|| format!("storing the run in {}", self.path.display()))?;
        Ok(id)
    }
}

/// Points go in under their CSV column names, so the table reads like the file.
fn insert_points(tx: &rusqlite::Transaction, run: i64, points: &[PerfRow]) -> anyhow::Result<()> {
    for (i, p) in points.iter().enumerate() {
        let serde_json::Value::Object(fields) = serde_json::to_value(p)? else {
            bail!("a point did not serialise as a record");
        };
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        let marks: Vec<String> = (0..names.len()).map(|k| format!("?{}", k + 3)).collect();
        let sql = format!(
            "INSERT INTO points (run_id, point, {}) VALUES (?1, ?2, {})",
            names.join(", "),
            marks.join(", ")
        );
        let mut values: Vec<rusqlite::types::Value> = vec![run.into(), (i as i64).into()];
        for v in fields.values() {
            values.push(match v {
                serde_json::Value::Null => rusqlite::types::Value::Null,
                serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64().unwrap_or(i64::MAX).into(),
                serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN).into(),
                serde_json::Value::String(s) => s.clone().into(),
                other => other.to_string().into(),
            });
        }
        tx.execute(&sql, rusqlite::params_from_iter(values))
            .context("storing a point")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
