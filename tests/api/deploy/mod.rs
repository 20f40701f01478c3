//! Deployment: the nginx front run for real ([`nginx`]) and the checks of
//! the compose file and Dockerfile ([`compose`]).

use std::path::{Path, PathBuf};

mod compose;
mod nginx;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}
