//! The chat API: the knowledge-base bot through HTTP, conversations,
//! settings, streaming, and the LLM bot against an OpenAI-compatible
//! stand-in served from inside the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{TestSettings, detail_has, problem};
use crate::stack::{Stack, spawn_stack, spawn_stack_with};

impl Stack {
    async fn chat(&self, token: &str, message: &str) -> reqwest::Response {
        self.app
            .caller(token)
            .post("/api/chat", &json!({ "message": message }))
            .await
    }

    async fn chat_ok(&self, token: &str, message: &str) -> Value {
        let r = self.chat(token, message).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    async fn chat_stream(&self, token: &str, message: &str) -> (HeaderMap, Vec<(String, Value)>) {
        let r = self
            .app
            .caller(token)
            .header("accept", "text/event-stream")
            .post("/api/chat", &json!({ "message": message }))
            .await;
        assert_eq!(r.status(), 200);
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (headers, parse_events(&text))
    }

    async fn history(&self, token: &str, query: &str) -> Value {
        let r = self
            .app
            .caller(token)
            .get(&format!("/api/chat/history{query}"))
            .await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn put_settings(&self, token: &str, body: &Value) -> reqwest::Response {
        self.app.caller(token).put("/api/me/settings", body).await
    }
}

/// `(event, data)` pairs of a server-sent-events body.
fn parse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = "message".to_string();
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.trim_start().to_string());
                }
            }
            if data.is_empty() {
                None
            } else {
                Some((name, serde_json::from_str(&data.join("\n")).unwrap()))
            }
        })
        .collect()
}

fn assert_speech(speech: &Value) {
    let key = speech["key"].as_str().expect("speech key");
    assert_eq!(speech["url"], format!("/api/tts/{key}"));
    assert_eq!(speech["marksUrl"], format!("/api/tts/{key}/marks"));
    assert_eq!(speech["format"], "mp3");
}

#[tokio::test]
async fn a_message_gets_a_reply_with_speech_and_both_are_kept_in_history() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let reply = stack.chat_ok(&bob, "helo").await;
    assert!(reply["reply"].as_str().unwrap().contains("Bob"), "{reply}");
    assert!(reply["id"].as_i64().unwrap() > reply["userMessageId"].as_i64().unwrap());
    assert!(reply["createdAt"].as_str().unwrap().contains('T'));
    assert_speech(&reply["speech"]);
    assert!(!reply["followUps"].as_array().unwrap().is_empty());

    let history = stack.history(&bob, "").await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["author"], "user");
    assert_eq!(items[0]["text"], "helo");
    assert_eq!(items[0]["speech"], Value::Null);
    assert_eq!(items[1]["author"], "bot");
    assert_eq!(items[1]["text"], reply["reply"]);
    assert_eq!(items[1]["speech"], reply["speech"]);
    assert_eq!(history["nextBefore"], Value::Null);
}

#[tokio::test]
async fn who_am_i_answers_with_the_callers_identity_and_roles() {
    let stack = spawn_stack().await;
    let alice = stack.password_token("alice", "alice").await;
    let reply = stack.chat_ok(&alice, "who am i?").await;
    let text = reply["reply"].as_str().unwrap();
    assert!(text.contains("alice"), "{text}");
    assert!(text.contains("Alice Admin"), "{text}");
    assert!(text.contains("admin and user"), "{text}");
    assert!(text.contains("alice@example.com"), "{text}");

    // Said in writing, not aloud: the email address never reaches the
    // speech engine or the shared audio cache.
    let key = reply["speech"]["key"].as_str().unwrap();
    let spoken = stack.app.spoken_text(key).await;
    assert!(!spoken.contains("alice@example.com"), "{spoken}");
    assert!(spoken.contains("your email address"), "{spoken}");
    assert!(spoken.contains("Alice Admin"), "{spoken}");

    let bob = stack.password_token("bob", "bob").await;
    let text = stack.chat_ok(&bob, "WHO am I").await["reply"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("bob") && !text.contains("admin"), "{text}");
}

#[tokio::test]
async fn typos_and_word_order_still_find_the_answer() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let about = stack.chat_ok(&bob, "voxgte is waht").await;
    assert!(
        about["reply"]
            .as_str()
            .unwrap()
            .starts_with("voxgate is a chat"),
        "{about}"
    );
    let voice = stack.chat_ok(&bob, "the voice, how can I chnage it").await;
    assert!(
        voice["reply"].as_str().unwrap().contains("Voice menu"),
        "{voice}"
    );
}

#[tokio::test]
async fn unknown_questions_get_a_helpful_fallback() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let reply = stack.chat_ok(&bob, "purple elephants juggle quietly").await;
    assert!(
        reply["reply"].as_str().unwrap().contains("what can you do"),
        "{reply}"
    );
    assert_eq!(reply["followUps"][0], "What can you do?");
}

#[tokio::test]
async fn empty_and_too_long_messages_are_refused() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let body = problem(stack.chat(&bob, "   \n ").await, 422).await;
    assert_eq!(body["errors"][0]["field"], "message");
    let body = problem(stack.chat(&bob, &"x".repeat(2001)).await, 422).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("2000"),
        "{body}"
    );
    assert_eq!(stack.chat(&bob, &"x".repeat(2000)).await.status(), 200);
    problem(stack.chat(&bob, &"x".repeat(70_000)).await, 413).await;
    let missing = stack
        .app
        .caller(&bob)
        .post("/api/chat", &json!({ "text": "hi" }))
        .await;
    problem(missing, 422).await;
    let history = stack.history(&bob, "").await;
    assert_eq!(
        history["items"].as_array().unwrap().len(),
        2,
        "refused messages are not stored"
    );
}

#[tokio::test]
async fn text_postgres_cannot_store_is_a_422_naming_the_field_everywhere() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let alice = stack.password_token("alice", "alice").await;
    // A NUL character: valid JSON and UTF-8, refused by Postgres.
    let body = problem(stack.chat(&bob, "hello\u{0}world").await, 422).await;
    assert_eq!(body["errors"][0]["field"], "message", "{body}");
    detail_has(&body, "NUL");
    let create = stack
        .app
        .caller(&alice)
        .post(
            "/api/admin/users",
            &json!({
                "username": "nul-user",
                "email": "nul@example.com",
                "firstName": "Nu\u{0}l",
                "roles": ["user"],
                "password": {"value": "a long enough password"}
            }),
        )
        .await;
    let body = problem(create, 422).await;
    assert_eq!(body["errors"][0]["field"], "firstName", "{body}");
    let search = stack
        .app
        .caller(&alice)
        .get("/api/admin/users?search=a%00b")
        .await;
    let body = problem(search, 422).await;
    assert_eq!(body["errors"][0]["field"], "search", "{body}");
    let speech = stack.app.caller(&bob).get("/api/tts/abc%00def").await;
    problem(speech, 422).await;
    // Nothing was stored, nothing failed.
    assert_eq!(
        stack.history(&bob, "").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(stack.app.get("/api/version").await.status(), 200);
}

#[tokio::test]
async fn the_chat_needs_a_signed_in_user() {
    let stack = spawn_stack().await;
    let r = stack
        .app
        .anonymous()
        .post("/api/chat", &json!({ "message": "hi" }))
        .await;
    problem(r, 401).await;
    problem(stack.app.get("/api/chat/history").await, 401).await;
    problem(stack.app.get("/api/me/settings").await, 401).await;
}

#[tokio::test]
async fn history_pages_backwards_and_shows_only_the_callers_messages() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let alice = stack.password_token("alice", "alice").await;
    for m in ["hello", "what is voxgate", "thanks"] {
        stack.chat_ok(&bob, m).await;
    }
    stack.chat_ok(&alice, "who am i").await;

    let first = stack.history(&bob, "?limit=4").await;
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["text"], "what is voxgate", "oldest first");
    assert_eq!(items[3]["author"], "bot");
    let ids: Vec<i64> = items.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let before = first["nextBefore"].as_i64().expect("an older page exists");
    assert_eq!(before, ids[0]);

    let older = stack
        .history(&bob, &format!("?limit=4&before={before}"))
        .await;
    let items = older["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["text"], "hello");
    assert_eq!(older["nextBefore"], Value::Null);

    let all = stack.history(&bob, "?limit=100").await;
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["text"] != "who am i"),
        "alice's messages are not in bob's history"
    );
    let bad = [("limit=0", 422), ("limit=101", 422), ("before=abc", 400)];
    for (query, status) in bad {
        let response = stack
            .app
            .caller(&bob)
            .get(format!("/api/chat/history?{query}"))
            .await;
        problem(response, status).await;
    }
}

#[tokio::test]
async fn clearing_history_removes_only_the_callers_messages() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let alice = stack.password_token("alice", "alice").await;
    stack.chat_ok(&bob, "hello").await;
    stack.chat_ok(&alice, "hello").await;
    let r = stack.app.caller(&bob).delete("/api/chat/history").await;
    assert_eq!(r.status(), 204);
    assert_eq!(stack.history(&bob, "").await["items"], json!([]));
    assert_eq!(
        stack.history(&alice, "").await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn cookie_sessions_must_send_the_csrf_token_to_chat() {
    let stack = spawn_stack().await;
    let (client, csrf) = stack.signed_in("bob").await;
    let origin = stack.app.url("");
    let without = stack
        .browser(&client)
        .header("origin", &origin)
        .post("/api/chat", &json!({ "message": "hi" }))
        .await;
    problem(without, 403).await;
    let with = stack
        .browser(&client)
        .header("origin", &origin)
        .header("x-csrf-token", &csrf)
        .post("/api/chat", &json!({ "message": "hi" }))
        .await;
    assert_eq!(with.status(), 200);
    let cleared = stack
        .browser(&client)
        .header("origin", "http://evil.example")
        .header("x-csrf-token", &csrf)
        .delete("/api/chat/history")
        .await;
    problem(cleared, 403).await;
}

#[tokio::test]
async fn settings_start_with_defaults_and_are_validated_when_saved() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let defaults: Value = stack.app.caller(&bob).get_json("/api/me/settings").await;
    assert_eq!(
        defaults,
        json!({"voice": null, "language": null, "autoplay": true, "speechRate": 1.0})
    );

    let saved = stack
        .put_settings(
            &bob,
            &json!({"voice": "en-gb", "language": "en-GB", "autoplay": false, "speechRate": 1.25}),
        )
        .await;
    assert_eq!(saved.status(), 200);
    let now: Value = stack.app.caller(&bob).get_json("/api/me/settings").await;
    assert_eq!(
        now,
        json!({"voice": "en-gb", "language": "en-GB", "autoplay": false, "speechRate": 1.25})
    );

    let bad = stack
        .put_settings(
            &bob,
            &json!({"voice": "<script>", "language": "english!", "speechRate": 3}),
        )
        .await;
    let body = problem(bad, 422).await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["voice", "language", "speechRate"]);
    problem(stack.put_settings(&bob, &json!({"volume": 11})).await, 422).await;
    let unknown = problem(
        stack
            .put_settings(&bob, &json!({"voice": "no-such-voice"}))
            .await,
        422,
    )
    .await;
    assert_eq!(unknown["errors"][0]["field"], "voice");
    detail_has(&unknown, "/api/voices");
    let alice = stack.password_token("alice", "alice").await;
    let theirs: Value = stack.app.caller(&alice).get_json("/api/me/settings").await;
    assert_eq!(theirs["voice"], Value::Null, "settings are per user");
}

#[tokio::test]
async fn replies_are_spoken_with_the_users_voice() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let default = stack.chat_ok(&bob, "hello").await;
    assert_speech(&default["speech"]);
    let r = stack
        .put_settings(&bob, &json!({"voice": "en-gb", "speechRate": 1.0}))
        .await;
    assert_eq!(r.status(), 200);
    let reply = stack.chat_ok(&bob, "hello").await;
    assert_eq!(reply["speech"]["voice"], "en-gb");
    assert_ne!(reply["speech"]["key"], default["speech"]["key"]);
}

#[tokio::test]
async fn a_streamed_reply_sends_deltas_then_done_with_the_stored_ids() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let (headers, events) = stack.chat_stream(&bob, "what can you do").await;
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"started"), "{names:?}");
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    assert!(names[1..names.len() - 1].iter().all(|n| *n == "delta"));
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    let done = &events.last().unwrap().1;
    assert_eq!(done["reply"].as_str().unwrap(), text.trim());
    assert_speech(&done["speech"]);
    assert_eq!(done["restSpeech"], Value::Null);
    assert_eq!(events[0].1["userMessageId"], done["userMessageId"]);
    assert_eq!(events[0].1["conversationId"], done["conversationId"]);
    let history = stack.history(&bob, "").await;
    assert_eq!(history["items"][1]["id"], done["id"]);
    assert_eq!(history["items"][0]["id"], done["userMessageId"]);
}

#[tokio::test]
async fn the_chat_operations_are_documented() {
    let stack = spawn_stack().await;
    let doc: Value = stack.app.get_json("/api/openapi.json").await;
    let send = &doc["paths"]["/api/chat"]["post"];
    assert!(send["responses"]["200"]["content"]["text/event-stream"].is_object());
    assert!(send["responses"]["200"]["content"]["application/json"].is_object());
}

/// A knowledge-base file with `contents` in a fresh directory.
fn knowledge_file(contents: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("voxgate-kb-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kb.toml");
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

#[tokio::test]
async fn a_custom_knowledge_base_file_replaces_the_default() {
    let (dir, path) = knowledge_file(
        "[[intent]]\nid = \"opening-hours\"\nexamples = [\"When are you open?\"]\nanswers = [\"We are open nine to five, {name}.\"]\n",
    );
    let stack = spawn_stack_with(
        TestSettings::default().set("VOXGATE_KB_FILE", path.display().to_string()),
    )
    .await;
    let bob = stack.password_token("bob", "bob").await;
    assert_eq!(
        stack.chat_ok(&bob, "open when are you").await["reply"],
        "We are open nine to five, Bob."
    );
    let builtin = stack.chat_ok(&bob, "who am i").await;
    assert!(
        builtin["reply"].as_str().unwrap().contains("bob"),
        "built-in intents stay: {builtin}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_broken_knowledge_base_file_stops_start_up_naming_the_lines() {
    let (dir, path) = knowledge_file(
        "[[intent]]\nid = \"a\"\nexamples = [\"x y\"]\nanswers = [\"Hi {who}\"]\n\n[[intent]]\nid = \"a\"\nexamples = []\nanswers = [\"ok\"]\n",
    );
    let database = crate::helpers::TestDatabase::new().await;
    let config = crate::helpers::config_for(
        &database,
        &TestSettings::default().set("VOXGATE_KB_FILE", path.display().to_string()),
    );
    let error = match voxgate::App::build(config).await {
        Ok(_) => panic!("start-up must fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("VOXGATE_KB_FILE"), "{error}");
    assert!(error.contains("line 4: "), "{error}");
    assert!(error.contains("{who}"), "{error}");
    assert!(
        error.contains("line 7: intent `a` is defined twice"),
        "{error}"
    );
    assert!(error.contains("line 8: "), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- The LLM bot --------------------------------------------------------

#[derive(Clone)]
enum Behaviour {
    /// Streams these pieces, then `[DONE]`.
    Stream(Vec<&'static str>),
    /// Answers this status with an error body.
    Fail(u16),
    /// Never answers.
    Hang,
    /// Streams these pieces, then stalls without ending.
    Stall(Vec<&'static str>),
}

#[derive(Clone)]
struct Upstream {
    behaviour: Behaviour,
    requests: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

fn chunk(text: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})
    )
}

async fn completions(
    State(up): State<Upstream>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    up.requests.lock().unwrap().push((headers, body));
    let (pieces, end) = match up.behaviour {
        Behaviour::Fail(status) => {
            return (
                StatusCode::from_u16(status).unwrap(),
                axum::Json(json!({"error": {"message": "overloaded"}})),
            )
                .into_response();
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK.into_response();
        }
        Behaviour::Stream(p) => (p, true),
        Behaviour::Stall(p) => (p, false),
    };
    let role = format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    );
    let mut frames = vec![role, ": keep-alive\n\n".to_string()];
    frames.extend(pieces.iter().map(|p| chunk(p)));
    let body = futures::stream::iter(frames)
        .then(|f| async move {
            tokio::time::sleep(Duration::from_millis(15)).await;
            Ok::<_, std::io::Error>(f)
        })
        .chain(futures::stream::once(async move {
            if end {
                Ok("data: [DONE]\n\n".to_string())
            } else {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(String::new())
            }
        }));
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

/// An OpenAI-compatible endpoint on loopback; returns its `/v1` base URL
/// and the requests it received.
async fn spawn_upstream(behaviour: Behaviour) -> (String, Arc<Mutex<Vec<(HeaderMap, Value)>>>) {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(Upstream {
            behaviour,
            requests: requests.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/v1"), requests)
}

async fn llm_stack(url: &str) -> Stack {
    spawn_stack_with(llm_settings(url).set("VOXGATE_LLM_API_KEY", "sk-test-key")).await
}

/// A stack whose bot is the model at `url`, with `daily` characters of
/// language-model budget per user.
async fn budgeted_llm_stack(url: &str, daily: &str) -> Stack {
    spawn_stack_with(llm_settings(url).set("VOXGATE_LLM_DAILY_CHARS", daily)).await
}

fn llm_settings(url: &str) -> TestSettings {
    TestSettings::default()
        .set("VOXGATE_LLM_URL", url)
        .set("VOXGATE_LLM_MODEL", "tiny-test-model")
}

#[tokio::test]
async fn chat_messages_per_minute_are_limited_and_a_refused_one_is_not_stored() {
    let stack =
        spawn_stack_with(TestSettings::default().set("VOXGATE_CHAT_RATE_PER_MINUTE", "3")).await;
    let bob = stack.password_token("bob", "bob").await;
    for i in 0..3 {
        stack.chat_ok(&bob, &format!("hello number {i}")).await;
    }
    let refused = stack.chat(&bob, "one too many").await;
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let p = problem(refused, 429).await;
    detail_has(&p, "at most 3 a minute");
    assert_eq!(
        stack.app.count("SELECT count(*) FROM chat_messages").await,
        6
    );
    stack
        .app
        .sql("UPDATE chat_rate SET window_start = window_start - interval '61 seconds'")
        .await;
    stack.chat_ok(&bob, "one too many").await;
}

#[tokio::test]
async fn the_language_model_has_a_daily_budget_per_user() {
    // The model answers "Hello Bob. voxgate speaks replies." (34 characters).
    let pieces = vec!["Hello", " Bob", ".", " voxgate", " speaks", " replies", "."];
    let (url, requests) = spawn_upstream(Behaviour::Stream(pieces)).await;
    let stack = budgeted_llm_stack(&url, "60").await;
    let bob = stack.password_token("bob", "bob").await;
    // Sent 14, received 34.
    stack.chat_ok(&bob, "first question").await;
    assert_eq!(stack.app.count("SELECT chars FROM llm_usage").await, 48);
    // The next one would send its 12 characters with 48 of context.
    let p = problem(stack.chat(&bob, "tell me more").await, 429).await;
    detail_has(&p, "language-model budget of 60 characters");
    assert_eq!(
        requests.lock().unwrap().len(),
        1,
        "the model was not called"
    );
    assert_eq!(
        stack.app.count("SELECT count(*) FROM chat_messages").await,
        2
    );
    // Staff are not metered.
    let alice = stack.password_token("alice", "alice").await;
    stack.chat_ok(&alice, "tell me more").await;
    assert_eq!(
        stack
            .app
            .count("SELECT sum(chars)::bigint FROM llm_usage")
            .await,
        48
    );
}

#[tokio::test]
async fn a_model_that_could_not_answer_costs_nothing_from_the_budget() {
    let (url, requests) = spawn_upstream(Behaviour::Fail(503)).await;
    let stack = budgeted_llm_stack(&url, "1000").await;
    let bob = stack.password_token("bob", "bob").await;
    let reply = stack.chat_ok(&bob, "first question").await;
    assert_eq!(reply["reply"], voxgate::chat::llm::UNAVAILABLE);
    let (_, events) = stack.chat_stream(&bob, "second question").await;
    assert_eq!(events.last().unwrap().0, "done");
    assert_eq!(requests.lock().unwrap().len(), 2, "the model was asked");
    assert_eq!(
        stack
            .app
            .count("SELECT coalesce(sum(chars), 0)::bigint FROM llm_usage")
            .await,
        0,
        "neither the question nor the apology is charged"
    );
    assert_eq!(
        stack.app.count("SELECT count(*) FROM chat_messages").await,
        4
    );
}

#[tokio::test]
async fn a_message_that_cannot_be_stored_is_neither_charged_nor_sent_to_the_model() {
    let pieces = vec!["Hello", "."];
    let (url, requests) = spawn_upstream(Behaviour::Stream(pieces)).await;
    let stack = budgeted_llm_stack(&url, "60").await;
    let bob = stack.password_token("bob", "bob").await;
    stack
        .app
        .sql(
            "CREATE FUNCTION refuse_user_messages() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.author = 'user' THEN RAISE EXCEPTION 'injected fault'; END IF;
               RETURN NEW;
             END $$",
        )
        .await;
    stack
        .app
        .sql(
            "CREATE TRIGGER fault BEFORE INSERT ON chat_messages
             FOR EACH ROW EXECUTE FUNCTION refuse_user_messages()",
        )
        .await;
    problem(stack.chat(&bob, "first question").await, 500).await;
    assert_eq!(requests.lock().unwrap().len(), 0);
    assert_eq!(
        stack
            .app
            .count("SELECT coalesce(sum(chars), 0)::bigint FROM llm_usage")
            .await,
        0
    );
    stack.app.sql("DROP TRIGGER fault ON chat_messages").await;
    stack.chat_ok(&bob, "first question").await;
    assert_eq!(
        stack.app.count("SELECT chars FROM llm_usage").await,
        "first question".len() as i64 + "Hello.".len() as i64
    );
}

#[tokio::test]
async fn a_reply_is_stored_and_charged_even_when_its_client_leaves_half_way() {
    // Fifty pieces, 15 ms apart: the client gives up long before the end.
    let pieces = vec![" word"; 50];
    let (url, asked) = spawn_upstream(Behaviour::Stream(pieces)).await;
    let stack = budgeted_llm_stack(&url, "100000").await;
    let bob = stack.password_token("bob", "bob").await;
    let leaving = {
        let caller = stack.app.caller(&bob);
        tokio::spawn(async move {
            caller
                .post("/api/chat", &json!({ "message": "tell me a long story" }))
                .await
        })
    };
    // Leaves once the model is answering, not after a guessed time.
    for _ in 0..500 {
        if !asked.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(asked.lock().unwrap().len(), 1, "the model was asked");
    leaving.abort();
    let mut stored = 0;
    for _ in 0..100 {
        stored = stack.app.count("SELECT count(*) FROM chat_messages").await;
        if stored == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored, 2, "the reply was stored after bob left");
    assert_eq!(
        stack.app.count("SELECT chars FROM llm_usage").await,
        ("tell me a long story".len() + " word".repeat(50).trim().len()) as i64,
        "what was sent and received is charged"
    );
}

#[tokio::test]
async fn the_sweeper_drops_rows_nothing_reads_and_keeps_speech_a_reply_points_at() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let reply = stack.chat_ok(&bob, "who am i").await;
    let kept = reply["speech"]["key"].as_str().unwrap().to_string();
    let registered = stack
        .register_speech(&bob, &json!({"text": "Nobody keeps this one."}))
        .await;
    let dropped = registered["key"].as_str().unwrap().to_string();
    stack
        .app
        .sql("UPDATE tts_requests SET created_at = now() - interval '31 days'")
        .await;
    // Every meter's old windows and days, planted for bob: the sweeper's
    // list of meters and their (unchecked) statements must cover each.
    let meters = [
        voxgate::tts::METER,
        voxgate::chat::METER,
        voxgate::stt::METER,
    ];
    for m in meters {
        stack
            .app
            .sql(&format!(
                "INSERT INTO {} (user_id, window_start, count)
                 SELECT id, now() - interval '2 hours', 1 FROM users WHERE username = 'bob'
                 ON CONFLICT (user_id) DO UPDATE SET window_start = EXCLUDED.window_start",
                m.rate_table
            ))
            .await;
        stack
            .app
            .sql(&format!(
                "INSERT INTO {} (user_id, day, {}) SELECT id, (now() AT TIME ZONE 'UTC')::date - 5, 1
                 FROM users WHERE username = 'bob'",
                m.usage_table, m.amount
            ))
            .await;
    }
    voxgate::app::sweep(&stack.app.db).await.unwrap();
    for m in meters {
        let rate = format!("SELECT count(*) FROM {}", m.rate_table);
        assert_eq!(stack.app.count(&rate).await, 0, "{rate}");
        let old = format!(
            "SELECT count(*) FROM {} WHERE day < (now() AT TIME ZONE 'UTC')::date - 1",
            m.usage_table
        );
        assert_eq!(stack.app.count(&old).await, 0, "{old}");
    }
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM tts_requests")
        .fetch_all(&stack.app.db)
        .await
        .unwrap();
    assert_eq!(left, [kept], "{dropped} swept, the reply's speech kept");
    // The kept reply still plays.
    let audio = stack
        .app
        .caller(&bob)
        .get(format!("/api/tts/{}", left[0]))
        .await;
    assert_eq!(audio.status(), 200);
}

#[tokio::test]
async fn the_llm_bot_streams_tokens_and_speaks_the_first_sentence_early() {
    let pieces = vec!["Hello", " Bob", ".", " voxgate", " speaks", " replies", "."];
    let (url, requests) = spawn_upstream(Behaviour::Stream(pieces)).await;
    let stack = llm_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    stack.chat_ok(&bob, "first question").await;

    let (_, events) = stack.chat_stream(&bob, "tell me more").await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "delta").count(),
        7,
        "{names:?}"
    );
    let speech_at = names
        .iter()
        .position(|n| *n == "speech")
        .expect("a speech event");
    assert!(
        speech_at < names.len() - 2,
        "the first sentence is spoken before the reply ends: {names:?}"
    );
    let early = &events[speech_at].1;
    assert_eq!(early["text"], "Hello Bob.");
    assert_speech(&early["speech"]);
    let done = &events.last().unwrap().1;
    assert_eq!(names.last(), Some(&"done"));
    assert_eq!(done["reply"], "Hello Bob. voxgate speaks replies.");
    assert_speech(&done["restSpeech"]);
    assert_eq!(done["restOffset"], "Hello Bob. ".len());
    assert_ne!(done["restSpeech"]["key"], done["speech"]["key"]);

    let requests = requests.lock().unwrap();
    let (headers, body) = requests.last().unwrap();
    assert_eq!(headers["authorization"], "Bearer sk-test-key");
    assert_eq!(body["model"], "tiny-test-model");
    assert_eq!(body["stream"], true);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"].as_str().unwrap().contains("bob"),
        "the model knows who asks"
    );
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(messages[1]["content"], "first question");
    assert_eq!(messages[3]["content"], "tell me more");
}

#[tokio::test]
async fn the_model_sees_only_the_messages_of_the_conversation_asked_in() {
    let (url, requests) = spawn_upstream(Behaviour::Stream(vec!["Noted."])).await;
    let stack = llm_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    stack.chat_ok(&bob, "about the garden").await;
    let other = stack
        .app
        .caller(&bob)
        .post("/api/chat/conversations", &json!({}))
        .await;
    let other: Value = other.json().await.unwrap();
    let reply = stack
        .app
        .caller(&bob)
        .post(
            "/api/chat",
            &json!({"message": "about the kitchen", "conversationId": other["id"]}),
        )
        .await;
    assert_eq!(reply.status(), 200);
    let requests = requests.lock().unwrap();
    let (_, body) = requests.last().unwrap();
    let said: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        said,
        ["about the kitchen"],
        "nothing of the other conversation"
    );
}

#[tokio::test]
async fn an_llm_failure_becomes_a_polite_reply_not_an_error() {
    let (url, _) = spawn_upstream(Behaviour::Fail(503)).await;
    let stack = llm_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    let reply = stack.chat_ok(&bob, "hello?").await;
    assert_eq!(reply["reply"], voxgate::chat::llm::UNAVAILABLE);
    assert_speech(&reply["speech"]);
    let (_, events) = stack.chat_stream(&bob, "hello again?").await;
    assert_eq!(
        events.last().unwrap().1["reply"],
        voxgate::chat::llm::UNAVAILABLE
    );
}

#[tokio::test]
async fn an_unreachable_llm_becomes_a_polite_reply() {
    let url = format!("http://127.0.0.1:{}/v1", crate::helpers::free_port());
    let stack = llm_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    let reply = stack.chat_ok(&bob, "anyone there?").await;
    assert_eq!(reply["reply"], voxgate::chat::llm::UNAVAILABLE);
}

fn quick_bot(url: &str) -> voxgate::chat::llm::LlmBot {
    let config = voxgate::config::LlmConfig {
        url: url::Url::parse(url).unwrap(),
        model: "m".into(),
        daily_chars: 1000,
        api_key: None,
    };
    voxgate::chat::llm::LlmBot::new(
        &config,
        voxgate::chat::llm::LlmTimeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_millis(400),
            idle: Duration::from_millis(400),
            total: Duration::from_secs(5),
        },
    )
    .unwrap()
}

async fn ask(bot: &voxgate::chat::llm::LlmBot) -> String {
    use voxgate::chat::bot::{Ask, Bot, Identity};
    let reply = bot
        .reply(Ask {
            message: "hi".into(),
            identity: Identity {
                username: "bob".into(),
                first_name: "Bob".into(),
                last_name: String::new(),
                email: None,
                roles: Default::default(),
            },
            history: Vec::new(),
        })
        .await;
    reply.deltas.collect::<Vec<_>>().await.concat()
}

#[tokio::test]
async fn an_llm_that_never_answers_times_out_politely() {
    let (url, _) = spawn_upstream(Behaviour::Hang).await;
    let started = std::time::Instant::now();
    assert_eq!(ask(&quick_bot(&url)).await, voxgate::chat::llm::UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn an_llm_stream_that_stalls_keeps_what_came_and_apologises() {
    let (url, _) = spawn_upstream(Behaviour::Stall(vec!["Half", " an", " answer"])).await;
    let started = std::time::Instant::now();
    let text = ask(&quick_bot(&url)).await;
    assert_eq!(
        text,
        format!("Half an answer{}", voxgate::chat::llm::CUT_OFF)
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}
