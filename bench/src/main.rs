//! voxgate's load benchmarks: starts the stand-ins, voxgate, the Python
//! comparison servers and nginx on loopback, measures with wrk and small
//! clients, and rewrites docs/benchmarks.md.
//!
//! Run it through `scripts/bench`, which builds the release binaries,
//! prepares the machine (packages, Postgres, a fresh database, the Python
//! venv, local certificates) and runs the criterion token benchmark first.

mod provision;
mod report;
mod sections;
mod wrk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_polly::config::{BehaviorVersion, Credentials, Region};
use clap::Parser;

use report::Report;
use voxgate_bench::procs::{self, Proc, free_port, wait_http};
use voxgate_lab::env::{POLLY_KEY_ID, POLLY_REGION, POLLY_SECRET};

#[derive(Parser, Clone)]
#[command(about = "Runs voxgate's load benchmarks and rewrites docs/benchmarks.md")]
pub struct Args {
    /// Repository root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Where the release binaries are (relative to the root).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Python venv with bench/python/requirements.txt installed.
    #[arg(long, default_value = "target/bench-venv")]
    venv: PathBuf,
    /// Scratch directory: logs, static files, nginx configuration.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Local CA and server certificate from scripts/make-certs.
    #[arg(long, default_value = "target/bench/certs")]
    certs: PathBuf,
    /// An empty database for this run (scripts/bench recreates it).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/voxgate_bench"
    )]
    database_url: String,
    /// Measured runs per comparison.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Length of one wrk run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Length of one point of the concurrency curves.
    #[arg(long, default_value_t = 5)]
    curve_seconds: u64,
    /// Warm-up before each series of wrk runs.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// wrk threads and connections for throughput runs.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Where criterion wrote the token benchmark's estimates.
    #[arg(long, default_value = "target/criterion")]
    criterion_dir: PathBuf,
    /// The report to rewrite.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Only these sections (api, tls, hit, ttfb, rss, flight, original,
    /// provision, token, voices, curves, growth, listening); all when
    /// omitted.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The neural voice's Python (scripts/bench installs it); without it the
    /// voices section measures espeak-ng and Polly only.
    #[arg(long, env = "VOXGATE_PIPER_PYTHON")]
    piper_python: Option<PathBuf>,
    /// The recogniser's Python (scripts/bench installs it); the listening
    /// section needs it.
    #[arg(long, env = "VOXGATE_WHISPER_PYTHON")]
    whisper_python: Option<PathBuf>,
    /// Before measuring, print every URL and a token and keep the servers
    /// up this long (to profile or try things by hand).
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// The Polly stand-in's stream chunk size (its default is 4096).
    #[arg(long, default_value_t = 4096)]
    polly_chunk_size: usize,
    /// Extra environment for voxgate, KEY=VALUE (repeatable), to compare
    /// variants such as another allocator through LD_PRELOAD.
    #[arg(long = "voxgate-env")]
    voxgate_env: Vec<String>,
    /// The source revision the binaries were built from (scripts/bench reads
    /// it before building; read at start when not given).
    #[arg(long)]
    revision: Option<String>,
    /// Seconds `scripts/bench` spent before this program (build, setup,
    /// criterion), for the report.
    #[arg(long, default_value_t = 0)]
    setup_seconds: u64,
}

impl Args {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

pub const REALM: &str = "voxgate";
/// Generous limits so per-user rate limits and quotas never interfere.
pub const RATE_PER_MINUTE: &str = "100000000";
pub const DAILY_CHARS: &str = "100000000000";
/// The speech cache's bound (256 MiB): the growth section fills it.
pub const CACHE_MAX_BYTES: &str = "268435456";
/// Enough upstream syntheses at once for the 100-stream memory test.
pub const TTS_CONCURRENCY: &str = "128";

/// Everything that runs during a benchmark, and how to reach it.
pub struct Lab {
    pub args: Args,
    pub root: PathBuf,
    pub work: PathBuf,
    /// Distinguishes texts and user names from those of earlier runs.
    pub run_id: String,
    pub http: reqwest::Client,
    pub issuer: String,
    pub polly_url: String,
    pub polly: aws_sdk_polly::Client,
    pub vx_url: String,
    pub vx_pid: u32,
    pub py_url: String,
    pub flask_url: String,
    pub flask_workers: usize,
    pub py_workers: usize,
    pub static_url: String,
    pub tls_url: Option<String>,
    pub tls_static_url: Option<String>,
    /// The same nginx configuration in front of a second voxgate that
    /// listens on a Unix socket (VOXGATE_BIND=unix:…).
    pub tls_unix_url: Option<String>,
    pub tls_client: Option<reqwest::Client>,
    procs: Vec<Proc>,
    logs: PathBuf,
}

impl Lab {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.args.seconds)
    }

    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.args.warmup)
    }

    /// A fresh access token (the realm's tokens live 300 s, so every
    /// series asks for its own). alice is an admin: speech quotas do not
    /// apply to her.
    pub async fn token(&self, user: &str) -> anyhow::Result<String> {
        self.token_from(&self.issuer, user).await
    }

    /// A fresh access token from another issuer's `voxgate-cli` client.
    pub async fn token_from(&self, issuer: &str, user: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .post(format!("{issuer}/protocol/openid-connect/token"))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", user),
                ("password", user),
                ("scope", "openid"),
            ])
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("password grant for {user}: HTTP {}", response.status());
        }
        let body: serde_json::Value = response.json().await?;
        Ok(body["access_token"]
            .as_str()
            .context("no access_token")?
            .to_string())
    }

    pub async fn polly_control(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let r = self
            .http
            .post(format!("{}/_standin/{path}", self.polly_url))
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("polly stand-in {path}: HTTP {}", r.status());
        }
        Ok(r.json().await?)
    }

    pub async fn polly_synth_calls(&self) -> anyhow::Result<u64> {
        let stats: serde_json::Value = self
            .http
            .get(format!("{}/_standin/stats", self.polly_url))
            .send()
            .await?
            .json()
            .await?;
        stats["counters"]["synth_calls"]
            .as_u64()
            .context("synth_calls in stand-in stats")
    }

    /// Fails if a server under test has died.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.procs {
            p.check_alive()?;
        }
        Ok(())
    }

    /// Starts another voxgate on the same database and realm with `env`
    /// over the usual settings; returns its URL and pid. It is stopped
    /// with the rest of the lab.
    pub async fn start_voxgate(&mut self, env: &[(&str, String)]) -> anyhow::Result<(String, u32)> {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(self.root.join(&self.args.bin_dir).join("voxgate"));
        cmd.arg("serve");
        for (k, v) in voxgate_env(&self.args, &url, port, &self.issuer, &self.polly_url) {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut vx = Proc::spawn(&format!("voxgate-{port}"), cmd, &self.logs)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            vx.check_alive()?;
            if let Ok(r) = self.http.get(format!("{url}/readyz")).send().await
                && r.status() == 200
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("voxgate on {url} never became ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pid = vx.pid();
        self.procs.push(vx);
        Ok((url, pid))
    }

    /// Stops a process this lab started (by pid) before the lab ends.
    pub fn stop(&mut self, pid: u32) {
        self.procs.retain_mut(|p| {
            if p.pid() == pid {
                p.stop();
                false
            } else {
                true
            }
        });
    }

    pub fn vx_port(&self) -> u16 {
        self.vx_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let run = run(args);
    tokio::pin!(run);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Returning (rather than exiting) drops the lab, which stops every
    // process it started.
    tokio::select! {
        r = &mut run => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = term.recv() => bail!("terminated"),
    }
    eprintln!(
        "voxgate-bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut lab = start_lab(args).await?;
    let mut rep = Report::default();
    let a = lab.args.clone();
    if a.hold > 0 {
        eprintln!(
            "voxgate-bench: holding for {} s\n  voxgate {} (pid {})\n  python {}\n  flask {}\n  \
             polly {}\n  issuer {}\n  nginx static {}\n  nginx TLS {:?} static TLS {:?}\n  token {}",
            a.hold,
            lab.vx_url,
            lab.vx_pid,
            lab.py_url,
            lab.flask_url,
            lab.polly_url,
            lab.issuer,
            lab.static_url,
            lab.tls_url,
            lab.tls_static_url,
            lab.token("alice").await?
        );
        tokio::time::sleep(Duration::from_secs(a.hold)).await;
    }
    macro_rules! section {
        ($name:literal, $f:path) => {
            if a.wants($name) {
                eprintln!("voxgate-bench: {}", $name);
                $f(&mut lab, &mut rep)
                    .await
                    .with_context(|| format!("section {}", $name))?;
                lab.check_alive()?;
            }
        };
    }
    section!("api", sections::api);
    section!("tls", sections::tls);
    section!("hit", sections::cache_hit);
    section!("ttfb", sections::ttfb_miss);
    section!("rss", sections::rss_streams);
    section!("long", sections::long_hits);
    section!("flight", sections::single_flight);
    section!("original", sections::original);
    section!("token", sections::token_micro);
    section!("provision", provision::provisioning);
    section!("voices", sections::voices);
    section!("curves", sections::curves);
    section!("growth", sections::growth);
    section!("listening", sections::listening);
    let elapsed = started.elapsed().as_secs() + a.setup_seconds;
    let doc = sections::document(&lab, &rep, elapsed)?;
    let out = lab.path(&a.out.to_string_lossy());
    std::fs::write(&out, doc).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("voxgate-bench: wrote {}", out.display());
    Ok(())
}

async fn start_lab(args: Args) -> anyhow::Result<Lab> {
    let root = args.root.canonicalize().context("repository root")?;
    let work = root.join(&args.work_dir);
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    std::fs::create_dir_all(work.join("static"))?;
    let bin = |name: &str| root.join(&args.bin_dir).join(name);
    let venv = root.join(&args.venv);
    let run_id = format!(
        "{:x}",
        time::OffsetDateTime::now_utc().unix_timestamp() % 0xffffff
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build()?;
    let mut procs = Vec::new();

    // Keycloak stand-in with the project realm.
    let kc_port = free_port();
    let mut cmd = Command::new(bin("keycloak-standin"));
    cmd.arg("--realm")
        .arg(root.join("keycloak-realm/realm.json"))
        .arg("--bind")
        .arg(format!("127.0.0.1:{kc_port}"))
        .env("RUST_LOG", "warn");
    let mut kc = Proc::spawn("keycloak-standin", cmd, &logs)?;
    let issuer = format!("http://127.0.0.1:{kc_port}/realms/{REALM}");
    wait_http(
        &mut kc,
        &format!("{issuer}/.well-known/openid-configuration"),
        Duration::from_secs(30),
    )
    .await?;
    procs.push(kc);

    // Polly stand-in with its control endpoint (delays, counters).
    let polly_port = free_port();
    let mut cmd = Command::new(bin("polly-standin"));
    cmd.arg("--bind")
        .arg(format!("127.0.0.1:{polly_port}"))
        .arg("--control")
        .arg("--chunk-size")
        .arg(args.polly_chunk_size.to_string())
        .env("RUST_LOG", "warn");
    let mut polly = Proc::spawn("polly-standin", cmd, &logs)?;
    let polly_url = format!("http://127.0.0.1:{polly_port}");
    wait_http(
        &mut polly,
        &format!("{polly_url}/_standin/stats"),
        Duration::from_secs(30),
    )
    .await?;
    procs.push(polly);

    // voxgate itself.
    let vx_port = free_port();
    let vx_url = format!("http://127.0.0.1:{vx_port}");
    let mut cmd = Command::new(bin("voxgate"));
    cmd.arg("serve");
    for (k, v) in voxgate_env(&args, &vx_url, vx_port, &issuer, &polly_url) {
        cmd.env(k, v);
    }
    for kv in &args.voxgate_env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--voxgate-env {kv}: expected KEY=VALUE"))?;
        cmd.env(k, v);
    }
    let mut vx = Proc::spawn("voxgate", cmd, &logs)?;
    wait_http(
        &mut vx,
        &format!("{vx_url}/readyz"),
        Duration::from_secs(60),
    )
    .await?;
    let ready = http.get(format!("{vx_url}/readyz")).send().await?;
    if ready.status() != 200 {
        // /readyz answers 503 until the keys and the engine are there.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            vx.check_alive()?;
            if http.get(format!("{vx_url}/readyz")).send().await?.status() == 200 {
                break;
            }
            if Instant::now() > deadline {
                bail!("voxgate never became ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let vx_pid = vx.pid();
    procs.push(vx);

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);

    // Python /api/me: FastAPI on uvicorn, one worker per core.
    let py_workers = cores;
    let py_port = free_port();
    let mut cmd = Command::new(venv.join("bin/uvicorn"));
    cmd.args(["me_fastapi:app", "--app-dir"])
        .arg(root.join("bench/python"))
        .args(["--host", "127.0.0.1", "--port", &py_port.to_string()])
        .args(["--workers", &py_workers.to_string()])
        .args(["--log-level", "warning", "--no-access-log"])
        .env("OIDC_ISSUER", &issuer)
        .env("OIDC_AUDIENCE", "voxgate");
    let mut py = Proc::spawn("python-me", cmd, &logs)?;
    let py_url = format!("http://127.0.0.1:{py_port}");
    wait_http(
        &mut py,
        &format!("{py_url}/healthz"),
        Duration::from_secs(30),
    )
    .await?;
    procs.push(py);

    // The original Flask + boto3 endpoint on gunicorn, with gunicorn's
    // recommended 2 × cores + 1 sync workers (its work is mostly waiting
    // for Polly).
    let flask_workers = 2 * cores + 1;
    let flask_port = free_port();
    let mut cmd = Command::new(venv.join("bin/gunicorn"));
    cmd.args(["--workers", &flask_workers.to_string()])
        .args(["--bind", &format!("127.0.0.1:{flask_port}")])
        .arg("--chdir")
        .arg(root.join("bench/python"))
        .args(["--log-level", "warning", "original_flask:app"])
        .env("POLLY_ENDPOINT", &polly_url)
        .env("AWS_REGION", POLLY_REGION)
        .env("AWS_ACCESS_KEY_ID", POLLY_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", POLLY_SECRET);
    let mut flask = Proc::spawn("python-flask", cmd, &logs)?;
    let flask_url = format!("http://127.0.0.1:{flask_port}");
    wait_http(
        &mut flask,
        &format!("{flask_url}/"),
        Duration::from_secs(30),
    )
    .await?;
    procs.push(flask);

    // nginx: the project's configuration rendered for local ports, plus
    // static servers (plain and with the same TLS) for the baselines.
    let certs = root.join(&args.certs);
    if !certs.join("server.pem").exists() {
        bail!(
            "no certificates in {}: run scripts/make-certs {} (scripts/bench does)",
            certs.display(),
            args.certs.display()
        );
    }
    let (static_port, tls_port, tls_static_port) = (free_port(), free_port(), free_port());
    let cmd = render_nginx(
        &work.join("nginx"),
        &logs.join("nginx-error.log"),
        &work.join("static"),
        &certs,
        NginxPorts {
            static_http: static_port,
            https: tls_port,
            https_static: tls_static_port,
            voxgate: format!("127.0.0.1:{vx_port}"),
            keycloak: kc_port,
        },
    )?;
    let mut nginx = Proc::spawn_with("nginx", cmd, &logs, true)?;
    let static_url = format!("http://127.0.0.1:{static_port}");
    wait_http(
        &mut nginx,
        &format!("{static_url}/"),
        Duration::from_secs(10),
    )
    .await?;
    procs.push(nginx);

    // A second voxgate on a Unix socket, behind a second nginx rendered
    // from the same files (only the upstream differs).
    let tls_unix_port = free_port();
    let socket = work.join("voxgate.sock");
    let mut cmd = Command::new(bin("voxgate"));
    cmd.arg("serve");
    for (k, v) in voxgate_env(&args, &vx_url, vx_port, &issuer, &polly_url) {
        cmd.env(k, v);
    }
    for kv in &args.voxgate_env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // nginx's workers run as www-data when the benchmark runs as root.
    cmd.env("VOXGATE_BIND", format!("unix:{}", socket.display()))
        .env("VOXGATE_SOCKET_MODE", "0666");
    procs.push(Proc::spawn("voxgate-unix", cmd, &logs)?);
    let cmd = render_nginx(
        &work.join("nginx-unix"),
        &logs.join("nginx-unix-error.log"),
        &work.join("static"),
        &certs,
        NginxPorts {
            static_http: free_port(),
            https: tls_unix_port,
            https_static: free_port(),
            voxgate: format!("unix:{}", socket.display()),
            keycloak: kc_port,
        },
    )?;
    procs.push(Proc::spawn_with("nginx-unix", cmd, &logs, true)?);

    let ca = std::fs::read(certs.join("ca.pem"))?;
    let tls_client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .timeout(Duration::from_secs(30))
        .build()?;
    // Ready when voxgate answers through it.
    let tls_unix_url = format!("https://127.0.0.1:{tls_unix_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for p in &mut procs {
            p.check_alive()?;
        }
        let up = tls_client
            .get(format!("{tls_unix_url}/healthz"))
            .send()
            .await;
        if up.is_ok_and(|r| r.status() == 200) {
            break;
        }
        if Instant::now() > deadline {
            bail!("voxgate on the Unix socket never answered through nginx");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (tls_url, tls_static_url, tls_unix_url, tls_client) = (
        Some(format!("https://127.0.0.1:{tls_port}")),
        Some(format!("https://127.0.0.1:{tls_static_port}")),
        Some(tls_unix_url),
        Some(tls_client),
    );

    let polly_conf = aws_sdk_polly::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&polly_url)
        .region(Region::new(POLLY_REGION))
        .credentials_provider(Credentials::new(
            POLLY_KEY_ID,
            POLLY_SECRET,
            None,
            None,
            "bench",
        ))
        .build();

    Ok(Lab {
        args,
        root,
        work,
        run_id,
        http,
        issuer,
        polly: aws_sdk_polly::Client::from_conf(polly_conf),
        polly_url,
        vx_url,
        vx_pid,
        py_url,
        flask_url,
        flask_workers,
        py_workers,
        static_url,
        tls_url,
        tls_static_url,
        tls_unix_url,
        tls_client,
        procs,
        logs,
    })
}

/// voxgate's settings for the run (documented in docs/benchmarks.md): the
/// local stack's, with limits out of the way and the cache's bound.
pub fn voxgate_env(
    args: &Args,
    vx_url: &str,
    vx_port: u16,
    issuer: &str,
    polly_url: &str,
) -> BTreeMap<&'static str, String> {
    let mut env = voxgate_lab::env::voxgate(&voxgate_lab::env::Stack {
        database_url: &args.database_url,
        public_url: vx_url,
        issuer,
        polly_url,
    });
    env.extend([
        ("VOXGATE_BIND", format!("127.0.0.1:{vx_port}")),
        ("VOXGATE_TTS_RATE_PER_MINUTE", RATE_PER_MINUTE.to_string()),
        ("VOXGATE_TTS_DAILY_CHARS", DAILY_CHARS.to_string()),
        ("VOXGATE_TTS_CONCURRENCY", TTS_CONCURRENCY.to_string()),
        // One user stands for many here: the per-user bound would refuse
        // the hundred streams the memory section opens.
        ("VOXGATE_TTS_USER_CONCURRENCY", TTS_CONCURRENCY.to_string()),
        ("VOXGATE_TTS_CACHE_MAX_BYTES", CACHE_MAX_BYTES.to_string()),
    ]);
    env
}

/// Where one rendered nginx listens: the project's configuration
/// (`voxgate_lab::nginx`) plus the static baselines for
/// docs/benchmarks.md, plain and with the same TLS (it sits in the same
/// `http` block, so it inherits exactly the project's certificate and TLS
/// settings).
struct NginxPorts {
    static_http: u16,
    https: u16,
    https_static: u16,
    /// An nginx upstream address: `127.0.0.1:PORT` or `unix:/path`.
    voxgate: String,
    keycloak: u16,
}

fn render_nginx(
    dir: &Path,
    error_log: &Path,
    static_root: &Path,
    certs: &Path,
    ports: NginxPorts,
) -> anyhow::Result<Command> {
    let static_root = static_root.display();
    let baselines = format!(
        "# Baselines for docs/benchmarks.md: the same bytes served as static files.\n\
         server {{\n    listen 127.0.0.1:{};\n    root {static_root};\n}}\n\
         server {{\n    listen 127.0.0.1:{} ssl http2;\n    server_name localhost 127.0.0.1;\n    root {static_root};\n}}\n",
        ports.static_http, ports.https_static
    );
    let keycloak = format!("127.0.0.1:{}", ports.keycloak);
    let vars = voxgate_lab::nginx::vars(&voxgate_lab::nginx::Ports {
        https: ports.https,
        http_redirect: free_port(),
        backchannel: free_port(),
        upstreams: &[ports.voxgate],
        keycloak: &keycloak,
        certs,
    });
    voxgate_lab::nginx::render(dir, &vars, Some(&baselines))?;
    let cmd = voxgate_lab::nginx::command(dir, error_log);
    let test = Command::new("nginx")
        .args(cmd.get_args())
        .arg("-t")
        .output()?;
    if !test.status.success() {
        bail!(
            "nginx -t failed:\n{}",
            String::from_utf8_lossy(&test.stderr)
        );
    }
    Ok(cmd)
}
