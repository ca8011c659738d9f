//! mpprof: a profiler and allocation analyser for MicroPython.
//!
//! The flow, one folder a step:
//! - [`capture`]: a [`capture::Recording`] (what to run, where) becomes a
//!   running target's [`board_agent::Session`]; one ingest loop turns its
//!   stream into a Profile while observers (the summary, the live view, the
//!   budget checker) watch the same run.
//! - [`wire`]: the stream's records (its own crate, shared with board-agent).
//! - [`record`]: decode → symbolize → aggregate into a Profile.
//! - [`analysis`]: what each allocation is and why (opcodes, causes).
//! - [`live`], [`check`]: the live view and budgets, observers of a run.
//! - [`output`]: files written whole or not at all.
//! - [`cmd`]: the command line, a thin layer over the rest (nothing below
//!   it imports it).
pub mod analysis;
pub mod capture;
pub mod check;
pub mod cmd;
pub mod live;
pub mod output;
pub mod quantities;
pub mod record;

pub use mpprof_wire as wire;
