//! Pieces the benchmark and soak programs share.

pub mod chart;
pub mod procs;
