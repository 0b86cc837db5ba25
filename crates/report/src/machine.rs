//! The machine a report was measured on, from /proc: CPU, cores, kernel, memory,
//! the distribution, the load average, and when.

use std::fs;
use std::time::SystemTime;

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpu: String,
    /// CPUs this process may run on.
    pub cores: usize,
    pub kernel: String,
    pub os: String,
    pub memory_kib: u64,
    /// RFC 3339, UTC.
    pub date: String,
    /// The 1-, 5- and 15-minute load averages.
    pub load: String,
    /// `release` or `debug`: a debug build of the server is much slower.
    pub build: &'static str,
}

pub fn describe() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Machine {
        cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        os: fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| os_name(&t))
            .unwrap_or_else(|| "Linux".into()),
        memory_kib: fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| mem_total_kib(&t))
            .unwrap_or(0),
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        load: load_average(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    }
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` shows them.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The 1-minute load average.
pub fn load_1min() -> f64 {
    load_average()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn os_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n").as_deref(),
            Some("AMD EPYC 7B13")
        );
        assert_eq!(
            mem_total_kib("MemTotal:       24684092 kB\nMemFree: 1 kB\n"),
            Some(24684092)
        );
        assert_eq!(
            os_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn describes_this_machine() {
        let m = describe();
        assert!(m.cores >= 1 && m.memory_kib > 0 && !m.kernel.is_empty());
        assert!(m.date.ends_with('Z'));
    }
}
