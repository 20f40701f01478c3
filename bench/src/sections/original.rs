//! Section 5: the original design (Flask + boto3) vs voxgate's `/textToSpeech`.

use super::*;

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
