//! Section 4a: time to first byte on a cache miss.

use super::*;

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
