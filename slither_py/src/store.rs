//! `StoreCore` and `SnapshotCore`: frozen handles over the core store. Keys and values cross as bytes
//! (encoded and pickled by `python/slither/store.py`); reads never take a lock. Workers never come through
//! here: the core answers their requests and they read its shared images directly. Writes hold the writer lock
//! only for pure Rust work that never needs the interpreter, so they do not detach: detaching would make a
//! writer queue for the GIL again on every call while reader threads hold it.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Arc;

use slither_core::store::Snapshot;
use slither_core::Store;

use crate::errors::to_pyerr;

#[pyclass(frozen, module = "slither._slither")]
pub struct StoreCore {
    inner: Arc<Store>,
}

impl StoreCore {
    pub fn core(&self) -> Arc<Store> {
        self.inner.clone()
    }
}

#[pyclass(frozen, module = "slither._slither")]
pub struct SnapshotCore {
    snap: Arc<Snapshot>,
}

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn items<'py>(py: Python<'py>, snap: &Snapshot, table: &str) -> Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    snap.table(table)
        .map(|t| {
            t.entries
                .iter()
                .map(|(k, v)| (PyBytes::new(py, k), PyBytes::new(py, v)))
                .collect()
        })
        .unwrap_or_default()
}

fn keys<'py>(py: Python<'py>, snap: &Snapshot, table: &str) -> Vec<Bound<'py, PyBytes>> {
    snap.table(table)
        .map(|t| t.entries.keys().map(|k| PyBytes::new(py, k)).collect())
        .unwrap_or_default()
}

#[pymethods]
impl StoreCore {
    #[new]
    fn new() -> Self {
        StoreCore {
            inner: Arc::new(Store::new()),
        }
    }

    fn get<'py>(&self, py: Python<'py>, table: &str, key: &[u8]) -> Option<Bound<'py, PyBytes>> {
        self.inner.get(table, key).map(|v| PyBytes::new(py, &v))
    }

    fn version(&self, table: &str) -> u64 {
        self.inner.version(table)
    }

    fn put(&self, table: &str, key: Vec<u8>, value: Vec<u8>) -> PyResult<u64> {
        self.inner.put(table, key, value).map_err(to_pyerr)
    }

    fn put_many(&self, table: &str, pairs: Pairs) -> PyResult<u64> {
        self.inner.put_many(table, pairs).map_err(to_pyerr)
    }

    fn delete(&self, table: &str, key: Vec<u8>) -> PyResult<bool> {
        self.inner.delete(table, &key).map_err(to_pyerr)
    }

    #[pyo3(signature = (table, key, expected, new))]
    fn compare_and_swap(
        &self,
        table: &str,
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> PyResult<bool> {
        self.inner
            .compare_and_swap(table, &key, expected.as_deref(), new)
            .map_err(to_pyerr)
    }

    fn reload(&self, table: &str, pairs: Pairs) -> PyResult<u64> {
        self.inner.reload(table, pairs).map_err(to_pyerr)
    }

    fn reload_many(&self, tables: Vec<(String, Pairs)>) -> PyResult<Vec<u64>> {
        self.inner.reload_many(tables).map_err(to_pyerr)
    }

    fn keys<'py>(&self, py: Python<'py>, table: &str) -> Vec<Bound<'py, PyBytes>> {
        keys(py, &self.inner.snapshot(), table)
    }

    fn items<'py>(&self, py: Python<'py>, table: &str) -> Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        items(py, &self.inner.snapshot(), table)
    }

    fn len(&self, table: &str) -> usize {
        self.inner.snapshot().len(table)
    }

    fn tables(&self) -> Vec<String> {
        self.inner.snapshot().table_names()
    }

    fn snapshot(&self) -> SnapshotCore {
        SnapshotCore {
            snap: self.inner.snapshot(),
        }
    }

    /// Answers one worker store request (the same bytes a pool's workers send); for backends whose workers
    /// reach the store through something other than the pool's own channels. Its ATTACH and MAP replies
    /// name descriptors of this process: a worker on the same machine maps them, any other falls back to
    /// asking (GET, TABLES).
    fn handle_request<'py>(&self, py: Python<'py>, payload: &[u8]) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.handle_worker_request(payload))
    }
}

#[pymethods]
impl SnapshotCore {
    fn get<'py>(&self, py: Python<'py>, table: &str, key: &[u8]) -> Option<Bound<'py, PyBytes>> {
        self.snap.get(table, key).map(|v| PyBytes::new(py, &v))
    }

    fn version(&self, table: &str) -> u64 {
        self.snap.version(table)
    }

    fn keys<'py>(&self, py: Python<'py>, table: &str) -> Vec<Bound<'py, PyBytes>> {
        keys(py, &self.snap, table)
    }

    fn items<'py>(&self, py: Python<'py>, table: &str) -> Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        items(py, &self.snap, table)
    }

    fn len(&self, table: &str) -> usize {
        self.snap.len(table)
    }

    fn tables(&self) -> Vec<String> {
        self.snap.table_names()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StoreCore>()?;
    m.add_class::<SnapshotCore>()?;
    Ok(())
}
