//! One batch of writes, sent as a pipeline or, under a leader's lease, as one fenced
//! script. Either way a batch is one round trip and a handful of commands however many
//! tasks it carries: records go in one `MSET`, set members in one `SADD` or `SREM`;
//! only requeues (`APPEND`) and expiries cost a command per task.
//!
//! Fencing: a dispatcher that took the lease writes only while Redis's fence key still
//! holds the token it set then (its epoch and a random nonce), checked by the script in
//! the same atomic step as the writes. A leader that stalled past its lease and woke up
//! after a standby took over (and set its own token) writes nothing; nor does one whose
//! Redis lost its data and counted epochs again from 1, since no two leaders ever share
//! a nonce.

use super::unavailable;
use crate::store::StoreError;
use redis::aio::ConnectionManager;

/// Elements one Lua `unpack` may take in Redis's Lua (its C stack holds 8000).
const UNPACK: usize = 4000;

/// Checks the epoch, then applies sections of `name, target, count, args…`.
const FENCED_WRITE: &str = r#"
if redis.call('GET', ARGV[1]) ~= ARGV[2] then
  return redis.error_reply('FENCED lease ' .. ARGV[2] .. ' no longer leads')
end
local step = tonumber(ARGV[3])
local i = 4
while i <= #ARGV do
  local op, target, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local first, last = i + 3, i + 2 + n
  if op == 'APPEND' then
    for j = first, last, 2 do redis.call('APPEND', ARGV[j], ARGV[j + 1]) end
  elseif op == 'EXPIRE' then
    for j = first, last do redis.call('EXPIRE', ARGV[j], target) end
  elseif op == 'MSET' then
    for j = first, last, step do redis.call('MSET', unpack(ARGV, j, math.min(j + step - 1, last))) end
  else
    for j = first, last, step do redis.call(op, target, unpack(ARGV, j, math.min(j + step - 1, last))) end
  end
  i = last + 1
end
return 0
"#;

/// The fenced write as a script: sent by its SHA1 (`EVALSHA`), the text only once.
fn fenced_write() -> &'static redis::Script {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(FENCED_WRITE))
}

/// Arguments packed in one buffer.
#[derive(Default)]
pub struct Args {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Args {
    /// Adds one argument written by `write`.
    pub fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        self.ends.push(self.bytes.len());
    }

    /// Adds one argument.
    pub fn push_bytes(&mut self, arg: &[u8]) {
        self.push(|b| b.extend_from_slice(arg));
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(a, b)| &self.bytes[a..b])
    }
}

/// The writes of one batch, by command.
#[derive(Default)]
pub struct Batch {
    /// Keys and values, alternating.
    pub mset: Args,
    /// Keys and segments to append, alternating.
    pub append: Args,
    /// Members to add to the unfinished set.
    pub sadd: Args,
    /// Members to remove from it.
    pub srem: Args,
    /// Keys to expire after the finished-task TTL.
    pub expire: Args,
}

/// The lease under which a dispatcher writes: Redis's fence key must still hold its
/// token.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The fence key.
    pub key: String,
    /// What the leader set there when it took the lease: `EPOCH:NONCE`.
    pub token: String,
    /// The epoch this dispatcher leads, for errors and reports.
    pub epoch: u64,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        [&self.mset, &self.append, &self.sadd, &self.srem, &self.expire]
            .iter()
            .all(|a| a.len() == 0)
    }

    /// Sends the batch in one round trip: a pipeline, or with `fence` the fenced script.
    pub async fn send(
        &self,
        conn: &mut ConnectionManager,
        unfinished: &str,
        ttl_s: Option<u64>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        if self.is_empty() {
            return Ok(());
        }
        let result = match fence {
            None => self.pipeline(unfinished, ttl_s).query_async::<()>(conn).await,
            Some(f) => self.script(unfinished, ttl_s, f).invoke_async::<()>(conn).await,
        };
        result.map_err(|e| match (e.code(), fence) {
            (Some("FENCED"), Some(f)) => StoreError::Fenced(f.epoch),
            _ => unavailable(e),
        })
    }

    fn pipeline(&self, unfinished: &str, ttl_s: Option<u64>) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        if self.sadd.len() > 0 {
            pipe.cmd("SADD")
                .arg(unfinished)
                .arg(self.sadd.iter().collect::<Vec<_>>())
                .ignore();
        }
        if self.mset.len() > 0 {
            pipe.cmd("MSET").arg(self.mset.iter().collect::<Vec<_>>()).ignore();
        }
        let mut pairs = self.append.iter();
        while let (Some(key), Some(segment)) = (pairs.next(), pairs.next()) {
            pipe.cmd("APPEND").arg(key).arg(segment).ignore();
        }
        if let Some(ttl) = ttl_s {
            for key in self.expire.iter() {
                pipe.cmd("EXPIRE").arg(key).arg(ttl).ignore();
            }
        }
        if self.srem.len() > 0 {
            pipe.cmd("SREM")
                .arg(unfinished)
                .arg(self.srem.iter().collect::<Vec<_>>())
                .ignore();
        }
        pipe
    }

    fn script(&self, unfinished: &str, ttl_s: Option<u64>, fence: &Fence) -> redis::ScriptInvocation<'static> {
        let mut cmd = fenced_write().prepare_invoke();
        cmd.arg(&fence.key).arg(&fence.token).arg(UNPACK);
        let expire = ttl_s.map(|t| ("EXPIRE", t.to_string(), &self.expire));
        let sections = [
            Some(("SADD", unfinished.to_owned(), &self.sadd)),
            Some(("MSET", String::new(), &self.mset)),
            Some(("APPEND", String::new(), &self.append)),
            expire,
            Some(("SREM", unfinished.to_owned(), &self.srem)),
        ];
        for (op, target, args) in sections.into_iter().flatten() {
            if args.len() == 0 {
                continue;
            }
            cmd.arg(op).arg(target).arg(args.len());
            for a in args.iter() {
                cmd.arg(a);
            }
        }
        cmd
    }
}
