//! Warm Python worker processes (the neural voice, the recogniser): started
//! isolated (`python -I -c SCRIPT`) with the cleared [`worker_env`] plus
//! the named tuning variables, talking over pipes, ready once they print
//! their first line.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::worker_env;

/// A started worker and the line it announced itself with.
pub struct Started {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: BufReader<ChildStdout>,
    pub ready_line: String,
}

/// What to start.
pub struct Spec<'a> {
    pub python: &'a Path,
    /// The worker's source, run with `-c`.
    pub script: &'a str,
    pub args: Vec<OsString>,
    /// Variables passed through from voxgate's environment.
    pub settings: &'a [&'a str],
    /// How long loading its model may take.
    pub start_timeout: Duration,
    /// What the worker loads, for messages ("voice", "model").
    pub loads: &'a str,
    /// The package a failure to start suggests is missing.
    pub package: &'a str,
}

/// Starts the worker and waits for its first line. The error names local
/// paths: it is for the log, not for users.
pub async fn start(spec: Spec<'_>) -> Result<Started, String> {
    let mut command = Command::new(spec.python);
    // Isolated (-I: no PYTHON* variables, no user site, no current
    // directory on the path) and with none of voxgate's secrets.
    command
        .env_clear()
        .envs(worker_env())
        .envs(
            spec.settings
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
        )
        .arg("-I")
        .arg("-c")
        .arg(spec.script)
        .args(&spec.args);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.python.display()))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("the worker's pipes were not set up".into());
    };
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    match tokio::time::timeout(spec.start_timeout, stdout.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => {
            let status = child.wait().await.map(|s| s.to_string());
            return Err(format!(
                "the worker stopped before its {} was loaded ({}); is {} installed for {}?",
                spec.loads,
                status.unwrap_or_else(|e| e.to_string()),
                spec.package,
                spec.python.display()
            ));
        }
        Err(_) => {
            return Err(format!(
                "the worker did not load its {} within {} s",
                spec.loads,
                spec.start_timeout.as_secs()
            ));
        }
    }
    Ok(Started {
        child,
        stdin,
        stdout,
        ready_line: line.trim().to_string(),
    })
}
