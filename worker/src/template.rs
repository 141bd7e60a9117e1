//! A worker template: a worker process started ahead of any instance, holding no
//! function, no runtime and no thread, that forks each new instance's worker on its
//! provisioner's request (`worker --template`; a zygote, as SOCK's and Android's).
//!
//! A forked instance skips what an exec of the worker costs on every cold start — the
//! exec itself, the dynamic loader's relocations (a copy-on-write fault per page of
//! `.data.rel.ro`), libc's and std's start, the logger's set-up — and begins where
//! `main` would, with its command line parsed by the template (a command line the worker
//! would refuse is refused to the provisioner, with clap's message), and builds its
//! event loop. The template never builds one: an
//! epoll instance or a thread forked into every instance would be shared by all of them.
//!
//! What instances share: the template's memory image as it was at its start (the
//! binary's pages, the environment its provisioner gave it, which is every instance's),
//! and so their address-space layout. Nothing of any function passes through it, and a
//! runtime an instance starts is `posix_spawn`ed afresh (its own layout, a scrubbed
//! environment).
//!
//! Each instance is forked with `CLONE_PARENT`: it is its provisioner's child, as a
//! spawned one is, so the provisioner waits for it and learns how it ended, and it
//! outlives the template. (A plain fork would make the template its parent, and every
//! instance would leave with it under `--exit-with-parent`.) The raw `clone` bypasses
//! glibc's `fork`, so glibc's record of the instance's main thread keeps the template's
//! thread id: Rust's std and tokio read the id from the kernel and are unaffected.
//!
//! The protocol, one JSON object per line on the template's standard input (a Unix
//! socket; its replies go back on it):
//! - in: `{"args": [...], "log": PATH|null}` — fork an instance with this command line
//!   (without the program's name), its standard error to PATH (else `/dev/null`);
//! - out: `{"forked": PID}` or `{"failed": WHY}`, one per request, in order.
//!
//! It exits when its input ends (its provisioner has gone).
#![allow(unsafe_code)]

use crate::cli::Cli;
use clap::Parser;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// The flag that makes a worker a template (first argument, before anything else).
pub const FLAG: &str = "--template";

/// A request to the template.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// The instance's command line, without the program's name.
    pub args: Vec<String>,
    /// Where its standard error goes (`None`: `/dev/null`).
    pub log: Option<std::path::PathBuf>,
}

/// What the template says to a request.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    /// The instance runs, as this process (a child of the template's parent).
    Forked(u32),
    /// The request could not be served.
    Failed(String),
}

impl Reply {
    /// The reply as its line.
    fn line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| r#"{"failed":"unprintable reply"}"#.to_owned());
        line.push('\n');
        line
    }
}

/// In a forked instance: its command line, parsed, and the moment it began.
#[derive(Debug)]
pub struct Forked {
    /// The command line, parsed by the template before the fork: there the parser's
    /// code and data are warm, in a new process every page of them would fault.
    pub cli: Cli,
    /// When the fork returned in the instance: its `main`.
    pub began: Instant,
    /// Its parent, the template's, as the template knew it before the fork: if that one
    /// is gone by the time the instance looks, the instance was orphaned at birth.
    pub parent: nix::unistd::Pid,
}

/// Serves requests on standard input until it ends. Returns `Ok(Some(_))` in each forked
/// instance (which then runs as a worker), `Ok(None)` in the template once its input
/// ends, and an error if the template cannot go on.
pub fn serve() -> std::io::Result<Option<Forked>> {
    crate::runtime::programs::find_all(&crate::runtime::Interpreters::default());
    let input = UnixStream::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let mut reader = BufReader::new(input);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                send(reader.get_ref(), &Reply::Failed(format!("not a request: {e}")))?;
                continue;
            }
        };
        let args = std::iter::once(OsString::from("worker")).chain(request.args.iter().map(OsString::from));
        let cli = match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(e) => {
                send(reader.get_ref(), &Reply::Failed(e.to_string()))?;
                continue;
            }
        };
        let parent = nix::unistd::getppid();
        let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
        // SAFETY: clone without CLONE_VM and with no new stack is a fork: the child gets
        // a copy of this process, which has one thread (the template starts none), so
        // the child may run anything.
        let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
        match pid {
            -1 => send(
                reader.get_ref(),
                &Reply::Failed(format!("clone: {}", std::io::Error::last_os_error())),
            )?,
            0 => {
                let began = Instant::now();
                // Its descriptors are closed below with every other of the template's.
                std::mem::forget(reader);
                become_instance(request.log.as_deref())?;
                return Ok(Some(Forked { cli, began, parent }));
            }
            pid => send(reader.get_ref(), &Reply::Forked(pid as u32))?,
        }
    }
}

fn send(out: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut out = out;
    out.write_all(reply.line().as_bytes())
}

/// In the child: leaves the template's descriptors behind and points standard input at
/// `/dev/null` and standard error at `log`.
fn become_instance(log: Option<&std::path::Path>) -> std::io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    let err = match log {
        Some(path) => std::fs::File::create(path)?,
        None => std::fs::OpenOptions::new().write(true).open("/dev/null")?,
    };
    // SAFETY: dup2 onto the standard descriptors, from files we hold.
    unsafe {
        if libc::dup2(null.as_raw_fd(), 0) < 0 || libc::dup2(err.as_raw_fd(), 2) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    drop((null, err));
    // Every other descriptor is the template's (its connection to its provisioner).
    // SAFETY: close_range takes a range and flags; it closes only descriptors.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_one_line_each_and_read_back() {
        for reply in [Reply::Forked(42), Reply::Failed("clone: no memory\nat all".into())] {
            let line = reply.line();
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert_eq!(serde_json::from_str::<Reply>(&line).expect("parses"), reply);
        }
    }
}
