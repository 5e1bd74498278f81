//! The exception tree, declared once, and the one mapping from core errors to it.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use slither_core::Error;

create_exception!(
    slither.errors,
    SlitherError,
    PyException,
    "Base class of every error slither raises."
);
create_exception!(
    slither.errors,
    PoolBroken,
    SlitherError,
    "Workers could not be kept alive (crash loop, bad interpreter, failing init)."
);
create_exception!(
    slither.errors,
    SessionLost,
    SlitherError,
    "The session's worker died or was replaced; the state it held is gone."
);
create_exception!(
    slither.errors,
    WorkerCrashed,
    SlitherError,
    "A worker process died while running a batch."
);
create_exception!(
    slither.errors,
    TaskError,
    SlitherError,
    "User code raised in a worker and the exception could not be rebuilt as its own type."
);
create_exception!(
    slither.errors,
    BatchLengthError,
    SlitherError,
    "A batch function returned a result of the wrong length or type."
);
create_exception!(
    slither.errors,
    SerializationError,
    SlitherError,
    "An item, result, function or exception could not be pickled or unpickled."
);
create_exception!(slither.errors, StoreError, SlitherError, "A store operation failed.");
create_exception!(
    slither.errors,
    ProtocolError,
    SlitherError,
    "A worker broke the frame protocol."
);

static BATCH_TIMEOUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CONFIG_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static POOL_CLOSED: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// A slither exception that also derives from the standard exception with the same meaning, so that
/// `except ValueError` / `except TimeoutError` catch it (`class Name(SlitherError, std)`).
fn derived<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
    doc: &str,
    std: Bound<'py, PyType>,
) -> PyResult<Bound<'py, PyType>> {
    cell.get_or_try_init(py, || {
        let bases = PyTuple::new(py, [py.get_type::<SlitherError>(), std])?;
        let dict = PyDict::new(py);
        dict.set_item("__doc__", doc)?;
        dict.set_item("__module__", "slither.errors")?;
        let t = py.get_type::<PyType>().call1((name, bases, dict))?;
        Ok::<_, PyErr>(t.cast_into::<PyType>()?.unbind())
    })
    .map(|t| t.bind(py).clone())
}

/// `BatchTimeout(SlitherError, TimeoutError)`.
pub fn batch_timeout(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    derived(
        py,
        &BATCH_TIMEOUT,
        "BatchTimeout",
        "A batch or call overran its deadline; its worker was killed and replaced. Also a TimeoutError.",
        py.get_type::<PyTimeoutError>(),
    )
}

/// `ConfigError(SlitherError, ValueError)`.
pub fn config_error(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    derived(
        py,
        &CONFIG_ERROR,
        "ConfigError",
        "An invalid argument or configuration value, named. Also a ValueError.",
        py.get_type::<PyValueError>(),
    )
}

/// `PoolClosed(SlitherError, RuntimeError)`: what `concurrent.futures` raises for work after shutdown.
pub fn pool_closed(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    derived(
        py,
        &POOL_CLOSED,
        "PoolClosed",
        "The pool was closed; it accepts no more work. Also a RuntimeError, as concurrent.futures raises.",
        py.get_type::<PyRuntimeError>(),
    )
}

fn pool_closed_err(msg: String) -> PyErr {
    Python::attach(|py| match pool_closed(py) {
        Ok(t) => PyErr::from_type(t, msg),
        Err(e) => e,
    })
}

/// A `ConfigError` carrying `msg`.
pub fn config_err(msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    Python::attach(|py| match config_error(py) {
        Ok(t) => PyErr::from_type(t, msg),
        Err(e) => e,
    })
}

pub fn to_pyerr(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::PoolClosed => pool_closed_err(msg),
        Error::PoolBroken(_) => PoolBroken::new_err(msg),
        Error::Io(_) => SlitherError::new_err(msg),
        Error::SessionLost { .. } => SessionLost::new_err(msg),
        Error::NoSuchWorker(_) => config_err(msg),
        Error::FrameTooLarge { .. } => SerializationError::new_err(msg),
        Error::ForkedChild { .. } => pool_closed_err(msg),
        Error::Timeout(_) => PyTimeoutError::new_err(msg),
        Error::Store(_) => StoreError::new_err(msg),
        Error::Config(_) => config_err(msg),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SlitherError", py.get_type::<SlitherError>())?;
    m.add("PoolClosed", pool_closed(py)?)?;
    m.add("PoolBroken", py.get_type::<PoolBroken>())?;
    m.add("SessionLost", py.get_type::<SessionLost>())?;
    m.add("WorkerCrashed", py.get_type::<WorkerCrashed>())?;
    m.add("BatchTimeout", batch_timeout(py)?)?;
    m.add("TaskError", py.get_type::<TaskError>())?;
    m.add("BatchLengthError", py.get_type::<BatchLengthError>())?;
    m.add("SerializationError", py.get_type::<SerializationError>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("ConfigError", config_error(py)?)?;
    Ok(())
}
