//! The scheduler's rules, without a process: events in, effects out.
