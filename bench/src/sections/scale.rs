//! Past one machine. Upstream calls per unique text with one,
//! two and three instances on one database; hits from the audio bucket
//! (S3Proxy, run here) against hits from Postgres; and what a cached reply
//! costs Postgres with and without the bucket.

use voxgate_lab::s3::{BUCKET, S3PROXY_VERSION, Store};

use super::*;
use crate::procs::Proc;

/// Unique texts per instance count, and clients asking for each at once.
const TEXTS: usize = 5;
const CLIENTS: usize = 30;
/// The large entry: above the 1 MiB an entry may take in memory.
const LARGE: usize = 3 * 1024 * 1024;
/// Streams open at once for the memory figure.
const STREAMS: usize = 100;

/// A registered speech: its key, path and URL at one instance.
struct Registered {
    key: String,
    path: String,
    url: String,
}

/// Registers `text` in Joanna's voice at the instance at `base`.
async fn register_at(lab: &Lab, base: &str, token: &str, text: &str) -> anyhow::Result<Registered> {
    let speech: serde_json::Value = lab
        .http
        .post(format!("{base}/api/tts"))
        .bearer_auth(token)
        .json(&json!({"text": text, "voice": "Joanna"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let path = speech["url"].as_str().context("url")?.to_string();
    Ok(Registered {
        key: speech["key"].as_str().context("key")?.to_string(),
        url: format!("{base}{path}"),
        path,
    })
}

/// Waits until `key`'s entry is in the bucket.
async fn wait_moved(db: &sqlx::PgPool, key: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        let moved: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tts_cache WHERE key = $1 AND bucket_object IS NOT NULL",
        )
        .bind(key)
        .fetch_one(db)
        .await?;
        if moved == 1 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the entry never moved to the bucket")
}

/// Replaces `key`'s chunks in Postgres by `data`, 8 KiB each.
async fn plant_in_postgres(db: &sqlx::PgPool, key: &str, data: &[u8]) -> anyhow::Result<()> {
    const CHUNK: usize = 8 * 1024;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tts_cache WHERE key = $1 AND complete")
        .bind(key)
        .fetch_one(db)
        .await?
        == 0
    {
        ensure!(Instant::now() < deadline, "the entry was never cached");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM tts_chunks WHERE key = $1")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    for (seq, piece) in data.chunks(CHUNK).enumerate() {
        sqlx::query(
            "INSERT INTO tts_chunks (key, seq, offset_bytes, data) VALUES ($1, $2, $3, $4)",
        )
        .bind(key)
        .bind(seq as i32)
        .bind((seq * CHUNK) as i64)
        .bind(piece)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE tts_cache SET size = $2, etag = 'bench-large' WHERE key = $1")
        .bind(key)
        .bind(data.len() as i64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// VmRSS of `pid` above idle, per stream, with [`STREAMS`] clients holding
/// `url` open (each read its first piece, then pauses 3 s), every stream
/// checked whole after.
async fn memory_per_stream(lab: &Lab, pid: u32, url: &str, data: &[u8]) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut idle = 0;
    for _ in 0..5 {
        idle = idle.max(rss_kib(pid)?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let token = lab.token("alice").await?;
    let started = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(STREAMS)
        .build()?;
    let tasks: Vec<_> = (0..STREAMS)
        .map(|_| {
            let (client, token, url, started) = (
                client.clone(),
                token.clone(),
                url.to_string(),
                started.clone(),
            );
            tokio::spawn(async move {
                let mut r = client.get(&url).bearer_auth(&token).send().await?;
                ensure!(r.status() == 200, "large hit: HTTP {}", r.status());
                let mut got = Vec::new();
                if let Some(first) = r.chunk().await? {
                    got.extend_from_slice(&first);
                }
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(3)).await;
                while let Some(chunk) = r.chunk().await? {
                    got.extend_from_slice(&chunk);
                }
                anyhow::Ok(Sha256::digest(&got).to_vec())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.load(Ordering::SeqCst) < STREAMS {
        ensure!(
            Instant::now() < deadline,
            "the large streams did not all start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut peak = 0;
    for _ in 0..15 {
        peak = peak.max(rss_kib(pid)?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let want = Sha256::digest(data).to_vec();
    for t in tasks {
        ensure!(t.await?? == want, "a large stream delivered other bytes");
    }
    Ok(peak.saturating_sub(idle) as f64 / STREAMS as f64)
}

pub async fn scale(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let (endpoint, s3) = start_s3proxy(lab).await?;
    let mut env = voxgate_lab::s3::voxgate_env(&endpoint);
    env.push((
        "VOXGATE_AUDIO_BUCKET_PREFIX",
        format!("bench-{}/", lab.run_id),
    ));
    let mut urls = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let (url, pid) = lab.start_voxgate(&env).await?;
        urls.push(url);
        pids.push(pid);
    }
    let token = lab.token("alice").await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(CLIENTS)
        .build()?;

    // Upstream calls per unique text.
    lab.polly_control(
        "faults",
        json!({"first_byte_delay_ms": 300, "chunk_delay_ms": 10}),
    )
    .await?;
    let mut per_text = Vec::new();
    for n in 1..=3 {
        lab.polly_control("reset-counters", json!({})).await?;
        for t in 0..TEXTS {
            let text = format!("Scale {} with {n} instances, text {t}.", lab.run_id);
            let path = legacy_path(&text);
            let answers = futures::future::join_all((0..CLIENTS).map(|i| {
                let url = format!("{}{path}", urls[i % n]);
                let (client, token) = (client.clone(), token.clone());
                async move { get_ok(&client, &url, Some(&token)).await }
            }))
            .await;
            for a in answers {
                a?;
            }
        }
        per_text.push(lab.polly_synth_calls().await? as f64 / TEXTS as f64);
    }
    lab.polly_control("reset", json!({})).await?;
    rep.row(
        format!("upstream calls per unique text, {CLIENTS} concurrent requests spread over 1 / 2 / 3 instances"),
        per_text
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect::<Vec<_>>()
            .join(" / "),
        "exactly 1",
        Verdict::of(per_text.iter().all(|c| *c == 1.0)),
    );

    // Hits. Hot replies (up to 1 MiB) are held in each instance's memory
    // whichever store they came from; what differs is a large entry, read
    // from its store on every hit: chunks from Postgres (the lab's
    // instance, no bucket) or a ranged GET from the bucket.
    let db = sqlx::PgPool::connect(&lab.args.database_url).await?;
    let hot_pg = register_at(
        lab,
        &lab.vx_url.clone(),
        &token,
        &format!("{LONG_TEXT} Postgres {}.", lab.run_id),
    )
    .await?;
    let (_, hot_audio) = get_ok(&client, &hot_pg.url, Some(&token)).await?;
    let hot_bucket = register_at(
        lab,
        &urls[0],
        &token,
        &format!("{LONG_TEXT} Bucket {}.", lab.run_id),
    )
    .await?;
    get_ok(&client, &hot_bucket.url, Some(&token)).await?;
    wait_moved(&db, &hot_bucket.key).await?;
    let (h, hot_bucket_audio) = get_ok(&client, &hot_bucket.url, Some(&token)).await?;
    ensure!(cache_header(&h) == "hit", "a hit from the bucket");
    let large: Vec<u8> = (0..LARGE).map(|i| (i * 31 + i / 7) as u8).collect();
    let large_pg = register_at(
        lab,
        &lab.vx_url.clone(),
        &token,
        &format!("Large in Postgres {}.", lab.run_id),
    )
    .await?;
    get_ok(&client, &large_pg.url, Some(&token)).await?;
    plant_in_postgres(&db, &large_pg.key, &large).await?;
    let large_bucket = register_at(
        lab,
        &urls[0],
        &token,
        &format!("Large in the bucket {}.", lab.run_id),
    )
    .await?;
    get_ok(&client, &large_bucket.url, Some(&token)).await?;
    wait_moved(&db, &large_bucket.key).await?;
    let object = format!("bench-{}/{}.large", lab.run_id, large_bucket.key);
    s3.put_object()
        .bucket(BUCKET)
        .key(&object)
        .body(large.clone().into())
        .send()
        .await?;
    sqlx::query(
        "UPDATE tts_cache SET size = $2, etag = 'bench-large', bucket_object = $3 WHERE key = $1",
    )
    .bind(&large_bucket.key)
    .bind(LARGE as i64)
    .bind(&object)
    .execute(&db)
    .await?;
    for url in [&large_pg.url, &large_bucket.url] {
        let (_, got) = get_ok(&client, url, Some(&token)).await?;
        ensure!(got == large, "the large entry is served whole");
    }
    // Memory first: after the load runs, both processes hold freed memory
    // that new streams would reuse, hiding what a stream costs.
    let per_stream_pg = memory_per_stream(lab, lab.vx_pid, &large_pg.url, &large).await?;
    let per_stream_bucket = memory_per_stream(lab, pids[0], &large_bucket.url, &large).await?;
    let names = [
        "hot hit, came from Postgres",
        "hot hit, came from the bucket",
        "large hit, streamed from Postgres",
        "large hit, streamed from the bucket",
    ];
    let make = |t: &str| {
        vec![
            load(lab, hot_pg.url.clone()).bearer(t),
            load(lab, hot_bucket.url.clone()).bearer(t),
            load(lab, large_pg.url.clone()).bearer(t),
            load(lab, large_bucket.url.clone()).bearer(t),
        ]
    };
    let runs = series(lab, &names, make).await?;
    let hot: Vec<f64> = runs.iter().map(|r| r[1].rps / r[0].rps).collect();
    let cold: Vec<f64> = runs.iter().map(|r| r[3].rps / r[2].rps).collect();
    let (hot, cold) = (spread(&hot), spread(&cold));
    let mut rows = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        rows.push(vec![
            (i + 1).to_string(),
            format!("{} / {}", rps(&r[0]), rps(&r[1])),
            format!("{} / {}", p99(&r[0]), p99(&r[1])),
            format!("{} / {}", rps(&r[2]), rps(&r[3])),
            format!("{} / {}", p99(&r[2]), p99(&r[3])),
            format!("{:.2} / {:.2}", r[1].rps / r[0].rps, r[3].rps / r[2].rps),
        ]);
    }
    rep.row(
        format!(
            "hits from the bucket vs from Postgres, presign off: hot {:.0} KiB reply / large {} MiB entry",
            hot_audio.len() as f64 / 1024.0,
            LARGE / (1024 * 1024)
        ),
        format!("{} / {}", hot.show(2), cold.show(2)),
        "≥ 0.8×",
        Verdict::of(hot.median >= 0.8 && cold.median >= 0.8),
    );
    rep.row(
        format!("memory per open stream of the large entry, {STREAMS} at once: Postgres / bucket"),
        format!("{per_stream_pg:.1} KiB / {per_stream_bucket:.1} KiB"),
        "bounded, ≪ entry",
        Verdict::of(per_stream_pg < 256.0 && per_stream_bucket < 256.0),
    );

    // Presign on, with nginx in front of the bucket as a CDN would be: the
    // presigning instance names nginx as the bucket's endpoint, so its URLs
    // point there, and nginx keeps what it fetched.
    let front = start_bucket_front(lab, &endpoint).await?;
    let mut presign_env = env.clone();
    presign_env.retain(|(name, _)| *name != "VOXGATE_AUDIO_BUCKET_ENDPOINT_URL");
    presign_env.push(("VOXGATE_AUDIO_BUCKET_ENDPOINT_URL", front.clone()));
    presign_env.push(("VOXGATE_AUDIO_BUCKET_PRESIGN_SECONDS", "3600".into()));
    let (presign_url, _) = lab.start_voxgate(&presign_env).await?;
    let not_following = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let redirected = format!("{presign_url}{}", hot_bucket.path);
    let mut times = Vec::new();
    let mut location = String::new();
    for _ in 0..300 {
        let t0 = Instant::now();
        let r = not_following
            .get(&redirected)
            .bearer_auth(&token)
            .send()
            .await?;
        times.push(ms(t0.elapsed()));
        ensure!(r.status() == 307, "presigned hits redirect: {}", r.status());
        location = r.headers()["location"].to_str()?.to_string();
    }
    times.sort_by(f64::total_cmp);
    ensure!(
        location.starts_with(&front),
        "presigned URLs name nginx: {location}"
    );
    let first = client.get(&location).send().await?;
    let second = client.get(&location).send().await?;
    let cache_status = second
        .headers()
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    first.bytes().await?;
    let fetched = second.bytes().await?;
    ensure!(
        fetched == hot_bucket_audio,
        "the presigned URL serves the audio"
    );
    let names = [
        "hot hit through voxgate (bucket instance)",
        "presigned URL served by nginx",
    ];
    let make_presigned = |t: &str| {
        vec![
            load(lab, hot_bucket.url.clone()).bearer(t),
            load(lab, location.clone()),
        ]
    };
    let presigned_runs = series(lab, &names, make_presigned).await?;
    let through_nginx = spread(
        &presigned_runs
            .iter()
            .map(|r| r[1].rps / r[0].rps)
            .collect::<Vec<_>>(),
    );
    let nginx_rps = spread(&presigned_runs.iter().map(|r| r[1].rps).collect::<Vec<_>>());
    rep.row(
        "presign on: nginx in front of the bucket serves the bytes (req/s vs voxgate serving the hit)",
        format!(
            "{:.0} req/s, {} × voxgate (second fetch: X-Cache-Status {cache_status})",
            nginx_rps.median,
            through_nginx.show(2)
        ),
        "served by nginx",
        Verdict::of(cache_status == "HIT"),
    );

    // Postgres bytes per cached reply, scaled to 10k from the replies this
    // section synthesized (not the planted large entries): chunks and
    // index rows in Postgres, and index rows only once moved and tidied.
    let (with_chunks, index_only): (Option<f64>, Option<f64>) = {
        let rows: (Option<f64>, Option<f64>) = sqlx::query_as(
            "SELECT (avg(pg_column_size(c.*) + k.bytes) FILTER (WHERE k.bytes IS NOT NULL))::float8,
                    avg(pg_column_size(c.*))::float8
               FROM tts_cache c
               LEFT JOIN LATERAL (SELECT sum(pg_column_size(t.*)) AS bytes
                                    FROM tts_chunks t WHERE t.key = c.key) k ON true
              WHERE c.complete AND c.content_type LIKE 'audio/%' AND c.etag <> 'bench-large'",
        )
        .fetch_one(&db)
        .await?;
        rows
    };
    let per_10k = |b: Option<f64>| b.unwrap_or(0.0) * 10_000.0 / (1024.0 * 1024.0);
    let (pg_mib, bucket_mib) = (per_10k(with_chunks), per_10k(index_only));

    let mut s = String::from("## Past one machine\n\n");
    let _ = writeln!(
        s,
        "Three more voxgate processes run on the lab's database with the audio bucket on \
         (S3Proxy {S3PROXY_VERSION}, `jclouds.provider=transient`, started by the benchmark on a \
         local port).\n"
    );
    let _ = writeln!(
        s,
        "**Upstream calls per unique text.** For 1, 2 and 3 instances, {TEXTS} new texts, each \
         asked for by {CLIENTS} concurrent clients spread round-robin over the instances, while \
         the Polly stand-in holds its first byte back 300 ms. Calls per text (the stand-in's \
         counter ÷ {TEXTS}): {}.\n",
        per_text
            .iter()
            .enumerate()
            .map(|(i, c)| format!(
                "{} instance{}: **{c:.2}**",
                i + 1,
                if i == 0 { "" } else { "s" }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "**Hits.** Two pairs of entries, each pair served once from Postgres (by the lab's \
         instance, which has no bucket) and once from the bucket (by a bucket instance). Hot: \
         replies of {} bytes, which every instance holds in memory after its first read, \
         whichever store it read from. Large: {} MiB planted under real entries (a synthesis \
         that long would take minutes), above the 1 MiB an entry may take in memory, so every \
         hit streams it from its store: chunks from Postgres, or a ranged GET from S3Proxy \
         streamed through. Requests per second and p99 (ms), Postgres / bucket:\n",
        hot_audio.len(),
        LARGE / (1024 * 1024),
    );
    s.push_str(&table(
        &[
            "run",
            "hot req/s",
            "hot p99",
            "large req/s",
            "large p99",
            "bucket ÷ Postgres, hot / large",
        ],
        &rows,
    ));
    let _ = writeln!(
        s,
        "\nMemory: {STREAMS} clients open the large entry at once, read the first piece and \
         pause for 3 s; VmRSS above idle ÷ {STREAMS}: Postgres {per_stream_pg:.1} KiB, bucket \
         {per_stream_bucket:.1} KiB per stream (the entry: {} KiB). A bucket stream asks for \
         128 KiB per ranged GET, the next when the last is used up: per stream it holds the HTTP \
         client's buffer of the window in flight and the piece the server is writing, whatever \
         the entry's length (docs/scaling.md says what other window sizes cost).\n",
        LARGE / 1024
    );
    let _ = writeln!(
        s,
        "\n**Presign on** (`VOXGATE_AUDIO_BUCKET_PRESIGN_SECONDS`): a repeat hearing is a \
         307 to a presigned URL. Here the presigning instance names an nginx in front of the \
         bucket as the bucket's endpoint (as a CDN would be: it passes the signed `Host` on and \
         caches by the whole URL, signature included, `proxy_cache_key $request_uri`), so the \
         bytes come from nginx. 300 sequential redirects: median {:.2} ms, p99 {:.2} ms. The \
         URL fetched without credentials returned the same {} bytes, the second time from \
         nginx's cache (`X-Cache-Status: {cache_status}`). Requests per second, the hot reply \
         through voxgate (from its memory) / the presigned URL through nginx:\n",
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        fetched.len()
    );
    let presigned_rows: Vec<Vec<String>> = presigned_runs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            vec![
                (i + 1).to_string(),
                format!("{} / {}", rps(&r[0]), rps(&r[1])),
                format!("{} / {}", p99(&r[0]), p99(&r[1])),
            ]
        })
        .collect();
    s.push_str(&table(&["run", "req/s", "p99 ms"], &presigned_rows));
    s.push('\n');
    let _ = writeln!(
        s,
        "**Postgres per 10k cached replies** (average row sizes of the entries this run made, \
         `pg_column_size`, times 10,000; indexes and page overhead not counted): audio in \
         Postgres {pg_mib:.1} MiB; with the bucket (index rows only, once the chunks are tidied) \
         {bucket_mib:.2} MiB.\n"
    );
    rep.row(
        "Postgres bytes per 10k cached replies: in Postgres / with the bucket",
        format!("{pg_mib:.1} MiB / {bucket_mib:.2} MiB"),
        "measured",
        Verdict::Info,
    );
    rep.section(s);
    for pid in pids {
        lab.stop(pid);
    }
    Ok(())
}

/// nginx in front of the bucket at `s3`, caching what it serves, as an
/// operator's CDN or edge would; returns its URL. Stopped with the lab.
async fn start_bucket_front(lab: &mut Lab, s3: &str) -> anyhow::Result<String> {
    let dir = lab.work.join("nginx-bucket");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(dir.join("cache"))?;
    if let Some(uid) = voxgate_lab::nginx::worker_uid() {
        std::os::unix::fs::chown(dir.join("cache"), Some(uid), None)?;
    }
    let port = voxgate_lab::free_port();
    let upstream = s3.trim_start_matches("http://");
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 1;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               proxy_cache_path {d}/cache levels=1:2 keys_zone=audio:10m max_size=256m inactive=10m use_temp_path=off;\n\
               upstream bucket {{ server {upstream}; keepalive 32; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{\n\
                   proxy_pass http://bucket;\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n\
                   proxy_set_header Host $http_host;\n\
                   proxy_cache audio;\n\
                   proxy_cache_key $request_uri;\n\
                   proxy_cache_valid 200 10m;\n\
                   add_header X-Cache-Status $upstream_cache_status;\n\
                 }}\n\
               }}\n\
             }}\n"
        ),
    )?;
    let cmd = voxgate_lab::nginx::command(&dir, &lab.logs.join("nginx-bucket-error.log"));
    let mut proc = Proc::spawn_with("nginx-bucket", cmd, &lab.logs, true)?;
    let url = format!("http://127.0.0.1:{port}");
    // Any answer will do (the bucket refuses an unsigned request).
    for _ in 0..100 {
        if lab.http.get(format!("{url}/")).send().await.is_ok() {
            lab.adopt(proc);
            return Ok(url);
        }
        proc.check_alive()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nginx in front of the bucket did not start")
}

/// S3Proxy on a local port with the bucket made; stopped with the lab.
async fn start_s3proxy(lab: &mut Lab) -> anyhow::Result<(String, aws_sdk_s3::Client)> {
    let dir = lab.work.join("s3proxy");
    std::fs::create_dir_all(&dir)?;
    let port = voxgate_lab::free_port();
    let cmd = Store::S3Proxy.command(&lab.root, port, &dir)?;
    let proc = Proc::spawn("s3proxy", cmd, &lab.logs)?;
    lab.adopt(proc);
    let endpoint = format!("http://127.0.0.1:{port}");
    let s3 = voxgate_lab::s3::client(&endpoint);
    for _ in 0..300 {
        if s3.create_bucket().bucket(BUCKET).send().await.is_ok() {
            return Ok((endpoint, s3));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "S3Proxy did not start within 30 s (see {})",
        lab.logs.display()
    )
}
