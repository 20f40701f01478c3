//! Running wrk (the load generator, a separate process) and reading its
//! report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// One wrk invocation.
#[derive(Clone, Debug)]
pub struct Load {
    pub url: String,
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    pub headers: Vec<String>,
    /// A Lua script and its arguments (after `--`).
    pub script: Option<(PathBuf, Vec<String>)>,
}

impl Load {
    pub fn new(url: impl Into<String>, threads: u32, connections: u32, duration: Duration) -> Load {
        Load {
            url: url.into(),
            threads,
            connections,
            duration,
            headers: Vec::new(),
            script: None,
        }
    }

    pub fn header(mut self, h: impl Into<String>) -> Load {
        self.headers.push(h.into());
        self
    }

    pub fn bearer(self, token: &str) -> Load {
        self.header(format!("Authorization: Bearer {token}"))
    }

    pub fn script(mut self, path: PathBuf, args: Vec<String>) -> Load {
        self.script = Some((path, args));
        self
    }

    /// The command line as documented (the token elided).
    pub fn command_line(&self) -> String {
        let mut s = format!(
            "wrk -t{} -c{} -d{}s --latency",
            self.threads,
            self.connections,
            self.duration.as_secs()
        );
        for h in &self.headers {
            let shown = if h.starts_with("Authorization: Bearer ") {
                "Authorization: Bearer $TOKEN"
            } else {
                h.as_str()
            };
            s.push_str(&format!(" -H '{shown}'"));
        }
        if let Some((path, _)) = &self.script {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            s.push_str(&format!(" -s bench/lua/{name}"));
        }
        s.push_str(&format!(" '{}'", self.url));
        if let Some((_, args)) = &self.script
            && !args.is_empty()
        {
            s.push_str(" --");
            for a in args {
                s.push_str(&format!(" '{a}'"));
            }
        }
        s
    }

    pub async fn run(&self) -> anyhow::Result<WrkResult> {
        let mut cmd = tokio::process::Command::new("wrk");
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.duration.as_secs()))
            .arg("--timeout")
            .arg("10s")
            .arg("--latency");
        for h in &self.headers {
            cmd.arg("-H").arg(h);
        }
        if let Some((path, _)) = &self.script {
            cmd.arg("-s").arg(path);
        }
        cmd.arg(&self.url);
        if let Some((_, args)) = &self.script {
            cmd.arg("--").args(args);
        }
        cmd.kill_on_drop(true);
        let out = cmd.output().await.context("running wrk")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        parse(&text).with_context(|| format!("reading wrk output:\n{text}"))
    }
}

#[derive(Clone, Debug, Default)]
pub struct WrkResult {
    pub rps: f64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub transfer_per_sec: String,
}

fn parse(text: &str) -> anyhow::Result<WrkResult> {
    let mut r = WrkResult::default();
    let mut in_distribution = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if in_distribution {
            if let Some(v) = t.strip_prefix("50%") {
                r.p50_ms = duration_ms(v.trim())?;
                continue;
            }
            if let Some(v) = t.strip_prefix("99%") {
                r.p99_ms = duration_ms(v.trim())?;
                in_distribution = false;
                continue;
            }
            if t.starts_with("75%") || t.starts_with("90%") {
                continue;
            }
            in_distribution = false;
        }
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse()?;
        } else if let Some(v) = t.strip_prefix("Transfer/sec:") {
            r.transfer_per_sec = v.trim().to_string();
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse()?;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            r.socket_errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum();
        } else if t.contains(" requests in ") {
            r.requests = t
                .split_whitespace()
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
        }
    }
    if r.requests == 0 && r.rps == 0.0 {
        bail!("no requests reported");
    }
    Ok(r)
}

fn duration_ms(v: &str) -> anyhow::Result<f64> {
    let (num, unit) = v
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| v.split_at(i))
        .context("latency without unit")?;
    let n: f64 = num.trim().parse()?;
    Ok(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        other => bail!("unknown latency unit {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let text = "Running 10s test @ http://127.0.0.1:1/healthz
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us   9.00ms   90.00%
    Req/Sec    20.00k     1.00k   22.00k    70.00%
  Latency Distribution
     50%  835.00us
     75%    1.20ms
     90%    1.80ms
     99%    3.10ms
  400000 requests in 10.00s, 50.00MB read
  Non-2xx or 3xx responses: 7
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  40000.12
Transfer/sec:      5.00MB
";
        let r = parse(text).unwrap();
        assert_eq!(r.requests, 400_000);
        assert!((r.rps - 40000.12).abs() < 1e-6);
        assert!((r.p50_ms - 0.835).abs() < 1e-9);
        assert!((r.p99_ms - 3.1).abs() < 1e-9);
        assert_eq!(r.non_2xx, 7);
        assert_eq!(r.socket_errors, 3);
    }
}
