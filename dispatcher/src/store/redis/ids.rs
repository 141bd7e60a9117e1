//! Task ids, reserved from Redis in blocks: unique across restarts and dispatchers
//! without a round trip per task, and never handed out twice even by a Redis that lost
//! its data.

use super::{unavailable, RedisStore};
use crate::store::StoreError;

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

#[derive(Default)]
pub(super) struct IdBlock {
    next: u64,
    end: u64,
}

impl RedisStore {
    /// The first of `n` fresh ids.
    pub(super) async fn take_ids(&self, n: u64) -> Result<u64, StoreError> {
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
