//! The floor's generator: the schedule paced the way the load study's pacer paces it (a
//! `timerfd` set [`DEFAULT_SLACK`] after the next message's time, every message due by
//! then in one write), replies read as they come, on one thread of blocking `poll`.

use super::roles::cpu;
use super::{Cpu, MESSAGE};
use crate::stats::percentile;
use crate::studies::load::pacer::DEFAULT_SLACK;
use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::UsageWho;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// How long the generator waits for a reply before it gives the run up.
const STALL: Duration = Duration::from_secs(10);

/// What the generator saw.
#[derive(Debug, Clone)]
pub struct Run {
    /// Round trip from the intended send, median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// This thread's CPU over the run.
    pub cpu: Cpu,
}

/// Sends message `i` at `schedule[i]` to the relay at `relay` and waits for every one
/// back.
pub fn run(relay: &str, schedule: &[Duration]) -> anyhow::Result<Run> {
    let mut stream = TcpStream::connect(relay).with_context(|| format!("connecting to the relay at {relay}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC).context("timerfd")?;
    let n = schedule.len();
    let mut latency_ms = vec![f64::NAN; n];
    let (mut next, mut back) = (0, 0);
    let mut armed = None;
    let mut out = Vec::new();
    let mut input = vec![0u8; 64 * 1024];
    let mut partial = Vec::with_capacity(MESSAGE);
    let cpu_start = cpu(UsageWho::RUSAGE_THREAD)?;
    let start = Instant::now() + Duration::from_millis(20);
    let mut last_progress = start;
    while back < n {
        let now = Instant::now();
        out.clear();
        while next < n && start + schedule[next] <= now {
            out.extend_from_slice(&(next as u64).to_le_bytes());
            out.extend_from_slice(&[0u8; MESSAGE - 8]);
            next += 1;
        }
        if !out.is_empty() {
            stream.write_all(&out).context("writing to the relay")?;
            last_progress = now;
        }
        if next < n && armed != Some(next) {
            let wait = (start + schedule[next] + DEFAULT_SLACK).saturating_duration_since(now);
            timer
                .set(
                    Expiration::OneShot(TimeSpec::from_duration(wait.max(Duration::from_nanos(1)))),
                    TimerSetTimeFlags::empty(),
                )
                .context("setting the timer")?;
            armed = Some(next);
        }
        let (readable, fired) = {
            let mut fds = [
                PollFd::new(stream.as_fd(), PollFlags::POLLIN),
                PollFd::new(timer.as_fd(), PollFlags::POLLIN),
            ];
            poll(&mut fds, PollTimeout::from(1000u16)).context("poll")?;
            let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if fired {
            let mut expirations = [0u8; 8];
            nix::unistd::read(&timer, &mut expirations).context("reading the timer")?;
            armed = None;
        }
        if !readable {
            anyhow::ensure!(
                next == back || last_progress.elapsed() < STALL,
                "no message came back for {STALL:?}: {back} of {next} sent back (is the floor's echo running?)"
            );
        } else {
            last_progress = Instant::now();
            let got = stream.read(&mut input).context("reading the relay")?;
            anyhow::ensure!(got > 0, "the relay hung up with {} of {n} messages back", back);
            let at = Instant::now();
            for &byte in &input[..got] {
                partial.push(byte);
                if partial.len() == MESSAGE {
                    let mut index = [0u8; 8];
                    index.copy_from_slice(&partial[..8]);
                    let i = u64::from_le_bytes(index) as usize;
                    anyhow::ensure!(
                        i < n && latency_ms[i].is_nan(),
                        "message {i} came back twice or never left"
                    );
                    latency_ms[i] = at.saturating_duration_since(start + schedule[i]).as_secs_f64() * 1e3;
                    back += 1;
                    partial.clear();
                }
            }
        }
    }
    let cpu_end = cpu(UsageWho::RUSAGE_THREAD)?;
    latency_ms.sort_by(f64::total_cmp);
    Ok(Run {
        p50_ms: percentile(&latency_ms, 0.5).unwrap_or(f64::NAN),
        p99_ms: percentile(&latency_ms, 0.99).unwrap_or(f64::NAN),
        cpu: Cpu {
            user: cpu_end.user.saturating_sub(cpu_start.user),
            sys: cpu_end.sys.saturating_sub(cpu_start.sys),
        },
    })
}
