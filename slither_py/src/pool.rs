//! `PoolCore` and `RunCore`: frozen handles over the core pool. Payloads cross as bytes; configuration and
//! telemetry events cross with pythonize; completions and statistics as frozen pyclasses.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pythonize::{depythonize, pythonize};
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slither_core::pool::{Job, Outcome, Pin, Pool, Run};
use slither_core::protocol::Segment as CoreSegment;
use slither_core::PoolConfig;

use crate::errors::{config_err, to_pyerr};
use crate::stats::{PoolStats, WorkerInfo};
use crate::store::StoreCore;
use crate::wait::wait_for;

#[pyclass(frozen, weakref, module = "slither._slither")]
pub struct PoolCore {
    pool: Pool,
}

#[pyclass(frozen, module = "slither._slither")]
pub struct RunCore {
    run: Run,
}

/// One batch's answer, as it crosses to Python: named, immutable fields.
///
/// `kind` is one of "ok", "err", "crashed", "timeout", "session_lost", "aborted", "protocol".
/// `data` is the worker's pickled reply for "ok"/"err", the limit in seconds for "timeout", the reason
/// (str) for "aborted" and "protocol", else None. `duration` is seconds from the moment the worker
/// started the batch to its answer. `started` says whether the worker had started the batch.
#[pyclass(frozen, get_all, module = "slither._slither")]
pub struct Completion {
    batch: u64,
    tag: u64,
    worker: Option<usize>,
    pid: u32,
    kind: String,
    data: Py<PyAny>,
    exit_code: Option<i32>,
    signal: Option<String>,
    duration: f64,
    started: bool,
    /// The shared-memory segment holding the result's large buffers ("ok" only), else None.
    segment: Option<Py<Segment>>,
}

/// A received shared-memory segment's descriptor, owned: closed when this object is dropped, unless
/// `take()` handed it over first. Never a bare int, so a completion nobody decodes leaks nothing.
#[pyclass(frozen, module = "slither._slither")]
pub struct Segment {
    fd: Mutex<Option<OwnedFd>>,
}

impl Segment {
    fn owned(fd: OwnedFd) -> Segment {
        Segment {
            fd: Mutex::new(Some(fd)),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<OwnedFd>> {
        self.fd.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl Segment {
    /// The descriptor, now owned by the caller (who must close it). Raises ValueError if already taken.
    fn take(&self) -> PyResult<i32> {
        match self.slot().take() {
            Some(fd) => Ok(fd.into_raw_fd()),
            None => Err(PyValueError::new_err("the segment's descriptor was already taken")),
        }
    }

    /// The descriptor (still owned by this object), or -1 once taken or closed.
    fn fileno(&self) -> i32 {
        self.slot().as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }

    /// Closes the descriptor now (idempotent).
    fn close(&self) {
        self.slot().take();
    }

    fn __repr__(&self) -> String {
        format!("Segment(fd={})", self.fileno())
    }
}

#[pymethods]
impl Completion {
    #[new]
    #[pyo3(signature = (batch, tag, worker, pid, kind, data=None, exit_code=None, signal=None, duration=0.0, started=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        batch: u64,
        tag: u64,
        worker: Option<usize>,
        pid: u32,
        kind: String,
        data: Option<Py<PyAny>>,
        exit_code: Option<i32>,
        signal: Option<String>,
        duration: f64,
        started: bool,
    ) -> Self {
        Completion {
            batch,
            tag,
            worker,
            pid,
            kind,
            data: data.unwrap_or_else(|| py.None()),
            exit_code,
            signal,
            duration,
            started,
            segment: None,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Completion(batch={}, tag={}, worker={:?}, pid={}, kind={:?}, duration={:.6})",
            self.batch, self.tag, self.worker, self.pid, self.kind, self.duration
        )
    }
}

/// `timeout` seconds from now; None for no timeout, or one too large to represent (an infinite wait).
fn deadline(timeout: Option<f64>) -> Option<Instant> {
    let d = Duration::try_from_secs_f64(timeout?.max(0.0)).ok()?;
    Instant::now().checked_add(d)
}

#[pymethods]
impl PoolCore {
    /// Starts the workers; returns at once. Call `wait_ready` to wait for their hello.
    #[new]
    #[pyo3(signature = (config, init_payload, store=None))]
    fn new(config: &Bound<'_, PyDict>, init_payload: Vec<u8>, store: Option<&Bound<'_, StoreCore>>) -> PyResult<Self> {
        let cfg: PoolConfig =
            depythonize(config.as_any()).map_err(|e| config_err(format!("invalid pool configuration: {e}")))?;
        let store = store.map(|s| s.get().core());
        let pool = Pool::start(cfg, init_payload, store).map_err(to_pyerr)?;
        Ok(PoolCore { pool })
    }

    /// Waits until every worker is ready; False if `timeout` passed first.
    #[pyo3(signature = (timeout=None))]
    fn wait_ready(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let pool = &self.pool;
        let got = wait_for(py, deadline(timeout), |slice| match pool.wait_ready(slice) {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        })?;
        match got {
            Some(r) => r.map(|_| true).map_err(to_pyerr),
            None => Ok(false),
        }
    }

    /// A new stream of batches. Raises PoolClosed once `close` began (runs opened before may still submit).
    fn new_run(&self) -> PyResult<RunCore> {
        Ok(RunCore {
            run: self.pool.new_run().map_err(to_pyerr)?,
        })
    }

    /// Queues one batch; never waits for a worker. Returns the pool-wide batch id.
    ///
    /// `segment`: a descriptor of a shared-memory segment (memfd) holding the payload's large buffers; the
    /// core keeps its own duplicate until the batch completes, so the caller may close its own at once.
    #[pyo3(signature = (run, tag, payload, items, timeout=None, pin=None, segment=None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        run: &Bound<'_, RunCore>,
        tag: u64,
        payload: Vec<u8>,
        items: u32,
        timeout: Option<f64>,
        pin: Option<(usize, u64)>,
        segment: Option<i32>,
    ) -> PyResult<u64> {
        let segment = match segment {
            None => None,
            Some(fd) if fd < 0 => return Err(PyValueError::new_err(format!("segment must be a descriptor, got {fd}"))),
            // SAFETY: the caller keeps `fd` open for this call; we only duplicate it.
            Some(fd) => Some(CoreSegment::new(
                unsafe { BorrowedFd::borrow_raw(fd) }
                    .try_clone_to_owned()
                    .map_err(|e| PyOSError::new_err(format!("cannot duplicate segment descriptor {fd}: {e}")))?,
            )),
        };
        if let Some(t) = timeout {
            if !(t > 0.0 && t.is_finite()) {
                return Err(config_err(format!(
                    "timeout must be a positive number of seconds, got {t}"
                )));
            }
        }
        let job = Job {
            tag,
            payload: Arc::new(payload),
            segment,
            items,
            timeout: timeout.map(Duration::from_secs_f64),
            pin: pin.map(|(worker, generation)| Pin { worker, generation }),
        };
        self.pool.submit(&run.get().run, job).map_err(to_pyerr)
    }

    fn cancel(&self, run: &Bound<'_, RunCore>) {
        self.pool.cancel(&run.get().run)
    }

    /// Pins a session to the least loaded ready worker, waiting up to `timeout` seconds (None: without
    /// limit) for one to be ready.
    #[pyo3(signature = (timeout=60.0))]
    fn open_session(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(usize, u64)> {
        let pool = &self.pool;
        let until = deadline(timeout);
        let got = wait_for(py, until, |slice| {
            let left = until.map_or(slice, |u| u.saturating_duration_since(Instant::now()));
            match pool.open_session(slice.min(left)) {
                Ok(p) => Some(Ok(p)),
                Err(slither_core::Error::Timeout(_)) if until.is_none_or(|u| Instant::now() < u) => None,
                Err(e) => Some(Err(e)),
            }
        })?;
        match got {
            Some(r) => r.map(|p| (p.worker, p.generation)).map_err(to_pyerr),
            None => Err(to_pyerr(slither_core::Error::Timeout(format!(
                "no worker became ready to open a session on within {} s",
                timeout.unwrap_or(f64::INFINITY)
            )))),
        }
    }

    /// Counts `count` per-item failures (exceptions inside an answered batch) toward a worker's statistics.
    fn record_failures(&self, worker: usize, generation: u64, count: u64) {
        self.pool.record_failures(worker, generation, count)
    }

    fn close_session(&self, worker: usize, generation: u64) {
        self.pool.close_session(Pin { worker, generation })
    }

    fn session_alive(&self, worker: usize, generation: u64) -> bool {
        self.pool.session_alive(Pin { worker, generation })
    }

    /// One `WorkerInfo` per worker slot.
    fn workers(&self) -> PyResult<Vec<WorkerInfo>> {
        Ok(self
            .pool
            .workers()
            .map_err(to_pyerr)?
            .into_iter()
            .map(WorkerInfo::from)
            .collect())
    }

    /// Pool and per-worker statistics, with resident memory read now.
    fn stats(&self, py: Python<'_>) -> PyResult<PoolStats> {
        let pool = &self.pool;
        Ok(py.detach(|| pool.stats()).map_err(to_pyerr)?.into())
    }

    #[getter]
    fn size(&self) -> usize {
        self.pool.size()
    }

    /// Turns event recording on or off (off: emitting costs one atomic load).
    fn set_events(&self, on: bool) {
        self.pool.events().set_active(on)
    }

    /// Up to `max` recorded events, waiting up to `timeout` for the first.
    #[pyo3(signature = (max=1024, timeout=0.0))]
    fn next_events<'py>(&self, py: Python<'py>, max: usize, timeout: f64) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let rx = self.pool.event_receiver();
        let mut got = Vec::new();
        if timeout > 0.0 {
            if let Some(first) = wait_for(py, deadline(Some(timeout)), |slice| rx.recv_timeout(slice).ok())? {
                got.push(first);
            }
        }
        while got.len() < max {
            match rx.try_recv() {
                Ok(e) => got.push(e),
                Err(_) => break,
            }
        }
        got.iter()
            .map(|e| pythonize(py, e).map_err(|e| config_err(e.to_string())))
            .collect()
    }

    /// Stops accepting work and waits until everything submitted has answered. False if `timeout` passed.
    #[pyo3(signature = (timeout=None))]
    fn drain(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let pool = &self.pool;
        let got = wait_for(py, deadline(timeout), |slice| match pool.drain(slice) {
            Ok(true) => Some(()),
            _ => None,
        })?;
        Ok(got.is_some())
    }

    /// Stops every worker (SHUTDOWN frame if graceful, SIGTERM, grace, SIGKILL). Idempotent.
    fn shutdown(&self, py: Python<'_>, graceful: bool) {
        let pool = &self.pool;
        py.detach(|| pool.shutdown(graceful))
    }

    #[getter]
    fn stopped(&self) -> bool {
        self.pool.is_stopped()
    }
}

#[pymethods]
impl RunCore {
    /// The next completion, or None after `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Completion>> {
        let run = &self.run;
        let got = match run.try_next() {
            Some(c) => Some(c),
            None => wait_for(py, deadline(timeout), |slice| run.next(slice))?,
        };
        let Some(c) = got else { return Ok(None) };
        let none = py.None();
        let mut segment = None;
        let (kind, data, exit_code, signal): (&str, Py<PyAny>, Option<i32>, Option<String>) = match c.outcome {
            Outcome::Ok(b) => ("ok", PyBytes::new(py, &b).into_any().unbind(), None, None),
            Outcome::OkShared(b, seg) => {
                let fd = seg
                    .into_fd()
                    .map_err(|e| PyOSError::new_err(format!("cannot keep a result segment: {e}")))?;
                segment = Some(Py::new(py, Segment::owned(fd))?);
                ("ok", PyBytes::new(py, &b).into_any().unbind(), None, None)
            }
            Outcome::Err(b) => ("err", PyBytes::new(py, &b).into_any().unbind(), None, None),
            Outcome::Crashed { exit_code, signal } => ("crashed", none, exit_code, signal),
            Outcome::Timeout { seconds } => ("timeout", seconds.into_pyobject(py)?.into_any().unbind(), None, None),
            Outcome::SessionLost => ("session_lost", none, None, None),
            Outcome::Aborted(why) => ("aborted", why.into_pyobject(py)?.into_any().unbind(), None, None),
            Outcome::Protocol(why) => ("protocol", why.into_pyobject(py)?.into_any().unbind(), None, None),
        };
        Ok(Some(Completion {
            batch: c.batch,
            tag: c.tag,
            worker: c.worker,
            pid: c.pid,
            kind: kind.to_string(),
            data,
            exit_code,
            signal,
            duration: c.duration,
            started: c.started,
            segment,
        }))
    }

    #[getter]
    fn in_flight(&self) -> usize {
        self.run.in_flight()
    }

    #[getter]
    fn max_in_flight_seen(&self) -> usize {
        self.run.max_in_flight_seen()
    }
}

/// The frame format as data, for the contract test against the worker's copy (`_worker/framing.py`):
/// `{"header_format": "<BQQ", "header_len": 17, "kinds": {"TASK": 1, ...}, "max_frame_bytes": default}`.
fn protocol<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let (format, len, kinds) = slither_core::protocol::describe();
    let d = PyDict::new(py);
    d.set_item("header_format", format)?;
    d.set_item("header_len", len)?;
    let k = PyDict::new(py);
    for (name, number) in kinds {
        k.set_item(*name, *number)?;
    }
    d.set_item("kinds", k)?;
    let control: Vec<u32> = slither_core::protocol::ON_CONTROL.iter().map(|&k| k.into()).collect();
    d.set_item("control_kinds", control)?;
    d.set_item("segment_flag", slither_core::protocol::WITH_SEGMENT)?;
    d.set_item("started_word_format", slither_core::protocol::STARTED_WORD_FORMAT)?;
    d.set_item("started_frame_at", slither_core::protocol::STARTED_FRAME_AT)?;
    d.set_item("started_cached_at", slither_core::protocol::STARTED_CACHED_AT)?;
    d.set_item("max_frame_bytes", slither_core::protocol::DEFAULT_MAX_FRAME)?;
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("PROTOCOL", protocol(m.py())?)?;
    m.add_class::<PoolCore>()?;
    m.add_class::<RunCore>()?;
    m.add_class::<Completion>()?;
    m.add_class::<Segment>()?;
    Ok(())
}
