//! What speech may cost a user: the daily character quota (cache hits
//! free, admins exempt, Polly's neural engine weighing more), registered
//! speech paid for once, and the per-minute rate.

use serde_json::json;

use crate::helpers::{problem, problem_saying};

use super::helpers::polly_stack_with;

#[tokio::test]
async fn the_daily_character_quota_returns_429_and_resets() {
    let stack = polly_stack_with("VOXGATE_TTS_DAILY_CHARS", "50").await;
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
    problem_saying(over, 429, "quota").await;
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
    let stack = polly_stack_with("VOXGATE_TTS_DAILY_CHARS", "100").await;
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
    problem_saying(neural, 429, "neural engine counts each character 4 times").await;
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
async fn registering_speech_counts_against_the_quota_once_per_text() {
    let stack = polly_stack_with("VOXGATE_TTS_DAILY_CHARS", "50").await;
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
    let stack = polly_stack_with("VOXGATE_TTS_RATE_PER_MINUTE", "3").await;
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
async fn a_user_sees_what_is_left_of_todays_speech_quota() {
    let stack = polly_stack_with("VOXGATE_TTS_DAILY_CHARS", "100").await;
    let bob = stack.password_token("bob", "bob").await;
    let fresh = stack
        .app
        .caller(&bob)
        .get_json("/api/me/speech-quota")
        .await;
    assert_eq!(fresh["used"], 0);
    assert_eq!(fresh["limit"], 100);
    assert_eq!(fresh["remaining"], 100);
    let resets = time::OffsetDateTime::parse(
        fresh["resetsAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert!(resets > now && resets - now <= time::Duration::days(1));
    assert_eq!((resets.hour(), resets.minute(), resets.second()), (0, 0, 0));
    let said = stack.say(&bob, "Thirty characters of speech...").await;
    said.bytes().await.unwrap();
    let after = stack
        .app
        .caller(&bob)
        .get_json("/api/me/speech-quota")
        .await;
    assert_eq!(after["used"], 30);
    assert_eq!(after["remaining"], 70);
    // Yesterday's use does not count.
    stack.app.sql("UPDATE tts_usage SET day = day - 1").await;
    let next_day = stack
        .app
        .caller(&bob)
        .get_json("/api/me/speech-quota")
        .await;
    assert_eq!(next_day["remaining"], 100);
    // Staff have no daily quota.
    let alice = stack.password_token("alice", "alice").await;
    let staff = stack
        .app
        .caller(&alice)
        .get_json("/api/me/speech-quota")
        .await;
    assert_eq!(staff["limit"], serde_json::Value::Null);
    assert_eq!(staff["remaining"], serde_json::Value::Null);
    problem(stack.app.anonymous().get("/api/me/speech-quota").await, 401).await;
}
