//! vm-instrumented
