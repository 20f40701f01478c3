//! Control over a reply: stopping it while it is written (on the instance
//! writing it or another), writing the last one again, and replies shown
//! from Markdown and spoken without it. The model is an OpenAI-compatible
//! endpoint served from inside the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Caller, TestSettings, detail_has, problem};
use crate::stack::{Stack, spawn_stack_with};

/// A model that answers with `pieces`, then (if `endless`) "word " every
/// 20 ms until its client goes away.
#[derive(Clone)]
struct Model {
    pieces: Vec<&'static str>,
    endless: bool,
    sent: Arc<AtomicUsize>,
    gone: Arc<AtomicBool>,
    asked: Arc<std::sync::Mutex<Vec<Value>>>,
}

/// Set when the response body is dropped: the client hung up.
struct Hangup(Arc<AtomicBool>);

impl Drop for Hangup {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn chunk(text: &str) -> String {
    format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"content": text}}]})
    )
}

async fn completions(
    State(model): State<Model>,
    _headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    model.asked.lock().unwrap().push(body);
    let hangup = Hangup(model.gone.clone());
    let first: Vec<String> = model.pieces.iter().map(|p| chunk(p)).collect();
    let endless = model.endless;
    let sent = model.sent.clone();
    let body = futures::stream::iter(first)
        .chain(futures::stream::unfold((), move |_| async move {
            if !endless {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((chunk("word "), ()))
        }))
        .chain(futures::stream::once(async move {
            "data: [DONE]\n\n".to_string()
        }))
        .map(move |frame| {
            let _ = &hangup;
            sent.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(frame)
        });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

async fn spawn_model(pieces: Vec<&'static str>, endless: bool) -> (String, Model) {
    let model = Model {
        pieces,
        endless,
        sent: Arc::default(),
        gone: Arc::default(),
        asked: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(model.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/v1"), model)
}

async fn model_stack(url: &str) -> Stack {
    spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_LLM_URL", url)
            .set("VOXGATE_LLM_MODEL", "tiny-test-model")
            .set("VOXGATE_LLM_DAILY_CHARS", "1000000"),
    )
    .await
}

/// A reply's events as they arrive.
struct Events {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Events {
    async fn open(caller: &Caller, path: &str, body: &Value) -> Events {
        let response = caller
            .clone()
            .header("accept", "text/event-stream")
            .post(path, body)
            .await;
        assert_eq!(response.status(), 200);
        Events {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "message".to_string();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let bytes = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("an event within 20 s")?
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&bytes));
        }
    }

    /// Reads up to the event `name`, collecting the deltas' text on the
    /// way.
    async fn until(&mut self, name: &str, text: &mut String) -> Value {
        while let Some((event, data)) = self.next().await {
            if event == "delta" {
                text.push_str(data["text"].as_str().unwrap());
            }
            if event == name {
                return data;
            }
        }
        panic!("the stream ended before `{name}`");
    }
}

/// Starts a reply to "tell me everything" and reads until `deltas` pieces
/// arrived; returns the events, the id of the message answered, and the
/// text so far.
async fn writing(caller: &Caller, deltas: usize) -> (Events, i64, String) {
    let mut events = Events::open(
        caller,
        "/api/chat",
        &json!({"message": "tell me everything"}),
    )
    .await;
    let mut text = String::new();
    let started = events.until("started", &mut text).await;
    let id = started["userMessageId"].as_i64().unwrap();
    assert!(started["conversationId"].is_string());
    for _ in 0..deltas {
        events.until("delta", &mut text).await;
    }
    (events, id, text)
}

/// Waits until `check` holds, for at most five seconds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..250 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within five seconds");
}

#[tokio::test]
async fn a_stopped_reply_keeps_what_was_written_and_ends_the_model_call() {
    let (url, model) = spawn_model(vec!["Once upon a time, "], true).await;
    let stack = model_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    let caller = stack.app.caller(&bob);
    let (mut events, id, mut text) = writing(&caller, 4).await;

    let stop = caller
        .post(format!("/api/chat/messages/{id}/stop"), &json!({}))
        .await;
    assert_eq!(stop.status(), 202);
    let done = events.until("done", &mut text).await;
    assert_eq!(done["stopped"], true);
    assert_eq!(done["userMessageId"], id);
    assert_eq!(done["reply"], text.trim(), "what was written, all of it");
    assert!(text.starts_with("Once upon a time, word"), "{text}");
    assert_eq!(done["followUps"], json!([]));
    assert!(done["speech"]["url"].is_string(), "what was said is spoken");

    eventually("the model's answer being hung up on", || {
        model.gone.load(Ordering::SeqCst)
    })
    .await;
    let sent = model.sent.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        model.sent.load(Ordering::SeqCst),
        sent,
        "nothing more asked of the model"
    );

    let history = caller.get_json("/api/chat/history").await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["stopped"], true);
    assert_eq!(items[1]["text"], done["reply"]);
    assert_eq!(items[0]["stopped"], false);
    // Charged what was sent and what came back before the stop.
    assert_eq!(
        stack.app.count("SELECT chars FROM llm_usage").await,
        ("tell me everything".len() + text.trim().len()) as i64
    );
    // Stopping it again: it is complete now.
    let again = caller
        .post(format!("/api/chat/messages/{id}/stop"), &json!({}))
        .await;
    detail_has(&problem(again, 409).await, "already complete");
}

#[tokio::test]
async fn a_stop_sent_to_another_instance_stops_the_reply() {
    let (url, model) = spawn_model(vec![], true).await;
    let stack = model_stack(&url).await;
    let other = stack.app.another_instance().await;
    let bob = stack.password_token("bob", "bob").await;
    let (mut events, id, mut text) = writing(&stack.app.caller(&bob), 3).await;

    let stop = other
        .caller(&bob)
        .post(format!("/api/chat/messages/{id}/stop"), &json!({}))
        .await;
    assert_eq!(stop.status(), 202);
    let done = events.until("done", &mut text).await;
    assert_eq!(done["stopped"], true);
    assert_eq!(done["reply"], text.trim());
    eventually("the model's answer being hung up on", || {
        model.gone.load(Ordering::SeqCst)
    })
    .await;
}

#[tokio::test]
async fn a_json_reply_can_be_stopped_too() {
    let (url, model) = spawn_model(vec!["Partial "], true).await;
    let stack = model_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    let caller = stack.app.caller(&bob);
    let asking = {
        let caller = caller.clone();
        tokio::spawn(async move { caller.post("/api/chat", &json!({"message": "go on"})).await })
    };
    let mut id = 0;
    for _ in 0..250 {
        id = stack
            .app
            .count("SELECT coalesce(max(id), 0) FROM chat_messages WHERE author = 'user'")
            .await;
        if id > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(id > 0, "the message was stored");
    // Stopped once the model has written a few pieces.
    eventually("the model writing", || {
        model.sent.load(Ordering::SeqCst) >= 5
    })
    .await;
    let stop = caller
        .post(format!("/api/chat/messages/{id}/stop"), &json!({}))
        .await;
    assert_eq!(stop.status(), 202);
    let reply: Value = asking.await.unwrap().json().await.unwrap();
    assert_eq!(reply["stopped"], true);
    assert!(reply["reply"].as_str().unwrap().starts_with("Partial"));
}

#[tokio::test]
async fn stops_are_refused_for_what_cannot_be_stopped() {
    let (url, _model) = spawn_model(vec!["Done."], false).await;
    let stack = model_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    let alice = stack.password_token("alice", "alice").await;
    let caller = stack.app.caller(&bob);
    let reply: Value = caller
        .post("/api/chat", &json!({"message": "hi"}))
        .await
        .json()
        .await
        .unwrap();
    let mine = reply["userMessageId"].as_i64().unwrap();
    let answer = reply["id"].as_i64().unwrap();

    let stop = |who: &str, id: String| {
        let caller = stack.app.caller(who);
        async move {
            caller
                .post(format!("/api/chat/messages/{id}/stop"), &json!({}))
                .await
        }
    };
    detail_has(
        &problem(stop(&bob, mine.to_string()).await, 409).await,
        "already complete",
    );
    detail_has(
        &problem(stop(&bob, answer.to_string()).await, 409).await,
        "is a reply",
    );
    // Someone else's message does not exist for alice.
    detail_has(
        &problem(stop(&alice, mine.to_string()).await, 404).await,
        "no message",
    );
    problem(stop(&bob, "999999".into()).await, 404).await;
    problem(stop(&bob, "not-a-number".into()).await, 404).await;
    problem(
        stack
            .app
            .anonymous()
            .post(format!("/api/chat/messages/{mine}/stop"), &json!({}))
            .await,
        401,
    )
    .await;
}

#[tokio::test]
async fn cookie_sessions_must_send_the_csrf_token_to_stop_or_regenerate() {
    let (url, _model) = spawn_model(vec!["Done."], false).await;
    let stack = model_stack(&url).await;
    let (client, csrf) = stack.signed_in("bob").await;
    let origin = stack.app.url("");
    let browser = |with_token: bool| {
        let caller = stack.browser(&client).header("origin", &origin);
        match with_token {
            true => caller.header("x-csrf-token", &csrf),
            false => caller,
        }
    };
    let reply: Value = browser(true)
        .post("/api/chat", &json!({"message": "hi"}))
        .await
        .json()
        .await
        .unwrap();
    let conversation = reply["conversationId"].as_str().unwrap();
    let mine = reply["userMessageId"].as_i64().unwrap();
    let regenerate = format!("/api/chat/conversations/{conversation}/regenerate");
    problem(browser(false).post(&regenerate, &json!({})).await, 403).await;
    let stop = format!("/api/chat/messages/{mine}/stop");
    problem(browser(false).post(&stop, &json!({})).await, 403).await;
    assert_eq!(
        browser(true).post(&regenerate, &json!({})).await.status(),
        200
    );
}

#[tokio::test]
async fn regenerating_replaces_the_last_reply_with_a_new_answer_to_the_same_message() {
    let (url, model) = spawn_model(vec!["An ", "answer."], false).await;
    let stack = model_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    let caller = stack.app.caller(&bob);
    let first: Value = caller
        .post("/api/chat", &json!({"message": "first question"}))
        .await
        .json()
        .await
        .unwrap();
    let second: Value = caller
        .post("/api/chat", &json!({"message": "second question"}))
        .await
        .json()
        .await
        .unwrap();
    let conversation = second["conversationId"].as_str().unwrap().to_string();
    let path = format!("/api/chat/conversations/{conversation}/regenerate");

    let mut events = Events::open(&caller, &path, &json!({})).await;
    let mut text = String::new();
    let started = events.until("started", &mut text).await;
    assert_eq!(started["userMessageId"], second["userMessageId"]);
    let done = events.until("done", &mut text).await;
    assert_eq!(done["reply"], "An answer.");
    assert_eq!(done["userMessageId"], second["userMessageId"]);
    assert_ne!(done["id"], second["id"]);

    // The model saw the conversation up to the message, not the old reply.
    let asked = model.asked.lock().unwrap().last().cloned().unwrap();
    let said: Vec<&str> = asked["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(said, ["first question", "An answer.", "second question"]);

    let history = caller
        .get_json(format!("/api/chat/conversations/{conversation}/messages"))
        .await;
    let ids: Vec<&Value> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(
        ids,
        [
            &first["userMessageId"],
            &first["id"],
            &second["userMessageId"],
            &done["id"]
        ],
        "the old reply is gone, the new one follows the message"
    );
    // As JSON too, and charged like sending the message again.
    let charged = stack.app.count("SELECT chars FROM llm_usage").await;
    let again = caller.post(&path, &json!({})).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["userMessageId"], second["userMessageId"]);
    let sent = ["first question", "An answer.", "second question"]
        .iter()
        .map(|s| s.len())
        .sum::<usize>()
        + "An answer.".len();
    assert_eq!(
        stack.app.count("SELECT chars FROM llm_usage").await,
        charged + sent as i64
    );
}

#[tokio::test]
async fn regenerating_is_refused_without_a_message_or_in_someone_elses_conversation() {
    let (url, _model) = spawn_model(vec!["Fine."], false).await;
    let stack = model_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    let alice = stack.password_token("alice", "alice").await;
    let caller = stack.app.caller(&bob);
    let empty: Value = caller
        .post("/api/chat/conversations", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let id = empty["id"].as_str().unwrap();
    let path = format!("/api/chat/conversations/{id}/regenerate");
    detail_has(
        &problem(caller.post(&path, &json!({})).await, 409).await,
        "no message of yours",
    );
    caller
        .post(
            "/api/chat",
            &json!({"message": "hello", "conversationId": id}),
        )
        .await;
    detail_has(
        &problem(stack.app.caller(&alice).post(&path, &json!({})).await, 404).await,
        "no conversation",
    );
    problem(
        caller
            .post("/api/chat/conversations/not-a-uuid/regenerate", &json!({}))
            .await,
        404,
    )
    .await;
    assert_eq!(
        stack
            .app
            .count("SELECT count(*) FROM chat_messages WHERE author = 'bot'")
            .await,
        1,
        "alice's attempt removed nothing"
    );
}

#[tokio::test]
async fn markdown_replies_are_shown_as_safe_html_and_spoken_without_markup() {
    let (url, _model) = spawn_model(
        vec![
            "Use **bold** and [a link](https://example.com) ",
            "<img src=x onerror=alert(1)>.\n\n",
            "```sh\nrm -rf /\n```\n\n- one\n- two",
        ],
        false,
    )
    .await;
    let stack = model_stack(&url).await;
    let bob = stack.password_token("bob", "bob").await;
    let caller = stack.app.caller(&bob);
    let reply: Value = caller
        .post("/api/chat", &json!({"message": "format something"}))
        .await
        .json()
        .await
        .unwrap();
    let html = reply["html"].as_str().unwrap();
    assert!(html.contains("<strong>bold</strong>"), "{html}");
    assert!(
        html.contains(
            r#"<a href="https://example.com" rel="noopener noreferrer" target="_blank">a link</a>"#
        ),
        "{html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("<pre><code data-language=\"sh\">rm -rf /"),
        "{html}"
    );
    assert!(html.contains("<ul>\n<li>one</li>"), "{html}");

    let key = reply["speech"]["key"].as_str().unwrap();
    let spoken = stack.app.spoken_text(key).await;
    let words: Vec<&str> = spoken.split_whitespace().collect();
    assert_eq!(
        words.join(" "),
        "Use bold and a link <img src=x onerror=alert(1)>. one two",
        "the words, without markup or the code block"
    );

    let history = caller.get_json("/api/chat/history").await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(
        items[0]["html"],
        Value::Null,
        "the user's text is shown as written"
    );
    assert_eq!(items[1]["html"], reply["html"]);
    assert_eq!(items[1]["text"], reply["reply"]);
}
