//! The store: named tables of encoded values with lock-free reads, serialized writes and atomic reload,
//! readable by workers from shared memory.
//!
//! ```text
//!  host readers ──load()──▶ Arc<Snapshot>                      (never blocks, never sees a mix)
//!  writers ──Mutex──▶ persistent-map insert, O(log n) ──store()──▶ new Arc<Snapshot> ──▶ version header
//!  workers ──▶ version header + sealed table images in memfds   (publish.rs; no round trip when current)
//! ```
//!
//! Keys and values are opaque bytes (the Python layer encodes keys canonically and pickles values), so a
//! value read is always a fresh object: no reader can alias or mutate what another reader got.

mod header;
mod image;
mod publish;
mod request;
mod shm;
mod snapshot;

use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use publish::Mapped;
pub use request::no_store_reply;
pub use snapshot::{Entries, Snapshot, Table};

use crate::error::{Error, Result};
use publish::{Published, Slots};

pub type Bytes = Arc<Vec<u8>>;
/// Encoded key/value pairs, as a table is loaded.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

pub struct Store {
    current: ArcSwap<Snapshot>,
    /// Held by the one writer at a time; guards the slot numbers workers know tables by.
    writer: Mutex<Slots>,
    published: Published,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Store(format!("shared memory: {e}"))
}

fn entries(pairs: Pairs) -> Entries {
    pairs.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()
}

impl Store {
    pub fn new() -> Self {
        Store {
            current: ArcSwap::from_pointee(Snapshot::default()),
            writer: Mutex::new(Slots::default()),
            published: Published::default(),
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, Slots> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Applies `change` to `table` under the writer lock and publishes the result. `change` returns None to
    /// leave the table as it was (nothing is published, the version stays). O(1) plus the change itself:
    /// the persistent map is shared with the previous snapshot, not copied.
    fn write<T>(&self, table: &str, change: impl FnOnce(&mut Entries) -> Option<T>) -> Option<(T, u64)> {
        let slots = self.lock_writer();
        let snap = self.current.load_full();
        let old = snap.tables.get(table);
        let mut entries = old.map_or_else(Entries::new_sync, |t| t.entries.clone());
        let out = change(&mut entries)?;
        let version = old.map_or(0, |t| t.version) + 1;
        let tables = snap
            .tables
            .insert(table.to_string(), Arc::new(Table { version, entries }));
        self.current.store(Arc::new(Snapshot { tables }));
        self.published.publish(&slots, &[(table, version)]);
        Some((out, version))
    }

    /// Stores one value; returns the version this write created.
    pub fn put(&self, table: &str, key: Vec<u8>, value: Vec<u8>) -> Result<u64> {
        self.put_many(table, vec![(key, value)])
    }

    /// Writes every pair as one change: readers see all of them or none. Returns the version it created.
    pub fn put_many(&self, table: &str, pairs: Pairs) -> Result<u64> {
        let written = self.write(table, |entries| {
            for (k, v) in pairs {
                entries.insert_mut(k, Arc::new(v));
            }
            Some(())
        });
        Ok(written.map_or(0, |(_, v)| v))
    }

    /// Removes a key; true if it was there. Bumps the version either way.
    pub fn delete(&self, table: &str, key: &[u8]) -> Result<bool> {
        Ok(self
            .write(table, |entries| Some(entries.remove_mut(key)))
            .is_some_and(|(found, _)| found))
    }

    /// Compare-and-swap: replaces (or removes, with `new = None`) the value only if it is still `expected`
    /// (`None`: absent). The building block of read-modify-write that no other write can interleave with.
    /// A swap that does not happen changes nothing, version included.
    pub fn compare_and_swap(
        &self,
        table: &str,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<bool> {
        let same = |current: Option<&Bytes>| current.map(|v| v.as_slice()) == expected;
        if !same(self.get(table, key).as_ref()) {
            return Ok(false);
        }
        let swapped = self.write(table, |entries| {
            if !same(entries.get(key)) {
                return None;
            }
            match new {
                Some(v) => entries.insert_mut(key.to_vec(), Arc::new(v)),
                None => {
                    entries.remove_mut(key);
                }
            }
            Some(())
        });
        Ok(swapped.is_some())
    }

    /// Replaces a whole table at once; the new table was built completely before this call. Returns the
    /// version it created.
    pub fn reload(&self, table: &str, pairs: Pairs) -> Result<u64> {
        let new = entries(pairs);
        let written = self.write(table, |e| {
            *e = new;
            Some(())
        });
        Ok(written.map_or(0, |(_, v)| v))
    }

    /// Replaces several tables in one step: a reader (host or worker) sees all of the new tables or none of
    /// them. Returns the version created for each table, in order.
    pub fn reload_many(&self, tables: Vec<(String, Pairs)>) -> Result<Vec<u64>> {
        let built: Vec<(String, Entries)> = tables.into_iter().map(|(n, p)| (n, entries(p))).collect();
        let slots = self.lock_writer();
        let snap = self.current.load_full();
        let mut all = snap.tables.clone();
        let mut versions = Vec::with_capacity(built.len());
        for (name, entries) in built {
            let version = all.get(&name).map_or(0, |t| t.version) + 1;
            all.insert_mut(name.clone(), Arc::new(Table { version, entries }));
            versions.push((name, version));
        }
        self.current.store(Arc::new(Snapshot { tables: all }));
        let written: Vec<(&str, u64)> = versions.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        self.published.publish(&slots, &written);
        Ok(versions.into_iter().map(|(_, v)| v).collect())
    }

    /// For a worker: this process's id, the version header's descriptor and length, and this store's id
    /// (which the header and every image repeat, so a worker can tell it mapped the right segment).
    pub fn attach(&self) -> Result<[u64; 4]> {
        let _slots = self.lock_writer();
        let header = self.published.attach().map_err(io_error)?;
        let seg = header.segment();
        Ok([
            u64::from(std::process::id()),
            seg.fd() as u64,
            seg.len() as u64,
            self.published.store_id,
        ])
    }

    /// For a worker: the images of `names` (every table when empty), all from one snapshot.
    pub fn map_tables(&self, names: &[String]) -> Result<Vec<Mapped>> {
        let (snap, wanted) = {
            let mut slots = self.lock_writer();
            // Under the writer lock the current snapshot is the latest, and a slot given now starts at the
            // version this snapshot has.
            let snap = self.current.load_full();
            let names = if names.is_empty() {
                snap.table_names()
            } else {
                names.to_vec()
            };
            let mut wanted = Vec::with_capacity(names.len());
            for name in names {
                let slot = self.published.slot(&mut slots, &name, snap.version(&name));
                wanted.push((name, slot.map_err(io_error)?));
            }
            (snap, wanted)
        };
        wanted
            .into_iter()
            .map(|(name, slot)| {
                let table = snap.table(&name);
                self.published
                    .image(&name, slot, table.map_or(0, |t| t.version), table)
                    .map_err(io_error)
            })
            .collect()
    }

    /// Answers one worker request (see `request.rs` for the format). Never panics on bad input.
    pub fn handle_worker_request(&self, payload: &[u8]) -> Vec<u8> {
        request::handle(self, payload)
    }
}

#[cfg(test)]
mod tests;
