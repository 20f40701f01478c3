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

/// A started worker: its pipes, and whether it is between requests. The
/// engines speak their own protocol over the pipes and mark each request
/// with [`Process::begin`] and [`Process::finished`], so a [`Pool`] never
/// hands out a worker that was left mid-answer.
pub struct Process {
    child: Child,
    pub stdin: ChildStdin,
    pub stdout: BufReader<ChildStdout>,
    /// False from a request's start until its answer has been read.
    in_step: bool,
}

impl Process {
    /// A request was sent: the worker is out of step until its answer
    /// has been read to the end.
    pub fn begin(&mut self) {
        self.in_step = false;
    }

    /// The request's answer was read to the end.
    pub fn finished(&mut self) {
        self.in_step = true;
    }
}

impl Warm for Process {
    fn usable(&mut self) -> bool {
        self.in_step && matches!(self.child.try_wait(), Ok(None))
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// What to start.
pub struct Spec<'a> {
    pub python: &'a Path,
    /// The worker's source, run with `-c`.
    pub script: &'a str,
    pub args: Vec<OsString>,
    /// Variables passed through from voxgate's environment.
    pub settings: &'a [&'a str],
    /// Variables set to fixed values.
    pub fixed: &'a [(&'a str, &'a str)],
    /// How long loading its model may take.
    pub start_timeout: Duration,
    /// What the worker loads, for messages ("voice", "model").
    pub loads: &'a str,
    /// The package a failure to start suggests is missing.
    pub package: &'a str,
}

/// Starts the worker and waits for its first line, which it returns (the
/// worker's ready line). The error names local paths: it is for the log,
/// not for users.
pub async fn start(spec: Spec<'_>) -> Result<(Process, String), String> {
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
        .envs(spec.fixed.iter().copied())
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
    let process = Process {
        child,
        stdin,
        stdout,
        in_step: true,
    };
    Ok((process, line.trim().to_string()))
}

/// A worker a [`Pool`] can hand out.
pub trait Warm: Send + 'static {
    /// Alive and not in the middle of an earlier request.
    fn usable(&mut self) -> bool;
    fn pid(&self) -> Option<u32>;
}

/// Why no worker was handed out.
#[derive(Debug)]
pub enum Refused<E> {
    /// Every worker stayed busy for the pool's wait.
    Busy,
    /// The pool is shutting down.
    Closed,
    /// A replacement worker could not start.
    Start(E),
}

/// Worker slots, first come first served; a permit of `free` guarantees
/// an unlocked slot. A slot's worker starts on first use, and a dead or
/// out-of-step one is replaced before it is handed out.
pub struct Pool<W> {
    slots: Vec<std::sync::Arc<tokio::sync::Mutex<Option<W>>>>,
    free: std::sync::Arc<tokio::sync::Semaphore>,
    pids: Pids,
    wait: Duration,
}

type Pids = std::sync::Arc<std::sync::Mutex<Vec<Option<u32>>>>;

fn set_pid(pids: &Pids, index: usize, pid: Option<u32>) {
    if let Ok(mut pids) = pids.lock()
        && let Some(p) = pids.get_mut(index)
    {
        *p = pid;
    }
}

/// One slot, held for as long as its request; dropping it frees the slot.
pub struct Lease<W: Warm> {
    // Fields drop in order: the slot is unlocked before the permit lets a
    // waiter in, so the waiter always finds it free.
    slot: tokio::sync::OwnedMutexGuard<Option<W>>,
    index: usize,
    pids: Pids,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<W: Warm> Pool<W> {
    /// `workers` slots (at least one), the first holding `first`, already
    /// started; a lease waits at most `wait` for a free slot.
    pub fn new(workers: usize, wait: Duration, first: W) -> Pool<W> {
        let workers = workers.max(1);
        let slots: Vec<_> = (0..workers)
            .map(|_| std::sync::Arc::new(tokio::sync::Mutex::new(None)))
            .collect();
        let mut pids = vec![None; workers];
        pids[0] = first.pid();
        if let Ok(mut slot) = slots[0].try_lock() {
            *slot = Some(first);
        }
        Pool {
            slots,
            free: std::sync::Arc::new(tokio::sync::Semaphore::new(workers)),
            pids: std::sync::Arc::new(std::sync::Mutex::new(pids)),
            wait,
        }
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// A usable worker, started with `start` if its slot has none.
    pub async fn lease<E, F>(&self, start: impl FnOnce() -> F) -> Result<Lease<W>, Refused<E>>
    where
        F: std::future::Future<Output = Result<W, E>>,
    {
        let permit = tokio::time::timeout(self.wait, self.free.clone().acquire_owned())
            .await
            .map_err(|_| Refused::Busy)?
            .map_err(|_| Refused::Closed)?;
        let (index, slot) = self
            .slots
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.clone().try_lock_owned().ok().map(|g| (i, g)))
            .ok_or(Refused::Busy)?;
        let mut lease = Lease {
            _permit: permit,
            index,
            pids: self.pids.clone(),
            slot,
        };
        if !lease.slot.as_mut().is_some_and(W::usable) {
            // Dropping the old worker kills it (kill_on_drop).
            *lease.slot = None;
            let worker = start().await.map_err(Refused::Start)?;
            self.set_pid(index, worker.pid());
            *lease.slot = Some(worker);
        }
        Ok(lease)
    }

    /// Drops the lease's worker (killing it): the slot starts a new one
    /// when next leased.
    pub fn discard(&self, lease: &mut Lease<W>) {
        *lease.slot = None;
        self.set_pid(lease.index, None);
    }

    fn set_pid(&self, index: usize, pid: Option<u32>) {
        set_pid(&self.pids, index, pid);
    }

    /// The process ids of the running workers.
    pub fn pids(&self) -> Vec<u32> {
        self.pids
            .lock()
            .map(|p| p.iter().flatten().copied().collect())
            .unwrap_or_default()
    }

    /// Whether a lease would not wait.
    pub fn idle(&self) -> bool {
        self.free.available_permits() > 0
    }

    /// Stops the workers not in use; a worker still leased (a stream past
    /// the grace period) goes with the process: it reads EOF and exits.
    pub fn shutdown(&self) {
        for (index, slot) in self.slots.iter().enumerate() {
            if let Ok(mut slot) = slot.try_lock() {
                // Dropping the worker kills it (kill_on_drop).
                *slot = None;
                self.set_pid(index, None);
            }
        }
    }
}

impl<W: Warm> Lease<W> {
    pub fn worker(&mut self) -> Option<&mut W> {
        self.slot.as_mut()
    }
}

impl<W: Warm> Drop for Lease<W> {
    /// A lease given up in the middle of a request (its client left)
    /// leaves the worker busy with an answer nobody reads: it is stopped
    /// at once rather than when the slot is next leased.
    fn drop(&mut self) {
        if self.slot.as_mut().is_some_and(|w| !w.usable()) {
            *self.slot = None;
            set_pid(&self.pids, self.index, None);
        }
    }
}
