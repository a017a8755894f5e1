//! Resource use read from /proc: the server processes' (and the load
//! agents') resident memory, CPU seconds and open file descriptors, and how
//! busy the whole machine was.

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct ProcStat {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
}

/// Clock ticks per second, for /proc/<pid>/stat times.
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The sum over `pids` (several gateways and workers).
pub fn sample(pids: &[u32]) -> ProcStat {
    total(&each(pids))
}

pub fn total(samples: &[ProcStat]) -> ProcStat {
    samples.iter().fold(ProcStat::default(), |sum, one| ProcStat {
        rss_bytes: sum.rss_bytes + one.rss_bytes,
        cpu_seconds: sum.cpu_seconds + one.cpu_seconds,
        open_fds: sum.open_fds + one.open_fds,
    })
}

/// One sample per pid, in order: a cluster's gateways and workers apart.
pub fn each(pids: &[u32]) -> Vec<ProcStat> {
    let ticks = ticks_per_second();
    pids.iter().map(|&pid| one(pid, ticks)).collect()
}

/// Whether `pid` is a running process (not gone, not a zombie): a server
/// that died mid-run must not be measured as one that used nothing.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// The process's command name, or its pid where it cannot be read.
pub fn name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or_else(|_| pid.to_string(), |n| n.trim().to_owned())
}

fn one(pid: u32, ticks: f64) -> ProcStat {
    let mut sample = ProcStat::default();
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        if let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        {
            sample.rss_bytes = kb * 1024;
        }
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the parenthesised command name; utime and stime
        // are the 14th and 15th fields of the whole line.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let stime: f64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            sample.cpu_seconds = (utime + stime) / ticks;
        }
    }
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        sample.open_fds = fds.count() as u64;
    }
    sample
}

/// The machine's CPU time since boot, in clock ticks over all cores.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MachineTicks {
    /// Idle and waiting for I/O.
    pub idle: u64,
    pub total: u64,
}

impl MachineTicks {
    /// The share of the time between `self` and `later` that no process
    /// used: near zero, every process (the server, the load agents, the
    /// databases) queued for a core, and latency includes that wait.
    pub fn idle_share_until(self, later: MachineTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total).filter(|&t| t > 0)?;
        Some(later.idle.saturating_sub(self.idle) as f64 / total as f64)
    }
}

/// The first line of /proc/stat: "cpu  user nice system idle iowait irq
/// softirq steal ..."; `None` where there is none (not Linux).
pub fn machine() -> Option<MachineTicks> {
    parse_machine(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_machine(stat: &str) -> Option<MachineTicks> {
    let fields: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    // Guest time is already counted in user time; the first eight are disjoint.
    let counted = fields.get(..8)?;
    Some(MachineTicks { idle: counted[3] + counted[4], total: counted.iter().sum() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_no_process_has_pid_zero() {
        assert!(alive(std::process::id()));
        assert!(!alive(0));
    }

    #[test]
    fn the_machine_line_gives_idle_and_total_ticks() {
        let stat = "cpu  100 5 50 800 20 0 10 15 0 0\ncpu0 50 2 25 400 10 0 5 8 0 0\n";
        assert_eq!(parse_machine(stat), Some(MachineTicks { idle: 820, total: 1000 }));
        assert_eq!(parse_machine("intr 1 2 3\n"), None);
    }

    #[test]
    fn the_idle_share_is_of_the_ticks_in_between() {
        let before = MachineTicks { idle: 820, total: 1000 };
        let later = MachineTicks { idle: 870, total: 1200 };
        assert_eq!(before.idle_share_until(later), Some(0.25));
        assert_eq!(before.idle_share_until(before), None);
    }
}
