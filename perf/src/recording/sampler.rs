//! Process telemetry: CPU time and resident memory of every process a run involves
//! (dispatcher, workers, Redis, the load generator itself), sampled from `/proc` at a
//! fixed rate on one thread, so a run can say what it cost and when.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default sampling rate.
pub const DEFAULT_HZ: f64 = 10.0;

/// One reading of one process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessSample {
    /// When, in Unix milliseconds.
    pub unix_ms: u64,
    /// dispatcher, worker, redis or client.
    pub role: String,
    /// The process.
    pub pid: u32,
    /// Its CPU time so far (user + system), in milliseconds.
    pub cpu_ms: f64,
    /// Its resident set size.
    pub rss_bytes: u64,
}

/// What one role cost over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoleCost {
    /// Processes seen in this role.
    pub processes: usize,
    /// CPU time they spent during the run, in seconds.
    pub cpu_s: f64,
    /// The largest resident set any one of them reached.
    pub peak_rss_bytes: u64,
}

#[derive(Debug)]
struct Tracked {
    role: String,
    pid: u32,
}

#[derive(Debug, Default)]
struct State {
    /// Processes still alive; one that can no longer be read has exited and is dropped.
    tracked: Vec<Tracked>,
    samples: Vec<ProcessSample>,
    /// Every process this run started, alive or not: its CPU counts from zero, not
    /// from its first sample.
    launched: Vec<u32>,
}

/// Adds processes to a running sampler; cheap to clone into whatever starts them.
#[derive(Debug, Clone)]
pub struct Tracker {
    state: Arc<Mutex<State>>,
}

/// A sampling thread; [`Sampler::finish`] stops it and hands over what it read.
#[derive(Debug)]
pub struct Sampler {
    tracker: Tracker,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Duration>>,
    started: SystemTime,
}

/// Everything a sampler read.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// Every reading, in time order.
    pub samples: Vec<ProcessSample>,
    /// What sampling itself cost, in CPU time.
    pub sampler_cpu: Duration,
    /// How long it ran.
    pub wall: Duration,
    launched: Vec<u32>,
}

impl Sampler {
    /// Starts sampling at `hz` readings a second; this process is tracked as `client`.
    pub fn start(hz: f64) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs_f64(1.0 / hz.clamp(0.1, 1000.0));
        let mut sampler = Self {
            tracker: Tracker { state: state.clone() },
            state: state.clone(),
            stop: stop.clone(),
            thread: None,
            started: SystemTime::now(),
        };
        sampler.tracker.track("client", std::process::id(), false);
        sampler.thread = std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || {
                let mut next = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    sample_all(&state);
                    next += period;
                    let now = std::time::Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                sample_all(&state);
                thread_cpu()
            })
            .map_err(|e| eprintln!("warning: no process telemetry for this run (cannot start its thread: {e})"))
            .ok();
        sampler
    }

    /// The handle that adds processes.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Stops sampling and returns every reading.
    pub fn finish(mut self) -> Telemetry {
        self.stop.store(true, Ordering::Relaxed);
        let sampler_cpu = self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default();
        let state = std::mem::take(&mut *self.state.lock());
        Telemetry {
            samples: state.samples,
            sampler_cpu,
            wall: self.started.elapsed().unwrap_or_default(),
            launched: state.launched,
        }
    }
}

impl Tracker {
    /// Follows `pid` in `role` from now on; `launched` when this run started it, so its
    /// CPU counts from zero. A process that exits is simply no longer read.
    pub fn track(&self, role: &str, pid: u32, launched: bool) {
        let mut state = self.state.lock();
        if state.tracked.iter().any(|t| t.pid == pid) {
            return;
        }
        let t = Tracked {
            role: role.to_owned(),
            pid,
        };
        // Read it once now, so even a short-lived process leaves a sample.
        if let Some(sample) = read(&t, unix_ms()) {
            state.samples.push(sample);
            if launched {
                state.launched.push(pid);
            }
            state.tracked.push(t);
        }
    }

    /// Follows a cluster's dispatcher and workers.
    pub fn track_cluster(&self, cluster: &volley_testbed::Cluster) {
        if let Some(pid) = cluster.dispatcher_pid() {
            self.track("dispatcher", pid, true);
        }
        for pid in cluster.worker_pids() {
            self.track("worker", pid, true);
        }
    }

    /// Follows the processes a running dispatcher reports (`ClusterInfo`) that live on
    /// this host: itself and its workers. Processes elsewhere cannot be read from here.
    pub fn track_reported(&self, info: &volley_proto::api::ClusterInfoResponse) {
        let here = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        if info.pid != 0 && info.host == here {
            self.track("dispatcher", info.pid, false);
        }
        for w in &info.workers {
            if w.pid != 0 && w.host == here && w.name != "local" {
                self.track("worker", w.pid, false);
            }
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn read(t: &Tracked, unix_ms: u64) -> Option<ProcessSample> {
    let (cpu, rss) = volley_testbed::procstat::cpu_and_rss(t.pid).ok()?;
    Some(ProcessSample {
        unix_ms,
        role: t.role.clone(),
        pid: t.pid,
        cpu_ms: cpu.as_secs_f64() * 1000.0,
        rss_bytes: rss,
    })
}

fn sample_all(state: &Mutex<State>) {
    let now = unix_ms();
    let mut state = state.lock();
    let State { tracked, samples, .. } = &mut *state;
    tracked.retain(|t| match read(t, now) {
        Some(sample) => {
            samples.push(sample);
            true
        }
        None => false,
    });
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

impl Telemetry {
    /// CPU and peak memory per role over the run.
    pub fn by_role(&self) -> BTreeMap<String, RoleCost> {
        // Per process: first and last CPU reading and peak RSS.
        let mut per_pid: BTreeMap<u32, (&str, f64, f64, u64)> = BTreeMap::new();
        for s in &self.samples {
            let e = per_pid.entry(s.pid).or_insert((s.role.as_str(), s.cpu_ms, s.cpu_ms, 0));
            e.2 = s.cpu_ms;
            e.3 = e.3.max(s.rss_bytes);
        }
        let mut roles: BTreeMap<String, RoleCost> = BTreeMap::new();
        for (pid, (role, first, last, peak)) in per_pid {
            let base = if self.launched.contains(&pid) { 0.0 } else { first };
            let r = roles.entry(role.to_owned()).or_default();
            r.processes += 1;
            r.cpu_s += (last - base).max(0.0) / 1000.0;
            r.peak_rss_bytes = r.peak_rss_bytes.max(peak);
        }
        roles
    }

    /// The sampler's own CPU as a fraction of one core.
    pub fn sampler_share(&self) -> f64 {
        self.sampler_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process_and_a_child_it_launched() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        let sampler = Sampler::start(50.0);
        sampler.tracker().track("worker", child.id(), true);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(150) {}
        let t = sampler.finish();
        let _ = child.kill();
        let _ = child.wait();
        let roles = t.by_role();
        assert_eq!(roles["client"].processes, 1);
        assert_eq!(roles["worker"].processes, 1);
        assert!(roles["client"].cpu_s > 0.0, "{roles:?}");
        assert!(roles["client"].peak_rss_bytes > 1 << 20);
        // At least the first reading, one per period after, and the last.
        let client = t.samples.iter().filter(|s| s.role == "client").count();
        assert!(client >= 3, "{client} samples");
        assert!(t.sampler_share() < 0.5);
    }
}
