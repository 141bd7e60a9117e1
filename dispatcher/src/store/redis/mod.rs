//! The Redis store: durable, shared, and recoverable after a dispatcher restart.
//!
//! Layout (see [`super::keys`]): a hash per task with the fields of
//! [`TaskField`], written as [`super::transition`] defines; a hash per function; and the
//! `unfinished` set.
//! Every batch of transitions is one pipelined round trip. The pipeline is not atomic:
//! a task whose hash says terminal but is still in `unfinished` is cleaned up on recovery.

mod inspect;

use super::keys::{Keys, TaskField, FUNCTION_NAME, FUNCTION_SPEC, FUNCTION_VERSION};
use super::transition::{self, Change, Value};
use super::{redact, FunctionRecord, StoreError, Submission, TaskRecord, TaskStore};
use crate::core::Transition;
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::time::Duration;
use tracing::{debug, info};
use volley_proto::function::{CodeDigest, FunctionKind};
use volley_proto::ids::{FunctionId, TaskId};

/// Task ids are reserved from Redis in blocks, so ids stay unique across restarts
/// without a round trip per task.
const ID_BLOCK: u64 = 4096;

/// Takes a block of `ARGV[1]` task ids, never going below `ARGV[2]` (the highest id this
/// process handed out); returns the block's last id and 1 if the counter had gone back.
const TAKE_IDS: &str = r#"
local size = tonumber(ARGV[1])
local floor = tonumber(ARGV[2])
local hi = redis.call('INCRBY', KEYS[1], size)
if hi - size < floor then
  hi = floor + size
  redis.call('SET', KEYS[1], hi)
  return {hi, 1}
end
return {hi, 0}
"#;
/// Tasks read per pipeline during recovery.
const RECOVERY_CHUNK: usize = 1000;

/// A store on one Redis database, under one key prefix.
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    /// The address with its password redacted: the only form ever shown.
    shown: String,
    ids: Mutex<IdBlock>,
    finished_ttl_s: Option<u64>,
}

#[derive(Default)]
struct IdBlock {
    next: u64,
    end: u64,
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
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot reach Redis at {shown}: {e}")))?;
        Ok(Self {
            conn,
            keys: Keys::new(prefix),
            shown,
            ids: Mutex::new(IdBlock::default()),
            finished_ttl_s: None,
        })
    }

    /// Lets Redis forget each finished task `ttl` after it finished (whole seconds, at
    /// least one); `None` keeps every task.
    pub fn with_finished_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.finished_ttl_s = ttl.map(|t| t.as_secs().max(1));
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

    async fn take_ids(&self, n: u64) -> Result<u64, StoreError> {
        {
            let mut block = self.ids.lock();
            if block.end - block.next >= n {
                let first = block.next;
                block.next += n;
                return Ok(first);
            }
        }
        let size = n.max(ID_BLOCK);
        // The counter may never go below the highest id this process handed out: a Redis
        // that came back empty would start again at 1 and hand out ids of tasks still
        // running here. The script raises it past that floor and says it had to.
        let floor = self.ids.lock().end.saturating_sub(1);
        let mut conn = self.conn.clone();
        // EVAL, not EVALSHA: once per block of ids, so the script's bytes cost nothing.
        let (hi, went_back): (u64, u64) = redis::cmd("EVAL")
            .arg(TAKE_IDS)
            .arg(1)
            .arg(self.keys.task_seq())
            .arg(size)
            .arg(floor)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let first = hi - size + 1;
        *self.ids.lock() = IdBlock {
            next: first + n,
            end: hi + 1,
        };
        if went_back == 1 {
            return Err(StoreError::DataLoss(format!(
                "Redis's task id counter was below {floor}, the highest id this dispatcher handed out: \
                 Redis lost its data (restarted without persistence?); ids go on from {first}, but tasks \
                 acknowledged before may be gone from the store"
            )));
        }
        Ok(first)
    }
}

fn parse_task(id: TaskId, h: HashMap<String, String>) -> Result<Option<TaskRecord>, StoreError> {
    if h.is_empty() {
        return Ok(None);
    }
    if !h.contains_key(TaskField::State.name()) {
        return Err(StoreError::Corrupt(format!("task {id} has no valid state")));
    }
    let mut record = TaskRecord::empty(id);
    for (name, value) in &h {
        // Fields a newer release added are ignored; known ones must be readable.
        if let Some(field) = TaskField::parse(name) {
            record
                .set(field, Value::Text(value))
                .map_err(|why| StoreError::Corrupt(format!("task {id}: {why}")))?;
        }
    }
    Ok(Some(record))
}

/// One `HSET` of the given fields on `key`.
fn hset(pipe: &mut redis::Pipeline, key: String, changes: &[Change<'_>]) {
    let cmd = pipe.cmd("HSET").arg(key);
    for (field, value) in changes {
        cmd.arg(field.name());
        match value {
            Value::Text(t) => cmd.arg(*t),
            Value::Number(n) => cmd.arg(*n),
            Value::State(s) => cmd.arg(s.as_str()),
        };
    }
    cmd.ignore();
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

fn add_transition(pipe: &mut redis::Pipeline, keys: &Keys, t: &Transition, finished_ttl_s: Option<u64>) {
    let task = transition::task_of(t);
    hset(pipe, keys.task(task), &transition::changes(t));
    if let Some(rare) = transition::rare_changes(t) {
        hset(pipe, keys.task(task), &rare);
    }
    if matches!(t, Transition::Finished(_)) {
        if let Some(ttl) = finished_ttl_s {
            pipe.cmd("EXPIRE").arg(keys.task(task)).arg(ttl).ignore();
        }
        pipe.cmd("SREM").arg(keys.unfinished()).arg(task.0).ignore();
    }
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
        let mut conn = self.conn.clone();
        let (id, version): (u64, u32) = redis::pipe()
            .cmd("INCR")
            .arg(self.keys.function_seq())
            .cmd("HINCRBY")
            .arg(self.keys.function_versions())
            .arg(name)
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let spec = serde_json::to_string(kind).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        redis::cmd("HSET")
            .arg(self.keys.function(FunctionId(id)))
            .arg(FUNCTION_NAME)
            .arg(name)
            .arg(FUNCTION_SPEC)
            .arg(spec)
            .arg(FUNCTION_VERSION)
            .arg(version)
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)?;
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
        let mut pipe = redis::pipe();
        for (id, s) in ids.iter().zip(tasks) {
            hset(&mut pipe, self.keys.task(*id), &transition::queued(s));
        }
        pipe.cmd("SADD")
            .arg(self.keys.unfinished())
            .arg(ids.iter().map(|i| i.0).collect::<Vec<_>>())
            .ignore();
        let mut conn = self.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            self.withdraw_later(ids);
            return Err(unavailable(e));
        }
        Ok(ids)
    }

    async fn record(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        if transitions.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for t in transitions {
            add_transition(&mut pipe, &self.keys, t, self.finished_ttl_s);
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.task(id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        parse_task(id, h)
    }

    async fn get_many(&self, ids: &[TaskId]) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(RECOVERY_CHUNK) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HGETALL").arg(self.keys.task(*id));
            }
            let mut conn = self.conn.clone();
            let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
            for (id, h) in chunk.iter().zip(hashes) {
                out.push(parse_task(*id, h)?);
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
        let records = self.get_many(&ids).await?;
        let mut unfinished = Vec::new();
        let mut stale = Vec::new();
        for (id, rec) in ids.iter().zip(records) {
            match rec {
                Some(r) if !r.state.is_terminal() => unfinished.push(r),
                _ => stale.push(id.0),
            }
        }
        if !stale.is_empty() {
            redis::cmd("SREM")
                .arg(self.keys.unfinished())
                .arg(stale)
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(unfinished)
    }
}
