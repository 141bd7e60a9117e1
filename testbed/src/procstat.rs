//! CPU time and resident memory of a process, read from `/proc` (no shelling out): what a
//! benchmark charges each role (dispatcher, workers, client) per task. CPU time is the
//! honest figure on a shared machine: wall time swings with the neighbours, CPU time
//! barely does.

use std::time::Duration;

/// CPU time (user + system) of process `pid` so far.
pub fn cpu_time(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (utime, stime) = parse_times(&stat)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected /proc/{pid}/stat")))?;
    let per_second = clock_ticks();
    Ok(Duration::from_secs_f64((utime + stime) as f64 / per_second as f64))
}

/// CPU time and resident set size of `pid`, as the telemetry sampler reads them ten times
/// a second. CPU time is the larger of two lower bounds: the sum of every live thread's
/// `schedstat` (nanoseconds, but blind to threads that have exited) and `stat`'s
/// utime + stime (which counts exited threads, in 10 ms clock ticks). A small process
/// that `stat` alone would round to zero is read to the microsecond.
pub fn cpu_and_rss(pid: u32) -> std::io::Result<(Duration, u64)> {
    let (ticks, rss) = stat_cpu_and_rss(pid)?;
    Ok((ticks.max(threads_cpu(pid).unwrap_or_default()), rss))
}

/// The summed `schedstat` run time of every live thread of `pid`.
fn threads_cpu(pid: u32) -> std::io::Result<Duration> {
    let mut ns: u64 = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(entry) = entry else { continue };
        let mut path = entry.path();
        path.push("schedstat");
        if let Ok(text) = std::fs::read_to_string(&path) {
            ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(Duration::from_nanos(ns))
}

/// CPU time in clock ticks and RSS, from one read of `/proc/<pid>/stat`.
fn stat_cpu_and_rss(pid: u32) -> std::io::Result<(Duration, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected /proc/{pid}/stat"));
    let (utime, stime) = parse_times(&stat).ok_or_else(bad)?;
    let rss_pages: u64 = stat[stat.rfind(')').ok_or_else(bad)? + 1..]
        .split_whitespace()
        .nth(21)
        .and_then(|p| p.parse().ok())
        .ok_or_else(bad)?;
    let cpu = Duration::from_secs_f64((utime + stime) as f64 / clock_ticks() as f64);
    Ok((cpu, rss_pages * page_size()))
}

/// Resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected /proc/{pid}/statm")))?;
    Ok(pages * page_size())
}

/// utime and stime (fields 14 and 15) in clock ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn parse_times(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn clock_ticks() -> u64 {
    sysconf(nix::unistd::SysconfVar::CLK_TCK, 100)
}

fn page_size() -> u64 {
    sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096)
}

/// A positive system constant, or `default` if the system will not say.
fn sysconf(var: nix::unistd::SysconfVar, default: u64) -> u64 {
    nix::unistd::sysconf(var)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(default)
}

/// The whole machine's CPU time so far, in clock ticks over every CPU: all of it, and what
/// the hypervisor ran elsewhere while a virtual CPU wanted to run (steal). On a shared VM
/// a benchmark's worst moments are often the host's, and steal says when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineTimes {
    /// Every state's ticks: user, nice, system, idle, iowait, irq, softirq, steal.
    pub total: u64,
    /// Steal's ticks.
    pub steal: u64,
}

impl MachineTimes {
    /// The aggregate `cpu` line of `/proc/stat`.
    pub fn now() -> std::io::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        parse_machine(&stat)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no cpu line in /proc/stat"))
    }

    /// The share of the machine's CPU time stolen between `self` and `later`, in percent.
    pub fn steal_pct_until(&self, later: &Self) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        later.steal.saturating_sub(self.steal) as f64 * 100.0 / total as f64
    }
}

/// The first eight fields of the `cpu` line (guest time is already counted in user).
fn parse_machine(stat: &str) -> Option<MachineTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    (fields.len() == 8).then(|| MachineTimes {
        total: fields.iter().sum(),
        steal: fields[7],
    })
}

/// The children of `pid`, whichever of its threads started them (a worker's runtimes are
/// started by its slot threads); empty once it is gone.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_found_after_an_awkward_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 1 2 3";
        assert_eq!(parse_times(stat), Some((250, 75)));
        assert_eq!(parse_times("42 (x"), None);
    }

    #[test]
    fn steal_is_read_from_the_cpu_line_and_shared_over_an_interval() {
        let before = parse_machine("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\n");
        let before = before.expect("a cpu line");
        assert_eq!(before, MachineTimes { total: 1000, steal: 40 });
        let later = MachineTimes { total: 1200, steal: 50 };
        assert_eq!(before.steal_pct_until(&later), 5.0);
        assert_eq!(before.steal_pct_until(&before), 0.0);
        assert_eq!(parse_machine("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_machine("cpu  1 2 3\n"), None);
        assert!(MachineTimes::now().expect("/proc/stat").total > 0);
    }

    #[test]
    fn this_process_has_spent_some_cpu_and_holds_memory() {
        let me = std::process::id();
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        assert!(cpu_time(me).expect("stat") > Duration::ZERO);
        assert!(rss_bytes(me).expect("statm") > 1 << 20);
        let (cpu, rss) = cpu_and_rss(me).expect("stat");
        assert!(cpu > Duration::ZERO && rss > 1 << 20);
        // Threads' schedstat sees what 10 ms ticks cannot.
        assert!(threads_cpu(me).expect("schedstat") > Duration::ZERO);
    }
}
