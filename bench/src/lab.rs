//! The benchmark's lab: every server a run measures, started on loopback
//! and stopped with it: the Keycloak and Polly stand-ins, voxgate (on TCP,
//! and on a Unix socket behind a second nginx), the Python comparison
//! servers, and nginx rendered from the project's files with static
//! baselines. What it shares with the tests and the soak (the realm, voxgate's
//! settings, the nginx rendering) comes from `voxgate_lab`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use aws_sdk_polly::config::{BehaviorVersion, Credentials, Region};
use voxgate_bench::procs::{Proc, free_port, wait_http};
use voxgate_lab::env::{POLLY_KEY_ID, POLLY_REGION, POLLY_SECRET};

use crate::Args;

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
    pub tls_url: String,
    pub tls_static_url: String,
    /// The same nginx configuration in front of a second voxgate that
    /// listens on a Unix socket (VOXGATE_BIND=unix:…).
    pub tls_unix_url: String,
    /// Trusts the run's local CA.
    pub tls_client: reqwest::Client,
    procs: Vec<Proc>,
    pub(crate) logs: PathBuf,
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
        voxgate_bench::oidc::password_token(&self.http, issuer, user).await
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
        let mut settings = voxgate_env(&self.args, &url, port, &self.issuer, &self.polly_url);
        settings.extend(env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let cmd = voxgate_command(&self.args, settings);
        let mut vx = Proc::spawn(&format!("voxgate-{port}"), cmd, &self.logs)?;
        wait_ready(&mut vx, &self.http, &url, Duration::from_secs(120)).await?;
        let pid = vx.pid();
        self.procs.push(vx);
        Ok((url, pid))
    }

    /// Takes `proc` into the lab: checked while sections run, stopped
    /// with the rest.
    pub fn adopt(&mut self, proc: Proc) {
        self.procs.push(proc);
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

pub async fn start_lab(args: Args) -> anyhow::Result<Lab> {
    let root = args.root.canonicalize().context("repository root")?;
    let work = root.join(&args.work_dir);
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    std::fs::create_dir_all(work.join("static"))?;
    let bin = |name: &str| root.join(&args.bin_dir).join(name);
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
    let issuer = format!("http://127.0.0.1:{kc_port}/realms/{REALM}");
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    procs.push(serve("keycloak-standin", cmd, &logs, &discovery).await?);

    // Polly stand-in with its control endpoint (delays, counters).
    let polly_port = free_port();
    let mut cmd = Command::new(bin("polly-standin"));
    cmd.arg("--bind")
        .arg(format!("127.0.0.1:{polly_port}"))
        .arg("--control")
        .arg("--chunk-size")
        .arg(args.polly_chunk_size.to_string())
        .env("RUST_LOG", "warn");
    let polly_url = format!("http://127.0.0.1:{polly_port}");
    let stats = format!("{polly_url}/_standin/stats");
    procs.push(serve("polly-standin", cmd, &logs, &stats).await?);

    // voxgate itself.
    let vx_port = free_port();
    let vx_url = format!("http://127.0.0.1:{vx_port}");
    for kv in &args.voxgate_env {
        ensure!(
            kv.split_once('=').is_some_and(|(k, _)| !k.is_empty()),
            "--voxgate-env {kv}: expected KEY=VALUE"
        );
    }
    let cmd = voxgate_command(
        &args,
        voxgate_env(&args, &vx_url, vx_port, &issuer, &polly_url),
    );
    let mut vx = Proc::spawn("voxgate", cmd, &logs)?;
    wait_ready(&mut vx, &http, &vx_url, Duration::from_secs(90)).await?;
    let vx_pid = vx.pid();
    procs.push(vx);

    let python = start_python(&root, &args, &issuer, &polly_url, &logs).await?;
    procs.extend(python.procs);
    let fronts = start_fronts(
        &root, &args, &work, &logs, &vx_url, vx_port, kc_port, &issuer, &polly_url,
    )
    .await?;
    procs.extend(fronts.procs);

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
        py_url: python.py_url,
        flask_url: python.flask_url,
        flask_workers: python.flask_workers,
        py_workers: python.py_workers,
        static_url: fronts.static_url,
        tls_url: fronts.tls_url,
        tls_static_url: fronts.tls_static_url,
        tls_unix_url: fronts.tls_unix_url,
        tls_client: fronts.tls_client,
        procs,
        logs,
    })
}

/// Spawns `cmd` as `name` and waits until `ready` answers.
async fn serve(name: &str, cmd: Command, logs: &Path, ready: &str) -> anyhow::Result<Proc> {
    let mut proc = Proc::spawn(name, cmd, logs)?;
    wait_http(&mut proc, ready, Duration::from_secs(30)).await?;
    Ok(proc)
}

/// The Python comparison servers.
struct Python {
    procs: Vec<Proc>,
    py_url: String,
    py_workers: usize,
    flask_url: String,
    flask_workers: usize,
}

async fn start_python(
    root: &Path,
    args: &Args,
    issuer: &str,
    polly_url: &str,
    logs: &Path,
) -> anyhow::Result<Python> {
    let venv = root.join(&args.venv);
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
        .env("OIDC_ISSUER", issuer)
        .env("OIDC_AUDIENCE", "voxgate");
    let py_url = format!("http://127.0.0.1:{py_port}");
    let py = serve("python-me", cmd, logs, &format!("{py_url}/healthz")).await?;

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
        .env("POLLY_ENDPOINT", polly_url)
        .env("AWS_REGION", POLLY_REGION)
        .env("AWS_ACCESS_KEY_ID", POLLY_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", POLLY_SECRET);
    let flask_url = format!("http://127.0.0.1:{flask_port}");
    let flask = serve("python-flask", cmd, logs, &format!("{flask_url}/")).await?;
    Ok(Python {
        procs: vec![py, flask],
        py_url,
        py_workers,
        flask_url,
        flask_workers,
    })
}

/// nginx in front: the project's configuration with the static baselines,
/// and a second one in front of a voxgate on a Unix socket.
struct Fronts {
    procs: Vec<Proc>,
    static_url: String,
    tls_url: String,
    tls_static_url: String,
    tls_unix_url: String,
    tls_client: reqwest::Client,
}

#[allow(clippy::too_many_arguments)]
async fn start_fronts(
    root: &Path,
    args: &Args,
    work: &Path,
    logs: &Path,
    vx_url: &str,
    vx_port: u16,
    kc_port: u16,
    issuer: &str,
    polly_url: &str,
) -> anyhow::Result<Fronts> {
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
        root,
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
    let mut procs = Vec::new();
    let mut nginx = Proc::spawn_with("nginx", cmd, logs, true)?;
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
    let mut cmd = voxgate_command(args, voxgate_env(args, vx_url, vx_port, issuer, polly_url));
    // nginx's workers run as www-data when the benchmark runs as root.
    cmd.env("VOXGATE_BIND", format!("unix:{}", socket.display()))
        .env("VOXGATE_SOCKET_MODE", "0666");
    procs.push(Proc::spawn("voxgate-unix", cmd, logs)?);
    let cmd = render_nginx(
        root,
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
    procs.push(Proc::spawn_with("nginx-unix", cmd, logs, true)?);

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
    Ok(Fronts {
        procs,
        static_url,
        tls_url: format!("https://127.0.0.1:{tls_port}"),
        tls_static_url: format!("https://127.0.0.1:{tls_static_port}"),
        tls_unix_url,
        tls_client,
    })
}

/// voxgate's settings for the run (documented in docs/benchmarks.md): the
/// local stack's, with limits out of the way and the cache's bound, then
/// the run's `--voxgate-env` over them (every voxgate the lab starts
/// gets them).
pub fn voxgate_env(
    args: &Args,
    vx_url: &str,
    vx_port: u16,
    issuer: &str,
    polly_url: &str,
) -> BTreeMap<String, String> {
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
    let mut env: BTreeMap<String, String> =
        env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    // Checked to be KEY=VALUE when the lab starts.
    env.extend(
        args.voxgate_env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    env
}

/// `voxgate serve` with the run's settings and `env` over them.
fn voxgate_command(lab_args: &Args, env: BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(lab_args.root.join(&lab_args.bin_dir).join("voxgate"));
    cmd.arg("serve").envs(env);
    cmd
}

/// Waits until voxgate's `/readyz` answers 200 (503 until its keys and
/// its engine are there), failing if it dies first.
async fn wait_ready(
    vx: &mut Proc,
    http: &reqwest::Client,
    url: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        vx.check_alive()?;
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("voxgate on {url} never became ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    root: &Path,
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
    voxgate_lab::nginx::render(root, dir, &vars, Some(&baselines))?;
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
