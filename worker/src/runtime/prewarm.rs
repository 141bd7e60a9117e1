//! Runtimes started before their code is known (OpenWhisk's "stem cells"): the
//! interpreter is up and waiting for INIT, so a cold start is only the code's loading.
//!
//! `worker --prewarm python=2,node=1` keeps that many per language on the shelf; a
//! slot starting a function of that language takes one and the shelf is refilled after
//! the task. Node and Java take their heap limit at start, so theirs serve functions
//! with the default memory limit only; Python's serve any. A native function's runtime
//! is its own executable, so it has none.

use super::instance::{Instance, Origin};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use std::sync::atomic::{AtomicBool, Ordering};
use volley_proto::function::Language;

/// The memory limit prewarmed Node and Java runtimes start with: the functions' default.
pub const PREWARM_MEMORY_MB: u64 = volley_proto::function::DEFAULT_MEMORY_MB;

/// What `--prewarm` asks for: how many runtimes per language.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrewarmSpec(pub Vec<(Language, u32)>);

/// Parses `--prewarm`: `LANGUAGE=N` pairs, comma-separated.
pub fn parse(s: &str) -> Result<PrewarmSpec, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (language, n) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{pair}': expected LANGUAGE=N, e.g. python=2"))?;
            let language: Language = language.trim().parse().map_err(|e| format!("'{pair}': {e}"))?;
            if language == Language::Native {
                return Err("native functions cannot be prewarmed: their runtime is their own executable".into());
            }
            let n = n
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 64)
                .ok_or_else(|| format!("'{pair}': N must be a number from 0 to 64"))?;
            Ok((language, n))
        })
        .collect::<Result<_, _>>()
        .map(PrewarmSpec)
}

/// Runtime starts by how they went: the worker's metrics page shows these counters
/// (clones share their values).
#[derive(Debug, Default, Clone)]
pub struct StartCounts {
    /// Fresh processes.
    pub spawned: Counter,
    /// Forked from the fork server.
    pub forked: Counter,
    /// Taken from the shelf.
    pub prewarmed: Counter,
    /// Starts that failed for the platform's reasons (a fork refused, a prewarmed
    /// runtime found dead, a prewarm that could not start), each replaced.
    pub failed: Counter,
}

impl StartCounts {
    pub(super) fn started(&self, origin: Origin) {
        let counter = match origin {
            Origin::Spawned => &self.spawned,
            Origin::Forked => &self.forked,
            Origin::Prewarmed => &self.prewarmed,
        };
        counter.inc();
    }

    pub(super) fn failed(&self) {
        self.failed.inc();
    }
}

/// The prewarmed runtimes, and how many of each language to keep.
pub(super) struct Shelf {
    wanted: Mutex<Vec<(Language, u32)>>,
    ready: Mutex<Vec<(Language, Instance)>>,
    /// Set when a runtime was taken: the next refill has work.
    short: AtomicBool,
}

impl Shelf {
    pub(super) fn new(wanted: &[(Language, u32)]) -> Self {
        Self {
            wanted: Mutex::new(wanted.to_vec()),
            ready: Mutex::new(Vec::new()),
            short: AtomicBool::new(wanted.iter().any(|(_, n)| *n > 0)),
        }
    }

    /// A live prewarmed runtime for a function of `language` with `memory_mb`; dead ones
    /// found on the way are counted as failed starts and dropped (the refill replaces them).
    pub(super) fn take(&self, language: Language, memory_mb: u64, counts: &StartCounts) -> Option<Instance> {
        if language != Language::Python && memory_mb != PREWARM_MEMORY_MB {
            return None;
        }
        let mut ready = self.ready.lock();
        while let Some(at) = ready.iter().position(|(l, _)| *l == language) {
            let (_, mut instance) = ready.swap_remove(at);
            self.short.store(true, Ordering::Relaxed);
            if instance.alive() {
                return Some(instance);
            }
            counts.failed();
            tracing::warn!(%language, "a prewarmed runtime died while it waited; counted as a failed start and replaced");
        }
        None
    }

    /// The next runtime the shelf lacks, as (language, memory limit).
    pub(super) fn missing(&self) -> Option<(Language, u64)> {
        if !self.short.load(Ordering::Relaxed) {
            return None;
        }
        let wanted = self.wanted.lock();
        let mut ready = self.ready.lock();
        ready.retain_mut(|(_, i)| i.alive());
        let lacking = wanted
            .iter()
            .find(|(language, n)| ready.iter().filter(|(l, _)| l == language).count() < *n as usize)
            .map(|(language, _)| (*language, PREWARM_MEMORY_MB));
        if lacking.is_none() {
            self.short.store(false, Ordering::Relaxed);
        }
        lacking
    }

    pub(super) fn put(&self, language: Language, _memory_mb: u64, instance: Instance) {
        self.ready.lock().push((language, instance));
    }

    /// Stops keeping `language` (its runtimes cannot start here).
    pub(super) fn gave_up(&self, language: Language) {
        self.wanted.lock().retain(|(l, _)| *l != language);
    }

    /// Keeps nothing more, and kills what is kept.
    pub(super) fn clear(&self) {
        self.wanted.lock().clear();
        self.ready.lock().clear();
        self.short.store(false, Ordering::Relaxed);
    }
}
