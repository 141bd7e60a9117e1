//! Whole-store views for audits, tests and benchmarks: they scan every key under the
//! prefix, so nothing on the dispatcher's path calls them.

use super::{unavailable, RedisStore};
use crate::store::{StoreError, TaskRecord, TaskStore};
use volley_proto::ids::TaskId;

impl RedisStore {
    /// Deletes every key under this store's prefix; for tests and benchmarks.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        let keys = self.scan(&self.keys.all()).await?;
        let mut conn = self.conn.clone();
        let mut deleted = 0;
        for chunk in keys.chunks(10_000) {
            deleted += redis::cmd("DEL")
                .arg(chunk)
                .query_async::<u64>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(deleted)
    }

    /// Every task stored under this prefix, for audits; reads only.
    pub async fn all_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let keys = self.scan(&self.keys.all_tasks()).await?;
        let mut ids: Vec<TaskId> = keys.iter().filter_map(|k| self.keys.task_id(k)).collect();
        ids.sort_unstable();
        Ok(self.get_many(&ids).await?.into_iter().flatten().collect())
    }

    /// How many tasks the store holds as unfinished; reads only.
    pub async fn unfinished_count(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SCARD")
            .arg(self.keys.unfinished())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                return Ok(keys);
            }
        }
    }
}
