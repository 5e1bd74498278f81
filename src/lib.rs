//! slither-core: supervises isolated Python worker processes and dispatches batches to them.
//!
//! ```text
//!  host (binding crate)             this crate                                      workers
//!  ───────────────────      ─────────────────────────────────────────────      ────────────────────
//!  Pool::submit(job) ──▶ Sched (pool/sched.rs, pure) ──▶ frame written ──▶ fd 3 ──▶ python -m slither._worker
//!  Run::next()       ◀── completion channel ◀── supervisor thread: tokio ◀── fd 3 ◀──  (results, store reads)
//!                        one task per worker: frames · exit (pidfd) · output; ticks: deadlines · restarts
//! ```
//!
//! Payloads are opaque bytes here: the Python layer pickles them. The core owns processes,
//! ordering of sends, in-flight accounting, deadlines, crash attribution and the store.

pub mod config;
pub mod error;
pub mod events;
pub mod pool;
pub mod protocol;
pub mod stats;
pub mod store;

pub use config::PoolConfig;
pub use error::{Error, Result};
pub use pool::{Completion, Job, Outcome, Pool, Run};
pub use store::Store;
