//! The official `openai` Python client, pointed at voxgate with a Keycloak
//! access token as its API key, transcribes through the recogniser and
//! speaks through voxgate's voices (`tests/openai/client.py`).

use crate::helpers::TestSettings;
use crate::listening::{installed, listening_stack, spoken};

#[tokio::test]
async fn the_official_openai_client_transcribes_and_speaks_with_a_keycloak_token() {
    let stack = listening_stack(TestSettings::default()).await;
    let bob = stack.password_token("bob", "bob").await;
    let dir = std::env::temp_dir().join(format!("voxgate-openai-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (wav, mp3) = (dir.join("question.wav"), dir.join("reply.mp3"));
    std::fs::write(&wav, spoken("What can you do?")).unwrap();
    let out = tokio::process::Command::new(installed("VOXGATE_OPENAI_PYTHON", "openai"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/openai/client.py"
        ))
        .arg(stack.app.url("/v1"))
        .arg(&wav)
        .arg(&mp3)
        .env_clear()
        .envs(crate::helpers::base_env())
        .env("VOXGATE_TOKEN", &bob)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        crate::listening::words(got["text"].as_str().unwrap()),
        "what can you do"
    );
    assert_eq!(
        crate::listening::words(got["plain"].as_str().unwrap()),
        "what can you do"
    );
    assert_eq!(got["speech_content_type"], "audio/mpeg");
    assert_eq!(got["refused_status"], 422);
    let audio = std::fs::read(&mp3).unwrap();
    let seconds = crate::tts::decoded_seconds(&audio);
    assert!(seconds > 0.5, "{seconds} s of speech");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn openai_speech_uses_voxgates_voices_quota_and_cache() {
    let stack = crate::stack::spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let speak = |body: serde_json::Value| {
        let caller = stack.app.caller(&bob);
        async move { caller.post("/v1/audio/speech", &body).await }
    };
    // OpenAI's voice names speak with the default voice.
    let r = speak(serde_json::json!({"model": "tts-1", "voice": "nova", "input": "Hello there."}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    assert!(crate::tts::decoded_seconds(&r.bytes().await.unwrap()) > 0.3);
    assert_eq!(
        stack.app.count("SELECT chars FROM tts_usage").await,
        "Hello there.".len() as i64,
        "charged to bob's daily quota like /textToSpeech"
    );
    // A voice that is neither OpenAI's nor ours is refused, naming it.
    let r = speak(serde_json::json!({"model": "tts-1", "voice": "Nobody", "input": "Hi."})).await;
    let p = crate::helpers::problem(r, 400).await;
    crate::helpers::detail_has(&p, "Nobody");
    for format in ["opus", "pcm"] {
        let r = speak(serde_json::json!({"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": format})).await;
        let p = crate::helpers::problem(r, 422).await;
        assert_eq!(p["errors"][0]["field"], "response_format");
    }
    // The same words again come from the cache, and cost nothing more.
    let r = speak(serde_json::json!({"model": "tts-1", "voice": "nova", "input": "Hello there."}))
        .await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    assert_eq!(
        stack.app.count("SELECT chars FROM tts_usage").await,
        "Hello there.".len() as i64
    );
    let anonymous = stack
        .app
        .anonymous()
        .post("/v1/audio/speech", &serde_json::json!({"input": "Hi."}))
        .await;
    assert_eq!(anonymous.status(), 401);
}
