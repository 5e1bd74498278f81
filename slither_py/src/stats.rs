//! Statistics and worker descriptions as frozen pyclasses with named fields (what `Pool.stats()` and
//! `Pool.workers_info()` return). Other backends build them with the same constructors.

use pyo3::prelude::*;

use slither_core::pool::WorkerInfo as CoreInfo;
use slither_core::stats::{PoolStats as CorePool, TransferStats as CoreTransfers, WorkerStats as CoreWorker};

fn phase(p: slither_core::pool::Phase) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One worker slot, now: `state` is "starting", "ready", "draining" (finishing before a recycle),
/// "dead" (a replacement is due) or "stopped".
#[pyclass(frozen, get_all, skip_from_py_object, module = "slither._slither")]
#[derive(Clone)]
pub struct WorkerInfo {
    pub index: usize,
    pub pid: u32,
    pub generation: u64,
    pub state: String,
    pub python: String,
    pub gil: bool,
    pub free_threaded_build: bool,
}

#[pymethods]
impl WorkerInfo {
    #[new]
    #[pyo3(signature = (*, index, pid, generation, state, python, gil, free_threaded_build=false))]
    fn new(
        index: usize,
        pid: u32,
        generation: u64,
        state: String,
        python: String,
        gil: bool,
        free_threaded_build: bool,
    ) -> Self {
        WorkerInfo {
            index,
            pid,
            generation,
            state,
            python,
            gil,
            free_threaded_build,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "WorkerInfo(index={}, pid={}, generation={}, state={:?}, python={:?}, gil={})",
            self.index, self.pid, self.generation, self.state, self.python, self.gil
        )
    }
}

impl From<CoreInfo> for WorkerInfo {
    fn from(w: CoreInfo) -> Self {
        WorkerInfo {
            index: w.index,
            pid: w.pid,
            generation: w.generation,
            state: phase(w.state),
            python: w.python,
            gil: w.gil,
            free_threaded_build: w.free_threaded_build,
        }
    }
}

/// One worker slot's counters, over every process it has held.
///
/// - `batches`: batches answered or failed on this slot; `items`: their items.
/// - `failures`: failed batches (crash, timeout, error reply) plus per-item exceptions inside answered batches.
/// - `restarts`: processes replaced after a crash, a kill from outside, a timeout or a protocol error.
/// - `recycles`: processes replaced on purpose (`max_tasks_per_worker`, `max_memory_per_worker`).
/// - `uptime_s`: seconds since the current process became ready.
/// - `rss_bytes`: resident memory now; `peak_rss_bytes`: the highest any process in the slot reached.
/// - `in_flight`: batches written to the process and not answered; `sessions`: sessions pinned to it.
#[pyclass(frozen, get_all, from_py_object, module = "slither._slither")]
#[derive(Clone)]
pub struct WorkerStats {
    pub index: usize,
    pub pid: u32,
    pub generation: u64,
    pub state: String,
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

#[pymethods]
impl WorkerStats {
    #[new]
    #[pyo3(signature = (*, index, pid, generation, state, batches=0, items=0, failures=0, restarts=0, recycles=0,
                        uptime_s=0.0, rss_bytes=0, peak_rss_bytes=0, in_flight=0, python=String::new(), gil=true,
                        sessions=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        index: usize,
        pid: u32,
        generation: u64,
        state: String,
        batches: u64,
        items: u64,
        failures: u64,
        restarts: u64,
        recycles: u64,
        uptime_s: f64,
        rss_bytes: u64,
        peak_rss_bytes: u64,
        in_flight: usize,
        python: String,
        gil: bool,
        sessions: usize,
    ) -> Self {
        WorkerStats {
            index,
            pid,
            generation,
            state,
            batches,
            items,
            failures,
            restarts,
            recycles,
            uptime_s,
            rss_bytes,
            peak_rss_bytes,
            in_flight,
            python,
            gil,
            sessions,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "WorkerStats(index={}, pid={}, state={:?}, batches={}, items={}, failures={}, restarts={}, recycles={}, rss_bytes={})",
            self.index, self.pid, self.state, self.batches, self.items, self.failures, self.restarts, self.recycles, self.rss_bytes
        )
    }
}

impl From<CoreWorker> for WorkerStats {
    fn from(w: CoreWorker) -> Self {
        WorkerStats {
            index: w.index,
            pid: w.pid,
            generation: w.generation,
            state: phase(w.state),
            batches: w.batches,
            items: w.items,
            failures: w.failures,
            restarts: w.restarts,
            recycles: w.recycles,
            uptime_s: w.uptime_s,
            rss_bytes: w.rss_bytes,
            peak_rss_bytes: w.peak_rss_bytes,
            in_flight: w.in_flight,
            python: w.python,
            gil: w.gil,
            sessions: w.sessions,
        }
    }
}

/// Payloads by the path they took since the pool started. `sent_*`: host → worker (items, call arguments);
/// `received_*`: worker → host (results). `*_shared`: payloads whose large pickle buffers travelled in a
/// shared-memory segment (bytes: the segments' sizes); `*_inband`: payloads entirely in the frame (bytes:
/// the frames' payload sizes).
#[pyclass(frozen, get_all, eq, from_py_object, module = "slither._slither")]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
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

#[pymethods]
impl TransferStats {
    #[new]
    #[pyo3(signature = (*, sent_inband=0, sent_inband_bytes=0, sent_shared=0, sent_shared_bytes=0,
                        received_inband=0, received_inband_bytes=0, received_shared=0, received_shared_bytes=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        sent_inband: u64,
        sent_inband_bytes: u64,
        sent_shared: u64,
        sent_shared_bytes: u64,
        received_inband: u64,
        received_inband_bytes: u64,
        received_shared: u64,
        received_shared_bytes: u64,
    ) -> Self {
        TransferStats {
            sent_inband,
            sent_inband_bytes,
            sent_shared,
            sent_shared_bytes,
            received_inband,
            received_inband_bytes,
            received_shared,
            received_shared_bytes,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "TransferStats(sent_inband={}, sent_inband_bytes={}, sent_shared={}, sent_shared_bytes={}, \
             received_inband={}, received_inband_bytes={}, received_shared={}, received_shared_bytes={})",
            self.sent_inband,
            self.sent_inband_bytes,
            self.sent_shared,
            self.sent_shared_bytes,
            self.received_inband,
            self.received_inband_bytes,
            self.received_shared,
            self.received_shared_bytes
        )
    }
}

impl From<CoreTransfers> for TransferStats {
    fn from(t: CoreTransfers) -> Self {
        TransferStats {
            sent_inband: t.sent_inband,
            sent_inband_bytes: t.sent_inband_bytes,
            sent_shared: t.sent_shared,
            sent_shared_bytes: t.sent_shared_bytes,
            received_inband: t.received_inband,
            received_inband_bytes: t.received_inband_bytes,
            received_shared: t.received_shared,
            received_shared_bytes: t.received_shared_bytes,
        }
    }
}

/// The pool now: `workers` (one `WorkerStats` per slot); `queued`: batches waiting in the core for room on a
/// worker; `in_flight`: batches written to workers and not answered; `max_in_flight_seen`: the most batches
/// ever outstanding at once, pool-wide; `broken`: why the pool broke, if it did; `closed`: no new work;
/// `transfers`: payloads by path (frame or shared-memory segment), see `TransferStats`.
#[pyclass(frozen, get_all, module = "slither._slither")]
pub struct PoolStats {
    pub workers: Vec<WorkerStats>,
    pub queued: usize,
    pub in_flight: usize,
    pub max_in_flight_seen: usize,
    pub broken: Option<String>,
    pub closed: bool,
    pub transfers: TransferStats,
}

#[pymethods]
impl PoolStats {
    #[new]
    #[pyo3(signature = (*, workers, queued=0, in_flight=0, max_in_flight_seen=0, broken=None, closed=false,
                        transfers=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        workers: Vec<WorkerStats>,
        queued: usize,
        in_flight: usize,
        max_in_flight_seen: usize,
        broken: Option<String>,
        closed: bool,
        transfers: Option<TransferStats>,
    ) -> Self {
        PoolStats {
            workers,
            queued,
            in_flight,
            max_in_flight_seen,
            broken,
            closed,
            transfers: transfers.unwrap_or_default(),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "PoolStats(workers=<{}>, queued={}, in_flight={}, max_in_flight_seen={}, broken={:?}, closed={})",
            self.workers.len(),
            self.queued,
            self.in_flight,
            self.max_in_flight_seen,
            self.broken,
            self.closed
        )
    }
}

impl From<CorePool> for PoolStats {
    fn from(p: CorePool) -> Self {
        PoolStats {
            workers: p.workers.into_iter().map(WorkerStats::from).collect(),
            queued: p.queued,
            in_flight: p.in_flight,
            max_in_flight_seen: p.max_in_flight_seen,
            broken: p.broken,
            closed: p.closed,
            transfers: p.transfers.into(),
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<WorkerInfo>()?;
    m.add_class::<WorkerStats>()?;
    m.add_class::<PoolStats>()?;
    m.add_class::<TransferStats>()?;
    Ok(())
}
