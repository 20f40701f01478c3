//! The local user behind a token: made once on first sight, disabled or
//! given roles in voxgate, and what happens when a username is held by an
//! account Keycloak no longer has.

use serde_json::{Value, json};

use crate::stack::{REALM, Stack, browser, spawn_stack};

use super::helpers::me_refused;

#[tokio::test]
async fn concurrent_first_requests_create_exactly_one_user_row() {
    let stack = spawn_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let sub = Stack::claims(&token)["sub"].as_str().unwrap().to_string();
    let calls = (0..20).map(|_| stack.get_with_token("/api/me", &token));
    let statuses = futures::future::join_all(calls).await;
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE keycloak_id = $1")
        .bind(&sub)
        .fetch_one(&stack.app.db)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_locally_disabled_user_gets_403_even_with_a_valid_token() {
    let stack = spawn_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let sub = Stack::claims(&token)["sub"].as_str().unwrap().to_string();
    sqlx::query("INSERT INTO users (keycloak_id, username, enabled) VALUES ($1, 'bob', false)")
        .bind(&sub)
        .execute(&stack.app.db)
        .await
        .unwrap();
    me_refused(&stack, &token, 403, "disabled").await;
}

#[tokio::test]
async fn roles_granted_in_voxgate_and_mapped_from_keycloak_add_up() {
    let stack = spawn_stack().await;
    let token = stack.password_token("bob", "bob").await;
    let me: Value = stack.app.caller(&token).get_json("/api/me").await;
    let id: uuid::Uuid = me["id"].as_str().unwrap().parse().unwrap();
    sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, 'agent')")
        .bind(id)
        .execute(&stack.app.db)
        .await
        .unwrap();
    // A fresh token: the principal cache is keyed by token roles and is
    // short-lived, so wait it out rather than reach into the app.
    tokio::time::sleep(voxgate::identity::PrincipalCache::TTL).await;
    let me: Value = stack.app.caller(&token).get_json("/api/me").await;
    assert_eq!(me["roles"], json!(["agent", "user"]));
}

/// A realm re-created with the same usernames: the token's username is
/// held by a local user whose Keycloak account is gone. The caller gets a
/// conflict that says what an admin does, never a 500, on the API and at
/// the sign-in callback.
#[tokio::test]
async fn a_username_held_by_a_vanished_keycloak_account_is_a_conflict_saying_what_to_do() {
    let stack = spawn_stack().await;
    sqlx::query(
        "INSERT INTO users (username, email, keycloak_id, status) \
         VALUES ('bob', 'old-bob@example.com', 'gone-from-keycloak', 'active')",
    )
    .execute(&stack.app.db)
    .await
    .unwrap();
    let token = stack.password_token("bob", "bob").await;
    me_refused(&stack, &token, 409, "voxgate users reconcile --fix").await;

    let client = browser();
    let callback = crate::stack::login_until_callback(
        &stack.app,
        &stack.kc.issuer(REALM),
        &client,
        "bob",
        "bob",
        "/",
    )
    .await;
    let page = client.get(&callback).send().await.unwrap();
    assert_eq!(page.status(), 409);
    assert!(page.text().await.unwrap().contains("reconcile --fix"));
}
