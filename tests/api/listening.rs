//! Listening: utterances spoken at test time by the project's neural voice
//! (Piper), recognised by the local recogniser (faster-whisper) in its
//! warm worker processes, through `/api/stt` and OpenAI's form.

use std::process::Command;

use serde_json::Value;

use crate::helpers::{TestSettings, detail_has, problem, problem_saying};
use crate::stack::{Stack, spawn_stack_with};

pub fn installed(variable: &str, venv: &str) -> String {
    if let Ok(python) = std::env::var(variable) {
        return python;
    }
    let path = format!("{}/../.local/{venv}/bin/python", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&path).exists(),
        "{venv} is not installed: run scripts/test (or set {variable})"
    );
    path
}

pub fn whisper_python() -> String {
    installed("VOXGATE_WHISPER_PYTHON", "whisper")
}

/// `text` spoken by the neural voice, as 16-bit PCM WAV.
pub fn spoken(text: &str) -> Vec<u8> {
    let python = installed("VOXGATE_PIPER_PYTHON", "piper");
    let out = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/speak.py"))
        .arg(text)
        .output()
        .expect("piper runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `wav` re-encoded as Opus in `container` (`webm` or `ogg`), as browsers
/// record it (PyAV, from the recogniser's own install).
pub fn opus(wav: &[u8], container: &str) -> Vec<u8> {
    const ENCODE: &str = r#"
import io, sys
import av
source = av.open(io.BytesIO(sys.stdin.buffer.read()))
out = io.BytesIO()
target = av.open(out, "w", format=sys.argv[1])
stream = target.add_stream("libopus", rate=48000)
resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
for frame in source.decode(audio=0):
    for f in resampler.resample(frame):
        for packet in stream.encode(f):
            target.mux(packet)
for packet in stream.encode(None):
    target.mux(packet)
target.close()
sys.stdout.buffer.write(out.getvalue())
"#;
    use std::io::Write;
    let mut child = Command::new(whisper_python())
        .args(["-c", ENCODE, container])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    child.stdin.take().unwrap().write_all(wav).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `seconds` of silence as 16 kHz WAV.
fn silence(seconds: u32) -> Vec<u8> {
    voxgate_audio::pcm_to_wav(&voxgate_audio::Pcm {
        samples: vec![0; 16_000 * seconds as usize],
        channels: 1,
        sample_rate: 16_000,
    })
    .unwrap()
}

/// A listening stack and bob's bearer token.
async fn listening_with_bob(settings: TestSettings) -> (Stack, String) {
    let stack = listening_stack(settings).await;
    let bob = stack.password_token("bob", "bob").await;
    (stack, bob)
}

pub async fn listening_stack(settings: TestSettings) -> Stack {
    spawn_stack_with(
        settings
            .set("VOXGATE_STT_ENGINE", "local")
            .set("VOXGATE_WHISPER_PYTHON", whisper_python()),
    )
    .await
}

pub async fn post_audio(
    stack: &Stack,
    token: &str,
    body: Vec<u8>,
    content_type: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(stack.app.url("/api/stt"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The status of a recording posted to `path` with no credentials.
async fn anonymous(stack: &Stack, path: &str) -> u16 {
    reqwest::Client::new()
        .post(stack.app.url(path))
        .body(silence(1))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A recording posted to `/api/stt` from a task of its own (abort it to
/// leave half-way).
/// Waits until every worker is recognising (an utterance sent in the
/// background has reached one), rather than guessing how long that takes.
async fn until_all_busy(stack: &Stack) {
    for _ in 0..500 {
        if stack.app.state.stt.all_busy() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no worker took the utterance within 5 s");
}

fn in_background(
    stack: &Stack,
    token: &str,
    body: Vec<u8>,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = reqwest::Client::new()
        .post(stack.app.url("/api/stt"))
        .bearer_auth(token)
        .header("content-type", "audio/wav")
        .body(body);
    tokio::spawn(request.send())
}

/// Lower-case words, punctuation left out.
pub fn words(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn a_spoken_question_is_recognised_from_wav_webm_and_ogg() {
    let (stack, bob) = listening_with_bob(TestSettings::default()).await;
    let wav = spoken("What can you do?");
    let mut charged = 0;
    for (body, content_type) in [
        (opus(&wav, "webm"), "audio/webm;codecs=opus"),
        (opus(&wav, "ogg"), "audio/ogg"),
        (wav, "audio/wav"),
    ] {
        let r = post_audio(&stack, &bob, body, content_type).await;
        assert_eq!(r.status(), 200, "{content_type}");
        let t: Value = r.json().await.unwrap();
        assert_eq!(words(t["text"].as_str().unwrap()), "what can you do", "{t}");
        assert_eq!(t["language"], "en");
        assert_eq!(t["engine"], "local");
        let ms = t["durationMs"].as_u64().unwrap();
        assert!((500..3000).contains(&ms), "{ms}");
        charged += ms.div_ceil(1000) as i64;
    }
    // The recognised text is not a chat message until the user sends it.
    assert_eq!(
        stack.app.count("SELECT count(*) FROM chat_messages").await,
        0
    );
    // Each utterance's length, rounded up to whole seconds.
    assert_eq!(
        stack.app.count("SELECT seconds FROM stt_usage").await,
        charged
    );
}

/// A multipart body with `file` and the other fields OpenAI's form has.
fn form(file: &[u8], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "voxgate-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.wav\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn transcribe(
    stack: &Stack,
    token: &str,
    file: &[u8],
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (content_type, body) = form(file, fields);
    reqwest::Client::new()
        .post(stack.app.url("/v1/audio/transcriptions"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn openais_transcription_form_answers_in_each_response_format() {
    let (stack, bob) = listening_with_bob(TestSettings::default()).await;
    let wav = spoken("What can you do?");
    let r = transcribe(&stack, &bob, &wav, &[("model", "whisper-1")]).await;
    assert_eq!(r.status(), 200);
    let json: Value = r.json().await.unwrap();
    assert_eq!(words(json["text"].as_str().unwrap()), "what can you do");
    assert_eq!(json.as_object().unwrap().len(), 1, "only text: {json}");

    let r = transcribe(
        &stack,
        &bob,
        &wav,
        &[("model", "whisper-1"), ("response_format", "text")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(words(&r.text().await.unwrap()), "what can you do");

    let r = transcribe(
        &stack,
        &bob,
        &wav,
        &[
            ("model", "whisper-1"),
            ("response_format", "verbose_json"),
            ("language", "en"),
        ],
    )
    .await;
    let verbose: Value = r.json().await.unwrap();
    assert_eq!(verbose["language"], "en");
    assert!(verbose["duration"].as_f64().unwrap() > 0.5);

    let p = problem(
        transcribe(&stack, &bob, &wav, &[("response_format", "srt")]).await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "response_format");
    let no_file = reqwest::Client::new()
        .post(stack.app.url("/v1/audio/transcriptions"))
        .bearer_auth(&bob)
        .header("content-type", "multipart/form-data; boundary=x")
        .body("--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--x--\r\n")
        .send()
        .await
        .unwrap();
    let p = problem(no_file, 422).await;
    assert_eq!(p["errors"][0]["field"], "file");
    assert_eq!(anonymous(&stack, "/v1/audio/transcriptions").await, 401);
}

#[tokio::test]
async fn bad_recordings_get_specific_answers_and_cost_nothing() {
    let (stack, bob) = listening_with_bob(
        TestSettings::default()
            .set("VOXGATE_STT_MAX_SECONDS", "5")
            .set("VOXGATE_STT_MAX_BYTES", "400000"),
    )
    .await;
    problem_saying(
        post_audio(&stack, &bob, Vec::new(), "audio/wav").await,
        400,
        "empty",
    )
    .await;
    problem_saying(
        post_audio(&stack, &bob, b"ID3\x04 an mp3".to_vec(), "audio/mpeg").await,
        415,
        "16-bit PCM WAV",
    )
    .await;
    problem_saying(
        post_audio(&stack, &bob, silence(1), "text/plain").await,
        415,
        "`text/plain` is not audio",
    )
    .await;
    let mut corrupt = b"RIFF\x24\0\0\0WAVEfmt ".to_vec();
    corrupt.extend_from_slice(&[0xff; 64]);
    problem_saying(
        post_audio(&stack, &bob, corrupt, "audio/wav").await,
        400,
        "WAV file cannot be read",
    )
    .await;
    let mut junk = vec![0x1a, 0x45, 0xdf, 0xa3];
    junk.extend_from_slice(&[0x42; 2000]);
    problem_saying(
        post_audio(&stack, &bob, junk, "audio/webm").await,
        400,
        "cannot be read from its container",
    )
    .await;
    problem_saying(
        post_audio(&stack, &bob, silence(2), "audio/wav").await,
        422,
        "Nothing was heard",
    )
    .await;
    problem_saying(
        post_audio(&stack, &bob, silence(6), "audio/wav").await,
        413,
        "longer than 5 s",
    )
    .await;
    problem_saying(
        post_audio(&stack, &bob, silence(13), "audio/wav").await,
        413,
        "VOXGATE_STT_MAX_BYTES",
    )
    .await;
    // The same limit holds for OpenAI's form.
    problem_saying(
        transcribe(&stack, &bob, &silence(13), &[("model", "whisper-1")]).await,
        413,
        "VOXGATE_STT_MAX_BYTES",
    )
    .await;
    let q = |language: &str| format!("/api/stt?language={language}");
    for (language, detail) in [
        ("zz", "not a language the recogniser knows"),
        ("fra", "ISO 639-1"),
    ] {
        let r = reqwest::Client::new()
            .post(stack.app.url(&q(language)))
            .bearer_auth(&bob)
            .header("content-type", "audio/wav")
            .body(silence(1))
            .send()
            .await
            .unwrap();
        let p = problem(r, 422).await;
        assert_eq!(p["errors"][0]["field"], "language");
        detail_has(&p, detail);
    }
    // Only the silence that was listened to counts; refusals cost nothing,
    // the recogniser's own (`zz`, charged first) given back.
    assert_eq!(stack.app.count("SELECT seconds FROM stt_usage").await, 2);
    // Compressed recordings are measured from their containers: too long
    // is refused before any recogniser hears them.
    let long = spoken(
        "This sentence goes on for well over five seconds when it is spoken out loud. And then it goes on a little more.",
    );
    for container in ["ogg", "webm"] {
        problem_saying(
            post_audio(&stack, &bob, opus(&long, container), "audio/ogg").await,
            413,
            "longer than 5 s",
        )
        .await;
    }
    assert_eq!(anonymous(&stack, "/api/stt").await, 401);
}

#[tokio::test]
async fn listening_has_a_rate_and_a_daily_budget_and_staff_are_exempt_from_the_budget() {
    let (stack, bob) = listening_with_bob(
        TestSettings::default()
            .set("VOXGATE_STT_RATE_PER_MINUTE", "3")
            .set("VOXGATE_STT_DAILY_SECONDS", "3"),
    )
    .await;
    // About a second and a half, charged as 2 s before it is heard: the
    // first fits the budget of 3, the second would not.
    let question = spoken("What time is it?");
    assert_eq!(
        post_audio(&stack, &bob, question.clone(), "audio/wav")
            .await
            .status(),
        200
    );
    assert_eq!(stack.app.count("SELECT seconds FROM stt_usage").await, 2);
    for _ in 0..2 {
        problem_saying(
            post_audio(&stack, &bob, question.clone(), "audio/wav").await,
            429,
            "listening quota of 3 seconds",
        )
        .await;
    }
    problem_saying(
        post_audio(&stack, &bob, question.clone(), "audio/wav").await,
        429,
        "at most 3 a minute",
    )
    .await;
    assert_eq!(stack.app.count("SELECT seconds FROM stt_usage").await, 2);
    let alice = stack.password_token("alice", "alice").await;
    for _ in 0..3 {
        assert_eq!(
            post_audio(&stack, &alice, question.clone(), "audio/wav")
                .await
                .status(),
            200
        );
    }
}

/// The recogniser's line of `/readyz`.
fn recogniser_check(readyz: &Value) -> String {
    readyz["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "speech_recogniser")
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn without_a_recogniser_listening_is_a_503_that_says_so_and_the_rest_works() {
    let stack = spawn_stack_with(TestSettings::default()).await;
    let bob = stack.password_token("bob", "bob").await;
    problem_saying(
        post_audio(&stack, &bob, silence(1), "audio/wav").await,
        503,
        "type the message instead",
    )
    .await;
    let ready = stack.app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert!(
        recogniser_check(&body).contains("VOXGATE_WHISPER_PYTHON"),
        "{body}"
    );
}

#[tokio::test]
async fn a_killed_worker_is_replaced_and_readyz_names_the_workers() {
    let (stack, bob) = listening_with_bob(TestSettings::default()).await;
    let before = stack.app.state.stt.worker_pids();
    assert_eq!(before.len(), 1);
    let body: Value = stack.app.get("/readyz").await.json().await.unwrap();
    assert!(
        recogniser_check(&body).contains(&before[0].to_string()),
        "{body}"
    );
    Command::new("kill")
        .args(["-9", &before[0].to_string()])
        .status()
        .unwrap();
    // Until it has died (a zombie still answers `kill -0`, so the
    // process table is read).
    let gone = || {
        !std::path::Path::new(&format!("/proc/{}/status", before[0])).exists()
            || std::fs::read_to_string(format!("/proc/{}/status", before[0]))
                .is_ok_and(|s| s.contains("State:\tZ"))
    };
    for _ in 0..500 {
        if gone() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let r = post_audio(&stack, &bob, spoken("Good morning."), "audio/wav").await;
    assert_eq!(r.status(), 200);
    let after = stack.app.state.stt.worker_pids();
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
}

#[tokio::test]
async fn one_user_recognises_one_utterance_at_a_time() {
    let (stack, bob) = listening_with_bob(TestSettings::default()).await;
    let long = spoken(
        "This is a longer utterance, so that it is still being recognised when the second one arrives. It goes on for a while.",
    );
    let first = in_background(&stack, &bob, long.clone());
    until_all_busy(&stack).await;
    let second = post_audio(&stack, &bob, long.clone(), "audio/wav").await;
    problem_saying(second, 429, "One utterance at a time").await;
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn a_client_that_leaves_frees_its_worker_at_once() {
    let (stack, bob) =
        listening_with_bob(TestSettings::default().set("VOXGATE_STT_WORKER_WAIT_SECONDS", "1"))
            .await;
    let alice = stack.password_token("alice", "alice").await;
    // About 25 s of speech: a second or two of the worker's time.
    let long = spoken(
        &"This is a long utterance that takes the only worker a good while to recognise, because it goes on and on about nothing in particular. "
            .repeat(3),
    );
    let question = spoken("What can you do?");
    let before = stack.app.state.stt.worker_pids();
    let leaving = in_background(&stack, &bob, long.clone());
    until_all_busy(&stack).await;
    leaving.abort();
    // The half-done worker is stopped now, not when the slot is next used.
    let mut stopped = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if !stack.app.state.stt.worker_pids().contains(&before[0]) {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "bob's worker still runs after he left");
    let r = post_audio(&stack, &alice, question, "audio/wav").await;
    assert_eq!(r.status(), 200, "the worker was given back when bob left");
    assert_ne!(
        stack.app.state.stt.worker_pids(),
        before,
        "bob's half-done worker was replaced"
    );
}

#[tokio::test]
async fn a_recogniser_asked_for_that_cannot_start_is_reported_and_the_rest_works() {
    let stack = spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_STT_ENGINE", "local")
            .set("VOXGATE_WHISPER_PYTHON", "/nonexistent/python3"),
    )
    .await;
    let bob = stack.password_token("bob", "bob").await;
    problem_saying(
        post_audio(&stack, &bob, silence(1), "audio/wav").await,
        503,
        "type the message instead",
    )
    .await;
    let ready = stack.app.get("/readyz").await;
    assert_eq!(
        ready.status(),
        200,
        "typing still works: the instance stays in rotation"
    );
    let body: Value = ready.json().await.unwrap();
    let check = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "speech_recogniser")
        .unwrap()
        .clone();
    assert_eq!(check["ok"], false, "{body}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/python3")
    );
    let chat = stack
        .app
        .caller(&bob)
        .post("/api/chat", &serde_json::json!({"message": "hello"}))
        .await;
    assert_eq!(chat.status(), 200);
}

/// `(event, data)` pairs of a server-sent-events body.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_string(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

async fn post_streamed(stack: &Stack, token: &str, body: Vec<u8>) -> (u16, Vec<(String, Value)>) {
    let r = reqwest::Client::new()
        .post(stack.app.url("/api/stt"))
        .bearer_auth(token)
        .header("content-type", "audio/wav")
        .header("accept", "text/event-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, events(&r.text().await.unwrap()))
}

#[tokio::test]
async fn a_long_utterance_streams_the_text_so_far_then_the_transcript() {
    let (stack, bob) = listening_with_bob(TestSettings::default()).await;
    let long = spoken(
        "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. \
         It is easy to tell the depth of a well. These days a chicken leg is a rare dish. \
         Rice is often served in round bowls. The juice of lemons makes fine punch. \
         The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage. \
         Four hours of steady work faced us. A large size in stockings is hard to sell.",
    );
    let (status, said) = post_streamed(&stack, &bob, long).await;
    assert_eq!(status, 200);
    let (last, done) = said.last().unwrap();
    assert_eq!(last, "done", "{said:?}");
    let partials: Vec<&str> = said
        .iter()
        .filter(|(name, _)| name == "partial")
        .map(|(_, data)| data["text"].as_str().unwrap())
        .collect();
    assert!(
        partials.len() >= 2,
        "the text so far, more than once: {said:?}"
    );
    for pair in partials.windows(2) {
        assert!(
            pair[1].starts_with(pair[0]),
            "each partial extends the one before: {pair:?}"
        );
    }
    let text = done["text"].as_str().unwrap();
    assert_eq!(text, *partials.last().unwrap());
    assert!(
        words(text).contains("smooth planks") && words(text).contains("hard to sell"),
        "{text}"
    );

    // Refusals known before listening are statuses; later ones are events.
    let (status, _) = post_streamed(&stack, &bob, b"not audio".to_vec()).await;
    assert_eq!(status, 415);
    let (status, _) = post_streamed(&stack, &bob, silence(31)).await;
    assert_eq!(status, 413, "over VOXGATE_STT_MAX_SECONDS (30)");
    let (status, said) = post_streamed(&stack, &bob, silence(2)).await;
    assert_eq!(status, 200);
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0].0, "error");
    assert_eq!(said[0].1["status"], 422);
}

/// About 28 s of speech: a second or two of the only worker's time.
fn long_speech() -> Vec<u8> {
    spoken(
        &"The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. It is easy to tell the depth of a well. "
            .repeat(3),
    )
}

#[tokio::test]
async fn when_every_worker_stays_busy_the_wait_ends_in_a_503() {
    let (stack, bob) =
        listening_with_bob(TestSettings::default().set("VOXGATE_STT_WORKER_WAIT_SECONDS", "1"))
            .await;
    let alice = stack.password_token("alice", "alice").await;
    let first = in_background(&stack, &bob, long_speech());
    until_all_busy(&stack).await;
    let r = post_audio(&stack, &alice, spoken("What can you do?"), "audio/wav").await;
    assert!(r.headers().contains_key("retry-after"));
    problem_saying(r, 503, "busy").await;
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn a_worker_killed_mid_recognition_fails_that_utterance_only() {
    let (stack, bob) = listening_with_bob(TestSettings::default()).await;
    let pid = stack.app.state.stt.worker_pids()[0];
    let first = in_background(&stack, &bob, long_speech());
    until_all_busy(&stack).await;
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    problem_saying(first.await.unwrap().unwrap(), 502, "recogniser failed").await;
    let r = post_audio(&stack, &bob, spoken("What can you do?"), "audio/wav").await;
    assert_eq!(r.status(), 200);
    assert_ne!(stack.app.state.stt.worker_pids(), vec![pid]);
}

#[tokio::test]
async fn the_workers_get_none_of_voxgates_environment_but_what_they_need() {
    let stack = listening_stack(TestSettings::default()).await;
    let pid = stack.app.state.stt.worker_pids()[0];
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            String::from_utf8_lossy(v)
                .split('=')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let allowed: Vec<&str> = voxgate_audio::environment::INHERITED
        .iter()
        .chain(voxgate::stt::WORKER_SETTINGS)
        .chain(&["HF_HUB_OFFLINE"])
        .copied()
        .collect();
    for name in &names {
        assert!(allowed.contains(&name.as_str()), "the worker got {name}");
    }
    assert!(
        std::env::vars().count() > names.len(),
        "the test process has more than the worker was given"
    );
}

#[tokio::test]
async fn cookie_sessions_must_send_the_csrf_token_to_be_heard() {
    let stack = listening_stack(TestSettings::default()).await;
    let (client, csrf) = stack.signed_in("bob").await;
    let origin = stack.app.url("");
    let send = |csrf: Option<&str>| {
        let mut request = client
            .post(stack.app.url("/api/stt"))
            .header("origin", &origin)
            .header("content-type", "audio/wav")
            .body(spoken("What can you do?"));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    problem(send(None).await.unwrap(), 403).await;
    let heard = send(Some(&csrf)).await.unwrap();
    assert_eq!(heard.status(), 200);
    let t: Value = heard.json().await.unwrap();
    assert_eq!(words(t["text"].as_str().unwrap()), "what can you do");
}
