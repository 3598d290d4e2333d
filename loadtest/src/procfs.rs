//! Owns what the benchmarks read from `/proc`: other processes' resident memory and CPU
//! time, and the machine's CPU time by state (how much a hypervisor took). Linux only;
//! a process that is gone reads as `None`.

use std::time::Duration;

/// Resident set size in bytes (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Proportional set size in bytes (`Pss` of `/proc/<pid>/smaps_rollup`): resident
/// memory with each shared page divided among the processes that map it, so the PSS
/// of 200 workers adds up to what they really cost together.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = rollup.lines().find(|l| l.starts_with("Pss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User + system CPU time the process has used so far (all its threads).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks_to_duration(ticks, clock_ticks_per_second()))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name
/// (field 2) is in parentheses and may hold spaces, so fields are counted after its `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The machine's CPU time so far, in clock ticks summed over its CPUs (the `cpu` line
/// of `/proc/stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineCpu {
    /// Every state: user, nice, system, idle, iowait, irq, softirq, steal.
    pub total: u64,
    /// Time the hypervisor ran something else while this VM had work ready.
    pub steal: u64,
}

impl MachineCpu {
    pub fn read() -> Option<MachineCpu> {
        parse_machine_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Share of the machine's CPU time since `before` that was stolen, in percent
    /// (`None` when no time passed). A loaded VM whose host is busy loses time here,
    /// which no process of the hub can show.
    pub fn steal_percent_since(&self, before: &MachineCpu) -> Option<f64> {
        let total = self.total.checked_sub(before.total)?;
        let steal = self.steal.checked_sub(before.steal)?;
        (total > 0).then(|| steal as f64 * 100.0 / total as f64)
    }
}

fn parse_machine_cpu(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    (ticks.len() == 8).then(|| MachineCpu {
        total: ticks.iter().sum(),
        steal: ticks[7],
    })
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_second.max(1))
}

fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_line_gives_total_and_steal() {
        let stat = "cpu  536529 0 71778 388173 3234 0 11586 24181 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let before = parse_machine_cpu(stat).expect("parsed");
        assert_eq!(before.total, 536529 + 71778 + 388173 + 3234 + 11586 + 24181);
        assert_eq!(before.steal, 24181);
        let after = MachineCpu {
            total: before.total + 1000,
            steal: before.steal + 150,
        };
        assert_eq!(after.steal_percent_since(&before), Some(15.0));
        assert_eq!(before.steal_percent_since(&before), None);
        assert_eq!(parse_machine_cpu("cpu  1 2 3\n"), None);
        assert_eq!(parse_machine_cpu("intr 1 2 3\n"), None);
    }

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let stat = "4242 (mcp (gate) way) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1500 250 0 0 20 0 3 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(1750));
        assert_eq!(ticks_to_duration(1750, 100), Duration::from_millis(17_500));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_memory_and_cpu() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).is_some_and(|b| b > 1024 * 1024));
        assert!(pss_bytes(pid).is_some_and(|b| b > 0 && Some(b) <= rss_bytes(pid)));
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_time(pid).is_some());
        assert_eq!(rss_bytes(u32::MAX), None);
    }
}
