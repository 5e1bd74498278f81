//! The version header: one small shared segment per store, mapped read-only by every worker, that says
//! which version of each table is current. A worker compares it with the version of the image it holds,
//! so a read that finds its image current asks the host nothing.
//!
//! ```text
//!  word 0  magic "SLSTHDR1"        word 2  store id          word 8 + s  version of the table in slot s
//!  word 1  sequence (seqlock)      word 3  slot capacity
//! ```
//!
//! Words are native-endian u64 at 8-byte-aligned offsets (a single load or store each). Only the store's
//! writer, holding the writer lock, changes them: it makes the sequence odd, stores the new versions and
//! makes it even again, so a reader that sees the same even sequence before and after reading several slots
//! read versions that were current together.

use std::io;
use std::sync::atomic::{fence, AtomicU64, Ordering};

use super::shm::{MapMut, Segment};

pub const MAGIC: u64 = u64::from_le_bytes(*b"SLSTHDR1");
pub const FIRST_SLOT_WORD: usize = 8;
/// Tables a store's workers can read locally; reads of tables beyond it go to the host.
pub const CAPACITY: usize = 1 << 16;

pub struct Header {
    segment: Segment,
    map: MapMut,
}

impl Header {
    pub fn create(store_id: u64) -> io::Result<Header> {
        let segment = Segment::create("slither-store-header", (FIRST_SLOT_WORD + CAPACITY) * 8)?;
        let map = segment.map_mut()?;
        let header = Header { segment, map };
        header.word(0).store(MAGIC, Ordering::Relaxed);
        header.word(2).store(store_id, Ordering::Relaxed);
        header.word(3).store(CAPACITY as u64, Ordering::Release);
        Ok(header)
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!((i + 1) * 8 <= self.map.len());
        // SAFETY: in bounds (checked), 8-byte aligned (mmap returns page-aligned memory), and only ever
        // accessed atomically by this process; other processes map it read-only.
        unsafe { &*(self.map.as_ptr().add(i * 8) as *const AtomicU64) }
    }

    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Publishes new versions for some slots as one step. The caller holds the store's writer lock.
    pub fn publish(&self, versions: &[(usize, u64)]) {
        if versions.is_empty() {
            return;
        }
        let seq = self.word(1);
        let s = seq.load(Ordering::Relaxed);
        seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for &(slot, version) in versions {
            self.word(FIRST_SLOT_WORD + slot).store(version, Ordering::Relaxed);
        }
        seq.store(s + 2, Ordering::Release);
    }

    #[cfg(test)]
    pub fn version(&self, slot: usize) -> u64 {
        self.word(FIRST_SLOT_WORD + slot).load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub fn sequence(&self) -> u64 {
        self.word(1).load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_leaves_an_even_sequence_and_the_versions() {
        let h = Header::create(7).unwrap();
        h.publish(&[(0, 3), (5, 9)]);
        assert_eq!(h.sequence(), 2);
        assert_eq!((h.version(0), h.version(5), h.version(1)), (3, 9, 0));
        let bytes = std::fs::read(format!("/proc/self/fd/{}", h.segment().fd())).unwrap();
        assert_eq!(&bytes[..8], b"SLSTHDR1");
        assert_eq!(u64::from_ne_bytes(bytes[16..24].try_into().unwrap()), 7);
    }
}
