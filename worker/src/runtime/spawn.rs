//! Starting a runtime process with `posix_spawn` (vfork and exec), not fork and exec.
//!
//! A fork copies the worker's page tables before the exec throws them away: measured on
//! the 2-core VM, a worker of 8 MiB paid 0.4–0.5 ms more per start than a spawn, one of
//! 64 MiB 1.6 ms more, and that time sat inside every language's start. `std`'s `Command`
//! spawns this way only when no descriptor needs moving, and a runtime's frames travel
//! on descriptors 3 and 4, so this module asks libc for it directly. It is the only place
//! in the workspace that allows `unsafe`: each block is one libc call on values it owns.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use tokio::io::unix::AsyncFd;

/// What a runtime process is started with. Its environment is exactly `env`, it leads a
/// process group of its own, its signal mask is empty and its signals' actions are the
/// defaults (the worker ignores SIGPIPE; user code must not inherit that).
#[derive(Debug)]
pub struct Spec<'a> {
    /// The executable: a path, or a name looked for on the worker's `PATH` (which
    /// runtimes are given as theirs).
    pub program: &'a Path,
    /// Its arguments, without the program's name.
    pub args: Vec<&'a OsStr>,
    /// Its whole environment.
    pub env: Vec<(&'a OsStr, &'a OsStr)>,
    /// Its working directory.
    pub dir: &'a Path,
    /// Descriptors it gets, as (ours, its number); every other descriptor of the worker
    /// is close-on-exec and stays behind. Standard input is `/dev/null` unless mapped.
    pub fds: Vec<(&'a OwnedFd, RawFd)>,
}

/// A runtime process this worker spawned: its end is learnt through a pidfd, so waiting
/// needs no SIGCHLD handler and no thread.
pub struct Spawned {
    pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

fn check(ret: libc::c_int) -> io::Result<()> {
    match ret {
        0 => Ok(()),
        err => Err(io::Error::from_raw_os_error(err)),
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a runtime's command"))
}

/// Attributes and file actions, destroyed when dropped.
struct Actions {
    attr: libc::posix_spawnattr_t,
    files: libc::posix_spawn_file_actions_t,
}

impl Actions {
    fn new() -> io::Result<Box<Self>> {
        // SAFETY: both are plain C structs that their init functions fill in.
        let mut me = Box::new(unsafe { std::mem::zeroed::<Self>() });
        // SAFETY: `me` is ours and lives as long as the pointers are used.
        unsafe {
            check(libc::posix_spawnattr_init(&mut me.attr))?;
            if let Err(e) = check(libc::posix_spawn_file_actions_init(&mut me.files)) {
                libc::posix_spawnattr_destroy(&mut me.attr);
                return Err(e);
            }
        }
        Ok(me)
    }
}

impl Drop for Actions {
    fn drop(&mut self) {
        // SAFETY: both were initialised in `new`, and are destroyed once.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.files);
            libc::posix_spawnattr_destroy(&mut self.attr);
        }
    }
}

impl Spawned {
    /// Starts `spec`. Must be called inside a tokio runtime (the pidfd registers with it).
    pub fn start(spec: &Spec<'_>) -> io::Result<Self> {
        let program = c_string(spec.program.as_os_str().as_bytes())?;
        let mut argv = vec![program.clone()];
        for a in &spec.args {
            argv.push(c_string(a.as_bytes())?);
        }
        let mut envp = Vec::with_capacity(spec.env.len());
        for (k, v) in &spec.env {
            envp.push(c_string(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
        let dir = c_string(spec.dir.as_os_str().as_bytes())?;
        let null = c_string(b"/dev/null")?;
        // Each source first moves above every target, so no dup2 overwrites a source
        // that a later one still needs; these copies are close-on-exec and ours to drop.
        let above = spec.fds.iter().map(|(_, n)| *n).max().unwrap_or(2).max(2) + 1;
        let mut moved = Vec::with_capacity(spec.fds.len());
        for (fd, target) in &spec.fds {
            // SAFETY: fcntl on a descriptor we borrow; the new one is owned at once.
            let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, above) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `copy` is a fresh descriptor nobody else owns.
            moved.push((unsafe { OwnedFd::from_raw_fd(copy) }, *target));
        }
        let mut actions = Actions::new()?;
        let flags = libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
        // SAFETY: every call is on the initialised `actions`, with C strings and
        // descriptors that outlive the posix_spawn below.
        let pid = unsafe {
            // An ignored signal stays ignored across exec, a handled one does not: of the
            // worker's, only SIGPIPE is ignored. (Every signal here cost the child one
            // more sigaction before its exec.)
            let mut ignored: libc::sigset_t = std::mem::zeroed();
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut ignored);
            libc::sigaddset(&mut ignored, libc::SIGPIPE);
            libc::sigemptyset(&mut none);
            check(libc::posix_spawnattr_setflags(
                &mut actions.attr,
                flags as libc::c_short,
            ))?;
            check(libc::posix_spawnattr_setpgroup(&mut actions.attr, 0))?;
            check(libc::posix_spawnattr_setsigmask(&mut actions.attr, &none))?;
            check(libc::posix_spawnattr_setsigdefault(&mut actions.attr, &ignored))?;
            if !spec.fds.iter().any(|(_, n)| *n == 0) {
                check(libc::posix_spawn_file_actions_addopen(
                    &mut actions.files,
                    0,
                    null.as_ptr(),
                    libc::O_RDONLY,
                    0,
                ))?;
            }
            for (fd, target) in &moved {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut actions.files,
                    fd.as_raw_fd(),
                    *target,
                ))?;
            }
            check(libc::posix_spawn_file_actions_addchdir_np(
                &mut actions.files,
                dir.as_ptr(),
            ))?;
            let mut argv_p: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
            argv_p.push(std::ptr::null_mut());
            let mut envp_p: Vec<*mut libc::c_char> = envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
            envp_p.push(std::ptr::null_mut());
            let mut pid: libc::pid_t = 0;
            let search = !spec.program.as_os_str().as_bytes().contains(&b'/');
            let spawn = if search { libc::posix_spawnp } else { libc::posix_spawn };
            check(spawn(
                &mut pid,
                program.as_ptr(),
                &actions.files,
                &actions.attr,
                argv_p.as_ptr(),
                envp_p.as_ptr(),
            ))?;
            pid
        };
        drop(moved);
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            kill_and_reap(pid);
            return Err(e);
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        // SAFETY: the pidfd is owned by the AsyncFd and closed only when it is dropped.
        let pidfd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
            .inspect_err(|_| kill_and_reap(pid))?;
        Ok(Self {
            pid,
            pidfd,
            status: None,
        })
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Its exit status if it has ended (and reaps it), without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            let mut raw: libc::c_int = 0;
            // SAFETY: waits for our own child, writing into a local.
            let got = unsafe { libc::waitpid(self.pid, &mut raw, libc::WNOHANG) };
            match got {
                0 => return Ok(None),
                p if p == self.pid => self.status = Some(ExitStatus::from_raw(raw)),
                _ => return Err(io::Error::last_os_error()),
            }
        }
        Ok(self.status)
    }

    /// Waits for it to end, and reaps it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            let mut ready = self.pidfd.readable().await?;
            ready.clear_ready();
        }
    }

    /// Sends it SIGKILL (its group is the owner's to kill).
    pub fn start_kill(&mut self) {
        if self.status.is_none() {
            // SAFETY: signalling our own, not yet reaped, child: its pid cannot be reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Spawned {
    /// Kills it if it is alive, and reaps it: now if it is gone, else on a thread of its
    /// own once SIGKILL has ended it (nothing async may block on it).
    fn drop(&mut self) {
        if matches!(self.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.pid;
        let reaper = std::thread::Builder::new()
            .name("volley-reap".into())
            .spawn(move || kill_and_reap(pid));
        if reaper.is_err() {
            kill_and_reap(pid);
        }
    }
}

/// SIGKILL to a child of ours not yet reaped, then waits for its end.
fn kill_and_reap(pid: i32) {
    // SAFETY: signalling and waiting for our own child; its pid cannot be reused before
    // this wait reaps it.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}
