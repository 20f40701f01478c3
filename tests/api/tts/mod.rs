//! Speech: the real AWS SDK against the Polly stand-in, the local voice,
//! the cache, single-flight and the cost bounds.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{TestSettings, detail_has, problem};
use crate::stack::{Stack, spawn_polly_stack, spawn_stack, spawn_with_bob};

/// The path of `/textToSpeech` with `query`, for requests that cannot
/// borrow a `Stack` (spawned ones).
pub fn text_to_speech(query: &[(&str, &str)]) -> String {
    format!(
        "/textToSpeech?{}",
        serde_urlencoded::to_string(query).unwrap()
    )
}

fn polly(stack: &Stack) -> &polly_standin::PollyStandin {
    stack.polly.as_ref().expect("polly stand-in")
}

/// The original endpoint's query for `text` in Joanna's voice, as MP3.
pub fn joanna(text: &str) -> [(&str, &str); 4] {
    [
        ("Text", text),
        ("VoiceId", "Joanna"),
        ("LanguageCode", "en-US"),
        ("OutputFormat", "mp3"),
    ]
}

/// A stack speaking through the Polly stand-in, and a token of bob's.
pub async fn polly_with_bob() -> (Stack, String) {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let bob = stack.password_token("bob", "bob").await;
    (stack, bob)
}

impl Stack {
    pub async fn tts_get(&self, token: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.app.caller(token).get(text_to_speech(query)).await
    }

    /// `/textToSpeech?Text=…` with every other parameter left out.
    pub async fn say(&self, token: &str, text: &str) -> reqwest::Response {
        self.tts_get(token, &[("Text", text)]).await
    }

    /// The words of a registered synthesis's speech marks, in order.
    pub async fn spoken_words(&self, token: &str, registered: &Value) -> Vec<String> {
        let marks: Value = self
            .fetch(token, registered["marksUrl"].as_str().unwrap(), &[])
            .await
            .json()
            .await
            .unwrap();
        marked_words(&marks).into_iter().map(String::from).collect()
    }

    /// Registers a synthesis through `POST /api/tts`.
    pub async fn register_speech(&self, token: &str, body: &Value) -> Value {
        let r = self.app.caller(token).post("/api/tts", body).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    pub async fn fetch(
        &self,
        token: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .get(self.app.url(path))
            .bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }
}

/// The words of a speech-marks answer, in order.
pub fn marked_words(marks: &Value) -> Vec<&str> {
    marks
        .as_array()
        .expect("marks are a list")
        .iter()
        .filter(|m| m["type"] == "word")
        .map(|m| m["value"].as_str().expect("a word"))
        .collect()
}

/// Decodes MP3 with sox and returns its length in seconds.
pub fn decoded_seconds(mp3: &[u8]) -> f64 {
    let dir = std::env::temp_dir().join(format!("voxgate-tts-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("speech.mp3");
    std::fs::write(&path, mp3).unwrap();
    let out = std::process::Command::new("sox")
        .args(["--info", "-D"])
        .arg(&path)
        .output()
        .expect("sox is installed (scripts/test installs sox and libsox-fmt-mp3)");
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        out.status.success(),
        "sox cannot decode the audio: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a duration")
}

#[tokio::test]
async fn speech_needs_a_signed_in_user() {
    let stack = spawn_stack().await;
    let anonymous = stack.app.anonymous().get("/textToSpeech?Text=hi").await;
    problem(anonymous, 401).await;
    let post = stack
        .app
        .anonymous()
        .post("/api/tts", &json!({"text": "hi"}))
        .await;
    problem(post, 401).await;
    let voices = stack.app.anonymous().get("/api/voices").await;
    problem(voices, 401).await;
}

#[tokio::test]
async fn polly_speech_streams_real_mp3_through_the_legacy_endpoint() {
    let (stack, token) = polly_with_bob().await;
    let response = stack
        .tts_get(&token, &joanna("Hello from voxgate. This is a test."))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/mpeg");
    assert_eq!(response.headers()["x-voxgate-cache"], "miss");
    let audio = response.bytes().await.unwrap();
    let seconds = decoded_seconds(&audio);
    assert!(
        (1.0..10.0).contains(&seconds),
        "plausible duration: {seconds}"
    );
    assert_eq!(polly(&stack).synth_calls(), 1);
    assert_eq!(
        polly(&stack).billed_characters(),
        "Hello from voxgate. This is a test.".len() as u64
    );
}

#[tokio::test]
async fn speech_errors_map_to_specific_problems() {
    let (stack, token) = polly_with_bob().await;
    let bad_voice = stack
        .tts_get(
            &token,
            &[
                ("Text", "Hi"),
                ("VoiceId", "Nobody"),
                ("LanguageCode", "en-US"),
            ],
        )
        .await;
    let p = problem(bad_voice, 400).await;
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("Nobody") && detail.contains("Joanna") && !detail.contains("Hans"),
        "{detail}"
    );
    let too_long = stack
        .tts_get(
            &token,
            &[("Text", &"a".repeat(3001)), ("VoiceId", "Joanna")],
        )
        .await;
    problem(too_long, 413).await;
    let empty = stack
        .tts_get(&token, &[("Text", "  \u{7} "), ("VoiceId", "Joanna")])
        .await;
    problem(empty, 400).await;
    let missing = stack.tts_get(&token, &[("VoiceId", "Joanna")]).await;
    problem(missing, 400).await;
    let format = stack
        .tts_get(&token, &[("Text", "Hi"), ("OutputFormat", "wav")])
        .await;
    assert!(
        problem(format, 400).await["detail"]
            .as_str()
            .unwrap()
            .contains("mp3")
    );
    let engine = stack
        .tts_get(
            &token,
            &[("Text", "Hi"), ("VoiceId", "Joanna"), ("Engine", "quantum")],
        )
        .await;
    problem(engine, 400).await;
    let unsupported = stack
        .tts_get(
            &token,
            &[("Text", "Hi"), ("VoiceId", "Kevin"), ("Engine", "standard")],
        )
        .await;
    assert!(
        problem(unsupported, 400).await["detail"]
            .as_str()
            .unwrap()
            .contains("neural")
    );
    assert_eq!(
        polly(&stack).synth_calls(),
        0,
        "nothing invalid reached Polly"
    );
}

#[tokio::test]
async fn ssml_looking_text_is_spoken_literally_never_a_500() {
    let (stack, token) = polly_with_bob().await;
    for text in [
        r#"</speak><speak><break time="10s"/>"#,
        "Fish & chips < 5 pounds",
        "<speak>hi</speak>",
    ] {
        let response = stack
            .tts_get(&token, &[("Text", text), ("VoiceId", "Joanna")])
            .await;
        assert_eq!(response.status(), 200, "{text}");
        let seconds = decoded_seconds(&response.bytes().await.unwrap());
        assert!(
            seconds < 8.0,
            "{text}: no 10 s break was injected ({seconds} s)"
        );
    }
    let local = spawn_stack().await;
    let token = local.password_token("bob", "bob").await;
    let response = local
        .tts_get(&token, &[("Text", r#"</speak><speak><break time="10s"/>"#)])
        .await;
    assert_eq!(response.status(), 200);
    let seconds = decoded_seconds(&response.bytes().await.unwrap());
    assert!(
        seconds < 8.0,
        "local voice speaks it literally ({seconds} s)"
    );
}

#[tokio::test]
async fn pollys_own_error_texts_never_reach_users() {
    // Credentials Polly does not know: its answer names the problem (and
    // in real AWS can name the account or IAM role).
    let stack =
        spawn_polly_stack(TestSettings::default().set("AWS_ACCESS_KEY_ID", "AKIDSOMEONEELSE0001"))
            .await;
    let token = stack.password_token("bob", "bob").await;
    let response = stack
        .tts_get(&token, &[("Text", "Hello"), ("VoiceId", "Joanna")])
        .await;
    let status = response.status().as_u16();
    assert!(status == 502 || status == 503, "{status}");
    let body = problem(response, status).await;
    let detail = body["detail"].as_str().unwrap();
    for leak in ["Unrecognized", "security token", "AKID", "arn:"] {
        assert!(!detail.contains(leak), "{leak} in {detail}");
    }
    assert!(
        body["requestId"].is_string(),
        "the request id ties it to the log"
    );
}

#[tokio::test]
async fn throttling_is_retried_and_then_becomes_503_with_retry_after() {
    let (stack, token) = polly_with_bob().await;
    polly(&stack).throttle_next(1);
    let recovered = stack
        .tts_get(&token, &[("Text", "Retry me"), ("VoiceId", "Joanna")])
        .await;
    assert_eq!(recovered.status(), 200);
    assert_eq!(
        polly(&stack).synth_calls(),
        2,
        "one throttled attempt, one retry"
    );
    polly(&stack).throttle_next(10);
    let throttled = stack
        .tts_get(&token, &[("Text", "Throttle me"), ("VoiceId", "Joanna")])
        .await;
    assert_eq!(throttled.headers()["retry-after"], "2");
    problem(throttled, 503).await;
    polly(&stack).reset_faults();
    polly(&stack).fail_next(1, 500);
    let after_500 = stack
        .tts_get(
            &token,
            &[("Text", "Server error once"), ("VoiceId", "Joanna")],
        )
        .await;
    assert_eq!(
        after_500.status(),
        200,
        "a 5xx before the first byte is retried"
    );
}

#[tokio::test]
async fn audio_really_streams_before_the_upstream_finishes() {
    let (stack, token) = polly_with_bob().await;
    polly(&stack).set_chunk_delay(Duration::from_millis(150));
    let text = "This sentence is long enough to make several chunks of audio. ".repeat(4);
    let started = Instant::now();
    let response = stack
        .tts_get(&token, &[("Text", &text), ("VoiceId", "Joanna")])
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(!first.is_empty());
    let mut chunks = 1;
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
        chunks += 1;
    }
    let done_at = started.elapsed();
    assert!(chunks > 3, "several chunks ({chunks})");
    // With 150 ms between upstream chunks the whole body takes seconds;
    // the first bytes must not wait for it.
    assert!(
        done_at > first_at + Duration::from_millis(450),
        "first {first_at:?}, done {done_at:?}"
    );
}

#[tokio::test]
async fn a_cut_stream_aborts_the_response_and_is_not_cached() {
    let (stack, token) = polly_with_bob().await;
    polly(&stack).cut_stream_after(Some(6000));
    let text = "A long answer that will be cut off in the middle of its audio stream. ".repeat(3);
    let response = stack
        .tts_get(&token, &[("Text", &text), ("VoiceId", "Joanna")])
        .await;
    assert_eq!(response.status(), 200, "headers were sent before the cut");
    assert!(
        response.bytes().await.is_err(),
        "the client sees the stream break"
    );
    let cached = stack.app.count("SELECT count(*) FROM tts_cache").await;
    assert_eq!(cached, 0, "nothing of a cut stream is cached");
    polly(&stack).cut_stream_after(None);
    let again = stack
        .tts_get(&token, &[("Text", &text), ("VoiceId", "Joanna")])
        .await;
    assert_eq!(again.headers()["x-voxgate-cache"], "miss");
    again.bytes().await.unwrap();
    assert_eq!(polly(&stack).synth_calls(), 2);
}

#[tokio::test]
async fn cached_audio_is_identical_and_honours_etag_and_range() {
    let (stack, token) = polly_with_bob().await;
    let speech = stack
        .register_speech(
            &token,
            &json!({"text": "Cache me if you can.", "voice": "Joanna"}),
        )
        .await;
    let url = speech["url"].as_str().unwrap();
    assert_eq!(speech["marksUrl"], format!("{url}/marks"));
    let first = stack.fetch(&token, url, &[]).await;
    assert_eq!(first.headers()["x-voxgate-cache"], "miss");
    // While streaming there is no validator yet: the bytes are not final.
    assert!(first.headers().get("etag").is_none());
    let first = first.bytes().await.unwrap();
    let second = stack.fetch(&token, url, &[]).await;
    let etag = second.headers()["etag"].to_str().unwrap().to_string();
    assert!(
        second.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(second.headers()["x-voxgate-cache"], "hit");
    assert_eq!(second.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(second.bytes().await.unwrap(), first, "identical bytes");
    assert_eq!(polly(&stack).synth_calls(), 1);

    let not_modified = stack.fetch(&token, url, &[("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status(), 304);
    let partial = stack
        .fetch(&token, url, &[("range", "bytes=100-199")])
        .await;
    assert_eq!(partial.status(), 206);
    assert_eq!(
        partial.headers()["content-range"],
        format!("bytes 100-199/{}", first.len())
    );
    assert_eq!(partial.bytes().await.unwrap(), first.slice(100..200));
    let suffix = stack.fetch(&token, url, &[("range", "bytes=-10")]).await;
    assert_eq!(
        suffix.bytes().await.unwrap(),
        first.slice(first.len() - 10..)
    );
    let unsatisfiable = stack
        .fetch(
            &token,
            url,
            &[("range", &format!("bytes={}-", first.len() + 5))],
        )
        .await;
    assert_eq!(unsatisfiable.status(), 416);

    // Another instance sharing the database serves the same cached bytes.
    let unknown = stack
        .fetch(&token, "/api/tts/AAAAAAAAAAAAAAAAAAAAAAAAAAA", &[])
        .await;
    problem(unknown, 404).await;
    let garbage = stack.fetch(&token, "/api/tts/..%2F..%2Fetc", &[]).await;
    assert_eq!(garbage.status(), 404);
}

#[tokio::test]
async fn fifty_concurrent_identical_requests_cost_one_upstream_call() {
    let stack =
        spawn_polly_stack(TestSettings::default().set("VOXGATE_TTS_RATE_PER_MINUTE", "1000")).await;
    let token = stack.password_token("alice", "alice").await;
    polly(&stack).set_chunk_delay(Duration::from_millis(20));
    let text = "Everybody asks for the same sentence at once. ".repeat(3);
    let requests = (0..50).map(|_| {
        let url = stack.app.url("/textToSpeech");
        let token = token.clone();
        let text = text.clone();
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .query(&[("Text", text.as_str()), ("VoiceId", "Joanna")])
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }
    });
    let bodies = futures::future::join_all(requests).await;
    assert_eq!(polly(&stack).synth_calls(), 1);
    assert!(
        bodies.iter().all(|b| *b == bodies[0] && !b.is_empty()),
        "everyone got the same audio"
    );
}

#[tokio::test]
async fn the_daily_character_quota_returns_429_and_resets() {
    let stack =
        spawn_polly_stack(TestSettings::default().set("VOXGATE_TTS_DAILY_CHARS", "50")).await;
    let bob = stack.password_token("bob", "bob").await;
    let ok = stack.say(&bob, "Thirty characters of speech...").await;
    assert_eq!(ok.status(), 200);
    ok.bytes().await.unwrap();
    let cached = stack.say(&bob, "Thirty characters of speech...").await;
    assert_eq!(cached.status(), 200, "cache hits are free");
    let over = stack.say(&bob, "Another thirty characters here").await;
    assert!(
        over.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let p = problem(over, 429).await;
    detail_has(&p, "quota");
    let alice = stack.password_token("alice", "alice").await;
    assert_eq!(
        stack
            .say(&alice, "Another thirty characters here")
            .await
            .status(),
        200,
        "admins are exempt"
    );
    // A new day.
    stack.app.sql("UPDATE tts_usage SET day = day - 1").await;
    assert_eq!(
        stack
            .say(&bob, "Yet another thirty characters.")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_quota_weighs_characters_by_the_polly_engine() {
    let stack =
        spawn_polly_stack(TestSettings::default().set("VOXGATE_TTS_DAILY_CHARS", "100")).await;
    let bob = stack.password_token("bob", "bob").await;
    let thirty = "Thirty characters of speech...";
    let speak = |engine: &'static str, text: &'static str| {
        let token = bob.clone();
        let stack = &stack;
        async move {
            let query = [("Text", text), ("VoiceId", "Joanna"), ("Engine", engine)];
            stack.tts_get(&token, &query).await
        }
    };
    // Neural costs four times standard: 30 characters are 120 of 100.
    let neural = speak("neural", thirty).await;
    let p = problem(neural, 429).await;
    detail_has(&p, "neural engine counts each character 4 times");
    let standard = speak("standard", thirty).await;
    assert_eq!(standard.status(), 200);
    standard.bytes().await.unwrap();
    let used = stack.app.count("SELECT chars FROM tts_usage").await;
    assert_eq!(
        used,
        thirty.len() as i64,
        "the refused request cost nothing"
    );
    // 30 + 4 × 15 = 90: a short neural request still fits.
    let short = speak("neural", "Fifteen letters").await;
    assert_eq!(short.status(), 200);
    short.bytes().await.unwrap();
    assert_eq!(
        stack.app.count("SELECT chars FROM tts_usage").await,
        30 + 4 * 15
    );
}

#[tokio::test]
async fn the_shared_cache_tells_nobody_what_somebody_else_had_spoken() {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let text = "A reply that only alice asked for.";
    let speech = stack
        .register_speech(&alice, &json!({"text": text, "voice": "Joanna"}))
        .await;
    let url = speech["url"].as_str().unwrap().to_string();
    stack
        .app
        .caller(&alice)
        .get(&url)
        .await
        .bytes()
        .await
        .unwrap();
    let again = stack.app.caller(&alice).get(&url).await;
    assert_eq!(again.headers()["x-voxgate-cache"], "hit");
    assert!(again.headers().contains_key("etag"));

    // Another user cannot fetch it by key: it is as unknown as a key never
    // registered.
    let theirs = problem(stack.app.caller(&bob).get(&url).await, 404).await;
    let unknown = format!("/api/tts/{}", "A".repeat(27));
    let none = problem(stack.app.caller(&bob).get(&unknown).await, 404).await;
    let strip = |p: &Value| {
        p["detail"]
            .as_str()
            .unwrap()
            .replace(speech["key"].as_str().unwrap(), "K")
            .replace(&"A".repeat(27), "K")
    };
    assert_eq!(strip(&theirs), strip(&none));
    let marks = stack.app.caller(&bob).get(format!("{url}/marks")).await;
    assert_eq!(marks.status(), 404);

    // Asking for the same words is a miss to bob in every visible way,
    // and costs his quota like one; only his second hearing is a hit.
    let synthesized = polly(&stack).synth_calls();
    let first = stack
        .tts_get(&bob, &[("Text", text), ("VoiceId", "Joanna")])
        .await;
    assert_eq!(first.status(), 200);
    let h = first.headers().clone();
    assert_eq!(h["x-voxgate-cache"], "miss");
    assert_eq!(h["cache-control"], "private, no-cache");
    for hidden in ["etag", "accept-ranges", "content-length"] {
        assert!(!h.contains_key(hidden), "{hidden} would tell: {h:?}");
    }
    let audio = first.bytes().await.unwrap();
    assert!(!audio.is_empty());
    assert_eq!(
        polly(&stack).synth_calls(),
        synthesized,
        "served from the cache"
    );
    let bob_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE username = 'bob'")
        .fetch_one(&stack.app.db)
        .await
        .unwrap();
    let used: i64 = sqlx::query_scalar("SELECT chars FROM tts_usage WHERE user_id = $1")
        .bind(bob_id)
        .fetch_one(&stack.app.db)
        .await
        .unwrap();
    assert_eq!(used, text.len() as i64);
    let second = stack
        .tts_get(&bob, &[("Text", text), ("VoiceId", "Joanna")])
        .await;
    assert_eq!(second.headers()["x-voxgate-cache"], "hit");
    assert_eq!(second.bytes().await.unwrap(), audio);
}

#[tokio::test]
async fn registering_speech_counts_against_the_quota_once_per_text() {
    let stack =
        spawn_polly_stack(TestSettings::default().set("VOXGATE_TTS_DAILY_CHARS", "50")).await;
    let bob = stack.password_token("bob", "bob").await;
    let thirty = json!({"text": "Thirty characters of speech..."});
    stack.register_speech(&bob, &thirty).await;
    stack.register_speech(&bob, &thirty).await;
    assert_eq!(stack.app.count("SELECT chars FROM tts_usage").await, 30);
    let other = json!({"text": "Another thirty characters here"});
    let refused = stack.app.caller(&bob).post("/api/tts", &other).await;
    problem(refused, 429).await;
    // Hearing what was registered is paid for already.
    let speech = stack.register_speech(&bob, &thirty).await;
    let audio = stack
        .app
        .caller(&bob)
        .get(speech["url"].as_str().unwrap())
        .await;
    assert_eq!(audio.status(), 200);
    audio.bytes().await.unwrap();
    assert_eq!(stack.app.count("SELECT chars FROM tts_usage").await, 30);
}

#[tokio::test]
async fn the_per_minute_rate_limit_returns_429_and_resets() {
    let stack =
        spawn_polly_stack(TestSettings::default().set("VOXGATE_TTS_RATE_PER_MINUTE", "3")).await;
    let bob = stack.password_token("bob", "bob").await;
    for i in 0..3 {
        let r = stack.say(&bob, &format!("Request number {i}")).await;
        assert_eq!(r.status(), 200);
    }
    let limited = stack.say(&bob, "One too many").await;
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    problem(limited, 429).await;
    stack
        .app
        .sql("UPDATE tts_rate SET window_start = window_start - interval '61 seconds'")
        .await;
    assert_eq!(stack.say(&bob, "One too many").await.status(), 200);
}

#[tokio::test]
async fn polly_speech_marks_and_voices_are_served() {
    let (stack, token) = polly_with_bob().await;
    let voices: Value = stack
        .fetch(&token, "/api/voices?language=en-US", &[])
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = voices
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"Joanna") && !ids.contains(&"Hans"), "{ids:?}");
    let speech = stack
        .register_speech(
            &token,
            &json!({"text": "Hello there. How are you today?", "voice": "Joanna"}),
        )
        .await;
    let marks: Value = stack
        .fetch(&token, speech["marksUrl"].as_str().unwrap(), &[])
        .await
        .json()
        .await
        .unwrap();
    let marks = marks.as_array().unwrap();
    let words: Vec<&str> = marks
        .iter()
        .filter(|m| m["type"] == "word")
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["Hello", "there", "How", "are", "you", "today"]);
    assert!(marks.iter().any(|m| m["type"] == "sentence"));
    let times: Vec<u64> = marks
        .iter()
        .filter(|m| m["type"] == "word")
        .map(|m| m["time"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn the_local_voice_speaks_mp3_and_accepts_polly_voice_names() {
    let stack = spawn_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let response = stack
        .tts_get(&token, &joanna("The local voice works offline."))
        .await;
    assert_eq!(response.status(), 200);
    let seconds = decoded_seconds(&response.bytes().await.unwrap());
    assert!((0.8..8.0).contains(&seconds), "{seconds}");
    let ogg = stack
        .tts_get(&token, &[("Text", "Hi"), ("OutputFormat", "ogg_vorbis")])
        .await;
    problem(ogg, 400).await;
    let voices: Value = stack
        .fetch(&token, "/api/voices?language=en", &[])
        .await
        .json()
        .await
        .unwrap();
    assert!(
        voices
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == "en-us"),
        "{voices}"
    );
    let speech = stack
        .register_speech(&token, &json!({"text": "One two three. Four five."}))
        .await;
    let audio = stack
        .fetch(&token, speech["url"].as_str().unwrap(), &[])
        .await
        .bytes()
        .await
        .unwrap();
    assert!(decoded_seconds(&audio) > 0.5);
    assert_eq!(
        stack.spoken_words(&token, &speech).await,
        ["One", "two", "three", "Four", "five"]
    );
}

#[tokio::test]
async fn the_readiness_check_reports_the_speech_engine() {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let speech = stack.app.readiness_check("speech_engine").await;
    assert_eq!(speech["ok"], true);
    detail_has(&speech, "polly");
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_stream_finish() {
    let mut stack = spawn_polly_stack(TestSettings::default()).await;
    let token = stack.password_token("bob", "bob").await;
    polly(&stack).set_chunk_delay(Duration::from_millis(100));
    let text = "A reply that is still being spoken while the server is asked to stop. ".repeat(2);
    let response = stack
        .tts_get(&token, &[("Text", &text), ("VoiceId", "Joanna")])
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let reader = tokio::spawn(async move {
        let mut all = first.to_vec();
        while let Some(chunk) = body.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok::<_, reqwest::Error>(all)
    });
    stack.app.stop().await;
    let audio = reader
        .await
        .unwrap()
        .expect("the stream completes during graceful shutdown");
    assert!(decoded_seconds(&audio) > 1.0);
    let refused = reqwest::Client::new()
        .get(stack.app.url("/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "no new connections after shutdown");
}

#[tokio::test]
async fn speech_metrics_count_hits_misses_and_billed_characters() {
    let (stack, token) = polly_with_bob().await;
    for _ in 0..2 {
        let r = stack
            .tts_get(
                &token,
                &[("Text", "Count me twice."), ("VoiceId", "Joanna")],
            )
            .await;
        r.bytes().await.unwrap();
    }
    let text = stack.app.get("/metrics").await.text().await.unwrap();
    for needle in [
        "voxgate_tts_cache_total{result=\"hit\"}",
        "voxgate_tts_cache_total{result=\"miss\"}",
        "voxgate_tts_billed_characters_total{engine=\"polly\"}",
        "voxgate_tts_first_byte_seconds",
        "voxgate_tts_upstream_seconds",
        "voxgate_oidc_keys_fetched_timestamp_seconds",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}");
    }
}

#[tokio::test]
async fn cookie_speech_requests_from_another_site_are_refused() {
    let (stack, client) = spawn_with_bob().await;
    let cross = stack
        .browser(&client)
        .header("sec-fetch-site", "cross-site")
        .get("/textToSpeech?Text=spend%20my%20quota")
        .await;
    problem(cross, 403).await;
    let same = stack
        .browser(&client)
        .header("sec-fetch-site", "same-origin")
        .get("/textToSpeech?Text=my%20own%20page")
        .await;
    assert_eq!(same.status(), 200);
}

#[tokio::test]
async fn only_the_instance_that_started_a_cache_entry_may_write_it() {
    use voxgate::tts::cache;
    let stack = spawn_stack().await;
    let db = &stack.app.db;
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    assert_eq!(
        cache::begin(db, "k", "audio/mpeg", a).await.unwrap(),
        cache::Claim::Claimed
    );
    assert_eq!(
        cache::begin(db, "k", "audio/mpeg", b).await.unwrap(),
        cache::Claim::Busy,
        "a second writer does not take over"
    );
    cache::append(db, "k", a, 0, 0, b"abc").await.unwrap();
    assert!(cache::append(db, "k", b, 1, 3, b"xyz").await.is_err());
    assert!(
        cache::finish(db, "k", b, 3, None, "e", 1 << 30)
            .await
            .is_err()
    );
    cache::finish(db, "k", a, 3, None, "e", 1 << 30)
        .await
        .unwrap();
    assert_eq!(
        cache::load(db, "k").await.unwrap().unwrap().data.as_ref(),
        b"abc"
    );
    // A gap or a wrong size is never served.
    assert_eq!(
        cache::begin(db, "g", "audio/mpeg", a).await.unwrap(),
        cache::Claim::Claimed
    );
    cache::append(db, "g", a, 0, 0, b"abc").await.unwrap();
    cache::append(db, "g", a, 2, 6, b"xyz").await.unwrap();
    cache::finish(db, "g", a, 6, None, "e", 1 << 30)
        .await
        .unwrap();
    assert!(cache::load(db, "g").await.unwrap().is_none());
}

/// While a cache write waits (its entry's row held by another
/// transaction), the audio keeps flowing: the chunks that arrive meanwhile
/// go to the table together in the next write, and a listener who joins
/// then still gets every byte, from memory, because no chunk leaves memory
/// before it is stored.
#[tokio::test]
async fn chunks_that_arrive_during_a_slow_cache_write_are_stored_together_and_reach_late_listeners()
{
    let (stack, token) = polly_with_bob().await;
    // The claim (the entry's row) is made before the first chunk arrives.
    polly(&stack).set_first_byte_delay(Duration::from_millis(1500));
    let text = "While the database is slow, the audio keeps coming and no one misses a byte. ";
    let query = joanna(text);
    let db = stack.app.db.clone();
    let first = async {
        let r = stack.tts_get(&token, &query).await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap()
    };
    let late = async {
        let held = hold_the_claimed_entry(&stack, &db).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            stack.app.count("SELECT count(*) FROM tts_chunks").await,
            0,
            "the cache writes are waiting"
        );
        let joined = stack.tts_get(&token, &query).await;
        assert_eq!(joined.status(), 200);
        let release = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            held.rollback().await.unwrap();
        };
        let (body, ()) = tokio::join!(joined.bytes(), release);
        body.expect("the late listener gets the whole stream")
    };
    let (first, late) = tokio::join!(first, late);
    assert!(
        first.len() > 8 * 1024,
        "several chunks ({} bytes)",
        first.len()
    );
    assert_eq!(late, first, "the late listener got every byte");
    assert_eq!(polly(&stack).synth_calls(), 1, "one synthesis for both");
    for _ in 0..100 {
        if stack
            .app
            .count("SELECT count(*) FROM tts_cache WHERE complete")
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (chunks, writes): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT xmin::text) FROM tts_chunks")
            .fetch_one(&stack.app.db)
            .await
            .unwrap();
    assert!(
        writes < chunks,
        "chunks that waited were stored in fewer statements ({chunks} chunks, {writes} writes)"
    );
    let cached = stack.tts_get(&token, &query).await;
    assert_eq!(cached.headers()["x-voxgate-cache"], "hit");
    assert_eq!(
        cached.bytes().await.unwrap(),
        first,
        "the cached copy is whole"
    );
}

/// Waits until a synthesis has claimed its cache entry, then locks the
/// entry's row. Chunk inserts check that row (a foreign key), so every cache
/// write waits until the returned transaction ends.
async fn hold_the_claimed_entry(
    stack: &Stack,
    db: &sqlx::PgPool,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    for _ in 0..300 {
        if stack.app.count("SELECT count(*) FROM tts_cache").await == 1 {
            let mut held = db.begin().await.unwrap();
            sqlx::query("SELECT 1 FROM tts_cache FOR UPDATE")
                .execute(&mut *held)
                .await
                .unwrap();
            return held;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the synthesis never claimed its cache entry");
}

/// A cache write that fails while reading is paused for it (the read-ahead
/// limit reached) ends caching for that synthesis, not the synthesis: every
/// listener still gets the whole stream.
#[tokio::test]
async fn a_cache_write_that_fails_while_reading_waits_for_it_still_delivers_every_byte() {
    let (stack, token) = polly_with_bob().await;
    polly(&stack).set_first_byte_delay(Duration::from_millis(1500));
    let text = "This reply is long enough that its audio is several times larger than \
                what may be read ahead of the cache table while a write is waiting, \
                so the leader has to stop and wait for that write to end. When the \
                write fails, caching ends, and the rest of the audio still flows.";
    let query = joanna(text);
    let db = stack.app.db.clone();
    let received = std::sync::atomic::AtomicUsize::new(0);
    let listen = async {
        let r = stack.tts_get(&token, &query).await;
        assert_eq!(r.status(), 200);
        let mut body = r.bytes_stream();
        let mut all = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.expect("the stream goes on after the cache write failed");
            all.extend_from_slice(&chunk);
            received.store(all.len(), std::sync::atomic::Ordering::SeqCst);
        }
        all
    };
    let break_the_write = async {
        let mut held = hold_the_claimed_entry(&stack, &db).await;
        // Everything read so far waits for the first write.
        for _ in 0..400 {
            if received.load(std::sync::atomic::Ordering::SeqCst) >= 32 * 1024 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            received.load(std::sync::atomic::Ordering::SeqCst) >= 32 * 1024,
            "the listener got the read-ahead before the write ended"
        );
        // The waiting insert's foreign key now finds no entry: it fails.
        sqlx::query("DELETE FROM tts_cache")
            .execute(&mut *held)
            .await
            .unwrap();
        held.commit().await.unwrap();
    };
    let (heard, ()) = tokio::join!(listen, break_the_write);
    assert!(
        heard.len() > 64 * 1024,
        "a long reply ({} bytes)",
        heard.len()
    );
    assert_eq!(stack.app.count("SELECT count(*) FROM tts_cache").await, 0);
    polly(&stack).set_first_byte_delay(Duration::ZERO);
    let again = stack.tts_get(&token, &query).await;
    assert_eq!(
        again.headers()["x-voxgate-cache"],
        "miss",
        "nothing was cached"
    );
    assert_eq!(
        again.bytes().await.unwrap(),
        heard,
        "every byte was delivered"
    );
}

/// Cache writes go through their own pool, whose commits do not wait for
/// the disk; everything else stays on the durable pool.
#[tokio::test]
async fn the_speech_cache_writes_through_its_own_pool_without_waiting_for_the_disk() {
    let (stack, token) = polly_with_bob().await;
    let cache_connections = "SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'voxgate-cache'";
    assert_eq!(
        stack.app.count(cache_connections).await,
        0,
        "the cache pool connects on first use"
    );
    let r = stack.say(&token, "Stored through the cache pool.").await;
    assert_eq!(r.headers()["x-voxgate-cache"], "miss");
    r.bytes().await.unwrap();
    assert!(
        stack.app.count(cache_connections).await > 0,
        "the cache write went through the cache pool"
    );
    let setting = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>("SHOW synchronous_commit")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let cache = voxgate::db::connect_cache(&stack.app.state.config).unwrap();
    assert_eq!(setting(cache).await, "off");
    assert_eq!(setting(stack.app.state.db.clone()).await, "on");
}

/// A cached reply longer than the in-memory limit (here 5 MiB, planted in
/// the chunk table) is streamed from Postgres chunk by chunk: whole with
/// its length, any byte range by chunk offsets, 304 and 416 as for small
/// entries; a damaged one ends the stream early and is discarded.
#[tokio::test]
async fn a_long_cached_reply_streams_from_postgres_with_ranges() {
    let (stack, token) = polly_with_bob().await;
    let speech = stack
        .register_speech(
            &token,
            &json!({"text": "A reply long enough to stream.", "voice": "Joanna"}),
        )
        .await;
    let url = speech["url"].as_str().unwrap();
    let key = url.rsplit('/').next().unwrap().to_string();
    let first = stack.fetch(&token, url, &[]).await;
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    let complete = format!("SELECT count(*) FROM tts_cache WHERE key = '{key}' AND complete");
    for _ in 0..100 {
        if stack.app.count(&complete).await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        stack.app.count(&complete).await,
        1,
        "the synthesis is cached"
    );

    // 5 MiB in chunks of uneven sizes, as speech arrives.
    const SIZE: usize = 5 * 1024 * 1024;
    let data: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let db = &stack.app.db;
    sqlx::query("DELETE FROM tts_chunks WHERE key = $1")
        .bind(&key)
        .execute(db)
        .await
        .unwrap();
    let (mut at, mut seq) = (0usize, 0i32);
    while at < SIZE {
        let len = [7000, 16384, 3001][seq as usize % 3].min(SIZE - at);
        sqlx::query(
            "INSERT INTO tts_chunks (key, seq, offset_bytes, data) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key)
        .bind(seq)
        .bind(at as i64)
        .bind(&data[at..at + len])
        .execute(db)
        .await
        .unwrap();
        at += len;
        seq += 1;
    }
    sqlx::query("UPDATE tts_cache SET size = $2, etag = 'planted' WHERE key = $1")
        .bind(&key)
        .bind(SIZE as i64)
        .execute(db)
        .await
        .unwrap();

    let whole = stack.fetch(&token, url, &[]).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["x-voxgate-cache"], "hit");
    assert_eq!(whole.headers()["content-length"], SIZE.to_string().as_str());
    assert_eq!(whole.headers()["etag"], "\"planted\"");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    // That memory stays bounded while it streams is measured by the
    // benchmark (section 4c); here, the bytes.
    assert!(
        whole.bytes().await.unwrap() == data,
        "the whole entry, byte for byte"
    );

    for (range, start, end) in [
        ("bytes=0-99", 0, 99),
        // Inside one chunk, across several, to the end, a suffix.
        ("bytes=7010-7020", 7010, 7020),
        ("bytes=6999-40000", 6999, 40000),
        ("bytes=5000000-", 5000000, SIZE - 1),
        ("bytes=-10", SIZE - 10, SIZE - 1),
    ] {
        let partial = stack.fetch(&token, url, &[("range", range)]).await;
        assert_eq!(partial.status(), 206, "{range}");
        assert_eq!(
            partial.headers()["content-range"],
            format!("bytes {start}-{end}/{SIZE}").as_str()
        );
        assert_eq!(
            partial.headers()["content-length"],
            (end - start + 1).to_string().as_str()
        );
        assert!(
            partial.bytes().await.unwrap() == data[start..=end],
            "{range}"
        );
    }
    let not_modified = stack
        .fetch(&token, url, &[("if-none-match", "\"planted\"")])
        .await;
    assert_eq!(not_modified.status(), 304);
    let unsatisfiable = stack
        .fetch(&token, url, &[("range", &format!("bytes={SIZE}-"))])
        .await;
    assert_eq!(unsatisfiable.status(), 416);

    // Somebody else asking for the same words hears it as a fresh
    // synthesis (no length, no validator), streamed all the same.
    let alice = stack.password_token("alice", "alice").await;
    let first_hearing = stack
        .tts_get(
            &alice,
            &[
                ("Text", "A reply long enough to stream."),
                ("VoiceId", "Joanna"),
            ],
        )
        .await;
    assert_eq!(first_hearing.status(), 200);
    assert_eq!(first_hearing.headers()["x-voxgate-cache"], "miss");
    assert!(first_hearing.headers().get("content-length").is_none());
    assert!(first_hearing.headers().get("etag").is_none());
    assert!(first_hearing.bytes().await.unwrap() == data);

    // A chunk goes missing: the stream stops short and the entry goes.
    sqlx::query("DELETE FROM tts_chunks WHERE key = $1 AND seq = 300")
        .bind(&key)
        .execute(db)
        .await
        .unwrap();
    let damaged = stack.fetch(&token, url, &[]).await;
    assert_eq!(damaged.status(), 200);
    assert!(damaged.bytes().await.is_err(), "the body ends early");
    assert_eq!(
        stack
            .app
            .count(&format!(
                "SELECT count(*) FROM tts_cache WHERE key = '{key}'"
            ))
            .await,
        0,
        "the damaged entry is discarded"
    );
}

/// The cache keeps to VOXGATE_TTS_CACHE_MAX_BYTES by evicting the least
/// recently used entries, the fewest that free enough; its total is kept
/// by a trigger, so checking the bound does not sum the whole cache.
#[tokio::test]
async fn the_cache_bound_evicts_the_least_recently_used_entries_only() {
    let stack =
        spawn_polly_stack(TestSettings::default().set("VOXGATE_TTS_CACHE_MAX_BYTES", "100000"))
            .await;
    let bob = stack.password_token("bob", "bob").await;
    let usage = "SELECT bytes FROM tts_cache_usage";
    let total = "SELECT coalesce(sum(size), 0)::bigint FROM tts_cache WHERE complete";
    assert_eq!(stack.app.count(usage).await, 0);
    // Ten entries of 20 000 bytes, planted-10 the least recently used.
    stack
        .app
        .sql(
            "INSERT INTO tts_cache (key, content_type, size, complete, writer, last_access_at)
             SELECT 'planted-' || g, 'audio/mpeg', 20000, true, gen_random_uuid(),
                    now() - g * interval '1 hour'
               FROM generate_series(1, 10) g",
        )
        .await;
    assert_eq!(stack.app.count(usage).await, 200_000);
    // Unfinished entries do not count; finished ones count once.
    stack
        .app
        .sql("INSERT INTO tts_cache (key, content_type, size, writer) VALUES ('open', 'audio/mpeg', 5, gen_random_uuid())")
        .await;
    assert_eq!(stack.app.count(usage).await, 200_000);
    stack
        .app
        .sql("DELETE FROM tts_cache WHERE key = 'open'")
        .await;

    // A new synthesis finishes over the bound: the oldest go, no more than
    // needed, and the new entry stays.
    let fresh = stack.say(&bob, "Evict the oldest entries, please.").await;
    assert_eq!(fresh.status(), 200);
    let audio = fresh.bytes().await.unwrap();
    assert!(!audio.is_empty() && audio.len() < 20_000, "{}", audio.len());
    let kept = "SELECT count(*) FROM tts_cache WHERE complete AND key NOT LIKE 'planted-%'";
    for _ in 0..100 {
        if stack.app.count(kept).await == 1
            && stack
                .app
                .count("SELECT count(*) FROM tts_cache WHERE key LIKE 'planted-%'")
                .await
                < 10
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(stack.app.count(kept).await, 1, "the new entry is cached");
    // 200 000 + new > 100 000: six of 20 000 free enough, five would not.
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT key FROM tts_cache WHERE key LIKE 'planted-%' ORDER BY last_access_at DESC",
    )
    .fetch_all(&stack.app.db)
    .await
    .unwrap();
    assert_eq!(left, ["planted-1", "planted-2", "planted-3", "planted-4"]);
    assert_eq!(stack.app.count(usage).await, stack.app.count(total).await);
    assert!(stack.app.count(usage).await <= 100_000);
}
