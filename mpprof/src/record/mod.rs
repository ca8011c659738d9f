//! From the wire's events to a Profile: names and lines for code objects
//! ([`symbolize`], [`lineinfo`]), totals per function, line and allocation
//! site ([`aggregate`]), fed by the one ingest loop ([`ingest`]).
pub mod aggregate;
pub mod ingest;
pub mod lineinfo;
pub mod symbolize;
