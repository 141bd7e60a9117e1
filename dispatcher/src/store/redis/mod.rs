//! The Redis store: durable, shared, and recoverable after a dispatcher restart.
//!
//! Layout (see [`super::keys`] and [`layout`]): one string per task, written once when it
//! is submitted and once when it finishes (and once per requeue); a hash per function;
//! and the `unfinished` set, which is what a restart reads. Every batch of transitions
//! is one round trip of a few commands ([`writes`]); under `--ha` it is one fenced
//! script. A pipeline is not atomic: a task whose record says terminal but is still in
//! `unfinished` is cleaned up on recovery.

mod ids;
mod inspect;
pub mod layout;
mod running;
pub mod writes;

use super::keys::{Keys, FUNCTION_NAME, FUNCTION_SPEC, FUNCTION_VERSION};
use super::{redact, FunctionRecord, Settled, StoreError, Submission, TaskRecord, TaskStore};
use crate::core::Transition;
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tracing::{debug, info};
use volley_proto::function::{CodeDigest, FunctionKind};
use volley_proto::ids::{FunctionId, TaskId};
pub use writes::Fence;
use writes::{Args, Batch};

/// Registers a function in one atomic step, fenced like every write when `ARGV[1]`
/// names a fence key: id, version under its name, and its hash.
const REGISTER: &str = r#"
if ARGV[1] ~= '' and redis.call('GET', ARGV[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED lease ' .. ARGV[2] .. ' no longer leads')
end
local id = redis.call('INCR', KEYS[1])
local version = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HSET', ARGV[5] .. id, ARGV[6], ARGV[3], ARGV[7], ARGV[4], ARGV[8], version)
return {id, version}
"#;

/// Tasks read per round trip when many are read.
const READ_CHUNK: usize = 1000;

/// A store on one Redis database, under one key prefix.
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    /// The address with its password redacted: the only form ever shown.
    shown: String,
    ids: Mutex<ids::IdBlock>,
    finished_ttl_s: Option<u64>,
    fence: Option<Fence>,
    in_flight: running::InFlight,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects; fails at once if Redis cannot be reached, so a misconfigured dispatcher
    /// never starts. After that, a lost connection is rebuilt on the next call.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|e| StoreError::Config(format!("{shown}: {e}")))?;
        let conn = ConnectionManager::new_with_config(client, connection_config())
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot reach Redis at {shown}: {e}")))?;
        Ok(Self {
            conn,
            keys: Keys::new(prefix),
            shown,
            ids: Mutex::new(ids::IdBlock::default()),
            finished_ttl_s: None,
            fence: None,
            in_flight: running::InFlight::default(),
        })
    }

    /// Lets Redis forget each finished task `ttl` after it finished (whole seconds, at
    /// least one); `None` keeps every task.
    pub fn with_finished_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.finished_ttl_s = ttl.map(|t| t.as_secs().max(1));
        self
    }

    /// Writes only while Redis's epoch counter holds `fence`'s epoch: a leader's store.
    pub fn with_fence(mut self, fence: Option<Fence>) -> Self {
        self.fence = fence;
        self
    }

    /// Removes the tasks of an enqueue that failed, once Redis answers again. Redis may
    /// have applied the write and died before answering: the client hears that nothing
    /// was submitted (and may submit again), so tasks written anyway would sit QUEUED,
    /// known to no running dispatcher. Their ids were never handed out, so deleting them
    /// races with nothing.
    fn withdraw_later(&self, ids: Vec<TaskId>) {
        let mut conn = self.conn.clone();
        let keys = self.keys.clone();
        tokio::spawn(async move {
            let mut pipe = redis::pipe();
            pipe.cmd("DEL")
                .arg(ids.iter().map(|id| keys.task(*id)).collect::<Vec<_>>())
                .ignore();
            pipe.cmd("SREM")
                .arg(keys.unfinished())
                .arg(ids.iter().map(|id| id.0).collect::<Vec<_>>())
                .ignore();
            let mut delay = Duration::from_millis(20);
            while let Err(e) = pipe.query_async::<()>(&mut conn).await {
                debug!(tasks = ids.len(), "withdrawing a failed submission: {e}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            info!(tasks = ids.len(), "withdrew a submission whose write failed");
        });
    }

    /// Reads tasks as stored, without what this dispatcher knows of those in flight.
    async fn read(&self, ids: &[TaskId]) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut conn = self.conn.clone();
        for chunk in ids.chunks(READ_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| self.keys.task(*id)).collect();
            let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let mut missing = Vec::new();
            for (i, (id, value)) in chunk.iter().zip(values).enumerate() {
                match value {
                    Some(bytes) => out.push(Some(
                        layout::parse(*id, &bytes).map_err(|why| StoreError::Corrupt(format!("task {id}: {why}")))?,
                    )),
                    None => {
                        missing.push(i);
                        out.push(None);
                    }
                }
            }
            // MGET answers nil for a key that holds a hash: a task of the old layout, or
            // none at all.
            if !missing.is_empty() {
                let base = out.len() - chunk.len();
                let mut pipe = redis::pipe();
                for &i in &missing {
                    pipe.cmd("HGETALL").arg(&keys[i]);
                }
                let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
                for (&i, h) in missing.iter().zip(&hashes) {
                    out[base + i] = layout::from_hash(chunk[i], h)
                        .map_err(|why| StoreError::Corrupt(format!("task {}: {why}", chunk[i])))?;
                }
            }
        }
        Ok(out)
    }
}

fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

/// A function's hash as a record; `None` when the hash is absent.
fn function_record(id: FunctionId, h: &HashMap<String, String>) -> Result<Option<FunctionRecord>, StoreError> {
    if h.is_empty() {
        return Ok(None);
    }
    let spec = h.get(FUNCTION_SPEC).map(String::as_str).unwrap_or("");
    let kind = serde_json::from_str(spec).map_err(|e| StoreError::Corrupt(format!("function {id}: {e}")))?;
    Ok(Some(FunctionRecord {
        id,
        name: h.get(FUNCTION_NAME).cloned().unwrap_or_default(),
        kind,
        // Functions stored before versions existed count as their name's first.
        version: h.get(FUNCTION_VERSION).and_then(|v| v.parse().ok()).unwrap_or(1),
    }))
}

/// A task id as a set member.
fn member(args: &mut Args, id: TaskId) {
    args.push(|b| {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = write!(b, "{}", id.0);
    });
}

#[async_trait]
impl TaskStore for RedisStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn forgets_finished(&self) -> Option<String> {
        self.finished_ttl_s
            .map(|s| format!("Redis keeps finished tasks {s} s (--redis-finished-ttl)"))
    }

    async fn register_function(&self, name: &str, kind: &FunctionKind) -> Result<(FunctionId, u32), StoreError> {
        let spec = serde_json::to_string(kind).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (fence_key, token, epoch) = match &self.fence {
            Some(f) => (f.key.as_str(), f.token.as_str(), f.epoch),
            None => ("", "", 0),
        };
        let mut conn = self.conn.clone();
        let (id, version): (u64, u32) = redis::cmd("EVAL")
            .arg(REGISTER)
            .arg(2)
            .arg(self.keys.function_seq())
            .arg(self.keys.function_versions())
            .arg(fence_key)
            .arg(token)
            .arg(name)
            .arg(spec)
            .arg(self.keys.function_prefix())
            .arg(FUNCTION_NAME)
            .arg(FUNCTION_SPEC)
            .arg(FUNCTION_VERSION)
            .query_async(&mut conn)
            .await
            .map_err(|e| match e.code() {
                Some("FENCED") => StoreError::Fenced(epoch),
                _ => unavailable(e),
            })?;
        Ok((FunctionId(id), version))
    }

    async fn function(&self, id: FunctionId) -> Result<Option<FunctionRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.function(id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        function_record(id, &h)
    }

    async fn functions(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let last: Option<u64> = redis::cmd("GET")
            .arg(self.keys.function_seq())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut all = Vec::new();
        let ids: Vec<u64> = (1..=last.unwrap_or(0)).collect();
        for block in ids.chunks(512) {
            let mut pipe = redis::pipe();
            for id in block {
                pipe.cmd("HGETALL").arg(self.keys.function(FunctionId(*id)));
            }
            let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
            for (id, h) in block.iter().zip(&hashes) {
                if let Some(f) = function_record(FunctionId(*id), h)? {
                    all.push(f);
                }
            }
        }
        Ok(all)
    }

    async fn put_code(&self, digest: CodeDigest, code: Bytes) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.keys.code(&digest))
            .arg(code.as_ref())
            .arg("NX")
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn code(&self, digest: CodeDigest) -> Result<Option<Bytes>, StoreError> {
        let mut conn = self.conn.clone();
        let code: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.keys.code(&digest))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(code.map(Bytes::from))
    }

    async fn enqueue(&self, tasks: &[Submission]) -> Result<Vec<TaskId>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.take_ids(tasks.len() as u64).await?;
        let ids: Vec<TaskId> = (0..tasks.len() as u64).map(|i| TaskId(first + i)).collect();
        let mut batch = Batch::default();
        for (id, s) in ids.iter().zip(tasks) {
            batch.mset.push(|b| self.keys.write_task(b, *id));
            batch.mset.push(|b| layout::queued(b, s));
            member(&mut batch.sadd, *id);
        }
        let mut conn = self.conn.clone();
        match batch
            .send(&mut conn, &self.keys.unfinished(), None, self.fence.as_ref())
            .await
        {
            Ok(()) => Ok(ids),
            // Fenced: nothing was written, and this dispatcher is no longer the leader.
            Err(e @ StoreError::Fenced(_)) => Err(e),
            Err(e) => {
                self.withdraw_later(ids);
                Err(e)
            }
        }
    }

    async fn record(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        if transitions.is_empty() {
            return Ok(());
        }
        self.in_flight.note(transitions);
        let mut last_workers = self.in_flight.last_workers(transitions).into_iter();
        // A task requeued and finished within one batch: the batch writes records before
        // it appends segments, so the requeue would land after the finish and read as
        // queued again. The finish replaces the whole string; the requeue is dropped.
        let finished_here: HashSet<TaskId> = if transitions.iter().any(|t| matches!(t, Transition::Requeued { .. })) {
            transitions
                .iter()
                .filter_map(|t| match t {
                    Transition::Finished(f) => Some(f.task),
                    _ => None,
                })
                .collect()
        } else {
            HashSet::new()
        };
        let mut batch = Batch::default();
        for t in transitions {
            match t {
                Transition::Running { .. } => {}
                Transition::Requeued { task, .. } if finished_here.contains(task) => {}
                Transition::Requeued { task, attempts } => {
                    batch.append.push(|b| self.keys.write_task(b, *task));
                    batch.append.push(|b| layout::requeued(b, *attempts));
                }
                Transition::Finished(f) => {
                    let last = last_workers.next().flatten();
                    let worker = f.worker.as_deref().or(last.as_deref()).unwrap_or("");
                    batch.mset.push(|b| self.keys.write_task(b, f.task));
                    batch.mset.push(|b| layout::finished(b, f, worker));
                    if self.finished_ttl_s.is_some() {
                        batch.expire.push(|b| self.keys.write_task(b, f.task));
                    }
                    member(&mut batch.srem, f.task);
                }
            }
        }
        let mut conn = self.conn.clone();
        batch
            .send(
                &mut conn,
                &self.keys.unfinished(),
                self.finished_ttl_s,
                self.fence.as_ref(),
            )
            .await?;
        self.in_flight.forget_finished(transitions);
        Ok(())
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.get_many(&[id]).await?.pop().flatten())
    }

    async fn get_many(&self, ids: &[TaskId]) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let mut records = self.read(ids).await?;
        for r in records.iter_mut().flatten() {
            self.in_flight.overlay(r);
        }
        Ok(records)
    }

    async fn settled(&self, ids: &[TaskId]) -> Result<Vec<Settled>, StoreError> {
        // Unfinished tasks are members of one set: one membership test each, and only
        // the others' records are read.
        let mut conn = self.conn.clone();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(READ_CHUNK * 10) {
            let unfinished: Vec<bool> = redis::cmd("SMISMEMBER")
                .arg(self.keys.unfinished())
                .arg(chunk.iter().map(|id| id.0).collect::<Vec<_>>())
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let others: Vec<TaskId> = chunk
                .iter()
                .zip(&unfinished)
                .filter(|(_, u)| !**u)
                .map(|(id, _)| *id)
                .collect();
            let mut records = self.read(&others).await?.into_iter();
            for u in unfinished {
                out.push(if u {
                    Settled::Unfinished
                } else {
                    match records.next().flatten() {
                        Some(r) if r.state.is_terminal() => Settled::Finished(r),
                        Some(_) => Settled::Unfinished,
                        None => Settled::Unknown,
                    }
                });
            }
        }
        Ok(out)
    }

    async fn recover_unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let mut ids: Vec<u64> = redis::cmd("SMEMBERS")
            .arg(self.keys.unfinished())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        ids.sort_unstable();
        let ids: Vec<TaskId> = ids.into_iter().map(TaskId).collect();
        let records = self.read(&ids).await?;
        let mut unfinished = Vec::new();
        let mut stale = Args::default();
        for (id, rec) in ids.iter().zip(records) {
            match rec {
                Some(r) if !r.state.is_terminal() => unfinished.push(r),
                _ => member(&mut stale, *id),
            }
        }
        let cleanup = Batch {
            srem: stale,
            ..Batch::default()
        };
        cleanup
            .send(&mut conn, &self.keys.unfinished(), None, self.fence.as_ref())
            .await?;
        Ok(unfinished)
    }
}
