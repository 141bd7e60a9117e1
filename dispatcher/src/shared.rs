//! State the gRPC edge, the reactor and the store writer share without locks.

use crate::core::Finished;
use crate::metrics::TaskMetrics;
use crate::store::TaskStore;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;
use volley_proto::function::CodeDigest;

/// Watchers of every completion at once: each is sent every completion, so each costs
/// encoding work per batch and, if its client reads slowly, buffered responses; past this
/// a new one is refused with RESOURCE_EXHAUSTED (watching task ids is not limited so).
pub const MAX_WATCHERS_OF_ALL: usize = 256;

/// Shared handles and counters.
pub struct Shared {
    /// The task store.
    pub store: Arc<dyn TaskStore>,
    /// Bounds unfinished tasks (backpressure).
    pub admission: Admission,
    /// Terminal tasks, published after the store has them.
    pub completions: broadcast::Sender<Arc<Vec<Finished>>>,
    /// Counters kept at the edges.
    pub counters: EdgeCounters,
    /// False while store writes fail.
    pub store_healthy: AtomicBool,
    /// Prometheus counters and histograms, when `--metrics` is on.
    pub metrics: Option<Arc<TaskMetrics>>,
    /// What the worker socket refused, once it is bound (pull and push modes).
    pub worker_socket: std::sync::OnceLock<Arc<volley_proto::zmtp::RouterStats>>,
    /// Places for `WatchResults` streams of every completion.
    pub watchers_of_all: Arc<tokio::sync::Semaphore>,
    /// What the gRPC port refused, once it serves.
    pub grpc_edge: std::sync::OnceLock<Arc<crate::grpc_edge::Connections>>,
    /// User functions' code by digest, for sending to workers: every function a task of
    /// which was accepted has its code here.
    pub code: CodeShelf,
    /// The latest version of each user function registered since start, by name: what a
    /// new instance of it loads before it registers.
    pub latest_code: parking_lot::RwLock<std::collections::HashMap<String, Arc<volley_proto::function::UserCode>>>,
    /// What the REST edge served and refused, when it is on.
    pub rest: Arc<crate::rest::RestCounters>,
    /// The lease this dispatcher leads by, under `--ha`.
    pub leadership: Option<crate::ha::Leadership>,
}

impl Shared {
    /// Takes note of a store write refused because another dispatcher took over, so this
    /// one stands down.
    pub fn fenced(&self) {
        if let Some(l) = &self.leadership {
            l.fenced();
        }
    }

    /// The latest registered version of user function `name` and its code, if held.
    pub fn latest_user_code(&self, name: &str) -> Option<(Arc<volley_proto::function::UserCode>, bytes::Bytes)> {
        let code = self.latest_code.read().get(name).cloned()?;
        let bytes = self.code.get(&code.digest)?;
        Some((code, bytes))
    }
}

/// Code the dispatcher holds in memory, by digest; the store holds the durable copy.
#[derive(Default)]
pub struct CodeShelf(parking_lot::RwLock<std::collections::HashMap<CodeDigest, bytes::Bytes>>);

impl CodeShelf {
    /// The code, if held.
    pub fn get(&self, digest: &CodeDigest) -> Option<bytes::Bytes> {
        self.0.read().get(digest).cloned()
    }

    /// Holds `code` under `digest`.
    pub fn put(&self, digest: CodeDigest, code: bytes::Bytes) {
        self.0.write().entry(digest).or_insert(code);
    }

    /// Whether the code is held.
    pub fn has(&self, digest: &CodeDigest) -> bool {
        self.0.read().contains_key(digest)
    }

    /// `tasks`, once the code of the user functions among them is in the local pool's
    /// cache (remote workers are sent it over the wire instead).
    pub fn given(
        &self,
        cache: &volley_worker::runtime::code_cache::CodeCache,
        tasks: Vec<volley_proto::wire::TaskAssignment>,
    ) -> Vec<volley_proto::wire::TaskAssignment> {
        for t in &tasks {
            let volley_proto::function::Job::User { code, .. } = &t.job else {
                continue;
            };
            if cache.has(&code.digest) {
                continue;
            }
            match self.get(&code.digest) {
                Some(bytes) => {
                    if let Err(e) = cache.insert(code.digest, &bytes) {
                        tracing::warn!("cannot give the local pool code {}: {e}", code.digest);
                    }
                }
                None => tracing::warn!("code {} is not held; its task will fail init", code.digest),
            }
        }
        tasks
    }
}

impl Shared {
    /// Shared state over `store`, admitting at most `max_unfinished` tasks; watchers may
    /// fall `watch_buffer` completion batches behind before they lose the live stream
    /// (watches by id then catch up from the store; watches of everything end with
    /// DATA_LOSS).
    pub fn new(store: Arc<dyn TaskStore>, max_unfinished: usize, watch_buffer: usize) -> Self {
        Self {
            store,
            admission: Admission::new(max_unfinished),
            completions: broadcast::channel(watch_buffer.max(1)).0,
            counters: EdgeCounters::default(),
            store_healthy: AtomicBool::new(true),
            metrics: None,
            worker_socket: std::sync::OnceLock::new(),
            grpc_edge: std::sync::OnceLock::new(),
            code: CodeShelf::default(),
            latest_code: parking_lot::RwLock::new(std::collections::HashMap::new()),
            rest: Arc::default(),
            leadership: None,
            watchers_of_all: Arc::new(tokio::sync::Semaphore::new(MAX_WATCHERS_OF_ALL)),
        }
    }

    /// Makes sure a user function's code is held in memory, loading it from the store;
    /// whether it is (false: the store has no such code). Built-ins need none.
    pub async fn hold_code(
        &self,
        kind: &volley_proto::function::FunctionKind,
    ) -> Result<bool, crate::store::StoreError> {
        let volley_proto::function::FunctionKind::User(code) = kind else {
            return Ok(true);
        };
        if self.code.has(&code.digest) {
            return Ok(true);
        }
        match self.store.code(code.digest).await? {
            Some(bytes) => {
                self.code.put(code.digest, bytes);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The same, feeding `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<TaskMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }
}

/// Counters of events seen at the gRPC and socket edges.
#[derive(Default)]
pub struct EdgeCounters {
    /// Worker frames that did not decode, had another version or too many parts.
    pub dropped_frames: AtomicU64,
    /// Submissions refused because the queue was full.
    pub rejected_submissions: AtomicU64,
    /// Worker registrations refused.
    pub rejected_workers: AtomicU64,
    /// gRPC calls refused for a missing or wrong token.
    pub unauthenticated_requests: AtomicU64,
}

impl EdgeCounters {
    /// Adds one.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one and returns the new count if it is worth a log line (the 1st, 2nd, 4th,
    /// 8th… time), so a peer repeating a refused request cannot flood the log.
    pub fn bump_sampled(counter: &AtomicU64) -> Option<u64> {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        n.is_power_of_two().then_some(n)
    }
}

/// A counting admission gate: tasks in, until the limit; finished tasks release.
pub struct Admission {
    unfinished: AtomicUsize,
    limit: usize,
}

impl Admission {
    fn new(limit: usize) -> Self {
        Self {
            unfinished: AtomicUsize::new(0),
            limit,
        }
    }

    /// Admits `n` tasks, or none if that would pass the limit; returns the count now
    /// unfinished on refusal.
    pub fn try_admit(&self, n: usize) -> Result<(), usize> {
        let mut current = self.unfinished.load(Ordering::Relaxed);
        loop {
            if current + n > self.limit {
                return Err(current);
            }
            match self
                .unfinished
                .compare_exchange_weak(current, current + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Counts tasks that entered without admission (recovered at start).
    pub fn force_admit(&self, n: usize) {
        self.unfinished.fetch_add(n, Ordering::AcqRel);
    }

    /// `n` admitted tasks finished (or were never stored).
    pub fn release(&self, n: usize) {
        let _ = self
            .unfinished
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| Some(c.saturating_sub(n)));
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}
