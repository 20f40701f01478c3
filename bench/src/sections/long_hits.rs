//! A long cached reply heard by 100 clients at once, streamed from Postgres.

use super::*;

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
