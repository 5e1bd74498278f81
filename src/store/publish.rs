//! What the store shows its workers: the version header and, per table, the image of its latest
//! version that some worker asked for.
//!
//! ```text
//!  write ──(writer lock)──▶ new snapshot ──▶ header: slot versions bumped      O(tables written)
//!  worker: header[slot] == image version? ──yes──▶ read its mapped image       (no host involved)
//!                                        └─no──▶ MAP request ──▶ image of the current version,
//!                                                 built once per version, shared by every worker
//! ```
//!
//! A table gets a slot the first time a worker maps it. Images are built lazily, so a write never pays
//! for one: a write costs O(log n) however many keys the table has, and a table that changes faster than
//! workers read it is imaged only as often as they read it. Each table keeps its last two images open,
//! so that a worker told of one moments before a newer one replaced it can still open it.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::header::{Header, CAPACITY};
use super::image::Image;
use super::snapshot::Table;

/// Slot numbers by table name; lives inside the store's writer lock.
#[derive(Default)]
pub struct Slots {
    by_name: HashMap<String, usize>,
}

impl Slots {
    pub fn get(&self, table: &str) -> Option<usize> {
        self.by_name.get(table).copied()
    }
}

#[derive(Default)]
struct Kept {
    current: Option<Arc<Image>>,
    previous: Option<Arc<Image>>,
}

pub struct Published {
    pub store_id: u64,
    header: OnceLock<Header>,
    images: Mutex<HashMap<String, Arc<Mutex<Kept>>>>,
}

/// One table as a worker maps it.
pub struct Mapped {
    pub name: String,
    pub slot: usize,
    pub image: Arc<Image>,
}

fn next_store_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    (u64::from(std::process::id()) << 32) | NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Default for Published {
    fn default() -> Self {
        Published {
            store_id: next_store_id(),
            header: OnceLock::new(),
            images: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Published {
    #[cfg(test)]
    pub fn header(&self) -> Option<&Header> {
        self.header.get()
    }

    /// The header, created on first use. The caller holds the writer lock (so no write is half-published).
    pub fn attach(&self) -> io::Result<&Header> {
        if let Some(h) = self.header.get() {
            return Ok(h);
        }
        let h = Header::create(self.store_id)?;
        Ok(self.header.get_or_init(|| h))
    }

    /// After a write (writer lock held): the new versions of the written tables that have slots.
    pub fn publish(&self, slots: &Slots, written: &[(&str, u64)]) {
        let Some(header) = self.header.get() else { return };
        let changed: Vec<(usize, u64)> = written
            .iter()
            .filter_map(|(name, v)| slots.get(name).map(|s| (s, *v)))
            .collect();
        header.publish(&changed);
    }

    /// The slot of `table`, given one (set to `version`, its current version) if it had none.
    /// The caller holds the writer lock.
    pub fn slot(&self, slots: &mut Slots, table: &str, version: u64) -> io::Result<usize> {
        if let Some(s) = slots.get(table) {
            return Ok(s);
        }
        let header = self.attach()?;
        let s = slots.by_name.len();
        if s >= CAPACITY {
            return Err(io::Error::other(format!(
                "workers map at most {CAPACITY} tables of one store; read {table:?} through the host"
            )));
        }
        slots.by_name.insert(table.to_string(), s);
        header.publish(&[(s, version)]);
        Ok(s)
    }

    /// The image of `table` as of `version` (built now if no worker asked for that version before).
    pub fn image(&self, name: &str, slot: usize, version: u64, table: Option<&Arc<Table>>) -> io::Result<Mapped> {
        let kept = lock(&self.images).entry(name.to_string()).or_default().clone();
        // Holding this table's lock while building: a second worker asking for the same version waits
        // for the first build instead of doing it again.
        let mut kept = lock(&kept);
        for img in [&kept.current, &kept.previous].into_iter().flatten() {
            if img.version == version {
                return Ok(Mapped {
                    name: name.to_string(),
                    slot,
                    image: img.clone(),
                });
            }
        }
        let image = Arc::new(Image::build(self.store_id, slot, version, table.map(|t| &t.entries))?);
        let newer = match &kept.current {
            Some(current) => current.version < version,
            None => true,
        };
        if newer {
            kept.previous = kept.current.replace(image.clone());
        }
        Ok(Mapped {
            name: name.to_string(),
            slot,
            image,
        })
    }
}
