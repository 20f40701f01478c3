//! The neural voice (Piper in warm worker processes) through every speech
//! endpoint, its fallback to espeak-ng, and a worker killed mid-request.
//! Piper comes from `.local/piper`, which scripts/test installs.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{TestSettings, detail_has, problem};
use crate::stack::{Stack, spawn_stack_with};
use crate::tts::decoded_seconds;

const VOICE: &str = "en_US-joe-medium";

/// The interpreter that has Piper: `VOXGATE_PIPER_PYTHON`, or the one
/// scripts/test and scripts/dev install.
fn piper_python() -> String {
    if let Ok(python) = std::env::var("VOXGATE_PIPER_PYTHON") {
        return python;
    }
    let installed = concat!(env!("CARGO_MANIFEST_DIR"), "/../.local/piper/bin/python");
    assert!(
        std::path::Path::new(installed).exists(),
        "the neural voice is not installed: run scripts/test (or set VOXGATE_PIPER_PYTHON)"
    );
    installed.to_string()
}

async fn neural_stack() -> Stack {
    spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_TTS_ENGINE", "auto")
            .set("VOXGATE_PIPER_PYTHON", piper_python()),
    )
    .await
}

/// RMS amplitude of decoded audio (0 is silence), read by sox.
fn decoded_rms(mp3: &[u8]) -> f64 {
    let path = std::env::temp_dir().join(format!("voxgate-rms-{}.mp3", uuid::Uuid::new_v4()));
    std::fs::write(&path, mp3).unwrap();
    let out = std::process::Command::new("sox")
        .arg(&path)
        .args(["-n", "stat"])
        .output()
        .expect("sox runs");
    std::fs::remove_file(&path).ok();
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    report
        .lines()
        .find_map(|l| l.strip_prefix("RMS     amplitude:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RMS in sox's report: {report}"))
}

fn assert_speech(mp3: &[u8], text: &str) {
    let seconds = decoded_seconds(mp3);
    let chars = text.chars().count() as f64;
    assert!(
        (chars * 0.02..chars * 0.2 + 1.0).contains(&seconds),
        "{seconds} s for {chars} characters"
    );
    assert!(decoded_rms(mp3) > 0.01, "the audio is not silence");
}

#[tokio::test]
async fn the_neural_voice_is_chosen_listed_and_speaks_through_every_endpoint() {
    let stack = neural_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let speech = stack.app.readiness_check("speech_engine").await;
    assert!(
        speech["detail"]
            .as_str()
            .unwrap()
            .starts_with("neural engine ready"),
        "{speech}"
    );

    let voices: Value = stack
        .fetch(&token, "/api/voices", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(voices[0]["id"], VOICE, "{voices}");
    assert_eq!(voices[0]["engines"], json!(["neural"]));
    assert_eq!(voices[0]["language"], "en-US");

    // The original endpoint, with and without the voice named.
    let text = "The neural voice speaks naturally. It runs on this machine.";
    for query in [
        vec![("Text", text), ("VoiceId", VOICE), ("OutputFormat", "mp3")],
        vec![
            ("Text", text),
            ("LanguageCode", "en-US"),
            ("OutputFormat", "mp3"),
        ],
    ] {
        let response = stack.tts_get(&token, &query).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "audio/mpeg");
        assert_speech(&response.bytes().await.unwrap(), text);
    }
    let pcm = stack
        .tts_get(&token, &[("Text", "Raw samples."), ("OutputFormat", "pcm")])
        .await;
    assert_eq!(pcm.status(), 200);
    let samples = pcm.bytes().await.unwrap().len() / 2;
    assert!(
        (4_000..64_000).contains(&samples),
        "{samples} samples at 16 kHz"
    );
    problem(
        stack
            .tts_get(&token, &[("Text", "Hi"), ("OutputFormat", "ogg_vorbis")])
            .await,
        400,
    )
    .await;

    // Registered speech: streamed once, then served from the cache, with
    // word timings.
    let registered = stack
        .register_speech(&token, &json!({"text": "One two three. Four five."}))
        .await;
    let url = registered["url"].as_str().unwrap();
    let first = stack.fetch(&token, url, &[]).await.bytes().await.unwrap();
    assert_speech(&first, "One two three. Four five.");
    let again = stack.fetch(&token, url, &[]).await;
    assert_eq!(again.status(), 200);
    assert!(
        again.headers().get("etag").is_some(),
        "served from the cache"
    );
    assert_eq!(again.bytes().await.unwrap(), first);
    assert_eq!(
        stack.spoken_words(&token, &registered).await,
        ["One", "two", "three", "Four", "five"]
    );
}

#[tokio::test]
async fn identical_neural_requests_share_one_synthesis() {
    let stack = neural_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let text = "Five listeners, one synthesis, the same bytes for all.";
    let requests = (0..5).map(|_| {
        let stack = &stack;
        let token = token.clone();
        async move {
            let r = stack.tts_get(&token, &[("Text", text)]).await;
            let cache = r.headers()["x-voxgate-cache"].to_str().unwrap().to_string();
            (cache, r.bytes().await.unwrap())
        }
    });
    let before = stack.app.state.tts.syntheses_started();
    let answers = futures::future::join_all(requests).await;
    assert_eq!(stack.app.state.tts.syntheses_started() - before, 1);
    // None of them heard it before: each is a first hearing.
    assert!(answers.iter().all(|(c, _)| c == "miss"));
    assert!(answers.iter().all(|(_, b)| b == &answers[0].1));
    assert_speech(&answers[0].1, text);
}

#[tokio::test]
async fn without_piper_the_local_voice_speaks_and_readyz_says_why() {
    let stack = spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_TTS_ENGINE", "auto")
            .set("VOXGATE_PIPER_PYTHON", "/nonexistent/python3"),
    )
    .await;
    let ready: Value = stack.app.get_json("/readyz").await;
    let detail = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "speech_engine")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.starts_with("local engine ready"), "{detail}");
    assert!(
        detail.contains("the neural voice is not available")
            && detail.contains("/nonexistent/python3"),
        "{detail}"
    );
    let token = stack.password_token("bob", "bob").await;
    let response = stack.say(&token, "Still speaking.").await;
    assert_eq!(response.status(), 200);
    assert_speech(&response.bytes().await.unwrap(), "Still speaking.");
}

#[tokio::test]
async fn a_worker_killed_mid_request_fails_that_request_and_the_next_succeeds() {
    let stack = neural_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let pids = stack.app.state.tts.worker_pids();
    assert_eq!(pids.len(), 1, "one warm worker: {pids:?}");
    let long: String = (1..=12)
        .map(|i| format!("This is sentence number {i} of a long reply. "))
        .collect();
    let response = stack.tts_get(&token, &[("Text", long.trim())]).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = body.next().await.expect("a first chunk").expect("audio");
    assert!(!first.is_empty());
    let killed = std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        if chunk.is_err() {
            failed = true;
            break;
        }
    }
    assert!(
        failed,
        "the cut response ends in an error, not as complete audio"
    );

    // The same text is not cached half-spoken; the next request gets a new
    // worker and full audio.
    let next = stack.say(&token, "After the crash.").await;
    assert_eq!(next.status(), 200);
    assert_speech(&next.bytes().await.unwrap(), "After the crash.");
    let new_pids = stack.app.state.tts.worker_pids();
    assert_eq!(new_pids.len(), 1);
    assert_ne!(new_pids, pids, "a new worker replaced the killed one");
    let whole = stack.tts_get(&token, &[("Text", long.trim())]).await;
    assert_eq!(whole.status(), 200);
    assert_speech(&whole.bytes().await.unwrap(), long.trim());
}

#[tokio::test]
async fn the_daily_quota_counts_neural_speech_like_any_other() {
    let stack = spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_TTS_ENGINE", "neural")
            .set("VOXGATE_PIPER_PYTHON", piper_python())
            .set("VOXGATE_TTS_DAILY_CHARS", "50"),
    )
    .await;
    let bob = stack.password_token("bob", "bob").await;
    let ok = stack.say(&bob, "Thirty characters of speech...").await;
    assert_eq!(ok.status(), 200);
    ok.bytes().await.unwrap();
    let over = stack.say(&bob, "Another thirty characters here").await;
    let p = problem(over, 429).await;
    detail_has(&p, "quota");
}

/// Whether a process runs (a zombie waiting to be reaped does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

#[tokio::test]
async fn the_workers_stop_with_the_app() {
    let mut stack = neural_stack().await;
    let pids = stack.app.state.tts.worker_pids();
    assert_eq!(pids.len(), 1);
    assert!(running(pids[0]));
    stack.app.stop().await;
    let mut stopped = false;
    for _ in 0..100 {
        if !running(pids[0]) {
            stopped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(stopped, "the worker outlived the app");
}

/// The names of a process's environment (`/proc/PID/environ`).
fn environment_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            let v = String::from_utf8_lossy(v);
            v.split_once('=')
                .map_or(v.to_string(), |(k, _)| k.to_string())
        })
        .collect()
}

/// Speech subprocesses parse untrusted text: they start with only what
/// they need, never voxgate's environment (this test process has HOME,
/// CARGO_* and, in CI, whatever the runner sets; a deployment has its
/// database URL, client secrets and cloud keys there).
#[tokio::test]
async fn speech_subprocesses_get_none_of_voxgates_environment() {
    let allowed = |name: &str| {
        voxgate_audio::environment::INHERITED.contains(&name)
            || voxgate::tts::neural::WORKER_SETTINGS.contains(&name)
    };
    assert!(std::env::var("HOME").is_ok() || std::env::var("CARGO").is_ok());

    let stack = neural_stack().await;
    let pids = stack.app.state.tts.worker_pids();
    assert!(!pids.is_empty(), "the neural voice runs warm workers");
    for pid in pids {
        let names = environment_of(pid);
        let leaked: Vec<&String> = names.iter().filter(|n| !allowed(n)).collect();
        assert!(leaked.is_empty(), "worker {pid} inherited {leaked:?}");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline.split(|b| *b == 0).any(|a| a == b"-I"),
            "Python runs isolated"
        );
    }

    // espeak-ng runs once per request: a wrapper records what it was given.
    let dir = std::env::temp_dir().join(format!("voxgate-env-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let seen = dir.join("seen");
    let wrapper = dir.join("espeak-ng");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nenv > '{}'\nexec espeak-ng \"$@\"\n",
            seen.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let local = spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_TTS_ENGINE", "local")
            .set("VOXGATE_ESPEAK_PROGRAM", wrapper.display().to_string()),
    )
    .await;
    let token = local.password_token("bob", "bob").await;
    assert_eq!(
        local.say(&token, "Nothing to see here.").await.status(),
        200
    );
    let env = std::fs::read_to_string(&seen).unwrap();
    // The shell itself adds PWD (and may add SHLVL, _).
    let leaked: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| !allowed(k) && !["PWD", "SHLVL", "_"].contains(k))
        .collect();
    assert!(leaked.is_empty(), "espeak-ng inherited {leaked:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With one worker, a long text does not keep it to its end: the worker
/// goes back to the pool between pieces of text, so bob's one sentence is
/// spoken while alice's long answer (she is an admin: no quota, the same
/// bounds) is still being synthesized.
#[tokio::test]
async fn a_long_text_shares_the_only_worker_piece_by_piece() {
    let stack = spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_TTS_ENGINE", "neural")
            .set("VOXGATE_PIPER_PYTHON", piper_python())
            .set("VOXGATE_PIPER_WORKERS", "1"),
    )
    .await;
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let long =
        "This sentence is one of many in a long answer that takes a while to speak. ".repeat(24);
    let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let alices = {
        let caller = stack.app.caller(&alice);
        let done = done.clone();
        let path = crate::tts::text_to_speech(&[("Text", long.as_str())]);
        tokio::spawn(async move {
            let r = caller.get(path).await;
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            done.lock().unwrap().push("alice");
        })
    };
    // alice's synthesis holds the worker for its first piece.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = stack.say(&bob, "Short and sweet.").await;
    assert_eq!(r.status(), 200);
    assert_speech(&r.bytes().await.unwrap(), "Short and sweet.");
    done.lock().unwrap().push("bob");
    alices.await.unwrap();
    assert_eq!(*done.lock().unwrap(), ["bob", "alice"]);
}
