//! The in-process store: the embedded default for one machine. Nothing survives a restart.

use super::{FunctionRecord, StoreError, Submission, TaskRecord, TaskStore};
use crate::core::Transition;
use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use volley_proto::function::FunctionKind;
use volley_proto::ids::{FunctionId, TaskId};

/// Tasks and functions in hash maps behind short, never-awaited locks.
#[derive(Default)]
pub struct MemoryStore {
    tasks: Mutex<HashMap<TaskId, TaskRecord>>,
    functions: RwLock<HashMap<FunctionId, FunctionRecord>>,
    next_task: AtomicU64,
    next_function: AtomicU64,
}

fn task_of(t: &Transition) -> TaskId {
    match t {
        Transition::Running { task, .. } | Transition::Requeued { task, .. } => *task,
        Transition::Finished(f) => f.task,
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn register_function(&self, name: &str, kind: &FunctionKind) -> Result<FunctionId, StoreError> {
        let id = FunctionId(self.next_function.fetch_add(1, Ordering::Relaxed) + 1);
        self.functions.write().insert(
            id,
            FunctionRecord {
                id,
                name: name.to_owned(),
                kind: kind.clone(),
            },
        );
        Ok(id)
    }

    async fn function(&self, id: FunctionId) -> Result<Option<FunctionRecord>, StoreError> {
        Ok(self.functions.read().get(&id).cloned())
    }

    async fn enqueue(&self, tasks: &[Submission]) -> Result<Vec<TaskId>, StoreError> {
        let first = self.next_task.fetch_add(tasks.len() as u64, Ordering::Relaxed) + 1;
        let ids: Vec<TaskId> = (0..tasks.len() as u64).map(|i| TaskId(first + i)).collect();
        let mut map = self.tasks.lock();
        map.reserve(tasks.len());
        for (id, s) in ids.iter().zip(tasks) {
            map.insert(*id, TaskRecord::queued(*id, s));
        }
        Ok(ids)
    }

    async fn record(&self, transitions: &[Transition]) -> Result<(), StoreError> {
        let mut map = self.tasks.lock();
        for t in transitions {
            if let Some(rec) = map.get_mut(&task_of(t)) {
                rec.apply(t);
            }
        }
        Ok(())
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.tasks.lock().get(&id).cloned())
    }

    async fn get_many(&self, ids: &[TaskId]) -> Result<Vec<Option<TaskRecord>>, StoreError> {
        let map = self.tasks.lock();
        Ok(ids.iter().map(|id| map.get(id).cloned()).collect())
    }

    async fn recover_unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let mut v: Vec<TaskRecord> = self
            .tasks
            .lock()
            .values()
            .filter(|r| !r.state.is_terminal())
            .cloned()
            .collect();
        v.sort_by_key(|r| r.id);
        Ok(v)
    }
}
