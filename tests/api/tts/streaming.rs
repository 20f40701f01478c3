//! Speech streams: the first bytes go out before the upstream finishes,
//! fifty identical requests share one synthesis, and a graceful shutdown
//! lets a stream in flight end.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::helpers::TestSettings;
use crate::stack::spawn_polly_stack;

use super::decoded_seconds;
use super::helpers::{polly, polly_stack_with, polly_with_bob};

#[tokio::test]
async fn audio_really_streams_before_the_upstream_finishes() {
    let (stack, token) = polly_with_bob().await;
    polly(&stack).set_chunk_delay(Duration::from_millis(150));
    let text = "This sentence is long enough to make several chunks of audio. ".repeat(4);
    let started = Instant::now();
    let response = stack.say_as_joanna(&token, &text).await;
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
async fn fifty_concurrent_identical_requests_cost_one_upstream_call() {
    let stack = polly_stack_with("VOXGATE_TTS_RATE_PER_MINUTE", "1000").await;
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
async fn shutdown_lets_an_in_flight_stream_finish() {
    let mut stack = spawn_polly_stack(TestSettings::default()).await;
    let token = stack.password_token("bob", "bob").await;
    polly(&stack).set_chunk_delay(Duration::from_millis(100));
    let text = "A reply that is still being spoken while the server is asked to stop. ".repeat(2);
    let response = stack.say_as_joanna(&token, &text).await;
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
