//! A provisioned instance's start: its function's code loaded into every slot's runtime
//! before it registers, and the start it reports with its first registration so the
//! dispatcher can explain its cold starts.

use crate::executor::SlotPool;
use crate::session::WorkerError;
use std::sync::Arc;
use tracing::{info, warn};
use volley_proto::wire::StartReport;

/// A provisioned process's start, as the worker saw it.
#[derive(Debug, Clone, Copy)]
pub struct ProcessStart {
    /// The provisioner's decision and spawn times (µs since the epoch, the dispatcher's
    /// clock), as given with `--provisioned`.
    pub decided_us: u64,
    /// See `decided_us`.
    pub spawned_us: u64,
    /// When `main` began.
    pub main: std::time::Instant,
    /// When runtime initialisation (`--init-ms`, or every slot's runtime READY) ended.
    pub init_done: std::time::Instant,
    /// For an instance of a user function, when the runtime that was ready last began
    /// and when it was up (ready for code).
    pub runtime: Option<(std::time::Instant, std::time::Instant)>,
    /// The code it was given and holds.
    pub code: Option<volley_proto::function::CodeDigest>,
}

impl ProcessStart {
    pub(crate) fn report(&self) -> StartReport {
        StartReport {
            decided_us: self.decided_us,
            spawned_us: self.spawned_us,
            init_done_after_us: self.init_done.duration_since(self.main).as_micros() as u64,
            code: self.code,
            runtime: self.runtime.map(|(began, up)| volley_proto::wire::RuntimeStart {
                began_after_us: began.saturating_duration_since(self.main).as_micros() as u64,
                up_after_us: up.saturating_duration_since(self.main).as_micros() as u64,
            }),
            hello_after_us: self.main.elapsed().as_micros() as u64,
        }
    }
}

/// Loads the instance's code into every slot's runtime before it registers, so its first
/// task finds a runtime READY; a runtime that fails to start is logged, and its slot
/// starts one with the first task instead (which then fails `init_failed` if it must).
/// Returns when the runtime ready last began and was up, for the cold-start report.
pub(crate) async fn load_code(
    pool: &SlotPool,
    code: Arc<volley_proto::function::UserCode>,
    path: &std::path::Path,
) -> Result<Option<(std::time::Instant, std::time::Instant)>, WorkerError> {
    pool.runtimes()
        .cache
        .adopt(code.digest, path)
        .map_err(|e| WorkerError::Runtimes(std::io::Error::other(e.to_string())))?;
    // Nothing else of this worker runs before it registers.
    let started = pool.prewarm(code.clone()).await;
    let mut last: Option<crate::runtime::instance::Started> = None;
    for s in started {
        match s {
            Ok(s) => {
                info!(function = %code.function, runtime = %s.runtime, version = %s.version, origin = s.origin.as_str(), ready_ms = s.ready_after.as_secs_f64() * 1e3, up_ms = s.up_after().as_secs_f64() * 1e3, code_load_ms = s.init_us as f64 / 1e3, "runtime ready");
                if last
                    .as_ref()
                    .is_none_or(|l| l.began + l.ready_after < s.began + s.ready_after)
                {
                    last = Some(s);
                }
            }
            Err(e) => warn!(function = %code.function, "a runtime could not start ahead of tasks: {e}"),
        }
    }
    // A worker that became one function's instance keeps no runtime for others.
    pool.runtimes().stop_prewarming();
    Ok(last.map(|s| (s.began, s.began + s.up_after())))
}
