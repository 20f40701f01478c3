//! Voices and speech marks: the voice list of each engine, and the word
//! and sentence marks that registered speech comes with, in order.

use serde_json::json;

use crate::helpers::problem;
use crate::stack::spawn_stack;

use super::helpers::{joanna, polly_with_bob};
use super::{decoded_seconds, marked_words};

#[tokio::test]
async fn polly_speech_marks_and_voices_are_served() {
    let (stack, token) = polly_with_bob().await;
    let voices = stack.fetch_json(&token, "/api/voices?language=en-US").await;
    let ids: Vec<&str> = voices
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"Joanna") && !ids.contains(&"Hans"), "{ids:?}");
    let speech = stack
        .register_as_joanna(&token, "Hello there. How are you today?")
        .await;
    let marks = stack
        .fetch_json(&token, speech["marksUrl"].as_str().unwrap())
        .await;
    assert_eq!(
        marked_words(&marks),
        ["Hello", "there", "How", "are", "you", "today"]
    );
    let marks = marks.as_array().unwrap();
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
    let voices = stack.fetch_json(&token, "/api/voices?language=en").await;
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
