//! The voices: the neural voice against espeak-ng and the Polly stand-in.

use super::*;

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
        let detail = readyz_detail(lab, &url, "speech_engine").await?;
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
