//! What Linux's `/proc` says about a process: its memory (`/proc/PID/status`), the CPU time
//! it has used (`/proc/PID/stat`), and that of a process tree (a database server: the
//! postmaster and its backends). Parsing is separate from reading, so it is tested on fixed
//! text.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kb: u64,
    /// `VmHWM`: the most it was ever resident (the peak).
    pub hwm_kb: u64,
}

impl Memory {
    /// `VmRSS` in MiB.
    pub fn rss_mb(&self) -> f64 {
        self.rss_kb as f64 / 1024.0
    }

    /// `VmHWM` in MiB.
    pub fn hwm_mb(&self) -> f64 {
        self.hwm_kb as f64 / 1024.0
    }
}

/// VmRSS and VmHWM of `pid`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_memory(&status).with_context(|| format!("no VmRSS or VmHWM in /proc/{pid}/status"))
}

/// VmRSS of `pid` in MiB; `None` when it cannot be read (the process is gone).
pub fn rss_mb(pid: u32) -> Option<f64> {
    memory(pid).ok().map(|m| m.rss_mb())
}

/// VmRSS and VmHWM from the text of `/proc/PID/status`; `None` if either is missing.
pub fn parse_memory(status: &str) -> Option<Memory> {
    Some(Memory {
        rss_kb: status_kb(status, "VmRSS")?,
        hwm_kb: status_kb(status, "VmHWM")?,
    })
}

/// A `Field:   1234 kB` line of `/proc/PID/status`.
fn status_kb(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time (user + system) `pid` has used so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let ticks = parse_stat(&read_stat(pid)?)
        .context("malformed /proc/<pid>/stat")?
        .own_ticks();
    Ok(ticks_to_duration(ticks))
}

/// CPU time (user + system) a process tree has used so far: `root`, its children that exited
/// (which the kernel adds to `root` once it reaps them) and those still running. For a
/// PostgreSQL server, whose postmaster forks a backend per connection.
pub fn tree_cpu_time(root: u32) -> anyhow::Result<Duration> {
    let stat = parse_stat(&read_stat(root)?).context("malformed /proc/<pid>/stat")?;
    let mut ticks = stat.own_ticks() + stat.reaped_children_ticks();
    for entry in std::fs::read_dir("/proc")
        .context("reading /proc")?
        .flatten()
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may exit between the listing and the read: skip it.
        let Ok(text) = read_stat(pid) else { continue };
        if let Some(child) = parse_stat(&text).filter(|s| s.parent == root) {
            ticks += child.own_ticks() + child.reaped_children_ticks();
        }
    }
    Ok(ticks_to_duration(ticks))
}

fn read_stat(pid: u32) -> anyhow::Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Duration::from_micros(ticks * 1_000_000 / per_second)
}

/// The fields of `/proc/PID/stat` we read, CPU times in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    parent: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

impl Stat {
    fn own_ticks(&self) -> u64 {
        self.utime + self.stime
    }

    fn reaped_children_ticks(&self) -> u64 {
        self.cutime + self.cstime
    }
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the file (index 0 here), ppid 4, utime 14 (index
    // 11), stime 15, cutime 16, cstime 17.
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        parent: fields.get(1)?.parse().ok()?,
        utime: field(11)?,
        stime: field(12)?,
        cutime: field(13)?,
        cstime: field(14)?,
    })
}

/// utime + stime, in clock ticks.
#[cfg(test)]
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    parse_stat(stat).map(|s| s.own_ticks())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resident_and_peak_memory() {
        let status = "Name:\tcoordinator\nVmPeak:\t  900000 kB\nVmHWM:\t   81920 kB\n\
                      VmRSS:\t   51200 kB\nRssAnon:\t 40000 kB\nThreads:\t4\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kb: 51200,
                hwm_kb: 81920
            })
        );
        assert_eq!(parse_memory("Name:\tx\nVmRSS:\t 1 kB\n"), None);
        assert_eq!(parse_memory(status).unwrap().rss_mb(), 50.0);
        // This very process has both.
        let own = memory(std::process::id()).unwrap();
        assert!(own.rss_kb > 0 && own.hwm_kb >= own.rss_kb, "{own:?}");
        assert!(rss_mb(std::process::id()).is_some_and(|mb| mb > 0.0));
    }

    #[test]
    fn reads_cpu_ticks_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (runtime) w) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    130 27 0 0 20 0 4 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(157));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
        assert!(cpu_time(std::process::id()).is_ok());
        let parsed = parse_stat(stat).unwrap();
        assert_eq!((parsed.parent, parsed.reaped_children_ticks()), (1, 0));
    }

    #[test]
    fn a_tree_counts_its_children() {
        // This test process's tree: at least its own time.
        let own = cpu_time(std::process::id()).unwrap();
        let tree = tree_cpu_time(std::process::id()).unwrap();
        assert!(tree >= own, "{tree:?} < {own:?}");
    }
}
