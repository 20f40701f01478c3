//! Faults of the Polly stand-in: its own error texts kept from users,
//! throttling and server errors retried before the first byte, and a stream
//! cut off midway, which must never be cached.

use crate::helpers::problem;

use super::helpers::{polly, polly_stack_with, polly_with_bob};

#[tokio::test]
async fn pollys_own_error_texts_never_reach_users() {
    // Credentials Polly does not know: its answer names the problem (and
    // in real AWS can name the account or IAM role).
    let stack = polly_stack_with("AWS_ACCESS_KEY_ID", "AKIDSOMEONEELSE0001").await;
    let token = stack.password_token("bob", "bob").await;
    let response = stack.say_as_joanna(&token, "Hello").await;
    let status = response.status().as_u16();
    assert!(status == 502 || status == 503, "{status}");
    let body = problem(response, status).await;
    let detail = body["detail"].as_str().unwrap();
    for leak in ["Unrecognized", "security token", "AKID", "arn:"] {
        assert!(!detail.contains(leak), "{leak} in {detail}");
    }
    assert!(
        body["requestId"].is_string(),
        "the request id ties it to the log"
    );
}

#[tokio::test]
async fn throttling_is_retried_and_then_becomes_503_with_retry_after() {
    let (stack, token) = polly_with_bob().await;
    polly(&stack).throttle_next(1);
    let recovered = stack.say_as_joanna(&token, "Retry me").await;
    assert_eq!(recovered.status(), 200);
    assert_eq!(
        polly(&stack).synth_calls(),
        2,
        "one throttled attempt, one retry"
    );
    polly(&stack).throttle_next(10);
    let throttled = stack.say_as_joanna(&token, "Throttle me").await;
    assert_eq!(throttled.headers()["retry-after"], "2");
    problem(throttled, 503).await;
    polly(&stack).reset_faults();
    polly(&stack).fail_next(1, 500);
    let after_500 = stack.say_as_joanna(&token, "Server error once").await;
    assert_eq!(
        after_500.status(),
        200,
        "a 5xx before the first byte is retried"
    );
}

#[tokio::test]
async fn a_cut_stream_aborts_the_response_and_is_not_cached() {
    let (stack, token) = polly_with_bob().await;
    polly(&stack).cut_stream_after(Some(6000));
    let text = "A long answer that will be cut off in the middle of its audio stream. ".repeat(3);
    let response = stack.say_as_joanna(&token, &text).await;
    assert_eq!(response.status(), 200, "headers were sent before the cut");
    assert!(
        response.bytes().await.is_err(),
        "the client sees the stream break"
    );
    let cached = stack.app.count("SELECT count(*) FROM tts_cache").await;
    assert_eq!(cached, 0, "nothing of a cut stream is cached");
    polly(&stack).cut_stream_after(None);
    let again = stack.say_as_joanna(&token, &text).await;
    assert_eq!(again.headers()["x-voxgate-cache"], "miss");
    again.bytes().await.unwrap();
    assert_eq!(polly(&stack).synth_calls(), 2);
}
