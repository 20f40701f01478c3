//! Deployment: the nginx front run for real ([`nginx`]) and the checks of
//! the compose file and Dockerfile ([`compose`]).

use std::path::{Path, PathBuf};

mod compose;
pub(crate) mod nginx;
mod socket;
mod stack;
mod topology;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `KEY=value` lines of one of deploy/*.env, in order. The subset both
/// Compose's `env_file:` and scripts/stack read the same way: no quotes,
/// no comment after a value, no `$`.
fn env_file(path: &str) -> Vec<(String, String)> {
    read(path)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{path}: `{line}` is KEY=value"));
            assert!(
                key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{path}: `{key}` is a plain variable name"
            );
            for forbidden in ['"', '\'', '$', '#'] {
                assert!(
                    !value.contains(forbidden),
                    "{path}: {key}: `{forbidden}` would be read differently by Compose and the stack"
                );
            }
            (key.to_string(), value.to_string())
        })
        .collect()
}
