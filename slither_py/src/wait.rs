//! The one way the binding waits on the core: detached from the interpreter (other host threads run, and on
//! a free-threaded build nothing blocks a stop-the-world pause), waking every 100 ms to run signal handlers,
//! so Ctrl-C interrupts any wait within that.

use pyo3::prelude::*;
use std::time::{Duration, Instant};

const SLICE: Duration = Duration::from_millis(100);

/// Calls `attempt(slice)` detached until it yields `Some`, `deadline` passes (`Ok(None)`), or a signal
/// handler raises. `attempt` runs at least once, so a deadline already past still takes what is ready now.
pub fn wait_for<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(Duration) -> Option<T> + Send,
) -> PyResult<Option<T>> {
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        if let Some(v) = py.detach(|| attempt(slice)) {
            return Ok(Some(v));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}
