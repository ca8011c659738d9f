//! mpprof library: wire decoding, aggregation, analysis.
pub mod aggregate;
pub mod analyse;
pub mod check;
pub mod cli;
pub mod lineinfo;
pub mod live;
pub mod opcodes;
pub mod report_cmd;
pub mod run;
pub mod symbolize;
pub mod tui;
pub mod units;
pub mod views;
pub mod wire;
