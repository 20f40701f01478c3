//! The shared speech cache tells nobody what somebody else had spoken: a
//! user's first hearing looks the same in every status, header and body
//! (and costs the same) whether or not another user caused that audio to
//! exist, through every path that reaches it: `/textToSpeech`, `POST
//! /api/tts` then `GET`, speech marks, and chat replies.
//!
//! Each scenario runs twice on fresh stacks, once with alice having heard
//! everything first and once without, and what bob sees is compared.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TestSettings;
use crate::stack::{Stack, spawn_polly_stack, spawn_stack_with};
use crate::tts::text_to_speech;

/// What a response shows a client, less what differs between any two
/// requests (date, request id).
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

async fn seen(response: reqwest::Response) -> Seen {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(k, _)| !["date", "x-request-id"].contains(&k.as_str()))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    let body = response.bytes().await.unwrap().to_vec();
    Seen {
        status,
        headers,
        body,
    }
}

/// A JSON body without ids and times, which differ between any two runs
/// (message ids are one sequence for everybody, a conversation id is
/// random); the speech key, a function of the text, stays.
fn json_without_times(seen: &mut Seen) {
    if let Ok(mut v) = serde_json::from_slice::<Value>(&seen.body) {
        for field in [
            "id",
            "at",
            "createdAt",
            "requestId",
            "userMessageId",
            "conversationId",
        ] {
            strip(&mut v, field);
        }
        seen.body = serde_json::to_vec(&v).unwrap();
        // Its length follows the ids' digits.
        seen.headers.remove("content-length");
    }
}

fn strip(v: &mut Value, field: &str) {
    match v {
        Value::Object(map) => {
            map.remove(field);
            map.values_mut().for_each(|v| strip(v, field));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip(v, field)),
        _ => {}
    }
}

const LEGACY: &str = "Legacy words nobody else should know about.";
const REGISTERED: &str = "Registered words nobody else should know about.";
const QUESTION: &str = "what can you do";

/// Bob's first hearing through every path, after alice heard the same
/// words first (`primed`) or not.
async fn bobs_first_hearings(stack: &Stack, primed: bool) -> Vec<(&'static str, Seen)> {
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let caller = |token: &str| stack.app.caller(token);
    if primed {
        let legacy = text_to_speech(&[("Text", LEGACY)]);
        for _ in 0..2 {
            caller(&alice).get(&legacy).await.bytes().await.unwrap();
        }
        let speech: Value = caller(&alice)
            .post("/api/tts", &json!({ "text": REGISTERED }))
            .await
            .json()
            .await
            .unwrap();
        for _ in 0..2 {
            let url = speech["url"].as_str().unwrap();
            caller(&alice).get(url).await.bytes().await.unwrap();
            caller(&alice)
                .get(&format!("{url}/marks"))
                .await
                .bytes()
                .await
                .unwrap();
        }
        let reply: Value = caller(&alice)
            .post("/api/chat", &json!({ "message": QUESTION }))
            .await
            .json()
            .await
            .unwrap();
        let url = reply["speech"]["url"].as_str().unwrap().to_string();
        for _ in 0..2 {
            caller(&alice).get(&url).await.bytes().await.unwrap();
            caller(&alice)
                .get(&format!("{url}/marks"))
                .await
                .bytes()
                .await
                .unwrap();
        }
        let hit = caller(&alice).get(&url).await;
        assert_eq!(hit.headers()["x-voxgate-cache"], "hit", "primed");
        hit.bytes().await.unwrap();
    }

    let mut out = Vec::new();
    let legacy = text_to_speech(&[("Text", LEGACY)]);
    out.push(("textToSpeech", seen(caller(&bob).get(&legacy).await).await));

    let mut registered = seen(
        caller(&bob)
            .post("/api/tts", &json!({ "text": REGISTERED }))
            .await,
    )
    .await;
    let speech: Value = serde_json::from_slice(&registered.body).unwrap();
    json_without_times(&mut registered);
    out.push(("register", registered));
    let url = speech["url"].as_str().unwrap().to_string();
    // Marks before hearing, then the audio, then marks after.
    out.push((
        "marks before",
        seen(caller(&bob).get(&format!("{url}/marks")).await).await,
    ));
    out.push(("registered audio", seen(caller(&bob).get(&url).await).await));
    out.push((
        "marks after",
        seen(caller(&bob).get(&format!("{url}/marks")).await).await,
    ));

    let mut reply = seen(
        caller(&bob)
            .post("/api/chat", &json!({ "message": QUESTION }))
            .await,
    )
    .await;
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    json_without_times(&mut reply);
    out.push(("chat reply", reply));
    let url = body["speech"]["url"].as_str().unwrap().to_string();
    out.push((
        "reply marks",
        seen(caller(&bob).get(&format!("{url}/marks")).await).await,
    ));
    out.push(("reply audio", seen(caller(&bob).get(&url).await).await));

    // What it cost him, as far as anyone can see it.
    let used: Option<i64> = sqlx::query_scalar(
        "SELECT chars FROM tts_usage u JOIN users ON users.id = u.user_id WHERE username = 'bob'",
    )
    .fetch_optional(&stack.app.db)
    .await
    .unwrap();
    out.push((
        "quota used",
        Seen {
            status: 0,
            headers: BTreeMap::new(),
            body: used.unwrap_or(0).to_string().into_bytes(),
        },
    ));
    out
}

fn assert_same(primed: Vec<(&str, Seen)>, fresh: Vec<(&str, Seen)>) {
    assert_eq!(primed.len(), fresh.len());
    for ((what, a), (_, b)) in primed.iter().zip(&fresh) {
        assert_eq!(a.status, b.status, "{what}");
        assert_eq!(a.headers, b.headers, "{what}: headers tell");
        assert!(
            a.body == b.body,
            "{what}: the body tells ({} vs {} bytes){}",
            a.body.len(),
            b.body.len(),
            match (std::str::from_utf8(&a.body), std::str::from_utf8(&b.body)) {
                (Ok(a), Ok(b)) => format!(":\n{a}\n{b}"),
                _ => String::new(),
            }
        );
    }
    let audio = &fresh
        .iter()
        .find(|(w, _)| *w == "registered audio")
        .unwrap()
        .1;
    assert_eq!(audio.headers["x-voxgate-cache"], "miss");
}

/// Bob's first hearings on two fresh stacks, one where alice spoke
/// everything first, must be the same.
async fn compare_on<F: std::future::Future<Output = Stack>>(primed: F, fresh: F) {
    let (primed, fresh) = tokio::join!(primed, fresh);
    let (primed, fresh) = tokio::join!(
        bobs_first_hearings(&primed, true),
        bobs_first_hearings(&fresh, false)
    );
    assert_same(primed, fresh);
}

#[tokio::test]
async fn a_first_hearing_on_the_local_voice_does_not_tell_whether_anyone_spoke_it_before() {
    let local = || spawn_stack_with(TestSettings::default().set("VOXGATE_TTS_ENGINE", "local"));
    compare_on(local(), local()).await;
}

#[tokio::test]
async fn a_first_hearing_through_polly_does_not_tell_whether_anyone_spoke_it_before() {
    let polly = || spawn_polly_stack(TestSettings::default());
    compare_on(polly(), polly()).await;
}

/// While somebody else's synthesis of the same words is still running, a
/// user who registered them hears a `miss`, not that they joined it.
#[tokio::test]
async fn joining_somebody_elses_synthesis_in_flight_looks_like_a_miss() {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let polly = stack.polly.as_ref().unwrap();
    polly.set_first_byte_delay(Duration::from_secs(5));
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let text = "Words being spoken for alice right now.";
    let theirs: Value = stack
        .app
        .caller(&alice)
        .post("/api/tts", &json!({ "text": text }))
        .await
        .json()
        .await
        .unwrap();
    let url = theirs["url"].as_str().unwrap().to_string();
    let alices = {
        let caller = stack.app.caller(&alice);
        let url = url.clone();
        tokio::spawn(async move { caller.get(&url).await.bytes().await.unwrap() })
    };
    // alice's synthesis is under way before bob asks.
    for _ in 0..100 {
        if polly.synth_calls() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mine: Value = stack
        .app
        .caller(&bob)
        .post("/api/tts", &json!({ "text": text }))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["url"], theirs["url"], "the same words have one key");
    let bobs = stack.app.caller(&bob).get(&url).await;
    assert_eq!(bobs.headers()["x-voxgate-cache"], "miss");
    let bobs = bobs.bytes().await.unwrap();
    assert_eq!(bobs, alices.await.unwrap());
    assert_eq!(polly.synth_calls(), 1, "one synthesis, shared");
    let again = stack.app.caller(&bob).get(&url).await;
    assert_eq!(
        again.headers()["x-voxgate-cache"],
        "hit",
        "his second hearing"
    );
}

/// What bob sees when he already holds every slot a user may (two long
/// hearings he reads slowly) and asks for words alice had spoken (primed)
/// or that nobody had: the same refusal either way.
async fn bobs_refusal(primed: bool) -> (u16, String) {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let polly = stack.polly.as_ref().unwrap();
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let probe = "Words that may or may not have been spoken.";
    let path = |text: &str| text_to_speech(&[("Text", text), ("VoiceId", "Joanna")]);
    if primed {
        let r = stack.app.caller(&alice).get(path(probe)).await;
        r.bytes().await.unwrap();
    }
    // The two held hearings last well past the probe, however slow the
    // machine (about a minute of chunks a second apart).
    polly.set_chunk_delay(Duration::from_secs(1));
    let mut held = Vec::new();
    for n in 0..2 {
        let text = format!("A long answer bob keeps open, number {n}. ").repeat(40);
        let r = stack.app.caller(&bob).get(path(&text)).await;
        assert_eq!(r.status(), 200);
        held.push(r);
    }
    let probed = stack.app.caller(&bob).get(path(probe)).await;
    let status = probed.status().as_u16();
    let body: Value = probed.json().await.unwrap_or(Value::Null);
    drop(held);
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_refusal_for_holding_every_slot_does_not_tell_whether_the_words_are_cached() {
    let (primed, fresh) = tokio::join!(bobs_refusal(true), bobs_refusal(false));
    assert_eq!(primed.0, 429);
    assert_eq!(primed, fresh);
}

/// Bob's two concurrent requests for the same words he has not heard,
/// while nobody else's synthesis of them exists, while alice's is under
/// way, or after alice's has finished: the same labels every time.
async fn bobs_two_requests(others: Others) -> Vec<String> {
    let stack = spawn_polly_stack(TestSettings::default()).await;
    let polly = stack.polly.as_ref().unwrap();
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let path = text_to_speech(&[("Text", "Spoken twice at once."), ("VoiceId", "Joanna")]);
    if others == Others::Finished {
        let r = stack.app.caller(&alice).get(&path).await;
        r.bytes().await.unwrap();
    }
    // Long enough that every request below joins the same synthesis.
    polly.set_first_byte_delay(Duration::from_secs(6));
    let alices = (others == Others::Speaking).then(|| {
        let caller = stack.app.caller(&alice);
        let path = path.clone();
        tokio::spawn(async move { caller.get(&path).await.bytes().await.unwrap() })
    });
    if others == Others::Speaking {
        for _ in 0..100 {
            if polly.synth_calls() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(polly.synth_calls(), 1, "alice's synthesis is under way");
    }
    let first = {
        let caller = stack.app.caller(&bob);
        let path = path.clone();
        tokio::spawn(async move { caller.get(&path).await })
    };
    let second = stack.app.caller(&bob).get(&path).await;
    let first = first.await.unwrap();
    let labels: Vec<String> = [&first, &second]
        .iter()
        .map(|r| r.headers()["x-voxgate-cache"].to_str().unwrap().to_string())
        .collect();
    first.bytes().await.unwrap();
    second.bytes().await.unwrap();
    if let Some(a) = alices {
        a.await.unwrap();
    }
    assert_eq!(polly.synth_calls(), 1, "{others:?}: one synthesis in all");
    labels
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Others {
    Nobody,
    Speaking,
    Finished,
}

#[tokio::test]
async fn a_users_own_concurrent_requests_do_not_tell_whether_somebody_else_speaks_the_words() {
    let (nobody, speaking, finished) = tokio::join!(
        bobs_two_requests(Others::Nobody),
        bobs_two_requests(Others::Speaking),
        bobs_two_requests(Others::Finished)
    );
    assert_eq!(nobody, ["miss", "miss"]);
    assert_eq!(speaking, nobody);
    assert_eq!(finished, nobody);
}
