//! Browser sessions: the cookie that carries one, a fresh id at every
//! sign-in, refreshing the access token behind it (with Keycloak slow or
//! gone), and the idle and absolute lifetimes.

use std::time::Duration;

use crate::helpers::TestSettings;
use crate::stack::{REALM, browser, spawn_stack, spawn_stack_with, spawn_with_bob};

use super::helpers::{make_access_tokens_due, open_in};

#[tokio::test]
async fn session_cookie_is_http_only_and_tokens_never_reach_the_browser() {
    let stack = spawn_stack().await;
    let client = browser();
    let callback = stack.login_until_callback(&client, "bob", "bob", "/").await;
    let done = open_in(&client, &callback).await;
    let cookies: Vec<String> = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("voxgate_session="))
        .expect("session cookie");
    assert!(session.contains("HttpOnly"));
    assert!(session.contains("SameSite=Lax"));
    assert!(session.contains("Path=/"));
    for c in &cookies {
        assert!(!c.contains("eyJ"), "no JWT in cookies: {c}");
    }
}

#[tokio::test]
async fn signing_in_rotates_the_session_id_and_kills_the_old_one() {
    let (stack, client) = spawn_with_bob().await;
    let first: Vec<u8> = sqlx::query_scalar("SELECT id_hash FROM sessions")
        .fetch_one(&stack.app.db)
        .await
        .unwrap();
    stack.browser_login_with(&client, "bob", "bob", "/").await;
    let remaining: Vec<Vec<u8>> = sqlx::query_scalar("SELECT id_hash FROM sessions")
        .fetch_all(&stack.app.db)
        .await
        .unwrap();
    assert_eq!(remaining.len(), 1);
    assert_ne!(remaining[0], first, "new id after sign-in");

    // A session id planted before sign-in (fixation) never becomes valid.
    let planted = browser();
    let cookie_url = url::Url::parse(&stack.app.url("/")).unwrap();
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str("voxgate_session=attacker-chosen-value; Path=/", &cookie_url);
    let victim = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    let _ = planted;
    stack.browser_login_with(&victim, "bob", "bob", "/").await;
    let attacker = reqwest::Client::new();
    let response = stack
        .browser(&attacker)
        .header("cookie", "voxgate_session=attacker-chosen-value")
        .get("/api/me")
        .await;
    assert_eq!(response.status(), 401);
    assert_eq!(stack.me_status(&victim).await, 200);
}

#[tokio::test]
async fn a_session_refreshes_its_access_token_and_ends_when_refresh_is_refused() {
    let (stack, client) = spawn_with_bob().await;
    let before = stack.session_column("access_token").await;
    make_access_tokens_due(&stack).await;
    assert_eq!(stack.me_status(&client).await, 200);
    let after = stack.session_column("access_token").await;
    assert_ne!(before, after, "access token was refreshed");

    // Keycloak unreachable during refresh: the session lives on while its
    // access token is valid.
    make_access_tokens_due(&stack).await;
    stack.kc.go_down().await;
    assert_eq!(stack.me_status(&client).await, 200);
    stack.kc.come_back().await.unwrap();

    // Refresh refused (Keycloak session gone): the local session ends.
    stack.kc.expire_all_tokens(REALM);
    make_access_tokens_due(&stack).await;
    assert_eq!(stack.me_status(&client).await, 401);
    let left = stack.app.count("SELECT count(*) FROM sessions").await;
    assert_eq!(left, 0);
}

#[tokio::test]
async fn bearer_requests_keep_working_while_many_sessions_refresh_against_a_slow_keycloak() {
    // A pool of four: if a refresh held its connection while Keycloak
    // answers, twenty slow refreshes would starve every other request.
    let stack = spawn_stack_with(
        TestSettings::default()
            .set("VOXGATE_DATABASE_MAX_CONNECTIONS", "4")
            .set("VOXGATE_SIGN_INS_PER_ADDRESS", "100"),
    )
    .await;
    let token = stack.password_token("alice", "alice").await;
    assert_eq!(stack.app.bearer_status(&token).await, 200);
    let mut browsers = Vec::new();
    for _ in 0..20 {
        browsers.push(stack.browser_login("bob", "bob", "/").await.0);
    }
    make_access_tokens_due(&stack).await;
    stack.kc.set_latency(Duration::from_secs(3));
    let refreshing = futures::future::join_all(browsers.iter().map(|b| stack.me_status(b)));
    // Reading the history needs a database connection on every call.
    let history = || async {
        let response = stack.app.caller(&token).get("/api/chat/history").await;
        response.status().as_u16()
    };
    let bearer = async {
        // Once the refreshes are waiting on Keycloak.
        tokio::time::sleep(Duration::from_millis(500)).await;
        futures::future::join_all((0..10).map(|_| history())).await
    };
    let (sessions, bearers) = tokio::join!(refreshing, bearer);
    stack.kc.set_latency(Duration::ZERO);
    assert!(bearers.iter().all(|s| *s == 200), "bearer: {bearers:?}");
    assert!(sessions.iter().all(|s| *s == 200), "sessions: {sessions:?}");
    let refreshed = stack
        .app
        .count(
            "SELECT count(*) FROM sessions WHERE access_expires_at > now() + interval '1 minute'",
        )
        .await;
    assert_eq!(refreshed, 20, "every session got new tokens");
}

/// Signs bob in, ages his session with `statement`, and says whether the
/// session still works.
async fn session_survives(statement: &str) -> bool {
    let (stack, client) = spawn_with_bob().await;
    stack.app.sql(statement).await;
    stack.me_status(&client).await == 200
}

#[tokio::test]
async fn idle_sessions_expire() {
    assert!(
        session_survives("UPDATE sessions SET last_seen_at = now() - interval '29 minutes'").await
    );
    assert!(
        !session_survives("UPDATE sessions SET last_seen_at = now() - interval '31 minutes'").await
    );
}

#[tokio::test]
async fn absolute_session_lifetime_is_enforced() {
    assert!(
        !session_survives("UPDATE sessions SET expires_at = now() - interval '1 second'").await
    );
}
