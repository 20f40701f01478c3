//! Section 4c: identical concurrent requests cost one upstream synthesis.

use super::*;

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
