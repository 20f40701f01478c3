//! What the speech tests share besides the crate-wide helpers in `tts`:
//! the Polly stand-in's controls, the stacks they start, and the requests
//! several of them make the same way.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TestSettings;
use crate::stack::{Stack, spawn_polly_stack};

pub(super) fn polly(stack: &Stack) -> &polly_standin::PollyStandin {
    stack.polly.as_ref().expect("polly stand-in")
}

/// The original endpoint's query for `text` in Joanna's voice, as MP3.
pub(super) fn joanna(text: &str) -> [(&str, &str); 4] {
    [
        ("Text", text),
        ("VoiceId", "Joanna"),
        ("LanguageCode", "en-US"),
        ("OutputFormat", "mp3"),
    ]
}

/// A stack speaking through the Polly stand-in, and a token of bob's.
pub(super) async fn polly_with_bob() -> (Stack, String) {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let bob = stack.password_token("bob", "bob").await;
    (stack, bob)
}

/// A stack speaking through the Polly stand-in with one setting changed.
pub(super) async fn polly_stack_with(setting: &str, value: &str) -> Stack {
    spawn_polly_stack(TestSettings::default().set(setting, value)).await
}

impl Stack {
    /// `/textToSpeech` for `text` in Joanna's voice, every other parameter
    /// left out.
    pub(super) async fn say_as_joanna(&self, token: &str, text: &str) -> reqwest::Response {
        self.tts_get(token, &[("Text", text), ("VoiceId", "Joanna")])
            .await
    }

    /// Registers `text` in Joanna's voice through `POST /api/tts`.
    pub(super) async fn register_as_joanna(&self, token: &str, text: &str) -> Value {
        self.register_speech(token, &json!({"text": text, "voice": "Joanna"}))
            .await
    }
}

/// Waits up to two seconds for `query` to count `expected`: a cache entry
/// is finished after its last byte has gone out, so a test that has read
/// the whole answer can still be ahead of it.
pub(super) async fn wait_for_count(stack: &Stack, query: &str, expected: i64) {
    for _ in 0..100 {
        if stack.app.count(query).await == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
