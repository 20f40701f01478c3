//! Section 7, provisioning against the real Keycloak: users created
//! through voxgate's saga (`POST /api/admin/users`) beside the bare admin
//! calls that saga makes, back to back on the same server.
//!
//! The server is the pinned Keycloak from `scripts/keycloak run`, with the
//! project realm imported by `voxgate realm import`. It runs only for this
//! section, so the JVM takes no CPU from the others.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::report::{Report, Verdict, percentile, spread, table};
use crate::{Lab, REALM};
use voxgate_bench::procs::{Proc, free_port, wait_http};

/// The realm file's service account and its dev-only secret.
const ADMIN_CLIENT: &str = "voxgate-admin";
const ADMIN_CLIENT_SECRET: &str = voxgate_lab::env::ADMIN_SECRET;
const PASSWORD: &str = "bench-password-123";
/// voxgate's users must not meet the stand-in's: a username already held
/// under another Keycloak id is a conflict.
const DATABASE: &str = "voxgate_bench_kc";
/// Target 5: voxgate's time per user ≤ 1.5× the bare calls'.
const TARGET: f64 = 1.5;

struct Keycloak {
    proc: Proc,
    base: String,
    data: PathBuf,
}

impl Drop for Keycloak {
    fn drop(&mut self) {
        self.proc.stop();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Starts the real server on an empty store and imports the project realm.
async fn start_keycloak(lab: &Lab) -> anyhow::Result<Keycloak> {
    let data = lab.work.join(format!("keycloak-{}", lab.run_id));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let (http_port, management_port) = (free_port(), free_port());
    // A throw-away bootstrap admin on loopback, for this run only.
    let password = format!("bench-{}-{}", lab.run_id, std::process::id());
    let mut cmd = Command::new(lab.root.join("scripts/keycloak"));
    cmd.arg("run")
        .args(["--http-port", &http_port.to_string()])
        .args(["--management-port", &management_port.to_string()])
        .arg("--data")
        .arg(&data)
        .args(["--watch-pid", &std::process::id().to_string()])
        .env("KC_BOOTSTRAP_ADMIN_USERNAME", "admin")
        .env("KC_BOOTSTRAP_ADMIN_PASSWORD", &password);
    let began = Instant::now();
    let mut proc = Proc::spawn("keycloak", cmd, &lab.logs)?;
    wait_http(
        &mut proc,
        &format!("http://127.0.0.1:{management_port}/health/ready"),
        Duration::from_secs(300),
    )
    .await?;
    let base = format!("http://127.0.0.1:{http_port}");
    eprintln!(
        "voxgate-bench: Keycloak ready on {base} in {:.0} s",
        began.elapsed().as_secs_f64()
    );
    let keycloak = Keycloak { proc, base, data };
    let import = Command::new(lab.root.join(&lab.args.bin_dir).join("voxgate"))
        .args(["realm", "import", "--file"])
        .arg(lab.root.join("keycloak-realm/realm.json"))
        .args(["--url", &keycloak.base, "--admin-user", "admin"])
        .env("VOXGATE_REALM_ADMIN_PASSWORD", &password)
        .env("VOXGATE_LOG", "warn")
        .output()?;
    if !import.status.success() {
        bail!(
            "voxgate realm import: {}",
            String::from_utf8_lossy(&import.stderr)
        );
    }
    Ok(keycloak)
}

/// A fresh database beside the benchmark's; returns its URL.
async fn fresh_database(url: &str) -> anyhow::Result<String> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
        .execute(&mut conn)
        .await?;
    let mut url = url::Url::parse(url)?;
    url.set_path(&format!("/{DATABASE}"));
    Ok(url.to_string())
}

async fn drop_database(url: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// One way of creating a user.
#[derive(Clone)]
enum Side {
    /// `POST /api/admin/users` as alice.
    Voxgate { url: String, token: String },
    /// The calls the saga makes, in its order, with the service account's
    /// token (which voxgate caches too).
    Bare { admin: String, token: String },
}

impl Side {
    fn name(&self) -> &'static str {
        match self {
            Side::Voxgate { .. } => "voxgate",
            Side::Bare { .. } => "bare",
        }
    }

    async fn create(&self, http: &reqwest::Client, username: &str) -> anyhow::Result<()> {
        let email = format!("{username}@example.test");
        // The same person on both sides; each adds what its API wants.
        let mut person = json!({
            "username": username,
            "email": email,
            "firstName": "Bench",
            "lastName": "User",
        });
        match self {
            Side::Voxgate { url, token } => {
                let r = http
                    .post(format!("{url}/api/admin/users"))
                    .bearer_auth(token)
                    .json(&extend(
                        &mut person,
                        json!({
                            "roles": ["user"],
                            "password": {"value": PASSWORD, "temporary": false},
                        }),
                    ))
                    .send()
                    .await?;
                expect(r, 201, "POST /api/admin/users").await?;
            }
            Side::Bare { admin, token } => {
                // The duplicate checks: username, then email.
                for (key, value) in [("username", username), ("email", email.as_str())] {
                    let r = http
                        .get(format!("{admin}/users"))
                        .query(&[("exact", "true"), ("briefRepresentation", "true")])
                        .query(&[(key, value)])
                        .bearer_auth(token)
                        .send()
                        .await?;
                    let found: Vec<Value> = expect(r, 200, "GET users").await?.json().await?;
                    if !found.is_empty() {
                        bail!("{key} {value} exists in Keycloak");
                    }
                }
                let r = http
                    .post(format!("{admin}/users"))
                    .bearer_auth(token)
                    .json(&extend(
                        &mut person,
                        json!({"enabled": true, "emailVerified": true}),
                    ))
                    .send()
                    .await?;
                let r = expect(r, 201, "POST users").await?;
                let id = r
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| l.rsplit('/').next())
                    .context("no Location")?
                    .to_string();
                let r = http
                    .put(format!("{admin}/users/{id}/reset-password"))
                    .bearer_auth(token)
                    .json(&json!({"type": "password", "value": PASSWORD, "temporary": false}))
                    .send()
                    .await?;
                expect(r, 204, "PUT reset-password").await?;
                let r = http
                    .get(format!("{admin}/roles"))
                    .query(&[("briefRepresentation", "true")])
                    .bearer_auth(token)
                    .send()
                    .await?;
                let roles: Vec<Value> = expect(r, 200, "GET roles").await?.json().await?;
                let wanted: Vec<Value> =
                    roles.into_iter().filter(|r| r["name"] == "user").collect();
                let r = http
                    .post(format!("{admin}/users/{id}/role-mappings/realm"))
                    .bearer_auth(token)
                    .json(&wanted)
                    .send()
                    .await?;
                expect(r, 204, "POST role-mappings").await?;
            }
        }
        Ok(())
    }
}

fn extend(object: &mut Value, more: Value) -> &Value {
    if let (Some(object), Value::Object(more)) = (object.as_object_mut(), more) {
        object.extend(more);
    }
    object
}

async fn expect(
    r: reqwest::Response,
    status: u16,
    what: &str,
) -> anyhow::Result<reqwest::Response> {
    if r.status() != status {
        bail!(
            "{what}: HTTP {} (wanted {status}): {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(r)
}

/// Users created by `workers` clients for `window`: per-user latencies in
/// ms and users per second.
async fn series(
    http: &reqwest::Client,
    side: &Side,
    workers: usize,
    window: Duration,
    prefix: &str,
    seq: &Arc<AtomicUsize>,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (http, side, seq, prefix) =
                (http.clone(), side.clone(), seq.clone(), prefix.to_string());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while t0.elapsed() < window {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    side.create(&http, &format!("{prefix}{}{n}", side.name()))
                        .await?;
                    lat.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let rate = lat.len() as f64 / t0.elapsed().as_secs_f64();
    Ok((lat, rate))
}

async fn service_token(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!(
            "{base}/realms/{REALM}/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", ADMIN_CLIENT),
            ("client_secret", ADMIN_CLIENT_SECRET),
        ])
        .send()
        .await?;
    let body: Value = expect(r, 200, "service-account token")
        .await?
        .json()
        .await?;
    Ok(body["access_token"]
        .as_str()
        .context("no access_token")?
        .to_string())
}

pub async fn provisioning(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let keycloak = start_keycloak(lab).await?;
    let issuer = format!("{}/realms/{REALM}", keycloak.base);
    let database = fresh_database(&lab.args.database_url).await?;
    let started = lab
        .start_voxgate(&[
            ("VOXGATE_OIDC_ISSUER", issuer.clone()),
            ("DATABASE_URL", database),
        ])
        .await;
    let result = match started {
        Ok((vx_url, vx_pid)) => {
            let result = measure(lab, rep, &keycloak.base, &issuer, &vx_url).await;
            lab.stop(vx_pid);
            result
        }
        Err(e) => Err(e),
    };
    drop(keycloak);
    drop_database(&lab.args.database_url).await?;
    result
}

async fn measure(
    lab: &mut Lab,
    rep: &mut Report,
    base: &str,
    issuer: &str,
    vx_url: &str,
) -> anyhow::Result<()> {
    let http = lab.http.clone();
    let admin = format!("{base}/admin/realms/{REALM}");
    let sides = |alice: String, service: String| {
        [
            Side::Voxgate {
                url: vx_url.to_string(),
                token: alice,
            },
            Side::Bare {
                admin: admin.clone(),
                token: service,
            },
        ]
    };
    let seq = Arc::new(AtomicUsize::new(0));
    let prefix = format!("b{}u", lab.run_id);
    // The JVM compiles its hot paths during the first few hundred calls.
    let warm = lab.warmup().max(Duration::from_secs(5));
    for side in sides(
        lab.token_from(issuer, "alice").await?,
        service_token(&http, base).await?,
    ) {
        series(&http, &side, 4, warm, &prefix, &seq).await?;
    }
    lab.check_alive()?;

    let window = lab.duration() / 2;
    let mut rows = Vec::new();
    // Per client count: (voxgate users/s, bare users/s, ratio) per run.
    let mut per_workers = Vec::new();
    for workers in [1usize, 4] {
        let (mut vx_rates, mut bare_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..lab.args.runs {
            // Tokens live minutes; each pair of series gets fresh ones.
            let [vx, bare] = sides(
                lab.token_from(issuer, "alice").await?,
                service_token(&http, base).await?,
            );
            // Alternating which side goes first cancels drift in the
            // server (a growing user table, a JIT still settling).
            let order = if run % 2 == 0 {
                [&vx, &bare]
            } else {
                [&bare, &vx]
            };
            let mut results = Vec::new();
            for side in order {
                results.push((
                    side.name(),
                    series(&http, side, workers, window, &prefix, &seq).await?,
                ));
            }
            lab.check_alive()?;
            let get = |name: &str| {
                results
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, r)| r.clone())
                    .expect("both sides ran")
            };
            let ((vx_lat, vx_rate), (bare_lat, bare_rate)) = (get("voxgate"), get("bare"));
            // Time per user at the same concurrency is 1 / rate.
            let ratio = bare_rate / vx_rate;
            rows.push(vec![
                workers.to_string(),
                (run + 1).to_string(),
                format!("{vx_rate:.1}"),
                format!("{bare_rate:.1}"),
                format!("{:.0}", percentile(&vx_lat, 50.0)),
                format!("{:.0}", percentile(&bare_lat, 50.0)),
                format!("{:.0}", percentile(&vx_lat, 99.0)),
                format!("{:.0}", percentile(&bare_lat, 99.0)),
                format!("{ratio:.2}"),
            ]);
            vx_rates.push(vx_rate);
            bare_rates.push(bare_rate);
            ratios.push(ratio);
        }
        per_workers.push((
            workers,
            spread(&vx_rates),
            spread(&bare_rates),
            spread(&ratios),
        ));
    }

    let worst = per_workers
        .iter()
        .map(|(_, _, _, r)| r.median)
        .fold(0.0, f64::max);
    rep.row(
        "Provisioning against the real Keycloak: time per user, voxgate's saga ÷ the bare admin calls, 1 / 4 clients",
        per_workers
            .iter()
            .map(|(_, _, _, r)| format!("{:.2}", r.median))
            .collect::<Vec<_>>()
            .join(" / "),
        format!("≤ {TARGET}"),
        Verdict::of(worst <= TARGET),
    );
    rep.row(
        "Provisioning against the real Keycloak: users per second through voxgate (bare calls), 1 / 4 clients",
        per_workers
            .iter()
            .map(|(_, v, b, _)| format!("{:.1} ({:.1})", v.median, b.median))
            .collect::<Vec<_>>()
            .join(" / "),
        "reported",
        Verdict::Info,
    );

    let mut s = String::from("### 7. Provisioning against the real Keycloak\n\n");
    let _ = writeln!(
        s,
        "Keycloak {} (`scripts/keycloak run`: production mode, its H2 file store, the JVM's \
         defaults), with the project realm imported by `voxgate realm import`, and a voxgate of \
         its own on a fresh database. Two ways of creating a user with a password and the \
         `user` role, back to back on that server:\n\n\
         - **voxgate**: `POST /api/admin/users` as alice — the whole saga: duplicate checks in \
         Postgres and Keycloak, the pending row and its job, the Keycloak user, password, realm \
         roles, activation and the audit record.\n\
         - **bare**: the six admin calls the saga makes, in its order (username and email \
         lookups, create, reset-password, the realm's roles, the role mapping), with the same \
         service-account token, from the benchmark's own HTTP client.\n\n\
         Each series lasts {:.0} s after a {:.0} s warm-up of both; the order alternates per run. \
         The ratio is voxgate's time per user over the bare calls' (bare users/s ÷ voxgate \
         users/s, at the same concurrency).\n",
        keycloak_version(lab),
        window.as_secs_f64(),
        warm.as_secs_f64(),
    );
    s.push_str(&table(
        &[
            "clients",
            "run",
            "voxgate users/s",
            "bare users/s",
            "voxgate p50 ms",
            "bare p50 ms",
            "voxgate p99 ms",
            "bare p99 ms",
            "ratio",
        ],
        &rows,
    ));
    let _ = writeln!(s);
    for (workers, vx, bare, ratio) in &per_workers {
        let _ = writeln!(
            s,
            "- {workers} client(s): voxgate {} users/s, bare {} users/s, ratio {} (median, min–max).",
            vx.show(1),
            bare.show(1),
            ratio.show(2)
        );
    }
    let _ = writeln!(s);
    rep.section(s);
    Ok(())
}

fn keycloak_version(lab: &Lab) -> String {
    Command::new(lab.root.join("scripts/keycloak"))
        .arg("version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "(unknown version)".to_string())
}
