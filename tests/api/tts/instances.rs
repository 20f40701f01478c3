//! One synthesis per text across instances: an instance that finds a new
//! text being spoken by another follows that synthesis from the cache
//! table instead of paying for it again, gets its first byte while the
//! writer still speaks, keeps a writer going that only it listens to, and
//! neither serves nor keeps what a dead writer left half-written.

use std::time::Duration;

use futures::StreamExt;

use crate::helpers::{Instance, TestSettings};
use crate::stack::{Stack, spawn_polly_stack};

use super::helpers::{joanna, polly};
use super::text_to_speech;

/// A stack speaking through the Polly stand-in, a second instance on its
/// database, and a token of bob's.
async fn two_instances() -> (Stack, Instance, String) {
    let stack = spawn_polly_stack(
        TestSettings::default()
            .set("VOXGATE_TTS_RATE_PER_MINUTE", "1000")
            .set("VOXGATE_TTS_DETACHED_SECONDS", "0"),
    )
    .await;
    let second = stack.app.another_instance().await;
    let bob = stack.password_token("bob", "bob").await;
    (stack, second, bob)
}

/// A cache key planted as if another instance were writing it (with one
/// chunk stored), to act the part of a writer that dies.
async fn plant_writer(stack: &Stack, key: &str, beat_ago_seconds: u32, chunk: &[u8]) {
    let db = &stack.app.db;
    sqlx::query(
        "INSERT INTO tts_cache (key, content_type, writer, beat_at)
         VALUES ($1, 'audio/mpeg', gen_random_uuid(), now() - make_interval(secs => $2))",
    )
    .bind(key)
    .bind(beat_ago_seconds as f64)
    .execute(db)
    .await
    .unwrap();
    if !chunk.is_empty() {
        sqlx::query("INSERT INTO tts_chunks (key, seq, offset_bytes, data) VALUES ($1, 0, 0, $2)")
            .bind(key)
            .bind(chunk)
            .execute(db)
            .await
            .unwrap();
    }
}

/// Registers `text` for bob and returns its key and audio URL.
async fn registered(stack: &Stack, token: &str, text: &str) -> (String, String) {
    let speech = stack.register_as_joanna(token, text).await;
    (
        speech["key"].as_str().unwrap().to_string(),
        speech["url"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn twenty_requests_over_two_instances_for_one_new_text_make_one_upstream_call() {
    let (stack, second, bob) = two_instances().await;
    // Slow enough that every request arrives while the text is spoken.
    polly(&stack).set_first_byte_delay(Duration::from_millis(300));
    polly(&stack).set_chunk_delay(Duration::from_millis(20));
    let text = "One popular reply, asked of two instances at once, is paid for once.";
    let query = joanna(text);
    let path = text_to_speech(&query);
    let callers = [stack.app.caller(&bob), second.caller(&bob)];
    let requests = (0..20).map(|i| {
        let caller = &callers[i % 2];
        let path = path.clone();
        async move {
            let r = caller.get(&path).await;
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }
    });
    let answers = futures::future::join_all(requests).await;
    assert_eq!(polly(&stack).synth_calls(), 1, "one upstream synthesis");
    assert!(!answers[0].is_empty());
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "every listener got the same bytes"
    );
    let (first, second_count) = (
        stack.app.state.tts.syntheses_started(),
        second.state.tts.syntheses_started(),
    );
    assert_eq!(first + second_count, 1, "one instance synthesized");
    let follower = match first {
        1 => &second.state,
        _ => &stack.app.state,
    };
    assert_eq!(
        follower.tts.syntheses_followed(),
        1,
        "the other followed it"
    );
    assert_eq!(
        stack
            .app
            .count("SELECT count(*) FROM tts_cache WHERE complete")
            .await,
        1
    );
    // Both instances now serve it from the cache.
    let hit = second.caller(&bob).get(&path).await;
    assert_eq!(hit.headers()["x-voxgate-cache"], "hit");
    assert_eq!(hit.bytes().await.unwrap(), answers[0]);
    assert_eq!(polly(&stack).synth_calls(), 1);
}

#[tokio::test]
async fn a_follower_on_another_instance_hears_the_first_bytes_while_the_writer_still_speaks() {
    let (stack, second, bob) = two_instances().await;
    // About two seconds of streaming.
    polly(&stack).set_chunk_delay(Duration::from_millis(150));
    let text = "A long reply streams slowly, and a listener on the other instance hears it begin at once. "
        .repeat(2);
    let query = joanna(&text);
    let path = text_to_speech(&query);
    let leading = stack.app.caller(&bob).get(&path).await;
    assert_eq!(leading.status(), 200);
    let mut leading = leading.bytes_stream();
    let first_chunk = leading.next().await.unwrap().unwrap();
    let following = second.caller(&bob).get(&path).await;
    assert_eq!(following.status(), 200);
    let mut following = following.bytes_stream();
    let followed_first = following.next().await.unwrap().unwrap();
    assert_eq!(
        stack
            .app
            .count("SELECT count(*) FROM tts_cache WHERE NOT complete")
            .await,
        1,
        "the follower's first bytes came while the writer was still speaking"
    );
    assert!(
        first_chunk.starts_with(&followed_first[..followed_first.len().min(first_chunk.len())])
    );
    let mut all_led = first_chunk.to_vec();
    while let Some(chunk) = leading.next().await {
        all_led.extend_from_slice(&chunk.unwrap());
    }
    let mut all_followed = followed_first.to_vec();
    while let Some(chunk) = following.next().await {
        all_followed.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(all_followed, all_led);
    assert_eq!(polly(&stack).synth_calls(), 1);
    assert_eq!(second.state.tts.syntheses_followed(), 1);
}

#[tokio::test]
async fn a_writer_keeps_speaking_for_a_listener_on_another_instance_when_its_own_leaves() {
    let (stack, second, bob) = two_instances().await;
    polly(&stack).set_chunk_delay(Duration::from_millis(100));
    let text = "The first listener leaves early; the one on the other instance hears every word. "
        .repeat(2);
    let query = joanna(&text);
    let path = text_to_speech(&query);
    let leading = stack.app.caller(&bob).get(&path).await;
    let mut leading = leading.bytes_stream();
    leading.next().await.unwrap().unwrap();
    let following = second.caller(&bob).get(&path).await;
    assert_eq!(following.status(), 200);
    let mut following = following.bytes_stream();
    following.next().await.unwrap().unwrap();
    // The writer's own (only local) listener goes; with no grace for
    // unheard speech, only the follower elsewhere keeps it going.
    drop(leading);
    let mut rest = 0;
    while let Some(chunk) = following.next().await {
        rest += chunk.expect("no error: the writer went on").len();
    }
    assert!(rest > 0);
    super::helpers::wait_for_count(&stack, "SELECT count(*) FROM tts_cache WHERE complete", 1)
        .await;
    assert_eq!(
        stack
            .app
            .count("SELECT count(*) FROM tts_cache WHERE complete")
            .await,
        1,
        "and cached it"
    );
    assert_eq!(polly(&stack).synth_calls(), 1);
}

#[tokio::test]
async fn what_a_writer_that_died_mid_way_left_is_neither_served_nor_kept() {
    let (stack, second, bob) = two_instances().await;
    let (key, url) = registered(
        &stack,
        &bob,
        "Spoken by an instance that dies half way through.",
    )
    .await;
    // Its heart beat a moment ago; it will not again.
    plant_writer(&stack, &key, 0, b"ID3 half of the audio").await;
    let response = second.caller(&bob).get(&url).await;
    assert_eq!(
        response.status(),
        200,
        "the follower starts with what is stored"
    );
    let mut body = response.bytes_stream();
    assert_eq!(
        body.next().await.unwrap().unwrap().as_ref(),
        b"ID3 half of the audio"
    );
    let end = tokio::time::timeout(Duration::from_secs(20), body.next())
        .await
        .expect("the follower notices the silence");
    assert!(
        matches!(end, Some(Err(_))),
        "the listener sees a cut stream, not a short file: {end:?}"
    );
    assert_eq!(
        stack.app.count("SELECT count(*) FROM tts_cache").await,
        0,
        "the half-written entry is gone"
    );
    assert_eq!(polly(&stack).synth_calls(), 0);
    // The next request synthesizes it afresh and caches it whole.
    let again = stack.app.caller(&bob).get(&url).await;
    assert_eq!(again.status(), 200);
    let audio = again.bytes().await.unwrap();
    assert!(audio.len() > 100);
    assert_eq!(polly(&stack).synth_calls(), 1);
}

#[tokio::test]
async fn a_writer_that_died_before_its_first_byte_is_replaced_by_a_follower() {
    let (stack, second, bob) = two_instances().await;
    let (key, url) = registered(&stack, &bob, "Claimed by an instance that died at once.").await;
    plant_writer(&stack, &key, 0, b"").await;
    let response = tokio::time::timeout(Duration::from_secs(20), second.caller(&bob).get(&url))
        .await
        .expect("the follower takes over");
    assert_eq!(response.status(), 200);
    let audio = response.bytes().await.unwrap();
    assert!(audio.len() > 100);
    assert_eq!(polly(&stack).synth_calls(), 1);
    assert_eq!(second.state.tts.syntheses_started(), 1);
    super::helpers::wait_for_count(&stack, "SELECT count(*) FROM tts_cache WHERE complete", 1)
        .await;
    let hit = stack.app.caller(&bob).get(&url).await;
    assert_eq!(hit.headers()["x-voxgate-cache"], "hit");
    assert_eq!(hit.bytes().await.unwrap(), audio);
}
