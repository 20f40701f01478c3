//! Pieces the benchmark and soak programs share.

pub mod chart;
pub mod oidc;
pub mod procs;
