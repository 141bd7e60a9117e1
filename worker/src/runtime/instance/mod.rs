//! One runtime process: started isolated, spoken to in frames, watched for its deadline
//! and its memory, and killed with its whole process group when it misbehaves.
//!
//! Driven from the owner's async runtime, not from a thread of its own: a task costs the
//! two wake-ups a process boundary needs (the runtime's, then the worker's I/O thread's)
//! and no thread hand-off on either side.

use super::failures::{clip, failure_text, kind_of};
use super::log::Log;
use super::spawn::Spawned;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::unix::pipe;
use tokio::time::Instant;
use volley_proto::function::{CodeDigest, UserCode};
use volley_proto::wire::{Outcome, MAX_RESULT_BYTES};
use volley_runtime::frame::{Decoder, Frame};

/// How often a waiting slot looks at its runtime's memory.
const MEMORY_CHECK: Duration = Duration::from_millis(20);
/// What a pipe always holds without a reader.
const PIPE_BUF: usize = 4096;
/// The least time a runtime gets to load its code, whatever the function's timeout.
const MIN_INIT: Duration = Duration::from_secs(30);

mod start;

pub(in crate::runtime) use start::Pipes;
pub use start::{Origin, Started};

/// The process behind an instance: a child of this worker, or one the fork server forked.
enum Process {
    Child(Spawned),
    Forked(super::fork_server::Forked),
}

/// A live runtime process serving one function's code (or, prewarmed, waiting for it).
pub struct Instance {
    process: Process,
    pid: u32,
    /// The runtimes alive, this one among them until it is dropped.
    live: Arc<Mutex<HashSet<u32>>>,
    /// The code it loaded.
    pub digest: CodeDigest,
    /// The entry point it found, and the memory limit it was started with.
    loaded: (String, u64),
    to_rt: pipe::Sender,
    from_rt: pipe::Receiver,
    log_pipe: Option<pipe::Receiver>,
    decoder: Decoder,
    workdir: PathBuf,
    /// Its start.
    pub started: Started,
    /// Output written during init, handed to the first task's log.
    log: Log,
    /// Reads from the runtime's pipes land here.
    buf: Vec<u8>,
    /// When its memory is looked at next.
    next_memory_check: Instant,
    /// INIT already in the pipe, written before the spawn.
    init_written: bool,
}

/// How one task on an instance ended.
pub struct TaskRun {
    /// The task's outcome.
    pub outcome: Outcome,
    /// What it printed.
    pub log: String,
    /// Whether the instance may take the next task (false: it was killed or died).
    pub keep: bool,
}

/// What waiting on a runtime produced.
enum Event {
    Frame(Frame),
    Exited(String),
    Deadline,
    Memory(u64),
    Broken(String),
}

impl Instance {
    /// Whether this instance runs `code` as it asks: the same code, entry point and memory
    /// limit (functions sharing code with another handler need an instance of their own).
    pub fn serves(&self, code: &UserCode) -> bool {
        self.digest == code.digest && self.loaded.0 == code.handler && self.loaded.1 == code.memory_mb
    }

    /// Runs one task; never longer than `code.timeout_ms`.
    pub async fn run(&mut self, code: &UserCode, task_id: u64, attempt: u32, args: &str) -> TaskRun {
        let deadline = Instant::now() + Duration::from_millis(code.timeout_ms);
        let deadline_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            + code.timeout_ms;
        let frame = Frame::Invoke {
            task_id,
            attempt,
            deadline_ms,
            args: args.to_owned(),
        }
        .encode();
        let mut log = std::mem::take(&mut self.log);
        let event = self.wait(frame, deadline, code.memory_mb, &mut log).await;
        let (outcome, keep) = match event {
            Event::Frame(Frame::Result { task_id: id, result }) if id == task_id => {
                if result.len() > MAX_RESULT_BYTES {
                    (Outcome::Failed(format!("the function's result had {} bytes; the limit is {MAX_RESULT_BYTES}", result.len())), true)
                } else if serde_json::from_str::<serde::de::IgnoredAny>(&result).is_err() {
                    (Outcome::Failed(format!("runtime_protocol: the result is not JSON: {}", clip(&result, 200))), true)
                } else {
                    (Outcome::Completed(result), true)
                }
            }
            Event::Frame(Frame::Error { task_id: id, failure, value }) if id == task_id => {
                let error = failure_text(&failure);
                match value {
                    Some(value) if value.len() > MAX_RESULT_BYTES => (
                        Outcome::Failed(format!("{error}\n(its value had {} bytes, over the limit of {MAX_RESULT_BYTES}, and was dropped)", value.len())),
                        true,
                    ),
                    Some(value) if serde_json::from_str::<serde::de::IgnoredAny>(&value).is_err() => (
                        Outcome::Failed(format!("runtime_protocol: the error's value is not JSON: {}", clip(&value, 200))),
                        true,
                    ),
                    Some(value) => (Outcome::Raised { error, value }, true),
                    None => (Outcome::Failed(error), true),
                }
            }
            Event::Frame(other) => (
                Outcome::Failed(format!("runtime_protocol: expected the answer to task {task_id}, got {}", kind_of(&other))),
                false,
            ),
            Event::Exited(how) => (Outcome::Failed(format!("crashed: the {} runtime {how}", code.language)), false),
            Event::Deadline => (
                Outcome::Failed(format!(
                    "timeout: the task ran past its {} ms limit; its runtime was killed",
                    code.timeout_ms
                )),
                false,
            ),
            Event::Memory(mb) => (
                Outcome::Failed(format!(
                    "out_of_memory: the runtime's resident memory reached {mb} MiB, over the function's {} MiB limit; it was killed",
                    code.memory_mb
                )),
                false,
            ),
            Event::Broken(e) => (Outcome::Failed(format!("runtime_protocol: {e}")), false),
        };
        TaskRun {
            outcome,
            log: log.finish(),
            keep,
        }
    }

    /// Writes `out`, then waits for one frame, reading the log meanwhile. Ends the
    /// process on anything but a frame. The log is read to its end when the frame comes:
    /// the runtime flushes before answering, so a task's output is in the pipe by then.
    async fn wait(&mut self, out: Vec<u8>, deadline: Instant, memory_mb: u64, log: &mut Log) -> Event {
        let mut written = 0;
        loop {
            if written < out.len() {
                match self.to_rt.try_write(&out[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                    // The runtime is gone: its exit shows on the other pipe.
                    Err(_) => written = out.len(),
                }
            }
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    self.drain_log(log);
                    return Event::Frame(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    self.kill();
                    return Event::Broken(e.to_string());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                self.kill();
                return Event::Deadline;
            }
            if now >= self.next_memory_check {
                let mb = resident_mb(self.pid);
                if mb > memory_mb {
                    self.kill();
                    return Event::Memory(mb);
                }
                self.next_memory_check = now + MEMORY_CHECK;
            }
            let want_write = written < out.len();
            let woke = tokio::select! {
                biased;
                r = self.from_rt.readable() => r.err(),
                r = self.to_rt.writable(), if want_write => r.err(),
                _ = readable(self.log_pipe.as_ref()) => None,
                _ = tokio::time::sleep_until(deadline.min(self.next_memory_check)) => None,
            };
            if let Some(e) = woke {
                self.kill();
                return Event::Broken(format!("watching the runtime: {e}"));
            }
            self.read_log(log);
            match self.from_rt.try_read(&mut self.buf) {
                Ok(0) => {
                    self.drain_log(log);
                    return Event::Exited(self.reap().await);
                }
                Ok(n) => self.decoder.push(&self.buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.kill();
                    return Event::Broken(format!("reading the runtime: {e}"));
                }
            }
        }
    }

    /// Reads what the log pipe holds, as far as tokio knows it is readable.
    fn read_log(&mut self, log: &mut Log) -> bool {
        let Some(pipe) = &self.log_pipe else { return false };
        let read = pipe.try_read(&mut self.buf);
        self.took_log(read, log)
    }

    /// Reads what the log pipe holds with a plain read(2) on the (non-blocking) pipe:
    /// tokio's `try_read` answers WouldBlock until the reactor has seen the pipe
    /// readable, so right after the answer frame it could miss output the runtime wrote
    /// before it.
    fn read_log_now(&mut self, log: &mut Log) -> bool {
        let Some(pipe) = &self.log_pipe else { return false };
        let read = nix::unistd::read(pipe, &mut self.buf).map_err(std::io::Error::from);
        self.took_log(read, log)
    }

    fn took_log(&mut self, read: std::io::Result<usize>, log: &mut Log) -> bool {
        match read {
            Ok(0) => {
                self.log_pipe = None;
                false
            }
            Ok(n) => {
                log.push(&self.buf[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => false,
            Err(_) => {
                self.log_pipe = None;
                false
            }
        }
    }

    /// Takes what the runtime wrote before its answer (it flushes before answering).
    fn drain_log(&mut self, log: &mut Log) {
        while self.read_log(log) {}
        while self.read_log_now(log) {}
    }

    /// The process's end, in words; kills what is left of its group first.
    async fn reap(&mut self) -> String {
        let child = match &mut self.process {
            Process::Child(child) => child,
            Process::Forked(forked) => {
                let how = tokio::time::timeout(Duration::from_secs(1), forked.ended()).await;
                self.kill();
                return how.unwrap_or_else(|_| "ended (the fork server did not say how)".to_owned());
            }
        };
        let status = tokio::time::timeout(Duration::from_millis(100), child.wait()).await;
        let status = match status {
            Ok(s) => s,
            Err(_) => {
                let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
                child.wait().await
            }
        };
        self.kill();
        match status {
            Ok(status) => describe(status),
            Err(e) => format!("ended (its status is unknown: {e})"),
        }
    }

    /// Kills the whole process group, so children the user's code started die too. The
    /// runtime's own process is reaped by its owner (or the fork server) once it is gone.
    fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        if let Process::Child(child) = &mut self.process {
            child.start_kill();
        }
    }
}

/// An exit status in words.
pub(super) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => signalled(sig),
        _ => "ended".to_owned(),
    }
}

/// Death by signal `sig`, in words.
pub(super) fn signalled(sig: i32) -> String {
    let name = Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("an unknown signal");
    format!("was killed by signal {sig} ({name})")
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
        self.live.lock().remove(&self.pid);
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// Resolves when `pipe` has something to read (or has closed); never without a pipe.
async fn readable(pipe: Option<&pipe::Receiver>) {
    match pipe {
        Some(p) => {
            let _ = p.readable().await;
        }
        None => std::future::pending().await,
    }
}

/// The process's resident memory, MiB (0 once it is gone).
fn resident_mb(pid: u32) -> u64 {
    let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096 / (1024 * 1024)
}
