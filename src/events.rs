//! Telemetry events. With no subscriber, `EventBus::emit` is one relaxed atomic load: the event
//! is not even built (callers pass a closure).

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    WorkerStarted {
        worker: usize,
        pid: u32,
        generation: u64,
    },
    WorkerReady {
        worker: usize,
        pid: u32,
        generation: u64,
        startup_s: f64,
    },
    WorkerExited {
        worker: usize,
        pid: u32,
        generation: u64,
        exit_code: Option<i32>,
        signal: Option<String>,
        reason: String,
    },
    WorkerReplaced {
        worker: usize,
        old_pid: u32,
        generation: u64,
        reason: String,
    },
    BatchStarted {
        batch: u64,
        worker: usize,
        items: u32,
    },
    BatchFinished {
        batch: u64,
        worker: usize,
        items: u32,
        ok: bool,
        duration_s: f64,
    },
    BatchFailed {
        batch: u64,
        worker: usize,
        items: u32,
        cause: String,
        duration_s: f64,
    },
    BatchRequeued {
        batch: u64,
        worker: usize,
        reason: String,
    },
    PoolBroken {
        reason: String,
    },
}

pub struct EventBus {
    active: AtomicBool,
    tx: Sender<Event>,
    rx: Receiver<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        EventBus {
            active: AtomicBool::new(false),
            tx,
            rx,
        }
    }
}

impl EventBus {
    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Relaxed);
        if !on {
            while self.rx.try_recv().is_ok() {}
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn emit(&self, make: impl FnOnce() -> Event) {
        if self.is_active() {
            let _ = self.tx.send(make());
        }
    }

    pub fn receiver(&self) -> Receiver<Event> {
        self.rx.clone()
    }
}
