//! `slither._slither`: the thin binding over slither-core. Conversions, error mapping and GIL release live
//! here; the behaviour lives in the core crate, and the public API in `python/slither/`.

mod errors;
mod pool;
mod stats;
mod store;
mod wait;

use pyo3::prelude::*;

/// Whether this build of the extension itself requires the GIL (it never does).
const BUILD_GIL: bool = false;

#[pymodule(gil_used = false)]
fn _slither(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("BUILD_GIL", BUILD_GIL)?;
    errors::register(m)?;
    pool::register(m)?;
    stats::register(m)?;
    store::register(m)?;
    Ok(())
}
