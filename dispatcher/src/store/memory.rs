//! The in-process store: the embedded default for one machine. Nothing survives a restart.
//! Finished tasks are kept up to a retention limit (oldest forgotten first), so a dispatcher
//! that runs for ever holds bounded memory.

use super::{FunctionRecord, StoreError, Submission, TaskRecord, TaskStore};
use crate::core::{TaskMap, Transition};
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use volley_proto::function::{CodeDigest, FunctionKind};
use volley_proto::ids::{FunctionId, TaskId};

/// Records room is made for at start, at most: 1 Mi of them reserve 2 Mi buckets of 16
/// bytes, 32 MiB of address space, of which only the map's control bytes (2 MiB) are
/// touched before use.
const RESERVED_RECORDS: usize = 1 << 20;

/// Tasks and functions in hash maps behind short, never-awaited locks.
pub struct MemoryStore {
    tasks: Mutex<Tasks>,
    functions: RwLock<HashMap<FunctionId, FunctionRecord>>,
    code: RwLock<HashMap<CodeDigest, Bytes>>,
    next_task: AtomicU64,
    next_function: AtomicU64,
    retain_finished: usize,
}

#[derive(Default)]
struct Tasks {
    /// Boxed, and sized for the retention up front: the dispatcher's one thread holds this
    /// lock, and growing a map of half a million records in place moved over 100 MB and
    /// stalled every task for 30-60 ms (p99 5-8 ms at 40,000 noops/s, against 0.3 ms when
    /// the map did not grow). A box moves in 8 bytes.
    records: TaskMap<Box<TaskRecord>>,
    /// Finished tasks, oldest first, for retention.
    finished: VecDeque<TaskId>,
}

impl MemoryStore {
    /// A store that keeps at most `retain_finished` finished tasks (unfinished ones are
    /// always kept).
    pub fn new(retain_finished: usize) -> Self {
        let mut tasks = Tasks::default();
        let expected = retain_finished.min(RESERVED_RECORDS);
        tasks.records.reserve(expected);
        tasks.finished.reserve(expected);
        Self {
            tasks: Mutex::new(tasks),
            functions: RwLock::new(HashMap::new()),
            code: RwLock::new(HashMap::new()),
            next_task: AtomicU64::new(0),
            next_function: AtomicU64::new(0),
            retain_finished,
        }
    }

    /// Task records held now, finished or not.
    pub fn len(&self) -> usize {
        self.tasks.lock().records.len()
    }

    /// Whether no task is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies transitions in order, then forgets the oldest finished tasks over the bound.
    fn apply(&self, transitions: &[Transition]) {
        let mut guard = self.tasks.lock();
        let tasks = &mut *guard;
        for t in transitions {
            let id = super::transition::task_of(t);
            if let Some(rec) = tasks.records.get_mut(&id) {
                rec.apply(t);
                if matches!(t, Transition::Finished(_)) {
                    tasks.finished.push_back(id);
                }
            }
        }
        while tasks.finished.len() > self.retain_finished {
            if let Some(old) = tasks.finished.pop_front() {
                tasks.records.remove(&old);
            }
        }
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn forgets_finished(&self) -> Option<String> {
        Some(format!(
            "the memory store keeps the newest {} finished tasks (--retain-finished)",
            self.retain_finished
        ))
    }

    async fn register_function(&self, name: &str, kind: &FunctionKind) -> Result<(FunctionId, u32), StoreError> {
        let id = FunctionId(self.next_function.fetch_add(1, Ordering::Relaxed) + 1);
        let mut functions = self.functions.write();
        let version = functions.values().filter(|f| f.name == name).count() as u32 + 1;
        functions.insert(
            id,
            FunctionRecord {
                id,
                name: name.to_owned(),
                kind: kind.clone(),
                version,
            },
        );
        Ok((id, version))
    }

    async fn functions(&self) -> Result<Vec<FunctionRecord>, StoreError> {
        let mut all: Vec<FunctionRecord> = self.functions.read().values().cloned().collect();
        all.sort_by_key(|f| f.id);
        Ok(all)
    }

    async fn put_code(&self, digest: CodeDigest, code: Bytes) -> Result<(), StoreError> {
        self.code.write().entry(digest).or_insert(code);
        Ok(())
    }

    async fn code(&self, digest: CodeDigest) -> Result<Option<Bytes>, StoreError> {
        Ok(self.code.read().get(&digest).cloned())
    }

    async fn function(&self, id: FunctionId) -> Result<Option<FunctionRecord>, StoreError> {
        Ok(self.functions.read().get(&id).cloned())
    }

    async fn enqueue(&self, tasks: &[Submission]) -> Result<Vec<TaskId>, StoreError> {
        let first = self.next_task.fetch_add(tasks.len() as u64, Ordering::Relaxed) + 1;
        let ids: Vec<TaskId> = (0..tasks.len() as u64).map(|i| TaskId(first + i)).collect();
        let mut t = self.tasks.lock();
        t.records.reserve(tasks.len());
        for (id, s) in ids.iter().zip(tasks) {
            t.records.insert(*id, Box::new(TaskRecord::queued(*id, s)));
        }
        Ok(ids)
    }

    async fn record(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        self.apply(transitions);
        Ok(())
    }

    fn record_now(&self, transitions: &[Transition]) -> bool {
        self.apply(transitions);
        true
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.tasks.lock().records.get(&id).map(|r| (**r).clone()))
    }

    async fn get_many(&self, ids: &[TaskId]) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let t = self.tasks.lock();
        Ok(ids.iter().map(|id| t.records.get(id).map(|r| (**r).clone())).collect())
    }

    async fn recover_unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let mut v: Vec<TaskRecord> = self
            .tasks
            .lock()
            .records
            .values()
            .filter(|r| !r.state.is_terminal())
            .map(|r| (**r).clone())
            .collect();
        v.sort_by_key(|r| r.id);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Finished;
    use volley_proto::wire::Outcome;

    fn finish(id: TaskId) -> Transition {
        Transition::Finished(Finished {
            task: id,
            function_id: FunctionId(1),
            outcome: Outcome::Completed("null".into()),
            attempts: 1,
            worker: None,
            submitted_us: 0,
            dispatched_us: 0,
            completed_us: 0,
            wait_us: 0,
            run_us: 0,
            cold: None,
            log: String::new(),
        })
    }

    #[tokio::test]
    async fn only_the_newest_finished_tasks_are_retained() {
        let store = MemoryStore::new(3);
        let sub = Submission {
            function_id: FunctionId(1),
            args: String::new(),
            submitted_us: 0,
        };
        let ids = store.enqueue(&vec![sub; 10]).await.unwrap();
        let finished: Vec<Transition> = ids[..6].iter().map(|id| finish(*id)).collect();
        store.record(&finished).await.unwrap();
        // 4 unfinished are always kept, plus the 3 newest finished.
        assert_eq!(store.len(), 7);
        assert!(store.get(ids[0]).await.unwrap().is_none());
        assert!(store.get(ids[5]).await.unwrap().is_some_and(|r| r.state.is_terminal()));
        assert!(store.get(ids[9]).await.unwrap().is_some());
        assert_eq!(store.recover_unfinished().await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_write_at_once_leaves_what_the_store_writer_would() {
        let (written, at_once) = (MemoryStore::new(2), MemoryStore::new(2));
        let sub = Submission {
            function_id: FunctionId(1),
            args: "[1]".into(),
            submitted_us: 7,
        };
        let ids = written.enqueue(&vec![sub.clone(); 5]).await.unwrap();
        at_once.enqueue(&vec![sub; 5]).await.unwrap();
        let batch: Vec<Transition> = ids[..4].iter().map(|id| finish(*id)).collect();
        written.record(&batch).await.unwrap();
        assert!(at_once.record_now(&batch), "the embedded store writes at once");
        for id in ids {
            assert_eq!(
                written.get(id).await.unwrap(),
                at_once.get(id).await.unwrap(),
                "task {id:?}"
            );
        }
        assert_eq!(at_once.len(), 3, "the 2 newest finished and the unfinished one");
    }
}
