//! Speech: the real AWS SDK against the Polly stand-in, the local voice,
//! the cache, single-flight and the cost bounds. Each submodule covers one
//! behaviour; the helpers here are the ones the rest of the suite (the
//! neural voice, capacity and cache-oracle tests) speaks through too, and
//! `helpers` holds what only these tests share.

pub(crate) mod bucket;
mod cache;
mod cache_writes;
mod faults;
mod helpers;
mod instances;
mod legacy;
mod limits;
mod monitoring;
mod streaming;
mod voices;

use serde_json::Value;

use crate::stack::Stack;

/// The path of `/textToSpeech` with `query`, for requests that cannot
/// borrow a `Stack` (spawned ones).
pub fn text_to_speech(query: &[(&str, &str)]) -> String {
    format!(
        "/textToSpeech?{}",
        serde_urlencoded::to_string(query).unwrap()
    )
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
        let marks = self
            .fetch_json(token, registered["marksUrl"].as_str().unwrap())
            .await;
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

    /// The JSON document at `path`, such as a voice list or speech marks.
    pub async fn fetch_json(&self, token: &str, path: &str) -> Value {
        self.fetch(token, path, &[]).await.json().await.unwrap()
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
