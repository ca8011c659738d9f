//! mpprof library: wire decoding, aggregation, analysis.
