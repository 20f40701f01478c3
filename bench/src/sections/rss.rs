//! Section 4b: resident memory with 100 concurrent long streams.

use super::*;

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
