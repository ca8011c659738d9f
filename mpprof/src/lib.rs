//! mpprof library: wire decoding, aggregation, analysis.
pub mod units;
pub mod wire;
pub mod analyse;
pub mod opcodes;
