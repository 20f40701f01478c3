//! Several conversations per user: listed newest first and titled by their
//! first message, renamed, deleted, paged one by one, searched; nobody
//! reaches anybody else's; a single history from before conversations
//! becomes its user's first conversation.

use serde_json::{Value, json};

use crate::helpers::{TestDatabase, problem};
use crate::stack::{Stack, spawn_stack};

impl Stack {
    /// Sends `message`, in `conversation` if given; the reply.
    async fn tell(&self, token: &str, message: &str, conversation: Option<&str>) -> Value {
        let mut body = json!({ "message": message });
        if let Some(id) = conversation {
            body["conversationId"] = json!(id);
        }
        let r = self.app.caller(token).post("/api/chat", &body).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    async fn new_conversation(&self, token: &str, body: &Value) -> Value {
        let r = self
            .app
            .caller(token)
            .post("/api/chat/conversations", body)
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    async fn conversations(&self, token: &str, query: &str) -> Value {
        self.app
            .caller(token)
            .get_json(format!("/api/chat/conversations{query}"))
            .await
    }

    async fn messages_of(&self, token: &str, id: &str) -> Vec<String> {
        let page = self
            .app
            .caller(token)
            .get_json(format!("/api/chat/conversations/{id}/messages"))
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    }
}

fn titles(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn conversations_are_listed_newest_first_titled_by_their_first_message_and_renamed() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    assert_eq!(stack.conversations(&bob, "").await["items"], json!([]));
    // A message without a conversation starts one, titled by the message.
    let first = stack.tell(&bob, "  What   can you\n do?  ", None).await;
    let first_id = first["conversationId"].as_str().unwrap().to_string();
    // An empty one is "New conversation" until its first message.
    let created = stack.new_conversation(&bob, &json!({})).await;
    assert_eq!(created["title"], "New conversation");
    assert_eq!(created["messages"], 0);
    let second_id = created["id"].as_str().unwrap().to_string();
    assert_ne!(second_id, first_id);
    let long = "A question long enough that its title has to be cut somewhere sensible.";
    let reply = stack.tell(&bob, long, Some(&second_id)).await;
    assert_eq!(reply["conversationId"], second_id.as_str());
    let page = stack.conversations(&bob, "").await;
    assert_eq!(
        titles(&page),
        [&long[..60], "What can you do?"],
        "newest first, titled by the first message on one line"
    );
    assert_eq!(page["items"][0]["messages"], 2);
    assert!(page["items"][0]["createdAt"].is_string());
    // A later message does not retitle it.
    stack
        .tell(&bob, "And another thing", Some(&second_id))
        .await;
    assert_eq!(titles(&stack.conversations(&bob, "").await)[0], &long[..60]);
    // Renaming moves it to the top.
    let renamed = stack
        .app
        .caller(&bob)
        .patch(
            format!("/api/chat/conversations/{first_id}"),
            &json!({"title": "  Capabilities "}),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["title"], "Capabilities");
    assert_eq!(
        titles(&stack.conversations(&bob, "").await),
        ["Capabilities", &long[..60]]
    );
    for bad in [json!({"title": "   "}), json!({"title": "x".repeat(201)})] {
        let refused = stack
            .app
            .caller(&bob)
            .patch(format!("/api/chat/conversations/{first_id}"), &bad)
            .await;
        let body = problem(refused, 422).await;
        assert_eq!(body["errors"][0]["field"], "title");
    }
    let refused = stack
        .app
        .caller(&bob)
        .post("/api/chat/conversations", &json!({"title": ""}))
        .await;
    problem(refused, 422).await;
    // Paging, one at a time.
    let one = stack.conversations(&bob, "?limit=1").await;
    assert_eq!(titles(&one), ["Capabilities"]);
    let next = one["nextBefore"].as_str().unwrap();
    let two = stack
        .conversations(&bob, &format!("?limit=1&before={next}"))
        .await;
    assert_eq!(titles(&two), [&long[..60]]);
    assert_eq!(two["nextBefore"], Value::Null);
    let over = stack
        .app
        .caller(&bob)
        .get("/api/chat/conversations?limit=101")
        .await;
    problem(over, 422).await;
}

#[tokio::test]
async fn messages_stay_in_their_conversation_and_the_history_is_the_latest_one() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let a = stack.tell(&bob, "first topic", None).await["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    let b = stack
        .new_conversation(&bob, &json!({"title": "Second"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    stack.tell(&bob, "second topic", Some(&b)).await;
    // Without an id, a message goes to the most recently used one.
    stack.tell(&bob, "more of the second", None).await;
    let in_a = stack.messages_of(&bob, &a).await;
    let in_b = stack.messages_of(&bob, &b).await;
    assert_eq!(in_a.len(), 2);
    assert_eq!(in_a[0], "first topic");
    assert_eq!(in_b.len(), 4);
    assert_eq!(in_b[0], "second topic");
    assert_eq!(in_b[2], "more of the second");
    let history = stack.app.caller(&bob).get_json("/api/chat/history").await;
    assert_eq!(
        history["items"].as_array().unwrap().len(),
        4,
        "the latest one"
    );
    // Paged within a conversation.
    let page = stack
        .app
        .caller(&bob)
        .get_json(format!("/api/chat/conversations/{b}/messages?limit=3"))
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let before = page["nextBefore"].as_i64().unwrap();
    let rest = stack
        .app
        .caller(&bob)
        .get_json(format!(
            "/api/chat/conversations/{b}/messages?before={before}"
        ))
        .await;
    assert_eq!(rest["items"][0]["text"], "second topic");
    assert_eq!(rest["nextBefore"], Value::Null);
}

#[tokio::test]
async fn another_users_conversation_does_not_exist_for_them() {
    let stack = spawn_stack().await;
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let hers = stack.tell(&alice, "alice's own words", None).await["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    let bobs = stack.app.caller(&bob);
    let unknown = uuid::Uuid::new_v4();
    for id in [hers.clone(), unknown.to_string()] {
        problem(
            bobs.get(format!("/api/chat/conversations/{id}/messages"))
                .await,
            404,
        )
        .await;
        problem(
            bobs.patch(
                format!("/api/chat/conversations/{id}"),
                &json!({"title": "mine"}),
            )
            .await,
            404,
        )
        .await;
        problem(
            bobs.delete(format!("/api/chat/conversations/{id}")).await,
            404,
        )
        .await;
        problem(
            bobs.post("/api/chat", &json!({"message": "hi", "conversationId": id}))
                .await,
            404,
        )
        .await;
        problem(
            bobs.get(format!("/api/chat/conversations?before={id}"))
                .await,
            404,
        )
        .await;
    }
    problem(
        bobs.get("/api/chat/conversations/not-a-uuid/messages")
            .await,
        404,
    )
    .await;
    assert_eq!(
        stack
            .app
            .count("SELECT count(*) FROM chat_messages m JOIN users u ON u.id = m.user_id WHERE u.username = 'bob'")
            .await,
        0,
        "nothing of bob's was stored"
    );
    assert_eq!(stack.messages_of(&alice, &hers).await.len(), 2);
    let title = stack.conversations(&alice, "").await;
    assert_eq!(titles(&title), ["alice's own words"]);
}

#[tokio::test]
async fn deleting_a_conversation_removes_it_and_its_messages_only() {
    let stack = spawn_stack().await;
    let bob = stack.password_token("bob", "bob").await;
    let keep = stack.tell(&bob, "keep this", None).await["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    let drop = stack.new_conversation(&bob, &json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    stack.tell(&bob, "drop this", Some(&drop)).await;
    let gone = stack
        .app
        .caller(&bob)
        .delete(format!("/api/chat/conversations/{drop}"))
        .await;
    assert_eq!(gone.status(), 204);
    assert_eq!(titles(&stack.conversations(&bob, "").await), ["keep this"]);
    assert_eq!(
        stack
            .app
            .count("SELECT count(*) FROM chat_messages WHERE body = 'drop this'")
            .await,
        0
    );
    assert_eq!(stack.messages_of(&bob, &keep).await.len(), 2);
    let again = stack
        .app
        .caller(&bob)
        .delete(format!("/api/chat/conversations/{drop}"))
        .await;
    problem(again, 404).await;
    // Clearing the history deletes every conversation.
    let cleared = stack.app.caller(&bob).delete("/api/chat/history").await;
    assert_eq!(cleared.status(), 204);
    assert_eq!(stack.conversations(&bob, "").await["items"], json!([]));
}

#[tokio::test]
async fn search_finds_ones_own_messages_with_their_conversation_and_takes_wildcards_literally() {
    let stack = spawn_stack().await;
    let alice = stack.password_token("alice", "alice").await;
    let bob = stack.password_token("bob", "bob").await;
    let bobs = stack.tell(&bob, "Is the answer 100% sure?", None).await["conversationId"]
        .as_str()
        .unwrap()
        .to_string();
    stack.tell(&bob, "A plain question", None).await;
    stack.tell(&alice, "Also 100% mine", None).await;
    let found = stack
        .app
        .caller(&bob)
        .get_json("/api/chat/search?q=100%25")
        .await;
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only bob's own: {found}");
    assert_eq!(items[0]["conversationId"], bobs.as_str());
    assert_eq!(items[0]["conversationTitle"], "Is the answer 100% sure?");
    assert_eq!(items[0]["message"]["text"], "Is the answer 100% sure?");
    assert_eq!(items[0]["message"]["author"], "user");
    let any_case = stack
        .app
        .caller(&bob)
        .get_json("/api/chat/search?q=PLAIN%20QUEST")
        .await;
    assert_eq!(any_case["items"].as_array().unwrap().len(), 1);
    // `_` and `%` match themselves, not any character.
    for literal in ["10_", "s%re"] {
        let none = stack
            .app
            .caller(&bob)
            .get_json(format!("/api/chat/search?q={}", urlencoding(literal)))
            .await;
        assert_eq!(none["items"], json!([]), "{literal}");
    }
    for bad in ["q=x", "q=%20%20", "q=abc&limit=0"] {
        problem(
            stack
                .app
                .caller(&bob)
                .get(format!("/api/chat/search?{bad}"))
                .await,
            422,
        )
        .await;
    }
}

fn urlencoding(text: &str) -> String {
    serde_urlencoded::to_string([("q", text)])
        .unwrap()
        .trim_start_matches("q=")
        .to_string()
}

#[tokio::test]
async fn cookie_sessions_must_send_the_csrf_token_to_change_conversations() {
    let stack = spawn_stack().await;
    let (client, csrf) = stack.signed_in("bob").await;
    let origin = stack.app.url("");
    let browser = |with_token: bool| {
        let caller = stack.browser(&client).header("origin", &origin);
        match with_token {
            true => caller.header("x-csrf-token", &csrf),
            false => caller,
        }
    };
    problem(
        browser(false)
            .post("/api/chat/conversations", &json!({}))
            .await,
        403,
    )
    .await;
    let created = browser(true)
        .post("/api/chat/conversations", &json!({}))
        .await;
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/chat/conversations/{id}");
    problem(
        browser(false).patch(&path, &json!({"title": "t"})).await,
        403,
    )
    .await;
    problem(browser(false).delete(&path).await, 403).await;
    assert_eq!(browser(true).delete(&path).await.status(), 204);
}

#[tokio::test]
async fn the_single_history_from_before_becomes_each_users_first_conversation() {
    use std::borrow::Cow;
    // A database as it was before conversations.
    let database = TestDatabase::empty().await;
    let pool = database.pool().await;
    let before = sqlx::migrate::Migrator {
        migrations: Cow::Owned(
            voxgate::db::MIGRATOR
                .iter()
                .filter(|m| m.version < 18)
                .cloned()
                .collect(),
        ),
        ..voxgate::db::MIGRATOR
    };
    before.run(&pool).await.unwrap();
    for (user, messages) in [
        (
            "carol",
            &["  Where is\n my order?", "It is on its way."][..],
        ),
        ("dave", &["Hello"][..]),
    ] {
        sqlx::query("INSERT INTO users (username) VALUES ($1)")
            .bind(user)
            .execute(&pool)
            .await
            .unwrap();
        for (i, text) in messages.iter().enumerate() {
            sqlx::query(
                "INSERT INTO chat_messages (user_id, author, body)
                 SELECT id, $2, $3 FROM users WHERE username = $1",
            )
            .bind(user)
            .bind(if i % 2 == 0 { "user" } else { "bot" })
            .bind(text)
            .execute(&pool)
            .await
            .unwrap();
        }
    }
    sqlx::query("INSERT INTO users (username) VALUES ('erin')")
        .execute(&pool)
        .await
        .unwrap();
    voxgate::db::MIGRATOR.run(&pool).await.unwrap();
    let conversations: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT u.username::text, c.title, (SELECT count(*) FROM chat_messages m WHERE m.conversation_id = c.id)
           FROM chat_conversations c JOIN users u ON u.id = c.user_id ORDER BY u.username",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        conversations,
        [
            ("carol".into(), "Where is my order?".into(), 2),
            ("dave".into(), "Hello".into(), 1),
        ],
        "one each, titled by the first message; none for a user without messages"
    );
    pool.close().await;
}
