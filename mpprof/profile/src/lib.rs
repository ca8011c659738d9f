//! The mpprof Profile model.

pub mod cause;
