//! The exception tree, declared once, and the one mapping from core errors to it.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use slither_core::Error;

create_exception!(
    slither.errors,
    SlitherError,
    PyException,
    "Base class of every error slither raises."
);
create_exception!(
    slither.errors,
    PoolClosed,
    SlitherError,
    "The pool was closed; it accepts no more work."
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
    BatchTimeout,
    SlitherError,
    "A batch overran its deadline; its worker was killed and replaced."
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
create_exception!(
    slither.errors,
    ConfigError,
    SlitherError,
    "An invalid argument or configuration value."
);

pub fn to_pyerr(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::PoolClosed => PoolClosed::new_err(msg),
        Error::PoolBroken(_) => PoolBroken::new_err(msg),
        Error::Io(_) => SlitherError::new_err(msg),
        Error::SessionLost { .. } => SessionLost::new_err(msg),
        Error::NoSuchWorker(_) => ConfigError::new_err(msg),
        Error::Protocol(_) => ProtocolError::new_err(msg),
        Error::Store(_) => StoreError::new_err(msg),
        Error::Config(_) => ConfigError::new_err(msg),
        Error::Timeout => SlitherError::new_err(msg),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SlitherError", py.get_type::<SlitherError>())?;
    m.add("PoolClosed", py.get_type::<PoolClosed>())?;
    m.add("PoolBroken", py.get_type::<PoolBroken>())?;
    m.add("SessionLost", py.get_type::<SessionLost>())?;
    m.add("WorkerCrashed", py.get_type::<WorkerCrashed>())?;
    m.add("BatchTimeout", py.get_type::<BatchTimeout>())?;
    m.add("TaskError", py.get_type::<TaskError>())?;
    m.add("BatchLengthError", py.get_type::<BatchLengthError>())?;
    m.add("SerializationError", py.get_type::<SerializationError>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    Ok(())
}
