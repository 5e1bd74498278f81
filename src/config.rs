//! Pool configuration: a control-plane struct that crosses from Python with pythonize.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Number of worker processes.
    pub workers: usize,
    /// The interpreter to run workers with.
    pub python: String,
    /// Arguments after the interpreter (default: `-m slither._worker`).
    pub args: Vec<String>,
    /// Extra environment variables for workers.
    pub env: BTreeMap<String, String>,
    /// Working directory of workers (default: the host's).
    pub cwd: Option<String>,
    /// Batches written to one worker's channel before its previous ones answered, so it never idles.
    pub pipeline_depth: usize,
    /// Seconds to wait for a worker's hello and init.
    pub startup_timeout: f64,
    /// Replace a worker after this many batches.
    pub max_tasks_per_worker: Option<u64>,
    /// Replace a worker whose resident memory stays above this many bytes for `memory_samples` samples.
    pub max_memory_per_worker: Option<u64>,
    pub memory_samples: u32,
    /// Consecutive failed starts of one worker slot before the pool is declared broken.
    pub crash_loop_limit: u32,
    /// First restart backoff after a failed start, doubled each time.
    pub restart_backoff: f64,
    /// Seconds between SIGTERM and SIGKILL when stopping.
    pub shutdown_grace: f64,
    /// Prefix worker output lines with `[w<index> pid <pid>]` on the host's stderr.
    pub forward_output: bool,
    /// Largest frame payload in either direction, in bytes. A worker announcing more is killed and replaced
    /// with a protocol error; a host payload over it is refused before it is sent.
    pub max_frame_bytes: u64,
    /// Seconds a worker's current batch must have run before a batch held behind it is given to an idle
    /// worker instead.
    pub steal_after: f64,
    /// Modules a template process imports once; workers are then forked from it instead of started as fresh
    /// interpreters (empty: no template).
    pub preload: Vec<String>,
    /// Import path entries the template puts first before importing `preload` (the host's, as workers get).
    pub preload_path: Vec<String>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: 1,
            python: "python3".into(),
            args: vec!["-m".into(), "slither._worker".into()],
            env: BTreeMap::new(),
            cwd: None,
            pipeline_depth: 2,
            startup_timeout: 60.0,
            max_tasks_per_worker: None,
            max_memory_per_worker: None,
            memory_samples: 3,
            crash_loop_limit: 3,
            restart_backoff: 0.05,
            shutdown_grace: 2.0,
            forward_output: true,
            max_frame_bytes: crate::protocol::DEFAULT_MAX_FRAME,
            steal_after: 0.005,
            preload: Vec::new(),
            preload_path: Vec::new(),
        }
    }
}

impl PoolConfig {
    pub fn validate(&self) -> Result<()> {
        if self.workers == 0 {
            return Err(Error::Config("workers must be at least 1".into()));
        }
        if self.pipeline_depth == 0 {
            return Err(Error::Config("pipeline_depth must be at least 1".into()));
        }
        if self.startup_timeout.is_nan() || self.startup_timeout <= 0.0 {
            return Err(Error::Config("startup_timeout must be positive".into()));
        }
        if self.crash_loop_limit == 0 {
            return Err(Error::Config("crash_loop_limit must be at least 1".into()));
        }
        if self.max_frame_bytes < 1024 {
            return Err(Error::Config("max_frame_bytes must be at least 1024".into()));
        }
        if self.steal_after.is_nan() || self.steal_after < 0.0 {
            return Err(Error::Config(
                "steal_after must be a non-negative number of seconds".into(),
            ));
        }
        if self.shutdown_grace.is_nan() || self.restart_backoff.is_nan() || self.restart_backoff < 0.0 {
            return Err(Error::Config(
                "shutdown_grace and restart_backoff must be non-negative numbers".into(),
            ));
        }
        if let Some(bad) = self.preload.iter().find(|m| !is_module_name(m)) {
            return Err(Error::Config(format!(
                "preload must list importable module names like \"numpy\" or \"sklearn.linear_model\", got {bad:?}"
            )));
        }
        if self.max_tasks_per_worker == Some(0) {
            return Err(Error::Config("max_tasks_per_worker must be at least 1".into()));
        }
        Ok(())
    }

    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.startup_timeout)
    }

    pub fn steal_after(&self) -> Duration {
        Duration::from_secs_f64(self.steal_after.max(0.0))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace.max(0.0))
    }
}

/// A dotted Python module name (`a.b_c.d`): identifiers separated by dots.
fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                && chars.all(|c| c.is_alphanumeric() || c == '_')
        })
}
