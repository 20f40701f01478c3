//! The local topology voxgate is tested and measured on, described once
//! for the integration tests, the benchmark and the soak: the project realm
//! moved to a local origin ([`realm`]), voxgate's settings against the
//! Keycloak and Polly stand-ins ([`env`]), and the shipped nginx files
//! rendered for local ports and run in the foreground ([`nginx`]), and the
//! S3 servers the audio bucket is tried against ([`s3`]).
//!
//! It starts nothing itself: each caller owns its processes (the tests kill
//! them on drop, the benchmark logs them to files), and only what they
//! must agree on lives here.

pub mod env;
pub mod nginx;
pub mod realm;
pub mod s3;

use std::path::PathBuf;

/// The repository this crate was built in (it sits in `crates/lab`), for
/// the tests; the benchmark and the soak take theirs as `--root`.
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
