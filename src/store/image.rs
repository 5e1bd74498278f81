//! A table image: one version of one table, laid out so that a worker can look a key up in place with
//! nothing but `mmap`, `struct` and `zlib.crc32` (`python/slither/_worker/storeimage.py` reads it).
//!
//! ```text
//!  0   magic "SLSTIMG1"   8  store id   16 slot   24 version   32 count   40 buckets (a power of two)
//!  48  entries offset     56 reserved
//!  64  buckets: u64 offset of an entry, 0 for empty; open addressing, linear probing from crc32(key)
//!  ..  entries: u32 key length | u64 value length | key | value        (little-endian)
//! ```
//!
//! A large image is written completely into a fresh memfd, unmapped and sealed before any worker learns
//! of it, so a worker can never see one half-written. An image of at most `INLINE_MAX` bytes travels in
//! the reply instead (a worker copies 64 KiB faster than it opens and maps a segment). Building one is
//! O(n); the store builds an image only when a worker asks for a version it has not built yet (see
//! `publish.rs`), never on a write.

use std::io;

use super::shm::Segment;
use super::snapshot::Entries;

pub const MAGIC: &[u8; 8] = b"SLSTIMG1";
pub const HEAD: usize = 64;
const ENTRY_HEAD: usize = 12;

pub const INLINE_MAX: usize = 64 << 10;

/// Where an image's bytes are: a sealed segment (whose descriptor stays open, so that workers can map it,
/// until the image is dropped) or, for a small one, a buffer sent in the reply.
pub enum Body {
    Shared(Segment),
    Inline(Vec<u8>),
}

pub struct Image {
    pub version: u64,
    pub body: Body,
}

fn buckets_for(count: usize) -> usize {
    // At most half full, so that probes stay short.
    (count * 2).max(1).next_power_of_two()
}

impl Image {
    pub fn build(store_id: u64, slot: usize, version: u64, entries: Option<&Entries>) -> io::Result<Image> {
        let count = entries.map_or(0, |e| e.size());
        let nb = buckets_for(count);
        let body: usize = entries.map_or(0, |e| e.iter().map(|(k, v)| ENTRY_HEAD + k.len() + v.len()).sum());
        let len = HEAD + nb * 8 + body;
        let head = [
            store_id,
            slot as u64,
            version,
            count as u64,
            nb as u64,
            (HEAD + nb * 8) as u64,
        ];
        if len <= INLINE_MAX {
            let mut out = vec![0; len];
            write(&mut out, head, entries);
            return Ok(Image {
                version,
                body: Body::Inline(out),
            });
        }
        let segment = Segment::create("slither-store-image", len)?;
        write(segment.map_mut()?.as_mut_slice(), head, entries);
        segment.seal()?;
        Ok(Image {
            version,
            body: Body::Shared(segment),
        })
    }
}

/// Lays the image out in `out` (zero-filled, exactly as long as the layout needs).
fn write(out: &mut [u8], head: [u64; 6], entries: Option<&Entries>) {
    out[..8].copy_from_slice(MAGIC);
    for (i, w) in head.iter().enumerate() {
        out[8 + i * 8..16 + i * 8].copy_from_slice(&w.to_ne_bytes());
    }
    let mask = head[4] as usize - 1;
    let mut at = head[5] as usize;
    for (k, v) in entries.into_iter().flat_map(|e| e.iter()) {
        let mut b = crc32fast::hash(k) as usize & mask;
        while out[HEAD + b * 8..HEAD + b * 8 + 8] != [0; 8] {
            b = (b + 1) & mask;
        }
        out[HEAD + b * 8..HEAD + b * 8 + 8].copy_from_slice(&(at as u64).to_ne_bytes());
        out[at..at + 4].copy_from_slice(&(k.len() as u32).to_le_bytes());
        out[at + 4..at + 12].copy_from_slice(&(v.len() as u64).to_le_bytes());
        at += ENTRY_HEAD;
        out[at..at + k.len()].copy_from_slice(k);
        at += k.len();
        out[at..at + v.len()].copy_from_slice(v);
        at += v.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The lookup a worker does, in Rust: proves the layout is readable from its own description.
    fn lookup(img: &[u8], key: &[u8]) -> Option<Vec<u8>> {
        let word = |at: usize| u64::from_ne_bytes(img[at..at + 8].try_into().unwrap()) as usize;
        let mask = word(40) - 1;
        let mut b = crc32fast::hash(key) as usize & mask;
        loop {
            let at = word(HEAD + b * 8);
            if at == 0 {
                return None;
            }
            let kl = u32::from_le_bytes(img[at..at + 4].try_into().unwrap()) as usize;
            let vl = u64::from_le_bytes(img[at + 4..at + 12].try_into().unwrap()) as usize;
            let k = &img[at + 12..at + 12 + kl];
            if k == key {
                return Some(img[at + 12 + kl..at + 12 + kl + vl].to_vec());
            }
            b = (b + 1) & mask;
        }
    }

    fn bytes_of(img: &Image) -> Vec<u8> {
        match &img.body {
            Body::Shared(seg) => std::fs::read(format!("/proc/self/fd/{}", seg.fd())).unwrap(),
            Body::Inline(b) => b.clone(),
        }
    }

    #[test]
    fn every_key_is_found_and_absent_keys_are_not_in_shared_and_inline_images() {
        for (n, width) in [(5000u32, 20usize), (100, 7)] {
            let mut e = Entries::new_sync();
            for i in 0..n {
                e.insert_mut(
                    format!("k{i}").into_bytes(),
                    Arc::new(vec![i as u8; i as usize % width]),
                );
            }
            let img = Image::build(1, 2, 3, Some(&e)).unwrap();
            assert_eq!(matches!(img.body, Body::Shared(_)), n == 5000);
            let bytes = bytes_of(&img);
            assert_eq!(&bytes[..8], MAGIC);
            for i in 0..n {
                let want = vec![i as u8; i as usize % width];
                assert_eq!(lookup(&bytes, format!("k{i}").as_bytes()).unwrap(), want);
            }
            assert!(lookup(&bytes, b"nope").is_none());
        }
        let empty = Image::build(1, 2, 0, None).unwrap();
        assert_eq!(bytes_of(&empty).len(), HEAD + 8);
    }
}
