//! The mpprof Profile model.
