//! The one error type of the core. The binding crate maps each variant to one Python exception.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The pool was closed or terminated; nothing new is accepted.
    PoolClosed,
    /// Workers could not be kept alive (crash loop at start-up, bad interpreter, init failing).
    PoolBroken(String),
    /// Spawning or talking to a worker failed at the OS level.
    Io(String),
    /// A session's worker died or was replaced; its state is gone.
    SessionLost { worker: usize, generation: u64 },
    /// A worker index outside the pool.
    NoSuchWorker(usize),
    /// A payload larger than the pool's `max_frame_bytes`.
    FrameTooLarge { bytes: u64, limit: u64 },
    /// The pool was created in another process (this one is a fork of it): it cannot be used here.
    ForkedChild { owner: u32 },
    /// A store operation failed (unknown table, bad request, version conflict on reload).
    Store(String),
    /// Bad configuration, named.
    Config(String),
    /// A bounded wait the caller asked for ran out (e.g. for a worker to open a session on).
    Timeout(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PoolClosed => write!(f, "the pool is closed"),
            Error::PoolBroken(why) => write!(f, "{why}"),
            Error::Io(why) => write!(f, "I/O error: {why}"),
            Error::SessionLost { worker, generation } => write!(
                f,
                "the session's worker {worker} (generation {generation}) died or was replaced; its state is gone"
            ),
            Error::NoSuchWorker(i) => write!(f, "no worker with index {i}"),
            Error::FrameTooLarge { bytes, limit } => write!(
                f,
                "a payload of {} bytes is over the pool's max_frame_bytes={}",
                grouped(*bytes),
                grouped(*limit)
            ),
            Error::ForkedChild { owner } => write!(
                f,
                "this pool belongs to process {owner}; a forked child cannot use it (create a new Pool in the child)"
            ),
            Error::Store(why) => write!(f, "store error: {why}"),
            Error::Config(why) => write!(f, "invalid configuration: {why}"),
            Error::Timeout(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// `1234567` as `1,234,567`, as the Python side prints sizes.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_are_grouped_by_thousands() {
        assert_eq!(super::grouped(0), "0");
        assert_eq!(super::grouped(999), "999");
        assert_eq!(super::grouped(1000), "1,000");
        assert_eq!(super::grouped(2_370_567), "2,370,567");
    }
}
