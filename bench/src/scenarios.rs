//! The measurements, one function per section of docs/benchmarks.md, and
//! the document itself.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use aws_sdk_polly::types::{Engine, LanguageCode, OutputFormat, TextType, VoiceId};
use futures::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Lab;
use crate::procs::{proc_status_kib, rss_kib, version_of};
use crate::report::{self, Report, Verdict, percentile, spread, table};
use crate::wrk::{Load, WrkResult};

/// About 300 characters: roughly 17 s of speech, a ~100 KB MP3 at the
/// stand-in's 48 kbit/s.
const LONG_TEXT: &str = "Welcome to the voxgate benchmark. This paragraph is long enough \
to become about one hundred kilobytes of speech, which is a typical size for a spoken chat \
reply. It is synthesized once, cached, and then served from the cache many thousands of \
times while the load generator measures how fast that is.";

/// About 200 characters (~11 s of speech, ~16 stream chunks): long enough
/// to hold a stream open for seconds with a per-chunk delay.
const STREAM_TEXT: &str = "is one of a hundred long streams held open at the same time, \
so that the memory each open stream costs the server can be read from its resident set size \
while all of them are still running.";

/// A typical short reply for the comparison with the original endpoint.
const SHORT_TEXT: &str =
    "Thanks for calling. Your appointment is confirmed for Tuesday at ten in the morning.";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn legacy_path(text: &str) -> String {
    format!(
        "/textToSpeech?VoiceId=Joanna&LanguageCode=en-US&OutputFormat=mp3&Text={}",
        enc(text)
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A whole GET, checked for success.
async fn get_ok(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(reqwest::header::HeaderMap, bytes::Bytes)> {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await?;
    if !status.is_success() {
        bail!(
            "GET {url}: HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok((headers, body))
}

fn cache_header(h: &reqwest::header::HeaderMap) -> String {
    h.get("x-voxgate-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Time to the first body byte of a GET, then the rest of the body.
async fn ttfb_http(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> anyhow::Result<(Duration, usize, String)> {
    let start = Instant::now();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut r = req.send().await?;
    let status = r.status();
    let cache = cache_header(r.headers());
    if !status.is_success() {
        bail!(
            "GET {url}: HTTP {status}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let mut first = None;
    let mut len = 0;
    while let Some(chunk) = r.chunk().await? {
        if first.is_none() && !chunk.is_empty() {
            first = Some(start.elapsed());
        }
        len += chunk.len();
    }
    Ok((first.context("empty body")?, len, cache))
}

/// Time to the first audio byte straight from the Polly stand-in, through
/// the same AWS SDK and request shape voxgate uses.
async fn ttfb_polly(lab: &Lab, text: &str) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let out = lab
        .polly
        .synthesize_speech()
        .text(text)
        .text_type(TextType::Text)
        .voice_id(VoiceId::Joanna)
        .output_format(OutputFormat::Mp3)
        .engine(Engine::Standard)
        .language_code(LanguageCode::EnUs)
        .send()
        .await
        .context("SynthesizeSpeech")?;
    let mut stream = out.audio_stream;
    let mut first = None;
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if first.is_none() && !chunk.is_empty() {
            first = Some(start.elapsed());
        }
        len += chunk.len();
    }
    Ok((first.context("empty audio")?, len))
}

/// Registers a synthesis with `POST /api/tts`; returns its URL.
async fn register(lab: &Lab, token: &str, text: &str) -> anyhow::Result<String> {
    let r = lab
        .http
        .post(format!("{}/api/tts", lab.vx_url))
        .bearer_auth(token)
        .json(&json!({"text": text, "voice": "Joanna", "language": "en-US", "format": "mp3"}))
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    ensure!(status == 201, "POST /api/tts: HTTP {status}: {body}");
    Ok(format!(
        "{}{}",
        lab.vx_url,
        body["url"]
            .as_str()
            .context("url in POST /api/tts answer")?
    ))
}

fn load(lab: &Lab, url: String) -> Load {
    Load::new(url, lab.args.threads, lab.args.connections, lab.duration())
}

fn warm(l: &Load, lab: &Lab) -> Load {
    let mut w = l.clone();
    w.duration = lab.warmup();
    w
}

fn checked(name: &str, r: WrkResult) -> anyhow::Result<WrkResult> {
    ensure!(
        r.non_2xx == 0 && r.requests > 0,
        "{name}: {} of {} responses were not successes",
        r.non_2xx,
        r.requests
    );
    Ok(r)
}

fn rps(r: &WrkResult) -> String {
    format!("{:.0}", r.rps)
}

fn p99(r: &WrkResult) -> String {
    format!("{:.2}", r.p99_ms)
}

/// Runs `loads` back to back per run (after one warm-up of each) and
/// returns results[run][load]. A fresh token per run keeps every run
/// inside the tokens' 300 s lifetime.
async fn series(
    lab: &Lab,
    names: &[&str],
    make: impl Fn(&str) -> Vec<Load>,
) -> anyhow::Result<Vec<Vec<WrkResult>>> {
    let token = lab.token("alice").await?;
    for l in make(&token) {
        warm(&l, lab).run().await?;
    }
    let mut runs = Vec::new();
    for run in 0..lab.args.runs {
        let token = lab.token("alice").await?;
        let mut results = Vec::new();
        for (i, l) in make(&token).into_iter().enumerate() {
            eprintln!("  run {} {}", run + 1, names[i]);
            results.push(checked(names[i], l.run().await?)?);
        }
        runs.push(results);
    }
    Ok(runs)
}

fn commands(loads: &[Load], names: &[&str]) -> String {
    let mut s = String::from("```sh\n");
    for (l, n) in loads.iter().zip(names) {
        let _ = writeln!(s, "# {n}\n{}", l.command_line());
    }
    s.push_str("```\n");
    s
}

/// 1. `GET /api/me` with a bearer token vs `/healthz` and vs Python.
pub async fn api(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let token = lab.token("alice").await?;
    get_ok(&lab.http, &format!("{}/api/me", lab.vx_url), Some(&token)).await?;
    get_ok(&lab.http, &format!("{}/api/me", lab.py_url), Some(&token)).await?;
    let names = ["voxgate /healthz", "voxgate /api/me", "Python /api/me"];
    let make = |t: &str| {
        vec![
            load(lab, format!("{}/healthz", lab.vx_url)),
            load(lab, format!("{}/api/me", lab.vx_url)).bearer(t),
            load(lab, format!("{}/api/me", lab.py_url)).bearer(t),
        ]
    };
    let runs = series(lab, &names, make).await?;
    let mut rows = Vec::new();
    let (mut r_health, mut r_py, mut me_p99, mut py_p99) = (vec![], vec![], vec![], vec![]);
    for (i, r) in runs.iter().enumerate() {
        let (h, m, p) = (&r[0], &r[1], &r[2]);
        r_health.push(m.rps / h.rps);
        r_py.push(m.rps / p.rps);
        me_p99.push(m.p99_ms);
        py_p99.push(p.p99_ms);
        rows.push(vec![
            (i + 1).to_string(),
            rps(h),
            p99(h),
            rps(m),
            format!("{:.2}", m.p50_ms),
            p99(m),
            rps(p),
            format!("{:.2}", p.p50_ms),
            p99(p),
            format!("{:.2}", m.rps / h.rps),
            format!("{:.1}", m.rps / p.rps),
        ]);
    }
    let col = |k: usize| spread(&runs.iter().map(|r| r[k].rps).collect::<Vec<_>>());
    let (sh, sm, sp) = (col(0), col(1), col(2));
    let (rh, rpy) = (spread(&r_health), spread(&r_py));
    rep.row(
        "`GET /api/me` (bearer) vs own `/healthz`, throughput ratio",
        format!(
            "{} ({:.0} vs {:.0} req/s)",
            rh.show(2),
            sm.median,
            sh.median
        ),
        "≥ 0.8×",
        Verdict::of(rh.median >= 0.8),
    );
    rep.row(
        "`GET /api/me` vs Python (FastAPI + PyJWT), throughput ratio",
        format!("{}× ({:.0} req/s)", rpy.show(1), sp.median),
        "≥ 10×",
        Verdict::of(rpy.median >= 10.0),
    );
    rep.row(
        "`GET /api/me` p99 latency, voxgate / Python",
        format!(
            "{:.2} ms / {:.2} ms",
            spread(&me_p99).median,
            spread(&py_p99).median
        ),
        "reported",
        Verdict::Info,
    );
    let mut s = String::from("### 1. Authenticated API\n\n");
    let _ = writeln!(
        s,
        "voxgate's `GET /api/me` with alice's bearer token (validated, principal resolved, JSON \
         written) against `GET /healthz` on the same instance, and against the Python equivalent \
         (`bench/python/me_fastapi.py`: FastAPI {} uvicorn workers with uvloop/httptools, PyJWT \
         checking RS256 against the realm JWKS, `iss`, `aud`, `exp`/`iat`, `typ`; signature \
         verified on every request, no database). Runs alternate the three targets; ratios are \
         taken within a run.\n",
        lab.py_workers
    );
    s.push_str(&commands(&make("$TOKEN"), &names));
    s.push('\n');
    s.push_str(&table(
        &[
            "run",
            "/healthz req/s",
            "p99 ms",
            "/api/me req/s",
            "p50 ms",
            "p99 ms",
            "Python req/s",
            "p50 ms",
            "p99 ms",
            "me/healthz",
            "me/Python",
        ],
        &rows,
    ));
    let _ = writeln!(
        s,
        "\nMedian (min–max) req/s: /healthz {}, /api/me {}, Python {}. \
         Ratios: /api/me ÷ /healthz {}, /api/me ÷ Python {}.\n",
        sh.show(0),
        sm.show(0),
        sp.show(0),
        rh.show(2),
        rpy.show(1)
    );
    rep.section(s);
    Ok(())
}

/// Section 2: the same request through the project's nginx (TLS) vs
/// nginx serving a static file over the same TLS.
pub async fn tls(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let (Some(tls), Some(tls_static), Some(tls_unix), Some(client)) = (
        lab.tls_url.clone(),
        lab.tls_static_url.clone(),
        lab.tls_unix_url.clone(),
        lab.tls_client.clone(),
    ) else {
        rep.row(
            "`GET /api/me` through nginx TLS vs nginx static over TLS",
            "not measured (no certificates)",
            "≥ 0.5×",
            Verdict::Miss,
        );
        return Ok(());
    };
    let token = lab.token("alice").await?;
    let (_, body) = get_ok(&client, &format!("{tls}/api/me"), Some(&token)).await?;
    // The static file is the very JSON /api/me answers, so both sides
    // move the same bytes.
    std::fs::write(lab.work.join("static/me.json"), &body)?;
    let (_, same) = get_ok(&client, &format!("{tls_static}/me.json"), None).await?;
    ensure!(same == body, "nginx serves the static copy unchanged");
    let (_, over_socket) = get_ok(&client, &format!("{tls_unix}/api/me"), Some(&token)).await?;
    ensure!(
        over_socket == body,
        "the instance on the Unix socket answers the same"
    );
    // /healthz through the same proxy separates the cost of the extra hop
    // from the cost of the authenticated handler.
    let names = [
        "nginx TLS → voxgate /api/me",
        "nginx TLS → voxgate /healthz",
        "nginx TLS static me.json",
        "nginx TLS → voxgate on a Unix socket /api/me",
    ];
    let make = |t: &str| {
        vec![
            load(lab, format!("{tls}/api/me")).bearer(t),
            load(lab, format!("{tls}/healthz")),
            load(lab, format!("{tls_static}/me.json")),
            load(lab, format!("{tls_unix}/api/me")).bearer(t),
        ]
    };
    let tw_before = time_wait_to(lab.vx_port());
    let runs = series(lab, &names, make).await?;
    let tw_after = time_wait_to(lab.vx_port());
    let mut rows = Vec::new();
    let (mut ratios, mut health_ratios, mut unix_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in runs.iter().enumerate() {
        ratios.push(r[0].rps / r[2].rps);
        health_ratios.push(r[1].rps / r[2].rps);
        unix_ratios.push(r[3].rps / r[2].rps);
        rows.push(vec![
            (i + 1).to_string(),
            rps(&r[0]),
            p99(&r[0]),
            rps(&r[3]),
            p99(&r[3]),
            rps(&r[1]),
            p99(&r[1]),
            rps(&r[2]),
            p99(&r[2]),
            format!("{:.2}", r[0].rps / r[2].rps),
            format!("{:.2}", r[3].rps / r[2].rps),
            format!("{:.2}", r[1].rps / r[2].rps),
        ]);
    }
    let ratio = spread(&ratios);
    let health_ratio = spread(&health_ratios);
    let unix_ratio = spread(&unix_ratios);
    let col = |k: usize| spread(&runs.iter().map(|r| r[k].rps).collect::<Vec<_>>());
    rep.row(
        "`GET /api/me` through nginx TLS vs nginx static file over the same TLS",
        format!(
            "{} ({:.0} vs {:.0} req/s; `/healthz` the same way {})",
            ratio.show(2),
            col(0).median,
            col(2).median,
            health_ratio.show(2)
        ),
        "≥ 0.5×",
        Verdict::of(ratio.median >= 0.5),
    );
    rep.row(
        "the same with voxgate on a Unix socket (`VOXGATE_BIND=unix:…`)",
        format!("{} ({:.0} req/s)", unix_ratio.show(2), col(3).median),
        "≥ 0.5×",
        Verdict::of(unix_ratio.median >= 0.5),
    );
    let mut s = String::from("### 2. Through nginx with TLS\n\n");
    s.push_str(
        "nginx runs the project's configuration (`nginx/nginx.conf`, `nginx/snippets/`, \
         `nginx/templates/voxgate.conf.template` rendered for local ports, certificate from \
         `scripts/make-certs`, HTTP/1.1 keep-alive to voxgate). The baseline is a second server \
         in the same `http` block — same certificate, protocols, ciphers and session settings — \
         serving the identical JSON as a static file. wrk negotiates TLS 1.3 over HTTP/1.1 and \
         keeps connections alive, so handshakes are amortised in both. `/healthz` through the \
         same proxy shows what the extra hop alone costs. A second nginx, rendered from the same \
         files with only the upstream changed, proxies to a second voxgate listening on a Unix \
         domain socket (`VOXGATE_BIND=unix:…`); only one of the two is under load at a time.\n\n",
    );
    s.push_str(&commands(&make("$TOKEN"), &names));
    s.push('\n');
    s.push_str(&table(
        &[
            "run",
            "/api/me via nginx req/s",
            "p99 ms",
            "/api/me via nginx, Unix socket req/s",
            "p99 ms",
            "/healthz via nginx req/s",
            "p99 ms",
            "static TLS req/s",
            "p99 ms",
            "/api/me ÷ static",
            "Unix socket ÷ static",
            "/healthz ÷ static",
        ],
        &rows,
    ));
    let _ = writeln!(
        s,
        "\nMedian (min–max): /api/me through nginx {} req/s (on a Unix socket {} req/s), \
         /healthz through nginx {} req/s, static {} req/s; ratios {}, {} and {}. Connections between nginx and voxgate left in \
         TIME-WAIT during the series: {} (upstream keep-alive pool: `keepalive 128` per worker, \
         {} client connections).\n",
        col(0).show(0),
        col(3).show(0),
        col(1).show(0),
        col(2).show(0),
        ratio.show(2),
        unix_ratio.show(2),
        health_ratio.show(2),
        tw_after.saturating_sub(tw_before),
        lab.args.connections
    );
    rep.section(s);
    Ok(())
}

/// 4c. A long cached reply (5 MiB, above the in-memory limit) heard by 100
/// clients at once: streamed from Postgres chunk by chunk, so memory grows
/// by a bounded amount per stream rather than by the entry's size.
pub async fn long_hits(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    const STREAMS: usize = 100;
    const SIZE: usize = 5 * 1024 * 1024;
    const CHUNK: usize = 8 * 1024;
    let token = lab.token("alice").await?;
    let pid = lab.vx_pid;
    // A real entry first (registered, synthesized, cached), whose chunks
    // are then replaced by 5 MiB: a synthesis that long would take minutes.
    let registered: serde_json::Value = lab
        .http
        .post(format!("{}/api/tts", lab.vx_url))
        .bearer_auth(&token)
        .json(&json!({"text": format!("Long reply {}", lab.run_id), "voice": "Joanna"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let path = registered["url"].as_str().context("url")?.to_string();
    let key = path.rsplit('/').next().context("key")?.to_string();
    let url = format!("{}{path}", lab.vx_url);
    get_ok(&lab.http, &url, Some(&token)).await?;
    let db = sqlx::PgPool::connect(&lab.args.database_url).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tts_cache WHERE key = $1 AND complete")
        .bind(&key)
        .fetch_one(&db)
        .await?
        == 0
    {
        ensure!(Instant::now() < deadline, "the entry was never cached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 31 + i / 7) as u8).collect();
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM tts_chunks WHERE key = $1")
        .bind(&key)
        .execute(&mut *tx)
        .await?;
    for (seq, piece) in data.chunks(CHUNK).enumerate() {
        sqlx::query(
            "INSERT INTO tts_chunks (key, seq, offset_bytes, data) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key)
        .bind(seq as i32)
        .bind((seq * CHUNK) as i64)
        .bind(piece)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE tts_cache SET size = $2, etag = 'bench-long' WHERE key = $1")
        .bind(&key)
        .bind(SIZE as i64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let whole = get_ok(&lab.http, &url, Some(&token)).await?.1;
    ensure!(whole == data, "voxgate serves the planted entry");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut idle_samples = Vec::new();
    for _ in 0..5 {
        idle_samples.push(rss_kib(pid)?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle = *idle_samples.iter().max().unwrap_or(&0);
    // Each client reads its first piece, then stops reading for three
    // seconds: the streams stay open with voxgate waiting on the socket.
    let started = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(STREAMS)
        .build()?;
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..STREAMS)
        .map(|_| {
            let (client, token, url, started) =
                (client.clone(), token.clone(), url.clone(), started.clone());
            tokio::spawn(async move {
                let mut r = client.get(&url).bearer_auth(&token).send().await?;
                ensure!(r.status() == 200, "long hit: HTTP {}", r.status());
                let mut hasher = Sha256::new();
                let mut len = 0;
                if let Some(first) = r.chunk().await? {
                    len += first.len();
                    hasher.update(&first);
                }
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3)).await;
                while let Some(chunk) = r.chunk().await? {
                    len += chunk.len();
                    hasher.update(&chunk);
                }
                anyhow::Ok((len, hasher.finalize().to_vec()))
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.load(Ordering::SeqCst) < STREAMS {
        ensure!(
            Instant::now() < deadline,
            "the long streams did not all start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut samples = Vec::new();
    for _ in 0..15 {
        samples.push(rss_kib(pid)?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peak = *samples.iter().max().unwrap_or(&0);
    let want = Sha256::digest(&data).to_vec();
    for t in tasks {
        let (len, hash) = t.await??;
        ensure!(
            len == SIZE && hash == want,
            "a long stream delivered other bytes"
        );
    }
    let elapsed = t0.elapsed();
    let per_stream = peak.saturating_sub(idle) as f64 / STREAMS as f64;
    rep.row(
        format!("Long reply: memory per stream, {STREAMS} concurrent hits on a 5 MiB entry (VmRSS above idle)"),
        format!("{per_stream:.1} KiB (whole entry: {} KiB)", SIZE / 1024),
        "bounded, ≪ entry",
        Verdict::of(per_stream < 256.0),
    );
    let mut s = String::from("### 4c. A long cached reply heard by 100 clients at once\n\n");
    let _ = writeln!(
        s,
        "An entry is registered and synthesized through the API, then its chunks are replaced in \
         Postgres by 5 MiB in {} KiB chunks (more than the 1 MiB an entry may take in memory). \
         {STREAMS} clients ask for it at once (`GET /api/tts/{{key}}`, a cache hit each), read \
         their first piece and then stop reading for 3 s, so every stream is open with voxgate \
         waiting on the socket; VmRSS is sampled 15 times meanwhile. Then each client reads the \
         rest and checks the bytes (SHA-256 of all 5 MiB).\n",
        CHUNK / 1024
    );
    s.push_str(&table(
        &["", "value"],
        &[
            vec![
                "VmRSS idle".into(),
                format!("{idle} KiB (samples {idle_samples:?})"),
            ],
            vec![
                "VmRSS with 100 streams open".into(),
                format!("{peak} KiB (samples {samples:?})"),
            ],
            vec![
                "per stream, (peak − idle) ÷ 100".into(),
                format!("{per_stream:.1} KiB"),
            ],
            vec![
                "what reading each entry whole would take".into(),
                format!("{} MiB", STREAMS * SIZE / (1024 * 1024)),
            ],
            vec![
                "all 100 × 5 MiB delivered and verified after".into(),
                format!("{:.2} s", elapsed.as_secs_f64()),
            ],
        ],
    ));
    rep.section(s);
    db.close().await;
    Ok(())
}

/// A line chart over a log₂ x axis, written beside the report.
type Line<'a> = (&'a str, Vec<(f64, f64)>);

fn write_chart(
    lab: &Lab,
    file: &str,
    x_label: &str,
    panels: Vec<(&str, Vec<Line<'_>>)>,
) -> anyhow::Result<()> {
    use voxgate_bench::chart::{Figure, Panel, Series};
    let figure = Figure {
        x_label: x_label.into(),
        x_log2: true,
        panels: panels
            .into_iter()
            .map(|(title, lines)| Panel {
                title: title.into(),
                series: lines
                    .into_iter()
                    .map(|(name, points)| Series {
                        name: name.into(),
                        points,
                    })
                    .collect(),
            })
            .collect(),
        bands: vec![],
    };
    let path = lab
        .path(&lab.args.out.to_string_lossy())
        .with_file_name(file);
    std::fs::write(&path, figure.svg()).with_context(|| format!("writing {}", path.display()))
}

/// Concurrent connections of the curves.
const CURVE_CONNECTIONS: [u32; 6] = [1, 4, 16, 64, 256, 1024];

/// Section 7, throughput and p99 latency against concurrent connections:
/// `/api/me` and a speech cache hit from voxgate beside the same bytes from
/// nginx (plain HTTP, static files). Written as a chart beside the report.
pub async fn curves(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let token = lab.token("alice").await?;
    let me_url = format!("{}/api/me", lab.vx_url);
    let (_, me) = get_ok(&lab.http, &me_url, Some(&token)).await?;
    std::fs::write(lab.work.join("static/me.json"), &me)?;
    let hit_url = register(lab, &token, LONG_TEXT).await?;
    let (_, audio) = get_ok(&lab.http, &hit_url, Some(&token)).await?;
    let (h, again) = get_ok(&lab.http, &hit_url, Some(&token)).await?;
    ensure!(audio == again && cache_header(&h) == "hit", "a cache hit");
    std::fs::write(lab.work.join("static/speech.mp3"), &audio)?;
    let targets: [(&str, String, bool); 4] = [
        ("voxgate /api/me", me_url, true),
        (
            "nginx me.json",
            format!("{}/me.json", lab.static_url),
            false,
        ),
        ("voxgate cache hit", hit_url, true),
        (
            "nginx speech.mp3",
            format!("{}/speech.mp3", lab.static_url),
            false,
        ),
    ];
    let seconds = Duration::from_secs(lab.args.curve_seconds);
    // results[target][level]
    let mut results: Vec<Vec<WrkResult>> = vec![Vec::new(); targets.len()];
    for (t, (name, url, bearer)) in targets.iter().enumerate() {
        for c in CURVE_CONNECTIONS {
            let threads = lab.args.threads.min(c);
            let mut l = Load::new(url.clone(), threads, c, seconds);
            if *bearer {
                // A fresh token per point: the series outlasts one.
                l = l.bearer(&lab.token("alice").await?);
            }
            eprintln!("  {name}, {c} connections");
            let mut w = l.clone();
            w.duration = Duration::from_secs(1);
            w.run().await?;
            results[t].push(checked(name, l.run().await?)?);
        }
    }
    let series = |k: usize, value: fn(&WrkResult) -> f64| {
        let points = CURVE_CONNECTIONS.iter().zip(&results[k]);
        (
            targets[k].0,
            points.map(|(c, r)| (f64::from(*c), value(r))).collect(),
        )
    };
    write_chart(
        lab,
        CURVES_SVG,
        "concurrent connections (wrk, keep-alive)",
        vec![
            (
                "Throughput (requests/s)",
                (0..targets.len()).map(|k| series(k, |r| r.rps)).collect(),
            ),
            (
                "p99 latency (ms)",
                (0..targets.len())
                    .map(|k| series(k, |r| r.p99_ms))
                    .collect(),
            ),
        ],
    )?;

    let at = |k: usize, c: u32| {
        let i = CURVE_CONNECTIONS.iter().position(|x| *x == c).unwrap();
        &results[k][i]
    };
    rep.row(
        "`/api/me` vs nginx static at 1 / 64 / 1024 connections (req/s)",
        format!(
            "{:.0} vs {:.0} / {:.0} vs {:.0} / {:.0} vs {:.0}",
            at(0, 1).rps,
            at(1, 1).rps,
            at(0, 64).rps,
            at(1, 64).rps,
            at(0, 1024).rps,
            at(1, 1024).rps
        ),
        "chart",
        Verdict::Info,
    );
    let mut s = String::from("### 7. Throughput and latency against concurrency\n\n");
    let _ = writeln!(
        s,
        "Each target at 1, 4, 16, 64, 256 and 1024 keep-alive connections, {} s per point after \
         1 s of warm-up, wrk with up to {} threads; nginx serves the identical bytes as static \
         files over plain HTTP (`sendfile on`). voxgate's `/api/me` needs a bearer token, which \
         it validates (from its cache after the first request).\n\n![Throughput and p99 latency \
         against concurrent connections]({CURVES_SVG})\n",
        lab.args.curve_seconds, lab.args.threads
    );
    let mut header = vec!["connections".to_string()];
    for (name, _, _) in &targets {
        header.push(format!("{name} req/s"));
        header.push("p99 ms".into());
    }
    let rows: Vec<Vec<String>> = CURVE_CONNECTIONS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut row = vec![c.to_string()];
            for r in &results {
                row.push(format!("{:.0}", r[i].rps));
                row.push(format!("{:.2}", r[i].p99_ms));
            }
            row
        })
        .collect();
    s.push_str(&table(&header, &rows));
    rep.section(s);
    Ok(())
}

/// The concurrency chart, beside docs/benchmarks.md.
pub const CURVES_SVG: &str = "benchmarks-concurrency.svg";

/// Data sizes of the growth curves.
const GROWTH_SIZES: [i64; 3] = [1_000, 10_000, 100_000];

/// Median milliseconds of `n` sequential GETs (each must answer 200).
async fn median_get_ms(lab: &Lab, url: &str, token: &str, n: usize) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = lab.http.get(url).bearer_auth(token).send().await?;
        ensure!(r.status() == 200, "{url}: HTTP {}", r.status());
        r.bytes().await?;
        times.push(ms(t.elapsed()));
    }
    Ok(spread(&times).median)
}

/// Median milliseconds of one SQL statement run `n` times from here.
async fn median_sql_ms(db: &sqlx::PgPool, sql: &str, n: usize) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        sqlx::query(sql).execute(db).await?;
        times.push(ms(t.elapsed()));
    }
    Ok(spread(&times).median)
}

/// Section 8, cost as data grows: the admin user list and search, the
/// session lookup, and a cache miss with the cache at its bound, at 1k, 10k
/// and 100k rows, made by bulk inserts.
pub async fn growth(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let db = sqlx::PgPool::connect(&lab.args.database_url).await?;
    let token = lab.token("alice").await?;
    let users_url = |q: &str| format!("{}/api/admin/users?{q}", lab.vx_url);
    let bound: i64 = crate::CACHE_MAX_BYTES.parse()?;
    // The statement a session lookup runs, for a hash that exists.
    let session_sql = "SELECT user_id FROM sessions WHERE id_hash = sha256('growth-probe'::bytea) \
                       AND expires_at > now() AND last_seen_at > now() - make_interval(secs => 3600)";
    // The eviction check this version runs after a miss, and the whole-cache
    // window sum the previous version ran instead.
    let evict_check_sql = format!("SELECT bytes > {bound} FROM tts_cache_usage WHERE id");
    let old_evict_sql = format!(
        "SELECT count(*) FROM (SELECT key, sum(size) OVER (ORDER BY last_access_at DESC, key) \
         AS running FROM tts_cache WHERE complete) ranked WHERE running > {bound}"
    );
    let names = [
        "list, first page",
        "list, last page",
        "search, one match",
        "session lookup",
        "miss at the bound",
        "eviction check",
        "old eviction query",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut miss = 0;
    for n in GROWTH_SIZES {
        eprintln!("  {n} rows");
        // Users: bulk rows up to n, one of them findable by a rare name.
        sqlx::query(
            "INSERT INTO users (username, email, first_name, last_name, keycloak_id)
             SELECT 'grow' || g, 'grow' || g || '@example.com', 'Grow', 'User ' || g,
                    'growth-' || g
               FROM generate_series((SELECT count(*) FROM users WHERE username LIKE 'grow%') + 1, $1) g",
        )
        .bind(n)
        .execute(&db)
        .await?;
        // Sessions of those users, one with a known hash.
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, id_token, access_token,
                                   access_expires_at, expires_at)
             SELECT sha256(('growth-' || u.username)::bytea), u.id, 'c', 'i', 'a',
                    now() + interval '1 hour', now() + interval '1 day'
               FROM users u WHERE u.username LIKE 'grow%'
             ON CONFLICT DO NOTHING",
        )
        .execute(&db)
        .await?;
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, id_token, access_token,
                                   access_expires_at, expires_at)
             SELECT sha256('growth-probe'::bytea), id, 'c', 'i', 'a', now() + interval '1 hour',
                    now() + interval '1 day' FROM users WHERE username = 'grow1'
             ON CONFLICT DO NOTHING",
        )
        .execute(&db)
        .await?;
        // Cache entries up to n, filling the cache exactly to its bound, in
        // random LRU order (metadata only: eviction reads no audio).
        sqlx::query("DELETE FROM tts_cache WHERE key LIKE 'growth-%'")
            .execute(&db)
            .await?;
        let used: i64 = sqlx::query_scalar("SELECT bytes FROM tts_cache_usage")
            .fetch_one(&db)
            .await?;
        let each = ((bound - used) / n).max(1);
        sqlx::query(
            "INSERT INTO tts_cache (key, content_type, size, complete, writer, last_access_at)
             SELECT 'growth-' || g, 'audio/mpeg', $2, true, gen_random_uuid(),
                    now() - random() * interval '30 days'
               FROM generate_series(1, $1) g",
        )
        .bind(n)
        .bind(each)
        .execute(&db)
        .await?;
        sqlx::raw_sql("ANALYZE users; ANALYZE sessions; ANALYZE tts_cache")
            .execute(&db)
            .await?;
        let last_page = (n + 2) / 25 + 1;
        results[0].push(median_get_ms(lab, &users_url("per_page=25"), &token, 20).await?);
        results[1].push(
            median_get_ms(
                lab,
                &users_url(&format!("per_page=25&page={last_page}")),
                &token,
                20,
            )
            .await?,
        );
        results[2].push(
            median_get_ms(
                lab,
                &users_url(&format!("search=grow{}", n / 2 + 7)),
                &token,
                20,
            )
            .await?,
        );
        results[3].push(median_sql_ms(&db, session_sql, 200).await?);
        let mut misses = Vec::new();
        for _ in 0..10 {
            miss += 1;
            let url = format!(
                "{}{}",
                lab.vx_url,
                legacy_path(&format!("Growth {} miss {miss}", lab.run_id))
            );
            let t = Instant::now();
            get_ok(&lab.http, &url, Some(&token)).await?;
            misses.push(ms(t.elapsed()));
        }
        results[4].push(spread(&misses).median);
        results[5].push(median_sql_ms(&db, &evict_check_sql, 50).await?);
        results[6].push(median_sql_ms(&db, &old_evict_sql, 5).await?);
    }
    let series = |k: usize| {
        let points = GROWTH_SIZES.iter().zip(&results[k]);
        (names[k], points.map(|(n, v)| (*n as f64, *v)).collect())
    };
    write_chart(
        lab,
        GROWTH_SVG,
        "rows (users, sessions, cache entries)",
        vec![
            ("Admin API (median ms)", (0..3).map(series).collect()),
            (
                "Sessions and the speech cache (median ms)",
                (3..7).map(series).collect(),
            ),
        ],
    )?;
    let growth = |k: usize| results[k][2] / results[k][0].max(0.001);
    rep.row(
        "Cost at 100k rows ÷ at 1k: admin list first page / admin search / session lookup (SQL) / miss at the cache bound",
        format!(
            "{:.1}× / {:.1}× / {:.1}× / {:.1}× (previous eviction query {:.1}×: {:.2} → {:.2} ms)",
            growth(0),
            growth(2),
            growth(3),
            growth(4),
            growth(6),
            results[6][0],
            results[6][2]
        ),
        "flat or log",
        Verdict::Info,
    );
    let mut s = String::from("### 8. Cost as data grows\n\n");
    let _ = writeln!(
        s,
        "Rows are made by bulk inserts (`generate_series`), not through the API: users (with \
         one session each), and speech cache entries that fill the cache exactly to its bound \
         (`VOXGATE_TTS_CACHE_MAX_BYTES={bound}`, metadata only, random ages), so every miss \
         below evicts. API timings are medians of 20 sequential requests (10 for misses, each a \
         new text through the Polly stand-in); the session lookup, the eviction check and the \
         previous version's eviction query are SQL statements timed from the benchmark (medians, \
         round trip included).\n\n![Cost against data size]({GROWTH_SVG})\n"
    );
    let mut header = vec!["rows".to_string()];
    header.extend(names.iter().map(|n| format!("{n} ms")));
    let rows: Vec<Vec<String>> = GROWTH_SIZES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut row = vec![n.to_string()];
            row.extend(results.iter().map(|r| format!("{:.2}", r[i])));
            row
        })
        .collect();
    s.push_str(&table(&header, &rows));
    rep.section(s);
    sqlx::query("DELETE FROM tts_cache WHERE key LIKE 'growth-%'")
        .execute(&db)
        .await?;
    db.close().await;
    Ok(())
}

/// The growth chart, beside docs/benchmarks.md.
pub const GROWTH_SVG: &str = "benchmarks-growth.svg";

/// 3. Cached audio (~100 KB) from voxgate vs the same bytes from nginx.
pub async fn cache_hit(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let token = lab.token("alice").await?;
    let url = register(lab, &token, LONG_TEXT).await?;
    let (h1, audio) = get_ok(&lab.http, &url, Some(&token)).await?;
    let (h2, again) = get_ok(&lab.http, &url, Some(&token)).await?;
    ensure!(audio == again, "cached audio equals the streamed audio");
    ensure!(cache_header(&h2) == "hit", "second GET is a cache hit");
    let legacy = format!("{}{}", lab.vx_url, legacy_path(LONG_TEXT));
    let (h3, legacy_audio) = get_ok(&lab.http, &legacy, Some(&token)).await?;
    ensure!(
        legacy_audio == audio && cache_header(&h3) == "hit",
        "/textToSpeech with the same text hits the same cache entry"
    );
    std::fs::write(lab.work.join("static/speech.mp3"), &audio)?;
    let static_url = format!("{}/speech.mp3", lab.static_url);
    let (_, same) = get_ok(&lab.http, &static_url, None).await?;
    ensure!(same == audio, "nginx serves the same bytes");
    let names = [
        "voxgate GET /api/tts/{key} (hit)",
        "voxgate GET /textToSpeech (hit)",
        "nginx static speech.mp3",
    ];
    let make = |t: &str| {
        vec![
            load(lab, url.clone()).bearer(t),
            load(lab, legacy.clone()).bearer(t),
            load(lab, static_url.clone()),
        ]
    };
    let runs = series(lab, &names, make).await?;
    let mut rows = Vec::new();
    let (mut ra, mut rb) = (vec![], vec![]);
    for (i, r) in runs.iter().enumerate() {
        ra.push(r[0].rps / r[2].rps);
        rb.push(r[1].rps / r[2].rps);
        rows.push(vec![
            (i + 1).to_string(),
            rps(&r[0]),
            p99(&r[0]),
            rps(&r[1]),
            p99(&r[1]),
            rps(&r[2]),
            p99(&r[2]),
            r[2].transfer_per_sec.clone(),
            format!("{:.2}", r[0].rps / r[2].rps),
            format!("{:.2}", r[1].rps / r[2].rps),
        ]);
    }
    let (sa, sb) = (spread(&ra), spread(&rb));
    let col = |k: usize| spread(&runs.iter().map(|r| r[k].rps).collect::<Vec<_>>());
    let kib = audio.len() as f64 / 1024.0;
    rep.row(
        format!("TTS cache hit `GET /api/tts/{{key}}` ({kib:.0} KiB MP3) vs nginx static"),
        format!(
            "{} ({:.0} vs {:.0} req/s)",
            sa.show(2),
            col(0).median,
            col(2).median
        ),
        "≥ 0.5×",
        Verdict::of(sa.median >= 0.5),
    );
    rep.row(
        "TTS cache hit `GET /textToSpeech` vs nginx static",
        format!("{} ({:.0} req/s)", sb.show(2), col(1).median),
        "≥ 0.5×",
        Verdict::of(sb.median >= 0.5),
    );
    let _ = h1;
    let mut s = String::from("### 3. Speech cache hits\n\n");
    let _ = writeln!(
        s,
        "A {}-character text, synthesized once ({} bytes of MP3, {:.0} KiB), then fetched from \
         the cache: by key (`GET /api/tts/{{key}}`, bearer token) and through the original \
         query API (`GET /textToSpeech?Text=…`, which also registers the text and counts the \
         request against the per-user rate limit in Postgres before serving the hit). The \
         baseline is nginx serving the same bytes as `speech.mp3` (plain HTTP, `sendfile on`, \
         both over loopback).\n",
        LONG_TEXT.chars().count(),
        audio.len(),
        kib
    );
    s.push_str(&commands(&make("$TOKEN"), &names));
    s.push('\n');
    s.push_str(&table(
        &[
            "run",
            "/api/tts req/s",
            "p99 ms",
            "/textToSpeech req/s",
            "p99 ms",
            "nginx req/s",
            "p99 ms",
            "nginx transfer/s",
            "/api/tts ÷ nginx",
            "/textToSpeech ÷ nginx",
        ],
        &rows,
    ));
    let _ = writeln!(
        s,
        "\nMedian (min–max) req/s: /api/tts {}, /textToSpeech {}, nginx {}.\n",
        col(0).show(0),
        col(1).show(0),
        col(2).show(0)
    );
    rep.section(s);
    Ok(())
}

/// 4a. Time to first byte on a cache miss, through voxgate and straight
/// from the Polly stand-in.
pub async fn ttfb_miss(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    const SAMPLES: usize = 60;
    let token = lab.token("alice").await?;
    // Same length for every text, so the stand-in's synthesis costs the
    // same on every path; the run id keeps them unseen.
    let text = |kind: char, i: usize| {
        format!(
            "Measure {} {kind}{i:04}: a fresh sentence of ordinary length.",
            lab.run_id
        )
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (mut direct, mut legacy, mut keyed) = (vec![], vec![], vec![]);
    let mut caches = Vec::new();
    for i in 0..SAMPLES + 5 {
        let (d, _) = ttfb_polly(lab, &text('d', i)).await?;
        let (l, _, c1) = ttfb_http(
            &client,
            &format!("{}{}", lab.vx_url, legacy_path(&text('l', i))),
            Some(&token),
        )
        .await?;
        let url = register(lab, &token, &text('k', i)).await?;
        let (k, _, c2) = ttfb_http(&client, &url, Some(&token)).await?;
        // The first few warm connections and code paths.
        if i >= 5 {
            direct.push(ms(d));
            legacy.push(ms(l));
            keyed.push(ms(k));
            caches.push(c1);
            caches.push(c2);
        }
    }
    ensure!(
        caches.iter().all(|c| c == "miss"),
        "every measured request was a cache miss"
    );
    let (sd, sl, sk) = (spread(&direct), spread(&legacy), spread(&keyed));
    let paired = |v: &[f64]| {
        spread(
            &v.iter()
                .zip(&direct)
                .map(|(a, b)| a - b)
                .collect::<Vec<_>>(),
        )
    };
    let (dl, dk) = (sl.median - sd.median, sk.median - sd.median);
    let (pl, pk) = (paired(&legacy), paired(&keyed));
    rep.row(
        "Cache miss: time to first byte, `GET /api/tts/{key}` minus Polly stand-in (medians)",
        format!("{dk:+.2} ms ({:.2} vs {:.2} ms)", sk.median, sd.median),
        "≤ +5 ms",
        Verdict::of(dk <= 5.0),
    );
    rep.row(
        "Cache miss: time to first byte, `GET /textToSpeech` minus Polly stand-in (medians)",
        format!("{dl:+.2} ms ({:.2} ms)", sl.median),
        "≤ +5 ms",
        Verdict::of(dl <= 5.0),
    );
    let mut s = String::from("### 4a. Cache miss: time to first byte\n\n");
    let _ = writeln!(
        s,
        "{SAMPLES} samples per path (after 5 unrecorded), interleaved: (1) the Polly stand-in \
         called directly with the AWS SDK for Rust, as voxgate calls it; (2) voxgate \
         `GET /textToSpeech?Text=…` (register, rate-limit row, miss, upstream call, stream); \
         (3) voxgate `GET /api/tts/{{key}}` after an untimed `POST /api/tts`. Every text is \
         new and of the same length ({} characters), so every request misses every cache and \
         the stand-in does the same synthesis work for each. One client, sequential requests, \
         keep-alive connections; time is measured to the first audio byte.\n",
        text('d', 0).len()
    );
    s.push_str(&table(
        &[
            "path",
            "median ms",
            "p90 ms",
            "min ms",
            "max ms",
            "median − direct",
            "median of paired differences",
        ],
        &[
            vec![
                "Polly stand-in direct".into(),
                format!("{:.2}", sd.median),
                format!("{:.2}", percentile(&direct, 90.0)),
                format!("{:.2}", sd.min),
                format!("{:.2}", sd.max),
                "—".into(),
                "—".into(),
            ],
            vec![
                "voxgate /textToSpeech".into(),
                format!("{:.2}", sl.median),
                format!("{:.2}", percentile(&legacy, 90.0)),
                format!("{:.2}", sl.min),
                format!("{:.2}", sl.max),
                format!("{dl:+.2}"),
                format!("{:+.2}", pl.median),
            ],
            vec![
                "voxgate /api/tts/{key}".into(),
                format!("{:.2}", sk.median),
                format!("{:.2}", percentile(&keyed, 90.0)),
                format!("{:.2}", sk.min),
                format!("{:.2}", sk.max),
                format!("{dk:+.2}"),
                format!("{:+.2}", pk.median),
            ],
        ],
    ));
    s.push('\n');
    rep.section(s);
    Ok(())
}

/// 4b. Resident memory with 100 concurrent long streams.
pub async fn rss_streams(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    const STREAMS: usize = 100;
    const CHUNK_DELAY_MS: u64 = 400;
    let token = lab.token("alice").await?;
    let pid = lab.vx_pid;
    let idle_cold = rss_kib(pid)?;
    // A few ordinary streams first, so connection pools and lazily built
    // state exist before "idle" is read: they are not per-stream costs.
    let warm: Vec<_> = (0..10)
        .map(|i| {
            let url = format!(
                "{}{}",
                lab.vx_url,
                legacy_path(&format!("Warm {} {i:03} {STREAM_TEXT}", lab.run_id))
            );
            let (client, token) = (lab.http.clone(), token.clone());
            tokio::spawn(async move { get_ok(&client, &url, Some(&token)).await.map(|_| ()) })
        })
        .collect();
    for w in warm {
        w.await??;
    }
    let texts: Vec<String> = (0..STREAMS)
        .map(|i| format!("Stream {} {i:03} {STREAM_TEXT}", lab.run_id))
        .collect();
    // Render every text in the stand-in first (it caches audio per text),
    // so the streams start together and only the chunk delay paces them.
    let mut sizes = Vec::new();
    let mut pre =
        futures::stream::iter(texts.iter().map(|t| ttfb_polly(lab, t))).buffer_unordered(2);
    while let Some(r) = pre.next().await {
        sizes.push(r?.1);
    }
    drop(pre);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_samples: Vec<u64> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(rss_kib(pid)?);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        v
    };
    let idle = *idle_samples.iter().max().unwrap_or(&0);
    let threads_idle = proc_status_kib(pid, "Threads:")?;
    lab.polly_control("faults", json!({"chunk_delay_ms": CHUNK_DELAY_MS}))
        .await?;
    lab.polly_control("reset-counters", json!({})).await?;
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(STREAMS)
        .build()?;
    let t0 = Instant::now();
    let tasks: Vec<_> = texts
        .iter()
        .map(|t| {
            let url = format!("{}{}", lab.vx_url, legacy_path(t));
            let (client, token) = (client.clone(), token.clone());
            let (started, finished) = (started.clone(), finished.clone());
            tokio::spawn(async move {
                let mut r = client.get(&url).bearer_auth(&token).send().await?;
                ensure!(r.status() == 200, "stream: HTTP {}", r.status());
                let mut len = 0;
                let mut first = true;
                while let Some(chunk) = r.chunk().await? {
                    if first && !chunk.is_empty() {
                        first = false;
                        started.fetch_add(1, Ordering::SeqCst);
                    }
                    len += chunk.len();
                }
                finished.fetch_add(1, Ordering::SeqCst);
                anyhow::Ok(len)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while started.load(Ordering::SeqCst) < STREAMS {
        if Instant::now() > deadline {
            bail!(
                "only {} of {STREAMS} streams started",
                started.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_started = t0.elapsed();
    let open_at_first_sample = STREAMS - finished.load(Ordering::SeqCst);
    let threads_busy = proc_status_kib(pid, "Threads:")?;
    let mut peak = 0;
    let mut samples = Vec::new();
    for _ in 0..15 {
        let v = rss_kib(pid)?;
        samples.push(v);
        peak = peak.max(v);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finished_while_sampling = finished.load(Ordering::SeqCst);
    let open_while_sampling = STREAMS - finished_while_sampling;
    let mut lens = Vec::new();
    for t in tasks {
        lens.push(t.await??);
    }
    let stream_time = t0.elapsed();
    lab.polly_control("faults", json!({"chunk_delay_ms": 0}))
        .await?;
    let calls = lab.polly_synth_calls().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid)?;
    ensure!(
        lens.iter().zip(&sizes).all(|(a, _)| *a > 0),
        "every stream delivered audio"
    );
    let open = open_at_first_sample.max(1);
    let per_stream = (peak.saturating_sub(idle)) as f64 / open as f64;
    let per_stream_first = (samples[0].saturating_sub(idle)) as f64 / open as f64;
    rep.row(
        format!("Memory per open stream ({open} concurrent misses, VmRSS above idle)"),
        format!("{per_stream:.1} KiB"),
        "≤ 32 KiB",
        Verdict::of(per_stream <= 32.0 && open == STREAMS),
    );
    let mut s = String::from("### 4b. Memory with 100 concurrent long streams\n\n");
    let _ = writeln!(
        s,
        "{STREAMS} distinct texts ({} characters each, {:.0} KiB of MP3 on average) are first \
         rendered in the Polly stand-in (which caches audio per text); then the stand-in is set \
         to sleep {CHUNK_DELAY_MS} ms between 4 KiB chunks and {STREAMS} clients request them \
         at once through `GET /textToSpeech`, each a cache miss and its own upstream synthesis \
         (`VOXGATE_TTS_CONCURRENCY={}`). When every stream has delivered its first byte, \
         voxgate's VmRSS (`/proc/<pid>/status`) is sampled 15 times over 1.5 s and the peak is \
         compared with idle (the maximum of 5 samples after 10 warm-up streams).\n",
        texts[0].chars().count(),
        sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64 / 1024.0,
        crate::TTS_CONCURRENCY
    );
    s.push_str(&table(
        &["", "value"],
        &[
            vec![
                "VmRSS at start (no request yet)".into(),
                format!("{idle_cold} KiB"),
            ],
            vec![
                "VmRSS idle after warm-up".into(),
                format!("{idle} KiB (samples {idle_samples:?})"),
            ],
            vec![
                "VmRSS peak with streams open".into(),
                format!("{peak} KiB (samples {samples:?})"),
            ],
            vec![
                "streams open at the first / after the last sample".into(),
                format!("{open_at_first_sample} / {open_while_sampling} of {STREAMS}"),
            ],
            vec![
                "threads of voxgate idle / with streams open".into(),
                format!("{threads_idle} / {threads_busy}"),
            ],
            vec![
                "all first bytes after".into(),
                format!("{:.2} s", all_started.as_secs_f64()),
            ],
            vec![
                "all streams done after".into(),
                format!("{:.2} s", stream_time.as_secs_f64()),
            ],
            vec![
                "upstream syntheses during the test".into(),
                calls.to_string(),
            ],
            vec![
                "VmRSS 1 s after the streams ended".into(),
                format!("{after} KiB"),
            ],
            vec![
                "per open stream, (first sample − idle) ÷ open".into(),
                format!("{per_stream_first:.1} KiB"),
            ],
            vec![
                "per open stream (peak − idle) ÷ open".into(),
                format!("**{per_stream:.1} KiB**"),
            ],
        ],
    ));
    s.push('\n');
    rep.section(s);
    Ok(())
}

/// 4c. 100 identical concurrent requests cost one upstream synthesis.
pub async fn single_flight(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    const CLIENTS: usize = 100;
    let token = lab.token("alice").await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    // The stand-in holds its answer back, so all requests arrive while the
    // one synthesis is still running.
    lab.polly_control(
        "faults",
        json!({"first_byte_delay_ms": 500, "chunk_delay_ms": 20}),
    )
    .await?;
    let mut rows = Vec::new();
    let mut all_one = true;
    for (name, url) in [
        (
            "GET /api/tts/{key}",
            register(
                lab,
                &token,
                &format!("Single flight {} by key.", lab.run_id),
            )
            .await?,
        ),
        (
            "GET /textToSpeech",
            format!(
                "{}{}",
                lab.vx_url,
                legacy_path(&format!("Single flight {} by query.", lab.run_id))
            ),
        ),
    ] {
        lab.polly_control("reset-counters", json!({})).await?;
        let t0 = Instant::now();
        let results = futures::future::join_all((0..CLIENTS).map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            async move { get_ok(&client, &url, Some(&token)).await }
        }))
        .await;
        let elapsed = t0.elapsed();
        let calls = lab.polly_synth_calls().await?;
        let mut digests = std::collections::BTreeSet::new();
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        let mut ok = 0;
        for r in results {
            let (h, body) = r?;
            ok += 1;
            digests.insert(hex(&Sha256::digest(&body)));
            *kinds.entry(cache_header(&h)).or_default() += 1;
        }
        all_one &= calls == 1 && digests.len() == 1 && ok == CLIENTS;
        rows.push(vec![
            name.to_string(),
            format!("{ok} of {CLIENTS}"),
            digests.len().to_string(),
            format!("{kinds:?}"),
            format!("{:.2} s", elapsed.as_secs_f64()),
            format!("**{calls}**"),
        ]);
    }
    lab.polly_control("reset", json!({})).await?;
    rep.row(
        "100 concurrent identical requests → upstream syntheses",
        rows.iter()
            .map(|r| format!("{}: {}", r[0], r[5].trim_matches('*')))
            .collect::<Vec<_>>()
            .join("; "),
        "exactly 1",
        Verdict::of(all_one),
    );
    let mut s = String::from("### 4c. Single flight\n\n");
    s.push_str(
        "100 clients ask for the same new text at the same moment while the Polly stand-in \
         holds its first byte back for 500 ms (then 20 ms between chunks). The stand-in's own \
         counter (`GET /_standin/stats`, `synth_calls`, reset before each case) gives the \
         number of upstream calls.\n\n",
    );
    s.push_str(&table(
        &[
            "endpoint",
            "200 OK",
            "distinct bodies",
            "x-voxgate-cache",
            "all done after",
            "upstream syntheses",
        ],
        &rows,
    ));
    s.push('\n');
    rep.section(s);
    Ok(())
}

/// Sockets to `port` in TIME-WAIT: connections that were closed rather
/// than kept alive.
fn time_wait_to(port: u16) -> usize {
    std::process::Command::new("ss")
        .args(["-tanH", "state", "time-wait"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Section 5: the original design (Flask + boto3, no cache, whole body
/// at once) vs voxgate's `/textToSpeech`.
pub async fn original(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let token = lab.token("alice").await?;
    let vx_hit = format!("{}{}", lab.vx_url, legacy_path(SHORT_TEXT));
    let fl_hit = format!("{}{}", lab.flask_url, legacy_path(SHORT_TEXT));
    let (_, a) = get_ok(&lab.http, &vx_hit, Some(&token)).await?;
    let (_, b) = get_ok(&lab.http, &fl_hit, None).await?;
    ensure!(a == b, "both endpoints return the same audio");
    let names = [
        "voxgate /textToSpeech (hit)",
        "Flask /textToSpeech (same text)",
    ];
    let make_hits = |t: &str| {
        vec![
            load(lab, vx_hit.clone()).bearer(t),
            load(lab, fl_hit.clone()),
        ]
    };
    let hits = series(lab, &names, make_hits).await?;

    // Misses: every request a new text (bench/lua/unique_text.lua). Fewer
    // connections: the stand-in's synthesis is the bottleneck either way.
    let lua = lab.path("bench/lua/unique_text.lua");
    let prefix = "/textToSpeech?VoiceId=Joanna&LanguageCode=en-US&OutputFormat=mp3&Text=";
    let miss_names = [
        "voxgate /textToSpeech (miss)",
        "Flask /textToSpeech (new text)",
    ];
    let make_misses = |t: &str, run: usize| {
        let mk = |base: &str, tag: &str| {
            Load::new(
                format!("{base}/textToSpeech"),
                lab.args.threads,
                8,
                lab.duration(),
            )
            .script(
                lua.clone(),
                vec![prefix.to_string(), format!("{}{tag}{run}", lab.run_id)],
            )
        };
        vec![mk(&lab.vx_url, "v").bearer(t), mk(&lab.flask_url, "f")]
    };
    let mut misses = Vec::new();
    for run in 0..lab.args.runs {
        let t = lab.token("alice").await?;
        let mut r = Vec::new();
        for (i, l) in make_misses(&t, run).into_iter().enumerate() {
            eprintln!("  run {} {}", run + 1, miss_names[i]);
            r.push(checked(miss_names[i], l.run().await?)?);
        }
        misses.push(r);
    }

    // Time to first byte, one client, sequential.
    const SAMPLES: usize = 30;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut t = [vec![], vec![], vec![], vec![]];
    for i in 0..SAMPLES + 3 {
        let fresh = |who: char| {
            format!(
                "Original {} {who}{i:04} asks for something new.",
                lab.run_id
            )
        };
        let v = [
            ttfb_http(&client, &fl_hit, None).await?.0,
            ttfb_http(&client, &vx_hit, Some(&token)).await?.0,
            ttfb_http(
                &client,
                &format!("{}{}", lab.flask_url, legacy_path(&fresh('f'))),
                None,
            )
            .await?
            .0,
            ttfb_http(
                &client,
                &format!("{}{}", lab.vx_url, legacy_path(&fresh('v'))),
                Some(&token),
            )
            .await?
            .0,
        ];
        if i >= 3 {
            for (k, d) in v.iter().enumerate() {
                t[k].push(ms(*d));
            }
        }
    }

    let ratio = |runs: &Vec<Vec<WrkResult>>| {
        spread(&runs.iter().map(|r| r[0].rps / r[1].rps).collect::<Vec<_>>())
    };
    let (rh, rm) = (ratio(&hits), ratio(&misses));
    let col = |runs: &Vec<Vec<WrkResult>>, k: usize| {
        spread(&runs.iter().map(|r| r[k].rps).collect::<Vec<_>>())
    };
    let st: Vec<_> = t.iter().map(|v| spread(v)).collect();
    rep.row(
        "Repeated text: voxgate `/textToSpeech` (cache hit) vs original Flask + boto3",
        format!(
            "{}× ({:.0} vs {:.0} req/s)",
            rh.show(1),
            col(&hits, 0).median,
            col(&hits, 1).median
        ),
        "≥ 10×",
        Verdict::of(rh.median >= 10.0),
    );
    rep.row(
        "New text each time: voxgate (miss) vs original, throughput",
        format!(
            "{}× ({:.1} vs {:.1} req/s)",
            rm.show(2),
            col(&misses, 0).median,
            col(&misses, 1).median
        ),
        "≥ 1.0×",
        Verdict::of(rm.median >= 1.0),
    );
    rep.row(
        "Time to first byte, voxgate vs original: repeated text / new text (medians)",
        format!(
            "{:.2} vs {:.2} ms / {:.2} vs {:.2} ms",
            st[1].median, st[0].median, st[3].median, st[2].median
        ),
        "reported",
        Verdict::Info,
    );
    let mut s = String::from("### 5. Against the original design\n\n");
    let _ = writeln!(
        s,
        "`bench/python/original_flask.py` rebuilds the original endpoint from its description: \
         Flask on gunicorn ({} sync workers = 2 × cores + 1), `GET /textToSpeech` with \
         `LanguageCode`, `VoiceId`, `Text`, boto3 `synthesize_speech` (TextType text) against \
         the same Polly stand-in on every request, the whole body read and returned at once. It \
         has no cache; the stand-in itself caches rendered audio per text, which favours the \
         original on repeated texts. voxgate answers the same URL with a bearer token. The \
         {}-character text gives {} bytes of MP3; both return identical bytes.\n",
        lab.flask_workers,
        SHORT_TEXT.chars().count(),
        a.len()
    );
    s.push_str("Repeated text (voxgate serves its cache):\n\n");
    s.push_str(&commands(&make_hits("$TOKEN"), &names));
    s.push('\n');
    let rows: Vec<Vec<String>> = hits
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                (i + 1).to_string(),
                rps(&r[0]),
                p99(&r[0]),
                rps(&r[1]),
                p99(&r[1]),
                format!("{:.1}", r[0].rps / r[1].rps),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "run",
            "voxgate req/s",
            "p99 ms",
            "Flask req/s",
            "p99 ms",
            "ratio",
        ],
        &rows,
    ));
    s.push_str("\nNew text on every request (both wait for a synthesis):\n\n");
    s.push_str(&commands(&make_misses("$TOKEN", 0), &miss_names));
    s.push('\n');
    let rows: Vec<Vec<String>> = misses
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                (i + 1).to_string(),
                format!("{:.1}", r[0].rps),
                p99(&r[0]),
                format!("{:.1}", r[1].rps),
                p99(&r[1]),
                format!("{:.2}", r[0].rps / r[1].rps),
            ]
        })
        .collect();
    s.push_str(&table(
        &[
            "run",
            "voxgate req/s",
            "p99 ms",
            "Flask req/s",
            "p99 ms",
            "ratio",
        ],
        &rows,
    ));
    let _ = writeln!(
        s,
        "\nTime to first byte, {SAMPLES} sequential requests each (after 3 unrecorded), median \
         (min–max) ms:\n"
    );
    s.push_str(&table(
        &["", "original (Flask + boto3)", "voxgate"],
        &[
            vec!["repeated text".into(), st[0].show(2), st[1].show(2)],
            vec!["new text".into(), st[2].show(2), st[3].show(2)],
        ],
    ));
    s.push('\n');
    rep.section(s);
    Ok(())
}

/// 6. Token validation microbenchmark: reads what criterion wrote.
pub async fn token_micro(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let dir = lab
        .path(&lab.args.criterion_dir.to_string_lossy())
        .join("token");
    let read = |id: &str| -> Option<(f64, f64, f64)> {
        let text = std::fs::read_to_string(dir.join(id).join("new/estimates.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let m = &v["median"];
        Some((
            m["point_estimate"].as_f64()?,
            m["confidence_interval"]["lower_bound"].as_f64()?,
            m["confidence_interval"]["upper_bound"].as_f64()?,
        ))
    };
    let cases = [
        (
            "validate_cold_rsa",
            "`TokenValidator::validate` (full: parse, checks, RSA-2048 verify)",
        ),
        (
            "access_token_cached",
            "`TokenValidator::access_token`, second call (SHA-256 + cache lookup)",
        ),
        (
            "rsa2048_verify_aws_lc_rs",
            "raw RSA-2048 PKCS#1 v1.5 SHA-256 verify (aws-lc-rs)",
        ),
    ];
    let found: Vec<_> = cases.iter().map(|(id, _)| read(id)).collect();
    let mut s = String::from("### 6. Token validation (criterion)\n\n");
    s.push_str(
        "`bench/benches/token.rs`, run with `cargo bench -p voxgate-bench --bench token`: a \
         Keycloak stand-in in the same process serves the project realm, a \
         `voxgate::auth::provider::Provider` fetches its keys, and a real access token of bob \
         is validated. Medians of 50 samples with criterion's 95 % confidence interval.\n\n",
    );
    let mut rows = Vec::new();
    for ((id, what), f) in cases.iter().zip(&found) {
        rows.push(vec![
            format!("`{id}`"),
            what.to_string(),
            match f {
                Some((m, lo, hi)) => format!(
                    "{:.2} µs ({:.2}–{:.2})",
                    m / 1000.0,
                    lo / 1000.0,
                    hi / 1000.0
                ),
                None => "not run".into(),
            },
        ]);
    }
    s.push_str(&table(&["benchmark", "what", "median"], &rows));
    if let (Some(cold), Some(cached), Some(rsa)) = (found[0], found[1], found[2]) {
        let _ = writeln!(
            s,
            "\nThe cached path costs {:.1} % of a full validation; RSA verification is {:.0} % of \
             the full validation.\n",
            100.0 * cached.0 / cold.0,
            100.0 * rsa.0 / cold.0
        );
        rep.row(
            "Token validation: full (RSA) / cached / raw RSA-2048 verify",
            format!(
                "{:.1} µs / {:.2} µs / {:.1} µs",
                cold.0 / 1000.0,
                cached.0 / 1000.0,
                rsa.0 / 1000.0
            ),
            "reported",
            Verdict::Info,
        );
    } else {
        s.push_str("\nThe criterion results were not found; run `scripts/bench`.\n");
    }
    rep.section(s);
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into())
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|o| {
            o.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| {
                l.trim_start_matches("PRETTY_NAME=")
                    .trim_matches('"')
                    .to_string()
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn python_packages(lab: &Lab) -> String {
    let out =
        std::process::Command::new(lab.path(&lab.args.venv.join("bin/pip").to_string_lossy()))
            .args(["freeze", "--all"])
            .output();
    let wanted = [
        "fastapi",
        "uvicorn",
        "uvloop",
        "httptools",
        "starlette",
        "pyjwt",
        "cryptography",
        "flask",
        "werkzeug",
        "gunicorn",
        "boto3",
        "botocore",
    ];
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| {
                let name = l.split("==").next().unwrap_or("").to_ascii_lowercase();
                wanted.contains(&name.as_str())
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(_) => "unknown".into(),
    }
}

pub fn git_revision(lab: &Lab) -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&lab.root)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let rev = run(&["rev-parse", "--short", "HEAD"]);
    let dirty = !run(&["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if rev.is_empty() {
        "unknown".into()
    } else if dirty {
        format!("{rev} with uncommitted changes")
    } else {
        rev
    }
}

/// The whole of docs/benchmarks.md.
pub fn document(lab: &Lab, rep: &Report, elapsed_secs: u64) -> anyhow::Result<String> {
    let out = lab.path(&lab.args.out.to_string_lossy());
    let notes = std::fs::read_to_string(&out)
        .ok()
        .and_then(|old| report::previous_notes(&old))
        .unwrap_or_else(|| "(No notes yet.)".into());
    let now = time::OffsetDateTime::now_utc();
    let date = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute()
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let postgres = std::process::Command::new("psql")
        .arg(&lab.args.database_url)
        .args(["-Atqc", "SHOW server_version"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let env = crate::voxgate_env(&lab.args, "http://127.0.0.1:PORT", 0, "ISSUER", "POLLY");
    let mut d = String::new();
    d.push_str("# Benchmarks\n\n");
    d.push_str(
        "Measured speed and memory of voxgate against its own baselines, the Python \
         equivalents and nginx. Everything here is produced by one command, which builds the \
         release binaries, sets up the machine (Debian packages `wrk` and `nginx`, a fresh \
         Postgres database, the Python venv, a local CA), runs every measurement and rewrites \
         this file (only the notes at the end are kept):\n\n```sh\nscripts/bench\n```\n\n\
         Benchmarks are separate from the tests: the test suite makes no timing assertions.\n\n",
    );
    let _ = writeln!(
        d,
        "Last run: {date}, voxgate {}, {} measured runs of {} s per comparison (after {} s of \
         warm-up each), whole run {} min {} s including the build and criterion.\n",
        lab.args
            .revision
            .clone()
            .unwrap_or_else(|| git_revision(lab)),
        lab.args.runs,
        lab.args.seconds,
        lab.args.warmup,
        elapsed_secs / 60,
        elapsed_secs % 60
    );
    d.push_str("## Summary\n\n");
    d.push_str(&rep.summary_table());
    d.push_str(
        "\nRatios are computed within each run (the compared servers measured back to back) and \
         reported as the median with the range over runs; the target is judged on the median.\n\n",
    );
    d.push_str("## Machine and versions\n\n");
    d.push_str(&table(
        &["", ""],
        &[
            vec!["CPU".into(), format!("{} × {}", cores, cpu_model())],
            vec!["memory".into(), mem_total()],
            vec![
                "OS / kernel".into(),
                format!("{} / {}", os_name(), version_of("uname", &["-r"])),
            ],
            vec!["rustc".into(), version_of("rustc", &["-V"])],
            vec!["nginx".into(), version_of("nginx", &["-v"])],
            vec![
                "wrk".into(),
                version_of("wrk", &["-v"])
                    .split(" Copyright")
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ],
            vec!["PostgreSQL".into(), postgres],
            vec![
                "espeak-ng (used by the Polly stand-in)".into(),
                version_of("espeak-ng", &["--version"]),
            ],
            vec![
                "Python".into(),
                version_of(
                    &lab.path(&lab.args.venv.join("bin/python").to_string_lossy())
                        .to_string_lossy(),
                    &["--version"],
                ),
            ],
            vec!["Python packages".into(), python_packages(lab)],
        ],
    ));
    d.push_str("\n## Method\n\n");
    let _ = writeln!(
        d,
        "- Everything runs on this one machine over loopback (127.0.0.1): the **load generator \
         shares the same {cores} cores** with the server under test, the stand-ins, Postgres and \
         nginx, so absolute figures are lower than on a dedicated load host; ratios between \
         servers measured the same way are the meaningful figures.\n\
         - Load: wrk (`-t{} -c{}`, keep-alive, `--latency`), each series warmed up for {} s, \
         then {} runs of {} s; a response other than 2xx/3xx fails the benchmark instead of \
         being counted as throughput. Latency and memory figures come from small Rust clients \
         in `bench/src/scenarios.rs`.\n\
         - Servers: release builds (`cargo build --release`); Keycloak stand-in \
         (`keycloak-standin --realm keycloak-realm/realm.json`) and Polly stand-in \
         (`polly-standin --control`) as separate processes; nginx with the project \
         configuration; Python servers from `bench/python/requirements.txt`.\n\
         - Tokens: alice's (an admin) from the password grant of the dev-only `voxgate-cli` \
         client, fetched fresh for every run (they live 300 s). Admins are exempt from the \
         speech quota, and the rate limit is raised, so neither interferes with throughput.\n\
         - voxgate's environment (secrets are the realm's dev-only ones):\n",
        lab.args.threads, lab.args.connections, lab.args.warmup, lab.args.runs, lab.args.seconds
    );
    d.push_str("```sh\n");
    for (k, v) in &env {
        let shown = match *k {
            "VOXGATE_BIND" => "127.0.0.1:<free port>".to_string(),
            "VOXGATE_PUBLIC_URL" => "http://127.0.0.1:<port>".to_string(),
            "VOXGATE_OIDC_ISSUER" => "http://127.0.0.1:<stand-in port>/realms/voxgate".to_string(),
            "AWS_ENDPOINT_URL_POLLY" => "http://127.0.0.1:<stand-in port>".to_string(),
            "DATABASE_URL" => v.clone(),
            _ => v.clone(),
        };
        let _ = writeln!(d, "{k}={shown}");
    }
    d.push_str("```\n\n");
    d.push_str(
        "`VOXGATE_TTS_CONCURRENCY` is raised from its default of 8 so that 100 distinct \
         syntheses can stream at once (4b); everything else is at its default (10 Postgres \
         connections, 2 tokio worker threads on this machine).\n\n",
    );
    d.push_str("## Results\n\n");
    for s in &rep.sections {
        d.push_str(s);
        d.push('\n');
    }
    d.push_str("## Notes\n\n");
    d.push_str(report::NOTES_START);
    d.push('\n');
    d.push_str(&notes);
    d.push('\n');
    d.push_str(report::NOTES_END);
    d.push('\n');
    Ok(d)
}

/// One fetch of audio: time to the first byte, whole time, the bytes.
async fn fetch_audio(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> anyhow::Result<(Duration, Duration, Vec<u8>, String)> {
    let start = Instant::now();
    let mut r = client.get(url).bearer_auth(token).send().await?;
    let status = r.status();
    let cache = cache_header(r.headers());
    ensure!(status.is_success(), "GET {url}: HTTP {status}");
    let mut first = None;
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        if first.is_none() && !chunk.is_empty() {
            first = Some(start.elapsed());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((first.context("empty body")?, start.elapsed(), body, cache))
}

/// The neural voice against espeak-ng and the Polly stand-in: time to first
/// byte and real-time factor on new text, the worker's memory, and cache
/// hits (which must not care which engine made the entry).
pub async fn voices(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    const SAMPLES: usize = 12;
    let token = lab.token("alice").await?;
    let mut engines = vec![("Polly stand-in", lab.vx_url.clone(), None)];
    if let Some(python) = lab.args.piper_python.clone() {
        let env = [
            ("VOXGATE_TTS_ENGINE", "neural".to_string()),
            ("VOXGATE_PIPER_PYTHON", python.display().to_string()),
        ];
        let (url, _) = lab.start_voxgate(&env).await?;
        let ready: serde_json::Value = lab
            .http
            .get(format!("{url}/readyz"))
            .send()
            .await?
            .json()
            .await?;
        let detail = ready["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "speech_engine"))
            .and_then(|c| c["detail"].as_str())
            .unwrap_or_default()
            .to_string();
        ensure!(
            detail.starts_with("neural engine ready"),
            "neural voxgate: {detail}"
        );
        let pid = detail
            .split("worker pid ")
            .nth(1)
            .and_then(|p| p.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse::<u32>().ok());
        engines.push(("neural (Piper)", url, pid));
    }
    let (url, _) = lab
        .start_voxgate(&[("VOXGATE_TTS_ENGINE", "local".to_string())])
        .await?;
    engines.push(("espeak-ng", url, None));

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    // A long reply of six sentences: streaming is what lets its first
    // sentence play before the rest is spoken.
    let text = |engine: usize, i: usize| {
        format!(
            "Voices {} {engine}-{i:03}. The quick brown fox jumps over the lazy dog. \
             It was a bright cold day in April, and the clocks were striking thirteen. \
             Call me Ishmael. Some years ago, never mind how long precisely, I thought \
             I would sail about a little and see the watery part of the world. \
             It is a way I have of driving off the spleen.",
            lab.run_id
        )
    };
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for (e, (name, url, pid)) in engines.iter().enumerate() {
        let rss_idle = pid.and_then(|p| rss_kib(p).ok());
        let (mut ttfb, mut total, mut rtf) = (vec![], vec![], vec![]);
        for i in 0..SAMPLES + 2 {
            let t = text(e, i);
            let (first, whole, body, cache) =
                fetch_audio(&client, &format!("{url}{}", legacy_path(&t)), &token).await?;
            ensure!(cache == "miss", "{name}: a new text was a cache {cache}");
            let audio =
                voxgate_audio::mp3_duration_estimate(&body).context("the audio has MP3 frames")?;
            if i >= 2 {
                ttfb.push(ms(first));
                total.push(ms(whole));
                rtf.push(whole.as_secs_f64() / audio.as_secs_f64().max(0.001));
            }
        }
        // Cache hits of one of those texts.
        let mut hits = vec![];
        for _ in 0..20 {
            let (_, whole, _, cache) = fetch_audio(
                &client,
                &format!("{url}{}", legacy_path(&text(e, SAMPLES))),
                &token,
            )
            .await?;
            ensure!(cache != "miss", "{name}: a repeated text missed the cache");
            hits.push(ms(whole));
        }
        let (sf, st, sr, sh) = (spread(&ttfb), spread(&total), spread(&rtf), spread(&hits));
        let memory = match pid {
            Some(p) => format!(
                "{:.0} MiB idle, {:.0} MiB after, {:.0} MiB peak",
                rss_idle.unwrap_or(0) as f64 / 1024.0,
                rss_kib(*p).unwrap_or(0) as f64 / 1024.0,
                proc_status_kib(*p, "VmHWM:").unwrap_or(0) as f64 / 1024.0
            ),
            None => "—".into(),
        };
        rows.push(vec![
            name.to_string(),
            format!("{:.0} ({:.0}–{:.0})", sf.median, sf.min, sf.max),
            format!("{:.0}", st.median),
            format!("{:.3}", sr.median),
            format!("{:.2}", sh.median),
            memory,
        ]);
        summary.push((name.to_string(), sf, st, sr));
    }
    if let Some((_, sf, st, sr)) = summary.iter().find(|s| s.0.starts_with("neural")) {
        rep.row(
            "Neural voice: time to first byte on a new six-sentence reply is its first sentence, not the whole reply (median)",
            format!("{:.0} ms of {:.0} ms", sf.median, st.median),
            "≤ 0.5 × whole",
            Verdict::of(sf.median <= 0.5 * st.median),
        );
        rep.row(
            "Neural voice: real-time factor (synthesis time ÷ audio length, median)",
            format!("{:.3}", sr.median),
            "< 1 (faster than real time)",
            Verdict::of(sr.median < 1.0),
        );
    }
    let mut s = String::from("### Voices: neural (Piper), espeak-ng and the Polly stand-in\n\n");
    let _ = writeln!(
        s,
        "Each engine runs in its own voxgate (same database), asked through `GET \
         /textToSpeech` for {SAMPLES} new six-sentence texts of {} characters in a row \
         (after 2 unrecorded), then for one of them again 20 times (cache hits). Real-time \
         factor = whole request time ÷ length of the audio returned. The neural worker's \
         memory is its resident set (`/proc`), before the run, after it, and its peak.\n",
        text(0, 0).chars().count()
    );
    s.push_str(&table(
        &[
            "engine",
            "first byte ms (range)",
            "whole ms",
            "real-time factor",
            "cache hit ms",
            "worker memory",
        ],
        &rows,
    ));
    rep.section(s);
    Ok(())
}
