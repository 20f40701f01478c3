//! The original `/textToSpeech` endpoint: who may ask for speech (there
//! and on the other speech endpoints), MP3 from Polly through the real AWS
//! SDK, the problems invalid requests get, and text that looks like SSML.

use serde_json::json;

use crate::helpers::{problem, problem_saying};
use crate::stack::{spawn_stack, spawn_with_bob};

use super::decoded_seconds;
use super::helpers::{joanna, polly, polly_with_bob};

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
    let too_long = stack.say_as_joanna(&token, &"a".repeat(3001)).await;
    problem(too_long, 413).await;
    let empty = stack.say_as_joanna(&token, "  \u{7} ").await;
    problem(empty, 400).await;
    let missing = stack.tts_get(&token, &[("VoiceId", "Joanna")]).await;
    problem(missing, 400).await;
    let format = stack
        .tts_get(&token, &[("Text", "Hi"), ("OutputFormat", "wav")])
        .await;
    problem_saying(format, 400, "mp3").await;
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
    problem_saying(unsupported, 400, "neural").await;
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
        let response = stack.say_as_joanna(&token, text).await;
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
        .say(&token, r#"</speak><speak><break time="10s"/>"#)
        .await;
    assert_eq!(response.status(), 200);
    let seconds = decoded_seconds(&response.bytes().await.unwrap());
    assert!(
        seconds < 8.0,
        "local voice speaks it literally ({seconds} s)"
    );
}
