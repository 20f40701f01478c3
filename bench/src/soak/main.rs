//! voxgate's soak: a bounded, self-stopping run of mixed traffic against
//! one voxgate on loopback while faults are injected on a schedule, then
//! checks that nothing leaked and nothing acknowledged was lost, and
//! rewrites docs/soak.md with its chart. Run it through `scripts/soak`.

mod report;
mod traffic;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use keycloak_standin::{Standin, StandinConfig};
use serde_json::Value;
use voxgate_bench::procs::{Proc, free_port, rss_kib, wait_http};

use report::{Check, Run, Window};
use traffic::{Created, Traffic};

#[derive(Parser)]
#[command(about = "Runs voxgate's soak and rewrites docs/soak.md")]
struct Args {
    /// Repository root.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Where the release binaries are (relative to the root).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Logs and scratch files.
    #[arg(long, default_value = "target/soak")]
    work_dir: PathBuf,
    /// An empty database for this run (scripts/soak recreates it).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/voxgate_soak"
    )]
    database_url: String,
    /// Length of the traffic; the fault schedule scales with it.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Allowed growth of voxgate's resident memory after warm-up.
    #[arg(long, default_value_t = 32.0)]
    rss_bound_mib: f64,
    /// The report to rewrite (its chart goes beside it as soak.svg).
    #[arg(long, default_value = "docs/soak.md")]
    out: PathBuf,
    /// The source revision the binaries were built from.
    #[arg(long, default_value = "unknown")]
    revision: String,
}

const REALM: &str = "voxgate";

/// When each fault starts, as a share of the run, and how long it lasts at
/// the full 600 s (scaled for shorter runs).
const SCHEDULE: [(&str, f64); 5] = [
    ("Keycloak down", 0.15),
    ("Keycloak slow (2 s)", 0.30),
    ("Polly throttling", 0.45),
    ("Polly streams cut", 0.55),
    ("Postgres connections killed", 0.70),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = args.root.canonicalize().context("repository root")?;
    let work = root.join(&args.work_dir);
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs)?;
    let bin = |name: &str| root.join(&args.bin_dir).join(name);
    let run_id = format!(
        "{:x}",
        time::OffsetDateTime::now_utc().unix_timestamp() % 0xffffff
    );

    // The realm's redirect and back-channel URLs name the app, so its port
    // is chosen first.
    let vx_port = free_port();
    let vx_url = format!("http://127.0.0.1:{vx_port}");
    let realm = voxgate_lab::realm::for_origin(&root, &vx_url, &[])?;
    let kc = Standin::start(StandinConfig {
        realm_jsons: vec![realm],
        ..StandinConfig::default()
    })
    .await?;
    let issuer = kc.issuer(REALM);

    let polly_port = free_port();
    let mut cmd = Command::new(bin("polly-standin"));
    cmd.args(["--bind", &format!("127.0.0.1:{polly_port}"), "--control"])
        .env("RUST_LOG", "warn");
    let mut polly = Proc::spawn("polly-standin", cmd, &logs)?;
    let polly_url = format!("http://127.0.0.1:{polly_port}");
    wait_http(
        &mut polly,
        &format!("{polly_url}/_standin/stats"),
        Duration::from_secs(30),
    )
    .await?;

    let mut vx_env = voxgate_lab::env::voxgate(&voxgate_lab::env::Stack {
        database_url: &args.database_url,
        public_url: &vx_url,
        issuer: &issuer,
        polly_url: &polly_url,
    });
    vx_env.extend([
        ("VOXGATE_BIND", format!("127.0.0.1:{vx_port}")),
        // The soak is about leaks and losses, not the per-user limits (a
        // test covers each): they are set out of reach.
        ("VOXGATE_TTS_RATE_PER_MINUTE", "1000000".into()),
        ("VOXGATE_TTS_DAILY_CHARS", "1000000000".into()),
        ("VOXGATE_CHAT_RATE_PER_MINUTE", "1000000".into()),
        ("VOXGATE_SIGN_INS_PER_ADDRESS", "1000000".into()),
        ("VOXGATE_SIGN_INS_PER_INSTANCE", "1000000".into()),
    ]);
    let mut cmd = Command::new(bin("voxgate"));
    cmd.arg("serve").envs(&vx_env);
    let mut vx = Proc::spawn("voxgate", cmd, &logs)?;
    wait_http(
        &mut vx,
        &format!("{vx_url}/readyz"),
        Duration::from_secs(60),
    )
    .await?;
    let vx_pid = vx.pid();

    let t = Arc::new(Traffic::new(
        vx_url.clone(),
        issuer.clone(),
        run_id.clone(),
    )?);
    t.refresh_tokens().await?;
    let total = args.seconds as f64;
    let scale = total / 600.0;
    eprintln!(
        "voxgate-soak: {total:.0} s of traffic against {vx_url} (logs in {})",
        logs.display()
    );

    let mut tasks = Vec::new();
    let spawn = |tasks: &mut Vec<tokio::task::JoinHandle<()>>,
                 n: usize,
                 f: fn(Arc<Traffic>) -> futures::future::BoxFuture<'static, ()>| {
        for _ in 0..n {
            tasks.push(tokio::spawn(f(t.clone())));
        }
    };
    spawn(&mut tasks, 2, |t| {
        Box::pin(async move { t.browser_worker().await })
    });
    spawn(&mut tasks, 2, |t| {
        Box::pin(async move { t.bearer_worker().await })
    });
    spawn(&mut tasks, 1, |t| {
        Box::pin(async move { t.chat_worker().await })
    });
    spawn(&mut tasks, 2, |t| {
        Box::pin(async move { t.speech_worker().await })
    });
    spawn(&mut tasks, 1, |t| {
        Box::pin(async move { t.admin_worker().await })
    });
    let refresher = {
        let t = t.clone();
        tokio::spawn(async move { t.token_refresher().await })
    };

    // Memory, once a second, while the traffic runs.
    let sampler = {
        let t = t.clone();
        tokio::spawn(async move {
            let mut rss = Vec::new();
            while !t.stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(vx_pid) {
                    rss.push((t.now(), kib as f64 / 1024.0));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            rss
        })
    };

    let http = reqwest::Client::new();
    let fault = |path: &'static str, body: Value| {
        let (http, url) = (http.clone(), format!("{polly_url}/_standin/{path}"));
        async move { http.post(url).json(&body).send().await.map(|_| ()) }
    };
    let length = (30.0 * scale).max(5.0);
    let mut windows = Vec::new();
    for (name, share) in SCHEDULE {
        sleep_until(&t, total * share).await;
        let from = t.now();
        eprintln!("voxgate-soak: {from:.0} s: {name}");
        match name {
            "Keycloak down" => {
                kc.go_down().await;
                sleep_until(&t, from + length).await;
                kc.come_back().await?;
            }
            "Keycloak slow (2 s)" => {
                kc.set_latency(Duration::from_secs(2));
                sleep_until(&t, from + length).await;
                kc.set_latency(Duration::ZERO);
            }
            "Polly throttling" => {
                fault("faults", serde_json::json!({"throttle_next": 1_000_000})).await?;
                sleep_until(&t, from + length).await;
                fault("faults", serde_json::json!({"throttle_next": 0})).await?;
            }
            "Polly streams cut" => {
                fault("faults", serde_json::json!({"cut_stream_after": 2048})).await?;
                sleep_until(&t, from + length).await;
                fault("faults", serde_json::json!({"cut_stream_after": null})).await?;
            }
            _ => {
                psql(
                    &args.database_url,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )?;
                sleep_until(&t, from + 1.0).await;
            }
        }
        windows.push(Window {
            name,
            from,
            to: t.now(),
        });
        vx.check_alive()?;
    }
    sleep_until(&t, total).await;
    t.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    refresher.abort();
    let rss = sampler.await?;
    let ended = t.now();
    vx.check_alive()?;

    let samples = t.samples();
    let warm_at = (total * 0.1).min(60.0);
    let rss_at = |at: f64| {
        rss.iter()
            .find(|(t, _)| *t >= at)
            .or(rss.last())
            .map(|r| r.1)
            .unwrap_or(f64::NAN)
    };
    let (rss_warm, rss_end) = (rss_at(warm_at), rss.last().map(|r| r.1).unwrap_or(f64::NAN));

    let db = &args.database_url;
    let mut checks = Vec::new();
    let stray = report::stray_errors(&samples, &windows);
    checks.push(Check {
        what: "5xx or no answer outside the fault windows".into(),
        found: match stray.first() {
            None => "0".into(),
            Some(s) => format!(
                "{} (first: {} at {:.1} s, {:?})",
                stray.len(),
                s.route,
                s.at,
                s.outcome
            ),
        },
        expected: "0".into(),
        ok: stray.is_empty(),
    });
    checks.push(Check {
        what: "memory growth after warm-up".into(),
        found: format!("{:+.1} MiB", rss_end - rss_warm),
        expected: format!("≤ {:.0} MiB", args.rss_bound_mib),
        ok: rss_end - rss_warm <= args.rss_bound_mib,
    });
    let jobs_left = count(db, "SELECT count(*) FROM provisioning_jobs")?;
    let mut recover = Command::new(bin("voxgate"));
    recover
        .args(["users", "recover", "--older-than", "0"])
        .envs(&vx_env);
    let recovered = recover.output().context("voxgate users recover")?;
    let recovered_text = String::from_utf8_lossy(&recovered.stdout)
        .trim()
        .to_string();
    let jobs = count(db, "SELECT count(*) FROM provisioning_jobs")?;
    checks.push(Check {
        what: "provisioning jobs stuck after recovery".into(),
        found: format!("{jobs} ({jobs_left} left by the outages; recovery: {recovered_text})"),
        expected: "0".into(),
        ok: jobs == 0 && recovered.status.success(),
    });

    // Both systems agree on every user the admin tried to create.
    let in_keycloak = keycloak_usernames(&kc, &run_id).await?;
    let in_voxgate: BTreeSet<String> = psql(db, &format!(
        "SELECT username FROM users WHERE status IN ('active', 'pending') AND username LIKE 'soak-{run_id}-%'"
    ))?
    .lines()
    .map(str::to_string)
    .collect();
    let half: Vec<&String> = in_keycloak.symmetric_difference(&in_voxgate).collect();
    checks.push(Check {
        what: "users in one system only".into(),
        found: format!(
            "{} (Keycloak {}, voxgate {})",
            half.len(),
            in_keycloak.len(),
            in_voxgate.len()
        ),
        expected: "0".into(),
        ok: half.is_empty(),
    });
    let ledger = std::mem::take(&mut *t.ledger.lock().unwrap_or_else(|e| e.into_inner()));
    let wrong: Vec<String> = ledger
        .users
        .iter()
        .filter(|(name, state)| {
            let there = in_voxgate.contains(*name) && in_keycloak.contains(*name);
            match state {
                Created::Yes { .. } => !there,
                Created::Deleted | Created::Refused => {
                    in_voxgate.contains(*name) || in_keycloak.contains(*name)
                }
                Created::Unknown => false,
            }
        })
        .map(|(n, s)| format!("{n} ({s:?})"))
        .collect();
    let acked = ledger
        .users
        .values()
        .filter(|s| matches!(s, Created::Yes { .. }))
        .count();
    let deleted = ledger
        .users
        .values()
        .filter(|s| **s == Created::Deleted)
        .count();
    checks.push(Check {
        what: "acknowledged creations present, acknowledged deletions and refusals absent".into(),
        found: if wrong.is_empty() {
            format!(
                "all {} ({acked} kept, {deleted} deleted)",
                ledger.users.len()
            )
        } else {
            format!(
                "{} wrong: {}",
                wrong.len(),
                wrong.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            )
        },
        expected: "all".into(),
        ok: wrong.is_empty(),
    });
    let ids: BTreeSet<i64> = ledger.chat_ids.iter().copied().collect();
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let stored = if ids.is_empty() {
        0
    } else {
        count(
            db,
            &format!("SELECT count(*) FROM chat_messages WHERE id IN ({list})"),
        )?
    };
    checks.push(Check {
        what: "acknowledged chat messages stored".into(),
        found: stored.to_string(),
        expected: ids.len().to_string(),
        ok: stored == ids.len() as i64,
    });
    let partial = count(db, "SELECT count(*) FROM tts_cache WHERE NOT complete")?;
    checks.push(Check {
        what: "speech cache entries left half-written".into(),
        found: partial.to_string(),
        expected: "0".into(),
        ok: partial == 0,
    });
    let cut: Vec<String> = ledger
        .visits_cut
        .iter()
        .map(|(step, n)| format!("{n} at {step}"))
        .collect();
    checks.push(Check {
        what: "browser visits signed in, chatted and signed out".into(),
        found: format!(
            "{} of {} started{}",
            ledger.logouts,
            ledger.sign_in_starts,
            if cut.is_empty() {
                String::new()
            } else {
                format!("; cut short: {}", cut.join(", "))
            }
        ),
        expected: "most; none cut by voxgate outside a fault".into(),
        ok: ledger.logouts > 0,
    });
    let sessions = count(db, "SELECT count(*) FROM sessions")?;
    let open = ledger.sign_ins.saturating_sub(ledger.logouts) as i64;
    checks.push(Check {
        what: "sessions left".into(),
        found: sessions.to_string(),
        expected: format!(
            "≤ {open} (sign-ins {} − sign-outs {})",
            ledger.sign_ins, ledger.logouts
        ),
        ok: sessions <= open,
    });
    let flows = count(db, "SELECT count(*) FROM login_flows")?;
    let abandoned = ledger.sign_in_starts.saturating_sub(ledger.sign_ins) as i64;
    checks.push(Check {
        what: "pending sign-ins left".into(),
        found: flows.to_string(),
        expected: format!(
            "≤ {abandoned} (started {} − finished {})",
            ledger.sign_in_starts, ledger.sign_ins
        ),
        ok: flows <= abandoned,
    });
    let cached = count(db, "SELECT count(*) FROM tts_cache")?;
    checks.push(Check {
        what: "speech cache entries".into(),
        found: cached.to_string(),
        expected: format!(
            "≤ {} distinct `/textToSpeech` texts + {} chat replies",
            ledger.texts.len(),
            ids.len() / 2
        ),
        ok: cached <= (ledger.texts.len() + ids.len() / 2) as i64,
    });

    let mut tables = Vec::new();
    for table in psql(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations' ORDER BY 1")?.lines() {
        let rows = count(db, &format!("SELECT count(*) FROM \"{table}\""))?;
        let expect = match table {
            "provisioning_jobs" => "0 (checked above)".to_string(),
            "users" => format!(
                "realm users who signed in or were listed, plus every soak user ever tried ({}; failed and deleted rows are kept for the audit trail)",
                ledger.users.len()
            ),
            "chat_messages" => format!("≥ {} acknowledged", ids.len()),
            "sessions" => format!("≤ {open}"),
            "login_flows" => format!("≤ {abandoned}"),
            "idempotency_keys" => format!("≤ {} (one key per creation)", ledger.users.len()),
            "tts_cache" => "no half-written entry (checked above)".into(),
            _ => "reported".into(),
        };
        tables.push((table.to_string(), rows, expect));
    }

    let run = Run {
        date: time::OffsetDateTime::now_utc().format(&time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))?,
        revision: args.revision.clone(),
        seconds: ended,
        warm_at,
        rss_warm_mib: rss_warm,
        rss_end_mib: rss_end,
        rss_bound_mib: args.rss_bound_mib,
        windows: windows.clone(),
        checks,
        tables,
    };
    let out = root.join(&args.out);
    let chart = out.with_file_name("soak.svg");
    std::fs::write(
        &chart,
        report::figure(&samples, &rss, &windows, ended).svg(),
    )?;
    std::fs::write(&out, report::markdown(&run, &samples, "soak.svg"))?;
    vx.stop();
    polly.stop();
    let failed: Vec<&Check> = run.checks.iter().filter(|c| !c.ok).collect();
    for c in &run.checks {
        eprintln!(
            "voxgate-soak: {} {}: {} (expected {})",
            if c.ok { "ok  " } else { "FAIL" },
            c.what,
            c.found,
            c.expected
        );
    }
    eprintln!(
        "voxgate-soak: wrote {} and {}",
        out.display(),
        chart.display()
    );
    if !failed.is_empty() {
        bail!("{} check(s) failed", failed.len());
    }
    Ok(())
}

async fn sleep_until(t: &Traffic, at: f64) {
    let left = at - t.now();
    if left > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(left)).await;
    }
}

/// Runs one statement with psql (the soak talks to voxgate's database only
/// to inject faults and to count what is left).
fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args([url, "-XAtqc", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn count(url: &str, sql: &str) -> anyhow::Result<i64> {
    Ok(psql(url, sql)?.trim().parse()?)
}

/// The soak's users as Keycloak has them, through its admin API.
async fn keycloak_usernames(kc: &Standin, run_id: &str) -> anyhow::Result<BTreeSet<String>> {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!(
            "{}/realms/master/protocol/openid-connect/token",
            kc.base_url()
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "admin"),
            ("password", "admin"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let users: Vec<Value> = http
        .get(format!("{}/admin/realms/{REALM}/users", kc.base_url()))
        .query(&[
            ("search", format!("soak-{run_id}-")),
            ("max", "1000000".into()),
            ("briefRepresentation", "true".into()),
        ])
        .bearer_auth(token["access_token"].as_str().unwrap_or_default())
        .send()
        .await?
        .json()
        .await?;
    Ok(users
        .iter()
        .filter_map(|u| u["username"].as_str())
        .filter(|u| u.starts_with(&format!("soak-{run_id}-")))
        .map(str::to_string)
        .collect())
}
