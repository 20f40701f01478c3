//! Speech capacity is shared fairly: one user (staff included) leads at
//! most VOXGATE_TTS_USER_CONCURRENCY syntheses per instance, waiting for a
//! slot is bounded (VOXGATE_TTS_WORKER_WAIT_SECONDS), and a synthesis
//! nobody listens to stops (registered speech after
//! VOXGATE_TTS_DETACHED_SECONDS, so that it can still be cached).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestSettings, detail_has, problem};
use crate::stack::{Stack, spawn_polly_stack};

fn long_text(n: usize, sentences: usize) -> String {
    format!("Long answer number {n}. ").repeat(sentences)
}

fn legacy(text: &str) -> String {
    crate::tts::text_to_speech(&[("Text", text), ("VoiceId", "Joanna")])
}

async fn complete_entries(stack: &Stack) -> i64 {
    stack
        .app
        .count("SELECT count(*) FROM tts_cache WHERE complete")
        .await
}

/// alice is an admin (no daily quota): her flood of eight long requests
/// gets two syntheses and six 429s, bob's short request is served
/// meanwhile, and when alice goes away her syntheses stop, are not cached,
/// and her slots are free again.
#[tokio::test]
async fn one_users_flood_leaves_another_users_request_served() {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let polly = stack.polly.as_ref().unwrap();
    polly.set_chunk_delay(Duration::from_millis(150));
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;

    let flood = (0..8).map(|n| {
        let caller = stack.app.caller(&alice);
        async move { caller.get(legacy(&long_text(n, 100))).await }
    });
    let responses = futures::future::join_all(flood).await;
    let (streaming, refused): (Vec<_>, Vec<_>) =
        responses.into_iter().partition(|r| r.status() == 200);
    assert_eq!(streaming.len(), 2, "two syntheses per user");
    assert_eq!(refused.len(), 6);
    for r in refused {
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        detail_has(&problem(r, 429).await, "2 syntheses in progress");
    }

    let short = stack
        .app
        .caller(&bob)
        .get(legacy("Just a short one."))
        .await;
    assert_eq!(short.status(), 200, "bob is served during alice's flood");
    let audio = short.bytes().await.unwrap();
    assert!(!audio.is_empty());

    // alice leaves: her two syntheses stop (nothing of them is cached)
    // and she may start others.
    drop(streaming);
    let mut freed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = stack.app.caller(&alice).get(legacy("Alice is back.")).await;
        if r.status() == 200 {
            r.bytes().await.unwrap();
            freed = true;
            break;
        }
        assert_eq!(r.status(), 429);
    }
    assert!(freed, "alice's slots came back after she left");
    assert_eq!(
        complete_entries(&stack).await,
        2,
        "bob's and alice's short replies only: the abandoned ones are not cached"
    );
}

/// Waiting for a synthesis slot is bounded: with every slot held, the
/// next request is refused with 503 after the wait, not queued forever.
#[tokio::test]
async fn waiting_for_a_synthesis_slot_ends_with_503() {
    let stack = spawn_polly_stack(
        TestSettings::default()
            .set("VOXGATE_TTS_CONCURRENCY", "1")
            .set("VOXGATE_TTS_WORKER_WAIT_SECONDS", "1"),
    )
    .await;
    let polly = stack.polly.as_ref().unwrap();
    polly.set_first_byte_delay(Duration::from_secs(4));
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let holding = {
        let caller = stack.app.caller(&alice);
        tokio::spawn(async move { caller.get(legacy("Holding the only slot.")).await.status() })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = stack
        .app
        .caller(&bob)
        .get(legacy("Waiting for a slot."))
        .await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    detail_has(
        &problem(refused, 503).await,
        "too many syntheses in progress",
    );
    assert_eq!(holding.await.unwrap(), 200);
}

/// Registered speech whose listener left goes on to be cached, within the
/// detached bound; past the bound it stops and nothing is kept.
#[tokio::test]
async fn registered_speech_outlives_its_listener_only_within_the_bound() {
    for (detached, cached) in [("20", true), ("1", false)] {
        let stack = spawn_polly_stack(
            TestSettings::default().set("VOXGATE_TTS_DETACHED_SECONDS", detached),
        )
        .await;
        let polly = stack.polly.as_ref().unwrap();
        polly.set_chunk_delay(Duration::from_millis(100));
        let bob = stack.password_token("bob", "bob").await;
        let speech: Value = stack
            .app
            .caller(&bob)
            .post(
                "/api/tts",
                &json!({ "text": long_text(1, 20), "voice": "Joanna" }),
            )
            .await
            .json()
            .await
            .unwrap();
        let url = speech["url"].as_str().unwrap().to_string();
        let mut response = stack.app.caller(&bob).get(&url).await;
        assert_eq!(response.status(), 200);
        response.chunk().await.unwrap().expect("a first chunk");
        drop(response);
        // The whole synthesis takes a few seconds at this pace.
        let mut settled = false;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let rows = stack.app.count("SELECT count(*) FROM tts_cache").await;
            let complete = complete_entries(&stack).await;
            if complete == 1 || rows == 0 {
                settled = true;
                break;
            }
        }
        assert!(
            settled,
            "detached {detached}: the synthesis ended either way"
        );
        assert_eq!(
            complete_entries(&stack).await == 1,
            cached,
            "detached {detached}"
        );
        let again = stack.app.caller(&bob).get(&url).await;
        assert_eq!(again.status(), 200);
        again.bytes().await.unwrap();
        assert_eq!(
            polly.synth_calls(),
            if cached { 1 } else { 2 },
            "detached {detached}"
        );
    }
}

/// A user's slot is their own response's: when alice stops listening to a
/// synthesis she started while bob still listens, her slot comes back at
/// once (it would otherwise tell her that somebody else hears her words).
#[tokio::test]
async fn a_starters_slot_comes_back_when_she_stops_listening_whoever_else_listens() {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let polly = stack.polly.as_ref().unwrap();
    polly.set_chunk_delay(Duration::from_millis(500));
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let text = long_text(7, 40);
    let mut alices = stack.app.caller(&alice).get(legacy(&text)).await;
    assert_eq!(alices.status(), 200);
    alices.chunk().await.unwrap().expect("a first chunk");
    let mut bobs = stack.app.caller(&bob).get(legacy(&text)).await;
    assert_eq!(bobs.status(), 200);
    drop(alices);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Both of her slots are free: two other long texts stream.
    let mut others = Vec::new();
    for n in [8, 9] {
        let r = stack
            .app
            .caller(&alice)
            .get(legacy(&long_text(n, 40)))
            .await;
        assert_eq!(r.status(), 200, "text {n}");
        others.push(r);
    }
    bobs.chunk().await.unwrap().expect("bob still listens");
    assert_eq!(polly.synth_calls(), 3);
}

/// Syntheses nobody hears go on (to be cached) one per user at most: bob
/// starts two registered texts and leaves both; the first is finished and
/// cached, the second stops at once.
#[tokio::test]
async fn a_user_has_at_most_one_synthesis_going_on_unheard() {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let polly = stack.polly.as_ref().unwrap();
    polly.set_chunk_delay(Duration::from_millis(100));
    let bob = stack.password_token("bob", "bob").await;
    let mut keys = Vec::new();
    for n in [1, 2] {
        let speech: Value = stack
            .app
            .caller(&bob)
            .post(
                "/api/tts",
                &json!({ "text": long_text(n, 20), "voice": "Joanna" }),
            )
            .await
            .json()
            .await
            .unwrap();
        let url = speech["url"].as_str().unwrap().to_string();
        let mut response = stack.app.caller(&bob).get(&url).await;
        response.chunk().await.unwrap().expect("a first chunk");
        drop(response);
        keys.push(speech["key"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let complete = |key: String| {
        let db = stack.app.db.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT complete FROM tts_cache WHERE key = $1")
                .bind(key)
                .fetch_optional(&db)
                .await
                .unwrap()
        }
    };
    let mut first = None;
    for _ in 0..200 {
        first = complete(keys[0].clone()).await;
        if first == Some(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first, Some(true), "the first goes on and is cached");
    assert_eq!(complete(keys[1].clone()).await, None, "the second stopped");
}
