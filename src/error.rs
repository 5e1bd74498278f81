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
    /// A malformed frame or store request.
    Protocol(String),
    /// A store operation failed (unknown table, bad request, version conflict on reload).
    Store(String),
    /// Bad configuration, named.
    Config(String),
    /// Waiting timed out (only for bounded waits the caller asked for).
    Timeout,
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PoolClosed => write!(f, "the pool is closed"),
            Error::PoolBroken(why) => write!(f, "the pool is broken: {why}"),
            Error::Io(why) => write!(f, "I/O error: {why}"),
            Error::SessionLost { worker, generation } => write!(
                f,
                "the session's worker {worker} (generation {generation}) died or was replaced; its state is gone"
            ),
            Error::NoSuchWorker(i) => write!(f, "no worker with index {i}"),
            Error::Protocol(why) => write!(f, "protocol error: {why}"),
            Error::Store(why) => write!(f, "store error: {why}"),
            Error::Config(why) => write!(f, "invalid configuration: {why}"),
            Error::Timeout => write!(f, "timed out"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
