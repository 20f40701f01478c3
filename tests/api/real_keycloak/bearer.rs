//! Bearer tokens minted by the real token endpoint.

use std::time::Duration;

use serde_json::{Value, json};

use super::{spawn_real_stack, spawn_real_stack_with, test_realm};
use crate::helpers::{Caller, TestSettings};
use crate::stack::{Stack, password_grant};

#[tokio::test]
async fn real_tokens_are_accepted_on_api_me_with_their_realm_roles() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token = stack.password_token("alice", "alice").await;
    let response = stack.app.caller(&token).get("/api/me").await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["roles"], json!(["admin", "user"]));

    let bob = stack.password_token("bob", "bob").await;
    let me: Value = stack.me(&bob).await;
    assert_eq!(me["roles"], json!(["user"]));
}

#[tokio::test]
async fn a_token_of_another_realm_is_refused() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    // The same realm file under another name: same clients, same users,
    // same audience — only the issuer and the keys differ.
    let other = format!("{}-other", stack.realm);
    let created = stack
        .admin
        .create_realm(&test_realm(&other, &stack.app.url(""), |_| {}))
        .await;
    assert_eq!(created.status(), 201);
    let foreign = password_grant(&stack.kc.issuer(&other), "alice", "alice").await;
    let token = foreign["access_token"].as_str().unwrap();
    let response = stack.app.caller(token).get("/api/me").await;
    assert_eq!(response.status(), 401);
    let _ = stack
        .kc
        .admin(&other)
        .call(reqwest::Method::DELETE, "", None)
        .await;
}

#[tokio::test]
async fn a_token_without_our_audience_is_refused() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    // A public client of the same realm without voxgate's audience mapper.
    let r = stack
        .admin
        .call(
            reqwest::Method::POST,
            "/clients",
            Some(&json!({
                "clientId": "someone-else",
                "publicClient": true,
                "directAccessGrantsEnabled": true,
                "standardFlowEnabled": false,
            })),
        )
        .await;
    assert_eq!(r.status(), 201);
    let response = Caller::at("", reqwest::Client::new())
        .post_form(
            &format!("{}/protocol/openid-connect/token", stack.issuer()),
            &[
                ("grant_type", "password"),
                ("client_id", "someone-else"),
                ("username", "alice"),
                ("password", "alice"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let aud = &Stack::claims(token)["aud"];
    assert!(
        !aud.to_string().contains("\"voxgate\""),
        "the token must lack our audience: {aud}"
    );
    let response = stack.app.caller(token).get("/api/me").await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn an_expired_real_token_is_refused() {
    let settings = TestSettings::default().set("VOXGATE_OIDC_LEEWAY_SECONDS", "0");
    let Some(stack) = spawn_real_stack_with(settings, |realm| {
        realm["accessTokenLifespan"] = json!(2);
    })
    .await
    else {
        return;
    };
    let token = stack.password_token("bob", "bob").await;
    let claims = Stack::claims(&token);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        2
    );
    assert_eq!(stack.app.bearer_status(&token).await, 200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(stack.app.bearer_status(&token).await, 401);
}

#[tokio::test]
async fn the_shipped_realm_locks_an_account_after_repeated_wrong_passwords() {
    let Some(stack) = spawn_real_stack().await else {
        return;
    };
    let token_url = format!("{}/protocol/openid-connect/token", stack.issuer());
    let grant = |password: &'static str| {
        let url = token_url.clone();
        async move {
            let form = [
                ("grant_type", "password"),
                ("client_id", "voxgate-cli"),
                ("username", "bob"),
                ("password", password),
            ];
            let r = Caller::at("", reqwest::Client::new())
                .post_form(&url, &form)
                .await;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    // Keycloak 26.7 answers a wrong password with 400 invalid_grant.
    for _ in 0..10 {
        let (status, body) = grant("guess").await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error_description"], "Invalid user credentials");
    }
    // Locked: the right password is refused with the same answer, so a
    // guesser learns nothing from it.
    let (status, body) = grant("bob").await;
    assert_eq!(
        (status, body["error_description"].clone()),
        (400, json!("Invalid user credentials"))
    );
    let bob_id = stack.admin.get("/users?username=bob&exact=true").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let detection = stack
        .admin
        .get(&format!("/attack-detection/brute-force/users/{bob_id}"))
        .await;
    assert_eq!(detection["disabled"], true, "{detection}");
    // Guesses faster than one a second lock the account at the second
    // (the quick-login check); later ones are not even counted.
    assert!(
        detection["numFailures"].as_u64().unwrap() >= 2,
        "{detection}"
    );
    // An admin can lift the lock at once.
    let cleared = stack
        .admin
        .call(
            reqwest::Method::DELETE,
            &format!("/attack-detection/brute-force/users/{bob_id}"),
            None,
        )
        .await;
    assert_eq!(cleared.status(), 204);
    assert_eq!(grant("bob").await.0, 200);
}
