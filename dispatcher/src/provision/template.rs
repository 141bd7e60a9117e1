//! The provisioner's side of a worker template (`worker --template`, see
//! `volley_worker::template`): one worker process, started with every instance's
//! environment, that forks each new instance's worker instead of the dispatcher
//! spawning the binary. A forked instance is the dispatcher's child, as a spawned one
//! is; it is held by pid and waited for here.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use volley_worker::template::{Reply, Request, FLAG};

/// How long a fork may take before the template is given up.
const FORK_DEADLINE: Duration = Duration::from_secs(2);

/// A running worker template.
#[derive(Debug)]
pub struct Template {
    child: Child,
    conn: BufReader<UnixStream>,
}

impl Template {
    /// Starts `cmd` (the worker binary with every instance's environment) as a template.
    pub fn start(mut cmd: Command) -> std::io::Result<Self> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_read_timeout(Some(FORK_DEADLINE))?;
        cmd.arg(FLAG).stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
        let child = cmd.spawn()?;
        Ok(Self {
            child,
            conn: BufReader::new(ours),
        })
    }

    /// The template's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still there.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Forks an instance running `worker ARGS`, its standard error to `log`. An error
    /// of kind `Other` is the template's refusal; any other means it cannot serve.
    pub fn fork(&mut self, args: Vec<String>, log: Option<&Path>) -> std::io::Result<Forked> {
        let request = Request {
            args,
            log: log.map(Path::to_path_buf),
        };
        let mut line = serde_json::to_string(&request).map_err(std::io::Error::other)?;
        line.push('\n');
        (&mut self.conn.get_ref()).write_all(line.as_bytes())?;
        let mut reply = String::new();
        if self.conn.read_line(&mut reply)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the worker template has gone",
            ));
        }
        match serde_json::from_str(&reply) {
            Ok(Reply::Forked(pid)) => Ok(Forked {
                pid: Pid::from_raw(pid as i32),
                status: None,
            }),
            Ok(Reply::Failed(why)) => Err(std::io::Error::other(why)),
            Err(e) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the worker template said {reply:?}: {e}"),
            )),
        }
    }
}

impl Drop for Template {
    /// The template goes with its provisioner; the instances it forked are not its.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An instance's worker as the template forked it: a child of this process, by pid.
#[derive(Debug)]
pub struct Forked {
    pid: Pid,
    /// How it ended, once waited for.
    status: Option<String>,
}

impl Forked {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Sends it `signal`, unless it has been waited for (its pid may be another's now).
    pub fn signal(&self, signal: Signal) -> nix::Result<()> {
        match self.status {
            Some(_) => Ok(()),
            None => kill(self.pid, signal),
        }
    }

    /// How it ended if it has (and reaps it), without waiting; said as `ExitStatus` does.
    pub fn try_wait(&mut self) -> std::io::Result<Option<String>> {
        if self.status.is_none() {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).map_err(std::io::Error::from)? {
                WaitStatus::StillAlive => {}
                WaitStatus::Exited(_, code) => self.status = Some(format!("exit status: {code}")),
                WaitStatus::Signaled(_, signal, _) => {
                    self.status = Some(format!("signal: {} ({})", signal as i32, signal.as_str()));
                }
                _ => {}
            }
        }
        Ok(self.status.clone())
    }

    /// Kills it and waits for it.
    pub fn kill_and_wait(&mut self) {
        if self.status.is_none() && kill(self.pid, Signal::SIGKILL).is_ok() {
            let _ = waitpid(self.pid, None);
            self.status = Some("killed".to_owned());
        }
    }
}

/// An instance's worker process, spawned or forked.
#[derive(Debug)]
pub enum InstanceProcess {
    /// Spawned by this process (an exec of the worker binary, or a stem cell).
    Spawned(Child),
    /// Forked by the worker template.
    Forked(Forked),
}

impl InstanceProcess {
    /// Its process id.
    pub fn id(&self) -> u32 {
        match self {
            InstanceProcess::Spawned(c) => c.id(),
            InstanceProcess::Forked(f) => f.id(),
        }
    }

    /// Asks it to go (SIGTERM: the worker says goodbye); kills it if that fails.
    pub fn terminate(&mut self) {
        let sent = match self {
            InstanceProcess::Spawned(c) => kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM),
            InstanceProcess::Forked(f) => f.signal(Signal::SIGTERM),
        };
        if sent.is_err() {
            self.kill();
        }
    }

    /// Kills it (it is reaped by the next `try_wait`).
    pub fn kill(&mut self) {
        match self {
            InstanceProcess::Spawned(c) => {
                let _ = c.kill();
            }
            InstanceProcess::Forked(f) => {
                let _ = f.signal(Signal::SIGKILL);
            }
        }
    }

    /// How it ended if it has (and reaps it), without waiting.
    pub fn try_wait(&mut self) -> std::io::Result<Option<String>> {
        match self {
            InstanceProcess::Spawned(c) => Ok(c.try_wait()?.map(|s| s.to_string())),
            InstanceProcess::Forked(f) => f.try_wait(),
        }
    }

    /// Kills it and waits for it.
    pub fn kill_and_wait(&mut self) {
        match self {
            InstanceProcess::Spawned(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            InstanceProcess::Forked(f) => f.kill_and_wait(),
        }
    }
}
