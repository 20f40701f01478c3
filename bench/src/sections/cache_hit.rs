//! Section 3: cached audio from voxgate vs the same bytes from nginx.

use super::*;

/// 3. Cached audio (~100 KB) from voxgate vs the same bytes from nginx.
pub async fn cache_hit(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    let token = lab.token("alice").await?;
    let url = register(lab, &token, LONG_TEXT).await?;
    let (_, audio) = get_ok(&lab.http, &url, Some(&token)).await?;
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
