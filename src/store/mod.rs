//! The store: named tables of encoded values with lock-free reads, serialized writes and atomic reload.
//!
//! ```text
//!  readers (host threads, worker requests) ──load()──▶ Arc<Snapshot>   (never blocks, never sees a mix)
//!  writers ──Mutex──▶ copy the touched table, change it, bump its version ──store()──▶ new Arc<Snapshot>
//! ```
//!
//! Keys and values are opaque bytes (the Python layer encodes keys canonically and pickles values), so a
//! value read is always a fresh object: no reader can alias or mutate what another reader got.

mod request;
mod snapshot;

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use request::no_store_reply;
pub use snapshot::{Snapshot, Table};

use crate::error::{Error, Result};

pub type Bytes = Arc<Vec<u8>>;
/// Encoded key/value pairs, as a table is loaded.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

pub struct Store {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Self {
        Store {
            current: ArcSwap::from_pointee(Snapshot::default()),
            writer: Mutex::new(()),
        }
    }

    /// The current consistent view of every table. Lock-free.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn get(&self, table: &str, key: &[u8]) -> Option<Bytes> {
        self.current.load().get(table, key)
    }

    pub fn version(&self, table: &str) -> u64 {
        self.current.load().version(table)
    }

    /// Applies `change` to a copy of `table` under the writer lock and publishes the result.
    fn write<T>(&self, table: &str, change: impl FnOnce(&mut HashMap<Vec<u8>, Bytes>) -> Result<T>) -> Result<T> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.current.load_full();
        let old = snap.tables.get(table);
        let mut entries = old.map(|t| t.entries.clone()).unwrap_or_default();
        let out = change(&mut entries)?;
        let version = old.map_or(0, |t| t.version) + 1;
        let mut tables = snap.tables.clone();
        tables.insert(table.to_string(), Arc::new(Table { version, entries }));
        self.current.store(Arc::new(Snapshot { tables }));
        Ok(out)
    }

    pub fn put(&self, table: &str, key: Vec<u8>, value: Vec<u8>) -> Result<u64> {
        self.put_many(table, vec![(key, value)])
    }

    /// Writes every pair as one change: readers see all of them or none.
    pub fn put_many(&self, table: &str, pairs: Pairs) -> Result<u64> {
        self.write(table, |entries| {
            for (k, v) in pairs {
                entries.insert(k, Arc::new(v));
            }
            Ok(())
        })?;
        Ok(self.version(table))
    }

    /// Removes a key; true if it was there.
    pub fn delete(&self, table: &str, key: &[u8]) -> Result<bool> {
        self.write(table, |entries| Ok(entries.remove(key).is_some()))
    }

    /// Compare-and-swap: replaces (or removes, with `new = None`) the value only if it is still `expected`
    /// (`None`: absent). The building block of read-modify-write that no other write can interleave with.
    pub fn compare_and_swap(
        &self,
        table: &str,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<bool> {
        let current = self.get(table, key);
        if current.as_deref().map(|v| v.as_slice()) != expected {
            return Ok(false);
        }
        let swapped = self.write(table, |entries| {
            if entries.get(key).map(|v| v.as_slice()) != expected {
                return Err(Error::Store("conflict".into()));
            }
            match new {
                Some(v) => entries.insert(key.to_vec(), Arc::new(v)),
                None => entries.remove(key),
            };
            Ok(())
        });
        match swapped {
            Ok(()) => Ok(true),
            Err(Error::Store(m)) if m == "conflict" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Replaces a whole table at once; the new table was built completely before this call.
    pub fn reload(&self, table: &str, pairs: Pairs) -> Result<u64> {
        self.write(table, |entries| {
            *entries = pairs.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
            Ok(())
        })?;
        Ok(self.version(table))
    }

    /// Replaces several tables in one step: a reader sees all of the new tables or none of them.
    pub fn reload_many(&self, tables: Vec<(String, Pairs)>) -> Result<()> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let snap = self.current.load_full();
        let mut all = snap.tables.clone();
        for (name, pairs) in tables {
            let version = snap.tables.get(&name).map_or(0, |t| t.version) + 1;
            let entries = pairs.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
            all.insert(name, Arc::new(Table { version, entries }));
        }
        self.current.store(Arc::new(Snapshot { tables: all }));
        Ok(())
    }

    /// Answers one worker request (see `request.rs` for the format). Never panics on bad input.
    pub fn handle_worker_request(&self, payload: &[u8]) -> Vec<u8> {
        request::handle(self, payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_versions() {
        let s = Store::new();
        assert_eq!(s.version("t"), 0);
        s.put("t", b"a".to_vec(), b"1".to_vec()).unwrap();
        assert_eq!(s.get("t", b"a").unwrap().as_slice(), b"1");
        assert_eq!(s.version("t"), 1);
        assert!(s.delete("t", b"a").unwrap());
        assert!(!s.delete("t", b"a").unwrap());
        assert_eq!(s.version("t"), 3);
        assert!(s.get("t", b"a").is_none());
    }

    #[test]
    fn reload_many_swaps_tables_together() {
        let s = Store::new();
        s.reload_many(vec![
            ("a".into(), vec![(b"k".to_vec(), b"1".to_vec())]),
            ("b".into(), vec![]),
        ])
        .unwrap();
        let snap = s.snapshot();
        assert_eq!(snap.get("a", b"k").unwrap().as_slice(), b"1");
        assert_eq!((snap.version("a"), snap.version("b")), (1, 1));
    }

    #[test]
    fn cas_detects_conflicts() {
        let s = Store::new();
        assert!(s.compare_and_swap("t", b"k", None, Some(b"1".to_vec())).unwrap());
        assert!(!s.compare_and_swap("t", b"k", None, Some(b"2".to_vec())).unwrap());
        assert!(s.compare_and_swap("t", b"k", Some(b"1"), Some(b"2".to_vec())).unwrap());
        assert_eq!(s.get("t", b"k").unwrap().as_slice(), b"2");
    }

    #[test]
    fn reload_is_atomic_for_concurrent_readers() {
        let s = Arc::new(Store::new());
        s.reload(
            "t",
            vec![(b"a".to_vec(), b"0".to_vec()), (b"b".to_vec(), b"0".to_vec())],
        )
        .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (s, stop) = (s.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut torn = 0;
                    let mut last = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let snap = s.snapshot();
                        if snap.get("t", b"a") != snap.get("t", b"b") {
                            torn += 1;
                        }
                        let v = snap.version("t");
                        assert!(v >= last, "versions only increase");
                        last = v;
                    }
                    torn
                })
            })
            .collect();
        for i in 0..2000u32 {
            let v = i.to_string().into_bytes();
            s.reload("t", vec![(b"a".to_vec(), v.clone()), (b"b".to_vec(), v)])
                .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let torn: u32 = readers.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(torn, 0);
        assert_eq!(s.version("t"), 2001);
    }
}
