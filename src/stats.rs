//! Per-worker and per-pool statistics, read by the host as one serializable value.

use std::sync::atomic::{AtomicU64, Ordering};

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
    pub transfers: TransferStats,
}

/// Payloads by the path they took, since the pool started. "sent" is host → worker (items, call
/// arguments), "received" is worker → host (results). A payload whose large buffers travelled in a
/// shared-memory segment counts under `shared` (with the segment's bytes, which for a reused segment can exceed
/// its buffers' by at most their size plus 1 MiB; its small in-band pickle is not counted); every other payload under `inband`
/// (with its frame's bytes).
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq, Eq)]
pub struct TransferStats {
    pub sent_inband: u64,
    pub sent_inband_bytes: u64,
    pub sent_shared: u64,
    pub sent_shared_bytes: u64,
    pub received_inband: u64,
    pub received_inband_bytes: u64,
    pub received_shared: u64,
    pub received_shared_bytes: u64,
}

/// The live counters behind [`TransferStats`].
#[derive(Debug, Default)]
pub struct Transfers {
    counters: [AtomicU64; 8],
}

impl Transfers {
    /// Counts one payload: `sent` (host → worker) or received; `segment` is the shared segment's size, if any.
    pub fn count(&self, sent: bool, frame_bytes: u64, segment: Option<u64>) {
        let base = if sent { 0 } else { 4 };
        let (slot, bytes) = match segment {
            None => (base, frame_bytes),
            Some(size) => (base + 2, size),
        };
        self.counters[slot].fetch_add(1, Ordering::Relaxed);
        self.counters[slot + 1].fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> TransferStats {
        let c = |i: usize| self.counters[i].load(Ordering::Relaxed);
        TransferStats {
            sent_inband: c(0),
            sent_inband_bytes: c(1),
            sent_shared: c(2),
            sent_shared_bytes: c(3),
            received_inband: c(4),
            received_inband_bytes: c(5),
            received_shared: c(6),
            received_shared_bytes: c(7),
        }
    }
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
