//! Shared-memory segments: anonymous memfds that a worker maps read-only by reopening
//! `/proc/<host pid>/fd/<n>`.
//!
//! A memfd has no name in any filesystem: it lives as long as some descriptor or mapping refers to it,
//! so a crash or SIGKILL of the host or of a worker leaves nothing behind in `/dev/shm` or on disk.
//! Descriptors are close-on-exec (spawned workers inherit none). A finished segment can be sealed: from
//! then on nobody, the host included, can change or resize it, which a worker checks before trusting it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Segment {
    fd: OwnedFd,
    len: usize,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Segment {
    /// A zero-filled segment of `len` bytes.
    pub fn create(name: &str, len: usize) -> io::Result<Segment> {
        let name = CString::new(name).map_err(|_| io::Error::other("segment name contains a NUL byte"))?;
        // SAFETY: `name` is a valid C string; the flags are constants.
        let raw = check(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
        // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len).map_err(|_| io::Error::other("segment too large"))?;
        // SAFETY: fd is a valid, owned memfd.
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
        Ok(Segment { fd, len })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A writable shared mapping of the whole segment (unmapped on drop).
    pub fn map_mut(&self) -> io::Result<MapMut> {
        // SAFETY: a fresh mapping of a descriptor we own, of the segment's own length; no aliasing Rust
        // reference exists to that memory until MapMut hands one out.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MapMut {
            ptr: ptr.cast(),
            len: self.len,
        })
    }

    /// Forbids every later write, shrink or grow, and further seals. Fails while a writable mapping exists.
    pub fn seal(&self) -> io::Result<()> {
        let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor we own.
        check(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
        Ok(())
    }
}

/// A writable shared mapping; the memory may also be mapped (read-only) by other processes.
pub struct MapMut {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access goes through &self/&mut self (or atomics).
unsafe impl Send for MapMut {}
// SAFETY: as above; shared access only ever reads or uses atomics (see `header.rs`).
unsafe impl Sync for MapMut {}

impl MapMut {
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr/len describe our live mapping, and &mut self guarantees exclusive access here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for MapMut {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mmap gave us; nothing refers to it after drop.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_segment_cannot_be_written_or_mapped_writable() {
        let seg = Segment::create("slither-test", 4096).unwrap();
        {
            let mut map = seg.map_mut().unwrap();
            map.as_mut_slice()[..5].copy_from_slice(b"hello");
            assert!(seg.seal().is_err(), "a writable mapping blocks sealing");
        }
        seg.seal().unwrap();
        assert!(seg.map_mut().is_err());
        let path = format!("/proc/self/fd/{}", seg.fd());
        assert_eq!(&std::fs::read(path).unwrap()[..5], b"hello");
    }
}
