//! Renderers of an mpprof Profile. They only read a Profile: the summary,
//! the annotated source, and (later) flame graphs and exports.

pub mod annotate;
pub mod diff;
pub mod export;
pub mod firefox;
pub mod flamegraph;
pub mod format;
pub mod html;
pub mod summary;
