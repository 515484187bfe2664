//! A server process's costs as Linux reports them in `/proc/<pid>`.

use anyhow::Context as _;

/// Resident memory, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

/// User and system CPU time so far, in microseconds.
pub fn cpu_micros(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses:
    // utime and stime are the 12th and 13th, in ticks of 1/100 s.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a stat line")?
        .1
        .split_whitespace()
        .collect();
    let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks * 10_000)
}

/// Memory mappings (lines of `/proc/<pid>/maps`): the kernel caps them
/// at `vm.max_map_count`.
pub fn mappings(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/maps"))?
        .lines()
        .count())
}

/// Open file descriptors: capped by the process's `RLIMIT_NOFILE`.
pub fn open_files(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}
