//! Listening: how well and how fast the local recogniser hears the voices
//! of this machine, its workers' memory, many speakers at once, and the
//! voice round trip (end of a person's speech → first byte of the spoken
//! reply).

use super::*;

/// Harvard sentences (IEEE 1969, list 1): the usual fixed set for speech.
const HARVARD: [&str; 8] = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
];

/// `text` spoken by the neural voice (`piper`) or espeak-ng, as WAV.
fn speak(lab: &Lab, voice: &str, text: &str) -> anyhow::Result<Vec<u8>> {
    let out = match voice {
        "neural" => {
            let python = lab.args.piper_python.as_ref().context("no neural voice")?;
            std::process::Command::new(python)
                .arg(lab.path("tests/speak.py"))
                .arg(text)
                .output()?
        }
        _ => std::process::Command::new("espeak-ng")
            .args(["--stdout", text])
            .output()?,
    };
    ensure!(out.status.success(), "{voice} could not speak");
    // espeak-ng writes to a pipe, so its header's sizes are placeholders.
    let pcm = voxgate_audio::decode_wav(&out.stdout)?;
    Ok(voxgate_audio::pcm_to_wav(&pcm)?)
}

fn wav_seconds(wav: &[u8]) -> f64 {
    voxgate_audio::decode_wav(wav)
        .map(|p| p.duration().as_secs_f64())
        .unwrap_or(0.0)
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace("it's", "it is")
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Word-level edit distance.
fn edits(reference: &[String], heard: &[String]) -> usize {
    let mut row: Vec<usize> = (0..=heard.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, h) in heard.iter().enumerate() {
            let substitute = previous + usize::from(r != h);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[heard.len()]
}

/// One recognition: the time from sending the whole utterance (the end of
/// speech, for a client that sends when the speaker stops) to the text.
async fn recognise(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    wav: &[u8],
) -> anyhow::Result<(Duration, String)> {
    let start = Instant::now();
    let r = client
        .post(format!("{url}/api/stt?language=en"))
        .bearer_auth(token)
        .header("content-type", "audio/wav")
        .body(wav.to_vec())
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    ensure!(status.is_success(), "POST /api/stt: {status} {body}");
    Ok((
        start.elapsed(),
        body["text"].as_str().unwrap_or_default().to_string(),
    ))
}

/// The recogniser's worker processes, as `/readyz` names them.
async fn worker_pids(lab: &Lab, url: &str) -> anyhow::Result<Vec<u32>> {
    let detail = readyz_detail(lab, url, "speech_recogniser").await?;
    ensure!(
        detail.starts_with("local recogniser"),
        "listening voxgate: {detail}"
    );
    Ok(detail
        .split("worker pid ")
        .nth(1)
        .unwrap_or_default()
        .split(", ")
        .filter_map(|p| p.trim().parse().ok())
        .collect())
}

pub async fn listening(lab: &mut Lab, rep: &mut Report) -> anyhow::Result<()> {
    // Without them the section is reported as not measured, and the run
    // still writes what the other sections measured.
    let (Some(whisper), Some(piper)) = (
        lab.args.whisper_python.clone(),
        lab.args.piper_python.clone(),
    ) else {
        rep.row(
            "Recognition of a spoken sentence, p50",
            "not measured (needs VOXGATE_WHISPER_PYTHON and VOXGATE_PIPER_PYTHON)",
            "≤ 500 ms",
            Verdict::Miss,
        );
        return Ok(());
    };
    let env = [
        ("VOXGATE_STT_ENGINE", "local".to_string()),
        ("VOXGATE_WHISPER_PYTHON", whisper.display().to_string()),
        ("VOXGATE_STT_WORKERS", "2".to_string()),
        (
            "VOXGATE_STT_RATE_PER_MINUTE",
            crate::RATE_PER_MINUTE.to_string(),
        ),
        ("VOXGATE_STT_DAILY_SECONDS", "1000000000".to_string()),
        ("VOXGATE_TTS_ENGINE", "neural".to_string()),
        ("VOXGATE_PIPER_PYTHON", piper.display().to_string()),
    ];
    let (url, _) = lab.start_voxgate(&env).await?;
    worker_pids(lab, &url).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let token = lab.token("alice").await?;
    let mut s = String::from("## Listening\n\n");
    s.push_str(
        "The local recogniser (faster-whisper, Whisper tiny.en, int8, two warm workers of one \
         thread each) on utterances spoken at run time by this machine's voices, through \
         `POST /api/stt` (16-bit WAV). Latency is from sending the whole utterance (a client \
         sends when the speaker stops) to the text; the real-time factor is that latency over \
         the utterance's length.\n\n",
    );

    // Accuracy, per voice.
    let mut rows = Vec::new();
    let mut heard_examples = Vec::new();
    for voice in ["neural", "espeak-ng"] {
        let (mut errors, mut total, mut times) = (0usize, 0usize, Vec::new());
        for sentence in HARVARD {
            let wav = speak(lab, voice, sentence)?;
            let (took, text) = recognise(&client, &url, &token, &wav).await?;
            let (reference, heard) = (words(sentence), words(&text));
            errors += edits(&reference, &heard);
            total += reference.len();
            times.push(ms(took));
            if heard != reference {
                heard_examples.push(format!("{voice}: “{sentence}” → “{text}”"));
            }
        }
        rows.push(vec![
            voice.to_string(),
            format!("{:.2}", errors as f64 / total as f64),
            format!("{errors} of {total}"),
            format!("{:.0} ms", percentile(&times, 50.0)),
        ]);
        rep.row(
            format!("Word error rate, Harvard sentences spoken by {voice}"),
            format!("{:.2}", errors as f64 / total as f64),
            "reported",
            Verdict::Info,
        );
    }
    s.push_str(
        "### Word error rate\n\nThe eight sentences of Harvard list 1, each spoken once.\n\n",
    );
    s.push_str(&table(
        &["voice", "word error rate", "words wrong", "latency p50"],
        &rows,
    ));
    if !heard_examples.is_empty() {
        s.push_str("\nMisheard:\n\n");
        for e in &heard_examples {
            let _ = writeln!(s, "- {e}");
        }
    }

    // Latency against length.
    const RUNS: usize = 10;
    let lengths = [
        ("about 3 s", HARVARD[0].to_string()),
        ("about 5 s", format!("{} {}", HARVARD[1], HARVARD[2])),
        ("about 10 s", HARVARD[3..7].join(" ")),
    ];
    let mut rows = Vec::new();
    // The first (shortest) sentence: p50 and its measured length.
    let mut three = (0.0, 0.0);
    for (label, text) in &lengths {
        let wav = speak(lab, "neural", text)?;
        let seconds = wav_seconds(&wav);
        let mut times = Vec::new();
        recognise(&client, &url, &token, &wav).await?; // warm-up
        for _ in 0..RUNS {
            times.push(ms(recognise(&client, &url, &token, &wav).await?.0));
        }
        let p50 = percentile(&times, 50.0);
        if three.1 == 0.0 {
            three = (p50, seconds);
        }
        rows.push(vec![
            format!("{label} ({seconds:.1} s)"),
            format!("{p50:.0} ms"),
            format!("{:.0} ms", percentile(&times, 95.0)),
            format!("{:.3}", p50 / 1000.0 / seconds),
        ]);
    }
    let (three, three_seconds) = three;
    rep.row(
        format!("Recognition of a spoken sentence ({three_seconds:.1} s), p50"),
        format!("{three:.0} ms"),
        "≤ 500 ms",
        Verdict::of(three <= 500.0),
    );
    let _ = write!(
        s,
        "\n### Latency against length\n\n{RUNS} recognitions of each, one at a time, after one \
         warm-up.\n\n"
    );
    s.push_str(&table(
        &["utterance", "p50", "p95", "real-time factor"],
        &rows,
    ));

    // Simultaneous speakers: each a user of their own (one utterance at a
    // time per user), all sending at once.
    let wav = speak(lab, "neural", HARVARD[0])?;
    let mut speakers = Vec::new();
    for n in 1..=8 {
        let name = format!("bench-listener-{n:02}");
        let r = lab
            .http
            .post(format!("{url}/api/admin/users"))
            .bearer_auth(&token)
            .json(&json!({
                "username": name, "email": format!("{name}@example.test"),
                "firstName": "Bench", "lastName": "Listener", "roles": ["user"],
                "password": {"value": name, "temporary": false},
            }))
            .send()
            .await?;
        ensure!(
            r.status().as_u16() == 201 || r.status().as_u16() == 409,
            "creating {name}: {}",
            r.status()
        );
        speakers.push(lab.token(&name).await?);
    }
    let mut rows = Vec::new();
    for n in [1usize, 2, 4, 8] {
        let mut times = Vec::new();
        let started = Instant::now();
        for _ in 0..3 {
            let all = speakers[..n]
                .iter()
                .map(|t| recognise(&client, &url, t, &wav));
            for r in futures::future::join_all(all).await {
                times.push(ms(r?.0));
            }
        }
        rows.push(vec![
            n.to_string(),
            format!("{:.0} ms", percentile(&times, 50.0)),
            format!("{:.0} ms", percentile(&times, 95.0)),
            format!(
                "{:.1}",
                times.len() as f64 / started.elapsed().as_secs_f64()
            ),
        ]);
    }
    let _ = write!(
        s,
        "\n### Speakers at once\n\n1 to 8 users, each sending the {three_seconds:.1} s sentence at \
         the same moment, three times over. Two workers share the machine's {cores} cores: \
         beyond two speakers an utterance waits for a worker (up to \
         `VOXGATE_STT_WORKER_WAIT_SECONDS`), so latency grows with the queue while throughput \
         stays at what two workers manage.\n\n",
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    s.push_str(&table(&["speakers", "p50", "p95", "utterances/s"], &rows));

    // Memory.
    let pids = worker_pids(lab, &url).await?;
    let rss: Vec<String> = pids
        .iter()
        .filter_map(|p| rss_kib(*p).ok())
        .map(|k| format!("{:.0} MiB", k as f64 / 1024.0))
        .collect();
    let _ = write!(
        s,
        "\n### Worker memory\n\nResident memory of each warm worker after the runs above: {}.\n",
        rss.join(", ")
    );

    // The voice round trip: eight different questions, so that every
    // reply is synthesized rather than heard from the cache.
    const QUESTIONS: [&str; 8] = [
        "What can you do?",
        "What is voxgate?",
        "How do I change the voice?",
        "Who am I?",
        "How do I change the speed?",
        "How do I sign out?",
        "How does the word highlighting work?",
        "How do I clear my history?",
    ];
    let mut trips = Vec::new();
    let mut parts = Vec::new();
    for (speaker, question) in speakers.iter().zip(QUESTIONS) {
        let wav = speak(lab, "neural", question)?;
        let start = Instant::now();
        let (heard, text) = recognise(&client, &url, speaker, &wav).await?;
        let reply: serde_json::Value = client
            .post(format!("{url}/api/chat"))
            .bearer_auth(speaker)
            .json(&json!({ "message": text }))
            .send()
            .await?
            .json()
            .await?;
        let replied = start.elapsed();
        let speech = reply["speech"]["url"]
            .as_str()
            .context("a reply without speech")?;
        let mut audio = client
            .get(format!("{url}{speech}"))
            .bearer_auth(speaker)
            .send()
            .await?;
        ensure!(
            audio.status().is_success(),
            "GET {speech}: {}",
            audio.status()
        );
        let _ = audio.chunk().await?;
        let trip = start.elapsed();
        trips.push(ms(trip));
        parts.push((ms(heard), ms(replied - heard), ms(trip - replied)));
    }
    let p50 = percentile(&trips, 50.0);
    rep.row(
        "Voice round trip (end of speech → first byte of the spoken reply), p50",
        format!("{p50:.0} ms"),
        "≤ 1000 ms",
        Verdict::of(p50 <= 1000.0),
    );
    let median =
        |f: fn(&(f64, f64, f64)) -> f64| percentile(&parts.iter().map(f).collect::<Vec<_>>(), 50.0);
    let (recognised, chatted, spoken) = (median(|p| p.0), median(|p| p.1), median(|p| p.2));
    let _ = write!(
        s,
        "\n### The voice round trip\n\nEight people (one user each) ask a different question \
         aloud, one after the other: the utterance is recognised, sent to the knowledge-base \
         bot, and the reply's speech (the neural voice) requested; measured from sending the \
         utterance to the reply audio's first byte. Every reply is new, so every one is \
         synthesized. p50 {p50:.0} ms, p95 {:.0} ms; medians of the parts: recognition \
         {recognised:.0} ms, the chat {chatted:.0} ms, the first audio byte {spoken:.0} ms. \
         The first byte waits for the neural voice to speak the reply's first sentence whole \
         (Piper produces a sentence at a time), so a long first sentence bounds the trip; a \
         reply heard before comes from the cache in milliseconds.\n",
        percentile(&trips, 95.0),
    );
    rep.section(s);
    Ok(())
}
