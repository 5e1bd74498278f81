//! Per-worker and per-pool statistics, read by the host as one serializable value.

use serde::Serialize;

use crate::pool::Phase;

#[derive(Debug, Clone, Serialize)]
pub struct WorkerStats {
    pub index: usize,
    pub pid: u32,
    pub generation: u64,
    pub state: Phase,
    pub batches: u64,
    pub items: u64,
    pub failures: u64,
    pub restarts: u64,
    pub recycles: u64,
    pub uptime_s: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub in_flight: usize,
    pub python: String,
    pub gil: bool,
    pub sessions: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct PoolStats {
    pub workers: Vec<WorkerStats>,
    pub queued: usize,
    pub in_flight: usize,
    pub max_in_flight_seen: usize,
    pub broken: Option<String>,
    pub closed: bool,
}

/// Resident and peak resident memory of a process, in bytes, from /proc (Linux).
pub fn read_rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut rss = None;
    let mut hwm = None;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            rss = parse_kb(v);
        } else if let Some(v) = line.strip_prefix("VmHWM:") {
            hwm = parse_kb(v);
        }
    }
    Some((rss?, hwm.or(rss)?))
}

fn parse_kb(v: &str) -> Option<u64> {
    v.split_whitespace().next()?.parse::<u64>().ok().map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_rss() {
        let (rss, peak) = super::read_rss(std::process::id()).unwrap();
        assert!(rss > 0 && peak >= rss);
    }
}
