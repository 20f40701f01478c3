//! The servers under test, as child processes that never outlive the run.
//!
//! Each child gets its own process group, so stopping it also stops the
//! workers it forked (uvicorn, gunicorn and nginx all fork) and nothing
//! else on the machine.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr in `logs/<name>.log`.
    pub fn spawn(name: &str, cmd: Command, logs: &Path) -> anyhow::Result<Proc> {
        Proc::spawn_with(name, cmd, logs, false)
    }

    /// Like [`Proc::spawn`], but stdout is thrown away (nginx writes its
    /// access log there: a line per request would fill the disk).
    pub fn spawn_with(
        name: &str,
        mut cmd: Command,
        logs: &Path,
        discard_stdout: bool,
    ) -> anyhow::Result<Proc> {
        use std::os::unix::process::CommandExt;
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(if discard_stdout {
                Stdio::null()
            } else {
                Stdio::from(out)
            })
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the tail of the log if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{} exited ({status}):\n{}", self.name, tail.join("\n"));
        }
        Ok(())
    }

    /// SIGTERM to the group (graceful: masters stop their workers), then
    /// SIGKILL to whatever is left after a few seconds.
    pub fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if self.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Workers may linger after their master; the group id is ours.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `url` until it answers with a status below 500.
pub async fn wait_http(proc: &mut Proc, url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + timeout;
    loop {
        proc.check_alive()?;
        if let Ok(r) = client.get(url).send().await
            && r.status().as_u16() < 500
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} did not answer at {url} within {timeout:?}", proc.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub use voxgate_lab::free_port;

/// Resident set size of `pid` in KiB (VmRSS from /proc).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    proc_status_kib(pid, "VmRSS:")
}

pub fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field) {
            let kib = rest.trim().trim_end_matches("kB").trim();
            return Ok(kib.parse()?);
        }
    }
    bail!("{field} not found for pid {pid}")
}

/// First line of a command's output (stdout, else stderr), for versions.
pub fn version_of(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => {
            let text = if o.stdout.is_empty() {
                String::from_utf8_lossy(&o.stderr).to_string()
            } else {
                String::from_utf8_lossy(&o.stdout).to_string()
            };
            text.lines().next().unwrap_or("").trim().to_string()
        }
        Err(_) => format!("{program}: not available"),
    }
}
